//! BN folding and weight packing: a checkpoint's tensors (by effc canonical name, in
//! PyTorch layout, f32) become one flat `f32` array per kernel, in the layout its
//! shader reads: channels padded to multiples of 4 with zeros, BN folded into the
//! conv weights and a bias.

use std::fmt;

use effc_ir::{Block, ConvBn, Model};

use crate::layout::WeightLayout;
use crate::plan::{Op, Plan, Source};

/// Why a checkpoint's tensors cannot be packed.
#[derive(Clone, Debug, PartialEq)]
pub enum PackError {
    /// A tensor the packer needs is absent (`got: None`) or has the wrong size.
    Tensor {
        tensor: String,
        expected: usize,
        got: Option<usize>,
    },
    /// Folding batch norm into a conv gives NaN or infinite weights or biases
    /// (`γ/√(σ²+ε)` overflows f32): refused at every precision, never clamped.
    NotFinite { layer: String, count: usize },
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackError::Tensor {
                tensor, got: None, ..
            } => write!(f, "weights: tensor `{tensor}` is missing"),
            PackError::Tensor {
                tensor,
                expected,
                got: Some(g),
            } => write!(
                f,
                "weights: tensor `{tensor}` has {g} values, expected {expected}"
            ),
            PackError::NotFinite { layer, count } => write!(
                f,
                "weights: folding batch norm into `{layer}` gives {count} infinite or NaN weights (γ/√(var + eps) overflows f32): the checkpoint does not describe a working network"
            ),
        }
    }
}

impl std::error::Error for PackError {}

/// Folds inference batch norm into the preceding conv: `w·s`, `β − μ·s` with
/// `s = γ/√(σ²+ε)` per output channel. `w` is `[out, ...]` row-major.
pub fn fold_bn(
    w: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>) {
    let out = gamma.len();
    let per = w.len() / out.max(1);
    let mut wf = Vec::with_capacity(w.len());
    let mut bias = Vec::with_capacity(out);
    for o in 0..out {
        let s = gamma[o] as f64 / (var[o] as f64 + eps).sqrt();
        wf.extend(
            w[o * per..(o + 1) * per]
                .iter()
                .map(|&v| (v as f64 * s) as f32),
        );
        bias.push((beta[o] as f64 - mean[o] as f64 * s) as f32);
    }
    (wf, bias)
}

struct Getter<'a, F: Fn(&str) -> Option<&'a [f32]>> {
    get: F,
}

impl<'a, F: Fn(&str) -> Option<&'a [f32]>> Getter<'a, F> {
    fn take(&self, name: &str, len: usize) -> Result<&'a [f32], PackError> {
        match (self.get)(name) {
            Some(v) if v.len() == len => Ok(v),
            Some(v) => Err(PackError::Tensor {
                tensor: name.into(),
                expected: len,
                got: Some(v.len()),
            }),
            None => Err(PackError::Tensor {
                tensor: name.into(),
                expected: len,
                got: None,
            }),
        }
    }

    /// A conv+BN, folded: weights `[out][in/g][k][k]` and bias `[out]`.
    fn conv_bn(
        &self,
        prefix: &str,
        cb: &ConvBn,
        eps: f64,
    ) -> Result<(Vec<f32>, Vec<f32>), PackError> {
        let c = &cb.conv;
        let wlen = c.out_ch * (c.in_ch / c.groups) * c.kernel * c.kernel;
        let w = self.take(&format!("{prefix}.conv.weight"), wlen)?;
        let n = c.out_ch;
        let g = self.take(&format!("{prefix}.bn.weight"), n)?;
        let b = self.take(&format!("{prefix}.bn.bias"), n)?;
        let m = self.take(&format!("{prefix}.bn.running_mean"), n)?;
        let v = self.take(&format!("{prefix}.bn.running_var"), n)?;
        let (w, b) = fold_bn(w, g, b, m, v, eps);
        let count = w.iter().chain(&b).filter(|x| !x.is_finite()).count();
        if count > 0 {
            return Err(PackError::NotFinite {
                layer: prefix.to_string(),
                count,
            });
        }
        Ok((w, b))
    }
}

/// Packs a GEMM's B operand `[k][cout4·4]` and bias from folded conv weights, by
/// the kernel's layout (sections `B` and `BIAS`).
fn pack_gemm(l: &WeightLayout, cb: &ConvBn, w: &[f32], bias: &[f32], cin4: usize) -> Vec<f32> {
    let c = &cb.conv;
    let (k, cin, cout) = (c.kernel, c.in_ch, c.out_ch);
    let mut out = vec![0.0f32; l.len()];
    for co in 0..cout {
        for ci in 0..cin {
            for ky in 0..k {
                for kx in 0..k {
                    let row = (ky * k + kx) * cin4 * 4 + ci;
                    out[l.at("B", row, co)] = w[((co * cin + ci) * k + ky) * k + kx];
                }
            }
        }
        out[l.at("BIAS", 0, co)] = bias[co];
    }
    out
}

fn block_of(model: &Model, id: usize) -> &Block {
    model
        .blocks()
        .nth(id)
        .expect("kernel sources name blocks of the model they were planned from")
}

/// Checks that folding batch norm gives finite weights and biases for every
/// conv of `model` whose tensors `get` has, without packing (for the CPU
/// reference, which applies batch norm unfolded, so that a checkpoint the GPU
/// and the web target refuse is refused there too). Missing tensors are left to
/// the executor to report.
pub fn check_folding<'a>(
    model: &Model,
    get: impl Fn(&str) -> Option<&'a [f32]>,
) -> Result<(), PackError> {
    let g = Getter { get };
    let mut layers = vec![
        ("stem".to_string(), &model.stem),
        ("head".to_string(), &model.head),
    ];
    for b in model.blocks() {
        if let Some(e) = &b.expand {
            layers.push((format!("{}.expand", b.path()), e));
        }
        layers.push((format!("{}.{}", b.path(), b.conv_name()), &b.conv));
        if let Some(p) = &b.project {
            layers.push((format!("{}.project", b.path()), p));
        }
    }
    for (prefix, cb) in layers {
        match g.conv_bn(&prefix, cb, model.bn_eps) {
            Err(e @ PackError::NotFinite { .. }) => return Err(e),
            Ok(_) | Err(PackError::Tensor { .. }) => {}
        }
    }
    Ok(())
}

/// Packs the weights of every kernel of a plan. `get` returns a tensor by its effc
/// canonical name (`blocks.1.0.expand.conv.weight`), as f32 in PyTorch layout.
pub fn pack_weights<'a>(
    plan: &Plan,
    model: &Model,
    get: impl Fn(&str) -> Option<&'a [f32]>,
) -> Result<Vec<Vec<f32>>, PackError> {
    let g = Getter { get };
    let eps = model.bn_eps;
    let mut out = Vec::with_capacity(plan.kernels.len());
    for k in &plan.kernels {
        let l = &k.layout;
        let packed = match (&k.op, k.source) {
            (Op::Gemm(op), src) => {
                let (prefix, cb) = match src {
                    Source::Stem => ("stem".to_string(), &model.stem),
                    Source::Head => ("head".to_string(), &model.head),
                    Source::Expand(id) => {
                        let b = block_of(model, id);
                        (
                            format!("{}.expand", b.path()),
                            b.expand
                                .as_ref()
                                .expect("expand kernels come from blocks with an expansion"),
                        )
                    }
                    Source::Conv(id) => {
                        let b = block_of(model, id);
                        (format!("{}.{}", b.path(), b.conv_name()), &b.conv)
                    }
                    Source::Project(id) => {
                        let b = block_of(model, id);
                        (
                            format!("{}.project", b.path()),
                            b.project
                                .as_ref()
                                .expect("project kernels come from blocks with a projection"),
                        )
                    }
                    s => unreachable!("a GEMM kernel from {s:?}"),
                };
                let (w, b) = g.conv_bn(&prefix, cb, eps)?;
                pack_gemm(l, cb, &w, &b, op.cin4)
            }
            (Op::Depthwise(op), Source::Conv(id)) => {
                let blk = block_of(model, id);
                let (w, b) = g.conv_bn(&format!("{}.dw", blk.path()), &blk.conv, eps)?;
                let (kk, c) = (op.kernel * op.kernel, blk.conv.conv.out_ch);
                let mut v = vec![0.0f32; l.len()];
                for ch in 0..c {
                    for t in 0..kk {
                        v[l.at("TAPS", t, ch)] = w[ch * kk + t];
                    }
                    v[l.at("BIAS", 0, ch)] = b[ch];
                }
                v
            }
            (Op::Se(op), Source::Se(id)) => {
                let blk = block_of(model, id);
                let p = blk.path();
                let (c, r) = (op.c, op.reduced);
                let w1 = g.take(&format!("{p}.se.reduce.weight"), r * c)?;
                let b1 = g.take(&format!("{p}.se.reduce.bias"), r)?;
                let w2 = g.take(&format!("{p}.se.expand.weight"), c * r)?;
                let b2 = g.take(&format!("{p}.se.expand.bias"), c)?;
                let mut v = vec![0.0f32; l.len()];
                for ri in 0..r {
                    for ch in 0..c {
                        v[l.at("W1", ri, ch)] = w1[ri * c + ch];
                        v[l.at("W2", ri, ch)] = w2[ch * r + ri];
                    }
                    v[l.at("B1", 0, ri)] = b1[ri];
                }
                for ch in 0..c {
                    v[l.at("B2", 0, ch)] = b2[ch];
                }
                v
            }
            (Op::Classifier(op), _) => {
                let mut v = vec![0.0f32; l.len()];
                if op.classes > 0 {
                    let (c, j) = (op.c, op.classes);
                    let w = g.take("classifier.weight", j * c)?;
                    let b = g.take("classifier.bias", j)?;
                    for cls in 0..j {
                        let at = l.at("W", cls, 0);
                        v[at..at + c].copy_from_slice(&w[cls * c..(cls + 1) * c]);
                        v[l.at("BIAS", 0, cls)] = b[cls];
                    }
                }
                v
            }
            (op, src) => unreachable!("no packing for {src:?} with {op:?}"),
        };
        debug_assert_eq!(packed.len(), k.weights_len, "{}", k.name);
        out.push(packed);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_matches_bn_of_conv() {
        // conv out = w·x; bn = (out − μ)/√(σ²+ε)·γ + β
        let (w, b) = fold_bn(&[2.0, -1.0], &[3.0], &[0.5], &[1.0], &[3.0], 1.0);
        let x = [0.7f32, 0.2];
        let conv = 2.0 * x[0] - 1.0 * x[1];
        let want = (conv - 1.0) / 2.0 * 3.0 + 0.5;
        let got = w[0] * x[0] + w[1] * x[1] + b[0];
        assert!((got - want).abs() < 1e-6);
    }
}
