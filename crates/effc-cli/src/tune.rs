//! `effc tune`: the arguments of [`effc_driver::tune`], and its report printed:
//! per kernel shape the cost model's tiles and the fastest measured on this
//! adapter (the lookup `run`, `bench`, `scale` and `pick` use is
//! `effc_driver::tuning::cached`).

use std::process::ExitCode;

use effc_driver::tune::{TuneReport, TuneRequest};

use crate::common::{Bar, ModelArgs};
use crate::output::outln;
use crate::{fail, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Measurements per kernel and candidate; their median counts.
    #[arg(long, default_value_t = 5, value_name = "N")]
    reps: usize,
    /// Images per forward while measuring (tiles tuned at one batch suit nearby ones).
    #[arg(long, default_value_t = 1, value_name = "N")]
    batch: usize,
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
    let mut model = args.model.request();
    model.precision = args.precision;
    let req = TuneRequest {
        model,
        batch: args.batch,
        reps: args.reps,
        candidates: args.candidates,
        save: !args.no_save,
    };
    let r = effc_driver::tune::tune(&req, &Bar::new(args.json)).map_err(fail)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
        return match &r.cache_error {
            Some(e) => Err(e.as_str().into()),
            None => Ok(ExitCode::SUCCESS),
        };
    }
    print(&r)
}

fn print(r: &TuneReport) -> Result<ExitCode, Failure> {
    let gain = r.before_ms / r.after_ms;
    outln!(
        "effc tune {}: {} kernel shapes, {} rounds, batch {}, {} storage, kernel times from {}",
        r.model,
        r.shapes.len(),
        r.rounds,
        r.batch,
        r.precision,
        r.kernel_timing
    );
    outln!("adapter     {}", r.adapter);
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
    for s in &r.shapes {
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
            s.default,
            s.default_ms,
            if s.best == s.default {
                "(the same)".to_string()
            } else {
                s.best.clone()
            },
            s.best_ms,
            s.default_ms / s.best_ms
        );
    }
    outln!();
    outln!(
        "kernel time per forward: {:.3} ms with the cost model's tiles, {:.3} ms tuned ({gain:.2}x), measured in separate rounds",
        r.before_ms, r.after_ms
    );
    if r.kept_cost_model {
        outln!("no gain together: keeping the cost model's tiles for every shape");
    }
    match (&r.cache, &r.cache_error) {
        (Some(p), _) => outln!(
            "saved to {p}; `effc run` and `effc bench` use these tiles on this adapter (--untuned ignores them)"
        ),
        (None, Some(e)) => {
            outln!("not saved: the cache cannot be written");
            return Err(e.as_str().into());
        }
        (None, None) => outln!("not saved (--no-save)"),
    }
    Ok(ExitCode::SUCCESS)
}
