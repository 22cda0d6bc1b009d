//! `effc pick`: times the built-in models on the adapter in use (cached per
//! adapter) and recommends the most accurate one, by its published ImageNet
//! top-1, that meets the latency and memory budgets.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use effc_catalog::accuracy::{accuracy, family};
use effc_ir::{Model, Options, Spec};
use effc_runtime::latency::{
    cache_key, fingerprint, latency_cache_path, load_latencies_at, measure, save_latencies_at,
    LatencyCache, LatencyOptions,
};
use effc_runtime::Gpu;
use serde::Serialize;

use crate::files::Outputs;
use crate::progress::Progress;
use crate::size::{ms, si};
use crate::{Error, TuningChoice};

/// What to choose among and the budgets to meet.
#[derive(Clone, Debug)]
pub struct PickRequest {
    /// Longest forward at `batch` on this adapter, in ms.
    pub max_latency: Option<f64>,
    /// Most GPU memory (weights plus activations at `batch`), in bytes.
    pub max_memory: Option<u64>,
    pub batch: usize,
    /// Only this family (`v1`, `lite`, `v2`).
    pub family: Option<String>,
    /// Only these built-ins (empty: all).
    pub models: Vec<String>,
    /// Wall time to time one model at most.
    pub time_per_model: Duration,
    /// Timed forwards per model (after one untimed).
    pub runs: usize,
    /// Measure again where the cache has a latency.
    pub remeasure: bool,
    pub tuning: TuningChoice,
    /// Draw top-1 against latency (SVG) here.
    pub plot: Option<PathBuf>,
}

/// One built-in, measured or not.
#[derive(Clone, Debug, Serialize)]
pub struct PickRow {
    pub model: String,
    pub family: &'static str,
    pub top1: f64,
    pub weights: &'static str,
    pub pretraining: &'static str,
    pub source: &'static str,
    pub resolution: usize,
    pub params: u64,
    pub macs: u64,
    pub memory_bytes: u64,
    pub latency_ms: Option<f64>,
    /// `measured`, `cached`, `over the memory budget`, `not timed: ...`, ...
    pub status: String,
    /// Budgets it exceeds; empty when it meets them all.
    pub exceeds: Vec<String>,
}

/// The budgets of a pick, as its JSON shows them.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PickBudgets {
    pub max_latency_ms: Option<f64>,
    pub max_memory: Option<u64>,
}

/// Every candidate and the recommendation.
#[derive(Clone, Debug, Serialize)]
pub struct PickReport {
    pub adapter: String,
    pub batch: usize,
    pub budgets: PickBudgets,
    pub models: Vec<PickRow>,
    /// The most accurate model within the budgets (the faster of equals).
    pub recommended: Option<String>,
    /// The adapter's latency cache.
    pub cache: Option<String>,
    /// `recommended`'s index in `models`.
    #[serde(skip)]
    pub best: Option<usize>,
}

/// The built-ins the request names, checked, smallest first.
fn candidates(req: &PickRequest) -> Result<Vec<Model>, Error> {
    let mut names: Vec<&str> = effc_catalog::names().collect();
    for m in &req.models {
        if effc_catalog::source(m).is_none() {
            return Err(Error::Usage(format!(
                "--models: `{m}` is not a built-in model (built-ins: {})",
                names.join(", ")
            )));
        }
    }
    names.retain(|n| req.models.is_empty() || req.models.iter().any(|m| m == n));
    names.retain(|n| req.family.as_deref().is_none_or(|f| family(n) == Some(f)));
    if names.is_empty() {
        return Err(Error::Usage(
            "no built-in model is in both --family and --models".into(),
        ));
    }
    let mut models = vec![];
    for n in &names {
        let spec = Spec::builtin(n)?;
        models.push(Model::build(&spec, &Options::default())?);
    }
    // Smallest first, so that a model's time can be estimated from the ones before.
    models.sort_by_key(|m| m.cost().macs);
    Ok(models)
}

/// Times the request's built-ins and recommends one. `Ok` with `best: None`
/// when none meets the budgets (the command's exit code is then 1).
pub fn pick(req: &PickRequest, progress: &dyn Progress) -> Result<PickReport, Error> {
    if req.batch == 0 || req.runs == 0 {
        return Err(Error::Usage("--batch and --runs must be at least 1".into()));
    }
    let models = candidates(req)?;
    let mut files = Outputs::new();
    let plot = req
        .plot
        .as_ref()
        .map(|p| files.file("--plot", p))
        .transpose()?;
    progress.start(models.len() as u64);
    progress.message("opening the GPU");
    let gpu = crate::device::open_gpu()?;
    let (tuning, _) = crate::tuning::cached(&gpu, req.tuning, "MODEL", progress);
    let mut t = Timer {
        req,
        gpu: &gpu,
        progress,
        cache_path: latency_cache_path(&gpu.adapter).ok(),
        cache: LatencyCache::default(),
        rate: None,
    };
    if let (Some(p), false) = (&t.cache_path, req.remeasure) {
        t.cache = load_latencies_at(p).unwrap_or_else(|e| {
            progress.warn(&format!("{e}; measuring again"));
            Default::default()
        });
    }
    let mut rows = vec![];
    for m in &models {
        rows.push(t.row(m, &tuning)?);
        progress.inc(1);
    }
    progress.finish();
    let best = best(&rows);
    let adapter = gpu.adapter.to_string();
    if let Some(file) = &plot {
        let svg = effc_draw::chart(&chart(req, &gpu.adapter.name, &rows, best))
            .map_err(|e| Error::Internal(format!("--plot: {e}")))?;
        file.write(svg.as_bytes())?;
    }
    Ok(PickReport {
        adapter,
        batch: req.batch,
        budgets: PickBudgets {
            max_latency_ms: req.max_latency,
            max_memory: req.max_memory,
        },
        recommended: best.map(|i| rows[i].model.clone()),
        models: rows,
        cache: t.cache_path.map(|p| p.display().to_string()),
        best,
    })
}

/// The most accurate that meets every budget; the faster of equals.
fn best(rows: &[PickRow]) -> Option<usize> {
    rows.iter()
        .enumerate()
        .filter(|(_, r)| r.exceeds.is_empty())
        .max_by(|a, b| {
            a.1.top1.total_cmp(&b.1.top1).then(
                b.1.latency_ms
                    .unwrap_or(f64::MAX)
                    .total_cmp(&a.1.latency_ms.unwrap_or(f64::MAX)),
            )
        })
        .map(|(i, _)| i)
}

/// Times models one after another on one adapter, with its latency cache.
struct Timer<'a> {
    req: &'a PickRequest,
    gpu: &'a Arc<Gpu>,
    progress: &'a dyn Progress,
    cache_path: Option<PathBuf>,
    cache: LatencyCache,
    /// The fastest milliseconds per MAC seen: a lower bound on a bigger model's time.
    rate: Option<f64>,
}

impl Timer<'_> {
    fn row(&mut self, m: &Model, tuning: &effc_plan::Tuning) -> Result<PickRow, Error> {
        let req = self.req;
        let cost = m.cost();
        let acc = accuracy(&m.name)
            .ok_or_else(|| Error::Internal(format!("no accuracy for `{}`", m.name)))?;
        let plan = effc_plan::plan_tuned(m, tuning);
        let memory = (plan.weight_bytes() + plan.activation_bytes(req.batch)) as u64;
        let mut row = PickRow {
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
        self.progress.message(&format!("timing {}", m.name));
        let key = cache_key(&m.name, req.batch);
        let print = fingerprint(&plan);
        let estimate = self.rate.map(|r| r * cost.macs as f64);
        if let Some(limit) = req.max_memory.filter(|&l| memory > l) {
            row.status = "not timed: over the memory budget".into();
            row.exceeds.push(format!(
                "memory {}B > {}B",
                si(memory as f64),
                si(limit as f64)
            ));
        } else if let Some(l) = self.cache.get(&key, &print) {
            row.latency_ms = l.median_ms;
            row.status = format!("cached ({} runs)", l.runs);
        } else if let Some(e) =
            estimate.filter(|&e| 2.0 * e > req.time_per_model.as_secs_f64() * 1e3)
        {
            row.status = format!(
                "not timed: a forward would take about {} or more, over --time-per-model {:?}",
                ms(e),
                req.time_per_model
            );
        } else {
            self.measure(plan, key, print, cost.macs, &mut row);
        }
        if let Some(l) = row.latency_ms {
            let r = l / cost.macs as f64;
            self.rate = Some(self.rate.map_or(r, |x| x.min(r)));
        }
        if let Some(b) = req.max_latency {
            match row.latency_ms {
                Some(l) if l > b => row.exceeds.push(format!("latency {} > {}", ms(l), ms(b))),
                Some(_) => {}
                None => row.exceeds.push("latency unknown".into()),
            }
        }
        Ok(row)
    }

    fn measure(
        &mut self,
        plan: effc_plan::Plan,
        key: String,
        print: String,
        macs: u64,
        row: &mut PickRow,
    ) {
        let req = self.req;
        let opts = LatencyOptions {
            batch: req.batch,
            runs: req.runs,
            budget: req.time_per_model,
            min_runs: 0,
            stop_above_ms: None,
        };
        match measure(self.gpu, plan, &opts) {
            Ok(l) if l.median_ms.is_some() => {
                row.latency_ms = l.median_ms;
                row.status = if l.over_budget {
                    format!("measured ({} runs within the time budget)", l.runs)
                } else {
                    format!("measured ({} runs)", l.runs)
                };
                self.cache.insert(key, print, l);
                if let Some(p) = &self.cache_path {
                    let adapter = self.gpu.adapter.to_string();
                    if let Err(e) = save_latencies_at(p, &adapter, &self.cache) {
                        self.progress.warn(&e.to_string());
                    }
                }
            }
            Ok(l) => {
                row.status = format!(
                    "not timed: the first forward took {}, over --time-per-model {:?}",
                    ms(l.first_ms),
                    req.time_per_model
                );
                let r = l.first_ms / macs as f64;
                self.rate = Some(self.rate.map_or(r, |x| x.min(r)));
            }
            Err(e) => row.status = format!("cannot run: {e}"),
        }
    }
}

/// Top-1 against latency, a series per family.
fn chart(
    req: &PickRequest,
    adapter: &str,
    rows: &[PickRow],
    best: Option<usize>,
) -> effc_draw::Chart {
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
        title: format!("ImageNet top-1 against latency, batch {}", req.batch),
        x_label: format!("latency on {adapter} (ms, log scale)"),
        y_label: "published ImageNet top-1 (%)".into(),
        series,
        budgets: req
            .max_latency
            .map(|l| effc_draw::Budget::X(l, format!("latency ≤ {}", ms(l))))
            .into_iter()
            .collect(),
        note: (!untimed.is_empty()).then(|| format!("not timed: {}", untimed.join(", "))),
    }
}
