//! `effc scale`: the arguments of [`effc_driver::scale`] (a φ or budgets; `--grid`,
//! the paper's search of α, β, γ at φ = 1, with `--train-on` each point trained
//! and ranked), and its report printed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use effc_driver::scale::{Budgets, GridRequest, GridTraining, ScaleReport, ScaleRequest};
use effc_driver::size::{self as budget, ms};

use crate::common::Bar;
use crate::output::{out, outln};
use crate::scale_report::{print_json, print_table};
use crate::{fail, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model to scale: a built-in with width = depth = 1 (b0, lite0, v2-b0, v2-s, ...) or a .enet file.
    #[arg(value_name = "BASE")]
    base: String,
    /// Scale by this φ instead of searching for one.
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "X",
        conflicts_with = "grid"
    )]
    phi: Option<f64>,
    /// Most multiply-accumulates per image (e.g. 1G, 1.5G, 400M).
    #[arg(long, value_name = "N", value_parser = budget::count)]
    max_macs: Option<u64>,
    /// Most parameters (e.g. 10M).
    #[arg(long, value_name = "N", value_parser = budget::count)]
    max_params: Option<u64>,
    /// Most GPU memory: weights plus the plan's activation buffers at --batch (e.g. 200M, 1GiB).
    #[arg(long, value_name = "BYTES", value_parser = budget::bytes)]
    max_memory: Option<u64>,
    /// Longest forward at --batch, measured on the adapter in use (e.g. 30ms, 0.5s).
    #[arg(long, value_name = "MS", value_parser = budget::millis)]
    max_latency: Option<f64>,
    /// Images per forward, for memory and latency.
    #[arg(long, default_value_t = 1, value_name = "N")]
    batch: usize,
    /// Depth base α (default 1.2).
    #[arg(long, value_name = "A")]
    alpha: Option<f64>,
    /// Width base β (default 1.1).
    #[arg(long, value_name = "B")]
    beta: Option<f64>,
    /// Resolution base γ (default 1.15).
    #[arg(long, value_name = "G")]
    gamma: Option<f64>,
    /// Write the scaled model here as a .enet that extends BASE.
    #[arg(long, short, value_name = "FILE.enet")]
    output: Option<PathBuf>,
    /// The scaled model's name (default: BASE-phiX).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// The paper's step 1: every α, β, γ ≥ 1 on a grid with α·β²·γ² within 5% of 2.
    #[arg(long)]
    grid: bool,
    /// Grid step.
    #[arg(long, default_value_t = 0.05, value_name = "S", requires = "grid")]
    step: f64,
    /// With --grid: also measure each point's latency ratio on the adapter.
    #[arg(long, requires = "grid")]
    measure: bool,
    /// Draw MACs against measured latency of the candidates (SVG); with --grid
    /// --train-on, top-1 against the MACs ratio of the points.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// With --grid: train every point (the base scaled at φ = 1 by its α, β, γ,
    /// from scratch, the same seed, recipe and steps) on this data and rank the
    /// points by validation top-1: an image folder, `fashion-mnist[=DIR]` or
    /// `mnist=DIR`.
    #[arg(long, value_name = "DATA")]
    train_on: Option<String>,
    /// With --train-on: epochs per point (passes over the training subset; default 1).
    #[arg(
        long,
        value_name = "N",
        conflicts_with = "steps",
        requires = "train_on"
    )]
    epochs: Option<u64>,
    /// With --train-on: update steps per point, instead of --epochs.
    #[arg(long, value_name = "N", requires = "train_on")]
    steps: Option<u64>,
    /// With --train-on: train on N images of the training split (a seeded draw).
    #[arg(long, value_name = "N", requires = "train_on")]
    train_subset: Option<usize>,
    /// With --train-on: evaluate on N images of the validation split (a seeded draw).
    #[arg(long, value_name = "N", requires = "train_on")]
    val_subset: Option<usize>,
    /// With --train-on: images per training step.
    #[arg(long, default_value_t = 32, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), requires = "train_on")]
    train_batch: u32,
    /// With --train-on: images per forward in evaluation.
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), requires = "train_on")]
    eval_batch: u32,
    /// With --grid: the base's resolution, before scaling (each point's is it × γ).
    #[arg(long, value_name = "N")]
    resolution: Option<usize>,
    /// With --grid: the base's number of classes (the data's, to train it).
    #[arg(long, value_name = "N")]
    classes: Option<usize>,
    /// With --train-on: the recipe every point trains with (as `effc train`'s).
    #[command(flatten, next_help_heading = "Training recipe (with --train-on)")]
    recipe: crate::train::RecipeArgs,
    /// Wall time to time one candidate at most (compilation included).
    #[arg(long, default_value = "20s", value_name = "T", value_parser = budget::duration)]
    time_per_candidate: Duration,
    /// Measure again even where this adapter's latency cache has a candidate's network.
    #[arg(long)]
    remeasure: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn budgets(&self) -> Budgets {
        Budgets {
            max_macs: self.max_macs,
            max_params: self.max_params,
            max_memory: self.max_memory,
            max_latency: self.max_latency,
        }
    }

    fn request(&self) -> ScaleRequest {
        ScaleRequest {
            base: effc_driver::ModelRequest::from_arg(&self.base),
            base_arg: self.base.clone(),
            phi: self.phi,
            budgets: self.budgets(),
            batch: self.batch,
            alpha: self.alpha,
            beta: self.beta,
            gamma: self.gamma,
            output: self.output.clone(),
            name: self.name.clone(),
            plot: self.plot.clone(),
            time_per_candidate: self.time_per_candidate,
            remeasure: self.remeasure,
            command_line: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        }
    }
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    check_grid_flags(&args)?;
    if args.grid {
        if args.batch == 0 {
            return Err("--batch must be at least 1".into());
        }
        effc_driver::scale::coefficients(args.alpha, args.beta, args.gamma).map_err(fail)?;
        let mut base = effc_driver::ModelRequest::from_arg(&args.base);
        base.options.resolution = args.resolution;
        base.options.classes = args.classes;
        let train = training(&args, &base)?;
        let req = GridRequest {
            base,
            base_arg: args.base.clone(),
            step: args.step,
            measure: args.measure,
            batch: args.batch,
            train,
            plot: args.plot.clone(),
        };
        let bar = Bar::new(args.json);
        let report = effc_driver::scale::grid(&req, &bar).map_err(fail)?;
        return crate::scale_grid::print(&report, args.json);
    }
    let bar = Bar::new(args.json);
    let report = effc_driver::scale::scale(&args.request(), &bar).map_err(fail)?;
    if args.json {
        print_json(&report)?;
    } else {
        print_table(&report)?;
    }
    if let Some(message) = report.none_meets() {
        return Err(message.into());
    }
    if !args.json {
        print_chosen(&report)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The flags that only mean something with `--grid` (clap's `requires` is
/// met by a flag's default, so they are checked here), and the recipe's, which
/// only mean something with `--train-on`.
fn check_grid_flags(args: &Args) -> Result<(), Failure> {
    if !args.grid {
        for (flag, given) in [
            ("--train-on", args.train_on.is_some()),
            ("--measure", args.measure),
            ("--resolution", args.resolution.is_some()),
            ("--classes", args.classes.is_some()),
        ] {
            if given {
                return Err(format!(
                    "{flag} goes with --grid (the paper's step 1: α, β, γ at φ = 1)"
                )
                .into());
            }
        }
    }
    if args.train_on.is_none() && !args.recipe.is_default() {
        return Err("the training recipe's flags (--lr, --optimizer, --seed, ...) train the grid's points: give --grid --train-on DATA".into());
    }
    Ok(())
}

/// How `--train-on` trains every point (`None` without it).
fn training(
    args: &Args,
    base: &effc_driver::ModelRequest,
) -> Result<Option<GridTraining>, Failure> {
    let Some(data) = &args.train_on else {
        return Ok(None);
    };
    let batch = args.train_batch as usize;
    let asked = args.recipe.request();
    let spec = if asked.spec_recipe {
        asked.spec_recipe(&base.resolve().map_err(fail)?.model)
    } else {
        effc_ir::spec::Recipe::default()
    };
    Ok(Some(GridTraining {
        data: effc_driver::train::recipe::source(data),
        // The size is each point's resolution, set when it trains.
        // --spec-recipe: the base's recipe, the same for every point.
        recipe: asked.recipe(batch, None, 0, &spec).map_err(fail)?,
        epochs: args.epochs,
        steps: args.steps,
        train_subset: args.train_subset,
        val_subset: args.val_subset,
        eval_batch: args.eval_batch as usize,
    }))
}

fn print_chosen(r: &ScaleReport) -> Result<(), Failure> {
    let (Some(c), Some(name), Some(text)) = (r.chosen(), &r.model, &r.spec) else {
        return Ok(());
    };
    let [params, macs, memory] = crate::scale_report::costs(c);
    outln!();
    outln!(
        "chosen: φ = {:.2}: depth {:.4}, width {:.4}, resolution {}; {params} parameters, {macs} MACs, {memory}B of GPU memory at batch {}{}",
        c.phi,
        c.depth,
        c.width,
        c.resolution,
        r.batch,
        c.latency_ms.map(|l| format!(", {}", ms(l))).unwrap_or_default()
    );
    if let Some(n) = r.next() {
        outln!("φ = {:.2} exceeds: {}", n.phi, n.exceeds.join(", "));
    }
    match &r.output {
        Some(p) => outln!(
            "wrote {} (model {name} extends {})",
            p.display(),
            r.base_name
        ),
        None => {
            outln!();
            out!("{text}");
        }
    }
    if let Some(p) = &r.plot {
        outln!("wrote {}", p.display());
    }
    Ok(())
}
