//! The layers every block is made of: convolutions with their padding, batch
//! norm, squeeze-excitation and the classifier's linear layer.

use serde::Serialize;

use crate::spec::{Activation, PaddingMode};

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
    pub(crate) fn new(conv: Conv2d, eps: f64, act: Option<Activation>) -> ConvBn {
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

/// The classifier: a linear layer (with bias).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Linear {
    pub in_features: usize,
    pub out_features: usize,
}
