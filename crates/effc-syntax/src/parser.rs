//! pest front end: text to [`ast::File`](crate::ast::File), with syntax errors as diagnostics.

use std::sync::Arc;

use pest::iterators::Pair;
use pest::Parser;

use crate::ast::*;
use crate::diag::{Diagnostic, Loc, Source, Span};

#[derive(pest_derive::Parser)]
#[grammar = "../../../grammar/enet.pest"]
struct EnetParser;

fn span_of(p: &Pair<'_, Rule>) -> Span {
    let s = p.as_span();
    Span::new(s.start(), s.end())
}

/// Parses a `.enet` text. Never panics; a syntax error becomes one diagnostic
/// naming the place and what was expected there.
pub fn parse(source: &Arc<Source>) -> Result<File, Diagnostic> {
    let mut pairs =
        EnetParser::parse(Rule::file, &source.text).map_err(|e| syntax_error(source, e))?;
    let file = pairs
        .next()
        .expect("the grammar's `file` rule yields one pair");
    let mut models = Vec::new();
    for p in file.into_inner() {
        if p.as_rule() == Rule::model {
            models.push(model(source, p)?);
        }
    }
    Ok(File { models })
}

fn name_text(p: &Pair<'_, Rule>) -> String {
    let s = p.as_str();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
        .to_string()
}

fn model(source: &Arc<Source>, p: Pair<'_, Rule>) -> Result<ModelDecl, Diagnostic> {
    let span = span_of(&p);
    let mut inner = p.into_inner();
    let name_pair = inner.next().expect("model has a name");
    let name = Spanned::new(name_text(&name_pair), span_of(&name_pair));
    let mut decl = ModelDecl {
        name,
        base: None,
        settings: vec![],
        blocks: vec![],
        training: vec![],
        span,
    };
    for item in inner {
        match item.as_rule() {
            Rule::base => {
                let n = item.into_inner().next().expect("extends has a name");
                decl.base = Some(Spanned::new(name_text(&n), span_of(&n)));
            }
            Rule::setting => decl.settings.push(setting(source, item)?),
            Rule::blocks => {
                let kw = Span::new(
                    item.as_span().start(),
                    item.as_span().start() + "blocks".len(),
                );
                let strings = item
                    .into_inner()
                    .filter(|b| b.as_rule() == Rule::block_string)
                    .map(|b| Spanned::new(b.as_str().to_string(), span_of(&b)))
                    .collect();
                decl.blocks.push(BlocksDecl { span: kw, strings });
            }
            Rule::training => {
                let kw = Span::new(
                    item.as_span().start(),
                    item.as_span().start() + "training".len(),
                );
                let mut settings = vec![];
                for s in item.into_inner().filter(|s| s.as_rule() == Rule::setting) {
                    settings.push(setting(source, s)?);
                }
                decl.training.push(TrainingDecl { span: kw, settings });
            }
            _ => {}
        }
    }
    Ok(decl)
}

fn number(source: &Arc<Source>, p: &Pair<'_, Rule>) -> Result<f64, Diagnostic> {
    let text = p.as_str();
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| {
            Diagnostic::error(
                format!("`{text}` is not a finite number"),
                Loc::new(source, span_of(p)),
                "this number",
            )
        })
}

fn setting(source: &Arc<Source>, p: Pair<'_, Rule>) -> Result<Setting, Diagnostic> {
    let mut inner = p.into_inner().filter(|p| p.as_rule() != Rule::eq);
    let k = inner.next().expect("setting has a key");
    let v = inner.next().expect("setting has a value");
    let vspan = span_of(&v);
    let value = match v.as_rule() {
        Rule::number => Value::Number(number(source, &v)?, v.as_str().to_string()),
        Rule::word => Value::Word(v.as_str().to_string()),
        Rule::list => {
            let mut items = vec![];
            for n in v.into_inner() {
                items.push(Spanned::new(number(source, &n)?, span_of(&n)));
            }
            Value::List(items)
        }
        Rule::range => {
            let mut it = v.into_inner();
            let a = it.next().expect("range has a start");
            let b = it.next().expect("range has an end");
            Value::Range(number(source, &a)?, number(source, &b)?)
        }
        r => unreachable!("grammar yields no {r:?} as a value"),
    };
    Ok(Setting {
        key: Spanned::new(k.as_str().to_string(), span_of(&k)),
        value: Spanned::new(value, vspan),
    })
}

fn rule_name(r: &Rule) -> &'static str {
    match r {
        Rule::EOI => "end of file",
        Rule::file => "a file",
        Rule::model => "`model`",
        Rule::base => "`extends`",
        Rule::name => "a model name",
        Rule::quoted => "a quoted name",
        Rule::blocks => "`blocks { ... }`",
        Rule::block_string => "a block string (e.g. `r1_k3_s1_e1_i32_o16`)",
        Rule::training => "`training { ... }`",
        Rule::setting => "a setting (`key = value`)",
        Rule::key => "a setting name",
        Rule::list => "a list (`[a, b, c]`)",
        Rule::range => "a range (`a .. b`)",
        Rule::number => "a number",
        Rule::word => "a word",
        Rule::eq => "`=`",
        Rule::open => "`{`",
        Rule::close => "`}`",
        Rule::WHITESPACE | Rule::COMMENT => "whitespace",
        Rule::model_item | Rule::value => "a value",
    }
}

fn join_alternatives(items: &[&str]) -> String {
    match items.len() {
        0 => String::new(),
        1 => items[0].to_string(),
        n => format!("{} or {}", items[..n - 1].join(", "), items[n - 1]),
    }
}

fn syntax_error(source: &Arc<Source>, e: pest::error::Error<Rule>) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let (start, end) = match e.location {
        InputLocation::Pos(p) => (p, p),
        InputLocation::Span((a, b)) => (a, b),
    };
    // Point at the whole unexpected token, or at the end of the text.
    let text = &source.text;
    let mut end = end.max(start);
    if end == start {
        end = text[start..]
            .char_indices()
            .take_while(|(_, c)| !c.is_whitespace())
            .map(|(i, c)| i + c.len_utf8())
            .last()
            .map_or(start, |n| start + n);
    }
    let found = if start >= text.len() {
        "the end of the file".to_string()
    } else {
        let tok: String = text[start..end].chars().take(24).collect();
        format!("`{tok}`")
    };
    let expected = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut names: Vec<&str> = positives.iter().map(rule_name).collect();
            names.dedup();
            if names.is_empty() {
                "something else".to_string()
            } else {
                join_alternatives(&names)
            }
        }
        ErrorVariant::CustomError { message } => message.clone(),
    };
    // A non-ASCII character where the grammar wanted a name or a key: say so,
    // pointing at that character alone.
    if let Some(c) = text[start.min(text.len())..]
        .chars()
        .next()
        .filter(|c| !c.is_ascii())
    {
        return Diagnostic::error(
            format!(
                "syntax error: unexpected non-ASCII character `{c}` (U+{:04X}); expected {expected}",
                c as u32
            ),
            Loc::new(source, Span::new(start, start + c.len_utf8())),
            "not an ASCII character",
        )
        .with_help(
            "model names, setting names, values and block strings are written with ASCII \
             letters, digits, `_` and `-`; only a quoted model name (\"...\") or a comment may \
             hold other characters",
        );
    }
    let mut d = Diagnostic::error(
        format!("syntax error: expected {expected}, found {found}"),
        Loc::new(source, Span::new(start, end)),
        format!("expected {expected}"),
    );
    if text[..start.min(text.len())].matches('{').count()
        > text[..start.min(text.len())].matches('}').count()
        && start >= text.trim_end().len()
    {
        d = d.with_help("a `{` is not closed: add `}`");
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_order_mark_at_the_start_is_skipped() {
        let src = Source::new("t.enet", "\u{FEFF}model a extends b0 { width = 1.1 }\n");
        let f = parse(&src).unwrap();
        assert_eq!(f.models[0].name.node, "a");
        assert_eq!(f.models[0].name.span, Span::new(9, 10));
    }

    #[test]
    fn a_non_ascii_letter_is_named_and_pointed_at() {
        let src = Source::new("t.enet", "model a extends b0 {\n    wìdth = 1.1\n}\n");
        let d = parse(&src).unwrap_err();
        assert!(
            d.message.contains("non-ASCII character `ì` (U+00EC)"),
            "{}",
            d.message
        );
        assert_eq!(d.labels[0].0.span, Span::new(26, 28));
        assert_eq!(d.position().unwrap(), "t.enet:2:6");
        // A byte order mark anywhere else is not skipped.
        let src = Source::new("t.enet", "model a {\u{FEFF} }");
        assert!(parse(&src).unwrap_err().message.contains("U+FEFF"));
    }
}
