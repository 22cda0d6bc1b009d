//! The operators, on one image in HWC layout (channels innermost), f32.
//!
//! Convolutions are GEMMs (`matrixmultiply`): a 1x1 stride-1 convolution
//! multiplies the `[pixels, in]` activation by the `[in, out]` weight; a kxk one
//! first gathers each output pixel's `k·k·in` input patch (zeros where the
//! padding is) into a row. Depthwise convolutions are direct loops. Work is split
//! over output pixels with rayon; every output element is computed by one task,
//! in an order that does not depend on the split, so results are deterministic.

use effc_ir::{Activation, Conv2d};
use rayon::prelude::*;

/// Output pixels per parallel task: enough to amortize packing the weights.
const PIXELS_PER_TASK: usize = 128;

/// `c[m×n] = a[m×k] · b[k×n]`, all row-major and contiguous.
pub fn gemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(
        a.len() == m * k && b.len() == k * n && c.len() == m * n,
        "gemm operands have the sizes their dimensions give"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the assertion above bounds every index sgemm touches: `a` is read
    // at i·k + l (i < m, l < k), `b` at l·n + j, `c` written at i·n + j; `c` is
    // borrowed mutably, so it does not alias `a` or `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Batch norm (running statistics) as a per-channel affine map, then the activation.
#[derive(Clone, Debug)]
pub struct Epilogue {
    /// `γ / √(σ² + ε)`
    pub scale: Vec<f32>,
    /// `β − μ · scale`
    pub shift: Vec<f32>,
    pub act: Option<Activation>,
}

impl Epilogue {
    /// From BN weight γ, bias β, running mean μ and variance σ², computed in f64.
    pub fn new(
        gamma: &[f32],
        beta: &[f32],
        mean: &[f32],
        var: &[f32],
        eps: f64,
        act: Option<Activation>,
    ) -> Epilogue {
        let scale: Vec<f64> = gamma
            .iter()
            .zip(var)
            .map(|(&g, &v)| g as f64 / (v as f64 + eps).sqrt())
            .collect();
        let shift = beta
            .iter()
            .zip(mean)
            .zip(&scale)
            .map(|((&b, &m), &s)| (b as f64 - m as f64 * s) as f32)
            .collect();
        Epilogue {
            scale: scale.into_iter().map(|s| s as f32).collect(),
            shift,
            act,
        }
    }

    /// Applies to HWC rows of `scale.len()` channels.
    fn apply(&self, out: &mut [f32]) {
        let c = self.scale.len();
        for px in out.chunks_exact_mut(c) {
            for ((v, &s), &t) in px.iter_mut().zip(&self.scale).zip(&self.shift) {
                *v = *v * s + t;
            }
            if let Some(a) = self.act {
                for v in px.iter_mut() {
                    *v = a.apply(*v);
                }
            }
        }
    }
}

/// A convolution with its batch norm and activation, weights laid out for HWC.
#[derive(Clone, Debug)]
pub struct ConvLayer {
    pub geom: Conv2d,
    /// Dense: `[k, k, in, out]` (the GEMM's right operand). Depthwise: `[k, k, c]`.
    pub weight: Vec<f32>,
    pub depthwise: bool,
    pub epilogue: Epilogue,
}

impl ConvLayer {
    /// From a PyTorch weight `[out, in/groups, k, k]`.
    pub fn new(geom: &Conv2d, torch_weight: &[f32], epilogue: Epilogue) -> ConvLayer {
        let (o, k) = (geom.out_ch, geom.kernel);
        let depthwise = geom.is_depthwise();
        let i = if depthwise { 1 } else { geom.in_ch };
        let mut weight = vec![0.0; o * i * k * k];
        for oc in 0..o {
            for ic in 0..i {
                for ky in 0..k {
                    for kx in 0..k {
                        let v = torch_weight[((oc * i + ic) * k + ky) * k + kx];
                        let dst = if depthwise {
                            (ky * k + kx) * o + oc
                        } else {
                            ((ky * k + kx) * i + ic) * o + oc
                        };
                        weight[dst] = v;
                    }
                }
            }
        }
        ConvLayer {
            geom: geom.clone(),
            weight,
            depthwise,
            epilogue,
        }
    }

    /// `x`: HWC `[in_h, in_w, in_ch]`; returns HWC `[out_h, out_w, out_ch]`.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let g = &self.geom;
        assert_eq!(
            x.len(),
            g.in_hw.0 * g.in_hw.1 * g.in_ch,
            "the executor feeds each layer the shape the IR gives it"
        );
        if self.depthwise {
            self.depthwise_forward(x)
        } else {
            self.dense_forward(x)
        }
    }

    fn dense_forward(&self, x: &[f32]) -> Vec<f32> {
        let g = &self.geom;
        let (oh, ow) = g.out_hw;
        let (cin, cout, k) = (g.in_ch, g.out_ch, g.kernel);
        let pointwise =
            k == 1 && g.stride == 1 && g.pad == Default::default() && g.in_hw == g.out_hw;
        let mut out = vec![0.0; oh * ow * cout];
        if pointwise {
            let per_task = PIXELS_PER_TASK;
            out.par_chunks_mut(per_task * cout)
                .zip(x.par_chunks(per_task * cin))
                .for_each(|(o, xi)| {
                    gemm(xi.len() / cin, cin, cout, xi, &self.weight, o);
                    self.epilogue.apply(o);
                });
            return out;
        }
        let kk = k * k * cin;
        let rows_per_task = PIXELS_PER_TASK.div_ceil(ow).max(1);
        out.par_chunks_mut(rows_per_task * ow * cout)
            .enumerate()
            .for_each(|(t, o)| {
                let oy0 = t * rows_per_task;
                let rows = o.len() / (ow * cout);
                let mut patch = vec![0.0; rows * ow * kk];
                for r in 0..rows {
                    for ox in 0..ow {
                        let p = &mut patch[(r * ow + ox) * kk..][..kk];
                        for ky in 0..k {
                            for kx in 0..k {
                                if let Some((iy, ix)) = self.input_at(oy0 + r, ox, ky, kx) {
                                    let src = &x[(iy * g.in_hw.1 + ix) * cin..][..cin];
                                    p[(ky * k + kx) * cin..][..cin].copy_from_slice(src);
                                }
                            }
                        }
                    }
                }
                gemm(rows * ow, kk, cout, &patch, &self.weight, o);
                self.epilogue.apply(o);
            });
        out
    }

    fn depthwise_forward(&self, x: &[f32]) -> Vec<f32> {
        let g = &self.geom;
        let (oh, ow) = g.out_hw;
        let (c, k) = (g.out_ch, g.kernel);
        let mut out = vec![0.0; oh * ow * c];
        out.par_chunks_mut(ow * c)
            .enumerate()
            .for_each(|(oy, row)| {
                for ox in 0..ow {
                    let acc = &mut row[ox * c..][..c];
                    for ky in 0..k {
                        for kx in 0..k {
                            if let Some((iy, ix)) = self.input_at(oy, ox, ky, kx) {
                                let src = &x[(iy * g.in_hw.1 + ix) * c..][..c];
                                let w = &self.weight[(ky * k + kx) * c..][..c];
                                for ((a, &v), &w) in acc.iter_mut().zip(src).zip(w) {
                                    *a += v * w;
                                }
                            }
                        }
                    }
                }
                self.epilogue.apply(row);
            });
        out
    }

    /// The input pixel under kernel tap (ky, kx) of output pixel (oy, ox), or
    /// `None` where that tap falls on padding.
    fn input_at(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
        let g = &self.geom;
        let iy = (oy * g.stride + ky).checked_sub(g.pad.top)?;
        let ix = (ox * g.stride + kx).checked_sub(g.pad.left)?;
        (iy < g.in_hw.0 && ix < g.in_hw.1).then_some((iy, ix))
    }
}

/// Mean over pixels of an HWC map with `c` channels, accumulated in f64.
pub fn global_pool(x: &[f32], c: usize) -> Vec<f64> {
    let mut sum = vec![0f64; c];
    let pixels = x.len() / c;
    for px in x.chunks_exact(c) {
        for (s, &v) in sum.iter_mut().zip(px) {
            *s += v as f64;
        }
    }
    sum.iter().map(|s| s / pixels.max(1) as f64).collect()
}

/// `y = W·x + b` for `W` `[out, in]` row-major, in f64.
pub fn linear(w: &[f32], b: &[f32], x: &[f64]) -> Vec<f64> {
    w.chunks_exact(x.len())
        .zip(b)
        .map(|(row, &b)| b as f64 + row.iter().zip(x).map(|(&w, &v)| w as f64 * v).sum::<f64>())
        .collect()
}

/// Squeeze-excitation on an HWC map, in place.
#[derive(Clone, Debug)]
pub struct SqueezeExcite {
    pub reduce_w: Vec<f32>,
    pub reduce_b: Vec<f32>,
    pub expand_w: Vec<f32>,
    pub expand_b: Vec<f32>,
    pub act: Activation,
}

impl SqueezeExcite {
    pub fn apply(&self, x: &mut [f32]) {
        let c = self.expand_b.len();
        let pooled = global_pool(x, c);
        let reduced: Vec<f64> = linear(&self.reduce_w, &self.reduce_b, &pooled)
            .into_iter()
            .map(|v| self.act.apply(v as f32) as f64)
            .collect();
        let gate: Vec<f32> = linear(&self.expand_w, &self.expand_b, &reduced)
            .into_iter()
            .map(|v| (1.0 / (1.0 + (-v).exp())) as f32)
            .collect();
        x.par_chunks_mut(PIXELS_PER_TASK * c).for_each(|chunk| {
            for px in chunk.chunks_exact_mut(c) {
                for (v, &g) in px.iter_mut().zip(&gate) {
                    *v *= g;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use effc_ir::PaddingMode;

    /// Direct convolution on CHW, straight from the definition.
    fn naive(geom: &Conv2d, w: &[f32], x_chw: &[f32]) -> Vec<f32> {
        let (ih, iw) = geom.in_hw;
        let (oh, ow) = geom.out_hw;
        let k = geom.kernel;
        let cpg = geom.in_ch / geom.groups;
        let opg = geom.out_ch / geom.groups;
        let mut out = vec![0.0; geom.out_ch * oh * ow];
        for o in 0..geom.out_ch {
            let grp = o / opg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0.0f64;
                    for i in 0..cpg {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * geom.stride + ky) as isize - geom.pad.top as isize;
                                let ix = (ox * geom.stride + kx) as isize - geom.pad.left as isize;
                                if iy < 0 || ix < 0 || iy >= ih as isize || ix >= iw as isize {
                                    continue;
                                }
                                let ci = grp * cpg + i;
                                acc += w[((o * cpg + i) * k + ky) * k + kx] as f64
                                    * x_chw[(ci * ih + iy as usize) * iw + ix as usize] as f64;
                            }
                        }
                    }
                    out[(o * oh + oy) * ow + ox] = acc as f32;
                }
            }
        }
        out
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn chw_to_hwc(x: &[f32], c: usize, hw: usize) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        for ci in 0..c {
            for p in 0..hw {
                out[p * c + ci] = x[ci * hw + p];
            }
        }
        out
    }

    #[test]
    fn convolutions_equal_the_definition() {
        let identity = |c: usize| Epilogue {
            scale: vec![1.0; c],
            shift: vec![0.0; c],
            act: None,
        };
        let mut cases = 0;
        for mode in [PaddingMode::Same, PaddingMode::Symmetric] {
            for (cin, cout, k, s, hw, dw) in [
                (3, 8, 3, 2, (17, 12), false),
                (5, 7, 1, 1, (9, 300), false),
                (4, 6, 5, 1, (6, 7), false),
                (6, 4, 1, 2, (8, 8), false),
                (7, 7, 3, 1, (10, 11), true),
                (9, 9, 5, 2, (13, 12), true),
                (3, 3, 3, 2, (2, 1), true),
            ] {
                let groups = if dw { cin } else { 1 };
                let geom = Conv2d::new(cin, cout, k, s, groups, hw, mode);
                let w = pseudo_random(cout * (cin / groups) * k * k, cases as u32);
                let x = pseudo_random(cin * hw.0 * hw.1, cases as u32 + 100);
                let want = naive(&geom, &w, &x);
                let layer = ConvLayer::new(&geom, &w, identity(cout));
                let got = layer.forward(&chw_to_hwc(&x, cin, hw.0 * hw.1));
                let (oh, ow) = geom.out_hw;
                let want = chw_to_hwc(&want, cout, oh * ow);
                let d = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(d < 1e-5, "{geom:?}: max |diff| {d}");
                cases += 1;
            }
        }
    }

    #[test]
    fn batch_norm_is_the_affine_map() {
        let e = Epilogue::new(&[2.0], &[0.5], &[1.0], &[3.0], 1.0, Some(Activation::Relu6));
        let mut x = [3.0f32, -10.0, 1.0];
        // (x - 1) / sqrt(3 + 1) * 2 + 0.5 = x - 0.5, then clamped to [0, 6].
        for v in x.chunks_exact_mut(1) {
            e.apply(v);
        }
        assert_eq!(x, [2.5, 0.0, 0.5]);
    }
}
