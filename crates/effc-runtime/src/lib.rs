//! The wgpu runtime: runs a kernel plan on any adapter wgpu supports.
//!
//! [`adapter`] chooses an adapter (any backend; `WGPU_BACKEND` and
//! `WGPU_ADAPTER_NAME` are honoured) and [`Gpu`] opens a device on it. [`fit()`]
//! checks a plan against the adapter's limits and decides how a batch is chunked.
//! [`CompiledModel`] uploads the packed weights once, creates every pipeline (shared
//! per device through the pipeline cache), buffer and bind group once, and then
//! [`CompiledModel::forward`] records every dispatch into one command buffer and
//! allocates nothing on the GPU. A batch larger than the activation buffers can
//! bind at once runs in chunks inside that command buffer. Device errors, a lost
//! device or an adapter without compute become [`GpuError`]s, never panics.
//!
//! Modules: `adapter` (choice), `gpu` (the device, its errors, read-back), `fit`
//! (limits and chunking, pure), `pipelines` (the cache), `model` (creation), `run`
//! (upload, dispatch, read-back), `features` (a backbone's levels read back as
//! NCHW [`FeatureMap`]s), [`profile`] and [`tune`].

pub mod adapter;
mod error;
mod features;
pub mod fit;
mod gpu;
pub mod latency;
mod model;
mod pipelines;
pub mod profile;
mod run;
pub mod train;
pub mod tune;

pub use adapter::AdapterSummary;
pub use effc_plan::Precision;
pub use effc_wgsl::Spelling;
pub use error::GpuError;
pub use features::FeatureMap;
pub use fit::{fit, host_memory, Fit, FitError};
pub use gpu::{Gpu, F16_ENV};
pub use model::CompiledModel;
pub use profile::{median, KernelTiming};

use std::sync::Arc;

/// Plans, generates, validates and packs a model, and creates it on `gpu`.
/// `get` returns a tensor of the checkpoint by its effc canonical name, f32 in
/// PyTorch layout (BN is folded here).
pub fn compile_model<'a>(
    gpu: Arc<Gpu>,
    model: &effc_ir::Model,
    get: impl Fn(&str) -> Option<&'a [f32]>,
    max_batch: usize,
) -> Result<CompiledModel, GpuError> {
    compile_model_tuned(gpu, model, &effc_plan::Tuning::default(), get, max_batch)
}

/// [`compile_model`] with the tiles of `tuning` (see [`tune`]) where it names a
/// kernel's shape, the cost models' elsewhere.
pub fn compile_model_tuned<'a>(
    gpu: Arc<Gpu>,
    model: &effc_ir::Model,
    tuning: &effc_plan::Tuning,
    get: impl Fn(&str) -> Option<&'a [f32]>,
    max_batch: usize,
) -> Result<CompiledModel, GpuError> {
    compile_model_with(gpu, model, tuning, Precision::F32, get, max_batch)
}

/// [`compile_model_tuned`] at a precision: with [`Precision::F16`] weights and
/// activations are stored as halves (BN folded in f32 first), spelled as the
/// device allows ([`Gpu::f16_spelling`]); input and output stay f32 to the caller.
pub fn compile_model_with<'a>(
    gpu: Arc<Gpu>,
    model: &effc_ir::Model,
    tuning: &effc_plan::Tuning,
    precision: Precision,
    get: impl Fn(&str) -> Option<&'a [f32]>,
    max_batch: usize,
) -> Result<CompiledModel, GpuError> {
    let plan = effc_plan::plan_with(model, tuning, precision);
    let shaders = gpu.shaders(&plan)?;
    let weights = effc_plan::pack_weights(&plan, model, get)?;
    CompiledModel::new(gpu, plan, &shaders, &weights, max_batch)
}
