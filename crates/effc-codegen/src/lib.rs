//! effc's Rust host-code generator: the module that `efficientnet!` expands to and
//! that `effc compile` writes as `model.rs`, and the compile report.
//!
//! [`generate`] takes a resolved model ([`Source`]: the IR and the spec text it
//! came from; `effc-driver` resolves requests into it), plans the kernels, emits
//! and validates their WGSL, and returns a [`Generated`]: the module's items as a
//! [`TokenStream`] (what the macro returns), the same formatted with prettyplease
//! ([`Generated::file`], what `effc compile` writes), and a [`Report`].
//!
//! The generated code names only `::efficientnet::__private::…`, so it compiles in
//! any crate that depends on the `efficientnet` facade. It embeds the spec text and
//! options (the loader rebuilds the IR and plan from them in milliseconds) and every
//! kernel's WGSL, inline ([`Shaders::Inline`], the macro) or through
//! `include_str!` of the `.wgsl` file beside `model.rs` ([`Shaders::IncludeStr`]).
//!
//! This crate does no I/O, and knows nothing of proc macros (it is testable
//! without expansion) or of GPUs.

mod emit;
mod features;
mod report;
pub mod web;

use std::fmt;

#[cfg(test)]
use effc_ir::Spec;
use effc_ir::{Model, Options};
use effc_plan::Plan;
use effc_wgsl::{Shader, Spelling};
use proc_macro2::TokenStream;

pub use effc_plan::Precision;
pub use report::{KernelRow, Report};

/// The default of `max_batch`.
pub const DEFAULT_MAX_BATCH: usize = 8;

/// How the generated code gets each kernel's WGSL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shaders {
    /// As string literals (the macro).
    Inline,
    /// As `include_str!("<kernel>.wgsl")`, files written beside the generated code.
    IncludeStr,
}

/// The model to generate code for, resolved (by `effc-driver`'s
/// `ModelRequest::resolve`): the IR and the spec text it was built from, which
/// the generated code embeds for its loader to rebuild.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    pub model: &'a Model,
    /// The model's name in its spec (what the loader selects).
    pub spec_name: &'a str,
    /// Where the spec came from: `<builtin lite0>`, a file as the user wrote it,
    /// `<inline spec>`.
    pub origin: &'a str,
    /// The `.enet` text.
    pub text: &'a str,
    /// The overrides the model was built with.
    pub options: &'a Options,
    /// How weights and activations are stored: at f16 the shaders come in both
    /// spellings ([`Generated::packed_shaders`]) and the loader picks one per adapter.
    pub precision: Precision,
    /// An absolute spec file path the build should depend on (an
    /// `include_bytes!`), so that editing it recompiles the macro's caller.
    pub tracked_file: Option<&'a str>,
}

/// How to generate: what only the host code needs.
#[derive(Clone, Debug, PartialEq)]
pub struct CodegenOptions {
    /// The largest batch a forward takes.
    pub max_batch: usize,
    /// The module's name; derived from the model's name when `None`.
    pub module: Option<String>,
    pub shaders: Shaders,
    /// Also format the module as a file ([`Generated::file`]), while the shaders are
    /// validated: `effc compile` sets it, the macro (which returns tokens) does not.
    pub format: bool,
}

impl Default for CodegenOptions {
    /// `max_batch` 8, the module named after the model, shaders inline, unformatted.
    fn default() -> CodegenOptions {
        CodegenOptions {
            max_batch: DEFAULT_MAX_BATCH,
            module: None,
            shaders: Shaders::Inline,
            format: false,
        }
    }
}

/// Why nothing was generated.
#[derive(Clone, Debug)]
pub enum Error {
    /// An option is out of range. `option` is its name (`max_batch`, `name`).
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
            Error::Option { option, message } => write!(f, "`{option}` {message}"),
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

/// Checks the options (the model's own overrides are checked when it is built).
pub fn check_options(opts: &CodegenOptions) -> Result<(), Error> {
    let bad = |option, message: String| Err(Error::Option { option, message });
    if opts.max_batch == 0 {
        return bad("max_batch", "must be at least 1".into());
    }
    if opts.max_batch > 65535 {
        return bad(
            "max_batch",
            format!(
                "{} is more than the 65535 images a dispatch can take",
                opts.max_batch
            ),
        );
    }
    if let Some(m) = &opts.module {
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

/// Plans and compiles the kernels of a resolved model and generates its host code.
pub fn generate(src: &Source, opts: &CodegenOptions) -> Result<Generated, Error> {
    check_options(opts)?;
    let model = src.model.clone();
    let plan = effc_plan::plan_at(&model, src.precision);
    let (shaders, packed_shaders) = match src.precision {
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
    let module = opts
        .module
        .clone()
        .unwrap_or_else(|| module_name(&model.name));
    // naga validates the shaders on every core while this thread writes the host
    // code (then helps): the two are independent, and validation is most of the time.
    let all: Vec<Shader> = shaders.iter().chain(&packed_shaders).cloned().collect();
    let (validated, (items, formatted)) = effc_wgsl::validate_while(&all, || {
        let items = emit::module_items(&emit::Input {
            model: &model,
            plan: &plan,
            shaders: &shaders,
            packed_shaders: &packed_shaders,
            spec_name: src.spec_name,
            spec_origin: src.origin,
            spec_text: src.text,
            options: src.options,
            max_batch: opts.max_batch,
            module: &module,
            embed: opts.shaders,
            tracked_file: src.tracked_file,
        });
        let formatted = opts.format.then(|| format_items(items.clone()));
        (items, formatted)
    });
    validated.map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Generated {
        model,
        plan,
        shaders,
        packed_shaders,
        module,
        spec_origin: src.origin.to_string(),
        max_batch: opts.max_batch,
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

/// Test helpers: a built-in's or an inline spec's host code, resolved here
/// without the driver (which this crate's own tests cannot depend on).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub(crate) fn generate_text(
        origin: &str,
        text: &str,
        select: Option<&str>,
        precision: Precision,
        opts: &CodegenOptions,
    ) -> Generated {
        let spec = Spec::parse_model(origin, text, select).expect("the spec resolves");
        let options = Options::default();
        let model = Model::build(&spec, &options).expect("the spec builds");
        let src = Source {
            model: &model,
            spec_name: &spec.name,
            origin,
            text,
            options: &options,
            precision,
            tracked_file: None,
        };
        generate(&src, opts).expect("the model generates")
    }

    pub(crate) fn builtin(name: &str, precision: Precision, opts: &CodegenOptions) -> Generated {
        let text = effc_catalog::source(name).expect("a built-in");
        generate_text(
            &format!("<builtin {name}>"),
            text,
            Some(name),
            precision,
            opts,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::testing::builtin;
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
    fn options_are_checked() {
        let opts = CodegenOptions {
            max_batch: 0,
            ..CodegenOptions::default()
        };
        assert!(matches!(
            check_options(&opts),
            Err(Error::Option {
                option: "max_batch",
                ..
            })
        ));
        let opts = CodegenOptions {
            module: Some("not an ident".into()),
            ..CodegenOptions::default()
        };
        assert!(matches!(
            check_options(&opts),
            Err(Error::Option { option: "name", .. })
        ));
    }

    #[test]
    fn generated_file_parses_and_names_every_kernel() {
        let g = builtin("lite0", Precision::F32, &CodegenOptions::default());
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
        let opts = CodegenOptions {
            shaders: Shaders::IncludeStr,
            ..CodegenOptions::default()
        };
        let g = builtin("lite0", Precision::F32, &opts);
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
