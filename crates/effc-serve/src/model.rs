//! A served model: resolved once through `effc_driver::ModelRequest`, its
//! weights loaded once, run on the device the driver chose (the compiled WGSL
//! kernels on a wgpu adapter, effc's CPU backend, or the CPU reference executor
//! where asked or where the CPU backend lacks a feature), and what the
//! protocol says about it (its input, its outputs).

use std::path::PathBuf;
use std::sync::Arc;

use effc_driver::files::Input;
use effc_driver::limits::{self, Budget, Need};
use effc_driver::{Chosen, ModelRequest, WeightsRequest};
use effc_ir::Model;
use effc_plan::{Plan, Precision};
use effc_weights::Weights;

use crate::Error;

/// `--model NAME=MODEL:WEIGHTS`: the name clients use, the model (a built-in or a
/// `.enet` file) and its checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelArg {
    pub name: String,
    pub model: String,
    pub weights: PathBuf,
}

impl std::str::FromStr for ModelArg {
    type Err = String;

    fn from_str(s: &str) -> Result<ModelArg, String> {
        let usage = "give NAME=MODEL:WEIGHTS, e.g. lite0=lite0:efficientnet-lite0.safetensors (MODEL is a built-in model or a .enet file, WEIGHTS its safetensors checkpoint)";
        let Some((name, rest)) = s.split_once('=') else {
            return Err(format!("`{s}` has no `=`: {usage}"));
        };
        let Some((model, weights)) = rest.split_once(':') else {
            return Err(format!("`{s}` names no checkpoint: {usage}"));
        };
        if !valid_name(name) {
            return Err(format!(
                "`{name}` is not a model name clients can use in a URL: letters, digits, `-`, `_` and `.` (at most 64)"
            ));
        }
        if model.is_empty() || weights.is_empty() {
            return Err(format!("`{s}`: {usage}"));
        }
        Ok(ModelArg {
            name: name.to_string(),
            model: model.to_string(),
            weights: PathBuf::from(weights),
        })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name != "."
        && name != ".."
}

/// One output of a model, as the protocol names it.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputSpec {
    pub name: String,
    /// Per image (the batch dimension is not included).
    pub shape: Vec<usize>,
    pub kind: OutputKind,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OutputKind {
    /// The classifier's logits (raw output 0).
    Logits,
    /// Their softmax, computed as `effc_weights::top_k` computes it (f64, after
    /// subtracting the largest logit).
    Probabilities,
    /// The embedding (the pooled head) of a model with `classes = 0` (raw output 0).
    Embedding,
    /// A backbone's feature level: raw output `index`, NCHW.
    Level(usize),
}

impl OutputSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What runs a batch.
pub enum Backend {
    /// effc's CPU backend (`effc-cpu`: the fused plan on the CPU).
    Cpu(Box<effc_cpu::CpuModel>),
    /// The CPU reference executor (`--device reference`, and backbones on `cpu`).
    Reference(Box<effc_reference::Executor>),
    Gpu(Box<effc_runtime::CompiledModel>),
}

/// A model loaded for serving.
pub struct Served {
    pub name: String,
    /// Always `1`: one version per name.
    pub version: String,
    pub model: Model,
    pub plan: Plan,
    pub outputs: Vec<OutputSpec>,
    /// Rows per forward at most (`--max-batch`).
    pub max_batch: usize,
    /// Which device and why.
    pub device: String,
}

impl Served {
    /// Values of one input image (`C·H·W`).
    pub fn per_image(&self) -> usize {
        self.model.input.iter().product()
    }

    /// The raw outputs a forward gives, per image (the derived ones, the
    /// probabilities, are computed from them).
    pub fn raw_lens(&self) -> Vec<usize> {
        if self.model.is_backbone() {
            self.plan.features.iter().map(|f| f.len()).collect()
        } else {
            vec![self.plan.output_len]
        }
    }
}

/// Resolves and loads `arg` on `device` (shared by every model of a server),
/// checking its memory needs first, as `effc run` does.
pub fn load(
    arg: &ModelArg,
    device: &Chosen,
    precision: Precision,
    max_batch: usize,
) -> Result<(Served, Backend), Error> {
    let mut request = ModelRequest::from_arg(&arg.model);
    request.precision = precision;
    request.weights = Some(WeightsRequest {
        path: arg.weights.clone(),
        naming: None,
    });
    let load_err = |e: effc_driver::Error| Error::Load {
        name: arg.name.clone(),
        message: e.to_string(),
    };
    let model = request.resolve().map_err(load_err)?.model;
    let plan = effc_plan::plan_at(&model, precision);
    let checkpoint = effc_driver::files::input_size(&arg.weights, Input::CHECKPOINT)
        .map_err(|e| load_err(e.into()))?;
    let budget = Budget::host().map_err(load_err)?;
    let mut need = Need::default();
    need.extend(limits::weights(&model, Some(checkpoint)));
    let (w, b) = limits::inputs(&model, max_batch);
    need.add(w, b);
    match device {
        Chosen::Cpu { .. } | Chosen::Reference { .. } => need.extend(limits::cpu_executor(&model)),
        Chosen::Gpu { gpu, .. } => {
            limits::check_gpu(&plan, max_batch, &gpu.adapter.to_string(), &gpu.limits)
                .map_err(load_err)?;
            need.extend(limits::gpu_host(
                &plan,
                max_batch,
                effc_driver::device::is_software(gpu),
            ));
        }
    }
    let doing = format!(
        "serving `{}` ({} at {}x{}, --max-batch {max_batch})",
        arg.name, model.name, model.resolution, model.resolution
    );
    need.check(&doing, &budget).map_err(load_err)?;
    let weights = Weights::load(&arg.weights, &model, None).map_err(|e| load_err(e.into()))?;
    let mut note = device.note().to_string();
    let backend = match device {
        Chosen::Cpu { .. } if !model.is_backbone() => Backend::Cpu(Box::new(
            effc_cpu::CpuModel::compile(&model, weights.by_name(&model), max_batch, 0)
                .map_err(|e| load_err(e.into()))?,
        )),
        Chosen::Cpu { .. } | Chosen::Reference { .. } => {
            if matches!(device, Chosen::Cpu { .. }) {
                note += "; effc's CPU backend does not read a backbone's feature levels back yet: this model runs on the reference executor";
            }
            Backend::Reference(Box::new(
                effc_reference::Executor::new(&model, &weights).map_err(|e| Error::Load {
                    name: arg.name.clone(),
                    message: e.to_string(),
                })?,
            ))
        }
        Chosen::Gpu { gpu, .. } => {
            let tuning = match effc_runtime::tune::load_tuning(&gpu.adapter) {
                Ok(Some((t, _, _))) => t,
                _ => effc_plan::Tuning::default(),
            };
            Backend::Gpu(Box::new(
                effc_runtime::compile_model_with(
                    Arc::clone(gpu),
                    &model,
                    &tuning,
                    precision,
                    weights.by_name(&model),
                    max_batch,
                )
                .map_err(|e| load_err(e.into()))?,
            ))
        }
    };
    let outputs = outputs(&model, &plan);
    Ok((
        Served {
            name: arg.name.clone(),
            version: "1".into(),
            model,
            plan,
            outputs,
            max_batch,
            device: note,
        },
        backend,
    ))
}

/// The outputs of a model: `logits` and `probabilities` for a classifier,
/// `embedding` for a model without classifier, `features.<level>` per level of a backbone.
pub fn outputs(model: &Model, plan: &Plan) -> Vec<OutputSpec> {
    if model.is_backbone() {
        return plan
            .features
            .iter()
            .enumerate()
            .map(|(i, f)| OutputSpec {
                name: format!("features.{}", f.level),
                shape: vec![f.channels, f.h, f.w],
                kind: OutputKind::Level(i),
            })
            .collect();
    }
    if model.classes == 0 {
        return vec![OutputSpec {
            name: "embedding".into(),
            shape: vec![plan.output_len],
            kind: OutputKind::Embedding,
        }];
    }
    vec![
        OutputSpec {
            name: "logits".into(),
            shape: vec![model.classes],
            kind: OutputKind::Logits,
        },
        OutputSpec {
            name: "probabilities".into(),
            shape: vec![model.classes],
            kind: OutputKind::Probabilities,
        },
    ]
}

impl Backend {
    /// One forward of `n` images: per raw output (see [`Served::raw_lens`]) the
    /// values of all `n` images, image after image.
    pub fn forward(
        &self,
        served: &Served,
        input: &[f32],
        n: usize,
    ) -> Result<Vec<Vec<f32>>, String> {
        let lens = served.raw_lens();
        match self {
            Backend::Cpu(cm) => Ok(vec![cm.forward(input, n).map_err(|e| e.to_string())?]),
            Backend::Reference(ex) => {
                if served.model.is_backbone() {
                    let levels = ex.features(input, n).map_err(|e| e.to_string())?;
                    Ok(levels.into_iter().map(|t| t.data).collect())
                } else {
                    Ok(vec![ex.run(input, n).map_err(|e| e.to_string())?.data])
                }
            }
            Backend::Gpu(compiled) => {
                let out = compiled.forward(input, n).map_err(|e| e.to_string())?;
                if !served.model.is_backbone() {
                    return Ok(vec![out]);
                }
                // Per image, every level one after another: regrouped per level.
                let per_image: usize = lens.iter().sum();
                let mut levels: Vec<Vec<f32>> =
                    lens.iter().map(|l| Vec::with_capacity(l * n)).collect();
                for image in out.chunks(per_image).take(n) {
                    let mut at = 0;
                    for (level, len) in levels.iter_mut().zip(&lens) {
                        level.extend_from_slice(&image[at..at + len]);
                        at += len;
                    }
                }
                Ok(levels)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_args_name_model_and_weights() {
        let a: ModelArg = "lite0=lite0:w/x.safetensors".parse().unwrap();
        assert_eq!(
            a,
            ModelArg {
                name: "lite0".into(),
                model: "lite0".into(),
                weights: "w/x.safetensors".into()
            }
        );
        assert!("lite0".parse::<ModelArg>().unwrap_err().contains("no `=`"));
        assert!("a=lite0"
            .parse::<ModelArg>()
            .unwrap_err()
            .contains("names no checkpoint"));
        assert!("a/b=lite0:w"
            .parse::<ModelArg>()
            .unwrap_err()
            .contains("not a model name"));
        assert!("..=lite0:w".parse::<ModelArg>().is_err());
    }

    #[test]
    fn outputs_follow_the_model_kind() {
        let build = |opts: effc_ir::Options| {
            let m = Model::build(&effc_ir::Spec::builtin("lite0").unwrap(), &opts).unwrap();
            let p = effc_plan::plan(&m);
            outputs(&m, &p)
        };
        let names =
            |o: Vec<OutputSpec>| o.into_iter().map(|o| (o.name, o.shape)).collect::<Vec<_>>();
        let small = effc_ir::Options {
            resolution: Some(64),
            ..Default::default()
        };
        assert_eq!(
            names(build(small.clone())),
            [
                ("logits".to_string(), vec![1000]),
                ("probabilities".to_string(), vec![1000])
            ]
        );
        assert_eq!(
            names(build(effc_ir::Options {
                classes: Some(0),
                ..small.clone()
            })),
            [("embedding".to_string(), vec![1280])]
        );
        assert_eq!(
            names(build(effc_ir::Options {
                features: Some(vec![3, 4]),
                ..small
            })),
            [
                ("features.3".to_string(), vec![112, 4, 4]),
                ("features.4".to_string(), vec![320, 2, 2])
            ]
        );
    }
}
