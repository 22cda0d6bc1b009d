//! Model names are data: a quoted name in a spec (`model "my net" ...`) may hold
//! any character but `"` and a line feed, so every place that embeds a name in
//! generated code or in spec text goes through these functions.

use std::borrow::Cow;

/// Whether `c` ends a line in WGSL, JavaScript or Rust, or is otherwise a
/// control character (CR, VT, FF, NEL, U+2028, U+2029, C0, C1, DEL), or a
/// character that changes the direction of text (bidi controls).
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200E}' | '\u{200F}')
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `s` as it may appear in a line comment (`// ...`) or a doc line of generated
/// WGSL, JavaScript or Rust: every control character and line or paragraph
/// separator written as `\u{XXXX}`, and `*/` and `/*` broken up (`*\/`, `/\*`),
/// so a name can never end the comment or open one. Plain names are returned as
/// they are.
pub fn in_comment(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) && !s.contains("*/") && !s.contains("/*") {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut prev = '\0';
    for c in s.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:04X}}}", c as u32));
        } else if (prev == '*' && c == '/') || (prev == '/' && c == '*') {
            out.push('\\');
            out.push(c);
        } else {
            out.push(c);
        }
        prev = c;
    }
    Cow::Owned(out)
}

/// Whether `s` is a bare model name (`b0`, `v2-s`, `my_net`): ASCII letters and
/// digits, then also `-`, `_` and `.`.
pub fn is_bare(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `s` as a model name in `.enet` text: bare when it can be, else quoted. A
/// name holding `"`, a line feed or a control character cannot be written.
pub fn in_spec(s: &str) -> Result<Cow<'_, str>, String> {
    if is_bare(s) {
        return Ok(Cow::Borrowed(s));
    }
    if s.is_empty() {
        return Err("a model name cannot be empty".into());
    }
    if let Some(c) = s.chars().find(|&c| c == '"' || unsafe_char(c)) {
        return Err(format!(
            "model name {:?} holds {}: a name is letters, digits, `-`, `_` and `.`, or a quoted string without `\"`, line breaks or control characters",
            s,
            if c == '"' {
                "a `\"`".to_string()
            } else {
                format!("the control character U+{:04X}", c as u32)
            }
        ));
    }
    Ok(Cow::Owned(format!("\"{s}\"")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_comments_cannot_end_the_line_or_the_comment() {
        assert_eq!(in_comment("b0"), "b0");
        assert!(matches!(in_comment("my net"), Cow::Borrowed(_)));
        let hostile = "x\u{2028}globalThis.pwned=1;//\r\n*/ /* \u{2029}\u{85}";
        let c = in_comment(hostile);
        assert!(!c.chars().any(unsafe_char), "{c}");
        assert!(!c.contains("*/") && !c.contains("/*"), "{c}");
        assert!(c.contains("\\u{2028}") && c.contains("\\u{000D}"), "{c}");
    }

    #[test]
    fn names_in_spec_text_are_bare_or_quoted_or_refused() {
        assert_eq!(in_spec("b0-phi0.50").unwrap(), "b0-phi0.50");
        assert_eq!(in_spec("my net").unwrap(), "\"my net\"");
        assert!(in_spec("a\"b").unwrap_err().contains("`\"`"));
        assert!(in_spec("a\rb").unwrap_err().contains("U+000D"));
        assert!(in_spec("").is_err());
    }
}
