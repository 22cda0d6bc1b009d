//! The `efficientnet!` macro. Use it through the `efficientnet` crate, which
//! documents it and provides what the generated code runs on.
//!
//! This crate only parses the macro's arguments into an `effc_driver::ModelRequest`
//! and turns errors into compile errors at the right token; `effc-driver`
//! resolves the request and `effc-codegen` generates the code.

use std::path::PathBuf;

use effc_codegen::{CodegenOptions, Shaders};
use effc_driver::{Error, ModelRequest, ModelSource};
use effc_ir::{Options, PaddingMode};
use proc_macro2::{Span, TokenStream};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, Lit, LitStr, Token};

/// Expands to a module with a typed EfficientNet model, its constants and its
/// kernels' WGSL. See the `efficientnet` crate for the forms and options.
#[proc_macro]
pub fn efficientnet(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    expand(input.into()).into()
}

/// One argument: `"name"`, or `key = value`.
enum Arg {
    Builtin(LitStr),
    Option { key: Ident, value: Value },
}

/// An option's value: a literal, an identifier (`symmetric`, `b0`) or a list of
/// literals (`[1, 2, 3, 4]`).
enum Value {
    Lit(Lit),
    Ident(Ident),
    List(Vec<Lit>, Span),
}

impl Value {
    fn span(&self) -> Span {
        match self {
            Value::Lit(l) => l.span(),
            Value::Ident(i) => i.span(),
            Value::List(_, s) => *s,
        }
    }
}

impl Parse for Arg {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        if input.peek(LitStr) {
            return Ok(Arg::Builtin(input.parse()?));
        }
        let key: Ident = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected a model name (`\"b0\"`) or an option (`key = value`)",
            )
        })?;
        input.parse::<Token![=]>()?;
        let value =
            if input.peek(syn::Ident) {
                Value::Ident(input.parse()?)
            } else if input.peek(syn::token::Bracket) {
                let inner;
                let bracket = syn::bracketed!(inner in input);
                let items = Punctuated::<Lit, Token![,]>::parse_terminated(&inner)?;
                Value::List(items.into_iter().collect(), bracket.span.join())
            } else {
                Value::Lit(input.parse().map_err(|e| {
                    syn::Error::new(e.span(), format!("expected a value for `{key}`"))
                })?)
            };
        Ok(Arg::Option { key, value })
    }
}

/// Where each argument came from, to point errors at it.
struct Spans {
    call: Span,
    source: Span,
    model: Option<Span>,
    options: Vec<(&'static str, Span)>,
}

impl Spans {
    fn of(&self, option: &str) -> Span {
        self.options
            .iter()
            .find(|(k, _)| *k == option)
            .map_or(self.call, |(_, s)| *s)
    }
}

const OPTIONS: &[&str] = &[
    "file",
    "spec",
    "name",
    "model",
    "resolution",
    "padding",
    "bn_eps",
    "classes",
    "features",
    "max_batch",
    "precision",
];

fn expand(input: TokenStream) -> TokenStream {
    match parse_request(input) {
        Ok((req, opts, spans)) => {
            let track = matches!(req.source, ModelSource::File { .. });
            match req.generate(&opts, track) {
                Ok(g) => g.module_tokens(),
                Err(e) => error_tokens(&e, &req, &spans),
            }
        }
        Err(e) => e.to_compile_error(),
    }
}

fn error_tokens(e: &Error, req: &ModelRequest, spans: &Spans) -> TokenStream {
    match e {
        Error::Spec(diags) => {
            let mut out = TokenStream::new();
            for d in &diags.0 {
                let message = if d.labels.is_empty() {
                    let mut m = d.message.clone();
                    if let Some(h) = &d.help {
                        m.push_str("\nhelp: ");
                        m.push_str(h);
                    }
                    m
                } else {
                    format!("{}\n{}", d.summary(), d.render(false).trim_end())
                };
                // A bare diagnostic about an overridden setting belongs to that option.
                let span = bare_option_span(d, spans).unwrap_or(spans.source);
                out.extend(syn::Error::new(span, message).to_compile_error());
            }
            out
        }
        Error::Option { option, message } => {
            let span = match *option {
                "model" => spans.model.unwrap_or(spans.call),
                o => spans.of(o),
            };
            syn::Error::new(span, format!("`{option}` {message}")).to_compile_error()
        }
        Error::Read(r) => {
            let shown = req.source.shown();
            let message = if r.is_not_found() {
                format!(
                    "cannot read spec file `{shown}`\nhelp: the path is relative to the crate's directory; looked at {}",
                    r.path().display()
                )
            } else {
                r.to_string()
            };
            syn::Error::new(spans.source, message).to_compile_error()
        }
        e => syn::Error::new(spans.call, e.to_string()).to_compile_error(),
    }
}

/// The option a bare (place-less) diagnostic is about, when it names one.
fn bare_option_span(d: &effc_syntax::Diagnostic, spans: &Spans) -> Option<Span> {
    if !d.labels.is_empty() {
        return None;
    }
    let m = d.message.to_lowercase();
    let key = if m.contains("epsilon") {
        "bn_eps"
    } else if m.contains("resolution") {
        "resolution"
    } else if m.contains("feature level") {
        "features"
    } else {
        return None;
    };
    spans
        .options
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, s)| *s)
}

fn parse_request(input: TokenStream) -> syn::Result<(ModelRequest, CodegenOptions, Spans)> {
    let call = Span::call_site();
    let args = syn::parse::Parser::parse2(Punctuated::<Arg, Token![,]>::parse_terminated, input)?;
    let mut r = Request {
        source: None,
        req: ModelRequest::new(ModelSource::Builtin(String::new())),
        opts: CodegenOptions::default(),
        options: Options::default(),
        spans: Spans {
            call,
            source: call,
            model: None,
            options: vec![],
        },
    };
    for arg in args {
        match arg {
            Arg::Builtin(lit) => r.set_source(ModelSource::Builtin(lit.value()), lit.span())?,
            Arg::Option { key, value } => {
                let known = r.known_option(&key)?;
                r.option(known, &value)?;
            }
        }
    }
    let Some((source, span)) = r.source else {
        return Err(syn::Error::new(
            call,
            "which model? write a built-in name (`efficientnet!(\"b0\")`), `file = \"my.enet\"` or `spec = \"model ...\"`",
        ));
    };
    let (mut req, mut opts, mut spans) = (r.req, r.opts, r.spans);
    spans.source = span;
    req.source = source;
    req.options = r.options;
    opts.shaders = Shaders::Inline;
    Ok((req, opts, spans))
}

/// What the macro's arguments say so far.
struct Request {
    source: Option<(ModelSource, Span)>,
    req: ModelRequest,
    opts: CodegenOptions,
    options: Options,
    spans: Spans,
}

impl Request {
    fn set_source(&mut self, s: ModelSource, span: Span) -> syn::Result<()> {
        if self.source.is_some() {
            return Err(syn::Error::new(
                span,
                "the model is given twice: use one of \"NAME\", `file = \"…\"` or `spec = \"…\"`",
            ));
        }
        self.source = Some((s, span));
        Ok(())
    }

    /// The option `key` names, given once.
    fn known_option(&self, key: &syn::Ident) -> syn::Result<&'static str> {
        let k = key.to_string();
        let Some(&known) = OPTIONS.iter().find(|o| **o == k) else {
            let hint = effc_ir::spec::closest(&k, OPTIONS)
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            return Err(syn::Error::new(
                key.span(),
                format!(
                    "unknown option `{k}`{hint}; options: {}",
                    OPTIONS.join(", ")
                ),
            ));
        };
        if self.spans.options.iter().any(|(o, _)| *o == known) {
            return Err(syn::Error::new(
                key.span(),
                format!("option `{known}` is given twice"),
            ));
        }
        Ok(known)
    }

    /// One option's value, into the request.
    fn option(&mut self, known: &'static str, value: &Value) -> syn::Result<()> {
        self.spans.options.push((known, value.span()));
        match known {
            "file" => {
                let (path, span) = string(value, known)?;
                let dir = std::env::var_os("CARGO_MANIFEST_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_default();
                self.set_source(
                    ModelSource::File {
                        path: dir.join(&path),
                        display: path,
                    },
                    span,
                )?;
            }
            "spec" => {
                let (text, span) = string(value, known)?;
                self.set_source(ModelSource::Inline(text), span)?;
            }
            "name" => match value {
                Value::Ident(i) => self.opts.module = Some(i.to_string()),
                Value::Lit(Lit::Str(s)) => self.opts.module = Some(s.value()),
                v => return Err(expected(v, known, "an identifier, e.g. `name = my_net`")),
            },
            "model" => {
                let (m, span) = match value {
                    Value::Ident(i) => (i.to_string(), i.span()),
                    v => string(v, known)?,
                };
                self.req.select = Some(m);
                self.spans.model = Some(span);
            }
            "resolution" => self.options.resolution = Some(int(value, known)?),
            "classes" => self.options.classes = Some(int(value, known)?),
            "features" => match value {
                Value::List(items, _) => {
                    self.options.features = Some(
                        items
                            .iter()
                            .map(|l| int(&Value::Lit(l.clone()), known))
                            .collect::<syn::Result<_>>()?,
                    )
                }
                v => {
                    return Err(expected(
                        v,
                        known,
                        "a list of feature levels, e.g. `features = [1, 2, 3, 4]`",
                    ))
                }
            },
            "max_batch" => self.opts.max_batch = int(value, known)?,
            "precision" => {
                let word = match value {
                    Value::Ident(i) => Some(i.to_string()),
                    Value::Lit(Lit::Str(s)) => Some(s.value()),
                    _ => None,
                };
                self.req.precision = match word.and_then(|w| w.parse::<effc_plan::Precision>().ok())
                {
                    Some(p) => p,
                    None => {
                        return Err(expected(
                            value,
                            known,
                            "`f32` or `f16` (weights and activations stored as halves)",
                        ))
                    }
                }
            }
            "bn_eps" => {
                self.options.bn_eps = Some(match value {
                    Value::Lit(Lit::Float(f)) => f.base10_parse::<f64>()?,
                    Value::Lit(Lit::Int(i)) => i.base10_parse::<f64>()?,
                    v => return Err(expected(v, known, "a number, e.g. `bn_eps = 1e-5`")),
                })
            }
            "padding" => {
                let word = match value {
                    Value::Ident(i) => Some(i.to_string()),
                    Value::Lit(Lit::Str(s)) => Some(s.value()),
                    _ => None,
                };
                self.options.padding = match word.and_then(|w| w.parse::<PaddingMode>().ok()) {
                    Some(p) => Some(p),
                    None => {
                        return Err(expected(
                            value,
                            known,
                            "`same` (TensorFlow) or `symmetric` (PyTorch)",
                        ))
                    }
                }
            }
            _ => unreachable!("every name of OPTIONS is handled"),
        }
        Ok(())
    }
}

fn expected(v: &Value, key: &str, what: &str) -> syn::Error {
    syn::Error::new(v.span(), format!("`{key}` takes {what}"))
}

fn string(v: &Value, key: &str) -> syn::Result<(String, Span)> {
    match v {
        Value::Lit(Lit::Str(s)) => Ok((s.value(), s.span())),
        v => Err(expected(v, key, "a string literal")),
    }
}

fn int(v: &Value, key: &str) -> syn::Result<usize> {
    match v {
        Value::Lit(Lit::Int(i)) => i.base10_parse::<usize>().map_err(|_| {
            syn::Error::new(
                i.span(),
                format!("`{key}` takes a whole number, not `{}`", i.base10_digits()),
            )
        }),
        v => Err(expected(v, key, "a whole number")),
    }
}
