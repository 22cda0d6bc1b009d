//! `effc bench`: end-to-end latency, per-kernel times (GFLOP/s, GB/s from the
//! plan's traffic), totals by kernel kind against the adapter's GEMM ceiling; on
//! the CPU reference executor, latency only.

mod analysis;
mod cpu;
pub mod train;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use effc_ir::Model;
use effc_runtime::{median, CompiledModel, Gpu, KernelTiming};
use effc_weights::Weights;
use serde::Serialize;

use crate::device::{Chosen, Device};
use crate::limits::{self, Budget, Need};
use crate::progress::Progress;
use crate::{Error, ModelRequest};

pub use analysis::{gemm_ceiling, KernelRow, KindRow};
pub use cpu::{CpuBackendBench, CpuKernelRow};

/// A benchmark: the model (with precision, tuning and optional weights; random
/// weights of the right shapes otherwise), where and how long.
#[derive(Clone, Debug)]
pub struct BenchRequest {
    pub model: ModelRequest,
    /// How the user named the model (for hints: `effc tune MODEL`).
    pub model_arg: String,
    pub device: Option<Device>,
    pub batch: usize,
    /// Timed forwards, after `warmup` untimed ones.
    pub runs: usize,
    pub warmup: usize,
    /// Time each kernel alone even where the adapter has timestamp queries.
    pub kernels_alone: bool,
    /// Also time the CPU reference executor on the same input.
    pub cpu: bool,
}

/// Milliseconds per forward.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Latency {
    fn of(times: &[f64]) -> Latency {
        Latency {
            median: median(&mut times.to_vec()),
            min: times.iter().copied().fold(f64::INFINITY, f64::min),
            max: times.iter().copied().fold(0.0, f64::max),
        }
    }
}

/// The adapter's ceiling: effc's own GEMM kernel on a square problem.
#[derive(Clone, Debug, Serialize)]
pub struct Roofline {
    pub gemm_gflops: f64,
    pub problem: &'static str,
}

/// A benchmark on a GPU.
#[derive(Clone, Debug, Serialize)]
pub struct GpuBench {
    pub model: String,
    pub batch: usize,
    pub resolution: usize,
    pub adapter: String,
    /// Storage precision, and how f16 is spelled (`native`, `packed`) at f16.
    pub precision: String,
    pub weight_bytes: usize,
    pub activation_bytes_per_image: usize,
    pub dispatches: usize,
    /// Images per chunk: a batch larger than the activation buffers can bind runs
    /// in `chunks` chunks; `kernels` are the times of one chunk.
    pub chunk: usize,
    pub chunks: usize,
    /// Which tiles: the cost model's, or tuned on this adapter (`effc tune`).
    pub tiles: String,
    /// Kernels with tiles, and how many of them have tuned ones.
    pub tiled_kernels: usize,
    pub tuned_kernels: usize,
    pub compile_ms: f64,
    pub pipelines_ms: f64,
    pub latency_ms: Latency,
    pub throughput: f64,
    pub kernel_timing: &'static str,
    pub kernels: Vec<KernelRow>,
    pub by_kind: Vec<KindRow>,
    pub roofline: Roofline,
    pub cpu_reference_ms: Option<f64>,
    /// Timed forwards and warm-ups.
    #[serde(skip)]
    pub runs: (usize, usize),
}

/// A benchmark on the CPU reference executor.
#[derive(Clone, Debug, Serialize)]
pub struct CpuBench {
    pub model: String,
    pub batch: usize,
    pub resolution: usize,
    pub device: &'static str,
    pub latency_ms: Latency,
    pub throughput: f64,
    #[serde(skip)]
    pub runs: (usize, usize),
}

/// What a benchmark measured, by device (serialized as the inner report).
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum BenchReport {
    Gpu(Box<GpuBench>),
    /// effc's CPU backend.
    CpuBackend(CpuBackendBench),
    /// The CPU reference executor.
    Cpu(CpuBench),
}

/// A fixed pseudo-random input in [-1, 1) (xorshift), the same every run.
pub(crate) fn input(n: usize) -> Vec<f32> {
    let mut x: u32 = 0x9e37_79b9;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

/// Runs the benchmark of `req`; `progress` hears the device chosen and each step.
pub fn bench(req: &BenchRequest, progress: &dyn Progress) -> Result<BenchReport, Error> {
    if req.batch == 0 || req.runs == 0 {
        return Err(Error::Usage("--batch and --runs must be at least 1".into()));
    }
    let model = req.model.resolve()?.model;
    let weights_path = req.model.weights.as_ref().map(|w| w.path.clone());
    let (choice, need, budget, doing) = choose_within_limits(req, &model, weights_path.as_ref())?;
    progress.note(choice.note());
    let load = || -> Result<Weights, Error> {
        Ok(match &weights_path {
            Some(p) => Weights::load(p, &model, None)?,
            None => Weights::random(&model, 0),
        })
    };
    match choice {
        Chosen::Cpu { .. } if !model.is_backbone() => {
            let mut need = need;
            need.extend(limits::cpu_executor(&model));
            need.check(&doing, &budget)?;
            cpu::bench(req, &model, &load()?, progress).map(BenchReport::CpuBackend)
        }
        Chosen::Cpu { .. } | Chosen::Reference { .. } => {
            let mut need = need;
            need.extend(limits::cpu_executor(&model));
            need.check(&doing, &budget)?;
            cpu_only(req, &model, &load()?, progress).map(BenchReport::Cpu)
        }
        Chosen::Gpu { gpu, .. } => {
            on_gpu(req, &model, &load()?, gpu, progress).map(|r| BenchReport::Gpu(Box::new(r)))
        }
    }
}

/// The host's and the adapter's limits checked before anything is allocated.
fn choose_within_limits(
    req: &BenchRequest,
    model: &Model,
    weights: Option<&PathBuf>,
) -> Result<(Chosen, Need, Budget, String), Error> {
    let budget = Budget::host()?;
    // Sized at the precision it runs at; tuned tiles change only the small
    // pooling-sum buffers, which the runtime's own fit check covers.
    let plan = effc_plan::plan_at(model, req.model.precision);
    let checkpoint = match weights {
        Some(p) => Some(crate::files::input_size(
            p,
            crate::files::Input::CHECKPOINT,
        )?),
        None => None,
    };
    let mut need = Need::default();
    need.extend(limits::weights(model, checkpoint));
    let (w, b) = limits::inputs(model, req.batch);
    need.add(w, b);
    let doing = format!(
        "benchmarking `{}` at batch {} ({}x{})",
        model.name, req.batch, model.resolution, model.resolution
    );
    need.check(&doing, &budget)?;
    let choice = crate::choose(req.device, req.model.precision)?;
    if let Chosen::Gpu { gpu, .. } = &choice {
        limits::check_gpu(&plan, req.batch, &gpu.adapter.to_string(), &gpu.limits)?;
        need.extend(limits::gpu_host(
            &plan,
            req.batch,
            crate::device::is_software(gpu),
        ));
        if req.cpu {
            need.extend(limits::cpu_executor(model));
        }
        need.check(&doing, &budget)?;
    }
    Ok((choice, need, budget, doing))
}

/// Compiles, times forwards and kernels, measures the ceiling.
fn on_gpu(
    req: &BenchRequest,
    model: &Model,
    weights: &Weights,
    gpu: Arc<Gpu>,
    progress: &dyn Progress,
) -> Result<GpuBench, Error> {
    progress.start((req.warmup + req.runs + 12) as u64);
    progress.message("compiling");
    let t = Instant::now();
    let (tuning, tiles) = crate::tuning::cached(&gpu, req.model.tuning, &req.model_arg, progress);
    let plan = effc_plan::plan_with(model, &tuning, req.model.precision);
    let (tuned_kernels, tiled_kernels) = effc_runtime::tune::coverage(&plan, &tuning);
    let shaders = gpu.shaders(&plan)?;
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let packed = effc_plan::pack_weights(&plan, model, weights.by_name(model))?;
    let t = Instant::now();
    let cm = CompiledModel::new(gpu.clone(), plan, &shaders, &packed, req.batch)?;
    let pipelines_ms = t.elapsed().as_secs_f64() * 1e3;
    progress.inc(1);

    let x = input(req.batch * model.input.iter().product::<usize>());
    cm.upload(&x, req.batch)?;
    progress.message("warming up");
    for _ in 0..req.warmup {
        cm.time_forward(req.batch)?;
        progress.inc(1);
    }
    progress.message("timing forwards");
    let mut times = Vec::with_capacity(req.runs);
    for _ in 0..req.runs {
        times.push(cm.time_forward(req.batch)?);
        progress.inc(1);
    }
    let lat = Latency::of(&times);
    progress.message("timing kernels");
    let prefer = req.kernels_alone.then_some(KernelTiming::Alone);
    let (timing, kms) = cm.time_kernels(req.batch, 5, prefer)?;
    progress.inc(5);
    progress.message("measuring the GEMM ceiling");
    let gemm_gflops = gemm_ceiling(gpu.clone())?;
    progress.inc(3);
    let cpu_reference_ms = if req.cpu {
        progress.message("timing the CPU reference");
        Some(time_cpu(model, weights, &x, req.batch, 1, 5, progress)?)
    } else {
        None
    };
    progress.finish();

    let plan = cm.plan();
    // Kernels are timed on one chunk of `n` images; a forward of the whole batch
    // runs `chunks` of them.
    let n = req.batch.min(cm.chunk());
    let chunks = req.batch.div_ceil(n);
    Ok(GpuBench {
        model: model.name.clone(),
        batch: req.batch,
        resolution: model.resolution,
        adapter: gpu.adapter.to_string(),
        precision: match cm.f16_spelling() {
            Some(s) => format!("{} ({})", plan.precision, s.name()),
            None => plan.precision.to_string(),
        },
        weight_bytes: plan.weight_bytes(),
        activation_bytes_per_image: plan.activation_bytes(1),
        dispatches: plan.dispatches() * chunks,
        chunk: n,
        chunks,
        tiles,
        tiled_kernels,
        tuned_kernels,
        compile_ms,
        pipelines_ms,
        throughput: req.batch as f64 / (lat.median / 1e3),
        latency_ms: lat,
        kernel_timing: match timing {
            KernelTiming::Timestamps => "timestamps",
            KernelTiming::Alone => "alone",
        },
        kernels: analysis::kernels(plan, &kms, n),
        by_kind: analysis::by_kind(plan, &kms, n, gemm_gflops),
        roofline: Roofline {
            gemm_gflops,
            problem: "1024x1024x1024 (effc's pointwise GEMM kernel)",
        },
        cpu_reference_ms,
        runs: (req.runs, req.warmup),
    })
}

/// The median of `runs` forwards of the reference executor after `warmup`.
fn time_cpu(
    model: &Model,
    weights: &Weights,
    x: &[f32],
    batch: usize,
    warmup: usize,
    runs: usize,
    progress: &dyn Progress,
) -> Result<f64, Error> {
    let ex = effc_reference::Executor::new(model, weights)?;
    let mut times = Vec::with_capacity(runs);
    for i in 0..warmup + runs {
        let s = Instant::now();
        ex.run(x, batch)?;
        if i >= warmup {
            times.push(s.elapsed().as_secs_f64() * 1e3);
        }
        progress.inc(1);
    }
    Ok(median(&mut times))
}

/// `effc bench` on the CPU reference executor: latency and throughput only.
fn cpu_only(
    req: &BenchRequest,
    model: &Model,
    weights: &Weights,
    progress: &dyn Progress,
) -> Result<CpuBench, Error> {
    let ex = effc_reference::Executor::new(model, weights)?;
    let x = input(req.batch * model.input.iter().product::<usize>());
    progress.start((req.warmup + req.runs) as u64);
    progress.message("timing the CPU reference");
    let mut times = Vec::with_capacity(req.runs);
    for i in 0..req.warmup + req.runs {
        let s = Instant::now();
        ex.run(&x, req.batch)?;
        if i >= req.warmup {
            times.push(s.elapsed().as_secs_f64() * 1e3);
        }
        progress.inc(1);
    }
    progress.finish();
    let lat = Latency::of(&times);
    Ok(CpuBench {
        model: model.name.clone(),
        batch: req.batch,
        resolution: model.resolution,
        device: "reference",
        throughput: req.batch as f64 / (lat.median / 1e3),
        latency_ms: lat,
        runs: (req.runs, req.warmup),
    })
}
