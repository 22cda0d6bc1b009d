//! The training layers, forward and backward, on a batch in NHWC layout: a map
//! is `[rows, C]` row-major with `rows = N·H·W` (channels innermost, images one
//! after the other). Every function is generic over [`Real`]; reductions (batch
//! statistics, pools, weight gradients of direct loops, the loss) accumulate in
//! f64 whatever `T` is. Work is split over images or pixels with rayon in a way
//! that does not change the order of any sum, so results are deterministic.

use effc_ir::{Activation, Conv2d};
use rayon::prelude::*;

use super::real::Real;

/// A convolution without bias; weights in PyTorch layout `[out, in/groups, k, k]`.
/// Dense (groups 1) convolutions are GEMMs over an explicit patch matrix whose
/// columns are ordered `(ci, ky, kx)`, so the PyTorch weight *is* the `[out, K]`
/// matrix; depthwise ones are direct loops.
#[derive(Clone, Debug)]
pub struct Conv {
    pub geom: Conv2d,
}

impl Conv {
    fn depthwise(&self) -> bool {
        self.geom.is_depthwise()
    }

    fn pointwise(&self) -> bool {
        let g = &self.geom;
        g.kernel == 1 && g.stride == 1 && g.pad == Default::default() && g.in_hw == g.out_hw
    }

    fn in_len(&self) -> usize {
        self.geom.in_hw.0 * self.geom.in_hw.1 * self.geom.in_ch
    }

    fn out_len(&self) -> usize {
        self.geom.out_hw.0 * self.geom.out_hw.1 * self.geom.out_ch
    }

    /// The input pixel under tap (ky, kx) of output pixel (oy, ox), or `None` on padding.
    fn input_at(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
        let g = &self.geom;
        let iy = (oy * g.stride + ky).checked_sub(g.pad.top)?;
        let ix = (ox * g.stride + kx).checked_sub(g.pad.left)?;
        (iy < g.in_hw.0 && ix < g.in_hw.1).then_some((iy, ix))
    }

    /// The patch matrix `[n·oh·ow, cin·k·k]` of a batch.
    fn patches<T: Real>(&self, x: &[T]) -> Vec<T> {
        let g = &self.geom;
        let (oh, ow) = g.out_hw;
        let (cin, k) = (g.in_ch, g.kernel);
        let kk = cin * k * k;
        let n = x.len() / self.in_len();
        let mut p = vec![T::ZERO; n * oh * ow * kk];
        p.par_chunks_mut(kk).enumerate().for_each(|(row, p)| {
            let (img, oy, ox) = (row / (oh * ow), row / ow % oh, row % ow);
            let xi = &x[img * self.in_len()..][..self.in_len()];
            for ky in 0..k {
                for kx in 0..k {
                    if let Some((iy, ix)) = self.input_at(oy, ox, ky, kx) {
                        let src = &xi[(iy * g.in_hw.1 + ix) * cin..][..cin];
                        for (ci, &v) in src.iter().enumerate() {
                            p[(ci * k + ky) * k + kx] = v;
                        }
                    }
                }
            }
        });
        p
    }

    /// Output `[n·oh·ow, out]` of a batch `x` `[n·ih·iw, in]`.
    pub fn forward<T: Real>(&self, w: &[T], x: &[T]) -> Vec<T> {
        let g = &self.geom;
        let n = x.len() / self.in_len();
        let mut y = vec![T::ZERO; n * self.out_len()];
        if self.depthwise() {
            self.depthwise_forward(w, x, &mut y);
            return y;
        }
        let kk = g.in_ch * g.kernel * g.kernel;
        let m = y.len() / g.out_ch;
        let owned;
        let p = if self.pointwise() {
            x
        } else {
            owned = self.patches(x);
            &owned
        };
        T::gemm(m, kk, g.out_ch, p, (kk, 1), w, (1, kk), T::ZERO, &mut y);
        y
    }

    /// Given the input `x` and the output's gradient `dy`, returns the input's
    /// gradient and writes the weight's gradient into `dw`.
    pub fn backward<T: Real>(&self, w: &[T], x: &[T], dy: &[T], dw: &mut [T]) -> Vec<T> {
        let g = &self.geom;
        if self.depthwise() {
            return self.depthwise_backward(w, x, dy, dw);
        }
        let (cin, cout, k) = (g.in_ch, g.out_ch, g.kernel);
        let kk = cin * k * k;
        let m = dy.len() / cout;
        if self.pointwise() {
            T::gemm(cout, m, kk, dy, (1, cout), x, (kk, 1), T::ZERO, dw);
            let mut dx = vec![T::ZERO; x.len()];
            T::gemm(m, cout, kk, dy, (cout, 1), w, (kk, 1), T::ZERO, &mut dx);
            return dx;
        }
        let p = self.patches(x);
        T::gemm(cout, m, kk, dy, (1, cout), &p, (kk, 1), T::ZERO, dw);
        let mut dp = p;
        T::gemm(m, cout, kk, dy, (cout, 1), w, (kk, 1), T::ZERO, &mut dp);
        // Scatter the patch gradients back onto the input, one image per task.
        let (oh, ow) = g.out_hw;
        let mut dx = vec![T::ZERO; x.len()];
        dx.par_chunks_mut(self.in_len())
            .enumerate()
            .for_each(|(img, dxi)| {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let row = &dp[((img * oh + oy) * ow + ox) * kk..][..kk];
                        for ky in 0..k {
                            for kx in 0..k {
                                if let Some((iy, ix)) = self.input_at(oy, ox, ky, kx) {
                                    let dst = &mut dxi[(iy * g.in_hw.1 + ix) * cin..][..cin];
                                    for (ci, d) in dst.iter_mut().enumerate() {
                                        *d += row[(ci * k + ky) * k + kx];
                                    }
                                }
                            }
                        }
                    }
                }
            });
        dx
    }

    fn depthwise_forward<T: Real>(&self, w: &[T], x: &[T], y: &mut [T]) {
        let g = &self.geom;
        let (oh, ow) = g.out_hw;
        let (c, k) = (g.out_ch, g.kernel);
        y.par_chunks_mut(ow * c).enumerate().for_each(|(r, row)| {
            let (img, oy) = (r / oh, r % oh);
            let xi = &x[img * self.in_len()..][..self.in_len()];
            for ox in 0..ow {
                let acc = &mut row[ox * c..][..c];
                for ky in 0..k {
                    for kx in 0..k {
                        if let Some((iy, ix)) = self.input_at(oy, ox, ky, kx) {
                            let src = &xi[(iy * g.in_hw.1 + ix) * c..][..c];
                            for (ch, (a, &v)) in acc.iter_mut().zip(src).enumerate() {
                                *a += v * w[(ch * k + ky) * k + kx];
                            }
                        }
                    }
                }
            }
        });
    }

    fn depthwise_backward<T: Real>(&self, w: &[T], x: &[T], dy: &[T], dw: &mut [T]) -> Vec<T> {
        let g = &self.geom;
        let (oh, ow) = g.out_hw;
        let (c, k) = (g.out_ch, g.kernel);
        let mut dx = vec![T::ZERO; x.len()];
        let partial: Vec<Vec<f64>> = dx
            .par_chunks_mut(self.in_len())
            .enumerate()
            .map(|(img, dxi)| {
                let xi = &x[img * self.in_len()..][..self.in_len()];
                let dyi = &dy[img * self.out_len()..][..self.out_len()];
                let mut dwi = vec![0f64; c * k * k];
                for oy in 0..oh {
                    for ox in 0..ow {
                        let d = &dyi[(oy * ow + ox) * c..][..c];
                        for ky in 0..k {
                            for kx in 0..k {
                                if let Some((iy, ix)) = self.input_at(oy, ox, ky, kx) {
                                    let at = (iy * g.in_hw.1 + ix) * c;
                                    for ch in 0..c {
                                        let wi = (ch * k + ky) * k + kx;
                                        dxi[at + ch] += d[ch] * w[wi];
                                        dwi[wi] += (d[ch] * xi[at + ch]).to_f64();
                                    }
                                }
                            }
                        }
                    }
                }
                dwi
            })
            .collect();
        for (i, out) in dw.iter_mut().enumerate() {
            *out = T::from_f64(partial.iter().map(|p| p[i]).sum());
        }
        dx
    }
}

/// Batch norm in training: the batch's statistics (biased variance) normalize,
/// and are returned for the running-statistics update.
#[derive(Clone, Debug)]
pub struct BnTrain<T> {
    /// The normalized input `(z − μ)/√(σ² + ε)`, `[rows, C]`.
    pub xhat: Vec<T>,
    /// `1/√(σ² + ε)` per channel.
    pub inv_std: Vec<f64>,
    /// The batch mean and biased variance per channel.
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
}

/// Per-channel sums of `f(row values)` over the rows of `[rows, C]`, in f64.
fn channel_sums<T: Real>(x: &[T], c: usize, f: impl Fn(usize, T) -> f64) -> Vec<f64> {
    let mut s = vec![0f64; c];
    for row in x.chunks_exact(c) {
        for (ch, (acc, &v)) in s.iter_mut().zip(row).enumerate() {
            *acc += f(ch, v);
        }
    }
    s
}

/// `y = γ·x̂ + β` with the batch's statistics.
pub fn bn_train_forward<T: Real>(
    z: &[T],
    gamma: &[T],
    beta: &[T],
    eps: f64,
) -> (Vec<T>, BnTrain<T>) {
    let c = gamma.len();
    let rows = (z.len() / c).max(1) as f64;
    let mean: Vec<f64> = channel_sums(z, c, |_, v| v.to_f64())
        .into_iter()
        .map(|s| s / rows)
        .collect();
    let var: Vec<f64> = channel_sums(z, c, |ch, v| (v.to_f64() - mean[ch]).powi(2))
        .into_iter()
        .map(|s| s / rows)
        .collect();
    bn_normalize(z, gamma, beta, mean, var, eps)
}

/// Batch norm in eval mode (a frozen layer): the running statistics normalize.
pub fn bn_eval_forward<T: Real>(
    z: &[T],
    gamma: &[T],
    beta: &[T],
    running_mean: &[T],
    running_var: &[T],
    eps: f64,
) -> (Vec<T>, BnTrain<T>) {
    let mean: Vec<f64> = running_mean.iter().map(|v| v.to_f64()).collect();
    let var: Vec<f64> = running_var.iter().map(|v| v.to_f64()).collect();
    bn_normalize(z, gamma, beta, mean, var, eps)
}

/// `y = γ·(z − mean)/√(var + ε) + β` per channel, keeping x̂ and 1/std for the backward.
fn bn_normalize<T: Real>(
    z: &[T],
    gamma: &[T],
    beta: &[T],
    mean: Vec<f64>,
    var: Vec<f64>,
    eps: f64,
) -> (Vec<T>, BnTrain<T>) {
    let c = gamma.len();
    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let mut xhat = vec![T::ZERO; z.len()];
    let mut y = vec![T::ZERO; z.len()];
    for ((zr, xr), yr) in z
        .chunks_exact(c)
        .zip(xhat.chunks_exact_mut(c))
        .zip(y.chunks_exact_mut(c))
    {
        for ch in 0..c {
            let h = T::from_f64((zr[ch].to_f64() - mean[ch]) * inv_std[ch]);
            xr[ch] = h;
            yr[ch] = gamma[ch] * h + beta[ch];
        }
    }
    (
        y,
        BnTrain {
            xhat,
            inv_std,
            mean,
            var,
        },
    )
}

/// PyTorch's running-statistics update: `new = (1 − m)·old + m·batch`, with the
/// batch's *unbiased* variance (`rows/(rows − 1)` times the biased one).
pub fn bn_update_running<T: Real>(
    bn: &BnTrain<T>,
    rows: usize,
    momentum: f64,
    mean: &mut [T],
    var: &mut [T],
) {
    let unbias = rows as f64 / (rows.max(2) - 1) as f64;
    for ch in 0..mean.len() {
        mean[ch] = T::from_f64((1.0 - momentum) * mean[ch].to_f64() + momentum * bn.mean[ch]);
        var[ch] = T::from_f64((1.0 - momentum) * var[ch].to_f64() + momentum * bn.var[ch] * unbias);
    }
}

/// Returns `dz` and writes `dγ`, `dβ`:
/// `dz = γ/(rows·√(σ²+ε)) · (rows·dy − Σdy − x̂·Σ(dy·x̂))`.
pub fn bn_train_backward<T: Real>(
    bn: &BnTrain<T>,
    gamma: &[T],
    dy: &[T],
    dgamma: &mut [T],
    dbeta: &mut [T],
) -> Vec<T> {
    let c = gamma.len();
    let rows = (dy.len() / c).max(1) as f64;
    let sum_dy = channel_sums(dy, c, |_, v| v.to_f64());
    let mut sum_dy_xhat = vec![0f64; c];
    for (dr, xr) in dy.chunks_exact(c).zip(bn.xhat.chunks_exact(c)) {
        for ch in 0..c {
            sum_dy_xhat[ch] += (dr[ch] * xr[ch]).to_f64();
        }
    }
    for ch in 0..c {
        dbeta[ch] = T::from_f64(sum_dy[ch]);
        dgamma[ch] = T::from_f64(sum_dy_xhat[ch]);
    }
    let k: Vec<f64> = (0..c)
        .map(|ch| gamma[ch].to_f64() * bn.inv_std[ch] / rows)
        .collect();
    let mut dz = vec![T::ZERO; dy.len()];
    for ((dzr, dr), xr) in dz
        .chunks_exact_mut(c)
        .zip(dy.chunks_exact(c))
        .zip(bn.xhat.chunks_exact(c))
    {
        for ch in 0..c {
            let v = rows * dr[ch].to_f64() - sum_dy[ch] - xr[ch].to_f64() * sum_dy_xhat[ch];
            dzr[ch] = T::from_f64(k[ch] * v);
        }
    }
    dz
}

pub fn sigmoid<T: Real>(x: T) -> T {
    T::ONE / (T::ONE + (-x).exp())
}

/// The activation of one value.
pub fn act<T: Real>(a: Activation, x: T) -> T {
    let six = T::from_f64(6.0);
    match a {
        Activation::Swish => x * sigmoid(x),
        Activation::Relu if x > T::ZERO => x,
        Activation::Relu => T::ZERO,
        Activation::Relu6 if x <= T::ZERO => T::ZERO,
        Activation::Relu6 if x >= six => six,
        Activation::Relu6 => x,
    }
}

/// `dy · act'(x)`. ReLU and ReLU6 pass the gradient only strictly inside their
/// linear piece, as PyTorch's `threshold_backward` and `hardtanh_backward` do.
pub fn act_grad<T: Real>(a: Activation, x: T, dy: T) -> T {
    match a {
        Activation::Swish => {
            let s = sigmoid(x);
            dy * (s + x * s * (T::ONE - s))
        }
        Activation::Relu if x > T::ZERO => dy,
        Activation::Relu6 if x > T::ZERO && x < T::from_f64(6.0) => dy,
        Activation::Relu | Activation::Relu6 => T::ZERO,
    }
}

/// Mean over each image's pixels of `[n·hw, C]`: `[n, C]`, in f64.
pub fn pool<T: Real>(x: &[T], n: usize, c: usize) -> Vec<T> {
    let per = x.len() / n.max(1);
    x.chunks_exact(per.max(1))
        .flat_map(|img| {
            let hw = (per / c).max(1) as f64;
            channel_sums(img, c, |_, v| v.to_f64())
                .into_iter()
                .map(move |s| T::from_f64(s / hw))
        })
        .collect()
}

/// The gradient of [`pool`]: each pixel gets its image's `dp / hw`.
pub fn pool_backward<T: Real>(dp: &[T], n: usize, c: usize, hw: usize) -> Vec<T> {
    let mut dx = vec![T::ZERO; n * hw * c];
    let inv = 1.0 / hw.max(1) as f64;
    for (img, d) in dp.chunks_exact(c).enumerate() {
        let g: Vec<T> = d.iter().map(|&v| T::from_f64(v.to_f64() * inv)).collect();
        for row in dx[img * hw * c..][..hw * c].chunks_exact_mut(c) {
            row.copy_from_slice(&g);
        }
    }
    dx
}

/// `y = x·Wᵀ + b` for `x` `[n, in]`, `W` `[out, in]`, accumulated in f64.
pub fn linear<T: Real>(w: &[T], b: &[T], x: &[T]) -> Vec<T> {
    let (o, i) = (b.len(), w.len() / b.len().max(1));
    x.chunks_exact(i.max(1))
        .flat_map(|xr| {
            (0..o).map(move |j| {
                let row = &w[j * i..][..i];
                T::from_f64(
                    b[j].to_f64()
                        + row
                            .iter()
                            .zip(xr)
                            .map(|(&w, &v)| (w * v).to_f64())
                            .sum::<f64>(),
                )
            })
        })
        .collect()
}

/// Returns `dx` and writes `dW = dyᵀ·x`, `db = Σ dy`, all accumulated in f64.
pub fn linear_backward<T: Real>(w: &[T], x: &[T], dy: &[T], dw: &mut [T], db: &mut [T]) -> Vec<T> {
    let o = db.len();
    let i = w.len() / o.max(1);
    let n = dy.len() / o.max(1);
    for j in 0..o {
        db[j] = T::from_f64((0..n).map(|r| dy[r * o + j].to_f64()).sum());
        for l in 0..i {
            dw[j * i + l] = T::from_f64(
                (0..n)
                    .map(|r| (dy[r * o + j] * x[r * i + l]).to_f64())
                    .sum(),
            );
        }
    }
    let mut dx = vec![T::ZERO; n * i];
    for r in 0..n {
        for l in 0..i {
            dx[r * i + l] = T::from_f64(
                (0..o)
                    .map(|j| (dy[r * o + j] * w[j * i + l]).to_f64())
                    .sum(),
            );
        }
    }
    dx
}

/// What the backward pass of squeeze-excitation needs.
#[derive(Clone, Debug)]
pub struct SeSaved<T> {
    pub pooled: Vec<T>,
    pub reduced_pre: Vec<T>,
    pub reduced: Vec<T>,
    pub gate: Vec<T>,
}

/// The tensors of one squeeze-excitation: `reduce` `[R, C]` + `[R]`, `expand` `[C, R]` + `[C]`.
pub struct SeParams<'a, T> {
    pub reduce_w: &'a [T],
    pub reduce_b: &'a [T],
    pub expand_w: &'a [T],
    pub expand_b: &'a [T],
}

/// Squeeze-excitation of `x` `[n·hw, C]`: pool, reduce, act, expand, sigmoid, multiply.
pub fn se_forward<T: Real>(
    p: &SeParams<T>,
    a: Activation,
    x: &[T],
    n: usize,
) -> (Vec<T>, SeSaved<T>) {
    let c = p.expand_b.len();
    let pooled = pool(x, n, c);
    let reduced_pre = linear(p.reduce_w, p.reduce_b, &pooled);
    let reduced: Vec<T> = reduced_pre.iter().map(|&v| act(a, v)).collect();
    let gate: Vec<T> = linear(p.expand_w, p.expand_b, &reduced)
        .into_iter()
        .map(sigmoid)
        .collect();
    let per = x.len() / n.max(1);
    let mut y = x.to_vec();
    for (img, yi) in y.chunks_exact_mut(per.max(1)).enumerate() {
        let g = &gate[img * c..][..c];
        for row in yi.chunks_exact_mut(c) {
            for (v, &g) in row.iter_mut().zip(g) {
                *v *= g;
            }
        }
    }
    (
        y,
        SeSaved {
            pooled,
            reduced_pre,
            reduced,
            gate,
        },
    )
}

/// The gradients of squeeze-excitation's four tensors, in the order of [`SeParams`].
pub struct SeGrads<'a, T> {
    pub reduce_w: &'a mut [T],
    pub reduce_b: &'a mut [T],
    pub expand_w: &'a mut [T],
    pub expand_b: &'a mut [T],
}

pub fn se_backward<T: Real>(
    p: &SeParams<T>,
    a: Activation,
    s: &SeSaved<T>,
    x: &[T],
    n: usize,
    dy: &[T],
    g: SeGrads<T>,
) -> Vec<T> {
    let c = p.expand_b.len();
    let per = x.len() / n.max(1);
    let hw = per / c.max(1);
    // Through the multiply: dx = dy·gate; dgate = Σ_pixels dy·x.
    let mut dx = vec![T::ZERO; x.len()];
    let mut dgate_pre = vec![T::ZERO; n * c];
    for img in 0..n {
        let gate = &s.gate[img * c..][..c];
        let mut dgate = vec![0f64; c];
        for ((dr, xr), dxr) in dy[img * per..][..per]
            .chunks_exact(c)
            .zip(x[img * per..][..per].chunks_exact(c))
            .zip(dx[img * per..][..per].chunks_exact_mut(c))
        {
            for ch in 0..c {
                dxr[ch] = dr[ch] * gate[ch];
                dgate[ch] += (dr[ch] * xr[ch]).to_f64();
            }
        }
        for ch in 0..c {
            let gv = gate[ch].to_f64();
            dgate_pre[img * c + ch] = T::from_f64(dgate[ch] * gv * (1.0 - gv));
        }
    }
    let dreduced = linear_backward(p.expand_w, &s.reduced, &dgate_pre, g.expand_w, g.expand_b);
    let dreduced_pre: Vec<T> = dreduced
        .iter()
        .zip(&s.reduced_pre)
        .map(|(&d, &v)| act_grad(a, v, d))
        .collect();
    let dpooled = linear_backward(p.reduce_w, &s.pooled, &dreduced_pre, g.reduce_w, g.reduce_b);
    let through_pool = pool_backward(&dpooled, n, c, hw);
    for (d, e) in dx.iter_mut().zip(through_pool) {
        *d += e;
    }
    dx
}

/// What the loss compares the logits with.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a, T> {
    /// A class index per image.
    Labels(&'a [usize]),
    /// A distribution over the classes per image, `[n, classes]` (mixup).
    Soft(&'a [T]),
}

/// Mean over the batch of the softmax cross-entropy, with label smoothing `s`:
/// the target becomes `(1 − s)·t + s/classes` (for labels, `t` is one-hot; the
/// same as PyTorch's `CrossEntropyLoss(label_smoothing = s)`). Returns the loss
/// and its gradient with respect to the logits, `(softmax·Σtarget − target)/n`
/// (`(softmax − target)/n` for a target that sums to 1).
pub fn cross_entropy<T: Real>(
    logits: &[T],
    classes: usize,
    target: Target<T>,
    smoothing: f64,
) -> (f64, Vec<T>) {
    let n = logits.len() / classes.max(1);
    let mut loss = 0f64;
    let mut grad = vec![T::ZERO; logits.len()];
    for r in 0..n {
        let z = &logits[r * classes..][..classes];
        let max = z
            .iter()
            .map(|v| v.to_f64())
            .fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = z.iter().map(|v| (v.to_f64() - max).exp()).sum();
        let log_sum = sum.ln() + max;
        let t: Vec<f64> = (0..classes)
            .map(|k| {
                let t = match target {
                    Target::Labels(l) => f64::from(u8::from(l[r] == k)),
                    Target::Soft(t) => t[r * classes + k].to_f64(),
                };
                (1.0 - smoothing) * t + smoothing / classes as f64
            })
            .collect();
        let total: f64 = t.iter().sum();
        for k in 0..classes {
            let logp = z[k].to_f64() - log_sum;
            loss -= t[k] * logp;
            grad[r * classes + k] = T::from_f64((logp.exp() * total - t[k]) / n as f64);
        }
    }
    (loss / n.max(1) as f64, grad)
}
