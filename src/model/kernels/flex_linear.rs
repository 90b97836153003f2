//! The inference engine's matrix product on flex, `y [m, k] = x [m, k] · w [k, n]`, with its
//! own kernel.
//!
//! Why not flex's `matmul`: it hands a product to the GEMM's threads only above ~7M
//! multiply-adds, so a decode step's products (a few rows against a large weight) ran on one
//! core; and the GEMM repacks the weight on every call, which for a few rows doubles the memory
//! traffic that bounds decoding.
//!
//! The kernel: output columns are cut into blocks of `NB` (64 with AVX-512, 32 with AVX2);
//! for each block and each tile of up to [`ROWS`] rows, the `ROWS x NB` accumulators stay in
//! registers while the weight rows of the block stream past once (row-major weights are read in
//! place; a transposed weight, the tied output head, and a ragged last block are first copied
//! into a zero-padded row-major scratch block). Blocks run in parallel on the rayon pool when
//! the weight is large enough to be worth it.
//!
//! Numbers: every output element is `fma(x[k-1], w[k-1], ... fma(x[0], w[0], 0))`, one fused
//! multiply-add per `k` in index order, whatever the instruction set (AVX-512, AVX2, or the
//! scalar `mul_add` fallback), the tile, the block, the thread count, or which other rows share
//! the call. So a row's result depends only on that row, and the same binary gives the same
//! bits on CPUs with and without AVX-512 (tests force each path). For `k <= 512` this is also
//! exactly what the GEMM computes (one `k` block, same order), so the tiny model's results are
//! unchanged by this kernel.

use std::sync::OnceLock;

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Shape};
use rayon::prelude::*;

/// Rows per register tile.
pub const ROWS: usize = 6;

/// Weights below this many elements are not split across threads (the tiny preset's: a split
/// costs more in synchronisation than it saves).
const PARALLEL_WEIGHT_ELEMS: usize = 64 * 1024;

/// The instruction set the kernel uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F with FMA: 64-column blocks.
    Avx512,
    /// AVX2 with FMA: 32-column blocks.
    Avx2,
    /// Portable code with `f32::mul_add`: 16-column blocks.
    Scalar,
}

impl Isa {
    /// The best one this CPU supports (`MCTS_PS_ISA=avx512|avx2|scalar` asks for another,
    /// when supported: used to check that results do not depend on it).
    pub fn detect() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            let best = Isa::best();
            match std::env::var("MCTS_PS_ISA").ok().as_deref() {
                Some("scalar") => Isa::Scalar,
                Some("avx2") if best != Isa::Scalar => Isa::Avx2,
                _ => best,
            }
        })
    }

    /// The best one this CPU supports.
    pub fn best() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
                return Isa::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    }

    fn block(self) -> usize {
        match self {
            Isa::Avx512 => 64,
            Isa::Avx2 => 32,
            Isa::Scalar => 16,
        }
    }
}

/// Operands of one product, as raw parts (row and column strides in elements).
#[derive(Clone, Copy)]
struct Operands {
    x: *const f32,
    x_rs: usize,
    w: *const f32,
    w_rs: isize,
    w_cs: isize,
    y: *mut f32,
    m: usize,
    k: usize,
    n: usize,
}
// SAFETY: blocks read shared inputs and write disjoint output columns (see `block`).
unsafe impl Send for Operands {}
unsafe impl Sync for Operands {}

/// `x [m, k] · w [k, n]` in f32 (any strides); the output is contiguous `[m, n]`.
pub fn linear(x: &FlexTensor, w: &FlexTensor) -> FlexTensor {
    linear_with(x, w, Isa::detect())
}

/// [`linear`] on a given instruction set (which must be supported; see [`Isa::best`]).
pub fn linear_with(x: &FlexTensor, w: &FlexTensor, isa: Isa) -> FlexTensor {
    assert!(x.dtype() == DType::F32 && w.dtype() == DType::F32, "flex linear: f32 operands");
    let (xs, ws) = (x.layout().shape(), w.layout().shape());
    assert!(xs.num_dims() == 2 && ws.num_dims() == 2 && xs[1] == ws[0], "flex linear: shapes");
    let (m, k, n) = (xs[0], xs[1], ws[1]);
    let x = if x.is_contiguous() && x.layout().start_offset() == 0 { x.clone() } else { x.to_contiguous() };
    let mut out = FlexTensor::empty(Shape::from(vec![m, n]), DType::F32);
    if m == 0 || n == 0 {
        return out;
    }
    let wst = w.layout().strides();
    let ops = Operands {
        x: x.storage::<f32>().as_ptr(),
        x_rs: k,
        w: w.storage::<f32>()[w.layout().start_offset()..].as_ptr(),
        w_rs: wst[0],
        w_cs: wst[1],
        y: out.storage_mut::<f32>().as_mut_ptr(),
        m,
        k,
        n,
    };
    let nb = isa.block();
    let blocks = n.div_ceil(nb);
    let run = |b: usize| {
        // SAFETY: `ops` describes live tensors of the shapes checked above; block `b` writes
        // only output columns b * nb .. (b + 1) * nb.
        unsafe { block(isa, &ops, b * nb) }
    };
    if k * n >= PARALLEL_WEIGHT_ELEMS && blocks > 1 && rayon::current_num_threads() > 1 {
        (0..blocks)
            .into_par_iter()
            .with_min_len(blocks.div_ceil(4 * rayon::current_num_threads()))
            .for_each(run);
    } else {
        (0..blocks).for_each(run);
    }
    out
}

/// RMSNorm of rows, `x [m, d]`, weight `[d]`: `x_i * (1 / sqrt(sum(x^2) / d + eps)) * w`,
/// with the sum of squares in a fixed order (8 interleaved partial sums, fixed tree), so the
/// bits do not depend on the CPU's vector width; rows in parallel.
pub fn rms_norm(x: &FlexTensor, w: &FlexTensor, eps: f64) -> FlexTensor {
    let x = if x.is_contiguous() && x.layout().start_offset() == 0 { x.clone() } else { x.to_contiguous() };
    let w = if w.is_contiguous() && w.layout().start_offset() == 0 { w.clone() } else { w.to_contiguous() };
    let shape = x.layout().shape().clone();
    let d = shape[1];
    let (xs, ws) = (x.storage::<f32>(), w.storage::<f32>());
    assert_eq!(ws.len(), d, "rms_norm: weight of {} for rows of {d}", ws.len());
    let mut out = FlexTensor::empty(shape, DType::F32);
    let eps = eps as f32;
    out.storage_mut::<f32>().par_chunks_mut(d).zip(xs.par_chunks(d)).for_each(|(o, r)| {
        let inv = (super::reduce::sum8_of(r, |v| v * v) / d as f32 + eps).sqrt().recip();
        for ((oi, &xi), &wi) in o.iter_mut().zip(r).zip(ws) {
            *oi = xi * inv * wi;
        }
    });
    out
}

/// One column block starting at `c0`, all rows.
unsafe fn block(isa: Isa, o: &Operands, c0: usize) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => block_avx512(o, c0),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => block_avx2(o, c0),
        _ => block_impl::<16, ScalarTile>(o, c0),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn block_avx512(o: &Operands, c0: usize) {
    block_impl::<64, Avx512Tile>(o, c0)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2(o: &Operands, c0: usize) {
    block_impl::<32, Avx2Tile>(o, c0)
}

/// A register tile: `R` rows times one `NB`-column block, accumulated over `k`.
trait Tile<const NB: usize> {
    /// `out[r] = sum_k x[r * x_rs + k] * w[k * w_rs ..][..NB]` for `r < R`, as an in-order
    /// chain of fused multiply-adds from zero.
    unsafe fn run<const R: usize>(
        x: *const f32,
        x_rs: usize,
        k: usize,
        w: *const f32,
        w_rs: usize,
        out: *mut f32,
    );
}

/// Portable tile (`f32::mul_add`).
struct ScalarTile;
impl<const NB: usize> Tile<NB> for ScalarTile {
    #[inline(always)]
    unsafe fn run<const R: usize>(
        x: *const f32,
        x_rs: usize,
        k: usize,
        w: *const f32,
        w_rs: usize,
        out: *mut f32,
    ) {
        let mut acc = [[0f32; NB]; R];
        for kk in 0..k {
            let wr = std::slice::from_raw_parts(w.add(kk * w_rs), NB);
            for (r, a) in acc.iter_mut().enumerate() {
                let xv = *x.add(r * x_rs + kk);
                for j in 0..NB {
                    a[j] = xv.mul_add(wr[j], a[j]);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            std::ptr::copy_nonoverlapping(a.as_ptr(), out.add(r * NB), NB);
        }
    }
}

/// A SIMD tile of 4 vector registers per row (`NB = 4 * lanes` columns), all rows'
/// accumulators in registers: `$t` implements [`Tile`] with the given vector type and its
/// zero / unaligned load / broadcast / fused multiply-add / store intrinsics.
macro_rules! simd_tile {
    ($(#[$doc:meta])* $t:ident, $nb:literal, $lanes:literal, $zero:ident, $load:ident, $set1:ident, $fma:ident, $store:ident) => {
        $(#[$doc])*
        #[cfg(target_arch = "x86_64")]
        struct $t;
        #[cfg(target_arch = "x86_64")]
        impl Tile<$nb> for $t {
            #[inline(always)]
            unsafe fn run<const R: usize>(
                x: *const f32,
                x_rs: usize,
                k: usize,
                w: *const f32,
                w_rs: usize,
                out: *mut f32,
            ) {
                use std::arch::x86_64::*;
                let mut acc = [[$zero(); 4]; R];
                for kk in 0..k {
                    let wp = w.add(kk * w_rs);
                    let wv = [$load(wp), $load(wp.add($lanes)), $load(wp.add(2 * $lanes)), $load(wp.add(3 * $lanes))];
                    for (r, a) in acc.iter_mut().enumerate() {
                        let xv = $set1(*x.add(r * x_rs + kk));
                        for v in 0..4 {
                            a[v] = $fma(xv, wv[v], a[v]);
                        }
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    for (v, av) in a.iter().enumerate() {
                        $store(out.add(r * $nb + v * $lanes), *av);
                    }
                }
            }
        }
    };
}

simd_tile!(
    /// AVX-512 tile: 4 zmm registers (64 columns) per row.
    Avx512Tile, 64, 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps
);
simd_tile!(
    /// AVX2 tile: 4 ymm registers (32 columns) per row.
    Avx2Tile, 32, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps
);

#[inline(always)]
unsafe fn block_impl<const NB: usize, T: Tile<NB>>(o: &Operands, c0: usize) {
    let width = NB.min(o.n - c0);
    // Row-major full blocks are read in place; anything else goes through a scratch copy.
    let mut scratch: Vec<f32> = Vec::new();
    let (w, w_rs): (*const f32, usize) = if o.w_cs == 1 && width == NB {
        (o.w.add(c0), o.w_rs as usize)
    } else {
        scratch.resize(o.k * NB, 0.0);
        for kk in 0..o.k {
            let row = &mut scratch[kk * NB..kk * NB + width];
            for (j, v) in row.iter_mut().enumerate() {
                *v = *o.w.offset(kk as isize * o.w_rs + (c0 + j) as isize * o.w_cs);
            }
        }
        (scratch.as_ptr(), NB)
    };
    let mut tile = [[0f32; NB]; ROWS];
    let tp = tile.as_mut_ptr() as *mut f32;
    let mut r0 = 0;
    while r0 < o.m {
        let rows = ROWS.min(o.m - r0);
        let x = o.x.add(r0 * o.x_rs);
        match rows {
            1 => T::run::<1>(x, o.x_rs, o.k, w, w_rs, tp),
            2 => T::run::<2>(x, o.x_rs, o.k, w, w_rs, tp),
            3 => T::run::<3>(x, o.x_rs, o.k, w, w_rs, tp),
            4 => T::run::<4>(x, o.x_rs, o.k, w, w_rs, tp),
            5 => T::run::<5>(x, o.x_rs, o.k, w, w_rs, tp),
            _ => T::run::<ROWS>(x, o.x_rs, o.k, w, w_rs, tp),
        }
        for (r, t) in tile.iter().take(rows).enumerate() {
            std::ptr::copy_nonoverlapping(t.as_ptr(), o.y.add((r0 + r) * o.n + c0), width);
        }
        r0 += rows;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;
    use burn::backend::Flex;
    use burn::tensor::{Tensor, TensorData, TensorPrimitive};

    fn rand(shape: [usize; 2], seed: u64) -> FlexTensor {
        let mut s = Stream::new(seed, "flex-linear-test", &[]);
        let v: Vec<f32> = (0..shape[0] * shape[1]).map(|_| (s.next_f64() * 2.0 - 1.0) as f32).collect();
        FlexTensor::from_data(TensorData::new(v, shape))
    }

    fn vals(t: FlexTensor) -> Vec<f32> {
        t.into_data().to_vec().unwrap()
    }

    fn transposed(t: &FlexTensor) -> FlexTensor {
        let t: Tensor<Flex, 2> = Tensor::from_primitive(TensorPrimitive::Float(t.clone()));
        t.transpose().into_primitive().tensor()
    }

    fn supported() -> Vec<Isa> {
        let best = Isa::best();
        match best {
            Isa::Avx512 => vec![Isa::Avx512, Isa::Avx2, Isa::Scalar],
            Isa::Avx2 => vec![Isa::Avx2, Isa::Scalar],
            Isa::Scalar => vec![Isa::Scalar],
        }
    }

    /// The definition: a fused multiply-add chain over `k` in order, per element.
    fn reference(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut a = 0f32;
                for t in 0..k {
                    a = x[i * k + t].mul_add(w[t * n + j], a);
                }
                y[i * n + j] = a;
            }
        }
        y
    }

    #[test]
    fn every_instruction_set_gives_the_definition_bit_for_bit() {
        // k = 576 > 512 (where the GEMM would block over k), ragged n, 7 rows (a partial tile).
        for (m, k, n) in [(7, 576, 200), (2, 128, 100), (5, 64, 1)] {
            let x = rand([m, k], 1);
            let w = rand([k, n], 2);
            let want = reference(&vals(x.clone()), &vals(w.clone()), m, k, n);
            for isa in supported() {
                assert_eq!(vals(linear_with(&x, &w, isa)), want, "{isa:?} {m}x{k}x{n}");
                // A transposed view of the same values (the tied head's layout).
                let wt = transposed(&FlexTensor::from_data(TensorData::new(
                    {
                        let wv = vals(w.clone());
                        let mut t = vec![0f32; k * n];
                        for a in 0..k {
                            for b in 0..n {
                                t[b * k + a] = wv[a * n + b];
                            }
                        }
                        t
                    },
                    [n, k],
                )));
                assert!(!wt.is_contiguous());
                assert_eq!(vals(linear_with(&x, &wt, isa)), want, "{isa:?} transposed");
            }
        }
    }

    #[test]
    fn a_row_does_not_depend_on_its_batch_or_the_thread_count() {
        let (m, k, n) = (9, 576, 1536);
        let w = rand([k, n], 3);
        let x = rand([m, k], 4);
        let all = vals(linear(&x, &w));
        let xv = vals(x.clone());
        for i in 0..m {
            let row = &xv[i * k..(i + 1) * k];
            let xi = FlexTensor::from_data(TensorData::new([row, row].concat(), [2, k]));
            assert_eq!(&vals(linear(&xi, &w))[..n], &all[i * n..(i + 1) * n], "row {i}");
        }
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert_eq!(vals(one.install(|| linear(&x, &w))), all);
    }

    #[test]
    fn equals_flex_matmul_when_k_fits_one_gemm_block() {
        // The tiny preset's products (k <= 512): the GEMM's single k block is the same chain,
        // which keeps the embedded default's results byte-identical.
        for (m, k, n) in [(2, 128, 384), (64, 384, 128), (33, 128, 64), (3, 128, 100)] {
            let x = rand([m, k], 5);
            let w = rand([k, n], 6);
            let tx: Tensor<Flex, 2> = Tensor::from_primitive(TensorPrimitive::Float(x.clone()));
            let tw: Tensor<Flex, 2> = Tensor::from_primitive(TensorPrimitive::Float(w.clone()));
            let g: Vec<f32> = tx.matmul(tw).into_data().to_vec().unwrap();
            assert_eq!(vals(linear(&x, &w)), g, "{m}x{k}x{n}");
        }
    }
}
