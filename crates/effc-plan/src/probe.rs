//! `gemm_probe`: a plan of one pointwise GEMM kernel, effc's own GEMM on a given
//! problem, which `effc bench` times as the adapter's ceiling.

use effc_ir::ConvBn;

use crate::fuse::{Builder, GemmArgs};
use crate::plan::{Plan, Source, TensorKind};
use crate::tune::Tuning;

/// A plan with a single pointwise GEMM kernel, `[m × k] · [k × n]` (m output pixels,
/// k input and n output channels): effc's own GEMM on a given problem, used as the
/// adapter's ceiling by `effc bench`. Its "input" and "output" are the GEMM's A and C.
pub fn gemm_probe(m: usize, k: usize, n: usize) -> Plan {
    let tuning = Tuning::default();
    let mut b = Builder::new(&tuning);
    let side = (m as f64).sqrt() as usize;
    let (h, w) = if side * side == m {
        (side, side)
    } else {
        (1, m)
    };
    let a = b.tensor("a".into(), TensorKind::Input, h, w, k);
    let c = b.tensor("c".into(), TensorKind::Activation, h, w, n);
    let conv = effc_ir::Conv2d::new(k, n, 1, 1, 1, (h, w), effc_ir::PaddingMode::Same);
    let cb = ConvBn {
        bn: effc_ir::model::BatchNorm {
            channels: n,
            eps: 1e-3,
        },
        conv,
        act: None,
    };
    b.gemm(GemmArgs {
        name: "gemm".into(),
        layers: vec![format!("gemm {m}x{k}x{n}")],
        source: Source::Stem,
        cb: &cb,
        input: a,
        gate: None,
        residual: None,
        out: Some(c),
        pool: None,
    });
    b.finish(format!("gemm-{m}x{k}x{n}"), a, c, [k, h, w], n * m)
}
