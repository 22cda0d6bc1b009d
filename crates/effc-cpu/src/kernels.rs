//! The plan's kernels on the CPU: [`run`] executes one kernel of the plan over the
//! slot buffers, for a batch, splitting it into tasks on the current rayon pool.

use std::sync::Mutex;

use effc_ir::Activation;
use effc_plan::{
    ALoad, ClassifierOp, DwOp, GemmOp, Kernel, Op, Plan, SeOp, TensorId, WeightLayout,
};
use rayon::prelude::*;

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
                let tm = if m <= 64 {
                    m
                } else {
                    (m / 16).next_multiple_of(8).clamp(32, 128)
                };
                // Few pixels (the last stages): split the columns too, so that
                // every thread has work at batch 1.
                let tn = if m <= 64 && n >= 128 {
                    (n / 4).next_multiple_of(16).max(64)
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
                        gated = gated.max(batch * g.k * n);
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

/// Runs kernel `k` (packed weights `w`) for `batch` images over the slot buffers.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    plan: &Plan,
    k: &Kernel,
    w: &[f32],
    sh: &Shapes,
    slots: &mut [Vec<f32>],
    scratch: &mut Scratch,
    batch: usize,
) {
    // The kernel's outputs are taken out of their slots (the memory plan puts a
    // kernel's inputs and outputs in different slots) and put back after.
    let slot = |t: TensorId| plan.tensors[t].slot.index();
    let written: Vec<TensorId> = k.tensors_written().collect();
    debug_assert!(written.len() <= 2);
    let mut outs: [Vec<f32>; 2] = [Vec::new(), Vec::new()];
    for (o, &t) in outs.iter_mut().zip(&written) {
        *o = std::mem::take(&mut slots[slot(t)]);
    }
    {
        let slots: &[Vec<f32>] = slots;
        let read = |name: &str| bound(k, name).map(|t| (&slots[slot(t)][..], per_image(plan, t)));
        // Each written binding (`dst`, `pool`, `gate`) with its buffer.
        let [o0, o1] = &mut outs;
        let mut bufs = [Some(&mut o0[..]), Some(&mut o1[..])];
        let mut write = |name: &str| -> Option<BufMut<'_>> {
            let t = bound(k, name)?;
            let i = written.iter().position(|&x| x == t)?;
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
                    g,
                    sh,
                    w,
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
                depthwise(d, w, &k.layout, src, dst, pool, scratch, batch);
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
    for (o, &t) in outs.into_iter().zip(&written) {
        slots[slot(t)] = o;
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

fn activate(v: &mut [f32], act: Option<Activation>) {
    match act {
        None => {}
        Some(Activation::Relu) => v.iter_mut().for_each(|x| *x = x.max(0.0)),
        Some(Activation::Relu6) => v.iter_mut().for_each(|x| *x = x.clamp(0.0, 6.0)),
        Some(Activation::Swish) => v.iter_mut().for_each(|x| *x /= 1.0 + (-*x).exp()),
    }
}

/// `c[rows×cols] = a[rows×k] · b[k×cols]`, with row strides `lda`, `ldb`, `ldc`;
/// `c` is `out`'s values from `at` on.
///
/// # Safety
/// No other task reads or writes the part of `out` this writes while it runs.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm(
    rows: usize,
    k: usize,
    cols: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    out: Shared,
    at: usize,
    ldc: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(a.len() >= (rows - 1) * lda + k);
    assert!(k == 0 || b.len() >= (k - 1) * ldb + cols);
    assert!(at + (rows - 1) * ldc + cols <= out.len);
    // SAFETY: the assertions bound every index sgemm touches (a[i·lda + l],
    // b[l·ldb + j], out[at + i·ldc + j] for i < rows, l < k, j < cols); `out` is
    // only written here (the caller's contract), so it aliases neither `a` nor `b`.
    matrixmultiply::sgemm(
        rows,
        k,
        cols,
        1.0,
        a.as_ptr(),
        lda as isize,
        1,
        b.as_ptr(),
        ldb as isize,
        1,
        0.0,
        out.ptr.add(at),
        ldc as isize,
        1,
    );
}

/// A convolution as a GEMM over tiles of output pixels × columns, for every image:
/// A is the input (1x1) or its patches gathered per tile (kxk); the epilogue adds
/// the bias, activates, adds the residual, stores and sums for the pool.
#[allow(clippy::too_many_arguments)]
fn gemm(
    g: &GemmOp,
    sh: &Shapes,
    w: &[f32],
    l: &WeightLayout,
    io: Io<'_>,
    scratch: &mut Scratch,
    batch: usize,
) {
    let (m, k, n) = (g.m(), g.k, g.cout4 * 4);
    let b_all = section(w, l, "B");
    let bias = section(w, l, "BIAS");
    let (src, src_per) = io.src;
    // The SE gate scales the input channels: fold it into B, per image.
    let gated = match io.gate {
        Some((gate, gate_per)) => {
            let gb = &mut scratch.gated[..batch * k * n];
            gb.par_chunks_mut(k * n).enumerate().for_each(|(b, gb)| {
                let gate = &gate[b * gate_per..b * gate_per + k];
                for ((row, brow), &s) in gb.chunks_exact_mut(n).zip(b_all.chunks_exact(n)).zip(gate)
                {
                    for (d, &v) in row.iter_mut().zip(brow) {
                        *d = v * s;
                    }
                }
            });
            true
        }
        None => false,
    };
    let gated_b = &scratch.gated[..];
    let threads = &scratch.thread;
    let (dst, dst_per) = match io.dst {
        Some((d, per)) => (Some(Shared::new(d)), per),
        None => (None, 0),
    };
    let pool_sums = io.pool.is_some().then(|| {
        let p = &mut scratch.pool[..batch * sh.tiles_m * n];
        Shared::new(p)
    });
    let tasks = batch * sh.tiles_m * sh.tiles_n;
    (0..tasks).into_par_iter().for_each(|task| {
        let (b, rest) = (
            task / (sh.tiles_m * sh.tiles_n),
            task % (sh.tiles_m * sh.tiles_n),
        );
        let (tile, ct) = (rest / sh.tiles_n, rest % sh.tiles_n);
        let r0 = tile * sh.tm;
        let rows = sh.tm.min(m - r0);
        let c0 = ct * sh.tn;
        let cols = sh.tn.min(n - c0);
        let bmat = if gated {
            &gated_b[b * k * n..(b + 1) * k * n]
        } else {
            b_all
        };
        let x = &src[b * src_per..(b + 1) * src_per];
        let me = rayon::current_thread_index().unwrap_or(0);
        let mut guard = threads[me % threads.len()]
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
        let (out, at, ldc) = match dst {
            Some(d) => (d, b * dst_per + r0 * n + c0, n),
            None => (Shared::new(&mut cbuf[..rows * cols]), 0, cols),
        };
        // SAFETY: task (b, tile, ct) alone writes rows r0..r0+rows, columns
        // c0..c0+cols of image b (and the same part of its pooling sums); the
        // scratch tile is this thread's.
        unsafe { sgemm(rows, k, cols, a, k, &bmat[c0..], n, out, at, ldc) };
        let res = io
            .residual
            .map(|(r, per)| &r[b * per + r0 * n..b * per + (r0 + rows) * n]);
        // SAFETY: as above.
        let mut sums =
            pool_sums.map(|p| unsafe { p.range((b * sh.tiles_m + tile) * n + c0, cols) });
        if let Some(s) = sums.as_deref_mut() {
            s.fill(0.0);
        }
        for i in 0..rows {
            // SAFETY: as above (the sgemm call has returned).
            let row = unsafe { out.range(at + i * ldc, cols) };
            for (v, &bv) in row.iter_mut().zip(&bias[c0..c0 + cols]) {
                *v += bv;
            }
            activate(row, g.epilogue.act);
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
    });
    if let Some((p, per)) = io.pool {
        reduce_tiles(&scratch.pool, sh.tiles_m, n, p, per, batch);
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
/// with the row's sums for the SE pool.
#[allow(clippy::too_many_arguments)]
fn depthwise(
    d: &DwOp,
    w: &[f32],
    l: &WeightLayout,
    (src, src_per): Buf<'_>,
    (dst, dst_per): BufMut<'_>,
    pool: Option<BufMut<'_>>,
    scratch: &mut Scratch,
    batch: usize,
) {
    let c = d.c4 * 4;
    let taps = section(w, l, "TAPS");
    let bias = &section(w, l, "BIAS")[..c];
    let out = Shared::new(dst);
    let sums = pool
        .is_some()
        .then(|| Shared::new(&mut scratch.pool[..batch * d.out_h * c]));
    (0..batch * d.out_h).into_par_iter().for_each(|task| {
        let (b, oy) = (task / d.out_h, task % d.out_h);
        let x = &src[b * src_per..(b + 1) * src_per];
        // SAFETY: task (b, oy) alone writes output row oy of image b and its sums.
        let row = unsafe { out.range(b * dst_per + oy * d.out_w * c, d.out_w * c) };
        for (ox, px) in row.chunks_exact_mut(c).enumerate() {
            px.copy_from_slice(bias);
            for ky in 0..d.kernel {
                let iy = (oy * d.stride + ky).wrapping_sub(d.pad_top);
                if iy >= d.in_h {
                    continue;
                }
                for kx in 0..d.kernel {
                    let ix = (ox * d.stride + kx).wrapping_sub(d.pad_left);
                    if ix >= d.in_w {
                        continue;
                    }
                    let xs = &x[(iy * d.in_w + ix) * c..][..c];
                    let ws = &taps[(ky * d.kernel + kx) * c..][..c];
                    for ((a, &xv), &wv) in px.iter_mut().zip(xs).zip(ws) {
                        *a += xv * wv;
                    }
                }
            }
            activate(px, d.act);
        }
        if let Some(s) = sums {
            let s = unsafe { s.range(task * c, c) };
            s.fill(0.0);
            for px in row.chunks_exact(c) {
                for (a, &v) in s.iter_mut().zip(px) {
                    *a += v;
                }
            }
        }
    });
    if let Some((p, per)) = pool {
        reduce_tiles(&scratch.pool, d.out_h, c, p, per, batch);
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
