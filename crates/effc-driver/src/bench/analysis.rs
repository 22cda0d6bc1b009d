//! What the measured kernel times mean: GFLOP/s from each kernel's FLOPs, GB/s
//! from its traffic (its tensors and weights at the plan's precision), totals by
//! kind against the GEMM ceiling.

use std::sync::Arc;

use effc_plan::{Kernel, Plan};
use effc_runtime::{CompiledModel, Gpu};
use serde::Serialize;

use crate::Error;

/// One kernel's time on one chunk.
#[derive(Clone, Debug, Serialize)]
pub struct KernelRow {
    pub name: String,
    pub kind: &'static str,
    pub ms: f64,
    pub gflops: f64,
    pub gbps: f64,
    pub share: f64,
}

/// The kernels of one kind together.
#[derive(Clone, Debug, Serialize)]
pub struct KindRow {
    pub kind: &'static str,
    pub kernels: usize,
    pub ms: f64,
    pub gflops: f64,
    pub gbps: f64,
    pub share: f64,
    /// Achieved GFLOP/s over the GEMM ceiling.
    pub of_ceiling: f64,
}

/// Bytes a kernel reads and writes for `n` images: its tensors and its weights.
pub(crate) fn traffic(plan: &Plan, k: &Kernel, n: usize) -> f64 {
    let t: usize = k
        .bindings
        .iter()
        .map(|b| {
            b.tensor
                .map_or(k.layout.bytes(), |t| plan.tensors[t].bytes * n)
        })
        .sum();
    t as f64
}

/// Each kernel's row from its time `kms[i]` on `n` images.
pub(crate) fn kernels(plan: &Plan, kms: &[f64], n: usize) -> Vec<KernelRow> {
    let total: f64 = kms.iter().sum();
    plan.kernels
        .iter()
        .zip(kms)
        .map(|(k, &ms)| KernelRow {
            name: k.name.clone(),
            kind: k.kind(),
            ms,
            gflops: k.flops() as f64 * n as f64 / (ms * 1e6),
            gbps: traffic(plan, k, n) / (ms * 1e6),
            share: ms / total,
        })
        .collect()
}

/// Per kind (in the order kinds first appear), the sums and the share of the
/// ceiling.
pub(crate) fn by_kind(plan: &Plan, kms: &[f64], n: usize, gemm_gflops: f64) -> Vec<KindRow> {
    let total: f64 = kms.iter().sum();
    let mut kinds: Vec<&'static str> = vec![];
    for k in &plan.kernels {
        if !kinds.contains(&k.kind()) {
            kinds.push(k.kind());
        }
    }
    kinds
        .into_iter()
        .map(|kind| {
            let ks: Vec<(&Kernel, f64)> = plan
                .kernels
                .iter()
                .zip(kms)
                .filter(|(k, _)| k.kind() == kind)
                .map(|(k, &t)| (k, t))
                .collect();
            let ms: f64 = ks.iter().map(|(_, t)| t).sum();
            let flops: f64 = ks.iter().map(|(k, _)| k.flops() as f64 * n as f64).sum();
            let bytes: f64 = ks.iter().map(|(k, _)| traffic(plan, k, n)).sum();
            let gflops = flops / (ms * 1e6);
            KindRow {
                kind,
                kernels: ks.len(),
                ms,
                gflops,
                gbps: bytes / (ms * 1e6),
                share: ms / total,
                of_ceiling: gflops / gemm_gflops,
            }
        })
        .collect()
}

/// GFLOP/s of effc's pointwise GEMM kernel on a square 1024 problem.
pub fn gemm_ceiling(gpu: Arc<Gpu>) -> Result<f64, Error> {
    let plan = effc_plan::gemm_probe(1024, 1024, 1024);
    let shaders = effc_wgsl::compile(&plan).map_err(|e| Error::Internal(e.to_string()))?;
    let weights: Vec<Vec<f32>> = plan
        .kernels
        .iter()
        .map(|k| {
            (0..k.weights_len)
                .map(|i| ((i % 7) as f32 - 3.0) * 0.01)
                .collect()
        })
        .collect();
    let cm = CompiledModel::new(gpu, plan, &shaders, &weights, 1)?;
    let a = super::input(1024 * 1024);
    cm.upload(&a, 1)?;
    cm.time_forward(1)?;
    let (_, ms) = cm.time_kernels(1, 3, None)?;
    let flops = 2.0 * 1024f64.powi(3);
    Ok(flops / (ms[0] * 1e6))
}
