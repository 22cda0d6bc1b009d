//! `effc scale BASE --grid`: the paper's step 1. Every α, β, γ ≥ 1 on the grid
//! with α·β²·γ² within 5% of 2 (at most [`effc_ir::scale::GRID_MAX_POINTS`]),
//! each with the MACs ratio the IR computes at φ = 1 (the rounding of channels,
//! repeats and resolution moves it away from α·β²·γ²) and, when asked, the
//! latency ratio on the adapter; with a [`GridTraining`], each point trained
//! and the points ranked by the accuracy they reach (`train.rs`).

use std::time::Duration;

use effc_ir::scale::{self as ir_scale, GridPoint};
use effc_ir::{Model, Options, Spec};
use effc_runtime::latency::{measure, LatencyOptions};
use serde::Serialize;

use super::train::{self, GridTraining, Trained, TrainingSummary};
use crate::files::Outputs;
use crate::progress::Progress;
use crate::{Error, ModelRequest};

/// How far from 2 α·β²·γ² may be (relative).
pub const GRID_TOLERANCE: f64 = 0.05;

const ACCURACY: &str = "not computed: give --train-on DATA to train each point (the paper's step 1) and rank them by the accuracy they reach";

/// A grid search: the base, the step, and whether to time or train each point.
/// The base request's `resolution` and `classes` options replace the base's
/// (before it is scaled).
#[derive(Clone, Debug)]
pub struct GridRequest {
    pub base: ModelRequest,
    pub base_arg: String,
    pub step: f64,
    pub measure: bool,
    pub batch: usize,
    /// Train every point and rank them by top-1.
    pub train: Option<GridTraining>,
    /// With `train`: draw top-1 against the MACs ratio (SVG) here.
    pub plot: Option<std::path::PathBuf>,
}

/// One point with its latency ratio (φ = 1 over φ = 0) when measured, and what
/// it reached when trained.
#[derive(Clone, Debug, Serialize)]
pub struct GridRow {
    #[serde(flatten)]
    pub point: GridPoint,
    pub latency_ratio: Option<f64>,
    #[serde(flatten)]
    pub trained: Option<Trained>,
}

/// The grid's points.
#[derive(Clone, Debug, Serialize)]
pub struct GridReport {
    pub base: String,
    #[serde(skip)]
    pub base_name: String,
    pub step: f64,
    pub tolerance: f64,
    pub batch: usize,
    #[serde(skip)]
    pub measured: bool,
    /// In order of α, β, γ; best first when trained.
    pub points: Vec<GridRow>,
    /// Why the points are not ranked by accuracy (`None`: they are).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<&'static str>,
    /// How every point was trained (`None`: not trained).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingSummary>,
    /// The chart written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plot: Option<std::path::PathBuf>,
}

/// Lists the grid's points (refused above `GRID_MAX_POINTS`, before any model is
/// built), with their MACs ratios and, with `measure`, latency ratios; with
/// `train`, trains each and ranks them by top-1.
pub fn grid(req: &GridRequest, progress: &dyn Progress) -> Result<GridReport, Error> {
    let step = req.step;
    let mut files = Outputs::new();
    req.base.declare_inputs(&mut files)?;
    let plot = match (&req.plot, &req.train) {
        (Some(p), Some(_)) => Some(files.file("--plot", p)?),
        (Some(_), None) => {
            return Err(Error::Usage(
                "--plot with --grid draws accuracy against MACs: give --train-on DATA".into(),
            ))
        }
        _ => None,
    };
    if !(step > 0.0 && step <= 1.0) {
        return Err(Error::Usage(format!(
            "--step must be in (0, 1], got {step}"
        )));
    }
    let points = ir_scale::grid(step, GRID_TOLERANCE, ir_scale::GRID_MAX_POINTS).map_err(|max| {
        Error::Usage(format!(
            "--step {step} gives more than {max} grid points (α, β, γ with α·β²·γ² within 5% of 2; each costs two model builds): use a coarser step (0.02 gives 1397, the default 0.05 gives 111)"
        ))
    })?;
    if points.is_empty() {
        return Err(Error::Usage(format!(
            "no α, β, γ on a grid of {step} has α·β²·γ² within 5% of 2"
        )));
    }
    let base = base_spec(&req.base)?;
    let mut rows = vec![];
    for c in &points {
        rows.push(GridRow {
            point: GridPoint {
                coefficients: *c,
                flops_factor: c.flops_factor(),
                macs_ratio: ir_scale::macs_ratio(&base, c)?,
            },
            latency_ratio: None,
            trained: None,
        });
    }
    if req.measure {
        time_points(req, &base, &mut rows, progress)?;
    }
    let training = match &req.train {
        Some(t) => Some(train::train_points(t, &base, &mut rows, progress)?),
        None => None,
    };
    if let (Some(file), Some(s)) = (&plot, &training) {
        let svg = effc_draw::chart(&train::chart(&base.name, &rows, s))
            .map_err(|e| Error::Internal(format!("--plot: {e}")))?;
        file.write(svg.as_bytes())?;
    }
    Ok(GridReport {
        base: req.base_arg.clone(),
        base_name: base.name.clone(),
        step,
        tolerance: GRID_TOLERANCE,
        batch: req.batch,
        measured: req.measure,
        points: rows,
        accuracy: training.is_none().then_some(ACCURACY),
        training,
        plot: plot.map(|f| f.path().to_path_buf()),
    })
}

/// The base with the request's `resolution` and `classes` in place of its own.
fn base_spec(req: &ModelRequest) -> Result<Spec, Error> {
    let mut base = super::scalable(req)?.spec;
    let o = &req.options;
    Options {
        resolution: o.resolution,
        classes: o.classes,
        ..Options::default()
    }
    .check()?;
    if let Some(r) = o.resolution {
        base.resolution = r;
    }
    if let Some(c) = o.classes {
        base.classes = c;
    }
    Ok(base)
}

/// Each point's latency at φ = 1 over the base's, on the adapter.
fn time_points(
    req: &GridRequest,
    base: &Spec,
    rows: &mut [GridRow],
    progress: &dyn Progress,
) -> Result<(), Error> {
    progress.start(rows.len() as u64 + 1);
    progress.message("opening the GPU");
    let gpu = crate::device::open_gpu()?;
    let tuning =
        crate::tuning::cached(&gpu, crate::TuningChoice::Cached, &req.base_arg, progress).0;
    let opts = LatencyOptions {
        batch: req.batch,
        runs: 3,
        budget: Duration::from_secs(20),
        min_runs: 1,
        stop_above_ms: None,
    };
    let time = |spec: &Spec| -> Result<Option<f64>, Error> {
        let m = Model::build(spec, &Options::default())?;
        let l = measure(&gpu, effc_plan::plan_tuned(&m, &tuning), &opts)?;
        Ok(l.median_ms)
    };
    progress.message("timing the base");
    let base_ms = time(base)?;
    progress.inc(1);
    for r in rows.iter_mut() {
        let c = r.point.coefficients;
        progress.message(&format!("α {} β {} γ {}", c.alpha, c.beta, c.gamma));
        let ms = time(&ir_scale::scaled(base, 1.0, &c))?;
        r.latency_ratio = ms.zip(base_ms).map(|(a, b)| a / b);
        progress.inc(1);
    }
    progress.finish();
    Ok(())
}
