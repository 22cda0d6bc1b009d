//! Resolving a model declaration: inheritance (`extends`), settings with their
//! defaults and checks, φ-scaling. The result, a [`Spec`], is unscaled: compound
//! scaling happens when the IR is built ([`crate::Model::build`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use effc_syntax::ast::{self, Setting, Spanned, Value};
use effc_syntax::{BlockArgs, Diagnostic, Diagnostics, Loc, Source, Span};
use serde::Serialize;

mod resolve;
mod settings;

use resolve::Resolver;
pub use resolve::{closest, MAX_EXTENDS_CHAIN};

/// Channel rounding of compound scaling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rounding {
    /// EfficientNet V1 and Lite: round to a multiple of 8, adding 8 when that
    /// lost more than 10% (`round_filters` with the guard).
    V1,
    /// EfficientNetV2: round to a multiple of 8, no guard.
    V2,
}

/// Activation function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// x·sigmoid(x), also called SiLU.
    Swish,
    Relu,
    Relu6,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::Swish => "swish",
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
        }
    }
    /// Applies the activation to one value.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Swish => x / (1.0 + (-x).exp()),
            Activation::Relu => x.max(0.0),
            Activation::Relu6 => x.clamp(0.0, 6.0),
        }
    }
}

/// Convolution padding convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PaddingMode {
    /// TensorFlow "same": output `ceil(x/s)`, the smaller half of the padding on top/left.
    Same,
    /// PyTorch: `(k-1)/2` on every side.
    Symmetric,
}

impl PaddingMode {
    pub fn name(self) -> &'static str {
        match self {
            PaddingMode::Same => "same",
            PaddingMode::Symmetric => "symmetric",
        }
    }
}

impl std::str::FromStr for PaddingMode {
    type Err = String;

    /// `same` or `symmetric`, as in a spec.
    fn from_str(s: &str) -> Result<PaddingMode, String> {
        match s {
            "same" => Ok(PaddingMode::Same),
            "symmetric" => Ok(PaddingMode::Symmetric),
            _ => Err(format!(
                "unknown padding `{s}`: `same` (TensorFlow) or `symmetric` (PyTorch)"
            )),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl fmt::Display for PaddingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A value that grows over the stages of progressive learning (`a .. b`), or stays.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Ramp {
    pub start: f64,
    pub end: f64,
}

/// Progressive-learning settings (EfficientNetV2 §4).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Training {
    /// Final training image size.
    pub size: Option<usize>,
    /// Image size of the first stage (128 in the official code).
    pub start_size: usize,
    /// Evaluation size; the model's `resolution` when absent.
    pub eval_size: Option<usize>,
    /// Number of progressive stages.
    pub stages: usize,
    pub randaugment: Option<Ramp>,
    pub mixup: Option<Ramp>,
    /// Dropout over the stages; the model's `dropout` (constant) when absent.
    pub dropout: Option<Ramp>,
    /// How the model is trained (`effc train`'s defaults; flags override).
    pub recipe: Recipe,
}

/// An optimizer of a training recipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    Sgd,
    /// SGD with Nesterov momentum.
    Nesterov,
    /// RMSProp as TensorFlow and timm's `rmsproptf` (ε inside the square root).
    RmspropTf,
    AdamW,
}

impl Optimizer {
    /// The spelling in a spec and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Optimizer::Sgd => "sgd",
            Optimizer::Nesterov => "nesterov",
            Optimizer::RmspropTf => "rmsproptf",
            Optimizer::AdamW => "adamw",
        }
    }
}

/// A learning-rate schedule of a training recipe (after the warmup).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Cosine,
    /// `lr · rate^⌊epoch / every⌋` (the papers: 0.97 every 2.4 epochs).
    Exponential {
        rate: f64,
        every: f64,
    },
    Constant,
}

/// A training recipe: every setting optional (absent: `effc train`'s default).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Recipe {
    pub optimizer: Option<Optimizer>,
    /// The learning rate at a batch of `lr_batch` images; it scales linearly with
    /// the batch (the papers' 0.256 at 4096 is 0.016 at 256).
    pub lr: Option<f64>,
    /// The batch `lr` is stated for (256 when absent).
    pub lr_batch: Option<usize>,
    pub batch: Option<usize>,
    pub epochs: Option<u64>,
    pub schedule: Option<Schedule>,
    /// Warmup epochs.
    pub warmup: Option<f64>,
    pub weight_decay: Option<f64>,
    pub label_smoothing: Option<f64>,
    /// BN running-statistics momentum, PyTorch's convention (TF's decay 0.99 is 0.01).
    pub bn_momentum: Option<f64>,
    /// EMA decay of the weights.
    pub ema: Option<f64>,
}

impl Recipe {
    /// The learning rate at `batch` images: `lr · batch / lr_batch`.
    pub fn lr_at(&self, batch: usize) -> Option<f64> {
        self.lr
            .map(|lr| lr * batch as f64 / self.lr_batch.unwrap_or(256) as f64)
    }
}

impl Default for Training {
    fn default() -> Self {
        Training {
            size: None,
            start_size: 128,
            eval_size: None,
            stages: 4,
            randaugment: None,
            mixup: None,
            dropout: None,
            recipe: Recipe::default(),
        }
    }
}

/// One stage of a progressive-learning schedule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainingStage {
    pub size: usize,
    pub randaugment: Option<f64>,
    pub mixup: Option<f64>,
    pub dropout: f64,
}

impl Training {
    /// Stage i of M trains at `start + (size − start)·i/(M − 1)` (EfficientNetV2's
    /// Algorithm 1: the first stage at `start_size`, the last at `size`), each
    /// regularizer interpolated the same way from its start to its end value.
    /// Empty when no training size is given.
    pub fn schedule(&self, final_dropout: f64) -> Vec<TrainingStage> {
        let Some(size) = self.size else { return vec![] };
        let m = self.stages.max(1);
        let lerp = |r: Ramp, i: usize| {
            if m == 1 {
                r.end
            } else {
                r.start + (r.end - r.start) * i as f64 / (m - 1) as f64
            }
        };
        let dropout = self.dropout.unwrap_or(Ramp {
            start: final_dropout,
            end: final_dropout,
        });
        (0..m)
            .map(|i| TrainingStage {
                size: lerp(
                    Ramp {
                        start: self.start_size as f64,
                        end: size as f64,
                    },
                    i,
                )
                .round() as usize,
                randaugment: self.randaugment.map(|r| lerp(r, i)),
                mixup: self.mixup.map(|r| lerp(r, i)),
                dropout: lerp(dropout, i),
            })
            .collect()
    }
}

/// A resolved model description: every setting has its value, blocks are decoded;
/// nothing is scaled yet.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    /// The model this one extends, if any (after resolution, for display).
    pub base: Option<String>,
    pub rounding: Rounding,
    pub width: f64,
    pub depth: f64,
    pub resolution: usize,
    /// φ, α, β, γ when the model was scaled by the seed formulation.
    pub phi: Option<[f64; 4]>,
    pub dropout: f64,
    pub drop_path: f64,
    /// Stem channels before scaling; the first stage's input channels when absent.
    pub stem: Option<usize>,
    pub head: usize,
    pub fix_stem: bool,
    pub fix_head: bool,
    pub fix_first_last: bool,
    pub activation: Activation,
    pub padding: PaddingMode,
    pub bn_eps: f64,
    pub classes: usize,
    /// Feature levels to end at (`features = [1, 2, 3, 4]`); `None`: the full model.
    pub features: Option<Vec<usize>>,
    pub mean: [f64; 3],
    pub std: [f64; 3],
    pub training: Training,
    /// The stages' block strings, decoded.
    pub blocks: Vec<BlockArgs>,
    /// The source the block strings are in.
    pub blocks_source: Arc<Source>,
    /// Where the model was declared (its name).
    pub decl: Loc,
    /// Where each setting got its value (the latest declaration that set it).
    pub origin: HashMap<&'static str, Loc>,
}

/// The setting names of a model body, with a short description (for `help`).
pub const MODEL_KEYS: &[(&str, &str)] = &[
    ("rounding", "channel rounding: v1 (10% guard) or v2"),
    ("width", "width coefficient"),
    ("depth", "depth coefficient"),
    ("resolution", "input resolution in pixels"),
    (
        "phi",
        "compound coefficient φ (derives width, depth, resolution)",
    ),
    ("alpha", "depth base α for φ (default 1.2)"),
    ("beta", "width base β for φ (default 1.1)"),
    ("gamma", "resolution base γ for φ (default 1.15)"),
    ("dropout", "dropout before the classifier"),
    ("drop_path", "stochastic-depth rate"),
    ("stem", "stem channels"),
    ("head", "head channels"),
    ("fix_stem", "keep the stem's channels unscaled"),
    ("fix_head", "keep the head's channels unscaled"),
    (
        "fix_first_last",
        "keep the first and last stages' repeats unscaled",
    ),
    ("activation", "swish, silu, relu or relu6"),
    ("padding", "same (TF) or symmetric (PyTorch)"),
    ("bn_eps", "batch-norm epsilon"),
    (
        "classes",
        "number of classes (0: end at the embedding (the pooled head))",
    ),
    (
        "features",
        "feature levels to end at, e.g. [1, 2, 3, 4] (level i: reduction 2^(i+1))",
    ),
    ("mean", "input mean per channel"),
    ("std", "input standard deviation per channel"),
];

/// The setting names of a `training { }` section.
pub const TRAINING_KEYS: &[(&str, &str)] = &[
    ("size", "final training image size"),
    (
        "start_size",
        "image size of the first progressive stage (default 128)",
    ),
    ("eval_size", "evaluation image size"),
    ("stages", "number of progressive stages (default 4)"),
    ("randaugment", "RandAugment magnitude, or `start .. end`"),
    ("mixup", "mixup alpha, or `start .. end`"),
    ("dropout", "dropout, or `start .. end`"),
    ("optimizer", "`rmsproptf`, `sgd`, `nesterov` or `adamw`"),
    ("lr", "learning rate at a batch of `lr_batch` images"),
    ("lr_batch", "the batch `lr` is stated for (default 256)"),
    ("batch", "images per step"),
    ("epochs", "epochs to train"),
    ("schedule", "`cosine`, `exponential` or `constant`"),
    (
        "decay_rate",
        "exponential schedule: factor per decay step (default 0.97)",
    ),
    (
        "decay_epochs",
        "exponential schedule: epochs per decay step (default 2.4)",
    ),
    ("warmup", "warmup epochs"),
    (
        "weight_decay",
        "weight decay (not on BN parameters and biases)",
    ),
    ("label_smoothing", "label smoothing"),
    (
        "bn_momentum",
        "BN running-statistics momentum, PyTorch's convention",
    ),
    ("ema", "EMA decay of the weights"),
];

impl Spec {
    fn defaults(name: &str, decl: Loc) -> Spec {
        Spec {
            name: name.to_string(),
            base: None,
            rounding: Rounding::V1,
            width: 1.0,
            depth: 1.0,
            resolution: 224,
            phi: None,
            dropout: 0.2,
            drop_path: 0.2,
            stem: None,
            head: 1280,
            fix_stem: false,
            fix_head: false,
            fix_first_last: false,
            activation: Activation::Swish,
            padding: PaddingMode::Same,
            bn_eps: 1e-3,
            classes: 1000,
            features: None,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            training: Training::default(),
            blocks: vec![],
            blocks_source: decl.source.clone(),
            decl,
            origin: HashMap::new(),
        }
    }

    /// A built-in model by name (`b0`, `v2-s`, ...).
    pub fn builtin(name: &str) -> Result<Spec, Diagnostics> {
        let mut r = Resolver::default();
        r.builtin(name, None).map(|(s, _)| s).map_err(Diagnostics)
    }

    /// The last model of a `.enet` text. `name` is what diagnostics call the text
    /// (usually its path).
    pub fn parse(name: &str, text: &str) -> Result<Spec, Diagnostics> {
        Self::parse_model(name, text, None)
    }

    /// A model of a `.enet` text: the one called `model`, or the last one.
    pub fn parse_model(name: &str, text: &str, model: Option<&str>) -> Result<Spec, Diagnostics> {
        let source = Source::new(name, text);
        let mut r = Resolver::default();
        r.file(&source, model).map(|(s, _)| s).map_err(Diagnostics)
    }

    /// Every model of a `.enet` text, each resolved (for `effc check`).
    pub fn parse_all(name: &str, text: &str) -> Result<Vec<Spec>, Diagnostics> {
        let source = Source::new(name, text);
        let file = effc_syntax::parse(&source).map_err(Diagnostics::from)?;
        if file.models.is_empty() {
            return Err(no_model(&source).into());
        }
        let mut out = vec![];
        let mut errors = vec![];
        // One resolver for the file: each model is resolved once, each error
        // reported once (a model whose base failed adds none of its own).
        let mut r = Resolver::default();
        for i in 0..file.models.len() {
            match r.resolve_in(&source, &file, i) {
                Ok((s, _)) => out.push(s),
                Err(e) => errors.extend(e),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(Diagnostics(errors))
        }
    }

    /// Where a setting got its value, or the model's declaration for a default.
    pub fn loc_of(&self, key: &str) -> &Loc {
        self.origin.get(key).unwrap_or(&self.decl)
    }
}

fn no_model(source: &Arc<Source>) -> Diagnostic {
    Diagnostic::error(
        "the file declares no model",
        Loc::new(source, Span::new(0, 0)),
        "expected `model NAME { ... }`",
    )
    .with_help("a spec looks like: model my_net extends b0 { width = 1.1 }")
}
