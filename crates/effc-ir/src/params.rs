//! The canonical parameter list, and its names in the checkpoint layouts of timm,
//! torchvision and the original TF port.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::model::{Block, BlockKind, ConvBn, Model};

/// Which layer of the network a tensor belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Layer {
    StemConv,
    StemBn,
    ExpandConv,
    ExpandBn,
    /// The kxk conv of a block: depthwise (MBConv) or full (Fused-MBConv).
    Conv,
    ConvBn,
    SeReduce,
    SeExpand,
    ProjectConv,
    ProjectBn,
    HeadConv,
    HeadBn,
    Classifier,
}

/// Which tensor of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Tensor {
    Weight,
    Bias,
    RunningMean,
    RunningVar,
}

impl Tensor {
    pub fn suffix(self) -> &'static str {
        match self {
            Tensor::Weight => "weight",
            Tensor::Bias => "bias",
            Tensor::RunningMean => "running_mean",
            Tensor::RunningVar => "running_var",
        }
    }
}

/// Where a tensor sits: the block (global id, stage, index in stage), the layer and the tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ParamKey {
    /// (stage, index in stage, global block id), or `None` outside blocks.
    pub block: Option<(usize, usize, usize)>,
    pub layer: Layer,
    pub tensor: Tensor,
}

/// One tensor of the model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Param {
    pub key: ParamKey,
    /// effc's canonical name, e.g. `blocks.1.0.expand.bn.running_var`.
    pub name: String,
    /// PyTorch shape: `[out, in/groups, k, k]` for convs, `[out, in]` for the classifier.
    pub shape: Vec<usize>,
    /// False for BN running statistics.
    pub trainable: bool,
}

impl Param {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A checkpoint naming scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Naming {
    /// effc's own names (`stem.conv.weight`, `blocks.S.I.dw.conv.weight`, ...).
    Effc,
    /// timm (`conv_stem`, `blocks.S.I.conv_pw`, `bn1`, ...).
    Timm,
    /// torchvision (`features.N.I.block.J...`, `classifier.1`).
    Torchvision,
    /// The original TF port (`_conv_stem`, `_blocks.N._expand_conv`, ...), as in
    /// the `efficientnet_pytorch` package and the TF-Lite releases.
    Tf,
}

impl Naming {
    pub const ALL: [Naming; 4] = [Naming::Effc, Naming::Timm, Naming::Torchvision, Naming::Tf];
    pub fn name(self) -> &'static str {
        match self {
            Naming::Effc => "effc",
            Naming::Timm => "timm",
            Naming::Torchvision => "torchvision",
            Naming::Tf => "tf",
        }
    }
}

impl fmt::Display for Naming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Naming {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Naming::ALL
            .into_iter()
            .find(|n| n.name() == s)
            .ok_or_else(|| format!("unknown naming `{s}` (expected effc, timm, torchvision or tf)"))
    }
}

const BN_TENSORS: [Tensor; 4] = [
    Tensor::Weight,
    Tensor::Bias,
    Tensor::RunningMean,
    Tensor::RunningVar,
];

/// A conv's weight, then its BN's four tensors (only weight and bias trainable).
fn push_conv_bn(
    out: &mut Vec<Param>,
    block: Option<(usize, usize, usize)>,
    prefix: &str,
    cb: &ConvBn,
    conv: Layer,
    bn: Layer,
) {
    out.push(Param {
        key: ParamKey {
            block,
            layer: conv,
            tensor: Tensor::Weight,
        },
        name: format!("{prefix}.conv.weight"),
        shape: cb.conv.weight_shape(),
        trainable: true,
    });
    for t in BN_TENSORS {
        out.push(Param {
            key: ParamKey {
                block,
                layer: bn,
                tensor: t,
            },
            name: format!("{prefix}.bn.{}", t.suffix()),
            shape: vec![cb.bn.channels],
            trainable: matches!(t, Tensor::Weight | Tensor::Bias),
        });
    }
}

/// A layer's weight of `shape` and its bias (`shape[0]` values), both trainable.
fn push_weight_bias(
    out: &mut Vec<Param>,
    block: Option<(usize, usize, usize)>,
    layer: Layer,
    prefix: &str,
    shape: Vec<usize>,
) {
    let bias = vec![shape[0]];
    for (tensor, suffix, shape) in [
        (Tensor::Weight, "weight", shape),
        (Tensor::Bias, "bias", bias),
    ] {
        out.push(Param {
            key: ParamKey {
                block,
                layer,
                tensor,
            },
            name: format!("{prefix}.{suffix}"),
            shape,
            trainable: true,
        });
    }
}

impl Model {
    /// Every tensor of the model, in the order PyTorch's `state_dict` lists them
    /// (the same order in timm, torchvision and the TF port).
    pub fn params(&self) -> Vec<Param> {
        let mut out = vec![];
        push_conv_bn(
            &mut out,
            None,
            "stem",
            &self.stem,
            Layer::StemConv,
            Layer::StemBn,
        );
        for b in self.blocks() {
            let key = Some((b.stage, b.index, b.id));
            let p = b.path();
            if let Some(e) = &b.expand {
                let name = format!("{p}.expand");
                push_conv_bn(&mut out, key, &name, e, Layer::ExpandConv, Layer::ExpandBn);
            }
            let name = format!("{p}.{}", b.conv_name());
            push_conv_bn(&mut out, key, &name, &b.conv, Layer::Conv, Layer::ConvBn);
            if let Some(se) = &b.se {
                for (layer, name, o, i) in [
                    (Layer::SeReduce, "reduce", se.reduced, se.channels),
                    (Layer::SeExpand, "expand", se.channels, se.reduced),
                ] {
                    let name = format!("{p}.se.{name}");
                    push_weight_bias(&mut out, key, layer, &name, vec![o, i, 1, 1]);
                }
            }
            if let Some(pr) = &b.project {
                let name = format!("{p}.project");
                push_conv_bn(
                    &mut out,
                    key,
                    &name,
                    pr,
                    Layer::ProjectConv,
                    Layer::ProjectBn,
                );
            }
        }
        push_conv_bn(
            &mut out,
            None,
            "head",
            &self.head,
            Layer::HeadConv,
            Layer::HeadBn,
        );
        if let Some(l) = &self.classifier {
            let shape = vec![l.out_features, l.in_features];
            push_weight_bias(&mut out, None, Layer::Classifier, "classifier", shape);
        }
        out
    }

    /// Trainable parameters (convs, conv biases, BN weight and bias, classifier).
    pub fn param_count(&self) -> u64 {
        self.params()
            .iter()
            .filter(|p| p.trainable)
            .map(|p| p.numel() as u64)
            .sum()
    }

    /// The name of a tensor in a checkpoint layout.
    pub fn param_name(&self, naming: Naming, p: &Param) -> String {
        let blocks: Vec<&Block> = self.blocks().collect();
        name_in(naming, self, &blocks, p)
    }

    /// Every tensor with its name in a layout, in `state_dict` order.
    pub fn named_params(&self, naming: Naming) -> Vec<(String, Param)> {
        let blocks: Vec<&Block> = self.blocks().collect();
        self.params()
            .into_iter()
            .map(|p| (name_in(naming, self, &blocks, &p), p))
            .collect()
    }
}

fn name_in(naming: Naming, model: &Model, blocks: &[&Block], p: &Param) -> String {
    let t = p.key.tensor.suffix();
    let block = p.key.block.map(|(_, _, id)| blocks[id]);
    match naming {
        Naming::Effc => p.name.clone(),
        Naming::Timm => {
            let base = match (p.key.layer, block) {
                (Layer::StemConv, _) => "conv_stem".to_string(),
                (Layer::StemBn, _) => "bn1".to_string(),
                (Layer::HeadConv, _) => "conv_head".to_string(),
                (Layer::HeadBn, _) => "bn2".to_string(),
                (Layer::Classifier, _) => "classifier".to_string(),
                (layer, Some(b)) => format!(
                    "blocks.{}.{}.{}",
                    b.stage,
                    b.index,
                    timm_block_layer(b, layer)
                ),
                (_, None) => unreachable!("block layers have a block"),
            };
            format!("{base}.{t}")
        }
        Naming::Torchvision => {
            let last = model.stages.len() + 1;
            match (p.key.layer, block) {
                (Layer::StemConv, _) => format!("features.0.0.{t}"),
                (Layer::StemBn, _) => format!("features.0.1.{t}"),
                (Layer::HeadConv, _) => format!("features.{last}.0.{t}"),
                (Layer::HeadBn, _) => format!("features.{last}.1.{t}"),
                (Layer::Classifier, _) => format!("classifier.1.{t}"),
                (layer, Some(b)) => {
                    // Sub-modules of `block` are numbered in order: expand, conv, se, project.
                    let mut j = 0;
                    let mut pos = |present: bool| {
                        let here = j;
                        if present {
                            j += 1;
                        }
                        here
                    };
                    let ie = pos(b.expand.is_some());
                    let ic = pos(true);
                    let is = pos(b.se.is_some());
                    let ip = pos(b.project.is_some());
                    let sub = match layer {
                        Layer::ExpandConv => format!("{ie}.0"),
                        Layer::ExpandBn => format!("{ie}.1"),
                        Layer::Conv => format!("{ic}.0"),
                        Layer::ConvBn => format!("{ic}.1"),
                        Layer::SeReduce => format!("{is}.fc1"),
                        Layer::SeExpand => format!("{is}.fc2"),
                        Layer::ProjectConv => format!("{ip}.0"),
                        Layer::ProjectBn => format!("{ip}.1"),
                        _ => unreachable!("non-block layer in a block"),
                    };
                    format!("features.{}.{}.block.{sub}.{t}", b.stage + 1, b.index)
                }
                (_, None) => unreachable!("block layers have a block"),
            }
        }
        Naming::Tf => {
            let base = match (p.key.layer, block) {
                (Layer::StemConv, _) => "_conv_stem".to_string(),
                (Layer::StemBn, _) => "_bn0".to_string(),
                (Layer::HeadConv, _) => "_conv_head".to_string(),
                (Layer::HeadBn, _) => "_bn1".to_string(),
                (Layer::Classifier, _) => "_fc".to_string(),
                (layer, Some(b)) => {
                    let fused_single = b.kind == BlockKind::FusedMBConv && b.project.is_none();
                    let fused = b.kind == BlockKind::FusedMBConv;
                    let l = match layer {
                        Layer::ExpandConv => "_expand_conv",
                        Layer::ExpandBn => "_bn0",
                        Layer::Conv if fused_single => "_project_conv",
                        Layer::ConvBn if fused_single => "_bn2",
                        Layer::Conv if fused => "_expand_conv",
                        Layer::ConvBn if fused => "_bn0",
                        Layer::Conv => "_depthwise_conv",
                        Layer::ConvBn => "_bn1",
                        Layer::SeReduce => "_se_reduce",
                        Layer::SeExpand => "_se_expand",
                        Layer::ProjectConv => "_project_conv",
                        Layer::ProjectBn => "_bn2",
                        _ => unreachable!("non-block layer in a block"),
                    };
                    format!("_blocks.{}.{l}", b.id)
                }
                (_, None) => unreachable!("block layers have a block"),
            };
            format!("{base}.{t}")
        }
    }
}

fn timm_block_layer(b: &Block, layer: Layer) -> &'static str {
    match (
        b.kind,
        b.expand.is_some() || b.kind == BlockKind::FusedMBConv && b.project.is_some(),
        layer,
    ) {
        (_, _, Layer::SeReduce) => "se.conv_reduce",
        (_, _, Layer::SeExpand) => "se.conv_expand",
        // InvertedResidual
        (BlockKind::MBConv, true, Layer::ExpandConv) => "conv_pw",
        (BlockKind::MBConv, true, Layer::ExpandBn) => "bn1",
        (BlockKind::MBConv, true, Layer::Conv) => "conv_dw",
        (BlockKind::MBConv, true, Layer::ConvBn) => "bn2",
        (BlockKind::MBConv, true, Layer::ProjectConv) => "conv_pwl",
        (BlockKind::MBConv, true, Layer::ProjectBn) => "bn3",
        // DepthwiseSeparableConv
        (BlockKind::MBConv, false, Layer::Conv) => "conv_dw",
        (BlockKind::MBConv, false, Layer::ConvBn) => "bn1",
        (BlockKind::MBConv, false, Layer::ProjectConv) => "conv_pw",
        (BlockKind::MBConv, false, Layer::ProjectBn) => "bn2",
        // EdgeResidual
        (BlockKind::FusedMBConv, true, Layer::Conv) => "conv_exp",
        (BlockKind::FusedMBConv, true, Layer::ConvBn) => "bn1",
        (BlockKind::FusedMBConv, true, Layer::ProjectConv) => "conv_pwl",
        (BlockKind::FusedMBConv, true, Layer::ProjectBn) => "bn2",
        // ConvBnAct
        (BlockKind::FusedMBConv, false, Layer::Conv) => "conv",
        (BlockKind::FusedMBConv, false, Layer::ConvBn) => "bn1",
        (_, _, l) => unreachable!("block has no {l:?} layer"),
    }
}
