//! `effc serve`: EfficientNet models behind the Open Inference Protocol (KServe
//! v2, what Triton, KServe, Seldon MLServer and OpenVINO Model Server speak),
//! over HTTP/REST ([`http`]) and gRPC ([`grpc`]), with Triton's dynamic
//! batching ([`batcher`]).
//!
//! - [`model`]: a served model, resolved with `effc_driver::ModelRequest`,
//!   loaded once on the device `effc_driver::choose` picks, and its outputs;
//! - [`protocol`]: an inference request checked against its model, its input
//!   decoded into the network's batch, its outputs built from its rows;
//! - [`batcher`]: the bounded queue and batch forming per model;
//! - [`metrics`]: Prometheus counters and histograms.
//!
//! [`Server::start`] loads every model and binds the listeners (port 0 picks a
//! free port: read it back with [`Server::http_addr`]); [`Server::run`] serves
//! until its shutdown future completes, then drains: no new connection is
//! accepted, requests in flight are answered, and it returns.

pub mod batcher;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod model;
pub mod protocol;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use effc_driver::Device;
use effc_plan::Precision;
use tokio::sync::oneshot;

pub use batcher::BatchConfig;
pub use model::ModelArg;

use batcher::{Job, Queue};
use metrics::Metrics;
use model::Served;
use protocol::{InferRequest, OutputTensor};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("model `{name}`: {message}")]
    Load { name: String, message: String },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Driver(#[from] effc_driver::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How a request failed, as the protocol reports it (HTTP status, gRPC code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// 400 / INVALID_ARGUMENT: malformed, wrong shape or datatype, NaN, bad image.
    Invalid,
    /// 404 / NOT_FOUND: no such model, version or route.
    NotFound,
    /// 413 / RESOURCE_EXHAUSTED: the body is over `--max-body`.
    TooLarge,
    /// 408 / DEADLINE_EXCEEDED: the client sent its body too slowly.
    BodyTimeout,
    /// 503 / RESOURCE_EXHAUSTED: the model's queue is full.
    QueueFull,
    /// 503 / UNAVAILABLE: shutting down, or the request waited too long queued.
    Unavailable,
    /// 503 / RESOURCE_EXHAUSTED: the request bodies held reach `--max-inflight`.
    Busy,
    /// 500 / INTERNAL.
    Internal,
}

/// A request's error: `{"error": message}` over HTTP, a status over gRPC.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub kind: Kind,
    pub message: String,
}

impl ApiError {
    fn new(kind: Kind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid(m: impl Into<String>) -> ApiError {
        ApiError::new(Kind::Invalid, m)
    }
    pub fn not_found(m: impl Into<String>) -> ApiError {
        ApiError::new(Kind::NotFound, m)
    }
    pub fn exhausted(m: impl Into<String>) -> ApiError {
        ApiError::new(Kind::QueueFull, m)
    }
    pub fn unavailable(m: impl Into<String>) -> ApiError {
        ApiError::new(Kind::Unavailable, m)
    }
    pub fn internal(m: impl Into<String>) -> ApiError {
        ApiError::new(Kind::Internal, m)
    }

    /// The label of `effc_request_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            Kind::Invalid => "invalid",
            Kind::NotFound => "not_found",
            Kind::TooLarge => "too_large",
            Kind::BodyTimeout => "body_timeout",
            Kind::QueueFull => "queue_full",
            Kind::Unavailable => "unavailable",
            Kind::Busy => "busy",
            Kind::Internal => "internal",
        }
    }
}

/// `--log-format`: a line per request on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Off,
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "off" => Ok(LogFormat::Off),
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("unknown log format `{s}`: off, text, json")),
        }
    }
}

/// Limits on what clients may cost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Request body bytes at most (checked against `Content-Length` before the
    /// body is read, and while reading a body without one); gRPC messages too.
    pub max_body: usize,
    /// A request's body must arrive within this.
    pub body_timeout: Duration,
    /// A request's headers must arrive within this (also an idle connection's
    /// next request).
    pub header_timeout: Duration,
    /// Open HTTP connections (and concurrent gRPC streams) at most; more are
    /// closed at once.
    pub max_connections: usize,
    /// On shutdown, how long requests in flight may take to finish.
    pub drain_timeout: Duration,
    /// Request bodies held at once, all connections together (each counts its
    /// `Content-Length`, or `max_body` without one); a request past it is
    /// refused at once (503). With the queues' bound, this bounds the memory
    /// that clients can make the server hold.
    pub max_inflight: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body: 64 << 20,
            body_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            max_connections: 2048,
            drain_timeout: Duration::from_secs(30),
            max_inflight: 512 << 20,
        }
    }
}

/// Everything `effc serve` is asked.
#[derive(Clone, Debug)]
pub struct Config {
    pub models: Vec<ModelArg>,
    pub http: Option<SocketAddr>,
    pub grpc: Option<SocketAddr>,
    pub device: Option<Device>,
    pub precision: Precision,
    pub batch: BatchConfig,
    pub limits: Limits,
    pub log: LogFormat,
}

struct Entry {
    served: Arc<Served>,
    /// Taken away when the server drains, which ends the batcher thread.
    queue: RwLock<Option<Queue>>,
}

/// What the protocol handlers share.
pub struct State {
    models: BTreeMap<String, Entry>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    pub log: LogFormat,
    ready: AtomicBool,
    /// Which device the models run on.
    pub device: String,
    /// `max_inflight` in KiB permits.
    pub(crate) inflight: Arc<tokio::sync::Semaphore>,
}

impl State {
    /// Whether every model is loaded and the server is not draining.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The model `name` (and `version`, when given: only `1` exists).
    pub fn model(&self, name: &str, version: Option<&str>) -> Result<&Arc<Served>, ApiError> {
        let Some(e) = self.models.get(name) else {
            let names: Vec<&str> = self.models.keys().map(String::as_str).collect();
            return Err(ApiError::not_found(format!(
                "unknown model `{name}`; this server has {}",
                names.join(", ")
            )));
        };
        if let Some(v) = version.filter(|v| !v.is_empty()) {
            if v != e.served.version {
                return Err(ApiError::not_found(format!(
                    "model `{name}` has no version `{v}`; it has version {}",
                    e.served.version
                )));
            }
        }
        Ok(&e.served)
    }

    pub fn models(&self) -> impl Iterator<Item = &Arc<Served>> {
        self.models.values().map(|e| &e.served)
    }

    fn queue(&self, name: &str) -> Option<Queue> {
        let e = self.models.get(name)?;
        e.queue.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Each model's queue depth now.
    pub fn depths(&self) -> Vec<(String, usize)> {
        self.models
            .keys()
            .map(|n| (n.clone(), self.queue(n).map_or(0, |q| q.depth())))
            .collect()
    }

    /// Holds `bytes` of a request against `--max-inflight`, or refuses it.
    pub(crate) fn hold(
        &self,
        name: &str,
        bytes: u64,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        Arc::clone(&self.inflight)
            .try_acquire_many_owned(kib)
            .map_err(|_| {
                self.metrics.failure(name, "busy");
                ApiError::new(
                    Kind::Busy,
                    format!(
                        "the server holds {} bytes of requests already (--max-inflight); retry later",
                        self.limits.max_inflight
                    ),
                )
            })
    }

    /// Runs one inference request: checks it, decodes its input (on a blocking
    /// thread), queues it and waits for its rows.
    pub async fn infer(
        self: &Arc<State>,
        name: &str,
        version: Option<&str>,
        req: InferRequest,
    ) -> Result<(Arc<Served>, usize, Vec<OutputTensor>), ApiError> {
        let served = Arc::clone(self.model(name, version)?);
        self.metrics.request(name);
        let result = self.infer_on(&served, req).await;
        match &result {
            Ok(_) => {}
            Err(e) => self.metrics.failure(name, e.reason()),
        }
        result.map(|(rows, out)| (served, rows, out))
    }

    async fn infer_on(
        self: &Arc<State>,
        served: &Arc<Served>,
        req: InferRequest,
    ) -> Result<(usize, Vec<OutputTensor>), ApiError> {
        if !self.ready() {
            return Err(ApiError::unavailable("the server is shutting down"));
        }
        protocol::check_outputs(served, &req)?;
        let s = Arc::clone(served);
        let (req, prepared) = tokio::task::spawn_blocking(move || {
            let p = protocol::prepare(&s, &req);
            (req, p)
        })
        .await
        .map_err(|e| ApiError::internal(format!("decoding the input failed: {e}")))?;
        let (rows, input) = prepared?;
        let queue = self
            .queue(&served.name)
            .ok_or_else(|| ApiError::unavailable("the server is shutting down"))?;
        let (tx, rx) = oneshot::channel();
        queue.submit(Job {
            rows,
            input,
            enqueued: Instant::now(),
            reply: tx,
        })?;
        drop(queue);
        let raw = rx
            .await
            .map_err(|_| ApiError::internal("the model's batcher stopped"))??;
        Ok((rows, protocol::outputs(served, &req, rows, &raw)))
    }

    /// Logs one request (`--log-format`).
    pub fn log(&self, line: &LogLine<'_>) {
        use std::io::Write;
        // A closed stderr must not stop the server: write errors are ignored.
        let mut err = std::io::stderr().lock();
        match self.log {
            LogFormat::Off => {}
            LogFormat::Text => {
                let _ = writeln!(
                    err,
                    "{} {} {} {} {:.3}ms{}",
                    line.protocol,
                    line.method,
                    line.path,
                    line.status,
                    line.seconds * 1e3,
                    line.error.map(|e| format!(" {e}")).unwrap_or_default()
                );
            }
            LogFormat::Json => {
                let v = serde_json::json!({
                    "time": std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64()),
                    "protocol": line.protocol,
                    "method": line.method,
                    "path": line.path,
                    "status": line.status,
                    "seconds": line.seconds,
                    "model": line.model,
                    "rows": line.rows,
                    "id": line.id,
                    "error": line.error,
                });
                let _ = writeln!(err, "{v}");
            }
        }
    }
}

/// One request's log line.
pub struct LogLine<'a> {
    pub protocol: &'static str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub seconds: f64,
    pub model: Option<&'a str>,
    pub rows: Option<usize>,
    pub id: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// A server with its models loaded and its ports bound.
pub struct Server {
    state: Arc<State>,
    threads: Vec<std::thread::JoinHandle<()>>,
    http: Option<std::net::TcpListener>,
    grpc: Option<std::net::TcpListener>,
}

impl Server {
    /// Loads every model (once, on one device) and binds the listeners.
    pub fn start(config: Config) -> Result<Server, Error> {
        if config.models.is_empty() {
            return Err(Error::Usage(
                "no model to serve: give --model NAME=MODEL:WEIGHTS".into(),
            ));
        }
        if config.http.is_none() && config.grpc.is_none() {
            return Err(Error::Usage(
                "neither --http nor --grpc: nothing to listen on".into(),
            ));
        }
        let b = config.batch;
        if b.max_batch == 0 || b.queue_size == 0 || config.limits.max_connections == 0 {
            return Err(Error::Usage(
                "--max-batch, --queue-size and --max-connections must be at least 1".into(),
            ));
        }
        if config.limits.max_inflight < config.limits.max_body {
            return Err(Error::Usage(format!(
                "--max-inflight ({} bytes) is below --max-body ({} bytes): a request of the largest size could never be held",
                config.limits.max_inflight, config.limits.max_body
            )));
        }
        for (i, m) in config.models.iter().enumerate() {
            if config.models[..i].iter().any(|o| o.name == m.name) {
                return Err(Error::Usage(format!("two models are named `{}`", m.name)));
            }
        }
        let bind = |a: Option<SocketAddr>| {
            a.map(|addr| {
                std::net::TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })
            })
            .transpose()
        };
        let http = bind(config.http)?;
        let grpc = bind(config.grpc)?;
        let device = effc_driver::choose(config.device, config.precision)?;
        let metrics = Arc::new(Metrics::new(b.max_batch));
        let mut models = BTreeMap::new();
        let mut threads = vec![];
        for arg in &config.models {
            let (served, backend) = model::load(arg, &device, config.precision, b.max_batch)?;
            let served = Arc::new(served);
            let (queue, thread) =
                batcher::start(Arc::clone(&served), backend, b, Arc::clone(&metrics));
            threads.push(thread);
            models.insert(
                arg.name.clone(),
                Entry {
                    served,
                    queue: RwLock::new(Some(queue)),
                },
            );
        }
        let state = Arc::new(State {
            models,
            metrics,
            limits: config.limits,
            log: config.log,
            ready: AtomicBool::new(true),
            device: device.note().to_string(),
            inflight: Arc::new(tokio::sync::Semaphore::new(
                config.limits.max_inflight.div_ceil(1024).max(1),
            )),
        });
        Ok(Server {
            state,
            threads,
            http,
            grpc,
        })
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains: stops accepting, answers
    /// the requests in flight (for `--drain-timeout` at most), stops the batchers.
    pub fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
        let Server {
            state,
            threads,
            http,
            grpc,
        } = self;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("effc-serve")
            .build()?;
        let result = rt.block_on(async {
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let mut tasks = vec![];
            if let Some(l) = http {
                tasks.push(tokio::spawn(http::serve(
                    l,
                    Arc::clone(&state),
                    stop_rx.clone(),
                )));
            }
            if let Some(l) = grpc {
                tasks.push(tokio::spawn(grpc::serve(
                    l,
                    Arc::clone(&state),
                    stop_rx.clone(),
                )));
            }
            shutdown.await;
            state.ready.store(false, Ordering::SeqCst);
            let _ = stop_tx.send(true);
            let mut result = Ok(());
            for t in tasks {
                match t.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => result = Err(e),
                    Err(e) => result = Err(Error::Io(std::io::Error::other(e))),
                }
            }
            result
        });
        for e in state.models.values() {
            e.queue.write().unwrap_or_else(|e| e.into_inner()).take();
        }
        for t in threads {
            let _ = t.join();
        }
        result
    }

    /// Runs on a thread of its own until [`Running::stop`] (for tests and
    /// embedding).
    pub fn spawn(self) -> Running {
        let (tx, rx) = oneshot::channel::<()>();
        let http = self.http_addr();
        let grpc = self.grpc_addr();
        let state = Arc::clone(&self.state);
        let thread = std::thread::spawn(move || {
            self.run(async {
                let _ = rx.await;
            })
        });
        Running {
            http,
            grpc,
            state,
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

/// A server running on its own thread.
pub struct Running {
    pub http: Option<SocketAddr>,
    pub grpc: Option<SocketAddr>,
    pub state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), Error>>>,
}

impl Running {
    /// Drains and stops the server, returning how it ended.
    pub fn stop(mut self) -> Result<(), Error> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), Error> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(Error::Usage("the server thread panicked".into()))),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
