//! The scalar the training pass computes in: `f32` (as frameworks train) or
//! `f64` (for finite-difference checks and as a tighter oracle).

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// A float type the training layers are generic over.
pub trait Real:
    Copy
    + Send
    + Sync
    + Debug
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;

    /// `matrixmultiply`'s kernel for this type (`sgemm`, `dgemm`).
    const RAW_GEMM: RawGemm<Self>;

    /// `c = a·b + beta·c` for an `m×k` matrix `a` and a `k×n` matrix `b`, each
    /// given by its row and column strides (so transposes cost nothing); `c` is
    /// row-major `m×n`.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: &[Self],
        a_strides: (usize, usize),
        b: &[Self],
        b_strides: (usize, usize),
        beta: Self,
        c: &mut [Self],
    ) {
        assert!(
            a.len() >= extent(m, k, a_strides)
                && b.len() >= extent(k, n, b_strides)
                && c.len() == m * n,
            "gemm operands have the sizes their dimensions and strides give"
        );
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            c.iter_mut().for_each(|v| *v *= beta);
            return;
        }
        // SAFETY: the assertion above bounds every index the kernel
        // touches: `a` at i·rs + l·cs (i < m, l < k), `b` likewise for
        // k×n, `c` at i·n + j; `c` is borrowed mutably, so it aliases
        // neither operand.
        unsafe {
            Self::RAW_GEMM(
                m,
                k,
                n,
                Self::ONE,
                a.as_ptr(),
                a_strides.0 as isize,
                a_strides.1 as isize,
                b.as_ptr(),
                b_strides.0 as isize,
                b_strides.1 as isize,
                beta,
                c.as_mut_ptr(),
                n as isize,
                1,
            );
        }
    }
}

/// `matrixmultiply`'s `sgemm`/`dgemm`: `m, k, n, alpha, a, a's row and column
/// strides, b, b's strides, beta, c, c's strides`.
pub type RawGemm<T> = unsafe fn(
    usize,
    usize,
    usize,
    T,
    *const T,
    isize,
    isize,
    *const T,
    isize,
    isize,
    T,
    *mut T,
    isize,
    isize,
);

/// The highest index a strided `rows×cols` operand touches, plus one.
fn extent(rows: usize, cols: usize, (rs, cs): (usize, usize)) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

macro_rules! real {
    ($t:ty, $gemm:path) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            const RAW_GEMM: RawGemm<Self> = $gemm;
        }
    };
}

real!(f32, matrixmultiply::sgemm);
real!(f64, matrixmultiply::dgemm);
