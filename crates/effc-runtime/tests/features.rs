//! A backbone's feature levels on a real wgpu adapter (llvmpipe here) against timm
//! `features_only=True` (tests/fixtures/features, made by make_features.py beside
//! them): every level within 1e-3 · max|want|.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use effc_ir::{Model, Options, Spec};
use effc_runtime::{compile_model, CompiledModel, FeatureMap, Gpu, GpuError};
use effc_testkit::{assert_close, assert_close_within, read_tensors};
use effc_weights::Weights;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/features")
}

fn gpu() -> Arc<Gpu> {
    Gpu::shared()
        .unwrap_or_else(|e| panic!("these tests need a wgpu adapter (llvmpipe works): {e}"))
}

fn backbone(name: &str, levels: &[usize]) -> Model {
    let opts = Options {
        resolution: Some(64),
        features: Some(levels.to_vec()),
        ..Options::default()
    };
    Model::build(&Spec::builtin(name).unwrap(), &opts).unwrap()
}

fn weights(sub: &str, m: &Model) -> Weights {
    Weights::load(dir().join(sub).join("weights.f16.safetensors"), m, None)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn compile(gpu: Arc<Gpu>, m: &Model, w: &Weights, max_batch: usize) -> CompiledModel {
    compile_model(gpu, m, w.by_name(m), max_batch).unwrap_or_else(|e| panic!("{e}"))
}

/// The fixture's tensors by name: shape and f32 values.
fn expected(sub: &str) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    read_tensors(dir().join(sub).join("expected.safetensors"))
}

fn get<'a>(
    exp: &'a HashMap<String, (Vec<usize>, Vec<f32>)>,
    name: &str,
) -> (&'a [usize], &'a [f32]) {
    let (s, d) = exp.get(name).unwrap_or_else(|| panic!("{name}"));
    (s, d)
}

fn check(model: &str, levels: &[usize]) {
    let m = backbone(model, levels);
    let w = weights(model, &m);
    let cm = compile(gpu(), &m, &w, 2);
    let exp = expected(model);
    let (_, input) = get(&exp, "input");
    let got = cm.features(input, 2).unwrap();
    assert_eq!(
        got.iter().map(|f| f.level).collect::<Vec<_>>(),
        levels.to_vec()
    );
    for f in &got {
        let (shape, want) = get(&exp, &format!("features.{}", f.level));
        assert_eq!(f.shape.as_slice(), shape, "{model} level {}", f.level);
        assert_close(&format!("{model} level {}", f.level), &f.data, want);
    }
    // `forward` gives the same values, image by image.
    let flat = cm.forward(input, 2).unwrap();
    assert_eq!(flat.len(), 2 * cm.output_len());
    let mut want = vec![];
    for n in 0..2 {
        for f in &got {
            want.extend_from_slice(f.image(n));
        }
    }
    assert_eq!(flat, want);
}

#[test]
fn b0_levels_1_to_4_match_timm() {
    check("b0", &[1, 2, 3, 4]);
}

#[test]
fn v2_b0_levels_0_to_4_match_timm() {
    check("v2-b0", &[0, 1, 2, 3, 4]);
}

/// A batch larger than the activation buffers can bind runs in chunks: each
/// chunk's levels are copied out before the next chunk overwrites them.
#[test]
fn levels_of_a_chunked_batch() {
    // Levels 1 and 2 only: their weights are smaller than the largest activation.
    let m = backbone("b0", &[1, 2]);
    let w = weights("b0", &m);
    let exp = expected("b0");
    let (_, two) = get(&exp, "input");
    // Three images: the fixture's two, then the first again.
    let per = two.len() / 2;
    let mut input = two.to_vec();
    input.extend_from_slice(&two[..per]);
    let whole = compile(gpu(), &m, &w, 3).features(&input, 3).unwrap();

    let mut small = Gpu::new().unwrap();
    let plan = effc_plan::plan(&m);
    let per_image = plan.slots.iter().map(|s| s.bytes as u64).max().unwrap();
    small.limits.max_storage_buffer_binding_size = per_image;
    let cm = compile(Arc::new(small), &m, &w, 3);
    assert_eq!(cm.chunk(), 1);
    let chunked: Vec<FeatureMap> = cm.features(&input, 3).unwrap();
    assert_eq!(whole, chunked);
    for f in &whole {
        assert_eq!(f.image(2), f.image(0), "level {}", f.level);
        assert_ne!(f.image(1), f.image(0), "level {}", f.level);
    }
}

#[test]
fn a_classifier_has_no_levels() {
    let m = Model::build(
        &Spec::builtin("b0").unwrap(),
        &Options {
            resolution: Some(64),
            ..Options::default()
        },
    )
    .unwrap();
    let w = Weights::random(&m, 1);
    let cm = compile(gpu(), &m, &w, 1);
    let err = cm.features(&vec![0.0; 3 * 64 * 64], 1).unwrap_err();
    assert!(matches!(err, GpuError::NoFeatures { .. }), "{err}");
    assert!(err.to_string().contains("--features"), "{err}");
}

/// At f16 storage the levels are stored as halves and decoded at read-back: within
/// the f16 tolerance of issue 12 (1e-2 · max|want|) of timm's f32 levels.
#[test]
fn b0_levels_at_f16_match_timm_within_f16_tolerance() {
    let m = backbone("b0", &[1, 2, 3, 4]);
    let w = weights("b0", &m);
    let cm = effc_runtime::compile_model_with(
        gpu(),
        &m,
        &effc_plan::Tuning::default(),
        effc_plan::Precision::F16,
        w.by_name(&m),
        2,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let exp = expected("b0");
    let (_, input) = get(&exp, "input");
    let got = cm.features(input, 2).unwrap();
    assert_eq!(got.len(), 4);
    for f in &got {
        let (shape, want) = get(&exp, &format!("features.{}", f.level));
        assert_eq!(f.shape.as_slice(), shape);
        assert_close_within(&format!("f16 b0 level {}", f.level), &f.data, want, 1e-2);
    }
}
