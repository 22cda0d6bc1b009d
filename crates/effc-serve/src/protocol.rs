//! The Open Inference Protocol's inference request and response, apart from
//! how they travel (JSON with the binary tensor extension over HTTP, protobuf
//! over gRPC): checking a request against the model, turning its input into
//! the network's f32 NCHW batch (decoding images as `effc run` does), and
//! building the requested outputs from a request's rows.

use std::path::Path;

use crate::batcher::Rows;
use crate::model::{OutputKind, OutputSpec, Served};
use crate::ApiError;

/// The one input every model takes.
pub const INPUT: &str = "input";

/// An input tensor's contents as received.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// Little-endian, row-major bytes (the binary extension, gRPC's raw
    /// contents); for BYTES, each element prefixed by its length (u32 LE).
    Raw(Vec<u8>),
    /// Numbers (JSON `data`, gRPC's `fp32_contents`).
    Numbers(Vec<f64>),
    /// BYTES elements (JSON strings, gRPC's `bytes_contents`).
    Elements(Vec<Vec<u8>>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct InputTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub data: Data,
}

/// An output the client asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct Requested {
    pub name: String,
    /// `parameters.classification`: the top k classes as "score:index:label".
    pub classification: Option<usize>,
    /// HTTP: `parameters.binary_data`.
    pub binary: Option<bool>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<InputTensor>,
    /// Empty: every output.
    pub outputs: Vec<Requested>,
}

/// An output tensor's contents.
#[derive(Clone, Debug, PartialEq)]
pub enum OutData {
    Fp32(Vec<f32>),
    Bytes(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct OutputTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: OutData,
    /// HTTP: whether it goes as binary data.
    pub binary: Option<bool>,
}

impl OutputTensor {
    pub fn datatype(&self) -> &'static str {
        match self.data {
            OutData::Fp32(_) => "FP32",
            OutData::Bytes(_) => "BYTES",
        }
    }

    /// Little-endian bytes; BYTES elements each prefixed by their length.
    pub fn raw(&self) -> Vec<u8> {
        match &self.data {
            OutData::Fp32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            OutData::Bytes(v) => {
                let mut out = vec![];
                for s in v {
                    out.extend((s.len() as u32).to_le_bytes());
                    out.extend(s.as_bytes());
                }
                out
            }
        }
    }
}

/// Splits BYTES raw contents into elements (each prefixed by its u32 LE length).
pub fn split_bytes(raw: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = vec![];
    let mut at = 0;
    while at < raw.len() {
        let Some(len) = raw.get(at..at + 4) else {
            return Err(format!(
                "BYTES contents end inside the length of element {} (at byte {at} of {})",
                out.len(),
                raw.len()
            ));
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        at += 4;
        let Some(el) = raw.get(at..at.saturating_add(len)) else {
            return Err(format!(
                "BYTES element {} declares {len} bytes, but only {} remain",
                out.len(),
                raw.len() - at
            ));
        };
        out.push(el.to_vec());
        at += len;
    }
    Ok(out)
}

/// The batch a request's input holds: rows and their f32 NCHW values. Images
/// (BYTES) are decoded in parallel. Blocking (decoding is CPU work).
pub fn prepare(served: &Served, req: &InferRequest) -> Result<(usize, Vec<f32>), ApiError> {
    let input = the_input(served, req)?;
    let [c, h, w] = served.model.input;
    let expected = format!("[N, {c}, {h}, {w}] (NCHW)");
    match input.datatype.as_str() {
        dt @ ("FP32" | "FP16") => tensor_rows(served, input, dt, &expected),
        "BYTES" => image_rows(served, input),
        other => Err(ApiError::invalid(format!(
            "input `{INPUT}` has datatype {other}; model `{}` takes FP32 or FP16 {expected}, or BYTES [N] holding PNG or JPEG images",
            served.name
        ))),
    }
}

/// The request's one input, named [`INPUT`].
fn the_input<'r>(served: &Served, req: &'r InferRequest) -> Result<&'r InputTensor, ApiError> {
    let input = match req.inputs.as_slice() {
        [one] => one,
        [] => {
            return Err(ApiError::invalid(format!(
                "the request has no input; model `{}` takes one, `{INPUT}`",
                served.name
            )))
        }
        more => {
            return Err(ApiError::invalid(format!(
                "the request has {} inputs; model `{}` takes one, `{INPUT}`",
                more.len(),
                served.name
            )))
        }
    };
    if input.name != INPUT {
        return Err(ApiError::invalid(format!(
            "unknown input `{}`: model `{}` takes one input, `{INPUT}`",
            input.name, served.name
        )));
    }
    Ok(input)
}

/// A batch size the model accepts: 1 to `--max-batch`.
fn check_rows(served: &Served, n: i64) -> Result<usize, ApiError> {
    if n < 1 || n as usize > served.max_batch {
        return Err(ApiError::invalid(format!(
            "input `{INPUT}` has a batch of {n}; model `{}` takes 1 to {} rows per request (--max-batch)",
            served.name, served.max_batch
        )));
    }
    Ok(n as usize)
}

/// An FP32 or FP16 NCHW tensor, raw or as JSON numbers; every value finite.
fn tensor_rows(
    served: &Served,
    input: &InputTensor,
    dt: &str,
    expected: &str,
) -> Result<(usize, Vec<f32>), ApiError> {
    let [c, h, w] = served.model.input;
    let per_image = c * h * w;
    let shape = &input.shape;
    if shape.len() != 4 || shape[1..] != [c as i64, h as i64, w as i64] {
        return Err(ApiError::invalid(format!(
            "input `{INPUT}` has shape {shape:?}; model `{}` takes {dt} {expected}, or BYTES [N] holding PNG or JPEG images",
            served.name
        )));
    }
    let rows = check_rows(served, shape[0])?;
    let values = tensor_values(input, dt, rows * per_image)?;
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        let n = values.iter().filter(|v| !v.is_finite()).count();
        return Err(ApiError::invalid(format!(
            "input `{INPUT}` has {n} NaN or infinite values (the first in row {}); a network input must be finite",
            i / per_image
        )));
    }
    Ok((rows, values))
}

/// The `count` values of an FP32 or FP16 input, widened to f32.
fn tensor_values(input: &InputTensor, dt: &str, count: usize) -> Result<Vec<f32>, ApiError> {
    let shape = &input.shape;
    let fp32 = dt == "FP32";
    match &input.data {
        Data::Raw(b) => {
            let size = if fp32 { 4 } else { 2 };
            if b.len() != count * size {
                return Err(ApiError::invalid(format!(
                    "input `{INPUT}` ({dt} {shape:?}) needs {} bytes of data, got {}",
                    count * size,
                    b.len()
                )));
            }
            Ok(if fp32 {
                b.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            } else {
                b.chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect()
            })
        }
        Data::Numbers(v) => {
            if v.len() != count {
                return Err(ApiError::invalid(format!(
                    "input `{INPUT}` ({dt} {shape:?}) needs {count} values, got {}",
                    v.len()
                )));
            }
            Ok(if fp32 {
                v.iter().map(|&x| x as f32).collect()
            } else {
                v.iter().map(|&x| half::f16::from_f64(x).to_f32()).collect()
            })
        }
        Data::Elements(_) => Err(ApiError::invalid(format!(
            "input `{INPUT}` is {dt} but holds strings; give numbers"
        ))),
    }
}

/// BYTES [N] (or [N, 1]): one encoded image per row, decoded in parallel with
/// `effc run`'s preprocessing.
fn image_rows(served: &Served, input: &InputTensor) -> Result<(usize, Vec<f32>), ApiError> {
    let shape = &input.shape;
    let n = match shape.as_slice() {
        [n] | [n, 1] => *n,
        _ => {
            return Err(ApiError::invalid(format!(
                "input `{INPUT}` is BYTES of shape {shape:?}; images are BYTES [N] (or [N, 1]), one PNG or JPEG file each"
            )))
        }
    };
    let rows = check_rows(served, n)?;
    let elements = match &input.data {
        Data::Raw(b) => {
            split_bytes(b).map_err(|e| ApiError::invalid(format!("input `{INPUT}`: {e}")))?
        }
        Data::Elements(e) => e.clone(),
        Data::Numbers(_) => {
            return Err(ApiError::invalid(format!(
                "input `{INPUT}` is BYTES but holds numbers; give encoded images"
            )))
        }
    };
    if elements.len() != rows {
        return Err(ApiError::invalid(format!(
            "input `{INPUT}` has shape {shape:?} but {} elements",
            elements.len()
        )));
    }
    use rayon::prelude::*;
    let images: Result<Vec<Vec<f32>>, ApiError> = elements
        .par_iter()
        .enumerate()
        .map(|(i, bytes)| {
            let name = format!("image {i}");
            effc_weights::image_from_bytes(bytes, Path::new(&name), &served.model)
                .map_err(|e| ApiError::invalid(format!("input `{INPUT}`, element {i}: {e}")))
        })
        .collect();
    Ok((rows, images?.concat()))
}

/// Checks the requested outputs before anything runs.
pub fn check_outputs(served: &Served, req: &InferRequest) -> Result<(), ApiError> {
    for r in &req.outputs {
        let Some(spec) = served.outputs.iter().find(|o| o.name == r.name) else {
            let names: Vec<&str> = served.outputs.iter().map(|o| o.name.as_str()).collect();
            return Err(ApiError::invalid(format!(
                "unknown output `{}`: model `{}` has {}",
                r.name,
                served.name,
                names.join(", ")
            )));
        };
        if let Some(k) = r.classification {
            if spec.shape.len() != 1 || k == 0 {
                return Err(ApiError::invalid(format!(
                    "output `{}`: classification takes k ≥ 1, on an output of one dimension (logits, probabilities)",
                    r.name
                )));
            }
        }
    }
    Ok(())
}

/// The outputs of one request from its rows.
pub fn outputs(served: &Served, req: &InferRequest, rows: usize, raw: &Rows) -> Vec<OutputTensor> {
    let all: Vec<Requested>;
    let wanted = if req.outputs.is_empty() {
        all = served
            .outputs
            .iter()
            .map(|o| Requested {
                name: o.name.clone(),
                classification: None,
                binary: None,
            })
            .collect();
        &all
    } else {
        &req.outputs
    };
    wanted
        .iter()
        .filter_map(|r| {
            let spec = served.outputs.iter().find(|o| o.name == r.name)?;
            Some(output(served, spec, r, rows, raw))
        })
        .collect()
}

fn output(
    served: &Served,
    spec: &OutputSpec,
    r: &Requested,
    rows: usize,
    raw: &Rows,
) -> OutputTensor {
    let values: Vec<f32> = match spec.kind {
        OutputKind::Logits | OutputKind::Embedding => raw[0].clone(),
        OutputKind::Level(i) => raw[i].clone(),
        OutputKind::Probabilities => raw[0].chunks(spec.len()).flat_map(softmax).collect(),
    };
    let mut shape: Vec<i64> = std::iter::once(rows as i64)
        .chain(spec.shape.iter().map(|&d| d as i64))
        .collect();
    let data = match r.classification {
        None => OutData::Fp32(values),
        Some(k) => {
            let k = k.min(spec.len());
            shape = vec![rows as i64, k as i64];
            let mut out = vec![];
            for (row, logits) in values.chunks(spec.len()).zip(raw[0].chunks(spec.len())) {
                // The order is effc run's: effc_weights::top_k of the logits.
                for (class, prob) in effc_weights::top_k(logits, k) {
                    let score = match spec.kind {
                        OutputKind::Probabilities => prob,
                        _ => row[class],
                    };
                    let label = effc_weights::class_name(class, served.model.classes);
                    out.push(format!("{score}:{class}:{label}"));
                }
            }
            OutData::Bytes(out)
        }
    };
    OutputTensor {
        name: spec.name.clone(),
        shape,
        data,
        binary: r.binary,
    }
}

/// The softmax of one row as `effc_weights::top_k` computes it.
fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_elements_are_length_prefixed() {
        let raw = [
            2u32.to_le_bytes().as_slice(),
            b"ab",
            &0u32.to_le_bytes(),
            &1u32.to_le_bytes(),
            b"c",
        ]
        .concat();
        assert_eq!(
            split_bytes(&raw).unwrap(),
            vec![b"ab".to_vec(), vec![], b"c".to_vec()]
        );
        assert!(split_bytes(&raw[..3])
            .unwrap_err()
            .contains("inside the length of element 0"));
        assert!(split_bytes(&raw[..5])
            .unwrap_err()
            .contains("declares 2 bytes, but only 1 remain"));
        let t = OutputTensor {
            name: "x".into(),
            shape: vec![2],
            data: OutData::Bytes(vec!["ab".into(), "c".into()]),
            binary: None,
        };
        assert_eq!(
            split_bytes(&t.raw()).unwrap(),
            vec![b"ab".to_vec(), b"c".to_vec()]
        );
    }

    #[test]
    fn softmax_matches_top_k() {
        let row = [1.0f32, 3.0, -2.0, 0.5];
        let p = softmax(&row);
        for (c, prob) in effc_weights::top_k(&row, 4) {
            assert_eq!(p[c], prob);
        }
    }
}
