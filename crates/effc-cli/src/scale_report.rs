//! What `effc scale` prints and draws: the candidates tried, as a table or JSON,
//! and MACs against latency.

use std::collections::BTreeMap;
use std::process::ExitCode;

use effc_ir::scale::Coefficients;
use effc_ir::Spec;

use crate::output::outln;
use crate::scale::{Args, Candidate};
use crate::Failure;
use effc_driver::size::{ms, si};

fn budgets_line(args: &Args) -> String {
    let mut b = vec![];
    if let Some(v) = args.max_macs {
        b.push(format!("MACs ≤ {}", si(v as f64)));
    }
    if let Some(v) = args.max_params {
        b.push(format!("params ≤ {}", si(v as f64)));
    }
    if let Some(v) = args.max_memory {
        b.push(format!("memory ≤ {}B", si(v as f64)));
    }
    if let Some(v) = args.max_latency {
        b.push(format!("latency ≤ {}", ms(v)));
    }
    b.join(", ")
}

pub(crate) fn print_table(
    args: &Args,
    base: &Spec,
    coefs: &Coefficients,
    tried: &BTreeMap<i32, Candidate>,
    chosen: Option<i32>,
) -> Result<(), Failure> {
    let what = match args.phi {
        Some(phi) => format!("φ = {phi}"),
        None => format!("the largest φ with {}", budgets_line(args)),
    };
    outln!(
        "effc scale {}: {what} (α = {}, β = {}, γ = {}, batch {})",
        base.name,
        coefs.alpha,
        coefs.beta,
        coefs.gamma,
        args.batch
    );
    outln!();
    outln!(
        "  {:>6} {:>7} {:>7} {:>5} {:>10} {:>10} {:>11} {:>10}  result",
        "φ",
        "depth",
        "width",
        "res",
        "params",
        "MACs",
        "memory",
        "latency"
    );
    for (k, c) in tried {
        let result = if let Some(e) = &c.error {
            format!("cannot be built: {e}")
        } else if c.exceeds.is_empty() {
            "fits".to_string()
        } else {
            c.exceeds.join(", ")
        };
        outln!(
            "{} {:>6.2} {:>7.4} {:>7.4} {:>5} {:>10} {:>10} {:>10}B {:>10}  {result}",
            if Some(*k) == chosen { "→" } else { " " },
            c.phi,
            c.depth,
            c.width,
            c.resolution,
            si(c.params as f64),
            si(c.macs as f64),
            si(c.memory_bytes as f64),
            c.latency_ms.map(ms).unwrap_or_else(|| "-".into()),
        );
    }
    Ok(())
}

pub(crate) fn print_json(
    args: &Args,
    coefs: &Coefficients,
    tried: &BTreeMap<i32, Candidate>,
    chosen: Option<i32>,
    spec: Option<(&str, &str)>,
) -> Result<ExitCode, Failure> {
    let v = serde_json::json!({
        "base": args.base,
        "coefficients": coefs,
        "batch": args.batch,
        "budgets": {
            "max_macs": args.max_macs, "max_params": args.max_params,
            "max_memory": args.max_memory, "max_latency_ms": args.max_latency,
        },
        "candidates": tried.values().collect::<Vec<_>>(),
        "chosen": chosen.map(|k| &tried[&k]),
        "next": chosen.and_then(|k| tried.get(&(k + 1))),
        "model": spec.map(|s| s.0),
        "spec": spec.map(|s| s.1),
        "output": args.output.as_ref().map(|p| p.display().to_string()),
    });
    outln!("{}", serde_json::to_string_pretty(&v)?);
    Ok(if chosen.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// MACs against latency of every timed candidate.
pub(crate) fn chart(
    args: &Args,
    base: &Spec,
    tried: &BTreeMap<i32, Candidate>,
    chosen: i32,
) -> effc_draw::Chart {
    let points = tried
        .iter()
        .filter_map(|(&k, c)| {
            Some(effc_draw::Point {
                label: format!("φ={:.2}", c.phi),
                x: c.latency_ms?,
                y: c.macs as f64 / 1e9,
                meets: c.exceeds.is_empty(),
                chosen: k == chosen,
            })
        })
        .collect();
    let mut budgets = vec![];
    if let Some(l) = args.max_latency {
        budgets.push(effc_draw::Budget::X(l, format!("latency ≤ {}", ms(l))));
    }
    if let Some(m) = args.max_macs {
        budgets.push(effc_draw::Budget::Y(
            m as f64 / 1e9,
            format!("MACs ≤ {}", si(m as f64)),
        ));
    }
    let untimed: Vec<String> = tried
        .values()
        .filter(|c| c.latency_ms.is_none())
        .map(|c| format!("{:.2}", c.phi))
        .collect();
    effc_draw::Chart {
        title: format!(
            "{} scaled by φ: MACs against latency, batch {}",
            base.name, args.batch
        ),
        x_label: "latency on this adapter (ms, log scale)".into(),
        y_label: "GMACs per image".into(),
        series: vec![effc_draw::Series {
            name: format!("{} at φ", base.name),
            points,
        }],
        budgets,
        note: (!untimed.is_empty()).then(|| {
            format!(
                "not timed (far from the answer): φ = {}",
                untimed.join(", ")
            )
        }),
    }
}
