//! What the `effc` binary's test files share: running it from the workspace root
//! (so fixture paths are relative to it), reading its output, and counting the
//! shaders a compile wrote. Each test binary uses a part of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

pub use effc_testkit::root;

/// `effc ARGS` in the workspace root, without colour.
pub fn effc(args: &[&str]) -> Output {
    effc_env(args, &[] as &[(&str, &str)])
}

/// [`effc`] with extra environment variables.
pub fn effc_env<K: AsRef<OsStr>, V: AsRef<OsStr>>(args: &[&str], env: &[(K, V)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_effc"));
    c.args(args).current_dir(root()).env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("the effc binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `.wgsl` files directly in `dir`.
/// Asserts that `o` is a failure (exit 1, no panic) whose stderr says each of
/// `want`; returns that stderr.
pub fn fails_saying(o: &Output, want: &[&str]) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for w in want {
        assert!(err.contains(w), "wanted `{w}` in: {err}");
    }
    err
}

pub fn wgsl_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "wgsl")
        })
        .count()
}

/// A path as the `&str` an argument list takes.
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The tiny two-class model the training tests train (16 px, both block kinds).
pub const TRAIN_SPEC: &str = "model tiny {
    resolution = 16
    stem       = 8
    head       = 16
    classes    = 2
    blocks {
        r1_k3_s1_e1_i8_o8_c1
        r1_k3_s2_e4_i8_o16_se0.25
    }
}";
