//! The one parser of sizes, counts and times, for every flag and environment
//! variable (`--max-memory`, `--max-macs`, `--max-params`, `EFFC_MEMORY_LIMIT`,
//! `--max-latency`, `--time-per-model`, ...), and how they are printed.
//!
//! A size or count is a number (`1.5`, `2e9`, `5_000_000`) with an optional
//! suffix: `k`, `M`, `G`, `T` are powers of 1000 (`1G` = 10⁹), `Ki`, `Mi`, `Gi`,
//! `Ti` powers of 1024 (`1Gi` = 2³⁰); the letters may be in either case, and a
//! size in bytes may end in `B` (`200MB`, `1.5GiB`). It must be positive and
//! below 2⁶⁴. A time is milliseconds (`30`, `30ms`) or seconds (`0.5s`).

use std::time::Duration;

/// The value of a number with a suffix (see the module docs); `unit` is a letter
/// the text may end with (`B` for bytes).
fn scaled(text: &str, unit: Option<char>) -> Result<f64, String> {
    let t = text.trim();
    let t = match unit {
        Some(u) => t
            .strip_suffix(u)
            .or_else(|| t.strip_suffix(u.to_ascii_lowercase()))
            .unwrap_or(t),
        None => t,
    };
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '_' | '+' | '-')))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let num: f64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| format!("`{text}` is not a number (e.g. 1.5G, 200M, 64Mi, 30000)"))?;
    let binary = |p: i32| 1024f64.powi(p);
    let mult = match suffix.trim().to_ascii_lowercase().as_str() {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "ki" => binary(1),
        "mi" => binary(2),
        "gi" => binary(3),
        "ti" => binary(4),
        _ => {
            return Err(format!(
                "unknown suffix `{}` in `{text}`: use k, M, G, T (powers of 1000) or Ki, Mi, Gi, Ti (powers of 1024)",
                suffix.trim()
            ))
        }
    };
    let v = num * mult;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("`{text}` must be a positive number"));
    }
    // u64::MAX as f64 rounds up to 2^64, which no u64 holds.
    if v >= u64::MAX as f64 {
        return Err(format!(
            "`{text}` is too large: at most {} (about 18.4 E)",
            u64::MAX
        ));
    }
    Ok(v)
}

/// A count: `1G`, `1.5G`, `200M`, `5000000`, `64Ki`.
pub fn count(text: &str) -> Result<u64, String> {
    scaled(text, None).map(|v| v.round() as u64)
}

/// Bytes: `200M`, `200MB`, `1.5GiB`, `8g`, `4096`.
pub fn bytes(text: &str) -> Result<u64, String> {
    scaled(text, Some('B')).map(|v| v.round() as u64)
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
    // A year is more than any budget needs, and keeps Duration's conversion exact.
    if !(v.is_finite() && v > 0.0 && v * mult <= 3.2e10) {
        return Err(format!(
            "`{text}` must be a positive time of at most a year"
        ));
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

/// `1234567890` → `1.23 G` (powers of 1000, as counts are given).
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
    fn decimal_and_binary_suffixes_mean_the_same_everywhere() {
        assert_eq!(count("1G"), Ok(1_000_000_000));
        assert_eq!(count("1.5G"), Ok(1_500_000_000));
        assert_eq!(count("200M"), Ok(200_000_000));
        assert_eq!(count("5_000_000"), Ok(5_000_000));
        assert_eq!(count("2k"), Ok(2000));
        assert_eq!(count("2e9"), Ok(2_000_000_000));
        assert_eq!(bytes("1G"), Ok(1_000_000_000));
        assert_eq!(bytes("1g"), Ok(1_000_000_000));
        assert_eq!(bytes("200MB"), Ok(200_000_000));
        assert_eq!(bytes("1GiB"), Ok(1 << 30));
        assert_eq!(bytes("1Gi"), Ok(1 << 30));
        assert_eq!(bytes("64Mi"), Ok(64 << 20));
        assert_eq!(bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(bytes("2 tb"), Ok(2_000_000_000_000));
        assert_eq!(bytes("123"), Ok(123));
        assert_eq!(millis("30ms"), Ok(30.0));
        assert_eq!(millis("0.5s"), Ok(500.0));
        assert_eq!(millis("12.5"), Ok(12.5));
        assert_eq!(duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn nonsense_and_overflow_are_errors() {
        for bad in ["", "G", "1X", "-1G", "0", "1.5.5M", "nan", "inf", "lots"] {
            assert!(count(bad).is_err(), "{bad}");
            assert!(bytes(bad).is_err(), "{bad}");
        }
        assert!(count("3Q").unwrap_err().contains("unknown suffix `Q`"));
        let e = count("1e30").unwrap_err();
        assert!(e.contains("too large"), "{e}");
        assert!(bytes("18446745T").is_err());
        assert_eq!(bytes("18446744T"), Ok(18_446_744_000_000_000_000));
        assert!(millis("fast").unwrap_err().contains("fast"));
        assert!(millis("1e300").is_err());
        assert!(duration("1e300s").is_err());
    }

    #[test]
    fn printing() {
        assert_eq!(si(1.234e9), "1.23 G");
        assert_eq!(ms(152.4), "152 ms");
        assert_eq!(ms(4.236), "4.24 ms");
    }
}
