//! The compiled model on a real wgpu adapter (llvmpipe here) against timm's outputs
//! and the CPU reference executor.

use std::collections::HashMap;
use std::sync::Arc;

use effc_ir::{Model, Options, PaddingMode, Spec};
use effc_runtime::{compile_model, CompiledModel, Gpu};
use effc_testkit::spec::{case, cases_with, Check};
use effc_testkit::{assert_close, fixtures, read_tensors, rel_err, seeded};
use effc_weights::Weights;

fn gpu() -> Arc<Gpu> {
    Gpu::shared()
        .unwrap_or_else(|e| panic!("these tests need a wgpu adapter (llvmpipe works): {e}"))
}

fn compile(model: &Model, w: &Weights, max_batch: usize) -> CompiledModel {
    compile_model(gpu(), model, w.by_name(model), max_batch).unwrap_or_else(|e| panic!("{e}"))
}

fn expected(dir: &str) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    read_tensors(fixtures().join(dir).join("expected.safetensors"))
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
}

#[test]
fn v2_b0_fixture_batch_2() {
    let exp = expected("v2-b0");
    let m = Model::build(&Spec::builtin("v2-b0").unwrap(), &Options::default()).unwrap();
    let w = Weights::load(fixtures().join("v2-b0/weights.f16.safetensors"), &m, None).unwrap();
    let cm = compile(&m, &w, 2);
    let got = cm.forward(&exp["input"].1, 2).unwrap();
    assert_close("v2-b0", &got, &exp["logits.tf_efficientnetv2_b0"].1);
}

#[test]
fn lite0_real_weights_batch_2() {
    let exp = expected("lite0");
    let m = Model::build(&Spec::builtin("lite0").unwrap(), &Options::default()).unwrap();
    let w = Weights::load(
        fixtures().join("lite0/efficientnet-lite0.safetensors"),
        &m,
        None,
    )
    .unwrap();
    let cm = compile(&m, &w, 2);
    let mut input = exp["input.chelsea"].1.clone();
    input.extend_from_slice(&exp["input.coffee"].1);
    let got = cm.forward(&input, 2).unwrap();
    assert_close("lite0 chelsea", &got[..1000], &exp["logits.chelsea"].1);
    assert_close("lite0 coffee", &got[1000..], &exp["logits.coffee"].1);
    // The wrong padding convention is caught by the same tolerance.
    let sym = Model::build(
        &Spec::builtin("lite0").unwrap(),
        &Options {
            padding: Some(PaddingMode::Symmetric),
            ..Default::default()
        },
    )
    .unwrap();
    let cm = compile(&sym, &w, 1);
    let got = cm.forward(&exp["input.chelsea"].1, 1).unwrap();
    assert!(
        rel_err(&got, &exp["logits.chelsea"].1) > 1e-3,
        "symmetric padding should not match TF-trained weights"
    );
}

/// What the CPU reference executor computes for `x` (`batch` images).
fn reference(m: &Model, w: &Weights, x: &[f32], batch: usize) -> Vec<f32> {
    let executor = effc_reference::Executor::new(m, w).unwrap();
    executor.run(x, batch).unwrap().data
}

/// A deterministic pseudo-random input in [-2, 2).
fn input_for(model: &Model, batch: usize, seed: u64) -> Vec<f32> {
    seeded(batch * model.input.iter().product::<usize>(), seed)
}

/// The `gpu` check of the spec harness (`effc_testkit::spec`): every spec taking
/// `gpu`, at its `# batch:`, on the GPU equals the CPU reference executor.
#[test]
fn custom_specs_match_the_reference() {
    let cases = cases_with(Check::Gpu);
    assert!(cases.len() >= 12, "{} specs", cases.len());
    let mut seen_batches = std::collections::BTreeSet::new();
    for (i, case) in cases.iter().enumerate() {
        let batch = case.header.batch;
        seen_batches.insert(batch);
        let m = case.model();
        let w = Weights::random(&m, 100 + i as u64);
        let x = input_for(&m, batch, i as u64);
        let want = reference(&m, &w, &x, batch);
        let cm = compile(&m, &w, batch);
        let got = cm.forward(&x, batch).unwrap();
        assert_close(&format!("{} (batch {batch})", case.file), &got, &want);
    }
    assert!(seen_batches.contains(&1) && seen_batches.contains(&3));
}

/// A batch larger than the activation buffers can bind runs in chunks inside one
/// command buffer, with the same result.
#[test]
fn batches_run_in_chunks_when_buffers_are_limited() {
    let m = spec_model("odd_channels.enet");
    let w = Weights::random(&m, 7);
    let x = input_for(&m, 5, 3);
    let whole = compile(&m, &w, 5).forward(&x, 5).unwrap();

    let mut small = Gpu::new().unwrap();
    let per_image = effc_plan::plan(&m)
        .slots
        .iter()
        .map(|s| s.bytes as u64)
        .max()
        .unwrap();
    small.limits.max_storage_buffer_binding_size = per_image * 2;
    let cm = compile_model(Arc::new(small), &m, w.by_name(&m), 5).unwrap();
    assert_eq!(cm.chunk(), 2);
    let chunked = cm.forward(&x, 5).unwrap();
    assert_eq!(whole, chunked);
}

#[test]
fn a_model_too_big_for_the_adapter_says_so() {
    let m = Model::build(&Spec::builtin("b0").unwrap(), &Options::default()).unwrap();
    let w = Weights::random(&m, 1);
    let mut tiny = Gpu::new().unwrap();
    tiny.limits.max_storage_buffer_binding_size = 1 << 20;
    let err = match compile_model(Arc::new(tiny), &m, w.by_name(&m), 1) {
        Ok(_) => panic!("b0 cannot fit 1 MiB bindings"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("does not fit adapter"), "{err}");
    assert!(err.contains("MiB"), "{err}");
}

#[test]
fn bad_inputs_are_errors() {
    let m = Model::build(
        &Spec::builtin("lite0").unwrap(),
        &Options {
            resolution: Some(64),
            ..Default::default()
        },
    )
    .unwrap();
    let w = Weights::random(&m, 1);
    let cm = compile(&m, &w, 2);
    assert!(cm
        .forward(&[0.0; 10], 1)
        .unwrap_err()
        .to_string()
        .contains("batch 1 of 3x64x64 needs 12288"));
    assert!(cm
        .forward(&vec![0.0; 3 * 3 * 64 * 64], 3)
        .unwrap_err()
        .to_string()
        .contains("maximum batch 2"));
    assert!(cm.forward(&[], 0).is_err());
}

fn spec_model(file: &str) -> Model {
    case(&format!("gpu/{file}")).model()
}

/// Every candidate tile `effc tune` may pick computes what the cost model's tiles
/// compute: round r gives every kernel shape its r-th candidate (cycling).
#[test]
fn every_tuning_candidate_matches_the_reference() {
    use effc_plan::tune::candidates;
    for (i, file) in ["odd_channels.enet", "fused_se.enet"].iter().enumerate() {
        let m = spec_model(file);
        let w = Weights::random(&m, 7 + i as u64);
        let x = input_for(&m, 2, 3);
        let want = reference(&m, &w, &x, 2);
        let base = effc_plan::plan(&m);
        let shapes: Vec<(String, Vec<effc_plan::tune::Tiles>)> = base
            .kernels
            .iter()
            .filter_map(|k| Some((k.tune_key.clone()?, candidates(k))))
            .collect();
        let rounds = shapes.iter().map(|s| s.1.len()).max().unwrap();
        assert!(rounds >= 12, "{file}: {rounds} candidates at most");
        for r in 1..rounds {
            let mut tuning = effc_plan::Tuning::default();
            for (key, c) in &shapes {
                tuning.set(key, c[r % c.len()]);
            }
            let cm = effc_runtime::compile_model_tuned(gpu(), &m, &tuning, w.by_name(&m), 2)
                .unwrap_or_else(|e| panic!("{file} round {r}: {e}"));
            let got = cm.forward(&x, 2).unwrap();
            assert_close(&format!("{file} candidates {r}"), &got, &want);
        }
    }
}

/// `tune` measures every shape and returns tiles that compute the same result.
#[test]
fn tuning_measures_every_shape() {
    use effc_runtime::tune::{tune, TuneOptions};
    let m = spec_model("mb_e1_se_swish_same.enet");
    let opts = TuneOptions {
        batch: 1,
        reps: 1,
        max_candidates: 3,
        ..TuneOptions::default()
    };
    let mut calls = vec![];
    let report = tune(gpu(), &m, &opts, |r, n| calls.push((r, n))).unwrap();
    let plan = effc_plan::plan(&m);
    let mut keys: Vec<&String> = plan
        .kernels
        .iter()
        .filter_map(|k| k.tune_key.as_ref())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(report.shapes.len(), keys.len());
    assert_eq!(report.tuning.len(), keys.len());
    assert_eq!(report.rounds, 3);
    assert_eq!(calls.len(), 5, "{calls:?}");
    assert!(report.before_ms > 0.0 && report.after_ms > 0.0);
    for s in &report.shapes {
        assert!(s.tried >= 1 && s.tried <= 3, "{}: {}", s.key, s.tried);
        assert!(s.default_ms > 0.0 && s.best_ms > 0.0, "{}", s.key);
        if report.kept_cost_model || s.best == s.default {
            assert_eq!(s.best_ms, s.default_ms);
        }
    }
    let w = Weights::random(&m, 1);
    let x = input_for(&m, 1, 1);
    let want = reference(&m, &w, &x, 1);
    let cm =
        effc_runtime::compile_model_tuned(gpu(), &m, &report.tuning, w.by_name(&m), 1).unwrap();
    assert_close("tuned", &cm.forward(&x, 1).unwrap(), &want);
}
