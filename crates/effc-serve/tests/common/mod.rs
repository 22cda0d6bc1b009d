//! A server on a loopback port (port 0), and a plain HTTP/1.1 client on a TCP
//! socket (so that tests control every byte: slow clients, lying lengths).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use effc_serve::{BatchConfig, Config, Limits, LogFormat, ModelArg, Running, Server};

pub fn fixtures() -> PathBuf {
    effc_testkit::fixtures()
}

pub fn weights() -> PathBuf {
    fixtures().join("lite0/efficientnet-lite0.safetensors")
}

/// lite0 at `resolution` (real weights fit any resolution), as a spec file in
/// `dir`.
pub fn lite0_at(dir: &std::path::Path, resolution: usize) -> String {
    let p = dir.join(format!("lite0-{resolution}.enet"));
    std::fs::write(
        &p,
        format!("model lite0_{resolution} extends lite0 {{ resolution = {resolution} }}\n"),
    )
    .unwrap();
    p.display().to_string()
}

/// A temporary folder holding lite0 at 32 px (as [`lite0_at`]), the spec's
/// path, and the [`config`] that serves it as `small`.
pub fn small_lite0() -> (tempfile::TempDir, String, Config) {
    let dir = tempfile::tempdir().unwrap();
    let spec = lite0_at(dir.path(), 32);
    let cfg = config("small", &spec);
    (dir, spec, cfg)
}

pub fn config(name: &str, model: &str) -> Config {
    Config {
        models: vec![ModelArg {
            name: name.into(),
            model: model.into(),
            weights: weights(),
        }],
        http: Some("127.0.0.1:0".parse().unwrap()),
        grpc: Some("127.0.0.1:0".parse().unwrap()),
        // The oracle, so that answers can be compared exactly; `cpu` (effc's CPU
        // backend) is tested against it in http.rs.
        device: Some(effc_driver::Device::Reference),
        precision: effc_plan::Precision::F32,
        batch: BatchConfig {
            max_batch: 4,
            max_queue_delay: Duration::from_millis(2),
            queue_size: 16,
            queue_timeout: Duration::from_secs(60),
        },
        limits: Limits {
            max_body: 4 << 20,
            ..Limits::default()
        },
        log: LogFormat::Off,
    }
}

pub fn start(config: Config) -> Running {
    Server::start(config).expect("the server starts").spawn()
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `error` of a protocol error.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no `error` in {}", String::from_utf8_lossy(&self.body)))
            .to_string()
    }
}

/// Sends raw bytes, reads the whole answer (`Connection: close`).
pub fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(request).unwrap();
    let mut out = vec![];
    s.read_to_end(&mut out).unwrap();
    parse(&out)
}

pub fn parse(out: &[u8]) -> Reply {
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(out)));
    let head = String::from_utf8_lossy(&out[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: out[end + 4..].to_vec(),
    }
}

pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Reply {
    let bytes = effc_testkit::http::request_bytes(addr, method, path, headers, body);
    raw(addr, &bytes)
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[], b"")
}

pub fn post_json(addr: SocketAddr, path: &str, json: &serde_json::Value) -> Reply {
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json".into())],
        json.to_string().as_bytes(),
    )
}

/// A request with the binary tensor extension: the JSON, then `blobs`.
pub fn post_binary(addr: SocketAddr, path: &str, json: &serde_json::Value, blobs: &[u8]) -> Reply {
    let head = json.to_string().into_bytes();
    let mut body = head.clone();
    body.extend_from_slice(blobs);
    request(
        addr,
        "POST",
        path,
        &[
            ("Content-Type", "application/octet-stream".into()),
            ("Inference-Header-Content-Length", head.len().to_string()),
        ],
        &body,
    )
}

/// BYTES elements, each prefixed by its length.
pub fn bytes_tensor(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![];
    for e in elements {
        out.extend((e.len() as u32).to_le_bytes());
        out.extend(e);
    }
    out
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The binary outputs of a response: name → bytes, in order.
pub fn binary_outputs(r: &Reply) -> Vec<(String, serde_json::Value, Vec<u8>)> {
    let n: usize = r
        .header("Inference-Header-Content-Length")
        .map_or(r.body.len(), |v| v.parse().unwrap());
    let head: serde_json::Value = serde_json::from_slice(&r.body[..n]).unwrap();
    let mut at = n;
    let mut out = vec![];
    for o in head["outputs"].as_array().unwrap() {
        let size = o["parameters"]["binary_data_size"].as_u64().unwrap_or(0) as usize;
        out.push((
            o["name"].as_str().unwrap().to_string(),
            o.clone(),
            r.body[at..at + size].to_vec(),
        ));
        at += size;
    }
    out
}
