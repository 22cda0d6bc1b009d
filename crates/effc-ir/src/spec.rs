//! Resolving a model declaration: inheritance (`extends`), settings with their
//! defaults and checks, φ-scaling. The result, a [`Spec`], is unscaled: compound
//! scaling happens when the IR is built ([`crate::Model::build`]).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use effc_syntax::ast::{self, Setting, Spanned, Value};
use effc_syntax::{BlockArgs, Diagnostic, Diagnostics, Loc, Source, Span};
use serde::Serialize;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
    /// Stage i of M trains at `start + (size - start)·(i+1)/M`, with the
    /// regularization interpolated linearly from its start to its end value.
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
                size: (self.start_size as f64
                    + (size as f64 - self.start_size as f64) * (i + 1) as f64 / m as f64)
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
        "number of classes (0: end at the pooled features)",
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

    /// A `.enet` file from disk.
    pub fn from_file(path: &Path) -> Result<Spec, Diagnostics> {
        let text = read_spec(path)?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// A built-in name, or else a path to a `.enet` file.
    pub fn load(model_or_path: &str) -> Result<Spec, Diagnostics> {
        if effc_catalog::source(model_or_path).is_some() {
            return Self::builtin(model_or_path);
        }
        let p = Path::new(model_or_path);
        if p.exists() || model_or_path.ends_with(".enet") || model_or_path.contains('/') {
            return Self::from_file(p);
        }
        Err(Diagnostic::bare(format!(
            "unknown model `{model_or_path}`: not a built-in model and no such file"
        ))
        .with_help(format!(
            "built-in models: {}",
            effc_catalog::names().collect::<Vec<_>>().join(", ")
        ))
        .into())
    }

    /// Where a setting got its value, or the model's declaration for a default.
    pub fn loc_of(&self, key: &str) -> &Loc {
        self.origin.get(key).unwrap_or(&self.decl)
    }
}

/// Reads a spec file, with an error that names it.
pub fn read_spec(path: &Path) -> Result<String, Diagnostics> {
    let bytes = std::fs::read(path)
        .map_err(|e| Diagnostic::bare(format!("cannot read {}: {e}", path.display())))?;
    String::from_utf8(bytes).map_err(|e| {
        Diagnostic::bare(format!(
            "{} is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
        .into()
    })
}

fn no_model(source: &Arc<Source>) -> Diagnostic {
    Diagnostic::error(
        "the file declares no model",
        Loc::new(source, Span::new(0, 0)),
        "expected `model NAME { ... }`",
    )
    .with_help("a spec looks like: model my_net extends b0 { width = 1.1 }")
}

/// The most models one chain of `extends` may hold, the model itself and the
/// built-in models it reaches included.
pub const MAX_EXTENDS_CHAIN: usize = 64;

/// Resolves the models of one file, following `extends` through the same file and
/// the catalog. Each model is resolved once (memoized by its index), so resolving
/// every model of a file is linear in the number of models, and an error in a base
/// is reported once, not again for every model that extends it.
#[derive(Default)]
struct Resolver {
    /// Built-in models being resolved, for cycle detection.
    stack: Vec<String>,
    /// Per model of the file: its spec and the length of its chain, or `None` when
    /// it failed (its errors were returned when it was first resolved).
    memo: HashMap<usize, Option<(Spec, usize)>>,
    /// Per model of the file: the index of its base when that is an earlier model of
    /// the file; and each name's last declaration.
    index: Option<FileIndex>,
}

/// Per model of a file, its base's index when that is an earlier model of the
/// file; and each name's last declaration.
type FileIndex = (Vec<Option<usize>>, HashMap<String, usize>);

impl Resolver {
    fn builtin(
        &mut self,
        name: &str,
        used_at: Option<&Loc>,
    ) -> Result<(Spec, usize), Vec<Diagnostic>> {
        let Some(text) = effc_catalog::source(name) else {
            let names: Vec<&str> = effc_catalog::names().collect();
            let mut d = match used_at {
                Some(loc) => Diagnostic::error(
                    format!("unknown base model `{name}`"),
                    loc.clone(),
                    "not a built-in model, nor a model of this file",
                ),
                None => Diagnostic::bare(format!("unknown model `{name}`")),
            };
            d = d.with_help(match closest(name, &names) {
                Some(c) => format!("did you mean `{c}`? built-in models: {}", names.join(", ")),
                None => format!("built-in models: {}", names.join(", ")),
            });
            return Err(vec![d]);
        };
        let source = Source::new(format!("<builtin {name}>"), text);
        // A built-in file is resolved on its own, with the cycle stack carried over.
        let mut sub = Resolver {
            stack: self.stack.clone(),
            ..Resolver::default()
        };
        sub.file(&source, Some(name))
    }

    fn file(
        &mut self,
        source: &Arc<Source>,
        model: Option<&str>,
    ) -> Result<(Spec, usize), Vec<Diagnostic>> {
        let file = effc_syntax::parse(source).map_err(|d| vec![d])?;
        let index = match model {
            Some(n) => file
                .models
                .iter()
                .position(|m| m.name.node == n)
                .ok_or_else(|| {
                    vec![Diagnostic::error(
                        format!("no model `{n}` in {}", source.name),
                        Loc::new(source, Span::new(0, 0)),
                        "",
                    )]
                })?,
            None => file
                .models
                .len()
                .checked_sub(1)
                .ok_or_else(|| vec![no_model(source)])?,
        };
        self.resolve_in(source, &file, index)
    }

    fn index(&mut self, file: &ast::File) -> &FileIndex {
        self.index.get_or_insert_with(|| {
            let mut last: HashMap<String, usize> = HashMap::new();
            let mut local = Vec::with_capacity(file.models.len());
            for (i, m) in file.models.iter().enumerate() {
                local.push(m.base.as_ref().and_then(|b| last.get(&b.node).copied()));
                last.insert(m.name.node.clone(), i);
            }
            (local, last)
        })
    }

    /// Resolves model `index` of `file`: first the chain of its not yet resolved
    /// local bases, root first, without recursion.
    fn resolve_in(
        &mut self,
        source: &Arc<Source>,
        file: &ast::File,
        index: usize,
    ) -> Result<(Spec, usize), Vec<Diagnostic>> {
        let mut chain = vec![index];
        loop {
            let i = *chain.last().expect("the chain starts with one model");
            if self.memo.contains_key(&i) {
                chain.pop();
                break;
            }
            let m = &file.models[i];
            if m.base.as_ref().is_some_and(|b| b.node == m.name.node) {
                break;
            }
            match self.index(file).0[i] {
                Some(b) => chain.push(b),
                None => break,
            }
        }
        let mut errors = vec![];
        for &i in chain.iter().rev() {
            let result = self.resolve_one(source, file, i);
            let entry = match result {
                Ok(r) => Some(r),
                Err(e) => {
                    errors.extend(e);
                    None
                }
            };
            self.memo.insert(i, entry);
        }
        match &self.memo[&index] {
            Some(r) => Ok(r.clone()),
            None => Err(errors),
        }
    }

    /// The chain of names from model `index` through its local bases, for messages.
    fn chain_names(&mut self, file: &ast::File, index: usize) -> String {
        let mut names = vec![];
        let mut at = Some(index);
        while let Some(i) = at {
            names.push(file.models[i].name.node.as_str());
            at = self.index(file).0[i];
            if at.is_none() {
                if let Some(b) = &file.models[i].base {
                    names.push(b.node.as_str());
                }
            }
        }
        if names.len() > 8 {
            let tail = names.split_off(names.len() - 3);
            names.truncate(4);
            names.push("...");
            names.extend(tail);
        }
        names.join(" -> ")
    }

    /// Resolves one model whose local base, if any, is already resolved.
    fn resolve_one(
        &mut self,
        source: &Arc<Source>,
        file: &ast::File,
        index: usize,
    ) -> Result<(Spec, usize), Vec<Diagnostic>> {
        let m = &file.models[index];
        let name_loc = Loc::new(source, m.name.span);
        let (spec, depth) = match &m.base {
            None => (Spec::defaults(&m.name.node, name_loc.clone()), 1),
            Some(base) => {
                let base_loc = Loc::new(source, base.span);
                if base.node == m.name.node {
                    return Err(vec![Diagnostic::error(
                        format!("model `{}` extends itself", m.name.node),
                        base_loc,
                        "a model cannot be its own base",
                    )
                    .with_help("name a built-in model (`effc list`) or a model declared earlier in this file")]);
                }
                let (mut s, base_depth) = match self.index(file).0[index] {
                    // A model of the same file declared before this one.
                    Some(b) => match &self.memo[&b] {
                        Some((s, d)) => (s.clone(), *d),
                        // The base failed; its errors are already reported.
                        None => return Err(vec![]),
                    },
                    None => {
                        if self
                            .index(file)
                            .1
                            .get(&base.node)
                            .is_some_and(|&last| last > index)
                        {
                            return Err(vec![Diagnostic::error(
                                format!(
                                    "model `{}` is declared after `{}`, which extends it",
                                    base.node, m.name.node
                                ),
                                base_loc,
                                "declared later in this file",
                            )
                            .with_help("declare a base model before the models that extend it")]);
                        }
                        if self.stack.contains(&base.node) || self.stack.contains(&m.name.node) {
                            return Err(vec![Diagnostic::error(
                                format!(
                                    "model `{}` extends itself ({} -> {} -> {})",
                                    m.name.node,
                                    self.stack.join(" -> "),
                                    m.name.node,
                                    base.node
                                ),
                                base_loc,
                                "cycle",
                            )]);
                        }
                        self.stack.push(m.name.node.clone());
                        let r = self.builtin(&base.node, Some(&base_loc));
                        self.stack.pop();
                        r?
                    }
                };
                let depth = base_depth + 1;
                if depth > MAX_EXTENDS_CHAIN {
                    let chain = self.chain_names(file, index);
                    return Err(vec![Diagnostic::error(
                        format!(
                            "`extends` chain too long: model `{}` is model {depth} of its chain, at most {MAX_EXTENDS_CHAIN} may extend each other",
                            m.name.node
                        ),
                        base_loc,
                        format!("model {depth} of the chain"),
                    )
                    .with_help(format!("the chain: {chain}; declare this model with its own settings instead of extending"))]);
                }
                s.base = Some(base.node.clone());
                s.name = m.name.node.clone();
                s.decl = name_loc.clone();
                (s, depth)
            }
        };
        self.resolve_decl(source, m, spec).map(|s| (s, depth))
    }

    fn resolve_decl(
        &mut self,
        source: &Arc<Source>,
        m: &ast::ModelDecl,
        mut spec: Spec,
    ) -> Result<Spec, Vec<Diagnostic>> {
        let name_loc = Loc::new(source, m.name.span);
        let mut errors = vec![];

        // Settings, each at most once per declaration.
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut phi_parts: [Option<f64>; 4] = [None; 4];
        for s in &m.settings {
            if let Some(first) = seen.get(s.key.node.as_str()) {
                errors.push(twice(source, &s.key, *first));
                continue;
            }
            seen.insert(&s.key.node, s.key.span);
            if let Err(d) = apply_model_setting(&mut spec, &mut phi_parts, source, s) {
                errors.push(d);
            }
        }

        // φ-scaling.
        if let Some(phi) = phi_parts[0] {
            for k in ["width", "depth", "resolution"] {
                if let Some(span) = seen.get(k) {
                    errors.push(
                        Diagnostic::error(
                            format!(
                                "`{k}` and `phi` both given: φ derives width, depth and resolution"
                            ),
                            Loc::new(source, *span),
                            format!("`{k}` given here"),
                        )
                        .with_note(Loc::new(source, seen["phi"]), "`phi` given here")
                        .with_help(format!(
                            "remove `{k}`, or remove `phi` and give width, depth and resolution"
                        )),
                    );
                }
            }
            let d = crate::scale::PAPER;
            let c = crate::scale::Coefficients {
                alpha: phi_parts[1].unwrap_or(d.alpha),
                beta: phi_parts[2].unwrap_or(d.beta),
                gamma: phi_parts[3].unwrap_or(d.gamma),
            };
            crate::scale::apply(&mut spec, phi, &c);
            let loc = Loc::new(source, seen["phi"]);
            for k in ["width", "depth", "resolution"] {
                spec.origin.insert(k, loc.clone());
            }
        } else if let Some(k) = ["alpha", "beta", "gamma"]
            .iter()
            .find(|k| seen.contains_key(**k))
        {
            errors.push(
                Diagnostic::error(
                    format!("`{k}` given without `phi`"),
                    Loc::new(source, seen[k]),
                    "unused without `phi`",
                )
                .with_help("α, β and γ only matter with `phi = N`"),
            );
        }

        // Blocks.
        let block_spans: Vec<Span> = m.blocks.iter().map(|b| b.span).collect();
        errors.extend(section_twice(source, "blocks", &block_spans));
        if let Some(b) = m.blocks.first() {
            if b.strings.is_empty() {
                errors.push(
                    Diagnostic::error(
                        "`blocks` is empty",
                        Loc::new(source, b.span),
                        "no block strings",
                    )
                    .with_help("give one block string per stage, e.g. r1_k3_s1_e1_i32_o16"),
                );
            }
            let mut decoded = vec![];
            for s in &b.strings {
                match effc_syntax::block::decode(source, s) {
                    Ok(a) => decoded.push(a),
                    Err(e) => errors.extend(e),
                }
            }
            spec.blocks = decoded;
            spec.blocks_source = source.clone();
            spec.origin.insert("blocks", Loc::new(source, b.span));
        } else if spec.blocks.is_empty() && m.base.is_none() {
            errors.push(
                Diagnostic::error(format!("model `{}` has no `blocks`", m.name.node), name_loc.clone(), "no blocks")
                    .with_help("add `blocks { ... }` with one block string per stage, or `extends` a model that has them"),
            );
        }

        // Training.
        let training_spans: Vec<Span> = m.training.iter().map(|t| t.span).collect();
        errors.extend(section_twice(source, "training", &training_spans));
        if let Some(t) = m.training.first() {
            let mut seen: HashMap<&str, Span> = HashMap::new();
            for s in &t.settings {
                if let Some(first) = seen.get(s.key.node.as_str()) {
                    errors.push(twice(source, &s.key, *first));
                    continue;
                }
                seen.insert(&s.key.node, s.key.span);
                if let Err(d) = apply_training_setting(&mut spec.training, source, s) {
                    errors.push(d);
                }
            }
        }

        if errors.is_empty() {
            Ok(spec)
        } else {
            Err(errors)
        }
    }
}

/// A section (`blocks`, `training`) written more than once in one model.
fn section_twice(source: &Arc<Source>, what: &str, spans: &[Span]) -> Option<Diagnostic> {
    let [first, second, ..] = spans else {
        return None;
    };
    Some(
        Diagnostic::error(
            format!("`{what}` given twice"),
            Loc::new(source, *second),
            format!("second `{what}` section"),
        )
        .with_note(Loc::new(source, *first), "first given here"),
    )
}

fn twice(source: &Arc<Source>, key: &Spanned<String>, first: Span) -> Diagnostic {
    Diagnostic::error(
        format!("setting `{}` given twice", key.node),
        Loc::new(source, key.span),
        "given again here",
    )
    .with_note(Loc::new(source, first), "first given here")
    .with_help("remove one of them")
}

/// The closest name by edit distance, when it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    fn dist(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let v = (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1);
                cur.push(v);
            }
            prev = cur;
        }
        prev[b.len()]
    }
    candidates
        .iter()
        .map(|c| (dist(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

struct Ctx<'a> {
    source: &'a Arc<Source>,
    s: &'a Setting,
}

impl Ctx<'_> {
    fn key(&self) -> &str {
        &self.s.key.node
    }
    fn value_loc(&self) -> Loc {
        Loc::new(self.source, self.s.value.span)
    }
    fn bad(&self, expected: &str) -> Diagnostic {
        Diagnostic::error(
            format!(
                "`{}` takes {expected}, got {}",
                self.key(),
                self.s.value.node.describe()
            ),
            self.value_loc(),
            format!("expected {expected}"),
        )
    }
    fn number(&self) -> Result<f64, Diagnostic> {
        match &self.s.value.node {
            Value::Number(v, _) => Ok(*v),
            _ => Err(self.bad("a number")),
        }
    }
    fn in_range(
        &self,
        lo: f64,
        hi: f64,
        lo_open: bool,
        hi_open: bool,
        what: &str,
    ) -> Result<f64, Diagnostic> {
        let v = self.number()?;
        let ok =
            (if lo_open { v > lo } else { v >= lo }) && (if hi_open { v < hi } else { v <= hi });
        if ok {
            Ok(v)
        } else {
            let range = format!(
                "{}{lo}, {hi}{}",
                if lo_open { "(" } else { "[" },
                if hi_open { ")" } else { "]" }
            );
            Err(Diagnostic::error(
                format!("`{}` must be in {range}, got {v}", self.key()),
                self.value_loc(),
                format!("{what} out of range"),
            ))
        }
    }
    fn whole(&self, lo: usize, hi: usize) -> Result<usize, Diagnostic> {
        let v = self.number()?;
        if v.fract() != 0.0 {
            return Err(self.bad("a whole number"));
        }
        if v < lo as f64 || v > hi as f64 {
            return Err(Diagnostic::error(
                format!("`{}` must be between {lo} and {hi}, got {v}", self.key()),
                self.value_loc(),
                "out of range",
            ));
        }
        Ok(v as usize)
    }
    fn word<'w>(&self, choices: &[&'w str]) -> Result<&'w str, Diagnostic> {
        let expected = choices
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ");
        match &self.s.value.node {
            Value::Word(w) => choices
                .iter()
                .find(|c| **c == w.as_str())
                .copied()
                .ok_or_else(|| {
                    let mut d = Diagnostic::error(
                        format!("`{}` must be one of {expected}, got `{w}`", self.key()),
                        self.value_loc(),
                        "unknown value",
                    );
                    if let Some(c) = closest(w, choices) {
                        d = d.with_help(format!("did you mean `{c}`?"));
                    }
                    d
                }),
            _ => Err(self.bad(&format!("one of {expected}"))),
        }
    }
    fn bool(&self) -> Result<bool, Diagnostic> {
        Ok(self.word(&["true", "false"])? == "true")
    }
    fn triple(&self, positive: bool) -> Result<[f64; 3], Diagnostic> {
        match &self.s.value.node {
            Value::List(items) if items.len() == 3 => {
                let mut out = [0.0; 3];
                for (o, it) in out.iter_mut().zip(items) {
                    if positive && it.node <= 0.0 {
                        return Err(Diagnostic::error(
                            format!("`{}` values must be positive, got {}", self.key(), it.node),
                            Loc::new(self.source, it.span),
                            "not positive",
                        ));
                    }
                    *o = it.node;
                }
                Ok(out)
            }
            Value::List(items) => Err(Diagnostic::error(
                format!(
                    "`{}` needs 3 values (one per RGB channel), got {}",
                    self.key(),
                    items.len()
                ),
                self.value_loc(),
                "expected 3 values",
            )),
            _ => Err(self.bad("a list of 3 numbers")),
        }
    }
    fn ramp(&self, lo: f64, hi: f64) -> Result<Ramp, Diagnostic> {
        let (a, b) = match &self.s.value.node {
            Value::Number(v, _) => (*v, *v),
            Value::Range(a, b) => (*a, *b),
            _ => return Err(self.bad("a number or a range `start .. end`")),
        };
        for v in [a, b] {
            if v < lo || v > hi {
                return Err(Diagnostic::error(
                    format!("`{}` must be in [{lo}, {hi}], got {v}", self.key()),
                    self.value_loc(),
                    "out of range",
                ));
            }
        }
        Ok(Ramp { start: a, end: b })
    }
    fn unknown(&self, keys: &[(&str, &str)], section: &str) -> Diagnostic {
        let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
        let help = match closest(self.key(), &names) {
            Some(c) => format!(
                "did you mean `{c}`? {section} settings: {}",
                names.join(", ")
            ),
            None => format!("{section} settings: {}", names.join(", ")),
        };
        Diagnostic::error(
            format!("unknown setting `{}`", self.key()),
            Loc::new(self.source, self.s.key.span),
            "unknown setting",
        )
        .with_help(help)
    }
}

fn apply_model_setting(
    spec: &mut Spec,
    phi: &mut [Option<f64>; 4],
    source: &Arc<Source>,
    s: &Setting,
) -> Result<(), Diagnostic> {
    let c = Ctx { source, s };
    let key: &'static str = match MODEL_KEYS.iter().find(|(k, _)| *k == c.key()) {
        Some((k, _)) => k,
        None => return Err(c.unknown(MODEL_KEYS, "model")),
    };
    match key {
        "rounding" => {
            spec.rounding = if c.word(&["v1", "v2"])? == "v1" {
                Rounding::V1
            } else {
                Rounding::V2
            };
        }
        "width" => spec.width = c.in_range(0.0, 64.0, true, false, "width")?,
        "depth" => spec.depth = c.in_range(0.0, 64.0, true, false, "depth")?,
        "resolution" => spec.resolution = c.whole(1, 16384)?,
        "phi" => phi[0] = Some(c.in_range(-8.0, 16.0, false, false, "phi")?),
        "alpha" => phi[1] = Some(c.in_range(0.0, 4.0, true, false, "alpha")?),
        "beta" => phi[2] = Some(c.in_range(0.0, 4.0, true, false, "beta")?),
        "gamma" => phi[3] = Some(c.in_range(0.0, 4.0, true, false, "gamma")?),
        "dropout" => spec.dropout = c.in_range(0.0, 1.0, false, true, "dropout")?,
        "drop_path" => spec.drop_path = c.in_range(0.0, 1.0, false, true, "drop_path")?,
        "stem" => spec.stem = Some(c.whole(1, 1 << 20)?),
        "head" => spec.head = c.whole(1, 1 << 20)?,
        "fix_stem" => spec.fix_stem = c.bool()?,
        "fix_head" => spec.fix_head = c.bool()?,
        "fix_first_last" => spec.fix_first_last = c.bool()?,
        "activation" => {
            spec.activation = match c.word(&["swish", "silu", "relu", "relu6"])? {
                "relu" => Activation::Relu,
                "relu6" => Activation::Relu6,
                _ => Activation::Swish,
            }
        }
        "padding" => {
            spec.padding = if c.word(&["same", "symmetric"])? == "same" {
                PaddingMode::Same
            } else {
                PaddingMode::Symmetric
            }
        }
        "bn_eps" => spec.bn_eps = c.in_range(0.0, 1.0, true, true, "bn_eps")?,
        "classes" => spec.classes = c.whole(0, 1 << 24)?,
        "mean" => spec.mean = c.triple(false)?,
        "std" => spec.std = c.triple(true)?,
        _ => unreachable!("every key of MODEL_KEYS is handled"),
    }
    spec.origin.insert(key, Loc::new(source, s.value.span));
    Ok(())
}

fn apply_training_setting(
    t: &mut Training,
    source: &Arc<Source>,
    s: &Setting,
) -> Result<(), Diagnostic> {
    let c = Ctx { source, s };
    match c.key() {
        "size" => t.size = Some(c.whole(1, 16384)?),
        "start_size" => t.start_size = c.whole(1, 16384)?,
        "eval_size" => t.eval_size = Some(c.whole(1, 16384)?),
        "stages" => t.stages = c.whole(1, 1000)?,
        "randaugment" => t.randaugment = Some(c.ramp(0.0, 100.0)?),
        "mixup" => t.mixup = Some(c.ramp(0.0, 100.0)?),
        "dropout" => t.dropout = Some(c.ramp(0.0, 0.999)?),
        _ => return Err(c.unknown(TRAINING_KEYS, "training")),
    }
    Ok(())
}
