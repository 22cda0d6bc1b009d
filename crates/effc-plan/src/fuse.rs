//! The fusion pass: the IR becomes a list of fused kernels over NHWC tensors whose
//! channels are padded to a multiple of 4 (so every access is a `vec4`).
//!
//! Per block: MBConv with SE → expand, depthwise (+ SE pooling sums), SE MLP,
//! project (SE gate on its input, residual in its epilogue): 4 dispatches, 3 without
//! SE. Fused-MBConv → kxk conv (implicit GEMM), project: 2 dispatches (1 with e=1).
//! Stem: conv+BN+act. Head: 1x1+BN+act with the global pool in its epilogue, then
//! the classifier (or the pooled features when there are no classes).

use std::fmt;

use effc_ir::{Activation, Block, BlockKind, ConvBn, Model};
use serde::{Deserialize, Serialize};

use crate::layout::{ElemType, WeightLayout};
use crate::tune::{dw_key, gemm_key, Tuning};

/// Index into [`Plan::tensors`].
pub type TensorId = usize;

/// What a tensor holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TensorKind {
    /// The network input, NHWC, channels padded to 4.
    Input,
    /// An activation, NHWC, channels padded to 4.
    Activation,
    /// Partial sums for a global average pool: `[tiles][c4]` vec4 per image.
    PoolPartial,
    /// The SE gate (`[c4]` vec4 per image) followed by the SE hidden layer.
    Gate,
    /// The network output, `[n]` f32 per image (logits or pooled features).
    Output,
}

/// A tensor of the plan (sizes are per image; every buffer holds a batch).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TensorDesc {
    pub name: String,
    pub kind: TensorKind,
    pub h: usize,
    pub w: usize,
    /// Channels (real), and vec4s after padding.
    pub c: usize,
    pub c4: usize,
    /// Bytes per image.
    pub bytes: usize,
    /// The buffer it lives in (filled by the memory plan).
    pub slot: usize,
}

/// How a GEMM kernel reads its A operand (rows = output pixels, columns = reduction).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum ALoad {
    /// 1x1 conv: A is the input itself, `[pixels][cin4]`; optionally scaled per
    /// image and channel by an SE gate.
    Pointwise { gated: bool },
    /// kxk conv as an implicit GEMM: A is gathered from the input (im2col on the fly),
    /// reduction index `(ky·k + kx)·cin4·4 + ci`, zero outside the padded input.
    Conv {
        kernel: usize,
        stride: usize,
        pad_top: usize,
        pad_left: usize,
        in_h: usize,
        in_w: usize,
    },
}

/// What happens to a GEMM's result, in order: bias (folded BN), activation,
/// residual add, store, pooling sums.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Epilogue {
    pub act: Option<Activation>,
    pub residual: bool,
    /// The residual is the kernel's own input (`src`), not a separate binding
    /// (Fused-MBConv with e = 1: same shape in and out).
    pub residual_is_src: bool,
    /// Whether the result is written (the head only pools).
    pub store: bool,
    /// Whether per-tile sums for a global average pool are written.
    pub pool: bool,
}

/// A convolution as a tiled GEMM: `out[pixel][cout] = Σ_k A[pixel][k]·B[k][cout]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GemmOp {
    pub a: ALoad,
    pub out_h: usize,
    pub out_w: usize,
    /// Input channels, in vec4s.
    pub cin4: usize,
    /// Reduction length (a multiple of 4).
    pub k: usize,
    pub cout: usize,
    pub cout4: usize,
    pub epilogue: Epilogue,
    /// Output pixels per workgroup tile, and vec4 columns per tile.
    pub tile_m: usize,
    pub tile_n4: usize,
    /// Output pixels each invocation computes (register blocking).
    pub rows_per_thread: usize,
    /// Reduction chunk held in workgroup memory, in vec4s.
    pub tile_k4: usize,
}

impl GemmOp {
    pub fn m(&self) -> usize {
        self.out_h * self.out_w
    }
    pub fn tiles_m(&self) -> usize {
        self.m().div_ceil(self.tile_m)
    }
    pub fn k4(&self) -> usize {
        self.k / 4
    }
}

/// A depthwise kxk conv + bias + activation, with optional pooling sums.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DwOp {
    pub in_h: usize,
    pub in_w: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub c4: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub act: Option<Activation>,
    pub pool: bool,
    /// Tiling, from [`dw_tiles`].
    pub tiles: DwTiles,
}

impl DwOp {
    /// Runs per output row.
    pub fn runs_w(&self) -> usize {
        self.out_w.div_ceil(self.tiles.run)
    }

    /// Workgroup tiles per image (and partial pooling sums per channel).
    pub fn tiles(&self) -> usize {
        (self.out_h * self.runs_w()).div_ceil(self.tiles.tile_runs)
    }
}

/// The SE MLP of one block: pooled sums → reduce → act → expand → sigmoid → gate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeOp {
    pub c: usize,
    pub c4: usize,
    pub reduced: usize,
    /// Partial-sum tiles to add, and the pixel count to divide by.
    pub tiles: usize,
    pub hw: usize,
    pub act: Activation,
}

/// The classifier: pooled sums → mean → linear; or the pooled features (classes 0).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HeadOp {
    pub c: usize,
    pub c4: usize,
    pub tiles: usize,
    pub hw: usize,
    /// 0: write the pooled features.
    pub classes: usize,
}

/// What a kernel computes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Op {
    Gemm(GemmOp),
    Depthwise(DwOp),
    Se(SeOp),
    Classifier(HeadOp),
}

/// Which layers of the IR a kernel implements (for weight packing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Source {
    Stem,
    Expand(usize),
    /// The kxk conv of a block (depthwise or fused), by block id.
    Conv(usize),
    Se(usize),
    Project(usize),
    Head,
    Classifier,
}

/// A buffer a kernel binds: the packed weights, or a tensor.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Binding {
    /// The name the shader gives it.
    pub name: &'static str,
    /// `None`: the kernel's packed weights.
    pub tensor: Option<TensorId>,
    pub write: bool,
}

impl Binding {
    /// The kernel's packed weights (always binding 0).
    pub fn weights() -> Binding {
        Binding {
            name: "weights",
            tensor: None,
            write: false,
        }
    }
    /// A tensor the kernel reads.
    pub fn read(name: &'static str, tensor: TensorId) -> Binding {
        Binding {
            name,
            tensor: Some(tensor),
            write: false,
        }
    }
    /// A tensor the kernel writes.
    pub fn write(name: &'static str, tensor: TensorId) -> Binding {
        Binding {
            name,
            tensor: Some(tensor),
            write: true,
        }
    }
}

/// One fused kernel: one dispatch per forward.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Kernel {
    /// `stem`, `blocks.1.0.expand`, `blocks.1.0.dw`, `blocks.1.0.se`, `head`, ...
    pub name: String,
    /// The IR layers it implements, for the shader's header comment.
    pub layers: Vec<String>,
    pub source: Source,
    pub op: Op,
    /// Bindings in `@binding` order: weights first, then tensors read, then written.
    pub bindings: Vec<Binding>,
    /// Where each part of the packed weights lives ([`crate::pack`] writes by it,
    /// the shader reads by it).
    pub layout: WeightLayout,
    /// Packed weights, in elements (the layout's length, a multiple of 4).
    pub weights_len: usize,
    pub workgroup: [u32; 3],
    /// Workgroups per image in x and y; z is the batch.
    pub grid: [u32; 2],
    /// The shape key its tiles are tuned under ([`crate::tune`]), for the kernels
    /// that have tiles (GEMMs and depthwise convs).
    pub tune_key: Option<String>,
}

impl Kernel {
    /// The kind shown in reports and benchmarks.
    pub fn kind(&self) -> &'static str {
        match &self.op {
            Op::Gemm(g) => match (&g.a, self.source) {
                (_, Source::Stem) => "stem",
                (_, Source::Head) => "head",
                (ALoad::Conv { .. }, _) => "conv",
                (ALoad::Pointwise { .. }, _) => "pointwise",
            },
            Op::Depthwise(_) => "depthwise",
            Op::Se(_) => "se",
            Op::Classifier(_) => "classifier",
        }
    }

    pub fn tensors_read(&self) -> impl Iterator<Item = TensorId> + '_ {
        self.bindings
            .iter()
            .filter(|b| !b.write)
            .filter_map(|b| b.tensor)
    }

    pub fn tensors_written(&self) -> impl Iterator<Item = TensorId> + '_ {
        self.bindings
            .iter()
            .filter(|b| b.write)
            .filter_map(|b| b.tensor)
    }

    /// Floating-point operations for one image (2 per multiply-accumulate).
    pub fn flops(&self) -> u64 {
        match &self.op {
            Op::Gemm(g) => 2 * (g.m() * g.k * g.cout) as u64,
            Op::Depthwise(d) => 2 * (d.out_h * d.out_w * d.c4 * 4 * d.kernel * d.kernel) as u64,
            Op::Se(s) => 4 * (s.c * s.reduced) as u64,
            Op::Classifier(h) => 2 * (h.c * h.classes.max(1)) as u64,
        }
    }
}

/// The kernel plan of a model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub model: String,
    pub tensors: Vec<TensorDesc>,
    pub kernels: Vec<Kernel>,
    pub slots: Vec<crate::memory::Slot>,
    pub input: TensorId,
    pub output: TensorId,
    /// Real input channels and resolution (CHW).
    pub input_shape: [usize; 3],
    /// Output values per image.
    pub output_len: usize,
}

/// GEMM tiling: output pixels per workgroup tile, vec4 columns per tile, pixels
/// per invocation (register blocking), reduction vec4s per workgroup-memory step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GemmTiles {
    pub tile_m: usize,
    pub tile_n4: usize,
    pub rows: usize,
    pub tile_k4: usize,
}

/// The cost model for GEMM tiles. An invocation computes 4 to 8 output pixels of
/// one vec4 column (register blocking), and a workgroup is 4 or 8 invocations along
/// the pixels by 8 along the columns: 32 or 64 invocations, whole warps on GPUs and
/// whole SIMD rows on llvmpipe. Of those shapes, the one with the lowest cost: rows
/// computed (padding included), each costing 1 + 1/ROWS (fewer pixels per invocation
/// reuse each weight less), plus 8 per tile (its weight panel loaded again). So 14x14
/// maps get 28-pixel tiles and 7x7 and 28x28 maps 56-pixel tiles (7 pixels per
/// invocation) rather than padding to a power of two. Narrow outputs get narrow tiles
/// so that no invocation idles.
pub fn gemm_tiles(m: usize, n4: usize) -> GemmTiles {
    let cost = |rows: usize, lanes: usize| {
        let tile = rows * lanes;
        let tiles = m.div_ceil(tile);
        (tiles * tile) as f64 * (1.0 + 1.0 / rows as f64) + 8.0 * tiles as f64
    };
    // In order of preference where costs tie: more pixels per invocation, then more
    // invocations.
    let mut best = (8, 8);
    for rows in (4..=8).rev() {
        for lanes in [8, 4] {
            if cost(rows, lanes) < cost(best.0, best.1) {
                best = (rows, lanes);
            }
        }
    }
    let (rows, lanes) = best;
    let tile_n4 = if n4 <= 4 { 4 } else { 8 };
    GemmTiles {
        tile_m: rows * lanes,
        tile_n4,
        rows,
        tile_k4: 4,
    }
}

/// Depthwise tiling. Each invocation computes runs of `run` horizontally adjacent
/// output pixels of one channel vec4, so that the input pixels the runs share are
/// loaded once per row (a sliding window); `lanes_c4 * lanes_run` invocations per
/// workgroup (64), `tile_runs` runs per workgroup (2 per invocation, 8 pixels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DwTiles {
    pub run: usize,
    pub lanes_c4: usize,
    pub lanes_run: usize,
    pub tile_runs: usize,
}

/// The cost model for depthwise tiles: narrow layers trade channel lanes for run
/// lanes so that no invocation idles; runs are 4 pixels, or the row when narrower.
pub fn dw_tiles(c4: usize, out_w: usize) -> DwTiles {
    let lanes_c4 = c4.next_power_of_two().clamp(1, 16);
    let lanes_run = 64 / lanes_c4;
    DwTiles {
        run: out_w.clamp(1, 4),
        lanes_c4,
        lanes_run,
        tile_runs: lanes_run * 2,
    }
}

struct Builder<'t> {
    tensors: Vec<TensorDesc>,
    kernels: Vec<Kernel>,
    tuning: &'t Tuning,
}

fn c4(c: usize) -> usize {
    c.div_ceil(4)
}

impl Builder<'_> {
    fn tensor(&mut self, name: String, kind: TensorKind, h: usize, w: usize, c: usize) -> TensorId {
        let c4 = c4(c);
        self.tensors.push(TensorDesc {
            name,
            kind,
            h,
            w,
            c,
            c4,
            bytes: h * w * c4 * 16,
            slot: usize::MAX,
        });
        self.tensors.len() - 1
    }

    fn partial(&mut self, name: String, tiles: usize, c: usize) -> TensorId {
        self.tensor(name, TensorKind::PoolPartial, tiles, 1, c)
    }

    /// A GEMM kernel for a conv+BN(+act): pointwise when 1x1 stride 1, else implicit GEMM.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &mut self,
        name: String,
        layers: Vec<String>,
        source: Source,
        cb: &ConvBn,
        input: TensorId,
        gate: Option<TensorId>,
        residual: Option<TensorId>,
        out: Option<TensorId>,
        pool: Option<TensorId>,
    ) {
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
        let key = gemm_key(c, pool.is_some());
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
            ElemType::F32,
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
    let mut b = Builder {
        tensors: vec![],
        kernels: vec![],
        tuning,
    };
    let [cin, h, w] = model.input;
    let input = b.tensor("input".into(), TensorKind::Input, h, w, cin);
    let stem_out = {
        let o = model.stem.out_shape();
        b.tensor("stem".into(), TensorKind::Activation, o[1], o[2], o[0])
    };
    b.gemm(
        "stem".into(),
        conv_layers("stem", &model.stem),
        Source::Stem,
        &model.stem,
        input,
        None,
        None,
        Some(stem_out),
        None,
    );
    let mut x = stem_out;
    for blk in model.blocks() {
        x = block(&mut b, blk, x);
    }
    // Head: 1x1 conv + BN + act, pooled in the epilogue (the full map is never stored).
    let head = &model.head;
    let hw = head.conv.out_hw.0 * head.conv.out_hw.1;
    let head_tiles = b
        .tuning
        .gemm_tiles(&gemm_key(&head.conv, true), hw, c4(head.conv.out_ch));
    let tiles = hw.div_ceil(head_tiles.tile_m);
    let pooled = b.partial("head.pool".into(), tiles, head.conv.out_ch);
    let mut layers = conv_layers("head", head);
    layers.push("pool".into());
    b.gemm(
        "head".into(),
        layers,
        Source::Head,
        head,
        x,
        None,
        None,
        None,
        Some(pooled),
    );
    let classes = model.classifier.as_ref().map_or(0, |l| l.out_features);
    let out_len = if classes > 0 {
        classes
    } else {
        head.conv.out_ch
    };
    let output = b.tensor(
        if classes > 0 { "logits" } else { "features" }.into(),
        TensorKind::Output,
        1,
        1,
        out_len,
    );
    // The output is plain f32s, not vec4s.
    b.tensors[output].bytes = out_len * 4;
    let c = head.conv.out_ch;
    let op = HeadOp {
        c,
        c4: c4(c),
        tiles,
        hw,
        classes,
    };
    let threads = if classes > 0 { classes } else { c };
    let layout = if classes > 0 {
        WeightLayout::new(
            ElemType::F32,
            &[
                ("W", classes, op.c4 * 4, "weights [CLASSES][C4]"),
                ("BIAS", 1, classes, "bias [CLASSES]"),
            ],
        )
    } else {
        // A binding cannot be empty: one unused vec4.
        WeightLayout::new(ElemType::F32, &[("UNUSED", 1, 4, "unused")])
    };
    b.kernels.push(Kernel {
        name: "classifier".into(),
        layers: if classes > 0 {
            vec!["pool".into(), "classifier".into()]
        } else {
            vec!["pool".into()]
        },
        source: Source::Classifier,
        weights_len: layout.len(),
        layout,
        op: Op::Classifier(op),
        bindings: vec![
            Binding::weights(),
            Binding::read("pool", pooled),
            Binding::write("dst", output),
        ],
        workgroup: [64, 1, 1],
        grid: [threads.div_ceil(64) as u32, 1],
        tune_key: None,
    });
    let mut p = Plan {
        model: model.name.clone(),
        tensors: b.tensors,
        kernels: b.kernels,
        slots: vec![],
        input,
        output,
        input_shape: model.input,
        output_len: out_len,
    };
    crate::memory::assign(&mut p);
    p
}

/// A plan with a single pointwise GEMM kernel, `[m × k] · [k × n]` (m output pixels,
/// k input and n output channels): effc's own GEMM on a given problem, used as the
/// adapter's ceiling by `effc bench`. Its "input" and "output" are the GEMM's A and C.
pub fn gemm_probe(m: usize, k: usize, n: usize) -> Plan {
    let mut b = Builder {
        tensors: vec![],
        kernels: vec![],
        tuning: &Tuning::default(),
    };
    let side = (m as f64).sqrt() as usize;
    let (h, w) = if side * side == m {
        (side, side)
    } else {
        (1, m)
    };
    let a = b.tensor("a".into(), TensorKind::Input, h, w, k);
    let c = b.tensor("c".into(), TensorKind::Activation, h, w, n);
    let conv = effc_ir::Conv2d::new(k, n, 1, 1, 1, (h, w), effc_ir::PaddingMode::Same);
    let cb = ConvBn {
        bn: effc_ir::model::BatchNorm {
            channels: n,
            eps: 1e-3,
        },
        conv,
        act: None,
    };
    b.gemm(
        "gemm".into(),
        vec![format!("gemm {m}x{k}x{n}")],
        Source::Stem,
        &cb,
        a,
        None,
        None,
        Some(c),
        None,
    );
    let mut p = Plan {
        model: format!("gemm-{m}x{k}x{n}"),
        tensors: b.tensors,
        kernels: b.kernels,
        slots: vec![],
        input: a,
        output: c,
        input_shape: [k, h, w],
        output_len: n * m,
    };
    crate::memory::assign(&mut p);
    p
}

fn block(b: &mut Builder<'_>, blk: &Block, x: TensorId) -> TensorId {
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
        b.gemm(
            format!("{p}.expand"),
            conv_layers(&format!("{p}.expand"), e),
            Source::Expand(blk.id),
            e,
            cur,
            None,
            None,
            Some(t),
            None,
        );
        cur = t;
    }
    let conv = &blk.conv;
    let o = conv.out_shape();
    let hw = o[1] * o[2];
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
    let residual_here = last && blk.residual;
    let mut layers = conv_layers(&format!("{p}.{}", blk.conv_name()), conv);
    let partial = match blk.kind {
        BlockKind::MBConv => {
            let key = dw_key(&conv.conv);
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
                ElemType::F32,
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
        BlockKind::FusedMBConv => {
            let fused_tiles =
                b.tuning
                    .gemm_tiles(&gemm_key(&conv.conv, blk.se.is_some()), hw, c4(o[0]));
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
            b.gemm(
                format!("{p}.fused"),
                layers,
                Source::Conv(blk.id),
                conv,
                cur,
                None,
                residual_here.then_some(x),
                Some(conv_out),
                partial,
            );
            partial.map(|pt| (pt, tiles))
        }
    };
    cur = conv_out;
    let gate = match (&blk.se, partial) {
        (Some(se), Some((pt, tiles))) => {
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
                ElemType::F32,
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
            b.kernels.push(Kernel {
                name: format!("{p}.se"),
                layers: vec![
                    format!("{p}.se.reduce"),
                    se.act.name().to_string(),
                    format!("{p}.se.expand"),
                    "sigmoid".into(),
                ],
                source: Source::Se(blk.id),
                weights_len: layout.len(),
                layout,
                op: Op::Se(op),
                bindings: vec![
                    Binding::weights(),
                    Binding::read("pool", pt),
                    Binding::write("gate", g),
                ],
                workgroup: [64, 1, 1],
                grid: [1, 1],
                tune_key: None,
            });
            Some(g)
        }
        _ => None,
    };
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
        b.gemm(
            format!("{p}.project"),
            layers,
            Source::Project(blk.id),
            pr,
            cur,
            gate,
            blk.residual.then_some(x),
            Some(out),
            None,
        );
        cur = out;
    }
    cur
}

impl Plan {
    /// Dispatches per forward (one per kernel).
    pub fn dispatches(&self) -> usize {
        self.kernels.len()
    }

    /// Bytes of activation buffers for a batch.
    pub fn activation_bytes(&self, batch: usize) -> usize {
        self.slots.iter().map(|s| s.bytes * batch).sum()
    }

    /// Bytes of packed weights.
    pub fn weight_bytes(&self) -> usize {
        self.kernels.iter().map(|k| k.weights_len * 4).sum()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "kernel plan of {}: {} kernels, {} dispatches per forward, {} buffers",
            self.model,
            self.kernels.len(),
            self.dispatches(),
            self.slots.len()
        )?;
        writeln!(
            f,
            "{:<24} {:<11} {:>16} {:>12} {:>10}  implements",
            "kernel", "kind", "output", "workgroups", "weights"
        )?;
        for k in &self.kernels {
            let out = k.tensors_written().next().map(|t| {
                let t = &self.tensors[t];
                format!("{}x{}x{}", t.h, t.w, t.c)
            });
            writeln!(
                f,
                "{:<24} {:<11} {:>16} {:>12} {:>10}  {}",
                k.name,
                k.kind(),
                out.unwrap_or_default(),
                format!("{}x{}xN", k.grid[0], k.grid[1]),
                k.weights_len,
                k.layers.join(", ")
            )?;
        }
        writeln!(f, "buffers (bytes per image):")?;
        for (i, s) in self.slots.iter().enumerate() {
            let names: Vec<&str> = s
                .tensors
                .iter()
                .map(|t| self.tensors[*t].name.as_str())
                .collect();
            let shown = if names.len() > 6 {
                format!("{}, ... ({} tensors)", names[..6].join(", "), names.len())
            } else {
                names.join(", ")
            };
            writeln!(f, "  #{i:<2} {:>12}  {}", s.bytes, shown)?;
        }
        writeln!(
            f,
            "activations {} bytes per image in {} buffers; weights {} bytes",
            self.activation_bytes(1),
            self.slots.len(),
            self.weight_bytes()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_tiles_cover_every_output_with_whole_invocations() {
        for m in (1..=300).chain([784, 3136, 12544, 1 << 20]) {
            for n4 in [1, 3, 4, 5, 8, 30, 320] {
                let t = gemm_tiles(m, n4);
                assert_eq!(t.tile_m % t.rows, 0, "{m}x{n4}: {t:?}");
                let invocations = t.tile_n4 * t.tile_m / t.rows;
                assert!([16, 32, 64].contains(&invocations), "{m}x{n4}: {t:?}");
                // Padding: at most a fifth of the map, plus 16 rows.
                let padded = m.div_ceil(t.tile_m) * t.tile_m;
                assert!(padded <= m + m / 5 + 16, "{m}: {t:?}");
            }
        }
    }

    #[test]
    fn gemm_tiles_of_b0_maps() {
        // 112x112, 56x56, 28x28, 14x14, 7x7: no padding but at 7x7 (7 rows).
        let tiles: Vec<(usize, usize)> = [12544, 3136, 784, 196, 49]
            .iter()
            .map(|&m| gemm_tiles(m, 30))
            .map(|t| (t.tile_m, t.rows))
            .collect();
        assert_eq!(tiles, [(64, 8), (64, 8), (56, 7), (28, 7), (56, 7)]);
    }

    #[test]
    fn dw_tiles_fill_the_workgroup_and_rows() {
        for c4 in [1, 2, 3, 4, 6, 16, 17, 240] {
            for w in [1, 2, 3, 4, 7, 14, 112] {
                let t = dw_tiles(c4, w);
                assert_eq!(t.lanes_c4 * t.lanes_run, 64, "{c4} {w}: {t:?}");
                assert!(t.run >= 1 && t.run <= w.max(1), "{c4} {w}: {t:?}");
                assert!(t.lanes_c4 <= c4.next_power_of_two(), "{c4}: {t:?}");
            }
        }
    }

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
