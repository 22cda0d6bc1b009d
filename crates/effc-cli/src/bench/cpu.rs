//! `effc bench --device cpu`: effc's CPU backend (`effc-cpu`), its latency and
//! throughput and its per-kernel times. Threads: one per core, or
//! `RAYON_NUM_THREADS`.

use std::process::ExitCode;
use std::time::Instant;

use effc_cpu::CpuModel;
use effc_runtime::median;
use effc_weights::Weights;
use serde::Serialize;

use super::{input, latency_line, Args, Latency};
use crate::output::outln;
use crate::Failure;

#[derive(Serialize)]
struct KernelRow {
    name: String,
    kind: &'static str,
    ms: f64,
    gflops: f64,
}

#[derive(Serialize)]
struct Report {
    model: String,
    batch: usize,
    resolution: usize,
    device: &'static str,
    threads: usize,
    latency_ms: Latency,
    throughput: f64,
    /// Median per kernel over 5 profiled forwards.
    kernels: Vec<KernelRow>,
}

pub(super) fn run(args: &Args, model: &effc_ir::Model) -> Result<ExitCode, Failure> {
    let weights = match &args.weights {
        Some(p) => Weights::load(p, model, None)?,
        None => Weights::random(model, 0),
    };
    let cm = CpuModel::compile(model, weights.by_name(model), args.batch, 0)?;
    let x = input(args.batch * model.input.iter().product::<usize>());
    let mut out = vec![0.0; args.batch * cm.output_len()];
    let bar = crate::common::progress_bar((args.warmup + args.runs + 5) as u64, args.json);
    bar.set_message("timing effc's CPU backend");
    let mut times = Vec::with_capacity(args.runs);
    for i in 0..args.warmup + args.runs {
        let s = Instant::now();
        cm.forward_into(&x, args.batch, &mut out)?;
        if i >= args.warmup {
            times.push(s.elapsed().as_secs_f64() * 1e3);
        }
        bar.inc(1);
    }
    bar.set_message("timing kernels");
    let mut per_kernel: Vec<Vec<f64>> = vec![vec![]; cm.plan().kernels.len()];
    for _ in 0..5 {
        for (v, t) in per_kernel.iter_mut().zip(cm.profile(&x, args.batch)?) {
            v.push(t.time.as_secs_f64() * 1e3);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let kernels: Vec<KernelRow> = cm
        .plan()
        .kernels
        .iter()
        .zip(&mut per_kernel)
        .map(|(k, v)| {
            let ms = median(v);
            KernelRow {
                name: k.name.clone(),
                kind: k.kind(),
                ms,
                gflops: (k.flops() * args.batch as u64) as f64 / (ms * 1e6),
            }
        })
        .collect();
    let lat = Latency {
        median: median(&mut times.clone()),
        min: times.iter().copied().fold(f64::INFINITY, f64::min),
        max: times.iter().copied().fold(0.0, f64::max),
    };
    let r = Report {
        model: model.name.clone(),
        batch: args.batch,
        resolution: model.resolution,
        device: "cpu",
        threads: cm.threads(),
        throughput: args.batch as f64 / (lat.median / 1e3),
        latency_ms: lat,
        kernels,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "effc bench {}: batch {}, {}x{}, on effc's CPU backend ({} threads)",
        r.model,
        r.batch,
        r.resolution,
        r.resolution,
        r.threads
    );
    latency_line(&r.latency_ms, args, r.throughput)?;
    // Per kind, then the slowest kernels.
    let mut kinds: Vec<(&str, f64)> = vec![];
    for k in &r.kernels {
        match kinds.iter_mut().find(|(n, _)| *n == k.kind) {
            Some((_, ms)) => *ms += k.ms,
            None => kinds.push((k.kind, k.ms)),
        }
    }
    let total: f64 = r.kernels.iter().map(|k| k.ms).sum();
    for (kind, ms) in &kinds {
        outln!(
            "  {kind:<11} {ms:>8.3} ms  {:>5.1}%",
            100.0 * ms / total.max(f64::MIN_POSITIVE)
        );
    }
    let mut slow: Vec<&KernelRow> = r.kernels.iter().collect();
    slow.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    outln!("slowest kernels:");
    for k in slow.iter().take(5) {
        outln!(
            "  {:<24} {:<11} {:>8.3} ms  {:>6.1} GFLOP/s",
            k.name,
            k.kind,
            k.ms,
            k.gflops
        );
    }
    Ok(ExitCode::SUCCESS)
}
