//! `effc train --device gpu`: effc-train's loop with its steps on
//! [`GpuTrainer`] (effc-runtime's training step on wgpu). The weights, the
//! optimizer's state and the EMA stay on the device between steps; they are
//! copied back into effc-train's [`State`] (its layout, so a checkpoint
//! resumes on either device) at each epoch's end, when an interrupted run
//! checkpoints, and when a stage ends. Validation runs effc's inference
//! kernels on the same adapter. A stage's trainer (its plan, buffers
//! and pipelines) is built once, when the stage starts, and kept for every
//! step and epoch of that size and configuration; the previous stage's is
//! freed first, so one stage's memory is held at a time.

use std::sync::Arc;

use effc_ir::Model;
use effc_reference::train::{Rng, StepConfig, Target};
use effc_runtime::train::{plan, GpuTrainer, PlanConfig, Rule, Update};
use effc_runtime::Gpu;
use effc_train::data::{Dataset, Transform};
use effc_train::optim::Kind;
use effc_train::trainer::{self, Engine, Eval, Setup, State, Stepped, TrainError};

/// What a trainer was built for: a new one is built when it changes.
#[derive(Clone, Debug, PartialEq)]
struct Key {
    resolution: usize,
    batch: usize,
    step: StepConfig,
    update: Update,
}

/// Steps on a wgpu adapter.
pub struct GpuEngine {
    gpu: Arc<Gpu>,
    current: Option<(Key, GpuTrainer)>,
    /// Whether the device holds steps `State` does not have yet.
    ahead: bool,
}

fn gpu_error(e: effc_runtime::GpuError) -> TrainError {
    TrainError::Bad(format!("--device gpu: {e}"))
}

/// effc-train's optimizer as the GPU update's rule.
pub fn rule(kind: Kind) -> Rule {
    match kind {
        Kind::Sgd { momentum, nesterov } => Rule::Sgd { momentum, nesterov },
        Kind::RmsPropTf {
            alpha,
            momentum,
            eps,
        } => Rule::RmsPropTf {
            alpha,
            momentum,
            eps,
        },
        Kind::AdamW { beta1, beta2, eps } => Rule::AdamW { beta1, beta2, eps },
    }
}

/// What the GPU step does not do yet, refused before anything is trained.
fn refuse(step: &StepConfig) -> Result<(), TrainError> {
    if step.frozen.is_some() {
        return Err(TrainError::Bad(
            "--freeze is not supported with --device gpu yet (the GPU training step has no eval-mode BN or partial backward); train with --device cpu, or drop --freeze".into(),
        ));
    }
    Ok(())
}

impl GpuEngine {
    pub fn new(gpu: Arc<Gpu>) -> GpuEngine {
        GpuEngine {
            gpu,
            current: None,
            ahead: false,
        }
    }

    fn trainer(&mut self) -> Result<&mut GpuTrainer, TrainError> {
        self.current
            .as_mut()
            .map(|(_, t)| t)
            .ok_or_else(|| TrainError::Bad("--device gpu: a step before the stage started".into()))
    }
}

impl Engine for GpuEngine {
    fn check(&mut self, model: &Model, batch: usize, step: &StepConfig) -> Result<(), TrainError> {
        refuse(step)?;
        plan(
            model,
            batch,
            &PlanConfig {
                bn_momentum: step.bn_momentum,
                dropout: step.dropout,
                drop_path: step.drop_path,
            },
        )
        .map(|_| ())
        .map_err(|e| TrainError::Bad(format!("--device gpu: {}", e.0)))
    }

    fn start(&mut self, setup: &Setup, state: &State) -> Result<(), TrainError> {
        refuse(setup.step)?;
        let key = Key {
            resolution: setup.model.resolution,
            batch: setup.batch,
            step: setup.step.clone(),
            update: Update {
                rule: rule(state.opt.kind),
                weight_decay: state.opt.weight_decay,
                decay: state.opt.decay.clone(),
                ema: state.ema.as_ref().map(|e| e.decay),
            },
        };
        let values = state.params.values();
        match &mut self.current {
            Some((k, t)) if *k == key => t.set_params(values).map_err(gpu_error)?,
            _ => {
                // Free the last stage's buffers before allocating this one's.
                self.current = None;
                let t = GpuTrainer::new(
                    self.gpu.clone(),
                    setup.model,
                    values,
                    setup.batch,
                    setup.step,
                    Some(key.update.clone()),
                )
                .map_err(gpu_error)?;
                self.current = Some((key, t));
            }
        }
        let t = self.trainer()?;
        t.set_optimizer_state(&state.opt.state, state.opt.steps)
            .map_err(gpu_error)?;
        if let Some(e) = &state.ema {
            t.set_ema(&e.values).map_err(gpu_error)?;
        }
        self.ahead = false;
        Ok(())
    }

    fn step(
        &mut self,
        _: &Setup,
        _: &mut State,
        input: &[f32],
        target: Target<f32>,
        rng: &mut Rng,
        lr: f64,
        grads: bool,
    ) -> Result<Stepped, TrainError> {
        let t = self.trainer()?;
        let loss = t.step(input, target, rng, Some(lr)).map_err(gpu_error)?;
        let grads = if grads {
            Some(t.grads().map_err(gpu_error)?)
        } else {
            None
        };
        self.ahead = true;
        Ok(Stepped { loss, grads })
    }

    fn sync(&mut self, state: &mut State) -> Result<(), TrainError> {
        if !self.ahead {
            return Ok(());
        }
        let t = self.trainer()?;
        let params = t.params().map_err(gpu_error)?;
        for (to, from) in state.params.values_mut().iter_mut().zip(params) {
            *to = from;
        }
        state.opt.state = t.optimizer_state().map_err(gpu_error)?;
        state.opt.steps = t.steps();
        if let Some(e) = &mut state.ema {
            e.values = t
                .ema()
                .map_err(gpu_error)?
                .ok_or_else(|| TrainError::Bad("--device gpu: the trainer keeps no EMA".into()))?;
        }
        self.ahead = false;
        Ok(())
    }

    /// Validation with effc's inference kernels on the same adapter: the
    /// values folded and packed as `effc run` does, compiled for the
    /// validation batch.
    fn evaluate(
        &mut self,
        model: &Model,
        values: &[Vec<f32>],
        val: &Arc<Dataset>,
        t: Transform,
        batch: usize,
    ) -> Result<Eval, TrainError> {
        let weights = trainer::to_weights(model, values)?;
        let compiled =
            effc_runtime::compile_model(self.gpu.clone(), model, weights.by_name(model), batch)
                .map_err(gpu_error)?;
        trainer::evaluate_with(model, val, t, batch, &mut |x, n| {
            compiled.forward(x, n).map_err(gpu_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_optimizer_maps_to_its_rule_with_its_constants() {
        assert_eq!(
            rule(Kind::Sgd {
                momentum: 0.9,
                nesterov: true
            }),
            Rule::Sgd {
                momentum: 0.9,
                nesterov: true
            }
        );
        assert_eq!(
            rule(Kind::RmsPropTf {
                alpha: 0.9,
                momentum: 0.8,
                eps: 1e-3
            }),
            Rule::RmsPropTf {
                alpha: 0.9,
                momentum: 0.8,
                eps: 1e-3
            }
        );
        assert_eq!(
            rule(Kind::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8
            }),
            Rule::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8
            }
        );
    }

    #[test]
    fn frozen_layers_are_refused_with_the_way_out() {
        assert!(refuse(&StepConfig::default()).is_ok());
        let step = StepConfig {
            frozen: Some(2),
            ..StepConfig::default()
        };
        match refuse(&step) {
            Err(TrainError::Bad(m)) => {
                assert!(
                    m.starts_with("--freeze is not supported with --device gpu"),
                    "{m}"
                );
                assert!(m.contains("--device cpu"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }
}
