//! The ranges of the numeric settings, stated once: a spec's settings, the
//! overrides of [`crate::Options`] (command-line flags, macro options) and `effc
//! scale`'s coefficients are checked against the same bounds.

use std::fmt;

/// An interval of reals, each end open or closed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    pub lo: f64,
    pub hi: f64,
    pub lo_open: bool,
    pub hi_open: bool,
}

impl Range {
    pub fn contains(&self, v: f64) -> bool {
        (if self.lo_open {
            v > self.lo
        } else {
            v >= self.lo
        }) && (if self.hi_open {
            v < self.hi
        } else {
            v <= self.hi
        })
    }
}

impl fmt::Display for Range {
    /// `(0, 1)`, `[-8, 16]`, `(0, 4]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}, {}{}",
            if self.lo_open { "(" } else { "[" },
            self.lo,
            self.hi,
            if self.hi_open { ")" } else { "]" }
        )
    }
}

const fn range(lo: f64, hi: f64, lo_open: bool, hi_open: bool) -> Range {
    Range {
        lo,
        hi,
        lo_open,
        hi_open,
    }
}

/// Batch-norm epsilon.
pub const BN_EPS: Range = range(0.0, 1.0, true, true);
/// Width and depth coefficients.
pub const COEFFICIENT: Range = range(0.0, 64.0, true, false);
/// Compound scaling's φ.
pub const PHI: Range = range(-8.0, 16.0, false, false);
/// Compound scaling's bases α, β, γ.
pub const BASE: Range = range(0.0, 4.0, true, false);
/// Dropout and drop-path rates.
pub const RATE: Range = range(0.0, 1.0, false, true);
/// A learning rate.
pub const LR: Range = range(0.0, 100.0, true, false);
/// Weight decay.
pub const WEIGHT_DECAY: Range = range(0.0, 1.0, false, false);
/// Label smoothing, momenta and EMA decays.
pub const FRACTION: Range = range(0.0, 1.0, false, false);
/// Epochs of warmup or between decay steps.
pub const EPOCHS: Range = range(0.0, 1e6, false, false);
/// Input resolution in pixels (also the training sizes).
pub const RESOLUTION: std::ops::RangeInclusive<usize> = 1..=16384;
/// Classifier outputs (0: no classifier).
pub const CLASSES: std::ops::RangeInclusive<usize> = 0..=1 << 24;
/// Stem and head channels.
pub const CHANNELS: std::ops::RangeInclusive<usize> = 1..=1 << 20;
