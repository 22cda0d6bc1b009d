//! How close is close: max|got − want| ≤ tol · max|want| (tests/fixtures/README.md
//! sets tol = 1e-3 for f32 paths; ~1e-6 is what effc reaches).

/// max|got − want| / max|want| (0 when both are all zeros). Panics on a length
/// mismatch, naming it.
pub fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "length of got and want");
    let err = max_abs_diff(got, want);
    let scale = max_abs(want);
    if scale == 0.0 {
        err
    } else {
        err / scale
    }
}

/// max|got − want|; NaN anywhere counts as infinitely far.
pub fn max_abs_diff(got: &[f32], want: &[f32]) -> f32 {
    got.iter().zip(want).fold(0.0f32, |m, (a, b)| {
        let d = (a - b).abs();
        if d.is_nan() {
            f32::INFINITY
        } else {
            m.max(d)
        }
    })
}

/// max|v|.
pub fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// [`assert_close_within`] at the fixtures' tolerance, 1e-3.
pub fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_close_within(what, got, want, 1e-3);
}

/// Asserts max|got − want| ≤ `tol` · max|want| and prints the measured error (run
/// with `--nocapture` to read it).
pub fn assert_close_within(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let err = max_abs_diff(got, want);
    let scale = max_abs(want);
    eprintln!(
        "{what}: max|diff| = {err:.3e}, max|want| = {scale:.3e}, ratio {:.3e}",
        err / scale
    );
    assert!(
        err <= tol * scale,
        "{what}: max|diff| {err} > {tol:e} x {scale}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_relative_to_the_largest_wanted_value() {
        assert_eq!(rel_err(&[1.0, 2.5], &[1.0, 2.0]), 0.25);
        assert_eq!(rel_err(&[0.0], &[0.0]), 0.0);
        assert_eq!(max_abs_diff(&[f32::NAN], &[1.0]), f32::INFINITY);
    }

    #[test]
    fn accepts_within_and_refuses_beyond() {
        assert_close("ok", &[1.0005, -2.0], &[1.0, -2.0]);
        let far = std::panic::catch_unwind(|| assert_close("far", &[1.01, 2.0], &[1.0, 2.0]));
        assert!(far.is_err());
        let nan = std::panic::catch_unwind(|| assert_close("nan", &[f32::NAN], &[1.0]));
        assert!(nan.is_err());
        let len = std::panic::catch_unwind(|| assert_close("len", &[1.0], &[1.0, 2.0]));
        assert!(len.is_err());
    }
}
