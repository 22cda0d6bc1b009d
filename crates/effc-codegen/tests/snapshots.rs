//! Snapshots of the generated host code: what `effc compile lite0` writes as
//! `model.rs`, and what `efficientnet!(spec = …)` expands to for a small custom spec.

use effc_codegen::{generate, Request, Shaders, SpecSource};
use effc_ir::PaddingMode;

/// A small custom network: two MBConv stages and a Fused-MBConv one, 64x64 input.
const TINY: &str = "\
# a small network for snapshot tests
model tiny {
    resolution = 64
    stem       = 16
    head       = 64
    classes    = 10
    blocks {
        r1_k3_s1_e1_i16_o16_c1
        r1_k3_s2_e4_i16_o24_se0.25
        r2_k5_s2_e6_i24_o32
    }
}
";

#[test]
fn lite0_model_rs() {
    let mut req = Request::new(SpecSource::Builtin("lite0".into()));
    req.shaders = Shaders::IncludeStr;
    let g = generate(&req).unwrap();
    insta::assert_snapshot!("lite0_model_rs", g.file());
}

#[test]
fn tiny_macro_expansion() {
    let mut req = Request::new(SpecSource::Inline(TINY.into()));
    req.options.padding = Some(PaddingMode::Symmetric);
    req.options.bn_eps = Some(1e-5);
    req.max_batch = 4;
    req.module = Some("tiny_net".into());
    let g = generate(&req).unwrap();
    insta::assert_snapshot!("tiny_macro_expansion", g.module_file());
}

/// A backbone (`features = [0, 1]`): `FEATURE_INFO`, `Model::features`, and no
/// kernel after level 1 (the last stage, the head and the classifier are not planned).
#[test]
fn tiny_features_model_rs() {
    let mut req = Request::new(SpecSource::Inline(TINY.into()));
    req.options.features = Some(vec![0, 1]);
    req.shaders = Shaders::IncludeStr;
    req.module = Some("tiny_backbone".into());
    let g = generate(&req).unwrap();
    assert_eq!(g.plan.features.len(), 2);
    assert!(g
        .plan
        .kernels
        .iter()
        .all(|k| !k.name.starts_with("blocks.2")));
    insta::assert_snapshot!("tiny_features_model_rs", g.file());
}

/// `precision = f16`: `PRECISION`, byte counts at f16, and each kernel's WGSL in
/// both spellings (`wgsl` native, `wgsl_packed` halves in u32s); the report states it.
#[test]
fn tiny_f16_model_rs() {
    let mut req = Request::new(SpecSource::Inline(TINY.into()));
    req.precision = effc_codegen::Precision::F16;
    req.shaders = Shaders::IncludeStr;
    req.module = Some("tiny_half".into());
    let g = generate(&req).unwrap();
    assert_eq!(g.packed_shaders.len(), g.shaders.len());
    insta::assert_snapshot!("tiny_f16_model_rs", g.file());
    insta::assert_snapshot!("tiny_f16_report_md", g.report().markdown());
}
