//! One training step against timm's autograd (tests/fixtures/train, made by
//! `make_train_fixtures.py`): b0 (TF "same"), b0-pytorch (symmetric, eps 1e-5),
//! v2-b0 (Fused-MBConv) and lite0 (ReLU6, no SE) at 64x64, batch 4, 10 classes,
//! BN on batch statistics, dropout and drop path 0, no label smoothing.
//!
//! Each tensor's gradient is compared with timm's float64 one relative to
//! max(the tensor's largest |g|, 1e-4 × the model's largest |g|): a BN bias whose
//! shift the next BN removes has an exact gradient of 0. effc in f32 stays within
//! 3× the spread between PyTorch's own f32 and f64 runs (and ≤ 3e-3 for swish
//! models); effc in f64 agrees to the fixture's int16 quantization. BN running
//! statistics after the step equal timm's.

use effc_ir::{Model, Naming, Options, Spec};
use effc_reference::train::{step, Params, Real, Rng, StepConfig, Target};
use effc_weights::Weights;

use effc_testkit::train::{train_fixture as read, TrainFixture as Fixture};

fn model(builtin: &str) -> Model {
    let spec = Spec::builtin(builtin).unwrap_or_else(|e| panic!("{}", e.render(false)));
    let opts = Options {
        resolution: Some(64),
        classes: Some(10),
        ..Options::default()
    };
    Model::build(&spec, &opts).unwrap_or_else(|e| panic!("{}", e.render(false)))
}

/// The worst per-tensor error of `grads` against the fixture, and its tensor.
fn worst<T: Real>(model: &Model, fx: &Fixture, grads: &[Vec<T>]) -> (f64, String) {
    let names = model.named_params(Naming::Timm);
    let want: Vec<Option<Vec<f64>>> = names
        .iter()
        .map(|(name, p)| {
            p.trainable.then(|| {
                let q = &fx.i16s[&format!("grad.{name}")];
                let s = fx.f64s[&format!("scale.{name}")][0];
                q.iter().map(|&q| q as f64 / 32767.0 * s).collect()
            })
        })
        .collect();
    let largest = want
        .iter()
        .flatten()
        .flatten()
        .fold(0f64, |m, g| m.max(g.abs()));
    let mut worst = (0f64, String::new());
    for (((name, _), want), got) in names.iter().zip(&want).zip(grads) {
        let Some(want) = want else { continue };
        assert_eq!(want.len(), got.len(), "{name}: gradient size");
        let den = want.iter().fold(1e-4 * largest, |m, g| m.max(g.abs()));
        let err = want
            .iter()
            .zip(got)
            .map(|(w, g)| (w - g.to_f64()).abs())
            .fold(0.0, f64::max)
            / den;
        if err > worst.0 {
            worst = (err, name.clone());
        }
    }
    worst
}

fn run<T: Real>(model: &Model, weights: &Weights, fx: &Fixture) -> (f64, Vec<Vec<T>>, Params<T>) {
    let mut params = Params::<T>::from_weights(model, weights).unwrap();
    let input: Vec<T> = fx.f32s["input"]
        .iter()
        .map(|&v| T::from_f64(v.into()))
        .collect();
    let cfg = StepConfig {
        dropout: Some(0.0),
        drop_path: Some(0.0),
        ..StepConfig::default()
    };
    let out = step(
        model,
        &mut params,
        &input,
        4,
        Target::Labels(&fx.labels),
        &cfg,
        &mut Rng::new(0),
    )
    .unwrap();
    (out.loss, out.grads, params)
}

fn case(case: &str, builtin: &str, swish: bool) {
    let cases: serde_json::Value = serde_json::from_slice(
        &std::fs::read(effc_testkit::fixtures().join("train/cases.json"))
            .expect("train/cases.json"),
    )
    .expect("cases.json is JSON");
    let info = &cases[case];
    let spread = info["spread_f32_f64"]
        .as_f64()
        .expect("the recorded spread");
    let model = model(builtin);
    let fx = read(case);
    let weights = Weights::random(
        &model,
        info["weights_seed"].as_u64().expect("the weights' seed"),
    );
    // The fixture was made from these very weights.
    let sums = &fx.f64s["check.weight_sums"];
    let params = model.params();
    assert_eq!(sums.len(), params.len(), "{case}: tensors");
    for (p, &want) in params.iter().zip(sums) {
        let got: f64 = weights.get(&p.key).unwrap().iter().map(|&v| v as f64).sum();
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{case}: {} sums to {got}, timm's to {want}",
            p.name
        );
    }

    let (loss64, g64, p64) = run::<f64>(&model, &weights, &fx);
    let (loss32, g32, p32) = run::<f32>(&model, &weights, &fx);
    let want_loss = info["loss_f64"].as_f64().unwrap();
    assert!(
        (loss64 - want_loss).abs() < 1e-9,
        "{case}: f64 loss {loss64} vs {want_loss}"
    );
    assert!(
        (loss32 - want_loss).abs() < 1e-4,
        "{case}: f32 loss {loss32} vs {want_loss}"
    );
    let (e64, t64) = worst(&model, &fx, &g64);
    let (e32, t32) = worst(&model, &fx, &g32);
    eprintln!("{case}: worst tensor f64 {e64:.2e} ({t64}), f32 {e32:.2e} ({t32}); PyTorch's f32-vs-f64 spread {spread:.2e}");
    assert!(e64 < 1e-4, "{case}: f64 gradient of {t64} off by {e64:.2e}");
    assert!(e32 <= 3.0 * spread, "{case}: f32 gradient of {t32} off by {e32:.2e}, more than 3x PyTorch's spread {spread:.2e}");
    if swish {
        assert!(
            e32 <= 3e-3,
            "{case}: f32 gradient of {t32} off by {e32:.2e} > 3e-3"
        );
    }

    // Running statistics after the step.
    for ((name, _), (v64, v32)) in model
        .named_params(Naming::Timm)
        .iter()
        .zip(p64.values().iter().zip(p32.values()))
    {
        let Some(want) = fx.f32s.get(&format!("running.{name}")) else {
            continue;
        };
        for (i, &w) in want.iter().enumerate() {
            let tol = 1e-5 * w.abs().max(1.0) as f64;
            assert!(
                (v64[i] - w as f64).abs() <= tol,
                "{case}: {name}[{i}] f64 {} vs timm {w}",
                v64[i]
            );
            assert!(
                (v32[i] as f64 - w as f64).abs() <= 10.0 * tol,
                "{case}: {name}[{i}] f32 {} vs timm {w}",
                v32[i]
            );
        }
    }
}

#[test]
fn b0_tf_same_padding() {
    case("b0", "b0", true);
}

#[test]
fn b0_pytorch_symmetric_padding() {
    case("b0-pytorch", "b0-pytorch", true);
}

#[test]
fn v2_b0_fused_mbconv() {
    case("v2-b0", "v2-b0", true);
}

#[test]
fn lite0_relu6() {
    case("lite0", "lite0", false);
}
