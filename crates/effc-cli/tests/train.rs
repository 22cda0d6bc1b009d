//! `effc train` end to end: gradients of a fixed batch against timm's, training
//! on an image folder whose output `effc run` loads, `--resume`, the dry run,
//! and hostile input (nothing overwritten).

mod common;

use std::path::Path;

use common::{effc, p, stderr, stdout, TRAIN_SPEC as SPEC};
use effc_ir::{Model, Naming, Options, Spec};
use effc_weights::Weights;
use safetensors::{Dtype, SafeTensors};

fn tensors(bytes: &[u8]) -> std::collections::HashMap<String, (Dtype, Vec<u8>)> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.data().to_vec())))
        .collect()
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// v2-b0's fixture batch through `--input`/`--save-grads` (written in the naming
/// of `--from`): every gradient within
/// 3x PyTorch's own f32 spread of timm's f64 gradient.
#[test]
fn save_grads_match_timm() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec::builtin("v2-b0").unwrap();
    let opts = Options {
        resolution: Some(64),
        classes: Some(10),
        ..Options::default()
    };
    let model = Model::build(&spec, &opts).unwrap();
    let w = dir.path().join("w.safetensors");
    std::fs::write(
        &w,
        effc_testkit::checkpoint_bytes(&model, &Weights::random(&model, 20)),
    )
    .unwrap();
    let fixture =
        std::fs::read(effc_testkit::fixtures().join("train/v2-b0/step.safetensors")).unwrap();
    let fx = tensors(&fixture);
    let x = dir.path().join("x.safetensors");
    let st = SafeTensors::deserialize(&fixture).unwrap();
    let keep: Vec<_> = ["input", "labels"]
        .iter()
        .map(|n| (n.to_string(), st.tensor(n).unwrap()))
        .collect();
    std::fs::write(&x, safetensors::serialize(keep, None).unwrap()).unwrap();
    let (g, out) = (
        dir.path().join("g.safetensors"),
        dir.path().join("out.safetensors"),
    );
    let o = effc(&[
        "train",
        "v2-b0",
        "--resolution",
        "64",
        "--classes",
        "10",
        "--from",
        p(&w),
        "--input",
        p(&x),
        "--save-grads",
        p(&g),
        "--label-smoothing",
        "0",
        "--dropout",
        "0",
        "--drop-path",
        "0",
        "-o",
        p(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = tensors(&std::fs::read(&g).unwrap());
    let cases: serde_json::Value = serde_json::from_slice(
        &std::fs::read(effc_testkit::fixtures().join("train/cases.json")).unwrap(),
    )
    .unwrap();
    let spread = cases["v2-b0"]["spread_f32_f64"].as_f64().unwrap();
    let names = model.named_params(Naming::Timm);
    let want = |name: &str| -> Vec<f64> {
        let q = &fx[&format!("grad.{name}")].1;
        let s = f64::from_le_bytes(fx[&format!("scale.{name}")].1[..8].try_into().unwrap());
        q.chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]) as f64 / 32767.0 * s)
            .collect()
    };
    let largest = names
        .iter()
        .filter(|(_, p)| p.trainable)
        .flat_map(|(n, _)| want(n))
        .fold(0f64, |m, v| m.max(v.abs()));
    let mut worst = 0f64;
    // --from is in effc naming, so the gradients are too.
    for (name, param) in &names {
        let g = f32s(&got[&param.name].1);
        if param.trainable {
            let w = want(name);
            let den = w.iter().fold(1e-4 * largest, |m, v| m.max(v.abs()));
            let e = w
                .iter()
                .zip(&g)
                .map(|(a, b)| (a - *b as f64).abs())
                .fold(0.0, f64::max)
                / den;
            worst = worst.max(e);
        } else {
            let w = f32s(&fx[&format!("running.{name}")].1);
            for (a, b) in w.iter().zip(&g) {
                assert!(
                    (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                    "{name}: {b} vs timm {a}"
                );
            }
        }
    }
    assert!(
        worst <= 3.0 * spread && worst <= 3e-3,
        "worst gradient {worst:.2e} (spread {spread:.2e})"
    );
}

fn folder(root: &Path) {
    for (class, v) in [("dark", 30u8), ("light", 220u8)] {
        for split in ["train", "val"] {
            let d = root.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..6u8 {
                image::RgbImage::from_pixel(20, 18, image::Rgb([v, v.wrapping_add(i), v]))
                    .save(d.join(format!("{i}.png")))
                    .unwrap();
            }
        }
    }
}

#[test]
fn trains_on_a_folder_resumes_and_effc_run_loads_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny.enet"), SPEC).unwrap();
    folder(&d.join("data"));
    let out = d.join("out.safetensors");
    let args = |o: &Path| -> Vec<String> {
        [
            "train",
            p(&d.join("tiny.enet")),
            "--data",
            p(&d.join("data")),
            "--epochs",
            "3",
            "--batch",
            "4",
            "--optimizer",
            "adamw",
            "--lr",
            "0.01",
            "--ema",
            "0.5",
            "-o",
            p(o),
            "--log",
            p(&o.with_extension("jsonl")),
            "--plot",
            p(&o.with_extension("svg")),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |a: &[String]| effc(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let o = run(&args(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    let log = stderr(&o);
    assert!(
        log.contains("epoch 2: validation top-1") && log.contains("(EMA)"),
        "{log}"
    );
    // Not a terminal: plain lines, and the curves drawn.
    assert!(
        log.contains("step 1/9  epoch 0  stage 1  size 16  loss"),
        "{log}"
    );
    let svg = std::fs::read_to_string(d.join("out.svg")).unwrap();
    assert!(
        svg.starts_with("<svg")
            && svg.contains("training loss")
            && svg.contains("top-1 (EMA)")
            && svg.contains("stage 1 (size 16)"),
        "{svg}"
    );
    let ckpt = d.join("out.ckpt");
    // The log: a line per step (3 epochs of 3 steps) and per epoch.
    let log = std::fs::read_to_string(d.join("out.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 9 + 3, "{log}");
    assert!(
        lines[3]["validation"]["top1"].is_number()
            && lines[11]["ema_validation"]["top5"].is_number(),
        "{log}"
    );
    // One checkpoint kept: the last epoch's.
    let kept: Vec<String> = std::fs::read_dir(&ckpt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept, ["step-00000009.safetensors"]);

    // The output loads in `effc run`.
    let img = d.join("data/val/light/0.png");
    let r = effc(&[
        "run",
        p(&d.join("tiny.enet")),
        "-w",
        p(&out),
        "--device",
        "cpu",
        "--json",
        p(&img),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(stdout(&r).contains("\"top\""));

    // Resuming the finished run from its checkpoint trains nothing and writes the same weights.
    let again = d.join("again.safetensors");
    let mut a = args(&again);
    a.extend(["--resume".into(), p(&ckpt).into()]);
    let o = run(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming from"), "{}", stderr(&o));
    assert_eq!(
        tensors(&std::fs::read(&out).unwrap()),
        tensors(&std::fs::read(&again).unwrap())
    );

    // Another run's checkpoint (other flags) is refused.
    let mut b = args(&d.join("b.safetensors"));
    b.extend([
        "--seed".into(),
        "9".into(),
        "--resume".into(),
        p(&ckpt).into(),
    ]);
    let o = run(&b);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("another training run"),
        "{}",
        stderr(&o)
    );
}

/// The `step-N.safetensors` checkpoints in `dir`, by step.
fn checkpoints(dir: &Path) -> Vec<(u64, std::path::PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut v: Vec<(u64, std::path::PathBuf)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.strip_suffix(".safetensors")?;
            Some((step.parse().ok()?, e.path()))
        })
        .collect();
    v.sort();
    v
}

/// A real `effc train` killed (SIGKILL) after its first checkpoint, in the
/// middle of the epoch after it, then resumed from its checkpoint directory:
/// its output and its last checkpoint (weights, optimizer state, EMA) equal an
/// uninterrupted run's byte for byte, tensor by tensor (the safetensors header's
/// metadata comes in a hash map's order). A checkpoint of another model is refused.
#[test]
fn a_killed_run_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny.enet"), SPEC).unwrap();
    folder(&d.join("data"));
    let epochs = 20u64; // 3 steps each
    let args_for = |o: &Path, epochs: u64| -> Vec<String> {
        let mut a: Vec<String> = [
            "train",
            p(&d.join("tiny.enet")),
            "--data",
            p(&d.join("data")),
            "--batch",
            "4",
            "--dropout",
            "0.2",
            "--drop-path",
            "0.3",
            "--ema",
            "0.9",
            "--seed",
            "5",
            "--randaug",
            "rand-m9-mstd0.5",
            "--mixup",
            "0.8",
            "--cutmix",
            "1.0",
            "--eval-batch",
            "12",
            "-o",
            p(o),
            "--log",
            p(&o.with_extension("jsonl")),
            "--plot",
            p(&o.with_extension("svg")),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(["--epochs".into(), epochs.to_string()]);
        a
    };
    let args = |o: &Path| args_for(o, epochs);
    let run = |a: &[String]| effc(&a.iter().map(String::as_str).collect::<Vec<_>>());

    let full = d.join("full.safetensors");
    let o = run(&args(&full));
    assert!(o.status.success(), "{}", stderr(&o));

    let killed = d.join("killed.safetensors");
    let ckpt = d.join("killed.ckpt");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_effc"))
        .args(args(&killed))
        .current_dir(common::root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while checkpoints(&ckpt).is_empty() {
        assert!(
            started.elapsed().as_secs() < 300,
            "no checkpoint after 300 s"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "effc train ended before its first checkpoint"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL: no chance to write anything more
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the run finished before it was killed: make it longer"
    );
    assert!(!killed.exists(), "a killed run wrote no output");
    let (at, _) = *checkpoints(&ckpt).last().unwrap();
    assert!(at < 3 * epochs, "killed at step {at}");

    let mut a = args(&killed);
    a.extend(["--resume".into(), p(&ckpt).into()]);
    let o = run(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("at step {at} of {}", 3 * epochs)),
        "{}",
        stderr(&o)
    );
    assert!(
        tensors(&std::fs::read(&full).unwrap()) == tensors(&std::fs::read(&killed).unwrap()),
        "the resumed run's weights differ from the uninterrupted run's"
    );
    assert!(
        std::fs::read(&full).unwrap() == std::fs::read(&killed).unwrap(),
        "the two outputs hold the same tensors but differ in their bytes (metadata order?)"
    );
    let last = |dir: &Path| {
        let c = checkpoints(dir);
        let (step, path) = c.last().unwrap().clone();
        assert_eq!(step, 3 * epochs);
        tensors(&std::fs::read(path).unwrap())
    };
    // The resumed run's log holds the whole run: a line per step and per epoch,
    // as the uninterrupted run's (the same but for the images per second).
    let lines = |o: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(o.with_extension("jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("images_per_s");
                v
            })
            .collect()
    };
    assert_eq!(lines(&full).len() as u64, 4 * epochs);
    assert!(lines(&full) == lines(&killed), "the logs differ");
    let svg = std::fs::read_to_string(killed.with_extension("svg")).unwrap();
    assert!(svg.contains(&format!("tiny: {0} of {0} steps", 3 * epochs)));
    let (a, b) = (last(&d.join("full.ckpt")), last(&ckpt));
    assert!(a.keys().any(|k| k.starts_with("opt.1.")) && a.keys().any(|k| k.starts_with("ema.")));
    assert!(a == b, "the last checkpoints differ");

    // Ctrl-C (a real SIGINT) mid-run: the step finishes, a checkpoint is written,
    // the exit status is 130 and the message says how to resume; resuming ends
    // as the uninterrupted run.
    #[cfg(unix)]
    {
        use std::io::BufRead;
        let stopped = d.join("stopped.safetensors");
        let sdir = d.join("stopped.ckpt");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_effc"))
            .args(args(&stopped))
            .current_dir(common::root())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            for line in std::io::BufReader::new(err).lines() {
                let line = line.unwrap();
                let _ = tx.send(line.clone());
                all += &line;
                all.push('\n');
            }
            all
        });
        loop {
            let line = rx
                .recv_timeout(std::time::Duration::from_secs(300))
                .expect("effc train printed its third step");
            if line.starts_with("step 3/") {
                break;
            }
        }
        // SAFETY: kill(2) on the child's pid, which has not been waited for.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
        let status = child.wait().unwrap();
        let log = reader.join().unwrap();
        assert_eq!(status.code(), Some(130), "{log}");
        assert!(
            log.contains("interrupted after step") && log.contains("--resume"),
            "{log}"
        );
        assert!(!stopped.exists());
        let (at, _) = *checkpoints(&sdir).last().unwrap();
        assert!(at >= 3 && at < 3 * epochs, "stopped at step {at}");
        assert!(
            log.contains(&format!("interrupted after step {at} of")),
            "{log}"
        );
        let mut a = args(&stopped);
        a.extend(["--resume".into(), p(&sdir).into()]);
        let o = run(&a);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            tensors(&std::fs::read(&full).unwrap()) == tensors(&std::fs::read(&stopped).unwrap()),
            "the run resumed after Ctrl-C differs from the uninterrupted run"
        );
    }

    // A checkpoint of another model is refused, and nothing is written.
    std::fs::write(
        d.join("other.enet"),
        SPEC.replace("model tiny", "model other"),
    )
    .unwrap();
    let other = d.join("other.safetensors");
    let mut a = args_for(&other, 1);
    a[1] = p(&d.join("other.enet")).into();
    let o = run(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    let again = d.join("again.safetensors");
    let mut a = args(&again);
    a.extend(["--resume".into(), p(&d.join("other.ckpt")).into()]);
    let o = run(&a);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is a training checkpoint of `other`, not of `tiny`"),
        "{}",
        stderr(&o)
    );
    assert!(!again.exists() && !d.join("again.ckpt").exists());
}

#[test]
fn hostile_input_is_refused_and_nothing_is_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny.enet"), SPEC).unwrap();
    folder(&d.join("data"));
    let spec = p(&d.join("tiny.enet")).to_string();
    let data = p(&d.join("data")).to_string();
    // -o onto --from.
    let from = d.join("from.safetensors");
    std::fs::write(&from, b"precious").unwrap();
    let o = effc(&[
        "train",
        &spec,
        "--data",
        &data,
        "--from",
        p(&from),
        "-o",
        p(&from),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("refusing to overwrite an input"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&from).unwrap(), b"precious");
    // A checkpoint of another model.
    let b0 = Model::build(&Spec::builtin("lite0").unwrap(), &Options::default()).unwrap();
    let other = d.join("lite0.safetensors");
    std::fs::write(
        &other,
        effc_testkit::checkpoint_bytes(&b0, &Weights::random(&b0, 1)),
    )
    .unwrap();
    let out = d.join("out.safetensors");
    let o = effc(&[
        "train",
        &spec,
        "--data",
        &data,
        "--from",
        p(&other),
        "-o",
        p(&out),
    ]);
    assert!(
        stderr(&o).contains("fewer images than one batch of 32"),
        "{}",
        stderr(&o)
    );
    let o = effc(&[
        "train",
        &spec,
        "--data",
        &data,
        "--batch",
        "4",
        "--from",
        p(&other),
        "-o",
        p(&out),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("does not fit model `tiny`"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
    // Mismatched classes.
    let o = effc(&[
        "train",
        &spec,
        "--classes",
        "3",
        "--data",
        &data,
        "--batch",
        "4",
        "-o",
        p(&out),
    ]);
    assert!(
        stderr(&o).contains("the data has 2 classes") && stderr(&o).contains("--classes 2"),
        "{}",
        stderr(&o)
    );
    // A corrupt image.
    std::fs::write(d.join("data/train/dark/bad.png"), b"not a png").unwrap();
    let o = effc(&["train", &spec, "--data", &data, "-o", p(&out)]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("1 of 13 image files") && stderr(&o).contains("bad.png"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
    // Bad augmentation settings.
    std::fs::remove_file(d.join("data/train/dark/bad.png")).unwrap();
    for (flags, want) in [
        (&["--randaug", "rand-q3"][..], "unknown part `q3`"),
        (&["--randaug", "m9"][..], "starts with `rand`"),
        (&["--mixup=-1"][..], "--mixup -1 is not in"),
        (&["--mixup-prob", "2"][..], "--mixup-prob 2 is not in"),
        (
            &["--no-augment", "--mixup", "0.8"][..],
            "cannot be used with",
        ),
        (
            &["--freeze", "2"][..],
            "--freeze 2: give `stem` or a stage 0..=1",
        ),
        (
            &["--checkpoints", &spec][..],
            "checkpoints go in a directory",
        ),
        (&["--resume", &data][..], "holds no checkpoint"),
    ] {
        let mut a = vec![
            "train",
            &spec,
            "--data",
            &data,
            "--batch",
            "4",
            "-o",
            p(&out),
        ];
        a.extend(flags);
        let o = effc(&a);
        assert!(
            !o.status.success() && stderr(&o).contains(want),
            "{flags:?}: {}",
            stderr(&o)
        );
        assert!(!out.exists());
    }
    // Fine-tuning with the stem and stage 0 frozen trains.
    let o = effc(&[
        "train",
        &spec,
        "--data",
        &data,
        "--batch",
        "4",
        "--freeze",
        "0",
        "-o",
        p(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_file(&out).unwrap();
    // The GPU step has no frozen layers yet (tests/train_gpu.rs trains on it).
    let o = effc(&[
        "train",
        &spec,
        "--data",
        &data,
        "--freeze",
        "0",
        "--device",
        "gpu",
        "-o",
        p(&out),
    ]);
    assert!(
        stderr(&o).contains("--freeze is not supported with --device gpu")
            && !o.status.success()
            && !out.exists(),
        "{}",
        stderr(&o)
    );
}

/// `--spec-recipe` trains with the spec's `training` recipe (b0: the paper's); a
/// flag beside it wins; without it, effc's defaults.
#[test]
fn spec_recipe_takes_the_papers_recipe_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    folder(&data);
    let plan = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "b0",
            "--classes",
            "2",
            "--resolution",
            "32",
            "--data",
            p(&data),
            "--dry-run",
            "--json",
        ];
        args.extend(extra);
        let o = effc(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap()
    };
    let paper = plan(&["--spec-recipe", "--batch", "4"]);
    assert_eq!(paper["optimizer"], "rmsproptf");
    // 0.256 at 4096 images is 0.016 at 256, 0.00025 at 4.
    assert!(
        (paper["lr"].as_f64().unwrap() - 0.00025).abs() < 1e-12,
        "{paper}"
    );
    assert_eq!(paper["bn_momentum"], 0.01);
    assert_eq!(paper["ema"], 0.9999);
    assert_eq!(
        paper["schedule"],
        "warmup 5 epochs from 0.000001, ×0.97 every 2.4 epochs"
    );
    assert_eq!(
        paper["steps_per_epoch"].as_u64().unwrap() * 350,
        paper["total_steps"].as_u64().unwrap()
    );
    let overridden = plan(&[
        "--batch",
        "4",
        "--spec-recipe",
        "--lr",
        "0.5",
        "--bn-momentum",
        "0.1",
        "--epochs",
        "2",
    ]);
    assert_eq!(overridden["lr"], 0.5);
    assert_eq!(overridden["bn_momentum"], 0.1);
    assert_eq!(overridden["optimizer"], "rmsproptf");
    assert_eq!(
        overridden["steps_per_epoch"].as_u64().unwrap() * 2,
        overridden["total_steps"].as_u64().unwrap()
    );
    let plain = plan(&["--batch", "4"]);
    assert_eq!(plain["bn_momentum"], 0.1);
    assert!(plain["ema"].is_null(), "{plain}");
}

#[test]
fn progressive_dry_run_of_v2_s() {
    let dir = tempfile::tempdir().unwrap();
    folder(&dir.path().join("data"));
    let o = effc(&[
        "train",
        "v2-s",
        "--classes",
        "2",
        "--data",
        p(&dir.path().join("data")),
        "--steps",
        "400",
        "--batch",
        "4",
        "--progressive",
        "--dry-run",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let sizes: Vec<u64> = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, [128, 185, 243, 300]);
    let from: Vec<u64> = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["from"].as_u64().unwrap())
        .collect();
    assert_eq!(from, [0, 100, 200, 300]);
    assert_eq!(v["total_steps"], 400);
    // RandAugment and mixup: stated in the plan, and a short run with them trains.
    let o = effc(&[
        "train",
        "v2-s",
        "--classes",
        "2",
        "--data",
        p(&dir.path().join("data")),
        "--batch",
        "4",
        "--randaug",
        "rand-m9-mstd0.5",
        "--mixup",
        "0.8",
        "--cutmix",
        "1.0",
        "--dry-run",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("RandAugment 2 ops at magnitude 9 (std 0.5")
            && stdout(&o).contains("mixup α 0.8 / CutMix α 1"),
        "{}",
        stdout(&o)
    );
}
