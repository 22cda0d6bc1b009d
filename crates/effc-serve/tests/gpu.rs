//! `effc serve` on a wgpu adapter (Mesa's lavapipe here): a classifier's
//! logits are the compiled model's exactly, through the batcher; a backbone's
//! levels, one output each, match the reference executor.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;

fn gpu_config(name: &str, spec: &str) -> effc_serve::Config {
    let mut c = config(name, spec);
    c.device = Some(effc_driver::Device::Gpu);
    c.grpc = None;
    c
}

fn start_gpu(cfg: effc_serve::Config) -> effc_serve::Running {
    effc_serve::Server::start(cfg)
        .unwrap_or_else(|e| panic!("these tests need a wgpu adapter (lavapipe works): {e}"))
        .spawn()
}

fn resolve(spec: &str) -> effc_ir::Model {
    effc_driver::ModelRequest::from_arg(spec)
        .resolve()
        .unwrap()
        .model
}

#[test]
fn gpu_logits_are_the_compiled_models_and_rows_go_back_to_their_requests() {
    let dir = tempfile::tempdir().unwrap();
    let spec = lite0_at(dir.path(), 64);
    let server = start_gpu(gpu_config("small", &spec));
    let addr = server.http.unwrap();
    let model = resolve(&spec);
    let w = effc_weights::Weights::load(weights(), &model, None).unwrap();
    let gpu = Arc::new(effc_runtime::Gpu::new().unwrap());
    let compiled = effc_runtime::compile_model_with(
        gpu,
        &model,
        &effc_plan::Tuning::default(),
        effc_plan::Precision::F32,
        w.by_name(&model),
        4,
    )
    .unwrap();
    // Two concurrent requests of 1 and 2 rows.
    let inputs: Vec<Vec<f32>> = [1usize, 2]
        .iter()
        .map(|&n| effc_testkit::seeded(n * 3 * 64 * 64, n as u64))
        .collect();
    let threads: Vec<_> = inputs
        .iter()
        .cloned()
        .map(|input| {
            std::thread::spawn(move || {
                let n = input.len() / (3 * 64 * 64);
                let blob = f32_bytes(&input);
                let req = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [n, 3, 64, 64],
                                             "parameters": {"binary_data_size": blob.len()}}],
                                 "outputs": [{"name": "logits", "parameters": {"binary_data": true}}]});
                post_binary(addr, "/v2/models/small/infer", &req, &blob)
            })
        })
        .collect();
    for (t, input) in threads.into_iter().zip(&inputs) {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let got = &binary_outputs(&r)[0].2;
        // Row by row: a row's logits do not depend on the batch it ran in.
        for (i, img) in input.chunks(3 * 64 * 64).enumerate() {
            let want = compiled.forward(img, 1).unwrap();
            let got: Vec<f32> = got[i * 4000..(i + 1) * 4000]
                .chunks(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            effc_testkit::assert_close_within("logits", &got, &want, 1e-5);
        }
    }
    server.stop().unwrap();
}

#[test]
fn a_backbone_on_the_gpu_answers_one_output_per_level() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("bb.enet");
    std::fs::write(
        &spec,
        "model bb extends lite0 {\n    resolution = 64\n    features = [2, 3, 4]\n}\n",
    )
    .unwrap();
    let spec = spec.display().to_string();
    let server = start_gpu(gpu_config("bb", &spec));
    let addr = server.http.unwrap();
    let meta = get(addr, "/v2/models/bb").json();
    assert_eq!(
        meta["outputs"],
        json!([{"name": "features.2", "datatype": "FP32", "shape": [-1, 40, 8, 8]},
               {"name": "features.3", "datatype": "FP32", "shape": [-1, 112, 4, 4]},
               {"name": "features.4", "datatype": "FP32", "shape": [-1, 320, 2, 2]}])
    );
    let model = resolve(&spec);
    let w = effc_weights::Weights::load(weights(), &model, None).unwrap();
    let ex = effc_reference::Executor::new(&model, &w).unwrap();
    let input = effc_testkit::seeded(2 * 3 * 64 * 64, 9);
    let want = ex.features(&input, 2).unwrap();
    let blob = f32_bytes(&input);
    let req = json!({"parameters": {"binary_data_output": true},
                     "inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 3, 64, 64],
                                 "parameters": {"binary_data_size": blob.len()}}]});
    let r = post_binary(addr, "/v2/models/bb/infer", &req, &blob);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let outs = binary_outputs(&r);
    assert_eq!(outs.len(), 3);
    for ((name, meta, bytes), want) in outs.iter().zip(&want) {
        let mut shape = vec![2i64];
        shape.extend(want.shape[1..].iter().map(|&d| d as i64));
        assert_eq!(meta["shape"], json!(shape), "{name}");
        let got: Vec<f32> = bytes
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        effc_testkit::assert_close(name, &got, &want.data);
    }
    server.stop().unwrap();
}
