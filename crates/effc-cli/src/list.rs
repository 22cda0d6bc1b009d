//! `effc list`

use std::process::ExitCode;

use effc_ir::cost::group;
use effc_ir::{Model, Options, Spec};

use crate::output::outln;
use crate::Failure;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print JSON: one object per model.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let mut rows = vec![];
    for name in effc_catalog::names() {
        let spec = Spec::builtin(name).map_err(|d| Failure {
            message: d.render(crate::color()),
        })?;
        let m = Model::build(&spec, &Options::default()).map_err(|d| Failure {
            message: d.render(crate::color()),
        })?;
        let c = m.cost();
        rows.push((m, c));
    }
    if args.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(m, c)| {
                let acc = effc_catalog::accuracy(&m.name);
                serde_json::json!({
                    "name": m.name, "base": m.base, "resolution": m.resolution,
                    "params": c.params, "macs": c.macs, "padding": m.padding, "bn_eps": m.bn_eps,
                    "activation": m.activation, "blocks": m.blocks().count(),
                    "top1": acc.map(|a| a.top1),
                    "top1_weights": acc.map(|a| a.weights),
                    "top1_pretraining": acc.map(|a| a.pretraining.label()),
                    "top1_source": acc.map(|a| a.source),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<11} {:<11} {:>5} {:>7} {:>13} {:>17}  {:<9} {:<7} {:<10} {:>7}",
        "model",
        "extends",
        "res",
        "blocks",
        "params",
        "MACs",
        "padding",
        "bn_eps",
        "activation",
        "top-1"
    );
    for (m, c) in &rows {
        outln!(
            "{:<11} {:<11} {:>5} {:>7} {:>13} {:>17}  {:<9} {:<7} {:<10} {:>7}",
            m.name,
            m.base.as_deref().unwrap_or("-"),
            m.resolution,
            m.blocks().count(),
            group(c.params),
            group(c.macs),
            m.padding,
            effc_ir::cost::fmt_f(m.bn_eps),
            m.activation,
            top1(&m.name)
        );
    }
    outln!();
    outln!("top-1: published ImageNet accuracy of the official weights (¹ pretrained on ImageNet-21k, ² on JFT; `effc list --json` names each source)");
    Ok(ExitCode::SUCCESS)
}

/// `77.1%`, with a mark for weights pretrained on more data.
fn top1(model: &str) -> String {
    use effc_catalog::Pretraining;
    match effc_catalog::accuracy(model) {
        Some(a) => {
            let mark = match a.pretraining {
                Pretraining::ImageNet1k => "",
                Pretraining::ImageNet21k => "¹",
                Pretraining::Jft => "²",
            };
            format!("{}%{mark}", effc_ir::cost::fmt_f(a.top1))
        }
        None => "-".into(),
    }
}
