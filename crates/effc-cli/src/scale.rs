//! `effc scale`: the largest φ whose scaled model meets every budget (MACs,
//! parameters, memory from the IR and the kernel plan; latency measured on the
//! adapter), written as a `.enet` that extends the base; and `--grid`, the paper's
//! search of α, β, γ at φ = 1.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use effc_ir::scale::{self, Coefficients};
use effc_ir::{Model, Options, Spec};
use effc_runtime::latency::{
    cache_key, fingerprint, latency_cache_path, load_latencies_at, measure, save_latencies_at,
    LatencyCache, LatencyOptions,
};
use effc_runtime::Gpu;
use serde::Serialize;

use crate::output::{out, outln};
use crate::scale_report::{chart, print_json, print_table};
use crate::Failure;
use effc_driver::size::{self as budget, ms, si};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model to scale: a built-in with width = depth = 1 (b0, lite0, v2-b0, v2-s, ...) or a .enet file.
    #[arg(value_name = "BASE")]
    pub(crate) base: String,
    /// Scale by this φ instead of searching for one.
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "X",
        conflicts_with = "grid"
    )]
    pub(crate) phi: Option<f64>,
    /// Most multiply-accumulates per image (e.g. 1G, 1.5G, 400M).
    #[arg(long, value_name = "N", value_parser = budget::count)]
    pub(crate) max_macs: Option<u64>,
    /// Most parameters (e.g. 10M).
    #[arg(long, value_name = "N", value_parser = budget::count)]
    pub(crate) max_params: Option<u64>,
    /// Most GPU memory: weights plus the plan's activation buffers at --batch (e.g. 200M, 1GiB).
    #[arg(long, value_name = "BYTES", value_parser = budget::bytes)]
    pub(crate) max_memory: Option<u64>,
    /// Longest forward at --batch, measured on the adapter in use (e.g. 30ms, 0.5s).
    #[arg(long, value_name = "MS", value_parser = budget::millis)]
    pub(crate) max_latency: Option<f64>,
    /// Images per forward, for memory and latency.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) batch: usize,
    /// Depth base α (default 1.2).
    #[arg(long, value_name = "A")]
    pub(crate) alpha: Option<f64>,
    /// Width base β (default 1.1).
    #[arg(long, value_name = "B")]
    pub(crate) beta: Option<f64>,
    /// Resolution base γ (default 1.15).
    #[arg(long, value_name = "G")]
    pub(crate) gamma: Option<f64>,
    /// Write the scaled model here as a .enet that extends BASE.
    #[arg(long, short, value_name = "FILE.enet")]
    pub(crate) output: Option<PathBuf>,
    /// The scaled model's name (default: BASE-phiX).
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// The paper's step 1: every α, β, γ ≥ 1 on a grid with α·β²·γ² within 5% of 2.
    #[arg(long)]
    pub(crate) grid: bool,
    /// Grid step.
    #[arg(long, default_value_t = 0.05, value_name = "S", requires = "grid")]
    pub(crate) step: f64,
    /// With --grid: also measure each point's latency ratio on the adapter.
    #[arg(long, requires = "grid")]
    pub(crate) measure: bool,
    /// Draw MACs against measured latency of the candidates (SVG).
    #[arg(long, value_name = "FILE.svg", conflicts_with = "grid")]
    pub(crate) plot: Option<PathBuf>,
    /// Wall time to time one candidate at most (compilation included).
    #[arg(long, default_value = "20s", value_name = "T", value_parser = budget::duration)]
    pub(crate) time_per_candidate: Duration,
    /// Measure again even where this adapter's latency cache has a candidate's network.
    #[arg(long)]
    pub(crate) remeasure: bool,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// φ searched in hundredths over the range a spec's `phi` accepts.
const LO: i32 = (effc_ir::ranges::PHI.lo * 100.0) as i32;
const HI: i32 = (effc_ir::ranges::PHI.hi * 100.0) as i32;

/// One scaled model tried.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Candidate {
    pub(crate) phi: f64,
    pub(crate) depth: f64,
    pub(crate) width: f64,
    pub(crate) resolution: usize,
    pub(crate) params: u64,
    pub(crate) macs: u64,
    pub(crate) memory_bytes: u64,
    pub(crate) latency_ms: Option<f64>,
    /// Budgets it exceeds (empty: it fits); `None` while not checked.
    pub(crate) exceeds: Vec<String>,
    /// The model could not be built at this φ.
    pub(crate) error: Option<String>,
}

struct Search<'a> {
    args: &'a Args,
    base: Spec,
    coefs: Coefficients,
    tried: BTreeMap<i32, Candidate>,
    gpu: Option<Arc<Gpu>>,
    tuning: effc_plan::Tuning,
    bar: indicatif::ProgressBar,
    /// Latencies by plan fingerprint (nearby φ often give the same network), kept
    /// in the adapter's latency cache as `effc pick` does.
    cache: LatencyCache,
    cache_path: Option<PathBuf>,
}

impl Search<'_> {
    fn model(&self, k: i32) -> Result<Model, String> {
        let spec = scale::scaled(&self.base, scale::phi_of(k), &self.coefs);
        Model::build(&spec, &Options::default()).map_err(|d| d.render(false))
    }

    /// The IR's numbers of φ = k/100 and the static budgets it exceeds.
    fn statics(&mut self, k: i32) -> &mut Candidate {
        if !self.tried.contains_key(&k) {
            let phi = scale::phi_of(k);
            let c = match self.model(k) {
                Ok(m) => {
                    let cost = m.cost();
                    // Buffers do not depend on tiles: the cost model's plan, as `inspect --kernels`.
                    let plan = effc_plan::plan(&m);
                    let memory =
                        (plan.weight_bytes() + plan.activation_bytes(self.args.batch)) as u64;
                    let a = self.args;
                    let mut exceeds = vec![];
                    let mut over = |limit: Option<u64>, v: u64, what: &str| {
                        if let Some(l) = limit.filter(|&l| v > l) {
                            exceeds.push(format!("{what} {} > {}", si(v as f64), si(l as f64)));
                        }
                    };
                    over(a.max_macs, cost.macs, "MACs");
                    over(a.max_params, cost.params, "params");
                    over(a.max_memory, memory, "memory");
                    Candidate {
                        phi,
                        depth: m.depth,
                        width: m.width,
                        resolution: m.resolution,
                        params: cost.params,
                        macs: cost.macs,
                        memory_bytes: memory,
                        latency_ms: None,
                        exceeds,
                        error: None,
                    }
                }
                Err(e) => Candidate {
                    phi,
                    depth: self.coefs.depth(phi),
                    width: self.coefs.width(phi),
                    resolution: self.coefs.resolution(self.base.resolution, phi),
                    params: 0,
                    macs: 0,
                    memory_bytes: 0,
                    latency_ms: None,
                    exceeds: vec!["cannot be built".into()],
                    error: Some(e.lines().next().unwrap_or_default().to_string()),
                },
            };
            self.tried.insert(k, c);
        }
        self.tried.get_mut(&k).expect("inserted")
    }

    fn gpu(&mut self) -> Result<Arc<Gpu>, Failure> {
        if self.gpu.is_none() {
            self.bar.set_message("opening the GPU");
            let gpu = effc_driver::device::open_gpu().map_err(crate::fail)?;
            self.tuning = crate::tune::cached(&gpu, false, &self.args.base).0;
            self.cache_path = latency_cache_path(&gpu.adapter).ok();
            if let (Some(p), false) = (&self.cache_path, self.args.remeasure) {
                self.cache = load_latencies_at(p).unwrap_or_else(|e| {
                    eprintln!("warning: {e}; measuring again");
                    Default::default()
                });
            }
            self.gpu = Some(gpu);
        }
        Ok(self.gpu.clone().expect("opened"))
    }

    /// Measures φ = k/100 on the adapter (once); `None` when it could not be timed.
    fn latency(&mut self, k: i32) -> Result<Option<f64>, Failure> {
        if let Some(l) = self.statics(k).latency_ms {
            return Ok(Some(l));
        }
        if self.statics(k).error.is_some() {
            return Ok(None);
        }
        let gpu = self.gpu()?;
        let m = self.model(k)?;
        let plan = effc_plan::plan_tuned(&m, &self.tuning);
        let print = fingerprint(&plan);
        let key = cache_key(&format!("plan {print}"), self.args.batch);
        if let Some(v) = self.cache.get(&key, &print).and_then(|l| l.median_ms) {
            self.record(k, v);
            return Ok(Some(v));
        }
        self.bar.set_message(format!(
            "timing φ = {:.2} ({} px)",
            scale::phi_of(k),
            m.resolution
        ));
        let bound = self.args.max_latency;
        let opts = LatencyOptions {
            batch: self.args.batch,
            runs: 5,
            // Long enough to see a forward several times the latency budget.
            budget: self
                .args
                .time_per_candidate
                .max(Duration::from_secs_f64(bound.unwrap_or(0.0) * 5.0 / 1e3)),
            // The first forward may include compiling the shaders: never a latency.
            min_runs: 1,
            stop_above_ms: bound,
        };
        let l = measure(&gpu, plan, &opts);
        self.bar.inc(1);
        let l = match l {
            Ok(l) => l,
            Err(e) => {
                self.statics(k).exceeds.push(format!("cannot run: {e}"));
                return Ok(None);
            }
        };
        let Some(v) = l.median_ms else {
            return Ok(None);
        };
        self.cache.insert(key, print, l);
        if let (Some(p), Some(gpu)) = (&self.cache_path, &self.gpu) {
            if let Err(e) = save_latencies_at(p, &gpu.adapter.to_string(), &self.cache) {
                eprintln!("warning: {e}");
            }
        }
        self.record(k, v);
        Ok(Some(v))
    }

    fn record(&mut self, k: i32, v: f64) {
        let bound = self.args.max_latency;
        let c = self.statics(k);
        c.latency_ms = Some(v);
        if let Some(b) = bound.filter(|&b| v > b) {
            c.exceeds.push(format!("latency {} > {}", ms(v), ms(b)));
        }
    }
}

fn coefficients(args: &Args) -> Result<Coefficients, Failure> {
    let d = scale::PAPER;
    let c = Coefficients {
        alpha: args.alpha.unwrap_or(d.alpha),
        beta: args.beta.unwrap_or(d.beta),
        gamma: args.gamma.unwrap_or(d.gamma),
    };
    let range = effc_ir::ranges::BASE;
    for (v, n) in [
        (c.alpha, "--alpha"),
        (c.beta, "--beta"),
        (c.gamma, "--gamma"),
    ] {
        if !range.contains(v) {
            return Err(format!("{n} must be in {range}, got {v}").into());
        }
    }
    Ok(c)
}

/// The spec text of the chosen model: the base file's models (when BASE is a
/// file), then a model that extends BASE with `phi` and α, β, γ.
fn enet(
    args: &Args,
    resolved: &effc_driver::ResolvedModel,
    c: &Candidate,
    coefs: &Coefficients,
) -> Result<(String, String), Failure> {
    let base = &resolved.spec;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-phi{:.2}", base.name, c.phi));
    let mut text = String::new();
    if resolved.file.is_some() {
        let src = &resolved.text;
        text.push_str(src);
        if !src.ends_with('\n') {
            text.push('\n');
        }
        text.push('\n');
    }
    let cmd: Vec<String> = std::env::args().skip(1).collect();
    text.push_str(&format!(
        "# `effc {}`\n# φ = {:.2}: depth {}^φ = {:.4}, width {}^φ = {:.4}, resolution round({}·{}^φ) = {};\n# {} parameters, {} MACs, {} bytes of GPU memory at batch {}{}.\n",
        cmd.join(" "),
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
        args.batch,
        c.latency_ms.map(|l| format!(", {} on this adapter", ms(l))).unwrap_or_default()
    ));
    // Names are written bare when they can be, else quoted (`"my net"`).
    let spelled = effc_ir::names::in_spec(&name).map_err(|e| format!("--name: {e}"))?;
    let base_spelled = effc_ir::names::in_spec(&base.name)?;
    text.push_str(&format!(
        "model {spelled} extends {base_spelled} {{\n    phi   = {:.2}\n    alpha = {}\n    beta  = {}\n    gamma = {}\n}}\n",
        c.phi, coefs.alpha, coefs.beta, coefs.gamma
    ));
    Ok((name, text))
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    if args.batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    if let Some(n) = &args.name {
        effc_ir::names::in_spec(n).map_err(|e| format!("--name: {e}"))?;
    }
    let request = effc_driver::ModelRequest::from_arg(&args.base);
    let mut files = effc_driver::files::Outputs::new();
    request.declare_inputs(&mut files).map_err(crate::fail)?;
    let output = args
        .output
        .as_ref()
        .map(|p| files.file("-o", p))
        .transpose()?;
    let plot = args
        .plot
        .as_ref()
        .map(|p| files.file("--plot", p))
        .transpose()?;
    let resolved = request.resolve().map_err(crate::fail)?;
    let base = resolved.spec.clone();
    if base.width != 1.0 || base.depth != 1.0 {
        return Err(format!(
            "`{}` has width {} and depth {}: `phi` replaces a model's width and depth coefficients, so scale a base with width = depth = 1 (b0, lite0, v2-b0, v2-s, ...)",
            base.name, base.width, base.depth
        )
        .into());
    }
    let coefs = coefficients(&args)?;
    if args.grid {
        return crate::scale_grid::run(
            &args.base,
            &base,
            args.step,
            args.measure,
            args.batch,
            args.json,
        );
    }
    let budgets = [
        args.max_macs.is_some(),
        args.max_params.is_some(),
        args.max_memory.is_some(),
    ];
    let has_static = budgets.iter().any(|&b| b);
    if args.phi.is_none() && !has_static && args.max_latency.is_none() {
        return Err("give --phi X, or at least one budget: --max-macs, --max-params, --max-memory, --max-latency".into());
    }
    let mut s = Search {
        args: &args,
        base: base.clone(),
        coefs,
        tried: BTreeMap::new(),
        gpu: None,
        tuning: effc_plan::Tuning::default(),
        bar: crate::common::progress_bar(1, args.json),
        cache: LatencyCache::default(),
        cache_path: None,
    };
    let chosen: Option<i32> = if let Some(phi) = args.phi {
        if !(-8.0..=16.0).contains(&phi) {
            return Err(format!("--phi must be in [-8, 16], got {phi}").into());
        }
        let k = (phi * 100.0).round() as i32;
        s.statics(k);
        if args.max_latency.is_some() {
            s.latency(k)?;
        }
        Some(k)
    } else {
        // The IR's budgets first (cheap), then latency below that bound.
        let hi = if has_static {
            match scale::largest_phi(LO, HI, 0, 100, |k| {
                Ok::<_, Failure>(s.statics(k).exceeds.is_empty())
            })? {
                Some(k) => k,
                None => LO - 1,
            }
        } else {
            HI
        };
        if args.max_latency.is_some() && hi >= LO {
            scale::largest_phi(LO, hi, 0.min(hi), 25, |k| {
                s.latency(k)?;
                Ok::<_, Failure>(s.statics(k).exceeds.is_empty())
            })?
        } else if hi >= LO {
            Some(hi)
        } else {
            None
        }
    };
    if let (Some(_), Some(c)) = (&args.plot, chosen) {
        // Time the candidates nearest the answer, not the search's far probes.
        let mut ks: Vec<i32> = s
            .tried
            .iter()
            .filter(|(_, t)| t.error.is_none())
            .map(|(&k, _)| k)
            .collect();
        ks.sort_by_key(|k| (k - c).abs());
        ks.truncate(8);
        for k in ks {
            s.latency(k)?;
        }
    }
    s.bar.finish_and_clear();
    let tried = std::mem::take(&mut s.tried);
    let Some(k) = chosen else {
        if args.json {
            print_json(&args, &coefs, &tried, None, None)?;
        } else {
            print_table(&args, &base, &coefs, &tried, None)?;
        }
        return Err(format!(
            "no φ in [{:.2}, {:.2}] meets the budgets",
            LO as f64 / 100.0,
            HI as f64 / 100.0
        )
        .into());
    };
    let c = tried[&k].clone();
    if !c.exceeds.is_empty() {
        // A --phi over a budget: shown, never chosen, nothing written.
        if args.json {
            print_json(&args, &coefs, &tried, None, None)?;
        } else {
            print_table(&args, &base, &coefs, &tried, None)?;
        }
        return Err(format!(
            "φ = {:.2} does not meet the budgets ({}); nothing written",
            c.phi,
            c.exceeds.join(", ")
        )
        .into());
    }
    let (name, text) = enet(&args, &resolved, &c, &coefs)?;
    // The written spec must build to exactly the candidate.
    let check = Spec::parse_model("scaled.enet", &text, Some(&name))
        .and_then(|sp| Model::build(&sp, &Options::default()))
        .map_err(|d| {
            format!(
                "internal error: the scaled spec does not build:\n{}",
                d.render(false)
            )
        })?;
    if check.cost().macs != c.macs || check.resolution != c.resolution {
        return Err(format!(
            "internal error: the written spec has {} MACs at {} px, the candidate {} at {} px",
            check.cost().macs,
            check.resolution,
            c.macs,
            c.resolution
        )
        .into());
    }
    if let Some(file) = &output {
        file.write(text.as_bytes())?;
    }
    if let Some(file) = &plot {
        let svg = effc_draw::chart(&chart(&args, &base, &tried, k))
            .map_err(|e| format!("--plot: {e}"))?;
        file.write(svg.as_bytes())?;
    }
    if args.json {
        return print_json(&args, &coefs, &tried, Some(k), Some((&name, &text)));
    }
    print_table(&args, &base, &coefs, &tried, Some(k))?;
    outln!();
    outln!(
        "chosen: φ = {:.2}: depth {:.4}, width {:.4}, resolution {}; {} parameters, {} MACs, {}B of GPU memory at batch {}{}",
        c.phi,
        c.depth,
        c.width,
        c.resolution,
        si(c.params as f64),
        si(c.macs as f64),
        si(c.memory_bytes as f64),
        args.batch,
        c.latency_ms.map(|l| format!(", {}", ms(l))).unwrap_or_default()
    );
    if let Some(n) = tried.get(&(k + 1)) {
        outln!("φ = {:.2} exceeds: {}", n.phi, n.exceeds.join(", "));
    }
    match &args.output {
        Some(p) => outln!("wrote {} (model {name} extends {})", p.display(), base.name),
        None => {
            outln!();
            out!("{text}");
        }
    }
    if let Some(p) = &args.plot {
        outln!("wrote {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
