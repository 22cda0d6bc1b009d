//! Training data: IDX files (MNIST, Fashion-MNIST) and image folders (one
//! subdirectory per class, as torchvision's `ImageFolder`), their transforms,
//! and batches decoded in parallel ahead of the step that needs them.
//!
//! - Fashion-MNIST / MNIST: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//!   `t10k-…` in one directory, each plain or gzipped (`.gz`, as Debian's
//!   `dataset-fashion-mnist` installs them under `/usr/share/datasets/fashion-mnist`):
//!   the standard 60k/10k split, the 10k as validation.
//! - An image folder: `DIR/train/<class>/*` and `DIR/val/<class>/*` when both are
//!   present (the same classes in both), else `DIR/<class>/*` split by a seeded
//!   shuffle (a tenth for validation). Classes in sorted order, files with the
//!   extensions `png`, `jpg`, `jpeg` (any case); other files are not images and
//!   are left out. An empty class is an error. Every image's header is read
//!   before training: files that are unreadable or not a PNG/JPEG are **refused**:
//!   the error counts them and names the first ones by path. A file whose pixels
//!   turn out corrupt when decoded stops training with an error naming it.
//! - Gray images are replicated into 3 channels.
//! - Training transform (timm's defaults): random-resized crop (scale 0.08–1 unless given,
//!   aspect 3/4–4/3, bilinear) to the training size, horizontal flip with
//!   probability ½, RandAugment when asked ([`crate::augment`]), `(x/255 − mean)/std`. Evaluation (and `no_augment`): exactly
//!   `effc run`'s preprocessing (`effc_weights::preprocess`).
//! - Randomness per sample comes from (seed, epoch, index), so batches do not
//!   depend on how decoding is spread over threads, and a resumed run sees the
//!   same crops.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use effc_reference::train::Rng;
use image::RgbImage;
use rayon::prelude::*;

/// Fashion-MNIST's class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Where Debian's `dataset-fashion-mnist` installs the data.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// What the data is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Fashion-MNIST's IDX files in a directory.
    FashionMnist(PathBuf),
    /// MNIST's IDX files in a directory (classes `0`–`9`).
    Mnist(PathBuf),
    /// An image folder.
    Folder(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{0}")]
    Read(#[from] effc_files::ReadError),
    #[error("{path}: {why}")]
    Idx { path: PathBuf, why: String },
    #[error("{path}: cannot list the directory: {source}")]
    List {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: no class subdirectories (an image folder holds one directory of images per class)"
    )]
    NoClasses { path: PathBuf },
    #[error("class `{class}` has no images ({path} holds no .png, .jpg or .jpeg file)")]
    EmptyClass { class: String, path: PathBuf },
    #[error("{train} and {val} have different classes: {only}")]
    SplitClasses {
        train: PathBuf,
        val: PathBuf,
        only: String,
    },
    #[error(
        "{count} of {total} image files cannot be read as PNG or JPEG and are refused (remove or fix them):\n{}",
        .first.iter().map(|(p, why)| format!("  {}: {why}", p.display())).collect::<Vec<_>>().join("\n")
    )]
    Corrupt {
        count: usize,
        total: usize,
        first: Vec<(PathBuf, String)>,
    },
    #[error("{0}")]
    Image(#[from] effc_weights::Error),
}

enum Samples {
    Gray(Gray),
    Files(Vec<PathBuf>),
}

/// Gray images of `rows × cols` bytes, one after the other from `offset`.
struct Gray {
    pixels: Arc<Vec<u8>>,
    offset: usize,
    rows: usize,
    cols: usize,
}

impl Gray {
    /// The pixels of image `i`.
    fn image(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.pixels[self.offset + i * n..][..n]
    }
}

/// One split of a data set.
pub struct Dataset {
    /// What the split is, for messages (`fashion-mnist train`, a directory).
    pub name: String,
    pub classes: Vec<String>,
    pub labels: Vec<usize>,
    samples: Samples,
}

/// The training and validation splits.
pub struct Splits {
    pub train: Dataset,
    pub val: Dataset,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// At most `n` of the samples, drawn by a shuffle seeded with `seed` (all of
    /// them, reordered, when `n ≥ len`), for short runs (`effc scale --grid
    /// --train-on`). Gray pixels of the kept samples are copied; files stay files.
    pub fn subset(&self, n: usize, seed: u64) -> Dataset {
        let mut order: Vec<usize> = (0..self.len()).collect();
        shuffle(&mut order, &mut Rng::new(seed ^ 0x5EED_5B5E_7000_0001));
        order.truncate(n);
        let samples = match &self.samples {
            Samples::Gray(g) => {
                let px = order.iter().flat_map(|&i| g.image(i)).copied().collect();
                Samples::Gray(Gray {
                    pixels: Arc::new(px),
                    offset: 0,
                    rows: g.rows,
                    cols: g.cols,
                })
            }
            Samples::Files(paths) => {
                Samples::Files(order.iter().map(|&i| paths[i].clone()).collect())
            }
        };
        Dataset {
            name: format!("{} ({} of {} images)", self.name, order.len(), self.len()),
            classes: self.classes.clone(),
            labels: order.iter().map(|&i| self.labels[i]).collect(),
            samples,
        }
    }

    /// Sample `i` as RGB.
    pub fn image(&self, i: usize) -> Result<RgbImage, DataError> {
        match &self.samples {
            Samples::Gray(g) => {
                let rgb = g.image(i).iter().flat_map(|&l| [l; 3]).collect();
                Ok(RgbImage::from_raw(g.cols as u32, g.rows as u32, rgb)
                    .expect("3 bytes per gray pixel"))
            }
            Samples::Files(paths) => {
                let bytes = effc_files::read(&paths[i], effc_files::Input::IMAGE)?;
                Ok(effc_weights::decode_image(&bytes, &paths[i])?)
            }
        }
    }
}

/// Opens `source`; `seed` shuffles an image folder without `train/` and `val/`.
pub fn open(source: &Source, seed: u64) -> Result<Splits, DataError> {
    match source {
        Source::FashionMnist(dir) => idx_splits(
            dir,
            "fashion-mnist",
            FASHION_MNIST_CLASSES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
        Source::Mnist(dir) => idx_splits(dir, "mnist", (0..10).map(|d| d.to_string()).collect()),
        Source::Folder(dir) => folder_splits(dir, seed),
    }
}

/// The bytes of `dir/name`, or of `dir/name.gz` gunzipped.
fn read_maybe_gz(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>), DataError> {
    let plain = dir.join(name);
    if plain.exists() {
        return Ok((
            plain.clone(),
            effc_files::read(&plain, effc_files::Input::TENSORS)?,
        ));
    }
    let gz = dir.join(format!("{name}.gz"));
    let bytes = effc_files::read(&gz, effc_files::Input::TENSORS)?;
    let mut out = vec![];
    flate2::read::GzDecoder::new(&bytes[..])
        .take(1 << 32)
        .read_to_end(&mut out)
        .map_err(|e| DataError::Idx {
            path: gz.clone(),
            why: format!("not a gzip file: {e}"),
        })?;
    Ok((gz, out))
}

/// An IDX file of unsigned bytes with `ndim` dimensions: (dims, data).
fn parse_idx(path: &Path, bytes: &[u8], ndim: usize) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let bad = |why: String| DataError::Idx {
        path: path.to_path_buf(),
        why,
    };
    if bytes.len() < 4 + 4 * ndim || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad("not an IDX file (no magic number)".into()));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!(
            "holds type 0x{:02x}, expected unsigned bytes (0x08)",
            bytes[2]
        )));
    }
    if bytes[3] as usize != ndim {
        return Err(bad(format!("has {} dimensions, expected {ndim}", bytes[3])));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().unwrap()) as usize)
        .collect();
    let n: usize = dims.iter().product();
    let data = &bytes[4 + 4 * ndim..];
    if data.len() != n {
        return Err(bad(format!(
            "declares {dims:?} ({n} bytes) but holds {} bytes",
            data.len()
        )));
    }
    Ok((dims, data.to_vec()))
}

fn idx_split(
    dir: &Path,
    prefix: &str,
    name: String,
    classes: &[String],
) -> Result<Dataset, DataError> {
    let (ipath, ibytes) = read_maybe_gz(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let (lpath, lbytes) = read_maybe_gz(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (idims, pixels) = parse_idx(&ipath, &ibytes, 3)?;
    let (ldims, labels) = parse_idx(&lpath, &lbytes, 1)?;
    if idims[0] != ldims[0] {
        return Err(DataError::Idx {
            path: lpath,
            why: format!(
                "has {} labels for {} images in {}",
                ldims[0],
                idims[0],
                ipath.display()
            ),
        });
    }
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= classes.len())
    {
        return Err(DataError::Idx {
            path: lpath,
            why: format!("label {i} is {l}, not a class 0..={}", classes.len() - 1),
        });
    }
    Ok(Dataset {
        name,
        classes: classes.to_vec(),
        labels: labels.into_iter().map(usize::from).collect(),
        samples: Samples::Gray(Gray {
            pixels: Arc::new(pixels),
            offset: 0,
            rows: idims[1],
            cols: idims[2],
        }),
    })
}

fn idx_splits(dir: &Path, name: &str, classes: Vec<String>) -> Result<Splits, DataError> {
    Ok(Splits {
        train: idx_split(dir, "train", format!("{name} train"), &classes)?,
        val: idx_split(dir, "t10k", format!("{name} test"), &classes)?,
    })
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let list = |source| DataError::List {
        path: dir.to_path_buf(),
        source,
    };
    let mut v = std::fs::read_dir(dir)
        .map_err(list)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(list)?;
    v.sort();
    Ok(v)
}

/// Class names, image paths and their labels.
type Scanned = (Vec<String>, Vec<PathBuf>, Vec<usize>);

/// The classes (sorted subdirectory names) and every image with its label.
fn scan(dir: &Path) -> Result<Scanned, DataError> {
    let class_dirs: Vec<PathBuf> = sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    if class_dirs.is_empty() {
        return Err(DataError::NoClasses {
            path: dir.to_path_buf(),
        });
    }
    let (mut classes, mut files, mut labels) = (vec![], vec![], vec![]);
    for (label, cdir) in class_dirs.iter().enumerate() {
        let class = cdir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let images: Vec<PathBuf> = sorted_entries(cdir)?
            .into_iter()
            .filter(|p| is_image(p))
            .collect();
        if images.is_empty() {
            return Err(DataError::EmptyClass {
                class,
                path: cdir.clone(),
            });
        }
        labels.extend(std::iter::repeat_n(label, images.len()));
        files.extend(images);
        classes.push(class);
    }
    check_headers(&files)?;
    Ok((classes, files, labels))
}

/// Reads every file's header (format and size) in parallel; refuses the set
/// when any fails, counting them and naming the first ten.
fn check_headers(files: &[PathBuf]) -> Result<(), DataError> {
    let bad: Vec<(PathBuf, String)> = files
        .par_iter()
        .filter_map(|p| {
            // Only regular files are opened: a FIFO would block the read.
            if !p.metadata().is_ok_and(|m| m.is_file()) {
                return Some((p.clone(), "not a regular file".to_string()));
            }
            let r = image::ImageReader::open(p)
                .and_then(|r| r.with_guessed_format())
                .map_err(|e| e.to_string())
                .and_then(|r| r.into_dimensions().map_err(|e| e.to_string()));
            r.err().map(|why| (p.clone(), why))
        })
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(DataError::Corrupt {
        count: bad.len(),
        total: files.len(),
        first: bad.into_iter().take(10).collect(),
    })
}

fn folder_splits(dir: &Path, seed: u64) -> Result<Splits, DataError> {
    let (tdir, vdir) = (dir.join("train"), dir.join("val"));
    if tdir.is_dir() && vdir.is_dir() {
        let (classes, tfiles, tlabels) = scan(&tdir)?;
        let (vclasses, vfiles, vlabels) = scan(&vdir)?;
        if classes != vclasses {
            let only: Vec<String> = classes
                .iter()
                .filter(|c| !vclasses.contains(c))
                .map(|c| format!("`{c}` only in train/"))
                .chain(
                    vclasses
                        .iter()
                        .filter(|c| !classes.contains(c))
                        .map(|c| format!("`{c}` only in val/")),
                )
                .collect();
            return Err(DataError::SplitClasses {
                train: tdir,
                val: vdir,
                only: only.join(", "),
            });
        }
        return Ok(Splits {
            train: Dataset {
                name: tdir.display().to_string(),
                classes: classes.clone(),
                labels: tlabels,
                samples: Samples::Files(tfiles),
            },
            val: Dataset {
                name: vdir.display().to_string(),
                classes,
                labels: vlabels,
                samples: Samples::Files(vfiles),
            },
        });
    }
    let (classes, files, labels) = scan(dir)?;
    let mut order: Vec<usize> = (0..files.len()).collect();
    shuffle(&mut order, &mut Rng::new(seed));
    let n_val = if files.len() >= 2 {
        (files.len() / 10).max(1)
    } else {
        0
    };
    let (val, train) = order.split_at(n_val);
    let pick = |idx: &[usize]| -> (Vec<PathBuf>, Vec<usize>) {
        let mut idx = idx.to_vec();
        idx.sort_unstable();
        (
            idx.iter().map(|&i| files[i].clone()).collect(),
            idx.iter().map(|&i| labels[i]).collect(),
        )
    };
    let (tf, tl) = pick(train);
    let (vf, vl) = pick(val);
    Ok(Splits {
        train: Dataset {
            name: format!("{} (train: 9/10, seed {seed})", dir.display()),
            classes: classes.clone(),
            labels: tl,
            samples: Samples::Files(tf),
        },
        val: Dataset {
            name: format!("{} (val: 1/10, seed {seed})", dir.display()),
            classes,
            labels: vl,
            samples: Samples::Files(vf),
        },
    })
}

/// Fisher–Yates with `rng`.
pub fn shuffle(v: &mut [usize], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// How a sample becomes a network input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transform {
    pub size: usize,
    /// Random-resized crop and flip; otherwise `effc run`'s preprocessing.
    pub augment: bool,
    /// The smallest area fraction a random-resized crop keeps (timm's `--scale`, 0.08).
    pub min_scale: f64,
    /// RandAugment after the crop and flip (with `augment`).
    pub randaugment: Option<crate::augment::RandAugment>,
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

/// torchvision's `RandomResizedCrop.get_params`: (left, top, width, height).
fn random_resized_crop(w: u32, h: u32, min_scale: f64, rng: &mut Rng) -> (u32, u32, u32, u32) {
    let area = w as f64 * h as f64;
    let (lr0, lr1) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * (min_scale + (1.0 - min_scale) * rng.uniform());
        let aspect = (lr0 + (lr1 - lr0) * rng.uniform()).exp();
        let cw = (target * aspect).sqrt().round() as u32;
        let ch = (target / aspect).sqrt().round() as u32;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let left = (rng.next_u64() % (w - cw + 1) as u64) as u32;
            let top = (rng.next_u64() % (h - ch + 1) as u64) as u32;
            return (left, top, cw, ch);
        }
    }
    // Fallback: the central crop of the image's aspect, clamped to the range.
    let ratio = w as f64 / h as f64;
    let (cw, ch) = if ratio < 0.75 {
        (w, (w as f64 / 0.75).round() as u32)
    } else if ratio > 4.0 / 3.0 {
        ((h as f64 * 4.0 / 3.0).round() as u32, h)
    } else {
        (w, h)
    };
    let (cw, ch) = (cw.clamp(1, w.max(1)), ch.clamp(1, h.max(1)));
    ((w - cw) / 2, (h - ch) / 2, cw, ch)
}

/// The randomness of sample `index` in `epoch`.
pub fn sample_rng(seed: u64, epoch: u64, index: usize) -> Rng {
    let mut r = Rng::new(seed ^ 0xD1B5_4A32_D192_ED03u64.wrapping_mul(epoch + 1));
    r.state ^= (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    r.next_u64();
    r
}

/// CHW f32 input of `image` under `t`.
pub fn apply(image: &RgbImage, t: &Transform, rng: &mut Rng) -> Vec<f32> {
    if !t.augment || image.width() == 0 || image.height() == 0 {
        return effc_weights::preprocess(image, t.size, t.mean, t.std);
    }
    let (l, top, w, h) = random_resized_crop(image.width(), image.height(), t.min_scale, rng);
    let crop = image::imageops::crop_imm(image, l, top, w, h).to_image();
    let mut out = image::imageops::resize(
        &crop,
        t.size as u32,
        t.size as u32,
        image::imageops::FilterType::Triangle,
    );
    if rng.bernoulli(0.5) {
        image::imageops::flip_horizontal_in_place(&mut out);
    }
    if let Some(ra) = &t.randaugment {
        ra.apply(&mut out, crate::augment::fill_of(t.mean), rng);
    }
    let s = t.size * t.size;
    let mut x = vec![0f32; 3 * s];
    for (i, px) in out.pixels().enumerate() {
        for c in 0..3 {
            x[c * s + i] = ((px.0[c] as f64 / 255.0 - t.mean[c]) / t.std[c]) as f32;
        }
    }
    x
}

/// A batch: NCHW f32 inputs and their labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub input: Vec<f32>,
    pub labels: Vec<usize>,
}

/// Batches of `order` decoded in parallel on a background thread, at most
/// `prefetch` ahead of the consumer (a bounded channel).
pub struct Loader {
    rx: Option<Receiver<Result<Batch, DataError>>>,
    handle: Option<JoinHandle<()>>,
}

impl Loader {
    /// `drop_last`: leave out a last, smaller batch (as training does).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        data: Arc<Dataset>,
        order: Vec<usize>,
        batch: usize,
        drop_last: bool,
        transform: Transform,
        seed: u64,
        epoch: u64,
        prefetch: usize,
    ) -> Loader {
        let (tx, rx) = sync_channel(prefetch.max(1));
        let handle = std::thread::spawn(move || {
            for chunk in order.chunks(batch.max(1)) {
                if drop_last && chunk.len() < batch {
                    break;
                }
                let samples: Result<Vec<Vec<f32>>, DataError> = chunk
                    .par_iter()
                    .map(|&i| {
                        let image = data.image(i)?;
                        Ok(apply(&image, &transform, &mut sample_rng(seed, epoch, i)))
                    })
                    .collect();
                let failed = samples.is_err();
                let b = samples.map(|s| Batch {
                    input: s.concat(),
                    labels: chunk.iter().map(|&i| data.labels[i]).collect(),
                });
                if tx.send(b).is_err() || failed {
                    return;
                }
            }
        });
        Loader {
            rx: Some(rx),
            handle: Some(handle),
        }
    }
}

impl Iterator for Loader {
    type Item = Result<Batch, DataError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Closing the channel ends the producer at its next send.
        self.rx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
