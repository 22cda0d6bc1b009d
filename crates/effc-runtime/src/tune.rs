//! Tuning tiles on the adapter in use, and the cache that keeps them.
//!
//! [`tune`] measures, for every kernel shape of a model, the tiles
//! [`effc_plan::tune::candidates`] proposes: round `j` compiles the whole model with
//! every shape's `j`-th candidate and times each kernel with the same method as
//! `effc bench` (timestamps, or each kernel alone), so one round measures one
//! candidate of every shape. The fastest candidate of each shape is timed again and
//! kept only if it beats the cost model's tiles by 2% there too; a last round times
//! the result, so the reported gain is measured, not summed.
//!
//! [`load_tuning`] and [`save_tuning`] keep the result per adapter in
//! `$EFFC_CACHE_DIR`, else `$XDG_CACHE_HOME/effc`, else `~/.cache/effc`, one JSON
//! file per adapter (its name, backend and driver).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use effc_plan::tune::{candidates, tiles_of, Tiles};
use effc_plan::{Plan, Tuning};

use crate::profile::KernelTiming;
use crate::{AdapterSummary, CompiledModel, Gpu, GpuError};

/// How to tune.
#[derive(Clone, Debug)]
pub struct TuneOptions {
    /// Images per forward while measuring.
    pub batch: usize,
    /// Measurements per kernel and candidate (their median counts).
    pub reps: usize,
    /// Candidates per shape at most, the cost model's first.
    pub max_candidates: usize,
    /// The storage precision tuned for: f16 kernels move half the bytes, so their
    /// best tiles can differ; their shape keys end in ` f16`.
    pub precision: effc_plan::Precision,
}

impl Default for TuneOptions {
    fn default() -> TuneOptions {
        TuneOptions {
            batch: 1,
            reps: 5,
            max_candidates: usize::MAX,
            precision: effc_plan::Precision::F32,
        }
    }
}

/// One kernel shape's result.
#[derive(Clone, Debug)]
pub struct ShapeResult {
    pub key: String,
    /// `pointwise`, `depthwise`, `conv`, ...
    pub kind: &'static str,
    /// The model's kernels of this shape.
    pub kernels: Vec<String>,
    /// The cost model's tiles and their time (all kernels of the shape, ms).
    pub default: Tiles,
    pub default_ms: f64,
    /// The fastest candidate and its time.
    pub best: Tiles,
    pub best_ms: f64,
    pub tried: usize,
}

/// What [`tune`] found.
#[derive(Clone, Debug)]
pub struct TuneReport {
    pub shapes: Vec<ShapeResult>,
    /// The fastest tiles of every shape.
    pub tuning: Tuning,
    pub timing: KernelTiming,
    /// Kernel time of one forward (sum over all kernels, ms) with the cost model's
    /// tiles, and with the tuned tiles, measured in separate rounds.
    pub before_ms: f64,
    pub after_ms: f64,
    pub rounds: usize,
    /// The tuned tiles were not faster together than the cost model's, so
    /// `tuning` holds the cost model's tiles (recorded as measured).
    pub kept_cost_model: bool,
}

/// Measures the candidate tiles of every kernel shape of `model` on `gpu`.
/// `progress(round, rounds)` is called before each round (the last two time the
/// winners: to confirm each, then together). Weights and input are zeros: the shaders have no data-dependent
/// branches, so their values do not change the time.
pub fn tune(
    gpu: Arc<Gpu>,
    model: &effc_ir::Model,
    opts: &TuneOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<TuneReport, GpuError> {
    let batch = opts.batch.max(1);
    let base = effc_plan::plan_at(model, opts.precision);
    let shapes = shapes_of(&base, opts.max_candidates);
    let rounds = shapes.iter().map(|s| s.1.len()).max().unwrap_or(0);
    // Compiles the model with `tuning` and times it: each shape's kernels, summed,
    // and all kernels.
    let measure = |tuning: &Tuning| -> Result<(KernelTiming, Vec<f64>, f64), GpuError> {
        let plan = effc_plan::plan_with(model, tuning, opts.precision);
        let (how, ms) = time_plan(&gpu, plan, batch, opts.reps)?;
        let per_shape = shapes
            .iter()
            .map(|(_, _, kernels)| kernels.iter().map(|&k| ms[k]).sum())
            .collect();
        Ok((how, per_shape, ms.iter().sum()))
    };
    // times[shape][candidate]
    let mut times: Vec<Vec<f64>> = shapes.iter().map(|s| vec![f64::NAN; s.1.len()]).collect();
    let mut timing = KernelTiming::Alone;
    let mut before_ms = 0.0;
    for j in 0..rounds {
        progress(j, rounds + 2);
        let mut tuning = Tuning::default();
        for (key, c, _) in &shapes {
            if let Some(t) = c.get(j) {
                tuning.set(key, *t);
            }
        }
        let (how, per_shape, total) = measure(&tuning)?;
        timing = how;
        if j == 0 {
            before_ms = total;
        }
        for (ms, t) in per_shape.into_iter().zip(&mut times) {
            if let Some(slot) = t.get_mut(j) {
                *slot = ms;
            }
        }
    }
    // The fastest candidate of each shape, timed again with the others' winners: a
    // minimum over noisy times favours luck, so a winner that is not at least 2%
    // faster than the cost model's tiles in this second measurement is dropped.
    let winners = fastest(&times);
    let mut tuning = Tuning::default();
    for ((key, c, _), &w) in shapes.iter().zip(&winners) {
        tuning.set(key, c[w]);
    }
    let confirmed = if rounds > 0 {
        progress(rounds, rounds + 2);
        measure(&tuning)?.1
    } else {
        vec![]
    };
    let mut results = shape_results(&base, &shapes, &winners, &confirmed, &times);
    for (r, (key, _, _)) in results.iter().zip(&shapes) {
        tuning.set(key, r.best);
    }
    let after_ms = if rounds == 0 {
        0.0
    } else {
        progress(rounds + 1, rounds + 2);
        measure(&tuning)?.2
    };
    let changed = results.iter().any(|r| r.best != r.default);
    let kept_cost_model = changed && after_ms >= before_ms;
    if kept_cost_model {
        for (r, (key, c, _)) in results.iter_mut().zip(&shapes) {
            r.best = c[0];
            r.best_ms = r.default_ms;
            tuning.set(key, c[0]);
        }
    }
    Ok(TuneReport {
        shapes: results,
        tuning,
        timing,
        before_ms,
        after_ms,
        rounds,
        kept_cost_model,
    })
}

/// A kernel shape to tune: its key, its candidate tiles (the cost model's
/// first) and the kernels of the plan that have it.
type Shape = (String, Vec<Tiles>, Vec<usize>);

/// The plan's tunable shapes in dispatch order, each with at most `max`
/// candidates.
fn shapes_of(base: &Plan, max: usize) -> Vec<Shape> {
    let mut shapes: Vec<Shape> = vec![];
    for (i, k) in base.kernels.iter().enumerate() {
        let Some(key) = &k.tune_key else { continue };
        match shapes.iter_mut().find(|s| &s.0 == key) {
            Some(s) => s.2.push(i),
            None => {
                let mut c = candidates(k);
                c.truncate(max.max(1));
                shapes.push((key.clone(), c, vec![i]));
            }
        }
    }
    shapes
}

/// The fastest candidate of each shape (`times[shape][candidate]`; untimed
/// ones are NaN), the cost model's (0) when none was timed.
fn fastest(times: &[Vec<f64>]) -> Vec<usize> {
    times
        .iter()
        .map(|t| {
            t.iter()
                .copied()
                .enumerate()
                .filter(|(_, t)| t.is_finite())
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map_or(0, |(i, _)| i)
        })
        .collect()
}

/// Each shape's result: its winner where the confirming measurement is at least
/// 2% faster than the cost model's tiles, else the cost model's.
fn shape_results(
    base: &Plan,
    shapes: &[Shape],
    winners: &[usize],
    confirmed: &[f64],
    times: &[Vec<f64>],
) -> Vec<ShapeResult> {
    let mut results = vec![];
    for (s, (key, c, kernels)) in shapes.iter().enumerate() {
        let keep = winners[s] != 0 && confirmed[s] < 0.98 * times[s][0];
        let (best, best_ms) = if keep {
            (c[winners[s]], confirmed[s])
        } else {
            (c[0], times[s][0])
        };
        let k = &base.kernels[kernels[0]];
        results.push(ShapeResult {
            key: key.clone(),
            kind: k.kind(),
            kernels: kernels
                .iter()
                .map(|&i| base.kernels[i].name.clone())
                .collect(),
            default: tiles_of(k).unwrap_or(c[0]),
            default_ms: times[s][0],
            best,
            best_ms,
            tried: c.len(),
        });
    }
    results
}

/// Compiles a plan with zero weights and times each of its kernels.
fn time_plan(
    gpu: &Arc<Gpu>,
    plan: Plan,
    batch: usize,
    reps: usize,
) -> Result<(KernelTiming, Vec<f64>), GpuError> {
    let cm = CompiledModel::zeroed(gpu, plan, batch)?;
    cm.time_forward(batch)?; // warm-up
    cm.time_kernels(batch, reps, None)
}

/// Why the tuning cache could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("no cache directory: set EFFC_CACHE_DIR (or XDG_CACHE_HOME or HOME)")]
    NoDirectory,
    #[error("cannot read the tuning cache `{path}`: {message}")]
    Read { path: PathBuf, message: String },
    #[error("the tuning cache `{path}` is not valid JSON of effc's ({message}); `effc tune` rewrites it")]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot write the tuning cache `{path}`: {message}")]
    Write { path: PathBuf, message: String },
    /// The cache directory (`EFFC_CACHE_DIR`, `XDG_CACHE_HOME/effc` or
    /// `~/.cache/effc`) is, or lies below, something that is not a directory.
    #[error("the cache directory `{}` cannot be used: `{}` is {kind}, not a directory (set EFFC_CACHE_DIR to a directory)", path.display(), blocker.display())]
    NotADirectory {
        path: PathBuf,
        blocker: PathBuf,
        kind: effc_files::FileKind,
    },
}

/// What a cache file holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct CacheFile {
    /// The adapter the tiles were measured on, as `effc bench` prints it.
    adapter: String,
    /// effc's version that wrote it.
    effc: String,
    tuning: Tuning,
}

fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(d) = var("EFFC_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("effc"));
    }
    var("HOME").map(|h| PathBuf::from(h).join(".cache").join("effc"))
}

/// The cache file of an adapter: `tuning-<name, backend and driver>.json`.
pub fn cache_path(adapter: &AdapterSummary) -> Result<PathBuf, CacheError> {
    adapter_cache_path(adapter, "tuning")
}

/// An adapter's cache file of one kind: `<kind>-<name, backend and driver>.json`
/// in the cache directory.
pub fn adapter_cache_path(adapter: &AdapterSummary, kind: &str) -> Result<PathBuf, CacheError> {
    let id = format!("{} {} {}", adapter.name, adapter.backend, adapter.driver);
    let mut slug = String::new();
    for ch in id.chars() {
        if ch.is_ascii_alphanumeric() {
            slug.push(ch.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_matches('-').chars().take(120).collect();
    Ok(cache_dir()
        .ok_or(CacheError::NoDirectory)?
        .join(format!("{kind}-{slug}.json")))
}

/// The tiles cached for this adapter (`None` when nothing was tuned on it), with
/// the file's path and the entries dropped as unusable.
pub fn load_tuning(
    adapter: &AdapterSummary,
) -> Result<Option<(Tuning, PathBuf, Vec<String>)>, CacheError> {
    let path = cache_path(adapter)?;
    Ok(load_tuning_at(&path)?.map(|(t, dropped)| (t, path, dropped)))
}

/// The tiles of one cache file (`None` when it does not exist), and the entries
/// dropped as unusable.
pub fn load_tuning_at(path: &Path) -> Result<Option<(Tuning, Vec<String>)>, CacheError> {
    let Some(text) = read_cache(path)? else {
        return Ok(None);
    };
    let mut file: CacheFile = serde_json::from_str(&text).map_err(|e| CacheError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let dropped = file.tuning.retain_valid();
    Ok(Some((file.tuning, dropped)))
}

/// Adds `tuning` to this adapter's cache (replacing the shapes it names) and
/// returns the file's path, and where a corrupt cache file was moved (see
/// [`save_tuning_at`]).
pub fn save_tuning(
    adapter: &AdapterSummary,
    tuning: &Tuning,
) -> Result<(PathBuf, Option<PathBuf>), CacheError> {
    let path = cache_path(adapter)?;
    let backup = save_tuning_at(&path, &adapter.to_string(), tuning)?;
    Ok((path, backup))
}

/// [`save_tuning`] to a given file, for the adapter `adapter` describes. The
/// read-merge-write holds an advisory lock on the cache directory (`flock`), so
/// two `effc tune` runs never lose each other's tiles. A corrupt cache file is
/// kept as `<file>.corrupt` (its path is returned) and replaced.
pub fn save_tuning_at(
    path: &Path,
    adapter: &str,
    tuning: &Tuning,
) -> Result<Option<PathBuf>, CacheError> {
    let write_err = |p: &Path, e: std::io::Error| CacheError::Write {
        path: p.to_path_buf(),
        message: e.to_string(),
    };
    let _lock = lock_cache_dir(path)?;
    let mut backup = None;
    let mut all = match load_tuning_at(path) {
        Ok(Some((t, _))) => t,
        Ok(None) => Tuning::default(),
        Err(CacheError::Corrupt { .. }) => {
            let b = path.with_extension("json.corrupt");
            std::fs::rename(path, &b).map_err(|e| write_err(&b, e))?;
            backup = Some(b);
            Tuning::default()
        }
        Err(e) => return Err(e),
    };
    all.merge(tuning.clone());
    let file = CacheFile {
        adapter: adapter.to_string(),
        effc: env!("CARGO_PKG_VERSION").to_string(),
        tuning: all,
    };
    let text = serde_json::to_string_pretty(&file).map_err(|e| CacheError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_cache(path, &(text + "\n"))?;
    Ok(backup)
}

/// Writes a cache file whole (creating its directory) through
/// `effc_files::replace`: a reader never sees half a file.
pub(crate) fn write_cache(path: &Path, text: &str) -> Result<(), CacheError> {
    let write_err = |p: &Path, e: std::io::Error| CacheError::Write {
        path: p.to_path_buf(),
        message: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    }
    effc_files::replace(path, text.as_bytes()).map_err(|e| write_err(path, e))
}

/// Reads a cache file (`None` when it does not exist), as a regular file of at
/// most 64 MiB.
pub(crate) fn read_cache(path: &Path) -> Result<Option<String>, CacheError> {
    match effc_files::read_text(path, effc_files::Input::CACHE) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(CacheError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// Locks a cache file's directory (created if needed) for a read-merge-write.
pub(crate) fn lock_cache_dir(path: &Path) -> Result<effc_files::DirLock, CacheError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let write_err = |e: std::io::Error| CacheError::Write {
        path: dir.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(write_err)?;
    effc_files::DirLock::acquire(dir).map_err(write_err)
}

/// The cache directory, checked before anything is measured: it must be a
/// directory, or not exist yet below a directory, so that a command that
/// measures for minutes does not fail only when it saves.
pub fn check_cache_dir() -> Result<PathBuf, CacheError> {
    check_cache_dir_at(cache_dir().ok_or(CacheError::NoDirectory)?)
}

fn check_cache_dir_at(dir: PathBuf) -> Result<PathBuf, CacheError> {
    let mut at = dir.as_path();
    loop {
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => return Ok(dir),
            Ok(m) => {
                return Err(CacheError::NotADirectory {
                    path: dir.clone(),
                    blocker: at.to_path_buf(),
                    kind: effc_files::FileKind::of(&m),
                })
            }
            Err(_) => match at.parent() {
                Some(p) if !p.as_os_str().is_empty() => at = p,
                _ => return Ok(dir),
            },
        }
    }
}

/// How many of the kernels of `plan` that have tiles `tuning` names, and how many
/// have tiles.
pub fn coverage(plan: &Plan, tuning: &Tuning) -> (usize, usize) {
    let keys: Vec<&String> = plan
        .kernels
        .iter()
        .filter_map(|k| k.tune_key.as_ref())
        .collect();
    let named = keys
        .iter()
        .filter(|k| tuning.gemm.contains_key(**k) || tuning.depthwise.contains_key(**k))
        .count();
    (named, keys.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use effc_plan::tune::Tiles;
    use effc_plan::{dw_tiles, gemm_tiles};

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("effc-tune-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn cache_round_trip_merges_and_survives_damage() {
        let dir = temp("cache");
        let path = dir.join("sub").join("tuning-x.json");
        assert!(load_tuning_at(&path).unwrap().is_none());

        let mut a = Tuning::default();
        a.set("gemm a", Tiles::Gemm(gemm_tiles(196, 30)));
        save_tuning_at(&path, "adapter x", &a).unwrap();
        let mut b = Tuning::default();
        b.set("dw b", Tiles::Dw(dw_tiles(4, 7)));
        b.set("gemm a", Tiles::Gemm(gemm_tiles(49, 30)));
        save_tuning_at(&path, "adapter x", &b).unwrap();
        let (got, dropped) = load_tuning_at(&path).unwrap().unwrap();
        assert!(dropped.is_empty());
        assert_eq!(got.len(), 2);
        assert_eq!(
            got.gemm["gemm a"],
            gemm_tiles(49, 30),
            "the newer entry wins"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"adapter\": \"adapter x\""), "{text}");

        // Unusable tiles (hand-edited) are dropped and named.
        let edited = text.replacen("\"rows\": 7", "\"rows\": 0", 1);
        std::fs::write(&path, edited).unwrap();
        let (got, dropped) = load_tuning_at(&path).unwrap().unwrap();
        assert_eq!(dropped, ["gemm a"]);
        assert_eq!(got.len(), 1);

        // A damaged file is an error that names it, and saving replaces it.
        std::fs::write(&path, "{ not json").unwrap();
        let err = load_tuning_at(&path).unwrap_err();
        assert!(matches!(err, CacheError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("tuning-x.json"), "{err}");
        let backup = save_tuning_at(&path, "adapter x", &a).unwrap().unwrap();
        assert_eq!(load_tuning_at(&path).unwrap().unwrap().0, a);
        // ... keeping the damaged one beside it.
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), "{ not json");
        assert!(backup.to_string_lossy().ends_with("tuning-x.json.corrupt"));

        // A directory where the file should be cannot be read.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(load_tuning_at(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Concurrent read-merge-writes keep every writer's tiles (the lock).
    #[test]
    fn a_cache_directory_that_is_a_file_is_refused_before_measuring() {
        let dir = temp("notadir");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("file");
        std::fs::write(&file, "x").unwrap();
        // EFFC_CACHE_DIR is process-wide: the check is tested on the walk itself.
        let e = check_cache_dir_at(file.join("sub"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a regular file, not a directory"), "{e}");
        assert!(check_cache_dir_at(dir.join("new/deeper")).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn concurrent_saves_lose_nothing() {
        let dir = temp("lock");
        let path = dir.join("tuning-y.json");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut t = Tuning::default();
                    t.set(&format!("gemm {i}"), Tiles::Gemm(gemm_tiles(196, 30)));
                    save_tuning_at(&path, "adapter y", &t).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(load_tuning_at(&path).unwrap().unwrap().0.len(), 8);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cache_file_names_are_plain() {
        let a = AdapterSummary {
            name: "NVIDIA H100 80GB HBM3".into(),
            backend: "vulkan".into(),
            device_type: "DiscreteGpu".into(),
            driver: "NVIDIA 580.159.04".into(),
        };
        let name = cache_path(&a)
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.is_empty() {
            assert_eq!(
                name,
                "tuning-nvidia-h100-80gb-hbm3-vulkan-nvidia-580-159-04.json"
            );
        }
    }
}
