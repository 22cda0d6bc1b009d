//! EfficientNetV2's progressive learning (Algorithm 1 of the paper): training
//! runs in M stages of equal length; stage i of M (0-based) trains at image size
//! `S_i = S_0 + (S_e − S_0)·i/(M − 1)` with each regularizer
//! `φ_i = φ_0 + (φ_e − φ_0)·i/(M − 1)`, from the spec's `training { }` settings
//! (`start_size`, `size`, and `start .. end` of dropout, RandAugment, mixup).
//!
//! The official code computes the size as `S_0 + (S_e − S_0)·(i + 1)/M` instead
//! (`effc_ir::Training::schedule`, which `effc inspect` prints); this follows the
//! paper. Sizes are rounded to whole pixels.

use effc_ir::spec::{Ramp, Training};
use serde::Serialize;

/// One stage: its steps `[from, to)`, image size and regularizers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stage {
    pub from: u64,
    pub to: u64,
    pub size: usize,
    pub dropout: f64,
    pub randaugment: Option<f64>,
    pub mixup: Option<f64>,
}

fn lerp(r: Ramp, i: usize, m: usize) -> f64 {
    if m <= 1 {
        r.end
    } else {
        r.start + (r.end - r.start) * i as f64 / (m - 1) as f64
    }
}

/// The stages over `total` steps; `None` when the spec states no training size.
pub fn stages(t: &Training, final_dropout: f64, total: u64) -> Option<Vec<Stage>> {
    let size = t.size?;
    let m = t.stages.max(1);
    let sizes = Ramp {
        start: t.start_size as f64,
        end: size as f64,
    };
    let dropout = t.dropout.unwrap_or(Ramp {
        start: final_dropout,
        end: final_dropout,
    });
    Some(
        (0..m)
            .map(|i| Stage {
                from: total * i as u64 / m as u64,
                to: total * (i as u64 + 1) / m as u64,
                size: lerp(sizes, i, m).round() as usize,
                dropout: lerp(dropout, i, m),
                randaugment: t.randaugment.map(|r| lerp(r, i, m)),
                mixup: t.mixup.map(|r| lerp(r, i, m)),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use effc_ir::{Model, Options, Spec};

    #[test]
    fn v2_s_follows_algorithm_1() {
        let m = Model::build(&Spec::builtin("v2-s").unwrap(), &Options::default()).unwrap();
        let s = stages(&m.training, m.dropout, 1000).unwrap();
        let sizes: Vec<usize> = s.iter().map(|s| s.size).collect();
        assert_eq!(sizes, [128, 185, 243, 300]);
        let steps: Vec<(u64, u64)> = s.iter().map(|s| (s.from, s.to)).collect();
        assert_eq!(steps, [(0, 250), (250, 500), (500, 750), (750, 1000)]);
        let ra: Vec<f64> = s.iter().map(|s| s.randaugment.unwrap()).collect();
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9);
        assert!(
            close(&ra, &[5.0, 5.0 + 10.0 / 3.0, 5.0 + 20.0 / 3.0, 15.0]),
            "{ra:?}"
        );
        let d: Vec<f64> = s.iter().map(|s| s.dropout).collect();
        let (d0, de) = (
            m.training.dropout.unwrap().start,
            m.training.dropout.unwrap().end,
        );
        assert!(
            close(
                &d,
                &[d0, d0 + (de - d0) / 3.0, d0 + 2.0 * (de - d0) / 3.0, de]
            ),
            "{d:?}"
        );
    }

    #[test]
    fn no_training_size_no_stages() {
        let m = Model::build(&Spec::builtin("b0").unwrap(), &Options::default()).unwrap();
        assert!(stages(&m.training, m.dropout, 10).is_none());
    }
}
