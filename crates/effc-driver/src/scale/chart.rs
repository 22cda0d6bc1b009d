//! `scale --plot`: MACs against measured latency of every timed candidate.

use super::{Budgets, ScaleReport};
use crate::size::{ms, si};

pub(super) fn chart(r: &ScaleReport, budgets: Budgets, chosen: i32) -> effc_draw::Chart {
    let points = r
        .candidates
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
    let mut lines = vec![];
    if let Some(l) = budgets.max_latency {
        lines.push(effc_draw::Budget::X(l, format!("latency ≤ {}", ms(l))));
    }
    if let Some(m) = budgets.max_macs {
        lines.push(effc_draw::Budget::Y(
            m as f64 / 1e9,
            format!("MACs ≤ {}", si(m as f64)),
        ));
    }
    let untimed: Vec<String> = r
        .candidates
        .values()
        .filter(|c| c.latency_ms.is_none())
        .map(|c| format!("{:.2}", c.phi))
        .collect();
    effc_draw::Chart {
        title: format!(
            "{} scaled by φ: MACs against latency, batch {}",
            r.base_name, r.batch
        ),
        x_label: "latency on this adapter (ms, log scale)".into(),
        y_label: "GMACs per image".into(),
        series: vec![effc_draw::Series {
            name: format!("{} at φ", r.base_name),
            points,
        }],
        budgets: lines,
        note: (!untimed.is_empty()).then(|| {
            format!(
                "not timed (far from the answer): φ = {}",
                untimed.join(", ")
            )
        }),
    }
}
