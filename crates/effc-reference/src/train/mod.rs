//! Training semantics: one step of forward (train mode) and backward over a
//! batch, the oracle for generated training kernels.
//!
//! What a step computes, layer by layer (each as PyTorch/timm train it):
//!
//! - convolutions as in inference (zero padding per side from the IR: TF "same"
//!   or symmetric), their input and weight gradients;
//! - batch norm on the **batch's** statistics: `x̂ = (z − μ_B)/√(σ²_B + ε)` with
//!   the biased variance, `y = γ·x̂ + β`; the running statistics are updated in
//!   place with PyTorch's convention `new = (1 − m)·old + m·batch` (`m` =
//!   [`StepConfig::bn_momentum`], 0.1 by default; TF's decay 0.99 is `m` = 0.01)
//!   and the batch's *unbiased* variance;
//! - swish, ReLU, ReLU6 (gradient only strictly inside the linear piece), sigmoid;
//! - squeeze-excitation; the residual with drop path: block `j` of `N` drops its
//!   whole branch per image with probability `drop_path·j/N` and scales kept
//!   branches by `1/(1 − rate)` (timm's `drop_path`);
//! - global pool, dropout on the embedding (the pooled head) (scaled by `1/(1 − p)`), the
//!   classifier, and the mean softmax cross-entropy with label smoothing over
//!   class labels or soft targets ([`Target`]).
//!
//! Random draws (drop path, then dropout, in forward order) come from a seeded
//! [`Rng`], so a step is reproducible. Everything is generic over [`Real`]:
//! `f32` as frameworks train, `f64` for finite-difference checks.

mod layers;
mod real;

use std::collections::HashMap;

use effc_ir::{Block, ConvBn, Layer, Model, Param, ParamKey, Tensor as Which};
use effc_weights::Weights;

pub use layers::Target;
pub use real::Real;

use crate::Error;
use layers::{BnTrain, Conv, SeGrads, SeParams, SeSaved};

/// SplitMix64: a small seeded generator whose whole state is one `u64`, so a
/// checkpoint can store it and a resumed run draws the same numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rng {
    pub state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 53 bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `true` with probability `p`.
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.uniform() < p
    }
}

/// The settings of a training step that are not parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct StepConfig {
    /// Label smoothing `s` of the loss.
    pub label_smoothing: f64,
    /// BN running-statistics momentum, PyTorch's convention (0.1 by default).
    pub bn_momentum: f64,
    /// Dropout before the classifier; `None`: the model's.
    pub dropout: Option<f64>,
    /// Drop-path rate (block `j` of `N` uses `rate·j/N`); `None`: the model's.
    pub drop_path: Option<f64>,
    /// Frozen layers (fine-tuning, as timm users freeze them): `Some(k)` freezes
    /// the stem and the first `k` stages (timm's `blocks.0` .. `blocks.{k−1}`).
    /// Their BN runs in eval mode (running statistics, not updated) and they get
    /// no gradient (empty, as BN running statistics): backward stops above them.
    pub frozen: Option<usize>,
}

impl Default for StepConfig {
    fn default() -> Self {
        StepConfig {
            label_smoothing: 0.0,
            bn_momentum: 0.1,
            dropout: None,
            drop_path: None,
            frozen: None,
        }
    }
}

/// Every tensor of a model (trainable ones and BN running statistics), in the
/// order of [`Model::params`], as `T`.
#[derive(Clone, Debug)]
pub struct Params<T> {
    params: Vec<Param>,
    values: Vec<Vec<T>>,
    index: HashMap<ParamKey, usize>,
}

impl<T: Real> Params<T> {
    /// From checkpoint weights of `model`.
    pub fn from_weights(model: &Model, weights: &Weights) -> Result<Params<T>, Error> {
        let mut problems = vec![];
        let params = model.params();
        let values = params
            .iter()
            .map(|p| match weights.get(&p.key) {
                Some(v) if v.len() == p.numel() => {
                    v.iter().map(|&v| T::from_f64(v.into())).collect()
                }
                found => {
                    problems.push(match found {
                        Some(v) => {
                            format!("`{}` has {} values, needs {}", p.name, v.len(), p.numel())
                        }
                        None => format!("`{}` is missing", p.name),
                    });
                    vec![]
                }
            })
            .collect();
        if !problems.is_empty() {
            return Err(Error::WeightsDontFit {
                model: model.name.clone(),
                weights_model: weights.model().to_string(),
                source_name: weights.source().display().to_string(),
                problems,
            });
        }
        Ok(Params::new(params, values))
    }

    /// From values in the order of `model.params()`, each of its size.
    pub fn from_values(model: &Model, values: Vec<Vec<T>>) -> Option<Params<T>> {
        let params = model.params();
        let fits = params.len() == values.len()
            && params
                .iter()
                .zip(&values)
                .all(|(p, v)| p.numel() == v.len());
        fits.then(|| Params::new(params, values))
    }

    fn new(params: Vec<Param>, values: Vec<Vec<T>>) -> Params<T> {
        let index = params.iter().enumerate().map(|(i, p)| (p.key, i)).collect();
        Params {
            params,
            values,
            index,
        }
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    pub fn values(&self) -> &[Vec<T>] {
        &self.values
    }

    pub fn values_mut(&mut self) -> &mut [Vec<T>] {
        &mut self.values
    }

    fn at(&self, block: Option<&Block>, layer: Layer, tensor: Which) -> usize {
        let key = ParamKey {
            block: block.map(|b| (b.stage, b.index, b.id)),
            layer,
            tensor,
        };
        *self
            .index
            .get(&key)
            .expect("the model's layers have the tensors Model::params lists")
    }
}

/// What one step returns; BN running statistics are updated in the [`Params`].
#[derive(Clone, Debug)]
pub struct StepOutput<T> {
    /// The mean loss over the batch.
    pub loss: f64,
    /// `[n, classes]`.
    pub logits: Vec<T>,
    /// The loss's gradient of every tensor, aligned with [`Params::params`];
    /// empty for BN running statistics.
    pub grads: Vec<Vec<T>>,
}

/// The tensor indices of a conv + BN + activation unit.
struct Unit<'m> {
    cb: &'m ConvBn,
    conv: Conv,
    w: usize,
    gamma: usize,
    beta: usize,
    mean: usize,
    var: usize,
}

struct UnitSaved<T> {
    input: Vec<T>,
    bn: BnTrain<T>,
    /// BN's output, the activation's input (when there is an activation).
    pre_act: Option<Vec<T>>,
}

struct SeIdx {
    rw: usize,
    rb: usize,
    ew: usize,
    eb: usize,
}

struct BlockSaved<T> {
    expand: Option<UnitSaved<T>>,
    conv: UnitSaved<T>,
    se: Option<(Vec<T>, SeSaved<T>)>,
    project: Option<UnitSaved<T>>,
    /// Per image: 0 (dropped) or `1/keep` when the residual branch is scaled.
    drop_scale: Option<Vec<T>>,
}

fn unit<'m, T: Real>(
    p: &Params<T>,
    b: Option<&Block>,
    cb: &'m ConvBn,
    conv: Layer,
    bn: Layer,
) -> Unit<'m> {
    Unit {
        cb,
        conv: Conv {
            geom: cb.conv.clone(),
        },
        w: p.at(b, conv, Which::Weight),
        gamma: p.at(b, bn, Which::Weight),
        beta: p.at(b, bn, Which::Bias),
        mean: p.at(b, bn, Which::RunningMean),
        var: p.at(b, bn, Which::RunningVar),
    }
}

/// A unit's forward in train mode with BN `momentum`, or with `None` frozen:
/// BN in eval mode (its running statistics, left as they are).
fn unit_forward<T: Real>(
    u: &Unit,
    p: &mut Params<T>,
    x: Vec<T>,
    momentum: Option<f64>,
) -> (Vec<T>, UnitSaved<T>) {
    let v = &p.values;
    let z = u.conv.forward(&v[u.w], &x);
    let (y, bn) = match momentum {
        Some(momentum) => {
            let (y, bn) = layers::bn_train_forward(&z, &v[u.gamma], &v[u.beta], u.cb.bn.eps);
            let rows = z.len() / u.cb.bn.channels;
            let (mean, var) = pair_mut(&mut p.values, u.mean, u.var);
            layers::bn_update_running(&bn, rows, momentum, mean, var);
            (y, bn)
        }
        None => layers::bn_eval_forward(
            &z,
            &v[u.gamma],
            &v[u.beta],
            &v[u.mean],
            &v[u.var],
            u.cb.bn.eps,
        ),
    };
    match u.cb.act {
        Some(a) => {
            let out = y.iter().map(|&v| layers::act(a, v)).collect();
            (
                out,
                UnitSaved {
                    input: x,
                    bn,
                    pre_act: Some(y),
                },
            )
        }
        None => (
            y,
            UnitSaved {
                input: x,
                bn,
                pre_act: None,
            },
        ),
    }
}

fn unit_backward<T: Real>(
    u: &Unit,
    p: &Params<T>,
    grads: &mut [Vec<T>],
    s: &UnitSaved<T>,
    dy: Vec<T>,
) -> Vec<T> {
    let v = &p.values;
    let dy = match (&s.pre_act, u.cb.act) {
        (Some(pre), Some(a)) => pre
            .iter()
            .zip(&dy)
            .map(|(&x, &d)| layers::act_grad(a, x, d))
            .collect(),
        _ => dy,
    };
    let (dgamma, dbeta) = pair_mut(grads, u.gamma, u.beta);
    let dz = layers::bn_train_backward(&s.bn, &v[u.gamma], &dy, dgamma, dbeta);
    u.conv.backward(&v[u.w], &s.input, &dz, &mut grads[u.w])
}

/// Two distinct elements of a slice, mutably.
fn pair_mut<V>(v: &mut [V], a: usize, b: usize) -> (&mut V, &mut V) {
    assert!(a < b, "a layer's tensors come in Model::params order");
    let (lo, hi) = v.split_at_mut(b);
    (&mut lo[a], &mut hi[0])
}

/// Four distinct elements in increasing order, mutably.
fn four_mut<V>(v: &mut [V], i: [usize; 4]) -> [&mut V; 4] {
    let (a, rest) = v.split_at_mut(i[1]);
    let (b, rest) = rest.split_at_mut(i[2] - i[1]);
    let (c, d) = rest.split_at_mut(i[3] - i[2]);
    [&mut a[i[0]], &mut b[0], &mut c[0], &mut d[0]]
}

/// NCHW → NHWC for a batch of `n` images of `c` channels.
fn nchw_to_nhwc<T: Real>(x: &[T], n: usize, c: usize) -> Vec<T> {
    let hw = x.len() / (n * c).max(1);
    let mut out = vec![T::ZERO; x.len()];
    for img in 0..n {
        for ch in 0..c {
            for px in 0..hw {
                out[(img * hw + px) * c + ch] = x[(img * c + ch) * hw + px];
            }
        }
    }
    out
}

/// One training step of `model`: forward in train mode on `input` (NCHW,
/// `batch` images at the model's resolution), the loss against `target`, and
/// the gradient of every trainable tensor. BN running statistics in `params`
/// are updated; no weight is changed (the optimizer does that).
pub fn step<T: Real>(
    model: &Model,
    params: &mut Params<T>,
    input: &[T],
    batch: usize,
    target: Target<T>,
    cfg: &StepConfig,
    rng: &mut Rng,
) -> Result<StepOutput<T>, Error> {
    let classes = check_step(model, input, batch, &target)?;
    let m = Some(cfg.bn_momentum);
    let blocks: Vec<&Block> = model.blocks().collect();
    let total = blocks.len();
    let frozen = |b: Option<&Block>| match (cfg.frozen, b) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(k), Some(b)) => b.stage < k,
    };
    let bn_of = |b: Option<&Block>| if frozen(b) { None } else { m };

    // Forward.
    let stem = unit(params, None, &model.stem, Layer::StemConv, Layer::StemBn);
    let (mut x, stem_saved) =
        unit_forward(&stem, params, nchw_to_nhwc(input, batch, 3), bn_of(None));
    let mut saved: Vec<BlockSaved<T>> = Vec::with_capacity(total);
    let mut units = Vec::with_capacity(total);
    for &b in &blocks {
        let u = block_units(params, b);
        let rate = cfg
            .drop_path
            .map_or(b.drop_path, |r| r * b.id as f64 / total as f64);
        let (out, s) = block_forward(&u, b, params, x, batch, rate, bn_of(Some(b)), rng);
        x = out;
        saved.push(s);
        units.push(u);
    }
    let head = unit(params, None, &model.head, Layer::HeadConv, Layer::HeadBn);
    let (h, head_saved) = unit_forward(&head, params, x, m);
    let features = model.head.bn.channels;
    let hw = h.len() / (batch * features);
    let pooled = layers::pool(&h, batch, features);
    let p = cfg.dropout.unwrap_or(model.dropout);
    let dropout: Option<Vec<T>> = (p > 0.0).then(|| keep_mask(rng, pooled.len(), p));
    let dropped: Vec<T> = match &dropout {
        Some(mask) => pooled.iter().zip(mask).map(|(&v, &k)| v * k).collect(),
        None => pooled,
    };
    let cw = params.at(None, Layer::Classifier, Which::Weight);
    let cbias = params.at(None, Layer::Classifier, Which::Bias);
    let logits = layers::linear(&params.values[cw], &params.values[cbias], &dropped);
    let (loss, dlogits) = layers::cross_entropy(&logits, classes, target, cfg.label_smoothing);

    // Backward.
    let mut grads: Vec<Vec<T>> = params
        .params
        .iter()
        .map(|p| {
            if p.trainable {
                vec![T::ZERO; p.numel()]
            } else {
                vec![]
            }
        })
        .collect();
    let (dw, db) = pair_mut(&mut grads, cw, cbias);
    let mut dpooled = layers::linear_backward(&params.values[cw], &dropped, &dlogits, dw, db);
    if let Some(mask) = &dropout {
        dpooled.iter_mut().zip(mask).for_each(|(d, &k)| *d *= k);
    }
    let dh = layers::pool_backward(&dpooled, batch, features, hw);
    let mut dx = unit_backward(&head, params, &mut grads, &head_saved, dh);
    for ((b, s), u) in blocks.iter().zip(&saved).zip(&units).rev() {
        if frozen(Some(b)) {
            break;
        }
        dx = block_backward(u, b, s, params, &mut grads, dx, batch);
    }
    if !frozen(None) {
        unit_backward(&stem, params, &mut grads, &stem_saved, dx);
    }
    if cfg.frozen.is_some() {
        // No gradient for the frozen tensors: the optimizer leaves them alone.
        for (g, p) in grads.iter_mut().zip(&params.params) {
            let b = p.key.block.and_then(|(stage, index, _)| {
                blocks
                    .iter()
                    .find(|b| b.stage == stage && b.index == index)
                    .copied()
            });
            let in_stem = matches!(p.key.layer, Layer::StemConv | Layer::StemBn);
            if (in_stem && frozen(None)) || (b.is_some() && frozen(b)) {
                *g = vec![];
            }
        }
    }
    Ok(StepOutput {
        loss,
        logits,
        grads,
    })
}

/// What [`step`] refuses: an input of the wrong size, a model without a
/// classifier, a target that does not match the batch. Returns the classes.
fn check_step<T: Real>(
    model: &Model,
    input: &[T],
    batch: usize,
    target: &Target<T>,
) -> Result<usize, Error> {
    let res = model.resolution;
    if input.len() != batch * 3 * res * res || batch == 0 {
        return Err(Error::InputSize {
            batch,
            res,
            expected: batch * 3 * res * res,
            got: input.len(),
        });
    }
    if !model.features.is_empty() {
        return Err(Error::TrainNeedsClassifier {
            model: model.name.clone(),
            why: "it ends at feature levels",
        });
    }
    crate::check_convs(model)?;
    let Some(classifier) = &model.classifier else {
        return Err(Error::TrainNeedsClassifier {
            model: model.name.clone(),
            why: "it has classes = 0",
        });
    };
    let classes = classifier.out_features;
    match target {
        Target::Labels(l) => {
            if l.len() != batch {
                return Err(Error::TargetSize {
                    expected: batch,
                    got: l.len(),
                    what: "labels",
                });
            }
            if let Some((i, &l)) = l.iter().enumerate().find(|(_, &l)| l >= classes) {
                return Err(Error::LabelOutOfRange {
                    image: i,
                    label: l,
                    classes,
                });
            }
        }
        Target::Soft(t) if t.len() != batch * classes => {
            return Err(Error::TargetSize {
                expected: batch * classes,
                got: t.len(),
                what: "soft-target values",
            });
        }
        Target::Soft(_) => {}
    }
    Ok(classes)
}

/// `n` draws: `1/keep` with probability `keep = 1 − rate`, else 0 (dropout's
/// and drop path's scaling).
fn keep_mask<T: Real>(rng: &mut Rng, n: usize, rate: f64) -> Vec<T> {
    let keep = 1.0 - rate;
    (0..n)
        .map(|_| {
            if rng.bernoulli(keep) {
                T::from_f64(1.0 / keep)
            } else {
                T::ZERO
            }
        })
        .collect()
}

/// The tensor indices of one block's units and SE.
struct BlockUnits<'m> {
    expand: Option<Unit<'m>>,
    conv: Unit<'m>,
    se: Option<SeIdx>,
    project: Option<Unit<'m>>,
}

fn block_units<'m, T: Real>(params: &Params<T>, b: &'m Block) -> BlockUnits<'m> {
    BlockUnits {
        expand: b
            .expand
            .as_ref()
            .map(|cb| unit(params, Some(b), cb, Layer::ExpandConv, Layer::ExpandBn)),
        conv: unit(params, Some(b), &b.conv, Layer::Conv, Layer::ConvBn),
        se: b.se.as_ref().map(|_| SeIdx {
            rw: params.at(Some(b), Layer::SeReduce, Which::Weight),
            rb: params.at(Some(b), Layer::SeReduce, Which::Bias),
            ew: params.at(Some(b), Layer::SeExpand, Which::Weight),
            eb: params.at(Some(b), Layer::SeExpand, Which::Bias),
        }),
        project: b
            .project
            .as_ref()
            .map(|cb| unit(params, Some(b), cb, Layer::ProjectConv, Layer::ProjectBn)),
    }
}

fn se_params<'v, T>(v: &'v [Vec<T>], i: &SeIdx) -> SeParams<'v, T> {
    SeParams {
        reduce_w: &v[i.rw],
        reduce_b: &v[i.rb],
        expand_w: &v[i.ew],
        expand_b: &v[i.eb],
    }
}

/// One block in train mode: expansion, kxk conv, SE, projection, then the
/// residual, its branch dropped per image at `rate` (drop path).
#[allow(clippy::too_many_arguments)]
fn block_forward<T: Real>(
    u: &BlockUnits,
    b: &Block,
    params: &mut Params<T>,
    x: Vec<T>,
    batch: usize,
    rate: f64,
    m: Option<f64>,
    rng: &mut Rng,
) -> (Vec<T>, BlockSaved<T>) {
    let skip = b.residual.then(|| x.clone());
    let mut h = x;
    let expand_saved = u.expand.as_ref().map(|u| {
        let (out, s) = unit_forward(u, params, std::mem::take(&mut h), m);
        h = out;
        s
    });
    let (out, conv_saved) = unit_forward(&u.conv, params, h, m);
    h = out;
    let se_saved = match (&u.se, &b.se) {
        (Some(i), Some(se)) => {
            let sp = se_params(&params.values, i);
            let (out, s) = layers::se_forward(&sp, se.act, &h, batch);
            Some((std::mem::replace(&mut h, out), s))
        }
        _ => None,
    };
    let project_saved = u.project.as_ref().map(|u| {
        let (out, s) = unit_forward(u, params, std::mem::take(&mut h), m);
        h = out;
        s
    });
    let mut drop_scale = None;
    if let Some(skip) = skip {
        if rate > 0.0 {
            let scale: Vec<T> = keep_mask(rng, batch, rate);
            let per = h.len() / batch;
            for (img, hi) in h.chunks_exact_mut(per).enumerate() {
                hi.iter_mut().for_each(|v| *v *= scale[img]);
            }
            drop_scale = Some(scale);
        }
        for (v, &r) in h.iter_mut().zip(&skip) {
            *v += r;
        }
    }
    let saved = BlockSaved {
        expand: expand_saved,
        conv: conv_saved,
        se: se_saved,
        project: project_saved,
        drop_scale,
    };
    (h, saved)
}

/// One block's backward: the gradient of its input from its output's `dx`.
fn block_backward<T: Real>(
    u: &BlockUnits,
    b: &Block,
    s: &BlockSaved<T>,
    params: &Params<T>,
    grads: &mut [Vec<T>],
    dx: Vec<T>,
    batch: usize,
) -> Vec<T> {
    let dskip = b.residual.then(|| dx.clone());
    let mut dh = dx;
    if let Some(scale) = &s.drop_scale {
        let per = dh.len() / batch;
        for (img, d) in dh.chunks_exact_mut(per).enumerate() {
            d.iter_mut().for_each(|v| *v *= scale[img]);
        }
    }
    if let (Some(u), Some(ps)) = (&u.project, &s.project) {
        dh = unit_backward(u, params, grads, ps, dh);
    }
    if let (Some(i), Some((se_in, ss)), Some(se)) = (&u.se, &s.se, &b.se) {
        let sp = se_params(&params.values, i);
        let [rw, rb, ew, eb] = four_mut(grads, [i.rw, i.rb, i.ew, i.eb]);
        let g = SeGrads {
            reduce_w: rw,
            reduce_b: rb,
            expand_w: ew,
            expand_b: eb,
        };
        dh = layers::se_backward(&sp, se.act, ss, se_in, batch, &dh, g);
    }
    dh = unit_backward(&u.conv, params, grads, &s.conv, dh);
    if let (Some(u), Some(es)) = (&u.expand, &s.expand) {
        dh = unit_backward(u, params, grads, es, dh);
    }
    if let Some(dskip) = dskip {
        dh.iter_mut().zip(dskip).for_each(|(d, s)| *d += s);
    }
    dh
}

#[cfg(test)]
mod tests;
