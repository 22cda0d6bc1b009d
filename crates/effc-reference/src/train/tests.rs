//! Finite-difference checks in f64 of every layer's backward, on tiny shapes:
//! each analytic gradient against `(L(θ + h) − L(θ − h)) / 2h` of a loss `L`
//! that weighs every output by a fixed random value.

use effc_ir::{Activation, Conv2d, Model, PaddingMode};

use super::layers::{self, BnTrain, Conv, SeGrads, SeParams};
use super::*;

fn noise(n: usize, seed: u64) -> Vec<f64> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| 2.0 * r.uniform() - 1.0).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

const H: f64 = 1e-5;

/// Checks `grad` (the analytic gradient of `loss` at `x`) by central differences,
/// at up to `samples` entries spread over the tensor; the error is relative to
/// the tensor's largest gradient (or to `floor` when that is smaller).
fn check(what: &str, x: &[f64], grad: &[f64], floor: f64, loss: impl Fn(&[f64]) -> f64) -> f64 {
    assert_eq!(x.len(), grad.len(), "{what}: gradient size");
    let scale = grad.iter().fold(floor, |m, g| m.max(g.abs()));
    let samples = 24;
    let stride = (x.len() / samples).max(1);
    let mut worst = 0f64;
    let mut xp = x.to_vec();
    for i in (0..x.len()).step_by(stride) {
        xp[i] = x[i] + H;
        let up = loss(&xp);
        xp[i] = x[i] - H;
        let down = loss(&xp);
        xp[i] = x[i];
        let fd = (up - down) / (2.0 * H);
        let err = (fd - grad[i]).abs() / scale;
        assert!(
            err < 1e-6,
            "{what}[{i}]: analytic {} vs finite difference {fd} (relative {err:.2e})",
            grad[i]
        );
        worst = worst.max(err);
    }
    worst
}

#[test]
fn convolutions_backward() {
    let mut seed = 0;
    for mode in [PaddingMode::Same, PaddingMode::Symmetric] {
        for (cin, cout, k, s, hw, dw) in [
            (3, 4, 3, 2, (7, 6), false),
            (5, 3, 1, 1, (4, 5), false),
            (2, 3, 5, 1, (5, 4), false),
            (3, 2, 1, 2, (6, 6), false),
            (4, 4, 3, 1, (5, 6), true),
            (3, 3, 5, 2, (7, 7), true),
            (2, 2, 3, 2, (2, 1), true),
        ] {
            seed += 1;
            let groups = if dw { cin } else { 1 };
            let geom = Conv2d::new(cin, cout, k, s, groups, hw, mode);
            let conv = Conv { geom: geom.clone() };
            let n = 2;
            let w = noise(cout * (cin / groups) * k * k, seed);
            let x = noise(n * cin * hw.0 * hw.1, seed + 100);
            let r = noise(n * cout * geom.out_hw.0 * geom.out_hw.1, seed + 200);
            let mut dw_ = vec![0.0; w.len()];
            let dx = conv.backward(&w, &x, &r, &mut dw_);
            let what = format!("{geom:?}");
            check(&format!("{what} dx"), &x, &dx, 0.0, |x| {
                dot(&conv.forward(&w, x), &r)
            });
            check(&format!("{what} dw"), &w, &dw_, 0.0, |w| {
                dot(&conv.forward(w, &x), &r)
            });
        }
    }
}

#[test]
fn batch_norm_backward_and_running_statistics() {
    let (rows, c) = (10, 3);
    let z = noise(rows * c, 1);
    let gamma: Vec<f64> = noise(c, 2).iter().map(|v| 1.0 + 0.5 * v).collect();
    let beta = noise(c, 3);
    let r = noise(rows * c, 4);
    let eps = 1e-3;
    let fwd = |z: &[f64], g: &[f64], b: &[f64]| dot(&layers::bn_train_forward(z, g, b, eps).0, &r);
    let (_, saved): (_, BnTrain<f64>) = layers::bn_train_forward(&z, &gamma, &beta, eps);
    let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
    let dz = layers::bn_train_backward(&saved, &gamma, &r, &mut dg, &mut db);
    check("bn dz", &z, &dz, 0.0, |z| fwd(z, &gamma, &beta));
    check("bn dgamma", &gamma, &dg, 0.0, |g| fwd(&z, g, &beta));
    check("bn dbeta", &beta, &db, 0.0, |b| fwd(&z, &gamma, b));

    // Running statistics: PyTorch's momentum, unbiased variance.
    let (mut mean, mut var) = (vec![0.5; c], vec![2.0; c]);
    layers::bn_update_running(&saved, rows, 0.1, &mut mean, &mut var);
    for ch in 0..c {
        let col: Vec<f64> = (0..rows).map(|i| z[i * c + ch]).collect();
        let mu = col.iter().sum::<f64>() / rows as f64;
        let unbiased = col.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / (rows - 1) as f64;
        assert!((mean[ch] - (0.9 * 0.5 + 0.1 * mu)).abs() < 1e-15);
        assert!((var[ch] - (0.9 * 2.0 + 0.1 * unbiased)).abs() < 1e-15);
    }
}

#[test]
fn activations_backward() {
    // Points away from ReLU6's kinks at 0 and 6.
    let x: Vec<f64> = noise(40, 5)
        .iter()
        .map(|v| 8.0 * v + 2.0)
        .filter(|v| v.abs() > 1e-3 && (v - 6.0).abs() > 1e-3)
        .collect();
    let r = noise(x.len(), 6);
    for a in [Activation::Swish, Activation::Relu, Activation::Relu6] {
        let g: Vec<f64> = x
            .iter()
            .zip(&r)
            .map(|(&x, &d)| layers::act_grad(a, x, d))
            .collect();
        check(&format!("{a:?}"), &x, &g, 0.0, |x| {
            x.iter().zip(&r).map(|(&x, &d)| layers::act(a, x) * d).sum()
        });
    }
    let g: Vec<f64> = x
        .iter()
        .zip(&r)
        .map(|(&x, &d)| {
            let s = layers::sigmoid(x);
            d * s * (1.0 - s)
        })
        .collect();
    check("sigmoid", &x, &g, 0.0, |x| {
        x.iter()
            .zip(&r)
            .map(|(&x, &d)| layers::sigmoid(x) * d)
            .sum()
    });
    // ReLU6 passes nothing at or beyond its ends, as PyTorch.
    for x in [0.0, 6.0, -1.0, 7.0] {
        assert_eq!(layers::act_grad(Activation::Relu6, x, 1.0), 0.0);
    }
}

#[test]
fn squeeze_excitation_backward() {
    let (n, hw, c, red) = (2, 5, 4, 2);
    let x = noise(n * hw * c, 7);
    let rw = noise(red * c, 8);
    let rb = noise(red, 9);
    let ew = noise(c * red, 10);
    let eb = noise(c, 11);
    let r = noise(x.len(), 12);
    for a in [Activation::Swish, Activation::Relu6] {
        let loss = |x: &[f64], rw: &[f64], rb: &[f64], ew: &[f64], eb: &[f64]| {
            let p = SeParams {
                reduce_w: rw,
                reduce_b: rb,
                expand_w: ew,
                expand_b: eb,
            };
            dot(&layers::se_forward(&p, a, x, n).0, &r)
        };
        let p = SeParams {
            reduce_w: &rw,
            reduce_b: &rb,
            expand_w: &ew,
            expand_b: &eb,
        };
        let (_, saved) = layers::se_forward(&p, a, &x, n);
        let mut g = [
            vec![0.0; rw.len()],
            vec![0.0; rb.len()],
            vec![0.0; ew.len()],
            vec![0.0; eb.len()],
        ];
        let [g0, g1, g2, g3] = &mut g;
        let grads = SeGrads {
            reduce_w: g0,
            reduce_b: g1,
            expand_w: g2,
            expand_b: g3,
        };
        let dx = layers::se_backward(&p, a, &saved, &x, n, &r, grads);
        check("se dx", &x, &dx, 0.0, |x| loss(x, &rw, &rb, &ew, &eb));
        check("se reduce.weight", &rw, &g[0], 0.0, |v| {
            loss(&x, v, &rb, &ew, &eb)
        });
        check("se reduce.bias", &rb, &g[1], 0.0, |v| {
            loss(&x, &rw, v, &ew, &eb)
        });
        check("se expand.weight", &ew, &g[2], 0.0, |v| {
            loss(&x, &rw, &rb, v, &eb)
        });
        check("se expand.bias", &eb, &g[3], 0.0, |v| {
            loss(&x, &rw, &rb, &ew, v)
        });
    }
}

#[test]
fn pool_and_classifier_backward() {
    let (n, hw, c, k) = (3, 4, 5, 2);
    let x = noise(n * hw * c, 13);
    let w = noise(k * c, 14);
    let b = noise(k, 15);
    let r = noise(n * k, 16);
    let loss =
        |x: &[f64], w: &[f64], b: &[f64]| dot(&layers::linear(w, b, &layers::pool(x, n, c)), &r);
    let p = layers::pool(&x, n, c);
    let (mut dw, mut db) = (vec![0.0; w.len()], vec![0.0; b.len()]);
    let dp = layers::linear_backward(&w, &p, &r, &mut dw, &mut db);
    let dx = layers::pool_backward(&dp, n, c, hw);
    check("pool dx", &x, &dx, 0.0, |x| loss(x, &w, &b));
    check("linear dw", &w, &dw, 0.0, |w| loss(&x, w, &b));
    check("linear db", &b, &db, 0.0, |b| loss(&x, &w, b));
}

#[test]
fn cross_entropy_with_smoothing_and_soft_targets() {
    let (n, k) = (3, 4);
    let z: Vec<f64> = noise(n * k, 17).iter().map(|v| 3.0 * v).collect();
    let labels = [2, 0, 3];
    for s in [0.0, 0.1] {
        let (_, g) = layers::cross_entropy(&z, k, Target::Labels(&labels), s);
        check(&format!("labels, smoothing {s}"), &z, &g, 0.0, |z| {
            layers::cross_entropy(z, k, Target::Labels(&labels), s).0
        });
    }
    // A soft target that does not sum to one still differentiates right.
    let soft: Vec<f64> = noise(n * k, 18).iter().map(|v| v.abs()).collect();
    let (_, g) = layers::cross_entropy(&z, k, Target::Soft(&soft), 0.2);
    check("soft targets", &z, &g, 0.0, |z| {
        layers::cross_entropy(z, k, Target::Soft(&soft), 0.2).0
    });
    // Against the definition: smoothing 0.1 over 4 classes, label 2.
    let (loss, _) = layers::cross_entropy(&z[..k], k, Target::Labels(&[2]), 0.1);
    let lse = z[..k].iter().map(|v| v.exp()).sum::<f64>().ln();
    let want: f64 = (0..k)
        .map(|j| -(if j == 2 { 0.925 } else { 0.025 }) * (z[j] - lse))
        .sum();
    assert!((loss - want).abs() < 1e-12, "{loss} vs {want}");
}

/// [`check`] for tensor `i` of `params`: `loss` is taken of a copy of
/// `params` with that tensor replaced.
fn check_param(
    what: &str,
    params: &Params<f64>,
    i: usize,
    grad: &[f64],
    floor: f64,
    loss: impl Fn(&Params<f64>) -> f64,
) -> f64 {
    check(what, &params.values()[i], grad, floor, |v| {
        let mut q = params.clone();
        q.values_mut()[i] = v.to_vec();
        loss(&q)
    })
}

/// One [`step`] on labels from a copy of `params` (returned as the step left
/// it), drawing from `Rng::new(seed)`.
fn step_on_copy(
    model: &Model,
    params: &Params<f64>,
    input: &[f64],
    batch: usize,
    labels: &[usize],
    cfg: &StepConfig,
    seed: u64,
) -> Result<(StepOutput<f64>, Params<f64>), Error> {
    let mut p = params.clone();
    let out = step(
        model,
        &mut p,
        input,
        batch,
        Target::Labels(labels),
        cfg,
        &mut Rng::new(seed),
    )?;
    Ok((out, p))
}

fn tiny(activation: &str, padding: &str) -> Model {
    effc_testkit::train::every_block_kind(activation, padding)
}

fn tiny_params(model: &Model, seed: u64) -> Params<f64> {
    let values = effc_testkit::train::noisy_values(model, seed, noise);
    Params::from_values(model, values).expect("values in Model::params order")
}

#[test]
fn whole_network_backward() {
    for (act, pad, smoothing) in [("swish", "same", 0.1), ("relu6", "symmetric", 0.0)] {
        let model = tiny(act, pad);
        let batch = 3;
        let input = noise(batch * 3 * 81, 99);
        let labels = [0, 2, 1];
        let cfg = StepConfig {
            label_smoothing: smoothing,
            ..StepConfig::default()
        };
        let seed = 5;
        let params = tiny_params(&model, 1000);
        let run = |params: &Params<f64>| {
            step_on_copy(&model, params, &input, batch, &labels, &cfg, seed)
                .expect("step")
                .0
        };
        let loss_at = |params: &Params<f64>| run(params).loss;
        let out = run(&params);
        assert!(out.loss.is_finite());
        let largest = out.grads.iter().flatten().fold(0f64, |m, g| m.max(g.abs()));
        let mut checked = 0;
        for (i, param) in params.params().iter().enumerate() {
            if !param.trainable {
                assert!(out.grads[i].is_empty());
                continue;
            }
            check_param(
                &format!("{act}/{pad}: {}", param.name),
                &params,
                i,
                &out.grads[i],
                1e-4 * largest,
                loss_at,
            );
            checked += 1;
        }
        assert_eq!(
            checked,
            params.params().iter().filter(|p| p.trainable).count()
        );
    }
}

/// Frozen stem and first two stages: their tensors get no gradient and their
/// running statistics stay; the loss is a function of the frozen BN's running
/// statistics (eval mode), and every other gradient matches finite differences
/// of it.
#[test]
fn frozen_layers_backward() {
    let model = tiny("swish", "same");
    let batch = 3;
    let input = noise(batch * 3 * 81, 7);
    let labels = [2, 0, 1];
    let cfg = StepConfig {
        frozen: Some(2),
        dropout: Some(0.0),
        drop_path: Some(0.0),
        ..StepConfig::default()
    };
    let params = tiny_params(&model, 300);
    let loss_at = |params: &Params<f64>, cfg: &StepConfig| {
        step_on_copy(&model, params, &input, batch, &labels, cfg, 1).expect("step")
    };
    let (out, after) = loss_at(&params, &cfg);
    let frozen = |p: &effc_ir::Param| match p.key.block {
        Some((stage, _, _)) => stage < 2,
        None => matches!(p.key.layer, Layer::StemConv | Layer::StemBn),
    };
    let largest = out.grads.iter().flatten().fold(0f64, |m, g| m.max(g.abs()));
    let (mut checked, mut none) = (0, 0);
    for (i, param) in params.params().iter().enumerate() {
        if frozen(param) {
            assert!(out.grads[i].is_empty(), "{} has a gradient", param.name);
            assert_eq!(after.values()[i], params.values()[i], "{}", param.name);
            none += 1;
            continue;
        }
        if !param.trainable {
            continue;
        }
        check_param(
            &format!("frozen: {}", param.name),
            &params,
            i,
            &out.grads[i],
            1e-4 * largest,
            |q| loss_at(q, &cfg).0.loss,
        );
        checked += 1;
    }
    assert!(
        none >= 10 && checked >= 10,
        "{none} frozen, {checked} checked"
    );
    // The frozen BN normalizes with its running statistics: changing one changes the loss.
    let mean = params
        .params()
        .iter()
        .position(|p| p.key.layer == Layer::StemBn && p.key.tensor == Which::RunningMean)
        .unwrap();
    let mut q = params.clone();
    q.values_mut()[mean][0] += 0.5;
    assert!((loss_at(&q, &cfg).0.loss - out.loss).abs() > 1e-9);
    let unfrozen = StepConfig {
        frozen: None,
        ..cfg
    };
    assert!((loss_at(&q, &unfrozen).0.loss - loss_at(&params, &unfrozen).0.loss).abs() < 1e-12);
}

#[test]
fn drop_path_and_dropout_draw_from_the_seed() {
    let model = tiny("swish", "same");
    let params = tiny_params(&model, 1);
    let input = noise(2 * 3 * 81, 3);
    let cfg = StepConfig::default();
    let run = |seed, cfg: &StepConfig| {
        step_on_copy(&model, &params, &input, 2, &[0, 1], cfg, seed)
            .expect("step")
            .0
            .loss
    };
    assert_eq!(run(1, &cfg), run(1, &cfg));
    assert_ne!(run(1, &cfg), run(2, &cfg));
    // Without drop path and dropout the seed does not matter.
    let off = StepConfig {
        dropout: Some(0.0),
        drop_path: Some(0.0),
        ..cfg
    };
    assert_eq!(run(1, &off), run(2, &off));
}

#[test]
fn bad_targets_are_errors() {
    let model = tiny("swish", "same");
    let params = tiny_params(&model, 1);
    let input = noise(2 * 3 * 81, 3);
    let cfg = StepConfig::default();
    let err = step_on_copy(&model, &params, &input, 2, &[0, 3], &cfg, 0).unwrap_err();
    assert_eq!(
        err,
        Error::LabelOutOfRange {
            image: 1,
            label: 3,
            classes: 3
        }
    );
    let err = step_on_copy(&model, &params, &input, 2, &[0], &cfg, 0).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TargetSize {
                expected: 2,
                got: 1,
                ..
            }
        ),
        "{err}"
    );
    let err = step_on_copy(&model, &params, &input[1..], 2, &[0, 1], &cfg, 0).unwrap_err();
    assert!(matches!(err, Error::InputSize { .. }), "{err}");
}
