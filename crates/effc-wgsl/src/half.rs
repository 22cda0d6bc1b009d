//! f16 storage in two spellings, f32 arithmetic in both.
//!
//! A plan at [`effc_plan::Precision::F16`] stores its weights and activations as
//! halves. The kernel bodies (`kernels/*.wgsl`) are written once, in f32; for an f16
//! binding the writer declares the storage in the chosen [`Spelling`] and gives it
//! two accessors, and every `name[i]` of that binding in the body becomes
//! `name_load(i)` (a `vec4<f32>`) and every `name[i] = v;` becomes
//! `name_store(i, v);`. So every sum is still accumulated in f32 (registers and
//! workgroup memory stay f32); only loads and stores convert.
//!
//! - [`Spelling::Native`]: `enable f16;` and `array<vec4<f16>>`; needs the adapter's
//!   `shader-f16` feature.
//! - [`Spelling::Packed`]: `array<vec2<u32>>`, four halves per vec2, converted with
//!   core WGSL's `unpack2x16float` / `pack2x16float`: every adapter and browser.
//!
//! Both read and write the same bytes (halves, little-endian, in element order), so
//! one packed weight file serves either. Stores clamp to ±65504 first, so an
//! activation beyond f16's range saturates instead of becoming infinite (the same
//! rule the host applies to weights, see `effc_plan::precision`).

use std::fmt::Write;

/// How f16 storage is spelled in WGSL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Spelling {
    /// `enable f16;`, `array<vec4<f16>>`.
    Native,
    /// Halves packed in pairs into `u32`s (`array<vec2<u32>>`), core WGSL only.
    #[default]
    Packed,
}

impl Spelling {
    pub fn name(self) -> &'static str {
        match self {
            Spelling::Native => "native",
            Spelling::Packed => "packed",
        }
    }
}

impl std::str::FromStr for Spelling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "native" => Ok(Spelling::Native),
            "packed" => Ok(Spelling::Packed),
            _ => Err(format!(
                "unknown f16 spelling `{s}` (expected native or packed)"
            )),
        }
    }
}

/// The storage type of an f16 binding's array elements.
pub(crate) fn elem(s: Spelling) -> &'static str {
    match s {
        Spelling::Native => "vec4<f16>",
        Spelling::Packed => "vec2<u32>",
    }
}

/// The accessor of the f16 binding `name`: `name_store` when the kernel writes it
/// (the bodies never read what they write), else `name_load`.
pub(crate) fn accessors(o: &mut String, s: Spelling, name: &str, write: bool) {
    let load = match s {
        Spelling::Native => format!("vec4<f32>({name}[i])"),
        Spelling::Packed => {
            format!("vec4<f32>(unpack2x16float({name}[i].x), unpack2x16float({name}[i].y))")
        }
    };
    if !write {
        let _ = writeln!(
            o,
            "fn {name}_load(i: u32) -> vec4<f32> {{\n    return {load};\n}}"
        );
    } else {
        let store = match s {
            Spelling::Native => "vec4<f16>(c)".to_string(),
            Spelling::Packed => "vec2<u32>(pack2x16float(c.xy), pack2x16float(c.zw))".to_string(),
        };
        let _ = writeln!(
            o,
            "fn {name}_store(i: u32, v: vec4<f32>) {{\n    let c = clamp(v, vec4<f32>(-65504.0), vec4<f32>(65504.0));\n    {name}[i] = {store};\n}}"
        );
    }
}

/// Rewrites every access of the bindings `names` in `body`: `name[i] = v;` becomes
/// `name_store(i, v);` and any other `name[i]` becomes `name_load(i)`. An access is
/// `name` not preceded by an identifier character and followed by `[`; its index
/// runs to the matching `]`.
///
/// # Panics
/// On an unclosed `[` or a store without `;`: the bodies are part of this crate,
/// and every kind is tested in both spellings.
pub(crate) fn rewrite(body: &str, names: &[&str]) -> String {
    let bytes = body.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = String::with_capacity(body.len() + body.len() / 8);
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"//") {
            // Comments are left as they are.
            i = body[i..].find('\n').map_or(bytes.len(), |e| i + e);
            continue;
        }
        let hit = (i == 0 || !ident(bytes[i - 1]))
            .then(|| {
                names.iter().find(|n| {
                    bytes[i..].starts_with(n.as_bytes()) && bytes.get(i + n.len()) == Some(&b'[')
                })
            })
            .flatten();
        let Some(name) = hit else {
            i += 1;
            continue;
        };
        let open = i + name.len();
        let close = matching(bytes, open).expect("an index is closed");
        let index = rewrite(&body[open + 1..close], names);
        out.push_str(&body[copied..i]);
        let rest = &body[close + 1..];
        let after = rest.trim_start();
        if after.starts_with('=') && !after.starts_with("==") {
            let value_start = close + 1 + (rest.len() - after.len()) + 1;
            let end = body[value_start..]
                .find(';')
                .expect("a store ends with `;`")
                + value_start;
            let value = rewrite(body[value_start..end].trim(), names);
            let _ = write!(out, "{name}_store({index}, {value})");
            i = end;
        } else {
            let _ = write!(out, "{name}_load({index})");
            i = close + 1;
        }
        copied = i;
    }
    out.push_str(&body[copied..]);
    out
}

/// The index of the `]` matching the `[` at `open`.
fn matching(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_stores_of_the_named_bindings_are_rewritten() {
        let body = "let a = src[(n * M + m) * CIN4 + k4] * gate[k4];\n\
                    a_tile[i][j] = load(src[idx[2]]);\n\
                    dst[(n * M + m) * N4 + col4] = v + residual[o];\n\
                    h[j] = weights[B1 + r4][j];\n\
                    if (x == dst[0]) {}\n";
        let want = "let a = src_load((n * M + m) * CIN4 + k4) * gate[k4];\n\
                    a_tile[i][j] = load(src_load(idx[2]));\n\
                    dst_store((n * M + m) * N4 + col4, v + residual_load(o));\n\
                    h[j] = weights_load(B1 + r4)[j];\n\
                    if (x == dst_load(0)) {}\n";
        assert_eq!(rewrite(body, &["src", "dst", "residual", "weights"]), want);
        // Names inside other identifiers, and comments, are not accesses.
        assert_eq!(
            rewrite("my_src[1] + srcs[2]", &["src"]),
            "my_src[1] + srcs[2]"
        );
        assert_eq!(
            rewrite("// src[0] · x\nsrc[1]", &["src"]),
            "// src[0] · x\nsrc_load(1)"
        );
    }

    #[test]
    fn spellings_parse() {
        assert_eq!("native".parse(), Ok(Spelling::Native));
        assert_eq!("packed".parse(), Ok(Spelling::Packed));
        assert!("half"
            .parse::<Spelling>()
            .unwrap_err()
            .contains("native or packed"));
    }
}
