//! `effc run`: a model with real weights on images or a saved input tensor, on
//! the GPU or the CPU reference executor, returning a [`RunReport`].
//!
//! The procedure: every file it reads and writes declared first (`--save` is
//! refused when it is an input, a device, a FIFO or a directory), the model
//! resolved, what it will allocate checked against the host's and the adapter's
//! limits, the device chosen, the checkpoint loaded (folded weights that overflow
//! refused on every device), the inputs read, the forwards run in chunks, the
//! output checked finite, saved, and summarized.

mod levels;
mod tensors;

use std::path::PathBuf;

use effc_ir::Model;
use effc_plan::{FeatureOutput, Plan, Precision};
use effc_weights::Weights;
use serde::Serialize;

use crate::device::{Chosen, Device};
use crate::files::{Input, OutputFile, Outputs};
use crate::limits::{self, Budget, Need};
use crate::progress::Progress;
use crate::{Error, ModelRequest};

pub use levels::LevelSummary;

/// What to run the model on.
#[derive(Clone, Debug, PartialEq)]
pub enum RunInput {
    /// PNG or JPEG images, preprocessed as timm does.
    Images(Vec<PathBuf>),
    /// The tensor `input` (NCHW f32) of a safetensors file.
    Tensor(PathBuf),
}

/// A run: the model (with its weights, precision and tuning), where, on what.
#[derive(Clone, Debug)]
pub struct RunRequest {
    /// Must have `weights`.
    pub model: ModelRequest,
    /// How the user named the model (for hints: `effc tune MODEL`).
    pub model_arg: String,
    /// `None`: the GPU when a hardware adapter exists, else the CPU.
    pub device: Option<Device>,
    pub input: RunInput,
    /// Write the output tensor(s) to this safetensors file.
    pub save: Option<PathBuf>,
    /// Images per forward.
    pub batch: usize,
    /// Classes per image in the report.
    pub top: usize,
}

/// One class of an image's top-k.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    pub class: usize,
    pub name: String,
    pub prob: f32,
}

/// What the model gave, by what it ends at.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunOutput {
    /// A classifier: each image's top classes.
    Classes {
        top: Vec<Vec<Prediction>>,
        /// Every image's logits, one after another.
        #[serde(skip)]
        logits: Vec<f32>,
    },
    /// `classes = 0`: each image's embedding (the pooled head).
    Embedding { embedding: Vec<Vec<f32>> },
    /// A backbone: each image's levels, summarized (the values are in `data`).
    Levels {
        images: Vec<Vec<LevelSummary>>,
        /// Per level, its NCHW values for the whole batch.
        #[serde(skip)]
        data: Vec<(FeatureOutput, Vec<f32>)>,
    },
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub model: String,
    /// Which device ran and why.
    pub device: String,
    /// Each input's label: the image path, or `FILE[i]` for a tensor's images.
    pub labels: Vec<String>,
    pub output: RunOutput,
    /// At f16 on the GPU: weights beyond f16's range, clamped to ±65504.
    pub clamped_weights: Option<usize>,
    /// The file written, with `save`.
    pub saved: Option<PathBuf>,
}

/// The inputs of a run, read: values (NCHW, per image after image), labels.
struct Batch {
    data: Vec<f32>,
    labels: Vec<String>,
}

/// Runs `req`; `progress` hears which device was chosen, warnings and how many
/// images are done.
pub fn run(req: &RunRequest, progress: &dyn Progress) -> Result<RunReport, Error> {
    let Some(w) = &req.model.weights else {
        return Err(Error::Usage("a run needs weights (--weights)".into()));
    };
    if req.batch == 0 || req.top == 0 {
        return Err(Error::Usage("--batch and --top must be at least 1".into()));
    }
    let mut files = Outputs::new();
    req.model.declare_inputs(&mut files)?;
    match &req.input {
        RunInput::Tensor(p) => files.input("the --input tensor", p)?,
        RunInput::Images(images) => {
            for p in images {
                files.input("an input image", p)?;
            }
        }
    }
    let save = req
        .save
        .as_ref()
        .map(|p| files.file("--save", p))
        .transpose()?;
    let model = req.model.resolve()?.model;
    let plan = effc_plan::plan_at(&model, req.model.precision);
    let choice = choose_within_limits(req, &model, &plan, &w.path)?;
    let device = choice.note().to_string();
    progress.note(&device);
    let weights = Weights::load(&w.path, &model, w.naming)?;
    // Folded weights that overflow are refused on every device and at every
    // precision (the GPU's packer refuses them too; the CPU folds nothing).
    effc_plan::check_folding(&model, weights.by_name(&model))?;
    let batch = read_inputs(&req.input, &model)?;
    if batch.labels.is_empty() {
        return Err(Error::Usage(
            "no input: give images, or --input with a non-empty batch".into(),
        ));
    }
    let (output, clamped) = forward(req, &model, &weights, &batch, choice, progress)?;
    check_finite(&output, &batch.labels, plan.output_len)?;
    let output = summarize(&model, &plan, output, batch.labels.len(), req.top);
    if let Some(f) = &save {
        save_output(f, &output, plan.output_len, batch.labels.len())?;
    }
    Ok(RunReport {
        model: model.name.clone(),
        device,
        labels: batch.labels,
        output,
        clamped_weights: clamped,
        saved: save.map(|f| f.path().to_path_buf()),
    })
}

/// Checks what the run will allocate on the host, chooses the device, and checks
/// again with the device's own needs (and, on a GPU, the adapter's limits).
fn choose_within_limits(
    req: &RunRequest,
    model: &Model,
    plan: &Plan,
    checkpoint: &std::path::Path,
) -> Result<Chosen, Error> {
    let size = crate::files::input_size(checkpoint, Input::CHECKPOINT)?;
    let budget = Budget::host()?;
    let images = match &req.input {
        RunInput::Images(v) => v.len(),
        RunInput::Tensor(_) => 0,
    };
    // What every device needs: the checkpoint as f32, the inputs, the outputs.
    let mut need = Need::default();
    need.extend(limits::weights(model, Some(size)));
    if images > 0 {
        let (w, b) = limits::inputs(model, images);
        need.add(w, b);
        let (w, b) = limits::preprocessing(model);
        need.add(w, b);
    }
    let doing = format!(
        "running `{}` at {}x{}",
        model.name, model.resolution, model.resolution
    );
    need.check(&doing, &budget)?;
    let choice = crate::choose(req.device, req.model.precision)?;
    match &choice {
        Chosen::Cpu { .. } | Chosen::Reference { .. } => need.extend(limits::cpu_executor(model)),
        Chosen::Gpu { gpu, .. } => {
            // Sized at the precision it runs at; tuned tiles change only the
            // small pooling-sum buffers, which the runtime's own fit check covers.
            let n = if images > 0 {
                images.min(req.batch)
            } else {
                req.batch
            };
            limits::check_gpu(plan, n, &gpu.adapter.to_string(), &gpu.limits)?;
            need.extend(limits::gpu_host(plan, n, crate::device::is_software(gpu)));
        }
    }
    need.check(&doing, &budget)?;
    Ok(choice)
}

/// Images (preprocessed like timm) or a saved tensor, with their labels.
fn read_inputs(input: &RunInput, model: &Model) -> Result<Batch, Error> {
    match input {
        RunInput::Tensor(p) => {
            let (data, n) = tensors::read_input(p, model)?;
            let labels = (0..n).map(|i| format!("{}[{i}]", p.display())).collect();
            Ok(Batch { data, labels })
        }
        RunInput::Images(images) => {
            let per_image: usize = model.input.iter().product();
            let mut data = Vec::with_capacity(images.len() * per_image);
            for img in images {
                data.extend(effc_weights::load_image(img, model)?);
            }
            let labels = images.iter().map(|p| p.display().to_string()).collect();
            Ok(Batch { data, labels })
        }
    }
}

/// Every forward, `req.batch` images at a time: per image its output values (a
/// backbone's levels one after another), and at f16 on the GPU the number of
/// clamped weights.
fn forward(
    req: &RunRequest,
    model: &Model,
    weights: &Weights,
    batch: &Batch,
    choice: Chosen,
    progress: &dyn Progress,
) -> Result<(Vec<f32>, Option<usize>), Error> {
    let per_image: usize = model.input.iter().product();
    let total = batch.labels.len();
    let chunk = req.batch;
    let mut out = Vec::new();
    match choice {
        Chosen::Cpu { .. } if !model.is_backbone() => {
            let cm =
                effc_cpu::CpuModel::compile(model, weights.by_name(model), chunk.min(total), 0)?;
            for (i, part) in batch.data.chunks(per_image * chunk).enumerate() {
                let n = part.len() / per_image;
                out.extend(cm.forward(part, n)?);
                progress.items(i * chunk + n, total);
            }
            Ok((out, None))
        }
        c @ (Chosen::Cpu { .. } | Chosen::Reference { .. }) => {
            if matches!(c, Chosen::Cpu { .. }) {
                progress.note("effc's CPU backend does not read a backbone's feature levels back yet: running the reference executor");
            }
            let ex = effc_reference::Executor::new(model, weights)?;
            for (i, part) in batch.data.chunks(per_image * chunk).enumerate() {
                let n = part.len() / per_image;
                if model.is_backbone() {
                    out.extend(levels::cpu_forward(&ex, part, n)?);
                } else {
                    out.extend(ex.run(part, n)?.data);
                }
                progress.items(i * chunk + n, total);
            }
            Ok((out, None))
        }
        Chosen::Gpu { gpu, .. } => {
            let (tuning, _) =
                crate::tuning::cached(&gpu, req.model.tuning, &req.model_arg, progress);
            let compiled = effc_runtime::compile_model_with(
                gpu,
                model,
                &tuning,
                req.model.precision,
                weights.by_name(model),
                chunk.min(total),
            )?;
            let clamped =
                (req.model.precision == Precision::F16).then(|| compiled.clamped_weights());
            if let Some(n) = clamped.filter(|&n| n > 0) {
                progress.warn(&format!("{n} weights are beyond f16's range and were clamped to ±65504 (run at --precision f32 for the checkpoint's values)"));
            }
            for (i, part) in batch.data.chunks(per_image * chunk).enumerate() {
                let n = part.len() / per_image;
                out.extend(compiled.forward(part, n)?);
                progress.items(i * chunk + n, total);
            }
            Ok((out, clamped))
        }
    }
}

/// A NaN or infinite output is an error, never a printed `NaN%`: the weights or
/// the input do not describe a working network.
fn check_finite(output: &[f32], labels: &[String], per_image: usize) -> Result<(), Error> {
    let bad = output.iter().filter(|v| !v.is_finite()).count();
    if bad == 0 {
        return Ok(());
    }
    let first = output.iter().position(|v| !v.is_finite()).unwrap_or(0) / per_image.max(1);
    Err(Error::Invalid(format!(
        "the network's output has {bad} NaN or infinite values (the first for `{}`): the weights or the input overflow; no result is printed",
        labels.get(first).map_or("?", String::as_str)
    )))
}

/// The output as the report shows it: top classes, embeddings, or levels.
fn summarize(model: &Model, plan: &Plan, output: Vec<f32>, n: usize, top: usize) -> RunOutput {
    let out_len = plan.output_len;
    if model.is_backbone() {
        let data = levels::split(plan, &output, n);
        let images = (0..n).map(|i| levels::summary(&data, i)).collect();
        return RunOutput::Levels { images, data };
    }
    if model.classes == 0 {
        let embedding = output.chunks(out_len).map(<[f32]>::to_vec).collect();
        return RunOutput::Embedding { embedding };
    }
    let top = output
        .chunks(out_len)
        .map(|row| {
            effc_weights::top_k(row, top.min(out_len))
                .into_iter()
                .map(|(class, prob)| Prediction {
                    class,
                    name: effc_weights::class_name(class, model.classes),
                    prob,
                })
                .collect()
        })
        .collect();
    RunOutput::Classes {
        top,
        logits: output,
    }
}

/// `--save`: `logits` or `features` `[N, len]`, or `features.<level>` NCHW.
fn save_output(f: &OutputFile, output: &RunOutput, out_len: usize, n: usize) -> Result<(), Error> {
    match output {
        RunOutput::Levels { data, .. } => levels::save(f, data, n),
        RunOutput::Embedding { embedding } => {
            tensors::save(f, "embedding", &embedding.concat(), vec![n, out_len])
        }
        RunOutput::Classes { logits, .. } => tensors::save(f, "logits", logits, vec![n, out_len]),
    }
}

#[cfg(test)]
mod tests {
    use super::check_finite;

    #[test]
    fn a_non_finite_output_is_an_error_naming_the_image() {
        let labels = vec!["a.png".to_string(), "b.png".to_string()];
        assert!(check_finite(&[0.1, 0.2, 0.3, 0.4], &labels, 2).is_ok());
        let e = check_finite(&[0.1, 0.2, f32::NAN, f32::INFINITY], &labels, 2)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2 NaN or infinite values (the first for `b.png`)"),
            "{e}"
        );
    }
}
