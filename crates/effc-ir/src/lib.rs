//! effc's IR: `.enet` models resolved, compound-scaled and shaped.
//!
//! - [`Spec`]: a model declaration with inheritance and settings resolved (unscaled);
//! - [`Model`]: the network for one input resolution, every layer with exact
//!   channels, kernel, stride, padding per side, groups and output shape;
//! - [`Model::params`]: the canonical parameter list, nameable in the timm,
//!   torchvision and TF-port layouts ([`Naming`]);
//! - [`scale`]: compound scaling by φ, the search for the largest φ within
//!   budgets and the grid search of α, β, γ;
//! - [`names`]: model names as data in generated code and spec text;
//! - [`Cost`]: parameters, multiply-accumulates and activation memory; the
//!   printout ([`Model::render`]) that `effc inspect` shows.
//!
//! This crate does no I/O (`effc-driver` reads spec files), and knows nothing
//! of GPUs, kernels or weights' values.

pub mod cost;
pub mod features;
pub mod model;
pub mod names;
pub mod params;
pub mod ranges;
pub mod scale;
pub mod spec;

pub use cost::{Cost, LayerRow};
pub use features::FeatureInfo;
pub use model::{
    Block, BlockKind, Conv2d, ConvBn, Linear, Model, OptionError, Options, Pad, SqueezeExcite,
    Stage,
};
pub use params::{Layer, Naming, Param, ParamKey, Tensor};
pub use spec::{Activation, PaddingMode, Rounding, Spec, Training};
