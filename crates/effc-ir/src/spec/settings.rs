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
        _ => return Err(c.unknown(TRAINING_KEYS, "training")),
    }
    Ok(())
}
