//! `effc compile` (the arguments of [`effc_driver::compile`], and a summary of
//! what it wrote) and `effc shaders` (the generated WGSL printed).

use std::path::PathBuf;
use std::process::ExitCode;

use effc_driver::compile::CompileRequest;

use crate::common::ModelArgs;
use crate::output::{out, outln};
use crate::{fail, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output directory (created if needed).
    #[arg(long, short, value_name = "DIR")]
    out: PathBuf,
    /// The largest batch the generated `model.rs` runs (its `MAX_BATCH`).
    #[arg(long, value_name = "N", default_value_t = effc_codegen::DEFAULT_MAX_BATCH)]
    max_batch: usize,
    /// What to write: `rust` (model.rs, the shaders, the report) or `web` (a static
    /// site: model.js, the shaders, index.html, and weights.bin with --weights).
    #[arg(long, value_enum, default_value_t = Target::Rust)]
    target: Target,
    /// Checkpoint to pack into weights.bin (with `--target web`; safetensors).
    #[arg(long, value_name = "W.safetensors")]
    weights: Option<PathBuf>,
    /// Write into a directory effc did not write (no `.effc-manifest`), overwriting
    /// files of the same names.
    #[arg(long)]
    force: bool,
    /// How weights and activations are stored on the GPU: f16 halves the memory
    /// (sums stay f32) and writes each shader twice, native (`enable f16;`) and
    /// packed into u32s (`*.packed.wgsl`), for the loader to pick per adapter.
    #[arg(long, default_value = "f32", value_name = "f32|f16")]
    precision: effc_plan::Precision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Rust host code (`model.rs`) for the `efficientnet` crate.
    Rust,
    /// A static web site running the model on WebGPU.
    Web,
}

impl From<Target> for effc_driver::compile::Target {
    fn from(t: Target) -> Self {
        match t {
            Target::Rust => effc_driver::compile::Target::Rust,
            Target::Web => effc_driver::compile::Target::Web,
        }
    }
}

/// Writes, into the output directory: one `.wgsl` file per kernel, `plan.txt`
/// (the kernel plan), `model.rs` (the host code `efficientnet!` generates, its
/// shaders included from the `.wgsl` files), `report.md` / `report.json` and
/// `architecture.svg`, which the report shows; or the web site.
pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let req = CompileRequest {
        model: args
            .model
            .request_with(args.precision, args.weights.as_deref(), None),
        target: args.target.into(),
        out: args.out.clone(),
        force: args.force,
        max_batch: args.max_batch,
    };
    let r = effc_driver::compile::compile(&req).map_err(fail)?;
    note_removed(&r.removed);
    let dir = args.out.display();
    let mib = |b: usize| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
    match args.target {
        Target::Web => outln!(
            "{}: web site ({} shaders, model.js {}{}, index.html) written to {dir}{}",
            r.model,
            r.kernels,
            r.model_js_bytes.map(mib).unwrap_or_default(),
            r.weights_bin_bytes
                .map(|b| format!(", weights.bin {}", mib(b)))
                .unwrap_or_default(),
            if r.weights_bin_bytes.is_none() {
                "; no --weights: load() needs a weights.bin"
            } else {
                ""
            }
        ),
        Target::Rust => outln!(
            "{}: {} kernels ({} dispatches per forward{}) written to {dir}, with model.rs, report.md, report.json and architecture.svg",
            r.model,
            r.kernels,
            r.dispatches,
            match r.precision {
                effc_plan::Precision::F32 => "",
                effc_plan::Precision::F16 => "; f16 storage, each shader native and packed",
            },
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Notes on stderr the files of the previous output that this one no longer has.
pub fn note_removed(removed: &[String]) {
    if !removed.is_empty() {
        eprintln!(
            "note: removed {} file(s) of the previous output that this one no longer has ({}{})",
            removed.len(),
            removed[..removed.len().min(3)].join(", "),
            if removed.len() > 3 { ", ..." } else { "" }
        );
    }
}

#[derive(clap::Args, Debug)]
pub struct ShadersArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Print only this kernel (`stem`, `blocks.1.0.dw`, `head`, ...).
    #[arg(long, value_name = "NAME")]
    kernel: Option<String>,
    /// The shaders of weights and activations stored as f16 (sums in f32).
    #[arg(long, default_value = "f32", value_name = "f32|f16")]
    precision: effc_plan::Precision,
    /// At f16, the spelling: `native` (`enable f16;`, adapters with shader-f16) or
    /// `packed` (halves in u32s, core WGSL).
    #[arg(long, default_value = "native", value_name = "native|packed")]
    spelling: effc_wgsl::Spelling,
}

pub fn shaders(args: ShadersArgs) -> Result<ExitCode, Failure> {
    let model = args.model.resolve()?.model;
    let plan = effc_plan::plan_at(&model, args.precision);
    let shaders = effc_wgsl::compile_as(&plan, args.spelling)?;
    match &args.kernel {
        Some(name) => {
            let Some(s) = shaders.iter().find(|s| &s.kernel == name) else {
                let names: Vec<&str> = plan.kernels.iter().map(|k| k.name.as_str()).collect();
                let hint = effc_ir::spec::closest(name, &names)
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                return Err(format!(
                    "model `{}` has no kernel `{name}`{hint}; its kernels: {}",
                    model.name,
                    if names.len() > 12 {
                        format!(
                            "{}, ... ({} in all; `effc inspect {} --kernels` lists them)",
                            names[..12].join(", "),
                            names.len(),
                            args.model.model
                        )
                    } else {
                        names.join(", ")
                    }
                )
                .into());
            };
            out!("{}", s.source);
        }
        None => {
            for (i, s) in shaders.iter().enumerate() {
                if i > 0 {
                    outln!();
                }
                out!("{}", s.source);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
