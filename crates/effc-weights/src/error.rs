//! Errors: each names the file, and the tensor where there is one.
//!
//! Messages carry their cause in the text (there is no `source()` chain), so that
//! printing an error once says everything.

use std::fmt;
use std::path::PathBuf;

use effc_ir::Naming;

/// Everything that can go wrong reading a checkpoint or an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read: missing, unreadable, not a regular file (a FIFO,
    /// device or directory is never read) or too large; the message says which.
    #[error(transparent)]
    Read(#[from] effc_files::ReadError),
    /// The file has no bytes at all.
    #[error("`{}` is empty (0 bytes): expected {expected}", path.display())]
    Empty {
        path: PathBuf,
        /// What the file should hold: "a safetensors checkpoint", "a PNG or JPEG image".
        expected: &'static str,
    },
    /// Not a safetensors file, or a damaged one.
    #[error("`{}` is not a valid safetensors checkpoint: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    /// No tensor name of the file belongs to any naming of the model.
    #[error(
        "`{}`: none of its {count} tensor names is a name of model `{model}` in any known layout \
         (effc, timm, torchvision, tf); its names look like: {examples}",
        path.display()
    )]
    UnknownLayout {
        path: PathBuf,
        model: String,
        count: usize,
        examples: String,
    },
    /// The checkpoint's tensors do not fit the model: every problem, listed.
    #[error("{0}")]
    Mismatch(Box<Mismatch>),
    /// The image declares more pixels than [`crate::MAX_IMAGE_PIXELS`] (checked
    /// from its header, before decoding).
    #[error(
        "image `{}` is {width} × {height} pixels ({:.1} million): more than effc reads \
         ({} million, Pillow's decompression-bomb limit); scale it down first",
        path.display(),
        (u64::from(*width) * u64::from(*height)) as f64 / 1e6,
        crate::MAX_IMAGE_PIXELS / 1_000_000
    )]
    ImageTooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
    },
    /// The image cannot be decoded (corrupt, truncated, unsupported format).
    #[error("cannot decode image `{}`: {cause}", path.display())]
    Image {
        path: PathBuf,
        cause: image::ImageError,
    },
}

/// A checkpoint whose tensors do not fit the model. Names are in the checkpoint's
/// naming; shapes in PyTorch order.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub path: PathBuf,
    pub model: String,
    pub naming: Naming,
    /// Whether `naming` was detected from the names (rather than requested).
    pub detected: bool,
    /// Tensors the model needs that the file lacks: name, expected shape.
    pub missing: Vec<(String, Vec<usize>)>,
    /// Tensors of the file the model has no use for: name, shape.
    pub unexpected: Vec<(String, Vec<usize>)>,
    /// Name, expected shape, shape in the file.
    pub wrong_shape: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// Name, dtype in the file (only f32, f16, bf16 and f64 are accepted).
    pub wrong_dtype: Vec<(String, String)>,
    /// Name, number of NaN or infinite values.
    pub non_finite: Vec<(String, usize)>,
    /// BN `running_var` tensors with values where `var + eps <= 0`: name, how many.
    pub bad_variance: Vec<(String, usize)>,
    /// Built-in models (and their naming) that the file's tensors fit exactly.
    pub fits: Vec<(String, Naming)>,
    /// When the naming was requested: the naming the file's names are in, if
    /// another (the one most of them belong to, or in which they fit exactly).
    pub looks_like: Option<Naming>,
}

fn shape(s: &[usize]) -> String {
    let dims: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut counts = vec![];
        let lists = [
            (self.missing.len(), "missing tensor", "missing tensors"),
            (
                self.unexpected.len(),
                "unexpected tensor",
                "unexpected tensors",
            ),
            (self.wrong_shape.len(), "wrong shape", "wrong shapes"),
            (
                self.wrong_dtype.len(),
                "unsupported dtype",
                "unsupported dtypes",
            ),
            (
                self.non_finite.len(),
                "tensor with NaN/inf",
                "tensors with NaN/inf",
            ),
            (
                self.bad_variance.len(),
                "variance at or below -eps",
                "variances at or below -eps",
            ),
        ];
        for (n, one, many) in lists {
            if n > 0 {
                counts.push(plural(n, one, many));
            }
        }
        write!(
            f,
            "checkpoint `{}` ({} naming, {}) does not fit model `{}`: {}",
            self.path.display(),
            self.naming,
            if self.detected {
                "detected"
            } else {
                "requested"
            },
            self.model,
            counts.join(", ")
        )?;
        for (name, s) in &self.missing {
            write!(f, "\n  missing:     {name} {}", shape(s))?;
        }
        for (name, s) in &self.unexpected {
            write!(f, "\n  unexpected:  {name} {}", shape(s))?;
        }
        for (name, want, got) in &self.wrong_shape {
            write!(
                f,
                "\n  wrong shape: {name}: expected {}, found {}",
                shape(want),
                shape(got)
            )?;
        }
        for (name, dtype) in &self.wrong_dtype {
            write!(
                f,
                "\n  wrong dtype: {name}: {dtype} (weights must be F32, F16, BF16 or F64)"
            )?;
        }
        for (name, n) in &self.non_finite {
            write!(
                f,
                "\n  not finite:  {name}: {} NaN or infinite",
                plural(*n, "value is", "values are")
            )?;
        }
        for (name, n) in &self.bad_variance {
            write!(
                f,
                "\n  bad variance: {name}: {} var + eps <= 0 (a BN variance must be positive)",
                plural(*n, "value has", "values have")
            )?;
        }
        if let Some(n) = self.looks_like {
            write!(
                f,
                "\nhelp: the file's names are in the {n} naming; request {n}, or leave the naming to detection"
            )?;
        }
        if !self.fits.is_empty() {
            let fits: Vec<String> = self
                .fits
                .iter()
                .map(|(m, n)| format!("`{m}` ({n} naming)"))
                .collect();
            write!(
                f,
                "\nhelp: these are the weights of another model: they fit the built-in {}",
                fits.join(", ")
            )?;
        }
        Ok(())
    }
}
