//! Multi-scale feature levels (timm's `features_only=True` meaning).
//!
//! Level `i` (0–4) is the output of the last block whose output has reduction
//! `2^(i+1)` (the stem's stride times every block stride so far): the end of the
//! last stage before each stride-2 stage, and the end of the last stage. The
//! head's 1x1 conv is never a level (as in timm and EfficientDet).

use effc_syntax::{Diagnostic, Diagnostics};
use serde::Serialize;

use crate::model::Model;

/// The highest level: reduction 32.
pub const MAX_LEVEL: usize = 4;

/// One feature level of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FeatureInfo {
    pub level: usize,
    pub channels: usize,
    /// How many input pixels one output pixel spans per side: `2^(level+1)`.
    pub reduction: usize,
    /// The IR block (global id, [`crate::Block::id`]) whose output it is.
    pub block: usize,
}

impl Model {
    /// Every level this network has (in level order), whether requested or not.
    pub fn feature_levels(&self) -> Vec<FeatureInfo> {
        let mut reduction = self.stem.conv.stride;
        let mut out: Vec<FeatureInfo> = vec![];
        for b in self.blocks() {
            reduction *= b.stride;
            if !reduction.is_power_of_two() || reduction < 2 {
                continue;
            }
            let level = reduction.trailing_zeros() as usize - 1;
            if level > MAX_LEVEL {
                continue;
            }
            let info = FeatureInfo {
                level,
                channels: b.out_ch,
                reduction,
                block: b.id,
            };
            match out.last_mut() {
                Some(last) if last.level == level => *last = info,
                _ => out.push(info),
            }
        }
        out
    }

    /// Whether the model ends at feature maps (no head, no classifier run).
    pub fn is_backbone(&self) -> bool {
        !self.features.is_empty()
    }

    /// The last block that must run: the last requested level's block, or the
    /// last block of the network when no features are requested.
    pub fn last_needed_block(&self) -> usize {
        match self.features.iter().map(|f| f.block).max() {
            Some(b) => b,
            None => self.blocks().count().saturating_sub(1),
        }
    }

    /// Whether block `id` runs (false for blocks after the last requested level).
    pub fn block_needed(&self, id: usize) -> bool {
        id <= self.last_needed_block()
    }

    /// Whether the head conv, pooling and classifier run.
    pub fn head_needed(&self) -> bool {
        self.features.is_empty()
    }
}

/// Resolves requested levels against what the network has: sorted, checked for
/// duplicates and range. `origin` is where a spec set them (`None`: an override).
pub(crate) fn select(
    model: &Model,
    levels: &[usize],
    origin: Option<effc_syntax::Loc>,
) -> Result<Vec<FeatureInfo>, Diagnostics> {
    let have = model.feature_levels();
    let names = have
        .iter()
        .map(|f| f.level.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut errors = vec![];
    let mut out = vec![];
    let mut seen = vec![];
    let diag = |msg: String, label: &str, help: String| match &origin {
        Some(loc) => Diagnostic::error(msg, loc.clone(), label.to_string()).with_help(help),
        None => Diagnostic::bare(msg).with_help(help),
    };
    if levels.is_empty() {
        errors.push(diag(
            "no feature levels requested".into(),
            "empty list",
            format!("ask for one or more of the levels {names}, e.g. [1, 2, 3, 4]"),
        ));
    }
    for &l in levels {
        if seen.contains(&l) {
            errors.push(diag(
                format!("feature level {l} is requested twice"),
                "duplicate level",
                "list each level once".into(),
            ));
            continue;
        }
        seen.push(l);
        match have.iter().find(|f| f.level == l) {
            Some(f) => out.push(*f),
            None => errors.push(diag(
                format!(
                    "model `{}` has no feature level {l} (levels are 0–{MAX_LEVEL}, reduction 2^(level+1); this network has {names})",
                    model.name
                ),
                "no such level",
                format!("use levels among {names}"),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(Diagnostics(errors));
    }
    out.sort_by_key(|f| f.level);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::{Model, Options, Spec};

    fn load(name: &str, opts: &Options) -> Result<Model, effc_syntax::Diagnostics> {
        Model::build(&Spec::builtin(name)?, opts)
    }

    fn levels(name: &str, want: &[usize]) -> Vec<(usize, usize, usize)> {
        let opts = Options {
            features: Some(want.to_vec()),
            ..Options::default()
        };
        let m = load(name, &opts).unwrap();
        m.features
            .iter()
            .map(|f| (f.level, f.channels, f.reduction))
            .collect()
    }

    #[test]
    fn b3_levels_match_timm() {
        assert_eq!(
            levels("b3", &[4, 3, 2, 1]),
            vec![(1, 32, 4), (2, 48, 8), (3, 136, 16), (4, 384, 32)]
        );
    }

    #[test]
    fn v2_s_levels_match_timm() {
        let got: Vec<usize> = levels("v2-s", &[0, 1, 2, 3, 4])
            .iter()
            .map(|l| l.1)
            .collect();
        assert_eq!(got, vec![24, 48, 64, 160, 256]);
    }

    #[test]
    fn b0_levels_are_stage_ends_and_cut_the_head() {
        let opts = Options {
            features: Some(vec![1, 2, 3, 4]),
            ..Options::default()
        };
        let m = load("b0", &opts).unwrap();
        let blocks: Vec<usize> = m.features.iter().map(|f| f.block).collect();
        // b0: stages of 1, 2, 2, 3, 3, 4, 1 blocks; levels end stages 1, 2, 4, 6.
        assert_eq!(blocks, vec![2, 4, 10, 15]);
        assert!(m.is_backbone() && !m.head_needed());
        let full = load("b0", &Options::default()).unwrap();
        assert!(full.head_needed() && full.features.is_empty());
        assert_eq!(full.last_needed_block(), 15);
        let partial = load(
            "b0",
            &Options {
                features: Some(vec![2]),
                ..Options::default()
            },
        )
        .unwrap();
        assert_eq!(partial.last_needed_block(), 4);
        assert!(!partial.block_needed(5));
    }

    #[test]
    fn bad_levels_are_diagnosed() {
        for (want, msg) in [
            (vec![5], "has no feature level 5"),
            (vec![2, 2], "feature level 2 is requested twice"),
            (vec![], "no feature levels requested"),
        ] {
            let opts = Options {
                features: Some(want.clone()),
                ..Options::default()
            };
            let err = load("b0", &opts).unwrap_err();
            assert!(format!("{err:?}").contains(msg), "{want:?}: {err:?}");
        }
        // b0's stage 0 (stride 1 after the stride-2 stem) ends level 0.
        let opts = Options {
            features: Some(vec![0]),
            ..Options::default()
        };
        let m = load("b0", &opts).unwrap();
        assert_eq!((m.features[0].channels, m.features[0].reduction), (16, 2));
    }
}
