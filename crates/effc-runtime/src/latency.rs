//! End-to-end latency of a plan on the adapter in use, within a time budget, and
//! the per-adapter cache of measured latencies that `effc pick` keeps.
//!
//! [`measure`] compiles a plan with zero weights (the shaders have no
//! data-dependent branches, so values do not change the time), runs one untimed
//! forward, then times whole forwards with [`CompiledModel::time_forward`], as
//! `effc bench` does, until it has `runs` of them or the time budget is spent.
//! Two forwards in a row far over a latency bound end the measurement early: the
//! model does not meet it, and more runs would not change that.
//!
//! The cache is one JSON file per adapter beside the tuning cache
//! (`latency-<adapter>.json`), keyed by model and batch, each entry with a
//! fingerprint of the plan it timed: a plan that changed (another effc, other
//! tiles) is measured again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use effc_plan::Plan;
use serde::{Deserialize, Serialize};

use crate::tune::{adapter_cache_path, lock_cache_dir, read_cache, write_cache, CacheError};
use crate::{median, AdapterSummary, CompiledModel, Gpu, GpuError};

/// How to measure.
#[derive(Clone, Debug)]
pub struct LatencyOptions {
    /// Images per forward.
    pub batch: usize,
    /// Timed forwards at most (after one untimed).
    pub runs: usize,
    /// Wall time for the whole measurement, compilation included. At least the
    /// untimed forward and one timed forward run, unless the untimed one alone
    /// took longer than the budget and `min_runs` is 0.
    pub budget: Duration,
    /// Timed forwards that run even past the budget (0 or 1): with 0, a model whose
    /// untimed first forward (which also compiles the shaders on some drivers)
    /// used the budget has no latency.
    pub min_runs: usize,
    /// Stop after two timed forwards in a row that take longer than this many
    /// milliseconds times 1.5 (the model clearly misses a latency bound).
    pub stop_above_ms: Option<f64>,
}

impl Default for LatencyOptions {
    fn default() -> Self {
        LatencyOptions {
            batch: 1,
            runs: 10,
            budget: Duration::from_secs(20),
            min_runs: 0,
            stop_above_ms: None,
        }
    }
}

/// What [`measure`] found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median of the timed forwards, ms; `None` when none ran (over the budget).
    pub median_ms: Option<f64>,
    pub min_ms: Option<f64>,
    /// Timed forwards.
    pub runs: usize,
    /// The untimed first forward, ms.
    pub first_ms: f64,
    /// Plan, WGSL, validation, pipelines and uploads, ms.
    pub compile_ms: f64,
    /// The time budget ran out before `runs` forwards.
    pub over_budget: bool,
}

/// Compiles `plan` on `gpu` and times whole forwards of `opts.batch` images.
pub fn measure(gpu: &Arc<Gpu>, plan: Plan, opts: &LatencyOptions) -> Result<Latency, GpuError> {
    let start = Instant::now();
    let batch = opts.batch.max(1);
    let cm = CompiledModel::zeroed(gpu, plan, batch)?;
    let compile_ms = start.elapsed().as_secs_f64() * 1e3;
    let first_ms = cm.time_forward(batch)?;
    let mut times: Vec<f64> = vec![];
    let mut over_budget = false;
    while times.len() < opts.runs.max(1) {
        // The first timed forward runs unless the untimed one already used the
        // budget; the others only if they would end within it (each takes about
        // the last one's time).
        let next = times.last().map_or(0.0, |t| t / 1e3);
        if times.len() >= opts.min_runs
            && start.elapsed() + Duration::from_secs_f64(next) > opts.budget
        {
            over_budget = true;
            break;
        }
        let t = cm.time_forward(batch)?;
        times.push(t);
        // Two forwards in a row far over the bound: more would not bring the median
        // under it (one alone may be a hiccup of a shared machine).
        let n = times.len();
        if n >= 2
            && opts
                .stop_above_ms
                .is_some_and(|bound| times[n - 2..].iter().all(|&t| t > 1.5 * bound))
        {
            break;
        }
    }
    let min_ms = times.iter().copied().reduce(f64::min);
    Ok(Latency {
        median_ms: (!times.is_empty()).then(|| median(&mut times.clone())),
        min_ms,
        runs: times.len(),
        first_ms,
        compile_ms,
        over_budget,
    })
}

/// A plan's fingerprint ([`Plan::fingerprint`]): equal plans time alike.
pub fn fingerprint(plan: &Plan) -> String {
    plan.fingerprint()
}

/// One cached measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CachedLatency {
    /// [`fingerprint`] of the plan measured.
    pub plan: String,
    pub latency: Latency,
}

/// What a latency cache file holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyCache {
    /// The adapter, as `effc bench` prints it.
    pub adapter: String,
    /// effc's version that wrote it.
    pub effc: String,
    /// `"<model> batch <n>"` → measurement.
    pub entries: BTreeMap<String, CachedLatency>,
}

/// The cache key of a model at a batch.
pub fn cache_key(model: &str, batch: usize) -> String {
    format!("{model} batch {batch}")
}

impl LatencyCache {
    /// The cached latency of `key`, if it timed the same plan.
    pub fn get(&self, key: &str, plan: &str) -> Option<&Latency> {
        self.entries
            .get(key)
            .filter(|e| e.plan == plan)
            .map(|e| &e.latency)
    }

    pub fn insert(&mut self, key: String, plan: String, latency: Latency) {
        self.entries.insert(key, CachedLatency { plan, latency });
    }
}

/// The latency cache file of an adapter.
pub fn latency_cache_path(adapter: &AdapterSummary) -> Result<PathBuf, CacheError> {
    adapter_cache_path(adapter, "latency")
}

/// Reads a latency cache (empty when the file does not exist). A file written by
/// another effc version is read as empty: its plans may differ.
pub fn load_latencies_at(path: &Path) -> Result<LatencyCache, CacheError> {
    let Some(text) = read_cache(path)? else {
        return Ok(LatencyCache::default());
    };
    let cache: LatencyCache = serde_json::from_str(&text).map_err(|e| CacheError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if cache.effc != env!("CARGO_PKG_VERSION") {
        return Ok(LatencyCache::default());
    }
    Ok(cache)
}

/// Adds `cache`'s entries to the latency cache file (replacing those it names)
/// and writes it whole. The read-merge-write holds the cache directory's lock,
/// so two processes timing models at once lose neither's measurements.
pub fn save_latencies_at(
    path: &Path,
    adapter: &str,
    cache: &LatencyCache,
) -> Result<(), CacheError> {
    let _lock = lock_cache_dir(path)?;
    // A damaged or another version's file is replaced by what this run has.
    let mut c = load_latencies_at(path).unwrap_or_default();
    c.entries
        .extend(cache.entries.iter().map(|(k, v)| (k.clone(), v.clone())));
    c.adapter = adapter.to_string();
    c.effc = env!("CARGO_PKG_VERSION").to_string();
    let text = serde_json::to_string_pretty(&c).map_err(|e| CacheError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_cache(path, &(text + "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lat(ms: f64) -> Latency {
        Latency {
            median_ms: Some(ms),
            min_ms: Some(ms),
            runs: 3,
            first_ms: ms,
            compile_ms: 1.0,
            over_budget: false,
        }
    }

    #[test]
    fn cache_round_trip_keys_by_plan() {
        let dir = std::env::temp_dir().join(format!("effc-latency-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("a").join("latency-x.json");
        assert_eq!(load_latencies_at(&path).unwrap(), LatencyCache::default());
        let mut c = LatencyCache::default();
        c.insert(cache_key("b0", 1), "p1".into(), lat(150.0));
        save_latencies_at(&path, "adapter x", &c).unwrap();
        let back = load_latencies_at(&path).unwrap();
        assert_eq!(back.get("b0 batch 1", "p1"), Some(&lat(150.0)));
        assert_eq!(
            back.get("b0 batch 1", "p2"),
            None,
            "another plan is not a hit"
        );
        assert_eq!(back.get("b0 batch 2", "p1"), None);
        assert_eq!(back.adapter, "adapter x");
        // Another version's file is not used; a damaged one is an error naming it.
        let text = std::fs::read_to_string(&path).unwrap();
        let old = text.replace(env!("CARGO_PKG_VERSION"), "0.0.0-old");
        std::fs::write(&path, old).unwrap();
        assert!(load_latencies_at(&path).unwrap().entries.is_empty());
        std::fs::write(&path, "{").unwrap();
        let e = load_latencies_at(&path).unwrap_err();
        assert!(e.to_string().contains("latency-x.json"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Two processes timing models at once (each with the cache it loaded
    /// before the other saved) keep both measurements.
    #[test]
    fn concurrent_saves_lose_no_measurement() {
        let dir = std::env::temp_dir().join(format!("effc-latency-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("latency-y.json");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut c = LatencyCache::default();
                    c.insert(cache_key(&format!("m{i}"), 1), "p".into(), lat(i as f64));
                    save_latencies_at(&path, "adapter y", &c).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(load_latencies_at(&path).unwrap().entries.len(), 8);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn fingerprints_differ_with_the_plan() {
        let m = |name: &str| {
            effc_ir::Model::build(
                &effc_ir::Spec::builtin(name).unwrap(),
                &effc_ir::Options::default(),
            )
            .unwrap()
        };
        let a = effc_plan::plan(&m("b0"));
        assert_eq!(fingerprint(&a), fingerprint(&effc_plan::plan(&m("b0"))));
        assert_ne!(fingerprint(&a), fingerprint(&effc_plan::plan(&m("lite0"))));
    }
}
