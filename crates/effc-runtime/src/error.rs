//! [`GpuError`]: everything that can go wrong on the GPU side, one variant per
//! meaning: no usable adapter, a model beyond the adapter's limits, the device
//! out of memory or lost, an error wgpu reported, and bad arguments from the caller.

use thiserror::Error;

use crate::fit::FitError;

/// Everything that can go wrong on the GPU side.
#[derive(Debug, Error)]
pub enum GpuError {
    /// No adapter of the backends asked for (or none named like `WGPU_ADAPTER_NAME`).
    #[error("no GPU adapter found{0}; install a Vulkan or OpenGL driver (e.g. Mesa's llvmpipe), set WGPU_BACKEND, or run on the CPU (--device cpu)")]
    NoAdapter(String),
    /// The adapter has no compute shaders (a downlevel backend).
    #[error("adapter `{0}` cannot run compute shaders")]
    NoCompute(String),
    /// The adapter refused to open a device.
    #[error("could not open a device on adapter `{adapter}`: {message}")]
    Device { adapter: String, message: String },
    /// The plan exceeds one of the adapter's limits (found before anything is
    /// created on the device, by [`crate::fit()`]).
    #[error("model `{model}` does not fit adapter `{adapter}`: {what}")]
    TooBig {
        model: String,
        adapter: String,
        what: FitError,
    },
    /// The device ran out of memory although every limit was met.
    #[error("out of GPU memory while {during}: {message}")]
    OutOfMemory { during: String, message: String },
    /// wgpu reported an error (a shader, a pipeline or a command it refused).
    #[error("GPU error while {during}: {message}")]
    Validation { during: String, message: String },
    /// Waiting for the GPU failed (it did not finish).
    #[error("waiting for the GPU failed while {during}: {message}")]
    Wait { during: String, message: String },
    /// A buffer could not be mapped to read it back.
    #[error("could not read {what} back from the GPU: {message}")]
    ReadBack { what: String, message: String },
    #[error("the GPU device was lost: {0}")]
    Lost(String),
    #[error("input has {got} values; batch {batch} of {shape} needs {expected}")]
    InputShape {
        got: usize,
        expected: usize,
        batch: usize,
        shape: String,
    },
    #[error("batch {batch} is larger than the maximum batch {max} this model was created for")]
    Batch { batch: usize, max: usize },
    #[error("batch size must be at least 1")]
    EmptyBatch,
    /// Feature maps asked of a model built without feature levels.
    #[error(
        "model `{model}` has no feature levels; build it with `features = [..]` (`--features`)"
    )]
    NoFeatures { model: String },
    #[error("packed weights of kernel `{kernel}` have {got} values, the plan says {expected}")]
    Weights {
        kernel: String,
        got: usize,
        expected: usize,
    },
    /// Not one shader (or packed weight vector) per kernel of the plan.
    #[error("{got} {what} for the {expected} kernels of the plan")]
    Kernels {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    /// The plan stores f16 and the adapter cannot (or not as forced).
    #[error("adapter `{adapter}` cannot run f16 storage: {message}")]
    F16 { adapter: String, message: String },
    /// A model, or parameters, the training step cannot take.
    #[error("cannot train on the GPU: {0}")]
    TrainUnsupported(String),
    /// A training step beyond the adapter's limits (found before allocating).
    #[error("training model `{model}` at batch {batch} does not fit adapter `{adapter}`: {what}")]
    TrainTooBig {
        model: String,
        batch: usize,
        adapter: String,
        what: String,
    },
    #[error("label {label} of image {image} is out of range for {classes} classes")]
    LabelOutOfRange {
        image: usize,
        label: usize,
        classes: usize,
    },
    #[error("the target has {got} {what}, the batch needs {expected}")]
    TargetSize {
        expected: usize,
        got: usize,
        what: &'static str,
    },
    #[error(transparent)]
    Pack(#[from] effc_plan::PackError),
    #[error(transparent)]
    Compile(#[from] effc_wgsl::CompileError),
}
