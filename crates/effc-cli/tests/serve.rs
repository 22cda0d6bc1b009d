//! `effc serve` as users run it, on loopback ports (port 0, the bound addresses
//! read from its stdout), with lite0's real weights on the CPU: its answers
//! equal `effc run`'s; the protocol's real clients (tritonclient over HTTP and
//! gRPC, from `.ci/venv`; `curl`) get what they expect; SIGTERM drains and exits 0.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{effc, root, stdout};
use serde_json::{json, Value};

const WEIGHTS: &str = "tests/fixtures/lite0/efficientnet-lite0.safetensors";
const PHOTOS: [&str; 2] = [
    "tests/fixtures/images/chelsea.png",
    "tests/fixtures/images/coffee.png",
];

struct Serve {
    child: Child,
    http: SocketAddr,
    grpc: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Serve {
    fn start(extra: &[&str]) -> Serve {
        let model = format!("lite0=lite0:{WEIGHTS}");
        let mut args: Vec<String> = ["--model", &model, "--http", "127.0.0.1:0"]
            .iter()
            .chain(&[
                "--grpc",
                "127.0.0.1:0",
                "--device",
                "cpu",
                "--log-format",
                "json",
            ])
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        Serve::with(&args)
    }

    /// `effc serve ARGS` (every argument given).
    fn with(args: &[String]) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_effc"))
            .arg("serve")
            .args(args)
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut addr = |what: &str| -> SocketAddr {
            let line = lines
                .next()
                .unwrap_or_else(|| {
                    panic!(
                        "effc serve printed no address: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )
                })
                .unwrap();
            let (w, a) = line.split_once(' ').unwrap();
            assert_eq!(w, what, "{line}");
            a.parse().unwrap()
        };
        let http = addr("http");
        let grpc = if args.windows(2).any(|w| w[0] == "--grpc" && w[1] == "off") {
            http
        } else {
            addr("grpc")
        };
        Serve {
            child,
            http,
            grpc,
            log,
            _dir: dir,
        }
    }

    /// SIGTERM, then the exit code and what it wrote on stderr.
    fn terminate(mut self) -> (i32, String) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return (s.code().unwrap_or(-1), log);
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "effc serve did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request: status and body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Vec<u8>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&effc_testkit::http::request_bytes(
        addr, method, path, headers, body,
    ))
    .unwrap();
    let mut out = vec![];
    s.read_to_end(&mut out).unwrap();
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..end]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, out[end + 4..].to_vec(), head)
}

/// A saved `input` tensor for `effc run --input`, and the same values raw.
fn write_tensor(dir: &Path, values: &[f32]) -> (PathBuf, PathBuf) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, 3, 224, 224], &bytes)
            .unwrap();
    let st = dir.join("x.safetensors");
    std::fs::write(
        &st,
        safetensors::serialize([("input", view)], None).unwrap(),
    )
    .unwrap();
    let raw = dir.join("x.f32");
    std::fs::write(&raw, &bytes).unwrap();
    (st, raw)
}

/// `effc run lite0` with the checkpoint and `args` on `--device cpu`, effc's CPU
/// backend, as the server's `cpu` runs it: the same code, bit for bit.
fn run_cpu(args: &[&str]) -> std::process::Output {
    let mut all = vec!["run", "lite0", "-w", WEIGHTS, "--device", "cpu"];
    all.extend(args);
    let o = effc(&all);
    assert!(o.status.success(), "{}", common::stderr(&o));
    o
}

/// `effc run`'s logits of the tensor, as bytes.
fn run_logits(dir: &Path, st: &Path) -> Vec<u8> {
    let save = dir.join("y.safetensors");
    run_cpu(&[
        "--input",
        st.to_str().unwrap(),
        "--save",
        save.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&save).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor("logits").unwrap().data().to_vec()
}

/// `effc run --json`'s top 5 of the photos: (class, prob) per image.
fn run_top5() -> Vec<Vec<(u64, f32)>> {
    let mut args = vec!["--json"];
    args.extend(PHOTOS);
    let o = run_cpu(&args);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|img| {
            img["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["class"].as_u64().unwrap(),
                        t["prob"].as_f64().unwrap() as f32,
                    )
                })
                .collect()
        })
        .collect()
}

/// "score:index:label" strings against effc run's top 5.
fn assert_classes(what: &str, strings: &[String], top: &[Vec<(u64, f32)>]) {
    let want: Vec<(u64, f32)> = top.iter().flatten().copied().collect();
    assert_eq!(strings.len(), want.len(), "{what}: {strings:?}");
    for (s, (class, prob)) in strings.iter().zip(want) {
        let mut parts = s.splitn(3, ':');
        let score: f32 = parts.next().unwrap().parse().unwrap();
        let index: u64 = parts.next().unwrap().parse().unwrap();
        assert_eq!((index, score), (class, prob), "{what}: {s}");
        assert!(
            !parts.next().unwrap().is_empty(),
            "{what}: {s} has no label"
        );
    }
}

/// A tool the test needs: present, or (outside CI) a reason to skip.
fn tool(path: &Path, what: &str) -> bool {
    if path.exists() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{what} is missing at {} (.ci/run installs it)",
            path.display()
        );
    }
    eprintln!(
        "skipped: {what} is missing at {} (.ci/run installs it)",
        path.display()
    );
    false
}

fn which(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| PathBuf::from(format!("<{name} not on PATH>")))
}

#[test]
fn answers_equal_effc_runs_over_http_and_sigterm_drains() {
    let dir = tempfile::tempdir().unwrap();
    let values = effc_testkit::seeded(3 * 224 * 224, 22);
    let (st, _) = write_tensor(dir.path(), &values);
    let want_logits = run_logits(dir.path(), &st);
    let top = run_top5();

    // A lone request waits 0.5 s for company: the last one is still queued when
    // SIGTERM arrives.
    let serve = Serve::start(&["--max-batch", "4", "--max-queue-delay-us", "500000"]);
    let addr = serve.http;
    // A tensor's logits: effc run's, bit for bit.
    let blob: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let head = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224],
                                  "parameters": {"binary_data_size": blob.len()}}],
                      "outputs": [{"name": "logits", "parameters": {"binary_data": true}}]})
    .to_string();
    let body = [head.as_bytes(), &blob].concat();
    let hdr = [("Inference-Header-Content-Length", head.len().to_string())];
    let (status, out, headers) = http(addr, "POST", "/v2/models/lite0/infer", &hdr, &body);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&out));
    let n: usize = headers
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("inference-header-content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    assert_eq!(&out[n..], &want_logits[..]);

    // The photos as BYTES: effc run's top 5.
    let files: Vec<Vec<u8>> = PHOTOS
        .iter()
        .map(|p| std::fs::read(root().join(p)).unwrap())
        .collect();
    let mut blob = vec![];
    for f in &files {
        blob.extend((f.len() as u32).to_le_bytes());
        blob.extend(f);
    }
    let head = json!({"inputs": [{"name": "input", "datatype": "BYTES", "shape": [2],
                                  "parameters": {"binary_data_size": blob.len()}}],
                      "outputs": [{"name": "probabilities", "parameters": {"classification": 5}}]})
    .to_string();
    let body = [head.as_bytes(), &blob].concat();
    let hdr = [("Inference-Header-Content-Length", head.len().to_string())];
    let (status, out, _) = http(addr, "POST", "/v2/models/lite0/infer", &hdr, &body);
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&out).unwrap();
    let strings: Vec<String> = v["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_classes("http", &strings, &top);

    // SIGTERM while a request is in flight: it is answered, then exit 0.
    let blob2 = values
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect::<Vec<u8>>();
    let head2 = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224],
                                   "parameters": {"binary_data_size": blob2.len()}}]})
    .to_string();
    let body2 = [head2.as_bytes(), &blob2].concat();
    let len2 = head2.len().to_string();
    let inflight = std::thread::spawn(move || {
        http(
            addr,
            "POST",
            "/v2/models/lite0/infer",
            &[("Inference-Header-Content-Length", len2)],
            &body2,
        )
        .0
    });
    let t = Instant::now();
    loop {
        let (_, m, _) = http(addr, "GET", "/metrics", &[], b"");
        if String::from_utf8_lossy(&m).contains("effc_requests_total{model=\"lite0\"} 3") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(2));
    }
    let (code, text) = serve.terminate();
    assert_eq!(code, 0, "{text}");
    assert_eq!(inflight.join().unwrap(), 200);
    // --log-format json: one object per request.
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines
            .iter()
            .all(|l| l["status"] == 200 && l["model"] == "lite0" && l["protocol"] == "http"),
        "{text}"
    );
}

#[test]
fn tritonclient_over_http_and_grpc() {
    let python = root().join(".ci/venv/bin/python");
    if !tool(&python, "the tritonclient venv (.ci/venv)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let values = effc_testkit::seeded(3 * 224 * 224, 23);
    let (st, raw) = write_tensor(dir.path(), &values);
    let want_logits = run_logits(dir.path(), &st);
    let top = run_top5();
    let serve = Serve::start(&[]);
    let mut cmd = Command::new(&python);
    cmd.arg(root().join("crates/effc-cli/tests/serve/clients.py"))
        .arg(serve.http.to_string())
        .arg(serve.grpc.to_string())
        .arg("lite0")
        .arg(&raw)
        .args(PHOTOS.iter().map(|p| root().join(p)));
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    for proto in ["http", "grpc"] {
        let r = &v[proto];
        assert_eq!(
            (&r["live"], &r["ready"], &r["model_ready"]),
            (&json!(true), &json!(true), &json!(true)),
            "{proto}"
        );
        assert_eq!(r["server"], "effc");
        assert_eq!(
            r["metadata"],
            json!({"name": "lite0",
                   "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]}],
                   "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]},
                               {"name": "probabilities", "datatype": "FP32", "shape": [-1, 1000]}]}),
            "{proto}"
        );
        let strings: Vec<String> = r["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        assert_classes(proto, &strings, &top);
        let hex: String = want_logits.iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            r["logits"] == json!(hex),
            "{proto}: the logits differ from effc run's"
        );
        let e = &r["errors"];
        let (not_found, invalid) = if proto == "http" {
            ("404", "400")
        } else {
            ("StatusCode.NOT_FOUND", "StatusCode.INVALID_ARGUMENT")
        };
        assert_eq!(e["unknown_model"]["status"], not_found, "{proto}: {e}");
        for case in ["wrong_shape", "nan", "bad_image"] {
            assert_eq!(e[case]["status"], invalid, "{proto} {case}: {e}");
        }
        assert!(e["nan"]["message"].as_str().unwrap().contains("NaN"), "{e}");
        assert_eq!(r["live_after"], true);
    }
    assert_eq!(serve.terminate().0, 0);
}

#[test]
fn curl_gets_metadata_answers_and_errors() {
    let curl = which("curl");
    if !tool(&curl, "curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&[]);
    let base = format!("http://{}", serve.http);
    let curl_out = |args: &[&str]| -> (String, String) {
        let o = Command::new(&curl)
            .args(["-s", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        let s = String::from_utf8(o.stdout).unwrap();
        let (body, code) = s.rsplit_once('\n').unwrap();
        (code.to_string(), body.to_string())
    };
    let (code, body) = curl_out(&[&format!("{base}/v2/models/lite0")]);
    assert_eq!(code, "200");
    let m: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(m["inputs"][0]["shape"], json!([-1, 3, 224, 224]));
    assert_eq!(curl_out(&[&format!("{base}/v2/health/ready")]).0, "200");
    // A photo in the binary extension, the body built in a file.
    let photo = std::fs::read(root().join(PHOTOS[1])).unwrap();
    let mut blob = (photo.len() as u32).to_le_bytes().to_vec();
    blob.extend(&photo);
    let head = json!({"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1],
                                  "parameters": {"binary_data_size": blob.len()}}],
                      "outputs": [{"name": "probabilities", "parameters": {"classification": 1}}]})
    .to_string();
    let file = dir.path().join("body.bin");
    std::fs::write(&file, [head.as_bytes(), &blob].concat()).unwrap();
    let (code, body) = curl_out(&[
        "-H",
        &format!("Inference-Header-Content-Length: {}", head.len()),
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{base}/v2/models/lite0/infer"),
    ]);
    assert_eq!(code, "200", "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let top = v["outputs"][0]["data"][0].as_str().unwrap();
    assert!(top.ends_with(":967:espresso"), "{top}");
    // Malformed JSON: 400 with the protocol's error.
    let (code, body) = curl_out(&[
        "-d",
        "{\"inputs\":",
        &format!("{base}/v2/models/lite0/infer"),
    ]);
    assert_eq!(code, "400");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("not valid inference JSON"),
        "{body}"
    );
    assert_eq!(curl_out(&[&format!("{base}/v2/health/live")]).0, "200");
    assert_eq!(serve.terminate().0, 0);
}

/// The `args:` lists of a manifest.
fn yaml_args(text: &str) -> Vec<Vec<String>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = vec![];
    for (i, l) in lines.iter().enumerate() {
        if l.trim() != "args:" {
            continue;
        }
        let indent = l.len() - l.trim_start().len();
        let items = lines[i + 1..]
            .iter()
            .take_while(|m| m.len() - m.trim_start().len() > indent && m.trim().starts_with("- "))
            .map(|m| m.trim()[2..].trim().trim_matches('"').to_string())
            .collect();
        out.push(items);
    }
    out
}

/// The probes' (path, port) of a manifest.
fn yaml_probes(text: &str) -> Vec<(String, u16)> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter_map(|w| {
            let path = w[0].strip_prefix("path: ")?;
            let port = w[1].strip_prefix("port: ")?.parse().ok()?;
            Some((path.to_string(), port))
        })
        .collect()
}

/// The value after `flag` in `args`.
fn arg<'a>(args: &'a [String], flag: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    &args[i + 1]
}

#[test]
fn the_deploy_manifests_run_and_their_probes_answer() {
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let cmd = dockerfile
        .split("CMD [")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap()
        .replace("\\\n", " ");
    let cmd: Vec<String> = serde_json::from_str(&format!("[{cmd}]")).unwrap();
    assert!(dockerfile.contains(r#"ENTRYPOINT ["effc", "serve"]"#));
    let mut cases = vec![(
        "deploy/Dockerfile".to_string(),
        cmd,
        vec![
            ("/v2/health/live".to_string(), 8000),
            ("/v2/health/ready".to_string(), 8000),
        ],
    )];
    for f in ["deploy/kubernetes.yaml", "deploy/kserve.yaml"] {
        let text = std::fs::read_to_string(root().join(f)).unwrap();
        let args = yaml_args(&text);
        assert_eq!(args.len(), 1, "{f}: one container");
        let probes = yaml_probes(&text);
        assert!(probes.len() >= 2, "{f}: {probes:?}");
        let port: u16 = arg(&args[0], "--http")
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            text.contains(&format!("containerPort: {port}")),
            "{f}: no containerPort {port}"
        );
        cases.push((f.to_string(), args[0].clone(), probes));
    }
    for (f, args, probes) in cases {
        let http_port: u16 = arg(&args, "--http")
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        if f.ends_with("Dockerfile") {
            assert!(dockerfile.contains(&format!("EXPOSE {http_port}")), "{f}");
        }
        // The manifest's own arguments, on loopback ports and the fixture's checkpoint.
        let mut args = args.clone();
        for i in 0..args.len() {
            match args[i].as_str() {
                "--model" => {
                    let (name, rest) = args[i + 1].split_once('=').unwrap();
                    let model = rest.split(':').next().unwrap();
                    args[i + 1] = format!("{name}={model}:{WEIGHTS}");
                }
                "--http" => args[i + 1] = "127.0.0.1:0".into(),
                "--grpc" if args[i + 1] != "off" => args[i + 1] = "127.0.0.1:0".into(),
                _ => {}
            }
        }
        args.extend(["--device".into(), "cpu".into()]);
        let serve = Serve::with(&args);
        for (path, port) in &probes {
            assert_eq!(
                *port, http_port,
                "{f}: probe {path} on {port}, HTTP on {http_port}"
            );
            let (status, body, _) = http(serve.http, "GET", path, &[], b"");
            assert_eq!(
                status,
                200,
                "{f}: {path}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        if f.ends_with("kubernetes.yaml") {
            let (status, _, _) = http(serve.http, "GET", "/metrics", &[], b"");
            assert_eq!(status, 200);
        }
        assert_eq!(serve.terminate().0, 0, "{f}");
    }
}
