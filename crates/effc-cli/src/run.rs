//! `effc run`: classify images (or run a saved input tensor) on the GPU or the CPU.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::ValueEnum;
use effc_ir::{Model, Naming};
use effc_weights::Weights;

use crate::common::ModelArgs;
use crate::Failure;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// The compiled WGSL kernels on a wgpu adapter.
    Gpu,
    /// The reference executor (plain f32 code on the CPU).
    Cpu,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum NamingArg {
    Effc,
    Timm,
    Torchvision,
    Tf,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Checkpoint (safetensors: f32, f16 or bf16; timm, torchvision or TF-port names).
    #[arg(long, short, value_name = "W")]
    weights: PathBuf,
    /// Where to run: the GPU (default when an adapter exists) or the CPU reference.
    #[arg(long, value_enum)]
    device: Option<Device>,
    /// Force the checkpoint's naming instead of detecting it.
    #[arg(long, value_enum)]
    naming: Option<NamingArg>,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5, value_name = "K")]
    top: usize,
    /// Print JSON: one object per image, `{"image", "top": [{"class", "name", "prob"}]}`.
    #[arg(long)]
    json: bool,
    /// Run on the tensor `input` (NCHW f32) of a safetensors file instead of images.
    #[arg(long, value_name = "X.safetensors", conflicts_with = "images")]
    input: Option<PathBuf>,
    /// Write the output tensor (`logits`, or `features` when classes is 0) to a safetensors file.
    #[arg(long, value_name = "Y.safetensors")]
    save: Option<PathBuf>,
    /// Images per forward (more images run in several forwards).
    #[arg(long, default_value_t = 16, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    batch: u16,
    /// On the GPU, use the cost model's tiles even where `effc tune` cached faster ones.
    #[arg(long)]
    untuned: bool,
    /// PNG or JPEG images.
    #[arg(value_name = "IMAGE", required_unless_present = "input")]
    images: Vec<PathBuf>,
}

/// Reads the `input` tensor of a safetensors file: NCHW f32 for this model.
fn read_input(path: &PathBuf, model: &Model) -> Result<(Vec<f32>, usize), Failure> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
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
    Ok((data, shape[0]))
}

fn save(path: &PathBuf, name: &str, data: &[f32], shape: Vec<usize>) -> Result<(), Failure> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &bytes)
        .map_err(|e| format!("cannot build tensor `{name}`: {e}"))?;
    let out = safetensors::serialize([(name, view)], None)
        .map_err(|e| format!("cannot serialize `{name}`: {e}"))?;
    std::fs::write(path, out).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    Ok(())
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let model = args.model.build()?;
    let naming = args.naming.map(|n| match n {
        NamingArg::Effc => Naming::Effc,
        NamingArg::Timm => Naming::Timm,
        NamingArg::Torchvision => Naming::Torchvision,
        NamingArg::Tf => Naming::Tf,
    });
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
            let mut data = Vec::new();
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

    let mut gpu = None;
    let device = match args.device {
        Some(d) => d,
        None => match effc_runtime::Gpu::new() {
            Ok(g) => {
                gpu = Some(g);
                Device::Gpu
            }
            Err(e) => {
                eprintln!("note: running on the CPU reference executor ({e})");
                Device::Cpu
            }
        },
    };
    let out_len = model.output_shape()[0];
    let per_image: usize = model.input.iter().product();
    // A progress line on stderr for long runs (many images), on a terminal only.
    let show = batch > args.batch as usize && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let progress = |done: usize, total: usize| {
        if show {
            eprint!("\r{done}/{total} images");
            if done == total {
                eprintln!();
            }
        }
    };
    let output = match device {
        Device::Cpu => {
            let ex = effc_reference::Executor::new(&model, &weights)?;
            let mut out = Vec::with_capacity(batch * out_len);
            for (i, chunk) in input.chunks(per_image * args.batch as usize).enumerate() {
                let n = chunk.len() / per_image;
                out.extend(ex.run(chunk, n)?.data);
                progress(i * args.batch as usize + n, batch);
            }
            out
        }
        Device::Gpu => {
            let gpu = Arc::new(match gpu {
                Some(g) => g,
                None => effc_runtime::Gpu::new()?,
            });
            let (tuning, _) = crate::tune::cached(&gpu, args.untuned, &args.model.model);
            let compiled = effc_runtime::compile_model_tuned(
                gpu,
                &model,
                &tuning,
                weights.by_name(&model),
                (args.batch as usize).min(batch),
            )?;
            let mut out = Vec::with_capacity(batch * out_len);
            for (i, chunk) in input.chunks(per_image * args.batch as usize).enumerate() {
                let n = chunk.len() / per_image;
                out.extend(compiled.forward(chunk, n)?);
                progress(i * args.batch as usize + n, batch);
            }
            out
        }
    };

    if let Some(p) = &args.save {
        let name = if model.classes > 0 {
            "logits"
        } else {
            "features"
        };
        save(p, name, &output, vec![batch, out_len])?;
    }

    if model.classes == 0 {
        if args.json {
            let v: Vec<_> = labels
                .iter()
                .zip(output.chunks(out_len))
                .map(|(l, f)| serde_json::json!({"image": l, "features": f}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            for (l, f) in labels.iter().zip(output.chunks(out_len)) {
                let mean = f.iter().sum::<f32>() / f.len() as f32;
                let max = f.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                println!("{l}: {} features (mean {mean:.4}, max {max:.4})", f.len());
            }
            if args.save.is_none() {
                eprintln!(
                    "note: the model has no classifier (classes = 0); --save writes the features"
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }

    let names = effc_weights::imagenet_classes();
    let class_name = |i: usize| -> String {
        if model.classes == names.len() {
            names[i].to_string()
        } else {
            format!("class {i}")
        }
    };
    let tops: Vec<Vec<(usize, f32)>> = output
        .chunks(out_len)
        .map(|row| effc_reference::top_k(row, args.top.min(out_len)))
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
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (l, top) in labels.iter().zip(&tops) {
            println!("{l}");
            for (rank, (c, p)) in top.iter().enumerate() {
                println!(
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
