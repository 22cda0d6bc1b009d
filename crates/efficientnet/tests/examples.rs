//! The examples, run as a user runs them: `classify` must name a cat for
//! tests/fixtures/images/chelsea.png and espresso for coffee.png, `custom_spec`
//! likewise from its own `.enet` file at 192x192, `features` must print
//! 1280 features per image, and `backbone` the shapes of levels 1–4.
//!
//! `cargo test` builds the examples next to this test; when only this test was
//! built (`cargo test --test examples`), they are built here first.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `<target>/<profile>/examples/NAME`, built if missing.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in <target>/<profile>/deps");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "efficientnet", "--example", name])
            .current_dir(repo())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building example {name}");
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

fn run(name: &str, args: &[&str]) -> String {
    let out = Command::new(example(name))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("the example starts");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const CHELSEA: &str = "tests/fixtures/images/chelsea.png";
const COFFEE: &str = "tests/fixtures/images/coffee.png";

/// ImageNet's domestic cats: tabby, tiger cat, Persian, Siamese, Egyptian cat.
const CATS: [usize; 5] = [281, 282, 283, 284, 285];

#[test]
fn classify_names_a_cat_and_an_espresso() {
    let out = run("classify", &[CHELSEA, COFFEE]);
    let lines: Vec<&str> = out.lines().collect();
    // IMAGE, then five lines `  1.  38.30%   282  tiger cat`
    assert_eq!(lines.len(), 12, "{out}");
    assert_eq!(lines[0], CHELSEA);
    let top1: Vec<&str> = lines[1].split_whitespace().collect();
    let class: usize = top1[2].parse().unwrap();
    assert!(CATS.contains(&class), "chelsea's top class {class}: {out}");
    assert!(lines[1].contains("cat"), "{out}");
    // timm says tiger cat 38.3%, Egyptian cat 35.8%, tabby 16.8% (expected.json).
    assert!(
        lines[1].ends_with("tiger cat") && lines[1].contains("38.3"),
        "{out}"
    );
    for l in &lines[1..4] {
        let c: usize = l.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert!(CATS.contains(&c), "{l}");
    }
    assert_eq!(lines[6], COFFEE);
    assert!(lines[7].ends_with("espresso"), "{out}");
}

#[test]
fn classify_reports_a_missing_image() {
    let out = Command::new(example("classify"))
        .arg("no/such/image.png")
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no/such/image.png"), "{err}");
}

#[test]
fn custom_spec_runs_its_own_enet_file() {
    let out = run("custom_spec", &[CHELSEA, COFFEE]);
    assert!(
        out.starts_with(
            "model `lite0_192` from ../../examples/lite0-192.enet: input [3, 192, 192]"
        ),
        "{out}"
    );
    let chelsea = out.lines().find(|l| l.starts_with(CHELSEA)).unwrap();
    let first = chelsea.split(": ").nth(1).unwrap();
    assert!(
        first.starts_with("tiger cat")
            || first.starts_with("Egyptian cat")
            || first.starts_with("tabby"),
        "{out}"
    );
    let coffee = out.lines().find(|l| l.starts_with(COFFEE)).unwrap();
    assert!(coffee.contains(": espresso"), "{out}");
}

#[test]
fn embedding_prints_1280_per_image_and_a_similarity() {
    let out = run("embedding", &[CHELSEA, COFFEE, CHELSEA]);
    assert_eq!(out.matches(": 1280-value embedding").count(), 3, "{out}");
    let cos: Vec<f64> = out
        .lines()
        .filter(|l| l.starts_with("cosine("))
        .map(|l| l.rsplit(" = ").next().unwrap().parse().unwrap())
        .collect();
    // (chelsea, coffee), (chelsea, chelsea), (coffee, chelsea)
    assert_eq!(cos.len(), 3, "{out}");
    assert!((cos[1] - 1.0).abs() < 1e-4, "an image is itself: {out}");
    assert!(cos[0] < 0.5 && (cos[0] - cos[2]).abs() < 1e-4, "{out}");
}

#[test]
fn backbone_prints_each_level_shape() {
    let out = run("backbone", &[CHELSEA]);
    // lite0 at 224: levels 1-4 have 24, 40, 112, 320 channels at strides 4-32.
    for line in [
        "level 1: 24 channels, reduction 4, from blocks.1.1",
        "level 4: 320 channels, reduction 32, from blocks.6.0",
        "  level 1: 24x56x56 (stride 4)",
        "  level 2: 40x28x28 (stride 8)",
        "  level 3: 112x14x14 (stride 16)",
        "  level 4: 320x7x7 (stride 32)",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    let l4 = out.lines().find(|l| l.starts_with("  level 4")).unwrap();
    let max: f64 = l4.rsplit("max ").next().unwrap().parse().unwrap();
    assert!(max.is_finite() && max > 0.0, "{out}");
}
