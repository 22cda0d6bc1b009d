//! `effc inspect`

use std::process::ExitCode;

use effc_ir::Naming;

use crate::common::ModelArgs;
use crate::output::{out, outln};
use crate::{fail, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Print JSON (top-level `params` and `macs`, plus stages and layers).
    #[arg(long)]
    json: bool,
    /// List every tensor (name and shape) in a checkpoint layout instead.
    #[arg(long, value_name = "NAMING", value_parser = ["effc", "timm", "torchvision", "tf"])]
    params: Option<String>,
    /// Show the kernel plan instead: fused kernels, dispatches, buffers.
    #[arg(long, conflicts_with = "params")]
    kernels: bool,
    /// With --kernels: the plan with weights and activations stored as f16 (its
    /// byte counts at f16).
    #[arg(
        long,
        default_value = "f32",
        value_name = "f32|f16",
        requires = "kernels"
    )]
    precision: effc_plan::Precision,
    /// Draw the architecture (stem, stages, head) as an SVG file instead.
    #[arg(long, value_name = "FILE.svg", conflicts_with_all = ["params", "kernels", "json"])]
    svg: Option<std::path::PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let request = args.model.request();
    let mut files = effc_driver::files::Outputs::new();
    request.declare_inputs(&mut files).map_err(fail)?;
    let svg = args
        .svg
        .as_ref()
        .map(|p| files.file("--svg", p))
        .transpose()?;
    let m = request.resolve().map_err(fail)?.model;
    if let (Some(path), Some(file)) = (&args.svg, &svg) {
        file.write(effc_draw::architecture(&m).as_bytes())?;
        outln!(
            "{}: the architecture of {} ({} stages, {} blocks)",
            path.display(),
            m.name,
            m.stages.len(),
            m.blocks().count()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.kernels {
        let plan = effc_plan::plan_at(&m, args.precision);
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            out!("{plan}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(naming) = &args.params {
        let rows = effc_driver::inspect::params(&m, naming.parse::<Naming>()?);
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            for r in &rows {
                let s: Vec<String> = r.shape.iter().map(|d| d.to_string()).collect();
                outln!("{}\t{}", r.name, s.join("x"));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.json {
        let summary = effc_driver::inspect::summary(&m);
        outln!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!("{}", m.render());
    let (requested, levels) = effc_driver::inspect::levels(&m);
    if requested {
        outln!("feature levels (the model ends at the last; no head, no classifier):");
    } else {
        outln!("feature levels (--features L,.. ends the model at them):");
    }
    for l in &levels {
        let [c, h, w] = l.shape;
        outln!(
            "  level {}  {:<12} reduction {:>2}  from {}",
            l.level,
            format!("{c}x{h}x{w}"),
            l.reduction,
            l.block_path
        );
    }
    Ok(ExitCode::SUCCESS)
}
