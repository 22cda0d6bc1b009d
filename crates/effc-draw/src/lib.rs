//! effc's pictures, as SVG text:
//!
//! - [`architecture`]: a model drawn the way the EfficientNet papers draw one: the
//!   input, the stem, every stage as a row of slabs (one per block, its height the
//!   feature map's size, its width the channels), the head; under each stage its
//!   block type, kernel, repeats and output shape;
//! - [`chart`]: one labelled point per model on two axes (accuracy or MACs against
//!   measured latency), families joined by lines, the chosen model marked and the
//!   budgets drawn as lines: the papers' Figure 1 for the user's own device;
//! - [`curves`]: training curves (loss, validation accuracy) against the step,
//!   with the progressive stages' boundaries (`effc train --plot`).
//!
//! Nothing here measures or decides; the callers pass what to draw.

pub mod arch;
pub mod chart;
pub mod curves;

pub use arch::architecture;
pub use chart::{chart, Budget, Chart, DrawError, Point, Series};
pub use curves::{curves, Curve, Curves};
