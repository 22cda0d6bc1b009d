//! The IR: a fully scaled network for one input resolution, with every layer's
//! channels, kernel, stride, padding per side, groups and output shape.

mod block;
mod layers;
mod options;

pub use block::{Block, BlockKind, Stage};
pub use layers::{mul, pad_1d, BatchNorm, Conv2d, ConvBn, Linear, Pad, SqueezeExcite};
pub use options::{OptionError, Options};

use effc_syntax::{BlockArgs, Diagnostic, Diagnostics, Loc};
use serde::Serialize;

use crate::spec::{Activation, PaddingMode, Rounding, Spec};

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
    /// embedding) model. When present, the model ends at them: nothing
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

/// Where a block stands in the network: its kind, channels in and out, input
/// size and stride (the arguments of [`Builder::block`]'s convolutions).
#[derive(Clone, Copy)]
struct BlockAt {
    kind: BlockKind,
    in_ch: usize,
    out_ch: usize,
    hw: (usize, usize),
    stride: usize,
}

impl Model {
    /// Builds the IR of a spec, with overrides. Checks what needs the whole network:
    /// stage channels chaining, resolution against the network's strides.
    pub fn build(spec: &Spec, opts: &Options) -> Result<Model, Diagnostics> {
        let resolution = opts.resolution.unwrap_or(spec.resolution);
        let padding = opts.padding.unwrap_or(spec.padding);
        let eps = opts.bn_eps.unwrap_or(spec.bn_eps);
        let classes = opts.classes.unwrap_or(spec.classes);
        if let Err(e) = opts.check() {
            return Err(Diagnostics(vec![Diagnostic::bare(e.to_string())]));
        }
        let errors = check_network(spec, opts, resolution);
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        let b = Builder { spec, padding, eps };
        let stem_unscaled = spec.stem.unwrap_or(spec.blocks[0].input.node);
        let stem_ch = if spec.fix_stem {
            stem_unscaled
        } else {
            b.filters(stem_unscaled)
        };
        let stem = b.conv_bn(3, stem_ch, 3, 2, 1, (resolution, resolution), true);
        let stages = b.stages(stem_ch, stem.conv.out_hw);
        let (cur_ch, cur_hw) = match stages.last().and_then(|s| s.blocks.last()) {
            Some(last) => (last.out_ch, (last.out_shape[1], last.out_shape[2])),
            None => (stem_ch, stem.conv.out_hw),
        };
        let head_ch = if spec.fix_head {
            spec.head
        } else {
            b.filters(spec.head)
        };
        let head = b.conv_bn(cur_ch, head_ch, 1, 1, 1, cur_hw, true);
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
            activation: spec.activation,
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
    pub fn embedding_len(&self) -> usize {
        self.head.conv.out_ch
    }
}

/// What must hold of the whole network before it is built: blocks exist, each
/// stage's input channels chain from the previous stage (or the stem), and the
/// resolution is at least the network's total stride.
fn check_network(spec: &Spec, opts: &Options, resolution: usize) -> Vec<Diagnostic> {
    if spec.blocks.is_empty() {
        return vec![Diagnostic::error(
            format!("model `{}` has no blocks", spec.name),
            spec.decl.clone(),
            "no blocks",
        )];
    }
    let mut errors = check_chaining(spec);
    errors.extend(check_resolution(spec, opts, resolution));
    errors
}

/// Stage chaining, on the unscaled channels as written.
fn check_chaining(spec: &Spec) -> Vec<Diagnostic> {
    let src = &spec.blocks_source;
    let mut errors = vec![];
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
                .with_note(
                    Loc::new(src, prev.output.span),
                    format!("the previous stage ends with {} channels", prev.output.node),
                )
                .with_help(format!(
                    "write `i{}` here, or change the previous stage's `o`",
                    prev.output.node
                )),
            );
        }
    }
    errors
}

/// The network's total stride must not exceed the resolution.
fn check_resolution(spec: &Spec, opts: &Options, resolution: usize) -> Option<Diagnostic> {
    let total_stride: usize = 2 * spec.blocks.iter().map(|b| b.stride.node).product::<usize>();
    if resolution == 0 || resolution >= total_stride {
        return None;
    }
    let d = Diagnostic::error(
        format!("resolution {resolution} is too small for this network: its strides reduce the input {total_stride}-fold"),
        spec.loc_of("resolution").clone(),
        format!("at least {total_stride} needed"),
    )
    .with_help(format!("use a resolution of at least {total_stride} (a multiple of {total_stride} keeps every stage's map whole)"));
    if opts.resolution.is_some() {
        // The resolution came from a flag, not the spec: no span to point at.
        return Some(
            Diagnostic::bare(d.message.clone()).with_help(d.help.clone().unwrap_or_default()),
        );
    }
    Some(d)
}

/// Builds layers with the settings every layer of one model shares.
struct Builder<'a> {
    spec: &'a Spec,
    padding: PaddingMode,
    eps: f64,
}

impl Builder<'_> {
    fn filters(&self, c: usize) -> usize {
        round_filters(c, self.spec.width, self.spec.rounding)
    }

    /// A conv + BN, with the model's activation when `act`.
    #[allow(clippy::too_many_arguments)]
    fn conv_bn(
        &self,
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        hw: (usize, usize),
        act: bool,
    ) -> ConvBn {
        let conv = Conv2d::new(in_ch, out_ch, kernel, stride, groups, hw, self.padding);
        ConvBn::new(conv, self.eps, act.then_some(self.spec.activation))
    }

    /// Repeats of each stage after depth scaling (the first and last kept when
    /// `fix_first_last`).
    fn repeats(&self) -> Vec<usize> {
        let n = self.spec.blocks.len();
        let fixed = |i: usize| self.spec.fix_first_last && (i == 0 || i == n - 1);
        self.spec
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if fixed(i) {
                    b.repeats.node
                } else {
                    round_repeats(b.repeats.node, self.spec.depth)
                }
            })
            .collect()
    }

    /// Every stage, from the stem's output channels and size.
    fn stages(&self, mut cur_ch: usize, mut cur_hw: (usize, usize)) -> Vec<Stage> {
        let repeats = self.repeats();
        let total_blocks: usize = repeats.iter().sum();
        let mut stages = vec![];
        let mut id = 0;
        for (si, b) in self.spec.blocks.iter().enumerate() {
            let kind = if b.fused {
                BlockKind::FusedMBConv
            } else {
                BlockKind::MBConv
            };
            let out_ch = self.filters(b.output.node);
            let stage_in = cur_ch;
            let mut blocks = vec![];
            for bi in 0..repeats[si] {
                let stride = if bi == 0 { b.stride.node } else { 1 };
                let at = BlockAt {
                    kind,
                    in_ch: cur_ch,
                    out_ch,
                    hw: cur_hw,
                    stride,
                };
                let mut block = self.block(b, at);
                (block.stage, block.index, block.id) = (si, bi, id);
                block.drop_path = self.spec.drop_path * id as f64 / total_blocks as f64;
                id += 1;
                cur_ch = out_ch;
                cur_hw = (block.out_shape[1], block.out_shape[2]);
                blocks.push(block);
            }
            stages.push(Stage {
                index: si,
                text: b.text.clone(),
                kind,
                repeats: repeats[si],
                kernel: b.kernel.node,
                stride: b.stride.node,
                expand_ratio: b.expand.node,
                se: b.se.as_ref().map(|s| s.node),
                in_ch: stage_in,
                out_ch,
                blocks,
            });
        }
        stages
    }

    /// One block of a stage (its position and drop-path rate are set by the caller).
    fn block(&self, b: &BlockArgs, at: BlockAt) -> Block {
        let BlockAt {
            kind,
            in_ch,
            out_ch,
            hw,
            stride,
        } = at;
        let e = b.expand.node;
        let (expand, conv, project) = self.block_convs(b, at);
        let se = b.se.as_ref().map(|r| SqueezeExcite {
            channels: conv.conv.out_ch,
            reduced: 1usize.max((in_ch as f64 * r.node) as usize),
            act: self.spec.activation,
        });
        let out_hw = conv.conv.out_hw;
        Block {
            stage: 0,
            index: 0,
            id: 0,
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
            residual: stride == 1 && in_ch == out_ch && !b.noskip,
            drop_path: 0.0,
            in_shape: [in_ch, hw.0, hw.1],
            out_shape: [out_ch, out_hw.0, out_hw.1],
        }
    }

    /// A block's convolutions: the 1x1 expansion (MBConv with e ≠ 1), the kxk conv
    /// (depthwise in MBConv, full in Fused-MBConv) and the 1x1 projection (absent
    /// in Fused-MBConv with e = 1, whose kxk conv goes straight to `out_ch`).
    fn block_convs(&self, b: &BlockArgs, at: BlockAt) -> (Option<ConvBn>, ConvBn, Option<ConvBn>) {
        let (in_ch, out_ch, hw, stride) = (at.in_ch, at.out_ch, at.hw, at.stride);
        let e = b.expand.node;
        let k = b.kernel.node;
        let mid = ((in_ch as f64) * e) as usize;
        let project = |c: &ConvBn| Some(self.conv_bn(mid, out_ch, 1, 1, 1, c.conv.out_hw, false));
        match at.kind {
            BlockKind::MBConv => {
                let expand = (e != 1.0).then(|| self.conv_bn(in_ch, mid, 1, 1, 1, hw, true));
                let dw = self.conv_bn(mid, mid, k, stride, mid, hw, true);
                let proj = project(&dw);
                (expand, dw, proj)
            }
            BlockKind::FusedMBConv if e != 1.0 => {
                let c = self.conv_bn(in_ch, mid, k, stride, 1, hw, true);
                let proj = project(&c);
                (None, c, proj)
            }
            BlockKind::FusedMBConv => (
                None,
                self.conv_bn(in_ch, out_ch, k, stride, 1, hw, true),
                None,
            ),
        }
    }
}
