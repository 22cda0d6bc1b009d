//! `effc train --device gpu` (issue 21) end to end, on whatever adapter wgpu
//! finds (lavapipe here): its per-step losses follow `--device cpu`'s (the CPU
//! reference executor, the oracle) within 1e-3, its output loads in `effc run`,
//! a checkpoint written on one device resumes on the other, and what the GPU
//! step does not do yet is refused before anything is read or written.

mod common;

use std::path::{Path, PathBuf};

use common::{effc, p, stderr, stdout, TRAIN_SPEC as SPEC};
use safetensors::SafeTensors;

/// Two classes of 6 training and 6 validation images, 20x18 (cropped to 16).
fn folder(root: &Path) {
    for (class, v) in [("dark", 30u8), ("light", 220u8)] {
        for split in ["train", "val"] {
            let d = root.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..6u8 {
                image::RgbImage::from_fn(20, 18, |x, y| {
                    image::Rgb([v, v.wrapping_add(i * 7), v.wrapping_add((x * y) as u8 % 16)])
                })
                .save(d.join(format!("{i}.png")))
                .unwrap();
            }
        }
    }
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("tiny.enet");
    std::fs::write(&spec, SPEC).unwrap();
    let data = dir.path().join("data");
    folder(&data);
    (dir, spec, data)
}

/// `effc train` with every regularizer and augmentation the GPU step takes:
/// crop and flip, RandAugment, mixup/CutMix soft targets, dropout, drop path,
/// the EMA; 3 steps an epoch.
fn train_args(spec: &Path, data: &Path, out: &Path, epochs: u64, opt: &str) -> Vec<String> {
    [
        "train",
        p(spec),
        "--data",
        p(data),
        "--batch",
        "4",
        "--epochs",
        &epochs.to_string(),
        "--optimizer",
        opt,
        "--lr",
        "0.02",
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
        "-o",
        p(out),
        "--log",
        p(&out.with_extension("jsonl")),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run(args: &[String]) -> std::process::Output {
    effc(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn with(mut a: Vec<String>, more: &[&str]) -> Vec<String> {
    a.extend(more.iter().map(|s| s.to_string()));
    a
}

/// (step, loss) pairs.
type Losses = Vec<(u64, f64)>;

/// The `--log` lines: per step (step, loss) and per epoch (step, validation loss).
fn log(out: &Path) -> (Losses, Losses) {
    let text = std::fs::read_to_string(out.with_extension("jsonl")).unwrap();
    let (mut steps, mut epochs) = (vec![], vec![]);
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let step = v["step"].as_u64().unwrap();
        match v.get("validation") {
            Some(e) => epochs.push((step, e["loss"].as_f64().unwrap())),
            None => steps.push((step, v["loss"].as_f64().unwrap())),
        }
    }
    (steps, epochs)
}

/// The largest difference between two runs' per-step training losses, and
/// between their per-epoch validation losses; the runs take the same steps.
fn worst(a: &Path, b: &Path) -> (f64, f64) {
    let ((sa, ea), (sb, eb)) = (log(a), log(b));
    assert_eq!(sa.len(), sb.len(), "the runs took different steps");
    assert_eq!(ea.len(), eb.len(), "the runs validated at different epochs");
    let gap = |x: &[(u64, f64)], y: &[(u64, f64)]| {
        let mut w: f64 = 0.0;
        for ((ta, la), (tb, lb)) in x.iter().zip(y) {
            assert_eq!(ta, tb);
            assert!(la.is_finite() && lb.is_finite());
            w = w.max((la - lb).abs());
        }
        w
    };
    (gap(&sa, &sb), gap(&ea, &eb))
}

fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<(String, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| {
            let f = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (n, f)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The largest difference of any value between two weight files of the same
/// tensors, but those named in `skip`.
fn weight_gap(a: &Path, b: &Path, skip: &[&str]) -> f32 {
    let (ta, tb) = (tensors(a), tensors(b));
    assert_eq!(ta.len(), tb.len());
    let mut w: f32 = 0.0;
    for ((na, va), (nb, vb)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        assert_eq!(va.len(), vb.len(), "{na}");
        if skip.contains(&na.as_str()) {
            continue;
        }
        for (x, y) in va.iter().zip(vb) {
            w = w.max((x - y).abs());
        }
    }
    w
}

/// AdamW's caveat (see the GPU path's tests in effc-runtime): the last
/// block's projection BN bias feeds the head's conv and BN with no
/// activation between, so the head BN removes its shift and its exact
/// gradient is 0. Both devices compute f32 noise there, and AdamW's division
/// by √v turns either noise into steps of ±lr: the two runs move that bias
/// (and the head BN's running mean, which sees it) apart by construction.
/// The training loss does not see it (batch statistics remove the shift);
/// validation in eval mode does.
const ADAMW_ZERO_GRADIENT: [&str; 2] = ["blocks.1.0.bn3.bias", "bn2.running_mean"];

#[test]
fn gpu_losses_follow_the_cpu_and_effc_run_loads_the_output() {
    let (dir, spec, data) = setup();
    let d = dir.path();
    for opt in ["rmsproptf", "adamw", "nesterov"] {
        let train = |dev: &str| {
            let out = d.join(format!("{opt}-{dev}.safetensors"));
            let o = run(&with(
                train_args(&spec, &data, &out, 5, opt),
                &["--device", dev],
            ));
            assert!(o.status.success(), "{dev}: {}", stderr(&o));
            (out, stderr(&o))
        };
        let (cpu, cpu_log) = train("cpu");
        let (gpu, gpu_log) = train("gpu");
        assert!(
            cpu_log.starts_with("training on the CPU reference executor (--device cpu)"),
            "{cpu_log}"
        );
        assert!(gpu_log.starts_with("training on the GPU: "), "{gpu_log}");
        assert!(
            gpu_log.contains("epoch 4: validation (EMA) top-1"),
            "{gpu_log}"
        );
        let (w, val) = worst(&cpu, &gpu);
        let adamw = opt == "adamw";
        let skip: &[&str] = if adamw { &ADAMW_ZERO_GRADIENT } else { &[] };
        let gap = weight_gap(&cpu, &gpu, skip);
        eprintln!(
            "{opt}: 15 steps, GPU vs CPU: worst step loss {w:.2e}, validation loss {val:.2e}, weights {gap:.2e}"
        );
        assert!(w <= 1e-3, "{opt}: the GPU's losses differ by {w:.2e}");
        if !adamw {
            assert!(val <= 1e-3, "{opt}: validation losses differ by {val:.2e}");
        }
        // The output (the EMA) is the CPU's to f32 rounding.
        assert!(gap <= 1e-3, "{opt}: the outputs differ by {gap:.2e}");
        // The checkpoint holds effc-train's optimizer state: the same tensors.
        let ckpt = |out: &Path| {
            tensors(&out.with_extension("ckpt").join("step-00000015.safetensors"))
                .into_iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>()
        };
        assert_eq!(ckpt(&cpu), ckpt(&gpu));
        assert!(ckpt(&gpu).iter().any(|n| n.starts_with("opt.0.")));
    }

    // The GPU's output loads in `effc run` and classifies as the CPU's does.
    let img = data.join("val/light/0.png");
    let top = |w: &Path| {
        let r = effc(&[
            "run",
            p(&spec),
            "-w",
            p(w),
            "--device",
            "cpu",
            "--json",
            p(&img),
        ]);
        assert!(r.status.success(), "{}", stderr(&r));
        let v: serde_json::Value = serde_json::from_str(&stdout(&r)).unwrap();
        let first = &v[0]["top"][0];
        (
            first["class"].as_u64().unwrap(),
            first["prob"].as_f64().unwrap(),
        )
    };
    let (c, pc) = top(&d.join("rmsproptf-cpu.safetensors"));
    let (g, pg) = top(&d.join("rmsproptf-gpu.safetensors"));
    assert_eq!(c, g);
    assert!((pc - pg).abs() < 1e-4, "{pc} vs {pg}");
}

/// Runs `args` until it has printed step 3, then sends SIGINT: the step
/// finishes, a checkpoint is written, the exit status is 130. Returns the
/// checkpoint's step.
#[cfg(unix)]
fn interrupt_after_step_3(args: &[String], ckpt: &Path) -> u64 {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_effc"))
        .args(args)
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
    assert_eq!(
        status.code(),
        Some(130),
        "the run was not interrupted (make it longer): {log}"
    );
    let mut steps: Vec<u64> = std::fs::read_dir(ckpt)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_prefix("step-")?
                .strip_suffix(".safetensors")?
                .parse()
                .ok()
        })
        .collect();
    steps.sort();
    let at = *steps.last().expect("a checkpoint");
    assert!(
        log.contains(&format!("interrupted after step {at} of")),
        "{log}"
    );
    at
}

/// A run interrupted on one device and resumed from its checkpoint on the
/// other ends as the uninterrupted CPU run does: every step's loss within
/// 1e-3, the weights to f32 rounding. Both directions.
#[cfg(unix)]
#[test]
fn a_checkpoint_resumes_on_the_other_device() {
    let (dir, spec, data) = setup();
    let d = dir.path();
    let epochs = 20; // 60 steps: long enough to be interrupted
    let full = d.join("full.safetensors");
    let o = run(&with(
        train_args(&spec, &data, &full, epochs, "rmsproptf"),
        &["--device", "cpu"],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    for (first, then) in [("gpu", "cpu"), ("cpu", "gpu")] {
        let out = d.join(format!("{first}-then-{then}.safetensors"));
        let args = train_args(&spec, &data, &out, epochs, "rmsproptf");
        let ckpt = out.with_extension("ckpt");
        let at = interrupt_after_step_3(&with(args.clone(), &["--device", first]), &ckpt);
        assert!((3..60).contains(&at), "stopped at step {at}");
        assert!(!out.exists());
        let o = run(&with(args, &["--device", then, "--resume", p(&ckpt)]));
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("resuming from {}", ckpt.display()))
                && stderr(&o).contains(&format!("at step {at} of 60")),
            "{}",
            stderr(&o)
        );
        // The resumed log holds the whole run.
        let (w, val) = worst(&full, &out);
        let gap = weight_gap(&full, &out, &[]);
        eprintln!(
            "{first} then {then} from step {at}: worst step loss {w:.2e}, validation loss {val:.2e}, weights {gap:.2e}"
        );
        assert!(w <= 1e-3, "{first} then {then}: losses differ by {w:.2e}");
        assert!(
            val <= 1e-3,
            "{first} then {then}: validation differs by {val:.2e}"
        );
        assert!(
            gap <= 1e-3,
            "{first} then {then}: weights differ by {gap:.2e}"
        );
    }
}

/// What the GPU step does not do is refused before anything is read or
/// written; without --device, --freeze trains on the CPU and says so.
#[test]
fn what_the_gpu_step_lacks_is_refused() {
    let (dir, spec, data) = setup();
    let d = dir.path();
    let out = d.join("frozen.safetensors");
    let args = with(
        train_args(&spec, &data, &out, 1, "sgd"),
        &["--freeze", "stem"],
    );
    let o = run(&with(args.clone(), &["--device", "gpu"]));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--freeze is not supported with --device gpu"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists() && !d.join("frozen.ckpt").exists() && !d.join("frozen.jsonl").exists());

    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("training on the CPU reference executor (--freeze"),
        "{}",
        stderr(&o)
    );

    let help = stdout(&effc(&["train", "--help"]));
    assert!(
        help.contains("gpu|cpu|reference") && help.contains("hardware GPU"),
        "{help}"
    );
}

/// Progressive learning (3 stages: 8, 12 and 16 px, dropout, RandAugment and
/// mixup ramped): a GPU trainer per stage; every step's loss and every
/// validation within 1e-3 of the CPU run's. The CPU run validates at the
/// model's resolution after a stage at another size (it fed stage-sized
/// images to the evaluation model once).
#[test]
fn progressive_stages_follow_the_cpu() {
    let (dir, _, data) = setup();
    let d = dir.path();
    let spec = d.join("prog.enet");
    std::fs::write(
        &spec,
        SPEC.replace("model tiny", "model prog").replace(
            "    blocks {",
            "    training {
        size        = 16
        start_size  = 8
        stages      = 3
        dropout     = 0.1 .. 0.3
        randaugment = 5 .. 10
        mixup       = 0 .. 0.4
    }
    blocks {",
        ),
    )
    .unwrap();
    let train = |dev: &str| {
        let out = d.join(format!("{dev}.safetensors"));
        let args: Vec<String> = [
            "train",
            p(&spec),
            "--data",
            p(&data),
            "--epochs",
            "4",
            "--batch",
            "4",
            "--progressive",
            "--lr",
            "0.02",
            "--ema",
            "0.9",
            "--device",
            dev,
            "-o",
            p(&out),
            "--log",
            p(&out.with_extension("jsonl")),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let o = run(&args);
        assert!(o.status.success(), "{dev}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("stage 3 of 3: steps 8..12, size 16"),
            "{}",
            stderr(&o)
        );
        out
    };
    let (cpu, gpu) = (train("cpu"), train("gpu"));
    let sizes: Vec<u64> = std::fs::read_to_string(gpu.with_extension("jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["size"].as_u64())
        .collect();
    assert_eq!(sizes, [8, 8, 8, 8, 12, 12, 12, 12, 16, 16, 16, 16]);
    let (w, val) = worst(&cpu, &gpu);
    let gap = weight_gap(&cpu, &gpu, &[]);
    eprintln!("progressive: worst step loss {w:.2e}, validation {val:.2e}, weights {gap:.2e}");
    assert!(w <= 1e-3 && val <= 1e-3 && gap <= 1e-3);
}

/// `--save-grads` on a fixed batch (`--input`): the first step's gradients
/// on the GPU equal the CPU's (relative to each tensor's largest, 1e-4), and
/// the BN running statistics after it within 1e-5.
#[test]
fn first_step_gradients_equal_the_cpus() {
    let (dir, spec, _) = setup();
    let d = dir.path();
    let n = 4;
    let mut rng = 7u64;
    let input: Vec<f32> = (0..n * 3 * 16 * 16)
        .map(|_| {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((rng >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let labels: Vec<i64> = vec![0, 1, 1, 0];
    let (xb, lb): (Vec<u8>, Vec<u8>) = (
        input.iter().flat_map(|v| v.to_le_bytes()).collect(),
        labels.iter().flat_map(|v| v.to_le_bytes()).collect(),
    );
    let views = [
        (
            "input",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![n, 3, 16, 16], &xb)
                .unwrap(),
        ),
        (
            "labels",
            safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![n], &lb).unwrap(),
        ),
    ];
    let x = d.join("x.safetensors");
    std::fs::write(&x, safetensors::serialize(views, None).unwrap()).unwrap();
    let grads = |dev: &str| {
        let g = d.join(format!("g-{dev}.safetensors"));
        let o = effc(&[
            "train",
            p(&spec),
            "--input",
            p(&x),
            "--save-grads",
            p(&g),
            "--device",
            dev,
            "-o",
            p(&d.join(format!("o-{dev}.safetensors"))),
        ]);
        assert!(o.status.success(), "{dev}: {}", stderr(&o));
        tensors(&g)
    };
    let (cpu, gpu) = (grads("cpu"), grads("gpu"));
    assert_eq!(cpu.len(), gpu.len());
    let mut worst: f32 = 0.0;
    for ((name, c), (gname, g)) in cpu.iter().zip(&gpu) {
        assert_eq!(name, gname);
        let scale = c.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        let e = c.iter().zip(g).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        if name.contains("running") {
            assert!(e <= 1e-5 * scale.max(1.0), "{name}: {e:.2e}");
        } else if scale > 1e-4 {
            // A tensor whose gradient vanishes (the exact value is 0) is f32 noise on both.
            worst = worst.max(e / scale);
        }
    }
    eprintln!("first-step gradients, GPU vs CPU: worst {worst:.2e} of the tensor's largest");
    assert!(worst <= 1e-4, "{worst:.2e}");
}

/// Issue 21's Fashion-MNIST check: 20 steps of `examples/fashion-mnist.enet`
/// (batch 8, the default recipe) on the GPU follow the CPU run's losses
/// within 1e-3 at every step, and the weights classify the test split (10000
/// images) as the CPU's do. About 70 s in a debug build on lavapipe:
/// `cargo test -p effc-cli --test train_gpu -- --ignored`.
#[test]
#[ignore]
fn fashion_mnist_20_steps_follow_the_cpu() {
    let dir = "/usr/share/datasets/fashion-mnist";
    if !Path::new(dir).join("train-images-idx3-ubyte.gz").exists() {
        eprintln!("skipped: {dir} is missing (apt-get install dataset-fashion-mnist)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let train = |dev: &str| {
        let out = d.path().join(format!("{dev}.safetensors"));
        let o = effc(&[
            "train",
            "examples/fashion-mnist.enet",
            "--data",
            &format!("fashion-mnist={dir}"),
            "--steps",
            "20",
            "--batch",
            "8",
            "--device",
            dev,
            "-o",
            p(&out),
            "--log",
            p(&out.with_extension("jsonl")),
        ]);
        assert!(o.status.success(), "{dev}: {}", stderr(&o));
        out
    };
    let (cpu, gpu) = (train("cpu"), train("gpu"));
    let (w, val) = worst(&cpu, &gpu);
    eprintln!("Fashion-MNIST, 20 steps: worst step loss {w:.2e}, test loss {val:.2e}");
    assert!(w <= 1e-3 && val <= 1e-3, "{w:.2e} {val:.2e}");
    let last = |o: &Path| {
        let text = std::fs::read_to_string(o.with_extension("jsonl")).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        let e = &v["validation"];
        assert_eq!(e["images"], 10000);
        (e["top1"].as_f64().unwrap(), e["top5"].as_f64().unwrap())
    };
    assert_eq!(last(&cpu), last(&gpu));
}

/// `effc bench --train`: the GPU step and the CPU reference's side by side,
/// the kernels by pass and kind adding up to the step's dispatches, the
/// memory to its buffers; f16 and the CPU devices refused.
#[test]
fn bench_train_reports_both_sides() {
    let (dir, spec, _) = setup();
    let _keep = &dir;
    let o = effc(&[
        "bench",
        p(&spec),
        "--train",
        "--batch",
        "2",
        "--runs",
        "2",
        "--warmup",
        "1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (r["batch"].as_u64(), r["resolution"].as_u64()),
        (Some(2), Some(16))
    );
    for side in ["step_ms", "cpu_reference_ms"] {
        let t = &r[side];
        let (lo, med, hi) = (
            t["min"].as_f64().unwrap(),
            t["median"].as_f64().unwrap(),
            t["max"].as_f64().unwrap(),
        );
        assert!(0.0 < lo && lo <= med && med <= hi, "{side}: {t}");
    }
    let ratio = r["step_ms"]["median"].as_f64().unwrap()
        / r["cpu_reference_ms"]["median"].as_f64().unwrap();
    assert!((r["gpu_over_cpu_time"].as_f64().unwrap() - ratio).abs() < 1e-9);
    let kernels = r["kernels"].as_array().unwrap();
    for (pass, key) in [
        ("forward", "forward"),
        ("backward", "backward"),
        ("update", "update"),
    ] {
        let n: u64 = kernels
            .iter()
            .filter(|k| k["pass"] == pass)
            .map(|k| k["dispatches"].as_u64().unwrap())
            .sum();
        assert_eq!(n, r["dispatches"][key].as_u64().unwrap(), "{pass}");
        assert!(n > 0);
    }
    assert!(kernels
        .iter()
        .any(|k| k["kind"] == "conv_bwd_w" && k["pass"] == "backward"));
    let m = &r["memory"];
    let sum: u64 = ["params", "grads", "arena", "optimizer", "ema"]
        .iter()
        .map(|k| m[k].as_u64().unwrap())
        .sum();
    assert_eq!(sum, m["total"].as_u64().unwrap());
    assert!(m["arena"].as_u64().unwrap() > m["params"].as_u64().unwrap());

    let text = effc(&[
        "bench",
        p(&spec),
        "--train",
        "--batch",
        "2",
        "--runs",
        "1",
        "--warmup",
        "0",
    ]);
    assert!(text.status.success(), "{}", stderr(&text));
    let t = stdout(&text);
    assert!(
        t.contains("gpu step") && t.contains("cpu ref") && t.contains("backward  (all)"),
        "{t}"
    );

    for (flags, says) in [
        (&["--precision", "f16"][..], "training runs in f32"),
        (&["--device", "cpu"][..], "drop --device"),
    ] {
        let o = effc(&[&["bench", p(&spec), "--train"][..], flags].concat());
        assert!(
            !o.status.success() && stderr(&o).contains(says),
            "{}",
            stderr(&o)
        );
    }
}
