//! `effc run`: the arguments of [`effc_driver::run`], and its report printed.

use std::path::PathBuf;
use std::process::ExitCode;

use effc_driver::run::{RunInput, RunOutput, RunReport, RunRequest};
use effc_driver::{Device, TuningChoice};
use effc_ir::Naming;

use crate::common::{ModelArgs, Stderr};
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
    /// How many classes to print per image (at least 1).
    #[arg(long, default_value_t = 5, value_name = "K", value_parser = clap::value_parser!(u16).range(1..))]
    top: u16,
    /// Print JSON: one object per image, `{"image", "top": [{"class", "name", "prob"}]}`
    /// (at f16 on the GPU also `clamped_weights`).
    #[arg(long)]
    json: bool,
    /// Run on the tensor `input` (NCHW f32) of a safetensors file instead of images.
    #[arg(long, value_name = "X.safetensors", conflicts_with = "images")]
    input: Option<PathBuf>,
    /// Write the output tensor (`logits`, or `embedding` when classes is 0; with
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

impl Args {
    fn request(&self) -> RunRequest {
        let mut model = self
            .model
            .request_with(self.precision, Some(&self.weights), self.naming);
        if self.untuned {
            model.tuning = TuningChoice::CostModel;
        }
        RunRequest {
            model,
            model_arg: self.model.model.clone(),
            device: self.device,
            input: match &self.input {
                Some(p) => RunInput::Tensor(p.clone()),
                None => RunInput::Images(self.images.clone()),
            },
            save: self.save.clone(),
            batch: self.batch as usize,
            top: self.top as usize,
        }
    }
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    // A progress line on stderr for long runs (many images), on a terminal only.
    let progress = Stderr::items_over(args.batch as usize);
    let report = effc_driver::run::run(&args.request(), &progress).map_err(fail)?;
    print(&args, &report)?;
    Ok(ExitCode::SUCCESS)
}

fn print(args: &Args, r: &RunReport) -> Result<(), Failure> {
    match &r.output {
        RunOutput::Levels { images, .. } => {
            crate::run_features::print(images, &r.labels, args.json, args.save.is_some())
        }
        RunOutput::Embedding { embedding } => print_embedding(args, r, embedding),
        RunOutput::Classes { top, .. } => print_classes(args, r, top),
    }
}

fn print_embedding(args: &Args, r: &RunReport, embedding: &[Vec<f32>]) -> Result<(), Failure> {
    if args.json {
        let v: Vec<_> = r
            .labels
            .iter()
            .zip(embedding)
            .map(|(l, f)| serde_json::json!({"image": l, "embedding": f}))
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for (l, f) in r.labels.iter().zip(embedding) {
        let mean = f.iter().sum::<f32>() / f.len() as f32;
        let max = f.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        outln!(
            "{l}: {}-value embedding (mean {mean:.4}, max {max:.4})",
            f.len()
        );
    }
    if args.save.is_none() {
        eprintln!("note: the model has no classifier (classes = 0); --save writes its embedding (`embedding`)");
    }
    Ok(())
}

fn print_classes(
    args: &Args,
    r: &RunReport,
    tops: &[Vec<effc_driver::run::Prediction>],
) -> Result<(), Failure> {
    if args.json {
        let v: Vec<_> = r
            .labels
            .iter()
            .zip(tops)
            .map(|(l, top)| {
                let mut v = serde_json::json!({"image": l, "top": top});
                if let Some(n) = r.clamped_weights {
                    v["clamped_weights"] = n.into();
                }
                v
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for (l, top) in r.labels.iter().zip(tops) {
        outln!("{l}");
        for (rank, p) in top.iter().enumerate() {
            outln!(
                "  {:>2}. {:>6.2}%  {:<4} {}",
                rank + 1,
                p.prob * 100.0,
                p.class,
                p.name
            );
        }
    }
    Ok(())
}
