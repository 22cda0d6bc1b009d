//! Model requests: which model (a built-in, a spec file, an inline spec), its
//! overrides, how it is stored and tuned, and its weights; resolved once into
//! the spec text, the `Spec` and the IR, for every command, the macro and
//! generated code alike.

use std::path::{Path, PathBuf};

use effc_codegen::{CodegenOptions, Generated};
use effc_files::{Input, Outputs};
use effc_ir::{Model, Naming, Options, Spec};
use effc_plan::{Plan, Precision};
use effc_syntax::Diagnostic;

use crate::Error;

/// Where a model's spec comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    /// A built-in model by name (`b0`, `v2-s`, ...; `effc list`).
    Builtin(String),
    /// A `.enet` file: `path` is read, `display` names it in diagnostics and in
    /// generated code (the path as the user wrote it).
    File { path: PathBuf, display: String },
    /// Spec text written inline (`efficientnet!(spec = "...")`).
    Inline(String),
}

impl ModelSource {
    /// A command-line `MODEL|FILE`: a built-in name, else a path to a `.enet`
    /// file (an existing path, or one ending in `.enet` or holding a `/`); any
    /// other word is taken as a built-in name, which resolving reports as unknown
    /// with the closest names.
    pub fn from_arg(arg: &str) -> ModelSource {
        let path = Path::new(arg);
        if effc_catalog::source(arg).is_none()
            && (path.exists() || arg.ends_with(".enet") || arg.contains('/'))
        {
            ModelSource::File {
                path: path.to_path_buf(),
                display: arg.to_string(),
            }
        } else {
            ModelSource::Builtin(arg.to_string())
        }
    }

    /// The spec file, for a file source.
    pub fn file(&self) -> Option<&Path> {
        match self {
            ModelSource::File { path, .. } => Some(path),
            _ => None,
        }
    }

    /// How the user named it: the built-in's name or the file as written.
    pub fn shown(&self) -> &str {
        match self {
            ModelSource::Builtin(n) => n,
            ModelSource::File { display, .. } => display,
            ModelSource::Inline(_) => "<inline spec>",
        }
    }
}

/// Which tiles a model's kernels use on a GPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TuningChoice {
    /// The tiles `effc tune` measured on the adapter in use, where it did;
    /// elsewhere the cost model's.
    #[default]
    Cached,
    /// The cost model's tiles everywhere (`--untuned`).
    CostModel,
}

/// A checkpoint to load: its path, and its naming when forced (else detected
/// from the tensor names).
#[derive(Clone, Debug, PartialEq)]
pub struct WeightsRequest {
    pub path: PathBuf,
    pub naming: Option<Naming>,
}

/// Everything that names a model to run, compile, tune or serve.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelRequest {
    pub source: ModelSource,
    /// Which model of a spec file or inline spec (the last one when `None`).
    pub select: Option<String>,
    /// Overrides of the spec's settings (checked by [`Options::check`]).
    pub options: Options,
    /// How weights and activations are stored on the GPU.
    pub precision: Precision,
    pub tuning: TuningChoice,
    pub weights: Option<WeightsRequest>,
}

/// A request resolved: the spec text it came from, the `Spec` and the IR.
#[derive(Clone, Debug)]
pub struct ResolvedModel {
    /// `<builtin b0>`, the file as the user wrote it, or `<inline spec>`.
    pub origin: String,
    /// The `.enet` text the model was resolved from.
    pub text: String,
    pub spec: Spec,
    pub model: Model,
    pub options: Options,
    pub precision: Precision,
    /// The spec file read, for a file source.
    pub file: Option<PathBuf>,
}

impl ModelRequest {
    /// A request with no overrides, at f32, with cached tiles and no weights.
    pub fn new(source: ModelSource) -> ModelRequest {
        ModelRequest {
            source,
            select: None,
            options: Options::default(),
            precision: Precision::F32,
            tuning: TuningChoice::Cached,
            weights: None,
        }
    }

    /// [`ModelRequest::new`] of [`ModelSource::from_arg`].
    pub fn from_arg(arg: &str) -> ModelRequest {
        ModelRequest::new(ModelSource::from_arg(arg))
    }

    pub fn builtin(name: &str) -> ModelRequest {
        ModelRequest::new(ModelSource::Builtin(name.to_string()))
    }

    pub fn inline(text: &str) -> ModelRequest {
        ModelRequest::new(ModelSource::Inline(text.to_string()))
    }

    /// Declares the files this request reads (the spec file, the checkpoint) as
    /// inputs of a command, so that no output of it can be one of them.
    pub fn declare_inputs(&self, files: &mut Outputs) -> Result<(), Error> {
        if let Some(p) = self.source.file() {
            files.input("the spec file", p)?;
        }
        if let Some(w) = &self.weights {
            files.input("the checkpoint", &w.path)?;
        }
        Ok(())
    }

    /// The spec's text and where it came from (a spec file is read as a regular
    /// file of at most 16 MiB), and the model of it to select.
    fn text(&self) -> Result<(String, String, Option<String>, Option<PathBuf>), Error> {
        match &self.source {
            ModelSource::Builtin(name) => {
                let Some(text) = effc_catalog::source(name) else {
                    // Spec::builtin says which names exist and suggests the closest.
                    return Err(Error::Spec(Spec::builtin(name).err().unwrap_or_else(
                        || Diagnostic::bare(format!("unknown model `{name}`")).into(),
                    )));
                };
                if let Some(m) = &self.select {
                    return Err(Error::Option {
                        option: "model",
                        message: format!(
                            "selects a model of a spec file or inline spec; `{name}` is a built-in model (to use `{m}`, name it instead)"
                        ),
                    });
                }
                Ok((
                    format!("<builtin {name}>"),
                    text.to_string(),
                    Some(name.clone()),
                    None,
                ))
            }
            ModelSource::File { path, display } => {
                let text = effc_files::read_text(path, Input::SPEC)?;
                Ok((
                    display.clone(),
                    text,
                    self.select.clone(),
                    Some(path.clone()),
                ))
            }
            ModelSource::Inline(text) => Ok((
                "<inline spec>".to_string(),
                text.clone(),
                self.select.clone(),
                None,
            )),
        }
    }

    /// Reads (a file source), parses and resolves the spec, checks the overrides
    /// and builds the IR.
    pub fn resolve(&self) -> Result<ResolvedModel, Error> {
        let (origin, text, select, file) = self.text()?;
        let spec = Spec::parse_model(&origin, &text, select.as_deref())?;
        self.options.check()?;
        let model = Model::build(&spec, &self.options)?;
        Ok(ResolvedModel {
            origin,
            text,
            spec,
            model,
            options: self.options.clone(),
            precision: self.precision,
            file,
        })
    }

    /// Resolves the request and generates its host code (what `efficientnet!`
    /// expands to and `effc compile` writes). With `track_file`, the generated
    /// code depends on the spec file (an `include_bytes!` of its absolute path).
    pub fn generate(&self, opts: &CodegenOptions, track_file: bool) -> Result<Generated, Error> {
        effc_codegen::check_options(opts)?;
        self.resolve()?.generate(opts, track_file)
    }
}

impl ResolvedModel {
    /// The kernel plan at the request's precision, with the cost model's tiles.
    pub fn plan(&self) -> Plan {
        effc_plan::plan_at(&self.model, self.precision)
    }

    /// The model's host code (see [`ModelRequest::generate`]).
    pub fn generate(&self, opts: &CodegenOptions, track_file: bool) -> Result<Generated, Error> {
        let tracked = match (&self.file, track_file) {
            (Some(p), true) => Some(
                std::fs::canonicalize(p)
                    .unwrap_or_else(|_| p.clone())
                    .display()
                    .to_string(),
            ),
            _ => None,
        };
        let source = effc_codegen::Source {
            model: &self.model,
            spec_name: &self.spec.name,
            origin: &self.origin,
            text: &self.text,
            options: &self.options,
            precision: self.precision,
            tracked_file: tracked.as_deref(),
        };
        Ok(effc_codegen::generate(&source, opts)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_builtin_suggests_the_closest() {
        let Err(Error::Spec(d)) = ModelRequest::builtin("v2-ss").resolve() else {
            panic!("expected a spec error")
        };
        let s = d.render(false);
        assert!(s.contains("unknown model `v2-ss`"), "{s}");
        assert!(s.contains("did you mean `v2-s`"), "{s}");
    }

    #[test]
    fn inline_spec_errors_name_line_and_column() {
        let text = "model tiny extends b0 {\n    width = 0.5\n    widht = 2\n}\n";
        let Err(Error::Spec(d)) = ModelRequest::inline(text).resolve() else {
            panic!("expected a spec error")
        };
        assert_eq!(d.0[0].position().as_deref(), Some("<inline spec>:3:5"));
    }

    #[test]
    fn a_missing_or_special_spec_file_is_a_read_error_naming_it() {
        let r = ModelRequest::new(ModelSource::File {
            path: "/nonexistent/x.enet".into(),
            display: "x.enet".into(),
        });
        let Err(Error::Read(e)) = r.resolve() else {
            panic!("expected a read error")
        };
        assert!(e.is_not_found(), "{e}");
        #[cfg(unix)]
        {
            let Err(Error::Read(e)) = ModelRequest::from_arg("/dev/zero").resolve() else {
                panic!("expected a read error")
            };
            assert!(e.to_string().contains("is a character device"), "{e}");
        }
    }

    #[test]
    fn select_picks_a_model_of_the_text() {
        let text = "model a extends lite0 { resolution = 192 }\nmodel b extends lite0 { resolution = 160 }\n";
        let mut r = ModelRequest::inline(text);
        assert_eq!(r.resolve().unwrap().model.resolution, 160);
        r.select = Some("a".into());
        let m = r.resolve().unwrap();
        assert_eq!((m.model.resolution, m.spec.name.as_str()), (192, "a"));
        r.select = Some("c".into());
        assert!(matches!(r.resolve(), Err(Error::Spec(_))));
        let mut r = ModelRequest::builtin("b0");
        r.select = Some("a".into());
        assert!(matches!(
            r.resolve(),
            Err(Error::Option {
                option: "model",
                ..
            })
        ));
    }

    #[test]
    fn overrides_are_checked_against_the_spec_ranges() {
        let mut r = ModelRequest::builtin("b0");
        r.options.bn_eps = Some(2.0);
        let Err(Error::Option { option, message }) = r.resolve() else {
            panic!("expected an option error")
        };
        assert_eq!((option, message.as_str()), ("bn_eps", "2 is not in (0, 1)"));
        let mut r = ModelRequest::builtin("b0");
        r.options.resolution = Some(4_294_967_296);
        let Err(Error::Option { option, message }) = r.resolve() else {
            panic!("expected an option error")
        };
        assert_eq!(option, "resolution");
        assert!(message.contains("not in 1..=16384"), "{message}");
    }

    #[test]
    fn command_line_models_are_built_ins_or_files() {
        assert_eq!(
            ModelSource::from_arg("b0"),
            ModelSource::Builtin("b0".into())
        );
        assert!(matches!(
            ModelSource::from_arg("my.enet"),
            ModelSource::File { .. }
        ));
        assert_eq!(
            ModelSource::from_arg("b9"),
            ModelSource::Builtin("b9".into())
        );
    }
}
