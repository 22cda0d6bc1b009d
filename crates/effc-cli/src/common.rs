//! Options shared by the commands that build a model, and their progress bar.

use clap::Args as ClapArgs;
use effc_driver::{ModelRequest, ResolvedModel};
use effc_ir::{Options, PaddingMode};

use crate::Failure;

/// The model to build and the overrides of its settings.
#[derive(ClapArgs, Debug)]
pub struct ModelArgs {
    /// A built-in model (`effc list`) or a path to a .enet file.
    #[arg(value_name = "MODEL|FILE")]
    pub model: String,
    /// Input resolution (default: the model's).
    #[arg(long, value_name = "N")]
    pub resolution: Option<usize>,
    /// Padding convention: `same` (TensorFlow, timm `tf_*`) or `symmetric`
    /// (PyTorch: timm without `tf_`, torchvision) (default: the model's).
    #[arg(long, value_name = "same|symmetric")]
    pub padding: Option<PaddingMode>,
    /// Batch-norm epsilon (default: the model's).
    #[arg(long, value_name = "E")]
    pub bn_eps: Option<f64>,
    /// Number of classes; 0 ends the model at the embedding (the pooled head) (default: the model's).
    #[arg(long, value_name = "N")]
    pub classes: Option<usize>,
    /// End the model at these feature levels (timm's `features_only`: level i has
    /// reduction 2^(i+1); e.g. 1,2,3,4): no head, no classifier (default: the spec's
    /// `features`, else none).
    #[arg(long, value_name = "L,..", value_delimiter = ',')]
    pub features: Option<Vec<usize>>,
}

impl ModelArgs {
    pub fn options(&self) -> Options {
        Options {
            resolution: self.resolution,
            padding: self.padding,
            bn_eps: self.bn_eps,
            classes: self.classes,
            features: self.features.clone(),
        }
    }

    /// The request: the model and the overrides (precision, tuning and weights
    /// are the command's to set).
    pub fn request(&self) -> ModelRequest {
        let mut r = ModelRequest::from_arg(&self.model);
        r.options = self.options();
        r
    }

    /// The request at `precision`, with the checkpoint `weights` (naming detected
    /// unless `naming`).
    pub fn request_with(
        &self,
        precision: effc_plan::Precision,
        weights: Option<&std::path::Path>,
        naming: Option<effc_ir::Naming>,
    ) -> ModelRequest {
        let mut r = self.request();
        r.precision = precision;
        r.weights = weights.map(|p| effc_driver::WeightsRequest {
            path: p.to_path_buf(),
            naming,
        });
        r
    }

    /// Resolves and builds the model; diagnostics are rendered for the terminal.
    pub fn resolve(&self) -> Result<ResolvedModel, Failure> {
        self.request().resolve().map_err(crate::fail)
    }
}

/// The progress bar of the long-running commands (`bench`, `tune`): `len` steps,
/// hidden when the output is JSON.
pub fn progress_bar(len: u64, hidden: bool) -> indicatif::ProgressBar {
    if hidden {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} {msg:<28} [{bar:30}] {pos}/{len}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The driver's progress on stderr: notes and warnings as lines, and with
/// [`Stderr::items_over`] a `done/total images` line on a terminal.
#[derive(Default)]
pub struct Stderr {
    /// Show the items line when there are more items than this.
    items_over: Option<usize>,
}

impl Stderr {
    /// Progress that shows `done/total images` when `total > chunk`, on a terminal.
    pub fn items_over(chunk: usize) -> Stderr {
        Stderr {
            items_over: Some(chunk),
        }
    }
}

impl effc_driver::progress::Progress for Stderr {
    fn items(&self, done: usize, total: usize) {
        let show = self.items_over.is_some_and(|c| total > c)
            && std::io::IsTerminal::is_terminal(&std::io::stderr());
        if show {
            eprint!("\r{done}/{total} images");
            if done == total {
                eprintln!();
            }
        }
    }

    fn note(&self, line: &str) {
        eprintln!("note: {line}");
    }

    fn warn(&self, line: &str) {
        eprintln!("warning: {line}");
    }
}

/// The driver's progress as a bar on stderr (hidden for `--json`), with notes and
/// warnings printed above it.
pub struct Bar {
    bar: indicatif::ProgressBar,
}

impl Bar {
    pub fn new(hidden: bool) -> Bar {
        Bar {
            bar: progress_bar(1, hidden),
        }
    }
}

impl effc_driver::progress::Progress for Bar {
    fn start(&self, len: u64) {
        self.bar.set_length(len);
        self.bar.set_position(0);
    }

    fn message(&self, msg: &str) {
        self.bar.set_message(msg.to_string());
    }

    fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn note(&self, line: &str) {
        self.bar.suspend(|| eprintln!("note: {line}"));
    }

    fn warn(&self, line: &str) {
        self.bar.suspend(|| eprintln!("warning: {line}"));
    }
}
