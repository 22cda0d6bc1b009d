//! Budgets on the command line: counts (`1.5G` MACs, `200M` parameters), bytes
//! (`200M`, `1.5GiB`) and times (`30ms`, `0.5s`), and how they are printed.

use std::time::Duration;

/// A number with an optional SI suffix `k`, `M`, `G`, `T` (powers of 1000) or
/// binary suffix `Ki`, `Mi`, `Gi`, `Ti` (powers of 1024), and an optional unit
/// (`B` for bytes) after it.
fn scaled(text: &str, unit: &str) -> Result<f64, String> {
    let t = text.trim();
    let t = t
        .strip_suffix(unit)
        .filter(|_| !unit.is_empty())
        .unwrap_or(t);
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E' || c == '_'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let num: f64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| format!("`{text}` is not a number (e.g. 1.5G, 200M, 30000)"))?;
    let mult = match suffix.trim() {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        s => {
            return Err(format!(
                "unknown suffix `{s}` in `{text}`: use k, M, G, T (or Ki, Mi, Gi, Ti)"
            ))
        }
    };
    let v = num * mult;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("`{text}` must be a positive number"));
    }
    Ok(v)
}

/// A count: `1G`, `1.5G`, `200M`, `5000000`.
pub fn count(text: &str) -> Result<u64, String> {
    scaled(text, "").map(|v| v.round() as u64)
}

/// Bytes: `200M`, `200MB`, `1.5GiB`, `4096`.
pub fn bytes(text: &str) -> Result<u64, String> {
    scaled(text, "B").map(|v| v.round() as u64)
}

/// Milliseconds: `30ms`, `0.5s`, `30` (ms).
pub fn millis(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1e3)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a time (e.g. 30ms, 0.5s)"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("`{text}` must be a positive time"));
    }
    Ok(v * mult)
}

/// A duration: `20s`, `500ms`, `20` (s).
pub fn duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let ms = if t.ends_with('s') {
        millis(t)?
    } else {
        millis(&format!("{t}s"))?
    };
    Ok(Duration::from_secs_f64(ms / 1e3))
}

/// `1234567890` → `1.23 G`.
pub fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e12 {
        format!("{:.2} T", v / 1e12)
    } else if a >= 1e9 {
        format!("{:.2} G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Milliseconds, with digits that matter.
pub fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        assert_eq!(count("1G"), Ok(1_000_000_000));
        assert_eq!(count("1.5G"), Ok(1_500_000_000));
        assert_eq!(count("200M"), Ok(200_000_000));
        assert_eq!(count("5_000_000"), Ok(5_000_000));
        assert_eq!(count("2k"), Ok(2000));
        assert_eq!(bytes("200MB"), Ok(200_000_000));
        assert_eq!(bytes("1GiB"), Ok(1 << 30));
        assert_eq!(bytes("64Mi"), Ok(64 << 20));
        assert_eq!(millis("30ms"), Ok(30.0));
        assert_eq!(millis("0.5s"), Ok(500.0));
        assert_eq!(millis("12.5"), Ok(12.5));
        assert_eq!(duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "G", "1X", "-1G", "0", "1.5.5M", "nan"] {
            assert!(count(bad).is_err(), "{bad}");
        }
        assert!(millis("fast").unwrap_err().contains("fast"));
        assert!(count("3Q").unwrap_err().contains("unknown suffix `Q`"));
        assert_eq!(si(1.234e9), "1.23 G");
        assert_eq!(ms(152.4), "152 ms");
        assert_eq!(ms(4.236), "4.24 ms");
    }
}
