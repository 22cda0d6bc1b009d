//! `effc scale BASE --grid`: the paper's step 1. Every α, β, γ ≥ 1 on the grid
//! with α·β²·γ² within 5% of 2 (at most [`effc_ir::scale::GRID_MAX_POINTS`]),
//! each with the MACs ratio the IR computes at φ = 1 (the rounding of channels,
//! repeats and resolution moves it away from α·β²·γ²) and, when asked, the
//! latency ratio on the adapter.

use std::time::Duration;

use effc_ir::scale::{self as ir_scale, GridPoint};
use effc_ir::{Model, Options, Spec};
use effc_runtime::latency::{measure, LatencyOptions};
use serde::Serialize;

use crate::progress::Progress;
use crate::{Error, ModelRequest};

/// How far from 2 α·β²·γ² may be (relative).
pub const GRID_TOLERANCE: f64 = 0.05;

const ACCURACY: &str = "not computed: ranking the points needs each trained on ImageNet (the paper's step 1), and effc does not train";

/// A grid search: the base, the step, and whether to time each point.
#[derive(Clone, Debug)]
pub struct GridRequest {
    pub base: ModelRequest,
    pub base_arg: String,
    pub step: f64,
    pub measure: bool,
    pub batch: usize,
}

/// One point with its latency ratio (φ = 1 over φ = 0) when measured.
#[derive(Clone, Debug, Serialize)]
pub struct GridRow {
    #[serde(flatten)]
    pub point: GridPoint,
    pub latency_ratio: Option<f64>,
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
    pub points: Vec<GridRow>,
    /// Why the points are not ranked by accuracy.
    pub accuracy: &'static str,
}

/// Lists the grid's points (refused above `GRID_MAX_POINTS`, before any model is
/// built), with their MACs ratios and, with `measure`, latency ratios.
pub fn grid(req: &GridRequest, progress: &dyn Progress) -> Result<GridReport, Error> {
    let step = req.step;
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
    let base = super::scalable(&req.base)?.spec;
    let mut rows = vec![];
    for c in &points {
        rows.push(GridRow {
            point: GridPoint {
                coefficients: *c,
                flops_factor: c.flops_factor(),
                macs_ratio: ir_scale::macs_ratio(&base, c)?,
            },
            latency_ratio: None,
        });
    }
    if req.measure {
        time_points(req, &base, &mut rows, progress)?;
    }
    Ok(GridReport {
        base: req.base_arg.clone(),
        base_name: base.name.clone(),
        step,
        tolerance: GRID_TOLERANCE,
        batch: req.batch,
        measured: req.measure,
        points: rows,
        accuracy: ACCURACY,
    })
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
