//! `effc tune`: measures the tile candidates of a model's kernels on the adapter
//! in use and caches the fastest per kernel shape (what `run`, `bench`, `scale`
//! and `pick` then use through [`crate::tuning::cached`]).

use effc_runtime::tune::{check_cache_dir, save_tuning, tune as measure, TuneOptions};
use effc_runtime::KernelTiming;
use serde::Serialize;

use crate::progress::Progress;
use crate::{Error, ModelRequest};

/// A tuning: the model (at its precision), how to measure, whether to save.
#[derive(Clone, Debug)]
pub struct TuneRequest {
    pub model: ModelRequest,
    /// Images per forward while measuring.
    pub batch: usize,
    /// Measurements per kernel and candidate (their median counts).
    pub reps: usize,
    /// Candidates per kernel shape at most (`None`: all).
    pub candidates: Option<usize>,
    /// Write the winners to the adapter's tuning cache.
    pub save: bool,
}

/// One kernel shape: the cost model's tiles and the fastest, with their times.
#[derive(Clone, Debug, Serialize)]
pub struct ShapeRow {
    pub key: String,
    pub kind: &'static str,
    pub kernels: Vec<String>,
    pub default: String,
    pub default_ms: f64,
    pub best: String,
    pub best_ms: f64,
    pub tried: usize,
}

/// What a tuning measured, and where it was saved.
#[derive(Clone, Debug, Serialize)]
pub struct TuneReport {
    pub model: String,
    pub adapter: String,
    pub batch: usize,
    pub precision: effc_plan::Precision,
    /// `timestamps` or `each kernel alone`.
    pub kernel_timing: &'static str,
    pub rounds: usize,
    /// Kernel time per forward with the cost model's tiles, and tuned.
    pub before_ms: f64,
    pub after_ms: f64,
    /// No gain together: the cost model's tiles are kept for every shape.
    pub kept_cost_model: bool,
    pub shapes: Vec<ShapeRow>,
    /// The cache written (`None` with `save` off or nothing to save).
    pub cache: Option<String>,
    /// Why the cache could not be written; the measurements stand, and the
    /// command's exit code is then 1.
    pub cache_error: Option<String>,
}

/// Tunes `req.model` on the GPU; the cache directory is checked before anything
/// is measured.
pub fn tune(req: &TuneRequest, progress: &dyn Progress) -> Result<TuneReport, Error> {
    if req.batch == 0 || req.reps == 0 || req.candidates == Some(0) {
        return Err(Error::Usage(
            "--batch, --reps and --candidates must be at least 1".into(),
        ));
    }
    let model = req.model.resolve()?.model;
    // The cache must be writable before minutes are spent measuring.
    if req.save {
        check_cache_dir().map_err(|e| Error::Environment(e.to_string()))?;
    }
    let gpu = crate::device::open_gpu()?;
    progress.start(1);
    progress.message("measuring candidates");
    let opts = TuneOptions {
        batch: req.batch,
        reps: req.reps,
        max_candidates: req.candidates.unwrap_or(usize::MAX),
        precision: req.model.precision,
    };
    let report = measure(gpu.clone(), &model, &opts, |round, rounds| {
        progress.start(rounds as u64);
        progress.inc(round as u64);
        if round + 2 == rounds {
            progress.message("timing the winners");
        }
    })?;
    progress.finish();
    // What was measured is reported even when the cache cannot be written.
    let saved = if !req.save || report.shapes.is_empty() {
        Ok(None)
    } else {
        save_tuning(&gpu.adapter, &report.tuning).map(Some)
    };
    if let Ok(Some((path, Some(backup)))) = &saved {
        progress.warn(&format!(
            "the tuning cache `{}` was not valid JSON of effc's; it is kept as `{}` and replaced by these tiles",
            path.display(),
            backup.display()
        ));
    }
    let (cache, cache_error) = match saved {
        Ok(s) => (s.map(|(p, _)| p.display().to_string()), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(TuneReport {
        model: model.name.clone(),
        adapter: gpu.adapter.to_string(),
        batch: req.batch,
        precision: req.model.precision,
        kernel_timing: match report.timing {
            KernelTiming::Timestamps => "timestamps",
            KernelTiming::Alone => "each kernel alone",
        },
        rounds: report.rounds,
        before_ms: report.before_ms,
        after_ms: report.after_ms,
        kept_cost_model: report.kept_cost_model,
        shapes: report
            .shapes
            .iter()
            .map(|s| ShapeRow {
                key: s.key.clone(),
                kind: s.kind,
                kernels: s.kernels.clone(),
                default: s.default.to_string(),
                default_ms: s.default_ms,
                best: s.best.to_string(),
                best_ms: s.best_ms,
                tried: s.tried,
            })
            .collect(),
        cache,
        cache_error,
    })
}
