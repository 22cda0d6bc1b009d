//! Safetensors checkpoints, checked against a model and keyed by canonical parameter.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use effc_ir::{Layer, Model, Naming, Options, ParamKey, Spec, Tensor};
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use crate::error::{Error, Mismatch};

/// The weights of one model, as f32, keyed by canonical parameter.
///
/// Built only by [`Weights::load`], [`Weights::from_bytes`] or [`Weights::random`],
/// so it holds exactly the tensors of the model it was made for, each with the
/// shape that model's [`effc_ir::Param`] gives (PyTorch order).
#[derive(Clone, Debug)]
pub struct Weights {
    model: String,
    naming: Naming,
    source: PathBuf,
    tensors: HashMap<ParamKey, Vec<f32>>,
    ignored: Vec<String>,
}

/// Checkpoint keys that carry no weights (PyTorch's BN step counters).
fn is_bookkeeping(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}

/// Converts little-endian tensor bytes to f32; `None` for a dtype that is not a float.
fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    let v = match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        _ => return None,
    };
    Some(v)
}

/// A readable reason for a safetensors parse failure of `bytes`.
fn format_reason(e: &SafeTensorError, bytes: &[u8]) -> String {
    match e {
        SafeTensorError::HeaderTooSmall => format!(
            "the file is {} bytes, too short to hold a safetensors header (truncated?)",
            bytes.len()
        ),
        SafeTensorError::HeaderTooLarge | SafeTensorError::InvalidHeaderLength => {
            let n = u64::from_le_bytes(
                bytes[..8]
                    .try_into()
                    .expect("a header length error implies at least 8 bytes"),
            );
            format!(
                "its first 8 bytes give a header length of {n} bytes, but the file holds {} \
                 bytes after them (truncated, or not a safetensors file)",
                bytes.len() - 8
            )
        }
        SafeTensorError::InvalidHeader(_)
        | SafeTensorError::InvalidHeaderStart
        | SafeTensorError::InvalidHeaderDeserialization(_)
        | SafeTensorError::JsonError(_) => {
            format!("its header is not a JSON table of tensors ({e}): corrupted, or not a safetensors file")
        }
        SafeTensorError::MetadataIncompleteBuffer => match declared_data_len(bytes) {
            Some((declared, held)) if held < declared => format!(
                "the header declares {declared} bytes of tensor data, but the file holds only \
                 {held}: the file is truncated"
            ),
            Some((declared, held)) => format!(
                "the header declares {declared} bytes of tensor data, but the file holds {held}: \
                 the tensors do not cover the file"
            ),
            None => format!("{e}"),
        },
        _ => format!("its header is inconsistent: {e}"),
    }
}

/// (declared, held) bytes of tensor data, from a header that parsed as JSON.
fn declared_data_len(bytes: &[u8]) -> Option<(u64, u64)> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let end = usize::try_from(n).ok()?.checked_add(8)?;
    let header: serde_json::Value = serde_json::from_slice(bytes.get(8..end)?).ok()?;
    let declared = header
        .as_object()?
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .filter_map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    Some((declared, (bytes.len() - end) as u64))
}

/// The prefix of classifier tensor names in a naming.
fn classifier_prefix(naming: Naming) -> &'static str {
    match naming {
        Naming::Effc | Naming::Timm => "classifier.",
        Naming::Torchvision => "classifier.1.",
        Naming::Tf => "_fc.",
    }
}

/// The namings in which `model`'s tensors (names and shapes) are exactly `found`.
fn fitting_namings(model: &Model, found: &HashMap<&str, Vec<usize>>) -> Vec<Naming> {
    // The count is the same in every naming: check it before naming anything.
    if model.params().len() != found.len() {
        return vec![];
    }
    Naming::ALL
        .into_iter()
        .filter(|&naming| {
            model
                .named_params(naming)
                .iter()
                .all(|(n, p)| found.get(n.as_str()) == Some(&p.shape))
        })
        .collect()
}

/// Every built-in model with its number of tensors (the same in every naming),
/// counted once per process.
fn builtin_tensor_counts() -> &'static [(&'static str, usize)] {
    static COUNTS: OnceLock<Vec<(&'static str, usize)>> = OnceLock::new();
    COUNTS.get_or_init(|| {
        effc_catalog::names()
            .filter_map(|name| {
                let spec = Spec::builtin(name).ok()?;
                let model = Model::build(&spec, &Options::default()).ok()?;
                Some((name, model.params().len()))
            })
            .collect()
    })
}

/// The built-in models with exactly `count` tensors: the only ones a file of
/// `count` tensors can be the weights of.
fn builtins_with_tensor_count(count: usize) -> impl Iterator<Item = &'static str> {
    builtin_tensor_counts()
        .iter()
        .filter(move |(_, n)| *n == count)
        .map(|(name, _)| *name)
}

/// Built-in models (and namings) whose tensors are exactly `found`. Only the
/// models with as many tensors as `found` are built and named, so a file that
/// fits no model (most damaged or hostile files) costs no model building.
fn fitting_builtins(found: &HashMap<&str, Vec<usize>>) -> Vec<(String, Naming)> {
    let mut fits = vec![];
    for name in builtins_with_tensor_count(found.len()) {
        let Ok(spec) = Spec::builtin(name) else {
            continue;
        };
        let Ok(model) = Model::build(&spec, &Options::default()) else {
            continue;
        };
        #[cfg(test)]
        tests::BUILTINS_BUILT.with(|n| n.set(n.get() + 1));
        for naming in fitting_namings(&model, found) {
            fits.push((name.to_string(), naming));
        }
    }
    fits
}

/// The naming most of `keys` belong to, and how many do.
fn detect(model: &Model, keys: &[&str]) -> (Naming, usize) {
    let mut best = (Naming::Effc, 0);
    for naming in Naming::ALL {
        let names: HashSet<String> = model
            .named_params(naming)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let hits = keys.iter().filter(|k| names.contains(**k)).count();
        if hits > best.1 {
            best = (naming, hits);
        }
    }
    best
}

impl Weights {
    /// A lookup by effc canonical name (`blocks.1.0.expand.conv.weight`), the
    /// form `effc_plan::pack_weights` asks for its tensors in.
    pub fn by_name<'a>(&'a self, model: &Model) -> impl Fn(&str) -> Option<&'a [f32]> + 'a {
        let keys: HashMap<String, ParamKey> = model
            .params()
            .into_iter()
            .map(|p| (p.name, p.key))
            .collect();
        move |name| keys.get(name).and_then(|k| self.get(k))
    }

    /// Reads a safetensors checkpoint for `model` (a regular file, read whole
    /// through `effc_files::read`). `naming`: the checkpoint's layout, or `None`
    /// to detect it from the tensor names.
    ///
    /// Every tensor of the model must be present with its shape, as F32, F16, BF16
    /// or F64, with finite values; the file must hold no other tensors, except
    /// PyTorch's `num_batches_tracked` counters and, when the model has no
    /// classifier (`classes = 0`), the classifier's tensors: those are skipped and
    /// listed by [`Weights::ignored`].
    pub fn load(
        path: impl AsRef<Path>,
        model: &Model,
        naming: Option<Naming>,
    ) -> Result<Weights, Error> {
        let path = path.as_ref();
        let bytes = effc_files::read(path, effc_files::Input::CHECKPOINT)?;
        Weights::from_bytes(&bytes, path, model, naming)
    }

    /// As [`Weights::load`], from the file's bytes; `source` names it in errors.
    pub fn from_bytes(
        bytes: &[u8],
        source: impl AsRef<Path>,
        model: &Model,
        naming: Option<Naming>,
    ) -> Result<Weights, Error> {
        let path = source.as_ref().to_path_buf();
        if bytes.is_empty() {
            return Err(Error::Empty {
                path,
                expected: "a safetensors checkpoint",
            });
        }
        let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Format {
            reason: format_reason(&e, bytes),
            path: path.clone(),
        })?;
        let mut ignored = vec![];
        let mut entries = vec![];
        for (name, view) in st.iter() {
            if is_bookkeeping(name) {
                ignored.push(name.to_string());
            } else {
                entries.push((name, view));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(b.0));
        let keys: Vec<&str> = entries.iter().map(|(n, _)| *n).collect();
        let (detected_naming, hits) = detect(model, &keys);
        let naming_used = naming.unwrap_or(detected_naming);
        if naming.is_none() && hits == 0 {
            return Err(unknown_layout(path, model, &keys));
        }

        let named = model.named_params(naming_used);
        let expected: HashMap<&str, &effc_ir::Param> =
            named.iter().map(|(n, p)| (n.as_str(), p)).collect();
        let mut m = Mismatch {
            path: path.clone(),
            model: model.name.clone(),
            naming: naming_used,
            detected: naming.is_none(),
            missing: vec![],
            unexpected: vec![],
            wrong_shape: vec![],
            wrong_dtype: vec![],
            non_finite: vec![],
            bad_variance: vec![],
            fits: vec![],
            looks_like: None,
        };
        let mut tensors = HashMap::new();
        let mut seen = HashSet::new();
        for (name, view) in &entries {
            let Some(param) = expected.get(*name) else {
                if model.classifier.is_none() && name.starts_with(classifier_prefix(naming_used)) {
                    ignored.push(name.to_string());
                } else {
                    m.unexpected.push((name.to_string(), view.shape().to_vec()));
                }
                continue;
            };
            seen.insert(*name);
            if let Some(values) = checked_values(name, view, param, model, &mut m) {
                tensors.insert(param.key, values);
            }
        }
        for (name, param) in &named {
            if !seen.contains(name.as_str()) {
                m.missing.push((name.clone(), param.shape.clone()));
            }
        }
        let misfit = !(m.missing.is_empty() && m.unexpected.is_empty() && m.wrong_shape.is_empty());
        if misfit
            || !m.wrong_dtype.is_empty()
            || !m.non_finite.is_empty()
            || !m.bad_variance.is_empty()
        {
            if naming.is_some() && detected_naming != naming_used && hits > 0 {
                m.looks_like = Some(detected_naming);
            }
            if misfit {
                let found: HashMap<&str, Vec<usize>> = entries
                    .iter()
                    .map(|(n, v)| (*n, v.shape().to_vec()))
                    .collect();
                // The model's own tensors in another naming: say so, not "another model".
                if let Some(&n) = fitting_namings(model, &found).first() {
                    m.looks_like = Some(n);
                } else {
                    m.fits = fitting_builtins(&found);
                }
            }
            return Err(Error::Mismatch(Box::new(m)));
        }
        Ok(Weights {
            model: model.name.clone(),
            naming: naming_used,
            source: path,
            tensors,
            ignored,
        })
    }

    /// Random weights for `model`, the same for the same seed: convs and linear
    /// layers uniform in ±√(3/fan_in) (unit variance through each layer), BN
    /// weight in [0.5, 1.5], bias and running mean in ±0.1, running variance in
    /// [0.5, 1.5], biases in ±0.1. For testing kernels where no checkpoint exists.
    pub fn random(model: &Model, seed: u64) -> Weights {
        // SplitMix64: small, deterministic, good enough for test weights.
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 24) as f32
        };
        let mut tensors = HashMap::new();
        for p in model.params() {
            let n = p.numel();
            let bn = matches!(
                p.key.layer,
                Layer::StemBn | Layer::ExpandBn | Layer::ConvBn | Layer::ProjectBn | Layer::HeadBn
            );
            let (lo, hi) = match p.key.tensor {
                Tensor::Weight | Tensor::RunningVar if bn => (0.5, 1.5),
                Tensor::Bias | Tensor::RunningMean => (-0.1, 0.1),
                Tensor::Weight | Tensor::RunningVar => {
                    let fan_in: usize = p.shape[1..].iter().product();
                    let a = (3.0 / fan_in.max(1) as f32).sqrt();
                    (-a, a)
                }
            };
            let values = (0..n).map(|_| lo + (hi - lo) * next()).collect();
            tensors.insert(p.key, values);
        }
        Weights {
            model: model.name.clone(),
            naming: Naming::Effc,
            source: PathBuf::from(format!("random (seed {seed})")),
            tensors,
            ignored: vec![],
        }
    }

    /// The values of a tensor (row-major, PyTorch shape order); `None` for a key
    /// the model these weights were made for does not have.
    pub fn get(&self, key: &ParamKey) -> Option<&[f32]> {
        self.tensors.get(key).map(Vec::as_slice)
    }

    /// The name of the model these weights were checked against.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The checkpoint's naming (detected or requested).
    pub fn naming(&self) -> Naming {
        self.naming
    }

    /// The file the weights came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Tensors of the file that were skipped: `num_batches_tracked` counters, and
    /// the classifier when the model has none.
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

/// No tensor name of `keys` is one of `model`'s in any naming effc reads.
fn unknown_layout(path: PathBuf, model: &Model, keys: &[&str]) -> Error {
    let mut examples: Vec<String> = keys.iter().take(4).map(|k| format!("`{k}`")).collect();
    if keys.len() > 4 {
        examples.push("...".into());
    }
    Error::UnknownLayout {
        path,
        model: model.name.clone(),
        count: keys.len(),
        examples: if examples.is_empty() {
            "(no tensors)".into()
        } else {
            examples.join(", ")
        },
    }
}

/// One tensor's values as f32, or `None` with what is wrong recorded in `m`:
/// its shape, its dtype, non-finite values, or a running variance at or below
/// `-eps`.
fn checked_values(
    name: &str,
    view: &safetensors::tensor::TensorView<'_>,
    param: &effc_ir::Param,
    model: &Model,
    m: &mut Mismatch,
) -> Option<Vec<f32>> {
    if view.shape() != param.shape.as_slice() {
        m.wrong_shape
            .push((name.to_string(), param.shape.clone(), view.shape().to_vec()));
        return None;
    }
    let Some(values) = to_f32(view.dtype(), view.data()) else {
        m.wrong_dtype
            .push((name.to_string(), format!("{:?}", view.dtype())));
        return None;
    };
    let bad = values.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        m.non_finite.push((name.to_string(), bad));
        return None;
    }
    if param.key.tensor == effc_ir::params::Tensor::RunningVar {
        // BN divides by sqrt(var + eps): a variance at or below -eps is no
        // variance, and would give NaN (or a sign flip once folded).
        let eps = model.bn_eps as f32;
        let bad = values.iter().filter(|&&v| v + eps <= 0.0).count();
        if bad > 0 {
            m.bad_variance.push((name.to_string(), bad));
            return None;
        }
    }
    Some(values)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use safetensors::tensor::TensorView;

    use super::*;

    thread_local! {
        /// How many built-in models `fitting_builtins` built (this thread).
        pub(super) static BUILTINS_BUILT: Cell<usize> = const { Cell::new(0) };
    }

    const TINY: &str = "model tiny { resolution = 32 stem = 8 head = 16 classes = 10 \
                        blocks { r1_k3_s1_e1_i8_o8_se0.25 r1_k3_s2_e4_i8_o16 } }";

    fn tiny() -> Model {
        let spec = Spec::parse("tiny.enet", TINY).unwrap();
        Model::build(&spec, &Options::default()).unwrap()
    }

    /// The model's random weights as a safetensors file in effc naming, without
    /// the tensors whose index `drop` accepts.
    fn checkpoint(model: &Model, drop: impl Fn(usize) -> bool) -> Vec<u8> {
        let w = Weights::random(model, 1);
        let data: Vec<(String, Vec<usize>, Vec<u8>)> = model
            .params()
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !drop(*i))
            .map(|(_, p)| {
                let bytes = w.get(&p.key).unwrap().iter().flat_map(|v| v.to_le_bytes());
                (p.name, p.shape, bytes.collect())
            })
            .collect();
        let views = data.iter().map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        });
        safetensors::serialize(views, None).unwrap()
    }

    #[test]
    fn a_misfit_that_no_builtin_can_fit_builds_no_builtin() {
        // Every misfit used to build every built-in model and name its tensors in
        // every naming (~40 ms a load; the checkpoint fuzzer ran at 3 execs/s).
        let model = tiny();
        let bytes = checkpoint(&model, |i| i == 3);
        BUILTINS_BUILT.with(|n| n.set(0));
        for naming in std::iter::once(None).chain(Naming::ALL.map(Some)) {
            let Err(Error::Mismatch(m)) = Weights::from_bytes(&bytes, "t", &model, naming) else {
                panic!("a checkpoint without one tensor loaded");
            };
            assert!(m.fits.is_empty());
        }
        assert_eq!(BUILTINS_BUILT.with(Cell::get), 0);
    }

    #[test]
    fn only_builtins_with_the_files_tensor_count_are_candidates() {
        let counts = builtin_tensor_counts();
        assert_eq!(counts.len(), effc_catalog::names().count());
        let b0 = counts.iter().find(|(n, _)| *n == "b0").unwrap().1;
        let candidates: Vec<&str> = builtins_with_tensor_count(b0).collect();
        assert!(candidates.contains(&"b0"), "{candidates:?}");
        assert!(candidates.len() < counts.len() / 2, "{candidates:?}");
        assert_eq!(builtins_with_tensor_count(0).count(), 0);
        assert_eq!(builtins_with_tensor_count(tiny().params().len()).count(), 0);
    }
}
