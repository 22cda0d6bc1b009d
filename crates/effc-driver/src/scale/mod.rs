//! `effc scale`: the largest φ whose scaled model meets every budget (MACs,
//! parameters, memory from the IR and the kernel plan; latency measured on the
//! adapter), written as a `.enet` that extends the base ([`scale`]); and the
//! paper's grid of α, β, γ at φ = 1 ([`grid`]).

mod chart;
mod grid;
mod search;
mod train;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use effc_ir::scale::{self as ir_scale, Coefficients};
use effc_ir::{Model, Options, Spec};
use serde::Serialize;

use crate::files::Outputs;
use crate::progress::Progress;
use crate::size::{ms, si};
use crate::{Error, ModelRequest};

pub use grid::{grid, GridReport, GridRequest, GridRow, GRID_TOLERANCE};
pub use train::{GridTraining, Trained, TrainingSummary, TRAIN_GRID_MAX_STEPS};

/// φ searched in hundredths over the range a spec's `phi` accepts.
const LO: i32 = (effc_ir::ranges::PHI.lo * 100.0) as i32;
const HI: i32 = (effc_ir::ranges::PHI.hi * 100.0) as i32;

/// The budgets a scaled model must meet (none: `phi` must be given).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Budgets {
    pub max_macs: Option<u64>,
    pub max_params: Option<u64>,
    /// Weights plus the plan's activation buffers at the batch, in bytes.
    pub max_memory: Option<u64>,
    /// A forward at the batch, measured on the adapter.
    #[serde(rename = "max_latency_ms")]
    pub max_latency: Option<f64>,
}

impl Budgets {
    fn has_static(&self) -> bool {
        self.max_macs.is_some() || self.max_params.is_some() || self.max_memory.is_some()
    }

    /// `MACs ≤ 1 G, latency ≤ 30 ms`.
    pub fn line(&self) -> String {
        let mut b = vec![];
        if let Some(v) = self.max_macs {
            b.push(format!("MACs ≤ {}", si(v as f64)));
        }
        if let Some(v) = self.max_params {
            b.push(format!("params ≤ {}", si(v as f64)));
        }
        if let Some(v) = self.max_memory {
            b.push(format!("memory ≤ {}B", si(v as f64)));
        }
        if let Some(v) = self.max_latency {
            b.push(format!("latency ≤ {}", ms(v)));
        }
        b.join(", ")
    }
}

/// A scaling: the base, a φ or budgets, and what to write.
#[derive(Clone, Debug)]
pub struct ScaleRequest {
    pub base: ModelRequest,
    /// How the user named the base (`b0`, `my.enet`).
    pub base_arg: String,
    /// Scale by this φ instead of searching for one.
    pub phi: Option<f64>,
    pub budgets: Budgets,
    /// Images per forward, for memory and latency.
    pub batch: usize,
    /// α, β, γ (default: the paper's).
    pub alpha: Option<f64>,
    pub beta: Option<f64>,
    pub gamma: Option<f64>,
    /// Write the chosen model here as a `.enet` extending the base.
    pub output: Option<PathBuf>,
    /// The chosen model's name (default `BASE-phiX`).
    pub name: Option<String>,
    /// Draw MACs against latency of the candidates (SVG) here.
    pub plot: Option<PathBuf>,
    /// Wall time to time one candidate at most.
    pub time_per_candidate: Duration,
    /// Measure again where the latency cache has a candidate's network.
    pub remeasure: bool,
    /// The command line, for the written spec's header comment.
    pub command_line: String,
}

/// One scaled model tried.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    pub phi: f64,
    pub depth: f64,
    pub width: f64,
    pub resolution: usize,
    pub params: u64,
    pub macs: u64,
    pub memory_bytes: u64,
    pub latency_ms: Option<f64>,
    /// Budgets it exceeds (empty: it fits).
    pub exceeds: Vec<String>,
    /// The model could not be built at this φ.
    pub error: Option<String>,
}

/// What a scaling found.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleReport {
    /// The base as the user named it.
    pub base: String,
    /// The base model's name.
    #[serde(skip)]
    pub base_name: String,
    pub coefficients: Coefficients,
    pub batch: usize,
    pub budgets: Budgets,
    #[serde(skip)]
    pub phi: Option<f64>,
    /// Every φ tried, by hundredths of φ.
    #[serde(serialize_with = "values")]
    pub candidates: BTreeMap<i32, Candidate>,
    /// The chosen φ's key in `candidates`; `None` when none meets the budgets.
    #[serde(skip)]
    pub chosen: Option<i32>,
    /// The chosen model's name and its spec text.
    pub model: Option<String>,
    pub spec: Option<String>,
    /// The files written.
    pub output: Option<PathBuf>,
    #[serde(skip)]
    pub plot: Option<PathBuf>,
}

fn values<S: serde::Serializer>(m: &BTreeMap<i32, Candidate>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(m.values())
}

impl ScaleReport {
    pub fn chosen(&self) -> Option<&Candidate> {
        self.chosen.map(|k| &self.candidates[&k])
    }

    /// The φ just above the chosen one, which breaks a budget.
    pub fn next(&self) -> Option<&Candidate> {
        self.chosen.and_then(|k| self.candidates.get(&(k + 1)))
    }

    /// Why nothing was chosen (the command's exit code is then 1).
    pub fn none_meets(&self) -> Option<String> {
        if self.chosen.is_some() {
            return None;
        }
        Some(match self.phi {
            Some(phi) => {
                let k = (phi * 100.0).round() as i32;
                let exceeds = self
                    .candidates
                    .get(&k)
                    .map(|c| c.exceeds.join(", "))
                    .unwrap_or_default();
                format!("φ = {phi:.2} does not meet the budgets ({exceeds}); nothing written")
            }
            None => format!(
                "no φ in [{:.2}, {:.2}] meets the budgets",
                LO as f64 / 100.0,
                HI as f64 / 100.0
            ),
        })
    }
}

/// α, β, γ of a request, each checked against the range a spec's bases accept.
pub fn coefficients(
    alpha: Option<f64>,
    beta: Option<f64>,
    gamma: Option<f64>,
) -> Result<Coefficients, Error> {
    let d = ir_scale::PAPER;
    let c = Coefficients {
        alpha: alpha.unwrap_or(d.alpha),
        beta: beta.unwrap_or(d.beta),
        gamma: gamma.unwrap_or(d.gamma),
    };
    let range = effc_ir::ranges::BASE;
    for (v, n) in [
        (c.alpha, "--alpha"),
        (c.beta, "--beta"),
        (c.gamma, "--gamma"),
    ] {
        if !range.contains(v) {
            return Err(Error::Usage(format!("{n} must be in {range}, got {v}")));
        }
    }
    Ok(c)
}

/// The base of a scaling, resolved: it must have width = depth = 1.
fn scalable(base: &ModelRequest) -> Result<crate::ResolvedModel, Error> {
    let resolved = base.resolve()?;
    let b = &resolved.spec;
    if b.width != 1.0 || b.depth != 1.0 {
        return Err(Error::Usage(format!(
            "`{}` has width {} and depth {}: `phi` replaces a model's width and depth coefficients, so scale a base with width = depth = 1 (b0, lite0, v2-b0, v2-s, ...)",
            b.name, b.width, b.depth
        )));
    }
    Ok(resolved)
}

/// Scales `req.base`: by `req.phi`, or the largest φ within the budgets. The
/// spec and the plot are written only when a φ meets every budget (then
/// [`ScaleReport::chosen`] is `Some`).
pub fn scale(req: &ScaleRequest, progress: &dyn Progress) -> Result<ScaleReport, Error> {
    if req.batch == 0 {
        return Err(Error::Usage("--batch must be at least 1".into()));
    }
    if let Some(n) = &req.name {
        effc_ir::names::in_spec(n).map_err(|e| Error::Usage(format!("--name: {e}")))?;
    }
    let mut files = Outputs::new();
    req.base.declare_inputs(&mut files)?;
    let output = req
        .output
        .as_ref()
        .map(|p| files.file("-o", p))
        .transpose()?;
    let plot = req
        .plot
        .as_ref()
        .map(|p| files.file("--plot", p))
        .transpose()?;
    let resolved = scalable(&req.base)?;
    let coefs = coefficients(req.alpha, req.beta, req.gamma)?;
    if req.phi.is_none() && !req.budgets.has_static() && req.budgets.max_latency.is_none() {
        return Err(Error::Usage("give --phi X, or at least one budget: --max-macs, --max-params, --max-memory, --max-latency".into()));
    }
    if let Some(phi) = req.phi.filter(|p| !(-8.0..=16.0).contains(p)) {
        return Err(Error::Usage(format!(
            "--phi must be in [-8, 16], got {phi}"
        )));
    }
    let mut s = search::Search::new(req, resolved.spec.clone(), coefs, progress);
    let found = s.find()?;
    s.finish();
    let mut report = ScaleReport {
        base: req.base_arg.clone(),
        base_name: resolved.spec.name.clone(),
        coefficients: coefs,
        batch: req.batch,
        budgets: req.budgets,
        phi: req.phi,
        candidates: std::mem::take(&mut s.tried),
        chosen: None,
        model: None,
        spec: None,
        output: None,
        plot: None,
    };
    // A φ over a budget is shown, never chosen; nothing is written.
    let Some(k) = found.filter(|k| report.candidates[k].exceeds.is_empty()) else {
        return Ok(report);
    };
    let c = report.candidates[&k].clone();
    let (name, text) = enet(req, &resolved, &c, &coefs)?;
    check_written(&text, &name, &c)?;
    if let Some(file) = &output {
        file.write(text.as_bytes())?;
    }
    if let Some(file) = &plot {
        let svg = effc_draw::chart(&chart::chart(&report, req.budgets, k))
            .map_err(|e| Error::Internal(format!("--plot: {e}")))?;
        file.write(svg.as_bytes())?;
    }
    report.chosen = Some(k);
    report.model = Some(name);
    report.spec = Some(text);
    report.output = req.output.clone();
    report.plot = req.plot.clone();
    Ok(report)
}

/// The spec text of the chosen model: the base file's models (when the base is
/// a file), then a model that extends it with `phi` and α, β, γ. Names are
/// written bare when they can be, else quoted (`"my net"`).
fn enet(
    req: &ScaleRequest,
    resolved: &crate::ResolvedModel,
    c: &Candidate,
    coefs: &Coefficients,
) -> Result<(String, String), Error> {
    let base = &resolved.spec;
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-phi{:.2}", base.name, c.phi));
    let mut text = String::new();
    if resolved.file.is_some() {
        text.push_str(&resolved.text);
        if !resolved.text.ends_with('\n') {
            text.push('\n');
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "# `effc {}`\n# φ = {:.2}: depth {}^φ = {:.4}, width {}^φ = {:.4}, resolution round({}·{}^φ) = {};\n# {} parameters, {} MACs, {} bytes of GPU memory at batch {}{}.\n",
        effc_ir::names::in_comment(&req.command_line),
        c.phi,
        coefs.alpha,
        c.depth,
        coefs.beta,
        c.width,
        base.resolution,
        coefs.gamma,
        c.resolution,
        effc_ir::cost::group(c.params),
        effc_ir::cost::group(c.macs),
        effc_ir::cost::group(c.memory_bytes),
        req.batch,
        c.latency_ms.map(|l| format!(", {} on this adapter", ms(l))).unwrap_or_default()
    ));
    let spelled =
        effc_ir::names::in_spec(&name).map_err(|e| Error::Usage(format!("--name: {e}")))?;
    let base_spelled = effc_ir::names::in_spec(&base.name).map_err(Error::Usage)?;
    text.push_str(&format!(
        "model {spelled} extends {base_spelled} {{\n    phi   = {:.2}\n    alpha = {}\n    beta  = {}\n    gamma = {}\n}}\n",
        c.phi, coefs.alpha, coefs.beta, coefs.gamma
    ));
    Ok((name, text))
}

/// The written spec must build to exactly the candidate.
fn check_written(text: &str, name: &str, c: &Candidate) -> Result<(), Error> {
    let check = Spec::parse_model("scaled.enet", text, Some(name))
        .and_then(|sp| Model::build(&sp, &Options::default()))
        .map_err(|d| {
            Error::Internal(format!(
                "the scaled spec does not build:\n{}",
                d.render(false)
            ))
        })?;
    if check.cost().macs != c.macs || check.resolution != c.resolution {
        return Err(Error::Internal(format!(
            "the written spec has {} MACs at {} px, the candidate {} at {} px",
            check.cost().macs,
            check.resolution,
            c.macs,
            c.resolution
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;

    fn request(phi: f64, budgets: Budgets, output: Option<PathBuf>) -> ScaleRequest {
        ScaleRequest {
            base: ModelRequest::builtin("lite0"),
            base_arg: "lite0".into(),
            phi: Some(phi),
            budgets,
            batch: 1,
            alpha: None,
            beta: None,
            gamma: None,
            output,
            name: None,
            plot: None,
            time_per_candidate: Duration::from_secs(1),
            remeasure: false,
            command_line: "scale lite0".into(),
        }
    }

    #[test]
    fn a_phi_within_the_budgets_is_written_and_builds_to_the_candidate() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("s.enet");
        let r = scale(
            &request(0.5, Budgets::default(), Some(out.clone())),
            &Silent,
        )
        .unwrap();
        let c = r.chosen().unwrap();
        assert_eq!(
            (c.resolution, r.model.as_deref()),
            (240, Some("lite0-phi0.50"))
        );
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(Some(&text), r.spec.as_ref());
        assert!(r.none_meets().is_none());
    }

    #[test]
    fn a_phi_over_a_budget_is_shown_never_chosen_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("s.enet");
        let budgets = Budgets {
            max_memory: Some(1),
            ..Default::default()
        };
        let r = scale(&request(0.0, budgets, Some(out.clone())), &Silent).unwrap();
        assert!(r.chosen().is_none() && r.spec.is_none());
        assert_eq!(r.candidates.len(), 1);
        let m = r.none_meets().unwrap();
        assert!(m.contains("does not meet the budgets (memory"), "{m}");
        assert!(!out.exists());
        assert_eq!(budgets.line(), "memory ≤ 1B");
    }
}
