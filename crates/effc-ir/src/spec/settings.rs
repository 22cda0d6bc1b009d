//! One setting of a model or of its `training` section: its value read, checked
//! and applied to a [`Spec`], or a diagnostic that says where and what.

use super::*;
use crate::ranges;

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
    fn in_range(&self, range: crate::ranges::Range, what: &str) -> Result<f64, Diagnostic> {
        let v = self.number()?;
        if range.contains(v) {
            Ok(v)
        } else {
            Err(Diagnostic::error(
                format!("`{}` must be in {range}, got {v}", self.key()),
                self.value_loc(),
                format!("{what} out of range"),
            ))
        }
    }
    fn whole(&self, range: std::ops::RangeInclusive<usize>) -> Result<usize, Diagnostic> {
        let (lo, hi) = (*range.start(), *range.end());
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
    /// A list of feature levels: whole numbers 0–4, each once.
    fn levels(&self) -> Result<Vec<usize>, Diagnostic> {
        let max = crate::features::MAX_LEVEL;
        let Value::List(items) = &self.s.value.node else {
            return Err(self.bad("a list of feature levels, e.g. [1, 2, 3, 4]"));
        };
        if items.is_empty() {
            return Err(Diagnostic::error(
                format!("`{}` needs at least one level", self.key()),
                self.value_loc(),
                "empty list",
            )
            .with_help(format!("levels are 0 to {max}, e.g. [1, 2, 3, 4]")));
        }
        let mut out: Vec<usize> = vec![];
        for it in items {
            let v = it.node;
            if v.fract() != 0.0 || v < 0.0 || v > max as f64 {
                return Err(Diagnostic::error(
                    format!("feature level must be a whole number from 0 to {max}, got {v}"),
                    Loc::new(self.source, it.span),
                    "out of range",
                )
                .with_help(format!(
                    "level i is the map at reduction 2^(i+1): 0 to {max}"
                )));
            }
            if out.contains(&(v as usize)) {
                return Err(Diagnostic::error(
                    format!("feature level {v} is listed twice"),
                    Loc::new(self.source, it.span),
                    "duplicate level",
                ));
            }
            out.push(v as usize);
        }
        Ok(out)
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

pub(super) fn apply_model_setting(
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
        "width" => spec.width = c.in_range(ranges::COEFFICIENT, "width")?,
        "depth" => spec.depth = c.in_range(ranges::COEFFICIENT, "depth")?,
        "resolution" => spec.resolution = c.whole(ranges::RESOLUTION)?,
        "phi" => phi[0] = Some(c.in_range(ranges::PHI, "phi")?),
        "alpha" => phi[1] = Some(c.in_range(ranges::BASE, "alpha")?),
        "beta" => phi[2] = Some(c.in_range(ranges::BASE, "beta")?),
        "gamma" => phi[3] = Some(c.in_range(ranges::BASE, "gamma")?),
        "dropout" => spec.dropout = c.in_range(ranges::RATE, "dropout")?,
        "drop_path" => spec.drop_path = c.in_range(ranges::RATE, "drop_path")?,
        "stem" => spec.stem = Some(c.whole(ranges::CHANNELS)?),
        "head" => spec.head = c.whole(ranges::CHANNELS)?,
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
        "bn_eps" => spec.bn_eps = c.in_range(ranges::BN_EPS, "bn_eps")?,
        "classes" => spec.classes = c.whole(ranges::CLASSES)?,
        "features" => spec.features = Some(c.levels()?),
        "mean" => spec.mean = c.triple(false)?,
        "std" => spec.std = c.triple(true)?,
        _ => unreachable!("every key of MODEL_KEYS is handled"),
    }
    spec.origin.insert(key, Loc::new(source, s.value.span));
    Ok(())
}

pub(super) fn apply_training_setting(
    t: &mut Training,
    source: &Arc<Source>,
    s: &Setting,
) -> Result<(), Diagnostic> {
    let c = Ctx { source, s };
    match c.key() {
        "size" => t.size = Some(c.whole(ranges::RESOLUTION)?),
        "start_size" => t.start_size = c.whole(ranges::RESOLUTION)?,
        "eval_size" => t.eval_size = Some(c.whole(ranges::RESOLUTION)?),
        "stages" => t.stages = c.whole(1..=1000)?,
        "randaugment" => t.randaugment = Some(c.ramp(0.0, 100.0)?),
        "mixup" => t.mixup = Some(c.ramp(0.0, 100.0)?),
        "dropout" => t.dropout = Some(c.ramp(0.0, 0.999)?),
        _ => return apply_recipe_setting(&mut t.recipe, &c),
    }
    Ok(())
}

/// A recipe setting of a `training` section (see [`TRAINING_KEYS`]).
fn apply_recipe_setting(r: &mut Recipe, c: &Ctx) -> Result<(), Diagnostic> {
    let (rate, every) = match r.schedule {
        Some(Schedule::Exponential { rate, every }) => (rate, every),
        _ => (0.97, 2.4),
    };
    match c.key() {
        "optimizer" => {
            r.optimizer = Some(match c.word(&["rmsproptf", "sgd", "nesterov", "adamw"])? {
                "sgd" => Optimizer::Sgd,
                "nesterov" => Optimizer::Nesterov,
                "adamw" => Optimizer::AdamW,
                _ => Optimizer::RmspropTf,
            })
        }
        "lr" => r.lr = Some(c.in_range(ranges::LR, "lr")?),
        "lr_batch" => r.lr_batch = Some(c.whole(1..=1 << 24)?),
        "batch" => r.batch = Some(c.whole(1..=1 << 24)?),
        "epochs" => r.epochs = Some(c.whole(1..=1_000_000)? as u64),
        "schedule" => {
            r.schedule = Some(match c.word(&["cosine", "exponential", "constant"])? {
                "exponential" => Schedule::Exponential { rate, every },
                "constant" => Schedule::Constant,
                _ => Schedule::Cosine,
            })
        }
        "decay_rate" | "decay_epochs" => {
            let v = if c.key() == "decay_rate" {
                c.in_range(ranges::FRACTION, "decay_rate")?
            } else {
                c.in_range(ranges::EPOCHS, "decay_epochs")?
            };
            let (rate, every) = if c.key() == "decay_rate" {
                (v, every)
            } else {
                (rate, v)
            };
            r.schedule = Some(Schedule::Exponential { rate, every });
        }
        "warmup" => r.warmup = Some(c.in_range(ranges::EPOCHS, "warmup")?),
        "weight_decay" => r.weight_decay = Some(c.in_range(ranges::WEIGHT_DECAY, "weight_decay")?),
        "label_smoothing" => {
            r.label_smoothing = Some(c.in_range(ranges::FRACTION, "label_smoothing")?)
        }
        "bn_momentum" => r.bn_momentum = Some(c.in_range(ranges::FRACTION, "bn_momentum")?),
        "ema" => r.ema = Some(c.in_range(ranges::FRACTION, "ema")?),
        _ => return Err(c.unknown(TRAINING_KEYS, "training")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::spec::{Optimizer, Schedule, Spec};

    #[test]
    fn a_training_section_states_a_recipe() {
        let s = Spec::parse(
            "t.enet",
            "model t extends b0 {\n  training {\n    optimizer = adamw\n    lr = 0.001\n    lr_batch = 64\n    \
             decay_epochs = 3\n    epochs = 20\n    warmup = 1.5\n    label_smoothing = 0.2\n  }\n}\n",
        )
        .unwrap();
        let r = &s.training.recipe;
        assert_eq!(r.optimizer, Some(Optimizer::AdamW));
        assert_eq!(r.lr_at(128), Some(0.002));
        assert_eq!(r.epochs, Some(20));
        assert_eq!(r.warmup, Some(1.5));
        assert_eq!(r.label_smoothing, Some(0.2));
        // decay_epochs keeps b0's decay rate; what t does not state is b0's.
        assert_eq!(
            r.schedule,
            Some(Schedule::Exponential {
                rate: 0.97,
                every: 3.0
            })
        );
        assert_eq!(r.weight_decay, Some(1e-5));
        assert_eq!(r.ema, Some(0.9999));
    }

    #[test]
    fn the_builtins_carry_the_papers_recipes() {
        for name in ["b0", "b7", "lite0", "v2-b0", "v2-s", "v2-l"] {
            let r = Spec::builtin(name).unwrap().training.recipe;
            assert_eq!(r.optimizer, Some(Optimizer::RmspropTf), "{name}");
            // 0.256 at 4096 images: 0.016 at 256.
            assert!((r.lr_at(256).unwrap() - 0.016).abs() < 1e-12, "{name}");
            assert_eq!(r.bn_momentum, Some(0.01), "{name}");
            assert_eq!(r.epochs, Some(350), "{name}");
        }
    }

    #[test]
    fn recipe_values_out_of_range_are_errors() {
        for (setting, says) in [
            ("lr = 0", "lr"),
            ("optimizer = adam", "adamw"),
            ("label_smoothing = 1.5", "label_smoothing"),
            ("epochs = 0", "epochs"),
        ] {
            let text = format!("model t extends b0 {{\n  training {{\n    {setting}\n  }}\n}}\n");
            let e = Spec::parse("t.enet", &text).unwrap_err();
            let shown = e.render(false);
            assert!(shown.contains(says), "{setting}: {shown}");
        }
    }
}
