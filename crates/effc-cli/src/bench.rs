//! `effc bench`: the arguments of [`effc_driver::bench`], and its report printed:
//! end-to-end latency, every kernel, totals by kind against the GEMM ceiling.

use std::path::PathBuf;
use std::process::ExitCode;

use effc_driver::bench::{BenchReport, BenchRequest, CpuBackendBench, CpuBench, GpuBench, Latency};
use effc_driver::{Device, TuningChoice};

use crate::common::{Bar, ModelArgs};
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
    /// Time a training step instead (forward in train mode, backward, the
    /// optimizer update; `effc train`'s default recipe) on the GPU (any adapter)
    /// and on the CPU reference executor, alternating on the same batch; then
    /// the GPU step's time per kernel kind and pass, and its memory.
    #[arg(long, conflicts_with_all = ["kernels_alone", "untuned", "cpu"])]
    train: bool,
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    if args.train {
        if args.precision != effc_plan::Precision::F32 {
            return Err("--train: training runs in f32 (drop --precision f16)".into());
        }
        if matches!(args.device, Some(Device::Cpu | Device::Reference)) {
            return Err("--train times effc's GPU training step against the CPU reference executor, side by side; drop --device (a software adapter works too)".into());
        }
        crate::bench_train::run(
            &effc_driver::bench::train::TrainBenchRequest {
                model: args.model.request(),
                weights: args.weights.clone(),
                batch: args.batch,
                runs: args.runs.max(1),
                warmup: args.warmup,
            },
            args.json,
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut model = args
        .model
        .request_with(args.precision, args.weights.as_deref(), None);
    if args.untuned {
        model.tuning = TuningChoice::CostModel;
    }
    let req = BenchRequest {
        model,
        model_arg: args.model.model.clone(),
        device: args.device,
        batch: args.batch,
        runs: args.runs,
        warmup: args.warmup,
        kernels_alone: args.kernels_alone,
        cpu: args.cpu,
    };
    let report = effc_driver::bench::bench(&req, &Bar::new(args.json)).map_err(fail)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    match &report {
        BenchReport::Gpu(r) => print_gpu(r)?,
        BenchReport::Cpu(r) => print_cpu(r)?,
        BenchReport::CpuBackend(r) => print_cpu_backend(r)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_gpu(r: &GpuBench) -> Result<(), Failure> {
    let total: f64 = r.kernels.iter().map(|k| k.ms).sum();
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
    latency_line(&r.latency_ms, r.runs, r.throughput)?;
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
    Ok(())
}

fn print_cpu(r: &CpuBench) -> Result<(), Failure> {
    outln!(
        "effc bench {}: batch {}, {}x{}, on the CPU reference executor",
        r.model,
        r.batch,
        r.resolution,
        r.resolution
    );
    latency_line(&r.latency_ms, r.runs, r.throughput)?;
    outln!("(per-kernel times and the GEMM ceiling need a GPU: --device gpu takes a software adapter too)");
    Ok(())
}

fn print_cpu_backend(r: &CpuBackendBench) -> Result<(), Failure> {
    outln!(
        "effc bench {}: batch {}, {}x{}, on effc's CPU backend ({} threads, {} kernels)",
        r.model,
        r.batch,
        r.resolution,
        r.resolution,
        r.threads,
        r.isa
    );
    latency_line(&r.latency_ms, r.runs, r.throughput)?;
    let total: f64 = r.kernels.iter().map(|k| k.ms).sum();
    for (kind, ms) in r.by_kind() {
        outln!(
            "  {kind:<11} {ms:>8.3} ms  {:>5.1}%",
            100.0 * ms / total.max(f64::MIN_POSITIVE)
        );
    }
    let mut slow: Vec<_> = r.kernels.iter().collect();
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
    Ok(())
}

/// A rate with three significant digits: `123`, `12.3`, `0.0812`, never `0.0`.
fn significant(x: f64) -> String {
    if !x.is_finite() || x == 0.0 {
        return format!("{x}");
    }
    let digits = (2 - x.abs().log10().floor() as i32).max(0) as usize;
    format!("{x:.digits$}")
}

/// The `latency` line, the same for both devices.
fn latency_line(
    l: &Latency,
    (runs, warmup): (usize, usize),
    throughput: f64,
) -> Result<(), Failure> {
    outln!(
        "latency     median {:.2} ms, min {:.2}, max {:.2} ({} runs after {} warm-up); {} images/s",
        l.median,
        l.min,
        l.max,
        runs,
        warmup,
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
