//! The search over φ: the IR's budgets first (cheap), then latency measured on
//! the adapter below that bound, each φ built and measured once, latencies kept
//! in the adapter's latency cache (nearby φ often give the same network).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use effc_ir::scale::{self as ir_scale, Coefficients};
use effc_ir::{Model, Options, Spec};
use effc_runtime::latency::{
    cache_key, fingerprint, latency_cache_path, load_latencies_at, measure, save_latencies_at,
    LatencyCache, LatencyOptions,
};
use effc_runtime::Gpu;

use super::{Candidate, ScaleRequest, HI, LO};
use crate::progress::Progress;
use crate::size::{ms, si};
use crate::Error;

pub(super) struct Search<'a> {
    req: &'a ScaleRequest,
    base: Spec,
    coefs: Coefficients,
    pub(super) tried: BTreeMap<i32, Candidate>,
    gpu: Option<Arc<Gpu>>,
    tuning: effc_plan::Tuning,
    progress: &'a dyn Progress,
    cache: LatencyCache,
    cache_path: Option<PathBuf>,
}

impl<'a> Search<'a> {
    pub(super) fn new(
        req: &'a ScaleRequest,
        base: Spec,
        coefs: Coefficients,
        progress: &'a dyn Progress,
    ) -> Search<'a> {
        progress.start(1);
        Search {
            req,
            base,
            coefs,
            tried: BTreeMap::new(),
            gpu: None,
            tuning: effc_plan::Tuning::default(),
            progress,
            cache: LatencyCache::default(),
            cache_path: None,
        }
    }

    pub(super) fn finish(&self) {
        self.progress.finish();
    }

    /// The chosen φ (hundredths): `req.phi`, or the largest within the budgets;
    /// with a plot, also the latencies of the candidates nearest it.
    pub(super) fn find(&mut self) -> Result<Option<i32>, Error> {
        let b = self.req.budgets;
        let chosen = if let Some(phi) = self.req.phi {
            let k = (phi * 100.0).round() as i32;
            self.statics(k);
            if b.max_latency.is_some() {
                self.latency(k)?;
            }
            Some(k)
        } else {
            let hi = if b.has_static() {
                ir_scale::largest_phi(LO, HI, 0, 100, |k| {
                    Ok::<_, Error>(self.statics(k).exceeds.is_empty())
                })?
                .unwrap_or(LO - 1)
            } else {
                HI
            };
            if b.max_latency.is_some() && hi >= LO {
                ir_scale::largest_phi(LO, hi, 0.min(hi), 25, |k| {
                    self.latency(k)?;
                    Ok::<_, Error>(self.statics(k).exceeds.is_empty())
                })?
            } else {
                (hi >= LO).then_some(hi)
            }
        };
        if let (Some(_), Some(c)) = (&self.req.plot, chosen) {
            // Time the candidates nearest the answer, not the search's far probes.
            let mut ks: Vec<i32> = self
                .tried
                .iter()
                .filter(|(_, t)| t.error.is_none())
                .map(|(&k, _)| k)
                .collect();
            ks.sort_by_key(|k| (k - c).abs());
            ks.truncate(8);
            for k in ks {
                self.latency(k)?;
            }
        }
        Ok(chosen)
    }

    fn model(&self, k: i32) -> Result<Model, String> {
        let spec = ir_scale::scaled(&self.base, ir_scale::phi_of(k), &self.coefs);
        Model::build(&spec, &Options::default()).map_err(|d| d.render(false))
    }

    /// The IR's numbers of φ = k/100 and the static budgets it exceeds.
    fn statics(&mut self, k: i32) -> &mut Candidate {
        if !self.tried.contains_key(&k) {
            let c = self.candidate(k);
            self.tried.insert(k, c);
        }
        self.tried.get_mut(&k).expect("inserted")
    }

    fn candidate(&self, k: i32) -> Candidate {
        let phi = ir_scale::phi_of(k);
        let m = match self.model(k) {
            Ok(m) => m,
            Err(e) => {
                return Candidate {
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
                }
            }
        };
        let cost = m.cost();
        // Buffers do not depend on tiles: the cost model's plan, as `inspect --kernels`.
        let plan = effc_plan::plan(&m);
        let memory = (plan.weight_bytes() + plan.activation_bytes(self.req.batch)) as u64;
        let b = self.req.budgets;
        let mut exceeds = vec![];
        let mut over = |limit: Option<u64>, v: u64, what: &str| {
            if let Some(l) = limit.filter(|&l| v > l) {
                exceeds.push(format!("{what} {} > {}", si(v as f64), si(l as f64)));
            }
        };
        over(b.max_macs, cost.macs, "MACs");
        over(b.max_params, cost.params, "params");
        over(b.max_memory, memory, "memory");
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

    fn gpu(&mut self) -> Result<Arc<Gpu>, Error> {
        if self.gpu.is_none() {
            self.progress.message("opening the GPU");
            let gpu = crate::device::open_gpu()?;
            self.tuning = crate::tuning::cached(
                &gpu,
                crate::TuningChoice::Cached,
                &self.req.base_arg,
                self.progress,
            )
            .0;
            self.cache_path = latency_cache_path(&gpu.adapter).ok();
            if let (Some(p), false) = (&self.cache_path, self.req.remeasure) {
                self.cache = load_latencies_at(p).unwrap_or_else(|e| {
                    self.progress.warn(&format!("{e}; measuring again"));
                    Default::default()
                });
            }
            self.gpu = Some(gpu);
        }
        Ok(self.gpu.clone().expect("opened"))
    }

    /// Measures φ = k/100 on the adapter (once); `None` when it could not be timed.
    fn latency(&mut self, k: i32) -> Result<Option<f64>, Error> {
        if let Some(l) = self.statics(k).latency_ms {
            return Ok(Some(l));
        }
        if self.statics(k).error.is_some() {
            return Ok(None);
        }
        let gpu = self.gpu()?;
        let m = self.model(k).map_err(Error::Internal)?;
        let plan = effc_plan::plan_tuned(&m, &self.tuning);
        let print = fingerprint(&plan);
        let key = cache_key(&format!("plan {print}"), self.req.batch);
        if let Some(v) = self.cache.get(&key, &print).and_then(|l| l.median_ms) {
            self.record(k, v);
            return Ok(Some(v));
        }
        self.progress.message(&format!(
            "timing φ = {:.2} ({} px)",
            ir_scale::phi_of(k),
            m.resolution
        ));
        let bound = self.req.budgets.max_latency;
        let opts = LatencyOptions {
            batch: self.req.batch,
            runs: 5,
            // Long enough to see a forward several times the latency budget.
            budget: self
                .req
                .time_per_candidate
                .max(Duration::from_secs_f64(bound.unwrap_or(0.0) * 5.0 / 1e3)),
            // The first forward may include compiling the shaders: never a latency.
            min_runs: 1,
            stop_above_ms: bound,
        };
        let l = measure(&gpu, plan, &opts);
        self.progress.inc(1);
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
        if let Some(p) = &self.cache_path {
            if let Err(e) = save_latencies_at(p, &gpu.adapter.to_string(), &self.cache) {
                self.progress.warn(&e.to_string());
            }
        }
        self.record(k, v);
        Ok(Some(v))
    }

    fn record(&mut self, k: i32, v: f64) {
        let bound = self.req.budgets.max_latency;
        let c = self.statics(k);
        c.latency_ms = Some(v);
        if let Some(b) = bound.filter(|&b| v > b) {
            c.exceeds.push(format!("latency {} > {}", ms(v), ms(b)));
        }
    }
}
