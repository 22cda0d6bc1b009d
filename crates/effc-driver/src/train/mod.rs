//! What `effc train` runs: its recipe and the engines effc-train's loop steps on.
//!
//! - [`recipe`]: [`recipe::RecipeRequest`] (what was asked, flag by flag) into
//!   effc-train's `Recipe`, the spec's `training` section merged, every range
//!   checked; `--freeze`, the data's name and the checkpoint directory, checked
//!   (shared by `effc train` and `effc scale --grid --train-on`);
//! - [`gpu`]: [`gpu::GpuEngine`], the loop's steps on effc-runtime's
//!   [`GpuTrainer`](effc_runtime::train::GpuTrainer), and [`gpu::rule`],
//!   effc-train's optimizer as the GPU update's rule.

pub mod gpu;
pub mod recipe;
