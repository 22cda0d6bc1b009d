//! Backbones: a model with feature levels requested (`features = [..]`,
//! [`effc_ir::Model::features`]) ends at its last requested level. Each level is
//! the output tensor of the kernel that ends its block (no copy), lives in a
//! buffer of its own (so it stays alive to the end of the forward and the runtime
//! reads it back without disturbing anything), and nothing after the last level is
//! planned: no later block, no head, no classifier.

use effc_ir::{FeatureInfo, Model};
use serde::{Deserialize, Serialize};

use crate::plan::{Plan, Source, TensorId, TensorKind};

/// One feature level a backbone plan writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureOutput {
    /// timm's level: reduction `2^(level+1)`.
    pub level: usize,
    /// The activation tensor (NHWC, channels padded to 4) holding it.
    pub tensor: TensorId,
    /// Real channels.
    pub channels: usize,
    /// Input pixels per output pixel, per side.
    pub reduction: usize,
    pub h: usize,
    pub w: usize,
    /// The IR block whose output it is ([`effc_ir::Block::id`]).
    pub block: usize,
}

impl FeatureOutput {
    pub(crate) fn new(info: &FeatureInfo, tensor: TensorId, h: usize, w: usize) -> Self {
        FeatureOutput {
            level: info.level,
            tensor,
            channels: info.channels,
            reduction: info.reduction,
            h,
            w,
            block: info.block,
        }
    }

    /// Values per image, NCHW without padding: `channels × h × w`.
    pub fn len(&self) -> usize {
        self.channels * self.h * self.w
    }

    /// Whether it holds no values (never, for a level of a real network).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its NCHW shape for a batch.
    pub fn shape(&self, batch: usize) -> [usize; 4] {
        [batch, self.channels, self.h, self.w]
    }
}

impl Plan {
    /// Whether the plan ends at feature levels (see [`crate::features`]).
    pub fn is_backbone(&self) -> bool {
        !self.features.is_empty()
    }

    /// The tensors a forward copies out, in order: the feature levels of a
    /// backbone, else the output alone.
    pub fn output_tensors(&self) -> Vec<TensorId> {
        if self.is_backbone() {
            self.features.iter().map(|f| f.tensor).collect()
        } else {
            vec![self.output]
        }
    }

    /// Bytes per image copied out of a forward (padded, as the buffers hold them).
    pub fn output_bytes(&self) -> usize {
        self.output_tensors()
            .iter()
            .map(|&t| self.tensors[t].bytes)
            .sum()
    }

    /// Invariant 10 of [`Plan::validate`]: the feature levels of a backbone.
    pub(crate) fn check_features(&self) -> Result<(), String> {
        let Some(last) = self.features.last() else {
            return Ok(());
        };
        let n = self.tensors.len();
        for (i, f) in self.features.iter().enumerate() {
            let level = f.level;
            if i > 0 && self.features[i - 1].level >= level {
                return Err(format!("feature levels out of order at level {level}"));
            }
            if f.reduction != 1 << (level + 1) {
                return Err(format!(
                    "feature level {level} has reduction {}, not {}",
                    f.reduction,
                    1 << (level + 1)
                ));
            }
            if f.tensor.0 >= n {
                return Err(format!(
                    "feature level {level} is tensor {} of {n}",
                    f.tensor.0
                ));
            }
            let t = &self.tensors[f.tensor];
            if t.kind != TensorKind::Activation || (t.h, t.w, t.c) != (f.h, f.w, f.channels) {
                return Err(format!(
                    "feature level {level} is {}x{}x{}, but `{}` is a {:?} of {}x{}x{}",
                    f.h, f.w, f.channels, t.name, t.kind, t.h, t.w, t.c
                ));
            }
            if !self
                .kernels
                .iter()
                .any(|k| k.tensors_written().any(|x| x == f.tensor))
            {
                return Err(format!(
                    "no kernel writes feature level {level} (`{}`)",
                    t.name
                ));
            }
            if self.slots[t.slot].tensors != [f.tensor] {
                return Err(format!(
                    "feature level {level} (`{}`) shares its buffer with other tensors",
                    t.name
                ));
            }
        }
        if self.output != last.tensor {
            return Err(format!(
                "a backbone's output is its last level ({}), not `{}`",
                last.level, self.tensors[self.output].name
            ));
        }
        let len: usize = self.features.iter().map(FeatureOutput::len).sum();
        if self.output_len != len {
            return Err(format!(
                "the feature levels hold {len} values per image, but the output is {}",
                self.output_len
            ));
        }
        if let Some(k) = self
            .kernels
            .iter()
            .find(|k| matches!(k.source, Source::Head | Source::Classifier))
        {
            return Err(format!("a backbone runs `{}`", k.name));
        }
        match self.kernels.last() {
            Some(k) if k.tensors_written().any(|t| t == last.tensor) => Ok(()),
            Some(k) => Err(format!(
                "`{}` runs after the last feature level ({})",
                k.name, last.level
            )),
            None => Err("a backbone without kernels".into()),
        }
    }
}

/// The levels `model` requests, by the tensor each block ended in (`ends`: block
/// id → output tensor with its height and width). Panics if a requested level's
/// block was not planned: [`crate::fuse`] plans every block up to the last level.
pub(crate) fn outputs(
    model: &Model,
    ends: &[(usize, TensorId, usize, usize)],
) -> Vec<FeatureOutput> {
    model
        .features
        .iter()
        .map(|info| {
            let &(_, t, h, w) = ends
                .iter()
                .find(|e| e.0 == info.block)
                .expect("every block up to the last level is planned");
            FeatureOutput::new(info, t, h, w)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use effc_ir::{Model, Options, Spec};

    use crate::plan::{Plan, TensorId};

    fn backbone(name: &str, levels: &[usize]) -> Plan {
        let opts = Options {
            features: Some(levels.to_vec()),
            ..Options::default()
        };
        let m = Model::build(&Spec::builtin(name).unwrap(), &opts).unwrap();
        crate::plan(&m)
    }

    #[test]
    fn b0_levels_end_at_the_last_level_with_fewer_dispatches() {
        let p = backbone("b0", &[1, 2, 3, 4]);
        assert_eq!(p.validate(), Ok(()));
        let got: Vec<_> = p
            .features
            .iter()
            .map(|f| (f.level, f.channels, f.h, f.w))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 24, 56, 56),
                (2, 40, 28, 28),
                (3, 112, 14, 14),
                (4, 320, 7, 7)
            ]
        );
        let full =
            crate::plan(&Model::build(&Spec::builtin("b0").unwrap(), &Options::default()).unwrap());
        // No head and no classifier: the full model's last two dispatches.
        assert_eq!(p.dispatches(), full.dispatches() - 2);
        assert_eq!(p.kernels.last().unwrap().name, "blocks.6.0.project");
        assert_eq!(
            p.output_len,
            24 * 56 * 56 + 40 * 28 * 28 + 112 * 14 * 14 + 320 * 49
        );
        assert_eq!(p.output_tensors().len(), 4);
        // Level 1 is read by the next block too, yet nothing reuses its buffer.
        let l1 = p.features[0].tensor;
        assert!(
            p.kernels
                .iter()
                .filter(|k| k.tensors_read().any(|t| t == l1))
                .count()
                >= 1
        );
        assert_eq!(p.slots[p.tensors[l1].slot].tensors, [l1]);
    }

    #[test]
    fn an_early_level_plans_nothing_after_it() {
        let p = backbone("v2-b0", &[0, 2]);
        assert_eq!(p.validate(), Ok(()));
        let last = p.features.last().unwrap();
        assert_eq!((last.level, last.channels, last.reduction), (2, 48, 8));
        assert!(p.kernels.last().unwrap().name.starts_with("blocks.2."));
    }

    #[test]
    fn classifiers_have_no_levels_and_keep_their_fingerprint_shape() {
        let p =
            crate::plan(&Model::build(&Spec::builtin("b0").unwrap(), &Options::default()).unwrap());
        assert!(!p.is_backbone());
        assert_eq!(p.output_tensors(), vec![p.output]);
        assert_eq!(p.output_bytes(), p.tensors[p.output].bytes);
        let json = serde_json::to_string(&p).unwrap();
        assert!(
            !json.contains("\"features\""),
            "a plan without levels serializes as before"
        );
    }

    #[test]
    fn broken_levels_are_reported() {
        let base = backbone("b0", &[1, 2, 3, 4]);
        let err = |f: &dyn Fn(&mut Plan)| {
            let mut p = base.clone();
            f(&mut p);
            p.validate().unwrap_err()
        };
        assert!(err(&|p| p.features.swap(0, 1)).contains("out of order"));
        assert!(err(&|p| p.features[0].reduction = 8).contains("reduction 8"));
        assert!(err(&|p| p.features[1].channels = 41).contains("feature level 2 is 28x28x41"));
        assert!(err(&|p| p.features[2].tensor = TensorId(9999)).contains("tensor 9999"));
        assert!(err(&|p| p.output_len += 1).contains("values per image"));
        assert!(err(&|p| {
            p.features.pop();
        })
        .contains("its last level"));
        // A level whose buffer another tensor shares.
        assert!(err(&|p| {
            let t = p.features[0].tensor;
            let moved = TensorId(p.tensors.iter().position(|t| t.name == "stem").unwrap());
            let from = p.tensors[moved].slot.index();
            p.slots[from].tensors.retain(|&x| x != moved);
            p.tensors[moved].slot = p.tensors[t].slot;
            let s = p.tensors[t].slot.index();
            p.slots[s].tensors.push(moved);
        })
        .contains("shares its buffer"));
    }
}
