//! `effc bench --device cpu`: effc's CPU backend (`effc-cpu`), its latency and
//! throughput and its per-kernel times. Threads: one per core, or
//! `RAYON_NUM_THREADS`.

use std::time::Instant;

use effc_cpu::CpuModel;
use effc_ir::Model;
use effc_runtime::median;
use effc_weights::Weights;
use serde::Serialize;

use super::{input, BenchRequest, Latency};
use crate::progress::Progress;
use crate::Error;

/// One kernel of the plan on the CPU backend: median of 5 profiled forwards.
#[derive(Clone, Debug, Serialize)]
pub struct CpuKernelRow {
    pub name: String,
    pub kind: &'static str,
    pub ms: f64,
    pub gflops: f64,
}

/// A benchmark on effc's CPU backend.
#[derive(Clone, Debug, Serialize)]
pub struct CpuBackendBench {
    pub model: String,
    pub batch: usize,
    pub resolution: usize,
    pub device: &'static str,
    pub threads: usize,
    /// The instruction set its kernels run on (`avx512`, `avx2`, `portable`).
    pub isa: &'static str,
    pub latency_ms: Latency,
    pub throughput: f64,
    /// Median per kernel over 5 profiled forwards.
    pub kernels: Vec<CpuKernelRow>,
    #[serde(skip)]
    pub runs: (usize, usize),
}

impl CpuBackendBench {
    /// Milliseconds per kernel kind, in the plan's order of first appearance.
    pub fn by_kind(&self) -> Vec<(&'static str, f64)> {
        let mut kinds: Vec<(&'static str, f64)> = vec![];
        for k in &self.kernels {
            match kinds.iter_mut().find(|(n, _)| *n == k.kind) {
                Some((_, ms)) => *ms += k.ms,
                None => kinds.push((k.kind, k.ms)),
            }
        }
        kinds
    }
}

pub(super) fn bench(
    req: &BenchRequest,
    model: &Model,
    weights: &Weights,
    progress: &dyn Progress,
) -> Result<CpuBackendBench, Error> {
    let cm = CpuModel::compile(model, weights.by_name(model), req.batch, 0)?;
    let x = input(req.batch * model.input.iter().product::<usize>());
    let mut out = vec![0.0; req.batch * cm.output_len()];
    progress.start((req.warmup + req.runs + 5) as u64);
    progress.message("timing effc's CPU backend");
    let mut times = Vec::with_capacity(req.runs);
    for i in 0..req.warmup + req.runs {
        let s = Instant::now();
        cm.forward_into(&x, req.batch, &mut out)?;
        if i >= req.warmup {
            times.push(s.elapsed().as_secs_f64() * 1e3);
        }
        progress.inc(1);
    }
    progress.message("timing kernels");
    let mut per_kernel: Vec<Vec<f64>> = vec![vec![]; cm.plan().kernels.len()];
    for _ in 0..5 {
        for (v, t) in per_kernel.iter_mut().zip(cm.profile(&x, req.batch)?) {
            v.push(t.time.as_secs_f64() * 1e3);
        }
        progress.inc(1);
    }
    progress.finish();
    let kernels = cm
        .plan()
        .kernels
        .iter()
        .zip(&mut per_kernel)
        .map(|(k, v)| {
            let ms = median(v);
            CpuKernelRow {
                name: k.name.clone(),
                kind: k.kind(),
                ms,
                gflops: (k.flops() * req.batch as u64) as f64 / (ms * 1e6),
            }
        })
        .collect();
    let lat = Latency::of(&times);
    Ok(CpuBackendBench {
        model: model.name.clone(),
        batch: req.batch,
        resolution: model.resolution,
        device: "cpu",
        threads: cm.threads(),
        isa: cm.isa().name(),
        throughput: req.batch as f64 / (lat.median / 1e3),
        latency_ms: lat,
        kernels,
        runs: (req.runs, req.warmup),
    })
}
