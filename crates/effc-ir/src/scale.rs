//! Compound scaling as the EfficientNet paper states it (§3.3): depth `d = α^φ`,
//! width `w = β^φ`, resolution `r = γ^φ`, with `α·β²·γ² ≈ 2` so that FLOPs grow
//! about `2^φ`.
//!
//! - [`Coefficients`]: α, β, γ, and what φ makes of a [`Spec`] ([`scaled`], the same
//!   rule a `phi = X` setting applies);
//! - [`largest_phi`]: the largest φ (in hundredths) that a monotone test accepts,
//!   galloping then bisecting, for `effc scale`'s budgets;
//! - [`grid`]: the paper's step 1, every α, β, γ ≥ 1 on a grid with `α·β²·γ²`
//!   near 2, and [`macs_ratio`], what one step of φ really costs once channels,
//!   repeats and resolution are rounded.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{Model, Options, Spec};

/// α, β, γ: the bases of depth, width and resolution.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Coefficients {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
}

/// The paper's α = 1.2, β = 1.1, γ = 1.15 (found by its grid search on B0), the
/// defaults of a spec's `phi`.
pub const PAPER: Coefficients = Coefficients {
    alpha: 1.2,
    beta: 1.1,
    gamma: 1.15,
};

impl Default for Coefficients {
    fn default() -> Self {
        PAPER
    }
}

impl Coefficients {
    /// `α·β²·γ²`: the FLOPs factor of one step of φ, before rounding.
    pub fn flops_factor(&self) -> f64 {
        self.alpha * self.beta * self.beta * self.gamma * self.gamma
    }

    /// Depth coefficient at φ: `α^φ`.
    pub fn depth(&self, phi: f64) -> f64 {
        self.alpha.powf(phi)
    }

    /// Width coefficient at φ: `β^φ`.
    pub fn width(&self, phi: f64) -> f64 {
        self.beta.powf(phi)
    }

    /// Resolution at φ from a base resolution: `round(R·γ^φ)`, at least 1.
    pub fn resolution(&self, base: usize, phi: f64) -> usize {
        ((base as f64) * self.gamma.powf(phi)).round().max(1.0) as usize
    }

    /// The φ each of a model's coefficients corresponds to: `(log_α d, log_β w,
    /// log_γ (r/R))`. Equal for a model scaled by φ; B1–B7's published
    /// coefficients were rounded by hand and give three different values.
    pub fn implied_phi(&self, depth: f64, width: f64, resolution: usize, base: usize) -> [f64; 3] {
        [
            depth.ln() / self.alpha.ln(),
            width.ln() / self.beta.ln(),
            (resolution as f64 / base as f64).ln() / self.gamma.ln(),
        ]
    }
}

/// Sets `spec`'s depth, width and resolution for `phi` as the `phi` setting does:
/// the depth and width coefficients are replaced, the resolution in force is
/// multiplied by `γ^φ` and rounded.
pub(crate) fn apply(spec: &mut Spec, phi: f64, c: &Coefficients) {
    spec.depth = c.depth(phi);
    spec.width = c.width(phi);
    spec.resolution = c.resolution(spec.resolution, phi);
    spec.phi = Some([phi, c.alpha, c.beta, c.gamma]);
}

/// `base` scaled by φ: what `model X extends BASE { phi = φ  alpha = α ... }`
/// resolves to (only the name stays `base`'s).
pub fn scaled(base: &Spec, phi: f64, c: &Coefficients) -> Spec {
    let mut s = base.clone();
    apply(&mut s, phi, c);
    s
}

/// φ rounded to hundredths, as `effc scale` writes it.
pub fn phi_of(hundredths: i32) -> f64 {
    // Parsing the printed value gives exactly what a spec file with it resolves to.
    format!("{:.2}", hundredths as f64 / 100.0)
        .parse()
        .unwrap_or(hundredths as f64 / 100.0)
}

/// The largest `k` in `lo..=hi` (φ in hundredths) for which `fits(k)` holds,
/// assuming `fits` holds up to some `k` and fails above it (costs grow with φ).
/// Starts at `start`, gallops by `step` (doubling) to bracket the answer, then
/// bisects; every `k` is tested at most once. `None` when even `lo` fails.
pub fn largest_phi<E>(
    lo: i32,
    hi: i32,
    start: i32,
    step: i32,
    mut fits: impl FnMut(i32) -> Result<bool, E>,
) -> Result<Option<i32>, E> {
    let mut seen: BTreeMap<i32, bool> = BTreeMap::new();
    let mut test = |k: i32, seen: &mut BTreeMap<i32, bool>| -> Result<bool, E> {
        if let Some(&v) = seen.get(&k) {
            return Ok(v);
        }
        let v = fits(k)?;
        seen.insert(k, v);
        Ok(v)
    };
    if lo > hi {
        return Ok(None);
    }
    let start = start.clamp(lo, hi);
    let step = step.max(1);
    // Bracket: `good` fits, `bad` does not (or is out of range).
    let (mut good, mut bad);
    if test(start, &mut seen)? {
        good = start;
        bad = hi + 1;
        let mut s = step;
        loop {
            let k = (good + s).min(hi);
            if k == good {
                break;
            }
            if test(k, &mut seen)? {
                good = k;
                s = s.saturating_mul(2);
            } else {
                bad = k;
                break;
            }
        }
    } else {
        bad = start;
        let mut s = step;
        loop {
            if bad == lo {
                return Ok(None);
            }
            let k = (bad - s).max(lo);
            if test(k, &mut seen)? {
                good = k;
                break;
            }
            bad = k;
            s = s.saturating_mul(2);
        }
    }
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if test(mid, &mut seen)? {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Ok(Some(good))
}

/// One point of the grid search: α, β, γ and what φ = 1 really costs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GridPoint {
    pub coefficients: Coefficients,
    /// `α·β²·γ²`.
    pub flops_factor: f64,
    /// MACs of the base scaled by φ = 1 over the base's MACs, as the IR counts them.
    pub macs_ratio: f64,
}

/// The most points [`grid`] returns: each costs two model builds (and, with
/// `--measure`, two timed forwards). A step of 0.02 gives 1397 points at ±5%,
/// 0.01 over 10 000.
pub const GRID_MAX_POINTS: usize = 2000;

/// Every α, β, γ ≥ 1 on a grid of `step` (1, 1 + step, ...) with `α·β²·γ²`
/// within `tolerance` (relative, 0.05 for ±5%) of 2, in order of α, β, γ.
/// `Err(max)` as soon as there are more than `max` points, before more are
/// generated (so a tiny step allocates nothing and returns at once).
pub fn grid(step: f64, tolerance: f64, max: usize) -> Result<Vec<Coefficients>, usize> {
    let mut out = vec![];
    if !(step > 0.0 && step.is_finite() && tolerance >= 0.0) {
        return Ok(out);
    }
    let (lo, hi) = (2.0 * (1.0 - tolerance), 2.0 * (1.0 + tolerance));
    // Values are rounded to 1e-6 so that 1 + 3·0.05 prints and parses as 1.15.
    let at = |i: usize| ((1.0 + i as f64 * step) * 1e6).round() / 1e6;
    let mut a = 0;
    while at(a) <= hi {
        let mut b = 0;
        while at(a) * at(b) * at(b) <= hi {
            // The first γ that can reach `lo`, in closed form (a fine step would
            // otherwise walk millions of γ below it).
            let ab2 = at(a) * at(b) * at(b);
            let first = ((lo / ab2).sqrt() - 1.0) / step;
            let mut g = if first > 1.0 { first as usize - 1 } else { 0 };
            loop {
                let c = Coefficients {
                    alpha: at(a),
                    beta: at(b),
                    gamma: at(g),
                };
                let f = c.flops_factor();
                if f > hi {
                    break;
                }
                if f >= lo {
                    if out.len() == max {
                        return Err(max);
                    }
                    out.push(c);
                }
                g += 1;
            }
            b += 1;
        }
        a += 1;
    }
    Ok(out)
}

/// MACs of `base` scaled by φ = 1 with `c`, over the MACs of `base` (φ = 0 with
/// the same rounding: the base's own width and depth coefficients are 1).
pub fn macs_ratio(base: &Spec, c: &Coefficients) -> Result<f64, effc_syntax::Diagnostics> {
    let opts = Options::default();
    let m0 = Model::build(&scaled(base, 0.0, c), &opts)?.cost().macs;
    let m1 = Model::build(&scaled(base, 1.0, c), &opts)?.cost().macs;
    Ok(m1 as f64 / m0 as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{round_filters, round_repeats};

    #[test]
    fn largest_phi_finds_the_threshold_from_either_side() {
        for threshold in [-800, -513, -1, 0, 1, 37, 99, 100, 101, 250, 777, 1599, 1600] {
            for start in [0, 100, -300, 1600] {
                let mut tried = vec![];
                let got = largest_phi::<()>(-800, 1600, start, 25, |k| {
                    assert!(!tried.contains(&k), "{k} tested twice");
                    tried.push(k);
                    Ok(k <= threshold)
                })
                .unwrap();
                assert_eq!(got, Some(threshold), "threshold {threshold}, start {start}");
                assert!(tried.len() <= 24, "{} tests: {tried:?}", tried.len());
            }
        }
        // Nothing fits.
        assert_eq!(
            largest_phi::<()>(-800, 1600, 0, 100, |_| Ok(false)).unwrap(),
            None
        );
        // Errors stop the search.
        assert_eq!(
            largest_phi(-800, 1600, 0, 100, |k| if k > 50 {
                Err(k)
            } else {
                Ok(true)
            }),
            Err(100)
        );
    }

    #[test]
    fn phi_one_is_the_papers_rule() {
        // b0 at φ = 1 with α, β, γ = 1.2, 1.1, 1.15: own computation of every stage.
        let b0 = Spec::builtin("b0").unwrap();
        let m = Model::build(&scaled(&b0, 1.0, &PAPER), &Options::default()).unwrap();
        assert_eq!(m.resolution, 258); // round(224 · 1.15) = round(257.6)
        assert!((m.depth - 1.2).abs() < 1e-12 && (m.width - 1.1).abs() < 1e-12);
        let base = Model::build(&b0, &Options::default()).unwrap();
        for (s, s0) in m.stages.iter().zip(&base.stages) {
            assert_eq!(s.repeats, (s0.repeats as f64 * 1.2).ceil() as usize);
            let c = s0.out_ch as f64 * 1.1;
            let mut want = 8usize.max(((c + 4.0) as usize) / 8 * 8);
            if (want as f64) < 0.9 * c {
                want += 8;
            }
            assert_eq!(s.out_ch, want, "stage {}", s.index);
            assert_eq!(s.out_ch, round_filters(s0.out_ch, 1.1, crate::Rounding::V1));
            assert_eq!(s.repeats, round_repeats(s0.repeats, 1.2));
        }
        // The same as a spec that says `phi = 1`.
        let text = Spec::parse("t.enet", "model t extends b0 { phi = 1 }").unwrap();
        let from_text = Model::build(&text, &Options::default()).unwrap();
        assert_eq!(from_text.cost(), m.cost());
        assert_eq!(from_text.resolution, m.resolution);
    }

    #[test]
    fn b1_to_b7_are_rounded_by_hand() {
        // B1–B7's published (width, depth, resolution) are not α^φ, β^φ, γ^φ of one φ:
        // each coefficient implies another φ.
        let rows: Vec<(String, [f64; 3])> = (1..=7)
            .map(|i| {
                let s = Spec::builtin(&format!("b{i}")).unwrap();
                let p = PAPER.implied_phi(s.depth, s.width, s.resolution, 224);
                (format!("b{i}"), p)
            })
            .collect();
        let b7 = &rows[6].1;
        assert!((b7[0] - 6.21).abs() < 0.01, "{b7:?}"); // 1.2^φ = 3.1
        assert!((b7[1] - 7.27).abs() < 0.01, "{b7:?}"); // 1.1^φ = 2.0
        assert!((b7[2] - 7.05).abs() < 0.01, "{b7:?}"); // 224 · 1.15^φ = 600
        let b1 = &rows[0].1;
        assert_eq!(b1[1], 0.0, "B1 keeps width 1.0");
    }

    #[test]
    fn the_grid_holds_the_papers_point_and_nothing_far_from_2() {
        let g = grid(0.05, 0.05, GRID_MAX_POINTS).unwrap();
        assert!(g.contains(&PAPER), "{} points", g.len());
        for c in &g {
            let f = c.flops_factor();
            assert!((1.9..=2.1).contains(&f), "{c:?}: {f}");
            assert!(c.alpha >= 1.0 && c.beta >= 1.0 && c.gamma >= 1.0);
        }
        // Pure depth scaling (α = 2) is on it too.
        assert!(g
            .iter()
            .any(|c| c.alpha == 2.0 && c.beta == 1.0 && c.gamma == 1.0));
        assert!(grid(0.0, 0.05, GRID_MAX_POINTS).unwrap().is_empty());
        assert_eq!(grid(0.02, 0.05, GRID_MAX_POINTS).unwrap().len(), 1397);
        // Too fine a step is refused at the cap, at once.
        assert_eq!(grid(0.01, 0.05, GRID_MAX_POINTS), Err(GRID_MAX_POINTS));
        assert_eq!(grid(1e-9, 0.05, GRID_MAX_POINTS), Err(GRID_MAX_POINTS));
        // Rounding makes the real MACs ratio differ from α·β²·γ² = 1.92: on B0,
        // ceil(r·1.2) doubles the stages of 1 and 2 blocks, so φ = 1 costs 2.57x.
        let b0 = Spec::builtin("b0").unwrap();
        let r = macs_ratio(&b0, &PAPER).unwrap();
        assert!((r - 2.5728).abs() < 1e-3, "{r}");
    }
}
