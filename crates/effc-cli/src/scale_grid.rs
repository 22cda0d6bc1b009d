//! `effc scale BASE --grid`: the paper's step 1. Every α, β, γ ≥ 1 on the grid with
//! α·β²·γ² within 5% of 2, each with the MACs ratio the IR computes at φ = 1 (the
//! rounding of channels, repeats and resolution moves it away from α·β²·γ²) and,
//! with `--measure`, the latency ratio on the adapter.

use std::process::ExitCode;
use std::time::Duration;

use effc_ir::scale::{self, GridPoint};
use effc_ir::{Model, Options, Spec};
use effc_runtime::latency::{measure, LatencyOptions};

use crate::output::outln;
use crate::Failure;

const TOLERANCE: f64 = 0.05;
const ACCURACY: &str = "not computed: ranking the points needs each trained on ImageNet (the paper's step 1), and effc does not train";

pub fn run(
    base_arg: &str,
    base: &Spec,
    step: f64,
    with_latency: bool,
    batch: usize,
    json: bool,
) -> Result<ExitCode, Failure> {
    if !(step > 0.0 && step <= 1.0) {
        return Err(format!("--step must be in (0, 1], got {step}").into());
    }
    let points = scale::grid(step, TOLERANCE, scale::GRID_MAX_POINTS).map_err(|max| {
        format!(
            "--step {step} gives more than {max} grid points (α, β, γ with α·β²·γ² within 5% of 2; each costs two model builds): use a coarser step (0.02 gives 1397, the default 0.05 gives 111)"
        )
    })?;
    if points.is_empty() {
        return Err(format!("no α, β, γ on a grid of {step} has α·β²·γ² within 5% of 2").into());
    }
    let diag = |d: effc_syntax::Diagnostics| Failure {
        message: d.render(crate::color()),
    };
    let mut rows = vec![];
    for c in &points {
        rows.push(GridPoint {
            coefficients: *c,
            flops_factor: c.flops_factor(),
            macs_ratio: scale::macs_ratio(base, c).map_err(diag)?,
        });
    }
    let mut latency: Vec<Option<f64>> = vec![None; rows.len()];
    if with_latency {
        let bar = crate::common::progress_bar(rows.len() as u64 + 1, json);
        bar.set_message("opening the GPU");
        let gpu = effc_driver::device::open_gpu().map_err(crate::fail)?;
        let tuning = crate::tune::cached(&gpu, false, base_arg).0;
        let opts = LatencyOptions {
            batch,
            runs: 3,
            budget: Duration::from_secs(20),
            min_runs: 1,
            stop_above_ms: None,
        };
        let time = |spec: &Spec| -> Result<Option<f64>, Failure> {
            let m = Model::build(spec, &Options::default()).map_err(diag)?;
            let l = measure(&gpu, effc_plan::plan_tuned(&m, &tuning), &opts)?;
            Ok(l.median_ms)
        };
        bar.set_message("timing the base");
        let base_ms = time(base)?;
        bar.inc(1);
        for (r, slot) in rows.iter().zip(&mut latency) {
            let c = r.coefficients;
            bar.set_message(format!("α {} β {} γ {}", c.alpha, c.beta, c.gamma));
            let ms = time(&scale::scaled(base, 1.0, &c))?;
            *slot = ms.zip(base_ms).map(|(a, b)| a / b);
            bar.inc(1);
        }
        bar.finish_and_clear();
    }
    if json {
        let pts: Vec<_> = rows
            .iter()
            .zip(&latency)
            .map(|(r, l)| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["latency_ratio"] = serde_json::json!(l);
                v
            })
            .collect();
        let v = serde_json::json!({
            "base": base_arg, "step": step, "tolerance": TOLERANCE, "batch": batch,
            "points": pts, "accuracy": ACCURACY,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "effc scale {} --grid: {} points with α, β, γ ≥ 1 on a grid of {step} and α·β²·γ² within 5% of 2",
        base.name,
        rows.len()
    );
    outln!("accuracy: {ACCURACY}");
    outln!();
    outln!(
        "  {:>5} {:>5} {:>5} {:>9} {:>11}{}",
        "α",
        "β",
        "γ",
        "α·β²·γ²",
        "MACs ratio",
        if with_latency { "  latency ratio" } else { "" }
    );
    for (r, l) in rows.iter().zip(&latency) {
        let c = r.coefficients;
        outln!(
            "{} {:>5} {:>5} {:>5} {:>9.3} {:>11.3}{}",
            if c == scale::PAPER { "*" } else { " " },
            coef(c.alpha),
            coef(c.beta),
            coef(c.gamma),
            r.flops_factor,
            r.macs_ratio,
            match (with_latency, l) {
                (true, Some(l)) => format!("  {l:>13.3}"),
                (true, None) => format!("  {:>13}", "-"),
                _ => String::new(),
            }
        );
    }
    outln!();
    outln!(
        "* the paper's α = 1.2, β = 1.1, γ = 1.15. Ratios are of φ = 1 over φ = 0 ({}).",
        base.name
    );
    Ok(ExitCode::SUCCESS)
}

/// `1.2` → `1.20`; a finer grid keeps its third digit.
fn coef(v: f64) -> String {
    if ((v * 100.0).round() - v * 100.0).abs() < 1e-6 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
