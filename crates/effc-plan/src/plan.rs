//! The kernel plan: its types. A [`Plan`] is plain data: the tensors (NHWC, channels
//! padded to a multiple of 4), the fused kernels in dispatch order with their
//! bindings, weight layouts, workgroups and grids, and the buffers ("slots") the
//! memory plan gave the tensors. [`crate::fuse`] builds it, [`crate::print`] prints
//! it, [`crate::validate`] states its invariants.

use std::ops::{Index, IndexMut};

use effc_ir::Activation;
use serde::{Deserialize, Serialize};

use crate::layout::{ElemType, WeightLayout};
use crate::precision::Precision;
use crate::tiles::DwTiles;

/// A tensor: an index into [`Plan::tensors`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TensorId(pub usize);

/// A buffer: an index into [`Plan::slots`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SlotId(pub usize);

impl TensorId {
    pub fn index(self) -> usize {
        self.0
    }
}

impl SlotId {
    pub fn index(self) -> usize {
        self.0
    }
}

impl Index<TensorId> for Vec<TensorDesc> {
    type Output = TensorDesc;
    fn index(&self, t: TensorId) -> &TensorDesc {
        &self[t.0]
    }
}

impl IndexMut<TensorId> for Vec<TensorDesc> {
    fn index_mut(&mut self, t: TensorId) -> &mut TensorDesc {
        &mut self[t.0]
    }
}

impl Index<SlotId> for Vec<Slot> {
    type Output = Slot;
    fn index(&self, s: SlotId) -> &Slot {
        &self[s.0]
    }
}

/// What a tensor holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TensorKind {
    /// The network input, NHWC, channels padded to 4.
    Input,
    /// An activation, NHWC, channels padded to 4.
    Activation,
    /// Partial sums for a global average pool: `[tiles][c4]` vec4 per image.
    PoolPartial,
    /// The SE gate (`[c4]` vec4 per image) followed by the SE hidden layer.
    Gate,
    /// The network output, `[n]` f32 per image (logits or the embedding).
    Output,
}

/// A tensor of the plan (sizes are per image; every buffer holds a batch).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// The buffer it lives in (from the memory plan).
    pub slot: SlotId,
    /// How its values are stored ([`Precision::tensor_elem`]); not serialized when
    /// f32, so that f32 plans keep their fingerprints.
    #[serde(skip_serializing_if = "is_f32_elem", default = "f32_elem")]
    pub elem: ElemType,
}

fn f32_elem() -> ElemType {
    ElemType::F32
}

fn is_f32_elem(e: &ElemType) -> bool {
    *e == ElemType::F32
}

/// How a GEMM kernel reads its A operand (rows = output pixels, columns = reduction).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeOp {
    pub c: usize,
    pub c4: usize,
    pub reduced: usize,
    /// Partial-sum tiles to add, and the pixel count to divide by.
    pub tiles: usize,
    pub hw: usize,
    pub act: Activation,
}

/// The classifier: pooled sums → mean → linear; or the embedding (the pooled head) (classes 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifierOp {
    pub c: usize,
    pub c4: usize,
    pub tiles: usize,
    pub hw: usize,
    /// 0: write the embedding (the pooled head).
    pub classes: usize,
}

/// What a kernel computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    Gemm(GemmOp),
    Depthwise(DwOp),
    Se(SeOp),
    Classifier(ClassifierOp),
}

/// Which layers of the IR a kernel implements (for weight packing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    /// The name the shader gives it.
    #[serde(deserialize_with = "crate::intern::deserialize")]
    pub name: crate::intern::Static,
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub model: String,
    pub tensors: Vec<TensorDesc>,
    pub kernels: Vec<Kernel>,
    pub slots: Vec<Slot>,
    pub input: TensorId,
    /// Logits or the embedding; a backbone's last feature level.
    pub output: TensorId,
    /// Real input channels and resolution (CHW).
    pub input_shape: [usize; 3],
    /// Output values per image (a backbone's: every level's, NCHW without padding).
    pub output_len: usize,
    /// A backbone's feature levels ([`crate::features`]), in level order; empty
    /// when the model ends at logits or the embedding (and then not serialized,
    /// so such a plan's fingerprint does not change).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub features: Vec<crate::features::FeatureOutput>,
    /// How weights and activations are stored (f32 plans do not serialize it, so
    /// their fingerprints are those they had before precisions existed).
    #[serde(skip_serializing_if = "Precision::is_f32", default)]
    pub precision: Precision,
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
        self.kernels.iter().map(|k| k.layout.bytes()).sum()
    }
}

/// One activation buffer: its size per image (the largest tensor it holds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    pub bytes: usize,
    pub tensors: Vec<TensorId>,
}

impl Plan {
    /// A stable fingerprint of everything the plan decides (kernels, bindings, weight
    /// layouts, tiles, buffers): 16 hex digits of the 64-bit FNV-1a hash of the plan
    /// serialized as JSON. Generated code and weight files carry it, so that a plan
    /// that differs in any way, a layout of the same length included, is refused at
    /// load instead of read as garbage.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_vec(self).expect("a plan is plain data");
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in json {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// A plan serialized as JSON (`serde_json::to_vec(&plan)`, e.g. the web site's
    /// `plan.json`), read back and checked: a JSON error names its line and column,
    /// and a plan that breaks an invariant ([`Plan::validate`]) is refused, so that
    /// an executor never indexes out of its tensors, slots or weights.
    pub fn from_json(json: &[u8]) -> Result<Plan, String> {
        let plan: Plan =
            serde_json::from_slice(json).map_err(|e| format!("not an effc plan: {e}"))?;
        plan.validate()
            .map_err(|e| format!("plan of `{}` is inconsistent: {e}", plan.model))?;
        Ok(plan)
    }
}
