//! `effc tune`: measure the tiles of a model's kernels on this adapter and cache the
//! fastest (the lookup `run`, `bench`, `scale` and `pick` use is
//! `effc_driver::tuning::cached`).

use std::process::ExitCode;

use effc_runtime::tune::{save_tuning, tune, TuneOptions};
use effc_runtime::KernelTiming;
use serde_json::json;

use crate::common::ModelArgs;
use crate::output::outln;
use crate::{fail, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Images per forward while measuring (tiles tuned at one batch suit nearby ones).
    #[arg(long, default_value_t = 1, value_name = "N")]
    batch: usize,
    /// Measurements per kernel and candidate; their median counts.
    #[arg(long, default_value_t = 5, value_name = "N")]
    reps: usize,
    /// Candidates per kernel shape at most, the cost model's first (default: all).
    #[arg(long, value_name = "N")]
    candidates: Option<usize>,
    /// Tune the kernels that store weights and activations as f16 (cached apart
    /// from f32's tiles; `run`/`bench --precision f16` use them).
    #[arg(long, default_value = "f32", value_name = "f32|f16")]
    precision: effc_plan::Precision,
    /// Measure and report, but leave the cache as it is.
    #[arg(long)]
    no_save: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    if args.batch == 0 || args.reps == 0 || args.candidates == Some(0) {
        return Err("--batch, --reps and --candidates must be at least 1".into());
    }
    let mut request = args.model.request();
    request.precision = args.precision;
    let model = request.resolve().map_err(fail)?.model;
    // The cache must be writable before minutes are spent measuring.
    if !args.no_save {
        effc_runtime::tune::check_cache_dir()?;
    }
    let gpu = effc_driver::device::open_gpu().map_err(fail)?;
    let bar = crate::common::progress_bar(1, args.json);
    bar.set_message("measuring candidates");
    let opts = TuneOptions {
        batch: args.batch,
        reps: args.reps,
        max_candidates: args.candidates.unwrap_or(usize::MAX),
        precision: args.precision,
    };
    let report = tune(gpu.clone(), &model, &opts, |round, rounds| {
        bar.set_length(rounds as u64);
        bar.set_position(round as u64);
        if round + 2 == rounds {
            bar.set_message("timing the winners");
        }
    })?;
    bar.finish_and_clear();
    // What was measured is printed even when the cache cannot be written; the
    // error comes after it.
    let saved = if args.no_save || report.shapes.is_empty() {
        Ok(None)
    } else {
        save_tuning(&gpu.adapter, &report.tuning).map(Some)
    };
    if let Ok(Some((path, Some(backup)))) = &saved {
        eprintln!(
            "warning: the tuning cache `{}` was not valid JSON of effc's; it is kept as `{}` and replaced by these tiles",
            path.display(),
            backup.display()
        );
    }
    let (saved, save_error) = match saved {
        Ok(s) => (s.map(|(p, _)| p), None),
        Err(e) => (None, Some(e)),
    };
    let timing = match report.timing {
        KernelTiming::Timestamps => "timestamps",
        KernelTiming::Alone => "each kernel alone",
    };
    let gain = report.before_ms / report.after_ms;
    if args.json {
        let shapes: Vec<_> = report
            .shapes
            .iter()
            .map(|s| {
                json!({
                    "key": s.key, "kind": s.kind, "kernels": s.kernels,
                    "default": s.default.to_string(), "default_ms": s.default_ms,
                    "best": s.best.to_string(), "best_ms": s.best_ms, "tried": s.tried,
                })
            })
            .collect();
        let out = json!({
            "model": model.name, "adapter": gpu.adapter.to_string(), "batch": args.batch,
            "precision": args.precision,
            "kernel_timing": timing, "rounds": report.rounds,
            "before_ms": report.before_ms, "after_ms": report.after_ms,
            "kept_cost_model": report.kept_cost_model, "shapes": shapes,
            "cache": saved.as_ref().map(|p| p.display().to_string()),
            "cache_error": save_error.as_ref().map(|e| e.to_string()),
        });
        outln!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        );
        return match save_error {
            Some(e) => Err(e.into()),
            None => Ok(ExitCode::SUCCESS),
        };
    }
    outln!(
        "effc tune {}: {} kernel shapes, {} rounds, batch {}, {} storage, kernel times from {timing}",
        model.name,
        report.shapes.len(),
        report.rounds,
        args.batch,
        args.precision
    );
    outln!("adapter     {}", gpu.adapter);
    outln!();
    outln!(
        "{:<28} {:<10} {:>6} {:<38} {:>9} {:<38} {:>9} {:>6}",
        "kernels",
        "kind",
        "tried",
        "cost model",
        "ms",
        "fastest",
        "ms",
        "gain"
    );
    for s in &report.shapes {
        let name = if s.kernels.len() > 1 {
            format!("{} (+{})", s.kernels[0], s.kernels.len() - 1)
        } else {
            s.kernels[0].clone()
        };
        outln!(
            "{:<28} {:<10} {:>6} {:<38} {:>9.3} {:<38} {:>9.3} {:>5.2}x",
            name,
            s.kind,
            s.tried,
            s.default.to_string(),
            s.default_ms,
            if s.best == s.default {
                "(the same)".to_string()
            } else {
                s.best.to_string()
            },
            s.best_ms,
            s.default_ms / s.best_ms
        );
    }
    outln!();
    outln!(
        "kernel time per forward: {:.3} ms with the cost model's tiles, {:.3} ms tuned ({gain:.2}x), measured in separate rounds",
        report.before_ms, report.after_ms
    );
    if report.kept_cost_model {
        outln!("no gain together: keeping the cost model's tiles for every shape");
    }
    match (saved, save_error) {
        (Some(p), _) => outln!(
            "saved to {}; `effc run` and `effc bench` use these tiles on this adapter (--untuned ignores them)",
            p.display()
        ),
        (None, Some(e)) => {
            outln!("not saved: the cache cannot be written");
            return Err(e.into());
        }
        (None, None) => outln!("not saved (--no-save)"),
    }
    Ok(ExitCode::SUCCESS)
}
