//! Enables the AVX-512 kernels (`cfg(effc_avx512)`) on compilers that have the
//! `avx512f` target feature stable (Rust 1.89 and later); the workspace's
//! rust-version is older, and there the AVX2 and portable kernels remain.

use std::process::Command;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(effc_avx512)");
    println!("cargo:rerun-if-env-changed=RUSTC");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let minor = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| minor_version(&v));
    if minor.is_some_and(|m| m >= 89) {
        println!("cargo:rustc-cfg=effc_avx512");
    }
}

/// `rustc 1.95.0 (…)` → 95.
fn minor_version(version: &str) -> Option<u32> {
    let v = version.split_whitespace().nth(1)?;
    let mut parts = v.split('.');
    (parts.next()? == "1").then_some(())?;
    parts.next()?.parse().ok()
}
