//! The fusion pass: the IR becomes a list of fused kernels over NHWC tensors whose
//! channels are padded to a multiple of 4 (so every access is a `vec4`).
//!
//! Per block: MBConv with SE → expand, depthwise (+ SE pooling sums), SE MLP,
//! project (SE gate on its input, residual in its epilogue): 4 dispatches, 3 without
//! SE. Fused-MBConv → kxk conv (implicit GEMM), project: 2 dispatches (1 with e=1).
//! Stem: conv+BN+act. Head: 1x1+BN+act with the global pool in its epilogue, then
//! the classifier (or the embedding (the pooled head) when there are no classes).

use effc_ir::{Block, BlockKind, ConvBn, Model};

use crate::features::FeatureOutput;
use crate::layout::WeightLayout;
use crate::plan::{
    ALoad, Binding, ClassifierOp, DwOp, Epilogue, GemmOp, Kernel, Op, Plan, SeOp, Source,
    TensorDesc, TensorId, TensorKind,
};
use crate::precision::Precision;
use crate::tune::{dw_key, gemm_key, Tuning};
/// Invocations per workgroup of the SE and classifier kernels (one reduction each).
const REDUCE_WORKGROUP: u32 = 64;

/// A tensor before the memory plan has given it a buffer.
struct NewTensor {
    name: String,
    kind: TensorKind,
    h: usize,
    w: usize,
    c: usize,
    bytes: usize,
}

/// What [`Builder::gemm`] builds: a conv+BN(+act) and the tensors around it.
pub(crate) struct GemmArgs<'a> {
    pub(crate) name: String,
    /// The IR layers it implements.
    pub(crate) layers: Vec<String>,
    pub(crate) source: Source,
    pub(crate) cb: &'a ConvBn,
    pub(crate) input: TensorId,
    /// The SE gate applied to the input (a project after SE).
    pub(crate) gate: Option<TensorId>,
    /// Added in the epilogue (may be `input` itself).
    pub(crate) residual: Option<TensorId>,
    /// Written; `None` when the kernel only pools (the head).
    pub(crate) out: Option<TensorId>,
    /// Pooling partial sums written in the epilogue.
    pub(crate) pool: Option<TensorId>,
}

pub(crate) struct Builder<'t> {
    tensors: Vec<NewTensor>,
    kernels: Vec<Kernel>,
    tuning: &'t Tuning,
    /// A backbone's levels: their tensors get buffers of their own.
    features: Vec<FeatureOutput>,
    precision: Precision,
}

fn c4(c: usize) -> usize {
    c.div_ceil(4)
}

impl<'t> Builder<'t> {
    /// An f32 plan's builder with no kernels yet, no feature levels.
    pub(crate) fn new(tuning: &'t Tuning) -> Builder<'t> {
        Builder {
            tensors: vec![],
            kernels: vec![],
            tuning,
            features: vec![],
            precision: Precision::F32,
        }
    }

    pub(crate) fn tensor(
        &mut self,
        name: String,
        kind: TensorKind,
        h: usize,
        w: usize,
        c: usize,
    ) -> TensorId {
        self.tensors.push(NewTensor {
            name,
            kind,
            h,
            w,
            c,
            bytes: h * w * c4(c) * 4 * self.precision.tensor_elem(kind).bytes(),
        });
        TensorId(self.tensors.len() - 1)
    }

    /// The plan, once the memory plan has given every tensor its buffer.
    pub(crate) fn finish(
        self,
        model: String,
        input: TensorId,
        output: TensorId,
        input_shape: [usize; 3],
        output_len: usize,
    ) -> Plan {
        let precision = self.precision;
        let sizes: Vec<(TensorKind, usize)> =
            self.tensors.iter().map(|t| (t.kind, t.bytes)).collect();
        let keep: Vec<TensorId> = self.features.iter().map(|f| f.tensor).collect();
        let memory = crate::memory::assign_keeping(&sizes, &self.kernels, &keep);
        let tensors = self
            .tensors
            .into_iter()
            .zip(memory.slot_of)
            .map(|(t, slot)| TensorDesc {
                c4: c4(t.c),
                name: t.name,
                kind: t.kind,
                h: t.h,
                w: t.w,
                c: t.c,
                bytes: t.bytes,
                slot,
                elem: precision.tensor_elem(t.kind),
            })
            .collect();
        let plan = Plan {
            model,
            tensors,
            kernels: self.kernels,
            slots: memory.slots,
            input,
            output,
            input_shape,
            output_len,
            features: self.features,
            precision,
        };
        debug_assert_eq!(plan.validate(), Ok(()), "{}", plan.model);
        plan
    }

    /// A kernel that reduces the pooling partials `pool` into `dst` (the
    /// classifier, an SE gate): workgroups of [`REDUCE_WORKGROUP`] threads,
    /// `groups` of them, nothing to tune.
    #[allow(clippy::too_many_arguments)]
    fn push_reduction(
        &mut self,
        name: String,
        layers: Vec<String>,
        source: Source,
        (op, layout): (Op, WeightLayout),
        pool: TensorId,
        dst: (&'static str, TensorId),
        groups: u32,
    ) {
        self.kernels.push(Kernel {
            name,
            layers,
            source,
            weights_len: layout.len(),
            layout,
            op,
            bindings: vec![
                Binding::weights(),
                Binding::read("pool", pool),
                Binding::write(dst.0, dst.1),
            ],
            workgroup: [REDUCE_WORKGROUP, 1, 1],
            grid: [groups, 1],
            tune_key: None,
        });
    }

    fn partial(&mut self, name: String, tiles: usize, c: usize) -> TensorId {
        self.tensor(name, TensorKind::PoolPartial, tiles, 1, c)
    }

    /// A GEMM kernel for a conv+BN(+act): pointwise when 1x1 stride 1, else implicit GEMM.
    pub(crate) fn gemm(&mut self, g: GemmArgs<'_>) {
        let GemmArgs {
            name,
            layers,
            source,
            cb,
            input,
            gate,
            residual,
            out,
            pool,
        } = g;
        let c = &cb.conv;
        let cin4 = c4(c.in_ch);
        let pointwise = c.kernel == 1 && c.stride == 1 && c.pad == Default::default();
        let a = if pointwise {
            ALoad::Pointwise {
                gated: gate.is_some(),
            }
        } else {
            ALoad::Conv {
                kernel: c.kernel,
                stride: c.stride,
                pad_top: c.pad.top,
                pad_left: c.pad.left,
                in_h: c.in_hw.0,
                in_w: c.in_hw.1,
            }
        };
        let k = c.kernel * c.kernel * cin4 * 4;
        let key = gemm_key(c, pool.is_some(), self.precision);
        let tiles = self
            .tuning
            .gemm_tiles(&key, c.out_hw.0 * c.out_hw.1, c4(c.out_ch));
        let op = GemmOp {
            a,
            out_h: c.out_hw.0,
            out_w: c.out_hw.1,
            cin4,
            k,
            cout: c.out_ch,
            cout4: c4(c.out_ch),
            epilogue: Epilogue {
                act: cb.act,
                residual: residual.is_some(),
                residual_is_src: residual == Some(input),
                store: out.is_some(),
                pool: pool.is_some(),
            },
            tile_m: tiles.tile_m,
            tile_n4: tiles.tile_n4,
            rows_per_thread: tiles.rows,
            tile_k4: tiles.tile_k4,
        };
        let mut bindings = vec![Binding::weights(), Binding::read("src", input)];
        if let Some(g) = gate {
            bindings.push(Binding::read("gate", g));
        }
        if let Some(r) = residual.filter(|&r| r != input) {
            bindings.push(Binding::read("residual", r));
        }
        if let Some(o) = out {
            bindings.push(Binding::write("dst", o));
        }
        if let Some(p) = pool {
            bindings.push(Binding::write("pool", p));
        }
        let grid = [op.cout4.div_ceil(op.tile_n4) as u32, op.tiles_m() as u32];
        let workgroup = [
            op.tile_n4 as u32,
            (op.tile_m / op.rows_per_thread) as u32,
            1,
        ];
        let layout = WeightLayout::new(
            self.precision.elem(),
            &[
                (
                    "B",
                    k,
                    op.cout4 * 4,
                    "B operand [K4 * 4][N4] (folded conv weights)",
                ),
                ("BIAS", 1, op.cout4 * 4, "bias [N4] (folded BN)"),
            ],
        );
        self.kernels.push(Kernel {
            name,
            layers,
            source,
            op: Op::Gemm(op),
            bindings,
            weights_len: layout.len(),
            layout,
            workgroup,
            grid,
            tune_key: Some(key),
        });
    }
}

fn conv_layers(prefix: &str, cb: &ConvBn) -> Vec<String> {
    let mut v = vec![format!("{prefix}.conv"), format!("{prefix}.bn")];
    if let Some(a) = cb.act {
        v.push(a.name().to_string());
    }
    v
}

/// The fusion pass: the kernels and tensors of a model, with the memory plan applied;
/// tiles from the cost models.
pub fn plan(model: &Model) -> Plan {
    plan_tuned(model, &Tuning::default())
}

/// [`plan`], with the tiles `tuning` names for its shapes (measured on an adapter);
/// the cost models for the others.
pub fn plan_tuned(model: &Model, tuning: &Tuning) -> Plan {
    plan_with(model, tuning, Precision::F32)
}

/// [`plan`] at a precision: the cost model's tiles, weights and activations
/// stored as f16 or f32 (see [`crate::precision`]).
pub fn plan_at(model: &Model, precision: Precision) -> Plan {
    plan_with(model, &Tuning::default(), precision)
}

/// [`plan_tuned`] at a precision: weights and activations stored as f16 or f32
/// (see [`crate::precision`]).
pub fn plan_with(model: &Model, tuning: &Tuning, precision: Precision) -> Plan {
    let mut b = Builder {
        precision,
        ..Builder::new(tuning)
    };
    let [cin, h, w] = model.input;
    let input = b.tensor("input".into(), TensorKind::Input, h, w, cin);
    let stem_out = {
        let o = model.stem.out_shape();
        b.tensor("stem".into(), TensorKind::Activation, o[1], o[2], o[0])
    };
    b.gemm(GemmArgs {
        name: "stem".into(),
        layers: conv_layers("stem", &model.stem),
        source: Source::Stem,
        cb: &model.stem,
        input,
        gate: None,
        residual: None,
        out: Some(stem_out),
        pool: None,
    });
    let mut x = stem_out;
    let mut ends = vec![];
    for blk in model.blocks().filter(|blk| model.block_needed(blk.id)) {
        x = block(&mut b, blk, x);
        let t = &b.tensors[x.0];
        ends.push((blk.id, x, t.h, t.w));
    }
    if model.is_backbone() {
        // Nothing after the last level: no head, no classifier.
        b.features = crate::features::outputs(model, &ends);
        let len = b.features.iter().map(FeatureOutput::len).sum();
        return b.finish(model.name.clone(), input, x, model.input, len);
    }
    // Head: 1x1 conv + BN + act, pooled in the epilogue (the full map is never stored).
    let head = &model.head;
    let hw = head.conv.out_hw.0 * head.conv.out_hw.1;
    let head_tiles = b.tuning.gemm_tiles(
        &gemm_key(&head.conv, true, b.precision),
        hw,
        c4(head.conv.out_ch),
    );
    let tiles = hw.div_ceil(head_tiles.tile_m);
    let pooled = b.partial("head.pool".into(), tiles, head.conv.out_ch);
    let mut layers = conv_layers("head", head);
    layers.push("pool".into());
    b.gemm(GemmArgs {
        name: "head".into(),
        layers,
        source: Source::Head,
        cb: head,
        input: x,
        gate: None,
        residual: None,
        out: None,
        pool: Some(pooled),
    });
    let classes = model.classifier.as_ref().map_or(0, |l| l.out_features);
    let out_len = if classes > 0 {
        classes
    } else {
        head.conv.out_ch
    };
    let output = b.tensor(
        if classes > 0 { "logits" } else { "embedding" }.into(),
        TensorKind::Output,
        1,
        1,
        out_len,
    );
    // The output is plain f32s, not vec4s.
    b.tensors[output.0].bytes = out_len * 4;
    let c = head.conv.out_ch;
    let op = ClassifierOp {
        c,
        c4: c4(c),
        tiles,
        hw,
        classes,
    };
    let threads = if classes > 0 { classes } else { c };
    let layout = if classes > 0 {
        WeightLayout::new(
            b.precision.elem(),
            &[
                ("W", classes, op.c4 * 4, "weights [CLASSES][C4]"),
                ("BIAS", 1, classes, "bias [CLASSES]"),
            ],
        )
    } else {
        // A binding cannot be empty: one unused vec4.
        WeightLayout::new(b.precision.elem(), &[("UNUSED", 1, 4, "unused")])
    };
    b.push_reduction(
        "classifier".into(),
        if classes > 0 {
            vec!["pool".into(), "classifier".into()]
        } else {
            vec!["pool".into()]
        },
        Source::Classifier,
        (Op::Classifier(op), layout),
        pooled,
        ("dst", output),
        threads.div_ceil(REDUCE_WORKGROUP as usize) as u32,
    );
    b.finish(model.name.clone(), input, output, model.input, out_len)
}

/// One block's kernels: the 1x1 expansion, the kxk conv (depthwise, or a full
/// conv in Fused-MBConv) with the SE pooling sums in its epilogue, the SE MLP, and
/// the projection with the SE scale in its prologue and the residual in its
/// epilogue (or the residual on the kxk conv when there is no projection).
fn block(b: &mut Builder<'_>, blk: &Block, x: TensorId) -> TensorId {
    let p = blk.path();
    let mut cur = expand(b, blk, x);
    let conv = &blk.conv;
    let o = conv.out_shape();
    let last = blk.project.is_none();
    // The kxk conv; its output is the block output when there is no projection.
    let conv_out = b.tensor(
        if last {
            p.clone()
        } else {
            format!("{p}.{}", blk.conv_name())
        },
        TensorKind::Activation,
        o[1],
        o[2],
        o[0],
    );
    let partial = match blk.kind {
        BlockKind::MBConv => depthwise(b, blk, cur, conv_out),
        BlockKind::FusedMBConv => fused(b, blk, cur, x, conv_out),
    };
    cur = conv_out;
    let gate = match (&blk.se, partial) {
        (Some(se), Some((pt, tiles))) => Some(squeeze_excite(b, blk, se, pt, tiles)),
        _ => None,
    };
    project(b, blk, cur, x, gate)
}

/// The 1x1 expansion of an MBConv block with e ≠ 1; returns the block's kxk input.
fn expand(b: &mut Builder<'_>, blk: &Block, x: TensorId) -> TensorId {
    let p = blk.path();
    let mut cur = x;
    if let Some(e) = &blk.expand {
        let o = e.out_shape();
        let t = b.tensor(
            format!("{p}.expand"),
            TensorKind::Activation,
            o[1],
            o[2],
            o[0],
        );
        b.gemm(GemmArgs {
            name: format!("{p}.expand"),
            layers: conv_layers(&format!("{p}.expand"), e),
            source: Source::Expand(blk.id),
            cb: e,
            input: cur,
            gate: None,
            residual: None,
            out: Some(t),
            pool: None,
        });
        cur = t;
    }
    cur
}

/// MBConv's depthwise kernel, with the SE pooling partials when the block has SE:
/// returns them and their count (one per tile).
fn depthwise(
    b: &mut Builder<'_>,
    blk: &Block,
    cur: TensorId,
    conv_out: TensorId,
) -> Option<(TensorId, usize)> {
    let p = blk.path();
    let conv = &blk.conv;
    let o = conv.out_shape();
    let mut layers = conv_layers(&format!("{p}.{}", blk.conv_name()), conv);
    let key = dw_key(&conv.conv, b.precision);
    let dw = b.tuning.dw_tiles(&key, c4(o[0]), o[2]);
    let tiles = (o[1] * o[2].div_ceil(dw.run)).div_ceil(dw.tile_runs);
    let partial = blk
        .se
        .as_ref()
        .map(|_| b.partial(format!("{p}.se.pool"), tiles, o[0]));
    if partial.is_some() {
        layers.push(format!("{p}.se.pool"));
    }
    let c = &conv.conv;
    let op = DwOp {
        in_h: c.in_hw.0,
        in_w: c.in_hw.1,
        out_h: c.out_hw.0,
        out_w: c.out_hw.1,
        c4: c4(c.out_ch),
        kernel: c.kernel,
        stride: c.stride,
        pad_top: c.pad.top,
        pad_left: c.pad.left,
        act: conv.act,
        pool: partial.is_some(),
        tiles: dw,
    };
    let mut bindings = vec![
        Binding::weights(),
        Binding::read("src", cur),
        Binding::write("dst", conv_out),
    ];
    if let Some(pt) = partial {
        bindings.push(Binding::write("pool", pt));
    }
    debug_assert_eq!(op.tiles(), tiles);
    let grid = [op.c4.div_ceil(dw.lanes_c4) as u32, tiles as u32];
    let layout = WeightLayout::new(
        b.precision.elem(),
        &[
            (
                "TAPS",
                c.kernel * c.kernel,
                op.c4 * 4,
                "taps [KSIZE * KSIZE][C4] (folded)",
            ),
            ("BIAS", 1, op.c4 * 4, "bias [C4] (folded BN)"),
        ],
    );
    b.kernels.push(Kernel {
        name: format!("{p}.dw"),
        layers,
        source: Source::Conv(blk.id),
        weights_len: layout.len(),
        layout,
        op: Op::Depthwise(op),
        bindings,
        workgroup: [dw.lanes_c4 as u32, dw.lanes_run as u32, 1],
        grid,
        tune_key: Some(key),
    });
    partial.map(|pt| (pt, tiles))
}

/// Fused-MBConv's kxk conv as a GEMM, with the SE pooling partials and, when it is
/// the block's last conv, the residual.
fn fused(
    b: &mut Builder<'_>,
    blk: &Block,
    cur: TensorId,
    x: TensorId,
    conv_out: TensorId,
) -> Option<(TensorId, usize)> {
    let p = blk.path();
    let conv = &blk.conv;
    let o = conv.out_shape();
    let hw = o[1] * o[2];
    let residual_here = blk.project.is_none() && blk.residual;
    let mut layers = conv_layers(&format!("{p}.{}", blk.conv_name()), conv);
    let fused_tiles = b.tuning.gemm_tiles(
        &gemm_key(&conv.conv, blk.se.is_some(), b.precision),
        hw,
        c4(o[0]),
    );
    let tiles = hw.div_ceil(fused_tiles.tile_m);
    let partial = blk
        .se
        .as_ref()
        .map(|_| b.partial(format!("{p}.se.pool"), tiles, o[0]));
    if partial.is_some() {
        layers.push(format!("{p}.se.pool"));
    }
    if residual_here {
        layers.push(format!("{p}.add"));
    }
    b.gemm(GemmArgs {
        name: format!("{p}.fused"),
        layers,
        source: Source::Conv(blk.id),
        cb: conv,
        input: cur,
        gate: None,
        residual: residual_here.then_some(x),
        out: Some(conv_out),
        pool: partial,
    });
    partial.map(|pt| (pt, tiles))
}

/// The SE MLP over the pooling partials: the gate the projection's prologue scales by.
fn squeeze_excite(
    b: &mut Builder<'_>,
    blk: &Block,
    se: &effc_ir::SqueezeExcite,
    pt: TensorId,
    tiles: usize,
) -> TensorId {
    let p = blk.path();
    let o = blk.conv.out_shape();
    let hw = o[1] * o[2];
    let c = se.channels;
    let g = b.tensor(
        format!("{p}.se.gate"),
        TensorKind::Gate,
        1,
        1,
        4 * c4(c) + se.reduced,
    );
    let op = SeOp {
        c,
        c4: c4(c),
        reduced: se.reduced,
        tiles,
        hw,
        act: se.act,
    };
    let layout = WeightLayout::new(
        b.precision.elem(),
        &[
            ("W1", se.reduced, op.c4 * 4, "reduce weights [R][C4]"),
            (
                "W2",
                se.reduced,
                op.c4 * 4,
                "expand weights, transposed [R][C4]",
            ),
            ("B2", 1, op.c4 * 4, "expand bias [C4]"),
            ("B1", 1, se.reduced, "reduce bias [R4]"),
        ],
    );
    b.push_reduction(
        format!("{p}.se"),
        vec![
            format!("{p}.se.reduce"),
            se.act.name().to_string(),
            format!("{p}.se.expand"),
            "sigmoid".into(),
        ],
        Source::Se(blk.id),
        (Op::Se(op), layout),
        pt,
        ("gate", g),
        1,
    );
    g
}

/// The 1x1 projection (SE scale in the prologue, residual in the epilogue), if any;
/// returns the block's output.
fn project(
    b: &mut Builder<'_>,
    blk: &Block,
    mut cur: TensorId,
    x: TensorId,
    gate: Option<TensorId>,
) -> TensorId {
    let p = blk.path();
    if let Some(pr) = &blk.project {
        let o = pr.out_shape();
        let out = b.tensor(p.clone(), TensorKind::Activation, o[1], o[2], o[0]);
        let mut layers = Vec::new();
        if gate.is_some() {
            layers.push(format!("{p}.se.scale"));
        }
        layers.extend(conv_layers(&format!("{p}.project"), pr));
        if blk.residual {
            layers.push(format!("{p}.add"));
        }
        b.gemm(GemmArgs {
            name: format!("{p}.project"),
            layers,
            source: Source::Project(blk.id),
            cb: pr,
            input: cur,
            gate,
            residual: blk.residual.then_some(x),
            out: Some(out),
            pool: None,
        });
        cur = out;
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depthwise_tiles_match_the_pool_partials() {
        // The SE kernel sums one partial per depthwise tile: both must agree.
        let spec = effc_ir::Spec::builtin("b0").unwrap();
        let model = effc_ir::Model::build(&spec, &Default::default()).unwrap();
        let p = plan(&model);
        let mut seen = 0;
        for k in &p.kernels {
            if let Op::Depthwise(d) = &k.op {
                assert_eq!(k.grid[1] as usize, d.tiles(), "{}", k.name);
                if let Some(b) = k.bindings.iter().find(|b| b.name == "pool") {
                    assert_eq!(p.tensors[b.tensor.unwrap()].h, d.tiles(), "{}", k.name);
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, 16);
    }
}
