//! The training step as data: every dispatch of forward (train mode) and
//! backward with its operands' offsets, and the arena that holds every tensor
//! of the step. Pure (no device), so its invariants are unit-tested.
//!
//! Layouts: maps are NHWC (`[rows, C]`, `rows = N·H·W`) as the reference's
//! training layers; parameters are one flat f32 buffer in `Model::params` order
//! (PyTorch layouts, BN unfolded, running statistics included), gradients one
//! flat buffer of the same layout (running statistics' entries unused).
//!
//! Memory: every tensor the step computes gets its own range of the arena
//! (no reuse across forward and backward yet: a liveness plan is the training
//! plan's job). What the backward needs is saved, not recomputed, except BN's
//! normalized input and pre-activation, which the backward kernels recompute
//! from the conv output and the two per-channel statistics (one map saved per
//! unit instead of three).

use std::collections::HashMap;

use effc_ir::{Block, ConvBn, Layer, Model, Param, ParamKey, Tensor as Which};
use effc_wgsl::train::{act, words, Kind, NONE};

/// One dispatch: a kernel kind over `n` items with its uniform words.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub kind: Kind,
    /// What it computes, for messages (`blocks.1.0.conv bn_stats`).
    pub label: String,
    pub n: u32,
    pub words: Vec<u32>,
}

/// A mask the host draws each step, in the reference's draw order.
#[derive(Clone, Debug, PartialEq)]
pub struct MaskSlot {
    /// Arena offset of its values.
    pub offset: usize,
    pub count: usize,
    /// The drop rate; kept values are `1/(1 − rate)`.
    pub rate: f64,
}

/// A training step of one model at one batch size.
#[derive(Clone, Debug)]
pub struct TrainPlan {
    pub model: String,
    pub batch: usize,
    pub classes: usize,
    pub params: Vec<Param>,
    /// Offset of each tensor in the flat parameter (and gradient) buffer.
    pub offsets: Vec<usize>,
    /// Elements of the flat parameter buffer.
    pub param_len: usize,
    /// Elements of the arena.
    pub arena_len: usize,
    /// Arena offsets: the NHWC input, the `[batch, classes]` target
    /// distribution, the logits, and the per-image losses.
    pub input: usize,
    pub target: usize,
    pub logits: usize,
    pub loss: usize,
    /// Drop-path scales (one per image per block that drops) and the dropout
    /// mask, in the order the reference draws them.
    pub masks: Vec<MaskSlot>,
    pub forward: Vec<Dispatch>,
    pub backward: Vec<Dispatch>,
}

/// Why a model cannot be trained by this path.
#[derive(Clone, Debug, PartialEq)]
pub struct Unsupported(pub String);

/// The settings of the step the plan depends on (as the reference's `StepConfig`).
#[derive(Clone, Debug, PartialEq)]
pub struct PlanConfig {
    pub bn_momentum: f64,
    /// Dropout before the classifier; `None`: the model's.
    pub dropout: Option<f64>,
    /// Drop-path rate (block `j` of `N` uses `rate·j/N`); `None`: the model's.
    pub drop_path: Option<f64>,
}

struct Unit {
    /// Input, conv output, statistics, output (arena).
    x: usize,
    z: usize,
    mean: usize,
    istd: usize,
    /// Parameter offsets.
    w: usize,
    gamma: usize,
    beta: usize,
    rows: usize,
    c: usize,
    act: u32,
    in_len: usize,
    name: String,
}

struct Se {
    input: usize,
    pooled: usize,
    reduced_pre: usize,
    reduced: usize,
    gate: usize,
    rw: usize,
    rb: usize,
    ew: usize,
    eb: usize,
    c: usize,
    r: usize,
    hw: usize,
    act: u32,
}

struct BlockSaved<'m> {
    block: &'m Block,
    expand: Option<Unit>,
    conv: Unit,
    se: Option<Se>,
    project: Option<Unit>,
    drop: Option<usize>,
    out_len: usize,
}

fn act_code(a: Option<effc_ir::Activation>) -> u32 {
    match a {
        None => act::NONE,
        Some(effc_ir::Activation::Swish) => act::SWISH,
        Some(effc_ir::Activation::Relu) => act::RELU,
        Some(effc_ir::Activation::Relu6) => act::RELU6,
    }
}

fn u(v: usize) -> u32 {
    u32::try_from(v).expect("offsets are checked to fit u32 when the plan is built")
}

struct Builder<'m> {
    model: &'m Model,
    batch: usize,
    index: HashMap<ParamKey, usize>,
    offsets: Vec<usize>,
    arena: usize,
    momentum: f64,
    forward: Vec<Dispatch>,
    backward: Vec<Dispatch>,
    masks: Vec<MaskSlot>,
}

impl<'m> Builder<'m> {
    fn alloc(&mut self, n: usize) -> usize {
        let at = self.arena;
        // Keep every tensor 16-byte aligned (no kernel needs it; it keeps
        // offsets readable in dumps).
        self.arena += n.div_ceil(4) * 4;
        at
    }

    fn param(&self, block: Option<&Block>, layer: Layer, tensor: Which) -> usize {
        let key = ParamKey {
            block: block.map(|b| (b.stage, b.index, b.id)),
            layer,
            tensor,
        };
        self.offsets[self.index[&key]]
    }

    fn push(fwd: &mut Vec<Dispatch>, kind: Kind, label: String, n: usize, f: &[(&str, u32)]) {
        fwd.push(Dispatch {
            kind,
            label,
            n: u(n),
            words: words(kind, u(n), f),
        });
    }

    fn fwd(&mut self, kind: Kind, label: String, n: usize, f: &[(&str, u32)]) {
        Self::push(&mut self.forward, kind, label, n, f);
    }

    fn bwd(&mut self, kind: Kind, label: String, n: usize, f: &[(&str, u32)]) {
        Self::push(&mut self.backward, kind, label, n, f);
    }

    /// Conv, BN on batch statistics (and the running update), activation.
    fn unit_forward(
        &mut self,
        name: String,
        b: Option<&Block>,
        cb: &ConvBn,
        conv: Layer,
        bn: Layer,
        x: usize,
    ) -> Result<(Unit, usize), Unsupported> {
        let g = &cb.conv;
        let n = self.batch;
        let rows = n * g.out_hw.0 * g.out_hw.1;
        let c = g.out_ch;
        let w = self.param(b, conv, Which::Weight);
        let z = self.alloc(rows * c);
        let geom = [
            ("ih", u(g.in_hw.0)),
            ("iw", u(g.in_hw.1)),
            ("oh", u(g.out_hw.0)),
            ("ow", u(g.out_hw.1)),
            ("k", u(g.kernel)),
            ("s", u(g.stride)),
            ("pt", u(g.pad.top)),
            ("pl", u(g.pad.left)),
        ];
        let io = [("x", u(x)), ("w", u(w)), ("y", u(z))];
        if g.is_depthwise() {
            let f: Vec<_> = geom
                .iter()
                .chain(&io)
                .copied()
                .chain([("c", u(c))])
                .collect();
            self.fwd(Kind::DwFwd, format!("{name} conv"), rows * c, &f);
        } else if g.groups == 1 {
            let f: Vec<_> = geom
                .iter()
                .chain(&io)
                .copied()
                .chain([("ci", u(g.in_ch)), ("co", u(c))])
                .collect();
            self.fwd(Kind::ConvFwd, format!("{name} conv"), rows * c, &f);
        } else {
            return Err(Unsupported(format!(
                "{name}: a grouped convolution ({} groups) is neither dense nor depthwise",
                g.groups
            )));
        }
        let mean = self.alloc(c);
        let istd = self.alloc(c);
        let (gamma, beta) = (
            self.param(b, bn, Which::Weight),
            self.param(b, bn, Which::Bias),
        );
        let (rm, rv) = (
            self.param(b, bn, Which::RunningMean),
            self.param(b, bn, Which::RunningVar),
        );
        let unbias = rows as f64 / (rows.max(2) - 1) as f64;
        self.fwd(
            Kind::BnStats,
            format!("{name} bn_stats"),
            c,
            &[
                ("z", u(z)),
                ("rows", u(rows)),
                ("c", u(c)),
                ("mean", u(mean)),
                ("istd", u(istd)),
                ("rm", u(rm)),
                ("rv", u(rv)),
                ("eps", (cb.bn.eps as f32).to_bits()),
                ("momentum", (self.momentum as f32).to_bits()),
                ("unbias", (unbias as f32).to_bits()),
            ],
        );
        let out = self.alloc(rows * c);
        let a = act_code(cb.act);
        self.fwd(
            Kind::BnAct,
            format!("{name} bn_act"),
            rows * c,
            &[
                ("z", u(z)),
                ("y", u(out)),
                ("c", u(c)),
                ("mean", u(mean)),
                ("istd", u(istd)),
                ("gamma", u(gamma)),
                ("beta", u(beta)),
                ("act", a),
            ],
        );
        let unit = Unit {
            x,
            z,
            mean,
            istd,
            w,
            gamma,
            beta,
            rows,
            c,
            act: a,
            in_len: n * g.in_hw.0 * g.in_hw.1 * g.in_ch,
            name,
        };
        Ok((unit, out))
    }

    /// The unit's backward from its output's gradient `dy`: γ, β and the conv
    /// weight's gradients, and (when `dx`) the input's gradient plus `add`.
    /// A block's squeeze-and-excitation in train mode: pool, reduce (keeping
    /// its pre-activation), expand to the sigmoid gate, gate the input; what
    /// the backward needs, and the gated output.
    fn se_forward(
        &mut self,
        b: &Block,
        name: &str,
        se: &effc_ir::SqueezeExcite,
        x: usize,
        hw: usize,
    ) -> (Se, usize) {
        let (c, r) = (se.channels, se.reduced);
        let pooled = self.alloc(self.batch * c);
        self.fwd(
            Kind::Pool,
            format!("{name}.se pool"),
            self.batch * c,
            &[("x", u(x)), ("y", u(pooled)), ("c", u(c)), ("hw", u(hw))],
        );
        let reduced_pre = self.alloc(self.batch * r);
        let reduced = self.alloc(self.batch * r);
        let rw = self.param(Some(b), Layer::SeReduce, Which::Weight);
        let rb = self.param(Some(b), Layer::SeReduce, Which::Bias);
        let ew = self.param(Some(b), Layer::SeExpand, Which::Weight);
        let eb = self.param(Some(b), Layer::SeExpand, Which::Bias);
        let a = act_code(Some(se.act));
        self.fwd(
            Kind::Linear,
            format!("{name}.se reduce"),
            self.batch * r,
            &[
                ("x", u(pooled)),
                ("w", u(rw)),
                ("b", u(rb)),
                ("y", u(reduced)),
                ("pre", u(reduced_pre)),
                ("fin", u(c)),
                ("fout", u(r)),
                ("act", a),
            ],
        );
        let gate = self.alloc(self.batch * c);
        self.fwd(
            Kind::Linear,
            format!("{name}.se expand"),
            self.batch * c,
            &[
                ("x", u(reduced)),
                ("w", u(ew)),
                ("b", u(eb)),
                ("y", u(gate)),
                ("pre", NONE),
                ("fin", u(r)),
                ("fout", u(c)),
                ("act", act::SIGMOID),
            ],
        );
        let y = self.alloc(self.batch * hw * c);
        self.fwd(
            Kind::SeMul,
            format!("{name}.se mul"),
            self.batch * hw * c,
            &[
                ("x", u(x)),
                ("gate", u(gate)),
                ("y", u(y)),
                ("c", u(c)),
                ("hw", u(hw)),
            ],
        );
        let s = Se {
            input: x,
            pooled,
            reduced_pre,
            reduced,
            gate,
            rw,
            rb,
            ew,
            eb,
            c,
            r,
            hw,
            act: a,
        };
        (s, y)
    }

    fn unit_backward(&mut self, un: &Unit, cb: &ConvBn, dy: usize, dx: bool, add: usize) -> usize {
        let (rows, c, name) = (un.rows, un.c, un.name.clone());
        let sums = self.alloc(2 * c);
        let bn = [
            ("z", u(un.z)),
            ("dy", u(dy)),
            ("mean", u(un.mean)),
            ("istd", u(un.istd)),
            ("gamma", u(un.gamma)),
            ("beta", u(un.beta)),
            ("sums", u(sums)),
            ("rows", u(rows)),
            ("c", u(c)),
            ("act", un.act),
        ];
        let f: Vec<_> = bn
            .iter()
            .copied()
            .chain([("dgamma", u(un.gamma)), ("dbeta", u(un.beta))])
            .collect();
        self.bwd(Kind::BnBwdSums, format!("{name} bn_bwd_sums"), c, &f);
        let dz = self.alloc(rows * c);
        let f: Vec<_> = bn.iter().copied().chain([("dz", u(dz))]).collect();
        self.bwd(Kind::BnBwdDz, format!("{name} bn_bwd_dz"), rows * c, &f);
        let g = &cb.conv;
        let geom = [
            ("ih", u(g.in_hw.0)),
            ("iw", u(g.in_hw.1)),
            ("oh", u(g.out_hw.0)),
            ("ow", u(g.out_hw.1)),
            ("k", u(g.kernel)),
            ("s", u(g.stride)),
            ("pt", u(g.pad.top)),
            ("pl", u(g.pad.left)),
        ];
        let chans: Vec<(&str, u32)> = if g.is_depthwise() {
            vec![("c", u(c))]
        } else {
            vec![("ci", u(g.in_ch)), ("co", u(c))]
        };
        let (kw, kx) = if g.is_depthwise() {
            (Kind::DwBwdW, Kind::DwBwdX)
        } else {
            (Kind::ConvBwdW, Kind::ConvBwdX)
        };
        let wlen = c * (g.in_ch / g.groups) * g.kernel * g.kernel;
        let f: Vec<_> = geom
            .iter()
            .chain(&chans)
            .copied()
            .chain([
                ("x", u(un.x)),
                ("dz", u(dz)),
                ("dw", u(un.w)),
                ("batch", u(self.batch)),
            ])
            .collect();
        self.bwd(kw, format!("{name} conv_bwd_w"), wlen, &f);
        if !dx {
            return NONE as usize;
        }
        let out = self.alloc(un.in_len);
        let f: Vec<_> = geom
            .iter()
            .chain(&chans)
            .copied()
            .chain([
                ("dz", u(dz)),
                ("w", u(un.w)),
                ("dx", u(out)),
                ("add", if add == NONE as usize { NONE } else { u(add) }),
            ])
            .collect();
        self.bwd(kx, format!("{name} conv_bwd_x"), un.in_len, &f);
        out
    }
}

/// What the head's forward leaves for the backward and the host.
struct Head {
    features: usize,
    hw: usize,
    dropped: usize,
    mask: Option<usize>,
    cw: usize,
    cb: usize,
    logits: usize,
    target: usize,
    dlogits: usize,
    loss: usize,
}

/// The training step of `model` at `batch` images.
pub fn plan(model: &Model, batch: usize, cfg: &PlanConfig) -> Result<TrainPlan, Unsupported> {
    if batch == 0 {
        return Err(Unsupported("the batch must be at least 1 image".into()));
    }
    if !model.features.is_empty() {
        return Err(Unsupported(format!(
            "model `{}` ends at feature levels; training needs a classifier",
            model.name
        )));
    }
    let Some(classifier) = &model.classifier else {
        return Err(Unsupported(format!(
            "model `{}` has classes = 0; training needs a classifier",
            model.name
        )));
    };
    let params = model.params();
    let mut offsets = Vec::with_capacity(params.len());
    let mut at = 0;
    for p in &params {
        offsets.push(at);
        at += p.numel();
    }
    let param_len = at;
    let index = params.iter().enumerate().map(|(i, p)| (p.key, i)).collect();
    let mut bld = Builder {
        model,
        batch,
        index,
        offsets,
        arena: 0,
        momentum: cfg.bn_momentum,
        forward: vec![],
        backward: vec![],
        masks: vec![],
    };
    let res = model.resolution;
    let input = bld.alloc(batch * 3 * res * res);
    let mb = Builder::unit_forward;

    // Forward.
    let (stem, mut x) = mb(
        &mut bld,
        "stem".into(),
        None,
        &model.stem,
        Layer::StemConv,
        Layer::StemBn,
        input,
    )?;
    let blocks: Vec<&Block> = model.blocks().collect();
    let mut saved = vec![];
    for &b in &blocks {
        let (s, out) = block_forward(&mut bld, b, blocks.len(), cfg, x)?;
        saved.push(s);
        x = out;
    }
    let (head, h) = mb(
        &mut bld,
        "head".into(),
        None,
        &model.head,
        Layer::HeadConv,
        Layer::HeadBn,
        x,
    )?;
    let classes = classifier.out_features;
    let hd = head_forward(&mut bld, cfg, classes, h);

    // Backward.
    let dh = head_backward(&mut bld, &hd, classes);
    let mut dx = bld.unit_backward(&head, &model.head, dh, true, NONE as usize);
    for s in saved.iter().rev() {
        dx = block_backward(&mut bld, s, dx);
    }
    bld.unit_backward(&stem, &model.stem, dx, false, NONE as usize);

    let arena_len = bld.arena;
    if arena_len > u32::MAX as usize || param_len > u32::MAX as usize {
        return Err(Unsupported(format!(
            "the step needs {arena_len} activation values and {param_len} parameters; offsets must fit 32 bits"
        )));
    }
    Ok(TrainPlan {
        model: model.name.clone(),
        batch,
        classes,
        offsets: bld.offsets,
        params,
        param_len,
        arena_len,
        input,
        target: hd.target,
        logits: hd.logits,
        loss: hd.loss,
        masks: bld.masks,
        forward: bld.forward,
        backward: bld.backward,
    })
}

/// One block's forward in train mode (expand, conv, SE, project, the
/// residual with its drop-path slot): what its backward needs, and its output.
fn block_forward<'m>(
    bld: &mut Builder<'m>,
    b: &'m Block,
    total: usize,
    cfg: &PlanConfig,
    input: usize,
) -> Result<(BlockSaved<'m>, usize), Unsupported> {
    let batch = bld.batch;
    let mb = Builder::unit_forward;
    let mut x = input;
    let name = b.path();
    let skip = x;
    let expand = match &b.expand {
        Some(cb) => {
            let (un, out) = mb(
                bld,
                format!("{name}.expand"),
                Some(b),
                cb,
                Layer::ExpandConv,
                Layer::ExpandBn,
                x,
            )?;
            x = out;
            Some(un)
        }
        None => None,
    };
    let (conv, out) = mb(
        bld,
        format!("{name}.{}", b.conv_name()),
        Some(b),
        &b.conv,
        Layer::Conv,
        Layer::ConvBn,
        x,
    )?;
    x = out;
    let (oh, ow) = b.conv.conv.out_hw;
    let hw = oh * ow;
    let se = match &b.se {
        Some(se) => {
            let (s, y) = bld.se_forward(b, &name, se, x, hw);
            x = y;
            Some(s)
        }
        None => None,
    };
    let project = match &b.project {
        Some(cb) => {
            let (un, out) = mb(
                bld,
                format!("{name}.project"),
                Some(b),
                cb,
                Layer::ProjectConv,
                Layer::ProjectBn,
                x,
            )?;
            x = out;
            Some(un)
        }
        None => None,
    };
    let out_len = batch * b.out_ch * hw;
    let mut drop = None;
    if b.residual {
        let rate = cfg
            .drop_path
            .map_or(b.drop_path, |r| r * b.id as f64 / total as f64);
        if rate > 0.0 {
            let slot = bld.alloc(batch);
            bld.masks.push(MaskSlot {
                offset: slot,
                count: batch,
                rate,
            });
            drop = Some(slot);
        }
        let y = bld.alloc(out_len);
        bld.fwd(
            Kind::Residual,
            format!("{name} residual"),
            out_len,
            &[
                ("h", u(x)),
                ("skip", u(skip)),
                ("y", u(y)),
                ("per", u(out_len / batch)),
                ("scale", drop.map_or(NONE, u)),
            ],
        );
        x = y;
    }
    let saved = BlockSaved {
        block: b,
        expand,
        conv,
        se,
        project,
        drop,
        out_len,
    };
    Ok((saved, x))
}

/// The head after its conv: pool, dropout (a mask slot), classifier, softmax
/// cross-entropy (the loss and its gradient in one kernel).
fn head_forward(bld: &mut Builder, cfg: &PlanConfig, classes: usize, h: usize) -> Head {
    let (model, batch) = (bld.model, bld.batch);
    let features = model.head.bn.channels;
    let hw = model.head.conv.out_hw.0 * model.head.conv.out_hw.1;
    let pooled = bld.alloc(batch * features);
    bld.fwd(
        Kind::Pool,
        "head pool".into(),
        batch * features,
        &[
            ("x", u(h)),
            ("y", u(pooled)),
            ("c", u(features)),
            ("hw", u(hw)),
        ],
    );
    let p = cfg.dropout.unwrap_or(model.dropout);
    let (dropped, mask) = if p > 0.0 {
        let mask = bld.alloc(batch * features);
        bld.masks.push(MaskSlot {
            offset: mask,
            count: batch * features,
            rate: p,
        });
        let y = bld.alloc(batch * features);
        bld.fwd(
            Kind::Mul,
            "dropout".into(),
            batch * features,
            &[("x", u(pooled)), ("m", u(mask)), ("y", u(y))],
        );
        (y, Some(mask))
    } else {
        (pooled, None)
    };
    let cw = bld.param(None, Layer::Classifier, Which::Weight);
    let cb = bld.param(None, Layer::Classifier, Which::Bias);
    let logits = bld.alloc(batch * classes);
    bld.fwd(
        Kind::Linear,
        "classifier".into(),
        batch * classes,
        &[
            ("x", u(dropped)),
            ("w", u(cw)),
            ("b", u(cb)),
            ("y", u(logits)),
            ("pre", NONE),
            ("fin", u(features)),
            ("fout", u(classes)),
            ("act", act::NONE),
        ],
    );
    let target = bld.alloc(batch * classes);
    let dlogits = bld.alloc(batch * classes);
    let loss = bld.alloc(batch);
    bld.fwd(
        Kind::Loss,
        "loss".into(),
        batch,
        &[
            ("logits", u(logits)),
            ("tgt", u(target)),
            ("dlogits", u(dlogits)),
            ("loss", u(loss)),
            ("classes", u(classes)),
            ("scale", (1.0 / batch as f32).to_bits()),
        ],
    );

    Head {
        features,
        hw,
        dropped,
        mask,
        cw,
        cb,
        logits,
        target,
        dlogits,
        loss,
    }
}

/// The classifier's and the pool's backward: the gradient of the head conv's
/// output.
fn head_backward(bld: &mut Builder, hd: &Head, classes: usize) -> usize {
    let batch = bld.batch;
    let Head {
        features,
        hw,
        dropped,
        mask,
        cw,
        cb,
        dlogits,
        ..
    } = *hd;
    let dpooled = bld.alloc(batch * features);
    bld.bwd(
        Kind::LinearBwd,
        "classifier bwd".into(),
        classes * features + classes + batch * features,
        &[
            ("x", u(dropped)),
            ("w", u(cw)),
            ("dy", u(dlogits)),
            ("dw", u(cw)),
            ("db", u(cb)),
            ("dx", u(dpooled)),
            ("rows", u(batch)),
            ("fin", u(features)),
            ("fout", u(classes)),
            ("epi", u32::from(mask.is_some())),
            ("aux", mask.map_or(NONE, u)),
            ("act", act::NONE),
        ],
    );
    let dh = bld.alloc(batch * hw * features);
    bld.bwd(
        Kind::PoolBwd,
        "head pool bwd".into(),
        batch * hw * features,
        &[
            ("dp", u(dpooled)),
            ("dx", u(dh)),
            ("c", u(features)),
            ("hw", u(hw)),
        ],
    );
    dh
}

fn block_backward(bld: &mut Builder, s: &BlockSaved, dout: usize) -> usize {
    let b = s.block;
    let name = b.path();
    let batch = bld.batch;
    let mut d = dout;
    if let Some(slot) = s.drop {
        let y = bld.alloc(s.out_len);
        bld.bwd(
            Kind::Residual,
            format!("{name} drop_path bwd"),
            s.out_len,
            &[
                ("h", u(dout)),
                ("skip", NONE),
                ("y", u(y)),
                ("per", u(s.out_len / batch)),
                ("scale", u(slot)),
            ],
        );
        d = y;
    }
    // The block's first unit adds the skip's gradient to its input's.
    let skip = if b.residual { dout } else { NONE as usize };
    if let (Some(un), Some(cb)) = (&s.project, &b.project) {
        d = bld.unit_backward(un, cb, d, true, NONE as usize);
    }
    if let Some(se) = &s.se {
        let (c, r, hw) = (se.c, se.r, se.hw);
        let dgate = bld.alloc(batch * c);
        bld.bwd(
            Kind::SeGate,
            format!("{name}.se gate bwd"),
            batch * c,
            &[
                ("dy", u(d)),
                ("x", u(se.input)),
                ("gate", u(se.gate)),
                ("out", u(dgate)),
                ("c", u(c)),
                ("hw", u(hw)),
            ],
        );
        let dreduced = bld.alloc(batch * r);
        bld.bwd(
            Kind::LinearBwd,
            format!("{name}.se expand bwd"),
            c * r + c + batch * r,
            &[
                ("x", u(se.reduced)),
                ("w", u(se.ew)),
                ("dy", u(dgate)),
                ("dw", u(se.ew)),
                ("db", u(se.eb)),
                ("dx", u(dreduced)),
                ("rows", u(batch)),
                ("fin", u(r)),
                ("fout", u(c)),
                ("epi", 2),
                ("aux", u(se.reduced_pre)),
                ("act", se.act),
            ],
        );
        let dpooled = bld.alloc(batch * c);
        bld.bwd(
            Kind::LinearBwd,
            format!("{name}.se reduce bwd"),
            r * c + r + batch * c,
            &[
                ("x", u(se.pooled)),
                ("w", u(se.rw)),
                ("dy", u(dreduced)),
                ("dw", u(se.rw)),
                ("db", u(se.rb)),
                ("dx", u(dpooled)),
                ("rows", u(batch)),
                ("fin", u(c)),
                ("fout", u(r)),
                ("epi", 0),
                ("aux", NONE),
                ("act", act::NONE),
            ],
        );
        let y = bld.alloc(batch * hw * c);
        bld.bwd(
            Kind::SeBwdX,
            format!("{name}.se bwd"),
            batch * hw * c,
            &[
                ("dy", u(d)),
                ("gate", u(se.gate)),
                ("dp", u(dpooled)),
                ("dx", u(y)),
                ("c", u(c)),
                ("hw", u(hw)),
            ],
        );
        d = y;
    }
    let conv_add = if s.expand.is_none() {
        skip
    } else {
        NONE as usize
    };
    d = bld.unit_backward(&s.conv, &b.conv, d, true, conv_add);
    if let (Some(un), Some(cb)) = (&s.expand, &b.expand) {
        d = bld.unit_backward(un, cb, d, true, skip);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use effc_ir::{Options, Spec};

    fn cfg() -> PlanConfig {
        PlanConfig {
            bn_momentum: 0.1,
            dropout: None,
            drop_path: None,
        }
    }

    fn field(d: &Dispatch, name: &str) -> u32 {
        let i = d.kind.fields().iter().position(|f| *f == name).unwrap();
        d.words[2 + i]
    }

    /// Every trainable tensor's gradient is written exactly once per step, by
    /// one dispatch covering it whole; running statistics get none.
    #[test]
    fn every_gradient_is_written_once() {
        for name in ["b0", "v2-b0", "lite0", "b0-pytorch"] {
            let m = Model::build(
                &Spec::builtin(name).unwrap(),
                &Options {
                    resolution: Some(64),
                    classes: Some(10),
                    ..Options::default()
                },
            )
            .unwrap();
            let p = plan(&m, 2, &cfg()).unwrap();
            let mut written = vec![0usize; p.param_len];
            for d in &p.backward {
                let mut mark = |at: u32, len: usize| {
                    for w in &mut written[at as usize..][..len] {
                        *w += 1;
                    }
                };
                match d.kind {
                    Kind::ConvBwdW | Kind::DwBwdW => mark(field(d, "dw"), d.n as usize),
                    Kind::BnBwdSums => {
                        mark(field(d, "dgamma"), d.n as usize);
                        mark(field(d, "dbeta"), d.n as usize);
                    }
                    Kind::LinearBwd => {
                        let (i, o) = (field(d, "fin") as usize, field(d, "fout") as usize);
                        mark(field(d, "dw"), i * o);
                        mark(field(d, "db"), o);
                    }
                    _ => {}
                }
            }
            for (param, &at) in p.params.iter().zip(&p.offsets) {
                let want = usize::from(param.trainable);
                assert!(
                    written[at..][..param.numel()].iter().all(|&w| w == want),
                    "{name}: {} written {:?} times",
                    param.name,
                    written[at..][..param.numel()].iter().max()
                );
            }
        }
    }

    #[test]
    fn masks_follow_the_reference_draw_order() {
        let m = Model::build(&Spec::builtin("b0").unwrap(), &Options::default()).unwrap();
        let c = PlanConfig {
            dropout: Some(0.2),
            drop_path: Some(0.2),
            ..cfg()
        };
        let p = plan(&m, 3, &c).unwrap();
        let blocks: Vec<_> = m.blocks().filter(|b| b.residual).collect();
        assert_eq!(p.masks.len(), blocks.len() + 1);
        for (slot, b) in p.masks.iter().zip(&blocks) {
            assert_eq!(slot.count, 3);
            assert!((slot.rate - 0.2 * b.id as f64 / m.blocks().count() as f64).abs() < 1e-12);
        }
        assert_eq!(p.masks.last().unwrap().count, 3 * 1280);
    }

    #[test]
    fn models_that_cannot_train_are_refused() {
        let spec = Spec::builtin("b0").unwrap();
        let m = Model::build(
            &spec,
            &Options {
                classes: Some(0),
                ..Options::default()
            },
        )
        .unwrap();
        let e = plan(&m, 1, &cfg()).unwrap_err();
        assert!(e.0.contains("classes = 0"), "{}", e.0);
        let m = Model::build(&spec, &Options::default()).unwrap();
        assert!(plan(&m, 0, &cfg()).is_err());
    }
}
