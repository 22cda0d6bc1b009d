//! `effc scale BASE --grid`: the points of [`effc_driver::scale::grid`] printed,
//! each with its α·β²·γ², MACs ratio and (with `--measure`) latency ratio; with
//! `--train-on`, ranked by the top-1 each reached, with its parameters, loss and
//! training time.

use std::process::ExitCode;

use effc_driver::scale::GridReport;
use effc_driver::size::si;
use effc_ir::scale;

use crate::output::outln;
use crate::Failure;

pub fn print(r: &GridReport, json: bool) -> Result<ExitCode, Failure> {
    if json {
        outln!("{}", serde_json::to_string_pretty(r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let with_latency = r.measured;
    let step = r.step;
    outln!(
        "effc scale {} --grid: {} points with α, β, γ ≥ 1 on a grid of {step} and α·β²·γ² within 5% of 2",
        r.base_name,
        r.points.len()
    );
    if let Some(a) = r.accuracy {
        outln!("accuracy: {a}");
    }
    if let Some(t) = &r.training {
        outln!(
            "trained: each point from scratch, {} steps of batch {} ({}, lr {}, seed {}) on {}; ranked by validation top-1, then fewer MACs",
            t.steps_per_point,
            t.batch,
            t.optimizer,
            t.lr,
            t.seed,
            t.data
        );
    }
    let trained = r.training.is_some();
    outln!();
    outln!(
        "  {}{:>5} {:>5} {:>5} {:>9} {:>11}{}{}",
        if trained { "rank " } else { "" },
        "α",
        "β",
        "γ",
        "α·β²·γ²",
        "MACs ratio",
        if with_latency { "  latency ratio" } else { "" },
        if trained {
            format!(
                " {:>5} {:>9} {:>7} {:>7} {:>8}",
                "res", "params", "top-1", "loss", "time"
            )
        } else {
            String::new()
        }
    );
    for (i, row) in r.points.iter().enumerate() {
        let (p, l) = (&row.point, row.latency_ratio);
        let c = p.coefficients;
        outln!(
            "{} {}{:>5} {:>5} {:>5} {:>9.3} {:>11.3}{}{}",
            if c == scale::PAPER { "*" } else { " " },
            if trained {
                format!("{:>4} ", i + 1)
            } else {
                String::new()
            },
            coef(c.alpha),
            coef(c.beta),
            coef(c.gamma),
            p.flops_factor,
            p.macs_ratio,
            match (with_latency, l) {
                (true, Some(l)) => format!("  {l:>13.3}"),
                (true, None) => format!("  {:>13}", "-"),
                _ => String::new(),
            },
            match &row.trained {
                Some(t) => format!(
                    " {:>5} {:>9} {:>6.2}% {:>7.4} {:>7.1}s",
                    t.resolution,
                    si(t.params as f64),
                    100.0 * t.top1,
                    t.loss,
                    t.seconds
                ),
                None => String::new(),
            }
        );
    }
    outln!();
    outln!(
        "* the paper's α = 1.2, β = 1.1, γ = 1.15. Ratios are of φ = 1 over φ = 0 ({}).",
        r.base_name
    );
    if let Some(p) = &r.plot {
        outln!("wrote {}", p.display());
    }
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
