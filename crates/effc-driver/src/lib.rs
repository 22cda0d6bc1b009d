//! What effc's commands do, as a library: `effc-cli` parses arguments and formats
//! what these functions return, and `effc train`, `effc serve` and the
//! `efficientnet!` macro build on the same pieces.
//!
//! - [`request`]: one [`ModelRequest`] (a built-in, a spec file or an inline spec,
//!   the overrides, the precision, the tuning, the weights) resolved into a
//!   [`ResolvedModel`] (spec text, `Spec`, IR) and turned into host code
//!   ([`ModelRequest::generate`]);
//! - [`inspect`]: what `effc inspect` reports of a model (summary, tensors, levels);
//! - [`size`]: the one parser of sizes, counts and times, for every flag and
//!   environment variable (`k M G T` are powers of 1000, `Ki Mi Gi Ti` of 1024);
//! - [`files`]: the file policy (re-exported from `effc-files`): bounded reads of
//!   regular files only, and [`files::Outputs`] for every file a command writes;
//! - [`device`] (feature `commands`): where a model runs ([`Device`], [`choose`]);
//! - [`limits`] (feature `commands`): what a command will allocate, against the
//!   host's memory budget and the adapter's limits, before anything is allocated;
//! - the procedures (feature `commands`), each taking a request and a
//!   [`progress::Progress`] and returning a typed, serializable report:
//!   [`run::run`] ([`run::RunReport`]), [`bench::bench`] ([`bench::BenchReport`]), [`scale::scale`] ([`scale::ScaleReport`])
//!   and [`scale::grid`] ([`scale::GridReport`]), [`pick::pick`]
//!   ([`pick::PickReport`]), [`tune::tune`] ([`tune::TuneReport`]),
//!   [`compile::compile`] ([`compile::CompileReport`]); [`tuning::cached`], the tiles a
//!   GPU uses; [`bench::train::train`] ([`bench::train::TrainBench`]), `effc bench
//!   --train`; for `effc train`: [`train::job::TrainRequest`] (into effc-train's `Job`),
//!   [`train::recipe::RecipeRequest`] (the recipe, checked),
//!   [`train::engine`] (where it steps) and [`train::gpu::GpuEngine`] (its steps on a GPU).
//!
//! A new command: resolve a request, declare its files, choose a device, run:
//!
//! ```no_run
//! # #[cfg(feature = "commands")]
//! # fn main() -> Result<(), effc_driver::Error> {
//! use effc_driver::{files::Outputs, ModelRequest};
//! let request = ModelRequest::from_arg("lite0");
//! let mut files = Outputs::new();
//! request.declare_inputs(&mut files)?;
//! let out = files.file("--save", "out.safetensors")?; // refused now if it is an input
//! let resolved = request.resolve()?;
//! let device = effc_driver::choose(None, resolved.precision)?;
//! # let _ = (out, device);
//! # Ok(()) }
//! # #[cfg(not(feature = "commands"))]
//! # fn main() {}
//! ```

mod error;
pub mod inspect;
pub mod progress;
pub mod request;
pub mod size;

#[cfg(feature = "commands")]
pub mod bench;
#[cfg(feature = "commands")]
pub mod compile;
#[cfg(feature = "commands")]
pub mod device;
#[cfg(feature = "commands")]
pub mod limits;
#[cfg(feature = "commands")]
pub mod pick;
#[cfg(feature = "commands")]
pub mod run;
#[cfg(feature = "commands")]
pub mod scale;
#[cfg(feature = "commands")]
pub mod train;
#[cfg(feature = "commands")]
pub mod tune;
#[cfg(feature = "commands")]
pub mod tuning;

/// The file policy: bounded reads and the output policy (see `effc-files`).
pub mod files {
    pub use effc_files::*;
}

pub use error::Error;
pub use request::{ModelRequest, ModelSource, ResolvedModel, TuningChoice, WeightsRequest};

#[cfg(feature = "commands")]
pub use device::{choose, Chosen, Device};
