//! `effc compile` and `effc shaders`: the generated WGSL, the Rust host code and
//! the report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use effc_codegen::{Request, Shaders, SpecSource};

use crate::common::ModelArgs;
use crate::Failure;

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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Rust host code (`model.rs`) for the `efficientnet` crate.
    Rust,
    /// A static web site running the model on WebGPU.
    Web,
}

fn write(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, text)
        .map_err(|e| Failure::from(format!("cannot write `{}`: {e}", path.display())))
}

/// Writes, into the output directory: one `.wgsl` file per kernel, `plan.txt`
/// (the kernel plan), `model.rs` (the host code `efficientnet!` generates, its
/// shaders included from the `.wgsl` files) and `report.md` / `report.json`.
pub fn run(args: Args) -> Result<ExitCode, Failure> {
    // Resolve and build first, for the same diagnostics as every other command.
    let model = args.model.build()?;
    let source = if effc_catalog::source(&args.model.model).is_some() {
        SpecSource::Builtin(args.model.model.clone())
    } else {
        SpecSource::File {
            path: PathBuf::from(&args.model.model),
            display: args.model.model.clone(),
        }
    };
    let mut req = Request::new(source);
    req.options = args.model.options();
    req.max_batch = args.max_batch;
    req.shaders = Shaders::IncludeStr;
    req.format = true;
    let generated = effc_codegen::generate(&req).map_err(|e| match e {
        effc_codegen::Error::Spec(d) => Failure {
            message: d.render(crate::color()),
        },
        effc_codegen::Error::Option { option, message } => {
            let flag = option.replace('_', "-");
            Failure::from(format!("--{flag}: {message}"))
        }
        e => Failure::from(e),
    })?;
    if args.target == Target::Web {
        return crate::web::write_site(&generated, &model, args.weights.as_deref(), &args.out);
    }
    if args.weights.is_some() {
        return Err(
            "--weights is for `--target web` (the Rust host loads its checkpoint at run time)"
                .into(),
        );
    }
    let plan = &generated.plan;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create `{}`: {e}", args.out.display()))?;
    for s in &generated.shaders {
        write(&args.out.join(&s.file_name), &s.source)?;
    }
    write(&args.out.join("plan.txt"), &plan.to_string())?;
    write(&args.out.join("model.rs"), &generated.file())?;
    let report = generated.report();
    write(&args.out.join("report.md"), &report.markdown())?;
    write(&args.out.join("report.json"), &report.json())?;
    println!(
        "{}: {} kernels ({} dispatches per forward) written to {}, with model.rs, report.md and report.json",
        model.name,
        generated.shaders.len(),
        plan.dispatches(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct ShadersArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Print only this kernel (`stem`, `blocks.1.0.dw`, `head`, ...).
    #[arg(long, value_name = "NAME")]
    kernel: Option<String>,
}

pub fn shaders(args: ShadersArgs) -> Result<ExitCode, Failure> {
    let model = args.model.build()?;
    let plan = effc_plan::plan(&model);
    let shaders = effc_wgsl::compile(&plan)?;
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
            print!("{}", s.source);
        }
        None => {
            for (i, s) in shaders.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                print!("{}", s.source);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
