//! effc's IR: `.enet` models resolved, compound-scaled and shaped.
//!
//! - [`Spec`]: a model declaration with inheritance and settings resolved (unscaled);
//! - [`Model`]: the network for one input resolution, every layer with exact
//!   channels, kernel, stride, padding per side, groups and output shape;
//! - [`Model::params`]: the canonical parameter list, nameable in the timm,
//!   torchvision and TF-port layouts ([`Naming`]);
//! - [`scale`]: compound scaling by φ, the search for the largest φ within
//!   budgets and the grid search of α, β, γ;
//! - [`Cost`]: parameters, multiply-accumulates and activation memory; the
//!   printout ([`Model::render`]) that `effc inspect` shows.
//!
//! This crate does no I/O except reading a spec file on request, and knows
//! nothing of GPUs, kernels or weights' values.

pub mod cost;
pub mod model;
pub mod params;
pub mod scale;
pub mod spec;

pub use cost::{Cost, LayerRow};
pub use model::{
    Block, BlockKind, Conv2d, ConvBn, Linear, Model, Options, Pad, SqueezeExcite, Stage,
};
pub use params::{Layer, Naming, Param, ParamKey, Tensor};
pub use spec::{Activation, PaddingMode, Rounding, Spec, Training};

/// Resolves and builds a built-in model or a spec file in one call.
pub fn load(model_or_path: &str, opts: &Options) -> Result<Model, effc_syntax::Diagnostics> {
    let spec = Spec::load(model_or_path)?;
    Model::build(&spec, opts)
}
