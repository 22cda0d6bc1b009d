//! The training loop: steps of the reference executor's forward and backward,
//! the optimizer, the schedule and the EMA, over a data set or one fixed batch;
//! evaluation; checkpoints that resume bit for bit.
//!
//! Reproducibility: everything random derives from the seed and the step or
//! epoch: epoch `e`'s order is a shuffle seeded by (seed, e), each sample's
//! crop, flip and RandAugment by (seed, e, index) ([`crate::data::sample_rng`]),
//! step `t`'s mixup/CutMix by (seed, 3, t), its drop path and dropout by (seed, 2, t). The RNG state and the data order at any step are
//! therefore functions of (seed, step): a checkpoint holds the weights (BN
//! statistics included), the optimizer's state, the EMA and the step, and its
//! fingerprint the seed and every other setting; a run resumed mid-epoch skips
//! the batches of that epoch's order already taken and equals an uninterrupted
//! one bit for bit (`tests/trainer.rs`; a killed `effc train` in
//! `effc-cli/tests/train.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use effc_ir::{Model, Naming, Param};
use effc_reference::train::{self, Params, Rng, StepConfig, Target};
use effc_weights::Weights;

use crate::augment::{Mixup, RandAugment};
use crate::data::{self, Batch, Dataset, Loader, Transform};
use crate::ema::Ema;
use crate::optim::{decay_mask, Kind, Optimizer};
use crate::schedule::{Decay, Schedule};

/// How to train.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    pub batch: usize,
    pub lr: f64,
    pub optimizer: Kind,
    pub weight_decay: f64,
    /// Decay every trainable tensor, BN parameters and biases included.
    pub decay_all: bool,
    pub decay: Decay,
    /// Warmup in epochs (steps when training on a fixed batch), from `warmup_lr`.
    pub warmup_epochs: f64,
    pub warmup_lr: f64,
    pub step: StepConfig,
    /// EMA decay of the weights.
    pub ema: Option<f64>,
    pub seed: u64,
    /// Random-resized crop and flip for training.
    pub augment: bool,
    /// The random-resized crop's smallest area fraction.
    pub min_scale: f64,
    /// Training image size (the model's resolution unless progressive).
    pub size: usize,
    /// RandAugment on each training image (with `augment`).
    pub randaugment: Option<RandAugment>,
    /// Mixup/CutMix of each training batch, the label smoothing folded into its targets.
    pub mixup: Option<Mixup>,
}

/// What the model trains on.
pub enum Data {
    /// A data set: training split, validation split.
    Set {
        train: Arc<Dataset>,
        val: Arc<Dataset>,
    },
    /// One fixed batch (`--input`): NCHW f32 and labels.
    Fixed(Batch),
}

impl Data {
    fn train_len(&self) -> usize {
        match self {
            Data::Set { train, .. } => train.len(),
            Data::Fixed(b) => b.labels.len(),
        }
    }
}

/// Training state: what a checkpoint holds.
#[derive(Clone, Debug)]
pub struct State {
    pub params: Params<f32>,
    pub opt: Optimizer<f32>,
    pub ema: Option<Ema<f32>>,
    /// Steps done.
    pub step: u64,
}

/// Evaluation of a set of weights on the validation split.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Eval {
    pub top1: f64,
    pub top5: f64,
    pub loss: f64,
    pub images: usize,
}

/// Progress reported to the caller.
pub enum Event<'a> {
    Step {
        step: u64,
        total: u64,
        epoch: u64,
        loss: f64,
        lr: f64,
        images_per_s: f64,
        /// The state after the step (to checkpoint when interrupted), read
        /// from the engine only when asked for.
        state: Latest<'a>,
        /// Whether the step ends an epoch (an [`Event::Epoch`] follows).
        epoch_end: bool,
    },
    /// The first step's gradients (for `--save-grads`), aligned with `Model::params`,
    /// and every tensor's value after it (for the BN running statistics, whose
    /// gradient is empty; the weights there are already updated).
    FirstGrads {
        grads: &'a [Vec<f32>],
        values: &'a [Vec<f32>],
    },
    /// An epoch ended (or the last step was taken): the state to checkpoint, and
    /// the validation of the weights and of the EMA.
    Epoch {
        epoch: u64,
        state: &'a State,
        eval: Option<Eval>,
        ema_eval: Option<Eval>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Step(#[from] effc_reference::Error),
    #[error("{0}")]
    Data(#[from] data::DataError),
    #[error("{0}")]
    Weights(#[from] effc_weights::Error),
    #[error("{0}")]
    Bad(String),
    #[error("the loss became {loss} at step {step}: lower --lr (now {lr})")]
    Diverged { step: u64, loss: f64, lr: f64 },
    /// Stopped by a signal (Ctrl-C) after a step, its checkpoint written.
    #[error(
        "interrupted after step {step} of {total}{}",
        match (checkpoint, dir) {
            (Some(c), Some(d)) => format!(
                "; checkpoint written to {}\ncontinue with the same command and `--resume {}`",
                c.display(),
                d.display()
            ),
            _ => "; no checkpoint written".to_string(),
        }
    )]
    Interrupted {
        step: u64,
        total: u64,
        checkpoint: Option<std::path::PathBuf>,
        dir: Option<std::path::PathBuf>,
    },
}

/// Steps per epoch (last smaller batch dropped; a fixed batch is one step).
pub fn steps_per_epoch(data: &Data, batch: usize) -> u64 {
    match data {
        Data::Fixed(_) => 1,
        Data::Set { .. } => (data.train_len() / batch.max(1)) as u64,
    }
}

/// The learning-rate schedule of `recipe` over `total` steps.
pub fn schedule(recipe: &Recipe, steps_per_epoch: u64, total: u64) -> Schedule {
    let spe = steps_per_epoch.max(1) as f64;
    let decay = match recipe.decay {
        Decay::Exponential { rate, every } => Decay::Exponential {
            rate,
            every: every * spe,
        },
        d => d,
    };
    Schedule {
        base_lr: recipe.lr,
        warmup: recipe.warmup_epochs * spe,
        warmup_lr: recipe.warmup_lr,
        warmup_prefix: false,
        decay,
        total: total as f64,
    }
}

impl State {
    /// A fresh state from initial values (`Model::params` order).
    pub fn new(model: &Model, values: Vec<Vec<f32>>, recipe: &Recipe) -> Result<State, TrainError> {
        let params = Params::from_values(model, values)
            .ok_or_else(|| TrainError::Bad("initial values do not fit the model".into()))?;
        let mask = decay_mask(params.params(), recipe.decay_all);
        let opt = Optimizer::new(recipe.optimizer, recipe.weight_decay, mask);
        let ema = recipe.ema.map(|d| Ema::new(d, params.values()));
        Ok(State {
            params,
            opt,
            ema,
            step: 0,
        })
    }
}

fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut r = Rng::new(
        seed ^ a.wrapping_mul(0xA24B_AED4_963E_E407) ^ b.wrapping_mul(0x9FB2_1C65_1E98_DF25),
    );
    r.next_u64()
}

/// The order of epoch `epoch`'s samples.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    data::shuffle(&mut order, &mut Rng::new(mix(seed, 1, epoch)));
    order
}

/// Trains `state` from its step to `total` steps (stopping early after
/// `stop_after` steps of this call, as a killed run would), reporting events.
/// `model` is built at the training size; `eval_model` (the same network at
/// the evaluation size) validates. Steps run on the CPU reference executor
/// ([`train_on`] with [`Cpu`]).
#[allow(clippy::too_many_arguments)]
pub fn train(
    model: &Model,
    eval_model: &Model,
    data: &Data,
    recipe: &Recipe,
    state: &mut State,
    total: u64,
    stop_after: Option<u64>,
    eval_batch: usize,
    report: &mut dyn FnMut(Event) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    train_on(
        &mut Cpu, model, eval_model, data, recipe, state, total, stop_after, eval_batch, report,
    )
}

/// [`train`] with the steps on `engine`. `state` is loaded into the engine
/// first and holds the engine's weights, optimizer state and EMA again at
/// every [`Event::Epoch`], whenever an [`Event::Step`]'s state is asked for,
/// and when this returns.
#[allow(clippy::too_many_arguments)]
pub fn train_on(
    engine: &mut dyn Engine,
    model: &Model,
    eval_model: &Model,
    data: &Data,
    recipe: &Recipe,
    state: &mut State,
    total: u64,
    stop_after: Option<u64>,
    eval_batch: usize,
    report: &mut dyn FnMut(Event) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    let spe = steps_per_epoch(data, recipe.batch);
    if spe == 0 {
        return Err(TrainError::Bad(format!(
            "the training split has {} images, fewer than one batch of {}: lower --batch",
            data.train_len(),
            recipe.batch
        )));
    }
    let sched = schedule(recipe, spe, total);
    let (train_t, eval_t) = transforms(model, eval_model, recipe);
    let end = stop_after.map_or(total, |s| total.min(state.step + s));
    if state.step >= end {
        return Ok(());
    }
    let cfg = step_config(recipe);
    let setup = Setup {
        model,
        recipe,
        batch: batch_images(data, recipe),
        step: &cfg,
    };
    engine.start(&setup, state)?;
    while state.step < end {
        let epoch = state.step / spe;
        let first_in_epoch = (state.step % spe) as usize;
        let epoch_end = ((epoch + 1) * spe).min(end);
        let mut loader = epoch_loader(data, recipe, epoch, first_in_epoch, train_t);
        while state.step < epoch_end {
            let started = std::time::Instant::now();
            let batch = match (&mut loader, data) {
                (Some(l), _) => l
                    .next()
                    .ok_or_else(|| TrainError::Bad("the loader ended before the epoch".into()))??,
                (None, Data::Fixed(b)) => b.clone(),
                (None, Data::Set { .. }) => unreachable!("a data set has a loader"),
            };
            let n = batch.labels.len();
            let lr = sched.lr(state.step);
            let loss = step_once(engine, &setup, state, batch, lr, report)?;
            let epoch_end = state.step.is_multiple_of(spe) || state.step == total;
            report(Event::Step {
                step: state.step,
                total,
                epoch,
                loss,
                lr,
                images_per_s: n as f64 / started.elapsed().as_secs_f64().max(1e-9),
                state: Latest {
                    engine: &mut *engine,
                    state: &mut *state,
                },
                epoch_end,
            })?;
        }
        drop(loader);
        let finished_epoch = state.step.is_multiple_of(spe) || state.step == total;
        if finished_epoch {
            engine.sync(state)?;
            let (eval, ema_eval) = validate(engine, eval_model, data, state, eval_t, eval_batch)?;
            report(Event::Epoch {
                epoch,
                state,
                eval,
                ema_eval,
            })?;
        }
    }
    engine.sync(state)
}

/// What a training step runs on: the CPU reference executor ([`Cpu`]), or a
/// device that keeps the weights, the optimizer's state and the EMA with it
/// between steps (effc's GPU trainer, in effc-cli) and copies them back into
/// [`State`] in [`Engine::sync`]. [`State`] is the record checkpoints,
/// validation and outputs read; every engine keeps its layout.
pub trait Engine {
    /// Refuses, before any training, what it cannot train: `model` (one
    /// stage's network, at its size) on batches of `batch` with `step`.
    fn check(&mut self, model: &Model, batch: usize, step: &StepConfig) -> Result<(), TrainError> {
        let _ = (model, batch, step);
        Ok(())
    }

    /// Prepares to train `setup.model` from `state` (the weights, the
    /// optimizer's state and the EMA): before the first step of a run, and of
    /// each stage.
    fn start(&mut self, setup: &Setup, state: &State) -> Result<(), TrainError>;

    /// One step on `input` (NCHW, `setup.batch` images at the model's size)
    /// against `target`: forward in train mode (BN running statistics
    /// updated), backward, the update at `lr`, the EMA; drop path and dropout
    /// drawn from `rng` as the reference draws them. Returns the mean loss and,
    /// with `grads`, the gradients ([`Stepped`]). `state.step` is the loop's to
    /// advance.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        setup: &Setup,
        state: &mut State,
        input: &[f32],
        target: Target<f32>,
        rng: &mut Rng,
        lr: f64,
        grads: bool,
    ) -> Result<Stepped, TrainError>;

    /// Makes `state` hold the engine's weights, optimizer state and EMA.
    fn sync(&mut self, state: &mut State) -> Result<(), TrainError>;

    /// Validation of `values` ([`evaluate`]: inference on BN running
    /// statistics); by default on the CPU reference executor.
    fn evaluate(
        &mut self,
        model: &Model,
        values: &[Vec<f32>],
        val: &Arc<Dataset>,
        t: Transform,
        batch: usize,
    ) -> Result<Eval, TrainError> {
        evaluate(model, values, val, t, batch)
    }
}

/// What a step gives back: the mean loss over the batch, and when asked for
/// the gradients, aligned with `Model::params` (empty for BN running
/// statistics).
pub struct Stepped {
    pub loss: f64,
    pub grads: Option<Vec<Vec<f32>>>,
}

/// What a stage trains: the model at its size, the recipe, the images per
/// step and the step's configuration ([`step_config`]).
pub struct Setup<'a> {
    pub model: &'a Model,
    pub recipe: &'a Recipe,
    pub batch: usize,
    pub step: &'a StepConfig,
}

/// The state after a step, read from the engine when asked for
/// ([`Latest::get`]): a device engine copies it back only then.
pub struct Latest<'a> {
    engine: &'a mut dyn Engine,
    state: &'a mut State,
}

impl Latest<'_> {
    pub fn get(&mut self) -> Result<&State, TrainError> {
        self.engine.sync(self.state)?;
        Ok(self.state)
    }
}

/// The CPU reference executor's step ([`effc_reference::train::step`]) and
/// effc-train's optimizer and EMA on [`State`] itself.
pub struct Cpu;

impl Engine for Cpu {
    fn start(&mut self, _: &Setup, _: &State) -> Result<(), TrainError> {
        Ok(())
    }

    fn step(
        &mut self,
        setup: &Setup,
        state: &mut State,
        input: &[f32],
        target: Target<f32>,
        rng: &mut Rng,
        lr: f64,
        grads: bool,
    ) -> Result<Stepped, TrainError> {
        let n = input.len() / setup.model.input.iter().product::<usize>().max(1);
        let out = train::step(
            setup.model,
            &mut state.params,
            input,
            n,
            target,
            setup.step,
            rng,
        )?;
        if !out.loss.is_finite() {
            return Ok(Stepped {
                loss: out.loss,
                grads: None,
            });
        }
        state.opt.step(state.params.values_mut(), &out.grads, lr);
        if let Some(e) = &mut state.ema {
            e.update(state.params.values());
        }
        Ok(Stepped {
            loss: out.loss,
            grads: grads.then_some(out.grads),
        })
    }

    fn sync(&mut self, _: &mut State) -> Result<(), TrainError> {
        Ok(())
    }
}

/// The step configuration of `recipe`: with mixup the label smoothing is in
/// the soft targets, so the step's is 0.
pub fn step_config(recipe: &Recipe) -> StepConfig {
    if recipe.mixup.is_some_and(|m| m.enabled()) {
        StepConfig {
            label_smoothing: 0.0,
            ..recipe.step.clone()
        }
    } else {
        recipe.step.clone()
    }
}

/// Images per step: the recipe's batch, or the fixed batch's size.
pub fn batch_images(data: &Data, recipe: &Recipe) -> usize {
    match data {
        Data::Fixed(b) => b.labels.len(),
        Data::Set { .. } => recipe.batch,
    }
}

/// The training transform (the recipe's size and augmentation) and the
/// evaluation one (`effc run`'s: the evaluation model's resolution, which a
/// progressive stage's training size is not, and no augmentation).
fn transforms(model: &Model, eval_model: &Model, recipe: &Recipe) -> (Transform, Transform) {
    let train_t = Transform {
        size: recipe.size,
        augment: recipe.augment,
        min_scale: recipe.min_scale,
        randaugment: recipe.randaugment.filter(|_| recipe.augment),
        mean: model.mean,
        std: model.std,
    };
    let eval_t = Transform {
        size: eval_model.resolution,
        augment: false,
        min_scale: 1.0,
        randaugment: None,
        mean: model.mean,
        std: model.std,
    };
    (train_t, eval_t)
}

/// The loader of one epoch of a data set (its seeded order, from the batch
/// `first` on, for a resumed epoch); none for a fixed batch.
fn epoch_loader(
    data: &Data,
    recipe: &Recipe,
    epoch: u64,
    first: usize,
    t: Transform,
) -> Option<Loader> {
    match data {
        Data::Set { train, .. } => {
            let order = epoch_order(train.len(), recipe.seed, epoch);
            let order = order[first * recipe.batch..].to_vec();
            Some(Loader::new(
                train.clone(),
                order,
                recipe.batch,
                true,
                t,
                recipe.seed,
                epoch,
                2,
            ))
        }
        Data::Fixed(_) => None,
    }
}

/// One optimizer step on `batch` (mixup applied first, when on) on `engine`:
/// the forward and backward, the update, the EMA; the first step's gradients
/// are reported. Returns the loss.
fn step_once(
    engine: &mut dyn Engine,
    setup: &Setup,
    state: &mut State,
    mut batch: Batch,
    lr: f64,
    report: &mut dyn FnMut(Event) -> Result<(), TrainError>,
) -> Result<f64, TrainError> {
    let (model, recipe) = (setup.model, setup.recipe);
    let classes = model.classifier.as_ref().map_or(0, |c| c.out_features);
    if let Some((i, &l)) = batch.labels.iter().enumerate().find(|(_, &l)| l >= classes) {
        return Err(TrainError::Bad(format!(
            "image {i} has label {l}, but `{}` has {classes} classes",
            model.name
        )));
    }
    let mixed = match recipe.mixup.filter(|m| m.enabled()) {
        Some(m) => Some(m.apply(
            &mut batch.input,
            &batch.labels,
            model.input,
            classes,
            recipe.step.label_smoothing,
            &mut Rng::new(mix(recipe.seed, 3, state.step)),
        )),
        None => None,
    };
    // With mixup the label smoothing is in the soft targets ([`step_config`]).
    let target = match &mixed {
        Some(m) => Target::Soft(&m.targets),
        None => Target::Labels(&batch.labels),
    };
    let mut rng = Rng::new(mix(recipe.seed, 2, state.step));
    let first = state.step == 0;
    let Stepped { loss, grads } =
        engine.step(setup, state, &batch.input, target, &mut rng, lr, first)?;
    if !loss.is_finite() {
        return Err(TrainError::Diverged {
            step: state.step,
            loss,
            lr,
        });
    }
    if let Some(grads) = grads {
        engine.sync(state)?;
        report(Event::FirstGrads {
            grads: &grads,
            values: state.params.values(),
        })?;
    }
    state.step += 1;
    Ok(loss)
}

/// The epoch's validation of the weights and of the EMA (none without a
/// validation split).
fn validate(
    engine: &mut dyn Engine,
    eval_model: &Model,
    data: &Data,
    state: &State,
    t: Transform,
    batch: usize,
) -> Result<(Option<Eval>, Option<Eval>), TrainError> {
    match data {
        Data::Set { val, .. } if !val.is_empty() => {
            let e = engine.evaluate(eval_model, state.params.values(), val, t, batch)?;
            let ee = match &state.ema {
                Some(ema) => Some(engine.evaluate(eval_model, &ema.values, val, t, batch)?),
                None => None,
            };
            Ok((Some(e), ee))
        }
        _ => Ok((None, None)),
    }
}

/// The values as a checkpoint for `model` in `naming` (safetensors, f32).
pub fn weights_bytes(
    model: &Model,
    values: &[Vec<f32>],
    naming: Naming,
    meta: Option<HashMap<String, String>>,
) -> Vec<u8> {
    let names = model.named_params(naming);
    let bytes: Vec<Vec<u8>> = values
        .iter()
        .map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = names
        .iter()
        .zip(&bytes)
        .map(|((name, p), b)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, p.shape.clone(), b)
                    .expect("a tensor's bytes match its shape");
            (name.clone(), view)
        })
        .collect();
    deterministic(safetensors::serialize(views, meta).expect("f32 tensors serialize"))
}

/// The values as [`Weights`] (for the inference executor).
pub fn to_weights(model: &Model, values: &[Vec<f32>]) -> Result<Weights, TrainError> {
    let bytes = weights_bytes(model, values, Naming::Effc, None);
    Ok(Weights::from_bytes(
        &bytes,
        "<the weights being trained>",
        model,
        Some(Naming::Effc),
    )?)
}

/// Top-1, top-5 and mean loss of `values` on `val` (inference: BN running
/// statistics; preprocessing as `effc run`).
pub fn evaluate(
    model: &Model,
    values: &[Vec<f32>],
    val: &Arc<Dataset>,
    t: Transform,
    batch: usize,
) -> Result<Eval, TrainError> {
    let weights = to_weights(model, values)?;
    let ex = effc_reference::Executor::new(model, &weights)?;
    evaluate_with(model, val, t, batch, &mut |x, n| Ok(ex.run(x, n)?.data))
}

/// A forward for validation: NCHW f32 images and their count in, logits out.
pub type Forward<'a> = dyn FnMut(&[f32], usize) -> Result<Vec<f32>, TrainError> + 'a;

/// [`evaluate`] with the logits of each batch (NCHW f32, its images) from
/// `forward`, `[images, classes]`.
pub fn evaluate_with(
    model: &Model,
    val: &Arc<Dataset>,
    t: Transform,
    batch: usize,
    forward: &mut Forward,
) -> Result<Eval, TrainError> {
    let classes = model.classifier.as_ref().map_or(0, |c| c.out_features);
    let (mut top1, mut top5, mut loss, mut n) = (0usize, 0usize, 0f64, 0usize);
    for b in Loader::new(
        val.clone(),
        (0..val.len()).collect(),
        batch.max(1),
        false,
        t,
        0,
        0,
        2,
    ) {
        let b = b?;
        let logits = forward(&b.input, b.labels.len())?;
        if logits.len() != b.labels.len() * classes {
            return Err(TrainError::Bad(format!(
                "validation: {} logits for {} images of {classes} classes",
                logits.len(),
                b.labels.len()
            )));
        }
        for (z, &l) in logits.chunks_exact(classes).zip(&b.labels) {
            let top = effc_weights::top_k(z, 5);
            top1 += usize::from(top.first().is_some_and(|t| t.0 == l));
            top5 += usize::from(top.iter().any(|t| t.0 == l));
            let max = z.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
            let lse = z.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
            loss += lse - z[l] as f64;
            n += 1;
        }
    }
    let d = n.max(1) as f64;
    Ok(Eval {
        top1: top1 as f64 / d,
        top5: top5 as f64 / d,
        loss: loss / d,
        images: n,
    })
}

const FORMAT: &str = "effc-train checkpoint 1";

/// A checkpoint of `state`: the weights (effc names), each optimizer buffer
/// (`opt.<k>.<name>`), the EMA (`ema.<name>`), and in the metadata the step, the
/// optimizer's step count and `fingerprint` (what must not change on resume).
pub fn checkpoint_bytes(model: &Model, state: &State, fingerprint: &str) -> Vec<u8> {
    checkpoint_with_history(model, state, fingerprint, &[])
}

/// [`checkpoint_bytes`] with the run's history (its `--log` lines, one JSON
/// object each) in the metadata (`history`), so that a resumed run's log and
/// curves start where the interrupted one's ended.
pub fn checkpoint_with_history(
    model: &Model,
    state: &State,
    fingerprint: &str,
    history: &[String],
) -> Vec<u8> {
    let params = state.params.params();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = vec![];
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    for (p, v) in params.iter().zip(state.params.values()) {
        tensors.push((p.name.clone(), p.shape.clone(), bytes(v)));
    }
    for (p, bufs) in params.iter().zip(&state.opt.state) {
        for (k, b) in bufs.iter().enumerate() {
            tensors.push((format!("opt.{k}.{}", p.name), p.shape.clone(), bytes(b)));
        }
    }
    if let Some(e) = &state.ema {
        for (p, v) in params.iter().zip(&e.values) {
            tensors.push((format!("ema.{}", p.name), p.shape.clone(), bytes(v)));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .expect("sizes match"),
            )
        })
        .collect();
    let meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("model".to_string(), model.name.clone()),
        ("step".to_string(), state.step.to_string()),
        ("optimizer_steps".to_string(), state.opt.steps.to_string()),
        ("fingerprint".to_string(), fingerprint.to_string()),
        (
            "history".to_string(),
            serde_json::to_string(history).expect("strings serialize"),
        ),
    ]);
    deterministic(safetensors::serialize(views, Some(meta)).expect("f32 tensors serialize"))
}

/// A safetensors file whose header lists its keys in sorted order.
/// `safetensors::serialize` writes `__metadata__` in a `HashMap`'s order, so
/// the same run's outputs would differ in their bytes; the header is re-written
/// with sorted keys (the same JSON, the same length: the data is untouched).
fn deterministic(bytes: Vec<u8>) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header = &bytes[8..8 + n];
    let mut value: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).expect("safetensors wrote JSON");
    if let Some(meta) = value.get_mut("__metadata__") {
        let m: std::collections::BTreeMap<String, String> =
            serde_json::from_value(meta.take()).expect("metadata is strings");
        *meta = serde_json::to_value(m).expect("strings serialize");
    }
    let mut sorted = serde_json::to_vec(&value).expect("JSON serializes");
    debug_assert!(sorted.len() <= n);
    if sorted.len() > n {
        return bytes;
    }
    sorted.resize(n, b' ');
    let mut out = bytes;
    out[8..8 + n].copy_from_slice(&sorted);
    out
}

/// The history a checkpoint holds ([`checkpoint_with_history`]); none when absent.
pub fn checkpoint_history(bytes: &[u8]) -> Vec<String> {
    safetensors::SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().clone())
        .and_then(|m| m.get("history").cloned())
        .and_then(|h| serde_json::from_str(&h).ok())
        .unwrap_or_default()
}

/// Restores a state from [`checkpoint_bytes`]; refuses another model or recipe.
pub fn resume(
    model: &Model,
    recipe: &Recipe,
    bytes: &[u8],
    source: &str,
    fingerprint: &str,
) -> Result<State, TrainError> {
    let bad = |why: String| TrainError::Bad(format!("{source}: {why}"));
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad(
            "not an effc training checkpoint (written by `effc train`)".into(),
        ));
    }
    let written_for = meta.get("model").map_or("?", |s| s.as_str());
    if written_for != model.name {
        return Err(bad(format!(
            "is a training checkpoint of `{written_for}`, not of `{}`: resume with the model and flags it was written with",
            model.name
        )));
    }
    if meta.get("fingerprint").map(String::as_str) != Some(fingerprint) {
        return Err(bad(format!(
            "was written by another training run:\n  it:   {}\n  this: {fingerprint}\nresume with the same model, data and flags",
            meta.get("fingerprint").map_or("?", |s| s.as_str())
        )));
    }
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let read = |name: &str, p: &Param| -> Result<Option<Vec<f32>>, TrainError> {
        match st.tensor(name) {
            Ok(t) if t.dtype() == safetensors::Dtype::F32 && t.shape() == p.shape.as_slice() => {
                Ok(Some(
                    t.data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                ))
            }
            Ok(_) => Err(bad(format!("`{name}` is not f32 of shape {:?}", p.shape))),
            Err(_) => Ok(None),
        }
    };
    let params = model.params();
    let mut values = vec![];
    for p in &params {
        values.push(read(&p.name, p)?.ok_or_else(|| bad(format!("`{}` is missing", p.name)))?);
    }
    let mut state = State::new(model, values, recipe)?;
    for (i, p) in params.iter().enumerate() {
        let mut bufs = vec![];
        while let Some(b) = read(&format!("opt.{}.{}", bufs.len(), p.name), p)? {
            bufs.push(b);
        }
        state.opt.state[i] = bufs;
    }
    if let Some(e) = &mut state.ema {
        for (i, p) in params.iter().enumerate() {
            e.values[i] = read(&format!("ema.{}", p.name), p)?
                .ok_or_else(|| bad(format!("`ema.{}` is missing", p.name)))?;
        }
    }
    let num = |k: &str| {
        meta.get(k)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| bad(format!("no `{k}` in the metadata")))
    };
    state.step = num("step")?;
    state.opt.steps = num("optimizer_steps")?;
    Ok(state)
}

#[cfg(test)]
mod deterministic_tests {
    use std::collections::HashMap;

    #[test]
    fn the_same_tensors_and_metadata_give_the_same_bytes() {
        let data: Vec<u8> = [1.0f32, 2.0, 3.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let make = || {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3], &data)
                    .unwrap();
            let meta: HashMap<String, String> = (0..12)
                .map(|i| (format!("key{i}"), format!("value {i}")))
                .collect();
            super::deterministic(
                safetensors::serialize([("t".to_string(), view)], Some(meta)).unwrap(),
            )
        };
        let first = make();
        for _ in 0..8 {
            assert_eq!(make(), first, "HashMap order leaked into the file");
        }
        let (_, meta) = safetensors::SafeTensors::read_metadata(&first).unwrap();
        let m = meta.metadata().as_ref().unwrap();
        assert_eq!(m.len(), 12);
        assert_eq!(m["key7"], "value 7");
        let st = safetensors::SafeTensors::deserialize(&first).unwrap();
        assert_eq!(st.tensor("t").unwrap().data(), &data[..]);
    }
}
