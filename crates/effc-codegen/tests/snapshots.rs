//! Snapshots of the generated host code: what `effc compile lite0` writes as
//! `model.rs`, and what `efficientnet!(spec = …)` expands to for a small custom spec.

use effc_codegen::{CodegenOptions, Generated, Shaders};
use effc_driver::ModelRequest;
use effc_ir::PaddingMode;

fn generate(req: &ModelRequest, opts: &CodegenOptions) -> Generated {
    req.generate(opts, false).unwrap()
}

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
    let opts = CodegenOptions {
        shaders: Shaders::IncludeStr,
        ..CodegenOptions::default()
    };
    let g = generate(&ModelRequest::builtin("lite0"), &opts);
    insta::assert_snapshot!("lite0_model_rs", g.file());
}

#[test]
fn tiny_macro_expansion() {
    let mut req = ModelRequest::inline(TINY);
    req.options.padding = Some(PaddingMode::Symmetric);
    req.options.bn_eps = Some(1e-5);
    let opts = CodegenOptions {
        max_batch: 4,
        module: Some("tiny_net".into()),
        ..CodegenOptions::default()
    };
    let g = generate(&req, &opts);
    insta::assert_snapshot!("tiny_macro_expansion", g.module_file());
}

/// A backbone (`features = [0, 1]`): `FEATURE_INFO`, `Model::features`, and no
/// kernel after level 1 (the last stage, the head and the classifier are not planned).
#[test]
fn tiny_features_model_rs() {
    let mut req = ModelRequest::inline(TINY);
    req.options.features = Some(vec![0, 1]);
    let opts = CodegenOptions {
        shaders: Shaders::IncludeStr,
        module: Some("tiny_backbone".into()),
        ..CodegenOptions::default()
    };
    let g = generate(&req, &opts);
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
    let mut req = ModelRequest::inline(TINY);
    req.precision = effc_codegen::Precision::F16;
    let opts = CodegenOptions {
        shaders: Shaders::IncludeStr,
        module: Some("tiny_half".into()),
        ..CodegenOptions::default()
    };
    let g = generate(&req, &opts);
    assert_eq!(g.packed_shaders.len(), g.shaders.len());
    insta::assert_snapshot!("tiny_f16_model_rs", g.file());
    insta::assert_snapshot!("tiny_f16_report_md", g.report().markdown());
}
