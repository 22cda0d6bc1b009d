//! `effc compile` and `effc shaders`: the generated WGSL.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::common::ModelArgs;
use crate::Failure;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output directory (created if needed).
    #[arg(long, short, value_name = "DIR")]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let model = args.model.build()?;
    let plan = effc_plan::plan(&model);
    let shaders = effc_wgsl::compile(&plan)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create `{}`: {e}", args.out.display()))?;
    for s in &shaders {
        let p = args.out.join(&s.file_name);
        std::fs::write(&p, &s.source)
            .map_err(|e| format!("cannot write `{}`: {e}", p.display()))?;
    }
    let plan_path = args.out.join("plan.txt");
    std::fs::write(&plan_path, plan.to_string())
        .map_err(|e| format!("cannot write `{}`: {e}", plan_path.display()))?;
    println!(
        "{}: {} kernels ({} dispatches per forward) written to {}",
        model.name,
        shaders.len(),
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
