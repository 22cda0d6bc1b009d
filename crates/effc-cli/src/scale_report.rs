//! What `effc scale` prints: the candidates tried, as a table or JSON.

use effc_driver::scale::ScaleReport;
use effc_driver::size::{ms, si};

use crate::output::outln;
use crate::Failure;

pub(crate) fn print_table(r: &ScaleReport) -> Result<(), Failure> {
    let what = match r.phi {
        Some(phi) => format!("φ = {phi}"),
        None => format!("the largest φ with {}", r.budgets.line()),
    };
    let coefs = r.coefficients;
    outln!(
        "effc scale {}: {what} (α = {}, β = {}, γ = {}, batch {})",
        r.base_name,
        coefs.alpha,
        coefs.beta,
        coefs.gamma,
        r.batch
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
    for (k, c) in &r.candidates {
        let [p, macs, mem] = costs(c);
        let result = if let Some(e) = &c.error {
            format!("cannot be built: {e}")
        } else if c.exceeds.is_empty() {
            "fits".to_string()
        } else {
            c.exceeds.join(", ")
        };
        outln!(
            "{} {:>6.2} {:>7.4} {:>7.4} {:>5} {:>10} {:>10} {:>10}B {:>10}  {result}",
            if Some(*k) == r.chosen { "→" } else { " " },
            c.phi,
            c.depth,
            c.width,
            c.resolution,
            p,
            macs,
            mem,
            c.latency_ms.map(ms).unwrap_or_else(|| "-".into()),
        );
    }
    Ok(())
}

/// The report, with the chosen candidate and the next φ (which breaks a budget).
pub(crate) fn print_json(r: &ScaleReport) -> Result<(), Failure> {
    let mut v = serde_json::to_value(r)?;
    v["chosen"] = serde_json::to_value(r.chosen())?;
    v["next"] = serde_json::to_value(r.next())?;
    outln!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// A candidate's parameters, MACs and memory bytes, in SI units.
pub(crate) fn costs(c: &effc_driver::scale::Candidate) -> [String; 3] {
    [c.params, c.macs, c.memory_bytes].map(|v| si(v as f64))
}
