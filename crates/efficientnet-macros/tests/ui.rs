//! Compile errors of `efficientnet!`: each case in `ui/` must fail to compile with
//! exactly the diagnostics of its `.stderr` file (`TRYBUILD=overwrite` rewrites them).

use std::path::{Path, PathBuf};

/// trybuild compiles the cases in a crate of its own, under
/// `<target>/tests/trybuild/efficientnet-macros/`: that is the `CARGO_MANIFEST_DIR`
/// a `file = "…"` path is relative to, as a user's crate directory would be. Put
/// the cases' spec files there, under `specs/`.
fn stage_spec_files() {
    let exe = std::env::current_exe().expect("the test binary has a path");
    // <target>/<profile>/deps/ui-HASH
    let target = exe
        .ancestors()
        .nth(3)
        .expect("test binaries live in <target>/<profile>/deps");
    let dst = target.join("tests/trybuild/efficientnet-macros/specs");
    std::fs::create_dir_all(&dst).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/specs");
    for e in std::fs::read_dir(&src).unwrap() {
        let p: PathBuf = e.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
}

#[test]
fn compile_errors() {
    stage_spec_files();
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
