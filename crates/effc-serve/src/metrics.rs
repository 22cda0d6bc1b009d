//! Prometheus metrics, in the text exposition format at `/metrics`: requests
//! and failures by model, queue-time and compute-time histograms, the batch
//! sizes formed, and the queue depth.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the time histograms, in seconds.
const SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Default)]
struct Histogram {
    /// Per bound, the observations at most it (not cumulative; summed when
    /// rendered).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        if let Some(i) = bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let mut acc = 0;
        for (i, b) in bounds.iter().enumerate() {
            acc += self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {acc}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Clone, Debug, Default)]
struct PerModel {
    requests: u64,
    /// By reason (`invalid`, `queue_full`, `queue_timeout`, `internal`, ...).
    failures: BTreeMap<&'static str, u64>,
    dropped: u64,
    queue: Histogram,
    compute: Histogram,
    batch: Histogram,
    batches: u64,
    rows: u64,
}

/// The server's counters; a model's queue depth is read from its queue when
/// rendered.
#[derive(Debug, Default)]
pub struct Metrics {
    models: Mutex<BTreeMap<String, PerModel>>,
    batch_bounds: Vec<f64>,
}

impl Metrics {
    /// Batch-size buckets 1, 2, 4, ... up to `max_batch`.
    pub fn new(max_batch: usize) -> Metrics {
        let mut bounds = vec![];
        let mut b = 1;
        while b < max_batch {
            bounds.push(b as f64);
            b *= 2;
        }
        bounds.push(max_batch.max(1) as f64);
        Metrics {
            models: Mutex::new(BTreeMap::new()),
            batch_bounds: bounds,
        }
    }

    fn with(&self, model: &str, f: impl FnOnce(&mut PerModel)) {
        let mut m = self.models.lock().unwrap_or_else(|e| e.into_inner());
        f(m.entry(model.to_string()).or_default());
    }

    pub fn request(&self, model: &str) {
        self.with(model, |m| m.requests += 1);
    }

    pub fn failure(&self, model: &str, reason: &'static str) {
        self.with(model, |m| *m.failures.entry(reason).or_default() += 1);
    }

    /// A queued request whose client went away before it ran.
    pub fn dropped(&self, model: &str) {
        self.with(model, |m| m.dropped += 1);
    }

    pub fn queued(&self, model: &str, waited: Duration) {
        self.with(model, |m| m.queue.observe(&SECONDS, waited.as_secs_f64()));
    }

    pub fn batch(&self, model: &str, rows: usize, took: Duration) {
        let bounds = &self.batch_bounds;
        self.with(model, |m| {
            m.compute.observe(&SECONDS, took.as_secs_f64());
            m.batch.observe(bounds, rows as f64);
            m.batches += 1;
            m.rows += rows as u64;
        });
    }

    /// Batches run and rows in them, per model (for tests and the load test).
    pub fn batches(&self, model: &str) -> (u64, u64) {
        let m = self.models.lock().unwrap_or_else(|e| e.into_inner());
        m.get(model).map_or((0, 0), |m| (m.batches, m.rows))
    }

    /// The text exposition; `depths` is each model's queue depth now.
    pub fn render(&self, depths: &[(String, usize)]) -> String {
        let models = self.models.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let label = |name: &str| format!("model=\"{}\"", name.replace(['"', '\\', '\n'], "_"));
        out += "# HELP effc_requests_total Inference requests received, by model.\n# TYPE effc_requests_total counter\n";
        for (name, m) in models.iter() {
            let _ = writeln!(out, "effc_requests_total{{{}}} {}", label(name), m.requests);
        }
        out += "# HELP effc_request_failures_total Inference requests answered with an error, by model and reason.\n# TYPE effc_request_failures_total counter\n";
        for (name, m) in models.iter() {
            for (reason, n) in &m.failures {
                let _ = writeln!(
                    out,
                    "effc_request_failures_total{{{},reason=\"{reason}\"}} {n}",
                    label(name)
                );
            }
        }
        out += "# HELP effc_requests_dropped_total Queued requests not run because their client went away.\n# TYPE effc_requests_dropped_total counter\n";
        for (name, m) in models.iter() {
            let _ = writeln!(
                out,
                "effc_requests_dropped_total{{{}}} {}",
                label(name),
                m.dropped
            );
        }
        out += "# HELP effc_queue_seconds Time a request waited in its model's queue.\n# TYPE effc_queue_seconds histogram\n";
        for (name, m) in models.iter() {
            m.queue
                .render(&mut out, "effc_queue_seconds", &label(name), &SECONDS);
        }
        out += "# HELP effc_compute_seconds Time a batch took on the device.\n# TYPE effc_compute_seconds histogram\n";
        for (name, m) in models.iter() {
            m.compute
                .render(&mut out, "effc_compute_seconds", &label(name), &SECONDS);
        }
        out += "# HELP effc_batch_size Rows per batch formed.\n# TYPE effc_batch_size histogram\n";
        for (name, m) in models.iter() {
            m.batch.render(
                &mut out,
                "effc_batch_size",
                &label(name),
                &self.batch_bounds,
            );
        }
        out += "# HELP effc_queue_depth Requests waiting in the model's queue.\n# TYPE effc_queue_depth gauge\n";
        for (name, d) in depths {
            let _ = writeln!(out, "effc_queue_depth{{{}}} {d}", label(name));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_per_model() {
        let m = Metrics::new(8);
        m.request("a");
        m.request("a");
        m.failure("a", "invalid");
        m.batch("a", 3, Duration::from_millis(2));
        m.batch("a", 8, Duration::from_millis(20));
        let text = m.render(&[("a".into(), 5)]);
        for line in [
            "effc_requests_total{model=\"a\"} 2",
            "effc_request_failures_total{model=\"a\",reason=\"invalid\"} 1",
            "effc_batch_size_bucket{model=\"a\",le=\"2\"} 0",
            "effc_batch_size_bucket{model=\"a\",le=\"4\"} 1",
            "effc_batch_size_bucket{model=\"a\",le=\"8\"} 2",
            "effc_batch_size_sum{model=\"a\"} 11",
            "effc_compute_seconds_bucket{model=\"a\",le=\"0.0025\"} 1",
            "effc_compute_seconds_bucket{model=\"a\",le=\"0.025\"} 2",
            "effc_queue_depth{model=\"a\"} 5",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        assert_eq!(m.batches("a"), (2, 11));
    }
}
