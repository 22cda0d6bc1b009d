//! The file-driven harness of `tests/specs/**/*.enet`.
//!
//! A spec's header is its leading `#` lines. Lines of the form `# key: value` with a
//! lowercase key are directives; every other `#` line is prose. Directives:
//!
//! | directive | meaning |
//! |---|---|
//! | `# check: ir plan wgsl gpu` | the checks this spec takes (any of `ir`, `plan`, `wgsl`, `gpu`) |
//! | `# expect-error: LINE:COL` | the spec is refused and its first diagnostic points there (the `error` check) |
//! | `# expect-params: N` | the built model has N parameters (checked with `ir`) |
//! | `# batch: N` | images per forward for `gpu` (default 1) |
//!
//! The checks, and the test that runs each:
//! - `ir`: the model builds; its printout is snapshotted (effc-ir `tests/specs.rs`);
//! - `error`: refused, the first diagnostic where stated, the diagnostics
//!   snapshotted (effc-ir `tests/specs.rs`);
//! - `plan`: the kernel plan is valid ([`Plan::validate`]) and its printout
//!   snapshotted (effc-plan `tests/specs.rs`);
//! - `wgsl`: every kernel's WGSL validates with naga (effc-wgsl `tests/validate.rs`);
//! - `gpu`: the compiled model on a wgpu adapter equals the CPU reference executor
//!   with random weights (effc-runtime `tests/gpu.rs`).
//!
//! An unknown directive, a malformed value, or a spec that takes no check is an error
//! of the harness (every file must be tested by something).
//!
//! [`Plan::validate`]: https://docs.rs/effc-plan

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use effc_ir::{Model, Options, Spec};

/// One check a spec can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    Ir,
    Error,
    Plan,
    Wgsl,
    Gpu,
}

impl Check {
    fn parse(word: &str) -> Option<Check> {
        Some(match word {
            "ir" => Check::Ir,
            "plan" => Check::Plan,
            "wgsl" => Check::Wgsl,
            "gpu" => Check::Gpu,
            _ => return None,
        })
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::Ir => "ir",
            Check::Error => "error",
            Check::Plan => "plan",
            Check::Wgsl => "wgsl",
            Check::Gpu => "gpu",
        })
    }
}

/// What a spec's header states.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub checks: BTreeSet<Check>,
    /// `LINE:COL` of the first diagnostic (implies [`Check::Error`]).
    pub expect_error: Option<String>,
    pub expect_params: Option<u64>,
    /// Images per forward for the `gpu` check.
    pub batch: usize,
}

impl Header {
    /// Parses the leading `#` lines of `text`; `Err` says which line is wrong.
    pub fn parse(text: &str) -> Result<Header, String> {
        let mut h = Header {
            batch: 1,
            ..Header::default()
        };
        let mut seen = BTreeSet::new();
        for (i, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
            let Some(rest) = line.strip_prefix('#') else {
                break;
            };
            let Some((key, value)) = directive(rest) else {
                continue;
            };
            let at = |msg: String| format!("line {}: {msg}", i + 1);
            if !seen.insert(key) {
                return Err(at(format!("`{key}` stated twice")));
            }
            match key {
                "check" => {
                    for w in value.split_whitespace() {
                        let c = Check::parse(w).ok_or_else(|| {
                            at(format!("unknown check `{w}` (ir, plan, wgsl, gpu)"))
                        })?;
                        h.checks.insert(c);
                    }
                }
                "expect-error" => {
                    let ok = value
                        .split_once(':')
                        .is_some_and(|(l, c)| l.parse::<u32>().is_ok() && c.parse::<u32>().is_ok());
                    if !ok {
                        return Err(at(format!("`{value}` is not LINE:COL")));
                    }
                    h.expect_error = Some(value.to_string());
                    h.checks.insert(Check::Error);
                }
                "expect-params" => {
                    h.expect_params = Some(
                        value
                            .parse()
                            .map_err(|_| at(format!("`{value}` is not a count")))?,
                    );
                }
                "batch" => {
                    h.batch = value
                        .parse()
                        .ok()
                        .filter(|&b| b > 0)
                        .ok_or_else(|| at(format!("`{value}` is not a batch size")))?;
                }
                _ => {
                    return Err(at(format!(
                        "unknown directive `{key}` (check, expect-error, expect-params, batch)"
                    )))
                }
            }
        }
        if h.checks.contains(&Check::Error) && h.checks.len() > 1 {
            return Err("a spec that must be refused can take no other check".into());
        }
        if h.checks.is_empty() {
            return Err("no `# check: ...` and no `# expect-error: ...`: nothing tests it".into());
        }
        Ok(h)
    }
}

/// `key: value` where key is lowercase letters and dashes.
fn directive(rest: &str) -> Option<(&str, &str)> {
    let (key, value) = rest.trim().split_once(':')?;
    let directive = !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '-');
    directive.then(|| (key, value.trim()))
}

/// One spec file of `tests/specs`.
#[derive(Clone, Debug)]
pub struct SpecCase {
    pub path: PathBuf,
    /// The path from the workspace root (`tests/specs/gpu/odd_channels.enet`): the
    /// name diagnostics show.
    pub name: String,
    /// The file name (`odd_channels.enet`): the snapshot suffix.
    pub file: String,
    pub text: String,
    pub header: Header,
}

impl SpecCase {
    /// Reads `path` (under the workspace root) and parses its header; panics naming
    /// the file and line when the header is wrong.
    pub fn read(path: &Path) -> SpecCase {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let root = crate::root();
        let name = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/");
        let header = Header::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        SpecCase {
            path: path.to_path_buf(),
            name,
            file,
            text,
            header,
        }
    }

    pub fn takes(&self, check: Check) -> bool {
        self.header.checks.contains(&check)
    }

    /// Parses and builds the spec's model with default options.
    pub fn build(&self) -> Result<Model, effc_syntax::Diagnostics> {
        self.build_with(&Options::default())
    }

    pub fn build_with(&self, opts: &Options) -> Result<Model, effc_syntax::Diagnostics> {
        let spec = Spec::parse(&self.name, &self.text)?;
        Model::build(&spec, opts)
    }

    /// [`SpecCase::build`], panicking with the rendered diagnostics.
    pub fn model(&self) -> Model {
        self.build()
            .unwrap_or_else(|e| panic!("{} should build:\n{}", self.name, e.render(false)))
    }
}

/// Every `tests/specs/**/*.enet`, sorted by path, headers parsed.
pub fn cases() -> Vec<SpecCase> {
    let mut paths = vec![];
    collect(&crate::root().join("tests/specs"), &mut paths);
    paths.sort();
    paths.iter().map(|p| SpecCase::read(p)).collect()
}

/// The specs that take `check`; panics if there are none (a glob gone wrong).
pub fn cases_with(check: Check) -> Vec<SpecCase> {
    let v: Vec<_> = cases().into_iter().filter(|c| c.takes(check)).collect();
    assert!(!v.is_empty(), "no spec under tests/specs takes `{check}`");
    v
}

/// The spec `tests/specs/<rel>`.
pub fn case(rel: &str) -> SpecCase {
    SpecCase::read(&crate::root().join("tests/specs").join(rel))
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "enet") {
            out.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_state_checks_and_parameters() {
        let h = Header::parse("# check: ir gpu\n# batch: 3\n# A model.\nmodel m {}\n# check: nope")
            .unwrap();
        assert_eq!(h.checks, BTreeSet::from([Check::Ir, Check::Gpu]));
        assert_eq!(h.batch, 3);
        let h = Header::parse("# expect-error: 4:12\n# Why: prose, not a directive\n").unwrap();
        assert_eq!(h.checks, BTreeSet::from([Check::Error]));
        assert_eq!(h.expect_error.as_deref(), Some("4:12"));
        let h = Header::parse("# check: ir\n# expect-params: 1234\n").unwrap();
        assert_eq!(h.expect_params, Some(1234));
    }

    #[test]
    fn wrong_headers_say_which_line() {
        for (text, want) in [
            (
                "# A model.\n# chek: ir\n",
                "line 2: unknown directive `chek`",
            ),
            ("# check: ir cpu\n", "unknown check `cpu`"),
            (
                "# check: ir\n# batch: 0\n",
                "line 2: `0` is not a batch size",
            ),
            ("# expect-error: 4\n", "`4` is not LINE:COL"),
            ("# check: ir\n# check: gpu\n", "`check` stated twice"),
            (
                "# expect-error: 1:2\n# check: ir\n",
                "can take no other check",
            ),
            ("# Just prose.\nmodel m {}\n", "nothing tests it"),
        ] {
            let e = Header::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    /// Every spec file of the repository has a valid header that asks for a check,
    /// and every check is asked for by some spec.
    #[test]
    fn every_spec_takes_a_check() {
        let all = cases();
        assert!(all.len() >= 40, "{} specs", all.len());
        for c in [
            Check::Ir,
            Check::Error,
            Check::Plan,
            Check::Wgsl,
            Check::Gpu,
        ] {
            assert!(all.iter().any(|s| s.takes(c)), "no spec takes {c}");
        }
    }
}
