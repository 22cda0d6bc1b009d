//! `effc bench MODEL --train`: the report of
//! [`effc_driver::bench::train::train`] (the GPU and CPU reference training
//! steps side by side, the GPU step's kernels and memory), as text or JSON.

use effc_driver::bench::train::{train, Times, TrainBench, TrainBenchRequest};
use effc_runtime::train::Pass;

use crate::output::outln;
use crate::{fail, Failure};

/// Runs the benchmark and prints its report (`json`: as JSON).
pub fn run(request: &TrainBenchRequest, json: bool) -> Result<(), Failure> {
    let report = train(request).map_err(fail)?;
    if json {
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
