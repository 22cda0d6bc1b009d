//! Multi-scale feature levels against timm `features_only=True`
//! (tests/fixtures/features, made by make_features.py beside them).
//! Tolerance: max|got − want| ≤ 1e-3 · max|want| per level.

use std::path::PathBuf;

use effc_ir::{Model, Options, Spec};
use effc_reference::{Error, Executor, Tensor};
use effc_weights::Weights;
use safetensors::SafeTensors;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/features")
}

fn tensor(st: &SafeTensors, name: &str) -> Tensor {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    Tensor {
        shape: t.shape().to_vec(),
        data: t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
    }
}

fn check(model: &str, sub: &str, levels: &[usize]) {
    let spec = Spec::builtin(model).unwrap();
    let opts = Options {
        resolution: Some(64),
        features: Some(levels.to_vec()),
        ..Options::default()
    };
    let m = Model::build(&spec, &opts).unwrap_or_else(|e| panic!("{}", e.render(false)));
    let w = Weights::load(dir().join(sub).join("weights.f16.safetensors"), &m, None)
        .unwrap_or_else(|e| panic!("{e}"));
    let ex = Executor::new(&m, &w).unwrap();
    let bytes = std::fs::read(dir().join(sub).join("expected.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let input = tensor(&st, "input");
    let got = ex.features(&input.data, 2).unwrap();
    assert_eq!(got.len(), levels.len());
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join(sub).join("feature_info.json")).unwrap())
            .unwrap();
    for ((g, f), ti) in got
        .iter()
        .zip(&m.features)
        .zip(info["levels"].as_array().unwrap())
    {
        assert_eq!(ti["level"], f.level);
        assert_eq!(ti["channels"], f.channels, "{model} level {}", f.level);
        assert_eq!(ti["reduction"], f.reduction, "{model} level {}", f.level);
        let want = tensor(&st, &format!("features.{}", f.level));
        assert_eq!(g.shape, want.shape, "{model} level {}", f.level);
        let d = g
            .data
            .iter()
            .zip(&want.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let scale = want.data.iter().map(|v| v.abs()).fold(0.0, f32::max);
        println!("{model} level {}: rel err {:.2e}", f.level, d / scale);
        assert!(
            d <= 1e-3 * scale,
            "{model} level {}: {d} > 1e-3·{scale}",
            f.level
        );
    }
}

#[test]
fn b0_levels_1_to_4_match_timm() {
    check("b0", "b0", &[1, 2, 3, 4]);
}

#[test]
fn v2_b0_levels_0_to_4_match_timm() {
    check("v2-b0", "v2-b0", &[0, 1, 2, 3, 4]);
}

#[test]
fn a_model_without_levels_refuses() {
    let spec = Spec::builtin("b0").unwrap();
    let m = Model::build(&spec, &Options::default()).unwrap();
    let w = Weights::load(dir().join("b0/weights.f16.safetensors"), &m, None).unwrap();
    let ex = Executor::new(&m, &w).unwrap();
    let err = ex.features(&vec![0.0; 3 * 224 * 224], 1).unwrap_err();
    assert!(matches!(err, Error::NoFeatures { .. }), "{err}");
}
