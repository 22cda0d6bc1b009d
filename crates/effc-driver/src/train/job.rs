//! `effc train`'s request: the model, the data, the recipe and how long, turned
//! into effc-train's [`Job`] once the caller has declared the files it writes.

use std::path::PathBuf;

use effc_ir::{Naming, Options};
use effc_train::job::{self, CheckpointDir, DataChoice, Job};

use super::recipe::{self, RecipeRequest};
use crate::files::OutputFile;
use crate::{Error, ModelRequest};

/// What to train, on what and how.
#[derive(Clone, Debug)]
pub struct TrainRequest {
    /// The model to train (it needs a classifier).
    pub model: ModelRequest,
    pub data: DataChoice,
    /// A checkpoint to start from (fine-tuning), in `naming` (detected when `None`);
    /// its classifier may have another number of classes.
    pub from: Option<PathBuf>,
    pub naming: Option<Naming>,
    pub recipe: RecipeRequest,
    /// Images per step (the spec's recipe's with `spec_recipe`, else 32).
    pub batch: Option<usize>,
    /// `--freeze`: `stem` or a stage.
    pub freeze: Option<String>,
    /// Passes over the data (the spec's with `spec_recipe` when neither this nor
    /// `steps` is given).
    pub epochs: Option<u64>,
    pub steps: Option<u64>,
    pub progressive: bool,
    pub resume: Option<PathBuf>,
    /// Images per forward in validation (at least one).
    pub eval_batch: usize,
}

/// The files a job writes, declared to the output policy by the caller first.
#[derive(Default)]
pub struct TrainOutputs {
    pub out: Option<OutputFile>,
    pub checkpoints: Option<CheckpointDir>,
    pub save_grads: Option<OutputFile>,
    pub log: Option<OutputFile>,
}

impl TrainRequest {
    /// The job: the model resolved (and resolvable at every size a progressive
    /// stage asks for), the `from` checkpoint's model as it was made, the
    /// recipe checked, the epochs settled.
    pub fn job(&self, outputs: TrainOutputs) -> Result<Job, Error> {
        let model = self.model.resolve()?.model;
        if model.classifier.is_none() {
            return Err(Error::Usage(format!(
                "`{}` has no classifier (classes = 0): give --classes N",
                model.name
            )));
        }
        let from = match &self.from {
            Some(p) => {
                let mut r = self.model.clone();
                r.options.classes = None;
                Some(job::From {
                    path: p.clone(),
                    naming: self.naming,
                    as_made: r.resolve()?.model,
                })
            }
            None => None,
        };
        let at_size = {
            let request = self.model.clone();
            Box::new(move |size: usize| {
                let mut r = request.clone();
                r.options = Options {
                    resolution: Some(size),
                    ..r.options.clone()
                };
                r.resolve().map(|m| m.model).map_err(|e| e.to_string())
            })
        };
        let stages = model.blocks().map(|b| b.stage + 1).max().unwrap_or(0);
        let frozen = recipe::frozen(self.freeze.as_deref(), stages)?;
        let spec = self.recipe.spec_recipe(&model);
        let batch = self.batch.or(spec.batch).unwrap_or(32);
        let recipe = self.recipe.recipe(batch, frozen, model.resolution, &spec)?;
        let epochs = match self.steps {
            None => self.epochs.or(spec.epochs),
            Some(_) => self.epochs,
        };
        Ok(Job {
            model,
            at_size,
            data: self.data.clone(),
            from,
            recipe,
            epochs,
            steps: self.steps,
            progressive: self.progressive,
            out: outputs.out,
            checkpoints: outputs.checkpoints,
            save_grads: outputs.save_grads,
            log: outputs.log,
            resume: self.resume.clone(),
            eval_batch: self.eval_batch.max(1),
            stop: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(model: ModelRequest) -> TrainRequest {
        TrainRequest {
            model,
            data: DataChoice::Input("x.safetensors".into()),
            from: None,
            naming: None,
            recipe: RecipeRequest::default(),
            batch: None,
            freeze: None,
            epochs: None,
            steps: Some(3),
            progressive: false,
            resume: None,
            eval_batch: 0,
        }
    }

    #[test]
    fn a_job_has_the_defaults_and_the_frozen_stages_asked_for() {
        let mut model = ModelRequest::from_arg("b0");
        model.options.resolution = Some(32);
        model.options.classes = Some(10);
        let mut r = request(model);
        r.freeze = Some("stem".into());
        let job = r.job(TrainOutputs::default()).unwrap();
        assert_eq!(job.recipe.batch, 32);
        assert_eq!(job.recipe.size, 32);
        assert_eq!(job.recipe.step.frozen, Some(0));
        assert_eq!((job.steps, job.epochs, job.eval_batch), (Some(3), None, 1));
        assert_eq!((job.at_size)(48).unwrap().resolution, 48);
    }

    #[test]
    fn a_backbone_or_a_stage_out_of_range_is_refused() {
        let mut model = ModelRequest::from_arg("b0");
        model.options.classes = Some(0);
        let e = request(model).job(TrainOutputs::default()).err().unwrap();
        assert!(
            e.to_string().contains("has no classifier (classes = 0)"),
            "{e}"
        );
        let mut r = request(ModelRequest::from_arg("b0"));
        r.freeze = Some("99".into());
        let e = r.job(TrainOutputs::default()).err().unwrap();
        assert!(e.to_string().starts_with("--freeze 99:"), "{e}");
    }
}
