//! The instruction sets the CPU backend's kernels are compiled for, chosen at run
//! time ([`Isa::detect`]), and the lane-wise pieces every kernel shares: the GEMM
//! micro-kernel over packed panels of B ([`tile`]), a vectorizable `exp` and the
//! activations.
//!
//! Kernels are written once, as plain Rust over fixed-size lane arrays, in
//! `#[inline(always)]` functions; each ISA gets its own copy compiled inside a
//! `#[target_feature]` function (see `kernels.rs`), so that the compiler keeps the
//! accumulators in that ISA's registers and emits its FMA. The portable copy is
//! what every target builds (wasm32 included) and multiplies then adds.

use std::fmt;

use effc_ir::Activation;

/// An instruction set the kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F (with AVX2 and FMA): 12×32 GEMM tiles in 24 zmm accumulators.
    Avx512,
    /// AVX2 with FMA: 6×16 GEMM tiles in 12 ymm accumulators.
    Avx2,
    /// WebAssembly SIMD128 (wasm32 built with `+simd128`): 4×16 GEMM tiles in 16
    /// `f32x4` accumulators, multiply then add (wasm has no fused multiply-add
    /// outside relaxed SIMD), so results equal the portable kernels' bit for bit.
    Simd128,
    /// Plain Rust, no fused multiply-add: what every target builds.
    Portable,
}

impl Isa {
    pub const ALL: [Isa; 4] = [Isa::Avx512, Isa::Avx2, Isa::Simd128, Isa::Portable];

    /// The fastest ISA this CPU (and this build) has.
    pub fn detect() -> Isa {
        Isa::ALL
            .into_iter()
            .find(|i| i.available())
            .unwrap_or(Isa::Portable)
    }

    /// Whether this CPU has the ISA and this build compiled its kernels.
    pub fn available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(all(target_arch = "x86_64", effc_avx512))]
            Isa::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
            }
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Simd128 => "simd128",
            Isa::Portable => "portable",
        }
    }

    /// The ISA named `name` ([`Isa::name`]).
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|i| i.name() == name)
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The AVX-512 micro-kernel's rows and panels (`MR512 × P512·NR` accumulators).
#[cfg_attr(not(all(target_arch = "x86_64", effc_avx512)), allow(dead_code))]
pub(crate) const MR512: usize = 12;
#[cfg_attr(not(all(target_arch = "x86_64", effc_avx512)), allow(dead_code))]
pub(crate) const P512: usize = 2;

/// Columns per packed panel of B.
pub(crate) const NR: usize = 16;

/// Packs `b` (`k` rows of `n` columns, row-major) into panels of [`NR`] columns:
/// panel `p` holds rows `0..k` of columns `p·NR..p·NR + NR`, zeros beyond `n`.
pub(crate) fn pack_b(b: &[f32], k: usize, n: usize) -> Vec<f32> {
    let panels = n.div_ceil(NR);
    let mut out = vec![0.0; panels * k * NR];
    for (p, panel) in out.chunks_exact_mut(k * NR).enumerate() {
        let c0 = p * NR;
        let w = NR.min(n - c0);
        for (l, row) in panel.chunks_exact_mut(NR).enumerate() {
            row[..w].copy_from_slice(&b[l * n + c0..l * n + c0 + w]);
        }
    }
    out
}

/// `a·b + c`, fused where the ISA has FMA.
#[inline(always)]
pub(crate) fn fma<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `eˣ` within 2 ulp (Cephes' `expf`: 2ⁿ·e^r, r in [-ln2/2, ln2/2], a degree-6
/// polynomial), branch-free so that loops over it vectorize; x is clamped to
/// [-87.3, 88.3] (e^-87.3 is still a normal f32, and nothing here needs more).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding it rounds to an integer (ties to even) in the low mantissa.
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((ni + 127) as u32) << 23)
}

/// The activation, lane by lane.
#[inline(always)]
pub(crate) fn activate(v: &mut [f32], act: Option<Activation>) {
    match act {
        None => {}
        Some(Activation::Relu) => v.iter_mut().for_each(|x| *x = x.max(0.0)),
        Some(Activation::Relu6) => v.iter_mut().for_each(|x| *x = x.clamp(0.0, 6.0)),
        Some(Activation::Swish) => v.iter_mut().for_each(|x| *x /= 1.0 + exp(-*x)),
    }
}

/// One micro-kernel call: `c[i·ldc + j] = Σ_l a[i·lda + l] · B[l][j]` for
/// `i < rows ≤ MR` and `j < cols ≤ P·NR`, where B is `P` consecutive packed panels
/// (`k·NR` values each) from the start of `b`. Rows past `rows` are computed on
/// a copy of the last row and dropped.
///
/// # Safety
/// `c` is valid for writes at `i·ldc + j` for every `i < rows`, `j < cols`, and
/// nothing else reads or writes those values while this runs.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn tile<const MR: usize, const P: usize, const FMA: bool>(
    a: &[f32],
    lda: usize,
    rows: usize,
    k: usize,
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    assert!((1..=MR).contains(&rows) && (1..=P * NR).contains(&cols));
    assert!(a.len() >= (rows - 1) * lda + k, "A holds the tile's rows");
    assert!(b.len() >= P * k * NR, "B holds the tile's panels");
    let mut acc = [[[0.0f32; NR]; P]; MR];
    let ap: [*const f32; MR] = std::array::from_fn(|i| a[i.min(rows - 1) * lda..].as_ptr());
    let bp = b.as_ptr();
    for l in 0..k {
        let mut bv = [[0.0f32; NR]; P];
        for (p, v) in bv.iter_mut().enumerate() {
            // SAFETY: p·k·NR + l·NR + NR ≤ P·k·NR ≤ b.len() (asserted above).
            *v = unsafe { std::ptr::read_unaligned(bp.add((p * k + l) * NR).cast::<[f32; NR]>()) };
        }
        for (i, acc) in acc.iter_mut().enumerate() {
            // SAFETY: row min(i, rows - 1) of A starts at a multiple of lda that
            // leaves k values in `a` (asserted above), and l < k.
            let av = unsafe { *ap[i].add(l) };
            for (acc, bv) in acc.iter_mut().zip(&bv) {
                for (acc, &bv) in acc.iter_mut().zip(bv) {
                    *acc = fma::<FMA>(av, bv, *acc);
                }
            }
        }
    }
    for (i, acc) in acc.iter().enumerate().take(rows) {
        // SAFETY: the caller's contract: row i, columns 0..cols of `c` are this
        // call's alone.
        let row = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), cols) };
        if cols == P * NR {
            for (dst, acc) in row.chunks_exact_mut(NR).zip(acc) {
                dst.copy_from_slice(acc);
            }
        } else {
            let all = *acc;
            row.copy_from_slice(&all.as_flattened()[..cols]);
        }
    }
}

/// The micro-kernel in AVX-512 intrinsics: the compiler's vectorizer keeps
/// [`tile`]'s lane arrays in zmm registers for some shapes only, these it keeps
/// for all. Compiled only by a rustc with AVX-512 stable (see build.rs), hence
/// the `incompatible_msrv` allowance.
#[cfg(all(target_arch = "x86_64", effc_avx512))]
#[allow(clippy::incompatible_msrv)]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    use super::NR;

    /// [`super::exp`] on 16 lanes.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn exp16(x: __m512) -> __m512 {
        let x = _mm512_min_ps(
            _mm512_max_ps(x, _mm512_set1_ps(-87.3)),
            _mm512_set1_ps(88.3),
        );
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm512_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            0.166_666_65,
            0.5,
        ] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let y = _mm512_fmadd_ps(
            _mm512_mul_ps(p, r),
            r,
            _mm512_add_ps(r, _mm512_set1_ps(1.0)),
        );
        let e = _mm512_slli_epi32::<23>(_mm512_add_epi32(
            _mm512_cvtps_epi32(n),
            _mm512_set1_epi32(127),
        ));
        _mm512_mul_ps(y, _mm512_castsi512_ps(e))
    }

    /// `x·sigmoid(x)` on 16 lanes: `x / (1 + e⁻ˣ)` with the division as a
    /// reciprocal estimate (2⁻¹⁴) and one Newton step (2⁻²⁸), within 2 ulp of
    /// the division and far cheaper.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn swish16(x: __m512) -> __m512 {
        let one = _mm512_set1_ps(1.0);
        let d = _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), x)));
        let r = _mm512_rcp14_ps(d);
        // r·(2 - d·r)
        let r = _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0)));
        _mm512_mul_ps(x, r)
    }

    /// [`super::activate`] in 512-bit registers (swish as [`swish16`]).
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(crate) unsafe fn activate(v: &mut [f32], act: Option<effc_ir::Activation>) {
        if act != Some(effc_ir::Activation::Swish) {
            return super::activate(v, act);
        }
        let mut chunks = v.chunks_exact_mut(16);
        for c in &mut chunks {
            // SAFETY: c has 16 values.
            unsafe { _mm512_storeu_ps(c.as_mut_ptr(), swish16(_mm512_loadu_ps(c.as_ptr()))) };
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let m = ((1u32 << rest.len()) - 1) as u16;
            // SAFETY: the mask covers rest's values only.
            unsafe {
                let x = _mm512_maskz_loadu_ps(m, rest.as_ptr());
                _mm512_mask_storeu_ps(rest.as_mut_ptr(), m, swish16(x));
            }
        }
    }

    /// [`super::tile`] with `FMA`, in 512-bit registers: `MR·P` accumulators.
    ///
    /// # Safety
    /// The CPU has AVX-512F, and [`super::tile`]'s contract on `c`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(crate) unsafe fn tile<const MR: usize, const P: usize>(
        a: &[f32],
        lda: usize,
        rows: usize,
        k: usize,
        b: &[f32],
        c: *mut f32,
        ldc: usize,
        cols: usize,
    ) {
        assert!((1..=MR).contains(&rows) && (1..=P * NR).contains(&cols));
        assert!(a.len() >= (rows - 1) * lda + k, "A holds the tile's rows");
        assert!(b.len() >= P * k * NR, "B holds the tile's panels");
        let mut acc = [[_mm512_setzero_ps(); P]; MR];
        let ap: [*const f32; MR] = std::array::from_fn(|i| a[i.min(rows - 1) * lda..].as_ptr());
        let bp = b.as_ptr();
        for l in 0..k {
            let mut bv = [_mm512_setzero_ps(); P];
            for (p, v) in bv.iter_mut().enumerate() {
                // SAFETY: (p·k + l + 1)·NR ≤ P·k·NR ≤ b.len() (asserted above).
                *v = unsafe { _mm512_loadu_ps(bp.add((p * k + l) * NR)) };
            }
            for (i, acc) in acc.iter_mut().enumerate() {
                // SAFETY: row min(i, rows - 1) of A has k values (asserted above).
                let av = _mm512_set1_ps(unsafe { *ap[i].add(l) });
                for (acc, &bv) in acc.iter_mut().zip(&bv) {
                    *acc = _mm512_fmadd_ps(av, bv, *acc);
                }
            }
        }
        for (i, acc) in acc.iter().enumerate().take(rows) {
            for (p, &v) in acc.iter().enumerate() {
                let j0 = p * NR;
                if j0 >= cols {
                    break;
                }
                // SAFETY: the caller's contract: row i, columns 0..cols of `c`
                // are this call's alone; the mask stops at cols.
                unsafe {
                    let dst = c.add(i * ldc + j0);
                    if cols - j0 >= NR {
                        _mm512_storeu_ps(dst, v);
                    } else {
                        _mm512_mask_storeu_ps(dst, ((1u32 << (cols - j0)) - 1) as u16, v);
                    }
                }
            }
        }
    }
}

/// The micro-kernel in WebAssembly SIMD128 intrinsics. A panel's row is four
/// `f32x4`; `MR` rows of a whole panel would need `4·MR` accumulators, more than
/// the 16 registers engines map `v128` to (x86-64's xmm), so the panel is done in
/// two halves of 8 columns: `2·MR` accumulators, two B vectors and one splat of
/// A live. Multiply then add, in [`super::tile`]'s order (l ascending), so the
/// results are the portable kernel's bit for bit.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) mod wasm {
    use core::arch::wasm32::*;

    use super::NR;

    /// [`super::tile`] without `FMA`, for `P` = 1 (one panel per call; the
    /// caller walks the panels).
    ///
    /// # Safety
    /// [`super::tile`]'s contract on `c`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) unsafe fn tile<const MR: usize>(
        a: &[f32],
        lda: usize,
        rows: usize,
        k: usize,
        b: &[f32],
        c: *mut f32,
        ldc: usize,
        cols: usize,
    ) {
        assert!((1..=MR).contains(&rows) && (1..=NR).contains(&cols));
        assert!(a.len() >= (rows - 1) * lda + k, "A holds the tile's rows");
        assert!(b.len() >= k * NR, "B holds the tile's panel");
        let ap: [*const f32; MR] = core::array::from_fn(|i| a[i.min(rows - 1) * lda..].as_ptr());
        for half in 0..2 {
            let j0 = half * NR / 2;
            if j0 >= cols {
                break;
            }
            let mut acc = [[f32x4_splat(0.0); 2]; MR];
            // SAFETY: j0 + 8 ≤ NR.
            let bp = unsafe { b.as_ptr().add(j0) };
            for l in 0..k {
                // SAFETY: l·NR + j0 + 8 ≤ k·NR ≤ b.len() (asserted above); v128
                // loads need no alignment.
                let (b0, b1) = unsafe {
                    let p = bp.add(l * NR);
                    (v128_load(p.cast()), v128_load(p.add(4).cast()))
                };
                for (i, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: row min(i, rows - 1) of A has k values (asserted above).
                    let av = unsafe { v128_load32_splat(ap[i].add(l).cast()) };
                    acc[0] = f32x4_add(acc[0], f32x4_mul(av, b0));
                    acc[1] = f32x4_add(acc[1], f32x4_mul(av, b1));
                }
            }
            let w = (cols - j0).min(NR / 2);
            for (i, acc) in acc.iter().enumerate().take(rows) {
                // SAFETY: the caller's contract: row i, columns 0..cols of `c`
                // are this call's alone; j0 + w ≤ cols.
                let dst = unsafe { c.add(i * ldc + j0) };
                if w == NR / 2 {
                    // SAFETY: as above, 8 values.
                    unsafe {
                        v128_store(dst.cast(), acc[0]);
                        v128_store(dst.add(4).cast(), acc[1]);
                    }
                } else {
                    let mut all = [0.0f32; NR / 2];
                    // SAFETY: `all` has 8 values; then w < 8 values of row i.
                    unsafe {
                        v128_store(all.as_mut_ptr().cast(), acc[0]);
                        v128_store(all.as_mut_ptr().add(4).cast(), acc[1]);
                        core::ptr::copy_nonoverlapping(all.as_ptr(), dst, w);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_2_ulp_of_std() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp(x), x.exp());
            assert!(
                (got - want).abs() <= 2.5 * f32::EPSILON * want,
                "exp({x}) = {got}, std {want}"
            );
            x += 0.0137;
        }
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1e-37);
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn swish_saturates_without_nan() {
        let mut v = [-1000.0, -100.0, -1.0, 0.0, 1.0, 100.0, 1000.0];
        activate(&mut v, Some(Activation::Swish));
        for (&got, x) in v
            .iter()
            .zip([-1000.0f32, -100.0, -1.0, 0.0, 1.0, 100.0, 1000.0])
        {
            let want = x / (1.0 + (-x).exp());
            assert!(
                (got - want).abs() <= 1e-6 * want.abs() + 1e-30,
                "{x}: {got} {want}"
            );
        }
    }

    /// The arguments of one [`tile`] call in a test.
    struct Call<'a> {
        /// `MR` rows (else 4), and `P` panels (else 1).
        full: bool,
        wide: bool,
        a: &'a [f32],
        rows: usize,
        k: usize,
        b: &'a [f32],
        c: &'a mut [f32],
        ldc: usize,
        cols: usize,
    }

    macro_rules! call {
        ($x:ident, $mr:literal, $p:literal, $fma:literal) => {{
            let Call {
                full,
                wide,
                a,
                rows,
                k,
                b,
                c,
                ldc,
                cols,
            } = $x;
            assert!((rows - 1) * ldc + cols <= c.len());
            let c = c.as_mut_ptr();
            // SAFETY: `c` is a whole, exclusively borrowed slice and the
            // assertion bounds the tile inside it.
            unsafe {
                match (full, wide) {
                    (true, true) => tile::<$mr, $p, $fma>(a, k, rows, k, b, c, ldc, cols),
                    (true, false) => tile::<$mr, 1, $fma>(a, k, rows, k, b, c, ldc, cols),
                    (false, true) => tile::<4, $p, $fma>(a, k, rows, k, b, c, ldc, cols),
                    (false, false) => tile::<4, 1, $fma>(a, k, rows, k, b, c, ldc, cols),
                }
            }
        }};
    }

    #[cfg(all(target_arch = "x86_64", effc_avx512))]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn avx512(x: Call<'_>) {
        let Call {
            full,
            wide,
            a,
            rows,
            k,
            b,
            c,
            ldc,
            cols,
        } = x;
        assert!((rows - 1) * ldc + cols <= c.len());
        let c = c.as_mut_ptr();
        // SAFETY: the CPU has AVX-512F (the caller's contract); `c` is a whole,
        // exclusively borrowed slice and the assertion bounds the tile in it.
        unsafe {
            match (full, wide) {
                (true, true) => avx512::tile::<MR512, P512>(a, k, rows, k, b, c, ldc, cols),
                (true, false) => avx512::tile::<MR512, 1>(a, k, rows, k, b, c, ldc, cols),
                (false, true) => avx512::tile::<4, P512>(a, k, rows, k, b, c, ldc, cols),
                (false, false) => avx512::tile::<4, 1>(a, k, rows, k, b, c, ldc, cols),
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(x: Call<'_>) {
        call!(x, 6, 1, true)
    }

    fn portable(x: Call<'_>) {
        call!(x, 4, 1, false)
    }

    /// [`tile`] compiled for `isa`, as the kernels compile it.
    fn tile_on(isa: Isa, x: Call<'_>) {
        assert!(isa.available());
        match isa {
            // SAFETY: the CPU has the ISA's features (asserted above).
            #[cfg(all(target_arch = "x86_64", effc_avx512))]
            Isa::Avx512 => unsafe { avx512(x) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2(x) },
            _ => portable(x),
        }
    }

    /// Every ISA's micro-kernel shapes (full and partial rows, one and two
    /// panels, partial columns) against a plain triple loop.
    #[test]
    fn micro_kernels_match_a_plain_gemm() {
        let mr = |isa: Isa| match isa {
            Isa::Avx512 => MR512,
            Isa::Avx2 => 6,
            Isa::Simd128 | Isa::Portable => 4,
        };
        let mut checked = 0;
        for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
            let p = if isa == Isa::Avx512 { P512 } else { 1 };
            for k in [1, 4, 37, 300] {
                for (full, wide) in [(true, true), (true, false), (false, true), (false, false)] {
                    let max_rows = if full { mr(isa) } else { 4 };
                    let max_cols = if wide { p * NR } else { NR };
                    for rows in [1, max_rows / 2, max_rows].into_iter().filter(|&r| r > 0) {
                        for cols in [1, 4, NR - 4, max_cols] {
                            let a: Vec<f32> = (0..rows * k)
                                .map(|v| ((v * 7919) % 97) as f32 / 97.0 - 0.5)
                                .collect();
                            let b: Vec<f32> = (0..2 * NR * k)
                                .map(|v| ((v * 104729) % 89) as f32 / 89.0 - 0.5)
                                .collect();
                            let ldc = cols + 3;
                            let mut c = vec![f32::NAN; rows * ldc];
                            tile_on(
                                isa,
                                Call {
                                    full,
                                    wide,
                                    a: &a,
                                    rows,
                                    k,
                                    b: &b,
                                    c: &mut c,
                                    ldc,
                                    cols,
                                },
                            );
                            for i in 0..rows {
                                for j in 0..ldc {
                                    let got = c[i * ldc + j];
                                    if j >= cols {
                                        assert!(
                                            got.is_nan(),
                                            "{isa}: ({i}, {j}) written past cols {cols}"
                                        );
                                        continue;
                                    }
                                    let want: f64 = (0..k)
                                        .map(|l| {
                                            a[i * k + l] as f64
                                                * b[((j / NR) * k + l) * NR + j % NR] as f64
                                        })
                                        .sum();
                                    assert!((got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "{isa} k {k} rows {rows} cols {cols} ({i}, {j}): {got} vs {want}");
                                }
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked >= 4 * 4 * 3 * 4, "{checked} tiles");
    }

    #[cfg(all(target_arch = "x86_64", effc_avx512))]
    #[test]
    fn avx512_swish_matches_the_portable_one() {
        if !Isa::Avx512.available() {
            return;
        }
        let xs: Vec<f32> = (0..20_011)
            .map(|i| (i as f32 - 10_000.0) * 0.0173)
            .collect();
        let mut want = xs.clone();
        activate(&mut want, Some(Activation::Swish));
        for len in [xs.len(), 16, 15, 1] {
            let mut got = xs[..len].to_vec();
            // SAFETY: the CPU has AVX-512F (checked above).
            unsafe { avx512::activate(&mut got, Some(Activation::Swish)) };
            for ((&g, &w), &x) in got.iter().zip(&want).zip(&xs) {
                assert!(
                    (g - w).abs() <= 4.0 * f32::EPSILON * w.abs() + 1e-37,
                    "swish({x}): {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn packing_puts_columns_in_panels_with_zeros_beyond_n() {
        let (k, n) = (3, 20);
        let b: Vec<f32> = (0..k * n).map(|v| v as f32).collect();
        let p = pack_b(&b, k, n);
        assert_eq!(p.len(), 2 * k * NR);
        for l in 0..k {
            for j in 0..2 * NR {
                let want = if j < n { b[l * n + j] } else { 0.0 };
                assert_eq!(p[((j / NR) * k + l) * NR + j % NR], want, "({l}, {j})");
            }
        }
    }
}
