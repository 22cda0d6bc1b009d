//! The GPU training step against the CPU reference (the oracle) on a real wgpu
//! adapter (lavapipe here): gradients per tensor, relative to
//! max(the tensor's largest |g|, 1e-4 × the model's largest |g|); BN running
//! statistics; the optimizer kernel against effc-train's optimizers; whole
//! steps with an update. The timm fixtures (64 px, batch 4) are `#[ignore]`d
//! as slow: `cargo test -p effc-runtime --test train -- --ignored`.

use std::sync::Arc;

use effc_ir::{Model, Naming, Options, Spec};
use effc_reference::train::{step, Params, Real, Rng, StepConfig, Target};
use effc_runtime::train::{GpuTrainer, Rule, Update};
use effc_runtime::{Gpu, GpuError};
use effc_train::optim::{decay_mask, Kind, Optimizer};
use effc_weights::Weights;

fn gpu() -> Arc<Gpu> {
    Gpu::shared()
        .unwrap_or_else(|e| panic!("these tests need a wgpu adapter (llvmpipe works): {e}"))
}

fn noise(n: usize, seed: u64) -> Vec<f64> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| 2.0 * r.uniform() - 1.0).collect()
}

fn tiny(activation: &str, padding: &str) -> Model {
    effc_testkit::train::every_block_kind(activation, padding)
}

fn tiny_values(model: &Model, seed: u64) -> Vec<Vec<f64>> {
    effc_testkit::train::noisy_values(model, seed, noise)
}

fn to<T: Real>(v: &[Vec<f64>]) -> Vec<Vec<T>> {
    v.iter()
        .map(|t| t.iter().map(|&x| T::from_f64(x)).collect())
        .collect()
}

/// Tensors whose exact gradient vanishes (a BN bias whose shift the next BN
/// removes): their f64 gradient is below this fraction of the model's largest.
const VANISHING: f64 = 1e-6;

/// The worst per-tensor error of `got` against `want` (and its tensor), over
/// tensors whose gradient does not vanish, then over those whose does.
fn worst<A: Real, B: Real>(
    model: &Model,
    want: &[Vec<A>],
    got: &[Vec<B>],
) -> ((f64, String), (f64, String)) {
    let params = model.params();
    let largest = want
        .iter()
        .flatten()
        .fold(0f64, |m, g| m.max(g.to_f64().abs()));
    let mut worst = ((0f64, String::new()), (0f64, String::new()));
    for ((p, w), g) in params.iter().zip(want).zip(got) {
        assert_eq!(w.len(), g.len(), "{}: gradient size", p.name);
        let own = w.iter().fold(0f64, |m, g| m.max(g.to_f64().abs()));
        let den = own.max(1e-4 * largest);
        let err = w
            .iter()
            .zip(g)
            .map(|(a, b)| (a.to_f64() - b.to_f64()).abs())
            .fold(0.0, f64::max)
            / den;
        let err = if g.iter().any(|v| !v.to_f64().is_finite()) {
            f64::INFINITY
        } else {
            err
        };
        if std::env::var_os("EFFC_TRAIN_DEBUG").is_some() && err > 1e-5 {
            eprintln!(
                "  {}: {err:.2e} (own max {:.1e} of the model's)",
                p.name,
                own / largest
            );
        }
        let w = if own < VANISHING * largest {
            &mut worst.1
        } else {
            &mut worst.0
        };
        if err > w.0 {
            *w = (err, p.name.clone());
        }
    }
    worst
}

/// Running statistics (and every other tensor) equal within `tol` relative to
/// max(|v|, 1).
fn assert_values_close<A: Real>(
    what: &str,
    model: &Model,
    want: &[Vec<A>],
    got: &[Vec<f32>],
    tol: f64,
) {
    for ((p, w), g) in model.params().iter().zip(want).zip(got) {
        for (i, (a, &b)) in w.iter().zip(g).enumerate() {
            let a = a.to_f64();
            assert!(
                (a - b as f64).abs() <= tol * a.abs().max(1.0),
                "{what}: {}[{i}] GPU {b} vs CPU {a}",
                p.name
            );
        }
    }
}

fn running_only<T: Clone>(model: &Model, v: &[Vec<T>]) -> Vec<Vec<T>> {
    model
        .params()
        .iter()
        .zip(v)
        .map(|(p, v)| if p.trainable { vec![] } else { v.clone() })
        .collect()
}

/// Loss, gradients, every tensor after the step, logits.
type CpuStep<T> = (f64, Vec<Vec<T>>, Vec<Vec<T>>, Vec<T>);

struct Case<'a> {
    model: &'a Model,
    values: Vec<Vec<f64>>,
    input: Vec<f64>,
    batch: usize,
    labels: Vec<usize>,
    soft: Option<Vec<f64>>,
    cfg: StepConfig,
    seed: u64,
}

impl Case<'_> {
    /// The CPU step: loss, gradients, every tensor after it, logits.
    fn cpu<T: Real>(&self) -> CpuStep<T> {
        let mut params = Params::<T>::from_values(self.model, to(&self.values)).unwrap();
        let input: Vec<T> = self.input.iter().map(|&v| T::from_f64(v)).collect();
        let soft: Option<Vec<T>> = self
            .soft
            .as_ref()
            .map(|s| s.iter().map(|&v| T::from_f64(v)).collect());
        let target = match &soft {
            Some(s) => Target::Soft(s),
            None => Target::Labels(&self.labels),
        };
        let out = step(
            self.model,
            &mut params,
            &input,
            self.batch,
            target,
            &self.cfg,
            &mut Rng::new(self.seed),
        )
        .unwrap();
        (out.loss, out.grads, params.values().to_vec(), out.logits)
    }

    fn gpu(&self, update: Option<Update>) -> GpuTrainer {
        GpuTrainer::new(
            gpu(),
            self.model,
            &to::<f32>(&self.values),
            self.batch,
            &self.cfg,
            update,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn gpu_step(&self, t: &mut GpuTrainer, rng: &mut Rng, lr: Option<f64>) -> f64 {
        let input: Vec<f32> = self.input.iter().map(|&v| v as f32).collect();
        let soft: Option<Vec<f32>> = self
            .soft
            .as_ref()
            .map(|s| s.iter().map(|&v| v as f32).collect());
        let target = match &soft {
            Some(s) => Target::Soft(s),
            None => Target::Labels(&self.labels),
        };
        t.step(&input, target, rng, lr)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// One step on the GPU against the CPU in f64 and f32. Every tensor whose
    /// gradient does not vanish is within `tol` of the f64 oracle; those whose
    /// exact gradient is 0 are compared at the measure's floor (1e-4 × the
    /// model's largest gradient), where f32 rounding alone shows: the GPU must
    /// stay within 4× the CPU reference's own f32 error there. Returns the
    /// worst errors (not vanishing, vanishing).
    fn compare(&self, what: &str, tol: f64) -> (f64, f64) {
        let (loss64, g64, v64, logits64) = self.cpu::<f64>();
        let (_, g32, v32, logits32) = self.cpu::<f32>();
        let mut t = self.gpu(None);
        let loss = self.gpu_step(&mut t, &mut Rng::new(self.seed), None);
        let grads = t.grads().unwrap();
        let ((e, name), (ev, namev)) = worst(self.model, &g64, &grads);
        let ((cpu_e, cpu_name), (cpu_v, _)) = worst(self.model, &g64, &g32);
        eprintln!("{what}: CPU f32 vs f64: worst {cpu_e:.2e} ({cpu_name})");
        eprintln!(
            "{what}: GPU vs CPU f64: worst {e:.2e} ({name}); where the gradient vanishes {ev:.2e} ({namev}), CPU f32 there {cpu_v:.2e}; loss {loss} vs {loss64}"
        );
        assert!(
            e <= tol,
            "{what}: gradient of {name} off by {e:.2e} > {tol:.0e}"
        );
        assert!(
            ev <= tol.max(4.0 * cpu_v),
            "{what}: vanishing gradient of {namev} off by {ev:.2e}, more than 4x the CPU's f32 {cpu_v:.2e}"
        );
        assert!(
            (loss - loss64).abs() <= 1e-5 * loss64.abs().max(1.0),
            "{what}: loss {loss} vs {loss64}"
        );
        // Logits within 1e-5 (relative to max(|z|, 1)), or within 3x the CPU's
        // own f32 error where that is larger (a deep ReLU6 network).
        let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1.0);
        let cpu_logits = logits32
            .iter()
            .zip(&logits64)
            .map(|(&a, &b)| rel(a as f64, b))
            .fold(0.0, f64::max);
        let logits = t.logits().unwrap();
        for (a, b) in logits.iter().zip(&logits64) {
            assert!(
                rel(*a as f64, *b) <= 1e-5f64.max(3.0 * cpu_logits),
                "{what}: logits {a} vs {b} (CPU f32 off by {cpu_logits:.1e})"
            );
        }
        // Running statistics within 1e-5 (relative to max(|v|, 1)), or 3x the
        // CPU's own f32 error where that is larger.
        let cpu_running = v64
            .iter()
            .flatten()
            .zip(v32.iter().flatten())
            .map(|(&a, &b)| rel(b as f64, a))
            .fold(0.0, f64::max);
        let values = t.params().unwrap();
        assert_values_close(
            &format!("{what} running statistics"),
            self.model,
            &running_only(self.model, &v64),
            &running_only(self.model, &values),
            1e-5f64.max(3.0 * cpu_running),
        );
        eprintln!("{what}: CPU f32 running statistics off by {cpu_running:.1e}, logits by {cpu_logits:.1e}");
        (e, ev)
    }
}

fn tiny_case(model: &Model, smoothing: f64, soft: bool) -> Case<'_> {
    let batch = 3;
    Case {
        model,
        values: tiny_values(model, 1000),
        input: noise(batch * 3 * 81, 99),
        batch,
        labels: vec![0, 2, 1],
        soft: soft.then(|| noise(batch * 3, 7).iter().map(|v| v.abs()).collect()),
        cfg: StepConfig {
            label_smoothing: smoothing,
            ..StepConfig::default()
        },
        seed: 5,
    }
}

#[test]
fn tiny_every_block_kind_matches_the_reference() {
    for (act, pad, smoothing, soft) in [
        ("swish", "same", 0.1, false),
        ("relu6", "symmetric", 0.0, false),
        ("relu", "same", 0.2, true),
    ] {
        let model = tiny(act, pad);
        let case = tiny_case(&model, smoothing, soft);
        case.compare(&format!("tiny {act}/{pad}"), 1e-4);
    }
}

#[test]
fn steps_are_deterministic() {
    let model = tiny("swish", "same");
    let case = tiny_case(&model, 0.1, false);
    let run = || {
        let mut t = case.gpu(None);
        let loss = case.gpu_step(&mut t, &mut Rng::new(3), None);
        (loss.to_bits(), t.grads().unwrap(), t.params().unwrap())
    };
    let (a, b) = (run(), run());
    assert_eq!(a.0, b.0);
    assert!(a.1 == b.1, "gradients differ between two runs");
    assert!(a.2 == b.2, "running statistics differ between two runs");
}

fn rules() -> Vec<(Kind, Rule)> {
    vec![
        (
            Kind::Sgd {
                momentum: 0.9,
                nesterov: true,
            },
            Rule::Sgd {
                momentum: 0.9,
                nesterov: true,
            },
        ),
        (
            Kind::Sgd {
                momentum: 0.9,
                nesterov: false,
            },
            Rule::Sgd {
                momentum: 0.9,
                nesterov: false,
            },
        ),
        (
            Kind::Sgd {
                momentum: 0.0,
                nesterov: false,
            },
            Rule::Sgd {
                momentum: 0.0,
                nesterov: false,
            },
        ),
        (
            Kind::rmsprop_tf(Some(1e-3)),
            Rule::RmsPropTf {
                alpha: 0.9,
                momentum: 0.9,
                eps: 1e-3,
            },
        ),
        (
            Kind::adamw(),
            Rule::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
        ),
    ]
}

/// The fused update kernel against effc-train's optimizers on the same
/// gradients, three steps, weight decay on (timm's mask), with the EMA.
#[test]
fn update_kernel_matches_effc_train_optimizers() {
    let model = tiny("swish", "same");
    let values = to::<f32>(&tiny_values(&model, 10));
    let params = model.params();
    for (kind, rule) in rules() {
        let decay = decay_mask(&params, false);
        let mut opt = Optimizer::<f32>::new(kind, 0.05, decay.clone());
        let mut ema = effc_train::ema::Ema::new(0.9, &values);
        let mut t = GpuTrainer::new(
            gpu(),
            &model,
            &values,
            1,
            &StepConfig::default(),
            Some(Update {
                rule,
                weight_decay: 0.05,
                decay,
                ema: Some(0.9),
            }),
        )
        .unwrap();
        let mut cpu = values.clone();
        for s in 0..3u64 {
            let grads: Vec<Vec<f32>> = params
                .iter()
                .zip(100 + 10 * s..)
                .map(|(p, seed)| {
                    if p.trainable {
                        noise(p.numel(), seed).iter().map(|&v| v as f32).collect()
                    } else {
                        vec![]
                    }
                })
                .collect();
            let lr = 0.1 / (s + 1) as f64;
            opt.step(&mut cpu, &grads, lr);
            ema.update(&cpu);
            t.apply_gradients(&grads, lr).unwrap();
        }
        let what = kind.name();
        assert_values_close(what, &model, &cpu, &t.params().unwrap(), 1e-5);
        let state = t.optimizer_state().unwrap();
        for (i, (a, b)) in opt.state.iter().zip(&state).enumerate() {
            assert_eq!(a.len(), b.len(), "{what}: {} state buffers", params[i].name);
            for (a, b) in a.iter().zip(b) {
                for (&x, &y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() <= 1e-5 * x.abs().max(1.0),
                        "{what}: {} state {y} vs {x}",
                        params[i].name
                    );
                }
            }
        }
        assert_values_close(
            &format!("{what} EMA"),
            &model,
            &ema.values,
            &t.ema().unwrap().unwrap(),
            1e-5,
        );
    }
}

/// Three whole steps (forward, backward, update) on the GPU against the
/// reference's step and effc-train's optimizer on the CPU (f64 state, so the
/// oracle is exact): parameters and running statistics after each step.
#[test]
fn three_steps_match_the_cpu() {
    let model = tiny("swish", "same");
    let case = tiny_case(&model, 0.1, false);
    let params = model.params();
    // AdamW divides by √v: on a tensor whose exact gradient is 0 it turns f32
    // rounding noise into steps of ±lr, so it is checked on equal gradients
    // (above) only.
    for (kind, rule) in [rules()[0], rules()[3]] {
        let decay = decay_mask(&params, false);
        let mut opt = Optimizer::<f64>::new(kind, 1e-2, decay.clone());
        let mut t = case.gpu(Some(Update {
            rule,
            weight_decay: 1e-2,
            decay,
            ema: None,
        }));
        let mut cpu = Params::<f64>::from_values(&model, case.values.clone()).unwrap();
        let (mut rg, mut rc) = (Rng::new(11), Rng::new(11));
        let lr = 0.05;
        for s in 0..3 {
            let loss = case.gpu_step(&mut t, &mut rg, Some(lr));
            let out = step(
                &model,
                &mut cpu,
                &case.input,
                case.batch,
                Target::Labels(&case.labels),
                &case.cfg,
                &mut rc,
            )
            .unwrap();
            opt.step(cpu.values_mut(), &out.grads, lr);
            assert!(
                (loss - out.loss).abs() < 1e-5,
                "{} step {s}: loss {loss} vs {}",
                kind.name(),
                out.loss
            );
            assert_values_close(
                &format!("{} after step {}", kind.name(), s + 1),
                &model,
                cpu.values(),
                &t.params().unwrap(),
                1e-5,
            );
        }
        assert_eq!(t.steps(), 3);
    }
}

#[test]
fn bad_batches_are_errors() {
    let model = tiny("swish", "same");
    let case = tiny_case(&model, 0.0, false);
    let mut t = case.gpu(None);
    let input = vec![0f32; 3 * 3 * 81];
    let mut rng = Rng::new(0);
    let e = t
        .step(&input, Target::Labels(&[0, 3, 1]), &mut rng, None)
        .unwrap_err();
    assert!(
        matches!(
            e,
            GpuError::LabelOutOfRange {
                image: 1,
                label: 3,
                classes: 3
            }
        ),
        "{e}"
    );
    let e = t
        .step(&input, Target::Labels(&[0, 1]), &mut rng, None)
        .unwrap_err();
    assert!(
        matches!(
            e,
            GpuError::TargetSize {
                expected: 3,
                got: 2,
                ..
            }
        ),
        "{e}"
    );
    let e = t
        .step(&input[1..], Target::Labels(&[0, 1, 2]), &mut rng, None)
        .unwrap_err();
    assert!(matches!(e, GpuError::InputShape { .. }), "{e}");
    let e = t
        .step(&input, Target::Labels(&[0, 1, 2]), &mut rng, Some(0.1))
        .unwrap_err();
    assert!(e.to_string().contains("without an optimizer"), "{e}");
    let e = GpuTrainer::new(gpu(), &model, &[], 1, &StepConfig::default(), None)
        .err()
        .expect("no parameters");
    assert!(e.to_string().contains("do not fit"), "{e}");
}

// The timm fixtures (tests/fixtures/train), read by effc-testkit as effc-reference's tests read them.

use effc_testkit::train::train_fixture as read;

/// `relu6`: lite0's ReLU6 kinks make f32 and f64 take different branches
/// (PyTorch's own spread is 0.14 there), so its bound is 3x that spread, as
/// the CPU reference's f32 is held to; the others are held to 1e-4.
fn fixture(case: &str, builtin: &str, relu6: bool) {
    let cases: serde_json::Value = serde_json::from_slice(
        &std::fs::read(effc_testkit::fixtures().join("train/cases.json")).expect("cases.json"),
    )
    .expect("cases.json is JSON");
    let info = &cases[case];
    let spread = info["spread_f32_f64"]
        .as_f64()
        .expect("the recorded spread");
    let spec = Spec::builtin(builtin).unwrap();
    let model = Model::build(
        &spec,
        &Options {
            resolution: Some(64),
            classes: Some(10),
            ..Options::default()
        },
    )
    .unwrap();
    let fx = read(case);
    let weights = Weights::random(&model, info["weights_seed"].as_u64().unwrap());
    let p64 = Params::<f64>::from_weights(&model, &weights).unwrap();
    let c = Case {
        model: &model,
        values: p64.values().to_vec(),
        input: fx.f32s["input"].iter().map(|&v| v as f64).collect(),
        batch: 4,
        labels: fx.labels.clone(),
        soft: None,
        cfg: StepConfig {
            dropout: Some(0.0),
            drop_path: Some(0.0),
            ..StepConfig::default()
        },
        seed: 0,
    };
    // Against the CPU reference (f64); and timm's float64 gradients within 3x
    // PyTorch's own f32-vs-f64 spread, as the CPU reference's f32 is held to.
    c.compare(case, if relu6 { 3.0 * spread } else { 1e-4 });
    let mut t = c.gpu(None);
    c.gpu_step(&mut t, &mut Rng::new(0), None);
    let grads = t.grads().unwrap();
    let names = model.named_params(Naming::Timm);
    let timm: Vec<Vec<f64>> = names
        .iter()
        .map(|(name, p)| {
            if !p.trainable {
                return vec![];
            }
            let q = &fx.i16s[&format!("grad.{name}")];
            let s = fx.f64s[&format!("scale.{name}")][0];
            q.iter().map(|&q| q as f64 / 32767.0 * s).collect()
        })
        .collect();
    let ((e, name), (ev, namev)) = worst(&model, &timm, &grads);
    eprintln!("{case}: GPU vs timm f64: {e:.2e} ({name}), vanishing {ev:.2e} ({namev}); PyTorch spread {spread:.2e}");
    assert!(
        e.max(ev) <= 3.0 * spread,
        "{case}: against timm {e:.2e}/{ev:.2e} > 3x spread {spread:.2e}"
    );
    // Running statistics against timm's f32 ones: 1e-4, as the CPU reference's
    // f32 is held to (the 1e-5 check is against the reference, above).
    let values = t.params().unwrap();
    for ((name, _), v) in names.iter().zip(&values) {
        let Some(want) = fx.f32s.get(&format!("running.{name}")) else {
            continue;
        };
        for (i, (&w, &g)) in want.iter().zip(v).enumerate() {
            assert!(
                (w - g).abs() as f64 <= 1e-4 * w.abs().max(1.0) as f64,
                "{case}: {name}[{i}] GPU {g} vs timm {w}"
            );
        }
    }
}

#[test]
#[ignore = "slow on lavapipe (64 px, batch 4): run with --ignored"]
fn b0_fixture() {
    fixture("b0", "b0", false);
}

#[test]
#[ignore = "slow on lavapipe (64 px, batch 4): run with --ignored"]
fn b0_pytorch_fixture() {
    fixture("b0-pytorch", "b0-pytorch", false);
}

#[test]
#[ignore = "slow on lavapipe (64 px, batch 4): run with --ignored"]
fn v2_b0_fixture() {
    fixture("v2-b0", "v2-b0", false);
}

#[test]
#[ignore = "slow on lavapipe (64 px, batch 4): run with --ignored"]
fn lite0_fixture() {
    fixture("lite0", "lite0", true);
}

/// A run stopped after two steps and resumed from what a checkpoint holds
/// (weights with running statistics, optimizer state, step, EMA) continues
/// bit for bit as the uninterrupted one; the exported optimizer state has
/// effc-train's layout and values.
#[test]
fn resumed_runs_continue_bit_for_bit() {
    let model = tiny("swish", "same");
    let case = tiny_case(&model, 0.1, false);
    let params = model.params();
    for (kind, rule) in rules() {
        let update = Update {
            rule,
            weight_decay: 1e-2,
            decay: decay_mask(&params, false),
            ema: Some(0.5),
        };
        let lr = 0.02;
        let mut whole = case.gpu(Some(update.clone()));
        let mut rng = Rng::new(4);
        for _ in 0..3 {
            case.gpu_step(&mut whole, &mut rng, Some(lr));
        }
        let mut first = case.gpu(Some(update.clone()));
        let mut rng = Rng::new(4);
        for _ in 0..2 {
            case.gpu_step(&mut first, &mut rng, Some(lr));
        }
        let (values, state, ema) = (
            first.params().unwrap(),
            first.optimizer_state().unwrap(),
            first.ema().unwrap().unwrap(),
        );
        // effc-train's layout: the same buffers per tensor as its optimizer keeps.
        let mut cpu = Optimizer::<f32>::new(kind, 1e-2, decay_mask(&params, false));
        let mut v = to::<f32>(&case.values);
        let grads: Vec<Vec<f32>> = params
            .iter()
            .map(|p| {
                if p.trainable {
                    vec![0.0; p.numel()]
                } else {
                    vec![]
                }
            })
            .collect();
        cpu.step(&mut v, &grads, lr);
        for (i, (a, b)) in cpu.state.iter().zip(&state).enumerate() {
            assert_eq!(a.len(), b.len(), "{}: {}", kind.name(), params[i].name);
        }
        let mut resumed =
            GpuTrainer::new(gpu(), &model, &values, case.batch, &case.cfg, Some(update)).unwrap();
        resumed.set_optimizer_state(&state, 2).unwrap();
        resumed.set_ema(&ema).unwrap();
        case.gpu_step(&mut resumed, &mut rng, Some(lr));
        assert!(
            resumed.params().unwrap() == whole.params().unwrap(),
            "{}: resumed weights differ",
            kind.name()
        );
        assert!(
            resumed.ema().unwrap() == whole.ema().unwrap(),
            "{}: resumed EMA differs",
            kind.name()
        );
        assert!(
            resumed.optimizer_state().unwrap() == whole.optimizer_state().unwrap(),
            "{}: resumed optimizer state differs",
            kind.name()
        );
        let e = resumed.set_optimizer_state(&state[1..], 2).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
    }
}

/// Twenty steps with SGD-Nesterov follow the CPU's losses within 1e-3 at every
/// step (drop path, dropout and label smoothing on).
#[test]
fn twenty_steps_follow_the_cpu_losses() {
    let model = tiny("swish", "same");
    let case = tiny_case(&model, 0.1, false);
    let params = model.params();
    let (kind, rule) = rules()[0];
    let decay = decay_mask(&params, false);
    let mut opt = Optimizer::<f32>::new(kind, 1e-4, decay.clone());
    let mut t = case.gpu(Some(Update {
        rule,
        weight_decay: 1e-4,
        decay,
        ema: None,
    }));
    let mut cpu = Params::<f32>::from_values(&model, to(&case.values)).unwrap();
    let input: Vec<f32> = case.input.iter().map(|&v| v as f32).collect();
    let (mut rg, mut rc) = (Rng::new(21), Rng::new(21));
    let mut losses = vec![];
    for s in 0..20 {
        let loss = case.gpu_step(&mut t, &mut rg, Some(0.05));
        let out = step(
            &model,
            &mut cpu,
            &input,
            case.batch,
            Target::Labels(&case.labels),
            &case.cfg,
            &mut rc,
        )
        .unwrap();
        opt.step(cpu.values_mut(), &out.grads, 0.05);
        assert!(
            (loss - out.loss).abs() <= 1e-3,
            "step {s}: GPU loss {loss} vs CPU {}",
            out.loss
        );
        losses.push(loss);
    }
    assert!(losses[19] < losses[0], "the loss falls: {losses:?}");
}

/// Dispatches larger than one grid row (b0 at 224 px and batch 64 needs them)
/// compute the same bits: the tiny step with at most 8 workgroups per
/// dimension, so most dispatches run as 2-D grids, against the usual one.
#[test]
fn two_dimensional_grids_compute_the_same() {
    let model = tiny("swish", "same");
    let case = tiny_case(&model, 0.1, false);
    let update = Update {
        rule: rules()[0].1,
        weight_decay: 1e-2,
        decay: decay_mask(&model.params(), false),
        ema: Some(0.9),
    };
    let mut usual = case.gpu(Some(update.clone()));
    let mut small = GpuTrainer::with_workgroup_limit(
        gpu(),
        &model,
        &to::<f32>(&case.values),
        case.batch,
        &case.cfg,
        Some(update),
        8,
    )
    .unwrap();
    let many = small
        .plan()
        .forward
        .iter()
        .chain(&small.plan().backward)
        .filter(|d| match d.kind.grid() {
            effc_wgsl::train::Grid::Items => d.n > 8 * 64,
            effc_wgsl::train::Grid::Groups => d.n > 8,
        })
        .count();
    assert!(
        many >= 3,
        "the test spec has dispatches over one grid row ({many})"
    );
    assert!(
        small.plan().param_len > 8 * 64,
        "the update runs as a 2-D grid"
    );
    let a = case.gpu_step(&mut usual, &mut Rng::new(2), Some(0.1));
    let b = case.gpu_step(&mut small, &mut Rng::new(2), Some(0.1));
    assert_eq!(a.to_bits(), b.to_bits());
    assert!(usual.grads().unwrap() == small.grads().unwrap());
    assert!(usual.params().unwrap() == small.params().unwrap());
    assert!(usual.ema().unwrap() == small.ema().unwrap());
    let e = GpuTrainer::with_workgroup_limit(
        gpu(),
        &model,
        &to::<f32>(&case.values),
        case.batch,
        &case.cfg,
        None,
        1,
    )
    .err()
    .expect("too few workgroups");
    assert!(matches!(e, GpuError::TrainTooBig { .. }), "{e}");
}
