//! The protocol over HTTP/REST (axum on hyper): health, metadata, inference in
//! JSON and with the binary tensor extension, `/metrics`. Connections are
//! accepted here, not by `axum::serve`, to bound them (`--max-connections`),
//! time out slow headers, and drain them on shutdown.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::{watch, Semaphore};

use crate::protocol::{self, Data, InferRequest, InputTensor, OutData, Requested};
use crate::{ApiError, Error, Kind, LogLine, State};

/// The binary tensor extension's header: the JSON part's length.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

type St = AxState<Arc<State>>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.kind {
            Kind::Invalid => StatusCode::BAD_REQUEST,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Kind::QueueFull | Kind::Unavailable | Kind::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, axum::Json(json!({ "error": self.message }))).into_response()
    }
}

/// The routes of the protocol.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/{name}", get(model_metadata))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(model_metadata_v),
        )
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_ready_v),
        )
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(infer_v))
        .route("/metrics", get(metrics))
        .fallback(|req: Request| async move {
            ApiError::not_found(format!(
                "no route {} {} (the Open Inference Protocol's are under /v2)",
                req.method(),
                req.uri().path()
            ))
        })
        .method_not_allowed_fallback(|req: Request| async move {
            let mut r = ApiError::invalid(format!(
                "{} is not allowed on {}",
                req.method(),
                req.uri().path()
            ))
            .into_response();
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r
        })
        .with_state(state)
}

async fn live() -> StatusCode {
    StatusCode::OK
}

async fn ready(AxState(s): St) -> StatusCode {
    if s.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// The server's extensions of the protocol.
pub const EXTENSIONS: [&str; 2] = ["classification", "binary_tensor_data"];

async fn server_metadata() -> axum::Json<Value> {
    axum::Json(json!({
        "name": "effc",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
    }))
}

/// A model's metadata: its input and outputs, the batch dimension as -1.
pub fn metadata(served: &crate::model::Served) -> Value {
    let [c, h, w] = served.model.input;
    let outputs: Vec<Value> = served
        .outputs
        .iter()
        .map(|o| {
            let shape: Vec<i64> = std::iter::once(-1)
                .chain(o.shape.iter().map(|&d| d as i64))
                .collect();
            json!({"name": o.name, "datatype": "FP32", "shape": shape})
        })
        .collect();
    json!({
        "name": served.name,
        "versions": [served.version],
        "platform": "effc",
        "inputs": [{"name": protocol::INPUT, "datatype": "FP32", "shape": [-1, c, h, w]}],
        "outputs": outputs,
    })
}

async fn model_metadata(s: St, Path(name): Path<String>) -> Response {
    metadata_of(s, name, None)
}

async fn model_metadata_v(s: St, Path((name, v)): Path<(String, String)>) -> Response {
    metadata_of(s, name, Some(v))
}

fn metadata_of(AxState(s): St, name: String, v: Option<String>) -> Response {
    match s.model(&name, v.as_deref()) {
        Ok(m) => axum::Json(metadata(m)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn model_ready(s: St, Path(name): Path<String>) -> Response {
    ready_of(s, name, None)
}

async fn model_ready_v(s: St, Path((name, v)): Path<(String, String)>) -> Response {
    ready_of(s, name, Some(v))
}

fn ready_of(AxState(s): St, name: String, v: Option<String>) -> Response {
    match s.model(&name, v.as_deref()) {
        Ok(_) if s.ready() => StatusCode::OK.into_response(),
        Ok(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn metrics(AxState(s): St) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        s.metrics.render(&s.depths()),
    )
        .into_response()
}

async fn infer(s: St, Path(name): Path<String>, headers: HeaderMap, body: Body) -> Response {
    infer_any(s, name, None, headers, body).await
}

async fn infer_v(
    s: St,
    Path((name, v)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_any(s, name, Some(v), headers, body).await
}

/// The JSON of an inference request.
#[derive(Deserialize)]
struct JsonRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<JsonInput>,
    #[serde(default)]
    outputs: Vec<JsonOutput>,
}

#[derive(Deserialize)]
struct JsonInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct JsonOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

async fn infer_any(
    AxState(s): St,
    name: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let start = Instant::now();
    let path = match &version {
        Some(v) => format!("/v2/models/{name}/versions/{v}/infer"),
        None => format!("/v2/models/{name}/infer"),
    };
    let result = infer_body(&s, &name, version.as_deref(), &headers, body).await;
    let (response, status, rows, id, error) = match result {
        Ok((r, rows, id)) => (r, 200, Some(rows), id, None),
        Err(e) => {
            let msg = e.message.clone();
            let mut r = e.into_response();
            // The body may be unread (refused from its length, or too slow):
            // the connection ends with this answer rather than read on.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            let status = r.status().as_u16();
            (r, status, None, None, Some(msg))
        }
    };
    s.log(&LogLine {
        protocol: "http",
        method: "POST",
        path: &path,
        status,
        seconds: start.elapsed().as_secs_f64(),
        model: Some(&name),
        rows,
        id: id.as_deref(),
        error: error.as_deref(),
    });
    response
}

async fn infer_body(
    s: &Arc<State>,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Response, usize, Option<String>), ApiError> {
    // Unknown models are refused before the body is read.
    s.model(name, version)?;
    let limit = s.limits.max_body;
    let too_large = |n: String| {
        s.metrics.failure(name, "too_large");
        ApiError::new(
            Kind::TooLarge,
            format!("the request body ({n}) is over the limit of {limit} bytes (--max-body)"),
        )
    };
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = length {
        if len > limit as u64 {
            return Err(too_large(format!("{len} bytes")));
        }
    }
    // The body counts against --max-inflight until the response is built.
    let _held = s.hold(name, length.unwrap_or(limit as u64))?;
    let bytes = match tokio::time::timeout(s.limits.body_timeout, axum::body::to_bytes(body, limit))
        .await
    {
        Err(_) => {
            s.metrics.failure(name, "body_timeout");
            return Err(ApiError::new(
                Kind::BodyTimeout,
                format!(
                    "the request body did not arrive within {} s (--body-timeout)",
                    s.limits.body_timeout.as_secs_f64()
                ),
            ));
        }
        Ok(Err(e)) => {
            // to_bytes fails on a body over the limit, or a connection error.
            let over = std::error::Error::source(&e)
                .is_some_and(|c| c.is::<http_body_util::LengthLimitError>());
            if over {
                return Err(too_large("more bytes".into()));
            }
            return Err(ApiError::invalid(format!(
                "cannot read the request body: {e}"
            )));
        }
        Ok(Ok(b)) => b,
    };
    let (req, binary_output) = match parse(headers, &bytes) {
        Ok(r) => r,
        Err(e) => {
            s.metrics.request(name);
            s.metrics.failure(name, e.reason());
            return Err(e);
        }
    };
    let id = req.id.clone();
    let (served, rows, outputs) = s.infer(name, version, req).await?;
    Ok((
        encode(&served, id.as_deref(), outputs, binary_output),
        rows,
        id,
    ))
}

/// A request's JSON and binary parts, and whether outputs default to binary.
fn parse(headers: &HeaderMap, body: &Bytes) -> Result<(InferRequest, bool), ApiError> {
    fn bad(m: impl Into<String>) -> ApiError {
        ApiError::invalid(m)
    }
    let json_len = match headers.get(HEADER_LENGTH) {
        None => body.len(),
        Some(v) => {
            let n = v
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| bad("Inference-Header-Content-Length is not a byte count"))?;
            if n > body.len() {
                return Err(bad(format!(
                    "Inference-Header-Content-Length is {n}, but the body has {} bytes",
                    body.len()
                )));
            }
            n
        }
    };
    let (head, mut rest) = body.split_at(json_len);
    let req: JsonRequest = serde_json::from_slice(head)
        .map_err(|e| bad(format!("the request is not valid inference JSON: {e}")))?;
    let flag = |p: &Map<String, Value>, key: &str| -> Result<Option<bool>, ApiError> {
        match p.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(bad(format!("parameter `{key}` must be a boolean, got {v}"))),
        }
    };
    let binary_output = flag(&req.parameters, "binary_data_output")?.unwrap_or(false);
    let mut inputs = vec![];
    for i in req.inputs {
        let data = match i.parameters.get("binary_data_size") {
            Some(v) => {
                let n = v.as_u64().ok_or_else(|| {
                    bad(format!(
                        "input `{}`: binary_data_size must be a byte count",
                        i.name
                    ))
                })? as usize;
                if n > rest.len() {
                    return Err(bad(format!(
                        "input `{}`: binary_data_size is {n}, but only {} bytes of binary data remain",
                        i.name,
                        rest.len()
                    )));
                }
                let (mine, more) = rest.split_at(n);
                rest = more;
                if i.datatype == "BYTES" {
                    Data::Elements(
                        protocol::split_bytes(mine)
                            .map_err(|e| bad(format!("input `{}`: {e}", i.name)))?,
                    )
                } else {
                    Data::Raw(mine.to_vec())
                }
            }
            None => json_data(&i.name, &i.datatype, i.data)?,
        };
        inputs.push(InputTensor {
            name: i.name,
            datatype: i.datatype,
            shape: i.shape,
            data,
        });
    }
    if !rest.is_empty() {
        return Err(bad(format!(
            "{} bytes of binary data follow the inputs' binary_data_size",
            rest.len()
        )));
    }
    let mut outputs = vec![];
    for o in req.outputs {
        let classification = match o.parameters.get("classification") {
            None => None,
            Some(v) => Some(v.as_u64().filter(|&k| k >= 1).ok_or_else(|| {
                bad(format!(
                    "output `{}`: classification must be a count of classes ≥ 1, got {v}",
                    o.name
                ))
            })? as usize),
        };
        outputs.push(Requested {
            binary: flag(&o.parameters, "binary_data")?,
            name: o.name,
            classification,
        });
    }
    Ok((
        InferRequest {
            id: req.id,
            inputs,
            outputs,
        },
        binary_output,
    ))
}

/// An input's JSON `data`: numbers (flat or nested) or, for BYTES, strings.
fn json_data(name: &str, datatype: &str, data: Option<Value>) -> Result<Data, ApiError> {
    let Some(data) = data else {
        return Err(ApiError::invalid(format!(
            "input `{name}` has neither `data` nor parameters.binary_data_size"
        )));
    };
    let mut flat = vec![];
    let mut stack = vec![data];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items.into_iter().rev()),
            other => flat.push(other),
        }
    }
    if datatype == "BYTES" {
        let elements = flat
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.into_bytes()),
                other => Err(ApiError::invalid(format!(
                    "input `{name}` is BYTES: its data must be strings, got {other}"
                ))),
            })
            .collect::<Result<_, _>>()?;
        return Ok(Data::Elements(elements));
    }
    let numbers = flat
        .into_iter()
        .map(|v| {
            v.as_f64().ok_or_else(|| {
                ApiError::invalid(format!(
                    "input `{name}` is {datatype}: its data must be numbers, got {v}"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Data::Numbers(numbers))
}

/// The response: JSON, with the outputs asked for as binary after it.
fn encode(
    served: &crate::model::Served,
    id: Option<&str>,
    outputs: Vec<protocol::OutputTensor>,
    binary_default: bool,
) -> Response {
    let mut blobs: Vec<u8> = vec![];
    let mut tensors = vec![];
    for o in &outputs {
        let mut t = json!({"name": o.name, "datatype": o.datatype(), "shape": o.shape});
        if o.binary.unwrap_or(binary_default) {
            let raw = o.raw();
            t["parameters"] = json!({"binary_data_size": raw.len()});
            blobs.extend(raw);
        } else {
            t["data"] = match &o.data {
                OutData::Fp32(v) => json!(v),
                OutData::Bytes(v) => json!(v),
            };
        }
        tensors.push(t);
    }
    let mut head = json!({
        "model_name": served.name,
        "model_version": served.version,
        "outputs": tensors,
    });
    if let Some(id) = id {
        head["id"] = json!(id);
    }
    let head = serde_json::to_vec(&head).unwrap_or_default();
    if blobs.is_empty() {
        return ([(header::CONTENT_TYPE, "application/json")], head).into_response();
    }
    let len = head.len();
    let mut body = head;
    body.extend(blobs);
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static(HEADER_LENGTH),
                HeaderValue::from(len),
            ),
        ],
        body,
    )
        .into_response()
}

/// Accepts connections on `listener` until `stop` turns true, then drains.
pub async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Error> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let limits = state.limits;
    let router = router(Arc::clone(&state));
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors or a reset before accept:
                        // wait a little rather than spin.
                        eprintln!("warning: accepting a connection failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    // Over --max-connections: closed at once.
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(router.clone());
                let conn = http1.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(permit);
                });
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(limits.drain_timeout, graceful.shutdown()).await;
    Ok(())
}
