//! Data sets: tiny IDX files (plain and gzipped), image folders (train/val and a
//! seeded split), hostile inputs, the transforms and the loader.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use effc_train::data::{self, DataError, Loader, Source, Transform};
use image::{Rgb, RgbImage};

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend(data);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// `n` 4x3 gray images (image i all value 10·i) with labels i % 10.
fn write_idx(dir: &Path, prefix: &str, n: usize, zip: bool) {
    let px: Vec<u8> = (0..n).flat_map(|i| [(10 * i) as u8; 12]).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    for (name, bytes) in [
        (
            format!("{prefix}-images-idx3-ubyte"),
            idx(&[n as u32, 4, 3], &px),
        ),
        (
            format!("{prefix}-labels-idx1-ubyte"),
            idx(&[n as u32], &labels),
        ),
    ] {
        if zip {
            std::fs::write(dir.join(format!("{name}.gz")), gz(&bytes)).unwrap();
        } else {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

#[test]
fn idx_files_plain_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(dir.path(), "train", 12, true);
    write_idx(dir.path(), "t10k", 5, false);
    let s = data::open(&Source::FashionMnist(dir.path().into()), 0).unwrap();
    assert_eq!((s.train.len(), s.val.len()), (12, 5));
    assert_eq!(s.train.classes[9], "Ankle boot");
    assert_eq!(s.train.labels[11], 1);
    let img = s.train.image(3).unwrap();
    assert_eq!(img.dimensions(), (3, 4));
    assert!(
        img.pixels().all(|p| p.0 == [30, 30, 30]),
        "gray replicated into 3 channels"
    );
}

#[test]
fn bad_idx_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(dir.path(), "t10k", 5, false);
    let p = dir.path();
    let cases: Vec<(Vec<u8>, Vec<u8>, &str)> = vec![
        (b"junk".to_vec(), idx(&[2], &[0, 1]), "not an IDX file"),
        (
            idx(&[2, 4, 3], &[0; 10]),
            idx(&[2], &[0, 1]),
            "holds 10 bytes",
        ),
        (
            idx(&[2, 4, 3], &[0; 24]),
            idx(&[3], &[0, 1, 2]),
            "has 3 labels for 2 images",
        ),
        (
            idx(&[2, 4, 3], &[0; 24]),
            idx(&[2], &[0, 10]),
            "label 1 is 10",
        ),
        (
            idx(&[2, 4], &[0; 8]),
            idx(&[2], &[0, 1]),
            "has 2 dimensions, expected 3",
        ),
    ];
    for (images, labels, want) in cases {
        std::fs::write(p.join("train-images-idx3-ubyte"), images).unwrap();
        std::fs::write(p.join("train-labels-idx1-ubyte"), labels).unwrap();
        let e = data::open(&Source::Mnist(p.into()), 0)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains(want) && e.contains("idx"), "{e}");
    }
    std::fs::remove_file(p.join("train-images-idx3-ubyte")).unwrap();
    let e = data::open(&Source::Mnist(p.into()), 0)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("train-images-idx3-ubyte.gz"), "{e}");
}

fn png(path: &Path, w: u32, h: u32, v: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_pixel(w, h, Rgb([v, v / 2, 255 - v]))
        .save(path)
        .unwrap();
}

#[test]
fn image_folder_with_train_and_val() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for (split, n) in [("train", 3), ("val", 1)] {
        for class in ["cat", "ant"] {
            for i in 0..n {
                png(
                    &r.join(format!("{split}/{class}/{i}.png")),
                    8,
                    6,
                    40 * i as u8,
                );
            }
        }
    }
    std::fs::write(r.join("train/cat/notes.txt"), "not an image").unwrap();
    let s = data::open(&Source::Folder(r.into()), 0).unwrap();
    assert_eq!(s.train.classes, ["ant", "cat"], "sorted, as ImageFolder");
    assert_eq!(s.train.labels, [0, 0, 0, 1, 1, 1]);
    assert_eq!(s.val.labels, [0, 1]);
    assert_eq!(s.train.image(1).unwrap().get_pixel(0, 0).0, [40, 20, 215]);

    // Different classes in train/ and val/.
    png(&r.join("val/bee/0.png"), 8, 6, 0);
    let e = data::open(&Source::Folder(r.into()), 0)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("`bee` only in val/"), "{e}");
}

#[test]
fn image_folder_seeded_split() {
    let dir = tempfile::tempdir().unwrap();
    for class in ["a", "b"] {
        for i in 0..10 {
            png(&dir.path().join(format!("{class}/{i}.png")), 5, 5, i as u8);
        }
    }
    let split = |seed| {
        let s = data::open(&Source::Folder(dir.path().into()), seed).unwrap();
        (
            s.train.len(),
            s.val.len(),
            s.val.labels.clone(),
            s.val.image(0).unwrap(),
        )
    };
    let (t, v, _, _) = split(1);
    assert_eq!((t, v), (18, 2));
    assert_eq!(split(1), split(1));
    let differs = (2..10).any(|seed| split(seed).3 != split(1).3);
    assert!(differs, "the seed picks the validation images");
}

#[test]
fn hostile_folders_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let e = data::open(&Source::Folder(r.into()), 0).err().unwrap();
    assert!(matches!(e, DataError::NoClasses { .. }), "{e}");
    png(&r.join("a/0.png"), 4, 4, 1);
    std::fs::create_dir_all(r.join("b")).unwrap();
    let e = data::open(&Source::Folder(r.into()), 0)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("class `b` has no images"), "{e}");
    // Corrupt files: counted, named, refused.
    std::fs::write(r.join("b/broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    std::fs::write(r.join("b/empty.jpg"), b"").unwrap();
    png(&r.join("b/fine.png"), 4, 4, 2);
    let e = data::open(&Source::Folder(r.into()), 0)
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with("2 of 4 image files cannot be read"), "{e}");
    assert!(
        e.contains("b/broken.png") && e.contains("b/empty.jpg"),
        "{e}"
    );
}

#[test]
fn transforms_are_seeded_per_sample() {
    let mut img = RgbImage::new(20, 16);
    for (x, y, p) in img.enumerate_pixels_mut() {
        *p = Rgb([(x * 12) as u8, (y * 15) as u8, 7]);
    }
    let t = Transform {
        size: 8,
        augment: true,
        randaugment: None,
        min_scale: 0.08,
        mean: [0.5; 3],
        std: [0.25; 3],
    };
    let a = data::apply(&img, &t, &mut data::sample_rng(1, 0, 5));
    assert_eq!(a.len(), 3 * 64);
    assert_eq!(a, data::apply(&img, &t, &mut data::sample_rng(1, 0, 5)));
    assert_ne!(
        a,
        data::apply(&img, &t, &mut data::sample_rng(1, 1, 5)),
        "another epoch, another crop"
    );
    // Without augmentation: exactly `effc run`'s preprocessing.
    let plain = Transform {
        augment: false,
        randaugment: None,
        min_scale: 0.08,
        ..t
    };
    assert_eq!(
        data::apply(&img, &plain, &mut data::sample_rng(1, 0, 5)),
        effc_weights::preprocess(&img, 8, [0.5; 3], [0.25; 3])
    );
}

#[test]
fn loader_batches_in_order_and_drops_the_last() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(dir.path(), "train", 10, false);
    write_idx(dir.path(), "t10k", 1, false);
    let s = data::open(&Source::Mnist(dir.path().into()), 0).unwrap();
    let ds = Arc::new(s.train);
    let t = Transform {
        size: 4,
        augment: false,
        randaugment: None,
        min_scale: 0.08,
        mean: [0.0; 3],
        std: [1.0; 3],
    };
    let order: Vec<usize> = (0..10).rev().collect();
    let batches: Vec<_> = Loader::new(ds.clone(), order.clone(), 4, true, t, 0, 0, 1)
        .map(Result::unwrap)
        .collect();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0].labels, [9, 8, 7, 6]);
    assert_eq!(batches[0].input.len(), 4 * 3 * 16);
    let all: Vec<_> = Loader::new(ds.clone(), order, 4, false, t, 0, 0, 2)
        .map(Result::unwrap)
        .collect();
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].labels, [1, 0]);
    // Dropping a loader early ends its thread.
    let mut l = Loader::new(ds, (0..10).collect(), 1, true, t, 0, 0, 1);
    assert!(l.next().is_some());
    drop(l);
}

/// The real Fashion-MNIST (Debian's `dataset-fashion-mnist`; `.ci/run` installs
/// it): the standard 60k/10k split, 6000/1000 images per class.
#[test]
fn fashion_mnist_as_debian_installs_it() {
    let Some(dir) = effc_testkit::fashion_mnist() else {
        return;
    };
    let s = data::open(&Source::FashionMnist(dir), 0).unwrap();
    assert_eq!((s.train.len(), s.val.len()), (60_000, 10_000));
    for (split, per) in [(&s.train, 6000), (&s.val, 1000)] {
        let mut count = [0; 10];
        split.labels.iter().for_each(|&l| count[l] += 1);
        assert_eq!(count, [per; 10]);
    }
    assert_eq!(s.train.image(0).unwrap().dimensions(), (28, 28));
}

#[test]
fn a_seeded_subset_keeps_each_sample_with_its_label() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(dir.path(), "train", 20, false);
    write_idx(dir.path(), "t10k", 5, false);
    let s = data::open(&Source::FashionMnist(dir.path().into()), 0).unwrap();
    let sub = s.train.subset(6, 7);
    assert_eq!(sub.len(), 6);
    assert!(sub.name.contains("6 of 20 images"), "{}", sub.name);
    let mut seen = vec![];
    for i in 0..sub.len() {
        // Image k is all 10·k and has label k % 10.
        let v = sub.image(i).unwrap().get_pixel(0, 0).0[0] as usize / 10;
        assert_eq!(sub.labels[i], v % 10);
        seen.push(v);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 6, "distinct samples");
    // The same seed draws the same samples; another seed others; n ≥ len keeps all.
    let again = s.train.subset(6, 7);
    assert_eq!(again.labels, sub.labels);
    let firsts = |d: &data::Dataset| -> Vec<u8> {
        (0..d.len())
            .map(|i| d.image(i).unwrap().get_pixel(0, 0).0[0])
            .collect()
    };
    assert_eq!(firsts(&again), firsts(&sub));
    assert_ne!(firsts(&s.train.subset(6, 8)), firsts(&sub));
    assert_eq!(s.val.subset(100, 0).len(), 5);
}
