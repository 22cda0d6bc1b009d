//! `--features`: a backbone's levels through the `effc` binary (inspect, run on both
//! devices against timm's `features_only` fixtures, compile), and bad levels.

mod common;

use common::{effc, root, stderr, stdout};
use effc_testkit::{assert_close, read_tensors};

#[test]
fn inspect_prints_and_lists_the_levels() {
    let o = effc(&["inspect", "b0", "--features", "1,2,3,4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("no head, no classifier"), "{out}");
    for l in [
        "level 1  24x56x56     reduction  4  from blocks.1.1",
        "level 4  320x7x7      reduction 32  from blocks.6.0",
    ] {
        assert!(out.contains(l), "{l}: {out}");
    }
    let o = effc(&["inspect", "b0", "--features", "2,4", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = v["features"].as_array().unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!(
        (
            &f[0]["level"],
            &f[0]["channels"],
            &f[0]["reduction"],
            &f[0]["block_path"]
        ),
        (&2.into(), &40.into(), &8.into(), &"blocks.2.1".into())
    );
    assert_eq!(v["feature_levels"].as_array().unwrap().len(), 5);
    // The plan ends at level 4: no head, no classifier.
    let full = effc(&["inspect", "b0", "--kernels"]);
    let o = effc(&["inspect", "b0", "--kernels", "--features", "1,2,3,4"]);
    let plan = stdout(&o);
    assert!(plan.starts_with("kernel plan of b0: 64 kernels"), "{plan}");
    assert!(stdout(&full).starts_with("kernel plan of b0: 66 kernels"));
    assert!(
        !plan.contains("\nhead ") && !plan.contains("classifier"),
        "{plan}"
    );
}

#[test]
fn bad_levels_are_clear_errors() {
    for (levels, want) in [
        ("5", "model `b0` has no feature level 5"),
        ("2,2", "feature level 2 is requested twice"),
    ] {
        let o = effc(&["inspect", "b0", "--features", levels]);
        assert_eq!(o.status.code(), Some(1), "{levels}");
        let e = stderr(&o);
        assert!(e.contains(want), "{levels}: {e}");
        if levels == "5" {
            assert!(e.contains("0, 1, 2, 3, 4"), "lists the levels b0 has: {e}");
        }
    }
    let o = effc(&[
        "run",
        "b0",
        "--weights",
        "w.safetensors",
        "--features",
        "one",
        "x.png",
    ]);
    assert_eq!(o.status.code(), Some(2), "not a number is a usage error");
    assert!(stderr(&o).contains("--features"), "{}", stderr(&o));
}

/// `effc run b0 --resolution 64 --features LEVELS --device DEVICE` with the
/// features fixture's weights on its input, and `extra` arguments.
fn run_b0_levels(levels: &str, device: &str, extra: &[&str]) -> std::process::Output {
    let dir = root().join("tests/fixtures/features/b0");
    let w = dir.join("weights.f16.safetensors");
    let x = dir.join("expected.safetensors");
    let mut args = vec![
        "run",
        "b0",
        "--resolution",
        "64",
        "--features",
        levels,
        "--device",
        device,
        "--weights",
        w.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    effc(&args)
}

/// `effc run --features 1,2,3,4 --save` on the fixture's input (batch 2, 64x64):
/// every level within 1e-3·max|want| of timm's, on the CPU and the GPU.
#[test]
fn run_saves_each_level_as_timm_gives_it() {
    let dir = root().join("tests/fixtures/features/b0");
    let expected = dir.join("expected.safetensors");
    let want = read_tensors(&expected);
    let tmp = std::env::temp_dir().join(format!("effc-features-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for device in ["cpu", "gpu"] {
        let save = tmp.join(format!("{device}.safetensors"));
        let o = run_b0_levels("1,2,3,4", device, &["--save", save.to_str().unwrap()]);
        assert!(o.status.success(), "{device}: {}", stderr(&o));
        let out = stdout(&o);
        assert_eq!(
            out.matches("  level 3  112x4x4").count(),
            2,
            "{device}: {out}"
        );
        assert!(!out.contains('%'), "no classes: {out}");
        let got = read_tensors(&save);
        assert_eq!(got.len(), 4, "{device}");
        for (name, (shape, data)) in &got {
            let (ws, wd) = &want[name];
            assert_eq!(shape, ws, "{device} {name}");
            assert_close(&format!("{device} {name}"), data, wd);
        }
    }
    // JSON: one object per image with its levels.
    let o = run_b0_levels("4", "cpu", &["--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[1]["levels"][0]["shape"], serde_json::json!([320, 2, 2]));
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn compile_writes_a_backbone() {
    let tmp = std::env::temp_dir().join(format!("effc-features-compile-{}", std::process::id()));
    let o = effc(&[
        "compile",
        "b0",
        "--features",
        "2,3",
        "-o",
        tmp.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rs = std::fs::read_to_string(tmp.join("model.rs")).unwrap();
    assert!(rs.contains("pub const FEATURE_INFO"), "{rs}");
    assert!(rs.contains("features: ::efficientnet::__private::Option::Some(&[2, 3])"));
    assert!(rs.contains("pub fn features("));
    let plan = std::fs::read_to_string(tmp.join("plan.txt")).unwrap();
    assert!(plan.contains("level 3  112x14x14"), "{plan}");
    assert!(
        !plan.contains("classifier") && !plan.contains("blocks.5.0"),
        "{plan}"
    );
    std::fs::remove_dir_all(&tmp).ok();
}
