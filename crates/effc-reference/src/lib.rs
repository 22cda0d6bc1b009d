//! effc's CPU reference executor: the IR run in f32, the oracle that generated
//! kernels are checked against.
//!
//! It runs exactly the inference semantics of DESIGN.md §3 on an NCHW batch,
//! one image after the other, each layer parallel over output pixels (rayon):
//!
//! - convolutions are GEMMs (the `matrixmultiply` crate; kxk ones through an
//!   explicit patch matrix), depthwise convolutions direct loops, zero padding
//!   per side as the IR gives it (TF "same" or symmetric);
//! - batch norm is **not** folded into the weights: it is applied to each
//!   convolution's output as the per-channel affine map
//!   `y = x·s + t`, `s = γ/√(σ²+ε)`, `t = β − μ·s` (s and t computed in f64),
//!   which is how PyTorch evaluates BN in inference;
//! - the global pools, the squeeze-excitation MLP and the classifier accumulate
//!   in f64.
//!
//! Internally activations are HWC (channels innermost); inputs and every output
//! ([`Tensor`]) are NCHW, as PyTorch has them.

mod ops;
pub mod train;

use effc_ir::{Block, ConvBn, Layer, Model, ParamKey, Tensor as Which};
use effc_weights::Weights;

use ops::{ConvLayer, Epilogue, SqueezeExcite};

/// Where to read the network's activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tap {
    /// After the stem's conv, BN and activation: `[N, C, H, W]`.
    Stem,
    /// After block `id` (global index over all blocks): `[N, C, H, W]`.
    Block(usize),
    /// After the last block of stage `i`: `[N, C, H, W]`.
    Stage(usize),
    /// After the head's conv, BN and activation, before pooling: `[N, C, H, W]`.
    Head,
    /// The embedding (the pooled head): `[N, C]`.
    Embedding,
    /// The classifier's output: `[N, classes]`.
    Logits,
}

/// A dense f32 tensor, row-major (NCHW for maps).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// What the executor refuses.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error(
        "input has {got} values, but a batch of {batch} needs {expected} \
         ({batch} × 3 × {res} × {res}, NCHW)"
    )]
    InputSize {
        batch: usize,
        res: usize,
        expected: usize,
        got: usize,
    },
    #[error(
        "the weights (from `{source_name}`, checked against model `{weights_model}`) do not fit \
         model `{model}`: {}",
        .problems.join("; ")
    )]
    WeightsDontFit {
        model: String,
        weights_model: String,
        source_name: String,
        problems: Vec<String>,
    },
    #[error("model `{model}` has no {what}: {tap:?} does not exist (it has {count})")]
    NoSuchTap {
        model: String,
        tap: Tap,
        what: &'static str,
        count: usize,
    },
    #[error("model `{model}` has no feature levels requested (`features = [..]`, `--features`)")]
    NoFeatures { model: String },
    #[error("model `{model}` has no classifier (classes = 0): ask for Tap::Embedding")]
    NoClassifier { model: String },
    #[error("layer `{layer}` has {groups} groups: only dense and depthwise convolutions run")]
    Unsupported { layer: String, groups: usize },
    #[error("model `{model}` cannot be trained as a classifier: {why}")]
    TrainNeedsClassifier { model: String, why: &'static str },
    #[error("the batch has {expected} images (or values), but {got} {what} were given")]
    TargetSize {
        expected: usize,
        got: usize,
        what: &'static str,
    },
    #[error("image {image} of the batch has label {label}, but the model has {classes} classes (0..={})", .classes - 1)]
    LabelOutOfRange {
        image: usize,
        label: usize,
        classes: usize,
    },
}

#[derive(Clone, Debug)]
struct BlockExec {
    expand: Option<ConvLayer>,
    conv: ConvLayer,
    se: Option<SqueezeExcite>,
    project: Option<ConvLayer>,
    residual: bool,
    stage: usize,
}

/// The model with its weights, ready to run.
#[derive(Clone, Debug)]
pub struct Executor {
    model: Model,
    stem: ConvLayer,
    blocks: Vec<BlockExec>,
    head: ConvLayer,
    /// Weight `[classes, features]`, bias.
    classifier: Option<(Vec<f32>, Vec<f32>)>,
}

/// What an [`Executor`] allocates, in bytes, computed from the IR before anything
/// is: its weights, and the activations alive at once while it runs one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// The executor's own copy of every convolution's weights and BN's scale and
    /// shift, and the classifier's, as f32 (the checkpoint is not kept).
    pub weights: u64,
    /// The most activations alive at once for one image: its input in both
    /// layouts, then per layer what `forward` keeps (a block's input for the
    /// residual, the expanded map, the depthwise or fused output, the projected
    /// output), all f32. Images run one after the other.
    pub per_image: u64,
}

impl Memory {
    /// Bytes for a batch of `batch` images: the weights, one image's working
    /// set, and the batch's input and outputs (`out_per_image` values each).
    pub fn total(&self, batch: usize, out_per_image: usize) -> u64 {
        let io = (batch as u64)
            .saturating_mul(out_per_image as u64)
            .saturating_mul(4);
        self.weights
            .saturating_add(self.per_image)
            .saturating_add(io)
    }
}

/// What running `model` on the reference executor allocates (see [`Memory`]).
pub fn memory(model: &Model) -> Memory {
    let f32s = |n: usize| (n as u64).saturating_mul(4);
    let numel = |s: [usize; 3]| s[0].saturating_mul(s[1]).saturating_mul(s[2]);
    let cost = model.cost();
    let input = numel(model.input);
    let mut peak = 2 * input + numel(model.stem.out_shape());
    for b in model.blocks() {
        let expanded = b.expand.as_ref().map_or(0, |e| numel(e.out_shape()));
        let conv = numel(b.conv.out_shape());
        let project = b.project.as_ref().map_or(0, |p| numel(p.out_shape()));
        let live = numel(b.in_shape)
            .saturating_add(expanded.max(project))
            .saturating_add(conv);
        peak = peak.max(live);
    }
    let head = numel(model.head.out_shape());
    peak = peak.max(numel(model.blocks().last().map_or([0; 3], |b| b.out_shape)) + head);
    Memory {
        weights: f32s(cost.params as usize).saturating_add(f32s(cost.buffers as usize)),
        per_image: f32s(peak),
    }
}

/// Looks up the tensors of one layer, recording what is missing or wrongly sized.
struct Fetch<'a> {
    model: &'a Model,
    weights: &'a Weights,
    problems: Vec<String>,
}

impl Fetch<'_> {
    fn get(
        &mut self,
        block: Option<&Block>,
        layer: Layer,
        tensor: Which,
        numel: usize,
    ) -> Vec<f32> {
        let key = ParamKey {
            block: block.map(|b| (b.stage, b.index, b.id)),
            layer,
            tensor,
        };
        match self.weights.get(&key) {
            Some(v) if v.len() == numel => v.to_vec(),
            found => {
                let name = self
                    .model
                    .params()
                    .into_iter()
                    .find(|p| p.key == key)
                    .map_or_else(|| format!("{key:?}"), |p| p.name);
                self.problems.push(match found {
                    Some(v) => format!("`{name}` has {} values, needs {numel}", v.len()),
                    None => format!("`{name}` is missing"),
                });
                vec![0.0; numel]
            }
        }
    }

    fn conv_bn(&mut self, block: Option<&Block>, cb: &ConvBn, conv: Layer, bn: Layer) -> ConvLayer {
        let c = cb.bn.channels;
        let w = self.get(
            block,
            conv,
            Which::Weight,
            cb.conv.weight_shape().iter().product(),
        );
        let gamma = self.get(block, bn, Which::Weight, c);
        let beta = self.get(block, bn, Which::Bias, c);
        let mean = self.get(block, bn, Which::RunningMean, c);
        let var = self.get(block, bn, Which::RunningVar, c);
        let epilogue = Epilogue::new(&gamma, &beta, &mean, &var, cb.bn.eps, cb.act);
        ConvLayer::new(&cb.conv, &w, epilogue)
    }
}

fn check_groups(name: String, cb: &ConvBn) -> Result<(), Error> {
    let c = &cb.conv;
    if c.groups == 1 || c.is_depthwise() {
        Ok(())
    } else {
        Err(Error::Unsupported {
            layer: name,
            groups: c.groups,
        })
    }
}

/// Refuses a model with a convolution that is neither dense nor depthwise.
fn check_convs(model: &Model) -> Result<(), Error> {
    check_groups("stem".into(), &model.stem)?;
    check_groups("head".into(), &model.head)?;
    for b in model.blocks() {
        for (cb, part) in [
            (b.expand.as_ref(), "expand"),
            (Some(&b.conv), b.conv_name()),
            (b.project.as_ref(), "project"),
        ] {
            if let Some(cb) = cb {
                check_groups(format!("{}.{part}", b.path()), cb)?;
            }
        }
    }
    Ok(())
}

impl Executor {
    /// Prepares `model` with `weights` (made for this model, or one with the same
    /// tensors): lays the weights out for the kernels and computes BN's affine maps.
    pub fn new(model: &Model, weights: &Weights) -> Result<Executor, Error> {
        check_convs(model)?;
        let mut f = Fetch {
            model,
            weights,
            problems: vec![],
        };
        let stem = f.conv_bn(None, &model.stem, Layer::StemConv, Layer::StemBn);
        let mut blocks = vec![];
        for b in model.blocks() {
            let expand = b
                .expand
                .as_ref()
                .map(|cb| f.conv_bn(Some(b), cb, Layer::ExpandConv, Layer::ExpandBn));
            let conv = f.conv_bn(Some(b), &b.conv, Layer::Conv, Layer::ConvBn);
            let se = b.se.as_ref().map(|se| {
                let (c, r) = (se.channels, se.reduced);
                SqueezeExcite {
                    reduce_w: f.get(Some(b), Layer::SeReduce, Which::Weight, r * c),
                    reduce_b: f.get(Some(b), Layer::SeReduce, Which::Bias, r),
                    expand_w: f.get(Some(b), Layer::SeExpand, Which::Weight, c * r),
                    expand_b: f.get(Some(b), Layer::SeExpand, Which::Bias, c),
                    act: se.act,
                }
            });
            let project = b
                .project
                .as_ref()
                .map(|cb| f.conv_bn(Some(b), cb, Layer::ProjectConv, Layer::ProjectBn));
            blocks.push(BlockExec {
                expand,
                conv,
                se,
                project,
                residual: b.residual,
                stage: b.stage,
            });
        }
        let head = f.conv_bn(None, &model.head, Layer::HeadConv, Layer::HeadBn);
        let classifier = model.classifier.as_ref().map(|l| {
            (
                f.get(
                    None,
                    Layer::Classifier,
                    Which::Weight,
                    l.out_features * l.in_features,
                ),
                f.get(None, Layer::Classifier, Which::Bias, l.out_features),
            )
        });
        if !f.problems.is_empty() {
            return Err(Error::WeightsDontFit {
                model: model.name.clone(),
                weights_model: weights.model().to_string(),
                source_name: weights.source().display().to_string(),
                problems: f.problems,
            });
        }
        Ok(Executor {
            model: model.clone(),
            stem,
            blocks,
            head,
            classifier,
        })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The network's output for a batch of NCHW images: logits `[N, classes]`, or
    /// the embedding `[N, C]` when the model has no classifier.
    pub fn run(&self, input: &[f32], batch: usize) -> Result<Tensor, Error> {
        let tap = if self.classifier.is_some() {
            Tap::Logits
        } else {
            Tap::Embedding
        };
        self.run_until(input, batch, tap)
    }

    /// The requested feature levels (`Model::features`, in level order), one NCHW
    /// map `[N, C, H, W]` each, from one pass that stops at the last level's block.
    pub fn features(&self, input: &[f32], batch: usize) -> Result<Vec<Tensor>, Error> {
        if self.model.features.is_empty() {
            return Err(Error::NoFeatures {
                model: self.model.name.clone(),
            });
        }
        let taps: Vec<Tap> = self
            .model
            .features
            .iter()
            .map(|f| Tap::Block(f.block))
            .collect();
        self.run_taps(input, batch, &taps)
    }

    /// The activations at `tap`; the network runs only as far as needed.
    pub fn run_until(&self, input: &[f32], batch: usize, tap: Tap) -> Result<Tensor, Error> {
        let mut out = self.run_taps(input, batch, &[tap])?;
        Ok(out.pop().expect("run_taps returns one tensor per tap"))
    }

    /// The activations at each of `taps` (in that order), from one pass that
    /// stops after the last of them.
    pub fn run_taps(
        &self,
        input: &[f32],
        batch: usize,
        taps: &[Tap],
    ) -> Result<Vec<Tensor>, Error> {
        let res = self.model.resolution;
        let image_len = 3 * res * res;
        if input.len() != batch * image_len {
            return Err(Error::InputSize {
                batch,
                res,
                expected: batch * image_len,
                got: input.len(),
            });
        }
        let positions = taps
            .iter()
            .map(|&t| self.position(t))
            .collect::<Result<Vec<_>, _>>()?;
        let stop = positions.iter().copied().max().unwrap_or(0);
        let mut outs: Vec<Tensor> = taps
            .iter()
            .map(|&t| Tensor {
                shape: self.shape(t, batch),
                data: Vec::with_capacity(self.shape(t, batch).iter().product()),
            })
            .collect();
        for image in input.chunks_exact(image_len.max(1)).take(batch) {
            let x = chw_to_hwc(image, 3, res * res);
            self.forward(x, stop, &mut |pos, data, c| {
                for (o, _) in outs.iter_mut().zip(&positions).filter(|(_, &p)| p == pos) {
                    o.data.extend(hwc_to_chw(data, c));
                }
            });
        }
        Ok(outs)
    }

    /// Runs one HWC image up to position `stop`, handing each position's output
    /// (HWC data, channels) to `record`. Positions: stem 0, block `id` at
    /// `1 + id`, head, pooled, logits after the blocks.
    fn forward(&self, x: Vec<f32>, stop: usize, record: &mut dyn FnMut(usize, &[f32], usize)) {
        let n = self.blocks.len();
        let mut x = self.stem.forward(&x);
        record(0, &x, self.stem.geom.out_ch);
        for (id, b) in self.blocks.iter().enumerate() {
            if id + 1 > stop {
                return;
            }
            let input = x;
            let mut h = match &b.expand {
                Some(e) => b.conv.forward(&e.forward(&input)),
                None => b.conv.forward(&input),
            };
            if let Some(se) = &b.se {
                se.apply(&mut h);
            }
            if let Some(p) = &b.project {
                h = p.forward(&h);
            }
            if b.residual {
                for (v, &r) in h.iter_mut().zip(&input) {
                    *v += r;
                }
            }
            x = h;
            let c = b.project.as_ref().unwrap_or(&b.conv).geom.out_ch;
            record(id + 1, &x, c);
        }
        if n + 1 > stop {
            return;
        }
        let c = self.head.geom.out_ch;
        let h = self.head.forward(&x);
        record(n + 1, &h, c);
        if n + 2 > stop {
            return;
        }
        let pooled = ops::global_pool(&h, c);
        let as_f32: Vec<f32> = pooled.iter().map(|&v| v as f32).collect();
        record(n + 2, &as_f32, c);
        if let Some((w, bias)) = &self.classifier {
            if n + 3 <= stop {
                let logits: Vec<f32> = ops::linear(w, bias, &pooled)
                    .into_iter()
                    .map(|v| v as f32)
                    .collect();
                record(n + 3, &logits, bias.len());
            }
        }
    }

    fn position(&self, tap: Tap) -> Result<usize, Error> {
        let n = self.blocks.len();
        let no_such = |what, count| Error::NoSuchTap {
            model: self.model.name.clone(),
            tap,
            what,
            count,
        };
        match tap {
            Tap::Stem => Ok(0),
            Tap::Block(id) if id < n => Ok(id + 1),
            Tap::Block(_) => Err(no_such("such block", n)),
            Tap::Stage(s) => self
                .blocks
                .iter()
                .rposition(|b| b.stage == s)
                .map(|id| id + 1)
                .ok_or_else(|| no_such("such stage", self.model.stages.len())),
            Tap::Head => Ok(n + 1),
            Tap::Embedding => Ok(n + 2),
            Tap::Logits if self.classifier.is_some() => Ok(n + 3),
            Tap::Logits => Err(Error::NoClassifier {
                model: self.model.name.clone(),
            }),
        }
    }

    /// The shape of a tap's tensor (the tap known to exist).
    fn shape(&self, tap: Tap, batch: usize) -> Vec<usize> {
        let map = |l: &ConvLayer| {
            let (h, w) = l.geom.out_hw;
            vec![batch, l.geom.out_ch, h, w]
        };
        let block_out = |b: &BlockExec| map(b.project.as_ref().unwrap_or(&b.conv));
        match tap {
            Tap::Stem => map(&self.stem),
            Tap::Block(id) => block_out(&self.blocks[id]),
            Tap::Stage(s) => block_out(
                self.blocks
                    .iter()
                    .rfind(|b| b.stage == s)
                    .expect("position() checked that the stage exists"),
            ),
            Tap::Head => map(&self.head),
            Tap::Embedding => vec![batch, self.head.geom.out_ch],
            Tap::Logits => vec![
                batch,
                self.classifier
                    .as_ref()
                    .expect("position() checked that the classifier exists")
                    .1
                    .len(),
            ],
        }
    }
}

fn chw_to_hwc(x: &[f32], c: usize, hw: usize) -> Vec<f32> {
    let mut out = vec![0.0; c * hw];
    for ci in 0..c {
        for p in 0..hw {
            out[p * c + ci] = x[ci * hw + p];
        }
    }
    out
}

fn hwc_to_chw(x: &[f32], c: usize) -> Vec<f32> {
    let hw = x.len() / c.max(1);
    let mut out = vec![0.0; x.len()];
    for p in 0..hw {
        for ci in 0..c {
            out[ci * hw + p] = x[p * c + ci];
        }
    }
    out
}
