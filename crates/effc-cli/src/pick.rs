//! `effc pick`: times the built-in models on the adapter in use (cached per
//! adapter) and recommends the most accurate one, by its published ImageNet
//! top-1, that meets the latency and memory budgets.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use effc_catalog::accuracy::{accuracy, family};
use effc_ir::{Model, Options, Spec};
use effc_runtime::latency::{
    cache_key, fingerprint, latency_cache_path, load_latencies_at, measure, save_latencies_at,
    LatencyOptions,
};
use serde::Serialize;

use crate::output::outln;
use crate::Failure;
use effc_driver::size::{self as budget, ms, si};

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

/// One built-in, measured or not.
#[derive(Clone, Debug, Serialize)]
struct Row {
    model: String,
    family: &'static str,
    top1: f64,
    weights: &'static str,
    pretraining: &'static str,
    source: &'static str,
    resolution: usize,
    params: u64,
    macs: u64,
    memory_bytes: u64,
    latency_ms: Option<f64>,
    /// `measured`, `cached`, `over the memory budget`, `not timed: ...`, ...
    status: String,
    /// Budgets it exceeds; empty when it meets them all.
    exceeds: Vec<String>,
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    if args.batch == 0 || args.runs == 0 {
        return Err("--batch and --runs must be at least 1".into());
    }
    let mut names: Vec<&str> = effc_catalog::names().collect();
    for m in &args.models {
        if effc_catalog::source(m).is_none() {
            return Err(format!(
                "--models: `{m}` is not a built-in model (built-ins: {})",
                names.join(", ")
            )
            .into());
        }
    }
    names.retain(|n| args.models.is_empty() || args.models.iter().any(|m| m == n));
    names.retain(|n| args.family.as_deref().is_none_or(|f| family(n) == Some(f)));
    if names.is_empty() {
        return Err("no built-in model is in both --family and --models".into());
    }
    let mut files = effc_driver::files::Outputs::new();
    let plot = args
        .plot
        .as_ref()
        .map(|p| files.file("--plot", p))
        .transpose()?;
    let bar = crate::common::progress_bar(names.len() as u64, args.json);
    bar.set_message("opening the GPU");
    let gpu = effc_driver::device::open_gpu().map_err(crate::fail)?;
    let (tuning, _) = crate::tune::cached(&gpu, args.untuned, "MODEL");
    let cache_path = latency_cache_path(&gpu.adapter).ok();
    let mut cache = match &cache_path {
        Some(p) if !args.remeasure => load_latencies_at(p).unwrap_or_else(|e| {
            eprintln!("warning: {e}; measuring again");
            Default::default()
        }),
        _ => Default::default(),
    };

    // Smallest first, so that a model's time can be estimated from the ones before.
    let mut models = vec![];
    for n in &names {
        let spec = Spec::builtin(n).map_err(|d| d.render(false))?;
        let m = Model::build(&spec, &Options::default()).map_err(|d| d.render(false))?;
        models.push(m);
    }
    models.sort_by_key(|m| m.cost().macs);
    let mut rows: Vec<Row> = vec![];
    // The fastest milliseconds per MAC seen: a lower bound on a bigger model's time.
    let mut rate: Option<f64> = None;
    for m in &models {
        let cost = m.cost();
        let acc = accuracy(&m.name).ok_or_else(|| format!("no accuracy for `{}`", m.name))?;
        let plan = effc_plan::plan_tuned(m, &tuning);
        let memory = (plan.weight_bytes() + plan.activation_bytes(args.batch)) as u64;
        let mut row = Row {
            model: m.name.clone(),
            family: family(&m.name).unwrap_or("v1"),
            top1: acc.top1,
            weights: acc.weights,
            pretraining: acc.pretraining.label(),
            source: acc.source,
            resolution: m.resolution,
            params: cost.params,
            macs: cost.macs,
            memory_bytes: memory,
            latency_ms: None,
            status: String::new(),
            exceeds: vec![],
        };
        bar.set_message(format!("timing {}", m.name));
        let key = cache_key(&m.name, args.batch);
        let print = fingerprint(&plan);
        let estimate = rate.map(|r| r * cost.macs as f64);
        if let Some(limit) = args.max_memory.filter(|&l| memory > l) {
            row.status = "not timed: over the memory budget".into();
            row.exceeds.push(format!(
                "memory {}B > {}B",
                si(memory as f64),
                si(limit as f64)
            ));
        } else if let Some(l) = cache.get(&key, &print) {
            row.latency_ms = l.median_ms;
            row.status = format!("cached ({} runs)", l.runs);
        } else if let Some(e) =
            estimate.filter(|&e| 2.0 * e > args.time_per_model.as_secs_f64() * 1e3)
        {
            row.status = format!(
                "not timed: a forward would take about {} or more, over --time-per-model {:?}",
                ms(e),
                args.time_per_model
            );
        } else {
            let opts = LatencyOptions {
                batch: args.batch,
                runs: args.runs,
                budget: args.time_per_model,
                min_runs: 0,
                stop_above_ms: None,
            };
            match measure(&gpu, plan, &opts) {
                Ok(l) if l.median_ms.is_some() => {
                    row.latency_ms = l.median_ms;
                    row.status = if l.over_budget {
                        format!("measured ({} runs within the time budget)", l.runs)
                    } else {
                        format!("measured ({} runs)", l.runs)
                    };
                    cache.insert(key, print, l);
                    if let Some(p) = &cache_path {
                        if let Err(e) = save_latencies_at(p, &gpu.adapter.to_string(), &cache) {
                            eprintln!("warning: {e}");
                        }
                    }
                }
                Ok(l) => {
                    row.status = format!(
                        "not timed: the first forward took {}, over --time-per-model {:?}",
                        ms(l.first_ms),
                        args.time_per_model
                    );
                    rate = Some(rate.map_or(l.first_ms / cost.macs as f64, |r| {
                        r.min(l.first_ms / cost.macs as f64)
                    }));
                }
                Err(e) => row.status = format!("cannot run: {e}"),
            }
        }
        if let Some(l) = row.latency_ms {
            let r = l / cost.macs as f64;
            rate = Some(rate.map_or(r, |x| x.min(r)));
        }
        if let Some(b) = args.max_latency {
            match row.latency_ms {
                Some(l) if l > b => row.exceeds.push(format!("latency {} > {}", ms(l), ms(b))),
                Some(_) => {}
                None => row.exceeds.push("latency unknown".into()),
            }
        }
        rows.push(row);
        bar.inc(1);
    }
    bar.finish_and_clear();

    // The most accurate that meets every budget; the faster of equals.
    let best = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.exceeds.is_empty())
        .max_by(|a, b| {
            a.1.top1.total_cmp(&b.1.top1).then(
                b.1.latency_ms
                    .unwrap_or(f64::MAX)
                    .total_cmp(&a.1.latency_ms.unwrap_or(f64::MAX)),
            )
        })
        .map(|(i, _)| i);
    if let Some(file) = &plot {
        let svg = effc_draw::chart(&chart(&args, &gpu.adapter.name, &rows, best))
            .map_err(|e| format!("--plot: {e}"))?;
        file.write(svg.as_bytes())?;
    }
    if args.json {
        let v = serde_json::json!({
            "adapter": gpu.adapter.to_string(), "batch": args.batch,
            "budgets": {"max_latency_ms": args.max_latency, "max_memory": args.max_memory},
            "models": rows,
            "recommended": best.map(|i| &rows[i].model),
            "cache": cache_path.map(|p| p.display().to_string()),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_table(&args, &gpu.adapter.to_string(), &rows, best)?;
    }
    match best {
        Some(_) => Ok(ExitCode::SUCCESS),
        None => Err("no built-in model meets the budgets".into()),
    }
}

fn print_table(
    args: &Args,
    adapter: &str,
    rows: &[Row],
    best: Option<usize>,
) -> Result<(), Failure> {
    outln!("effc pick: batch {}, adapter {adapter}", args.batch);
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

/// Top-1 against latency, a series per family.
fn chart(args: &Args, adapter: &str, rows: &[Row], best: Option<usize>) -> effc_draw::Chart {
    let mut series: Vec<effc_draw::Series> = vec![];
    for (fam, name) in [
        ("v1", "EfficientNet"),
        ("lite", "EfficientNet-Lite"),
        ("v2", "EfficientNetV2"),
    ] {
        let points: Vec<effc_draw::Point> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.family == fam)
            .filter_map(|(i, r)| {
                Some(effc_draw::Point {
                    label: r.model.clone(),
                    x: r.latency_ms?,
                    y: r.top1,
                    meets: r.exceeds.is_empty(),
                    chosen: Some(i) == best,
                })
            })
            .collect();
        if !points.is_empty() {
            series.push(effc_draw::Series {
                name: name.into(),
                points,
            });
        }
    }
    let untimed: Vec<&str> = rows
        .iter()
        .filter(|r| r.latency_ms.is_none())
        .map(|r| r.model.as_str())
        .collect();
    effc_draw::Chart {
        title: format!("ImageNet top-1 against latency, batch {}", args.batch),
        x_label: format!("latency on {adapter} (ms, log scale)"),
        y_label: "published ImageNet top-1 (%)".into(),
        series,
        budgets: args
            .max_latency
            .map(|l| effc_draw::Budget::X(l, format!("latency ≤ {}", ms(l))))
            .into_iter()
            .collect(),
        note: (!untimed.is_empty()).then(|| format!("not timed: {}", untimed.join(", "))),
    }
}
