//! Block strings: `r2_k3_s22_e6_i16_o24_se0.25`, decoded token by token with spans.

use std::sync::Arc;

use crate::ast::Spanned;
use crate::diag::{Diagnostic, Loc, Source, Span};

/// A decoded block string, before compound scaling.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockArgs {
    /// The whole block string as written.
    pub text: String,
    pub span: Span,
    pub repeats: Spanned<usize>,
    pub kernel: Spanned<usize>,
    pub stride: Spanned<usize>,
    pub expand: Spanned<f64>,
    pub input: Spanned<usize>,
    pub output: Spanned<usize>,
    pub se: Option<Spanned<f64>>,
    /// `c1`: Fused-MBConv.
    pub fused: bool,
    pub noskip: bool,
}

const KEYS_HELP: &str = "a block string is tokens joined by `_`: r<repeats> k<kernel> s<stride> \
e<expansion> i<in channels> o<out channels> se<ratio> c<0|1> noskip";

struct Tok<'a> {
    key: &'a str,
    value: &'a str,
    span: Span,
    value_span: Span,
}

fn tokens(text: &str, span: Span) -> Vec<Tok<'_>> {
    let mut out = vec![];
    let mut offset = 0;
    for part in text.split('_') {
        let key_len = part
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(part.len());
        out.push(Tok {
            key: &part[..key_len],
            value: &part[key_len..],
            span: span.sub(offset, part.len()),
            value_span: span.sub(offset + key_len, part.len() - key_len),
        });
        offset += part.len() + 1;
    }
    out
}

/// Decodes one block string. Every problem is reported, each at its token.
pub fn decode(source: &Arc<Source>, s: &Spanned<String>) -> Result<BlockArgs, Vec<Diagnostic>> {
    let mut d = Decoder {
        source,
        errors: vec![],
    };
    let mut f = Fields::default();
    let mut seen: Vec<(&str, Span)> = vec![];
    for t in tokens(&s.node, s.span) {
        if t.key.is_empty() && t.value.is_empty() {
            d.error(
                "empty token in block string".into(),
                Span::new(t.span.start.saturating_sub(1), t.span.start.max(1)),
                "two `_` in a row, or a `_` at an end",
            );
            continue;
        }
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == t.key) {
            let e = Diagnostic::error(
                format!("`{}` given twice in block string `{}`", t.key, s.node),
                Loc::new(source, t.span),
                "given again here",
            )
            .with_note(Loc::new(source, *first), "first given here");
            d.errors.push(e);
            continue;
        }
        seen.push((t.key, t.span));
        d.token(&t, &s.node, &mut f);
    }
    for (key, what, have) in [
        ("k", "kernel size", f.k.is_some()),
        ("i", "input channels", f.i.is_some()),
        ("o", "output channels", f.o.is_some()),
    ] {
        if !have && !seen.iter().any(|(k, _)| *k == key) {
            d.missing(s, key, what);
        }
    }
    if !d.errors.is_empty() {
        return Err(d.errors);
    }
    let whole = |v: usize| Spanned::new(v, s.span);
    Ok(BlockArgs {
        text: s.node.clone(),
        span: s.span,
        repeats: f.r.unwrap_or_else(|| whole(1)),
        kernel: f.k.expect("checked above"),
        stride: f.st.unwrap_or_else(|| whole(1)),
        expand: f.e.unwrap_or(Spanned::new(1.0, s.span)),
        input: f.i.expect("checked above"),
        output: f.o.expect("checked above"),
        se: f.se,
        fused: f.fused,
        noskip: f.noskip,
    })
}

/// The values decoded so far.
#[derive(Default)]
struct Fields {
    r: Option<Spanned<usize>>,
    k: Option<Spanned<usize>>,
    st: Option<Spanned<usize>>,
    e: Option<Spanned<f64>>,
    i: Option<Spanned<usize>>,
    o: Option<Spanned<usize>>,
    se: Option<Spanned<f64>>,
    fused: bool,
    noskip: bool,
}

/// Decodes tokens, collecting every problem.
struct Decoder<'a> {
    source: &'a Arc<Source>,
    errors: Vec<Diagnostic>,
}

impl Decoder<'_> {
    fn error(&mut self, msg: String, span: Span, label: &str) {
        self.errors
            .push(Diagnostic::error(msg, Loc::new(self.source, span), label));
    }

    /// Where a bad value is shown: the value, or the whole token when it has none.
    fn value_loc(&self, t: &Tok) -> Loc {
        let span = if t.value.is_empty() {
            t.span
        } else {
            t.value_span
        };
        Loc::new(self.source, span)
    }

    /// One token (not empty, not seen before) into its field.
    fn token(&mut self, t: &Tok, text: &str, f: &mut Fields) {
        match t.key {
            "r" => f.r = self.int(t, "repeats"),
            "k" => f.k = self.kernel(t),
            "s" => f.st = self.stride(t),
            "e" => f.e = self.expansion(t),
            "i" => f.i = self.int(t, "input channels"),
            "o" => f.o = self.int(t, "output channels"),
            "se" => f.se = self.se_ratio(t),
            "c" => match t.value {
                "0" => f.fused = false,
                "1" => f.fused = true,
                _ => self.error(
                    format!(
                        "conv type must be `c0` (MBConv) or `c1` (Fused-MBConv), got `c{}`",
                        t.value
                    ),
                    t.span,
                    "unknown conv type",
                ),
            },
            "noskip" if t.value.is_empty() => f.noskip = true,
            _ => self.errors.push(
                Diagnostic::error(
                    format!("unknown key `{}` in block string `{}`", t.key, text),
                    Loc::new(self.source, t.span),
                    "unknown key",
                )
                .with_help(KEYS_HELP),
            ),
        }
    }

    /// The largest value a key's whole number may have.
    fn limit(key: &str) -> usize {
        match key {
            "k" => 63,
            "r" => 1024,
            "s" => 8,
            _ => 1 << 16,
        }
    }

    /// A whole number from 1 to the key's limit.
    fn int(&mut self, t: &Tok, what: &str) -> Option<Spanned<usize>> {
        let limit = Self::limit(t.key);
        match t.value.parse::<usize>() {
            Ok(0) => {
                self.errors.push(
                    Diagnostic::error(
                        format!("{what} must be at least 1, got `{}{}`", t.key, t.value),
                        Loc::new(self.source, t.span),
                        format!("zero {what}"),
                    )
                    .with_help(format!("write `{}1` or more", t.key)),
                );
                None
            }
            Ok(v) if v > limit => {
                self.error(
                    format!("{what} {v} is too large (at most {limit})"),
                    t.span,
                    "too large",
                );
                None
            }
            Ok(v) => Some(Spanned::new(v, t.span)),
            Err(_) => {
                let loc = self.value_loc(t);
                self.errors.push(Diagnostic::error(
                    format!(
                        "`{}` needs a whole number ({what}), got `{}`",
                        t.key, t.value
                    ),
                    loc,
                    "expected a whole number",
                ));
                None
            }
        }
    }

    /// An odd kernel size.
    fn kernel(&mut self, t: &Tok) -> Option<Spanned<usize>> {
        let k = self.int(t, "kernel size")?;
        if k.node % 2 == 0 {
            self.errors.push(
                Diagnostic::error(
                    format!("kernel size must be odd, got {}", k.node),
                    Loc::new(self.source, t.span),
                    "even kernel",
                )
                .with_help("even kernels have no centre pixel; use 3, 5 or 7"),
            );
            return None;
        }
        Some(k)
    }

    /// `s2` or `s22` (two equal digits: square strides only).
    fn stride(&mut self, t: &Tok) -> Option<Spanned<usize>> {
        let digits = t.value;
        if digits.len() > 2 {
            self.error(
                format!(
                    "stride `s{digits}` has {} digits; write one (`s2`) or two equal ones (`s22`)",
                    digits.len()
                ),
                t.span,
                "bad stride",
            );
            return None;
        }
        if digits.len() != 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return self.int(t, "stride");
        }
        let (a, b) = (&digits[..1], &digits[1..]);
        if a != b {
            self.errors.push(
                Diagnostic::error(
                    format!("unequal stride digits `s{digits}`: effc supports only square strides"),
                    Loc::new(self.source, t.span),
                    "the two digits differ",
                )
                .with_help(format!(
                    "write `s{a}{a}` or `s{b}{b}`, or one digit (`s{a}`)"
                )),
            );
            return None;
        }
        let v: usize = a.parse().expect("an ASCII digit parses");
        let limit = Self::limit(t.key);
        if v == 0 {
            self.error(
                format!("stride must be at least 1, got `s{digits}`"),
                t.span,
                "zero stride",
            );
            return None;
        }
        if v > limit {
            self.error(
                format!("stride {v} is too large (at most {limit}), got `s{digits}`"),
                t.span,
                "too large",
            );
            return None;
        }
        Some(Spanned::new(v, t.span))
    }

    /// An expansion ratio in [1, 64].
    fn expansion(&mut self, t: &Tok) -> Option<Spanned<f64>> {
        match t.value.parse::<f64>() {
            Ok(v) if v.is_finite() && (1.0..=64.0).contains(&v) => Some(Spanned::new(v, t.span)),
            Ok(_) => {
                self.errors.push(
                    Diagnostic::error(
                        format!("expansion ratio must be in [1, 64], got `e{}`", t.value),
                        Loc::new(self.source, t.span),
                        "bad expansion",
                    )
                    .with_help("`e1` means no expansion"),
                );
                None
            }
            Err(_) => {
                let loc = self.value_loc(t);
                self.errors.push(Diagnostic::error(
                    format!("`e` needs a number (expansion ratio), got `{}`", t.value),
                    loc,
                    "expected a number",
                ));
                None
            }
        }
    }

    /// A squeeze-excitation ratio in (0, 1].
    fn se_ratio(&mut self, t: &Tok) -> Option<Spanned<f64>> {
        match t.value.parse::<f64>() {
            Ok(v) if v > 0.0 && v <= 1.0 => Some(Spanned::new(v, t.span)),
            Ok(v) => {
                self.errors.push(
                    Diagnostic::error(
                        format!("squeeze-excitation ratio must be in (0, 1], got {v}"),
                        Loc::new(self.source, t.span),
                        "out of range",
                    )
                    .with_help("the papers use `se0.25`; leave `se` out for no squeeze-excitation"),
                );
                None
            }
            Err(_) => {
                let loc = self.value_loc(t);
                self.errors.push(Diagnostic::error(
                    format!("`se` needs a ratio in (0, 1], got `{}`", t.value),
                    loc,
                    "expected a number",
                ));
                None
            }
        }
    }

    fn missing(&mut self, s: &Spanned<String>, key: &str, what: &str) {
        self.errors.push(
            Diagnostic::error(
                format!("block string `{}` has no `{key}` ({what})", s.node),
                Loc::new(self.source, s.span),
                format!("`{key}` missing"),
            )
            .with_help(KEYS_HELP),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Result<BlockArgs, Vec<Diagnostic>> {
        let src = Source::new("t.enet", text);
        decode(
            &src,
            &Spanned::new(text.to_string(), Span::new(0, text.len())),
        )
    }

    #[test]
    fn v1_and_v2_strides() {
        let a = dec("r2_k3_s22_e6_i16_o24_se0.25").unwrap();
        assert_eq!((a.repeats.node, a.kernel.node, a.stride.node), (2, 3, 2));
        assert_eq!((a.input.node, a.output.node), (16, 24));
        assert_eq!(a.se.unwrap().node, 0.25);
        let b = dec("r4_k3_s2_e4_i24_o48_c1").unwrap();
        assert!(b.fused && b.se.is_none() && b.stride.node == 2 && b.expand.node == 4.0);
    }

    #[test]
    fn tokens_in_any_order() {
        let a = dec("o24_i16_se0.25_e6_s22_k3_r2_noskip").unwrap();
        assert!(a.noskip);
        assert_eq!(a.output.node, 24);
    }

    #[test]
    fn errors_point_at_tokens() {
        let e = dec("r1_k4_s12_e6_i0_o16_se1.5_x3").unwrap_err();
        let msgs: Vec<_> = e.iter().map(|d| d.message.clone()).collect();
        assert_eq!(msgs.len(), 5, "{msgs:?}");
        assert!(msgs[0].contains("odd"));
        assert!(msgs[1].contains("unequal stride"));
        assert!(msgs[2].contains("input channels"));
        assert!(msgs[3].contains("squeeze-excitation"));
        assert!(msgs[4].contains("unknown key `x`"));
        assert_eq!(e[4].labels[0].0.span, Span::new(26, 28));
    }

    #[test]
    fn one_and_two_digit_strides_have_the_same_limit() {
        for s in ["s9", "s99"] {
            let e = dec(&format!("r1_k3_{s}_i8_o8")).unwrap_err();
            assert_eq!(e.len(), 1, "{s}");
            assert!(
                e[0].message
                    .starts_with("stride 9 is too large (at most 8)"),
                "{s}: {}",
                e[0].message
            );
        }
        assert_eq!(dec("r1_k3_s88_i8_o8").unwrap().stride.node, 8);
        assert_eq!(dec("r1_k3_s8_i8_o8").unwrap().stride.node, 8);
    }
}
