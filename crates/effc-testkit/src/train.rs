//! The training-step fixtures of `tests/fixtures/train` (made by
//! `make_train_fixtures.py` from timm): one safetensors file per case holding
//! f32, f64 and int16-quantized tensors and the int64 labels.

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors};

/// One case's tensors by dtype, and its labels.
pub struct TrainFixture {
    pub f32s: HashMap<String, Vec<f32>>,
    pub f64s: HashMap<String, Vec<f64>>,
    pub i16s: HashMap<String, Vec<i16>>,
    pub labels: Vec<usize>,
}

/// Reads `tests/fixtures/train/CASE/step.safetensors`; panics (naming the file)
/// if it is missing or holds another dtype.
pub fn train_fixture(case: &str) -> TrainFixture {
    let path = crate::fixtures().join(format!("train/{case}/step.safetensors"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut f = TrainFixture {
        f32s: HashMap::new(),
        f64s: HashMap::new(),
        i16s: HashMap::new(),
        labels: vec![],
    };
    for (name, view) in st.tensors() {
        let d = view.data();
        match view.dtype() {
            Dtype::F32 => {
                f.f32s.insert(
                    name,
                    d.chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                        .collect(),
                );
            }
            Dtype::F64 => {
                f.f64s.insert(
                    name,
                    d.chunks_exact(8)
                        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                        .collect(),
                );
            }
            Dtype::I16 => {
                f.i16s.insert(
                    name,
                    d.chunks_exact(2)
                        .map(|b| i16::from_le_bytes(b.try_into().unwrap()))
                        .collect(),
                );
            }
            Dtype::I64 => {
                f.labels = d
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as usize)
                    .collect();
            }
            other => panic!("{}: {name} is {other:?}", path.display()),
        }
    }
    f
}

/// A tiny network with every block kind (Fused-MBConv with e = 1 and e > 1,
/// MBConv with e = 1 and e > 1 with SE, residuals with drop path 0.6, dropout
/// 0.3), 9 px, 3 classes, in `activation` and `padding`: the whole-step
/// training tests of the CPU reference and of the GPU path share it.
pub fn every_block_kind(activation: &str, padding: &str) -> effc_ir::Model {
    let text = format!(
        "
model tiny {{
    resolution = 9
    stem       = 4
    head       = 8
    classes    = 3
    activation = {activation}
    padding    = {padding}
    dropout    = 0.3
    drop_path  = 0.6
    blocks {{
        r1_k3_s1_e1_i4_o4_c1
        r2_k3_s2_e2_i4_o6_c1
        r1_k3_s1_e1_i6_o6_se0.25
        r2_k5_s2_e3_i6_o8_se0.25
    }}
}}"
    );
    let spec = effc_ir::Spec::parse("tiny.enet", &text).expect("the test spec parses");
    effc_ir::Model::build(&spec, &effc_ir::Options::default()).expect("the test spec builds")
}

/// Values for every tensor of `model` (in `Model::params` order) from `noise(len,
/// seed)`, tensor `i` drawn with seed `seed + i`: BN scales and running variances
/// are `1 + noise/2` (positive, near 1), everything else the noise itself.
pub fn noisy_values(
    model: &effc_ir::Model,
    seed: u64,
    noise: impl Fn(usize, u64) -> Vec<f64>,
) -> Vec<Vec<f64>> {
    model
        .params()
        .iter()
        .zip(seed..)
        .map(|(p, s)| {
            let v = noise(p.numel(), s);
            let near_one = match p.key.tensor {
                effc_ir::Tensor::RunningVar => true,
                effc_ir::Tensor::Weight => p.shape.len() == 1,
                _ => false,
            };
            if near_one {
                v.iter().map(|v| 1.0 + 0.5 * v).collect()
            } else {
                v
            }
        })
        .collect()
}
