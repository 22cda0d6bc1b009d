//! Overrides applied when building the IR, checked against the settings' ranges.

use crate::ranges;
use crate::spec::PaddingMode;

/// Overrides applied when building the IR (command-line options, macro options).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub resolution: Option<usize>,
    pub padding: Option<PaddingMode>,
    pub bn_eps: Option<f64>,
    pub classes: Option<usize>,
    /// Feature levels to end at (`--features`), replacing the spec's `features`.
    pub features: Option<Vec<usize>>,
}

/// An override out of its range ([`Options::check`]): the option (`resolution`,
/// `bn_eps`, `classes`) and what is wrong with its value.
#[derive(Clone, Debug, PartialEq)]
pub struct OptionError {
    pub option: &'static str,
    pub message: String,
}

impl std::fmt::Display for OptionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}", self.option, self.message)
    }
}

impl std::error::Error for OptionError {}

impl Options {
    /// Checks each override against the range its spec setting has
    /// ([`crate::ranges`]); [`Model::build`](super::Model::build) does too, so a caller that reports
    /// options apart from the spec calls this first.
    pub fn check(&self) -> Result<(), OptionError> {
        let bad = |option, message: String| Err(OptionError { option, message });
        if let Some(r) = self.resolution {
            if !ranges::RESOLUTION.contains(&r) {
                return bad(
                    "resolution",
                    format!(
                        "{r} is not in {}..={}",
                        ranges::RESOLUTION.start(),
                        ranges::RESOLUTION.end()
                    ),
                );
            }
        }
        if let Some(e) = self.bn_eps {
            if !ranges::BN_EPS.contains(e) {
                return bad("bn_eps", format!("{e} is not in {}", ranges::BN_EPS));
            }
        }
        if let Some(c) = self.classes {
            if !ranges::CLASSES.contains(&c) {
                return bad(
                    "classes",
                    format!("{c} is more than {}", ranges::CLASSES.end()),
                );
            }
        }
        Ok(())
    }
}
