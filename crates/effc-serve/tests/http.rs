//! The protocol over HTTP on a loopback port, with lite0's real weights on the
//! CPU reference executor: classification of the fixture photos, tensor
//! inputs, metadata, every error case (the server stays up), batching, the
//! queue bound, body and header limits, and the drain.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// What `effc run` computes for an image: the reference executor's logits of
/// the preprocessed image.
fn reference_logits(model_arg: &str, images: &[std::path::PathBuf]) -> Vec<f32> {
    let (model, ex) = reference_model(model_arg);
    let mut input = vec![];
    for i in images {
        input.extend(effc_weights::load_image(i, &model).unwrap());
    }
    ex.run(&input, images.len()).unwrap().data
}

/// The model `model_arg` names and the reference executor on it with lite0's
/// weights (what the server's `small` model is checked against).
fn reference_model(model_arg: &str) -> (effc_ir::Model, effc_reference::Executor) {
    let model = effc_driver::ModelRequest::from_arg(model_arg)
        .resolve()
        .unwrap()
        .model;
    let w = effc_weights::Weights::load(weights(), &model, None).unwrap();
    let ex = effc_reference::Executor::new(&model, &w).unwrap();
    (model, ex)
}

fn reference(model_arg: &str) -> effc_reference::Executor {
    reference_model(model_arg).1
}

/// The logits `small` answers for `batch` 32-px images in a JSON FP32 request,
/// read back from JSON numbers.
fn json_logits(addr: std::net::SocketAddr, input: &[f32], batch: usize) -> Vec<f32> {
    let req = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [batch, 3, 32, 32], "data": input}],
                     "outputs": [{"name": "logits"}]});
    let r = post_json(addr, "/v2/models/small/infer", &req);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn lite0_classifies_the_photos_from_encoded_images() {
    let server = start(config("lite0", "lite0"));
    let addr = server.http.unwrap();
    let photos: Vec<_> = ["chelsea", "coffee"]
        .iter()
        .map(|p| fixtures().join(format!("images/{p}.png")))
        .collect();
    let files: Vec<Vec<u8>> = photos.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let blob = bytes_tensor(&files);
    let req = json!({
        "id": "photos",
        "inputs": [{"name": "input", "datatype": "BYTES", "shape": [2],
                    "parameters": {"binary_data_size": blob.len()}}],
        "outputs": [
            {"name": "probabilities", "parameters": {"classification": 5}},
            {"name": "logits", "parameters": {"binary_data": true}},
        ],
    });
    let r = post_binary(addr, "/v2/models/lite0/infer", &req, &blob);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let outs = binary_outputs(&r);
    let head: serde_json::Value = {
        let n: usize = r
            .header("Inference-Header-Content-Length")
            .unwrap()
            .parse()
            .unwrap();
        serde_json::from_slice(&r.body[..n]).unwrap()
    };
    assert_eq!(head["id"], "photos");
    assert_eq!(head["model_name"], "lite0");
    let classes = &outs[0].1;
    assert_eq!(classes["datatype"], "BYTES");
    assert_eq!(classes["shape"], json!([2, 5]));
    let strings: Vec<&str> = classes["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    // The same five classes, order and probabilities as effc run's top-5.
    let want = reference_logits("lite0", &photos);
    let mut expected = vec![];
    for row in want.chunks(1000) {
        for (c, p) in effc_weights::top_k(row, 5) {
            expected.push(format!("{p}:{c}:{}", effc_weights::class_name(c, 1000)));
        }
    }
    assert_eq!(strings, expected);
    assert!(strings[0].ends_with(":282:tiger cat"), "{strings:?}");
    assert!(strings[5].ends_with(":967:espresso"), "{strings:?}");
    // The logits, as binary, are the executor's exactly.
    let (name, meta, bytes) = &outs[1];
    assert_eq!(
        (name.as_str(), &meta["shape"]),
        ("logits", &json!([2, 1000]))
    );
    assert_eq!(bytes, &f32_bytes(&want));
    server.stop().unwrap();
}

/// `--device cpu` serves through effc's CPU backend: its logits are the
/// reference executor's within 1e-5 (relative), and the same class.
#[test]
fn the_cpu_device_serves_through_effcs_cpu_backend() {
    let (_dir, spec, mut cfg) = small_lite0();
    cfg.device = Some(effc_driver::Device::Cpu);
    let server = start(cfg);
    assert!(
        server.state.device.contains("effc's CPU backend"),
        "{}",
        server.state.device
    );
    let addr = server.http.unwrap();
    let input = effc_testkit::seeded(2 * 3 * 32 * 32, 11);
    let want = reference(&spec).run(&input, 2).unwrap().data;
    let got = json_logits(addr, &input, 2);
    assert_eq!(got.len(), want.len());
    let err = effc_testkit::rel_err(&got, &want);
    assert!(err <= 1e-5, "relative error {err}");
    server.stop().unwrap();
}

#[test]
fn tensor_inputs_give_the_executors_logits_exactly_in_json_fp32_and_fp16() {
    let (_dir, spec, cfg) = small_lite0();
    let server = start(cfg);
    let addr = server.http.unwrap();
    let input = effc_testkit::seeded(3 * 32 * 32, 7);
    let ex = reference(&spec);
    let want = ex.run(&input, 1).unwrap().data;

    // JSON numbers (f32 printed shortest, read back exactly).
    let got = json_logits(addr, &input, 1);
    assert_eq!(got, want);

    // Binary FP32 in, binary out (the request's binary_data_output).
    let blob = f32_bytes(&input);
    let req = json!({"parameters": {"binary_data_output": true},
                     "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 32, 32],
                                 "parameters": {"binary_data_size": blob.len()}}]});
    let r = post_binary(addr, "/v2/models/small/versions/1/infer", &req, &blob);
    assert_eq!(r.status, 200);
    let outs = binary_outputs(&r);
    assert_eq!(outs.len(), 2, "logits and probabilities");
    assert_eq!(outs[0].2, f32_bytes(&want));
    let probs: Vec<f32> = outs[1]
        .2
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    for (c, p) in effc_weights::top_k(&want, 3) {
        assert_eq!(probs[c], p);
    }

    // FP16: the halves, widened, are what runs.
    let halves: Vec<half::f16> = input.iter().map(|&v| half::f16::from_f32(v)).collect();
    let widened: Vec<f32> = halves.iter().map(|h| h.to_f32()).collect();
    let blob: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
    let req = json!({"inputs": [{"name": "input", "datatype": "FP16", "shape": [1, 3, 32, 32],
                                 "parameters": {"binary_data_size": blob.len()}}],
                     "outputs": [{"name": "logits", "parameters": {"binary_data": true}}]});
    let r = post_binary(addr, "/v2/models/small/infer", &req, &blob);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        binary_outputs(&r)[0].2,
        f32_bytes(&ex.run(&widened, 1).unwrap().data)
    );
    server.stop().unwrap();
}

#[test]
fn health_and_metadata_describe_the_model() {
    let (_dir, _, cfg) = small_lite0();
    let server = start(cfg);
    let addr = server.http.unwrap();
    assert_eq!(get(addr, "/v2/health/live").status, 200);
    assert_eq!(get(addr, "/v2/health/ready").status, 200);
    assert_eq!(get(addr, "/v2/models/small/ready").status, 200);
    assert_eq!(get(addr, "/v2/models/small/versions/1/ready").status, 200);
    let s = get(addr, "/v2").json();
    assert_eq!(s["name"], "effc");
    assert_eq!(
        s["extensions"],
        json!(["classification", "binary_tensor_data"])
    );
    let m = get(addr, "/v2/models/small").json();
    assert_eq!(
        m,
        json!({
            "name": "small", "versions": ["1"], "platform": "effc",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]}],
            "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]},
                        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 1000]}],
        })
    );
    assert_eq!(get(addr, "/v2/models/small/versions/1").json(), m);
    server.stop().unwrap();
}

#[test]
fn every_error_gets_the_protocols_answer_and_the_server_stays_up() {
    let (_dir, _, cfg) = small_lite0();
    let server = start(cfg);
    let addr = server.http.unwrap();
    let infer = "/v2/models/small/infer";
    let good = effc_testkit::seeded(3 * 32 * 32, 1);
    let tensor = |dt: &str, shape: serde_json::Value, data: serde_json::Value| json!({"inputs": [{"name": "input", "datatype": dt, "shape": shape, "data": data}]});
    let mut nan = f32_bytes(&good);
    nan[400..404].copy_from_slice(&f32::NAN.to_le_bytes());
    let nan_req = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 32, 32],
                                     "parameters": {"binary_data_size": nan.len()}}]});
    let cases: Vec<(&str, Reply, u16, &str)> = vec![
        (
            "malformed JSON",
            request(addr, "POST", infer, &[], b"{\"inputs\": [}"),
            400,
            "not valid inference JSON",
        ),
        (
            "wrong shape",
            post_json(
                addr,
                infer,
                &tensor("FP32", json!([1, 3, 16, 16]), json!(vec![0.0; 768])),
            ),
            400,
            "has shape [1, 3, 16, 16]; model `small` takes FP32 [N, 3, 32, 32]",
        ),
        (
            "too few values",
            post_json(
                addr,
                infer,
                &tensor("FP32", json!([1, 3, 32, 32]), json!([1.0, 2.0])),
            ),
            400,
            "needs 3072 values, got 2",
        ),
        (
            "wrong datatype",
            post_json(
                addr,
                infer,
                &tensor("INT8", json!([1, 3, 32, 32]), json!([1])),
            ),
            400,
            "has datatype INT8",
        ),
        (
            "unknown input",
            post_json(
                addr,
                infer,
                &json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}),
            ),
            400,
            "unknown input `x`",
        ),
        (
            "unknown output",
            post_json(
                addr,
                infer,
                &json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 32, 32], "data": good}],
                                           "outputs": [{"name": "embedding"}]}),
            ),
            400,
            "unknown output `embedding`: model `small` has logits, probabilities",
        ),
        (
            "undecodable image",
            post_json(
                addr,
                infer,
                &tensor("BYTES", json!([1]), json!(["not an image"])),
            ),
            400,
            "input `input`, element 0:",
        ),
        (
            "NaN input",
            post_binary(addr, infer, &nan_req, &nan),
            400,
            "1 NaN or infinite values (the first in row 0)",
        ),
        (
            "batch over --max-batch",
            post_json(
                addr,
                infer,
                &tensor("FP32", json!([5, 3, 32, 32]), json!([0.0])),
            ),
            400,
            "takes 1 to 4 rows per request",
        ),
        (
            "binary size past the body",
            post_binary(
                addr,
                infer,
                &json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 32, 32], "parameters": {"binary_data_size": 99999}}]}),
                b"abc",
            ),
            400,
            "binary_data_size is 99999, but only 3 bytes",
        ),
        (
            "unknown model",
            post_json(
                addr,
                "/v2/models/nope/infer",
                &tensor("FP32", json!([1]), json!([0])),
            ),
            404,
            "unknown model `nope`; this server has small",
        ),
        (
            "unknown version",
            get(addr, "/v2/models/small/versions/2"),
            404,
            "has no version `2`",
        ),
        (
            "unknown route",
            get(addr, "/v1/models"),
            404,
            "no route GET /v1/models",
        ),
        (
            "oversized body",
            // Announced over the limit, and only its start sent: refused from
            // the length, before the body is read.
            raw(
                addr,
                format!(
                    "POST {infer} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{{\"inputs\"",
                    (4 << 20) + 1
                )
                .as_bytes(),
            ),
            413,
            "over the limit of 4194304 bytes",
        ),
    ];
    let n = cases.len();
    for (what, reply, status, needle) in cases {
        assert_eq!(
            reply.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let e = reply.error();
        assert!(e.contains(needle), "{what}: `{e}` lacks `{needle}`");
        assert_eq!(get(addr, "/v2/health/live").status, 200, "after {what}");
    }
    // And it still infers.
    let r = post_json(
        addr,
        infer,
        &tensor("FP32", json!([1, 3, 32, 32]), json!(good)),
    );
    assert_eq!(r.status, 200);
    let metrics = String::from_utf8(get(addr, "/metrics").body).unwrap();
    let failures: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("effc_request_failures_total{model=\"small\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    // Every error of a known model is counted (the unknown model, version and
    // route are not a model's).
    assert_eq!(failures, n as u64 - 3, "{metrics}");
    server.stop().unwrap();
}

#[test]
fn an_oversized_body_is_refused_from_its_length_before_it_is_sent() {
    let (_dir, _, cfg) = small_lite0();
    let server = start(cfg);
    let addr = server.http.unwrap();
    // Headers only: a body of 1 GB is announced and never sent.
    let r = raw(
        addr,
        b"POST /v2/models/small/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n",
    );
    assert_eq!(r.status, 413);
    assert!(r.error().contains("1000000000 bytes"), "{}", r.error());
    server.stop().unwrap();
}

#[test]
fn concurrent_requests_form_batches_and_each_gets_its_rows() {
    let (_dir, spec, mut cfg) = small_lite0();
    cfg.batch.max_batch = 8;
    cfg.batch.max_queue_delay = Duration::from_millis(300);
    let server = start(cfg);
    let addr = server.http.unwrap();
    let ex = reference(&spec);
    // Six requests of 1 or 2 rows, each with its own input.
    let rows = [1usize, 2, 1, 2, 1, 1];
    let threads: Vec<_> = rows
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            std::thread::spawn(move || {
                let input = effc_testkit::seeded(n * 3 * 32 * 32, 100 + i as u64);
                let blob = f32_bytes(&input);
                let req = json!({"id": i.to_string(),
                                 "inputs": [{"name": "input", "datatype": "FP32", "shape": [n, 3, 32, 32],
                                             "parameters": {"binary_data_size": blob.len()}}],
                                 "outputs": [{"name": "logits", "parameters": {"binary_data": true}}]});
                (input, post_binary(addr, "/v2/models/small/infer", &req, &blob))
            })
        })
        .collect();
    for (t, &n) in threads.into_iter().zip(&rows) {
        let (input, r) = t.join().unwrap();
        assert_eq!(r.status, 200);
        let (_, meta, bytes) = &binary_outputs(&r)[0];
        assert_eq!(meta["shape"], json!([n, 1000]));
        // Its own rows: each image's logits alone.
        for (i, img) in input.chunks(3 * 32 * 32).enumerate() {
            let want = f32_bytes(&ex.run(img, 1).unwrap().data);
            assert_eq!(&bytes[i * 4000..(i + 1) * 4000], &want[..]);
        }
    }
    let (batches, total) = server.state.metrics.batches("small");
    assert_eq!(total, 8);
    assert!(
        batches < 6,
        "{batches} batches for 6 requests within 300 ms"
    );
    // /metrics: the batch sizes formed, queue and compute times, queue depth.
    let text = String::from_utf8(get(addr, "/metrics").body).unwrap();
    for line in [
        "effc_requests_total{model=\"small\"} 6".to_string(),
        "effc_batch_size_sum{model=\"small\"} 8".to_string(),
        format!("effc_batch_size_count{{model=\"small\"}} {batches}"),
        format!("effc_compute_seconds_count{{model=\"small\"}} {batches}"),
        "effc_queue_seconds_count{model=\"small\"} 6".to_string(),
        "effc_queue_depth{model=\"small\"} 0".to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    server.stop().unwrap();
}

#[test]
fn a_full_queue_refuses_at_once_with_503() {
    // lite0 at 224 takes long enough per image on the CPU that the queue fills.
    let mut cfg = config("lite0", "lite0");
    cfg.batch.max_batch = 1;
    cfg.batch.queue_size = 1;
    let server = start(cfg);
    let addr = server.http.unwrap();
    let input = f32_bytes(&vec![0.25f32; 3 * 224 * 224]);
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let input = input.clone();
            std::thread::spawn(move || {
                let req = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224],
                                             "parameters": {"binary_data_size": input.len()}}],
                                 "outputs": [{"name": "logits", "parameters": {"classification": 1}}]});
                let t = Instant::now();
                let r = post_binary(addr, "/v2/models/lite0/infer", &req, &input);
                (r, t.elapsed())
            })
        })
        .collect();
    let replies: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = replies.iter().filter(|(r, _)| r.status == 200).count();
    let full: Vec<_> = replies.iter().filter(|(r, _)| r.status == 503).collect();
    assert_eq!(ok + full.len(), 6, "only 200 or 503");
    assert!(
        !full.is_empty() && ok >= 1,
        "{ok} answered, {} refused",
        full.len()
    );
    for (r, _) in &full {
        assert!(
            r.error()
                .contains("the queue of model `lite0` is full (1 requests waiting)"),
            "{}",
            r.error()
        );
    }
    assert_eq!(get(addr, "/v2/health/ready").status, 200);
    server.stop().unwrap();
}

#[test]
fn slow_clients_time_out_and_health_checks_go_on() {
    let (_dir, _, mut cfg) = small_lite0();
    cfg.limits.header_timeout = Duration::from_millis(500);
    cfg.limits.body_timeout = Duration::from_millis(500);
    let server = start(cfg);
    let addr = server.http.unwrap();
    use std::io::{Read, Write};
    // Sends half a request line and waits: disconnected after the header timeout.
    let mut idle = std::net::TcpStream::connect(addr).unwrap();
    idle.write_all(b"GET /v2/heal").unwrap();
    // Sends nothing at all: disconnected too.
    let mut silent = std::net::TcpStream::connect(addr).unwrap();
    // Sends its headers, then a body far slower than announced: 408.
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    slow.write_all(
        b"POST /v2/models/small/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
    )
    .unwrap();
    assert_eq!(get(addr, "/v2/health/live").status, 200);
    let t = Instant::now();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = vec![];
    let _ = idle.read_to_end(&mut buf);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the idle client was kept {:?}",
        t.elapsed()
    );
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        silent.read(&mut [0; 16]).unwrap_or(0),
        0,
        "the silent client was answered"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the silent client was kept {:?}",
        t.elapsed()
    );
    // It keeps sending a byte every 100 ms: the connection still ends with the 408.
    let mut dribble = slow.try_clone().unwrap();
    std::thread::spawn(move || {
        while dribble.write_all(b" ").is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t = Instant::now();
    let mut out = vec![];
    let _ = slow.read_to_end(&mut out);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the dribbler was kept {:?}",
        t.elapsed()
    );
    let r = parse(&out);
    assert_eq!(r.status, 408);
    assert!(
        r.error().contains("did not arrive within 0.5 s"),
        "{}",
        r.error()
    );
    assert_eq!(get(addr, "/v2/health/live").status, 200);
    server.stop().unwrap();
}

#[test]
fn stopping_drains_requests_in_flight() {
    let mut cfg = config("lite0", "lite0");
    cfg.batch.max_batch = 1;
    let server = start(cfg);
    let addr = server.http.unwrap();
    let input = f32_bytes(&vec![0.5f32; 3 * 224 * 224]);
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let input = input.clone();
            std::thread::spawn(move || {
                let req = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224],
                                             "parameters": {"binary_data_size": input.len()}}]});
                post_binary(addr, "/v2/models/lite0/infer", &req, &input).status
            })
        })
        .collect();
    // Wait until all three are queued or running, then stop.
    let t = Instant::now();
    while !server
        .state
        .metrics
        .render(&[])
        .contains("effc_requests_total{model=\"lite0\"} 3")
        && t.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    server.stop().unwrap();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    // Nothing listens any more.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn bodies_held_at_once_are_bounded_by_max_inflight() {
    let (_dir, _, mut cfg) = small_lite0();
    cfg.limits.max_body = 1 << 20;
    cfg.limits.max_inflight = 1 << 20;
    cfg.limits.body_timeout = Duration::from_millis(700);
    let server = start(cfg);
    let addr = server.http.unwrap();
    use std::io::{Read, Write};
    // A slow client announces the whole budget and sends a byte.
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    slow.write_all(
        format!(
            "POST /v2/models/small/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{{",
            1 << 20
        )
        .as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let input = effc_testkit::seeded(3 * 32 * 32, 5);
    let req = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 32, 32], "data": input}]});
    let r = post_json(addr, "/v2/models/small/infer", &req);
    assert_eq!(r.status, 503);
    assert!(r.error().contains("(--max-inflight)"), "{}", r.error());
    // Health checks carry no body and go on.
    assert_eq!(get(addr, "/v2/health/ready").status, 200);
    // Once the slow client times out, its share is free again.
    let mut out = vec![];
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = slow.read_to_end(&mut out);
    assert_eq!(parse(&out).status, 408);
    assert_eq!(post_json(addr, "/v2/models/small/infer", &req).status, 200);
    server.stop().unwrap();
}

#[test]
fn two_models_share_one_server_and_names_must_differ() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config("a", &lite0_at(dir.path(), 32));
    cfg.models.push(effc_serve::ModelArg {
        name: "b".into(),
        model: lite0_at(dir.path(), 48),
        weights: weights(),
    });
    let mut twice = cfg.clone();
    twice.models[1].name = "a".into();
    let e = effc_serve::Server::start(twice).err().unwrap();
    assert_eq!(e.to_string(), "two models are named `a`");
    let server = start(cfg);
    let addr = server.http.unwrap();
    for (name, r) in [("a", 32), ("b", 48)] {
        let m = get(addr, &format!("/v2/models/{name}")).json();
        assert_eq!(m["inputs"][0]["shape"], json!([-1, 3, r, r]));
        let input = effc_testkit::seeded(3 * r * r, 3);
        let req = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, r, r], "data": input}],
                         "outputs": [{"name": "logits", "parameters": {"classification": 2}}]});
        let out = post_json(addr, &format!("/v2/models/{name}/infer"), &req).json();
        assert_eq!(out["model_name"], name);
        assert_eq!(out["outputs"][0]["shape"], json!([1, 2]));
    }
    let e = get(addr, "/v2/models/c").error();
    assert!(e.contains("this server has a, b"), "{e}");
    server.stop().unwrap();
}
