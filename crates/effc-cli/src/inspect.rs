//! `effc inspect`

use std::process::ExitCode;

use effc_ir::cost::group;
use effc_ir::{FeatureInfo, Model, Naming};

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
        let naming: Naming = naming.parse()?;
        let list = m.named_params(naming);
        if args.json {
            let v: Vec<_> = list
                .iter()
                .map(|(n, p)| serde_json::json!({"name": n, "shape": p.shape, "trainable": p.trainable}))
                .collect();
            outln!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            for (n, p) in &list {
                let s: Vec<String> = p.shape.iter().map(|d| d.to_string()).collect();
                outln!("{n}\t{}", s.join("x"));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.json {
        let c = m.cost();
        let v = serde_json::json!({
            "model": m.name,
            "extends": m.base,
            "resolution": m.resolution,
            "input": m.input,
            "output": m.output_shape(),
            "params": c.params,
            "macs": c.macs,
            "bn_buffers": c.buffers,
            "activation_bytes": c.activation_bytes,
            "peak_activation_bytes": c.peak_activation_bytes,
            "width": m.width, "depth": m.depth, "rounding": m.rounding,
            "padding": m.padding, "bn_eps": m.bn_eps, "activation": m.activation,
            "classes": m.classes, "dropout": m.dropout, "drop_path": m.drop_path,
            "mean": m.mean, "std": m.std,
            "training": m.training.schedule(m.dropout),
            "stages": m.stages.iter().map(|s| serde_json::json!({
                "index": s.index, "block_string": s.text, "kind": s.kind, "repeats": s.repeats,
                "kernel": s.kernel, "stride": s.stride, "expand": s.expand_ratio, "se": s.se,
                "in_channels": s.in_ch, "out_channels": s.out_ch,
                "output": s.blocks.last().map(|b| b.out_shape),
                "params": s.blocks.iter().map(|b| b.params()).sum::<u64>(),
                "macs": s.blocks.iter().map(|b| b.macs()).sum::<u64>(),
            })).collect::<Vec<_>>(),
            "layers": m.layers(),
            "dispatches": effc_plan::plan(&m).dispatches(),
            "features": feature_json(&m, &m.features),
            "feature_levels": feature_json(&m, &m.feature_levels()),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!("{}", m.render());
    print_features(&m)?;
    let _ = group;
    Ok(ExitCode::SUCCESS)
}

/// The IR path of block `id` (`blocks.1.1`).
fn block_path(m: &Model, id: usize) -> String {
    m.blocks()
        .find(|b| b.id == id)
        .map_or_else(|| format!("block {id}"), |b| b.path())
}

/// Feature levels as JSON: level, channels, reduction, the IR block (id and path).
fn feature_json(m: &Model, levels: &[FeatureInfo]) -> serde_json::Value {
    levels
        .iter()
        .map(|f| {
            serde_json::json!({
                "level": f.level, "channels": f.channels, "reduction": f.reduction,
                "block": f.block, "block_path": block_path(m, f.block),
            })
        })
        .collect()
}

/// The feature levels a backbone ends at (`--features`, a spec's `features`), or
/// the levels the network offers.
fn print_features(m: &Model) -> Result<(), Failure> {
    let requested = m.is_backbone();
    let levels = if requested {
        m.features.clone()
    } else {
        m.feature_levels()
    };
    if requested {
        outln!("feature levels (the model ends at the last; no head, no classifier):");
    } else {
        outln!("feature levels (--features L,.. ends the model at them):");
    }
    for f in &levels {
        let [c, h, w] = m
            .blocks()
            .find(|b| b.id == f.block)
            .map_or([f.channels, 0, 0], |b| b.out_shape);
        outln!(
            "  level {}  {:<12} reduction {:>2}  from {}",
            f.level,
            format!("{c}x{h}x{w}"),
            f.reduction,
            block_path(m, f.block)
        );
    }
    Ok(())
}
