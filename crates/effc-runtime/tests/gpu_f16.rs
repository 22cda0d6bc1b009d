//! f16 storage (f32 accumulation) on a real wgpu adapter (llvmpipe here), in both
//! spellings, against timm's f32 logits on every numerics fixture.

use std::collections::HashMap;
use std::sync::Arc;

use effc_ir::{Model, Options, Spec};
use effc_runtime::{compile_model_with, CompiledModel, Gpu, Precision, Spelling};
use effc_testkit::{assert_close_within, fixtures, read_tensors};
use effc_weights::Weights;

/// The tensors of a fixture's `expected.safetensors`, by name.
fn expected(dir: &str) -> HashMap<String, Vec<f32>> {
    read_tensors(fixtures().join(dir).join("expected.safetensors"))
        .into_iter()
        .map(|(k, (_, v))| (k, v))
        .collect()
}

/// A device whose f16 storage is spelled `s`; `None` when the adapter lacks it.
fn gpu(s: Spelling) -> Option<Arc<Gpu>> {
    let mut g = Gpu::new().unwrap_or_else(|e| panic!("these tests need a wgpu adapter: {e}"));
    match g.force_f16_spelling(s) {
        Ok(()) => Some(Arc::new(g)),
        Err(e) => {
            eprintln!("skipping the {} spelling: {e}", s.name());
            None
        }
    }
}

fn compile(gpu: &Arc<Gpu>, name: &str, weights: &str, batch: usize) -> CompiledModel {
    let m = Model::build(&Spec::builtin(name).unwrap(), &Options::default()).unwrap();
    let w = Weights::load(fixtures().join(weights), &m, None).unwrap();
    let cm = compile_model_with(
        gpu.clone(),
        &m,
        &effc_plan::Tuning::default(),
        Precision::F16,
        w.by_name(&m),
        batch,
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(cm.precision(), Precision::F16);
    assert_eq!(
        cm.clamped_weights(),
        0,
        "{name}: no weight is beyond f16's range"
    );
    cm
}

/// max|got − want| ≤ 1e-2 · max|want| (issue 12's bound for f16 storage).
fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_close_within(what, got, want, 1e-2);
}

fn top5(v: &[f32]) -> Vec<usize> {
    let mut i: Vec<usize> = (0..v.len()).collect();
    i.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    i.truncate(5);
    i
}

fn every_fixture(s: Spelling) {
    let Some(gpu) = gpu(s) else { return };
    let tag = s.name();
    let b0 = expected("b0");
    for (name, key) in [
        ("b0-pytorch", "logits.efficientnet_b0"),
        ("b0", "logits.tf_efficientnet_b0"),
    ] {
        let cm = compile(&gpu, name, "b0/weights.f16.safetensors", 2);
        assert_eq!(cm.f16_spelling(), Some(s));
        let got = cm.forward(&b0["input"], 2).unwrap();
        assert_close(&format!("{name} f16 {tag}"), &got, &b0[key]);
    }
    let v2 = expected("v2-b0");
    let cm = compile(&gpu, "v2-b0", "v2-b0/weights.f16.safetensors", 2);
    let got = cm.forward(&v2["input"], 2).unwrap();
    assert_close(
        &format!("v2-b0 f16 {tag}"),
        &got,
        &v2["logits.tf_efficientnetv2_b0"],
    );
    // lite0 with its real weights, on both photos: the same top-1 and top-5 set
    // as f32 (timm's logits; effc's f32 logits match those to 1e-3).
    let lite = expected("lite0");
    let cm = compile(&gpu, "lite0", "lite0/efficientnet-lite0.safetensors", 2);
    let mut input = lite["input.chelsea"].clone();
    input.extend_from_slice(&lite["input.coffee"]);
    let got = cm.forward(&input, 2).unwrap();
    for (i, photo) in ["chelsea", "coffee"].iter().enumerate() {
        let want = &lite[&format!("logits.{photo}")];
        let mine = &got[i * 1000..(i + 1) * 1000];
        assert_close(&format!("lite0 {photo} f16 {tag}"), mine, want);
        let (a, b) = (top5(mine), top5(want));
        assert_eq!(a[0], b[0], "lite0 {photo}: top-1");
        let (mut a, mut b) = (a, b);
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "lite0 {photo}: top-5 set");
    }
}

#[test]
fn f16_native_matches_timm_on_every_fixture() {
    every_fixture(Spelling::Native);
}

#[test]
fn f16_packed_matches_timm_on_every_fixture() {
    every_fixture(Spelling::Packed);
}

#[test]
fn f16_tensors_read_back_as_f32_and_match_the_f32_plan() {
    // The stem's output at f16 is the f32 one rounded: same shape, close values.
    let Some(gpu) = gpu(Spelling::Packed) else {
        return;
    };
    let b0 = expected("b0");
    let m = Model::build(&Spec::builtin("b0").unwrap(), &Options::default()).unwrap();
    let w = Weights::load(fixtures().join("b0/weights.f16.safetensors"), &m, None).unwrap();
    let t = effc_plan::Tuning::default();
    let run = |p| {
        let cm = compile_model_with(gpu.clone(), &m, &t, p, w.by_name(&m), 2).unwrap();
        cm.forward(&b0["input"], 2).unwrap();
        let stem = cm.plan().kernels[0].tensors_written().next().unwrap();
        cm.read_tensor(stem.index(), 2).unwrap()
    };
    let (a, b) = (run(Precision::F32), run(Precision::F16));
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let err = a
        .iter()
        .zip(&b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(err <= 2e-3 * scale, "stem: {err} vs {scale}");
}

#[test]
fn what_the_adapter_offers_for_f16() {
    let g = Gpu::new().unwrap();
    let native = g.device.features().contains(wgpu::Features::SHADER_F16);
    eprintln!(
        "adapter {}: shader-f16 {native}; chosen spelling {:?}",
        g.adapter,
        g.f16_spelling()
    );
    // With EFFC_F16 unset, native is chosen wherever the device has it.
    if std::env::var(effc_runtime::F16_ENV).is_err() {
        let want = if native {
            Spelling::Native
        } else {
            Spelling::Packed
        };
        assert_eq!(g.f16_spelling().unwrap(), want);
    }
}
