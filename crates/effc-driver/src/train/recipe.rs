//! A training recipe from what a user asked for: each setting given, else the
//! spec's `training` section's (when asked), else effc's default; every range
//! checked before anything trains. `effc train` and `effc scale --grid
//! --train-on` build their recipes here.

use std::path::Path;

use effc_files::FileKind;
use effc_ir::spec::{self, Optimizer, Schedule};
use effc_ir::Model;
use effc_reference::train::StepConfig;
use effc_train::augment::{Mixup, RandAugment};
use effc_train::data::{Source, FASHION_MNIST_DIR};
use effc_train::optim::Kind;
use effc_train::schedule::Decay;
use effc_train::trainer::Recipe;

use crate::Error;

/// The optimizer asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerChoice {
    Sgd,
    Nesterov,
    RmspropTf,
    AdamW,
}

/// The learning-rate schedule asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleChoice {
    Cosine,
    /// The spec's rate and period, else 0.97 every 2.4 epochs (the papers').
    Exponential,
    Constant,
}

/// What a user asked of a recipe; `None`: the spec's (with `spec_recipe`) or
/// the default. Field names are the flags' (`--lr`, `--label-smoothing`, ...),
/// which the errors name.
#[derive(Clone, Debug, PartialEq)]
pub struct RecipeRequest {
    /// Fill what is not given from the spec's `training` section.
    pub spec_recipe: bool,
    pub lr: Option<f64>,
    pub optimizer: Option<OptimizerChoice>,
    /// SGD's momentum.
    pub momentum: f64,
    pub weight_decay: Option<f64>,
    /// Weight decay on BN parameters and biases too.
    pub decay_all: bool,
    pub schedule: Option<ScheduleChoice>,
    pub warmup: Option<f64>,
    pub warmup_lr: f64,
    pub label_smoothing: Option<f64>,
    pub dropout: Option<f64>,
    pub drop_path: Option<f64>,
    pub bn_momentum: Option<f64>,
    pub ema: Option<f64>,
    pub seed: u64,
    /// Random-resized crop, flip, RandAugment and mixup (else `effc run`'s
    /// preprocessing).
    pub augment: bool,
    /// RandAugment as timm's config string.
    pub randaug: Option<String>,
    pub mixup: Option<f64>,
    pub cutmix: Option<f64>,
    pub mixup_prob: f64,
    pub mixup_switch: f64,
    /// The random-resized crop's smallest area fraction (`--scale`).
    pub scale: f64,
}

impl Default for RecipeRequest {
    /// `effc train`'s defaults.
    fn default() -> Self {
        RecipeRequest {
            spec_recipe: false,
            lr: None,
            optimizer: None,
            momentum: 0.9,
            weight_decay: None,
            decay_all: false,
            schedule: None,
            warmup: None,
            warmup_lr: 1e-6,
            label_smoothing: None,
            dropout: None,
            drop_path: None,
            bn_momentum: None,
            ema: None,
            seed: 0,
            augment: true,
            randaug: None,
            mixup: None,
            cutmix: None,
            mixup_prob: 1.0,
            mixup_switch: 0.5,
            scale: 0.08,
        }
    }
}

fn usage(message: String) -> Error {
    Error::Usage(message)
}

impl RecipeRequest {
    /// The spec's recipe where `spec_recipe` asks for it (else an empty one).
    pub fn spec_recipe(&self, model: &Model) -> spec::Recipe {
        if self.spec_recipe {
            model.training.recipe.clone()
        } else {
            spec::Recipe::default()
        }
    }

    /// The recipe: each setting as asked, else from `spec` (see
    /// [`RecipeRequest::spec_recipe`]), else its default: optimizer, learning
    /// rate (0.016 per 256 images), schedule, regularization, EMA,
    /// augmentation; `frozen` stages, at `size`.
    pub fn recipe(
        &self,
        batch: usize,
        frozen: Option<usize>,
        size: usize,
        spec: &spec::Recipe,
    ) -> Result<Recipe, Error> {
        let opt = self.optimizer.unwrap_or(match spec.optimizer {
            Some(Optimizer::Sgd) => OptimizerChoice::Sgd,
            Some(Optimizer::Nesterov) => OptimizerChoice::Nesterov,
            Some(Optimizer::AdamW) => OptimizerChoice::AdamW,
            Some(Optimizer::RmspropTf) | None => OptimizerChoice::RmspropTf,
        });
        let decay = match (self.schedule, spec.schedule) {
            (Some(ScheduleChoice::Cosine), _) | (None, Some(Schedule::Cosine) | None) => {
                Decay::Cosine { min_lr: 0.0 }
            }
            (Some(ScheduleChoice::Exponential), Some(Schedule::Exponential { rate, every }))
            | (None, Some(Schedule::Exponential { rate, every })) => {
                Decay::Exponential { rate, every }
            }
            (Some(ScheduleChoice::Exponential), _) => Decay::Exponential {
                rate: 0.97,
                every: 2.4,
            },
            (Some(ScheduleChoice::Constant), _) | (None, Some(Schedule::Constant)) => {
                Decay::Constant
            }
        };
        let label_smoothing = self.label_smoothing.or(spec.label_smoothing).unwrap_or(0.1);
        let bn_momentum = self.bn_momentum.or(spec.bn_momentum).unwrap_or(0.1);
        let ema = self.ema.or(spec.ema);
        let optimizer = match opt {
            OptimizerChoice::Sgd => Kind::Sgd {
                momentum: self.momentum,
                nesterov: false,
            },
            OptimizerChoice::Nesterov => Kind::Sgd {
                momentum: self.momentum,
                nesterov: true,
            },
            OptimizerChoice::RmspropTf => Kind::rmsprop_tf(None),
            OptimizerChoice::AdamW => Kind::adamw(),
        };
        for (flag, v, lo, hi) in [
            ("--label-smoothing", Some(label_smoothing), 0.0, 1.0),
            ("--dropout", self.dropout, 0.0, 0.999),
            ("--drop-path", self.drop_path, 0.0, 0.999),
            ("--bn-momentum", Some(bn_momentum), 0.0, 1.0),
            ("--ema", ema, 0.0, 1.0),
            ("--scale", Some(self.scale), 0.0, 1.0),
            ("--mixup", self.mixup, 0.0, 1e3),
            ("--cutmix", self.cutmix, 0.0, 1e3),
            ("--mixup-prob", Some(self.mixup_prob), 0.0, 1.0),
            ("--mixup-switch", Some(self.mixup_switch), 0.0, 1.0),
        ] {
            if let Some(v) = v {
                if !(lo..=hi).contains(&v) {
                    return Err(usage(format!("{flag} {v} is not in [{lo}, {hi}]")));
                }
            }
        }
        let lr = self
            .lr
            .or(spec.lr_at(batch))
            .unwrap_or(0.016 * batch as f64 / 256.0);
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(usage(format!(
                "--lr {lr}: the learning rate must be positive"
            )));
        }
        Ok(Recipe {
            batch,
            lr,
            optimizer,
            weight_decay: self.weight_decay.or(spec.weight_decay).unwrap_or(1e-5),
            decay_all: self.decay_all,
            decay,
            warmup_epochs: self.warmup.or(spec.warmup).unwrap_or(0.0),
            warmup_lr: self.warmup_lr,
            step: StepConfig {
                label_smoothing,
                bn_momentum,
                dropout: self.dropout,
                drop_path: self.drop_path,
                frozen,
            },
            ema,
            seed: self.seed,
            augment: self.augment,
            min_scale: self.scale,
            randaugment: self
                .randaug
                .as_deref()
                .map(RandAugment::parse)
                .transpose()
                .map_err(|e| usage(e.to_string()))?,
            mixup: (self.mixup.is_some() || self.cutmix.is_some()).then(|| Mixup {
                mixup_alpha: self.mixup.unwrap_or(0.0),
                cutmix_alpha: self.cutmix.unwrap_or(0.0),
                prob: self.mixup_prob,
                switch_prob: self.mixup_switch,
            }),
            size,
        })
    }
}

/// `--freeze`: `stem` or a stage `0..stages` (timm's `blocks.K`) as the
/// number of frozen layers of [`StepConfig::frozen`].
pub fn frozen(freeze: Option<&str>, stages: usize) -> Result<Option<usize>, Error> {
    match freeze {
        None => Ok(None),
        Some("stem") => Ok(Some(0)),
        Some(k) => match k.parse::<usize>() {
            Ok(k) if k < stages => Ok(Some(k + 1)),
            _ => Err(usage(format!(
                "--freeze {k}: give `stem` or a stage 0..={} (timm's `blocks.K`; the model has {stages} stages)",
                stages.saturating_sub(1)
            ))),
        },
    }
}

/// The data a user names: `fashion-mnist[=DIR]`, `mnist=DIR` or an image folder.
pub fn source(arg: &str) -> Source {
    match arg.split_once('=') {
        Some(("fashion-mnist", dir)) => Source::FashionMnist(dir.into()),
        Some(("mnist", dir)) => Source::Mnist(dir.into()),
        _ if arg == "fashion-mnist" => Source::FashionMnist(FASHION_MNIST_DIR.into()),
        _ => Source::Folder(arg.into()),
    }
}

/// Checks the checkpoint directory as the output policy checks a file: a
/// directory or nothing yet, in a directory that exists, not `out`.
pub fn check_checkpoint_dir(dir: &Path, out: &Path) -> Result<(), Error> {
    match FileKind::at(dir) {
        None | Some(FileKind::Directory) => {}
        Some(kind) => {
            return Err(usage(format!(
                "--checkpoints `{}` is {kind}: checkpoints go in a directory (created when missing); choose a directory path",
                dir.display()
            )))
        }
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if FileKind::at(parent) != Some(FileKind::Directory) {
        return Err(usage(format!(
            "--checkpoints `{}`: its directory `{}` does not exist",
            dir.display(),
            parent.display()
        )));
    }
    if effc_files::same_file(dir, out) {
        return Err(usage(format!(
            "--checkpoints `{}` and -o `{}` are the same path: give each its own",
            dir.display(),
            out.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_effc_trains() {
        let r = RecipeRequest::default()
            .recipe(64, None, 32, &spec::Recipe::default())
            .unwrap();
        assert_eq!(r.lr, 0.016 * 64.0 / 256.0);
        assert_eq!(r.weight_decay, 1e-5);
        assert_eq!(r.step.label_smoothing, 0.1);
        assert_eq!(r.step.bn_momentum, 0.1);
        assert!(matches!(r.decay, Decay::Cosine { .. }));
        assert!(matches!(r.optimizer, Kind::RmsPropTf { .. }));
        assert!(r.augment && r.mixup.is_none() && r.ema.is_none());
        assert_eq!((r.batch, r.size), (64, 32));
    }

    #[test]
    fn a_given_setting_wins_over_the_spec_and_the_spec_over_the_default() {
        let spec = spec::Recipe {
            optimizer: Some(Optimizer::Sgd),
            schedule: Some(Schedule::Exponential {
                rate: 0.5,
                every: 3.0,
            }),
            label_smoothing: Some(0.2),
            ..spec::Recipe::default()
        };
        let asked = RecipeRequest {
            label_smoothing: Some(0.3),
            ..RecipeRequest::default()
        };
        let r = asked.recipe(32, Some(2), 16, &spec).unwrap();
        assert_eq!(r.step.label_smoothing, 0.3);
        assert_eq!(r.step.frozen, Some(2));
        assert!(matches!(
            r.optimizer,
            Kind::Sgd {
                nesterov: false,
                ..
            }
        ));
        assert!(
            matches!(r.decay, Decay::Exponential { rate, every } if rate == 0.5 && every == 3.0)
        );
        let exp = RecipeRequest {
            schedule: Some(ScheduleChoice::Exponential),
            ..RecipeRequest::default()
        };
        let r = exp.recipe(32, None, 16, &spec::Recipe::default()).unwrap();
        assert!(
            matches!(r.decay, Decay::Exponential { rate, every } if rate == 0.97 && every == 2.4)
        );
    }

    #[test]
    fn out_of_range_settings_name_their_flag() {
        let spec = spec::Recipe::default();
        for (asked, want) in [
            (
                RecipeRequest {
                    dropout: Some(1.0),
                    ..RecipeRequest::default()
                },
                "--dropout 1 is not in [0, 0.999]",
            ),
            (
                RecipeRequest {
                    mixup_prob: -0.5,
                    ..RecipeRequest::default()
                },
                "--mixup-prob -0.5 is not in [0, 1]",
            ),
            (
                RecipeRequest {
                    lr: Some(f64::INFINITY),
                    ..RecipeRequest::default()
                },
                "--lr inf: the learning rate must be positive",
            ),
        ] {
            match asked.recipe(8, None, 16, &spec) {
                Err(Error::Usage(m)) => assert_eq!(m, want),
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn freeze_takes_the_stem_or_a_stage_of_the_model() {
        assert_eq!(frozen(None, 7).unwrap(), None);
        assert_eq!(frozen(Some("stem"), 7).unwrap(), Some(0));
        assert_eq!(frozen(Some("6"), 7).unwrap(), Some(7));
        let e = frozen(Some("7"), 7).unwrap_err().to_string();
        assert!(
            e.starts_with("--freeze 7: give `stem` or a stage 0..=6"),
            "{e}"
        );
        assert!(frozen(Some("x"), 7).is_err());
    }

    #[test]
    fn data_names_a_data_set_or_a_folder() {
        assert!(matches!(source("mnist=/d"), Source::Mnist(p) if p == Path::new("/d")));
        assert!(
            matches!(source("fashion-mnist"), Source::FashionMnist(p) if p == Path::new(FASHION_MNIST_DIR))
        );
        assert!(matches!(source("imgs"), Source::Folder(p) if p == Path::new("imgs")));
    }

    #[test]
    fn a_checkpoint_dir_is_a_directory_beside_the_output() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("w.safetensors");
        assert!(check_checkpoint_dir(&d.path().join("w.ckpt"), &out).is_ok());
        std::fs::write(&out, b"x").unwrap();
        let e = check_checkpoint_dir(&out, &out).unwrap_err().to_string();
        assert!(e.contains("checkpoints go in a directory"), "{e}");
        let e = check_checkpoint_dir(&d.path().join("no/w.ckpt"), &out)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
    }
}
