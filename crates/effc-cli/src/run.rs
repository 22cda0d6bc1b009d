//! `effc run`: classify images (or run a saved input tensor) on the GPU or the CPU.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use effc_driver::files::{Input, OutputFile, Outputs};
use effc_driver::limits::{self, Budget, Need};
use effc_driver::{Chosen, Device};
use effc_ir::{Model, Naming};
use effc_weights::Weights;

use crate::common::ModelArgs;
use crate::output::outln;
use crate::{fail, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Checkpoint (safetensors: f32, f16 or bf16; timm, torchvision or TF-port names).
    #[arg(long, short, value_name = "W")]
    weights: PathBuf,
    /// Where to run: the GPU (default when a hardware adapter exists), effc's CPU
    /// backend (`cpu`, default otherwise) or the CPU reference executor
    /// (`reference`); `gpu` also takes a software adapter.
    #[arg(long, value_name = "gpu|cpu|reference")]
    device: Option<Device>,
    /// Force the checkpoint's naming instead of detecting it.
    #[arg(long, value_name = "effc|timm|torchvision|tf")]
    naming: Option<Naming>,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5, value_name = "K")]
    top: usize,
    /// Print JSON: one object per image, `{"image", "top": [{"class", "name", "prob"}]}`.
    #[arg(long)]
    json: bool,
    /// Run on the tensor `input` (NCHW f32) of a safetensors file instead of images.
    #[arg(long, value_name = "X.safetensors", conflicts_with = "images")]
    input: Option<PathBuf>,
    /// Write the output tensor (`logits`, or `features` when classes is 0; with
    /// --features, `features.<level>` per level, NCHW) to a safetensors file.
    #[arg(long, value_name = "Y.safetensors")]
    save: Option<PathBuf>,
    /// Images per forward (more images run in several forwards).
    #[arg(long, default_value_t = 16, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    batch: u16,
    /// On the GPU, use the cost model's tiles even where `effc tune` cached faster ones.
    #[arg(long)]
    untuned: bool,
    /// On the GPU, how weights and activations are stored (f16: half the memory,
    /// f32 sums; `EFFC_F16=packed` forces the packed spelling).
    #[arg(long, default_value = "f32", value_name = "f32|f16")]
    precision: effc_plan::Precision,
    /// PNG or JPEG images.
    #[arg(value_name = "IMAGE", required_unless_present = "input")]
    images: Vec<PathBuf>,
}

/// Reads the `input` tensor of a safetensors file: NCHW f32 for this model.
fn read_input(path: &Path, model: &Model) -> Result<(Vec<f32>, usize), Failure> {
    let bytes = effc_driver::files::read(path, Input::TENSORS)?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| format!("`{}` is not a valid safetensors file: {e}", path.display()))?;
    let t = st.tensor("input").map_err(|_| {
        let names: Vec<String> = st.names().into_iter().take(8).map(str::to_string).collect();
        format!(
            "`{}` has no tensor named `input` (it has: {})",
            path.display(),
            names.join(", ")
        )
    })?;
    let [c, h, w] = model.input;
    let shape = t.shape();
    if shape.len() != 4 || shape[1..] != [c, h, w] {
        return Err(format!(
            "`{}`: tensor `input` has shape {:?}, model `{}` takes [N, {c}, {h}, {w}] (NCHW; --resolution changes H and W)",
            path.display(),
            shape,
            model.name
        )
        .into());
    }
    if t.dtype() != safetensors::Dtype::F32 {
        return Err(format!(
            "`{}`: tensor `input` is {:?}, expected F32",
            path.display(),
            t.dtype()
        )
        .into());
    }
    let data: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let bad = data.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        let first = data.iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(format!(
            "`{}`: tensor `input` has {bad} NaN or infinite values (the first in image {}); a network input must be finite",
            path.display(),
            first / (c * h * w).max(1)
        )
        .into());
    }
    Ok((data, shape[0]))
}

fn save(file: &OutputFile, name: &str, data: &[f32], shape: Vec<usize>) -> Result<(), Failure> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &bytes)
        .map_err(|e| format!("cannot build tensor `{name}`: {e}"))?;
    let out = safetensors::serialize([(name, view)], None)
        .map_err(|e| format!("cannot serialize `{name}`: {e}"))?;
    Ok(file.write(&out)?)
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let mut request = args.model.request();
    request.precision = args.precision;
    request.weights = Some(effc_driver::WeightsRequest {
        path: args.weights.clone(),
        naming: args.naming,
    });
    // Every file it reads and writes, before anything runs: --save is refused
    // when it is an input, a device, a FIFO or a directory.
    let mut files = Outputs::new();
    request.declare_inputs(&mut files).map_err(fail)?;
    if let Some(p) = &args.input {
        files.input("the --input tensor", p)?;
    }
    for p in &args.images {
        files.input("an input image", p)?;
    }
    let save_to = args
        .save
        .as_ref()
        .map(|p| files.file("--save", p))
        .transpose()?;
    let model = request.resolve().map_err(fail)?.model;
    let naming = args.naming;
    let checkpoint = effc_driver::files::input_size(&args.weights, Input::CHECKPOINT)?;
    let budget = Budget::host().map_err(fail)?;
    // Sized at the precision it runs at; tuned tiles change only the small
    // pooling-sum buffers, which the runtime's own fit check covers.
    let plan = effc_plan::plan_at(&model, args.precision);
    // What every device needs: the checkpoint as f32, the inputs, the outputs.
    let images = if args.input.is_some() {
        0
    } else {
        args.images.len()
    };
    let mut need = Need::default();
    need.extend(limits::weights(&model, Some(checkpoint)));
    if images > 0 {
        let (w, b) = limits::inputs(&model, images);
        need.add(w, b);
        let (w, b) = limits::preprocessing(&model);
        need.add(w, b);
    }
    let doing = format!(
        "running `{}` at {}x{}",
        model.name, model.resolution, model.resolution
    );
    need.check(&doing, &budget).map_err(fail)?;

    let per_image: usize = model.input.iter().product();
    // Logits, pooled features, or per image every feature level of a backbone.
    let out_len = plan.output_len;
    let chunk = args.batch as usize;
    let choice = effc_driver::choose(args.device, args.precision).map_err(fail)?;
    eprintln!("note: {}", choice.note());
    match &choice {
        Chosen::Cpu { .. } | Chosen::Reference { .. } => need.extend(limits::cpu_executor(&model)),
        Chosen::Gpu { gpu, .. } => {
            let n = if images > 0 { images.min(chunk) } else { chunk };
            limits::check_gpu(&plan, n, &gpu.adapter.to_string(), &gpu.limits).map_err(fail)?;
            need.extend(limits::gpu_host(
                &plan,
                n,
                effc_driver::device::is_software(gpu),
            ));
        }
    }
    need.check(&doing, &budget).map_err(fail)?;

    let weights = Weights::load(&args.weights, &model, naming)?;

    // Inputs: images (preprocessed like timm) or a saved tensor.
    let (input, labels, batch) = match &args.input {
        Some(p) => {
            let (data, n) = read_input(p, &model)?;
            let labels = (0..n)
                .map(|i| format!("{}[{i}]", p.display()))
                .collect::<Vec<_>>();
            (data, labels, n)
        }
        None => {
            let mut data = Vec::with_capacity(images * per_image);
            for img in &args.images {
                data.extend(effc_weights::load_image(img, &model)?);
            }
            let labels = args
                .images
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>();
            (data, labels, args.images.len())
        }
    };
    if batch == 0 {
        return Err("no input: give images, or --input with a non-empty batch".into());
    }

    // A progress line on stderr for long runs (many images), on a terminal only.
    let show = batch > chunk && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let progress = |done: usize, total: usize| {
        if show {
            eprint!("\r{done}/{total} images");
            if done == total {
                eprintln!();
            }
        }
    };
    let output = match choice {
        Chosen::Cpu { .. } if !model.is_backbone() => {
            let cm =
                effc_cpu::CpuModel::compile(&model, weights.by_name(&model), chunk.min(batch), 0)?;
            let mut out = vec![0.0; batch * out_len];
            let parts = input
                .chunks(per_image * chunk)
                .zip(out.chunks_mut(out_len * chunk));
            for (i, (part, o)) in parts.enumerate() {
                let n = part.len() / per_image;
                cm.forward_into(part, n, o)?;
                progress(i * chunk + n, batch);
            }
            out
        }
        c @ (Chosen::Cpu { .. } | Chosen::Reference { .. }) => {
            if matches!(c, Chosen::Cpu { .. }) {
                eprintln!("note: effc's CPU backend does not read a backbone's feature levels back yet: running the reference executor");
            }
            let ex = effc_reference::Executor::new(&model, &weights)?;
            let mut out = Vec::with_capacity(batch * out_len);
            for (i, part) in input.chunks(per_image * chunk).enumerate() {
                let n = part.len() / per_image;
                if model.is_backbone() {
                    out.extend(crate::run_features::cpu_forward(&ex, part, n)?);
                } else {
                    out.extend(ex.run(part, n)?.data);
                }
                progress(i * chunk + n, batch);
            }
            out
        }
        Chosen::Gpu { gpu, .. } => {
            let (tuning, _) = crate::tune::cached(&gpu, args.untuned, &args.model.model);
            let compiled = effc_runtime::compile_model_with(
                gpu,
                &model,
                &tuning,
                args.precision,
                weights.by_name(&model),
                chunk.min(batch),
            )?;
            let mut out = Vec::with_capacity(batch * out_len);
            for (i, part) in input.chunks(per_image * chunk).enumerate() {
                let n = part.len() / per_image;
                out.extend(compiled.forward(part, n)?);
                progress(i * chunk + n, batch);
            }
            out
        }
    };
    check_finite(&output, &labels, out_len)?;

    if model.is_backbone() {
        let levels = crate::run_features::split(&plan, &output, batch);
        if let Some(f) = &save_to {
            crate::run_features::save(f, &levels, batch)?;
        }
        crate::run_features::print(&levels, &labels, args.json, args.save.is_some())?;
        return Ok(ExitCode::SUCCESS);
    }

    if let Some(f) = &save_to {
        let name = if model.classes > 0 {
            "logits"
        } else {
            "features"
        };
        save(f, name, &output, vec![batch, out_len])?;
    }

    if model.classes == 0 {
        if args.json {
            let v: Vec<_> = labels
                .iter()
                .zip(output.chunks(out_len))
                .map(|(l, f)| serde_json::json!({"image": l, "features": f}))
                .collect();
            outln!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            for (l, f) in labels.iter().zip(output.chunks(out_len)) {
                let mean = f.iter().sum::<f32>() / f.len() as f32;
                let max = f.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                outln!("{l}: {} features (mean {mean:.4}, max {max:.4})", f.len());
            }
            if args.save.is_none() {
                eprintln!(
                    "note: the model has no classifier (classes = 0); --save writes the features"
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }

    let class_name = |i: usize| effc_weights::class_name(i, model.classes);
    let tops: Vec<Vec<(usize, f32)>> = output
        .chunks(out_len)
        .map(|row| effc_weights::top_k(row, args.top.min(out_len)))
        .collect();
    if args.json {
        let v: Vec<_> = labels
            .iter()
            .zip(&tops)
            .map(|(l, top)| {
                serde_json::json!({
                    "image": l,
                    "top": top.iter().map(|(c, p)| serde_json::json!({"class": c, "name": class_name(*c), "prob": p})).collect::<Vec<_>>(),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (l, top) in labels.iter().zip(&tops) {
            outln!("{l}");
            for (rank, (c, p)) in top.iter().enumerate() {
                outln!(
                    "  {:>2}. {:>6.2}%  {:<4} {}",
                    rank + 1,
                    p * 100.0,
                    c,
                    class_name(*c)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A NaN or infinite output is an error, never a printed `NaN%`: the weights or
/// the input do not describe a working network.
fn check_finite(output: &[f32], labels: &[String], per_image: usize) -> Result<(), Failure> {
    let bad = output.iter().filter(|v| !v.is_finite()).count();
    if bad == 0 {
        return Ok(());
    }
    let first = output.iter().position(|v| !v.is_finite()).unwrap_or(0) / per_image.max(1);
    Err(format!(
        "the network's output has {bad} NaN or infinite values (the first for `{}`): the weights or the input overflow; no result is printed",
        labels.get(first).map_or("?", String::as_str)
    )
    .into())
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
            .message;
        assert!(
            e.contains("2 NaN or infinite values (the first for `b.png`)"),
            "{e}"
        );
    }
}
