//! Optimizers, each exactly as PyTorch or timm updates a tensor. Values and
//! state are `T` (f32 for training, f64 for checks); each element's update is
//! computed in f64 and rounded once.

use effc_ir::Param;
use effc_reference::train::Real;

/// Which optimizer, with its settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// `torch.optim.SGD` (dampening 0): `b = μ·b + g` (`b = g` at the first
    /// step), then `p −= lr·(g + μ·b)` with Nesterov or `p −= lr·b` without.
    Sgd { momentum: f64, nesterov: bool },
    /// timm's `RMSpropTF` (TensorFlow's RMSProp): the mean square starts at 1,
    /// `s += (1 − α)(g² − s)`, `b = μ·b + lr·g/√(s + ε)` (ε inside the square
    /// root, the learning rate inside the momentum), `p −= b`.
    RmsPropTf { alpha: f64, momentum: f64, eps: f64 },
    /// `torch.optim.AdamW`: decoupled decay `p *= 1 − lr·λ`, then Adam with bias
    /// correction, `p −= lr/(1 − β₁ᵗ) · m / (√v/√(1 − β₂ᵗ) + ε)`.
    AdamW { beta1: f64, beta2: f64, eps: f64 },
}

impl Kind {
    /// The papers' RMSProp: decay 0.9, momentum 0.9; ε as timm's default (1e-10)
    /// unless given (the TF code uses 0.001).
    pub fn rmsprop_tf(eps: Option<f64>) -> Kind {
        Kind::RmsPropTf {
            alpha: 0.9,
            momentum: 0.9,
            eps: eps.unwrap_or(1e-10),
        }
    }

    /// `torch.optim.AdamW`'s defaults: β = (0.9, 0.999), ε = 1e-8.
    pub fn adamw() -> Kind {
        Kind::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Kind::Sgd { nesterov: true, .. } => "sgd (nesterov)",
            Kind::Sgd { .. } => "sgd",
            Kind::RmsPropTf { .. } => "rmsproptf",
            Kind::AdamW { .. } => "adamw",
        }
    }
}

/// Which tensors weight decay applies to: timm's default (`param_groups_weight_decay`)
/// leaves out every tensor of one dimension (BN weights and biases, conv and
/// classifier biases); `all` decays every trainable tensor.
pub fn decay_mask(params: &[Param], all: bool) -> Vec<bool> {
    params
        .iter()
        .map(|p| p.trainable && (all || p.shape.len() > 1))
        .collect()
}

/// An optimizer with its per-tensor state.
#[derive(Clone, Debug)]
pub struct Optimizer<T> {
    pub kind: Kind,
    pub weight_decay: f64,
    /// Per tensor: whether weight decay applies ([`decay_mask`]).
    pub decay: Vec<bool>,
    /// Per tensor, the optimizer's buffers: SGD `[momentum]`, RMSpropTF
    /// `[square mean, momentum]`, AdamW `[m, v]`; empty until the first step.
    pub state: Vec<Vec<Vec<T>>>,
    /// Steps taken.
    pub steps: u64,
}

impl<T: Real> Optimizer<T> {
    pub fn new(kind: Kind, weight_decay: f64, decay: Vec<bool>) -> Optimizer<T> {
        let n = decay.len();
        Optimizer {
            kind,
            weight_decay,
            decay,
            state: vec![vec![]; n],
            steps: 0,
        }
    }

    /// One update of every tensor that has a gradient (`grads[i]` non-empty) at
    /// learning rate `lr`.
    pub fn step(&mut self, values: &mut [Vec<T>], grads: &[Vec<T>], lr: f64) {
        self.steps += 1;
        let t = self.steps as f64;
        for (i, (p, g)) in values.iter_mut().zip(grads).enumerate() {
            if g.is_empty() {
                continue;
            }
            assert_eq!(p.len(), g.len(), "a gradient has its tensor's size");
            let wd = if self.decay[i] {
                self.weight_decay
            } else {
                0.0
            };
            let state = &mut self.state[i];
            let first = state.is_empty();
            match self.kind {
                Kind::Sgd { momentum, nesterov } => {
                    if momentum == 0.0 {
                        for (p, &g) in p.iter_mut().zip(g) {
                            let g = g.to_f64() + wd * p.to_f64();
                            *p = T::from_f64(p.to_f64() - lr * g);
                        }
                        continue;
                    }
                    if first {
                        state.push(vec![T::ZERO; p.len()]);
                    }
                    for ((p, &g), b) in p.iter_mut().zip(g).zip(state[0].iter_mut()) {
                        let g = g.to_f64() + wd * p.to_f64();
                        let buf = if first { g } else { momentum * b.to_f64() + g };
                        *b = T::from_f64(buf);
                        let d = if nesterov { g + momentum * buf } else { buf };
                        *p = T::from_f64(p.to_f64() - lr * d);
                    }
                }
                Kind::RmsPropTf {
                    alpha,
                    momentum,
                    eps,
                } => {
                    if first {
                        state.push(vec![T::ONE; p.len()]);
                        state.push(vec![T::ZERO; p.len()]);
                    }
                    let (sq, buf) = state.split_at_mut(1);
                    for ((p, &g), (s, b)) in p
                        .iter_mut()
                        .zip(g)
                        .zip(sq[0].iter_mut().zip(buf[0].iter_mut()))
                    {
                        let g = g.to_f64() + wd * p.to_f64();
                        let sv = s.to_f64() + (1.0 - alpha) * (g * g - s.to_f64());
                        *s = T::from_f64(sv);
                        let step = lr * g / (sv + eps).sqrt();
                        if momentum > 0.0 {
                            let bv = momentum * b.to_f64() + step;
                            *b = T::from_f64(bv);
                            *p = T::from_f64(p.to_f64() - bv);
                        } else {
                            *p = T::from_f64(p.to_f64() - step);
                        }
                    }
                }
                Kind::AdamW { beta1, beta2, eps } => {
                    if first {
                        state.push(vec![T::ZERO; p.len()]);
                        state.push(vec![T::ZERO; p.len()]);
                    }
                    let c1 = 1.0 - beta1.powf(t);
                    let c2 = (1.0 - beta2.powf(t)).sqrt();
                    let (ms, vs) = state.split_at_mut(1);
                    for ((p, &g), (m, v)) in p
                        .iter_mut()
                        .zip(g)
                        .zip(ms[0].iter_mut().zip(vs[0].iter_mut()))
                    {
                        let g = g.to_f64();
                        let pv = p.to_f64() * (1.0 - lr * wd);
                        let mv = beta1 * m.to_f64() + (1.0 - beta1) * g;
                        let vv = beta2 * v.to_f64() + (1.0 - beta2) * g * g;
                        *m = T::from_f64(mv);
                        *v = T::from_f64(vv);
                        *p = T::from_f64(pv - lr / c1 * mv / (vv.sqrt() / c2 + eps));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use effc_ir::{Layer, Model, Options, Spec, Tensor};

    #[test]
    fn weight_decay_leaves_out_bn_and_biases() {
        let model = Model::build(&Spec::builtin("b0").unwrap(), &Options::default()).unwrap();
        let params = model.params();
        let mask = decay_mask(&params, false);
        for (p, &d) in params.iter().zip(&mask) {
            let bn = matches!(
                p.key.layer,
                Layer::StemBn | Layer::ExpandBn | Layer::ConvBn | Layer::ProjectBn | Layer::HeadBn
            );
            let want = p.trainable && !bn && p.key.tensor == Tensor::Weight;
            assert_eq!(d, want, "{}", p.name);
        }
        let all = decay_mask(&params, true);
        assert!(params.iter().zip(&all).all(|(p, &d)| d == p.trainable));
    }

    #[test]
    fn tensors_without_gradients_are_left_alone() {
        let mut values = vec![vec![1.0f64; 3], vec![2.0; 2]];
        let grads = vec![vec![0.5; 3], vec![]];
        let mut opt = Optimizer::new(Kind::adamw(), 0.1, vec![true, true]);
        opt.step(&mut values, &grads, 0.1);
        assert_eq!(values[1], vec![2.0, 2.0]);
        assert!(values[0].iter().all(|&v| v < 1.0));
        assert!(opt.state[1].is_empty());
    }
}
