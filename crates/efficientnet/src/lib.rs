//! EfficientNet models compiled to WGSL when your crate compiles.
//!
//! [`efficientnet!`] takes a model — one of the 24 built-in models of effc (`"b0"`,
//! `"lite0"`, `"v2-s"`, …; `effc list` prints them), a `.enet` spec file, or a spec
//! written inline — and expands to a module with a typed `Model`: the network's
//! shapes and costs as constants, every fused GPU kernel's WGSL embedded as a
//! string constant, and a loader that reads a safetensors checkpoint (timm,
//! torchvision or TF-port naming, f32/f16/bf16), folds batch norm into the weights
//! and creates the pipelines on a [`wgpu`] device once. A forward then records every
//! dispatch into one command buffer.
//!
//! ```no_run
//! // EfficientNet-Lite0 at its native 224x224, as `mod lite0`.
//! efficientnet::efficientnet!("lite0");
//!
//! fn main() -> Result<(), efficientnet::Error> {
//!     let model = lite0::Model::load("efficientnet-lite0.safetensors")?;
//!     let input = model.load_images(&["cat.png"])?; // 1x3x224x224, normalized
//!     let logits = model.forward(&input, 1)?; // 1 x lite0::CLASSES
//!     for p in efficientnet::top_k(&logits, 5) {
//!         println!("{:5.1}%  {}", 100.0 * p.prob, p.name);
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # The macro
//!
//! The model, first (exactly one of):
//!
//! | form | meaning |
//! | --- | --- |
//! | `efficientnet!("v2-s")` | a built-in model |
//! | `efficientnet!(file = "specs/my.enet")` | a spec file, relative to the calling crate's `CARGO_MANIFEST_DIR` (its last model, or the one `model = "…"` names) |
//! | `efficientnet!(spec = r#"model tiny extends b0 { width = 0.5 }"#)` | a spec written inline |
//!
//! then options, each `key = value`, separated by commas:
//!
//! | option | value | default |
//! | --- | --- | --- |
//! | `name` | the module's name (an identifier) | the model's name, `-` as `_` (`v2-s` → `v2_s`) |
//! | `model` | which model of a spec file or inline spec (`"my_net"`) | the last one |
//! | `resolution` | input size in pixels (`256`) | the spec's |
//! | `padding` | `same` (TensorFlow) or `symmetric` (PyTorch) | the spec's |
//! | `bn_eps` | batch-norm epsilon (`1e-5`) | the spec's |
//! | `classes` | classifier outputs; `0` ends the model at the embedding (the pooled head) (a backbone) | the spec's |
//! | `features` | feature levels to end at, `[1, 2, 3, 4]` (timm's `features_only`: level `i` has stride `2^(i+1)`); no head, no classifier | the spec's `features`, else none |
//! | `max_batch` | the largest batch a forward takes (the loader can change it) | 8 |
//! | `precision` | `f16` stores weights and activations as halves (half the GPU memory, sums still in f32), `f32` | `f32` |
//!
//! ```
//! // timm's efficientnet_b0 weights (PyTorch-trained) at 256x256, as a backbone.
//! efficientnet::efficientnet!("b0", name = b0_backbone, resolution = 256,
//!     padding = symmetric, bn_eps = 1e-5, classes = 0, max_batch = 4);
//!
//! assert_eq!(b0_backbone::INPUT_SHAPE, [3, 256, 256]);
//! assert_eq!(b0_backbone::CLASSES, 0);
//! assert_eq!(b0_backbone::OUTPUT_LEN, 1280); // the embedding
//! assert_eq!(b0_backbone::MAX_BATCH, 4);
//! ```
//!
//! A mistake in the spec or in an option is a compile error that points at the
//! macro argument and, for a spec, says `file:line:col` with the line and a caret.
//!
//! # What the module holds
//!
//! For `efficientnet!("lite0")`, `mod lite0` has:
//!
//! - constants: `NAME`, `SPEC` (the `.enet` source), `SPEC_ORIGIN`, `INPUT_SHAPE`
//!   (CHW), `RESOLUTION`, `CLASSES`, `EMBEDDING_LEN`, `OUTPUT_LEN`, `PARAMETERS`, `MACS`,
//!   `MEAN`, `STD`, `PRECISION`, `ACTIVATION_BYTES`, `WEIGHT_BYTES` (bytes at
//!   `PRECISION`), `MAX_BATCH`, `DISPATCHES`;
//! - `kernels::STEM`, `kernels::BLOCKS_1_0_EXPAND`, …: one [`Kernel`] per GPU
//!   kernel (name, layers, grid, workgroup, WGSL), and `KERNELS`, all of them in
//!   dispatch order;
//! - `DEFINITION`: the [`Definition`] the loader rebuilds the model from;
//! - `Model`: [`load`](Loader::load), `from_bytes`, `loader()` (a [`Loader`] to
//!   share a [`Gpu`], force a checkpoint [`Naming`] or change the batch),
//!   `forward`, `upload` / `encode` / `read_output` (to record the model into
//!   your own [`wgpu::CommandEncoder`]), `load_images`, `gpu`, `max_batch`,
//!   `naming`. It implements [`Network`].
//! - with `features = [..]` (a backbone for detection or segmentation):
//!   `FEATURE_INFO` (a [`FeatureInfo`] per level: level, channels, reduction,
//!   size, IR block) and `Model::features` / `Model::read_features`, which return
//!   the levels as a list of NCHW [`FeatureMap`]s:
//!
//! ```no_run
//! efficientnet::efficientnet!("b0", name = b0_fpn, features = [2, 3, 4]);
//! # fn main() -> Result<(), efficientnet::Error> {
//! assert_eq!(b0_fpn::FEATURE_INFO[0].channels, 40); // stride 8
//! let model = b0_fpn::Model::load("tf_efficientnet_b0.safetensors")?;
//! let input = model.load_images(&["street.jpg"])?;
//! for map in model.features(&input, 1)? {
//!     println!("level {}: {:?}", map.level, map.shape); // [1, C, H, W]
//! }
//! # Ok(()) }
//! ```
//!
//! # Running the model inside your own GPU work
//!
//! ```no_run
//! efficientnet::efficientnet!("lite0");
//! # fn main() -> Result<(), efficientnet::Error> {
//! use efficientnet::wgpu;
//!
//! let model = lite0::Model::load("efficientnet-lite0.safetensors")?;
//! let input = model.load_images(&["a.png", "b.png"])?;
//! model.upload(&input, 2)?;
//! let gpu = model.gpu(); // your pipelines use gpu.device and gpu.queue
//! let mut encoder = gpu
//!     .device
//!     .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
//! // ... your passes ...
//! model.encode(&mut encoder, 2)?; // every dispatch of the model
//! // ... your passes ...
//! gpu.queue.submit([encoder.finish()]);
//! let logits = model.read_output(2)?; // waits for the GPU
//! # Ok(()) }
//! ```
//!
//! `effc compile MODEL -o DIR` writes the same module as a file, `DIR/model.rs`,
//! next to the kernels' `.wgsl` files it includes.
//!
//! # GPUs
//!
//! Any adapter wgpu supports: Vulkan, Metal, DX12, OpenGL, and Mesa's llvmpipe
//! on machines without a GPU. `WGPU_BACKEND` and `WGPU_ADAPTER_NAME` pick one.
//! `Model::load` opens (once per process) the [`default_gpu`]; pass your own
//! `Arc<Gpu>` with [`Loader::gpu`] to choose.

use std::marker::PhantomData;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub use effc_ir::Naming;
pub use effc_plan::Precision;
pub use effc_runtime::{AdapterSummary, FeatureMap, Gpu, GpuError, Spelling};
pub use efficientnet_macros::efficientnet;
/// The wgpu this crate runs on: use it for your own GPU work with a model's device,
/// so that the types match.
pub use wgpu;

mod engine;

#[doc(hidden)]
pub use engine::Engine;

/// What the generated code refers to. Not a stable API: use the macro.
#[doc(hidden)]
pub mod __private {
    pub use crate::engine::Engine;
    pub use crate::{
        Definition, Error, FeatureInfo, FeatureMap, Kernel, Loader, Naming, Network, Overrides,
        Padding, Precision, Prediction,
    };
    pub use effc_runtime::Gpu;
    pub use std::convert::AsRef;
    pub use std::option::Option;
    pub use std::path::Path;
    pub use std::result::Result;
    pub use std::sync::Arc;
    pub use std::vec::Vec;
    pub use wgpu::CommandEncoder;
}

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A checkpoint or an image that cannot be read or does not fit the model
    /// (names the file, and the tensor where there is one).
    #[error(transparent)]
    Weights(#[from] effc_weights::Error),
    /// The GPU: no adapter, a model too big for it, a lost device, a bad batch.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// A tensor that packing needs is missing or has the wrong size.
    #[error(transparent)]
    Pack(#[from] effc_plan::PackError),
    /// The generated code does not match this version of effc (it was generated
    /// by another one): rebuild the crate that calls the macro, or rerun `effc compile`.
    #[error("the code generated for model `{model}` does not match this version of the efficientnet crate: {what}; regenerate it")]
    Stale { model: String, what: String },
}

/// One fused GPU kernel of a generated model: one compute dispatch per forward.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Kernel {
    /// `stem`, `blocks.1.0.expand`, `blocks.1.0.dw`, `blocks.1.0.se`, `head`, …
    pub name: &'static str,
    /// `stem`, `pointwise`, `conv`, `depthwise`, `se`, `head` or `classifier`.
    pub kind: &'static str,
    /// The layers of the IR it implements (`blocks.1.0.expand.conv`, …).
    pub layers: &'static [&'static str],
    /// Invocations per workgroup (`@workgroup_size`).
    pub workgroup: [u32; 3],
    /// Workgroups per image in x and y; z is the batch.
    pub grid: [u32; 2],
    /// Packed weights (BN folded in), in values (f32 or f16, as the model's precision).
    pub weights_len: usize,
    /// The file `effc compile` writes the shader to (`blocks_1_0_expand.wgsl`).
    pub file_name: &'static str,
    /// The WGSL source (at f16, in the native spelling: `enable f16;`).
    pub wgsl: &'static str,
    /// At f16, the same kernel with halves packed in pairs into `u32`s (core WGSL),
    /// for adapters without `shader-f16`; `None` at f32.
    pub wgsl_packed: Option<&'static str>,
}

/// Padding convention of the convolutions: `Same` (TensorFlow's, TF-trained
/// weights, timm's `tf_*`) or `Symmetric` (PyTorch's `(k-1)/2` on every side,
/// timm without `tf_`, torchvision). The IR's own enum.
pub use effc_ir::PaddingMode as Padding;

/// The settings a macro call overrode in the spec (`None`: the spec's value).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Overrides {
    /// Input height and width in pixels.
    pub resolution: Option<usize>,
    pub padding: Option<Padding>,
    /// Batch-norm epsilon.
    pub bn_eps: Option<f64>,
    /// Classifier outputs; `Some(0)` ends the model at the embedding (the pooled head).
    pub classes: Option<usize>,
    /// Feature levels the model ends at (a backbone: no head, no classifier).
    pub features: Option<&'static [usize]>,
}

/// One feature level of a backbone (`features = [..]`): what `FEATURE_INFO`
/// lists and `Model::features` returns, in level order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureInfo {
    /// timm's level (`features_only`, `out_indices`): reduction `2^(level+1)`.
    pub level: usize,
    pub channels: usize,
    /// Input pixels per output pixel, per side (the stride so far).
    pub reduction: usize,
    /// Height and width of the map.
    pub height: usize,
    pub width: usize,
    /// The IR block whose output it is: its index among all blocks, and its path
    /// (`blocks.1.1`).
    pub block: usize,
    pub block_path: &'static str,
}

/// A generated model, as data: its spec and options (which the loader rebuilds
/// the IR and the kernel plan from, in milliseconds), its shapes and costs, and
/// its kernels with their WGSL.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Definition {
    /// The model's name in its spec (`lite0`).
    pub name: &'static str,
    /// Where the spec came from: `<builtin lite0>`, a file path, `<inline spec>`.
    pub spec_origin: &'static str,
    /// The `.enet` source.
    pub spec: &'static str,
    pub overrides: Overrides,
    /// How weights and activations are stored on the GPU.
    pub precision: Precision,
    /// The largest batch a forward takes, unless the loader changes it.
    pub max_batch: usize,
    /// One image, CHW.
    pub input_shape: [usize; 3],
    /// Classifier outputs; 0 for a backbone.
    pub classes: usize,
    /// Values per image in the output: logits, or the embedding.
    pub output_len: usize,
    /// Trainable parameters.
    pub parameters: u64,
    /// Multiply-accumulates per image.
    pub macs: u64,
    /// The kernels, in dispatch order.
    pub kernels: &'static [Kernel],
    /// The fingerprint of the kernel plan the code was generated from
    /// (`effc_plan::Plan::fingerprint`: kernels, bindings, weight layouts, tiles,
    /// buffers). Loading refuses a definition this version would plan differently.
    pub plan_hash: &'static str,
}

/// A model type generated by [`efficientnet!`]. Its inherent methods are the
/// same; the trait is for code generic over models.
pub trait Network: Sized {
    /// The generated model's description.
    const DEFINITION: &'static Definition;

    #[doc(hidden)]
    fn from_engine(engine: Engine) -> Self;
    #[doc(hidden)]
    fn engine(&self) -> &Engine;

    /// A loader with the defaults: the [`default_gpu`], the naming detected from
    /// the checkpoint, the batch of the macro's `max_batch`.
    fn loader() -> Loader<Self> {
        Loader::new()
    }

    /// Runs a batch: `input` is `batch` images, NCHW f32, normalized (see
    /// `load_images`); returns `batch × OUTPUT_LEN` values.
    fn forward(&self, input: &[f32], batch: usize) -> Result<Vec<f32>, Error> {
        self.engine().forward(input, batch)
    }
}

/// Loads a generated model: which GPU, which checkpoint naming, which batch.
///
/// ```no_run
/// efficientnet::efficientnet!("lite0");
/// # fn main() -> Result<(), efficientnet::Error> {
/// use std::sync::Arc;
/// let gpu = efficientnet::default_gpu()?; // or Arc::new(efficientnet::Gpu::new()?)
/// let model = lite0::Model::loader()
///     .gpu(gpu)
///     .naming(efficientnet::Naming::Tf)
///     .max_batch(32)
///     .load("efficientnet-lite0.safetensors")?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct Loader<N> {
    gpu: Option<Arc<Gpu>>,
    naming: Option<Naming>,
    max_batch: Option<usize>,
    _network: PhantomData<fn() -> N>,
}

impl<N: Network> Default for Loader<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<N: Network> Loader<N> {
    pub fn new() -> Self {
        Loader {
            gpu: None,
            naming: None,
            max_batch: None,
            _network: PhantomData,
        }
    }

    /// Runs the model on this device (several models can share one).
    pub fn gpu(mut self, gpu: Arc<Gpu>) -> Self {
        self.gpu = Some(gpu);
        self
    }

    /// The checkpoint's naming, instead of detecting it from the tensor names.
    pub fn naming(mut self, naming: Naming) -> Self {
        self.naming = Some(naming);
        self
    }

    /// The largest batch a forward takes (GPU buffers are sized for it).
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = Some(max_batch);
        self
    }

    /// Reads a safetensors checkpoint and creates the model on the GPU.
    pub fn load(self, path: impl AsRef<Path>) -> Result<N, Error> {
        let path = path.as_ref();
        let bytes = effc_files::read(path, effc_files::Input::CHECKPOINT)
            .map_err(effc_weights::Error::Read)?;
        self.create(&bytes, path)
    }

    /// As [`Loader::load`], from the checkpoint's bytes (`include_bytes!`, a download).
    pub fn from_bytes(self, bytes: &[u8]) -> Result<N, Error> {
        self.create(bytes, Path::new("<bytes>"))
    }

    fn create(self, bytes: &[u8], source: &Path) -> Result<N, Error> {
        let gpu = match self.gpu {
            Some(g) => g,
            None => default_gpu()?,
        };
        let max_batch = self.max_batch.unwrap_or(N::DEFINITION.max_batch);
        let engine = Engine::new(N::DEFINITION, gpu, bytes, source, self.naming, max_batch)?;
        Ok(N::from_engine(engine))
    }
}

/// The process's shared GPU: opened on first use (see [`Gpu::new`] for how the
/// adapter is chosen), then the same device for every model loaded without
/// [`Loader::gpu`].
pub fn default_gpu() -> Result<Arc<Gpu>, Error> {
    static GPU: Mutex<Option<Arc<Gpu>>> = Mutex::new(None);
    let mut slot = GPU.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(g) = slot.as_ref() {
        return Ok(g.clone());
    }
    let g = Arc::new(Gpu::new()?);
    *slot = Some(g.clone());
    Ok(g)
}

/// One class of a classification, with its softmax probability.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub class: usize,
    /// The ImageNet name when there are 1000 classes, else `class N`.
    pub name: String,
    pub prob: f32,
}

/// The `k` most probable classes of one image's logits, most probable first
/// (softmax over all of them; ties go to the lower class).
pub fn top_k(logits: &[f32], k: usize) -> Vec<Prediction> {
    effc_weights::top_k(logits, k)
        .into_iter()
        .map(|(class, prob)| Prediction {
            class,
            name: effc_weights::class_name(class, logits.len()),
            prob,
        })
        .collect()
}

/// The 1000 ImageNet class names, in class-index order.
pub fn imagenet_classes() -> &'static [&'static str] {
    effc_weights::imagenet_classes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_by_probability_and_names_imagenet_classes() {
        let mut logits = vec![0.0f32; 1000];
        logits[285] = 5.0; // Egyptian cat
        logits[281] = 4.0; // tabby
        let top = top_k(&logits, 3);
        assert_eq!(top[0].class, 285);
        assert_eq!(top[1].class, 281);
        assert_eq!(top[2].class, 0, "ties go to the lower class");
        assert!(top[0].name.contains("Egyptian"), "{}", top[0].name);
        assert!(top[0].prob > top[1].prob && top[1].prob > top[2].prob);
        let sum: f64 = top_k(&logits, 1000).iter().map(|p| p.prob as f64).sum();
        assert!((sum - 1.0).abs() < 1e-5, "{sum}");
    }

    #[test]
    fn top_k_of_few_classes_numbers_them() {
        let top = top_k(&[1.0, 3.0, 2.0], 5);
        assert_eq!(top.len(), 3);
        assert_eq!(top[0].name, "class 1");
    }
}
