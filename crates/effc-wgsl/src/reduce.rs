//! The one-workgroup reductions over pooling sums: the SE MLP (`kernels/se.wgsl`)
//! and the classifier (`kernels/classifier.wgsl`, or `kernels/features.wgsl` when
//! there are no classes); here, their constants.

use std::fmt::Write;

use effc_plan::{ClassifierOp, Kernel, Plan, SeOp};

use crate::writer::{act_fn, fill, gate_stride, layout_consts};

const SE: &str = include_str!("kernels/se.wgsl");
const CLASSIFIER: &str = include_str!("kernels/classifier.wgsl");
const EMBEDDING: &str = include_str!("kernels/embedding.wgsl");

pub(crate) fn se(o: &mut String, plan: &Plan, k: &Kernel, s: &SeOp) {
    let r4 = s.reduced.div_ceil(4);
    let mut c = String::new();
    let _ = writeln!(
        c,
        "const C4: u32 = {}u;        // channels in vec4s ({} channels)",
        s.c4, s.c
    );
    let _ = writeln!(c, "const R: u32 = {}u;         // reduced width", s.reduced);
    let _ = writeln!(c, "const R4: u32 = {r4}u;");
    let _ = writeln!(
        c,
        "const TILES: u32 = {}u;     // pooling partial sums to add",
        s.tiles
    );
    let _ = writeln!(
        c,
        "const INV_HW: f32 = {:?};   // 1 / {} pixels",
        1.0f32 / s.hw as f32,
        s.hw
    );
    let stride = gate_stride(plan, k).expect("an SE kernel writes its gate");
    let _ = writeln!(
        c,
        "const GATE_STRIDE: u32 = {stride}u; // gate vec4s per image: C4 gate + R4 hidden"
    );
    layout_consts(&mut c, k);
    let threads = k.workgroup[0].to_string();
    o.push_str(&fill(
        SE,
        &[
            ("CONSTANTS", c.trim_end()),
            ("ACT", &act_fn("act", Some(s.act))),
            ("THREADS", &threads),
        ],
    ));
}

pub(crate) fn classifier(o: &mut String, k: &Kernel, h: &ClassifierOp) {
    let mut c = String::new();
    let _ = writeln!(c, "const C: u32 = {}u;          // features", h.c);
    let _ = writeln!(c, "const C4: u32 = {}u;", h.c4);
    let _ = writeln!(
        c,
        "const TILES: u32 = {}u;      // pooling partial sums to add",
        h.tiles
    );
    let _ = writeln!(
        c,
        "const INV_HW: f32 = {:?};    // 1 / {} pixels",
        1.0f32 / h.hw as f32,
        h.hw
    );
    let body = if h.classes > 0 {
        let _ = writeln!(c, "const CLASSES: u32 = {}u;", h.classes);
        layout_consts(&mut c, k);
        CLASSIFIER
    } else {
        EMBEDDING
    };
    let threads = k.workgroup[0].to_string();
    o.push_str(&fill(
        body,
        &[("CONSTANTS", c.trim_end()), ("THREADS", &threads)],
    ));
}
