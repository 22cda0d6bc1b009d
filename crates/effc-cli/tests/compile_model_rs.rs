//! `effc compile` writes `model.rs`: the same host code as `efficientnet!`. Here it
//! is compiled in a scratch crate (a path dependency on crates/efficientnet, built
//! in the workspace's target directory so that compiled dependencies are reused)
//! and run on Lite0's fixture input, against timm's logits.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `<target>` of this test binary (`<target>/<profile>/deps/…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    profile_dir.parent().unwrap().to_path_buf()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Profile settings equal to the ones the effc workspace builds with (its
/// root Cargo.toml), so that the scratch build finds the artefacts `cargo test`
/// already made: dependencies at opt-level 2, effc's crates at the test profile's 1.
/// (Features still differ where other members' dev-dependencies unify extra
/// features into shared crates; those few are rebuilt.)
fn profile() -> String {
    let ours = [
        "efficientnet",
        "effc-ir",
        "effc-syntax",
        "effc-catalog",
        "effc-plan",
        "effc-wgsl",
        "effc-runtime",
        "effc-weights",
        "effc-codegen",
    ];
    let mut toml = "[profile.dev]\ndebug = \"line-tables-only\"\n\n\
                    [profile.dev.package.\"*\"]\nopt-level = 2\ndebug = false\n"
        .to_string();
    for name in ours {
        toml += &format!("\n[profile.dev.package.{name}]\nopt-level = 1");
    }
    toml
}

const MAIN: &str = r#"
//! Runs the model effc compiled into src/lite0/: reads NCHW f32 input from the
//! first argument's file, writes the logits to the second's.
#[path = "lite0/model.rs"]
mod lite0;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (weights, input, output) = (&args[1], &args[2], &args[3]);
    let bytes = std::fs::read(input).unwrap();
    let input: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let batch = input.len() / lite0::INPUT_SHAPE.iter().product::<usize>();
    let model = lite0::Model::load(weights).unwrap_or_else(|e| panic!("{e}"));
    let logits = model.forward(&input, batch).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(logits.len(), batch * lite0::OUTPUT_LEN);
    let out: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(output, out).unwrap();
    println!("{} kernels, {} parameters", lite0::KERNELS.len(), lite0::PARAMETERS);
}
"#;

#[test]
fn compiled_model_rs_builds_and_matches_timm() {
    let root = root();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let model_dir = dir.join("src/lite0");

    // 1. effc compile
    let o = Command::new(env!("CARGO_BIN_EXE_effc"))
        .args(["compile", "lite0", "--max-batch", "2", "-o"])
        .arg(&model_dir)
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let model_rs = std::fs::read_to_string(model_dir.join("model.rs")).unwrap();
    let wgsl = common::wgsl_files(&model_dir);
    assert_eq!(model_rs.matches("include_str!(").count(), wgsl);
    assert!(model_rs.contains("pub const MAX_BATCH: usize = 2;"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["params"], 4_652_008);
    assert_eq!(report["kernels"].as_array().unwrap().len(), wgsl);
    assert_eq!(report["dispatches"], wgsl);
    let md = std::fs::read_to_string(model_dir.join("report.md")).unwrap();
    assert!(md.contains("| parameters | 4,652,008 |"), "{md}");

    // 2. the scratch crate
    let facade = root.join("crates/efficientnet");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"effc-model-rs-check\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
             [dependencies]\nefficientnet = {{ path = {:?} }}\n\
             # Not used by main.rs: in the workspace effc-cli links effc-codegen, so syn,\n\
             # quote and proc-macro2 are built for the target too; depending on it here\n\
             # gives the same build graph, and the proc-macro crates are reused.\n\
             effc-codegen = {{ path = {:?} }}\n\n[workspace]\n{}",
            facade.display().to_string(),
            root.join("crates/effc-codegen").display().to_string(),
            profile()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("src/main.rs"), MAIN).unwrap();
    // The workspace's lock file: the same dependency versions, nothing to fetch.
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let target = target_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = std::time::Instant::now();
    let o = Command::new(&cargo)
        .args(["build", "--offline", "--quiet"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    eprintln!(
        "scratch crate built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        o.status.success(),
        "model.rs does not build:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bin = target.join("debug").join(format!(
        "effc-model-rs-check{}",
        std::env::consts::EXE_SUFFIX
    ));

    // 3. run it on the fixture
    let fixtures = root.join("tests/fixtures/lite0");
    let bytes = std::fs::read(fixtures.join("expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut input = st.tensor("input.chelsea").unwrap().data().to_vec();
    input.extend(st.tensor("input.coffee").unwrap().data());
    let mut want = f32s(st.tensor("logits.chelsea").unwrap().data());
    want.extend(f32s(st.tensor("logits.coffee").unwrap().data()));
    std::fs::write(dir.join("input.f32"), &input).unwrap();
    let o = Command::new(&bin)
        .arg(fixtures.join("efficientnet-lite0.safetensors"))
        .arg(dir.join("input.f32"))
        .arg(dir.join("output.f32"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("4652008 parameters"));
    let got = f32s(&std::fs::read(dir.join("output.f32")).unwrap());
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(&want)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("model.rs vs timm: max|diff| = {err:.3e}, max|want| = {scale:.3e}");
    assert!(err <= 1e-3 * scale, "max|diff| {err} > 1e-3 x {scale}");
}

#[test]
fn compile_rejects_a_zero_max_batch_and_reports_spec_errors() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_effc"))
        .args(["compile", "lite0", "--max-batch", "0", "-o"])
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--max-batch: must be at least 1"), "{err}");
    assert!(!dir.path().join("model.rs").exists());

    let spec = dir.path().join("bad.enet");
    std::fs::write(
        &spec,
        "model bad {\n    blocks { r1_k4_s1_e1_i32_o16 }\n}\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_effc"))
        .arg("compile")
        .arg(&spec)
        .arg("-o")
        .arg(dir.path().join("out"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.enet:2:17"), "{err}");
    assert!(err.contains("kernel size must be odd"), "{err}");
}
