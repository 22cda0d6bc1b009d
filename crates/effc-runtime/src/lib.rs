//! The wgpu runtime: runs a kernel plan on any adapter wgpu supports.
//!
//! [`Gpu`] picks an adapter (any backend; `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`
//! are honoured) and opens a device. [`CompiledModel`] uploads the packed weights
//! once, creates every pipeline, buffer and bind group once, and then
//! [`CompiledModel::forward`] records every dispatch into one command buffer and
//! allocates nothing on the GPU. A batch larger than the activation buffers can
//! bind at once runs in chunks inside that command buffer. Device errors, a lost
//! device or an adapter without compute become [`GpuError`]s, never panics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub mod profile;
pub mod tune;
pub use profile::{median, KernelTiming};

use effc_plan::{Plan, TensorKind};
use effc_wgsl::Shader;
use thiserror::Error;

/// Everything that can go wrong on the GPU side.
#[derive(Debug, Error)]
pub enum GpuError {
    #[error("no GPU adapter found{0}; install a Vulkan or OpenGL driver (e.g. Mesa's llvmpipe), set WGPU_BACKEND, or run on the CPU (--device cpu)")]
    NoAdapter(String),
    #[error("adapter `{0}` cannot run compute shaders")]
    NoCompute(String),
    #[error("could not open a device on adapter `{adapter}`: {message}")]
    Device { adapter: String, message: String },
    #[error("model `{model}` does not fit adapter `{adapter}`: {what}")]
    TooBig {
        model: String,
        adapter: String,
        what: String,
    },
    #[error("GPU error while {during}: {message}")]
    Validation { during: String, message: String },
    #[error("the GPU device was lost: {0}")]
    Lost(String),
    #[error("input has {got} values; batch {batch} of {shape} needs {expected}")]
    InputShape {
        got: usize,
        expected: usize,
        batch: usize,
        shape: String,
    },
    #[error("batch {batch} is larger than the maximum batch {max} this model was created for")]
    Batch { batch: usize, max: usize },
    #[error("batch size must be at least 1")]
    EmptyBatch,
    #[error("packed weights of kernel `{kernel}` have {got} values, the plan says {expected}")]
    Weights {
        kernel: String,
        got: usize,
        expected: usize,
    },
    #[error(transparent)]
    Pack(#[from] effc_plan::PackError),
    #[error(transparent)]
    Compile(#[from] effc_wgsl::CompileError),
}

/// Plans, generates, validates and packs a model, and creates it on `gpu`.
/// `get` returns a tensor of the checkpoint by its effc canonical name, f32 in
/// PyTorch layout (BN is folded here).
pub fn compile_model<'a>(
    gpu: Arc<Gpu>,
    model: &effc_ir::Model,
    get: impl Fn(&str) -> Option<&'a [f32]>,
    max_batch: usize,
) -> Result<CompiledModel, GpuError> {
    compile_model_tuned(gpu, model, &effc_plan::Tuning::default(), get, max_batch)
}

/// [`compile_model`] with the tiles of `tuning` (see [`tune`]) where it names a
/// kernel's shape, the cost models' elsewhere.
pub fn compile_model_tuned<'a>(
    gpu: Arc<Gpu>,
    model: &effc_ir::Model,
    tuning: &effc_plan::Tuning,
    get: impl Fn(&str) -> Option<&'a [f32]>,
    max_batch: usize,
) -> Result<CompiledModel, GpuError> {
    let plan = effc_plan::plan_tuned(model, tuning);
    let shaders = effc_wgsl::compile(&plan)?;
    let weights = effc_plan::pack_weights(&plan, model, get)?;
    CompiledModel::new(gpu, plan, &shaders, &weights, max_batch)
}

/// The adapter in use, for messages and reports.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {}", self.name, self.backend, self.device_type)?;
        if !self.driver.is_empty() {
            write!(f, ", {}", self.driver)?;
        }
        write!(f, ")")
    }
}

/// An open GPU device.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    lost: Arc<Mutex<Option<String>>>,
    errors: Arc<Mutex<Vec<String>>>,
    /// Pipelines by shader body, shared by every model compiled on this device
    /// (the same kernel in two models, or in two tunings of one, compiles once).
    pipelines: Mutex<PipelineCache>,
}

type PipelineCache = HashMap<String, (wgpu::ComputePipeline, wgpu::BindGroupLayout)>;

impl Gpu {
    /// Picks an adapter and opens a device: `WGPU_ADAPTER_NAME` (a substring of the
    /// adapter's name) when set, else wgpu's default choice among the backends of
    /// `WGPU_BACKEND` (all when unset).
    pub fn new() -> Result<Gpu, GpuError> {
        pollster::block_on(Self::new_async())
    }

    async fn new_async() -> Result<Gpu, GpuError> {
        if std::env::var_os("WGPU_BACKEND").is_some() {
            return Self::open(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
                .await;
        }
        // Without WGPU_BACKEND: the native APIs (Vulkan, Metal, DX12) first, OpenGL
        // only when none of them has an adapter.
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends = wgpu::Backends::PRIMARY;
        match Self::open(desc).await {
            Err(GpuError::NoAdapter(_)) => {
                let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
                desc.backends = wgpu::Backends::SECONDARY;
                Self::open(desc).await
            }
            r => r,
        }
    }

    async fn open(desc: wgpu::InstanceDescriptor) -> Result<Gpu, GpuError> {
        let backends = desc.backends;
        let instance = wgpu::Instance::new(desc);
        let adapter = match std::env::var("WGPU_ADAPTER_NAME") {
            Ok(want) => {
                let want = want.to_lowercase();
                let adapters = instance.enumerate_adapters(backends).await;
                let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&want))
                    .ok_or_else(|| {
                        GpuError::NoAdapter(format!(
                            " named like WGPU_ADAPTER_NAME=`{want}` (adapters: {})",
                            names.join(", ")
                        ))
                    })?
            }
            Err(_) => instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::from_env()
                        .unwrap_or(wgpu::PowerPreference::HighPerformance),
                    ..Default::default()
                })
                .await
                .map_err(|e| GpuError::NoAdapter(format!(" ({e}; backends {backends:?})")))?,
        };
        let info = adapter.get_info();
        let summary = AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend).to_lowercase(),
            device_type: format!("{:?}", info.device_type),
            driver: [info.driver.as_str(), info.driver_info.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" "),
        };
        if !adapter
            .get_downlevel_capabilities()
            .flags
            .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
        {
            return Err(GpuError::NoCompute(summary.to_string()));
        }
        let limits = adapter.limits();
        let mut features = wgpu::Features::empty();
        if adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("effc"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::Device {
                adapter: summary.to_string(),
                message: e.to_string(),
            })?;
        let lost = Arc::new(Mutex::new(None));
        let errors = Arc::new(Mutex::new(Vec::new()));
        {
            let lost = lost.clone();
            device.set_device_lost_callback(move |reason, msg| {
                if let Ok(mut l) = lost.lock() {
                    *l = Some(format!("{reason:?}: {msg}"));
                }
            });
        }
        {
            let errors = errors.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                if let Ok(mut v) = errors.lock() {
                    v.push(e.to_string());
                }
            }));
        }
        Ok(Gpu {
            device,
            queue,
            adapter: summary,
            limits,
            lost,
            errors,
            pipelines: Mutex::new(HashMap::new()),
        })
    }

    /// Fails with the first error the device reported since the last check.
    pub fn check(&self, during: &str) -> Result<(), GpuError> {
        if let Some(l) = self.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(GpuError::Lost(l));
        }
        let mut errs = self
            .errors
            .lock()
            .map_err(|_| GpuError::Lost("error log poisoned".into()))?;
        if !errs.is_empty() {
            let message = errs.join("\n");
            errs.clear();
            return Err(GpuError::Validation {
                during: during.into(),
                message,
            });
        }
        Ok(())
    }

    /// Whether the device can time kernels with timestamp queries.
    pub fn has_timestamps(&self) -> bool {
        self.device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    fn wait(&self, during: &str) -> Result<(), GpuError> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Validation {
                during: during.into(),
                message: e.to_string(),
            })?;
        self.check(during)
    }
}

/// The bind group entries of a kernel: its weights, then its tensors' buffers.
fn bind_entries<'a>(
    plan: &Plan,
    k: &effc_plan::Kernel,
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

/// A model compiled for one device: pipelines, weights and buffers, ready to run.
pub struct CompiledModel {
    gpu: Arc<Gpu>,
    plan: Plan,
    pipelines: Vec<wgpu::ComputePipeline>,
    bind_groups: Vec<wgpu::BindGroup>,
    /// Kept alive for the bind groups.
    _weights: Vec<wgpu::Buffer>,
    slots: Vec<wgpu::Buffer>,
    input_all: wgpu::Buffer,
    output_all: wgpu::Buffer,
    max_batch: usize,
    /// Images per chunk: as many as every activation buffer can bind at once.
    chunk: usize,
    scratch: Mutex<Vec<f32>>,
}

const MIB: f64 = 1024.0 * 1024.0;

impl CompiledModel {
    /// Creates everything a forward needs, once. `shaders` and `weights` are per
    /// kernel of `plan`, in order (from `effc_wgsl::compile` and
    /// `effc_plan::pack_weights`). Checks the adapter's limits first and says what
    /// does not fit.
    pub fn new(
        gpu: Arc<Gpu>,
        plan: Plan,
        shaders: &[Shader],
        weights: &[Vec<f32>],
        max_batch: usize,
    ) -> Result<CompiledModel, GpuError> {
        if max_batch == 0 {
            return Err(GpuError::EmptyBatch);
        }
        let lim = &gpu.limits;
        let too_big = |what: String| GpuError::TooBig {
            model: plan.model.clone(),
            adapter: gpu.adapter.to_string(),
            what,
        };
        let max_binding = lim.max_storage_buffer_binding_size.min(lim.max_buffer_size);
        // Weights must fit one binding each.
        for (k, w) in plan.kernels.iter().zip(weights) {
            if w.len() != k.weights_len {
                return Err(GpuError::Weights {
                    kernel: k.name.clone(),
                    got: w.len(),
                    expected: k.weights_len,
                });
            }
            let bytes = (w.len() * 4) as u64;
            if bytes > max_binding {
                return Err(too_big(format!(
                    "the weights of kernel `{}` take {:.1} MiB, more than the adapter's largest storage binding ({:.1} MiB)",
                    k.name,
                    bytes as f64 / MIB,
                    max_binding as f64 / MIB
                )));
            }
            let n_storage = k.bindings.len() as u32;
            if n_storage > lim.max_storage_buffers_per_shader_stage {
                return Err(too_big(format!(
                    "kernel `{}` binds {n_storage} storage buffers, the adapter allows {}",
                    k.name, lim.max_storage_buffers_per_shader_stage
                )));
            }
            let max_wg = lim.max_compute_workgroups_per_dimension;
            if k.grid[0] > max_wg || k.grid[1] > max_wg {
                return Err(too_big(format!(
                    "kernel `{}` needs {}x{} workgroups, the adapter allows {max_wg} per dimension",
                    k.name, k.grid[0], k.grid[1]
                )));
            }
            let threads = k.workgroup[0] * k.workgroup[1] * k.workgroup[2];
            if threads > lim.max_compute_invocations_per_workgroup {
                return Err(too_big(format!(
                    "kernel `{}` uses {threads} invocations per workgroup, the adapter allows {}",
                    k.name, lim.max_compute_invocations_per_workgroup
                )));
            }
        }
        // Activations: chunk the batch so every buffer fits one binding.
        let per_image = plan
            .slots
            .iter()
            .map(|s| s.bytes as u64)
            .max()
            .unwrap_or(16);
        if per_image > max_binding {
            let t = plan
                .tensors
                .iter()
                .max_by_key(|t| t.bytes)
                .map(|t| t.name.clone())
                .unwrap_or_default();
            return Err(too_big(format!(
                "activation `{t}` takes {:.1} MiB for one image, more than the adapter's largest storage binding ({:.1} MiB); use a smaller resolution",
                per_image as f64 / MIB,
                max_binding as f64 / MIB
            )));
        }
        let chunk = ((max_binding / per_image) as usize)
            .min(max_batch)
            .min(lim.max_compute_workgroups_per_dimension as usize)
            .max(1);
        let device = &gpu.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);

        let storage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC;
        let weight_buffers: Vec<wgpu::Buffer> = plan
            .kernels
            .iter()
            .zip(weights)
            .map(|(k, w)| {
                let b = device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("{} weights", k.name)),
                    size: (w.len() * 4).max(16) as u64,
                    usage: storage,
                    mapped_at_creation: false,
                });
                gpu.queue.write_buffer(&b, 0, bytemuck::cast_slice(w));
                b
            })
            .collect();
        let slots: Vec<wgpu::Buffer> = plan
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("activations #{i}")),
                    size: (s.bytes * chunk).max(16) as u64,
                    usage: storage,
                    mapped_at_creation: false,
                })
            })
            .collect();
        let in_bytes = plan.tensors[plan.input].bytes;
        let out_bytes = plan.tensors[plan.output].bytes;
        let input_all = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("input batch"),
            size: (in_bytes * max_batch) as u64,
            usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let output_all = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("output batch"),
            size: (out_bytes * max_batch).div_ceil(4) as u64 * 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });

        let mut pipelines = Vec::with_capacity(plan.kernels.len());
        let mut bind_groups = Vec::with_capacity(plan.kernels.len());
        // Kernels with the same code (most blocks of a stage) share one pipeline, also
        // across the models compiled on this device; the new ones join the device's
        // cache once they are known to be valid.
        let shared = gpu.pipelines.lock().map(|c| c.clone()).unwrap_or_default();
        let mut cache: HashMap<&str, (wgpu::ComputePipeline, wgpu::BindGroupLayout)> =
            HashMap::new();
        for ((k, shader), wbuf) in plan.kernels.iter().zip(shaders).zip(&weight_buffers) {
            let body = effc_wgsl::body(&shader.source);
            if let Some((pipeline, bgl)) = cache.get(body).or_else(|| shared.get(body)) {
                let bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&k.name),
                    layout: bgl,
                    entries: &bind_entries(&plan, k, wbuf, &slots),
                });
                pipelines.push(pipeline.clone());
                bind_groups.push(bg);
                continue;
            }
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&k.name),
                source: wgpu::ShaderSource::Wgsl(shader.source.as_str().into()),
            });
            let entries: Vec<wgpu::BindGroupLayoutEntry> = k
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
            let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(&k.name),
                entries: &entries,
            });
            let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&k.name),
                bind_group_layouts: &[Some(&bgl)],
                immediate_size: 0,
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&k.name),
                layout: Some(&layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
            let bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&k.name),
                layout: &bgl,
                entries: &bind_entries(&plan, k, wbuf, &slots),
            });
            pipelines.push(pipeline.clone());
            bind_groups.push(bg);
            cache.insert(body, (pipeline, bgl));
        }
        let oom_err = pollster::block_on(oom.pop());
        let val_err = pollster::block_on(scope.pop());
        if let Some(e) = oom_err {
            return Err(too_big(format!("out of GPU memory while creating buffers ({e}); weights {:.1} MiB, activations {:.1} MiB", plan.weight_bytes() as f64 / MIB, plan.activation_bytes(chunk) as f64 / MIB)));
        }
        if let Some(e) = val_err {
            return Err(GpuError::Validation {
                during: format!("creating the pipelines of model `{}`", plan.model),
                message: e.to_string(),
            });
        }
        if let Ok(mut c) = gpu.pipelines.lock() {
            c.extend(cache.into_iter().map(|(b, p)| (b.to_string(), p)));
        }
        gpu.check("creating pipelines")?;
        let scratch = Mutex::new(vec![0.0f32; in_bytes / 4 * max_batch]);
        Ok(CompiledModel {
            gpu,
            plan,
            pipelines,
            bind_groups,
            _weights: weight_buffers,
            slots,
            input_all,
            output_all,
            max_batch,
            chunk,
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

    /// Runs a batch: `input` is NCHW f32 (`batch × 3 × H × W`); returns
    /// `batch × output_len` values (logits, or pooled features).
    pub fn forward(&self, input: &[f32], batch: usize) -> Result<Vec<f32>, GpuError> {
        self.upload(input, batch)?;
        let mut encoder = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("effc forward"),
            });
        self.encode_batch(&mut encoder, batch, None);
        self.gpu.queue.submit([encoder.finish()]);
        self.read_output(batch)
    }

    /// Converts NCHW input to the plan's padded NHWC and writes it to the GPU.
    pub fn upload(&self, input: &[f32], batch: usize) -> Result<(), GpuError> {
        let [c, h, w] = self.plan.input_shape;
        if batch == 0 {
            return Err(GpuError::EmptyBatch);
        }
        if batch > self.max_batch {
            return Err(GpuError::Batch {
                batch,
                max: self.max_batch,
            });
        }
        let expected = batch * c * h * w;
        if input.len() != expected {
            return Err(GpuError::InputShape {
                got: input.len(),
                expected,
                batch,
                shape: format!("{c}x{h}x{w}"),
            });
        }
        let c4 = self.plan.tensors[self.plan.input].c4 * 4;
        let mut buf = self
            .scratch
            .lock()
            .map_err(|_| GpuError::Lost("input buffer poisoned".into()))?;
        let per = h * w * c4;
        for n in 0..batch {
            let dst = &mut buf[n * per..(n + 1) * per];
            for ch in 0..c4 {
                for p in 0..h * w {
                    dst[p * c4 + ch] = if ch < c {
                        input[(n * c + ch) * h * w + p]
                    } else {
                        0.0
                    };
                }
            }
        }
        self.gpu.queue.write_buffer(
            &self.input_all,
            0,
            bytemuck::cast_slice(&buf[..batch * per]),
        );
        Ok(())
    }

    /// Records a whole forward of `batch` images (already uploaded) into `encoder`:
    /// per chunk, copy its input in, every dispatch, copy its output out. With
    /// `timestamps`, each kernel of the first chunk writes begin/end timestamps at
    /// query index `2·kernel`.
    pub fn encode_batch(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        batch: usize,
        timestamps: Option<&wgpu::QuerySet>,
    ) {
        let in_bytes = self.plan.tensors[self.plan.input].bytes as u64;
        let out_bytes = self.plan.tensors[self.plan.output].bytes as u64;
        let in_slot = &self.slots[self.plan.tensors[self.plan.input].slot.index()];
        let out_slot = &self.slots[self.plan.tensors[self.plan.output].slot.index()];
        let mut start = 0;
        while start < batch {
            let n = self.chunk.min(batch - start);
            encoder.copy_buffer_to_buffer(
                &self.input_all,
                start as u64 * in_bytes,
                in_slot,
                0,
                n as u64 * in_bytes,
            );
            self.encode_dispatches(encoder, n, if start == 0 { timestamps } else { None });
            let size = n as u64 * out_bytes;
            // Output sizes are whole f32s, so copies are 4-byte aligned.
            encoder.copy_buffer_to_buffer(
                out_slot,
                0,
                &self.output_all,
                start as u64 * out_bytes,
                size,
            );

            start += n;
        }
    }

    /// Records the dispatches of one chunk of `n` images (input already in its buffer)
    /// into `encoder`, in one compute pass (or one pass per kernel with timestamps).
    pub fn encode_dispatches(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        n: usize,
        timestamps: Option<&wgpu::QuerySet>,
    ) {
        match timestamps {
            None => {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("effc"),
                    timestamp_writes: None,
                });
                for (i, k) in self.plan.kernels.iter().enumerate() {
                    pass.set_pipeline(&self.pipelines[i]);
                    pass.set_bind_group(0, &self.bind_groups[i], &[]);
                    pass.dispatch_workgroups(k.grid[0], k.grid[1], n as u32);
                }
            }
            Some(qs) => {
                for (i, k) in self.plan.kernels.iter().enumerate() {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(&k.name),
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: qs,
                            beginning_of_pass_write_index: Some(2 * i as u32),
                            end_of_pass_write_index: Some(2 * i as u32 + 1),
                        }),
                    });
                    pass.set_pipeline(&self.pipelines[i]);
                    pass.set_bind_group(0, &self.bind_groups[i], &[]);
                    pass.dispatch_workgroups(k.grid[0], k.grid[1], n as u32);
                }
            }
        }
    }

    /// Records one kernel alone (for timing kernels one by one).
    pub fn encode_kernel(&self, encoder: &mut wgpu::CommandEncoder, kernel: usize, n: usize) {
        let k = &self.plan.kernels[kernel];
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(&k.name),
            timestamp_writes: None,
        });
        pass.set_pipeline(&self.pipelines[kernel]);
        pass.set_bind_group(0, &self.bind_groups[kernel], &[]);
        pass.dispatch_workgroups(k.grid[0], k.grid[1], n as u32);
    }

    /// Waits for the GPU and reads back the output of `batch` images.
    pub fn read_output(&self, batch: usize) -> Result<Vec<f32>, GpuError> {
        let out_len = self.plan.output_len;
        let bytes = (batch * out_len * 4) as u64;
        let slice = self.output_all.slice(0..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.gpu.wait("running the model")?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(GpuError::Validation {
                    during: "reading the output".into(),
                    message: e.to_string(),
                })
            }
            Err(_) => return Err(GpuError::Lost("the output was never mapped".into())),
        }
        let out = {
            let view = slice.get_mapped_range().map_err(|e| GpuError::Validation {
                during: "reading the output".into(),
                message: e.to_string(),
            })?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        self.output_all.unmap();
        Ok(out)
    }

    /// Reads a whole tensor of the plan from the last chunk run, NHWC with padded
    /// channels, `n` images (for debugging where two implementations part).
    pub fn read_tensor(&self, tensor: usize, n: usize) -> Result<Vec<f32>, GpuError> {
        let t = &self.plan.tensors[tensor];
        let size = (t.bytes * n) as u64;
        let staging = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        encoder.copy_buffer_to_buffer(&self.slots[t.slot.index()], 0, &staging, 0, size);
        self.gpu.queue.submit([encoder.finish()]);
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.gpu.wait("reading a tensor")?;
        if !matches!(rx.recv(), Ok(Ok(()))) {
            return Err(GpuError::Validation {
                during: "reading a tensor".into(),
                message: "map failed".into(),
            });
        }
        let view = slice.get_mapped_range().map_err(|e| GpuError::Validation {
            during: "reading a tensor".into(),
            message: e.to_string(),
        })?;
        Ok(bytemuck::cast_slice::<u8, f32>(&view).to_vec())
    }

    /// Whether a tensor is an activation that survives until the end of a forward
    /// (not reused by a later one) — meaningful to read back with [`Self::read_tensor`].
    pub fn tensor_kind(&self, tensor: usize) -> TensorKind {
        self.plan.tensors[tensor].kind
    }
}
