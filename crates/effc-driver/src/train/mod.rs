//! What `effc train` runs: the engines effc-train's loop steps on.
//!
//! - [`gpu`]: [`gpu::GpuEngine`], the loop's steps on effc-runtime's
//!   [`GpuTrainer`](effc_runtime::train::GpuTrainer), and [`gpu::rule`],
//!   effc-train's optimizer as the GPU update's rule.

pub mod gpu;
