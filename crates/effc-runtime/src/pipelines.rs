//! The pipeline cache: compute pipelines by shader body, per device. Kernels with
//! the same code (most blocks of a stage) share one pipeline, also across the
//! models (or the tunings of one model) compiled on a device. A model's new
//! pipelines join the device's cache only once they are known to be valid.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use effc_plan::Kernel;
use effc_wgsl::Shader;

/// A pipeline and the layout of its bind group.
#[derive(Clone)]
pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// The pipelines of one device, by shader body.
#[derive(Default)]
pub(crate) struct PipelineCache {
    by_body: Mutex<HashMap<String, Pipeline>>,
}

impl PipelineCache {
    /// Starts creating the pipelines of one model.
    pub fn begin(&self) -> NewPipelines<'_> {
        NewPipelines {
            cache: self,
            new: HashMap::new(),
        }
    }

    fn get(&self, body: &str) -> Option<Pipeline> {
        let cache = self.by_body.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(body).cloned()
    }
}

/// The pipelines one model created, not yet in the device's cache.
pub(crate) struct NewPipelines<'a> {
    cache: &'a PipelineCache,
    new: HashMap<String, Pipeline>,
}

impl NewPipelines<'_> {
    /// The pipeline of `kernel`, compiled from `shader` unless a kernel with the same
    /// body was compiled before.
    pub fn get_or_create(
        &mut self,
        device: &wgpu::Device,
        kernel: &Kernel,
        shader: &Shader,
    ) -> Pipeline {
        let body = effc_wgsl::body(&shader.source);
        if let Some(p) = self.new.get(body).cloned().or_else(|| self.cache.get(body)) {
            return p;
        }
        let p = create(device, kernel, shader);
        self.new.insert(body.to_string(), p.clone());
        p
    }

    /// Adds the new pipelines to the device's cache (call once they are valid).
    pub fn commit(self) {
        let mut cache = self
            .cache
            .by_body
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cache.extend(self.new);
    }
}

/// Compiles `shader` and creates its pipeline, with one storage buffer per binding
/// of `kernel` (read-only unless the kernel writes it).
fn create(device: &wgpu::Device, kernel: &Kernel, shader: &Shader) -> Pipeline {
    let label = Some(kernel.name.as_str());
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label,
        source: wgpu::ShaderSource::Wgsl(shader.source.as_str().into()),
    });
    let entries: Vec<wgpu::BindGroupLayoutEntry> = kernel
        .bindings
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage {
                    read_only: !b.write,
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label,
        entries: &entries,
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label,
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label,
        layout: Some(&pipeline_layout),
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    Pipeline { pipeline, layout }
}
