//! Blocks and stages: the scaled form of one block string.

use serde::Serialize;

use super::layers::{ConvBn, SqueezeExcite};

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
