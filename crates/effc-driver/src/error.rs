//! What a procedure of the driver refuses or fails with, one variant per meaning,
//! so that a command can choose its exit code (or an HTTP status) by kind.

use effc_syntax::Diagnostics;

/// Why a request was refused or a procedure failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec (or the spec with the overrides) is not a valid model: diagnostics
    /// with file:line:col (render them with [`Diagnostics::render`] for colour).
    #[error("{}", .0.render(false).trim_end())]
    Spec(Diagnostics),
    /// An option out of range; `option` is its name (`resolution`, `max_batch`,
    /// `step`, ...), which a command spells as its flag.
    #[error("`{option}` {message}")]
    Option {
        option: &'static str,
        message: String,
    },
    /// Options that contradict each other, or a request that cannot be met as
    /// asked (the message says which flags and what to do).
    #[error("{0}")]
    Usage(String),
    /// An environment variable with an unusable value (`EFFC_MEMORY_LIMIT`,
    /// `WGPU_BACKEND`, `EFFC_CACHE_DIR`); the message names it.
    #[error("{0}")]
    Environment(String),
    /// An input file that cannot be read as what it should be.
    #[error(transparent)]
    Read(#[from] effc_files::ReadError),
    /// An output refused by the policy, or one that could not be written.
    #[error(transparent)]
    Output(#[from] effc_files::OutputError),
    /// A checkpoint or an image that cannot be read or does not fit the model.
    #[cfg(feature = "commands")]
    #[error(transparent)]
    Weights(#[from] effc_weights::Error),
    /// The GPU: no adapter, a lost device, a validation error.
    #[cfg(feature = "commands")]
    #[error(transparent)]
    Gpu(#[from] effc_runtime::GpuError),
    /// What a command would need exceeds what the host or the adapter has; the
    /// message names every size.
    #[error("{0}")]
    TooBig(String),
    /// Inputs or results that are not usable (a NaN input, a non-finite output,
    /// weights that overflow at the chosen precision).
    #[error("{0}")]
    Invalid(String),
    /// No candidate meets the budgets (`scale`, `pick`): the report is still
    /// worth showing, so it travels with the error.
    #[error("{message}")]
    NoneMeetsBudget {
        message: String,
        /// The procedure's report, serialized.
        report: Box<serde_json::Value>,
    },
    /// A bug in effc (a generated shader naga rejects, a spec effc wrote that
    /// does not build).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<Diagnostics> for Error {
    fn from(d: Diagnostics) -> Error {
        Error::Spec(d)
    }
}

impl From<effc_ir::OptionError> for Error {
    fn from(e: effc_ir::OptionError) -> Error {
        Error::Option {
            option: e.option,
            message: e.message,
        }
    }
}

impl From<effc_codegen::Error> for Error {
    fn from(e: effc_codegen::Error) -> Error {
        match e {
            effc_codegen::Error::Option { option, message } => Error::Option { option, message },
            effc_codegen::Error::Internal(m) => Error::Internal(m),
        }
    }
}

#[cfg(feature = "commands")]
impl From<effc_plan::PackError> for Error {
    fn from(e: effc_plan::PackError) -> Error {
        Error::Invalid(e.to_string())
    }
}

#[cfg(feature = "commands")]
impl From<effc_reference::Error> for Error {
    fn from(e: effc_reference::Error) -> Error {
        Error::Invalid(e.to_string())
    }
}

#[cfg(feature = "commands")]
impl From<effc_cpu::CpuError> for Error {
    fn from(e: effc_cpu::CpuError) -> Error {
        Error::Invalid(e.to_string())
    }
}
