//! The plan's kernels on the CPU: [`run`] executes one kernel of the plan over the
//! slot buffers, for a batch, splitting it into tasks on the current rayon pool.

use std::sync::Mutex;

use effc_plan::{
    ALoad, ClassifierOp, DwOp, GemmOp, Kernel, Op, Plan, SeOp, TensorId, WeightLayout,
};
use rayon::prelude::*;

use crate::simd::{pack_b, Isa, NR};

/// How a kernel is split into tasks (fixed per kernel, independent of the threads).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shapes {
    /// GEMM: output pixels per tile and tiles per image.
    tm: usize,
    tiles_m: usize,
    /// GEMM: output columns per tile and column tiles.
    tn: usize,
    tiles_n: usize,
}

impl Shapes {
    pub(crate) fn of(k: &Kernel) -> Shapes {
        match &k.op {
            Op::Gemm(g) => {
                let (m, n) = (g.m(), g.cout4 * 4);
                // Row tiles of about m/16 pixels (48 to 144), all of one size but
                // the last, in multiples of 4 (the micro-kernels' rows are 12, 6,
                // 4, with a remainder in blocks of 4).
                let tm = if m <= 96 {
                    m
                } else {
                    let target = (m / 16).next_multiple_of(12).clamp(48, 144);
                    m.div_ceil(m.div_ceil(target)).next_multiple_of(4)
                };
                // Few pixels or few row tiles (the last stages): split the
                // columns too, in whole pairs of panels, so that every thread has
                // work at batch 1.
                let tn = if (m <= 96 || m.div_ceil(tm) < 8) && n >= 128 {
                    (n / 4).next_multiple_of(2 * NR).max(64)
                } else {
                    n
                };
                Shapes {
                    tm,
                    tiles_m: m.div_ceil(tm),
                    tn,
                    tiles_n: n.div_ceil(tn),
                }
            }
            _ => Shapes {
                tm: 0,
                tiles_m: 0,
                tn: 0,
                tiles_n: 0,
            },
        }
    }
}

/// Scratch space, allocated once: per-thread im2col / result tiles, per-task
/// pooling sums, and the gated B operands of a batch.
pub(crate) struct Scratch {
    thread: Vec<Mutex<Vec<f32>>>,
    pool: Vec<f32>,
    gated: Vec<f32>,
    pooled: Vec<f32>,
}

impl Scratch {
    pub(crate) fn new(plan: &Plan, shapes: &[Shapes], batch: usize, threads: usize) -> Scratch {
        let (mut per_thread, mut pool, mut gated, mut pooled) = (0, 0, 0, 0);
        for (k, sh) in plan.kernels.iter().zip(shapes) {
            match &k.op {
                Op::Gemm(g) => {
                    let n = g.cout4 * 4;
                    let mut t = 0;
                    if matches!(g.a, ALoad::Conv { .. }) {
                        t += sh.tm * g.k;
                    }
                    if !g.epilogue.store {
                        t += sh.tm * n;
                    }
                    per_thread = per_thread.max(t);
                    if g.epilogue.pool {
                        pool = pool.max(batch * sh.tiles_m * n);
                    }
                    if matches!(g.a, ALoad::Pointwise { gated: true }) {
                        gated = gated.max(batch * g.k * n.next_multiple_of(NR));
                    }
                }
                Op::Depthwise(d) if d.pool => pool = pool.max(batch * d.out_h * d.c4 * 4),
                Op::Classifier(c) => pooled = pooled.max(c.c4 * 4),
                _ => {}
            }
        }
        Scratch {
            thread: (0..threads)
                .map(|_| Mutex::new(vec![0.0; per_thread]))
                .collect(),
            pool: vec![0.0; pool],
            gated: vec![0.0; gated],
            pooled: vec![0.0; pooled],
        }
    }
}

/// A buffer that tasks write disjoint ranges of.
#[derive(Clone, Copy)]
struct Shared {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: `Shared` is only handed to tasks that write disjoint ranges of it (see
// `range`), while the slice it came from stays mutably borrowed.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    fn new(s: &mut [f32]) -> Shared {
        Shared {
            ptr: s.as_mut_ptr(),
            len: s.len(),
        }
    }

    /// `len` values from `start`.
    ///
    /// # Safety
    /// No two live ranges overlap, and the buffer outlives them.
    #[allow(clippy::mut_from_ref)]
    unsafe fn range<'a>(self, start: usize, len: usize) -> &'a mut [f32] {
        assert!(
            start + len <= self.len,
            "a task's range is inside its buffer"
        );
        std::slice::from_raw_parts_mut(self.ptr.add(start), len)
    }
}

/// The tensor bound as `name`, if any.
fn bound(k: &Kernel, name: &str) -> Option<TensorId> {
    k.bindings
        .iter()
        .find(|b| b.name == name)
        .and_then(|b| b.tensor)
}

/// Values per image of a tensor.
fn per_image(plan: &Plan, t: TensorId) -> usize {
    plan.tensors[t].bytes / 4
}

fn section<'w>(w: &'w [f32], l: &WeightLayout, name: &str) -> &'w [f32] {
    let s = l.section(name);
    &w[s.offset..s.offset + s.len]
}

/// NCHW input → the input tensor (NHWC, channels padded with zeros).
pub(crate) fn load_input(plan: &Plan, input: &[f32], batch: usize, dst: &mut [f32]) {
    let [c, h, w] = plan.input_shape;
    let t = &plan.tensors[plan.input];
    let (c4, per) = (t.c4 * 4, t.bytes / 4);
    dst[..batch * per]
        .par_chunks_mut(per)
        .zip(input.par_chunks(c * h * w))
        .for_each(|(d, x)| {
            for p in 0..h * w {
                let px = &mut d[p * c4..(p + 1) * c4];
                for (ch, v) in px.iter_mut().enumerate() {
                    *v = if ch < c { x[ch * h * w + p] } else { 0.0 };
                }
            }
        });
}

/// A GEMM kernel's B operand in panels for the micro-kernel ([`pack_b`]); empty
/// for the other kernels.
pub(crate) fn panels(k: &Kernel, w: &[f32]) -> Vec<f32> {
    match &k.op {
        Op::Gemm(g) => pack_b(section(w, &k.layout, "B"), g.k, g.cout4 * 4),
        _ => Vec::new(),
    }
}

/// Runs kernel `k` (packed weights `w`, B in `panels`) for `batch` images over
/// the slot buffers, with the kernels compiled for `isa`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    isa: Isa,
    plan: &Plan,
    k: &Kernel,
    w: &[f32],
    panels: &[f32],
    sh: &Shapes,
    slots: &mut [Vec<f32>],
    scratch: &mut Scratch,
    batch: usize,
) {
    // The kernel's outputs are taken out of their slots (the memory plan puts a
    // kernel's inputs and outputs in different slots) and put back after.
    let slot = |t: TensorId| plan.tensors[t].slot.index();
    let mut written = [None; 2];
    for (i, t) in k.tensors_written().enumerate() {
        written[i] = Some(t);
    }
    let mut outs: [Vec<f32>; 2] = [Vec::new(), Vec::new()];
    for (o, t) in outs.iter_mut().zip(written.iter().flatten()) {
        *o = std::mem::take(&mut slots[slot(*t)]);
    }
    {
        let slots: &[Vec<f32>] = slots;
        let read = |name: &str| bound(k, name).map(|t| (&slots[slot(t)][..], per_image(plan, t)));
        // Each written binding (`dst`, `pool`, `gate`) with its buffer.
        let [o0, o1] = &mut outs;
        let mut bufs = [Some(&mut o0[..]), Some(&mut o1[..])];
        let mut write = |name: &str| -> Option<BufMut<'_>> {
            let t = bound(k, name)?;
            let i = written.iter().position(|&x| x == Some(t))?;
            Some((bufs[i].take()?, per_image(plan, t)))
        };
        let dst = write("dst");
        let pool = write("pool");
        let gate = write("gate");
        match &k.op {
            Op::Gemm(g) => {
                let src = read("src").expect("a GEMM reads `src`");
                let residual = if g.epilogue.residual_is_src {
                    Some(src)
                } else {
                    read("residual")
                };
                gemm(
                    isa,
                    g,
                    sh,
                    w,
                    panels,
                    &k.layout,
                    Io {
                        src,
                        gate: read("gate"),
                        residual,
                        dst,
                        pool,
                    },
                    scratch,
                    batch,
                );
            }
            Op::Depthwise(d) => {
                let src = read("src").expect("a depthwise conv reads `src`");
                let dst = dst.expect("a depthwise conv writes `dst`");
                depthwise(isa, d, w, &k.layout, src, dst, pool, scratch, batch);
            }
            Op::Se(s) => {
                let pool = read("pool").expect("the SE MLP reads `pool`");
                let gate = gate.expect("the SE MLP writes `gate`");
                se(s, w, &k.layout, pool, gate, batch);
            }
            Op::Classifier(c) => {
                let pool = read("pool").expect("the classifier reads `pool`");
                let dst = dst.expect("the classifier writes `dst`");
                classifier(c, w, &k.layout, pool, dst, &mut scratch.pooled, batch);
            }
        }
    }
    for (o, t) in outs.into_iter().zip(written.iter().flatten()) {
        slots[slot(*t)] = o;
    }
}

/// A buffer of a whole batch and its values per image.
type Buf<'a> = (&'a [f32], usize);
type BufMut<'a> = (&'a mut [f32], usize);

struct Io<'a> {
    src: Buf<'a>,
    gate: Option<Buf<'a>>,
    residual: Option<Buf<'a>>,
    dst: Option<BufMut<'a>>,
    pool: Option<BufMut<'a>>,
}

/// Calls `$body::<…>(args)` compiled for `isa`: each ISA's copy of the body is
/// built inside a function with that ISA's target features.
macro_rules! dispatch {
    ($isa:expr, $body:ident, ($($arg:expr),*)) => {{
        #[cfg(all(target_arch = "x86_64", effc_avx512))]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn avx512(cx: &$body::Cx<'_>, task: usize) {
            $body::run::<{ crate::simd::MR512 }, { crate::simd::P512 }, true, true, false>(cx, task)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(cx: &$body::Cx<'_>, task: usize) {
            $body::run::<6, 1, true, false, false>(cx, task)
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        fn simd128(cx: &$body::Cx<'_>, task: usize) {
            $body::run::<4, 1, false, false, true>(cx, task)
        }
        fn portable(cx: &$body::Cx<'_>, task: usize) {
            $body::run::<4, 1, false, false, false>(cx, task)
        }
        match $isa {
            // SAFETY: `Isa::available` checked these features when the model was
            // created (`CpuModel::with_isa` refuses an ISA the CPU lacks).
            #[cfg(all(target_arch = "x86_64", effc_avx512))]
            Isa::Avx512 => unsafe { avx512($($arg),*) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2($($arg),*) },
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => simd128($($arg),*),
            #[allow(unreachable_patterns)]
            _ => portable($($arg),*),
        }
    }};
}

/// The activation, in AVX-512 intrinsics where `X512` (set only in the AVX-512
/// copies of the kernels).
#[inline(always)]
fn act<const X512: bool>(v: &mut [f32], act: Option<effc_ir::Activation>) {
    #[cfg(all(target_arch = "x86_64", effc_avx512))]
    if X512 {
        // SAFETY: X512 is set only in the AVX-512 copies, which run on CPUs
        // that have it.
        return unsafe { crate::simd::avx512::activate(v, act) };
    }
    crate::simd::activate(v, act)
}

/// Scales the packed B panels by the SE gate (per input channel, i.e. per row of
/// B), for every image: `dst[b]` = `packed` with row l times `gate[b][l]`.
fn gate_panels(packed: &[f32], k: usize, gate: Buf<'_>, dst: &mut [f32], batch: usize) {
    let (gate, gate_per) = gate;
    let (len, panels) = (packed.len(), packed.len() / (k * NR));
    // One task per panel of every image.
    dst[..batch * len]
        .par_chunks_mut(k * NR)
        .enumerate()
        .for_each(|(i, dp)| {
            let (b, p) = (i / panels, i % panels);
            let gate = &gate[b * gate_per..b * gate_per + k];
            let sp = &packed[p * k * NR..(p + 1) * k * NR];
            for (l, &g) in gate.iter().enumerate() {
                let d: &mut [f32; NR] = (&mut dp[l * NR..(l + 1) * NR]).try_into().unwrap();
                let s: &[f32; NR] = sp[l * NR..(l + 1) * NR].try_into().unwrap();
                for j in 0..NR {
                    d[j] = s[j] * g;
                }
            }
        });
}

/// A convolution as a GEMM over tiles of output pixels × columns, for every image:
/// A is the input (1x1) or its patches gathered per tile (kxk), B the kernel's
/// packed panels (scaled by the SE gate per image first, when gated); the
/// epilogue adds the bias, activates, adds the residual, stores and sums for the
/// pool, a micro-kernel's rows at a time while they are in cache.
#[allow(clippy::too_many_arguments)]
fn gemm(
    isa: Isa,
    g: &GemmOp,
    sh: &Shapes,
    w: &[f32],
    packed: &[f32],
    l: &WeightLayout,
    io: Io<'_>,
    scratch: &mut Scratch,
    batch: usize,
) {
    let (k, n) = (g.k, g.cout4 * 4);
    let (b, b_per) = match io.gate {
        Some(gate) => {
            gate_panels(packed, k, gate, &mut scratch.gated, batch);
            (&scratch.gated[..batch * packed.len()], packed.len())
        }
        None => (packed, 0),
    };
    let (dst, dst_per) = match io.dst {
        Some((d, per)) => (Some(Shared::new(d)), per),
        None => (None, 0),
    };
    let pool = io
        .pool
        .is_some()
        .then(|| Shared::new(&mut scratch.pool[..batch * sh.tiles_m * n]));
    let cx = gemm_task::Cx {
        g,
        sh: *sh,
        b,
        b_per,
        bias: section(w, l, "BIAS"),
        src: io.src,
        residual: io.residual,
        dst,
        dst_per,
        pool,
        threads: &scratch.thread,
    };
    (0..batch * sh.tiles_m * sh.tiles_n)
        .into_par_iter()
        .for_each(|task| dispatch!(isa, gemm_task, (&cx, task)));
    if let Some((p, per)) = io.pool {
        reduce_tiles(&scratch.pool, sh.tiles_m, n, p, per, batch);
    }
}

/// One task of a GEMM: rows `r0..r0 + rows` × columns `c0..c0 + cols` of one image.
mod gemm_task {
    use std::sync::Mutex;

    use effc_plan::{ALoad, GemmOp};

    use super::{act, Buf, Shapes, Shared};
    use crate::simd::{tile, NR};

    /// Bytes of a task's B from which its panels are the outer loop.
    const BIG_B: usize = 256 << 10;

    pub(super) struct Cx<'a> {
        pub g: &'a GemmOp,
        pub sh: Shapes,
        /// Packed panels of B; image b's start at `b·b_per` (0 when not gated).
        pub b: &'a [f32],
        pub b_per: usize,
        pub bias: &'a [f32],
        pub src: Buf<'a>,
        pub residual: Option<Buf<'a>>,
        pub dst: Option<Shared>,
        pub dst_per: usize,
        /// Per-task pooling sums (`n` per row tile of every image).
        pub pool: Option<Shared>,
        pub threads: &'a [Mutex<Vec<f32>>],
    }

    /// `X512`: the micro-kernel in AVX-512 intrinsics (the CPU has them); `W128`:
    /// in SIMD128 intrinsics (a wasm32 build with `+simd128`).
    #[inline(always)]
    pub(super) fn run<
        const MR: usize,
        const P: usize,
        const FMA: bool,
        const X512: bool,
        const W128: bool,
    >(
        cx: &Cx<'_>,
        task: usize,
    ) {
        let (g, sh) = (cx.g, &cx.sh);
        let (m, k, n) = (g.m(), g.k, g.cout4 * 4);
        let per_image = sh.tiles_m * sh.tiles_n;
        let (b, rest) = (task / per_image, task % per_image);
        let (tile_m, ct) = (rest / sh.tiles_n, rest % sh.tiles_n);
        let r0 = tile_m * sh.tm;
        let rows = sh.tm.min(m - r0);
        let c0 = ct * sh.tn;
        let cols = sh.tn.min(n - c0);
        let bmat = &cx.b[b * cx.b_per..];
        let (src, src_per) = cx.src;
        let x = &src[b * src_per..(b + 1) * src_per];
        let me = rayon::current_thread_index().unwrap_or(0);
        let mut guard = cx.threads[me % cx.threads.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (col, cbuf) = guard.split_at_mut(match g.a {
            ALoad::Conv { .. } => sh.tm * k,
            ALoad::Pointwise { .. } => 0,
        });
        let a: &[f32] = match g.a {
            ALoad::Pointwise { .. } => &x[r0 * k..(r0 + rows) * k],
            ALoad::Conv {
                kernel,
                stride,
                pad_top,
                pad_left,
                in_h,
                in_w,
            } => {
                let cin = g.cin4 * 4;
                for (i, row) in col.chunks_exact_mut(k).take(rows).enumerate() {
                    let p = r0 + i;
                    let (oy, ox) = (p / g.out_w, p % g.out_w);
                    for ky in 0..kernel {
                        let iy = (oy * stride + ky).wrapping_sub(pad_top);
                        for kx in 0..kernel {
                            let ix = (ox * stride + kx).wrapping_sub(pad_left);
                            let seg = &mut row[(ky * kernel + kx) * cin..][..cin];
                            if iy < in_h && ix < in_w {
                                let at = (iy * in_w + ix) * cin;
                                seg.copy_from_slice(&x[at..at + cin]);
                            } else {
                                seg.fill(0.0);
                            }
                        }
                    }
                }
                &col[..rows * k]
            }
        };
        // Where the tile's result goes: the output, or this thread's scratch.
        let (out, at, ldc) = match cx.dst {
            Some(d) => (d, b * cx.dst_per + r0 * n + c0, n),
            None => (Shared::new(&mut cbuf[..rows * cols]), 0, cols),
        };
        assert!(
            at + (rows - 1) * ldc + cols <= out.len,
            "the tile is inside its output"
        );
        let res = cx
            .residual
            .map(|(r, per)| &r[b * per + r0 * n..b * per + (r0 + rows) * n]);
        // SAFETY: task (b, tile_m, ct) alone writes these sums (and rows r0..r0+rows,
        // columns c0..c0+cols of image b's output); the scratch tile is this
        // thread's (locked).
        let mut sums = cx
            .pool
            .map(|p| unsafe { p.range((b * sh.tiles_m + tile_m) * n + c0, cols) });
        if let Some(s) = sums.as_deref_mut() {
            s.fill(0.0);
        }
        let bias = &cx.bias[c0..c0 + cols];
        let (p0, p_end) = (c0 / NR, (c0 + cols).div_ceil(NR));
        // Full micro-kernel rows, then blocks of 4 for the remainder.
        let block = |i0: usize| {
            if rows - i0 >= MR {
                MR
            } else {
                4.min(rows - i0)
            }
        };
        // Rows i0..i0 + ir × the panels from p on (P where there are, else 2,
        // else 1); evaluates to the panels done. Macros, not closures: a closure
        // is a function of its own, compiled without the ISA's target features
        // (the portable micro-kernel inlined there lost its FMA and vectors).
        macro_rules! mul {
            ($i0:expr, $ir:expr, $p:expr) => {{
                let (i0, ir, p): (usize, usize, usize) = ($i0, $ir, $p);
                let j0 = (p - p0) * NR;
                let panels = if p + P <= p_end {
                    P
                } else if P > 2 && p + 2 <= p_end {
                    2
                } else {
                    1
                };
                let w = (panels * NR).min(cols - j0);
                let a_rows = &a[i0 * k..];
                let bp = &bmat[p * k * NR..];
                // SAFETY: out[at + (i0 + i)·ldc + j0 + j] for i < ir, j < w lies in
                // this task's rows and columns (asserted inside its output above),
                // which only this task touches.
                let c = unsafe { out.ptr.add(at + i0 * ldc + j0) };
                #[cfg(all(target_arch = "x86_64", effc_avx512))]
                let done = X512;
                #[cfg(not(all(target_arch = "x86_64", effc_avx512)))]
                let done = false;
                #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                let done = done || {
                    if W128 && panels == 1 {
                        // SAFETY: as above; one panel, ir ≤ MR rows.
                        unsafe { crate::simd::wasm::tile::<MR>(a_rows, k, ir, k, bp, c, ldc, w) };
                        true
                    } else {
                        false
                    }
                };
                #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
                let _ = W128;
                #[cfg(all(target_arch = "x86_64", effc_avx512))]
                if X512 {
                    use crate::simd::avx512::tile as t;
                    // SAFETY: as above; X512 is only set in the AVX-512 copy, which
                    // runs on CPUs that have it.
                    unsafe {
                        match (ir == MR, panels) {
                            (true, 1) => t::<MR, 1>(a_rows, k, ir, k, bp, c, ldc, w),
                            (true, 2) => t::<MR, 2>(a_rows, k, ir, k, bp, c, ldc, w),
                            (true, _) => t::<MR, P>(a_rows, k, ir, k, bp, c, ldc, w),
                            (false, 1) => t::<4, 1>(a_rows, k, ir, k, bp, c, ldc, w),
                            (false, 2) => t::<4, 2>(a_rows, k, ir, k, bp, c, ldc, w),
                            (false, _) => t::<4, P>(a_rows, k, ir, k, bp, c, ldc, w),
                        }
                    }
                }
                if !done {
                    // SAFETY: as above.
                    unsafe {
                        match (ir == MR, panels) {
                            (true, 1) => tile::<MR, 1, FMA>(a_rows, k, ir, k, bp, c, ldc, w),
                            (true, 2) => tile::<MR, 2, FMA>(a_rows, k, ir, k, bp, c, ldc, w),
                            (true, _) => tile::<MR, P, FMA>(a_rows, k, ir, k, bp, c, ldc, w),
                            (false, 1) => tile::<4, 1, FMA>(a_rows, k, ir, k, bp, c, ldc, w),
                            (false, 2) => tile::<4, 2, FMA>(a_rows, k, ir, k, bp, c, ldc, w),
                            (false, _) => tile::<4, P, FMA>(a_rows, k, ir, k, bp, c, ldc, w),
                        }
                    }
                }
                panels
            }};
        }
        macro_rules! epilogue {
            ($i0:expr, $i1:expr) => {
                for i in $i0..$i1 {
                    // SAFETY: as above; the micro-kernel calls have returned.
                    let row = unsafe { out.range(at + i * ldc, cols) };
                    for (v, &bv) in row.iter_mut().zip(bias) {
                        *v += bv;
                    }
                    act::<X512>(row, g.epilogue.act);
                    if let Some(r) = res {
                        for (v, &rv) in row.iter_mut().zip(&r[i * n + c0..i * n + c0 + cols]) {
                            *v += rv;
                        }
                    }
                    if let Some(s) = sums.as_deref_mut() {
                        for (a, &v) in s.iter_mut().zip(row.iter()) {
                            *a += v;
                        }
                    }
                }
            };
        }
        if k * (p_end - p0) * NR * 4 > BIG_B {
            // A large B (the last stages): each group of panels is read from
            // memory once and reused across all the tile's rows; the epilogue
            // then runs over the tile.
            let mut p = p0;
            while p < p_end {
                let (mut i0, mut done) = (0, 1);
                while i0 < rows {
                    let ir = block(i0);
                    done = mul!(i0, ir, p);
                    i0 += ir;
                }
                p += done;
            }
            epilogue!(0, rows);
        } else {
            // A small B stays in cache: a block of rows at a time, all panels,
            // then its epilogue while its results are in L1.
            let mut i0 = 0;
            while i0 < rows {
                let ir = block(i0);
                let mut p = p0;
                while p < p_end {
                    p += mul!(i0, ir, p);
                }
                epilogue!(i0, i0 + ir);
                i0 += ir;
            }
        }
    }
}

/// Adds the per-tile sums (`tiles` rows of `n` per image) into the first row of
/// the plan's partial-sum tensor.
fn reduce_tiles(sums: &[f32], tiles: usize, n: usize, p: &mut [f32], per: usize, batch: usize) {
    for b in 0..batch {
        let dst = &mut p[b * per..b * per + n];
        dst.fill(0.0);
        for t in sums[b * tiles * n..(b + 1) * tiles * n].chunks_exact(n) {
            for (d, &v) in dst.iter_mut().zip(t) {
                *d += v;
            }
        }
    }
}

/// Depthwise kxk conv + bias + activation, one task per output row of an image,
/// with the row's sums for the SE pool: 16 channels at a time (then 4) held in
/// registers over the row's pixels.
#[allow(clippy::too_many_arguments)]
fn depthwise(
    isa: Isa,
    d: &DwOp,
    w: &[f32],
    l: &WeightLayout,
    src: Buf<'_>,
    (dst, dst_per): BufMut<'_>,
    pool: Option<BufMut<'_>>,
    scratch: &mut Scratch,
    batch: usize,
) {
    let c = d.c4 * 4;
    let cx = dw_task::Cx {
        d,
        taps: section(w, l, "TAPS"),
        bias: &section(w, l, "BIAS")[..c],
        src,
        dst: Shared::new(dst),
        dst_per,
        sums: pool
            .is_some()
            .then(|| Shared::new(&mut scratch.pool[..batch * d.out_h * c])),
    };
    (0..batch * d.out_h)
        .into_par_iter()
        .for_each(|task| dispatch!(isa, dw_task, (&cx, task)));
    if let Some((p, per)) = pool {
        reduce_tiles(&scratch.pool, d.out_h, c, p, per, batch);
    }
}

/// One task of a depthwise conv: output row `oy` of image `b`.
mod dw_task {
    use effc_plan::DwOp;

    use super::{Buf, Shared};
    use crate::simd::fma;

    pub(super) struct Cx<'a> {
        pub d: &'a DwOp,
        pub taps: &'a [f32],
        pub bias: &'a [f32],
        pub src: Buf<'a>,
        pub dst: Shared,
        pub dst_per: usize,
        /// Per-row pooling sums (`c` per output row of every image).
        pub sums: Option<Shared>,
    }

    /// `_MR` and `_P` are the GEMM's; the lanes here are channels (the compiler
    /// vectorizes them, into `f32x4` on wasm32 with SIMD128, `W`).
    #[inline(always)]
    pub(super) fn run<
        const _MR: usize,
        const _P: usize,
        const FMA: bool,
        const X: bool,
        const W: bool,
    >(
        cx: &Cx<'_>,
        task: usize,
    ) {
        let d = cx.d;
        let c = d.c4 * 4;
        let (b, oy) = (task / d.out_h, task % d.out_h);
        let (src, src_per) = cx.src;
        let x = &src[b * src_per..(b + 1) * src_per];
        // SAFETY: task (b, oy) alone writes output row oy of image b and its sums.
        let row = unsafe { cx.dst.range(b * cx.dst_per + oy * d.out_w * c, d.out_w * c) };
        // 64 channels at a time where there are: four independent chains of
        // FMAs per tap (one chain waits on each FMA's latency). Not in SIMD128,
        // whose 16 f32x4 accumulators would not stay in the 16 registers wasm
        // engines map them to.
        let mut c0 = 0;
        while !W && c0 + 64 <= c {
            channels::<64, FMA>(cx, x, oy, row, c0);
            c0 += 64;
        }
        while c0 + 16 <= c {
            channels::<16, FMA>(cx, x, oy, row, c0);
            c0 += 16;
        }
        while c0 < c {
            channels::<4, FMA>(cx, x, oy, row, c0);
            c0 += 4;
        }
        // The activation in a pass of its own over the row (in L1): inside the
        // loop over taps it keeps the compiler from vectorizing that loop.
        super::act::<X>(row, d.act);
        if let Some(s) = cx.sums {
            // SAFETY: as above.
            let s = unsafe { s.range(task * c, c) };
            s.fill(0.0);
            for px in row.chunks_exact(c) {
                for (a, &v) in s.iter_mut().zip(px) {
                    *a += v;
                }
            }
        }
    }

    /// Channels `c0..c0 + W` of one output row.
    #[inline(always)]
    fn channels<const W: usize, const FMA: bool>(
        cx: &Cx<'_>,
        x: &[f32],
        oy: usize,
        row: &mut [f32],
        c0: usize,
    ) {
        // Locals, so that nothing the loops read can alias the row they write.
        let DwOp {
            in_h,
            in_w,
            out_w,
            kernel,
            stride,
            pad_top,
            pad_left,
            ..
        } = *cx.d;
        let c = cx.d.c4 * 4;
        let taps = cx.taps;
        let bias: [f32; W] = cx.bias[c0..c0 + W].try_into().unwrap();
        for ox in 0..out_w {
            let mut acc = bias;
            for ky in 0..kernel {
                let iy = (oy * stride + ky).wrapping_sub(pad_top);
                if iy >= in_h {
                    continue;
                }
                for kx in 0..kernel {
                    let ix = (ox * stride + kx).wrapping_sub(pad_left);
                    if ix >= in_w {
                        continue;
                    }
                    let at = (iy * in_w + ix) * c + c0;
                    let xs: &[f32; W] = x[at..at + W].try_into().unwrap();
                    let at = (ky * kernel + kx) * c + c0;
                    let ws: &[f32; W] = taps[at..at + W].try_into().unwrap();
                    for j in 0..W {
                        acc[j] = fma::<FMA>(xs[j], ws[j], acc[j]);
                    }
                }
            }
            row[ox * c + c0..ox * c + c0 + W].copy_from_slice(&acc);
        }
    }
}

/// `Σ a[i]·b[i]` in eight lanes (so that it vectorizes).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The SE MLP per image: mean of the pooled sums → reduce → act → expand →
/// sigmoid; the gate (`c4·4` values, zeros on padding) then the hidden layer.
fn se(
    s: &SeOp,
    w: &[f32],
    l: &WeightLayout,
    (pool, pool_per): Buf<'_>,
    (gate, gate_per): BufMut<'_>,
    batch: usize,
) {
    let c = s.c4 * 4;
    let (w1, w2) = (l.section("W1"), l.section("W2"));
    let b1 = section(w, l, "B1");
    let b2 = section(w, l, "B2");
    let inv = 1.0 / s.hw as f32;
    for b in 0..batch {
        let sums = &pool[b * pool_per..b * pool_per + c];
        let (g, hidden) = gate[b * gate_per..(b + 1) * gate_per].split_at_mut(c);
        let hidden = &mut hidden[..s.reduced];
        for (r, h) in hidden.iter_mut().enumerate() {
            let row = &w[w1.offset + r * w1.row..][..c];
            let v = dot(row, sums) * inv + b1[r];
            *h = s.act.apply(v);
        }
        g.copy_from_slice(&b2[..c]);
        for (r, &h) in hidden.iter().enumerate() {
            let row = &w[w2.offset + r * w2.row..][..c];
            for (gv, &wv) in g.iter_mut().zip(row) {
                *gv += h * wv;
            }
        }
        for (ch, gv) in g.iter_mut().enumerate() {
            *gv = if ch < s.c {
                1.0 / (1.0 + (-*gv).exp())
            } else {
                0.0
            };
        }
    }
}

/// The classifier per image: the pooled mean, then logits (or the mean itself
/// when there are no classes).
fn classifier(
    op: &ClassifierOp,
    w: &[f32],
    l: &WeightLayout,
    (pool, pool_per): Buf<'_>,
    (dst, dst_per): BufMut<'_>,
    mean: &mut [f32],
    batch: usize,
) {
    let c = op.c4 * 4;
    let inv = 1.0 / op.hw as f32;
    let mean = &mut mean[..c];
    for b in 0..batch {
        for (m, &s) in mean.iter_mut().zip(&pool[b * pool_per..b * pool_per + c]) {
            *m = s * inv;
        }
        let out = &mut dst[b * dst_per..(b + 1) * dst_per];
        if op.classes == 0 {
            out[..op.c].copy_from_slice(&mean[..op.c]);
            continue;
        }
        let ws = l.section("W");
        let bias = section(w, l, "BIAS");
        let mean = &*mean;
        out[..op.classes]
            .par_iter_mut()
            .enumerate()
            .for_each(|(j, o)| {
                *o = dot(&w[ws.offset + j * ws.row..][..c], mean) + bias[j];
            });
    }
}
