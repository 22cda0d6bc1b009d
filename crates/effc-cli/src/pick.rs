//! `effc pick`: the arguments of [`effc_driver::pick`] (budgets, which built-ins,
//! how long to time each), and its report printed: every model with its status,
//! the recommendation.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use effc_driver::pick::{PickReport, PickRequest};
use effc_driver::size::{self as budget, ms, si};
use effc_driver::TuningChoice;

use crate::common::Bar;
use crate::output::outln;
use crate::{fail, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Longest forward at --batch on this adapter (e.g. 30ms, 0.5s).
    #[arg(long, value_name = "MS", value_parser = budget::millis)]
    max_latency: Option<f64>,
    /// Most GPU memory: weights plus activation buffers at --batch (e.g. 200M, 1GiB).
    #[arg(long, value_name = "BYTES", value_parser = budget::bytes)]
    max_memory: Option<u64>,
    /// Images per forward.
    #[arg(long, default_value_t = 1, value_name = "N")]
    batch: usize,
    /// Only this family: v1 (B0–B8, L2), lite or v2.
    #[arg(long, value_parser = ["v1", "lite", "v2"])]
    family: Option<String>,
    /// Only these built-ins (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    models: Vec<String>,
    /// Wall time to time one model at most (compilation included); bigger models are reported as not timed.
    #[arg(long, default_value = "30s", value_name = "T", value_parser = budget::duration)]
    time_per_model: Duration,
    /// Timed forwards per model (after one untimed).
    #[arg(long, default_value_t = 10, value_name = "N")]
    runs: usize,
    /// Measure again even where this adapter's cache has a latency.
    #[arg(long)]
    remeasure: bool,
    /// Use the cost model's tiles even where `effc tune` cached faster ones.
    #[arg(long)]
    untuned: bool,
    /// Draw top-1 against latency, one point per model (SVG).
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let req = PickRequest {
        max_latency: args.max_latency,
        max_memory: args.max_memory,
        batch: args.batch,
        family: args.family.clone(),
        models: args.models.clone(),
        time_per_model: args.time_per_model,
        runs: args.runs,
        remeasure: args.remeasure,
        tuning: if args.untuned {
            TuningChoice::CostModel
        } else {
            TuningChoice::Cached
        },
        plot: args.plot.clone(),
    };
    let report = effc_driver::pick::pick(&req, &Bar::new(args.json)).map_err(fail)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report)?;
    }
    match report.best {
        Some(_) => Ok(ExitCode::SUCCESS),
        None => Err("no built-in model meets the budgets".into()),
    }
}

fn print_table(r: &PickReport) -> Result<(), Failure> {
    let (rows, best) = (&r.models, r.best);
    outln!("effc pick: batch {}, adapter {}", r.batch, r.adapter);
    outln!();
    outln!(
        "  {:<11} {:<5} {:>6} {:<6} {:>5} {:>9} {:>10} {:>10} {:>9}  status",
        "model",
        "fam",
        "top-1",
        "data",
        "res",
        "params",
        "MACs",
        "memory",
        "latency"
    );
    for (i, r) in rows.iter().enumerate() {
        let verdict = if r.exceeds.is_empty() {
            String::new()
        } else {
            format!("; exceeds: {}", r.exceeds.join(", "))
        };
        outln!(
            "{} {:<11} {:<5} {:>5.1}% {:<6} {:>5} {:>9} {:>10} {:>9}B {:>9}  {}{verdict}",
            if Some(i) == best { "→" } else { " " },
            r.model,
            r.family,
            r.top1,
            r.pretraining,
            r.resolution,
            si(r.params as f64),
            si(r.macs as f64),
            si(r.memory_bytes as f64),
            r.latency_ms.map(ms).unwrap_or_else(|| "-".into()),
            r.status
        );
    }
    outln!();
    if let Some(i) = best {
        let r = &rows[i];
        outln!(
            "recommended: {} — {:.1}% ImageNet top-1{}",
            r.model,
            r.top1,
            r.latency_ms
                .map(|l| format!(", {} per forward here", ms(l)))
                .unwrap_or_default()
        );
        outln!("  weights: {}", r.weights);
        outln!("  source:  {}", r.source);
    }
    Ok(())
}
