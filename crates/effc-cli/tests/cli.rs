//! The `effc` binary, end to end: exit codes, output formats, diagnostics.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn effc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_effc"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("the effc binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn list_names_every_builtin() {
    let o = effc(&["list"]);
    assert!(o.status.success());
    let out = stdout(&o);
    for name in effc_catalog::names() {
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} missing:\n{out}"
        );
    }
    let o = effc(&["list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 24);
    assert_eq!(v[0]["params"], 5_288_548);
}

#[test]
fn inspect_json_has_totals() {
    let o = effc(&["inspect", "b0", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["params"], 5_288_548);
    assert_eq!(v["macs"], 385_814_752);
    assert_eq!(v["stages"].as_array().unwrap().len(), 7);
    assert!(v["layers"].as_array().unwrap().len() > 100);

    let o = effc(&[
        "inspect",
        "v2-s",
        "--resolution",
        "300",
        "--classes",
        "0",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["resolution"], 300);
    assert_eq!(v["params"], 21_458_488 - 1_281_000);
    assert_eq!(v["output"], serde_json::json!([1280, 1, 1]));
}

#[test]
fn inspect_table_and_param_layouts() {
    let o = effc(&["inspect", "tests/specs/ok/tiny_mixed.enet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("model tiny_mixed"), "{out}");
    assert!(out.contains("blocks.3.1.dw.conv"), "{out}");

    let o = effc(&["inspect", "lite0", "--params", "tf"]);
    let out = stdout(&o);
    assert_eq!(out.lines().next(), Some("_conv_stem.weight\t32x3x3x3"));
    assert_eq!(out.lines().count(), 247);
}

#[test]
fn check_accepts_valid_and_rejects_invalid() {
    let o = effc(&[
        "check",
        "tests/specs/ok/tiny_mixed.enet",
        "tests/specs/ok/same_file_base.enet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 3, "one line per model");

    let o = effc(&["check", "tests/specs/err/stage_mismatch.enet"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("tests/specs/err/stage_mismatch.enet:6:21"),
        "{err}"
    );
    assert!(
        err.contains("stage input channels (32) differ from the previous stage's output (24)"),
        "{err}"
    );
    assert!(
        err.contains('^') || err.contains('┬'),
        "a caret under the token: {err}"
    );

    let o = effc(&["check", "does/not/exist.enet"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot read does/not/exist.enet"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn unknown_model_is_a_clear_error() {
    let o = effc(&["inspect", "b9"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("unknown model `b9`"), "{err}");
    assert!(err.contains("built-in models: b0"), "{err}");

    let o = effc(&["inspect", "b0", "--resolution", "8"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("resolution 8 is too small"),
        "{}",
        stderr(&o)
    );
}
