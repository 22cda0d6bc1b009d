//! RandAugment's ops against timm on PIL (fixture by
//! `tests/fixtures/train/make_augment_fixtures.py`), their magnitudes, and
//! properties of RandAugment and mixup/CutMix: shapes, ranges, seeds, targets.

use effc_reference::train::Rng;
use effc_train::augment::{self, Mixup, Op, RandAugment, OPS};
use image::RgbImage;
use safetensors::SafeTensors;

fn fixture() -> Vec<u8> {
    std::fs::read(effc_testkit::fixtures().join("train/augment.safetensors")).unwrap()
}

fn image_of(st: &SafeTensors, name: &str) -> RgbImage {
    let t = st.tensor(name).unwrap();
    let s = t.shape();
    RgbImage::from_raw(s[1] as u32, s[0] as u32, t.data().to_vec()).unwrap()
}

/// The op of timm's name (effc's `Op` variants are spelled as timm's `_RAND_TRANSFORMS`).
fn op_named(name: &str) -> Op {
    *OPS.iter().find(|op| format!("{op:?}") == name).unwrap()
}

/// Every op of timm's list against PIL: the colour ops (lookup tables, blends,
/// the smoothing filter) exactly, the geometric ops (bilinear resampling;
/// PIL rounds its own way) within 1 level everywhere.
#[test]
fn ops_equal_timm_on_pil() {
    let bytes = fixture();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    let cases: Vec<(String, f64)> = serde_json::from_str(&meta["cases"]).unwrap();
    let fill: [u8; 3] = serde_json::from_str(&meta["fill"]).unwrap();
    assert_eq!(fill, augment::fill_of([0.485, 0.456, 0.406]));
    let input = image_of(&st, "input");
    let mut seen = std::collections::HashSet::new();
    for (i, (name, arg)) in cases.iter().enumerate() {
        let op = op_named(name);
        seen.insert(name.clone());
        let want = image_of(&st, &format!("op.{i}"));
        let got = augment::apply_op(&input, op, *arg, fill);
        assert_eq!(got.dimensions(), want.dimensions());
        let diffs: Vec<i32> = got
            .as_raw()
            .iter()
            .zip(want.as_raw())
            .map(|(&a, &b)| (a as i32 - b as i32).abs())
            .collect();
        let worst = *diffs.iter().max().unwrap();
        let off = diffs.iter().filter(|&&d| d > 1).count();
        let changed = input
            .as_raw()
            .iter()
            .zip(want.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        assert!(
            changed > 0,
            "{name} {arg}: the fixture leaves the image as is"
        );
        match op {
            Op::Rotate | Op::ShearX | Op::ShearY | Op::TranslateXRel | Op::TranslateYRel => {
                assert!(
                    off == 0,
                    "{name} {arg}: {off} of {} values off by more than 1 (worst {worst})",
                    diffs.len()
                )
            }
            _ => assert_eq!(worst, 0, "{name} {arg}"),
        }
    }
    assert_eq!(seen.len(), OPS.len(), "every op has a case");
}

/// Each op's argument at each magnitude is timm's `LEVEL_TO_ARG`.
#[test]
fn magnitudes_map_as_timm() {
    let bytes = fixture();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    let mags: Vec<f64> = serde_json::from_str(&meta["magnitudes"]).unwrap();
    for name in OPS.map(|op| format!("{op:?}")) {
        let t = st.tensor(&format!("level.{name}")).unwrap();
        let want: Vec<f64> = t
            .data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        for (m, w) in mags.iter().zip(want) {
            let got = augment::level_arg(op_named(&name), *m, &mut Rng::new(1)).abs();
            assert!((got - w).abs() < 1e-12, "{name} at {m}: {got} vs timm {w}");
        }
    }
}

#[test]
fn randaugment_config_strings() {
    let ra = RandAugment::parse("rand-m9-mstd0.5").unwrap();
    assert_eq!(
        ra,
        RandAugment {
            n: 2,
            magnitude: 9.0,
            magnitude_std: 0.5,
            magnitude_max: 10.0,
            prob: 0.5
        }
    );
    let ra = RandAugment::parse("rand-m15-n3-mmax20-p1-mstd101").unwrap();
    assert_eq!((ra.n, ra.magnitude, ra.magnitude_max), (3, 15.0, 20.0));
    assert!(ra.magnitude_std.is_infinite() && ra.prob == 1.0);
    assert_eq!(RandAugment::parse("rand").unwrap().magnitude, 10.0);
    for bad in [
        "m9",
        "rand-x3",
        "rand-m-1",
        "rand-inc1",
        "rand-nx",
        "rand-p2",
    ] {
        let e = RandAugment::parse(bad).unwrap_err();
        assert!(e.contains("--randaug"), "{bad}: {e}");
    }
}

fn noise_image(w: u32, h: u32, seed: u64) -> RgbImage {
    let v = effc_testkit::seeded((w * h * 3) as usize, seed);
    RgbImage::from_raw(w, h, v.iter().map(|x| (128.0 + 100.0 * x) as u8).collect()).unwrap()
}

/// RandAugment keeps the size, is a function of its RNG, and changes images.
#[test]
fn randaugment_is_seeded() {
    let ra = RandAugment {
        n: 3,
        prob: 1.0,
        ..RandAugment::default()
    };
    let img = noise_image(19, 13, 4);
    let run = |seed| {
        let mut x = img.clone();
        ra.apply(&mut x, [124, 116, 104], &mut Rng::new(seed));
        x
    };
    let a = run(7);
    assert_eq!(a.dimensions(), (19, 13));
    assert_eq!(a, run(7));
    assert!((0..20).any(|s| run(s) != run(s + 100)));
    assert!((0..20).all(|s| run(s) != img));
    // At probability 0 nothing happens.
    let mut x = img.clone();
    RandAugment { prob: 0.0, ..ra }.apply(&mut x, [0; 3], &mut Rng::new(1));
    assert_eq!(x, img);
}

/// Mixup and CutMix: targets sum to 1 and equal timm's `mixup_target`; mixup
/// interpolates each image with the reversed batch's; CutMix pastes a box whose
/// area is what λ says; a seed gives the same batch.
#[test]
fn mixup_and_cutmix() {
    let bytes = fixture();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let want: Vec<f32> = st
        .tensor("mixup.targets")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let (n, c, h, w, classes) = (4, 3, 8, 6, 4);
    let labels = [0usize, 2, 1, 3];
    let x0 = effc_testkit::seeded(n * c * h * w, 2);
    // Mixup alone, always.
    let m = Mixup {
        mixup_alpha: 0.8,
        cutmix_alpha: 0.0,
        prob: 1.0,
        switch_prob: 0.5,
    };
    for seed in 0..20 {
        let mut x = x0.clone();
        let r = m.apply(
            &mut x,
            &labels,
            [c, h, w],
            classes,
            0.1,
            &mut Rng::new(seed),
        );
        assert!(r.lam > 0.0 && r.lam < 1.0 && r.cutmix_box.is_none());
        for row in r.targets.chunks_exact(classes) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            assert!(row.iter().all(|&t| (0.0..=1.0).contains(&t)));
        }
        let img = c * h * w;
        for i in 0..n {
            let j = n - 1 - i;
            for k in (0..img).step_by(7) {
                let e = x0[i * img + k] * r.lam as f32 + x0[j * img + k] * (1.0 - r.lam) as f32;
                assert!((x[i * img + k] - e).abs() < 1e-6);
            }
        }
        let mut again = x0.clone();
        let r2 = m.apply(
            &mut again,
            &labels,
            [c, h, w],
            classes,
            0.1,
            &mut Rng::new(seed),
        );
        assert_eq!((x, r.targets), (again, r2.targets));
    }
    // The targets for a given λ are timm's.
    let lam = 0.7;
    let mut rng = Rng::new(0);
    let off = Mixup { prob: 0.0, ..m };
    let r = off.apply(&mut x0.clone(), &labels, [c, h, w], classes, 0.1, &mut rng);
    assert_eq!(r.lam, 1.0);
    let targets_at = |lam: f64| -> Vec<f32> {
        let (s, k) = (0.1, classes as f64);
        let (on, offv) = (1.0 - s + s / k, s / k);
        let mut t = vec![];
        for i in 0..n {
            for q in 0..classes {
                let y1 = if labels[i] == q { on } else { offv };
                let y2 = if labels[n - 1 - i] == q { on } else { offv };
                t.push((y1 * lam + y2 * (1.0 - lam)) as f32);
            }
        }
        t
    };
    assert_eq!(r.targets, targets_at(1.0));
    for (a, b) in targets_at(lam).iter().zip(&want) {
        assert!((a - b).abs() < 1e-6, "{a} vs timm {b}");
    }
    // CutMix alone.
    let cm = Mixup {
        mixup_alpha: 0.0,
        cutmix_alpha: 1.0,
        ..m
    };
    let mut boxes = 0;
    for seed in 0..30 {
        let mut x = x0.clone();
        let r = cm.apply(
            &mut x,
            &labels,
            [c, h, w],
            classes,
            0.0,
            &mut Rng::new(seed),
        );
        let (yl, yh, xl, xh) = r.cutmix_box.unwrap();
        let area = (yh - yl) * (xh - xl);
        assert!((r.lam - (1.0 - area as f64 / (h * w) as f64)).abs() < 1e-12);
        boxes += usize::from(area > 0);
        let img = c * h * w;
        for i in 0..n {
            let j = n - 1 - i;
            for ch in 0..c {
                for y in 0..h {
                    for xx in 0..w {
                        let k = ch * h * w + y * w + xx;
                        let inside = (yl..yh).contains(&y) && (xl..xh).contains(&xx);
                        let src = if inside { j } else { i };
                        assert_eq!(x[i * img + k], x0[src * img + k]);
                    }
                }
            }
        }
        for row in r.targets.chunks_exact(classes) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }
    assert!(boxes > 20, "CutMix pasted a box {boxes} times of 30");
    // Both: the switch picks each.
    let both = Mixup {
        cutmix_alpha: 1.0,
        ..m
    };
    let kinds: std::collections::HashSet<bool> = (0..40)
        .map(|s| {
            both.apply(
                &mut x0.clone(),
                &labels,
                [c, h, w],
                classes,
                0.0,
                &mut Rng::new(s),
            )
            .cutmix_box
            .is_some()
        })
        .collect();
    assert_eq!(kinds.len(), 2);
}

/// Beta(α, α) draws: in (0, 1), mean ½, variance 1/(4(2α + 1)).
#[test]
fn beta_draws_have_the_right_moments() {
    for a in [0.2, 0.8, 1.0, 2.0] {
        let mut rng = Rng::new(11);
        let xs: Vec<f64> = (0..20000).map(|_| augment::beta(a, &mut rng)).collect();
        assert!(xs.iter().all(|&x| (0.0..=1.0).contains(&x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        let want = 1.0 / (4.0 * (2.0 * a + 1.0));
        assert!((mean - 0.5).abs() < 0.01, "α {a}: mean {mean}");
        assert!(
            (var - want).abs() < 0.1 * want,
            "α {a}: variance {var} vs {want}"
        );
    }
}
