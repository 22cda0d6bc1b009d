//! The compiled model on a real wgpu adapter (llvmpipe here) against timm's outputs
//! and the CPU reference executor.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use effc_ir::{Model, Options, PaddingMode, ParamKey, Spec};
use effc_runtime::{compile_model, CompiledModel, Gpu};
use effc_weights::Weights;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        Arc::new(
            Gpu::new().unwrap_or_else(|e| {
                panic!("these tests need a wgpu adapter (llvmpipe works): {e}")
            }),
        )
    })
    .clone()
}

fn compile(model: &Model, w: &Weights, max_batch: usize) -> CompiledModel {
    let keys: HashMap<String, ParamKey> = model
        .params()
        .into_iter()
        .map(|p| (p.name, p.key))
        .collect();
    compile_model(
        gpu(),
        model,
        |n| keys.get(n).and_then(|k| w.get(k)),
        max_batch,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn expected(dir: &str) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(fixtures().join(dir).join("expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| (k.to_string(), (v.shape().to_vec(), bytemuck_f32(v.data()))))
        .collect()
}

fn bytemuck_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// max|got − want| ≤ 1e-3 · max|want|
fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!(
        "{what}: max|diff| = {err:.3e}, max|want| = {scale:.3e}, ratio {:.3e}",
        err / scale
    );
    assert!(
        err <= 1e-3 * scale,
        "{what}: max|diff| {err} > 1e-3 x {scale}"
    );
}

#[test]
fn b0_fixture_both_paddings_batch_2() {
    let exp = expected("b0");
    let (_, input) = &exp["input"];
    for (name, key) in [
        ("b0-pytorch", "logits.efficientnet_b0"),
        ("b0", "logits.tf_efficientnet_b0"),
    ] {
        let m = Model::build(&Spec::builtin(name).unwrap(), &Options::default()).unwrap();
        let w = Weights::load(fixtures().join("b0/weights.f16.safetensors"), &m, None).unwrap();
        let cm = compile(&m, &w, 2);
        let got = cm.forward(input, 2).unwrap();
        assert_close(name, &got, &exp[key].1);
    }
    let _ = PaddingMode::Same;
}
