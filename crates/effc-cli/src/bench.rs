//! `effc bench`: end-to-end latency, per-kernel times, and the adapter's GEMM ceiling.

mod cpu;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use effc_runtime::{median, CompiledModel, Gpu, KernelTiming};
use effc_weights::Weights;
use serde::Serialize;

use effc_driver::limits::{self, Budget, Need};
use effc_driver::{Chosen, Device};

use crate::common::ModelArgs;
use crate::output::outln;
use crate::{fail, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Images per forward.
    #[arg(long, default_value_t = 1, value_name = "N")]
    batch: usize,
    /// Timed forwards (after the warm-up).
    #[arg(long, default_value_t = 20, value_name = "N")]
    runs: usize,
    /// Untimed forwards first.
    #[arg(long, default_value_t = 3, value_name = "N")]
    warmup: usize,
    /// Real weights (default: random weights of the right shapes; timing does not depend on them).
    #[arg(long, short, value_name = "W")]
    weights: Option<PathBuf>,
    /// Time each kernel alone even when the adapter has timestamp queries.
    #[arg(long)]
    kernels_alone: bool,
    /// Use the cost model's tiles even where `effc tune` cached faster ones.
    #[arg(long)]
    untuned: bool,
    /// Also time the CPU reference executor on the same input.
    #[arg(long)]
    cpu: bool,
    /// Where to run: the GPU (default when a hardware adapter exists), effc's CPU
    /// backend (`cpu`, default otherwise; threads: one per core or RAYON_NUM_THREADS)
    /// or the CPU reference executor (`reference`); `gpu` also takes a software adapter.
    #[arg(long, value_name = "gpu|cpu|reference")]
    device: Option<Device>,
    /// Print JSON: `latency_ms` {median, min, max}, `kernels` [{name, kind, ms, gflops, gbps}], `roofline` {gemm_gflops}, ...
    #[arg(long)]
    json: bool,
    /// How weights and activations are stored on the GPU (f16: half the bytes,
    /// f32 sums); GB/s counts the bytes at this precision.
    #[arg(long, default_value = "f32", value_name = "f32|f16")]
    precision: effc_plan::Precision,
}

#[derive(Serialize)]
struct Latency {
    median: f64,
    min: f64,
    max: f64,
}

#[derive(Serialize)]
struct KernelRow {
    name: String,
    kind: &'static str,
    ms: f64,
    gflops: f64,
    gbps: f64,
    share: f64,
}

#[derive(Serialize)]
struct KindRow {
    kind: &'static str,
    kernels: usize,
    ms: f64,
    gflops: f64,
    gbps: f64,
    share: f64,
    /// Achieved GFLOP/s over the GEMM ceiling.
    of_ceiling: f64,
}

#[derive(Serialize)]
struct Roofline {
    gemm_gflops: f64,
    problem: &'static str,
}

#[derive(Serialize)]
struct Report {
    model: String,
    batch: usize,
    resolution: usize,
    adapter: String,
    /// Storage precision, and how f16 is spelled (`native`, `packed`) at f16.
    precision: String,
    weight_bytes: usize,
    activation_bytes_per_image: usize,
    dispatches: usize,
    /// Images per chunk: a batch larger than the activation buffers can bind runs
    /// in `chunks` chunks; `kernels` are the times of one chunk.
    chunk: usize,
    chunks: usize,
    /// Which tiles: the cost model's, or tuned on this adapter (`effc tune`).
    tiles: String,
    /// Kernels with tiles, and how many of them have tuned ones.
    tiled_kernels: usize,
    tuned_kernels: usize,
    compile_ms: f64,
    pipelines_ms: f64,
    latency_ms: Latency,
    throughput: f64,
    kernel_timing: &'static str,
    kernels: Vec<KernelRow>,
    by_kind: Vec<KindRow>,
    roofline: Roofline,
    cpu_reference_ms: Option<f64>,
}

fn input(n: usize) -> Vec<f32> {
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

/// Bytes a kernel reads and writes for `n` images: its tensors and its weights.
fn traffic(plan: &effc_plan::Plan, k: &effc_plan::Kernel, n: usize) -> f64 {
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

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    if args.batch == 0 || args.runs == 0 {
        return Err("--batch and --runs must be at least 1".into());
    }
    let model = args.model.resolve()?.model;
    // Sizes first: nothing is allocated for a model that cannot fit.
    let budget = Budget::host().map_err(fail)?;
    // Sized at the precision it runs at; tuned tiles change only the small
    // pooling-sum buffers, which the runtime's own fit check covers.
    let plan = effc_plan::plan_at(&model, args.precision);
    let checkpoint = match &args.weights {
        Some(p) => Some(effc_driver::files::input_size(
            p,
            effc_driver::files::Input::CHECKPOINT,
        )?),
        None => None,
    };
    let mut need = Need::default();
    need.extend(limits::weights(&model, checkpoint));
    let (w, b) = limits::inputs(&model, args.batch);
    need.add(w, b);
    let doing = format!(
        "benchmarking `{}` at batch {} ({}x{})",
        model.name, args.batch, model.resolution, model.resolution
    );
    need.check(&doing, &budget).map_err(fail)?;
    let choice = effc_driver::choose(args.device, args.precision).map_err(fail)?;
    eprintln!("note: {}", choice.note());
    let gpu = match choice {
        Chosen::Gpu { gpu, .. } => gpu,
        Chosen::Cpu { .. } if !model.is_backbone() => {
            need.extend(limits::cpu_executor(&model));
            need.check(&doing, &budget).map_err(fail)?;
            return cpu::run(&args, &model);
        }
        Chosen::Cpu { .. } | Chosen::Reference { .. } => {
            need.extend(limits::cpu_executor(&model));
            need.check(&doing, &budget).map_err(fail)?;
            return cpu_only(&args, &model);
        }
    };
    limits::check_gpu(&plan, args.batch, &gpu.adapter.to_string(), &gpu.limits).map_err(fail)?;
    need.extend(limits::gpu_host(
        &plan,
        args.batch,
        effc_driver::device::is_software(&gpu),
    ));
    if args.cpu {
        need.extend(limits::cpu_executor(&model));
    }
    need.check(&doing, &budget).map_err(fail)?;
    drop(plan);

    let steps = (args.warmup + args.runs + 12) as u64;
    let bar = crate::common::progress_bar(steps, args.json);
    let weights = match &args.weights {
        Some(p) => Weights::load(p, &model, None)?,
        None => Weights::random(&model, 0),
    };
    bar.set_message("compiling");
    let t = Instant::now();
    let (tuning, tiles) = crate::tune::cached(&gpu, args.untuned, &args.model.model);
    let plan = effc_plan::plan_with(&model, &tuning, args.precision);
    let (tuned_kernels, tiled_kernels) = effc_runtime::tune::coverage(&plan, &tuning);
    let shaders = gpu.shaders(&plan)?;
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let packed = effc_plan::pack_weights(&plan, &model, weights.by_name(&model))?;
    let t = Instant::now();
    let cm = CompiledModel::new(gpu.clone(), plan, &shaders, &packed, args.batch)?;
    let pipelines_ms = t.elapsed().as_secs_f64() * 1e3;
    bar.inc(1);

    let x = input(args.batch * model.input.iter().product::<usize>());
    cm.upload(&x, args.batch)?;
    bar.set_message("warming up");
    for _ in 0..args.warmup {
        cm.time_forward(args.batch)?;
        bar.inc(1);
    }
    bar.set_message("timing forwards");
    let mut times = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        times.push(cm.time_forward(args.batch)?);
        bar.inc(1);
    }
    let lat = Latency {
        median: median(&mut times.clone()),
        min: times.iter().copied().fold(f64::INFINITY, f64::min),
        max: times.iter().copied().fold(0.0, f64::max),
    };

    bar.set_message("timing kernels");
    let prefer = if args.kernels_alone {
        Some(KernelTiming::Alone)
    } else {
        None
    };
    let (timing, kms) = cm.time_kernels(args.batch, 5, prefer)?;
    bar.inc(5);

    bar.set_message("measuring the GEMM ceiling");
    let gemm_gflops = gemm_ceiling(gpu.clone())?;
    bar.inc(3);

    let cpu_reference_ms = if args.cpu {
        bar.set_message("timing the CPU reference");
        let ex = effc_reference::Executor::new(&model, &weights)?;
        ex.run(&x, args.batch)?;
        let mut t = vec![];
        for _ in 0..5 {
            let s = Instant::now();
            ex.run(&x, args.batch)?;
            t.push(s.elapsed().as_secs_f64() * 1e3);
        }
        Some(median(&mut t))
    } else {
        None
    };
    bar.finish_and_clear();

    let plan = cm.plan();
    // Kernels are timed on one chunk of `n` images; a forward of the whole batch
    // runs `chunks` of them.
    let n = args.batch.min(cm.chunk());
    let chunks = args.batch.div_ceil(n);
    let total: f64 = kms.iter().sum();
    let kernels: Vec<KernelRow> = plan
        .kernels
        .iter()
        .zip(&kms)
        .map(|(k, &ms)| KernelRow {
            name: k.name.clone(),
            kind: k.kind(),
            ms,
            gflops: k.flops() as f64 * n as f64 / (ms * 1e6),
            gbps: traffic(plan, k, n) / (ms * 1e6),
            share: ms / total,
        })
        .collect();
    let mut kinds: Vec<&'static str> = vec![];
    for k in &plan.kernels {
        if !kinds.contains(&k.kind()) {
            kinds.push(k.kind());
        }
    }
    let by_kind: Vec<KindRow> = kinds
        .into_iter()
        .map(|kind| {
            let ks: Vec<(&effc_plan::Kernel, f64)> = plan
                .kernels
                .iter()
                .zip(&kms)
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
        .collect();
    let report = Report {
        model: model.name.clone(),
        batch: args.batch,
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
        throughput: args.batch as f64 / (lat.median / 1e3),
        latency_ms: lat,
        kernel_timing: match timing {
            KernelTiming::Timestamps => "timestamps",
            KernelTiming::Alone => "alone",
        },
        kernels,
        by_kind,
        roofline: Roofline {
            gemm_gflops,
            problem: "1024x1024x1024 (effc's pointwise GEMM kernel)",
        },
        cpu_reference_ms,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let r = &report;
    outln!(
        "effc bench {}: batch {}, {}x{}, {} dispatches{}",
        r.model,
        r.batch,
        r.resolution,
        r.resolution,
        r.dispatches,
        if r.chunks > 1 {
            format!(" ({} chunks of at most {} images)", r.chunks, r.chunk)
        } else {
            String::new()
        }
    );
    outln!("adapter     {}", r.adapter);
    outln!(
        "precision   {}: weights {:.2} MiB, activations {:.2} MiB per image",
        r.precision,
        r.weight_bytes as f64 / 1048576.0,
        r.activation_bytes_per_image as f64 / 1048576.0
    );
    outln!(
        "tiles       {}{}",
        r.tiles,
        if r.tuned_kernels > 0 {
            format!(
                "; {} of {} tiled kernels tuned",
                r.tuned_kernels, r.tiled_kernels
            )
        } else {
            String::new()
        }
    );
    outln!(
        "compile     {:.1} ms (plan + WGSL + naga), pipelines and uploads {:.0} ms",
        r.compile_ms,
        r.pipelines_ms
    );
    latency_line(&r.latency_ms, &args, r.throughput)?;
    if let Some(c) = r.cpu_reference_ms {
        outln!(
            "cpu ref     median {c:.2} ms (reference executor, same input); GPU/CPU latency {:.2}x",
            r.latency_ms.median / c
        );
    }
    outln!(
        "ceiling     {:.2} GFLOP/s (effc's GEMM, {})",
        r.roofline.gemm_gflops,
        r.roofline.problem
    );
    outln!();
    if r.chunks > 1 {
        outln!(
            "kernels ({}, one chunk of {} of the {} images; a forward runs {} chunks: sum {:.2} ms per chunk, about {:.2} ms per forward):",
            r.kernel_timing,
            r.chunk,
            r.batch,
            r.chunks,
            total,
            total * r.batch as f64 / r.chunk as f64
        );
    } else {
        outln!("kernels ({}, sum {:.2} ms):", r.kernel_timing, total);
    }
    outln!(
        "{:<26} {:<11} {:>9} {:>9} {:>8} {:>6}",
        "kernel",
        "kind",
        "ms",
        "GFLOP/s",
        "GB/s",
        "share"
    );
    for k in &r.kernels {
        outln!(
            "{:<26} {:<11} {:>9.3} {:>9.2} {:>8.2} {:>5.1}%",
            k.name,
            k.kind,
            k.ms,
            k.gflops,
            k.gbps,
            k.share * 100.0
        );
    }
    outln!();
    outln!(
        "{:<11} {:>7} {:>9} {:>9} {:>8} {:>6} {:>9}",
        "kind",
        "kernels",
        "ms",
        "GFLOP/s",
        "GB/s",
        "share",
        "ceiling"
    );
    for k in &r.by_kind {
        outln!(
            "{:<11} {:>7} {:>9.3} {:>9.2} {:>8.2} {:>5.1}% {:>8.0}%",
            k.kind,
            k.kernels,
            k.ms,
            k.gflops,
            k.gbps,
            k.share * 100.0,
            k.of_ceiling * 100.0
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// GFLOP/s of effc's pointwise GEMM kernel on a square 1024 problem.
pub fn gemm_ceiling(gpu: Arc<Gpu>) -> Result<f64, Failure> {
    let plan = effc_plan::gemm_probe(1024, 1024, 1024);
    let shaders = effc_wgsl::compile(&plan)?;
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
    let a = input(1024 * 1024);
    cm.upload(&a, 1)?;
    cm.time_forward(1)?;
    let (_, ms) = cm.time_kernels(1, 3, None)?;
    let flops = 2.0 * 1024f64.powi(3);
    Ok(flops / (ms[0] * 1e6))
}

/// A rate with three significant digits: `123`, `12.3`, `0.0812`, never `0.0`.
fn significant(x: f64) -> String {
    if !x.is_finite() || x == 0.0 {
        return format!("{x}");
    }
    let digits = (2 - x.abs().log10().floor() as i32).max(0) as usize;
    format!("{x:.digits$}")
}

#[derive(Serialize)]
struct CpuReport {
    model: String,
    batch: usize,
    resolution: usize,
    device: &'static str,
    latency_ms: Latency,
    throughput: f64,
}

/// `effc bench` on the CPU reference executor: latency and throughput only.
fn cpu_only(args: &Args, model: &effc_ir::Model) -> Result<ExitCode, Failure> {
    let weights = match &args.weights {
        Some(p) => Weights::load(p, model, None)?,
        None => Weights::random(model, 0),
    };
    let ex = effc_reference::Executor::new(model, &weights)?;
    let x = input(args.batch * model.input.iter().product::<usize>());
    let bar = crate::common::progress_bar((args.warmup + args.runs) as u64, args.json);
    bar.set_message("timing the CPU reference");
    let mut times = Vec::with_capacity(args.runs);
    for i in 0..args.warmup + args.runs {
        let s = Instant::now();
        ex.run(&x, args.batch)?;
        if i >= args.warmup {
            times.push(s.elapsed().as_secs_f64() * 1e3);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let lat = Latency {
        median: median(&mut times.clone()),
        min: times.iter().copied().fold(f64::INFINITY, f64::min),
        max: times.iter().copied().fold(0.0, f64::max),
    };
    let r = CpuReport {
        model: model.name.clone(),
        batch: args.batch,
        resolution: model.resolution,
        device: "reference",
        throughput: args.batch as f64 / (lat.median / 1e3),
        latency_ms: lat,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "effc bench {}: batch {}, {}x{}, on the CPU reference executor",
        r.model,
        r.batch,
        r.resolution,
        r.resolution
    );
    latency_line(&r.latency_ms, args, r.throughput)?;
    outln!("(per-kernel times and the GEMM ceiling need a GPU: --device gpu takes a software adapter too)");
    Ok(ExitCode::SUCCESS)
}

/// The `latency` line, the same for both devices.
fn latency_line(l: &Latency, args: &Args, throughput: f64) -> Result<(), Failure> {
    outln!(
        "latency     median {:.2} ms, min {:.2}, max {:.2} ({} runs after {} warm-up); {} images/s",
        l.median,
        l.min,
        l.max,
        args.runs,
        args.warmup,
        significant(throughput)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::significant;

    #[test]
    fn rates_keep_three_significant_digits() {
        assert_eq!(significant(1234.4), "1234");
        assert_eq!(significant(12.345), "12.3");
        assert_eq!(significant(0.0812), "0.0812");
        assert_eq!(significant(0.000123), "0.000123");
    }
}
