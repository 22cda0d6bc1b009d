//! Optimizers, schedules and EMA against torch.optim and timm
//! (tests/fixtures/train/optim.safetensors, made by make_optim_fixtures.py):
//! every value within 1e-6 (relative to max(1, |value|)), in f64.

use std::collections::HashMap;

use effc_train::ema::Ema;
use effc_train::optim::{Kind, Optimizer};
use effc_train::schedule::{Decay, Schedule};
use safetensors::{Dtype, SafeTensors};

fn fixture() -> HashMap<String, Vec<f64>> {
    let path = effc_testkit::fixtures().join("train/optim.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            assert_eq!(v.dtype(), Dtype::F64, "{name}");
            let data = v
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name, data)
        })
        .collect()
}

fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: size");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-6 * w.abs().max(1.0),
            "{what}[{i}]: {g} vs torch {w}"
        );
    }
}

#[test]
fn optimizers_equal_torch_after_five_steps() {
    let f = fixture();
    let lrs = &f["lr"];
    let cases = [
        (
            "sgd",
            Kind::Sgd {
                momentum: 0.9,
                nesterov: false,
            },
            0.01,
        ),
        (
            "sgd_nesterov",
            Kind::Sgd {
                momentum: 0.9,
                nesterov: true,
            },
            0.01,
        ),
        (
            "sgd_plain",
            Kind::Sgd {
                momentum: 0.0,
                nesterov: false,
            },
            0.01,
        ),
        ("rmsproptf", Kind::rmsprop_tf(Some(1e-3)), 0.01),
        ("adamw", Kind::adamw(), 0.05),
    ];
    for (name, kind, wd) in cases {
        // w is 2-D (decayed), b 1-D (not): timm's default mask.
        let mut values = vec![f["init.w"].clone(), f["init.b"].clone()];
        let mut opt = Optimizer::<f64>::new(kind, wd, vec![true, false]);
        for (t, &lr) in lrs.iter().enumerate() {
            let grads = vec![
                f[&format!("grad.{t}.w")].clone(),
                f[&format!("grad.{t}.b")].clone(),
            ];
            opt.step(&mut values, &grads, lr);
        }
        assert_close(&format!("{name} w"), &values[0], &f[&format!("{name}.w")]);
        assert_close(&format!("{name} b"), &values[1], &f[&format!("{name}.b")]);
    }
}

#[test]
fn schedules_equal_timm() {
    let f = fixture();
    let base = Schedule {
        base_lr: 0.256,
        warmup: 10.0,
        warmup_lr: 1e-4,
        warmup_prefix: false,
        decay: Decay::Constant,
        total: 100.0,
    };
    for prefix in [false, true] {
        for (name, decay) in [
            ("cosine", Decay::Cosine { min_lr: 1e-5 }),
            (
                "exponential",
                Decay::Exponential {
                    rate: 0.97,
                    every: 24.0,
                },
            ),
        ] {
            let name = format!("sched.{name}{}", if prefix { "_prefix" } else { "" });
            let s = Schedule {
                decay,
                warmup_prefix: prefix,
                ..base
            };
            let got: Vec<f64> = (0..f[&name].len() as u64).map(|t| s.lr(t)).collect();
            assert_close(&name, &got, &f[&name]);
        }
    }
    let constant: Vec<f64> = (0..20).map(|t| base.lr(t)).collect();
    assert_eq!(constant[0], 1e-4);
    assert!(constant[10..].iter().all(|&lr| lr == 0.256));
}

#[test]
fn ema_equals_timm_model_ema_v2() {
    let f = fixture();
    let names = [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
    ];
    let step = |t: usize| -> Vec<Vec<f64>> {
        names
            .iter()
            .map(|n| f[&format!("ema.step{t}.{n}")].clone())
            .collect()
    };
    let want: Vec<Vec<f64>> = names
        .iter()
        .map(|n| f[&format!("ema.{n}")].clone())
        .collect();
    let e0: Vec<Vec<f64>> = names
        .iter()
        .map(|n| f[&format!("ema.init.{n}")].clone())
        .collect();
    let mut ema = Ema::new(0.9, &e0);
    for t in 0..3 {
        ema.update(&step(t));
    }
    for (i, n) in names.iter().enumerate() {
        assert_close(&format!("ema {n}"), &ema.values[i], &want[i]);
    }
}
