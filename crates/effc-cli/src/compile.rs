//! `effc compile` and `effc shaders`: the generated WGSL, the Rust host code and
//! the report.

use std::path::PathBuf;
use std::process::ExitCode;

use effc_codegen::{CodegenOptions, Shaders};
use effc_driver::files::{Outputs, Written};

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

/// The most kernels `effc compile` writes (one `.wgsl` file each). The largest
/// built-in model has a few hundred; a spec beyond this is refused before anything
/// is generated.
pub const MAX_KERNELS: usize = 4096;

/// Writes, into the output directory: one `.wgsl` file per kernel, `plan.txt`
/// (the kernel plan), `model.rs` (the host code `efficientnet!` generates, its
/// shaders included from the `.wgsl` files), `report.md` / `report.json` and
/// `architecture.svg`, which the report shows.
pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let mut request = args.model.request();
    request.precision = args.precision;
    if let Some(w) = &args.weights {
        request.weights = Some(effc_driver::WeightsRequest {
            path: w.clone(),
            naming: None,
        });
    }
    // Before anything is generated: a directory effc does not own is refused,
    // as is one holding an input.
    let mut files = Outputs::new();
    request.declare_inputs(&mut files).map_err(fail)?;
    let mut out = files.dir("-o", &args.out, args.force)?;
    // Resolve and build first, for the same diagnostics as every other command.
    let resolved = request.resolve().map_err(fail)?;
    let model = resolved.model.clone();
    let kernels = resolved.plan().kernels.len();
    if kernels > MAX_KERNELS {
        return Err(format!(
            "model `{}` has {kernels} kernels; effc compile writes at most {MAX_KERNELS} (one .wgsl file each): fewer blocks, or `effc check`/`effc inspect` to examine the spec",
            model.name
        )
        .into());
    }
    let opts = CodegenOptions {
        max_batch: args.max_batch,
        module: None,
        shaders: Shaders::IncludeStr,
        format: true,
    };
    let generated = resolved.generate(&opts, false).map_err(fail)?;
    if args.target == Target::Web {
        return crate::web::write_site(&generated, &model, args.weights.as_deref(), out, &args.out);
    }
    if args.weights.is_some() {
        return Err(
            "--weights is for `--target web` (the Rust host loads its checkpoint at run time)"
                .into(),
        );
    }
    let plan = &generated.plan;
    for sh in generated.shaders.iter().chain(&generated.packed_shaders) {
        out.write(&sh.file_name, sh.source.as_str())?;
    }
    out.write("plan.txt", plan.to_string())?;
    out.write("model.rs", generated.file())?;
    let report = generated.report();
    // The report links the architecture picture, written beside it.
    out.write("architecture.svg", effc_draw::architecture(&model))?;
    let md = report.markdown();
    let md = match md.split_once("\n\n") {
        Some((title, rest)) => format!(
            "{title}\n\n![architecture of {}](architecture.svg)\n\n{rest}",
            model.name
        ),
        None => md,
    };
    out.write("report.md", md)?;
    out.write("report.json", report.json())?;
    let written = out.finish()?;
    note_removed(&written);
    outln!(
        "{}: {} kernels ({} dispatches per forward{}) written to {}, with model.rs, report.md, report.json and architecture.svg",
        model.name,
        generated.shaders.len(),
        plan.dispatches(),
        match plan.precision {
            effc_plan::Precision::F32 => "",
            effc_plan::Precision::F16 => "; f16 storage, each shader native and packed",
        },
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Notes on stderr the files of the previous output that this one no longer has.
pub fn note_removed(written: &Written) {
    if !written.removed.is_empty() {
        eprintln!(
            "note: removed {} file(s) of the previous output that this one no longer has ({}{})",
            written.removed.len(),
            written.removed[..written.removed.len().min(3)].join(", "),
            if written.removed.len() > 3 {
                ", ..."
            } else {
                ""
            }
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
