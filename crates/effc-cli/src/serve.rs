//! `effc serve`: models behind the Open Inference Protocol (KServe v2) over HTTP
//! and gRPC, with dynamic batching. The arguments; everything else is
//! `effc-serve`'s.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use effc_serve::{BatchConfig, Config, Limits, LogFormat, ModelArg};

use crate::{fail, Failure};

fn size(s: &str) -> Result<usize, String> {
    let v = effc_driver::size::bytes(s)?;
    usize::try_from(v).map_err(|_| format!("`{s}` is too large"))
}

fn duration(s: &str) -> Result<Duration, String> {
    effc_driver::size::duration(s)
}

/// `off`, or an address to listen on.
#[derive(Clone, Copy, Debug)]
struct Listen(Option<SocketAddr>);

fn listen(s: &str) -> Result<Listen, String> {
    if s == "off" {
        return Ok(Listen(None));
    }
    s.parse().map(|a| Listen(Some(a))).map_err(|e| {
        format!("`{s}` is not an address to listen on ({e}): give IP:PORT (e.g. 127.0.0.1:8000, 0.0.0.0:8000 for every interface, port 0 for any free one) or `off`")
    })
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A model to serve, as NAME=MODEL:WEIGHTS: the name clients use, a built-in
    /// model or .enet file, its safetensors checkpoint (repeat for more models;
    /// they share one device).
    #[arg(long = "model", value_name = "NAME=MODEL:WEIGHTS", required = true)]
    models: Vec<ModelArg>,
    /// HTTP/REST address (`off`: none). Loopback by default; 0.0.0.0 listens on
    /// every interface.
    #[arg(long, default_value = "127.0.0.1:8000", value_name = "IP:PORT|off", value_parser = listen)]
    http: Listen,
    /// gRPC address (`off`: none).
    #[arg(long, default_value = "127.0.0.1:8001", value_name = "IP:PORT|off", value_parser = listen)]
    grpc: Listen,
    /// Where the models run: the GPU (default when a hardware adapter exists) or
    /// the CPU reference executor (`cpu` and `reference` both: the server does not
    /// use effc's CPU backend yet); `gpu` also takes a software adapter.
    #[arg(long, value_name = "gpu|cpu|reference")]
    device: Option<effc_driver::Device>,
    /// On the GPU, how weights and activations are stored.
    #[arg(long, default_value = "f32", value_name = "f32|f16")]
    precision: effc_plan::Precision,
    /// Rows per batch at most (1: no dynamic batching); also the most rows one
    /// request may hold.
    #[arg(long, default_value_t = 8, value_name = "B")]
    max_batch: usize,
    /// How long the oldest queued request waits for more rows to join its batch.
    #[arg(long, default_value_t = 2000, value_name = "US")]
    max_queue_delay_us: u64,
    /// Requests queued per model at most; beyond it a request is refused at once
    /// (HTTP 503, gRPC RESOURCE_EXHAUSTED).
    #[arg(long, default_value_t = 64, value_name = "N")]
    queue_size: usize,
    /// A request still queued after this long is answered 503 / UNAVAILABLE.
    #[arg(long, default_value = "30s", value_name = "T", value_parser = duration)]
    queue_timeout: Duration,
    /// Request body (and gRPC message) size at most, checked before reading.
    #[arg(long, default_value = "64MiB", value_name = "BYTES", value_parser = size)]
    max_body: usize,
    /// A request's body must arrive within this (slow clients get 408).
    #[arg(long, default_value = "30s", value_name = "T", value_parser = duration)]
    body_timeout: Duration,
    /// A request's headers must arrive within this (slow or idle clients are
    /// disconnected).
    #[arg(long, default_value = "10s", value_name = "T", value_parser = duration)]
    header_timeout: Duration,
    /// Request bodies held at once, all clients together (each counts its
    /// Content-Length); past it requests are refused at once (503).
    #[arg(long, default_value = "512MiB", value_name = "BYTES", value_parser = size)]
    max_inflight: usize,
    /// Open HTTP connections at most; more are closed at once.
    #[arg(long, default_value_t = 2048, value_name = "N")]
    max_connections: usize,
    /// On SIGTERM, how long requests in flight may take to finish.
    #[arg(long, default_value = "30s", value_name = "T", value_parser = duration)]
    drain_timeout: Duration,
    /// A line per request on stderr: `text`, `json` (one JSON object per line) or `off`.
    #[arg(long, default_value = "text", value_name = "text|json|off")]
    log_format: LogFormat,
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    // A server must outlive its clients: a closed pipe is an error, not a signal.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let config = Config {
        models: args.models,
        http: args.http.0,
        grpc: args.grpc.0,
        device: args.device,
        precision: args.precision,
        batch: BatchConfig {
            max_batch: args.max_batch,
            max_queue_delay: Duration::from_micros(args.max_queue_delay_us),
            queue_size: args.queue_size,
            queue_timeout: args.queue_timeout,
        },
        limits: Limits {
            max_body: args.max_body,
            body_timeout: args.body_timeout,
            header_timeout: args.header_timeout,
            max_connections: args.max_connections,
            drain_timeout: args.drain_timeout,
            max_inflight: args.max_inflight,
        },
        log: args.log_format,
    };
    let server = match effc_serve::Server::start(config) {
        Ok(s) => s,
        Err(effc_serve::Error::Driver(e)) => return Err(fail(e)),
        Err(e) => return Err(e.into()),
    };
    eprintln!("note: {}", server.state().device);
    for m in server.state().models() {
        let [c, h, w] = m.model.input;
        eprintln!(
            "note: model `{}`: {} at {h}x{w} ({c} channels), outputs {}",
            m.name,
            m.model.name,
            m.outputs
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // The bound addresses (port 0 picks one), one per line on stdout.
    if let Some(a) = server.http_addr() {
        println!("http {a}");
    }
    if let Some(a) = server.grpc_addr() {
        println!("grpc {a}");
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    server.run(effc_serve::signal())?;
    eprintln!("note: drained and stopped");
    Ok(ExitCode::SUCCESS)
}
