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
    let mut errors = vec![];
    let err = |errors: &mut Vec<Diagnostic>, msg: String, span: Span, label: &str| {
        errors.push(Diagnostic::error(msg, Loc::new(source, span), label));
    };
    let mut seen: Vec<(&str, Span)> = vec![];
    let mut r = None;
    let mut k = None;
    let mut st = None;
    let mut e = None;
    let mut i = None;
    let mut o = None;
    let mut se = None;
    let mut fused = false;
    let mut noskip = false;

    for t in tokens(&s.node, s.span) {
        if t.key.is_empty() && t.value.is_empty() {
            err(
                &mut errors,
                "empty token in block string".into(),
                Span::new(t.span.start.saturating_sub(1), t.span.start.max(1)),
                "two `_` in a row, or a `_` at an end",
            );
            continue;
        }
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == t.key) {
            let d = Diagnostic::error(
                format!("`{}` given twice in block string `{}`", t.key, s.node),
                Loc::new(source, t.span),
                "given again here",
            )
            .with_note(Loc::new(source, *first), "first given here");
            errors.push(d);
            continue;
        }
        seen.push((t.key, t.span));
        let limit = match t.key {
            "k" => 63,
            "r" => 1024,
            "s" => 8,
            _ => 1 << 16,
        };
        let int = |errors: &mut Vec<Diagnostic>, what: &str| -> Option<Spanned<usize>> {
            match t.value.parse::<usize>() {
                Ok(0) => {
                    errors.push(
                        Diagnostic::error(
                            format!("{what} must be at least 1, got `{}{}`", t.key, t.value),
                            Loc::new(source, t.span),
                            format!("zero {what}"),
                        )
                        .with_help(format!("write `{}1` or more", t.key)),
                    );
                    None
                }
                Ok(v) if v > limit => {
                    errors.push(Diagnostic::error(
                        format!("{what} {v} is too large (at most {limit})"),
                        Loc::new(source, t.span),
                        "too large",
                    ));
                    None
                }
                Ok(v) => Some(Spanned::new(v, t.span)),
                Err(_) => {
                    errors.push(Diagnostic::error(
                        format!(
                            "`{}` needs a whole number ({what}), got `{}`",
                            t.key, t.value
                        ),
                        Loc::new(
                            source,
                            if t.value.is_empty() {
                                t.span
                            } else {
                                t.value_span
                            },
                        ),
                        "expected a whole number",
                    ));
                    None
                }
            }
        };
        match t.key {
            "r" => r = int(&mut errors, "repeats"),
            "k" => {
                k = int(&mut errors, "kernel size");
                if let Some(kv) = &k {
                    if kv.node % 2 == 0 {
                        errors.push(
                            Diagnostic::error(
                                format!("kernel size must be odd, got {}", kv.node),
                                Loc::new(source, t.span),
                                "even kernel",
                            )
                            .with_help("even kernels have no centre pixel; use 3, 5 or 7"),
                        );
                        k = None;
                    }
                }
            }
            "s" => {
                let digits = t.value;
                if digits.len() == 2 && digits.bytes().all(|b| b.is_ascii_digit()) {
                    let (a, b) = (&digits[..1], &digits[1..]);
                    if a != b {
                        errors.push(
                            Diagnostic::error(
                                format!("unequal stride digits `s{digits}`: effc supports only square strides"),
                                Loc::new(source, t.span),
                                "the two digits differ",
                            )
                            .with_help(format!("write `s{a}{a}` or `s{b}{b}`, or one digit (`s{a}`)")),
                        );
                    } else {
                        let v: usize = a.parse().expect("an ASCII digit parses");
                        if v == 0 {
                            errors.push(Diagnostic::error(
                                format!("stride must be at least 1, got `s{digits}`"),
                                Loc::new(source, t.span),
                                "zero stride",
                            ));
                        } else if v > limit {
                            errors.push(Diagnostic::error(
                                format!(
                                    "stride {v} is too large (at most {limit}), got `s{digits}`"
                                ),
                                Loc::new(source, t.span),
                                "too large",
                            ));
                        } else {
                            st = Some(Spanned::new(v, t.span));
                        }
                    }
                } else if digits.len() > 2 {
                    errors.push(Diagnostic::error(
                        format!("stride `s{digits}` has {} digits; write one (`s2`) or two equal ones (`s22`)", digits.len()),
                        Loc::new(source, t.span),
                        "bad stride",
                    ));
                } else {
                    st = int(&mut errors, "stride");
                }
            }
            "e" => match t.value.parse::<f64>() {
                Ok(v) if v.is_finite() && (1.0..=64.0).contains(&v) => {
                    e = Some(Spanned::new(v, t.span))
                }
                Ok(_) => errors.push(
                    Diagnostic::error(
                        format!("expansion ratio must be in [1, 64], got `e{}`", t.value),
                        Loc::new(source, t.span),
                        "bad expansion",
                    )
                    .with_help("`e1` means no expansion"),
                ),
                Err(_) => errors.push(Diagnostic::error(
                    format!("`e` needs a number (expansion ratio), got `{}`", t.value),
                    Loc::new(
                        source,
                        if t.value.is_empty() {
                            t.span
                        } else {
                            t.value_span
                        },
                    ),
                    "expected a number",
                )),
            },
            "i" => i = int(&mut errors, "input channels"),
            "o" => o = int(&mut errors, "output channels"),
            "se" => match t.value.parse::<f64>() {
                Ok(v) if v > 0.0 && v <= 1.0 => se = Some(Spanned::new(v, t.span)),
                Ok(v) => errors.push(
                    Diagnostic::error(
                        format!("squeeze-excitation ratio must be in (0, 1], got {v}"),
                        Loc::new(source, t.span),
                        "out of range",
                    )
                    .with_help("the papers use `se0.25`; leave `se` out for no squeeze-excitation"),
                ),
                Err(_) => errors.push(Diagnostic::error(
                    format!("`se` needs a ratio in (0, 1], got `{}`", t.value),
                    Loc::new(
                        source,
                        if t.value.is_empty() {
                            t.span
                        } else {
                            t.value_span
                        },
                    ),
                    "expected a number",
                )),
            },
            "c" => match t.value {
                "0" => fused = false,
                "1" => fused = true,
                _ => errors.push(Diagnostic::error(
                    format!(
                        "conv type must be `c0` (MBConv) or `c1` (Fused-MBConv), got `c{}`",
                        t.value
                    ),
                    Loc::new(source, t.span),
                    "unknown conv type",
                )),
            },
            "noskip" if t.value.is_empty() => noskip = true,
            _ => errors.push(
                Diagnostic::error(
                    format!("unknown key `{}` in block string `{}`", t.key, s.node),
                    Loc::new(source, t.span),
                    "unknown key",
                )
                .with_help(KEYS_HELP),
            ),
        }
    }
    let missing = |errors: &mut Vec<Diagnostic>, key: &str, what: &str| {
        errors.push(
            Diagnostic::error(
                format!("block string `{}` has no `{key}` ({what})", s.node),
                Loc::new(source, s.span),
                format!("`{key}` missing"),
            )
            .with_help(KEYS_HELP),
        );
    };
    if k.is_none() && !seen.iter().any(|(k, _)| *k == "k") {
        missing(&mut errors, "k", "kernel size");
    }
    if i.is_none() && !seen.iter().any(|(k, _)| *k == "i") {
        missing(&mut errors, "i", "input channels");
    }
    if o.is_none() && !seen.iter().any(|(k, _)| *k == "o") {
        missing(&mut errors, "o", "output channels");
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let whole = |v: usize| Spanned::new(v, s.span);
    Ok(BlockArgs {
        text: s.node.clone(),
        span: s.span,
        repeats: r.unwrap_or_else(|| whole(1)),
        kernel: k.expect("checked above"),
        stride: st.unwrap_or_else(|| whole(1)),
        expand: e.unwrap_or(Spanned::new(1.0, s.span)),
        input: i.expect("checked above"),
        output: o.expect("checked above"),
        se,
        fused,
        noskip,
    })
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
