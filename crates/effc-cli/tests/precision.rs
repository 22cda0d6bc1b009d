//! `--precision f16` across the commands (issue 12): compile (both shader
//! spellings, the report's bytes), inspect --kernels, shaders, run (the GPU by
//! default, refused on the CPU executor) and tune (f16 tiles cached apart).

mod common;

use std::process::Output;

use common::{effc, effc_env, stderr};

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn report(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn compile_at_f16_writes_both_spellings_and_states_its_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (d32, d16) = (tmp.path().join("f32"), tmp.path().join("f16"));
    ok(&effc(&["compile", "b0", "-o", d32.to_str().unwrap()]));
    let out = ok(&effc(&[
        "compile",
        "b0",
        "--precision",
        "f16",
        "-o",
        d16.to_str().unwrap(),
    ]));
    assert!(
        out.contains("f16 storage, each shader native and packed"),
        "{out}"
    );
    let stem = std::fs::read_to_string(d16.join("stem.wgsl")).unwrap();
    let packed = std::fs::read_to_string(d16.join("stem.packed.wgsl")).unwrap();
    assert!(stem.contains("enable f16;"));
    assert!(!packed.contains("enable f16;") && packed.contains("unpack2x16float"));
    let model_rs = std::fs::read_to_string(d16.join("model.rs")).unwrap();
    assert!(model_rs.contains("include_str!(\"stem.packed.wgsl\")"));
    assert!(model_rs.contains("Precision::F16"));
    assert!(!d32.join("stem.packed.wgsl").exists());

    let (r32, r16) = (report(&d32), report(&d16));
    assert_eq!(r16["precision"], "f16");
    assert_eq!(r32["precision"], "f32");
    let ratio = |key: &str| r16[key].as_f64().unwrap() / r32[key].as_f64().unwrap();
    // Issue 12: at most 0.52x the f32 bytes.
    assert!(
        ratio("gpu_weight_bytes") <= 0.52,
        "{}",
        ratio("gpu_weight_bytes")
    );
    assert!(ratio("gpu_activation_bytes") <= 0.52);
    let md = std::fs::read_to_string(d16.join("report.md")).unwrap();
    assert!(md.contains("| storage precision (GPU) | f16"), "{md}");

    // Recompiling the directory at f32 removes the packed shaders it no longer has.
    let o = effc(&["compile", "b0", "-o", d16.to_str().unwrap()]);
    ok(&o);
    assert!(!d16.join("stem.packed.wgsl").exists());
    assert!(stderr(&o).contains("removed"), "{}", stderr(&o));
}

#[test]
fn inspect_and_shaders_at_f16() {
    let f32_plan = ok(&effc(&["inspect", "v2-s", "--kernels"]));
    let f16_plan = ok(&effc(&[
        "inspect",
        "v2-s",
        "--kernels",
        "--precision",
        "f16",
    ]));
    assert!(f16_plan.starts_with("kernel plan of v2-s (f16 storage, f32 sums):"));
    assert!(!f32_plan.contains("f16"));
    // "activations N bytes per image in K buffers; weights M bytes"
    let bytes = |text: &str| -> (f64, f64) {
        let last = text.lines().last().unwrap();
        let nums: Vec<f64> = last
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        (nums[0], nums[2])
    };
    let ((a32, w32), (a16, w16)) = (bytes(&f32_plan), bytes(&f16_plan));
    assert!(
        a16 / a32 <= 0.52 && w16 / w32 <= 0.52,
        "{a16}/{a32}, {w16}/{w32}"
    );

    let o = effc(&["inspect", "b0", "--precision", "f16"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--kernels"), "{}", stderr(&o));

    let native = ok(&effc(&[
        "shaders",
        "b0",
        "--precision",
        "f16",
        "--kernel",
        "stem",
    ]));
    let packed = ok(&effc(&[
        "shaders",
        "b0",
        "--precision",
        "f16",
        "--spelling",
        "packed",
        "--kernel",
        "stem",
    ]));
    assert!(native.contains("enable f16;") && !packed.contains("enable f16;"));
    assert!(packed.contains("pack2x16float"));
}

#[test]
fn run_at_f16_uses_the_gpu_and_names_the_photo() {
    let w = "tests/fixtures/lite0/efficientnet-lite0.safetensors";
    let img = "tests/fixtures/images/chelsea.png";
    let o = effc(&[
        "run",
        "lite0",
        "-w",
        w,
        "--precision",
        "f16",
        "--device",
        "cpu",
        img,
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("effc's CPU backend (like the CPU reference executor) computes in f32"),
        "{}",
        stderr(&o)
    );

    // No --device: f16 is a GPU format, so the GPU (a software one here) runs it.
    let o = effc(&["run", "lite0", "-w", w, "--precision", "f16", "--json", img]);
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert!(stderr(&o).contains("note: running on"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("CPU reference"), "{}", stderr(&o));
    assert_eq!(v[0]["top"][0]["name"], "tiger cat");
}

#[test]
fn tune_at_f16_caches_its_tiles_apart_from_f32() {
    let cache = tempfile::tempdir().unwrap();
    let env = [("EFFC_CACHE_DIR", cache.path())];
    let spec = "tests/specs/gpu/wide_classes.enet";
    let o = effc_env(
        &[
            "tune",
            spec,
            "--precision",
            "f16",
            "--candidates",
            "2",
            "--reps",
            "1",
            "--json",
        ],
        &env,
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(v["precision"], "f16");
    let shapes = v["shapes"].as_array().unwrap();
    assert!(!shapes.is_empty());
    assert!(shapes
        .iter()
        .all(|s| s["key"].as_str().unwrap().ends_with(" f16")));
    let file = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    let cached: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let keys: Vec<&String> = cached["tuning"]["gemm"]
        .as_object()
        .unwrap()
        .keys()
        .chain(cached["tuning"]["depthwise"].as_object().unwrap().keys())
        .collect();
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k.ends_with(" f16")),
        "{keys:?}"
    );

    // bench at f16 uses them; at f32 it has none.
    let bench = |p: &str| {
        let o = effc_env(
            &[
                "bench",
                spec,
                "--device",
                "gpu",
                "--runs",
                "1",
                "--warmup",
                "0",
                "--precision",
                p,
                "--json",
            ],
            &env,
        );
        serde_json::from_str::<serde_json::Value>(&ok(&o)).unwrap()
    };
    assert!(bench("f16")["tuned_kernels"].as_u64().unwrap() > 0);
    assert_eq!(bench("f32")["tuned_kernels"], 0);
}
