//! Training on wgpu: one step of forward (train mode), backward and the
//! optimizer update, recorded into one command buffer.
//!
//! [`plan`] turns a model into the step's dispatches over three buffers: the
//! flat parameter buffer (f32, unfolded, in `Model::params` order, running
//! statistics included), the flat gradient buffer of the same layout and the
//! arena of every activation, saved tensor and gradient. [`GpuTrainer`] creates
//! those buffers, one pipeline per kernel kind ([`effc_wgsl::train`]) and every
//! dispatch's uniforms once; a [`GpuTrainer::step`] then only writes the batch
//! (input, target, the drop-path and dropout masks drawn on the host from the
//! same [`Rng`] draws as the CPU reference) and the learning rate, records every
//! dispatch into one command buffer, and reads back the per-image losses.
//! Nothing is allocated per step.
//!
//! The optimizer is one fused kernel over the flat parameter buffer: SGD
//! (momentum, Nesterov), RMSpropTF and AdamW as `effc-train` has them, with a
//! per-tensor weight-decay mask, and the weights' EMA.

mod plan;

pub use plan::{plan, Dispatch, MaskSlot, PlanConfig, TrainPlan, Unsupported};

use std::collections::HashMap;
use std::sync::Arc;

use effc_ir::Model;
use effc_reference::train::{Rng, StepConfig, Target};
use effc_wgsl::train::{optimizer, Grid, Kind, WORKGROUP};

use crate::{Gpu, GpuError};

/// An optimizer's update rule (the same settings as `effc_train::optim::Kind`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    Sgd { momentum: f64, nesterov: bool },
    RmsPropTf { alpha: f64, momentum: f64, eps: f64 },
    AdamW { beta1: f64, beta2: f64, eps: f64 },
}

/// The update a step ends with.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    pub rule: Rule,
    pub weight_decay: f64,
    /// Per tensor of `Model::params`: whether weight decay applies.
    pub decay: Vec<bool>,
    /// The EMA's decay, when the weights' EMA is kept.
    pub ema: Option<f64>,
}

/// Which part of a step a dispatch belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pass {
    Forward,
    Backward,
    Update,
}

/// The device memory of a [`GpuTrainer`], in bytes, by buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TrainMemory {
    pub params: u64,
    pub grads: u64,
    /// Every activation, saved tensor and activation gradient of a step.
    pub arena: u64,
    /// The optimizer's two state buffers.
    pub optimizer: u64,
    pub ema: u64,
}

impl TrainMemory {
    pub fn total(&self) -> u64 {
        self.params + self.grads + self.arena + self.optimizer + self.ema
    }
}

/// The uniform slot of one dispatch (wgpu's largest required alignment).
const SLOT: u64 = 256;

/// A model being trained on the GPU.
pub struct GpuTrainer {
    gpu: Arc<Gpu>,
    plan: TrainPlan,
    resolution: usize,
    label_smoothing: f64,
    update: Option<Update>,
    /// Optimizer steps taken.
    steps: u64,
    prm: wgpu::Buffer,
    grd: wgpu::Buffer,
    arena: wgpu::Buffer,
    s1: wgpu::Buffer,
    s2: wgpu::Buffer,
    ema: wgpu::Buffer,
    update_uniform: wgpu::Buffer,
    loss_staging: wgpu::Buffer,
    main_group: wgpu::BindGroup,
    update_group: wgpu::BindGroup,
    pipelines: HashMap<Kind, wgpu::ComputePipeline>,
    /// Workgroups of each dispatch, forward then backward.
    grids: Vec<[u32; 2]>,
    update_grid: [u32; 2],
    update_xs: u32,
    /// Reused host buffers for what a step uploads.
    scratch: Vec<f32>,
}

fn bytes(v: &[f32]) -> &[u8] {
    bytemuck::cast_slice(v)
}

/// Workgroups `[x, y]` and the `xs` stride for `n` items of `kind`.
fn grid(kind: Kind, n: u32, max: u32) -> Option<([u32; 2], u32)> {
    let groups = match kind.grid() {
        Grid::Items => n.div_ceil(WORKGROUP),
        Grid::Groups => n,
    };
    let gx = groups.clamp(1, max);
    let gy = groups.div_ceil(gx).max(1);
    let xs = match kind.grid() {
        Grid::Items => gx * WORKGROUP,
        Grid::Groups => gx,
    };
    (gy <= max).then_some(([gx, gy], xs))
}

/// The starting values fit the plan's tensors, and the decay mask its count.
fn check_values(
    model: &Model,
    plan: &TrainPlan,
    values: &[Vec<f32>],
    update: Option<&Update>,
) -> Result<(), GpuError> {
    let params = &plan.params;
    if values.len() != params.len() || params.iter().zip(values).any(|(p, v)| p.numel() != v.len())
    {
        let bad = params
            .iter()
            .zip(values)
            .find(|(p, v)| p.numel() != v.len())
            .map_or(
                format!("{} tensors, the model has {}", values.len(), params.len()),
                |(p, v)| format!("`{}` has {} values, needs {}", p.name, v.len(), p.numel()),
            );
        return Err(GpuError::TrainUnsupported(format!(
            "the parameters do not fit model `{}`: {bad}",
            model.name
        )));
    }
    if let Some(u) = update {
        if u.decay.len() != params.len() {
            return Err(GpuError::TrainUnsupported(format!(
                "the weight-decay mask has {} entries, the model {} tensors",
                u.decay.len(),
                params.len()
            )));
        }
    }
    Ok(())
}

/// The arena and the parameters fit a storage binding; each dispatch's grid
/// (2-D past `max_groups` per dimension) and its uniform slot; the update's grid.
#[allow(clippy::type_complexity)]
fn dispatch_grids(
    gpu: &Gpu,
    model: &Model,
    batch: usize,
    plan: &TrainPlan,
    max_groups: u32,
) -> Result<(Vec<[u32; 2]>, Vec<u8>, ([u32; 2], u32)), GpuError> {
    let adapter = gpu.adapter.to_string();
    let max_binding = gpu.limits.max_storage_buffer_binding_size;
    let max_buffer = gpu.limits.max_buffer_size;
    for (what, len) in [
        ("the activation arena", plan.arena_len),
        ("the parameter buffer", plan.param_len),
    ] {
        let b = len as u64 * 4;
        if b > max_binding.min(max_buffer) {
            return Err(GpuError::TrainTooBig {
                model: model.name.clone(),
                batch,
                adapter,
                what: format!(
                    "{what} takes {b} bytes, more than the largest storage binding ({} bytes); try a smaller batch",
                    max_binding.min(max_buffer)
                ),
            });
        }
    }
    let max_groups = max_groups.min(gpu.limits.max_compute_workgroups_per_dimension);
    let all: Vec<&Dispatch> = plan.forward.iter().chain(&plan.backward).collect();
    let mut grids = Vec::with_capacity(all.len());
    let mut uniforms = vec![0u8; all.len().max(1) * SLOT as usize];
    for (i, d) in all.iter().enumerate() {
        let Some((g, xs)) = grid(d.kind, d.n, max_groups) else {
            return Err(GpuError::TrainTooBig {
                model: model.name.clone(),
                batch,
                adapter,
                what: format!(
                    "`{}` needs more workgroups than the adapter allows",
                    d.label
                ),
            });
        };
        grids.push(g);
        let mut w = d.words.clone();
        w[1] = xs;
        uniforms[i * SLOT as usize..][..w.len() * 4].copy_from_slice(bytemuck::cast_slice(&w));
    }
    let Some((update_grid, update_xs)) = grid(Kind::Update, plan.param_len as u32, max_groups)
    else {
        return Err(GpuError::TrainTooBig {
            model: model.name.clone(),
            batch,
            adapter,
            what: "the update needs more workgroups than the adapter allows".into(),
        });
    };

    Ok((grids, uniforms, (update_grid, update_xs)))
}

/// Two bit masks over the flat parameter buffer: trainable, then weight decay.
fn update_masks(plan: &TrainPlan, update: Option<&Update>) -> Vec<u32> {
    let words = plan.param_len.div_ceil(32);
    let mut mask = vec![0u32; 2 * words.max(1)];
    for (i, (p, &at)) in plan.params.iter().zip(&plan.offsets).enumerate() {
        let decay = update.is_some_and(|u| u.decay[i]);
        for e in at..at + p.numel() {
            if p.trainable {
                mask[e / 32] |= 1 << (e % 32);
            }
            if p.trainable && decay {
                mask[words + e / 32] |= 1 << (e % 32);
            }
        }
    }
    mask
}

/// The bind group layouts: the step's (params, grads, arena, a uniform at a
/// dynamic offset) and the update's.
fn layouts(dev: &wgpu::Device) -> (wgpu::BindGroupLayout, wgpu::BindGroupLayout) {
    let entry = |binding, ty| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty,
        count: None,
    };
    let rw = |read_only| wgpu::BindingType::Buffer {
        ty: wgpu::BufferBindingType::Storage { read_only },
        has_dynamic_offset: false,
        min_binding_size: None,
    };
    let uni = |dynamic| wgpu::BindingType::Buffer {
        ty: wgpu::BufferBindingType::Uniform,
        has_dynamic_offset: dynamic,
        min_binding_size: None,
    };
    let main_layout = dev.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("train"),
        entries: &[
            entry(0, rw(false)),
            entry(1, rw(false)),
            entry(2, rw(false)),
            entry(3, uni(true)),
        ],
    });
    let update_layout = dev.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("update"),
        entries: &[
            entry(0, rw(false)),
            entry(1, rw(false)),
            entry(2, rw(false)),
            entry(3, rw(false)),
            entry(4, rw(false)),
            entry(5, rw(true)),
            entry(6, uni(false)),
        ],
    });
    (main_layout, update_layout)
}

/// One validated pipeline per kernel kind (shapes come from the uniforms).
fn pipelines(
    dev: &wgpu::Device,
    main_layout: &wgpu::BindGroupLayout,
    update_layout: &wgpu::BindGroupLayout,
) -> Result<HashMap<Kind, wgpu::ComputePipeline>, GpuError> {
    let mut pipelines = HashMap::new();
    for kind in Kind::ALL {
        let source = kind.source();
        effc_wgsl::validate(&source).map_err(|message| effc_wgsl::CompileError {
            kernel: kind.name().to_string(),
            message,
        })?;
        let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kind.name()),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let layout = dev.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(kind.name()),
            bind_group_layouts: &[Some(if kind == Kind::Update {
                update_layout
            } else {
                main_layout
            })],
            immediate_size: 0,
        });
        let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kind.name()),
            layout: Some(&layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        pipelines.insert(kind, pipeline);
    }
    Ok(pipelines)
}

/// The step's bind group (params, grads, arena, the uniforms at a dynamic
/// offset) and the update's (params, grads, two optimizer states, EMA, masks,
/// its uniform).
fn bind_groups(
    dev: &wgpu::Device,
    (main_layout, update_layout): (&wgpu::BindGroupLayout, &wgpu::BindGroupLayout),
    [prm, grd, arena, uniform]: [&wgpu::Buffer; 4],
    [s1, s2, ema, mask_buf, update_uniform]: [&wgpu::Buffer; 5],
) -> (wgpu::BindGroup, wgpu::BindGroup) {
    fn whole(b: &wgpu::Buffer) -> wgpu::BindingResource<'_> {
        b.as_entire_binding()
    }
    let main_group = dev.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("train"),
        layout: main_layout,
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: whole(prm),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: whole(grd),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: whole(arena),
            },
            wgpu::BindGroupEntry {
                binding: 3,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: uniform,
                    offset: 0,
                    size: wgpu::BufferSize::new(SLOT),
                }),
            },
        ],
    });
    let update_group = dev.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("update"),
        layout: update_layout,
        entries: &[
            (0, prm),
            (1, grd),
            (2, s1),
            (3, s2),
            (4, ema),
            (5, mask_buf),
            (6, update_uniform),
        ]
        .map(|(binding, b)| wgpu::BindGroupEntry {
            binding,
            resource: whole(b),
        }),
    });
    (main_group, update_group)
}

impl GpuTrainer {
    /// Plans the step of `model` at `batch` images and creates it on `gpu`,
    /// starting from `values` (every tensor of `Model::params`, in order, f32),
    /// with `update` run by [`GpuTrainer::step`] when it is given a learning rate.
    pub fn new(
        gpu: Arc<Gpu>,
        model: &Model,
        values: &[Vec<f32>],
        batch: usize,
        cfg: &StepConfig,
        update: Option<Update>,
    ) -> Result<GpuTrainer, GpuError> {
        let max = gpu.limits.max_compute_workgroups_per_dimension;
        Self::with_workgroup_limit(gpu, model, values, batch, cfg, update, max)
    }

    /// [`GpuTrainer::new`] with at most `max_groups` workgroups per grid
    /// dimension (at most the adapter's): tests force 2-D grids with it.
    #[doc(hidden)]
    pub fn with_workgroup_limit(
        gpu: Arc<Gpu>,
        model: &Model,
        values: &[Vec<f32>],
        batch: usize,
        cfg: &StepConfig,
        update: Option<Update>,
        max_groups: u32,
    ) -> Result<GpuTrainer, GpuError> {
        let plan = plan(
            model,
            batch,
            &PlanConfig {
                bn_momentum: cfg.bn_momentum,
                dropout: cfg.dropout,
                drop_path: cfg.drop_path,
            },
        )
        .map_err(|e| GpuError::TrainUnsupported(e.0))?;
        check_values(model, &plan, values, update.as_ref())?;
        let (grids, uniforms, (update_grid, update_xs)) =
            dispatch_grids(&gpu, model, batch, &plan, max_groups)?;
        let param_len = plan.param_len;

        let dev = &gpu.device;
        let storage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC;
        let buffer = |label: &str, len: usize, usage| {
            dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (len.max(1) * 4) as u64,
                usage,
                mapped_at_creation: false,
            })
        };
        let flat: Vec<f32> = values.iter().flatten().copied().collect();
        let prm = buffer("train params", param_len, storage);
        gpu.queue.write_buffer(&prm, 0, bytes(&flat));
        let grd = buffer("train grads", param_len, storage);
        let arena = buffer("train arena", plan.arena_len, storage);
        let state_len = |n: usize| if update.is_some() { param_len } else { n };
        let s1 = buffer("optimizer state 1", state_len(1), storage);
        let s2 = buffer("optimizer state 2", state_len(1), storage);
        if let Some(Update {
            rule: Rule::RmsPropTf { .. },
            ..
        }) = &update
        {
            // RMSpropTF's mean square starts at 1.
            gpu.queue.write_buffer(&s1, 0, bytes(&vec![1.0; param_len]));
        }
        let ema_on = update.as_ref().is_some_and(|u| u.ema.is_some());
        let ema = buffer("ema", if ema_on { param_len } else { 1 }, storage);
        if ema_on {
            gpu.queue.write_buffer(&ema, 0, bytes(&flat));
        }
        let mask = update_masks(&plan, update.as_ref());
        let mask_buf = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("update masks"),
            size: (mask.len() * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.queue
            .write_buffer(&mask_buf, 0, bytemuck::cast_slice(&mask));
        let uniform = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("train uniforms"),
            size: uniforms.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.queue.write_buffer(&uniform, 0, &uniforms);
        let update_uniform = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("update uniform"),
            size: SLOT,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let loss_staging = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("loss read-back"),
            size: (batch * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });

        let (main_layout, update_layout) = layouts(dev);
        let (main_group, update_group) = bind_groups(
            dev,
            (&main_layout, &update_layout),
            [&prm, &grd, &arena, &uniform],
            [&s1, &s2, &ema, &mask_buf, &update_uniform],
        );
        let pipelines = pipelines(dev, &main_layout, &update_layout)?;
        gpu.check("creating the training step")?;
        Ok(GpuTrainer {
            resolution: model.resolution,
            label_smoothing: cfg.label_smoothing,
            gpu,
            plan,
            update,
            steps: 0,
            prm,
            grd,
            arena,
            s1,
            s2,
            ema,
            update_uniform,
            loss_staging,
            main_group,
            update_group,
            pipelines,
            grids,
            update_grid,
            update_xs,
            scratch: vec![],
        })
    }

    pub fn plan(&self) -> &TrainPlan {
        &self.plan
    }

    /// Optimizer steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One step on `input` (NCHW, the planned batch at the model's resolution)
    /// against `target`: forward in train mode (BN running statistics updated),
    /// backward into the gradient buffer, and with `lr` the optimizer update.
    /// Drop-path and dropout masks are drawn from `rng` as the reference draws
    /// them. Returns the mean loss over the batch.
    pub fn step(
        &mut self,
        input: &[f32],
        target: Target<f32>,
        rng: &mut Rng,
        lr: Option<f64>,
    ) -> Result<f64, GpuError> {
        let (n, res) = (self.plan.batch, self.resolution);
        let expected = n * 3 * res * res;
        if input.len() != expected {
            return Err(GpuError::InputShape {
                got: input.len(),
                expected,
                batch: n,
                shape: format!("3x{res}x{res}"),
            });
        }
        if lr.is_some() && self.update.is_none() {
            return Err(GpuError::TrainUnsupported(
                "a learning rate was given to a trainer created without an optimizer".into(),
            ));
        }
        let target_values = self.target(target)?;
        let queue = &self.gpu.queue;
        // NCHW → NHWC.
        let hw = res * res;
        self.scratch.clear();
        self.scratch.resize(expected, 0.0);
        for img in 0..n {
            for c in 0..3 {
                for px in 0..hw {
                    self.scratch[(img * hw + px) * 3 + c] = input[(img * 3 + c) * hw + px];
                }
            }
        }
        queue.write_buffer(
            &self.arena,
            (self.plan.input * 4) as u64,
            bytes(&self.scratch),
        );
        queue.write_buffer(
            &self.arena,
            (self.plan.target * 4) as u64,
            bytes(&target_values),
        );
        for slot in &self.plan.masks {
            let keep = 1.0 - slot.rate;
            self.scratch.clear();
            self.scratch.extend((0..slot.count).map(|_| {
                if rng.bernoulli(keep) {
                    (1.0 / keep) as f32
                } else {
                    0.0
                }
            }));
            queue.write_buffer(&self.arena, (slot.offset * 4) as u64, bytes(&self.scratch));
        }
        let mut encoder = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("train step"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward and backward"),
                timestamp_writes: None,
            });
            let all = self.plan.forward.iter().chain(&self.plan.backward);
            for (i, (d, g)) in all.zip(&self.grids).enumerate() {
                if d.n == 0 {
                    continue;
                }
                pass.set_pipeline(&self.pipelines[&d.kind]);
                pass.set_bind_group(0, &self.main_group, &[(i as u64 * SLOT) as u32]);
                pass.dispatch_workgroups(g[0], g[1], 1);
            }
            if let Some(lr) = lr {
                self.record_update(&mut pass, lr);
            }
        }
        encoder.copy_buffer_to_buffer(
            &self.arena,
            (self.plan.loss * 4) as u64,
            &self.loss_staging,
            0,
            (n * 4) as u64,
        );
        self.gpu.queue.submit([encoder.finish()]);
        let losses: Vec<f32> = self.gpu.read_back(
            &self.loss_staging,
            (n * 4) as u64,
            "a training step",
            "the loss",
        )?;
        Ok(losses.iter().map(|&l| l as f64).sum::<f64>() / n as f64)
    }

    /// Times every forward and backward dispatch of one step alone (each in
    /// its own submission, waited for; on the last batch written), summed per
    /// kernel kind: `(kind, seconds, dispatches)`, slowest first. Wall-clock,
    /// so meaningful where a submission's overhead is small next to a kernel
    /// (lavapipe); the state changes as a step's would.
    pub fn profile_kinds(&mut self) -> Result<Vec<(Kind, f64, usize)>, GpuError> {
        let mut by: HashMap<Kind, (f64, usize)> = HashMap::new();
        for (_, kind, secs) in self.time_each()? {
            let e = by.entry(kind).or_default();
            e.0 += secs;
            e.1 += 1;
        }
        let mut v: Vec<(Kind, f64, usize)> = by.into_iter().map(|(k, (t, n))| (k, t, n)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(v)
    }

    /// [`GpuTrainer::profile_kinds`] per pass: every forward and backward
    /// dispatch alone and, with `lr` and an optimizer, the update at `lr`
    /// (an optimizer step: the state changes as a step's would), summed per
    /// (pass, kind): `(pass, kind, seconds, dispatches)`, in pass order, each
    /// pass's slowest kind first.
    pub fn profile_passes(
        &mut self,
        lr: Option<f64>,
    ) -> Result<Vec<(Pass, Kind, f64, usize)>, GpuError> {
        let mut by: HashMap<(Pass, Kind), (f64, usize)> = HashMap::new();
        for (pass, kind, secs) in self.time_each()? {
            let e = by.entry((pass, kind)).or_default();
            e.0 += secs;
            e.1 += 1;
        }
        if let (Some(lr), true) = (lr, self.update.is_some()) {
            let started = std::time::Instant::now();
            let mut encoder =
                self.gpu
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("profile update"),
                    });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("profile update"),
                    timestamp_writes: None,
                });
                self.record_update(&mut pass, lr);
            }
            self.gpu.queue.submit([encoder.finish()]);
            self.gpu.wait("profiling the update")?;
            by.insert(
                (Pass::Update, Kind::Update),
                (started.elapsed().as_secs_f64(), 1),
            );
        }
        let mut v: Vec<(Pass, Kind, f64, usize)> = by
            .into_iter()
            .map(|((p, k), (t, n))| (p, k, t, n))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0).then(b.2.total_cmp(&a.2)));
        Ok(v)
    }

    /// Each non-empty forward and backward dispatch run alone, waited for:
    /// its pass, kind and wall-clock seconds.
    fn time_each(&mut self) -> Result<Vec<(Pass, Kind, f64)>, GpuError> {
        let forward = self.plan.forward.len();
        let all: Vec<&Dispatch> = self
            .plan
            .forward
            .iter()
            .chain(&self.plan.backward)
            .collect();
        let mut times = vec![];
        for (i, (d, g)) in all.iter().zip(&self.grids).enumerate() {
            if d.n == 0 {
                continue;
            }
            let started = std::time::Instant::now();
            let mut encoder =
                self.gpu
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("profile"),
                    });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("profile"),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&self.pipelines[&d.kind]);
                pass.set_bind_group(0, &self.main_group, &[(i as u64 * SLOT) as u32]);
                pass.dispatch_workgroups(g[0], g[1], 1);
            }
            self.gpu.queue.submit([encoder.finish()]);
            self.gpu.wait("profiling a training kernel")?;
            let pass = if i < forward {
                Pass::Forward
            } else {
                Pass::Backward
            };
            times.push((pass, d.kind, started.elapsed().as_secs_f64()));
        }
        Ok(times)
    }

    /// Bytes of device memory the trainer holds: the parameters, their
    /// gradients, the arena, the optimizer's two state buffers and the EMA
    /// (each a flat f32 buffer; one value where unused).
    pub fn device_bytes(&self) -> TrainMemory {
        let f = |n: usize| (n.max(1) * 4) as u64;
        let p = self.plan.param_len;
        let with_update = self.update.is_some();
        let ema = self.update.as_ref().is_some_and(|u| u.ema.is_some());
        TrainMemory {
            params: f(p),
            grads: f(p),
            arena: f(self.plan.arena_len),
            optimizer: 2 * f(if with_update { p } else { 1 }),
            ema: f(if ema { p } else { 1 }),
        }
    }

    /// Writes the update's uniform for the next optimizer step and records it.
    fn record_update(&mut self, pass: &mut wgpu::ComputePass, lr: f64) {
        let Some(u) = &self.update else { return };
        let t = (self.steps + 1) as f64;
        let f = |v: f64| (v as f32).to_bits();
        let (kind, momentum, nesterov, alpha, eps, beta1, beta2) = match u.rule {
            Rule::Sgd { momentum, nesterov } => {
                (optimizer::SGD, momentum, nesterov, 0.0, 0.0, 0.0, 0.0)
            }
            Rule::RmsPropTf {
                alpha,
                momentum,
                eps,
            } => (optimizer::RMSPROP_TF, momentum, false, alpha, eps, 0.0, 0.0),
            Rule::AdamW { beta1, beta2, eps } => {
                (optimizer::ADAMW, 0.0, false, 0.0, eps, beta1, beta2)
            }
        };
        let words = effc_wgsl::train::words(
            Kind::Update,
            self.plan.param_len as u32,
            &[
                ("kind", kind),
                ("first", u32::from(self.steps == 0)),
                ("lr", f(lr)),
                ("wd", f(u.weight_decay)),
                ("momentum", f(momentum)),
                ("nesterov", u32::from(nesterov)),
                ("alpha", f(alpha)),
                ("eps", f(eps)),
                ("beta1", f(beta1)),
                ("beta2", f(beta2)),
                ("c1", f(1.0 - beta1.powf(t))),
                ("c2", f((1.0 - beta2.powf(t)).sqrt())),
                ("ema_decay", f(u.ema.unwrap_or(0.0))),
                ("ema", u32::from(u.ema.is_some())),
                ("words", self.plan.param_len.div_ceil(32) as u32),
            ],
        );
        let mut w = words;
        w[1] = self.update_xs;
        self.gpu
            .queue
            .write_buffer(&self.update_uniform, 0, bytemuck::cast_slice(&w));
        pass.set_pipeline(&self.pipelines[&Kind::Update]);
        pass.set_bind_group(0, &self.update_group, &[]);
        pass.dispatch_workgroups(self.update_grid[0], self.update_grid[1], 1);
        self.steps += 1;
    }

    /// Runs only the optimizer update, on gradients given by the caller (one
    /// per tensor of `Model::params`; empty ones, as for running statistics,
    /// are zero): the update kernel on gradients from elsewhere.
    pub fn apply_gradients(&mut self, grads: &[Vec<f32>], lr: f64) -> Result<(), GpuError> {
        if self.update.is_none() {
            return Err(GpuError::TrainUnsupported(
                "gradients were given to a trainer created without an optimizer".into(),
            ));
        }
        let params = &self.plan.params;
        if grads.len() != params.len()
            || params
                .iter()
                .zip(grads)
                .any(|(p, g)| !g.is_empty() && g.len() != p.numel())
        {
            return Err(GpuError::TrainUnsupported(
                "the gradients do not have the model's tensors and sizes".into(),
            ));
        }
        self.scratch.clear();
        for (p, g) in params.iter().zip(grads) {
            if g.is_empty() {
                self.scratch.extend(std::iter::repeat_n(0.0, p.numel()));
            } else {
                self.scratch.extend_from_slice(g);
            }
        }
        self.gpu
            .queue
            .write_buffer(&self.grd, 0, bytes(&self.scratch));
        let mut encoder = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("update"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("update"),
                timestamp_writes: None,
            });
            self.record_update(&mut pass, lr);
        }
        self.gpu.queue.submit([encoder.finish()]);
        self.gpu.wait("an optimizer update")
    }

    /// How many state buffers the rule keeps per tensor, as effc-train does.
    fn state_buffers(&self) -> usize {
        match self.update.as_ref().map(|u| u.rule) {
            Some(Rule::Sgd { momentum, .. }) if momentum != 0.0 => 1,
            Some(Rule::Sgd { .. }) | None => 0,
            Some(_) => 2,
        }
    }

    /// The optimizer's state in effc-train's layout (`Optimizer::state`): per
    /// tensor SGD `[momentum]` (none without momentum), RMSpropTF `[square
    /// mean, momentum]`, AdamW `[m, v]`; empty for tensors without gradients
    /// and before the first step. With [`GpuTrainer::steps`], what a
    /// checkpoint holds of the optimizer.
    pub fn optimizer_state(&self) -> Result<Vec<Vec<Vec<f32>>>, GpuError> {
        let k = if self.steps == 0 {
            0
        } else {
            self.state_buffers()
        };
        let mut bufs = vec![];
        for b in [&self.s1, &self.s2].into_iter().take(k) {
            let flat = self.read(b, 0, self.plan.param_len, "the optimizer state")?;
            bufs.push(self.split(flat, false));
        }
        Ok(self
            .plan
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if p.trainable {
                    bufs.iter().map(|b| b[i].clone()).collect()
                } else {
                    vec![]
                }
            })
            .collect())
    }

    /// Restores the optimizer's state (as [`GpuTrainer::optimizer_state`] gives
    /// it, or effc-train's `Optimizer::state`) after `steps` steps: a resumed
    /// run continues as the uninterrupted one.
    pub fn set_optimizer_state(
        &mut self,
        state: &[Vec<Vec<f32>>],
        steps: u64,
    ) -> Result<(), GpuError> {
        if self.update.is_none() {
            return Err(GpuError::TrainUnsupported(
                "optimizer state was given to a trainer created without an optimizer".into(),
            ));
        }
        let k = if steps == 0 { 0 } else { self.state_buffers() };
        let params = &self.plan.params;
        let bad = |why: String| {
            Err(GpuError::TrainUnsupported(format!(
                "the optimizer state does not fit: {why}"
            )))
        };
        if state.len() != params.len() {
            return bad(format!(
                "{} tensors, the model has {}",
                state.len(),
                params.len()
            ));
        }
        for (p, s) in params.iter().zip(state) {
            let want = if p.trainable { k } else { 0 };
            if s.len() != want || s.iter().any(|b| b.len() != p.numel()) {
                return bad(format!(
                    "`{}` has {} buffers (of {:?} values), needs {want} of {}",
                    p.name,
                    s.len(),
                    s.iter().map(Vec::len).collect::<Vec<_>>(),
                    p.numel()
                ));
            }
        }
        let initial = match self.update.as_ref().map(|u| u.rule) {
            Some(Rule::RmsPropTf { .. }) => [1.0, 0.0],
            _ => [0.0, 0.0],
        };
        let used = self.state_buffers();
        for (j, buffer) in [&self.s1, &self.s2].into_iter().enumerate().take(used) {
            self.scratch.clear();
            for (p, s) in params.iter().zip(state) {
                match s.get(j) {
                    Some(b) => self.scratch.extend_from_slice(b),
                    None => self
                        .scratch
                        .extend(std::iter::repeat_n(initial[j], p.numel())),
                }
            }
            self.gpu.queue.write_buffer(buffer, 0, bytes(&self.scratch));
        }
        self.steps = steps;
        self.gpu.wait("restoring the optimizer state")
    }

    /// Replaces every tensor (weights and running statistics, `Model::params`
    /// order), as a checkpoint or another stage gives them.
    pub fn set_params(&mut self, values: &[Vec<f32>]) -> Result<(), GpuError> {
        self.write_all(values, false)
    }

    /// Replaces the EMA's values (when it is kept).
    pub fn set_ema(&mut self, values: &[Vec<f32>]) -> Result<(), GpuError> {
        if self.update.as_ref().is_none_or(|u| u.ema.is_none()) {
            return Err(GpuError::TrainUnsupported(
                "EMA values were given to a trainer that keeps no EMA".into(),
            ));
        }
        self.write_all(values, true)
    }

    fn write_all(&mut self, values: &[Vec<f32>], ema: bool) -> Result<(), GpuError> {
        let params = &self.plan.params;
        if values.len() != params.len()
            || params.iter().zip(values).any(|(p, v)| p.numel() != v.len())
        {
            return Err(GpuError::TrainUnsupported(format!(
                "the values do not fit model `{}`",
                self.plan.model
            )));
        }
        self.scratch.clear();
        for v in values {
            self.scratch.extend_from_slice(v);
        }
        let buffer = if ema { &self.ema } else { &self.prm };
        self.gpu.queue.write_buffer(buffer, 0, bytes(&self.scratch));
        self.gpu.wait("uploading training values")
    }

    /// The step's target distribution `[batch, classes]`: the labels' one-hot
    /// rows or the soft targets, smoothed as the reference does.
    fn target(&self, target: Target<f32>) -> Result<Vec<f32>, GpuError> {
        let (n, k) = (self.plan.batch, self.plan.classes);
        let s = self.label_smoothing;
        let smooth = |t: f64| ((1.0 - s) * t + s / k as f64) as f32;
        match target {
            Target::Labels(l) => {
                if l.len() != n {
                    return Err(GpuError::TargetSize {
                        expected: n,
                        got: l.len(),
                        what: "labels",
                    });
                }
                if let Some((image, &label)) = l.iter().enumerate().find(|(_, &l)| l >= k) {
                    return Err(GpuError::LabelOutOfRange {
                        image,
                        label,
                        classes: k,
                    });
                }
                Ok((0..n * k)
                    .map(|i| smooth(f64::from(u8::from(l[i / k] == i % k))))
                    .collect())
            }
            Target::Soft(t) => {
                if t.len() != n * k {
                    return Err(GpuError::TargetSize {
                        expected: n * k,
                        got: t.len(),
                        what: "soft-target values",
                    });
                }
                Ok(t.iter().map(|&v| smooth(v as f64)).collect())
            }
        }
    }

    fn read(
        &self,
        buffer: &wgpu::Buffer,
        offset: usize,
        len: usize,
        what: &str,
    ) -> Result<Vec<f32>, GpuError> {
        let size = (len.max(1) * 4) as u64;
        let staging = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("train read-back"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("train read-back"),
            });
        encoder.copy_buffer_to_buffer(buffer, (offset * 4) as u64, &staging, 0, size);
        self.gpu.queue.submit([encoder.finish()]);
        let mut v: Vec<f32> = self
            .gpu
            .read_back(&staging, size, "reading training state", what)?;
        v.truncate(len);
        Ok(v)
    }

    fn split(&self, flat: Vec<f32>, all: bool) -> Vec<Vec<f32>> {
        self.plan
            .params
            .iter()
            .zip(&self.plan.offsets)
            .map(|(p, &at)| {
                if all || p.trainable {
                    flat[at..at + p.numel()].to_vec()
                } else {
                    vec![]
                }
            })
            .collect()
    }

    /// Every tensor (weights and running statistics), in `Model::params` order.
    pub fn params(&self) -> Result<Vec<Vec<f32>>, GpuError> {
        let flat = self.read(&self.prm, 0, self.plan.param_len, "the parameters")?;
        Ok(self.split(flat, true))
    }

    /// The last step's gradients, aligned with `Model::params`; empty for BN
    /// running statistics (as the reference's).
    pub fn grads(&self) -> Result<Vec<Vec<f32>>, GpuError> {
        let flat = self.read(&self.grd, 0, self.plan.param_len, "the gradients")?;
        Ok(self.split(flat, false))
    }

    /// The weights' EMA, when kept.
    pub fn ema(&self) -> Result<Option<Vec<Vec<f32>>>, GpuError> {
        if self.update.as_ref().is_none_or(|u| u.ema.is_none()) {
            return Ok(None);
        }
        let flat = self.read(&self.ema, 0, self.plan.param_len, "the EMA")?;
        Ok(Some(self.split(flat, true)))
    }

    /// The last step's logits, `[batch, classes]`.
    pub fn logits(&self) -> Result<Vec<f32>, GpuError> {
        self.read(
            &self.arena,
            self.plan.logits,
            self.plan.batch * self.plan.classes,
            "the logits",
        )
    }
}
