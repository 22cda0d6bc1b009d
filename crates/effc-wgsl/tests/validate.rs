//! Every built-in's kernels generate WGSL that naga validates; snapshots of
//! representative shaders; dispatch counts pinned.

use effc_ir::{Model, Options, Spec};

fn plan(name: &str) -> effc_plan::Plan {
    let m = Model::build(&Spec::builtin(name).unwrap(), &Options::default()).unwrap();
    effc_plan::plan(&m)
}

/// The `wgsl` check of the spec harness (`effc_testkit::spec`): every kernel of
/// every spec taking `wgsl` validates.
#[test]
fn every_spec_validates() {
    for case in effc_testkit::spec::cases_with(effc_testkit::Check::Wgsl) {
        let p = effc_plan::plan(&case.model());
        let shaders = effc_wgsl::compile(&p).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(shaders.len(), p.kernels.len(), "{}", case.name);
    }
}

#[test]
fn every_builtin_validates() {
    for name in effc_catalog_names() {
        let p = plan(name);
        let shaders = effc_wgsl::compile(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(shaders.len(), p.kernels.len());
    }
}

fn effc_catalog_names() -> Vec<&'static str> {
    vec![
        "b0",
        "b1",
        "b2",
        "b3",
        "b4",
        "b5",
        "b6",
        "b7",
        "b8",
        "l2",
        "lite0",
        "lite1",
        "lite2",
        "lite3",
        "lite4",
        "v2-b0",
        "v2-b1",
        "v2-b2",
        "v2-b3",
        "v2-s",
        "v2-m",
        "v2-l",
        "v2-xl",
        "b0-pytorch",
    ]
}

#[test]
fn dispatch_counts() {
    // b0: stem, 16 MBConv blocks with SE (4 each, 3 for the e=1 first block), head, classifier.
    assert_eq!(plan("b0").dispatches(), 1 + 3 + 15 * 4 + 2);
    // v2-s: stem, 2 fused e=1 (1 each), 8 fused e=4 (2 each), 30 MBConv with SE (4 each), head, classifier.
    assert_eq!(plan("v2-s").dispatches(), 1 + 2 + 8 * 2 + 30 * 4 + 2);
}

#[test]
fn shader_snapshots() {
    let b0 = plan("b0");
    let v2 = plan("v2-s");
    let get = |p: &effc_plan::Plan, name: &str| {
        let k = p
            .kernels
            .iter()
            .find(|k| k.name == name)
            .unwrap_or_else(|| panic!("no kernel {name}"));
        effc_wgsl::emit(p, k)
    };
    insta::assert_snapshot!("b0_stem", get(&b0, "stem"));
    let block: Vec<String> = [
        "blocks.1.1.expand",
        "blocks.1.1.dw",
        "blocks.1.1.se",
        "blocks.1.1.project",
    ]
    .iter()
    .map(|n| get(&b0, n))
    .collect();
    insta::assert_snapshot!(
        "b0_mbconv_block_1_1",
        block.join("\n// ----------------------------------------------------------------\n\n")
    );
    let fused: Vec<String> = ["blocks.1.1.fused", "blocks.1.1.project"]
        .iter()
        .map(|n| get(&v2, n))
        .collect();
    insta::assert_snapshot!(
        "v2s_fused_block_1_1",
        fused.join("\n// ----------------------------------------------------------------\n\n")
    );
    let head: Vec<String> = ["head", "classifier"].iter().map(|n| get(&b0, n)).collect();
    insta::assert_snapshot!(
        "b0_head",
        head.join("\n// ----------------------------------------------------------------\n\n")
    );
}

#[test]
fn validation_reports_the_first_broken_kernel_in_dispatch_order() {
    let mut shaders = effc_wgsl::emit_all(&plan("b0"));
    assert!(effc_wgsl::validate_all(&shaders).is_ok());
    // Break two kernels; whichever thread sees which first, the earlier one is named.
    for i in [40, 7] {
        shaders[i].source = shaders[i]
            .source
            .replace("fn main(", "fn main(bogus: f32, ");
    }
    let (result, work) = effc_wgsl::validate_while(&shaders, || 42);
    assert_eq!(work, 42);
    let err = result.unwrap_err();
    assert_eq!(err.kernel, shaders[7].kernel);
    assert!(err.to_string().contains(&shaders[7].kernel), "{err}");
    // Identical bodies are validated once, but a broken one is still reported.
    assert!(effc_wgsl::validate_all(&shaders[40..]).is_err());
}

fn plan_f16(name: &str) -> effc_plan::Plan {
    let m = Model::build(&Spec::builtin(name).unwrap(), &Options::default()).unwrap();
    effc_plan::plan_at(&m, effc_plan::Precision::F16)
}

#[test]
fn every_builtin_validates_at_f16_in_both_spellings() {
    for name in effc_catalog_names() {
        let p = plan_f16(name);
        for s in [effc_wgsl::Spelling::Native, effc_wgsl::Spelling::Packed] {
            let shaders =
                effc_wgsl::compile_as(&p, s).unwrap_or_else(|e| panic!("{name} {s:?}: {e}"));
            assert_eq!(shaders.len(), p.kernels.len());
            for sh in &shaders {
                // Every kernel stores its weights as f16; nothing indexes an f16
                // binding directly outside its accessors.
                assert!(sh.source.contains("fn weights_load("), "{}", sh.kernel);
                let native = sh.source.contains("enable f16;");
                assert_eq!(native, s == effc_wgsl::Spelling::Native, "{}", sh.kernel);
                assert_eq!(
                    sh.source.contains("pack2x16float") || sh.source.contains("unpack2x16float"),
                    s == effc_wgsl::Spelling::Packed,
                    "{}",
                    sh.kernel
                );
            }
        }
    }
}

#[test]
fn f16_shader_snapshots() {
    let b0 = plan_f16("b0");
    for (s, tag) in [
        (effc_wgsl::Spelling::Native, "native"),
        (effc_wgsl::Spelling::Packed, "packed"),
    ] {
        let shaders: Vec<String> = [
            "stem",
            "blocks.1.1.expand",
            "blocks.1.1.dw",
            "blocks.1.1.se",
            "blocks.1.1.project",
            "classifier",
        ]
        .iter()
        .map(|n| {
            let k = b0.kernels.iter().find(|k| k.name == *n).unwrap();
            effc_wgsl::emit_as(&b0, k, s)
        })
        .collect();
        insta::assert_snapshot!(
            format!("b0_f16_{tag}"),
            shaders
                .join("\n// ----------------------------------------------------------------\n\n")
        );
    }
}

#[test]
fn f32_plans_do_not_depend_on_the_spelling() {
    let p = plan("b0");
    let a = effc_wgsl::emit_all_as(&p, effc_wgsl::Spelling::Native);
    let b = effc_wgsl::emit_all_as(&p, effc_wgsl::Spelling::Packed);
    assert_eq!(a, b);
    assert!(a.iter().all(|s| !s.source.contains("f16")));
}

/// The training kernels (`effc_wgsl::train`): one module per kind, the same
/// for every model (shapes come from uniforms), each naga-validated and
/// snapshotted: forward, backward and the fused update.
#[test]
fn training_kernels_validate_and_are_pinned() {
    use effc_wgsl::train::Kind;
    for k in Kind::ALL {
        let src = k.source();
        effc_wgsl::validate(&src).unwrap_or_else(|e| panic!("{}: {e}", k.name()));
        insta::assert_snapshot!(format!("train_{}", k.name()), src);
    }
}
