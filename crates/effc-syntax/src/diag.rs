//! Diagnostics for people: a message, the place (file:line:col with a caret) and a hint.

use std::fmt;
use std::sync::{Arc, OnceLock};

use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents,
    SourceCode, SourceSpan, SpanContents,
};

/// At most this many diagnostics are rendered; the rest are counted ("and N more
/// errors"), as compilers cap their output (clang's `-ferror-limit`).
pub const MAX_RENDERED: usize = 100;

/// A byte range in a source text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// A sub-span `offset..offset+len` relative to the start of this one.
    pub fn sub(self, offset: usize, len: usize) -> Span {
        Span::new(self.start + offset, self.start + offset + len)
    }
}

/// A source text with the name it is shown under (a path, or `<builtin b0>`).
///
/// Diagnostics share it (`Arc<Source>`) and miette reads their snippets from it
/// directly, so N diagnostics about one text cost O(N), not N copies of the text.
#[derive(Debug)]
pub struct Source {
    pub name: String,
    pub text: String,
    /// Byte offset of each line's start, computed on first use.
    line_starts: OnceLock<Vec<usize>>,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Arc<Source> {
        Arc::new(Source {
            name: name.into(),
            text: text.into(),
            line_starts: OnceLock::new(),
        })
    }

    fn line_starts(&self) -> &[usize] {
        self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        })
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let starts = self.line_starts();
        let line = starts.partition_point(|&s| s <= offset);
        let line_start = starts[line - 1];
        let col = self.text[line_start..offset].chars().count() + 1;
        (line, col)
    }
}

/// miette reads snippets from the text and names them with the source's name.
impl SourceCode for Source {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner = self
            .text
            .read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(
            MietteSpanContents::new_named(
                self.name.clone(),
                inner.data(),
                *inner.span(),
                inner.line(),
                inner.column(),
                inner.line_count(),
            )
            .with_language("enet"),
        ))
    }
}

/// A place in a source: the source and a span in it.
#[derive(Clone, Debug)]
pub struct Loc {
    pub source: Arc<Source>,
    pub span: Span,
}

impl Loc {
    pub fn new(source: &Arc<Source>, span: Span) -> Loc {
        Loc {
            source: source.clone(),
            span,
        }
    }

    /// `file:line:col`.
    pub fn position(&self) -> String {
        let (l, c) = self.source.line_col(self.span.start);
        format!("{}:{}:{}", self.source.name, l, c)
    }
}

/// One error about a spec, pointing at the text that caused it.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub message: String,
    /// Where, and what to say there. The first label is the primary one.
    pub labels: Vec<(Loc, String)>,
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at `loc`, with `label` printed under the caret.
    pub fn error(message: impl Into<String>, loc: Loc, label: impl Into<String>) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            labels: vec![(loc, label.into())],
            help: None,
        }
    }

    /// An error that belongs to no place in a source (e.g. a command-line option).
    pub fn bare(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            labels: vec![],
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// A second place, shown only when it is in the same source as the primary one
    /// (otherwise its position is added to the help text).
    pub fn with_note(mut self, loc: Loc, label: impl Into<String>) -> Diagnostic {
        let label = label.into();
        let same = self
            .labels
            .first()
            .is_some_and(|(l, _)| Arc::ptr_eq(&l.source, &loc.source));
        if same {
            self.labels.push((loc, label));
        } else {
            let note = format!("{label} ({})", loc.position());
            self.help = Some(match self.help.take() {
                Some(h) => format!("{h}\n{note}"),
                None => note,
            });
        }
        self
    }

    /// `file:line:col` of the primary label, if any.
    pub fn position(&self) -> Option<String> {
        self.labels.first().map(|(l, _)| l.position())
    }

    /// The primary place, if any.
    pub fn loc(&self) -> Option<&Loc> {
        self.labels.first().map(|(l, _)| l)
    }

    /// Renders the diagnostic as text: message, `file:line:col`, the line with a caret,
    /// the label and the help. `color` adds ANSI colours (for terminals).
    pub fn render(&self, color: bool) -> String {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme)
            .with_width(100)
            .with_links(false);
        let mut out = String::new();
        if handler.render_report(&mut out, self).is_err() {
            out = format!("error: {}", self.message);
        }
        out
    }
}

impl Diagnostic {
    /// One line: `file:line:col: message` (or the message alone).
    pub fn summary(&self) -> String {
        match self.position() {
            Some(p) => format!("{p}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

/// The message alone (the rendered form shows the place).
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

impl miette::Diagnostic for Diagnostic {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.labels
            .first()
            .map(|(l, _)| &*l.source as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            return None;
        }
        Some(Box::new(self.labels.iter().enumerate().map(
            |(i, (loc, label))| {
                let len = loc.span.end.saturating_sub(loc.span.start);
                let text = if label.is_empty() {
                    None
                } else {
                    Some(label.clone())
                };
                if i == 0 {
                    LabeledSpan::new_primary_with_span(text, (loc.span.start, len))
                } else {
                    LabeledSpan::new_with_span(text, (loc.span.start, len))
                }
            },
        )))
    }
}

/// Several diagnostics (a spec can have more than one error).
#[derive(Clone, Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Renders the first [`MAX_RENDERED`] diagnostics, then how many more there are.
    pub fn render(&self, color: bool) -> String {
        let mut out = self
            .0
            .iter()
            .take(MAX_RENDERED)
            .map(|d| d.render(color))
            .collect::<Vec<_>>()
            .join("\n");
        if let Some(more) = self.more() {
            out.push_str(&format!("\n{more}\n"));
        }
        out
    }

    /// "and N more errors (the first M are shown)", past the render limit.
    fn more(&self) -> Option<String> {
        let rest = self.0.len().checked_sub(MAX_RENDERED).filter(|&n| n > 0)?;
        let s = if rest == 1 { "" } else { "s" };
        Some(format!(
            "... and {rest} more error{s} ({} in all; the first {MAX_RENDERED} are shown)",
            self.0.len()
        ))
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().take(MAX_RENDERED).enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", d.summary())?;
        }
        if let Some(more) = self.more() {
            write!(f, "\n{more}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let s = Source::new("x.enet", "ab\ncd\né f");
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(4), (2, 2));
        assert_eq!(s.line_col(9), (3, 3));
    }

    #[test]
    fn render_names_place_and_caret() {
        let s = Source::new("x.enet", "model a {\n  width = oops\n}\n");
        let d = Diagnostic::error("bad width", Loc::new(&s, Span::new(20, 24)), "not a number");
        let r = d.render(false);
        assert!(r.contains("x.enet:2:11"), "{r}");
        assert!(r.contains("not a number"), "{r}");
        assert_eq!(d.summary(), "x.enet:2:11: bad width");
    }

    #[test]
    fn line_col_inside_a_character_and_past_the_end() {
        let s = Source::new("x.enet", "é\nab");
        assert_eq!(s.line_col(1), (1, 1));
        assert_eq!(s.line_col(100), (2, 3));
    }

    #[test]
    fn diagnostics_share_the_source() {
        let s = Source::new("x.enet", "x".repeat(1 << 20));
        let ds: Vec<_> = (0..1000)
            .map(|i| Diagnostic::error("bad", Loc::new(&s, Span::new(i, i + 1)), ""))
            .collect();
        // One text, referenced by every diagnostic: no copies.
        assert_eq!(Arc::strong_count(&s), 1001);
        drop(ds);
    }

    #[test]
    fn rendering_stops_at_the_limit() {
        let s = Source::new("x.enet", "a\n".repeat(300));
        let ds = Diagnostics(
            (0..250)
                .map(|i| {
                    Diagnostic::error(
                        format!("bad {i}"),
                        Loc::new(&s, Span::new(2 * i, 2 * i + 1)),
                        "",
                    )
                })
                .collect(),
        );
        let r = ds.render(false);
        assert!(r.contains("bad 99") && !r.contains("bad 100"), "{r}");
        assert!(r.contains("... and 150 more errors (250 in all; the first 100 are shown)"));
        let t = ds.to_string();
        assert_eq!(t.lines().count(), 101);
        assert!(t.ends_with("the first 100 are shown)"));
    }
}
