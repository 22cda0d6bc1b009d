//! Resource limits, decided before anything is allocated: what a command will need
//! (the checkpoint, weights, activations, input and output buffers, preprocessed
//! images, each stated by the crate that allocates it: `effc_reference::memory`,
//! `effc_runtime::host_memory`, the IR) against the host's memory budget and the
//! adapter's buffer limits. Every refusal names the sizes.
//!
//! The host budget is 80% of `MemAvailable` (`/proc/meminfo`), or
//! `EFFC_MEMORY_LIMIT` (a size as [`crate::size::bytes`] reads it: `8G` is 8·10⁹
//! bytes, `8Gi` 8·2³⁰).

use effc_ir::Model;
use effc_plan::Plan;
use effc_runtime::fit::Bytes;

use crate::Error;

/// The environment variable that overrides the host memory budget.
pub const MEMORY_VAR: &str = "EFFC_MEMORY_LIMIT";

/// The share of `MemAvailable` a command may use.
const SHARE_OF_AVAILABLE: f64 = 0.8;

/// How much host memory a command may use, and where that number comes from.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Budget {
    pub bytes: u64,
    pub source: String,
}

impl Budget {
    /// `EFFC_MEMORY_LIMIT` when set, else 80% of `MemAvailable`, else no limit
    /// (where `/proc/meminfo` does not exist).
    pub fn host() -> Result<Budget, Error> {
        if let Some(v) = std::env::var_os(MEMORY_VAR) {
            let v = v.to_string_lossy();
            let bytes = crate::size::bytes(&v).map_err(|e| {
                Error::Environment(format!(
                    "{MEMORY_VAR}=`{v}` is not a size ({e}): give bytes, or a number with k, M, G, T (powers of 1000) or Ki, Mi, Gi, Ti (powers of 1024), e.g. 8G"
                ))
            })?;
            return Ok(Budget {
                bytes,
                source: format!("{MEMORY_VAR}={v}"),
            });
        }
        match std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| mem_available(&t))
        {
            Some(avail) => Ok(Budget {
                bytes: (avail as f64 * SHARE_OF_AVAILABLE) as u64,
                source: format!(
                    "{:.0}% of the {} available; {MEMORY_VAR} overrides it",
                    SHARE_OF_AVAILABLE * 100.0,
                    Bytes(avail)
                ),
            }),
            None => Ok(Budget {
                bytes: u64::MAX,
                source: "no limit known".into(),
            }),
        }
    }
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// What a command will allocate on the host: named parts, in bytes.
#[derive(Clone, Default, Debug, PartialEq, serde::Serialize)]
pub struct Need {
    pub parts: Vec<(String, u64)>,
}

impl Need {
    pub fn add(&mut self, what: impl Into<String>, bytes: u64) {
        self.parts.push((what.into(), bytes));
    }

    pub fn extend(&mut self, parts: impl IntoIterator<Item = (String, u64)>) {
        self.parts.extend(parts);
    }

    pub fn total(&self) -> u64 {
        self.parts
            .iter()
            .fold(0u64, |a, (_, b)| a.saturating_add(*b))
    }

    /// Fails, naming every part, when the total exceeds `budget`.
    pub fn check(&self, doing: &str, budget: &Budget) -> Result<(), Error> {
        let total = self.total();
        if total <= budget.bytes {
            return Ok(());
        }
        let mut msg = format!(
            "{doing} needs {} of memory, more than the {} it may use ({}):",
            Bytes(total),
            Bytes(budget.bytes),
            budget.source
        );
        for (what, bytes) in &self.parts {
            msg += &format!("\n  {:>10}  {what}", Bytes(*bytes).to_string());
        }
        msg += "\nhelp: a smaller --resolution or --batch needs less";
        Err(Error::TooBig(msg))
    }
}

fn f32s(n: u64) -> u64 {
    n.saturating_mul(4)
}

/// The model's parameters as f32 (a checkpoint loaded, or random weights), and
/// the checkpoint file's bytes while it is read.
pub fn weights(model: &Model, file_bytes: Option<u64>) -> Vec<(String, u64)> {
    let params = model.cost().params;
    let mut v = vec![(
        format!("weights: {} parameters, f32", effc_ir::cost::group(params)),
        f32s(params),
    )];
    if let Some(b) = file_bytes {
        v.push(("the checkpoint file, while it is read".into(), b));
    }
    v
}

/// `n` input images as NCHW f32.
pub fn inputs(model: &Model, n: usize) -> (String, u64) {
    let [c, h, w] = model.input;
    let per = (c as u64).saturating_mul(h as u64).saturating_mul(w as u64);
    (
        format!("input: {n} x {c}x{h}x{w} f32"),
        f32s((n as u64).saturating_mul(per)),
    )
}

/// One image while it is preprocessed: the resized crop (bytes) and its f32 copy.
pub fn preprocessing(model: &Model) -> (String, u64) {
    let r = model.resolution as u64;
    let px = r.saturating_mul(r).saturating_mul(3);
    (
        format!("preprocessing one image to {r}x{r}"),
        px.saturating_add(f32s(px)),
    )
}

/// The reference executor's weights and one image's activations, as
/// `effc_reference::memory` states them.
pub fn cpu_executor(model: &Model) -> Vec<(String, u64)> {
    let m = effc_reference::memory(model);
    vec![
        ("reference executor: its weights".into(), m.weights),
        (
            "reference executor: the activations of one image".into(),
            m.per_image,
        ),
    ]
}

/// A GPU model's host side, as `effc_runtime::host_memory` states it.
pub fn gpu_host(plan: &Plan, batch: usize, software: bool) -> Vec<(String, u64)> {
    effc_runtime::host_memory(plan, batch, software)
}

/// The adapter's limits a plan must fit at `batch` images per forward, checked by
/// the runtime's own [`effc_runtime::fit()`] (the one place that decides them)
/// before anything is created on the device.
pub fn check_gpu(
    plan: &Plan,
    batch: usize,
    adapter: &str,
    limits: &wgpu::Limits,
) -> Result<(), Error> {
    effc_runtime::fit(plan, limits, batch)
        .map(drop)
        .map_err(|what| {
            Error::TooBig(
                effc_runtime::GpuError::TooBig {
                    model: plan.model.clone(),
                    adapter: adapter.to_string(),
                    what,
                }
                .to_string(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, resolution: Option<usize>) -> Model {
        let spec = effc_ir::Spec::builtin(name).unwrap();
        let opts = effc_ir::Options {
            resolution,
            ..Default::default()
        };
        Model::build(&spec, &opts).unwrap()
    }

    #[test]
    fn meminfo_available() {
        let t = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   2000 kB\n";
        assert_eq!(mem_available(t), Some(2000 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn a_huge_resolution_is_refused_with_its_sizes() {
        let m = model("lite0", Some(16384));
        let mut need = Need::default();
        need.add("x", inputs(&m, 1).1);
        need.extend(cpu_executor(&m));
        // The stem's output alone: 8192 x 8192 x 32 f32 = 8 GiB.
        assert!(need.total() > 2 * (8u64 << 30), "{}", need.total());
        let budget = Budget {
            bytes: 16 << 30,
            source: "test".into(),
        };
        let e = need
            .check("running lite0", &budget)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("more than the 16.0 GiB it may use (test)"),
            "{e}"
        );
        assert!(e.contains("the activations of one image"), "{e}");
        // The default resolution fits easily.
        let m = model("lite0", None);
        let mut need = Need::default();
        need.extend(cpu_executor(&m));
        assert!(need.total() < 200 << 20, "{}", need.total());
    }

    #[test]
    fn adapter_buffers_bound_the_batch() {
        let m = model("lite0", None);
        let plan = effc_plan::plan(&m);
        let limits = wgpu::Limits::default();
        check_gpu(&plan, 16, "test adapter", &limits).unwrap();
        let e = check_gpu(&plan, 100_000, "test adapter", &limits)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not fit adapter `test adapter`"), "{e}");
        assert!(e.contains("a batch of 100000 images takes"), "{e}");
        assert!(e.contains("a max batch of"), "{e}");
    }
}
