//! What `effc inspect` reports of a model: its settings, costs and stages as one
//! serializable [`Summary`], its tensors in a naming ([`params`]), and its feature
//! levels with their shapes ([`levels`]). `effc-cli` prints these; the IR's own
//! text (`Model::render`) and the plan's (`Plan`'s `Display`) are printed as they are.

use effc_ir::spec::{Activation, PaddingMode, Rounding, TrainingStage};
use effc_ir::{cost::LayerRow, BlockKind, FeatureInfo, Model, Naming};
use serde::Serialize;

/// A model at a glance (`effc inspect --json`).
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub model: String,
    pub extends: Option<String>,
    pub resolution: usize,
    /// CHW.
    pub input: [usize; 3],
    /// CHW of the output: the classes, or the head's channels.
    pub output: [usize; 3],
    pub params: u64,
    pub macs: u64,
    pub bn_buffers: u64,
    pub activation_bytes: u64,
    pub peak_activation_bytes: u64,
    pub width: f64,
    pub depth: f64,
    pub rounding: Rounding,
    pub padding: PaddingMode,
    pub bn_eps: f64,
    pub activation: Activation,
    pub classes: usize,
    pub dropout: f64,
    pub drop_path: f64,
    pub mean: [f64; 3],
    pub std: [f64; 3],
    /// The training recipe's stages (one unless progressive).
    pub training: Vec<TrainingStage>,
    pub stages: Vec<StageSummary>,
    pub layers: Vec<LayerRow>,
    /// Kernels the fused plan dispatches per forward (f32).
    pub dispatches: usize,
    /// The feature levels the model ends at (empty unless a backbone).
    pub features: Vec<Level>,
    /// Every level the network offers.
    pub feature_levels: Vec<Level>,
}

/// One stage: its block string and what it became after scaling.
#[derive(Clone, Debug, Serialize)]
pub struct StageSummary {
    pub index: usize,
    pub block_string: String,
    pub kind: BlockKind,
    pub repeats: usize,
    pub kernel: usize,
    pub stride: usize,
    pub expand: f64,
    pub se: Option<f64>,
    pub in_channels: usize,
    pub out_channels: usize,
    /// CHW of the stage's last block.
    pub output: Option<[usize; 3]>,
    pub params: u64,
    pub macs: u64,
}

/// A feature level: where it is taken and its shape.
#[derive(Clone, Debug, Serialize)]
pub struct Level {
    pub level: usize,
    pub channels: usize,
    pub reduction: usize,
    /// The IR block's global id and its path (`blocks.5.3`).
    pub block: usize,
    pub block_path: String,
    /// CHW of the level's map.
    pub shape: [usize; 3],
}

/// One tensor in a naming.
#[derive(Clone, Debug, Serialize)]
pub struct ParamRow {
    pub name: String,
    pub shape: Vec<usize>,
    pub trainable: bool,
}

/// The summary of `m`.
pub fn summary(m: &Model) -> Summary {
    let c = m.cost();
    Summary {
        model: m.name.clone(),
        extends: m.base.clone(),
        resolution: m.resolution,
        input: m.input,
        output: m.output_shape(),
        params: c.params,
        macs: c.macs,
        bn_buffers: c.buffers,
        activation_bytes: c.activation_bytes,
        peak_activation_bytes: c.peak_activation_bytes,
        width: m.width,
        depth: m.depth,
        rounding: m.rounding,
        padding: m.padding,
        bn_eps: m.bn_eps,
        activation: m.activation,
        classes: m.classes,
        dropout: m.dropout,
        drop_path: m.drop_path,
        mean: m.mean,
        std: m.std,
        training: m.training.schedule(m.dropout),
        stages: m
            .stages
            .iter()
            .map(|s| StageSummary {
                index: s.index,
                block_string: s.text.clone(),
                kind: s.kind,
                repeats: s.repeats,
                kernel: s.kernel,
                stride: s.stride,
                expand: s.expand_ratio,
                se: s.se,
                in_channels: s.in_ch,
                out_channels: s.out_ch,
                output: s.blocks.last().map(|b| b.out_shape),
                params: s.blocks.iter().map(|b| b.params()).sum(),
                macs: s.blocks.iter().map(|b| b.macs()).sum(),
            })
            .collect(),
        layers: m.layers(),
        dispatches: effc_plan::plan(m).dispatches(),
        features: level_rows(m, &m.features),
        feature_levels: level_rows(m, &m.feature_levels()),
    }
}

/// Every tensor of `m` in `naming`, in `state_dict` order.
pub fn params(m: &Model, naming: Naming) -> Vec<ParamRow> {
    m.named_params(naming)
        .into_iter()
        .map(|(name, p)| ParamRow {
            name,
            shape: p.shape,
            trainable: p.trainable,
        })
        .collect()
}

/// The levels a backbone ends at (`true`) or, for a model with a head, the
/// levels it offers (`false`).
pub fn levels(m: &Model) -> (bool, Vec<Level>) {
    if m.is_backbone() {
        (true, level_rows(m, &m.features))
    } else {
        (false, level_rows(m, &m.feature_levels()))
    }
}

fn level_rows(m: &Model, levels: &[FeatureInfo]) -> Vec<Level> {
    levels
        .iter()
        .map(|f| {
            let block = m.blocks().find(|b| b.id == f.block);
            Level {
                level: f.level,
                channels: f.channels,
                reduction: f.reduction,
                block: f.block,
                block_path: block.map_or_else(|| format!("block {}", f.block), |b| b.path()),
                shape: block.map_or([f.channels, 0, 0], |b| b.out_shape),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, features: Option<Vec<usize>>) -> Model {
        let spec = effc_ir::Spec::builtin(name).unwrap();
        let opts = effc_ir::Options {
            features,
            ..Default::default()
        };
        Model::build(&spec, &opts).unwrap()
    }

    #[test]
    fn the_summary_states_the_irs_numbers() {
        let m = model("b0", None);
        let s = summary(&m);
        assert_eq!(s.params, m.cost().params);
        assert_eq!(s.stages.len(), 7);
        assert_eq!(s.stages[0].block_string, m.stages[0].text);
        let sum: u64 = s.stages.iter().map(|s| s.params).sum();
        assert!(
            sum < s.params,
            "the stem, head and classifier are outside the stages"
        );
        assert_eq!(s.output, [1000, 1, 1]);
        assert!(s.features.is_empty());
        assert_eq!(s.feature_levels.len(), 5);
    }

    #[test]
    fn levels_of_a_backbone_are_the_requested_ones_with_shapes() {
        let m = model("b0", Some(vec![2, 4]));
        let (requested, levels) = levels(&m);
        assert!(requested);
        let got: Vec<_> = levels.iter().map(|l| (l.level, l.shape)).collect();
        assert_eq!(got, [(2, [40, 28, 28]), (4, [320, 7, 7])]);
        let (requested, all) = super::levels(&model("b0", None));
        assert!(!requested);
        assert_eq!(all[0].reduction, 2);
        assert!(all[0].block_path.starts_with("blocks."));
    }

    #[test]
    fn params_in_a_naming_keep_state_dict_order() {
        let m = model("lite0", None);
        let rows = params(&m, Naming::Timm);
        assert_eq!(rows[0].name, "conv_stem.weight");
        assert_eq!(rows.len(), m.params().len());
        let mean = rows.iter().find(|r| r.name == "bn1.running_mean").unwrap();
        assert!(!mean.trainable && rows[1].trainable, "{:?}", &rows[..4]);
    }
}
