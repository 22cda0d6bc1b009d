//! File-driven tests: `tests/specs/ok/*.enet` build and their IR printout is
//! snapshotted; `tests/specs/err/*.enet` fail and their diagnostics are
//! snapshotted. A spec file can state what it expects in its first lines:
//! `# expect-error: LINE:COL` (where the first diagnostic points) or
//! `# expect-params: N`.

use std::path::Path;

use effc_ir::{Model, Options, Spec};

fn display_name(path: &Path) -> String {
    let s = path.to_string_lossy().replace('\\', "/");
    match s.find("tests/specs/") {
        Some(i) => s[i..].to_string(),
        None => s,
    }
}

fn expectation<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix('#')
                .map(str::trim)
                .and_then(|l| l.strip_prefix(key))
                .map(str::trim)
        })
}

fn build(name: &str, text: &str) -> Result<Model, effc_syntax::Diagnostics> {
    let spec = Spec::parse(name, text)?;
    Model::build(&spec, &Options::default())
}

#[test]
fn valid_specs() {
    insta::glob!("../../../tests/specs/ok", "*.enet", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let name = display_name(path);
        let m = build(&name, &text)
            .unwrap_or_else(|e| panic!("{name} should be valid:\n{}", e.render(false)));
        if let Some(n) = expectation(&text, "expect-params:") {
            assert_eq!(m.param_count().to_string(), n, "{name}");
        }
        insta::assert_snapshot!(m.render());
    });
}

#[test]
fn invalid_specs() {
    let mut count = 0;
    insta::glob!("../../../tests/specs/err", "*.enet", |path| {
        count += 1;
        let text = std::fs::read_to_string(path).unwrap();
        let name = display_name(path);
        let err = match build(&name, &text) {
            Ok(_) => panic!("{name} should be rejected"),
            Err(e) => e,
        };
        let want = expectation(&text, "expect-error:")
            .unwrap_or_else(|| panic!("{name} has no `# expect-error: LINE:COL`"));
        let got = err.0[0].position().unwrap_or_default();
        assert_eq!(
            got,
            format!("{name}:{want}"),
            "first diagnostic of {name}:\n{}",
            err.render(false)
        );
        insta::assert_snapshot!(err.render(false));
    });
    assert!(count >= 15, "only {count} invalid specs");
}
