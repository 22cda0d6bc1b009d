//! The IR against timm/torchvision: parameter counts, MACs and checkpoint layouts
//! of every built-in (tests/fixtures/checkpoints, made with timm and torchvision).

use std::path::PathBuf;

use effc_ir::{Model, Naming, Options, Spec};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/checkpoints")
}

/// The effc built-in behind a timm or torchvision model name.
fn builtin_for(framework_model: &str) -> &'static str {
    let n = framework_model
        .trim_start_matches("tf_")
        .replace("efficientnetv2_", "v2-")
        .replace("efficientnet_v2_", "v2-")
        .replace("efficientnet_", "");
    effc_catalog::names()
        .find(|b| *b == n)
        .unwrap_or_else(|| panic!("no built-in for {framework_model}"))
}

fn build(name: &str, resolution: Option<usize>) -> Model {
    let spec = Spec::builtin(name).unwrap_or_else(|e| panic!("{name}: {}", e.render(false)));
    Model::build(
        &spec,
        &Options {
            resolution,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{name}: {}", e.render(false)))
}

#[test]
fn parameter_counts_equal_timm_and_torchvision() {
    let text = std::fs::read_to_string(fixtures().join("params.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut checked = 0;
    let mut wrong = vec![];
    for (key, entry) in v.as_object().unwrap() {
        let model = key.split('/').nth(1).unwrap();
        let want = entry["params"].as_u64().unwrap();
        let got = build(builtin_for(model), None).param_count();
        if got != want {
            wrong.push(format!("{key}: effc {got}, reference {want}"));
        }
        checked += 1;
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(checked, 35);
}

#[test]
fn macs_equal_timm() {
    let text = std::fs::read_to_string(fixtures().join("macs.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut wrong = vec![];
    for (model, entry) in v.as_object().unwrap() {
        let res = entry["resolution"].as_u64().unwrap() as usize;
        let want = entry["conv_linear_macs"].as_u64().unwrap();
        let m = build(builtin_for(model), Some(res));
        let got = m.cost().macs;
        if got != want {
            wrong.push(format!("{model} @{res}: effc {got}, timm {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn parameter_lists_equal_checkpoint_layouts() {
    let mut files: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tsv"))
        .collect();
    files.sort();
    let mut failures = vec![];
    for f in &files {
        let stem = f.file_stem().unwrap().to_str().unwrap();
        let (framework, model) = stem.split_once('_').unwrap();
        let naming: Naming = framework.parse().unwrap();
        let m = build(builtin_for(model), None);
        let want: Vec<(String, String)> = std::fs::read_to_string(f)
            .unwrap()
            .lines()
            .map(|l| {
                let (k, s) = l.split_once('\t').unwrap();
                (k.to_string(), s.to_string())
            })
            .collect();
        let got: Vec<(String, String)> = m
            .named_params(naming)
            .into_iter()
            .map(|(n, p)| {
                (
                    n,
                    p.shape
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("x"),
                )
            })
            .collect();
        if got != want {
            let first = got
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            failures.push(format!(
                "{stem}: {} tensors vs {} in the checkpoint; first difference at #{first}: effc {:?}, checkpoint {:?}",
                got.len(),
                want.len(),
                got.get(first),
                want.get(first)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(files.len(), 35);
}
