//! Builds the browser's CPU backend (`effc-wasm`, for `wasm32-unknown-unknown` with
//! SIMD128) when the `commands` feature is on, into `OUT_DIR/effc-cpu.wasm`, which
//! `compile` embeds (`include_bytes!`) and `effc compile --target web` writes
//! beside the shaders.
//!
//! A nested `cargo build --release --locked` with a target dir of its own (the
//! outer build holds its own dir's lock) and without the outer build's flags and
//! wrappers (RUSTFLAGS for the host, clippy's `RUSTC_WORKSPACE_WRAPPER`, a
//! `CARGO_TARGET_DIR`), which are not meant for the wasm module.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_COMMANDS");
    if std::env::var_os("CARGO_FEATURE_COMMANDS").is_none() {
        return;
    }
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.join("../..");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    // What the module is built from: the crates it depends on in this workspace.
    for c in [
        "effc-wasm",
        "effc-cpu",
        "effc-plan",
        "effc-ir",
        "effc-syntax",
        "effc-catalog",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            root.join("crates").join(c).display()
        );
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );
    println!("cargo:rerun-if-changed={}", root.join("grammar").display());

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    check_target(&rustc);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = out.join("wasm-target");
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "-p",
        "effc-wasm",
        "--release",
        "--locked",
        "--target",
        TARGET,
    ])
    .arg("--manifest-path")
    .arg(root.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_INCREMENTAL",
    ] {
        cmd.env_remove(var);
    }
    cmd.env(
        "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS",
        "-Ctarget-feature=+simd128",
    );
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("effc-driver's build could not run cargo to build effc-wasm for {TARGET}: {e}")
    });
    if !status.success() {
        panic!(
            "effc-driver's build: `cargo build -p effc-wasm --release --target {TARGET}` failed ({status}); its errors are above"
        );
    }
    let wasm = target_dir
        .join(TARGET)
        .join("release")
        .join("effc_wasm.wasm");
    std::fs::copy(&wasm, out.join("effc-cpu.wasm"))
        .unwrap_or_else(|e| panic!("effc-driver's build: no {}: {e}", wasm.display()));
}

/// A clear error where the toolchain lacks the wasm target.
fn check_target(rustc: &str) {
    let libdir = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()));
    let installed = libdir.as_deref().is_some_and(has_core);
    if !installed {
        panic!(
            "effc-driver embeds the browser's CPU backend, built for {TARGET}, which this Rust toolchain does not have: run `rustup target add {TARGET}` (rust-toolchain.toml lists it, so rustup adds it by itself where it can download)"
        );
    }
}

fn has_core(libdir: &Path) -> bool {
    std::fs::read_dir(libdir).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
    })
}
