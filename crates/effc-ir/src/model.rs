//! The IR: a fully scaled network for one input resolution, with every layer's
//! channels, kernel, stride, padding per side, groups and output shape.

use effc_syntax::{Diagnostic, Diagnostics, Loc};
use serde::Serialize;

use crate::ranges;
use crate::spec::{Activation, PaddingMode, Rounding, Spec};

/// Padding of a convolution, per side, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
pub struct Pad {
    pub top: usize,
    pub bottom: usize,
    pub left: usize,
    pub right: usize,
}

/// A 2-D convolution (no bias unless `bias`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conv2d {
    pub in_ch: usize,
    pub out_ch: usize,
    pub kernel: usize,
    pub stride: usize,
    pub groups: usize,
    pub pad: Pad,
    pub bias: bool,
    /// Input and output spatial size (height, width).
    pub in_hw: (usize, usize),
    pub out_hw: (usize, usize),
}

impl Conv2d {
    /// A convolution with its padding and output size computed by `mode`.
    pub fn new(
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        in_hw: (usize, usize),
        mode: PaddingMode,
    ) -> Conv2d {
        let (out_h, top, bottom) = pad_1d(in_hw.0, kernel, stride, mode);
        let (out_w, left, right) = pad_1d(in_hw.1, kernel, stride, mode);
        Conv2d {
            in_ch,
            out_ch,
            kernel,
            stride,
            groups,
            pad: Pad {
                top,
                bottom,
                left,
                right,
            },
            bias: false,
            in_hw,
            out_hw: (out_h, out_w),
        }
    }

    pub fn is_depthwise(&self) -> bool {
        self.groups == self.in_ch && self.groups == self.out_ch && self.groups > 1
    }

    /// Weight shape, PyTorch order: `[out, in/groups, k, k]`.
    pub fn weight_shape(&self) -> Vec<usize> {
        vec![
            self.out_ch,
            self.in_ch / self.groups,
            self.kernel,
            self.kernel,
        ]
    }

    pub fn params(&self) -> u64 {
        let w = (self.out_ch * (self.in_ch / self.groups) * self.kernel * self.kernel) as u64;
        w + if self.bias { self.out_ch as u64 } else { 0 }
    }

    /// Multiply-accumulates for one image.
    pub fn macs(&self) -> u64 {
        (self.out_hw.0 * self.out_hw.1 * self.out_ch) as u64
            * ((self.in_ch / self.groups) * self.kernel * self.kernel) as u64
    }
}

/// Product of sizes, saturating (costs of absurd specs must not overflow).
pub fn mul(dims: &[usize]) -> u64 {
    dims.iter().fold(1u64, |a, &d| a.saturating_mul(d as u64))
}

/// Output size and (before, after) padding of one spatial dimension.
pub fn pad_1d(x: usize, k: usize, s: usize, mode: PaddingMode) -> (usize, usize, usize) {
    match mode {
        PaddingMode::Same => {
            let out = x.div_ceil(s);
            let total = ((out - 1) * s + k).saturating_sub(x);
            (out, total / 2, total - total / 2)
        }
        PaddingMode::Symmetric => {
            let p = (k - 1) / 2;
            let out = (x + 2 * p).saturating_sub(k) / s + 1;
            (out, p, p)
        }
    }
}

/// Batch norm (inference: running statistics, `eps`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BatchNorm {
    pub channels: usize,
    pub eps: f64,
}

/// Convolution, batch norm, optional activation: the unit every block is made of.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    pub act: Option<Activation>,
}

impl ConvBn {
    fn new(conv: Conv2d, eps: f64, act: Option<Activation>) -> ConvBn {
        let bn = BatchNorm {
            channels: conv.out_ch,
            eps,
        };
        ConvBn { conv, bn, act }
    }
    pub fn out_shape(&self) -> [usize; 3] {
        [self.conv.out_ch, self.conv.out_hw.0, self.conv.out_hw.1]
    }
}

/// Squeeze-excitation: global average pool, 1x1 conv (bias) to `reduced`, act,
/// 1x1 conv (bias) back to `channels`, sigmoid, multiply.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SqueezeExcite {
    pub channels: usize,
    pub reduced: usize,
    pub act: Activation,
}

impl SqueezeExcite {
    pub fn params(&self) -> u64 {
        mul(&[2, self.channels, self.reduced]) + (self.reduced + self.channels) as u64
    }
    pub fn macs(&self) -> u64 {
        mul(&[2, self.channels, self.reduced])
    }
}

/// MBConv or Fused-MBConv.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum BlockKind {
    MBConv,
    FusedMBConv,
}

/// One block of a stage.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Block {
    /// Stage index and index within the stage.
    pub stage: usize,
    pub index: usize,
    /// Index over all blocks of the network.
    pub id: usize,
    pub kind: BlockKind,
    pub expand_ratio: f64,
    pub kernel: usize,
    pub stride: usize,
    pub in_ch: usize,
    pub out_ch: usize,
    /// 1x1 expansion (MBConv with e > 1).
    pub expand: Option<ConvBn>,
    /// The depthwise kxk conv (MBConv), or the full kxk conv (Fused-MBConv).
    pub conv: ConvBn,
    pub se: Option<SqueezeExcite>,
    /// 1x1 projection (absent only in Fused-MBConv with e = 1).
    pub project: Option<ConvBn>,
    /// Whether the block input is added to its output.
    pub residual: bool,
    /// Stochastic-depth rate of the residual branch (training only).
    pub drop_path: f64,
    pub in_shape: [usize; 3],
    pub out_shape: [usize; 3],
}

impl Block {
    /// Canonical name prefix: `blocks.S.I`.
    pub fn path(&self) -> String {
        format!("blocks.{}.{}", self.stage, self.index)
    }
    /// Name of the kxk conv: `dw` (MBConv, depthwise) or `fused` (Fused-MBConv).
    pub fn conv_name(&self) -> &'static str {
        match self.kind {
            BlockKind::MBConv => "dw",
            BlockKind::FusedMBConv => "fused",
        }
    }
    /// The expanded (inner) width.
    pub fn mid_ch(&self) -> usize {
        self.conv.conv.out_ch
    }
    pub fn params(&self) -> u64 {
        let cb = |c: &ConvBn| c.conv.params() + 2 * c.bn.channels as u64;
        self.expand.as_ref().map_or(0, cb)
            + cb(&self.conv)
            + self.se.as_ref().map_or(0, |s| s.params())
            + self.project.as_ref().map_or(0, cb)
    }
    pub fn macs(&self) -> u64 {
        self.expand.as_ref().map_or(0, |c| c.conv.macs())
            + self.conv.conv.macs()
            + self.se.as_ref().map_or(0, |s| s.macs())
            + self.project.as_ref().map_or(0, |c| c.conv.macs())
    }
}

/// A stage: one block string, scaled.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stage {
    pub index: usize,
    /// The block string as written in the spec.
    pub text: String,
    pub kind: BlockKind,
    /// Repeats after depth scaling.
    pub repeats: usize,
    pub kernel: usize,
    pub stride: usize,
    pub expand_ratio: f64,
    pub se: Option<f64>,
    /// Channels after width scaling.
    pub in_ch: usize,
    pub out_ch: usize,
    pub blocks: Vec<Block>,
}

/// The classifier: a linear layer (with bias).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Linear {
    pub in_features: usize,
    pub out_features: usize,
}

/// Overrides applied when building the IR (command-line options, macro options).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub resolution: Option<usize>,
    pub padding: Option<PaddingMode>,
    pub bn_eps: Option<f64>,
    pub classes: Option<usize>,
    /// Feature levels to end at (`--features`), replacing the spec's `features`.
    pub features: Option<Vec<usize>>,
}

/// An override out of its range ([`Options::check`]): the option (`resolution`,
/// `bn_eps`, `classes`) and what is wrong with its value.
#[derive(Clone, Debug, PartialEq)]
pub struct OptionError {
    pub option: &'static str,
    pub message: String,
}

impl std::fmt::Display for OptionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}", self.option, self.message)
    }
}

impl std::error::Error for OptionError {}

impl Options {
    /// Checks each override against the range its spec setting has
    /// ([`crate::ranges`]); [`Model::build`] does too, so a caller that reports
    /// options apart from the spec calls this first.
    pub fn check(&self) -> Result<(), OptionError> {
        let bad = |option, message: String| Err(OptionError { option, message });
        if let Some(r) = self.resolution {
            if !ranges::RESOLUTION.contains(&r) {
                return bad(
                    "resolution",
                    format!(
                        "{r} is not in {}..={}",
                        ranges::RESOLUTION.start(),
                        ranges::RESOLUTION.end()
                    ),
                );
            }
        }
        if let Some(e) = self.bn_eps {
            if !ranges::BN_EPS.contains(e) {
                return bad("bn_eps", format!("{e} is not in {}", ranges::BN_EPS));
            }
        }
        if let Some(c) = self.classes {
            if !ranges::CLASSES.contains(&c) {
                return bad(
                    "classes",
                    format!("{c} is more than {}", ranges::CLASSES.end()),
                );
            }
        }
        Ok(())
    }
}

/// The network: settings after overrides and scaling, and every layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Model {
    pub name: String,
    pub base: Option<String>,
    pub rounding: Rounding,
    pub width: f64,
    pub depth: f64,
    /// φ, α, β, γ when scaled by the seed formulation.
    pub phi: Option<[f64; 4]>,
    pub resolution: usize,
    pub activation: Activation,
    pub padding: PaddingMode,
    pub bn_eps: f64,
    pub classes: usize,
    pub dropout: f64,
    pub drop_path: f64,
    pub mean: [f64; 3],
    pub std: [f64; 3],
    pub training: crate::spec::Training,
    /// Input shape, CHW.
    pub input: [usize; 3],
    pub stem: ConvBn,
    pub stages: Vec<Stage>,
    pub head: ConvBn,
    /// Present when `classes > 0`.
    pub classifier: Option<Linear>,
    /// The requested feature levels, in level order; empty for a classifier (or
    /// pooled-features) model. When present, the model ends at them: nothing
    /// after the last level's block (no head, no classifier) runs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<crate::features::FeatureInfo>,
}

/// `round_filters`: channels after width scaling.
pub fn round_filters(c: usize, width: f64, rounding: Rounding) -> usize {
    if width == 1.0 {
        return c;
    }
    let scaled = c as f64 * width;
    let mut new = 8usize.max(((scaled + 4.0) as usize) / 8 * 8);
    if rounding == Rounding::V1 && (new as f64) < 0.9 * scaled {
        new += 8;
    }
    new
}

/// Repeats after depth scaling: `ceil(r·d)`.
pub fn round_repeats(r: usize, depth: f64) -> usize {
    ((r as f64 * depth).ceil() as usize).max(1)
}

impl Model {
    /// Builds the IR of a spec, with overrides. Checks what needs the whole network:
    /// stage channels chaining, resolution against the network's strides.
    pub fn build(spec: &Spec, opts: &Options) -> Result<Model, Diagnostics> {
        let mut errors = vec![];
        let resolution = opts.resolution.unwrap_or(spec.resolution);
        let padding = opts.padding.unwrap_or(spec.padding);
        let eps = opts.bn_eps.unwrap_or(spec.bn_eps);
        let classes = opts.classes.unwrap_or(spec.classes);
        if let Err(e) = opts.check() {
            errors.push(Diagnostic::bare(e.to_string()));
            return Err(Diagnostics(errors));
        }
        let act = spec.activation;
        let rf = |c: usize| round_filters(c, spec.width, spec.rounding);
        let src = &spec.blocks_source;
        if spec.blocks.is_empty() {
            errors.push(Diagnostic::error(
                format!("model `{}` has no blocks", spec.name),
                spec.decl.clone(),
                "no blocks",
            ));
            return Err(Diagnostics(errors));
        }

        // Stage chaining, on the unscaled channels as written.
        let stem_unscaled = spec.stem.unwrap_or(spec.blocks[0].input.node);
        if let Some(stem) = spec.stem {
            let first = &spec.blocks[0];
            if first.input.node != stem {
                errors.push(
                    Diagnostic::error(
                        format!(
                            "the first stage's input channels ({}) differ from the stem's ({stem})",
                            first.input.node
                        ),
                        Loc::new(src, first.input.span),
                        format!("the stem gives {stem} channels"),
                    )
                    .with_note(spec.loc_of("stem").clone(), "stem set here")
                    .with_help(format!(
                        "write `i{stem}`, or set `stem = {}`",
                        first.input.node
                    )),
                );
            }
        }
        for w in spec.blocks.windows(2) {
            let (prev, next) = (&w[0], &w[1]);
            if prev.output.node != next.input.node {
                errors.push(
                    Diagnostic::error(
                        format!(
                            "stage input channels ({}) differ from the previous stage's output ({})",
                            next.input.node, prev.output.node
                        ),
                        Loc::new(src, next.input.span),
                        format!("expected i{}", prev.output.node),
                    )
                    .with_note(Loc::new(src, prev.output.span), format!("the previous stage ends with {} channels", prev.output.node))
                    .with_help(format!("write `i{}` here, or change the previous stage's `o`", prev.output.node)),
                );
            }
        }

        // The network's total stride must not exceed the resolution.
        let total_stride: usize = 2 * spec.blocks.iter().map(|b| b.stride.node).product::<usize>();
        if resolution > 0 && resolution < total_stride {
            let mut d = Diagnostic::error(
                format!("resolution {resolution} is too small for this network: its strides reduce the input {total_stride}-fold"),
                spec.loc_of("resolution").clone(),
                format!("at least {total_stride} needed"),
            )
            .with_help(format!("use a resolution of at least {total_stride} (a multiple of {total_stride} keeps every stage's map whole)"));
            if opts.resolution.is_some() {
                d = Diagnostic::bare(d.message.clone())
                    .with_help(d.help.clone().unwrap_or_default());
            }
            errors.push(d);
        }
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }

        let stem_ch = if spec.fix_stem {
            stem_unscaled
        } else {
            rf(stem_unscaled)
        };
        let hw = (resolution, resolution);
        let stem = ConvBn::new(
            Conv2d::new(3, stem_ch, 3, 2, 1, hw, padding),
            eps,
            Some(act),
        );
        let mut cur_hw = stem.conv.out_hw;
        let mut cur_ch = stem_ch;

        let n_stages = spec.blocks.len();
        let repeats: Vec<usize> = spec
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if spec.fix_first_last && (i == 0 || i == n_stages - 1) {
                    b.repeats.node
                } else {
                    round_repeats(b.repeats.node, spec.depth)
                }
            })
            .collect();
        let total_blocks: usize = repeats.iter().sum();

        let mut stages = vec![];
        let mut id = 0;
        for (si, b) in spec.blocks.iter().enumerate() {
            let kind = if b.fused {
                BlockKind::FusedMBConv
            } else {
                BlockKind::MBConv
            };
            let out_ch = rf(b.output.node);
            let e = b.expand.node;
            let stage_in = cur_ch;
            let mut blocks = vec![];
            for bi in 0..repeats[si] {
                let stride = if bi == 0 { b.stride.node } else { 1 };
                let in_ch = cur_ch;
                let mid = ((in_ch as f64) * e) as usize;
                let in_shape = [in_ch, cur_hw.0, cur_hw.1];
                let (expand, conv, project) = match kind {
                    BlockKind::MBConv => {
                        let expand = (e != 1.0).then(|| {
                            ConvBn::new(
                                Conv2d::new(in_ch, mid, 1, 1, 1, cur_hw, padding),
                                eps,
                                Some(act),
                            )
                        });
                        let dw = ConvBn::new(
                            Conv2d::new(mid, mid, b.kernel.node, stride, mid, cur_hw, padding),
                            eps,
                            Some(act),
                        );
                        let proj = ConvBn::new(
                            Conv2d::new(mid, out_ch, 1, 1, 1, dw.conv.out_hw, padding),
                            eps,
                            None,
                        );
                        (expand, dw, Some(proj))
                    }
                    BlockKind::FusedMBConv => {
                        if e != 1.0 {
                            let c = ConvBn::new(
                                Conv2d::new(in_ch, mid, b.kernel.node, stride, 1, cur_hw, padding),
                                eps,
                                Some(act),
                            );
                            let proj = ConvBn::new(
                                Conv2d::new(mid, out_ch, 1, 1, 1, c.conv.out_hw, padding),
                                eps,
                                None,
                            );
                            (None, c, Some(proj))
                        } else {
                            let c = ConvBn::new(
                                Conv2d::new(
                                    in_ch,
                                    out_ch,
                                    b.kernel.node,
                                    stride,
                                    1,
                                    cur_hw,
                                    padding,
                                ),
                                eps,
                                Some(act),
                            );
                            (None, c, None)
                        }
                    }
                };
                let se_ch = conv.conv.out_ch;
                let se = b.se.as_ref().map(|r| SqueezeExcite {
                    channels: se_ch,
                    reduced: 1usize.max((in_ch as f64 * r.node) as usize),
                    act,
                });
                let out_hw = conv.conv.out_hw;
                let residual = stride == 1 && in_ch == out_ch && !b.noskip;
                blocks.push(Block {
                    stage: si,
                    index: bi,
                    id,
                    kind,
                    expand_ratio: e,
                    kernel: b.kernel.node,
                    stride,
                    in_ch,
                    out_ch,
                    expand,
                    conv,
                    se,
                    project,
                    residual,
                    drop_path: spec.drop_path * id as f64 / total_blocks as f64,
                    in_shape,
                    out_shape: [out_ch, out_hw.0, out_hw.1],
                });
                id += 1;
                cur_ch = out_ch;
                cur_hw = out_hw;
            }
            stages.push(Stage {
                index: si,
                text: b.text.clone(),
                kind,
                repeats: repeats[si],
                kernel: b.kernel.node,
                stride: b.stride.node,
                expand_ratio: e,
                se: b.se.as_ref().map(|s| s.node),
                in_ch: stage_in,
                out_ch,
                blocks,
            });
        }
        let head_ch = if spec.fix_head {
            spec.head
        } else {
            rf(spec.head)
        };
        let head = ConvBn::new(
            Conv2d::new(cur_ch, head_ch, 1, 1, 1, cur_hw, padding),
            eps,
            Some(act),
        );
        let classifier = (classes > 0).then_some(Linear {
            in_features: head_ch,
            out_features: classes,
        });
        let mut model = Model {
            name: spec.name.clone(),
            base: spec.base.clone(),
            rounding: spec.rounding,
            width: spec.width,
            depth: spec.depth,
            phi: spec.phi,
            resolution,
            activation: act,
            padding,
            bn_eps: eps,
            classes,
            dropout: spec.dropout,
            drop_path: spec.drop_path,
            mean: spec.mean,
            std: spec.std,
            training: spec.training.clone(),
            input: [3, resolution, resolution],
            stem,
            stages,
            head,
            classifier,
            features: vec![],
        };
        let requested = match &opts.features {
            Some(l) => Some((l.clone(), None)),
            None => spec
                .features
                .clone()
                .map(|l| (l, spec.origin.get("features").cloned())),
        };
        if let Some((levels, origin)) = requested {
            model.features = crate::features::select(&model, &levels, origin)?;
        }
        Ok(model)
    }

    /// All blocks in order.
    pub fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.stages.iter().flat_map(|s| s.blocks.iter())
    }

    /// Output shape (CHW) of the network: `[classes, 1, 1]`, or the pooled
    /// features `[head, 1, 1]` when `classes` is 0.
    pub fn output_shape(&self) -> [usize; 3] {
        match &self.classifier {
            Some(l) => [l.out_features, 1, 1],
            None => [self.head.conv.out_ch, 1, 1],
        }
    }

    /// Number of features after pooling.
    pub fn num_features(&self) -> usize {
        self.head.conv.out_ch
    }
}
