//! `effc bench MODEL --train`: one training step (forward in train mode,
//! backward, the optimizer update) of effc's GPU path (effc-runtime's
//! `GpuTrainer`) and of the CPU reference executor (its step and effc-train's
//! optimizer) on the same batch, alternating in one run; then the GPU step's
//! time per kernel kind and pass, each dispatch alone, and its device memory.
//! The recipe is `effc train`'s default: RMSpropTF at 0.016 per 256 images,
//! weight decay 1e-5 (timm's mask), label smoothing 0.1, the model's dropout
//! and drop path, no EMA.

use std::path::PathBuf;
use std::time::Instant;

use effc_ir::Model;
use effc_reference::train::{step, Params, Rng, StepConfig, Target};
use effc_runtime::train::{Dispatch, GpuTrainer, Pass, TrainMemory, Update};
use effc_train::optim::{decay_mask, Kind, Optimizer};
use serde::Serialize;

use crate::{Error, ModelRequest};

/// A training-step benchmark: the model (random weights of its shapes unless
/// `weights` names a checkpoint), the batch and how many steps.
#[derive(Clone, Debug)]
pub struct TrainBenchRequest {
    pub model: ModelRequest,
    pub weights: Option<PathBuf>,
    pub batch: usize,
    /// Timed steps (at least one is taken).
    pub runs: usize,
    pub warmup: usize,
}

/// Median, min and max of a set of times, in ms.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Times {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Times {
    /// Of times in seconds (at least one).
    pub fn of(secs: &[f64]) -> Times {
        let mut v: Vec<f64> = secs.iter().map(|s| s * 1e3).collect();
        v.sort_by(f64::total_cmp);
        Times {
            median: v[v.len() / 2],
            min: v[0],
            max: v[v.len() - 1],
        }
    }
}

/// The GPU step's time in one pass for one kernel kind, each dispatch alone.
#[derive(Clone, Debug, Serialize)]
pub struct KernelKind {
    pub pass: Pass,
    pub kind: &'static str,
    pub ms: f64,
    pub dispatches: usize,
}

/// Dispatches of one GPU step, per pass.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Dispatches {
    pub forward: usize,
    pub backward: usize,
    pub update: usize,
}

/// Device memory of the GPU step, in bytes.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Memory {
    #[serde(flatten)]
    pub buffers: TrainMemory,
    pub total: u64,
}

/// The report (`effc bench --train --json` prints it).
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

fn bad(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("effc bench --train: {e}"))
}

/// The request's model, refused when it has no classifier to train.
fn model_of(request: &TrainBenchRequest) -> Result<Model, Error> {
    let model = request.model.resolve()?.model;
    if model.classifier.is_none() {
        return Err(Error::Usage(format!(
            "effc bench --train: `{}` has no classifier (classes = 0): give --classes N",
            model.name
        )));
    }
    Ok(model)
}

/// Times the GPU and the CPU reference step side by side and profiles the
/// GPU step's kernels.
pub fn train(request: &TrainBenchRequest) -> Result<TrainBench, Error> {
    let model = model_of(request)?;
    let weights = match &request.weights {
        Some(w) => effc_weights::Weights::load(w, &model, None).map_err(bad)?,
        None => effc_weights::Weights::random(&model, 1),
    };
    let mut cpu = Params::<f32>::from_weights(&model, &weights).map_err(bad)?;
    let gpu = crate::device::open_gpu()?;
    let (n, res) = (request.batch, model.resolution);
    let runs = request.runs.max(1);
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
            rule: crate::train::gpu::rule(kind),
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
    for i in 0..request.warmup + runs {
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
        if i >= request.warmup {
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
    let buffers = t.device_bytes();
    let (step_ms, cpu_ms) = (Times::of(&tg), Times::of(&tc));
    Ok(TrainBench {
        model: model.name.clone(),
        resolution: res,
        batch: n,
        adapter: gpu.adapter.to_string(),
        optimizer: kind.name(),
        runs,
        warmup: request.warmup,
        dispatches: Dispatches {
            forward: dispatched(&plan.forward),
            backward: dispatched(&plan.backward),
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
    })
}

/// Dispatches that run (a zero-sized one is skipped).
fn dispatched(d: &[Dispatch]) -> usize {
    d.iter().filter(|d| d.n > 0).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_the_median_min_and_max_in_ms() {
        let t = Times::of(&[0.003, 0.001, 0.002]);
        assert_eq!((t.median, t.min, t.max), (2.0, 1.0, 3.0));
        let t = Times::of(&[0.004]);
        assert_eq!((t.median, t.min, t.max), (4.0, 4.0, 4.0));
    }

    #[test]
    fn a_model_without_a_classifier_is_refused_before_the_gpu_opens() {
        let mut model = ModelRequest::from_arg("b0");
        model.options.classes = Some(0);
        let request = TrainBenchRequest {
            model,
            weights: None,
            batch: 1,
            runs: 1,
            warmup: 0,
        };
        match train(&request) {
            Err(Error::Usage(m)) => assert!(m.contains("has no classifier (classes = 0)"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
