//! The `.enet` language: text to a syntax tree with spans.
//!
//! This crate owns the grammar (`grammar/enet.pest` at the repository root), the
//! syntax tree ([`ast`]), block-string decoding ([`block`]) and the diagnostic type
//! every later stage reports errors with ([`diag`]). It knows nothing of scaling,
//! shapes or models: meaning is given by `effc-ir`.

pub mod ast;
pub mod block;
pub mod diag;
mod parser;

pub use block::BlockArgs;
pub use diag::{Diagnostic, Diagnostics, Loc, Source, Span};
pub use parser::parse;
