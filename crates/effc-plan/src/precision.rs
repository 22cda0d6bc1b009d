//! The precision a plan is built for: how weights and activations are stored.
//!
//! At [`Precision::F16`] the packed weights and the activation tensors (the input
//! included) are stored as IEEE half floats; every sum (GEMM, depthwise, pooling,
//! SE, classifier) is still accumulated in f32 by the shaders, and the pooling
//! partial sums, the SE gate and the output stay f32 (they are small, and they are
//! sums). BN is folded in f32 ([`crate::fold_bn`]) before the weights are rounded.
//!
//! Values beyond f16's range (|v| > 65504) are clamped to ±65504, never turned into
//! infinities: [`encode`] counts the weights it clamped (reported by the tools), and
//! the shaders clamp activations on store the same way. NaN stays NaN.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::layout::ElemType;
use crate::plan::TensorKind;

/// The storage precision of a plan's weights and activations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    F16,
}

/// The largest finite f16.
pub const F16_MAX: f32 = 65504.0;

impl Precision {
    /// The element type weights and activations are stored as.
    pub fn elem(self) -> ElemType {
        match self {
            Precision::F32 => ElemType::F32,
            Precision::F16 => ElemType::F16,
        }
    }

    /// The element type a tensor of `kind` is stored as: activations (and the input)
    /// at this precision; pooling sums, the SE gate and the output always f32.
    pub fn tensor_elem(self, kind: TensorKind) -> ElemType {
        match kind {
            TensorKind::Input | TensorKind::Activation => self.elem(),
            TensorKind::PoolPartial | TensorKind::Gate | TensorKind::Output => ElemType::F32,
        }
    }

    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            _ => Err(format!("unknown precision `{s}` (expected f32 or f16)")),
        }
    }
}

/// Values converted to a storage type, as little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    /// Values beyond the type's finite range that were clamped to it.
    pub clamped: usize,
}

/// Converts f32 values to `elem`'s storage bytes (rounding to nearest even for f16,
/// values beyond ±65504 clamped and counted).
pub fn encode(elem: ElemType, values: &[f32]) -> Encoded {
    match elem {
        ElemType::F32 => Encoded {
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            clamped: 0,
        },
        ElemType::F16 => {
            let mut clamped = 0;
            let mut bytes = Vec::with_capacity(values.len() * 2);
            for &v in values {
                let c = v.clamp(-F16_MAX, F16_MAX);
                if c != v && !v.is_nan() {
                    clamped += 1;
                }
                bytes.extend(half::f16::from_f32(c).to_le_bytes());
            }
            Encoded { bytes, clamped }
        }
    }
}

/// Converts storage bytes of `elem` back to f32 (for reading tensors back).
pub fn decode(elem: ElemType, bytes: &[u8]) -> Vec<f32> {
    match elem {
        ElemType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        ElemType::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_rounds_and_clamps_beyond_its_range() {
        let e = encode(ElemType::F16, &[1.0, -2.5, 1e-3, 7e4, -1e9, f32::INFINITY]);
        assert_eq!(e.bytes.len(), 12);
        assert_eq!(e.clamped, 3);
        let back = decode(ElemType::F16, &e.bytes);
        assert_eq!(back[..2], [1.0, -2.5]);
        assert!((back[2] - 1e-3).abs() < 1e-6);
        assert_eq!(back[3..], [F16_MAX, -F16_MAX, F16_MAX]);
        assert!(decode(ElemType::F16, &encode(ElemType::F16, &[f32::NAN]).bytes)[0].is_nan());
    }

    #[test]
    fn f32_is_stored_as_is() {
        let v = [1.5f32, -0.0, 1e30];
        let e = encode(ElemType::F32, &v);
        assert_eq!((e.bytes.len(), e.clamped), (12, 0));
        assert_eq!(decode(ElemType::F32, &e.bytes), v);
    }

    fn plans(name: &str) -> (crate::Plan, crate::Plan) {
        use effc_ir::{Model, Options, Spec};
        let m = Model::build(&Spec::builtin(name).unwrap(), &Options::default()).unwrap();
        let t = crate::Tuning::default();
        (
            crate::plan_with(&m, &t, Precision::F32),
            crate::plan_with(&m, &t, Precision::F16),
        )
    }

    #[test]
    fn f16_plans_hold_at_most_0_52_of_the_f32_bytes() {
        for name in ["b0", "v2-s"] {
            let (a, b) = plans(name);
            assert_eq!(b.validate(), Ok(()), "{name}");
            let w = b.weight_bytes() as f64 / a.weight_bytes() as f64;
            let act = b.activation_bytes(1) as f64 / a.activation_bytes(1) as f64;
            assert!(w <= 0.52, "{name}: weights {w:.3}");
            assert!(act <= 0.52, "{name}: activations {act:.3}");
            assert_eq!(a.kernels.len(), b.kernels.len());
            // The kernels, tiles and layouts are the same; only storage differs.
            for (x, y) in a.kernels.iter().zip(&b.kernels) {
                assert_eq!(x.weights_len, y.weights_len, "{}", x.name);
                assert_eq!((x.workgroup, x.grid), (y.workgroup, y.grid), "{}", x.name);
                assert_eq!(y.layout.bytes() * 2, x.layout.bytes(), "{}", x.name);
            }
            assert_eq!(b.tensors[b.output].bytes, a.tensors[a.output].bytes);
        }
    }

    #[test]
    fn the_fingerprint_sees_the_precision_and_f32_plans_keep_theirs() {
        let (a, b) = plans("b0");
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(
            a.fingerprint(),
            crate::plan(&{
                use effc_ir::{Model, Options, Spec};
                Model::build(&Spec::builtin("b0").unwrap(), &Options::default()).unwrap()
            })
            .fingerprint()
        );
        let json = serde_json::to_string(&a).unwrap();
        assert!(!json.contains("precision") && !json.contains("F16"));
        assert!(serde_json::to_string(&b)
            .unwrap()
            .contains("\"precision\":\"f16\""));
    }

    #[test]
    fn every_builtin_plans_validly_at_f16() {
        use effc_ir::{Model, Options, Spec};
        for name in effc_catalog::names() {
            let m = Model::build(&Spec::builtin(name).unwrap(), &Options::default()).unwrap();
            let p = crate::plan_at(&m, Precision::F16);
            assert_eq!(p.validate(), Ok(()), "{name}");
        }
    }

    #[test]
    fn a_plan_whose_storage_disagrees_with_its_precision_is_refused() {
        let (_, mut b) = plans("b0");
        b.tensors[b.input].elem = ElemType::F32;
        assert!(b.validate().unwrap_err().contains("stored as f32"));
        let (_, mut b) = plans("b0");
        b.kernels[2].layout.elem = ElemType::F32;
        assert!(b.validate().unwrap_err().contains("weights as f32"));
    }

    #[test]
    fn precisions_parse_and_print() {
        for p in [Precision::F32, Precision::F16] {
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
        }
        assert!("bf16"
            .parse::<Precision>()
            .unwrap_err()
            .contains("f32 or f16"));
        assert_eq!(Precision::default(), Precision::F32);
    }
}
