//! `effc scale`, `effc pick` and the pictures, end to end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn effc_in(args: &[&str], cache: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_effc"));
    c.args(args).current_dir(root()).env("NO_COLOR", "1");
    if let Some(dir) = cache {
        c.env("EFFC_CACHE_DIR", dir);
    }
    c.output().expect("the effc binary runs")
}

fn effc(args: &[&str]) -> Output {
    effc_in(args, None)
}

fn ok(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("JSON on stdout")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("effc-scale-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `effc inspect FILE --json`.
fn inspect(path: &Path) -> serde_json::Value {
    ok(&effc(&["inspect", path.to_str().unwrap(), "--json"]))
}

/// Weights plus activation buffers at batch 1, from `effc inspect --kernels --json`.
fn memory(path: &Path) -> u64 {
    let plan = ok(&effc(&[
        "inspect",
        path.to_str().unwrap(),
        "--kernels",
        "--json",
    ]));
    let w: u64 = plan["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["weights_len"].as_u64().unwrap() * 4)
        .sum();
    let a: u64 = plan["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["bytes"].as_u64().unwrap())
        .sum();
    w + a
}

/// The chosen φ + 0.01 as a spec beside `x.enet`.
fn next_phi(x: &Path, phi: f64) -> PathBuf {
    let text = std::fs::read_to_string(x).unwrap();
    let next = text.replace(
        &format!("phi   = {phi:.2}"),
        &format!("phi   = {:.2}", phi + 0.01),
    );
    assert_ne!(next, text);
    let p = x.with_file_name("next.enet");
    std::fs::write(&p, next).unwrap();
    p
}

#[test]
fn each_budget_is_met_and_the_next_phi_breaks_it() {
    let dir = tmp("budgets");
    for (flag, value, limit) in [
        ("--max-macs", "1G", 1e9),
        ("--max-params", "10M", 10e6),
        ("--max-memory", "60M", 60e6),
    ] {
        let x = dir.join("x.enet");
        let v = ok(&effc(&[
            "scale",
            "b0",
            flag,
            value,
            "-o",
            x.to_str().unwrap(),
            "--json",
        ]));
        let phi = v["chosen"]["phi"].as_f64().unwrap();
        assert!(phi > 0.0, "{flag}: {phi}");
        let got = |p: &Path| -> f64 {
            match flag {
                "--max-macs" => inspect(p)["macs"].as_f64().unwrap(),
                "--max-params" => inspect(p)["params"].as_f64().unwrap(),
                _ => memory(p) as f64,
            }
        };
        let at = got(&x);
        assert!(at <= limit, "{flag} {value}: φ = {phi} gives {at}");
        let next = got(&next_phi(&x, phi));
        assert!(next > limit, "{flag} {value}: φ + 0.01 gives {next}");
        assert_eq!(
            v["next"]["phi"].as_f64().unwrap(),
            ((phi + 0.01) * 100.0).round() / 100.0
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `round_filters` as the papers' code writes it.
fn round_filters(c: usize, w: f64, guard: bool) -> usize {
    let scaled = c as f64 * w;
    let mut n = 8usize.max(((scaled + 4.0) as usize) / 8 * 8);
    if guard && (n as f64) < 0.9 * scaled {
        n += 8;
    }
    n
}

#[test]
fn phi_one_is_the_familys_rule() {
    let dir = tmp("phi1");
    for (base, res, guard) in [("b0", 224.0, true), ("v2-b0", 224.0, false)] {
        let x = dir.join(format!("{base}.enet"));
        ok(&effc(&[
            "scale",
            base,
            "--phi",
            "1",
            "-o",
            x.to_str().unwrap(),
            "--json",
        ]));
        let scaled = inspect(&x);
        let orig = ok(&effc(&["inspect", base, "--json"]));
        assert_eq!(
            scaled["resolution"],
            (res * 1.15f64).round() as u64,
            "{base}"
        );
        assert!((scaled["depth"].as_f64().unwrap() - 1.2).abs() < 1e-12);
        assert!((scaled["width"].as_f64().unwrap() - 1.1).abs() < 1e-12);
        let (s1, s0) = (
            scaled["stages"].as_array().unwrap(),
            orig["stages"].as_array().unwrap(),
        );
        for (a, b) in s1.iter().zip(s0) {
            let r0 = b["repeats"].as_u64().unwrap() as f64;
            assert_eq!(
                a["repeats"].as_u64().unwrap(),
                (r0 * 1.2).ceil() as u64,
                "{base}"
            );
            let c0 = b["out_channels"].as_u64().unwrap() as usize;
            assert_eq!(
                a["out_channels"].as_u64().unwrap() as usize,
                round_filters(c0, 1.1, guard),
                "{base} stage {}",
                a["index"]
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn scale_reports_bad_requests() {
    let o = effc(&["scale", "b3", "--max-macs", "1G"]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("width 1.2 and depth 1.4"), "{e}");
    let o = effc(&["scale", "b0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("at least one budget"));
    let o = effc(&["scale", "b0", "--max-macs", "1Q"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown suffix `Q`"));
    // A budget smaller than anything φ can make.
    let o = effc(&["scale", "b0", "--max-params", "1k"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no φ in [-8.00, 16.00]"));
}

#[test]
fn grid_lists_the_papers_point_with_its_real_macs_ratio() {
    let v = ok(&effc(&["scale", "b0", "--grid", "--json"]));
    let pts = v["points"].as_array().unwrap();
    assert!(pts.len() > 20, "{}", pts.len());
    let paper = pts
        .iter()
        .find(|p| {
            let c = &p["coefficients"];
            c["alpha"] == 1.2 && c["beta"] == 1.1 && c["gamma"] == 1.15
        })
        .expect("the paper's point");
    assert!((paper["macs_ratio"].as_f64().unwrap() - 2.573).abs() < 1e-3);
    assert!(v["accuracy"].as_str().unwrap().contains("--train-on"));
    assert!(v.get("training").is_none() && paper.get("top1").is_none());
}

#[test]
fn inspect_svg_and_the_compile_report_picture() {
    let dir = tmp("svg");
    let svg = dir.join("b0.svg");
    let o = effc(&["inspect", "b0", "--svg", svg.to_str().unwrap()]);
    assert!(o.status.success());
    let text = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(text.matches(r#"class="stage""#).count(), 7);
    let out = dir.join("out");
    let o = effc(&["compile", "lite0", "-o", out.to_str().unwrap()]);
    assert!(o.status.success());
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("![architecture of lite0](architecture.svg)"),
        "{md}"
    );
    let arch = std::fs::read_to_string(out.join("architecture.svg")).unwrap();
    assert_eq!(arch.matches(r#"class="stage""#).count(), 7);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pick_times_small_models_caches_them_and_recommends_within_the_budget() {
    let dir = tmp("pick");
    let cache = dir.join("cache");
    let plot = dir.join("pick.svg");
    let args = |lat: &'static str| {
        vec![
            "pick",
            "--models",
            "lite0,b0",
            "--max-latency",
            lat,
            "--runs",
            "2",
            "--time-per-model",
            "120s",
            "--json",
        ]
    };
    // Every model fits 100 s: the more accurate one (b0, 77.1% against 75.1%).
    let mut a = args("100s");
    a.extend(["--plot", plot.to_str().unwrap()]);
    let v = ok(&effc_in(&a, Some(&cache)));
    assert_eq!(v["recommended"], "b0");
    for m in v["models"].as_array().unwrap() {
        assert!(m["latency_ms"].as_f64().unwrap() > 0.0, "{m}");
        assert!(m["status"].as_str().unwrap().starts_with("measured"), "{m}");
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    // Two models, two legend markers, the chosen one's ring.
    assert_eq!(svg.matches("<circle").count(), 2 + 2 + 1, "{svg}");

    // Again: from the cache; none fits 1 ms (exit 1, the table still printed).
    let o = effc_in(&args("1ms"), Some(&cache));
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["recommended"].is_null());
    for m in v["models"].as_array().unwrap() {
        assert!(m["status"].as_str().unwrap().starts_with("cached"), "{m}");
        assert!(
            m["exceeds"][0].as_str().unwrap().starts_with("latency"),
            "{m}"
        );
    }
    assert!(String::from_utf8_lossy(&o.stderr).contains("no built-in model meets the budgets"));

    // A model far too big for the time budget is reported, not timed.
    let o = effc_in(
        &[
            "pick",
            "--models",
            "lite0,b7",
            "--time-per-model",
            "3s",
            "--json",
        ],
        Some(&cache),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let b7 = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "b7")
        .unwrap();
    assert!(
        b7["status"].as_str().unwrap().starts_with("not timed"),
        "{b7}"
    );
    // No latency budget: b7 is the most accurate and needs no timing.
    assert_eq!(v["recommended"], "b7");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn scale_to_a_latency_budget_times_candidates() {
    let dir = tmp("latency");
    let base = dir.join("tiny.enet");
    std::fs::write(
        &base,
        "model tiny extends b0 {\n    resolution = 64\n    classes = 10\n}\n",
    )
    .unwrap();
    let plot = dir.join("scale.svg");
    let x = dir.join("x.enet");
    let v = ok(&effc_in(
        &[
            "scale",
            base.to_str().unwrap(),
            "--max-macs",
            "60M",
            "--max-latency",
            "100s",
            "-o",
            x.to_str().unwrap(),
            "--plot",
            plot.to_str().unwrap(),
            "--json",
        ],
        Some(&dir.join("cache")),
    ));
    let chosen = &v["chosen"];
    assert!(chosen["latency_ms"].as_f64().unwrap() > 0.0, "{v}");
    assert!(chosen["macs"].as_u64().unwrap() <= 60_000_000);
    // The written file holds the base's model too, and builds.
    let spec = inspect(&x);
    assert_eq!(spec["macs"], chosen["macs"]);
    assert_eq!(spec["extends"], "tiny");
    let timed = v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["latency_ms"].is_number())
        .count();
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert_eq!(svg.matches("<circle").count(), timed + 1 + 1, "{svg}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// 12 px, Fashion-MNIST's 10 classes, width = depth = 1; `--step 0.25` gives
/// three points: (1.25, 1, 1.25), (1.25, 1.25, 1), (2, 1, 1).
const TINY: &str = "model tiny {
    resolution = 12
    stem       = 8
    head       = 16
    classes    = 10
    blocks {
        r1_k3_s1_e1_i8_o8_c1
        r1_k3_s2_e2_i8_o16_se0.25
    }
}
";

fn fashion_mnist_installed() -> bool {
    effc_testkit::fashion_mnist().is_some()
}

#[test]
fn grid_train_on_ranks_every_trained_point_the_same_for_the_seed() {
    if !fashion_mnist_installed() {
        return;
    }
    let dir = tmp("train-on");
    let spec = dir.join("tiny.enet");
    std::fs::write(&spec, TINY).unwrap();
    let run = |plot: Option<&Path>| {
        let mut a = vec![
            "scale",
            spec.to_str().unwrap(),
            "--grid",
            "--step",
            "0.25",
            "--train-on",
            "fashion-mnist",
            "--steps",
            "3",
            "--train-subset",
            "48",
            "--val-subset",
            "32",
            "--train-batch",
            "8",
            "--lr",
            "0.01",
            "--optimizer",
            "adamw",
            "--seed",
            "3",
            "--json",
        ];
        if let Some(p) = plot {
            a.extend(["--plot", p.to_str().unwrap()]);
        }
        let o = effc(&a);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        (ok(&o), err)
    };
    let svg = dir.join("grid.svg");
    let (v, err) = run(Some(&svg));
    // Progress per point on stderr.
    for i in 1..=3 {
        assert!(err.contains(&format!("point {i} of 3: ")), "{err}");
    }
    let t = &v["training"];
    assert_eq!(t["steps_per_point"], 3);
    assert_eq!(
        (t["train_images"].as_u64(), t["val_images"].as_u64()),
        (Some(48), Some(32))
    );
    assert!(v.get("accuracy").is_none());
    let pts = v["points"].as_array().unwrap();
    assert_eq!(pts.len(), 3);
    let f = |p: &serde_json::Value, k: &str| p[k].as_f64().unwrap();
    for p in pts {
        let top1 = f(p, "top1");
        assert!(
            (0.0..=1.0).contains(&top1) && f(p, "loss").is_finite(),
            "{p}"
        );
        assert!(
            f(p, "macs_ratio") > 1.0 && p["params"].as_u64().unwrap() > 0,
            "{p}"
        );
        assert_eq!(p["steps"], 3);
    }
    for w in pts.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        assert!(
            f(a, "top1") > f(b, "top1")
                || (f(a, "top1") == f(b, "top1") && f(a, "macs_ratio") <= f(b, "macs_ratio")),
            "not ranked: {a} before {b}"
        );
    }
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg") && text.contains("validation top-1 (%)"),
        "{text}"
    );
    // The same seed, the same report (but the wall times).
    let strip = |mut v: serde_json::Value| {
        for p in v["points"].as_array_mut().unwrap() {
            p["seconds"] = serde_json::Value::Null;
        }
        v.as_object_mut().unwrap().remove("plot");
        v
    };
    let (again, _) = run(None);
    assert_eq!(strip(v), strip(again));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn grid_train_on_refuses_bad_input_before_training() {
    let dir = tmp("train-on-bad");
    let spec = dir.join("tiny.enet");
    std::fs::write(&spec, TINY).unwrap();
    let s = spec.to_str().unwrap();
    let fails = |args: &[&str], want: &str| {
        let o = effc(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    /// `effc scale SPEC --grid` and `rest`.
    fn grid<'a>(spec: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
        ["scale", spec, "--grid"]
            .iter()
            .chain(rest)
            .copied()
            .collect()
    }
    // --train-on needs --grid; the recipe's flags need --train-on; so does --plot with --grid.
    fails(
        &["scale", s, "--train-on", "fashion-mnist", "--phi", "1"],
        "--train-on goes with --grid",
    );
    fails(&grid(s, &["--lr", "0.1"]), "give --grid --train-on DATA");
    let svg = dir.join("p.svg");
    fails(&grid(s, &["--plot", svg.to_str().unwrap()]), "--train-on");
    assert!(!svg.exists());
    // --plot onto the spec it reads is refused by the output policy, the spec kept.
    fails(
        &grid(
            s,
            &["--step", "0.25", "--train-on", "fashion-mnist", "--plot", s],
        ),
        "--plot",
    );
    assert_eq!(std::fs::read_to_string(&spec).unwrap(), TINY);
    // A data set that is not there.
    let missing = format!("fashion-mnist={}", dir.join("none").display());
    fails(
        &grid(s, &["--step", "0.25", "--train-on", &missing]),
        "none",
    );
    if fashion_mnist_installed() {
        // The default grid (0.05) for an epoch of 60 000 images is far over the limit.
        fails(
            &grid(
                s,
                &[
                    "--train-on",
                    "fashion-mnist",
                    "--plot",
                    svg.to_str().unwrap(),
                ],
            ),
            "training steps, over the limit of",
        );
        assert!(!svg.exists());
        // The base's classes must be the data's.
        fails(
            &grid(
                s,
                &[
                    "--step",
                    "0.25",
                    "--train-on",
                    "fashion-mnist",
                    "--classes",
                    "3",
                    "--steps",
                    "1",
                ],
            ),
            "give --classes 10",
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
