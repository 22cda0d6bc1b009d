//! Safetensors in and out of a run: the `--input` tensor, and `--save`.

use std::path::Path;

use effc_ir::Model;

use crate::files::{Input, OutputFile};
use crate::Error;

/// Reads the `input` tensor of a safetensors file: NCHW f32 for this model, every
/// value finite. Returns the values and the number of images.
pub(crate) fn read_input(path: &Path, model: &Model) -> Result<(Vec<f32>, usize), Error> {
    let bytes = crate::files::read(path, Input::TENSORS)?;
    let bad = |m: String| Error::Invalid(format!("`{}`{m}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!(" is not a valid safetensors file: {e}")))?;
    let t = st.tensor("input").map_err(|_| {
        let names: Vec<String> = st.names().into_iter().take(8).map(str::to_string).collect();
        bad(format!(
            " has no tensor named `input` (it has: {})",
            names.join(", ")
        ))
    })?;
    let [c, h, w] = model.input;
    let shape = t.shape();
    if shape.len() != 4 || shape[1..] != [c, h, w] {
        return Err(bad(format!(
            ": tensor `input` has shape {:?}, model `{}` takes [N, {c}, {h}, {w}] (NCHW; --resolution changes H and W)",
            shape, model.name
        )));
    }
    if t.dtype() != safetensors::Dtype::F32 {
        return Err(bad(format!(
            ": tensor `input` is {:?}, expected F32",
            t.dtype()
        )));
    }
    let data: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let non_finite = data.iter().filter(|v| !v.is_finite()).count();
    if non_finite > 0 {
        let first = data.iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(bad(format!(
            ": tensor `input` has {non_finite} NaN or infinite values (the first in image {}); a network input must be finite",
            first / (c * h * w).max(1)
        )));
    }
    Ok((data, shape[0]))
}

/// Serializes f32 tensors (name, values, shape) as one safetensors file.
pub(crate) fn serialize(tensors: &[(String, &[f32], Vec<usize>)]) -> Result<Vec<u8>, Error> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, d, _)| d.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let mut views = vec![];
    for ((name, _, shape), b) in tensors.iter().zip(&bytes) {
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
            .map_err(|e| Error::Internal(format!("cannot build tensor `{name}`: {e}")))?;
        views.push((name.as_str(), view));
    }
    safetensors::serialize(views, None)
        .map_err(|e| Error::Internal(format!("cannot serialize the output tensors: {e}")))
}

/// Writes one f32 tensor as a safetensors file.
pub(crate) fn save(
    file: &OutputFile,
    name: &str,
    data: &[f32],
    shape: Vec<usize>,
) -> Result<(), Error> {
    let out = serialize(&[(name.to_string(), data, shape)])?;
    Ok(file.write(&out)?)
}
