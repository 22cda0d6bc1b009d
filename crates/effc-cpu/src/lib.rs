//! effc's CPU backend: the fused kernel plan of [`effc_plan`] executed on the CPU.
//!
//! It runs the same kernels the WGSL backend generates (a GEMM with its prologue and
//! epilogue, depthwise with the SE pooling sums, the SE MLP, the head with its pool,
//! the classifier) on the same NHWC tensors with channels padded to 4, the same
//! packed, BN-folded weights ([`effc_plan::pack_weights`]) and the same memory plan:
//! one buffer per slot of the plan, sized once for one image: a batch runs one
//! image after another, each through the whole network while its activations
//! are in cache.
//! [`CpuModel::new`] allocates everything; a forward ([`CpuModel::forward_into`])
//! allocates nothing.
//!
//! The kernels are compiled for each instruction set the backend knows ([`Isa`]:
//! AVX-512F, AVX2 with FMA, WebAssembly SIMD128, and portable Rust that every
//! target builds) and the fastest one this CPU has is chosen when a model is
//! created ([`Isa::detect`]; `EFFC_CPU_ISA=avx512|avx2|simd128|portable` or
//! [`CpuModel::with_isa`] choose another).
//!
//! On wasm32 (the browser's fallback where WebGPU is missing, `effc-wasm`) a
//! forward runs on the calling thread alone, and [`CpuModel::profile`] is refused
//! (no clock).
//! A GEMM's B operand is repacked at creation into panels of 16 columns, the
//! layout its micro-kernel reads (12×32 tiles in AVX-512 registers, 6×16 in
//! AVX2's); its A operand is read in place (1x1 convs: the NHWC input's pixels
//! are its rows) or gathered per tile (kxk convs).
//!
//! Work is split over output tiles (a GEMM's rows of pixels, a depthwise conv's
//! output rows) of every image of the batch, on a rayon pool of its own with the
//! number of threads asked for. Tiles do not depend on the number of threads, so
//! results are bit-identical whatever it is (on one ISA: the portable kernels do not
//! fuse multiply-adds, so they round differently).
//!
//! Differences from the GPU's execution that do not change results beyond rounding:
//! pooling sums are kept per CPU tile and added into the first row of the plan's
//! partial-sum tensor (the SE and classifier kernels read that row), and the SE gate
//! scales the project GEMM's B operand per image instead of its A operand.
//!
//! f32 plans only; f16 plans and backbones (feature levels) are refused with a clear
//! error ([`CpuError::Unsupported`]).

mod kernels;
mod simd;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use effc_plan::{Plan, Precision, TensorId};
use thiserror::Error;

use crate::kernels::{Scratch, Shapes};
pub use crate::simd::Isa;

/// Everything that can go wrong on the CPU backend.
#[derive(Debug, Error, PartialEq)]
pub enum CpuError {
    /// The plan asks for something this backend does not execute yet.
    #[error("the CPU backend cannot run model `{model}` yet: {what}; use --device reference")]
    Unsupported { model: String, what: String },
    /// The weights do not match the plan (one packed vector per kernel).
    #[error("{what}: got {got}, expected {expected}")]
    Weights {
        what: String,
        got: usize,
        expected: usize,
    },
    /// Packing the checkpoint's tensors failed.
    #[error("{0}")]
    Pack(#[from] effc_plan::PackError),
    #[error("a batch of 0 images")]
    EmptyBatch,
    #[error("batch of {batch} images, but this model was created for at most {max}")]
    Batch { batch: usize, max: usize },
    #[error("input has {got} values, expected {expected} (NCHW f32, the batch's images one after another)")]
    InputShape { got: usize, expected: usize },
    #[error("output has room for {got} values, the batch needs {expected}")]
    OutputShape { got: usize, expected: usize },
    #[error("could not start the CPU backend's {threads} threads: {message}")]
    Threads { threads: usize, message: String },
    /// An instruction set was asked for that this CPU or build lacks.
    #[error("this CPU (or this build of effc) has no {isa} kernels; its best is {best}")]
    Isa { isa: Isa, best: Isa },
    #[error("EFFC_CPU_ISA={0:?}: expected avx512, avx2, simd128 or portable")]
    IsaName(String),
}

/// The ISA `EFFC_CPU_ISA` names, or the fastest this CPU has.
fn default_isa() -> Result<Isa, CpuError> {
    match std::env::var("EFFC_CPU_ISA") {
        Ok(name) if !name.is_empty() => Isa::from_name(&name).ok_or(CpuError::IsaName(name)),
        _ => Ok(Isa::detect()),
    }
}

/// How long one kernel of the plan took in a [`CpuModel::profile`] run.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    pub name: String,
    /// [`effc_plan::Kernel::kind`].
    pub kind: &'static str,
    pub time: Duration,
    /// Floating-point operations for the whole batch.
    pub flops: u64,
}

/// A model ready to run on the CPU: the plan, its packed weights and every buffer.
pub struct CpuModel {
    plan: Plan,
    weights: Vec<Vec<f32>>,
    /// Per kernel: a GEMM's B in the micro-kernel's panels (empty otherwise).
    panels: Vec<Vec<f32>>,
    isa: Isa,
    shapes: Vec<Shapes>,
    max_batch: usize,
    pool: Pool,
    threads: usize,
    state: Mutex<State>,
}

/// The threads a forward runs on: a rayon pool of the model's own, or on wasm32
/// (no threads in `wasm32-unknown-unknown`: building a pool fails there) the
/// calling thread alone, where rayon's global pool falls back to it.
enum Pool {
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    Own(rayon::ThreadPool),
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    Caller,
}

impl Pool {
    /// `threads` threads (0: one per core); on wasm32 always the caller's one.
    fn new(threads: usize) -> Result<Pool, CpuError> {
        if cfg!(target_arch = "wasm32") {
            return Ok(Pool::Caller);
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("effc-cpu-{i}"))
            .build()
            .map(Pool::Own)
            .map_err(|e| CpuError::Threads {
                threads,
                message: e.to_string(),
            })
    }

    fn threads(&self) -> usize {
        match self {
            Pool::Own(p) => p.current_num_threads(),
            Pool::Caller => 1,
        }
    }

    fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match self {
            Pool::Own(p) => p.install(f),
            Pool::Caller => f(),
        }
    }
}

/// The buffers a forward writes (one set per model; forwards take turns).
struct State {
    /// One buffer per slot of the memory plan, for one image (a batch runs
    /// one image after another).
    slots: Vec<Vec<f32>>,
    scratch: Scratch,
}

impl CpuModel {
    /// Plans `model`, packs its weights (`get` returns a checkpoint tensor by its
    /// effc canonical name, f32 in PyTorch layout) and creates it for at most
    /// `max_batch` images on `threads` threads (0: one per core).
    pub fn compile<'a>(
        model: &effc_ir::Model,
        get: impl Fn(&str) -> Option<&'a [f32]>,
        max_batch: usize,
        threads: usize,
    ) -> Result<CpuModel, CpuError> {
        let plan = effc_plan::plan(model);
        let weights = effc_plan::pack_weights(&plan, model, get)?;
        CpuModel::new(plan, weights, max_batch, threads)
    }

    /// Creates a model from a plan and its packed weights (one vector per kernel, in
    /// order, from [`effc_plan::pack_weights`]) for at most `max_batch` images on
    /// `threads` threads (0: one per core), on the fastest ISA this CPU has (or
    /// the one `EFFC_CPU_ISA` names). Allocates every buffer.
    pub fn new(
        plan: Plan,
        weights: Vec<Vec<f32>>,
        max_batch: usize,
        threads: usize,
    ) -> Result<CpuModel, CpuError> {
        CpuModel::with_isa(plan, weights, max_batch, threads, default_isa()?)
    }

    /// [`CpuModel::new`] with the kernels compiled for `isa` (refused if this CPU
    /// lacks it).
    pub fn with_isa(
        plan: Plan,
        weights: Vec<Vec<f32>>,
        max_batch: usize,
        threads: usize,
        isa: Isa,
    ) -> Result<CpuModel, CpuError> {
        if !isa.available() {
            return Err(CpuError::Isa {
                isa,
                best: Isa::detect(),
            });
        }
        let unsupported = |what: &str| CpuError::Unsupported {
            model: plan.model.clone(),
            what: what.to_string(),
        };
        if plan.precision != Precision::F32 {
            return Err(unsupported(
                "it executes f32 plans only, this one stores f16",
            ));
        }
        if !plan.features.is_empty() {
            return Err(unsupported(
                "it does not read a backbone's feature levels back",
            ));
        }
        if max_batch == 0 {
            return Err(CpuError::EmptyBatch);
        }
        if weights.len() != plan.kernels.len() {
            return Err(CpuError::Weights {
                what: format!("packed weight vectors of model `{}`", plan.model),
                got: weights.len(),
                expected: plan.kernels.len(),
            });
        }
        for (k, w) in plan.kernels.iter().zip(&weights) {
            if w.len() != k.weights_len {
                return Err(CpuError::Weights {
                    what: format!("packed weights of kernel `{}`", k.name),
                    got: w.len(),
                    expected: k.weights_len,
                });
            }
        }
        let pool = Pool::new(threads)?;
        let threads = pool.threads();
        let shapes: Vec<Shapes> = plan.kernels.iter().map(Shapes::of).collect();
        let panels = plan
            .kernels
            .iter()
            .zip(&weights)
            .map(|(k, w)| kernels::panels(k, w))
            .collect();
        let slots = plan
            .slots
            .iter()
            .map(|s| vec![0.0f32; s.bytes / 4])
            .collect();
        let scratch = Scratch::new(&plan, &shapes, 1, threads);
        Ok(CpuModel {
            plan,
            weights,
            panels,
            isa,
            shapes,
            max_batch,
            pool,
            threads,
            state: Mutex::new(State { slots, scratch }),
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// The instruction set the kernels run on.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Threads the forward runs on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Values per image in the output (classes, or the embedding).
    pub fn output_len(&self) -> usize {
        self.plan.output_len
    }

    /// Runs `batch` images (NCHW f32, one after another) and returns the outputs
    /// (`output_len` per image).
    pub fn forward(&self, input: &[f32], batch: usize) -> Result<Vec<f32>, CpuError> {
        let mut out = vec![0.0; batch * self.plan.output_len];
        self.forward_into(input, batch, &mut out)?;
        Ok(out)
    }

    /// [`CpuModel::forward`] into `out` (`batch · output_len` values): allocates
    /// nothing.
    pub fn forward_into(
        &self,
        input: &[f32],
        batch: usize,
        out: &mut [f32],
    ) -> Result<(), CpuError> {
        self.run(input, batch, out, None)
    }

    /// A forward of `batch` images that times every kernel.
    pub fn profile(&self, input: &[f32], batch: usize) -> Result<Vec<KernelTime>, CpuError> {
        if cfg!(target_arch = "wasm32") {
            return Err(CpuError::Unsupported {
                model: self.plan.model.clone(),
                what: "profiling on wasm32, which has no clock the standard library reads".into(),
            });
        }
        let mut out = vec![0.0; batch * self.plan.output_len];
        let mut times = Vec::with_capacity(self.plan.kernels.len());
        self.run(input, batch, &mut out, Some(&mut times))?;
        Ok(times
            .into_iter()
            .zip(&self.plan.kernels)
            .map(|(time, k)| KernelTime {
                name: k.name.clone(),
                kind: k.kind(),
                time,
                flops: k.flops() * batch as u64,
            })
            .collect())
    }

    fn check(&self, input: &[f32], batch: usize, out: &[f32]) -> Result<(), CpuError> {
        if batch == 0 {
            return Err(CpuError::EmptyBatch);
        }
        if batch > self.max_batch {
            return Err(CpuError::Batch {
                batch,
                max: self.max_batch,
            });
        }
        let expected = batch * self.plan.input_shape.iter().product::<usize>();
        if input.len() != expected {
            return Err(CpuError::InputShape {
                got: input.len(),
                expected,
            });
        }
        let expected = batch * self.plan.output_len;
        if out.len() != expected {
            return Err(CpuError::OutputShape {
                got: out.len(),
                expected,
            });
        }
        Ok(())
    }

    fn run(
        &self,
        input: &[f32],
        batch: usize,
        out: &mut [f32],
        mut times: Option<&mut Vec<Duration>>,
    ) -> Result<(), CpuError> {
        self.check(input, batch, out)?;
        // A forward that panicked leaves buffers that the next one overwrites.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let State { slots, scratch } = &mut *state;
        let plan = &self.plan;
        if let Some(t) = times.as_deref_mut() {
            t.clear();
            t.resize(plan.kernels.len(), Duration::ZERO);
        }
        let t = &plan.tensors[plan.output];
        let n = plan.output_len;
        let per_input = plan.input_shape.iter().product::<usize>();
        // One image at a time through the whole network: its activations stay
        // in cache from one kernel to the next (a batch's do not), and the
        // tasks of one image keep the threads busy.
        for (x, o) in input.chunks_exact(per_input).zip(out.chunks_exact_mut(n)) {
            self.pool.install(|| {
                kernels::load_input(plan, x, 1, &mut slots[self.slot(plan.input)]);
                let kernels = plan.kernels.iter().zip(&self.weights).zip(&self.panels);
                for (i, (((k, w), p), sh)) in kernels.zip(&self.shapes).enumerate() {
                    // Only when profiling: wasm32 has no clock (`Instant::now`
                    // panics there).
                    let start = times.is_some().then(Instant::now);
                    kernels::run(self.isa, plan, k, w, p, sh, slots, scratch, 1);
                    if let (Some(t), Some(start)) = (times.as_deref_mut(), start) {
                        t[i] += start.elapsed();
                    }
                }
            });
            o.copy_from_slice(&slots[t.slot.index()][..n]);
        }
        Ok(())
    }

    fn slot(&self, t: TensorId) -> usize {
        self.plan.tensors[t].slot.index()
    }
}
