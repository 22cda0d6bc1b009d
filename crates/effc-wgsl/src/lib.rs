//! The WGSL backend: each kernel of a [`Plan`] spelled as one compute shader, shapes
//! as constants, with a header comment naming the layers it implements. Every
//! decision (fusion, tiling, layout) was made by the plan; this crate only spells it.
//!
//! [`compile`] emits every kernel and validates it with naga; a shader that fails
//! validation is a compiler bug, reported with the kernel's name.

use std::fmt::{self, Write};

use effc_ir::Activation;
use effc_plan::{ALoad, ClassifierOp, DwOp, GemmOp, Kernel, Op, Plan, SeOp, TensorKind};

/// One generated shader.
#[derive(Clone, Debug, PartialEq)]
pub struct Shader {
    /// The kernel's name (`blocks.1.0.expand`).
    pub kernel: String,
    /// A file name for it (`blocks_1_0_expand.wgsl`).
    pub file_name: String,
    pub source: String,
}

/// A generated shader that naga rejects: a bug in effc, not in the user's spec.
#[derive(Clone, Debug)]
pub struct CompileError {
    pub kernel: String,
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "internal compiler error: the WGSL generated for kernel `{}` does not validate (please report this):\n{}",
            self.kernel, self.message
        )
    }
}

impl std::error::Error for CompileError {}

/// Emits and validates the shaders of every kernel of a plan, in dispatch order.
pub fn compile(plan: &Plan) -> Result<Vec<Shader>, CompileError> {
    let shaders = emit_all(plan);
    validate_all(&shaders)?;
    Ok(shaders)
}

/// The shaders of every kernel of a plan, in dispatch order, not yet validated
/// (see [`validate_all`]; [`compile`] does both).
pub fn emit_all(plan: &Plan) -> Vec<Shader> {
    plan.kernels
        .iter()
        .map(|k| Shader {
            kernel: k.name.clone(),
            file_name: file_name(&k.name),
            source: emit(plan, k),
        })
        .collect()
}

/// Validates shaders with naga; the first failure in dispatch order.
pub fn validate_all(shaders: &[Shader]) -> Result<(), CompileError> {
    validate_while(shaders, || ()).0
}

/// Validates shaders with naga on every core while the calling thread runs `work`
/// (and then helps validate): for work that does not need the result, such as
/// writing host code. Returns the first failure in dispatch order, and `work`'s result.
pub fn validate_while<R>(
    shaders: &[Shader],
    work: impl FnOnce() -> R,
) -> (Result<(), CompileError>, R) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    // Kernels whose code is the same (the blocks of a stage after its first, say)
    // differ only in their comments: each distinct body is validated once.
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<&Shader> = shaders
        .iter()
        .filter(|s| seen.insert(body(&s.source)))
        .collect();
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<(usize, CompileError)>> = Mutex::new(None);
    let drain = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(s) = distinct.get(i) else { break };
        if let Err(message) = validate(&s.source) {
            let mut f = failure.lock().unwrap_or_else(|p| p.into_inner());
            if f.as_ref().is_none_or(|(j, _)| i < *j) {
                let kernel = s.kernel.clone();
                *f = Some((i, CompileError { kernel, message }));
            }
        }
    };
    let helpers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(distinct.len())
        .saturating_sub(1);
    let result = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..helpers.max(1)).map(|_| scope.spawn(drain)).collect();
        let result = work();
        drain();
        for w in workers {
            if w.join().is_err() {
                let message = "the WGSL validator panicked".to_string();
                let kernel = "?".to_string();
                let mut f = failure.lock().unwrap_or_else(|p| p.into_inner());
                f.get_or_insert((usize::MAX, CompileError { kernel, message }));
            }
        }
        result
    });
    let failure = failure.into_inner().unwrap_or_else(|p| p.into_inner());
    match failure {
        Some((_, e)) => (Err(e), result),
        None => (Ok(()), result),
    }
}

/// A shader's code without its header comment: kernels with equal bodies compile
/// to the same pipeline.
pub fn body(source: &str) -> &str {
    let mut rest = source;
    while rest.starts_with("//") {
        rest = rest.split_once('\n').map_or("", |(_, r)| r);
    }
    rest
}

/// `blocks.1.0.expand` → `blocks_1_0_expand.wgsl`
pub fn file_name(kernel: &str) -> String {
    format!("{}.wgsl", kernel.replace(['.', '-'], "_"))
}

/// Parses and validates a WGSL module with naga.
pub fn validate(source: &str) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    let mut v = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    );
    v.validate(&module).map_err(|e| e.emit_to_string(source))?;
    Ok(())
}

/// The WGSL of one kernel.
pub fn emit(plan: &Plan, k: &Kernel) -> String {
    let mut o = String::new();
    header(&mut o, plan, k);
    match &k.op {
        Op::Gemm(g) => gemm(&mut o, plan, k, g),
        Op::Depthwise(d) => depthwise(&mut o, k, d),
        Op::Se(s) => se(&mut o, s),
        Op::Classifier(h) => classifier(&mut o, h),
    }
    o
}

fn header(o: &mut String, plan: &Plan, k: &Kernel) {
    let _ = writeln!(
        o,
        "// effc kernel `{}` ({}) of model `{}`",
        k.name,
        k.kind(),
        plan.model
    );
    let _ = writeln!(o, "// implements: {}", k.layers.join(", "));
    for b in &k.bindings {
        if let Some(t) = b.tensor {
            let t = &plan.tensors[t];
            let _ = writeln!(o, "// {:<8} {:<24} {}", b.name, t.name, shape_comment(t));
        }
    }
    let _ = writeln!(
        o,
        "// dispatch: {}x{}xN workgroups of {}x{}x{}",
        k.grid[0], k.grid[1], k.workgroup[0], k.workgroup[1], k.workgroup[2]
    );
    let _ = writeln!(o);
    for (i, b) in k.bindings.iter().enumerate() {
        let elem = match b.tensor.map(|t| plan.tensors[t].kind) {
            Some(TensorKind::Output) => "f32",
            _ => "vec4<f32>",
        };
        let access = if b.write { "read_write" } else { "read" };
        let _ = writeln!(
            o,
            "@group(0) @binding({i}) var<storage, {access}> {}: array<{elem}>;",
            b.name
        );
    }
    let _ = writeln!(o);
}

fn shape_comment(t: &effc_plan::TensorDesc) -> String {
    match t.kind {
        TensorKind::PoolPartial => format!(
            "pool sums: {} tile{} x {} ch (NHWC vec4, per image)",
            t.h,
            if t.h == 1 { "" } else { "s" },
            t.c
        ),
        TensorKind::Gate => format!("SE gate and hidden: {} values per image", t.c),
        TensorKind::Output => format!("{} f32 per image", t.c),
        _ => format!("{}x{}x{} NHWC, {} vec4/pixel", t.h, t.w, t.c, t.c4),
    }
}

fn act_fn(o: &mut String, name: &str, act: Option<Activation>) {
    let body = match act {
        None => "return x;",
        Some(Activation::Swish) => "return x / (vec4<f32>(1.0) + exp(-x));",
        Some(Activation::Relu) => "return max(x, vec4<f32>(0.0));",
        Some(Activation::Relu6) => "return clamp(x, vec4<f32>(0.0), vec4<f32>(6.0));",
    };
    let what = act.map_or("identity", |a| a.name());
    let _ = writeln!(
        o,
        "// {what}\nfn {name}(x: vec4<f32>) -> vec4<f32> {{\n    {body}\n}}\n"
    );
}

fn gemm(o: &mut String, plan: &Plan, k: &Kernel, g: &GemmOp) {
    let e = &g.epilogue;
    let threads = k.workgroup[0] * k.workgroup[1];
    let _ = writeln!(
        o,
        "const M: u32 = {}u;       // output pixels per image ({}x{})",
        g.m(),
        g.out_h,
        g.out_w
    );
    let _ = writeln!(
        o,
        "const K4: u32 = {}u;      // reduction length in vec4s",
        g.k4()
    );
    let _ = writeln!(
        o,
        "const N4: u32 = {}u;      // output channels in vec4s ({} channels)",
        g.cout4, g.cout
    );
    let _ = writeln!(
        o,
        "const CIN4: u32 = {}u;    // input channels in vec4s",
        g.cin4
    );
    let _ = writeln!(o, "const TILE_M: u32 = {}u;", g.tile_m);
    let _ = writeln!(o, "const TILE_N4: u32 = {}u;", g.tile_n4);
    let _ = writeln!(
        o,
        "const ROWS: u32 = {}u;     // output pixels per invocation",
        g.rows_per_thread
    );
    let _ = writeln!(o, "const TILE_K4: u32 = {}u;", g.tile_k4);
    let _ = writeln!(o, "const THREADS: u32 = {threads}u;");
    let _ = writeln!(o, "const TILES_M: u32 = {}u;", g.tiles_m());
    if let Some(t) = k
        .bindings
        .iter()
        .find(|b| b.name == "gate")
        .and_then(|b| b.tensor)
    {
        let _ = writeln!(
            o,
            "const GATE_STRIDE: u32 = {}u; // gate vec4s per image (gate, then SE hidden)",
            plan.tensors[t].c4
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
        let _ = writeln!(o, "const KSIZE: u32 = {kernel}u;");
        let _ = writeln!(o, "const STRIDE: u32 = {stride}u;");
        let _ = writeln!(o, "const PAD_TOP: i32 = {pad_top};");
        let _ = writeln!(o, "const PAD_LEFT: i32 = {pad_left};");
        let _ = writeln!(o, "const IN_H: i32 = {in_h};");
        let _ = writeln!(o, "const IN_W: i32 = {in_w};");
        let _ = writeln!(o, "const OUT_W: u32 = {}u;", g.out_w);
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "var<workgroup> a_tile: array<array<vec4<f32>, TILE_K4>, TILE_M>;"
    );
    let _ = writeln!(
        o,
        "var<workgroup> b_tile: array<array<vec4<f32>, TILE_N4>, {}>;",
        g.tile_k4 * 4
    );
    if e.pool {
        let _ = writeln!(
            o,
            "var<workgroup> pool_tile: array<array<vec4<f32>, TILE_N4>, {}>;",
            g.tile_m / g.rows_per_thread
        );
    }
    let _ = writeln!(o);
    act_fn(o, "act", e.act);
    // A operand.
    let _ = writeln!(o, "// A[m][k4] of image n: zero outside the matrix.");
    let _ = writeln!(o, "fn load_a(n: u32, m: u32, k4: u32) -> vec4<f32> {{");
    let _ = writeln!(
        o,
        "    if (m >= M || k4 >= K4) {{\n        return vec4<f32>(0.0);\n    }}"
    );
    match g.a {
        ALoad::Pointwise { gated } => {
            if gated {
                let _ = writeln!(o, "    // SE gate applied to the input channels.");
                let _ = writeln!(
                    o,
                    "    return src[(n * M + m) * CIN4 + k4] * gate[n * GATE_STRIDE + k4];"
                );
            } else {
                let _ = writeln!(o, "    return src[(n * M + m) * CIN4 + k4];");
            }
        }
        ALoad::Conv { .. } => {
            let _ = writeln!(
                o,
                "    // implicit im2col: k4 = (ky * KSIZE + kx) * CIN4 + ci4"
            );
            let _ = writeln!(o, "    let oy = m / OUT_W;\n    let ox = m % OUT_W;");
            let _ = writeln!(o, "    let tap = k4 / CIN4;\n    let ci4 = k4 % CIN4;");
            let _ = writeln!(o, "    let iy = i32(oy * STRIDE + tap / KSIZE) - PAD_TOP;");
            let _ = writeln!(o, "    let ix = i32(ox * STRIDE + tap % KSIZE) - PAD_LEFT;");
            let _ = writeln!(o, "    if (iy < 0 || ix < 0 || iy >= IN_H || ix >= IN_W) {{\n        return vec4<f32>(0.0);\n    }}");
            let _ = writeln!(
                o,
                "    return src[((n * u32(IN_H) + u32(iy)) * u32(IN_W) + u32(ix)) * CIN4 + ci4];"
            );
        }
    }
    let _ = writeln!(o, "}}\n");
    let _ = writeln!(
        o,
        "@compute @workgroup_size({}, {}, 1)",
        k.workgroup[0], k.workgroup[1]
    );
    let _ = writeln!(o, "fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {{");
    let _ = writeln!(o, "    let n = wg.z;");
    let _ = writeln!(o, "    let col4 = wg.x * TILE_N4 + lid.x;");
    let _ = writeln!(o, "    let row0 = wg.y * TILE_M + lid.y * ROWS;");
    let _ = writeln!(o, "    var acc: array<vec4<f32>, ROWS>;");
    let _ = writeln!(
        o,
        "    for (var r = 0u; r < ROWS; r = r + 1u) {{\n        acc[r] = vec4<f32>(0.0);\n    }}"
    );
    let _ = writeln!(o, "    for (var kt = 0u; kt < K4; kt = kt + TILE_K4) {{");
    let _ = writeln!(
        o,
        "        for (var i = li; i < TILE_M * TILE_K4; i = i + THREADS) {{"
    );
    let _ = writeln!(o, "            a_tile[i / TILE_K4][i % TILE_K4] = load_a(n, wg.y * TILE_M + i / TILE_K4, kt + i % TILE_K4);");
    let _ = writeln!(o, "        }}");
    let _ = writeln!(
        o,
        "        for (var i = li; i < TILE_K4 * 4u * TILE_N4; i = i + THREADS) {{"
    );
    let _ = writeln!(o, "            let kr = kt * 4u + i / TILE_N4;");
    let _ = writeln!(o, "            let c = wg.x * TILE_N4 + i % TILE_N4;");
    let _ = writeln!(o, "            var b = vec4<f32>(0.0);");
    let _ = writeln!(o, "            if (kr < K4 * 4u && c < N4) {{\n                b = weights[kr * N4 + c];\n            }}");
    let _ = writeln!(o, "            b_tile[i / TILE_N4][i % TILE_N4] = b;");
    let _ = writeln!(o, "        }}");
    let _ = writeln!(o, "        workgroupBarrier();");
    let _ = writeln!(
        o,
        "        for (var kk = 0u; kk < TILE_K4; kk = kk + 1u) {{"
    );
    let _ = writeln!(o, "            let b0 = b_tile[kk * 4u][lid.x];");
    let _ = writeln!(o, "            let b1 = b_tile[kk * 4u + 1u][lid.x];");
    let _ = writeln!(o, "            let b2 = b_tile[kk * 4u + 2u][lid.x];");
    let _ = writeln!(o, "            let b3 = b_tile[kk * 4u + 3u][lid.x];");
    let _ = writeln!(o, "            for (var r = 0u; r < ROWS; r = r + 1u) {{");
    let _ = writeln!(o, "                let a = a_tile[lid.y * ROWS + r][kk];");
    let _ = writeln!(
        o,
        "                acc[r] = acc[r] + a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3;"
    );
    let _ = writeln!(o, "            }}");
    let _ = writeln!(o, "        }}");
    let _ = writeln!(o, "        workgroupBarrier();");
    let _ = writeln!(o, "    }}");
    let _ = writeln!(
        o,
        "    // epilogue: bias (folded BN), activation{}{}{}",
        if e.residual { ", residual add" } else { "" },
        if e.store { ", store" } else { "" },
        if e.pool { ", pooling sums" } else { "" }
    );
    let _ = writeln!(o, "    var psum = vec4<f32>(0.0);");
    let _ = writeln!(o, "    if (col4 < N4) {{");
    let _ = writeln!(o, "        let bias = weights[K4 * 4u * N4 + col4];");
    let _ = writeln!(o, "        for (var r = 0u; r < ROWS; r = r + 1u) {{");
    let _ = writeln!(o, "            let m = row0 + r;");
    let _ = writeln!(o, "            if (m < M) {{");
    let _ = writeln!(o, "                var v = act(acc[r] + bias);");
    if e.residual {
        let res = if e.residual_is_src { "src" } else { "residual" };
        let _ = writeln!(o, "                v = v + {res}[(n * M + m) * N4 + col4];");
    }
    if e.store {
        let _ = writeln!(o, "                dst[(n * M + m) * N4 + col4] = v;");
    }
    let _ = writeln!(o, "                psum = psum + v;");
    let _ = writeln!(o, "            }}");
    let _ = writeln!(o, "        }}");
    let _ = writeln!(o, "    }}");
    if e.pool {
        let rows = g.tile_m / g.rows_per_thread;
        let _ = writeln!(o, "    pool_tile[lid.y][lid.x] = psum;");
        let _ = writeln!(o, "    workgroupBarrier();");
        let _ = writeln!(o, "    if (lid.y == 0u && col4 < N4) {{");
        let _ = writeln!(o, "        var s = vec4<f32>(0.0);");
        let _ = writeln!(o, "        for (var r = 0u; r < {rows}u; r = r + 1u) {{\n            s = s + pool_tile[r][lid.x];\n        }}");
        let _ = writeln!(o, "        pool[(n * TILES_M + wg.y) * N4 + col4] = s;");
        let _ = writeln!(o, "    }}");
    } else {
        let _ = writeln!(o, "    _ = psum;");
    }
    let _ = writeln!(o, "}}");
}

fn depthwise(o: &mut String, k: &Kernel, d: &DwOp) {
    let t = &d.tiles;
    let _ = writeln!(o, "const C4: u32 = {}u;        // channels in vec4s", d.c4);
    let _ = writeln!(o, "const KSIZE: u32 = {}u;", d.kernel);
    let _ = writeln!(o, "const STRIDE: u32 = {}u;", d.stride);
    let _ = writeln!(o, "const PAD_TOP: i32 = {};", d.pad_top);
    let _ = writeln!(o, "const PAD_LEFT: i32 = {};", d.pad_left);
    let _ = writeln!(o, "const IN_H: i32 = {};", d.in_h);
    let _ = writeln!(o, "const IN_W: i32 = {};", d.in_w);
    let _ = writeln!(o, "const OUT_W: u32 = {}u;", d.out_w);
    let _ = writeln!(
        o,
        "const M: u32 = {}u;        // output pixels per image ({}x{})",
        d.out_h * d.out_w,
        d.out_h,
        d.out_w
    );
    let _ = writeln!(
        o,
        "const RUN: u32 = {}u;      // adjacent output pixels per invocation step",
        t.run
    );
    let _ = writeln!(
        o,
        "const RUNS_W: u32 = {}u;   // runs per output row",
        d.runs_w()
    );
    let _ = writeln!(
        o,
        "const RUNS: u32 = {}u;     // runs per image",
        d.out_h * d.runs_w()
    );
    let _ = writeln!(
        o,
        "const SEG: u32 = {}u;      // input pixels of one row that a run reads",
        (t.run - 1) * d.stride + d.kernel
    );
    let _ = writeln!(o, "const TILE_RUNS: u32 = {}u;", t.tile_runs);
    let _ = writeln!(o, "const LANES_C4: u32 = {}u;", t.lanes_c4);
    let _ = writeln!(o, "const LANES_RUN: u32 = {}u;", t.lanes_run);
    let _ = writeln!(o, "const TILES: u32 = {}u;", d.tiles());
    let _ = writeln!(o);
    if d.pool {
        let _ = writeln!(
            o,
            "var<workgroup> pool_tile: array<array<vec4<f32>, LANES_C4>, LANES_RUN>;\n"
        );
    }
    act_fn(o, "act", d.act);
    let _ = writeln!(
        o,
        "@compute @workgroup_size({}, {}, 1)",
        k.workgroup[0], k.workgroup[1]
    );
    let _ = writeln!(o, "fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {{");
    let _ = writeln!(o, "    let n = wg.z;");
    let _ = writeln!(o, "    let c4 = wg.x * LANES_C4 + lid.x;");
    let _ = writeln!(o, "    var psum = vec4<f32>(0.0);");
    let _ = writeln!(o, "    if (c4 < C4) {{");
    let _ = writeln!(o, "        let bias = weights[KSIZE * KSIZE * C4 + c4];");
    let _ = writeln!(
        o,
        "        for (var r = lid.y; r < TILE_RUNS; r = r + LANES_RUN) {{"
    );
    let _ = writeln!(o, "            let run = wg.y * TILE_RUNS + r;");
    let _ = writeln!(
        o,
        "            if (run >= RUNS) {{\n                break;\n            }}"
    );
    let _ = writeln!(o, "            let oy = run / RUNS_W;");
    let _ = writeln!(o, "            let ox0 = (run % RUNS_W) * RUN;");
    let _ = writeln!(o, "            let ix0 = i32(ox0 * STRIDE) - PAD_LEFT;");
    let _ = writeln!(o, "            var acc: array<vec4<f32>, RUN>;");
    let _ = writeln!(
        o,
        "            for (var ky = 0u; ky < KSIZE; ky = ky + 1u) {{"
    );
    let _ = writeln!(
        o,
        "                let iy = i32(oy * STRIDE + ky) - PAD_TOP;"
    );
    let _ = writeln!(o, "                if (iy < 0 || iy >= IN_H) {{\n                    continue;\n                }}");
    let _ = writeln!(
        o,
        "                // the row's input pixels, loaded once for all taps and pixels of the run"
    );
    let _ = writeln!(
        o,
        "                let row = (n * u32(IN_H) + u32(iy)) * u32(IN_W);"
    );
    let _ = writeln!(o, "                var seg: array<vec4<f32>, SEG>;");
    let _ = writeln!(
        o,
        "                for (var i = 0u; i < SEG; i = i + 1u) {{"
    );
    let _ = writeln!(o, "                    let ix = ix0 + i32(i);");
    let _ = writeln!(o, "                    if (ix >= 0 && ix < IN_W) {{\n                        seg[i] = src[(row + u32(ix)) * C4 + c4];\n                    }}");
    let _ = writeln!(o, "                }}");
    let _ = writeln!(
        o,
        "                for (var kx = 0u; kx < KSIZE; kx = kx + 1u) {{"
    );
    let _ = writeln!(
        o,
        "                    let w = weights[(ky * KSIZE + kx) * C4 + c4];"
    );
    let _ = writeln!(o, "                    for (var j = 0u; j < RUN; j = j + 1u) {{\n                        acc[j] = acc[j] + seg[j * STRIDE + kx] * w;\n                    }}");
    let _ = writeln!(o, "                }}");
    let _ = writeln!(o, "            }}");
    let _ = writeln!(o, "            for (var j = 0u; j < RUN; j = j + 1u) {{");
    let _ = writeln!(o, "                let ox = ox0 + j;");
    let _ = writeln!(o, "                if (ox < OUT_W) {{");
    let _ = writeln!(o, "                    let v = act(acc[j] + bias);");
    let _ = writeln!(
        o,
        "                    dst[(n * M + oy * OUT_W + ox) * C4 + c4] = v;"
    );
    let _ = writeln!(o, "                    psum = psum + v;");
    let _ = writeln!(o, "                }}");
    let _ = writeln!(o, "            }}");
    let _ = writeln!(o, "        }}");
    let _ = writeln!(o, "    }}");
    if d.pool {
        let _ = writeln!(
            o,
            "    // SE pooling: this tile's sums, one vec4 per channel group."
        );
        let _ = writeln!(o, "    pool_tile[lid.y][lid.x] = psum;");
        let _ = writeln!(o, "    workgroupBarrier();");
        let _ = writeln!(o, "    if (lid.y == 0u && c4 < C4) {{");
        let _ = writeln!(o, "        var s = vec4<f32>(0.0);");
        let _ = writeln!(o, "        for (var r = 0u; r < LANES_RUN; r = r + 1u) {{\n            s = s + pool_tile[r][lid.x];\n        }}");
        let _ = writeln!(o, "        pool[(n * TILES + wg.y) * C4 + c4] = s;");
        let _ = writeln!(o, "    }}");
    } else {
        let _ = writeln!(o, "    _ = psum;");
    }
    let _ = writeln!(o, "}}");
}

fn se(o: &mut String, s: &SeOp) {
    let r4 = s.reduced.div_ceil(4);
    let _ = writeln!(
        o,
        "const C4: u32 = {}u;        // channels in vec4s ({} channels)",
        s.c4, s.c
    );
    let _ = writeln!(o, "const R: u32 = {}u;         // reduced width", s.reduced);
    let _ = writeln!(o, "const R4: u32 = {r4}u;");
    let _ = writeln!(
        o,
        "const TILES: u32 = {}u;     // pooling partial sums to add",
        s.tiles
    );
    let _ = writeln!(
        o,
        "const INV_HW: f32 = {:?};   // 1 / {} pixels",
        1.0f32 / s.hw as f32,
        s.hw
    );
    let _ = writeln!(
        o,
        "const GATE_STRIDE: u32 = {}u; // gate vec4s per image: C4 gate + R4 hidden",
        s.c4 + r4
    );
    let _ = writeln!(
        o,
        "// weights: reduce [R][C4], expand^T [R][C4], expand bias [C4], reduce bias [R4]"
    );
    let _ = writeln!(o, "const W2: u32 = R * C4;\nconst B2: u32 = 2u * R * C4;\nconst B1: u32 = 2u * R * C4 + C4;\n");
    act_fn(o, "act", Some(s.act));
    let _ = writeln!(o, "fn sigmoid(x: vec4<f32>) -> vec4<f32> {{\n    return vec4<f32>(1.0) / (vec4<f32>(1.0) + exp(-x));\n}}\n");
    let _ = writeln!(o, "@compute @workgroup_size(64, 1, 1)");
    let _ = writeln!(o, "fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {{");
    let _ = writeln!(o, "    let n = wg.z;");
    let _ = writeln!(o, "    let base = n * GATE_STRIDE;");
    let _ = writeln!(o, "    // 1. global average pool from the partial sums");
    let _ = writeln!(o, "    for (var c = li; c < C4; c = c + 64u) {{");
    let _ = writeln!(o, "        var s = vec4<f32>(0.0);");
    let _ = writeln!(o, "        for (var t = 0u; t < TILES; t = t + 1u) {{\n            s = s + pool[(n * TILES + t) * C4 + c];\n        }}");
    let _ = writeln!(o, "        gate[base + c] = s * INV_HW;");
    let _ = writeln!(o, "    }}");
    let _ = writeln!(o, "    storageBarrier();\n    workgroupBarrier();");
    let _ = writeln!(
        o,
        "    // 2. reduce: hidden = act(W1 · pooled + b1), four hidden units per invocation"
    );
    let _ = writeln!(o, "    for (var r4 = li; r4 < R4; r4 = r4 + 64u) {{");
    let _ = writeln!(o, "        var h = vec4<f32>(0.0);");
    let _ = writeln!(o, "        for (var j = 0u; j < 4u; j = j + 1u) {{");
    let _ = writeln!(o, "            let r = r4 * 4u + j;");
    let _ = writeln!(o, "            if (r < R) {{");
    let _ = writeln!(o, "                var d = vec4<f32>(0.0);");
    let _ = writeln!(o, "                for (var c = 0u; c < C4; c = c + 1u) {{\n                    d = d + gate[base + c] * weights[r * C4 + c];\n                }}");
    let _ = writeln!(
        o,
        "                h[j] = d.x + d.y + d.z + d.w + weights[B1 + r4][j];"
    );
    let _ = writeln!(o, "            }}");
    let _ = writeln!(o, "        }}");
    let _ = writeln!(o, "        gate[base + C4 + r4] = act(h);");
    let _ = writeln!(o, "    }}");
    let _ = writeln!(o, "    storageBarrier();\n    workgroupBarrier();");
    let _ = writeln!(o, "    // 3. expand: gate = sigmoid(W2 · hidden + b2)");
    let _ = writeln!(o, "    for (var c = li; c < C4; c = c + 64u) {{");
    let _ = writeln!(o, "        var g = weights[B2 + c];");
    let _ = writeln!(o, "        for (var r = 0u; r < R; r = r + 1u) {{\n            g = g + gate[base + C4 + r / 4u][r % 4u] * weights[W2 + r * C4 + c];\n        }}");
    let _ = writeln!(o, "        gate[base + c] = sigmoid(g);");
    let _ = writeln!(o, "    }}");
    let _ = writeln!(o, "}}");
}

fn classifier(o: &mut String, h: &ClassifierOp) {
    let _ = writeln!(o, "const C: u32 = {}u;          // features", h.c);
    let _ = writeln!(o, "const C4: u32 = {}u;", h.c4);
    let _ = writeln!(
        o,
        "const TILES: u32 = {}u;      // pooling partial sums to add",
        h.tiles
    );
    let _ = writeln!(
        o,
        "const INV_HW: f32 = {:?};    // 1 / {} pixels",
        1.0f32 / h.hw as f32,
        h.hw
    );
    if h.classes > 0 {
        let _ = writeln!(
            o,
            "const CLASSES: u32 = {}u;\n// weights: [CLASSES][C4], then the bias",
            h.classes
        );
        let _ = writeln!(o, "const BIAS: u32 = CLASSES * C4;\n");
        let _ = writeln!(o, "@compute @workgroup_size(64, 1, 1)");
        let _ = writeln!(o, "fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {{");
        let _ = writeln!(o, "    let n = wg.z;");
        let _ = writeln!(o, "    let j = wg.x * 64u + lid.x;");
        let _ = writeln!(o, "    if (j >= CLASSES) {{\n        return;\n    }}");
        let _ = writeln!(o, "    var acc = vec4<f32>(0.0);");
        let _ = writeln!(o, "    for (var c = 0u; c < C4; c = c + 1u) {{");
        let _ = writeln!(o, "        var s = vec4<f32>(0.0);");
        let _ = writeln!(o, "        for (var t = 0u; t < TILES; t = t + 1u) {{\n            s = s + pool[(n * TILES + t) * C4 + c];\n        }}");
        let _ = writeln!(o, "        acc = acc + s * weights[j * C4 + c];");
        let _ = writeln!(o, "    }}");
        let _ = writeln!(o, "    dst[n * CLASSES + j] = (acc.x + acc.y + acc.z + acc.w) * INV_HW + weights[BIAS + j / 4u][j % 4u];");
        let _ = writeln!(o, "}}");
    } else {
        let _ = writeln!(o, "\n// No classifier: the output is the pooled features.");
        let _ = writeln!(o, "@compute @workgroup_size(64, 1, 1)");
        let _ = writeln!(o, "fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {{");
        let _ = writeln!(o, "    let n = wg.z;");
        let _ = writeln!(o, "    let c = wg.x * 64u + lid.x;");
        let _ = writeln!(o, "    if (c >= C) {{\n        return;\n    }}");
        let _ = writeln!(o, "    _ = weights[0];");
        let _ = writeln!(o, "    var s = 0.0;");
        let _ = writeln!(o, "    for (var t = 0u; t < TILES; t = t + 1u) {{\n        s = s + pool[(n * TILES + t) * C4 + c / 4u][c % 4u];\n    }}");
        let _ = writeln!(o, "    dst[n * C + c] = s * INV_HW;");
        let _ = writeln!(o, "}}");
    }
}
