//! GEMM kernels (1x1 convs, the stem, Fused-MBConv's kxk conv, the head): the fixed
//! body is `kernels/gemm.wgsl`; here, its constants, the A-operand load and the
//! epilogue's variants.

use std::fmt::Write;

use effc_plan::{ALoad, GemmOp, Kernel, Plan};

use crate::writer::{act_fn, fill, gate_stride, layout_consts};

const BODY: &str = include_str!("kernels/gemm.wgsl");

pub(crate) fn gemm(o: &mut String, plan: &Plan, k: &Kernel, g: &GemmOp) {
    let e = &g.epilogue;
    let c = constants(plan, k, g);
    let pool_tile = if e.pool {
        format!(
            "var<workgroup> pool_tile: array<array<vec4<f32>, TILE_N4>, {}>;",
            g.tile_m / g.rows_per_thread
        )
    } else {
        String::new()
    };
    let what = format!(
        "{}{}{}",
        if e.residual { ", residual add" } else { "" },
        if e.store { ", store" } else { "" },
        if e.pool { ", pooling sums" } else { "" }
    );
    let (epilogue, pool) = epilogue(g);
    let workgroup = format!("{}, {}", k.workgroup[0], k.workgroup[1]);
    o.push_str(&fill(
        BODY,
        &[
            ("CONSTANTS", c.trim_end()),
            ("B_ROWS", &(g.tile_k4 * 4).to_string()),
            ("POOL_TILE", &pool_tile),
            ("ACT", &act_fn("act", e.act)),
            ("LOAD_A", &load_a(g)),
            ("WORKGROUP", &workgroup),
            ("EPILOGUE_WHAT", &what),
            ("EPILOGUE", &epilogue),
            ("POOL", &pool),
        ],
    ));
}

/// The kernel's constants: its shape, tiles, the SE gate's stride and, for a
/// kxk conv, the implicit im2col's geometry.
fn constants(plan: &Plan, k: &Kernel, g: &GemmOp) -> String {
    let threads = k.workgroup[0] * k.workgroup[1];
    let mut c = String::new();
    let _ = writeln!(
        c,
        "const M: u32 = {}u;       // output pixels per image ({}x{})",
        g.m(),
        g.out_h,
        g.out_w
    );
    let _ = writeln!(
        c,
        "const K4: u32 = {}u;      // reduction length in vec4s",
        g.k4()
    );
    let _ = writeln!(
        c,
        "const N4: u32 = {}u;      // output channels in vec4s ({} channels)",
        g.cout4, g.cout
    );
    let _ = writeln!(
        c,
        "const CIN4: u32 = {}u;    // input channels in vec4s",
        g.cin4
    );
    let _ = writeln!(c, "const TILE_M: u32 = {}u;", g.tile_m);
    let _ = writeln!(c, "const TILE_N4: u32 = {}u;", g.tile_n4);
    let _ = writeln!(
        c,
        "const ROWS: u32 = {}u;     // output pixels per invocation",
        g.rows_per_thread
    );
    let _ = writeln!(c, "const TILE_K4: u32 = {}u;", g.tile_k4);
    let _ = writeln!(c, "const THREADS: u32 = {threads}u;");
    let _ = writeln!(c, "const TILES_M: u32 = {}u;", g.tiles_m());
    if let Some(stride) = gate_stride(plan, k) {
        let _ = writeln!(
            c,
            "const GATE_STRIDE: u32 = {stride}u; // gate vec4s per image (gate, then SE hidden)"
        );
    }
    if let ALoad::Conv {
        kernel,
        stride,
        pad_top,
        pad_left,
        in_h,
        in_w,
    } = g.a
    {
        let _ = writeln!(c, "const KSIZE: u32 = {kernel}u;");
        let _ = writeln!(c, "const STRIDE: u32 = {stride}u;");
        let _ = writeln!(c, "const PAD_TOP: i32 = {pad_top};");
        let _ = writeln!(c, "const PAD_LEFT: i32 = {pad_left};");
        let _ = writeln!(c, "const IN_H: i32 = {in_h};");
        let _ = writeln!(c, "const IN_W: i32 = {in_w};");
        let _ = writeln!(c, "const OUT_W: u32 = {}u;", g.out_w);
    }
    layout_consts(&mut c, k);
    c
}

/// The A operand's load: a pixel's channels (gated by SE or not), or a kxk
/// conv's tap through implicit im2col.
fn load_a(g: &GemmOp) -> String {
    match g.a {
        ALoad::Pointwise { gated: true } => "    // SE gate applied to the input channels.\n    return src[(n * M + m) * CIN4 + k4] * gate[n * GATE_STRIDE + k4];".to_string(),
        ALoad::Pointwise { gated: false } => "    return src[(n * M + m) * CIN4 + k4];".to_string(),
        ALoad::Conv { .. } => [
            "    // implicit im2col: k4 = (ky * KSIZE + kx) * CIN4 + ci4",
            "    let oy = m / OUT_W;\n    let ox = m % OUT_W;",
            "    let tap = k4 / CIN4;\n    let ci4 = k4 % CIN4;",
            "    let iy = i32(oy * STRIDE + tap / KSIZE) - PAD_TOP;",
            "    let ix = i32(ox * STRIDE + tap % KSIZE) - PAD_LEFT;",
            "    if (iy < 0 || ix < 0 || iy >= IN_H || ix >= IN_W) {\n        return vec4<f32>(0.0);\n    }",
            "    return src[((n * u32(IN_H) + u32(iy)) * u32(IN_W) + u32(ix)) * CIN4 + ci4];",
        ]
        .join("\n"),
    }
}

/// The epilogue's lines (residual add, store) and the pooling sums' reduction
/// over the workgroup.
fn epilogue(g: &GemmOp) -> (String, String) {
    let e = &g.epilogue;
    let mut epilogue = vec![];
    if e.residual {
        let res = if e.residual_is_src { "src" } else { "residual" };
        epilogue.push(format!(
            "                v = v + {res}[(n * M + m) * N4 + col4];"
        ));
    }
    if e.store {
        epilogue.push("                dst[(n * M + m) * N4 + col4] = v;".to_string());
    }
    let pool = if e.pool {
        let rows = g.tile_m / g.rows_per_thread;
        format!(
            "    pool_tile[lid.y][lid.x] = psum;\n    workgroupBarrier();\n    if (lid.y == 0u && col4 < N4) {{\n        var s = vec4<f32>(0.0);\n        for (var r = 0u; r < {rows}u; r = r + 1u) {{\n            s = s + pool_tile[r][lid.x];\n        }}\n        pool[(n * TILES_M + wg.y) * N4 + col4] = s;\n    }}"
        )
    } else {
        "    _ = psum;".to_string()
    };
    (epilogue.join("\n"), pool)
}
