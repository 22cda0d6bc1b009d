//! The training loop: it learns (a fixed batch is fitted), a checkpoint resumes
//! bit for bit, and a checkpoint of another run is refused.

use std::path::Path;
use std::sync::Arc;

use effc_ir::{Model, Options, Spec};
use effc_reference::train::StepConfig;
use effc_train::data::{self, Batch, Source};
use effc_train::optim::Kind;
use effc_train::schedule::Decay;
use effc_train::trainer::{self, Data, Event, Recipe, State};

const TINY: &str = "
model tiny {
    resolution = 16
    stem       = 8
    head       = 16
    classes    = 4
    dropout    = 0.2
    drop_path  = 0.2
    blocks {
        r1_k3_s1_e1_i8_o8_c1
        r2_k3_s2_e4_i8_o16_se0.25
    }
}";

fn tiny() -> Model {
    Model::build(
        &Spec::parse("tiny.enet", TINY).unwrap(),
        &Options::default(),
    )
    .unwrap()
}

fn recipe(kind: Kind) -> Recipe {
    Recipe {
        batch: 4,
        lr: 0.01,
        optimizer: kind,
        weight_decay: 1e-4,
        decay_all: false,
        decay: Decay::Cosine { min_lr: 0.0 },
        warmup_epochs: 0.0,
        warmup_lr: 0.0,
        step: StepConfig {
            label_smoothing: 0.1,
            ..StepConfig::default()
        },
        ema: Some(0.9),
        seed: 3,
        augment: true,
        min_scale: 0.08,
        size: 16,
        randaugment: None,
        mixup: None,
    }
}

/// Runs [`trainer::train`] on `model` (also the evaluation model) with an
/// evaluation batch of 8, ignoring the events.
fn train_quietly(
    model: &Model,
    data: &Data,
    r: &Recipe,
    state: &mut State,
    total: u64,
    stop_after: Option<u64>,
) {
    trainer::train(
        model,
        model,
        data,
        r,
        state,
        total,
        stop_after,
        8,
        &mut |_| Ok(()),
    )
    .unwrap();
}

#[test]
fn a_fixed_batch_is_fitted() {
    let model = tiny();
    let mut r = recipe(Kind::adamw());
    r.step = StepConfig {
        dropout: Some(0.0),
        drop_path: Some(0.0),
        ..StepConfig::default()
    };
    r.decay = Decay::Constant;
    let batch = Batch {
        input: effc_testkit::seeded(4 * 3 * 256, 1),
        labels: vec![0, 1, 2, 3],
    };
    let data = Data::Fixed(batch);
    let mut state = State::new(&model, effc_train::init::init(&model, 0), &r).unwrap();
    let mut losses = vec![];
    trainer::train(
        &model,
        &model,
        &data,
        &r,
        &mut state,
        60,
        None,
        4,
        &mut |e| {
            if let Event::Step { loss, .. } = e {
                losses.push(loss);
            }
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(losses.len(), 60);
    assert!(
        losses[59] < 0.1 * losses[0],
        "loss {} → {}",
        losses[0],
        losses[59]
    );
}

fn write_idx(dir: &Path, prefix: &str, n: usize) {
    let mut px = vec![0, 0, 8, 3];
    for d in [n as u32, 12, 12] {
        px.extend(d.to_be_bytes());
    }
    // Class c: a bright square in quadrant c, plus noise.
    let noise = effc_testkit::seeded(n * 144, n as u64);
    for i in 0..n {
        let c = i % 4;
        for y in 0..12 {
            for x in 0..12 {
                let on = (y / 6) * 2 + x / 6 == c;
                let v = if on { 200.0 } else { 40.0 } + 20.0 * noise[i * 144 + y * 12 + x];
                px.push(v.clamp(0.0, 255.0) as u8);
            }
        }
    }
    let mut lb = vec![0, 0, 8, 1];
    lb.extend((n as u32).to_be_bytes());
    lb.extend((0..n).map(|i| (i % 4) as u8));
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), px).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), lb).unwrap();
}

fn dataset(dir: &Path) -> Data {
    write_idx(dir, "train", 24);
    write_idx(dir, "t10k", 8);
    let s = data::open(&Source::Mnist(dir.into()), 0).unwrap();
    Data::Set {
        train: Arc::new(s.train),
        val: Arc::new(s.val),
    }
}

#[test]
fn resuming_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let model = tiny();
    for kind in [
        Kind::rmsprop_tf(None),
        Kind::Sgd {
            momentum: 0.9,
            nesterov: true,
        },
    ] {
        // RandAugment and mixup/CutMix draw from the seed too.
        let r = Recipe {
            randaugment: Some(effc_train::augment::RandAugment::default()),
            mixup: Some(effc_train::augment::Mixup {
                mixup_alpha: 0.8,
                cutmix_alpha: 1.0,
                prob: 1.0,
                switch_prob: 0.5,
            }),
            ..recipe(kind)
        };
        let total = 14; // 6 steps per epoch: the stop falls mid-epoch
        let init = effc_train::init::init(&model, 1);
        let mut full = State::new(&model, init.clone(), &r).unwrap();
        let mut epochs = 0;
        trainer::train(
            &model,
            &model,
            &data,
            &r,
            &mut full,
            total,
            None,
            8,
            &mut |e| {
                if let Event::Epoch { eval, ema_eval, .. } = e {
                    epochs += 1;
                    assert!(eval.is_some() && ema_eval.is_some());
                }
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(epochs, 3, "two whole epochs and the last step");

        let mut part = State::new(&model, init, &r).unwrap();
        train_quietly(&model, &data, &r, &mut part, total, Some(8));
        assert_eq!(part.step, 8);
        let bytes = trainer::checkpoint_bytes(&model, &part, "fp");
        let mut resumed = trainer::resume(&model, &r, &bytes, "ckpt", "fp").unwrap();
        train_quietly(&model, &data, &r, &mut resumed, total, None);
        assert_eq!(resumed.step, total);
        assert!(
            resumed.params.values() == full.params.values(),
            "{}: weights differ after resuming",
            kind.name()
        );
        assert!(resumed.opt.state == full.opt.state);
        assert!(resumed.ema.unwrap().values == full.ema.unwrap().values);

        let e = trainer::resume(&model, &r, &bytes, "ckpt", "other")
            .unwrap_err()
            .to_string();
        assert!(e.contains("another training run"), "{e}");
    }
}

/// `frozen`: the stem and the first stage (weights and BN running statistics)
/// are bit-identical after steps, everything else trains, BN above updates its
/// running statistics.
#[test]
fn frozen_stages_do_not_change() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let model = tiny();
    let mut r = recipe(Kind::Sgd {
        momentum: 0.9,
        nesterov: false,
    });
    r.weight_decay = 0.1;
    r.decay_all = true;
    r.step.frozen = Some(1);
    let init = effc_train::init::init(&model, 2);
    let mut state = State::new(&model, init.clone(), &r).unwrap();
    train_quietly(&model, &data, &r, &mut state, 5, None);
    let (mut frozen, mut trained) = (0, 0);
    for ((p, before), after) in model.params().iter().zip(&init).zip(state.params.values()) {
        let in_frozen = match p.key.block {
            Some((stage, _, _)) => stage == 0,
            None => matches!(
                p.key.layer,
                effc_ir::Layer::StemConv | effc_ir::Layer::StemBn
            ),
        };
        if in_frozen {
            frozen += 1;
            assert!(
                before
                    .iter()
                    .zip(after)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{} changed",
                p.name
            );
        } else {
            trained += 1;
            assert!(before != after, "{} did not train", p.name);
        }
    }
    assert!(
        frozen >= 8 && trained >= 8,
        "{frozen} frozen, {trained} trained"
    );
    // Unfrozen, the same run changes the stem.
    r.step.frozen = None;
    let mut state = State::new(&model, init.clone(), &r).unwrap();
    train_quietly(&model, &data, &r, &mut state, 5, None);
    assert!(state.params.values()[0] != init[0]);
}

/// An engine that keeps its own copy of the state, as a device does, and
/// writes it back only in `sync`: the loop must ask for it (the first step's
/// gradients, every epoch's end, an `Event::Step`'s state when read, the end)
/// and then equals the CPU run bit for bit.
struct Deferred {
    device: Option<State>,
    ahead: bool,
    syncs: usize,
}

impl trainer::Engine for Deferred {
    fn start(&mut self, _: &trainer::Setup, state: &State) -> Result<(), trainer::TrainError> {
        self.device = Some(state.clone());
        self.ahead = false;
        Ok(())
    }

    fn step(
        &mut self,
        setup: &trainer::Setup,
        _: &mut State,
        input: &[f32],
        target: effc_reference::train::Target<f32>,
        rng: &mut effc_reference::train::Rng,
        lr: f64,
        grads: bool,
    ) -> Result<trainer::Stepped, trainer::TrainError> {
        let device = self.device.as_mut().expect("started");
        let out = trainer::Cpu.step(setup, device, input, target, rng, lr, grads)?;
        self.ahead = true;
        Ok(out)
    }

    fn sync(&mut self, state: &mut State) -> Result<(), trainer::TrainError> {
        if self.ahead {
            let step = state.step;
            *state = self.device.clone().expect("started");
            state.step = step;
            self.syncs += 1;
            self.ahead = false;
        }
        Ok(())
    }
}

#[test]
fn a_device_engine_is_synced_when_asked_and_equals_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let model = tiny();
    let r = recipe(Kind::rmsprop_tf(None));
    let total = 14; // 6 steps per epoch: epochs end at 6, 12 and 14
    type Seen = (Vec<f64>, Vec<u64>, Option<Vec<Vec<f32>>>);
    let run = |engine: &mut dyn trainer::Engine| -> (State, Seen) {
        let mut state = State::new(&model, effc_train::init::init(&model, 0), &r).unwrap();
        let (mut losses, mut epochs, mut at_8) = (vec![], vec![], None);
        trainer::train_on(
            engine,
            &model,
            &model,
            &data,
            &r,
            &mut state,
            total,
            None,
            8,
            &mut |e| {
                match e {
                    Event::Step {
                        step,
                        loss,
                        mut state,
                        ..
                    } => {
                        losses.push(loss);
                        if step == 8 {
                            let s = state.get()?;
                            assert_eq!(s.step, 8);
                            at_8 = Some(s.params.values().to_vec());
                        }
                    }
                    Event::Epoch { state, .. } => {
                        epochs.push(state.step);
                        assert_eq!(state.opt.steps, state.step);
                    }
                    Event::FirstGrads { .. } => {}
                }
                Ok(())
            },
        )
        .unwrap();
        (state, (losses, epochs, at_8))
    };
    let (cpu, cpu_seen) = run(&mut trainer::Cpu);
    let mut deferred = Deferred {
        device: None,
        ahead: false,
        syncs: 0,
    };
    let (dev, dev_seen) = run(&mut deferred);
    assert_eq!(cpu_seen.1, [6, 12, 14]);
    assert!(cpu_seen == dev_seen, "losses or states seen differ");
    assert!(cpu.params.values() == dev.params.values());
    assert!(cpu.opt.state == dev.opt.state && cpu.opt.steps == dev.opt.steps);
    assert!(cpu.ema.unwrap().values == dev.ema.unwrap().values);
    assert_eq!(dev.step, total);
    // The first step's gradients, step 8's state, the three epochs' ends.
    assert_eq!(deferred.syncs, 5);
}
