//! Resource limits, decided before anything is allocated: what a command will need
//! (weights, activations, input and output buffers, preprocessed images, all
//! computed from the IR and the kernel plan) against the host's memory budget and
//! the adapter's buffer limits. Every refusal names the sizes.
//!
//! The host budget is 80% of `MemAvailable` (`/proc/meminfo`), or
//! `EFFC_MEMORY_LIMIT` (bytes, or with a K/M/G/T suffix, powers of 1024).

use effc_ir::Model;
use effc_plan::Plan;

use crate::Failure;

/// The environment variable that overrides the host memory budget.
pub const MEMORY_VAR: &str = "EFFC_MEMORY_LIMIT";

/// The share of `MemAvailable` a command may use.
const SHARE_OF_AVAILABLE: f64 = 0.8;

/// How much host memory a command may use, and where that number comes from.
#[derive(Clone, Debug)]
pub struct Budget {
    pub bytes: u64,
    pub source: String,
}

impl Budget {
    /// `EFFC_MEMORY_LIMIT` when set, else 80% of `MemAvailable`, else no limit
    /// (where `/proc/meminfo` does not exist).
    pub fn host() -> Result<Budget, Failure> {
        if let Some(v) = std::env::var_os(MEMORY_VAR) {
            let v = v.to_string_lossy();
            let bytes = parse_size(&v).ok_or_else(|| {
                Failure::from(format!(
                    "{MEMORY_VAR}=`{v}` is not a size: give bytes, or a number with K, M, G or T (e.g. 8G)"
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
                    size(avail)
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

/// `123`, `64K`, `512M`, `1.5G`, `2T` (optionally `KiB`, `MB`, ...: powers of 1024).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches("ib").trim_end_matches('b');
    let mul = match unit {
        "" => 1u64,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    let bytes = n * mul as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// A size for messages: `12.3 GiB`, `512.0 MiB`, `300 B`.
pub fn size(bytes: u64) -> String {
    effc_runtime::fit::Bytes(bytes).to_string()
}

/// What a command will allocate on the host: named parts, in bytes.
#[derive(Default, Debug)]
pub struct Need {
    parts: Vec<(String, u64)>,
}

impl Need {
    pub fn add(&mut self, what: impl Into<String>, bytes: u64) {
        self.parts.push((what.into(), bytes));
    }

    pub fn total(&self) -> u64 {
        self.parts
            .iter()
            .fold(0u64, |a, (_, b)| a.saturating_add(*b))
    }

    /// Fails, naming every part, when the total exceeds `budget`.
    pub fn check(&self, doing: &str, budget: &Budget) -> Result<(), Failure> {
        let total = self.total();
        if total <= budget.bytes {
            return Ok(());
        }
        let mut msg = format!(
            "{doing} needs {} of memory, more than the {} it may use ({}):",
            size(total),
            size(budget.bytes),
            budget.source
        );
        for (what, bytes) in &self.parts {
            msg += &format!("\n  {:>10}  {what}", size(*bytes));
        }
        msg += "\nhelp: a smaller --resolution or --batch needs less";
        Err(msg.into())
    }
}

fn f32s(n: u64) -> u64 {
    n.saturating_mul(4)
}

/// The model's parameters as f32 (a checkpoint loaded, or random weights).
pub fn weights(model: &Model) -> (String, u64) {
    let params = model.cost().params;
    (
        format!("weights: {} parameters, f32", effc_ir::cost::group(params)),
        f32s(params),
    )
}

/// `n` input images as NCHW f32.
pub fn inputs(model: &Model, n: usize) -> (String, u64) {
    let [c, h, w] = model.input;
    (
        format!("input: {n} x {c}x{h}x{w} f32"),
        f32s((n as u64).saturating_mul((c * h * w) as u64)),
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

/// The reference executor: its folded weights, and the live activations of one
/// image (the block input kept for the residual, the expanded and the output
/// tensors, and the im2col patch: four of the largest tensor at most).
pub fn cpu_executor(model: &Model, plan: &Plan) -> Vec<(String, u64)> {
    let (_, w) = weights(model);
    let largest = plan
        .tensors
        .iter()
        .map(|t| t.bytes as u64)
        .max()
        .unwrap_or(0);
    vec![
        ("reference executor: folded weights".into(), w),
        (
            format!(
                "reference executor: activations of one image (4 x the largest tensor, {})",
                size(largest)
            ),
            largest.saturating_mul(4),
        ),
    ]
}

/// A GPU model's host side: the packed weights and the staging copy of the input;
/// on a software adapter (a CPU emulating a GPU) also every buffer of the device.
pub fn gpu_host(plan: &Plan, batch: usize, software: bool) -> Vec<(String, u64)> {
    // Packing folds BN in f32; at f16 each kernel's weights are then rounded into
    // a copy of their own for the upload.
    let packed: u64 = plan
        .kernels
        .iter()
        .map(|k| f32s(k.weights_len as u64))
        .sum();
    let b = batch as u64;
    let io = (plan.tensors[plan.input].bytes as u64 + plan.output_bytes() as u64).saturating_mul(b);
    let mut v = vec![
        ("packed weights for the GPU".into(), packed),
        (format!("input staging, batch {batch}"), io),
    ];
    if !plan.precision.is_f32() {
        let largest = plan.kernels.iter().map(|k| k.layout.bytes() as u64).max();
        v.push((
            format!("{} copy of one kernel's weights", plan.precision),
            largest.unwrap_or(0),
        ));
    }
    if software {
        let slots: u64 = plan.slots.iter().map(|s| s.bytes as u64).sum();
        v.push((
            "software adapter: device weights".into(),
            plan.weight_bytes() as u64,
        ));
        v.push((
            format!("software adapter: activation buffers, batch {batch}"),
            slots.saturating_mul(b).saturating_add(io),
        ));
    }
    v
}

/// The adapter's limits a plan must fit at `batch` images per forward, checked by
/// the runtime's own [`effc_runtime::fit()`] (the one place that decides them)
/// before anything is created on the device.
pub fn check_gpu(
    plan: &Plan,
    batch: usize,
    adapter: &str,
    limits: &wgpu::Limits,
) -> Result<(), Failure> {
    effc_runtime::fit(plan, limits, batch)
        .map(drop)
        .map_err(|what| {
            effc_runtime::GpuError::TooBig {
                model: plan.model.clone(),
                adapter: adapter.to_string(),
                what,
            }
            .to_string()
            .into()
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
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("2 tb"), Some(2 << 40));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("5X"), None);
        assert_eq!(size(300), "300 B");
        assert_eq!(size(3 << 29), "1.5 GiB");
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
        let plan = effc_plan::plan(&m);
        let mut need = Need::default();
        need.add("x", inputs(&m, 1).1);
        for (w, b) in cpu_executor(&m, &plan) {
            need.add(w, b);
        }
        // The stem's output alone: 8192 x 8192 x 32 f32 = 8 GiB.
        assert!(need.total() > 4 * (8u64 << 30), "{}", need.total());
        let budget = Budget {
            bytes: 16 << 30,
            source: "test".into(),
        };
        let e = need.check("running lite0", &budget).unwrap_err().message;
        assert!(
            e.contains("more than the 16.0 GiB it may use (test)"),
            "{e}"
        );
        assert!(e.contains("activations of one image"), "{e}");
        // The default resolution fits easily.
        let m = model("lite0", None);
        let plan = effc_plan::plan(&m);
        let mut need = Need::default();
        for (w, b) in cpu_executor(&m, &plan) {
            need.add(w, b);
        }
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
            .message;
        assert!(e.contains("does not fit adapter `test adapter`"), "{e}");
        assert!(e.contains("a batch of 100000 images takes"), "{e}");
        assert!(e.contains("a max batch of"), "{e}");
    }
}
