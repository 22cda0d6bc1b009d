//! Depthwise kernels: the fixed body is `kernels/depthwise.wgsl`; here, its
//! constants and the pooling variant.

use std::fmt::Write;

use effc_plan::{DwOp, Kernel};

use crate::writer::{act_fn, fill, layout_consts};

const BODY: &str = include_str!("kernels/depthwise.wgsl");

pub(crate) fn depthwise(o: &mut String, k: &Kernel, d: &DwOp) {
    let t = &d.tiles;
    let mut c = String::new();
    let _ = writeln!(c, "const C4: u32 = {}u;        // channels in vec4s", d.c4);
    let _ = writeln!(c, "const KSIZE: u32 = {}u;", d.kernel);
    let _ = writeln!(c, "const STRIDE: u32 = {}u;", d.stride);
    let _ = writeln!(c, "const PAD_TOP: i32 = {};", d.pad_top);
    let _ = writeln!(c, "const PAD_LEFT: i32 = {};", d.pad_left);
    let _ = writeln!(c, "const IN_H: i32 = {};", d.in_h);
    let _ = writeln!(c, "const IN_W: i32 = {};", d.in_w);
    let _ = writeln!(c, "const OUT_W: u32 = {}u;", d.out_w);
    let _ = writeln!(
        c,
        "const M: u32 = {}u;        // output pixels per image ({}x{})",
        d.out_h * d.out_w,
        d.out_h,
        d.out_w
    );
    let _ = writeln!(
        c,
        "const RUN: u32 = {}u;      // adjacent output pixels per invocation step",
        t.run
    );
    let _ = writeln!(
        c,
        "const RUNS_W: u32 = {}u;   // runs per output row",
        d.runs_w()
    );
    let _ = writeln!(
        c,
        "const RUNS: u32 = {}u;     // runs per image",
        d.out_h * d.runs_w()
    );
    let _ = writeln!(
        c,
        "const SEG: u32 = {}u;      // input pixels of one row that a run reads",
        (t.run - 1) * d.stride + d.kernel
    );
    let _ = writeln!(c, "const TILE_RUNS: u32 = {}u;", t.tile_runs);
    let _ = writeln!(c, "const LANES_C4: u32 = {}u;", t.lanes_c4);
    let _ = writeln!(c, "const LANES_RUN: u32 = {}u;", t.lanes_run);
    let _ = writeln!(c, "const TILES: u32 = {}u;", d.tiles());
    layout_consts(&mut c, k);
    let (pool_tile, pool) = if d.pool {
        (
            "var<workgroup> pool_tile: array<array<vec4<f32>, LANES_C4>, LANES_RUN>;\n".to_string(),
            "    // SE pooling: this tile's sums, one vec4 per channel group.\n    pool_tile[lid.y][lid.x] = psum;\n    workgroupBarrier();\n    if (lid.y == 0u && c4 < C4) {\n        var s = vec4<f32>(0.0);\n        for (var r = 0u; r < LANES_RUN; r = r + 1u) {\n            s = s + pool_tile[r][lid.x];\n        }\n        pool[(n * TILES + wg.y) * C4 + c4] = s;\n    }".to_string(),
        )
    } else {
        (String::new(), "    _ = psum;".to_string())
    };
    let workgroup = format!("{}, {}", k.workgroup[0], k.workgroup[1]);
    o.push_str(&fill(
        BODY,
        &[
            ("CONSTANTS", c.trim_end()),
            ("POOL_TILE", &pool_tile),
            ("ACT", &act_fn("act", d.act)),
            ("WORKGROUP", &workgroup),
            ("POOL", &pool),
        ],
    ));
}
