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

fn fixture_top5(image: &str) -> Vec<u64> {
    let text = std::fs::read_to_string(root().join("tests/fixtures/lite0/expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["top5"][image]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["class"].as_u64().unwrap())
        .collect()
}

#[test]
fn run_lite0_names_the_photos_on_gpu_and_cpu() {
    // The CPU run takes the images one forward at a time (--batch 1).
    for (device, per_forward) in [("gpu", "16"), ("cpu", "1")] {
        let o = effc(&[
            "run",
            "lite0",
            "--device",
            device,
            "--batch",
            per_forward,
            "--weights",
            "tests/fixtures/lite0/efficientnet-lite0.safetensors",
            "--json",
            "tests/fixtures/images/chelsea.png",
            "tests/fixtures/images/coffee.png",
        ]);
        assert!(o.status.success(), "{device}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for (i, image) in ["chelsea", "coffee"].iter().enumerate() {
            let top: Vec<u64> = v[i]["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["class"].as_u64().unwrap())
                .collect();
            assert_eq!(top, fixture_top5(image), "{device} {image}");
        }
        assert_eq!(v[0]["top"][0]["name"], "tiger cat");
        assert_eq!(v[1]["top"][0]["name"], "espresso");
    }
}

#[test]
fn run_on_a_saved_tensor_and_save_the_logits() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("logits.safetensors");
    let o = effc(&[
        "run",
        "b0-pytorch",
        "--device",
        "cpu",
        "--weights",
        "tests/fixtures/b0/weights.f16.safetensors",
        "--input",
        "tests/fixtures/b0/expected.safetensors",
        "--save",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("expected.safetensors[1]"),
        "{}",
        stdout(&o)
    );
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("logits").unwrap().shape(), &[2, 1000]);
}

#[test]
fn run_reports_bad_inputs_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let w = "tests/fixtures/lite0/efficientnet-lite0.safetensors";
    let o = effc(&[
        "run",
        "lite0",
        "--device",
        "cpu",
        "--weights",
        w,
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("broken.png"), "{}", stderr(&o));

    let o = effc(&[
        "run",
        "lite0",
        "--device",
        "cpu",
        "--weights",
        w,
        "no/such/image.png",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no/such/image.png"), "{}", stderr(&o));

    let o = effc(&[
        "run",
        "b0",
        "--device",
        "cpu",
        "--weights",
        w,
        "tests/fixtures/images/chelsea.png",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("lite0"),
        "another model's weights: {}",
        stderr(&o)
    );
}

#[test]
fn compile_writes_validated_wgsl_and_shaders_prints_one() {
    let dir = tempfile::tempdir().unwrap();
    let o = effc(&["compile", "b0", "-o", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let wgsl = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "wgsl")
        })
        .count();
    assert_eq!(wgsl, 66);
    let o = effc(&["shaders", "v2-s", "--kernel", "blocks.1.0.fused"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("// effc kernel `blocks.1.0.fused` (conv) of model `v2-s`"),
        "{}",
        stdout(&o)
    );
    let o = effc(&["shaders", "v2-s", "--kernel", "blocks.1.0.fusd"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("did you mean `blocks.1.0.fused`?"),
        "{}",
        stderr(&o)
    );
    let o = effc(&["inspect", "b0", "--kernels"]);
    assert!(
        stdout(&o).contains("66 kernels, 66 dispatches per forward"),
        "{}",
        stdout(&o)
    );
}

fn effc_cached(args: &[&str], cache: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_effc"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .env("EFFC_CACHE_DIR", cache)
        .output()
        .expect("the effc binary runs")
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// `effc bench --json` has the fields the issue names; `effc tune` writes the
/// adapter's cache, which `bench` then uses (not with --untuned), and a damaged
/// cache is a warning, not a failure.
#[test]
fn bench_and_tune_share_the_tiles_cache() {
    let cache = tempfile::tempdir().unwrap();
    let spec = "tests/specs/gpu/wide_classes.enet";
    let bench = ["bench", spec, "--runs", "2", "--warmup", "1", "--json"];

    let b = json(&effc_cached(&bench, cache.path()));
    assert!(b["latency_ms"]["median"].as_f64().unwrap() > 0.0);
    assert!(b["latency_ms"]["min"].as_f64() <= b["latency_ms"]["max"].as_f64());
    assert!(b["roofline"]["gemm_gflops"].as_f64().unwrap() > 0.0);
    let kernels = b["kernels"].as_array().unwrap();
    assert_eq!(kernels.len(), b["dispatches"].as_u64().unwrap() as usize);
    for k in kernels {
        for field in ["name", "kind", "ms", "gflops", "gbps"] {
            assert!(!k[field].is_null(), "{field} in {k}");
        }
    }
    assert_eq!(b["tuned_kernels"], 0);
    assert!(
        b["tiles"].as_str().unwrap().starts_with("cost model"),
        "{b}"
    );

    let t = effc_cached(
        &["tune", spec, "--candidates", "2", "--reps", "1"],
        cache.path(),
    );
    assert!(t.status.success(), "{}", stderr(&t));
    assert!(
        stdout(&t).contains("kernel time per forward"),
        "{}",
        stdout(&t)
    );
    assert!(stdout(&t).contains("saved to"), "{}", stdout(&t));
    let files: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("tuning-") && name.ends_with(".json"),
        "{name}"
    );

    let b = json(&effc_cached(&bench, cache.path()));
    assert!(b["tuned_kernels"].as_u64().unwrap() > 0, "{b}");
    assert_eq!(b["tuned_kernels"], b["tiled_kernels"]);
    assert!(b["tiles"].as_str().unwrap().starts_with("tuned"), "{b}");
    let mut untuned = bench.to_vec();
    untuned.push("--untuned");
    assert_eq!(
        json(&effc_cached(&untuned, cache.path()))["tuned_kernels"],
        0
    );

    std::fs::write(&files[0], "{ damaged").unwrap();
    let o = effc_cached(&bench, cache.path());
    assert_eq!(json(&o)["tuned_kernels"], 0);
    assert!(
        stderr(&o).contains("warning") && stderr(&o).contains(&name),
        "{}",
        stderr(&o)
    );

    let o = effc_cached(&["tune", spec, "--candidates", "0"], cache.path());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--candidates"), "{}", stderr(&o));
}
