//! The `ir` and `error` checks of the spec harness (`effc_testkit::spec`): specs
//! taking `ir` build, match their `# expect-params:` and their IR printout is
//! snapshotted; specs with `# expect-error: LINE:COL` are refused there and their
//! diagnostics are snapshotted.

use effc_testkit::spec::{cases_with, Check, SpecCase};

fn snapshot_settings(case: &SpecCase) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_suffix(&case.file);
    s.set_input_file(&case.path);
    s.set_prepend_module_to_snapshot(false);
    s
}

#[test]
fn valid_specs() {
    for case in cases_with(Check::Ir) {
        let m = case.model();
        if let Some(n) = case.header.expect_params {
            assert_eq!(m.param_count(), n, "{}", case.name);
        }
        snapshot_settings(&case).bind(|| {
            insta::assert_snapshot!("specs__valid_specs", m.render());
        });
    }
}

#[test]
fn invalid_specs() {
    let cases = cases_with(Check::Error);
    assert!(cases.len() >= 15, "only {} invalid specs", cases.len());
    for case in cases {
        let name = &case.name;
        let err = match case.build() {
            Ok(_) => panic!("{name} should be rejected"),
            Err(e) => e,
        };
        let want = case.header.expect_error.as_deref().unwrap();
        let got = err.0[0].position().unwrap_or_default();
        assert_eq!(
            got,
            format!("{name}:{want}"),
            "first diagnostic of {name}:\n{}",
            err.render(false)
        );
        snapshot_settings(&case).bind(|| {
            insta::assert_snapshot!("specs__invalid_specs", err.render(false));
        });
    }
}
