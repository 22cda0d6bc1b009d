//! effc's Rust host-code generator: the module that `efficientnet!` expands to and
//! that `effc compile` writes as `model.rs`, and the compile report.
//!
//! [`generate`] resolves a [`Request`] (a built-in model, a spec file or an inline
//! spec, with overrides), builds the IR, plans the kernels, emits and validates
//! their WGSL, and returns a [`Generated`]: the module's items as a
//! [`TokenStream`] (what the macro returns), the same formatted with prettyplease
//! ([`Generated::file`], what `effc compile` writes), and a [`Report`].
//!
//! The generated code names only `::efficientnet::__private::…`, so it compiles in
//! any crate that depends on the `efficientnet` facade. It embeds the spec text and
//! options (the loader rebuilds the IR and plan from them in milliseconds) and every
//! kernel's WGSL, inline ([`Shaders::Inline`], the macro) or through
//! `include_str!` of the `.wgsl` file beside `model.rs` ([`Shaders::IncludeStr`]).
//!
//! This crate does no I/O except reading a spec file, and knows nothing of proc
//! macros (it is testable without expansion) or of GPUs.

mod emit;
mod features;
mod report;
pub mod web;

use std::fmt;
use std::path::PathBuf;

use effc_ir::{Model, Options, Spec};
use effc_plan::Plan;
use effc_syntax::{Diagnostic, Diagnostics};
use effc_wgsl::{Shader, Spelling};
use proc_macro2::TokenStream;

pub use effc_plan::Precision;
pub use report::{KernelRow, Report};

/// The default of `max_batch`.
pub const DEFAULT_MAX_BATCH: usize = 8;

/// Where the model's spec comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum SpecSource {
    /// A built-in model by name (`b0`, `v2-s`, …).
    Builtin(String),
    /// A `.enet` file: `path` is read, `display` names it in diagnostics and in the
    /// generated code (the path as the user wrote it).
    File { path: PathBuf, display: String },
    /// Spec text written inline.
    Inline(String),
}

/// How the generated code gets each kernel's WGSL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shaders {
    /// As string literals (the macro).
    Inline,
    /// As `include_str!("<kernel>.wgsl")`, files written beside the generated code.
    IncludeStr,
}

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub source: SpecSource,
    /// The model of a spec file or inline spec to compile; the last one when `None`.
    pub model: Option<String>,
    /// Overrides of the spec's settings.
    pub options: Options,
    /// The largest batch a forward takes.
    pub max_batch: usize,
    /// The module's name; derived from the model's name when `None`.
    pub module: Option<String>,
    pub shaders: Shaders,
    /// Make the build depend on the spec file (an `include_bytes!` of its absolute
    /// path), so that editing it recompiles the macro's caller.
    pub track_file: bool,
    /// Also format the module as a file ([`Generated::file`]), while the shaders are
    /// validated: `effc compile` sets it, the macro (which returns tokens) does not.
    pub format: bool,
    /// How weights and activations are stored: at f16 the shaders come in both
    /// spellings ([`Generated::packed_shaders`]) and the loader picks one per adapter.
    pub precision: Precision,
}

impl Request {
    /// A request with no overrides, shaders inline.
    pub fn new(source: SpecSource) -> Request {
        Request {
            source,
            model: None,
            options: Options::default(),
            max_batch: DEFAULT_MAX_BATCH,
            module: None,
            shaders: Shaders::Inline,
            track_file: false,
            format: false,
            precision: Precision::F32,
        }
    }
}

/// Why nothing was generated.
#[derive(Clone, Debug)]
pub enum Error {
    /// The spec (or the spec with the overrides) is not a valid model; the
    /// diagnostics name file:line:col.
    Spec(Diagnostics),
    /// An option is out of range. `option` is its name (`max_batch`, …).
    Option {
        option: &'static str,
        message: String,
    },
    /// A generated shader does not validate: a bug in effc.
    Internal(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Spec(d) => write!(f, "{d}"),
            Error::Option { option, message } => write!(f, "`{option}`: {message}"),
            Error::Internal(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// The generated host code of one model, and what it was generated from.
#[derive(Clone, Debug)]
pub struct Generated {
    pub model: Model,
    pub plan: Plan,
    /// Every kernel's WGSL, in dispatch order; at f16, in the native spelling
    /// (`enable f16;`, for adapters with `shader-f16`).
    pub shaders: Vec<Shader>,
    /// At f16: the same kernels with halves packed in pairs into `u32`s (core WGSL,
    /// every adapter), in `<kernel>.packed.wgsl` files. Empty at f32.
    pub packed_shaders: Vec<Shader>,
    /// The module's name.
    pub module: String,
    /// Where the spec came from, as the generated code states it.
    pub spec_origin: String,
    pub max_batch: usize,
    /// The module's contents: inner docs and items.
    pub items: TokenStream,
    /// `items` formatted, when the request asked for it.
    formatted: Option<String>,
}

/// Checks the options that do not need the spec (the spec's own checks apply to
/// the rest when the model is built).
pub fn check_options(req: &Request) -> Result<(), Error> {
    let bad = |option, message: String| Err(Error::Option { option, message });
    if req.max_batch == 0 {
        return bad("max_batch", "must be at least 1".into());
    }
    if req.max_batch > 65535 {
        return bad(
            "max_batch",
            format!(
                "{} is more than the 65535 images a dispatch can take",
                req.max_batch
            ),
        );
    }
    if let Some(r) = req.options.resolution {
        if !(1..=8192).contains(&r) {
            return bad("resolution", format!("{r} is not in 1..=8192"));
        }
    }
    if let Some(e) = req.options.bn_eps {
        if !(e > 0.0 && e < 1.0) {
            return bad("bn_eps", format!("{e} is not in (0, 1)"));
        }
    }
    if let Some(c) = req.options.classes {
        if c > 1_000_000 {
            return bad("classes", format!("{c} is more than 1000000"));
        }
    }
    if let Some(m) = &req.module {
        if !is_ident(m) {
            return bad("name", format!("`{m}` is not a Rust identifier"));
        }
    }
    Ok(())
}

fn is_ident(s: &str) -> bool {
    syn::parse_str::<syn::Ident>(s).is_ok()
}

/// A module name for a model name: lowercase, `-` and other punctuation as `_`,
/// a leading `_` before a digit, `_model` after a keyword.
pub fn module_name(model: &str) -> String {
    let mut s: String = model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        return "model".into();
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    if !is_ident(&s) {
        s.push_str("_model");
    }
    s
}

/// Resolves, builds, plans and compiles the model of a request and generates its
/// host code.
pub fn generate(req: &Request) -> Result<Generated, Error> {
    check_options(req)?;
    let (origin, text, select) = match &req.source {
        SpecSource::Builtin(name) => {
            let Some(text) = effc_catalog::source(name) else {
                // Spec::builtin says which names exist and suggests the closest.
                return Err(Error::Spec(Spec::builtin(name).err().unwrap_or_else(
                    || Diagnostic::bare(format!("unknown model `{name}`")).into(),
                )));
            };
            if let Some(m) = &req.model {
                return Err(Error::Option {
                    option: "model",
                    message: format!(
                        "selects a model of a spec file or inline spec; `{name}` is a built-in model (to use `{m}`, write `efficientnet!(\"{m}\")`)"
                    ),
                });
            }
            (
                format!("<builtin {name}>"),
                text.to_string(),
                Some(name.clone()),
            )
        }
        SpecSource::File { path, display } => {
            let text = effc_ir::spec::read_spec(path).map_err(|_| {
                Error::Spec(
                    Diagnostic::bare(format!("cannot read spec file `{display}`"))
                        .with_help(format!(
                            "the path is relative to the crate's directory; looked at {}",
                            path.display()
                        ))
                        .into(),
                )
            })?;
            (display.clone(), text, req.model.clone())
        }
        SpecSource::Inline(text) => ("<inline spec>".to_string(), text.clone(), req.model.clone()),
    };
    let spec = Spec::parse_model(&origin, &text, select.as_deref()).map_err(Error::Spec)?;
    let model = Model::build(&spec, &req.options).map_err(Error::Spec)?;
    let plan = effc_plan::plan_at(&model, req.precision);
    let (shaders, packed_shaders) = match req.precision {
        Precision::F32 => (effc_wgsl::emit_all(&plan), vec![]),
        Precision::F16 => (
            effc_wgsl::emit_all_as(&plan, Spelling::Native),
            effc_wgsl::emit_all_as(&plan, Spelling::Packed)
                .into_iter()
                .map(|mut s| {
                    s.file_name = packed_file_name(&s.file_name);
                    s
                })
                .collect(),
        ),
    };
    let module = req
        .module
        .clone()
        .unwrap_or_else(|| module_name(&model.name));
    let tracked = match (&req.source, req.track_file) {
        (SpecSource::File { path, .. }, true) => Some(
            std::fs::canonicalize(path)
                .unwrap_or_else(|_| path.clone())
                .display()
                .to_string(),
        ),
        _ => None,
    };
    // naga validates the shaders on every core while this thread writes the host
    // code (then helps): the two are independent, and validation is most of the time.
    let all: Vec<Shader> = shaders.iter().chain(&packed_shaders).cloned().collect();
    let (validated, (items, formatted)) = effc_wgsl::validate_while(&all, || {
        let items = emit::module_items(&emit::Input {
            model: &model,
            plan: &plan,
            shaders: &shaders,
            packed_shaders: &packed_shaders,
            spec_name: &spec.name,
            spec_origin: &origin,
            spec_text: &text,
            options: &req.options,
            max_batch: req.max_batch,
            module: &module,
            embed: req.shaders,
            tracked_file: tracked.as_deref(),
        });
        let formatted = req.format.then(|| format_items(items.clone()));
        (items, formatted)
    });
    validated.map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Generated {
        model,
        plan,
        shaders,
        packed_shaders,
        module,
        spec_origin: origin,
        max_batch: req.max_batch,
        items,
        formatted,
    })
}

impl Generated {
    /// `pub mod NAME { … }`: what the macro expands to.
    pub fn module_tokens(&self) -> TokenStream {
        let name = proc_macro2::Ident::new(&self.module, proc_macro2::Span::call_site());
        let items = &self.items;
        quote::quote! { pub mod #name { #items } }
    }

    /// The module's contents as a formatted Rust file (`effc compile`'s `model.rs`;
    /// use it with `#[path = "…/model.rs"] mod NAME;`).
    pub fn file(&self) -> String {
        match &self.formatted {
            Some(f) => f.clone(),
            None => format_items(self.items.clone()),
        }
    }

    /// The whole module, formatted (for reading and snapshots).
    pub fn module_file(&self) -> String {
        format_items(self.module_tokens())
    }

    /// Layers, parameters, MACs, kernels, dispatches and memory.
    pub fn report(&self) -> Report {
        Report::new(self)
    }
}

/// `stem.wgsl` → `stem.packed.wgsl`: the file of a kernel's packed-half spelling.
pub fn packed_file_name(file_name: &str) -> String {
    match file_name.strip_suffix(".wgsl") {
        Some(stem) => format!("{stem}.packed.wgsl"),
        None => format!("{file_name}.packed"),
    }
}

fn format_items(tokens: TokenStream) -> String {
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        // Cannot happen for what `emit` produces; show the raw tokens rather than nothing.
        Err(_) => tokens.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_identifiers() {
        assert_eq!(module_name("v2-s"), "v2_s");
        assert_eq!(module_name("b0"), "b0");
        assert_eq!(module_name("My.Net"), "my_net");
        assert_eq!(module_name("3x"), "_3x");
        assert_eq!(module_name("type"), "type_model");
        assert_eq!(module_name(""), "model");
        assert_eq!(module_name("-"), "__model");
    }

    #[test]
    fn options_are_checked_before_the_spec() {
        let mut r = Request::new(SpecSource::Builtin("b0".into()));
        r.max_batch = 0;
        assert!(matches!(
            generate(&r),
            Err(Error::Option {
                option: "max_batch",
                ..
            })
        ));
        let mut r = Request::new(SpecSource::Builtin("b0".into()));
        r.options.bn_eps = Some(2.0);
        assert!(matches!(
            generate(&r),
            Err(Error::Option {
                option: "bn_eps",
                ..
            })
        ));
        let mut r = Request::new(SpecSource::Builtin("b0".into()));
        r.module = Some("not an ident".into());
        assert!(matches!(
            generate(&r),
            Err(Error::Option { option: "name", .. })
        ));
    }

    #[test]
    fn unknown_builtin_suggests_the_closest() {
        let Err(Error::Spec(d)) = generate(&Request::new(SpecSource::Builtin("v2-ss".into())))
        else {
            panic!("expected a spec error")
        };
        let s = d.render(false);
        assert!(s.contains("unknown model `v2-ss`"), "{s}");
        assert!(s.contains("did you mean `v2-s`"), "{s}");
    }

    #[test]
    fn inline_spec_errors_name_line_and_column() {
        let text = "model tiny extends b0 {\n    width = 0.5\n    widht = 2\n}\n";
        let Err(Error::Spec(d)) = generate(&Request::new(SpecSource::Inline(text.into()))) else {
            panic!("expected a spec error")
        };
        assert_eq!(d.0[0].position().as_deref(), Some("<inline spec>:3:5"));
    }

    #[test]
    fn missing_file_says_where_it_looked() {
        let r = Request::new(SpecSource::File {
            path: "/nonexistent/x.enet".into(),
            display: "x.enet".into(),
        });
        let Err(Error::Spec(d)) = generate(&r) else {
            panic!("expected an error")
        };
        let s = d.render(false);
        assert!(s.contains("cannot read spec file `x.enet`"), "{s}");
        assert!(s.contains("/nonexistent/x.enet"), "{s}");
    }

    #[test]
    fn model_option_selects_a_model_of_the_text() {
        let text = "model a extends lite0 { resolution = 192 }\nmodel b extends lite0 { resolution = 160 }\n";
        let mut r = Request::new(SpecSource::Inline(text.into()));
        assert_eq!(generate(&r).unwrap().model.resolution, 160);
        r.model = Some("a".into());
        let g = generate(&r).unwrap();
        assert_eq!((g.model.resolution, g.module.as_str()), (192, "a"));
        r.model = Some("c".into());
        assert!(matches!(generate(&r), Err(Error::Spec(_))));
    }

    #[test]
    fn generated_file_parses_and_names_every_kernel() {
        let g = generate(&Request::new(SpecSource::Builtin("lite0".into()))).unwrap();
        let file = g.file();
        syn::parse_file(&file).unwrap();
        for k in &g.plan.kernels {
            assert!(
                file.contains(&format!("name: \"{}\"", k.name)),
                "{}",
                k.name
            );
        }
        assert!(file.contains("pub struct Model"));
        assert!(!file.contains("include_str!"));
    }

    #[test]
    fn include_str_form_refers_to_the_wgsl_files() {
        let mut r = Request::new(SpecSource::Builtin("lite0".into()));
        r.shaders = Shaders::IncludeStr;
        let g = generate(&r).unwrap();
        let file = g.file();
        for s in &g.shaders {
            assert!(
                file.contains(&format!("include_str!(\"{}\")", s.file_name)),
                "{}",
                s.file_name
            );
        }
        assert!(!file.contains("@compute"), "no WGSL inline");
    }
}
