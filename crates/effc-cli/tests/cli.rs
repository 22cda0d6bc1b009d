//! The `effc` binary, end to end: exit codes, output formats, diagnostics.

mod common;

use std::process::{Command, Output};

use common::{effc, effc_env, fails_saying, root, stderr, stdout, wgsl_files};

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
    let err = fails_saying(&o, &["tests/specs/err/stage_mismatch.enet:6:21"]);
    assert!(
        err.contains("stage input channels (32) differ from the previous stage's output (24)"),
        "{err}"
    );
    assert!(
        err.contains('^') || err.contains('┬'),
        "a caret under the token: {err}"
    );

    let o = effc(&["check", "does/not/exist.enet"]);
    fails_saying(&o, &["cannot read `does/not/exist.enet`"]);
}

#[test]
fn unknown_model_is_a_clear_error() {
    let o = effc(&["inspect", "b9"]);
    let err = fails_saying(&o, &["unknown model `b9`"]);
    assert!(err.contains("built-in models: b0"), "{err}");

    let o = effc(&["inspect", "b0", "--resolution", "8"]);
    fails_saying(&o, &["resolution 8 is too small"]);
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
    // The CPU runs (effc's backend, the reference) take the images one forward
    // at a time (--batch 1).
    for (device, per_forward) in [("gpu", "16"), ("cpu", "1"), ("reference", "1")] {
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
    fails_saying(&o, &["broken.png"]);

    let o = effc(&[
        "run",
        "lite0",
        "--device",
        "cpu",
        "--weights",
        w,
        "no/such/image.png",
    ]);
    fails_saying(&o, &["no/such/image.png"]);

    let o = effc(&[
        "run",
        "b0",
        "--device",
        "cpu",
        "--weights",
        w,
        "tests/fixtures/images/chelsea.png",
    ]);
    fails_saying(&o, &["lite0"]);
}

#[test]
fn compile_writes_validated_wgsl_and_shaders_prints_one() {
    let dir = tempfile::tempdir().unwrap();
    let o = effc(&["compile", "b0", "-o", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(wgsl_files(dir.path()), 66);
    let o = effc(&["shaders", "v2-s", "--kernel", "blocks.1.0.fused"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("// effc kernel `blocks.1.0.fused` (conv) of model `v2-s`"),
        "{}",
        stdout(&o)
    );
    let o = effc(&["shaders", "v2-s", "--kernel", "blocks.1.0.fusd"]);
    fails_saying(&o, &["did you mean `blocks.1.0.fused`?"]);
    let o = effc(&["inspect", "b0", "--kernels"]);
    assert!(
        stdout(&o).contains("66 kernels, 66 dispatches per forward"),
        "{}",
        stdout(&o)
    );
}

fn effc_cached(args: &[&str], cache: &std::path::Path) -> Output {
    effc_env(args, &[("EFFC_CACHE_DIR", cache)])
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
    let bench = [
        "bench", spec, "--device", "gpu", "--runs", "2", "--warmup", "1", "--json",
    ];

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

const LITE0: &str = "tests/fixtures/lite0/efficientnet-lite0.safetensors";
const CHELSEA: &str = "tests/fixtures/images/chelsea.png";

/// Issue 11, items 3 and 4: sizes are checked before anything is allocated, and
/// the refusal names them (a budget set small, so the test does not depend on the
/// machine's memory).
#[test]
fn too_big_for_memory_is_refused_before_allocating() {
    // Sizes mean what they mean on every flag: `64Mi` is 64·2^20 bytes.
    let limit = [("EFFC_MEMORY_LIMIT", "64Mi")];
    for device in ["cpu", "gpu"] {
        let o = effc_env(
            &[
                "run",
                "lite0",
                "-w",
                LITE0,
                "--device",
                device,
                "--resolution",
                "4096",
                CHELSEA,
            ],
            &limit,
        );
        assert_eq!(o.status.code(), Some(1), "{device}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("running `lite0` at 4096x4096 needs")
                && e.contains("more than the 64.0 MiB it may use (EFFC_MEMORY_LIMIT=64Mi)")
                && e.contains("input: 1 x 3x4096x4096 f32"),
            "{device}: {e}"
        );
        assert!(
            !e.contains("panicked") && !e.contains("memory allocation"),
            "{e}"
        );
    }
    // ... and `64M` 64·10^6, as `--max-memory 64M` is (issue 19: they disagreed).
    let o = effc_env(
        &[
            "run",
            "lite0",
            "-w",
            LITE0,
            "--device",
            "cpu",
            "--resolution",
            "4096",
            CHELSEA,
        ],
        &[("EFFC_MEMORY_LIMIT", "64M")],
    );
    fails_saying(
        &o,
        &["more than the 61.0 MiB it may use (EFFC_MEMORY_LIMIT=64M)"],
    );
    // 100000 px is beyond any spec's resolution (1..=16384), refused as the
    // setting would be, before anything is sized.
    let o = effc(&[
        "run",
        "lite0",
        "-w",
        LITE0,
        "--resolution",
        "100000",
        CHELSEA,
    ]);
    fails_saying(&o, &["--resolution: 100000 is not in 1..=16384"]);

    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.enet");
    std::fs::write(&huge, "model huge extends b0 {\n  width = 64\n}\n").unwrap();
    let o = effc(&["bench", huge.to_str().unwrap(), "--runs", "1"]);
    fails_saying(&o, &["weights: 15,552,398,056 parameters, f32"]);
    let o = effc_env(
        &["bench", "lite0", "--batch", "2000"],
        &[("EFFC_MEMORY_LIMIT", "1G")],
    );
    fails_saying(&o, &["input: 2000 x 3x224x224"]);
    assert!(effc_env(&["bench", "b0"], &[("EFFC_MEMORY_LIMIT", "lots")])
        .status
        .code()
        .is_some_and(|c| c == 1));
}

/// The adapter's limits, checked before the weights are built: a 500k-class
/// classifier, and a batch whose input buffer exceeds the largest buffer.
#[test]
fn too_big_for_the_adapter_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let wide = dir.path().join("wide.enet");
    std::fs::write(&wide, "model wide extends b0 {\n  classes = 500000\n}\n").unwrap();
    let o = effc(&[
        "bench",
        wide.to_str().unwrap(),
        "--device",
        "gpu",
        "--runs",
        "1",
    ]);
    fails_saying(&o, &["the weights of kernel `classifier` take 2.4 GiB"]);
    let o = effc(&[
        "bench", "lite0", "--device", "gpu", "--batch", "3000", "--runs", "1",
    ]);
    let e = fails_saying(&o, &[]);
    assert!(
        e.contains("the input of a batch of 3000 images takes") && e.contains("a max batch of"),
        "{e}"
    );
    assert!(!e.contains("Validation Error"), "{e}");
}

/// Issue 11, item 5: an output never replaces an input, whatever the spelling.
#[test]
fn save_never_overwrites_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.safetensors");
    let img = dir.path().join("img.png");
    let x = dir.path().join("x.safetensors");
    std::fs::copy(root().join(LITE0), &w).unwrap();
    std::fs::copy(root().join(CHELSEA), &img).unwrap();
    std::fs::copy(root().join("tests/fixtures/b0/expected.safetensors"), &x).unwrap();
    let (w, img, x) = (
        w.to_str().unwrap(),
        img.to_str().unwrap(),
        x.to_str().unwrap(),
    );
    let same_dir = format!("{}/./w.safetensors", dir.path().display());
    let cases: [(Vec<&str>, &str); 3] = [
        (
            vec![
                "run", "lite0", "--device", "cpu", "-w", w, img, "--save", &same_dir,
            ],
            "is the checkpoint",
        ),
        (
            vec![
                "run", "lite0", "--device", "cpu", "-w", w, img, "--save", img,
            ],
            "is an input image",
        ),
        (
            vec![
                "run",
                "b0-pytorch",
                "--device",
                "cpu",
                "-w",
                "tests/fixtures/b0/weights.f16.safetensors",
                "--input",
                x,
                "--save",
                x,
            ],
            "is the --input tensor",
        ),
    ];
    let before: Vec<Vec<u8>> = [w, img, x]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    for (args, what) in cases {
        let o = effc(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(what), "{}", stderr(&o));
        assert!(stdout(&o).is_empty(), "nothing printed: {}", stdout(&o));
    }
    let after: Vec<Vec<u8>> = [w, img, x]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(before == after, "an input changed");
}

/// Issue 11, item 6: a negative BN variance is a checkpoint error; a NaN input
/// is an error; nothing prints `NaN%`.
#[test]
fn invalid_numbers_are_errors_not_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(root().join(LITE0)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (name, _) = st
        .tensors()
        .into_iter()
        .find(|(n, _)| n.ends_with("running_var"))
        .unwrap();
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let meta: serde_json::Value = serde_json::from_slice(&bytes[8..header]).unwrap();
    let start = header + meta[&name]["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[start..start + 4].copy_from_slice(&(-0.5f32).to_le_bytes());
    let bad = dir.path().join("negative-var.safetensors");
    std::fs::write(&bad, &bytes).unwrap();
    for device in ["cpu", "gpu"] {
        let o = effc(&[
            "run",
            "lite0",
            "--device",
            device,
            "-w",
            bad.to_str().unwrap(),
            CHELSEA,
        ]);
        assert_eq!(o.status.code(), Some(1), "{device}");
        assert!(
            stderr(&o).contains(&format!("bad variance: {name}")),
            "{}",
            stderr(&o)
        );
        assert!(!stdout(&o).contains("NaN"), "{}", stdout(&o));
    }

    let n = 3 * 224 * 224;
    let nan: Vec<u8> = (0..n)
        .flat_map(|i| if i == 7 { f32::NAN } else { 0.0 }.to_le_bytes())
        .collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, 3, 224, 224], &nan)
            .unwrap();
    let x = dir.path().join("nan.safetensors");
    std::fs::write(&x, safetensors::serialize([("input", view)], None).unwrap()).unwrap();
    let o = effc(&[
        "run",
        "b0-pytorch",
        "--device",
        "cpu",
        "-w",
        "tests/fixtures/b0/weights.f16.safetensors",
        "--input",
        x.to_str().unwrap(),
    ]);
    fails_saying(&o, &["1 NaN or infinite values"]);
    assert!(!stdout(&o).contains("NaN"), "{}", stdout(&o));
}

/// Issue 11, item 7: a write error on stdout is a message and exit 1, not a panic.
#[cfg(target_os = "linux")]
#[test]
fn a_full_stdout_is_an_error_not_a_panic() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_effc"))
        .args(["list"])
        .stdout(full)
        .output()
        .unwrap();
    let e = fails_saying(&o, &["cannot write to stdout: No space left on device"]);
    assert!(!e.contains("panicked"), "{e}");
}

/// Issue 11, item 8: `effc compile` owns its directory.
#[test]
fn compile_owns_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    assert!(effc(&["compile", "b2", "-o", o]).status.success());
    let wgsl = common::wgsl_files;
    let b2 = wgsl(&out);
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let c = effc(&["compile", "b0", "-o", o]);
    assert!(c.status.success(), "{}", stderr(&c));
    assert_eq!(
        wgsl(&out),
        66,
        "b2's {b2} kernels replaced by b0's, none stale"
    );
    assert!(stderr(&c).contains("removed"), "{}", stderr(&c));
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
    let manifest = std::fs::read_to_string(out.join(".effc-manifest")).unwrap();
    assert!(manifest.contains("report.md") && !manifest.contains("notes.txt"));

    // A user's report.md in a directory effc did not write is refused, untouched.
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::write(theirs.join("report.md"), "my report").unwrap();
    let c = effc(&["compile", "b0", "-o", theirs.to_str().unwrap()]);
    assert_eq!(c.status.code(), Some(1));
    assert!(
        stderr(&c).contains("report.md") && stderr(&c).contains("--force"),
        "{}",
        stderr(&c)
    );
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 1);
    let c = effc(&["compile", "b0", "-o", theirs.to_str().unwrap(), "--force"]);
    assert!(c.status.success(), "{}", stderr(&c));

    // Too many kernels: refused before anything is written.
    let spec = dir.path().join("deep.enet");
    let blocks = "    r1_k3_s11_e1_i32_o32\n".repeat(3000);
    std::fs::write(
        &spec,
        format!("model deep extends b0 {{\n  blocks {{\n{blocks}  }}\n}}\n"),
    )
    .unwrap();
    let deep = dir.path().join("deep");
    let c = effc(&[
        "compile",
        spec.to_str().unwrap(),
        "-o",
        deep.to_str().unwrap(),
    ]);
    assert_eq!(c.status.code(), Some(1), "{}", stderr(&c));
    assert!(
        stderr(&c).contains("6003 kernels") && stderr(&c).contains("at most 4096"),
        "{}",
        stderr(&c)
    );
    assert!(!deep.exists());
}

/// Issue 11, items 8 and 9: the device in use is named; no software adapter by
/// default; a bad `WGPU_BACKEND` is an error; no XDG_RUNTIME_DIR noise.
#[test]
fn device_choice_is_said_and_checked() {
    let args = ["run", "lite0", "-w", LITE0, "--resolution", "64", CHELSEA];
    let o = effc_env(&args, &[("WGPU_BACKEND", "nonsense")]);
    fails_saying(&o, &["WGPU_BACKEND=`nonsense`: unknown backend", "vulkan"]);
    let o = effc(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("note: running on "), "{}", stderr(&o));
    assert!(!stderr(&o).contains("XDG_RUNTIME_DIR"), "{}", stderr(&o));
    let o = effc(&[&args[..], &["--device", "gpu"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("XDG_RUNTIME_DIR"), "{}", stderr(&o));
    assert!(stderr(&o).contains("note: running on "), "{}", stderr(&o));
}

/// The tune cache's failure paths: a cache directory that is a file is refused
/// before anything is measured; a cache file that cannot be written still prints
/// what was measured, then fails naming the file; a corrupt cache is kept aside
/// (`.json.corrupt`) with a warning and replaced; `--no-save` leaves it as it is.
#[test]
fn tune_cache_failures_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = "tests/specs/gpu/wide_classes.enet";
    let tune = ["tune", spec, "--candidates", "1", "--reps", "1"];

    // The cache "directory" is a file: refused at once, nothing measured.
    let blocker = tmp.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let o = effc_cached(&tune, &blocker);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("not-a-dir")
            && stderr(&o).contains("is a regular file, not a directory"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(&blocker).unwrap(), "x");

    // The cache file itself is a directory: measured and printed, then not saved.
    let odd = tmp.path().join("odd");
    let o = effc_cached(&tune, &odd);
    assert!(o.status.success(), "{}", stderr(&o));
    let file = std::fs::read_dir(&odd)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    let o = effc_cached(&tune, &odd);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("kernel time per forward") && stdout(&o).contains("not saved"),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("tuning cache") && stderr(&o).contains("is a directory"),
        "{}",
        stderr(&o)
    );
    assert!(file.is_dir());

    // A corrupt cache: kept as .json.corrupt, replaced by valid JSON.
    let cache = tmp.path().join("cache");
    let o = effc_cached(&tune, &cache);
    assert!(o.status.success(), "{}", stderr(&o));
    let file = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    std::fs::write(&file, "{ damaged").unwrap();
    let o = effc_cached(&tune, &cache);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("not valid JSON"), "{}", stderr(&o));
    let backup = file.with_extension("json.corrupt");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), "{ damaged");
    let text = std::fs::read_to_string(&file).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap();

    // --no-save measures and leaves the cache alone.
    let mut no_save = tune.to_vec();
    no_save.push("--no-save");
    let o = effc_cached(&no_save, &cache);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
}
