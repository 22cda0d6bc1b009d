//! [`CompiledModel::new`]: everything a forward needs, created once on the device:
//! the weights uploaded, the activation and batch buffers [`crate::fit()`] sized,
//! the pipelines (from the device's cache where it has them) and one bind group per
//! kernel.

use std::sync::{Arc, Mutex};

use effc_plan::{Kernel, Plan};
use effc_wgsl::Shader;

use crate::fit::{fit, Fit, FitError};
use crate::{Gpu, GpuError};

/// A model compiled for one device: pipelines, weights and buffers, ready to run.
pub struct CompiledModel {
    pub(crate) gpu: Arc<Gpu>,
    pub(crate) plan: Plan,
    pub(crate) pipelines: Vec<wgpu::ComputePipeline>,
    pub(crate) bind_groups: Vec<wgpu::BindGroup>,
    /// Kept alive for the bind groups.
    _weights: Vec<wgpu::Buffer>,
    /// One buffer per activation slot of the plan, for one chunk of images.
    pub(crate) slots: Vec<wgpu::Buffer>,
    /// The whole batch's input (padded NHWC) and output.
    pub(crate) input_all: wgpu::Buffer,
    pub(crate) output_all: wgpu::Buffer,
    pub(crate) max_batch: usize,
    /// Images per chunk: as many as every activation buffer can bind at once.
    pub(crate) chunk: usize,
    /// The input converted to padded NHWC before it is uploaded.
    pub(crate) scratch: Mutex<Vec<f32>>,
}

const MIB: f64 = 1024.0 * 1024.0;

impl CompiledModel {
    /// Compiles `plan` with zero weights and a zero input of `batch` images already
    /// uploaded: what timing (tuning, latency) needs, where values do not matter.
    pub fn zeroed(gpu: &Arc<Gpu>, plan: Plan, batch: usize) -> Result<CompiledModel, GpuError> {
        let shaders = effc_wgsl::compile(&plan)?;
        let weights: Vec<Vec<f32>> = plan
            .kernels
            .iter()
            .map(|k| vec![0.0; k.weights_len])
            .collect();
        let input_len = batch * plan.input_shape.iter().product::<usize>();
        let cm = CompiledModel::new(gpu.clone(), plan, &shaders, &weights, batch)?;
        cm.upload(&vec![0.0; input_len], batch)?;
        Ok(cm)
    }

    /// Creates everything a forward needs, once. `shaders` and `weights` are per
    /// kernel of `plan`, in order (from `effc_wgsl::compile` and
    /// `effc_plan::pack_weights`). Checks the adapter's limits first ([`fit()`]) and
    /// says what does not fit.
    pub fn new(
        gpu: Arc<Gpu>,
        plan: Plan,
        shaders: &[Shader],
        weights: &[Vec<f32>],
        max_batch: usize,
    ) -> Result<CompiledModel, GpuError> {
        check_inputs(&plan, shaders, weights)?;
        let fit = fit(&plan, &gpu.limits, max_batch).map_err(|what| match what {
            FitError::EmptyBatch => GpuError::EmptyBatch,
            what => GpuError::TooBig {
                model: plan.model.clone(),
                adapter: gpu.adapter.to_string(),
                what,
            },
        })?;
        let device = &gpu.device;
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);

        let buffers = Buffers::create(&gpu, &plan, &fit, weights);
        let mut pipelines = Vec::with_capacity(plan.kernels.len());
        let mut bind_groups = Vec::with_capacity(plan.kernels.len());
        let mut new = gpu.pipelines.begin();
        for ((k, shader), wbuf) in plan.kernels.iter().zip(shaders).zip(&buffers.weights) {
            let p = new.get_or_create(device, k, shader);
            bind_groups.push(device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&k.name),
                layout: &p.layout,
                entries: &bind_entries(&plan, k, wbuf, &buffers.slots),
            }));
            pipelines.push(p.pipeline);
        }
        if let Some(e) = pollster::block_on(oom.pop()) {
            return Err(GpuError::OutOfMemory {
                during: format!(
                    "creating the buffers of model `{}` (weights {:.1} MiB, activations {:.1} MiB)",
                    plan.model,
                    plan.weight_bytes() as f64 / MIB,
                    plan.activation_bytes(fit.chunk) as f64 / MIB
                ),
                message: e.to_string(),
            });
        }
        if let Some(e) = pollster::block_on(validation.pop()) {
            return Err(GpuError::Validation {
                during: format!("creating the pipelines of model `{}`", plan.model),
                message: e.to_string(),
            });
        }
        new.commit();
        gpu.check("creating pipelines")?;
        let scratch = Mutex::new(vec![0.0f32; fit.input_buffer as usize / 4]);
        Ok(CompiledModel {
            gpu,
            plan,
            pipelines,
            bind_groups,
            _weights: buffers.weights,
            slots: buffers.slots,
            input_all: buffers.input,
            output_all: buffers.output,
            max_batch,
            chunk: fit.chunk,
            scratch,
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Images per chunk (the batch runs in `ceil(batch / chunk)` passes).
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// Values per image in the output (classes, or features).
    pub fn output_len(&self) -> usize {
        self.plan.output_len
    }
}

/// One shader and one packed weight vector of the plan's length per kernel.
fn check_inputs(plan: &Plan, shaders: &[Shader], weights: &[Vec<f32>]) -> Result<(), GpuError> {
    let kernels = plan.kernels.len();
    for (what, got) in [
        ("shaders", shaders.len()),
        ("packed weights", weights.len()),
    ] {
        if got != kernels {
            return Err(GpuError::Kernels {
                what,
                got,
                expected: kernels,
            });
        }
    }
    for (k, w) in plan.kernels.iter().zip(weights) {
        if w.len() != k.weights_len {
            return Err(GpuError::Weights {
                kernel: k.name.clone(),
                got: w.len(),
                expected: k.weights_len,
            });
        }
    }
    Ok(())
}

/// The buffers of a model, sized by its [`Fit`].
struct Buffers {
    /// Per kernel, its packed weights (uploaded).
    weights: Vec<wgpu::Buffer>,
    /// Per activation slot, one chunk.
    slots: Vec<wgpu::Buffer>,
    input: wgpu::Buffer,
    output: wgpu::Buffer,
}

impl Buffers {
    fn create(gpu: &Gpu, plan: &Plan, fit: &Fit, weights: &[Vec<f32>]) -> Buffers {
        let buffer = |label: &str, size: u64, usage: wgpu::BufferUsages| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        let storage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC;
        let weights = plan
            .kernels
            .iter()
            .zip(weights)
            .zip(&fit.weight_buffers)
            .map(|((k, w), &size)| {
                let b = buffer(&format!("{} weights", k.name), size, storage);
                gpu.queue.write_buffer(&b, 0, bytemuck::cast_slice(w));
                b
            })
            .collect();
        let slots = fit
            .slot_buffers
            .iter()
            .enumerate()
            .map(|(i, &size)| buffer(&format!("activations #{i}"), size, storage))
            .collect();
        let input = buffer(
            "input batch",
            fit.input_buffer,
            wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        );
        let output = buffer(
            "output batch",
            fit.output_buffer,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        Buffers {
            weights,
            slots,
            input,
            output,
        }
    }
}

/// The bind group entries of a kernel: its weights, then its tensors' buffers.
fn bind_entries<'a>(
    plan: &Plan,
    k: &Kernel,
    weights: &'a wgpu::Buffer,
    slots: &'a [wgpu::Buffer],
) -> Vec<wgpu::BindGroupEntry<'a>> {
    k.bindings
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: match b.tensor {
                None => weights.as_entire_binding(),
                Some(t) => slots[plan.tensors[t].slot.index()].as_entire_binding(),
            },
        })
        .collect()
}
