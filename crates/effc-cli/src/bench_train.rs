//! `effc bench MODEL --train`: one training step (forward in train mode,
//! backward, the optimizer update) of effc's GPU path (effc-runtime's
//! `GpuTrainer`) and of the CPU reference executor (its step and effc-train's
//! optimizer) on the same batch, alternating in one run; then the GPU step's
//! time per kernel kind and pass, each dispatch alone, and its device memory.
//! The recipe is `effc train`'s default: RMSpropTF at 0.016 per 256 images,
//! weight decay 1e-5 (timm's mask), label smoothing 0.1, the model's dropout
//! and drop path, no EMA.

use std::path::Path;
use std::time::Instant;

use effc_ir::Model;
use effc_reference::train::{step, Params, Rng, StepConfig, Target};
use effc_runtime::train::{GpuTrainer, Pass, TrainMemory, Update};
use effc_train::optim::{decay_mask, Kind, Optimizer};
use serde::Serialize;

use crate::common::ModelArgs;
use crate::output::outln;
use crate::{fail, Failure};

/// What `effc bench --train` takes from `effc bench`'s flags.
pub struct TrainArgs<'a> {
    pub model: &'a ModelArgs,
    pub weights: Option<&'a Path>,
    pub batch: usize,
    pub runs: usize,
    pub warmup: usize,
    pub json: bool,
}

/// Median, min and max of a set of times, in ms.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Times {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Times {
    fn of(secs: &[f64]) -> Times {
        let mut v: Vec<f64> = secs.iter().map(|s| s * 1e3).collect();
        v.sort_by(f64::total_cmp);
        Times {
            median: v[v.len() / 2],
            min: v[0],
            max: v[v.len() - 1],
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct KernelKind {
    pub pass: Pass,
    pub kind: &'static str,
    pub ms: f64,
    pub dispatches: usize,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Dispatches {
    pub forward: usize,
    pub backward: usize,
    pub update: usize,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Memory {
    #[serde(flatten)]
    pub buffers: TrainMemory,
    pub total: u64,
}

/// The report (`--json` prints it).
#[derive(Clone, Debug, Serialize)]
pub struct TrainBench {
    pub model: String,
    pub resolution: usize,
    pub batch: usize,
    pub adapter: String,
    pub optimizer: &'static str,
    pub runs: usize,
    pub warmup: usize,
    pub dispatches: Dispatches,
    /// Device memory of the GPU step, in bytes.
    pub memory: Memory,
    /// The GPU step, submitted and waited for (the loss read back).
    pub step_ms: Times,
    pub images_per_s: f64,
    /// The CPU reference executor's step and effc-train's optimizer.
    pub cpu_reference_ms: Times,
    pub cpu_reference_images_per_s: f64,
    /// GPU step time over the CPU reference's (median over median).
    pub gpu_over_cpu_time: f64,
    /// Each dispatch alone, wall-clock, summed per pass and kind.
    pub kernels: Vec<KernelKind>,
}

fn bad(e: impl std::fmt::Display) -> Failure {
    format!("effc bench --train: {e}").into()
}

fn model_of(args: &TrainArgs) -> Result<Model, Failure> {
    let model = args.model.request().resolve().map_err(fail)?.model;
    if model.classifier.is_none() {
        return Err(format!(
            "effc bench --train: `{}` has no classifier (classes = 0): give --classes N",
            model.name
        )
        .into());
    }
    Ok(model)
}

/// Runs the benchmark and prints its report.
pub fn run(args: &TrainArgs) -> Result<(), Failure> {
    let model = model_of(args)?;
    let weights = match args.weights {
        Some(w) => effc_weights::Weights::load(w, &model, None).map_err(bad)?,
        None => effc_weights::Weights::random(&model, 1),
    };
    let mut cpu = Params::<f32>::from_weights(&model, &weights).map_err(bad)?;
    let gpu = effc_driver::device::open_gpu().map_err(fail)?;
    let (n, res) = (args.batch, model.resolution);
    let cfg = StepConfig {
        label_smoothing: 0.1,
        ..StepConfig::default()
    };
    let kind = Kind::rmsprop_tf(None);
    let (wd, lr) = (1e-5, 0.016 * n as f64 / 256.0);
    let decay = decay_mask(&model.params(), false);
    let mut t = GpuTrainer::new(
        gpu.clone(),
        &model,
        cpu.values(),
        n,
        &cfg,
        Some(Update {
            rule: effc_driver::train::gpu::rule(kind),
            weight_decay: wd,
            decay: decay.clone(),
            ema: None,
        }),
    )
    .map_err(bad)?;
    let mut opt = Optimizer::<f32>::new(kind, wd, decay);
    let mut r = Rng::new(0);
    let input: Vec<f32> = (0..n * 3 * res * res)
        .map(|_| (r.uniform() * 2.0 - 1.0) as f32)
        .collect();
    let classes = model.classifier.as_ref().map_or(1, |c| c.out_features);
    let labels: Vec<usize> = (0..n).map(|i| i % classes).collect();
    let (mut tg, mut tc) = (vec![], vec![]);
    for i in 0..args.warmup + args.runs {
        let s = Instant::now();
        t.step(
            &input,
            Target::Labels(&labels),
            &mut Rng::new(i as u64),
            Some(lr),
        )
        .map_err(bad)?;
        let g = s.elapsed().as_secs_f64();
        let s = Instant::now();
        let out = step(
            &model,
            &mut cpu,
            &input,
            n,
            Target::Labels(&labels),
            &cfg,
            &mut Rng::new(i as u64),
        )
        .map_err(bad)?;
        opt.step(cpu.values_mut(), &out.grads, lr);
        let c = s.elapsed().as_secs_f64();
        if i >= args.warmup {
            tg.push(g);
            tc.push(c);
        }
    }
    let kernels = t
        .profile_passes(Some(lr))
        .map_err(bad)?
        .into_iter()
        .map(|(pass, k, secs, dispatches)| KernelKind {
            pass,
            kind: k.name(),
            ms: secs * 1e3,
            dispatches,
        })
        .collect();
    let plan = t.plan();
    let count = |d: &[effc_runtime::train::Dispatch]| d.iter().filter(|d| d.n > 0).count();
    let buffers = t.device_bytes();
    let (step_ms, cpu_ms) = (Times::of(&tg), Times::of(&tc));
    let report = TrainBench {
        model: model.name.clone(),
        resolution: res,
        batch: n,
        adapter: gpu.adapter.to_string(),
        optimizer: kind.name(),
        runs: args.runs,
        warmup: args.warmup,
        dispatches: Dispatches {
            forward: count(&plan.forward),
            backward: count(&plan.backward),
            update: 1,
        },
        memory: Memory {
            buffers,
            total: buffers.total(),
        },
        step_ms,
        images_per_s: n as f64 / (step_ms.median / 1e3),
        cpu_reference_ms: cpu_ms,
        cpu_reference_images_per_s: n as f64 / (cpu_ms.median / 1e3),
        gpu_over_cpu_time: step_ms.median / cpu_ms.median,
        kernels,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report)?;
    }
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

fn print(r: &TrainBench) -> Result<(), Failure> {
    let d = r.dispatches;
    outln!(
        "effc bench {} --train: batch {}, {}x{}, {} dispatches per step ({} forward, {} backward, {} update), {}",
        r.model,
        r.batch,
        r.resolution,
        r.resolution,
        d.forward + d.backward + d.update,
        d.forward,
        d.backward,
        d.update,
        r.optimizer
    );
    outln!("adapter     {}", r.adapter);
    let m = &r.memory.buffers;
    outln!(
        "memory      {:.2} MiB: parameters {:.2}, gradients {:.2}, activations {:.2}, optimizer {:.2}, EMA {:.2}",
        mib(r.memory.total),
        mib(m.params),
        mib(m.grads),
        mib(m.arena),
        mib(m.optimizer),
        mib(m.ema)
    );
    let line = |what: &str, t: &Times, ips: f64| -> Result<(), Failure> {
        outln!(
            "{what:<11} median {:.2} ms, min {:.2}, max {:.2} ({} steps after {} warm-up); {:.1} images/s",
            t.median,
            t.min,
            t.max,
            r.runs,
            r.warmup,
            ips
        );
        Ok(())
    };
    line("gpu step", &r.step_ms, r.images_per_s)?;
    line("cpu ref", &r.cpu_reference_ms, r.cpu_reference_images_per_s)?;
    outln!(
        "            GPU/CPU reference step time {:.2}x (same batch, alternating)",
        r.gpu_over_cpu_time
    );
    outln!();
    let total: f64 = r.kernels.iter().map(|k| k.ms).sum();
    outln!("kernels (each dispatch alone, wall-clock; {total:.2} ms in all):");
    outln!("  pass      kind            ms  dispatches  share");
    for k in &r.kernels {
        let pass = match k.pass {
            Pass::Forward => "forward",
            Pass::Backward => "backward",
            Pass::Update => "update",
        };
        outln!(
            "  {pass:<9} {:<12} {:>8.2}  {:>10}  {:>4.1}%",
            k.kind,
            k.ms,
            k.dispatches,
            100.0 * k.ms / total.max(1e-12)
        );
    }
    for pass in [Pass::Forward, Pass::Backward, Pass::Update] {
        let ms: f64 = r
            .kernels
            .iter()
            .filter(|k| k.pass == pass)
            .map(|k| k.ms)
            .sum();
        outln!(
            "  {:<9} {:<12} {ms:>8.2}  {:>10}  {:>4.1}%",
            format!("{pass:?}").to_lowercase(),
            "(all)",
            "",
            100.0 * ms / total.max(1e-12)
        );
    }
    Ok(())
}
