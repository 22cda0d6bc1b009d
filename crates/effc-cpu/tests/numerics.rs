//! The CPU backend against the reference executor (within 1e-5 of max|want|) and
//! timm's outputs (tests/fixtures, within the fixtures' 1e-3) on every numerics
//! fixture, the spec harness' models, and its refusals.

use std::collections::HashMap;

use effc_cpu::{CpuError, CpuModel, Isa};
use effc_ir::{Model, Options, Spec};
use effc_testkit::spec::{cases_with, Check};
use effc_testkit::{assert_close, assert_close_within, fixtures, read_tensors, seeded};
use effc_weights::{load_image, top_k, Weights};

/// The CPU backend's tolerance against the reference executor.
const TOL: f32 = 1e-5;

fn model_with(name: &str, opts: Options) -> Model {
    let spec = Spec::builtin(name).unwrap_or_else(|e| panic!("{}", e.render(false)));
    Model::build(&spec, &opts).unwrap_or_else(|e| panic!("{}", e.render(false)))
}

fn model(name: &str) -> Model {
    model_with(name, Options::default())
}

fn weights(m: &Model, file: &str) -> Weights {
    Weights::load(fixtures().join(file), m, None).unwrap_or_else(|e| panic!("{e}"))
}

fn cpu(m: &Model, w: &Weights, batch: usize, threads: usize) -> CpuModel {
    CpuModel::compile(m, w.by_name(m), batch, threads).unwrap_or_else(|e| panic!("{e}"))
}

fn reference(m: &Model, w: &Weights, x: &[f32], batch: usize) -> Vec<f32> {
    let executor = effc_reference::Executor::new(m, w).unwrap();
    executor.run(x, batch).unwrap().data
}

fn expected(dir: &str) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    read_tensors(fixtures().join(dir).join("expected.safetensors"))
}

#[test]
fn b0_both_conventions_batch_2() {
    let exp = expected("b0");
    let input = &exp["input"].1;
    for (name, key) in [
        ("b0", "logits.tf_efficientnet_b0"),
        ("b0-pytorch", "logits.efficientnet_b0"),
    ] {
        let m = model(name);
        let w = weights(&m, "b0/weights.f16.safetensors");
        let got = cpu(&m, &w, 2, 2).forward(input, 2).unwrap();
        assert_close_within(name, &got, &reference(&m, &w, input, 2), TOL);
        assert_close(&format!("{name} vs timm"), &got, &exp[key].1);
    }
}

#[test]
fn v2_b0_batch_2() {
    let exp = expected("v2-b0");
    let input = &exp["input"].1;
    let m = model("v2-b0");
    let w = weights(&m, "v2-b0/weights.f16.safetensors");
    let got = cpu(&m, &w, 2, 2).forward(input, 2).unwrap();
    assert_close_within("v2-b0", &got, &reference(&m, &w, input, 2), TOL);
    assert_close("v2-b0 vs timm", &got, &exp["logits.tf_efficientnetv2_b0"].1);
}

#[test]
fn lite0_real_weights_both_photos_and_top5() {
    let exp = expected("lite0");
    let m = model("lite0");
    let w = weights(&m, "lite0/efficientnet-lite0.safetensors");
    let cm = cpu(&m, &w, 2, 2);
    let mut input = exp["input.chelsea"].1.clone();
    input.extend_from_slice(&exp["input.coffee"].1);
    let got = cm.forward(&input, 2).unwrap();
    let want = reference(&m, &w, &input, 2);
    assert_close_within("lite0", &got, &want, TOL);
    assert_close(
        "lite0 chelsea vs timm",
        &got[..1000],
        &exp["logits.chelsea"].1,
    );
    assert_close(
        "lite0 coffee vs timm",
        &got[1000..],
        &exp["logits.coffee"].1,
    );

    // The photos themselves, decoded and preprocessed: the same five classes.
    for image in ["chelsea", "coffee"] {
        let x = load_image(fixtures().join(format!("images/{image}.png")), &m).unwrap();
        let got = cm.forward(&x, 1).unwrap();
        let want = reference(&m, &w, &x, 1);
        assert_close_within(image, &got, &want, TOL);
        let classes = |v: &[f32]| top_k(v, 5).into_iter().map(|(c, _)| c).collect::<Vec<_>>();
        assert_eq!(classes(&got), classes(&want), "{image}: top-5");
    }
}

/// Every spec of the harness that takes the `gpu` check (its kernels' corner
/// cases: fused blocks with e = 1, odd channels, strides, activations), at its batch.
#[test]
fn custom_specs_match_the_reference() {
    let cases = cases_with(Check::Gpu);
    assert!(cases.len() >= 12, "{} specs", cases.len());
    for (i, case) in cases.iter().enumerate() {
        let batch = case.header.batch;
        let m = case.model();
        let w = Weights::random(&m, 100 + i as u64);
        let x = seeded(batch * m.input.iter().product::<usize>(), i as u64);
        let want = reference(&m, &w, &x, batch);
        let got = cpu(&m, &w, batch, 2).forward(&x, batch).unwrap();
        assert_close_within(&format!("{} (batch {batch})", case.file), &got, &want, TOL);
    }
}

/// Each ISA's kernels this CPU has (forced; the others are refused by name) on
/// the harness' specs and b0 at batch 2: within the tolerance of the reference
/// and of the portable kernels.
#[test]
fn every_isa_matches_the_reference_and_the_portable_kernels() {
    let isa = |m: &Model, w: &Weights, batch: usize, isa: Isa| {
        let plan = effc_plan::plan(m);
        let packed = effc_plan::pack_weights(&plan, m, w.by_name(m)).unwrap();
        CpuModel::with_isa(plan, packed, batch, 2, isa)
    };
    let mut cases: Vec<(String, Model, Weights, usize)> = cases_with(Check::Gpu)
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let m = c.model();
            let w = Weights::random(&m, 200 + i as u64);
            (c.file.clone(), m, w, c.header.batch)
        })
        .collect();
    let b0 = model("b0");
    let w = Weights::random(&b0, 7);
    cases.push(("b0".into(), b0, w, 2));
    let mut ran = vec![];
    for i in Isa::ALL {
        if !i.available() {
            let (m, w, _) = (&cases[0].1, &cases[0].2, 0);
            let e = isa(m, w, 1, i).err().unwrap();
            assert_eq!(
                e.to_string(),
                format!(
                    "this CPU (or this build of effc) has no {i} kernels; its best is {}",
                    Isa::detect()
                )
            );
            continue;
        }
        ran.push(i);
        for (j, (file, m, w, batch)) in cases.iter().enumerate() {
            let x = seeded(batch * m.input.iter().product::<usize>(), j as u64);
            let got = isa(m, w, *batch, i).unwrap().forward(&x, *batch).unwrap();
            let want = reference(m, w, &x, *batch);
            assert_close_within(&format!("{file} on {i}"), &got, &want, TOL);
            let portable = isa(m, w, *batch, Isa::Portable).unwrap();
            assert_eq!(portable.isa(), Isa::Portable);
            let p = portable.forward(&x, *batch).unwrap();
            assert_close_within(&format!("{file}: {i} vs portable"), &got, &p, TOL);
        }
    }
    assert!(
        ran.contains(&Isa::Portable) && ran.contains(&Isa::detect()),
        "{ran:?}"
    );
    println!("ISAs run: {ran:?}");
}

/// Pooled features (no classifier) are the reference's.
#[test]
fn features_without_a_classifier() {
    let m = model_with(
        "lite0",
        Options {
            classes: Some(0),
            ..Default::default()
        },
    );
    let w = weights(&m, "lite0/efficientnet-lite0.safetensors");
    let x = seeded(3 * 224 * 224, 5);
    let got = cpu(&m, &w, 1, 1).forward(&x, 1).unwrap();
    assert_eq!(got.len(), 1280);
    assert_close_within("lite0 features", &got, &reference(&m, &w, &x, 1), TOL);
}

/// Results do not depend on the threads, the batch an image is in, or earlier
/// forwards (buffers are reused).
#[test]
fn deterministic_across_threads_batches_and_runs() {
    let m = model("b0");
    let w = Weights::random(&m, 3);
    let x = seeded(3 * 3 * 224 * 224, 9);
    let three = cpu(&m, &w, 3, 2);
    let all = three.forward(&x, 3).unwrap();
    let one = cpu(&m, &w, 3, 1);
    assert_eq!(one.threads(), 1);
    assert_eq!(one.forward(&x, 3).unwrap(), all);
    let per = 3 * 224 * 224;
    let second = three.forward(&x[per..2 * per], 1).unwrap();
    assert_eq!(second[..], all[1000..2000]);
    assert_eq!(three.forward(&x, 3).unwrap(), all);
}

#[test]
fn refusals() {
    let m = model("b0");
    let w = Weights::random(&m, 1);
    let cm = cpu(&m, &w, 2, 1);
    let x = vec![0.0; 3 * 224 * 224];
    assert_eq!(cm.forward(&x, 0), Err(CpuError::EmptyBatch));
    assert_eq!(
        cm.forward(&[x.clone(), x.clone(), x.clone()].concat(), 3),
        Err(CpuError::Batch { batch: 3, max: 2 })
    );
    let e = cm.forward(&x, 2).unwrap_err();
    assert_eq!(
        e,
        CpuError::InputShape {
            got: 150528,
            expected: 301056
        }
    );
    assert_eq!(
        cm.forward_into(&x, 1, &mut [0.0; 10]),
        Err(CpuError::OutputShape {
            got: 10,
            expected: 1000
        })
    );

    // Weights of the wrong length, and missing tensors, say which.
    let plan = effc_plan::plan(&m);
    let mut packed = effc_plan::pack_weights(&plan, &m, w.by_name(&m)).unwrap();
    packed[1].pop();
    let e = CpuModel::new(plan.clone(), packed, 1, 1).err().unwrap();
    assert!(
        e.to_string().starts_with(&format!(
            "packed weights of kernel `{}`: got ",
            plan.kernels[1].name
        )),
        "{e}"
    );
    let b1 = model("b1");
    let e = CpuModel::compile(&m, Weights::random(&b1, 1).by_name(&m), 1, 1)
        .err()
        .unwrap();
    assert!(matches!(e, CpuError::Pack(_)), "{e}");

    // What it does not execute yet, it refuses by name.
    let f16 = effc_plan::plan_at(&m, effc_plan::Precision::F16);
    let packed = effc_plan::pack_weights(&f16, &m, w.by_name(&m)).unwrap();
    let e = CpuModel::new(f16, packed, 1, 1).err().unwrap();
    assert!(matches!(e, CpuError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("--device reference"), "{e}");
}
