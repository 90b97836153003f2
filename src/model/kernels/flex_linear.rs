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
//! Few rows (up to [`STREAM_ROWS`], decoding at small batches) take a second kernel,
//! [`stream`]: output columns are cut into chunks whose partial sums stay in L1 while the weight
//! rows stream through them in storage order, and the chunks of a large weight are split over
//! the spinning helper threads of [`super::team`] rather than the rayon pool (whose workers
//! sleep between products).
//!
//! Weights may be stored in bf16 (`model.dtype = "bf16"` on the CPU: half the bytes to stream,
//! which is what bounds decoding at small batches): each weight is widened to f32 exactly as it
//! is loaded (a 16-bit shift) and the product runs in f32 as below, so a bf16 weight gives the
//! bits the f32 kernel gives on the same (bf16-rounded) values, on every instruction set.
//!
//! Numbers: every output element is `fma(x[k-1], w[k-1], ... fma(x[0], w[0], 0))`, one fused
//! multiply-add per `k` in index order, whatever the instruction set (AVX-512, AVX2, or the
//! scalar `mul_add` fallback), the kernel (tile or stream), the tile, the block or chunk, the
//! thread count, or which other rows share the call. So a row's result depends only on that
//! row, and the same binary gives the same
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

/// A weight element the kernel streams: f32, or bf16 kept as its bits.
pub trait Weight: Copy + Send + Sync + 'static {
    /// Its value in f32 (exact for both).
    fn to_f32(self) -> f32;
    /// Zero, for padding a ragged block.
    const ZERO: Self;
}

impl Weight for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    const ZERO: Self = 0.0;
}

/// A bf16 value as its 16 bits (the high half of an f32).
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Bf16Bits(pub u16);

impl Weight for Bf16Bits {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f32::from_bits(u32::from(self.0) << 16)
    }
    const ZERO: Self = Bf16Bits(0);
}

/// Operands of one product, as raw parts (row and column strides in elements).
#[derive(Clone, Copy)]
struct Operands<W> {
    x: *const f32,
    x_rs: usize,
    w: *const W,
    w_rs: isize,
    w_cs: isize,
    y: *mut f32,
    m: usize,
    k: usize,
    n: usize,
}
// SAFETY: blocks read shared inputs and write disjoint output columns (see `block`).
unsafe impl<W> Send for Operands<W> {}
unsafe impl<W> Sync for Operands<W> {}

/// `x [m, k] · w [k, n]` with `x` in f32 and `w` in f32 or bf16 (any strides); the output is
/// contiguous f32 `[m, n]`.
pub fn linear(x: &FlexTensor, w: &FlexTensor) -> FlexTensor {
    linear_with(x, w, Isa::detect())
}

/// Whether [`linear`] takes these operands (f32 activations, f32 or bf16 weights).
pub fn supports(x: DType, w: DType) -> bool {
    x == DType::F32 && (w == DType::F32 || w == DType::BF16)
}

/// [`linear`] on a given instruction set (which must be supported; see [`Isa::best`]).
pub fn linear_with(x: &FlexTensor, w: &FlexTensor, isa: Isa) -> FlexTensor {
    assert!(supports(x.dtype(), w.dtype()), "flex linear: f32 activations, f32 or bf16 weights");
    match w.dtype() {
        DType::BF16 => {
            // SAFETY: bf16 storage is 2-byte values with the bf16 bit layout.
            let ws: &[half::bf16] = w.storage::<half::bf16>();
            let bits = unsafe { std::slice::from_raw_parts(ws.as_ptr() as *const Bf16Bits, ws.len()) };
            linear_typed(x, w, bits, isa)
        }
        _ => linear_typed(x, w, w.storage::<f32>(), isa),
    }
}

fn linear_typed<W: Weight>(x: &FlexTensor, w: &FlexTensor, w_storage: &[W], isa: Isa) -> FlexTensor
where
    Isa: Kernel<W>,
    RowMajor<W>: Src,
{
    let (xs, ws) = (x.layout().shape(), w.layout().shape());
    assert!(xs.num_dims() == 2 && ws.num_dims() == 2 && xs[1] == ws[0], "flex linear: shapes");
    let (m, k, n) = (xs[0], xs[1], ws[1]);
    let x = if x.is_contiguous() && x.layout().start_offset() == 0 { x.clone() } else { x.to_contiguous() };
    let mut out = FlexTensor::empty(Shape::from(vec![m, n]), DType::F32);
    if m == 0 || n == 0 {
        return out;
    }
    let wst = w.layout().strides();
    if m <= STREAM_ROWS && wst[1] == 1 && wst[0] >= 0 {
        let src = RowMajor { w: w_storage[w.layout().start_offset()..].as_ptr(), rs: wst[0] as usize };
        stream(&x, m, k, n, &src, &mut out, isa);
        return out;
    }
    let ops = Operands {
        x: x.storage::<f32>().as_ptr(),
        x_rs: k,
        w: w_storage[w.layout().start_offset()..].as_ptr(),
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
        unsafe { isa.column_block(&ops, b * nb) }
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

/// The column-block kernel of an instruction set for weights of type `W`.
pub trait Kernel<W: Weight> {
    /// One column block starting at `c0`, all rows.
    ///
    /// # Safety
    /// `o` describes live buffers of the shapes it names, `c0 < o.n`, the instruction set is
    /// supported by this CPU, and no other call writes the block's output columns.
    #[allow(private_interfaces)]
    unsafe fn column_block(self, o: &Operands<W>, c0: usize);
}

/// The kernels for one weight type: AVX-512, AVX2 and scalar column blocks.
macro_rules! kernels {
    ($w:ty, $t512:ident, $t256:ident, $f512:ident, $f256:ident) => {
        impl Kernel<$w> for Isa {
            #[allow(private_interfaces)]
            unsafe fn column_block(self, o: &Operands<$w>, c0: usize) {
                match self {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => $f512(o, c0),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => $f256(o, c0),
                    _ => block_impl::<16, $w, ScalarTile>(o, c0),
                }
            }
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512bw,fma")]
        unsafe fn $f512(o: &Operands<$w>, c0: usize) {
            block_impl::<64, $w, $t512>(o, c0)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $f256(o: &Operands<$w>, c0: usize) {
            block_impl::<32, $w, $t256>(o, c0)
        }
    };
}

kernels!(f32, Avx512Tile, Avx2Tile, block_avx512_f32, block_avx2_f32);
kernels!(Bf16Bits, Avx512Bf16Tile, Avx2Bf16Tile, block_avx512_bf16, block_avx2_bf16);

/// A register tile: `R` rows times one `NB`-column block, accumulated over `k`.
trait Tile<const NB: usize, W> {
    /// `out[r] = sum_k x[r * x_rs + k] * w[k * w_rs ..][..NB]` for `r < R`, as an in-order
    /// chain of fused multiply-adds from zero.
    unsafe fn run<const R: usize>(
        x: *const f32,
        x_rs: usize,
        k: usize,
        w: *const W,
        w_rs: usize,
        out: *mut f32,
    );
}

/// Portable tile (`f32::mul_add`).
struct ScalarTile;
impl<const NB: usize, W: Weight> Tile<NB, W> for ScalarTile {
    #[inline(always)]
    unsafe fn run<const R: usize>(
        x: *const f32,
        x_rs: usize,
        k: usize,
        w: *const W,
        w_rs: usize,
        out: *mut f32,
    ) {
        let mut acc = [[0f32; NB]; R];
        for kk in 0..k {
            let wr = std::slice::from_raw_parts(w.add(kk * w_rs), NB);
            for (r, a) in acc.iter_mut().enumerate() {
                let xv = *x.add(r * x_rs + kk);
                for j in 0..NB {
                    a[j] = xv.mul_add(wr[j].to_f32(), a[j]);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            std::ptr::copy_nonoverlapping(a.as_ptr(), out.add(r * NB), NB);
        }
    }
}

/// A SIMD tile of 4 vector registers per row (`NB = 4 * lanes` columns), all rows'
/// accumulators in registers: `$t` implements [`Tile`] for weights of type `$w` with the given
/// vector type and its zero / weight load (widening to f32) / broadcast / fused multiply-add /
/// store intrinsics.
macro_rules! simd_tile {
    ($(#[$doc:meta])* $t:ident, $w:ty, $nb:literal, $lanes:literal, $zero:ident, $load:ident, $set1:ident, $fma:ident, $store:ident) => {
        $(#[$doc])*
        #[cfg(target_arch = "x86_64")]
        struct $t;
        #[cfg(target_arch = "x86_64")]
        impl Tile<$nb, $w> for $t {
            #[inline(always)]
            unsafe fn run<const R: usize>(
                x: *const f32,
                x_rs: usize,
                k: usize,
                w: *const $w,
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

/// 16 bf16 weights widened to f32 (exact: the bits go to the high half).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn load_bf16x16(p: *const Bf16Bits) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i)), 16))
}

/// 8 bf16 weights widened to f32.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn load_bf16x8(p: *const Bf16Bits) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i)), 16))
}

simd_tile!(
    /// AVX-512 tile: 4 zmm registers (64 columns) per row.
    Avx512Tile, f32, 64, 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps
);
simd_tile!(
    /// AVX2 tile: 4 ymm registers (32 columns) per row.
    Avx2Tile, f32, 32, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps
);
simd_tile!(
    /// AVX-512 tile over bf16 weights: 4 zmm registers (64 columns) per row.
    Avx512Bf16Tile, Bf16Bits, 64, 16, _mm512_setzero_ps, load_bf16x16, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps
);
simd_tile!(
    /// AVX2 tile over bf16 weights: 4 ymm registers (32 columns) per row.
    Avx2Bf16Tile, Bf16Bits, 32, 8, _mm256_setzero_ps, load_bf16x8, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps
);

#[inline(always)]
unsafe fn block_impl<const NB: usize, W: Weight, T: Tile<NB, W>>(o: &Operands<W>, c0: usize) {
    let width = NB.min(o.n - c0);
    // Row-major full blocks are read in place; anything else goes through a scratch copy.
    let mut scratch: Vec<W> = Vec::new();
    let (w, w_rs): (*const W, usize) = if o.w_cs == 1 && width == NB {
        (o.w.add(c0), o.w_rs as usize)
    } else {
        scratch.resize(o.k * NB, W::ZERO);
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

/// Rows up to which a product streams its weight row by row ([`stream`]) instead of holding
/// register tiles over column blocks.
pub const STREAM_ROWS: usize = 4;

/// Output columns times rows of one streamed chunk (its partial sums stay in L1).
const STREAM_COLS: usize = 2048;

/// Weight rows one streamed pass over a chunk folds in.
const STREAM_K: usize = 4;

/// The product for a few rows (decoding at small batches), reading the weight in storage order.
///
/// The tile kernel walks one `NB`-column block down all `k` rows: for a single row there is
/// almost no arithmetic per byte, and a walk that reads 64-256 bytes of each weight row and
/// then jumps a whole row ahead keeps the memory system far below the bandwidth a sequential
/// read gets (6-11 GB/s against 24 GB/s for one core: results/bench/decode-b1-2026-12-03-
/// amd-epyc.md). Here each chunk of output columns keeps its partial sums in memory (L1) and
/// the weight rows stream through it `STREAM_K` at a time, each read left to right. Every
/// output element is still
/// `fma(x[k-1], w[k-1], ... fma(x[0], w[0], 0))` in index order, so the bits are those of the
/// tile kernel, on every instruction set.
fn stream<S: Src>(x: &FlexTensor, m: usize, k: usize, n: usize, src: &S, out: &mut FlexTensor, isa: Isa) {
    let threads = rayon::current_num_threads();
    let parallel = k * n >= PARALLEL_WEIGHT_ELEMS && threads > 1;
    // At least two chunks per thread when split (load balance), whole 16-column groups.
    let split = if parallel { n.div_ceil(2 * threads).next_multiple_of(16) } else { n };
    let width = split.min((STREAM_COLS / m).next_multiple_of(16)).max(16);
    stream_with(x, m, k, n, src, out, isa, width, parallel)
}

/// [`stream`] with chunks of `width` columns (a multiple of 16 unless it covers all `n`), split
/// across threads or not.
#[allow(clippy::too_many_arguments)]
fn stream_with<S: Src>(
    x: &FlexTensor,
    m: usize,
    k: usize,
    n: usize,
    src: &S,
    out: &mut FlexTensor,
    isa: Isa,
    width: usize,
    parallel: bool,
) {
    assert!(width >= n || width.is_multiple_of(16), "stream: chunk width {width}");
    let all = Part {
        x: x.storage::<f32>().as_ptr(),
        m,
        k,
        y: out.storage_mut::<f32>().as_mut_ptr(),
        n,
        c0: 0,
        c1: n,
    };
    let chunks = n.div_ceil(width);
    let run = |c: usize| {
        let p = all.cols(c * width, ((c + 1) * width).min(n));
        // SAFETY: `x` is `[m, k]` and `y` `[m, n]`, both contiguous and live; `src` covers
        // `[k, n]`; chunk `c` writes only its columns of `y`.
        unsafe {
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => stream_avx512(src, p),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => stream_avx2(src, p),
                _ => stream_chunk::<S, f32>(src, p),
            }
        }
    };
    if parallel && chunks > 1 {
        if !super::team::run(chunks, &run) {
            (0..chunks).into_par_iter().for_each(run);
        }
    } else {
        (0..chunks).for_each(run);
    }
}

/// A row-major `[k, n]` weight as the streaming kernel reads it: element `(kk, j)` as f32,
/// or a vector of consecutive elements `(kk, j..)` (`j` a multiple of the vector's width).
trait Src: Send + Sync {
    /// Element `(kk, j)`.
    unsafe fn at(&self, kk: usize, j: usize) -> f32;
    /// Elements `(kk, j..j + 16)`.
    #[cfg(target_arch = "x86_64")]
    unsafe fn v16(&self, kk: usize, j: usize) -> std::arch::x86_64::__m512;
    /// Elements `(kk, j..j + 8)`.
    #[cfg(target_arch = "x86_64")]
    unsafe fn v8(&self, kk: usize, j: usize) -> std::arch::x86_64::__m256;
}

/// f32 or bf16 weights with row stride `rs` (elements).
struct RowMajor<W> {
    w: *const W,
    rs: usize,
}
// SAFETY: read only.
unsafe impl<W> Send for RowMajor<W> {}
unsafe impl<W> Sync for RowMajor<W> {}

impl Src for RowMajor<f32> {
    #[inline(always)]
    unsafe fn at(&self, kk: usize, j: usize) -> f32 {
        *self.w.add(kk * self.rs + j)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn v16(&self, kk: usize, j: usize) -> std::arch::x86_64::__m512 {
        std::arch::x86_64::_mm512_loadu_ps(self.w.add(kk * self.rs + j))
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn v8(&self, kk: usize, j: usize) -> std::arch::x86_64::__m256 {
        std::arch::x86_64::_mm256_loadu_ps(self.w.add(kk * self.rs + j))
    }
}

impl Src for RowMajor<Bf16Bits> {
    #[inline(always)]
    unsafe fn at(&self, kk: usize, j: usize) -> f32 {
        (*self.w.add(kk * self.rs + j)).to_f32()
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn v16(&self, kk: usize, j: usize) -> std::arch::x86_64::__m512 {
        load_bf16x16(self.w.add(kk * self.rs + j))
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn v8(&self, kk: usize, j: usize) -> std::arch::x86_64::__m256 {
        load_bf16x8(self.w.add(kk * self.rs + j))
    }
}

/// A vector of f32 lanes for the streaming kernel (`f32` itself is the one-lane portable case).
trait Lanes: Copy {
    const N: usize;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    unsafe fn splat(v: f32) -> Self;
    /// `a * b + c`, one rounding.
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    unsafe fn weights<S: Src>(s: &S, kk: usize, j: usize) -> Self;
}

impl Lanes for f32 {
    const N: usize = 1;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        *p
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        *p = self
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        v
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        a.mul_add(b, c)
    }
    #[inline(always)]
    unsafe fn weights<S: Src>(s: &S, kk: usize, j: usize) -> Self {
        s.at(kk, j)
    }
}

/// [`Lanes`] for an x86 vector type: its width, load / store / broadcast / fused multiply-add
/// intrinsics, and the [`Src`] method that loads weights as it.
macro_rules! lanes {
    ($v:ident, $n:literal, $load:ident, $store:ident, $set1:ident, $fma:ident, $src:ident) => {
        #[cfg(target_arch = "x86_64")]
        impl Lanes for std::arch::x86_64::$v {
            const N: usize = $n;
            #[inline(always)]
            unsafe fn load(p: *const f32) -> Self {
                std::arch::x86_64::$load(p)
            }
            #[inline(always)]
            unsafe fn store(self, p: *mut f32) {
                std::arch::x86_64::$store(p, self)
            }
            #[inline(always)]
            unsafe fn splat(v: f32) -> Self {
                std::arch::x86_64::$set1(v)
            }
            #[inline(always)]
            unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
                std::arch::x86_64::$fma(a, b, c)
            }
            #[inline(always)]
            unsafe fn weights<S: Src>(s: &S, kk: usize, j: usize) -> Self {
                s.$src(kk, j)
            }
        }
    };
}

lanes!(__m512, 16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, v16);
lanes!(__m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps, v8);

/// One chunk of a streamed product: output columns `c0..c1` of all `m` rows of `y: [m, n]`,
/// from `x: [m, k]` (both contiguous).
#[derive(Clone, Copy)]
struct Part {
    x: *const f32,
    m: usize,
    k: usize,
    y: *mut f32,
    n: usize,
    c0: usize,
    c1: usize,
}
// SAFETY: the chunks of one product share its inputs and write disjoint columns of `y`.
unsafe impl Send for Part {}
unsafe impl Sync for Part {}

impl Part {
    /// Columns `c0..c1` of the same product (a method, so a closure captures the whole `Part`
    /// rather than its raw-pointer fields).
    fn cols(self, c0: usize, c1: usize) -> Part {
        Part { c0, c1, ..self }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,fma")]
unsafe fn stream_avx512<S: Src>(s: &S, p: Part) {
    stream_chunk::<S, std::arch::x86_64::__m512>(s, p)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn stream_avx2<S: Src>(s: &S, p: Part) {
    stream_chunk::<S, std::arch::x86_64::__m256>(s, p)
}

/// Output columns `c0..c1` of all `m` rows: the sums start at zero and fold in weight rows
/// `STREAM_K` at a time, in index order; whole vectors of columns through `L`, the rest one by
/// one with the same fused multiply-add.
#[inline(always)]
unsafe fn stream_chunk<S: Src, L: Lanes>(s: &S, p: Part) {
    let Part { x, m, k, y, n, c0, c1 } = p;
    debug_assert!(c0.is_multiple_of(16), "a chunk starts at a 16-column group");
    let cv = c0 + (c1 - c0) / L::N * L::N;
    for r in 0..m {
        std::ptr::write_bytes(y.add(r * n + c0), 0, c1 - c0);
    }
    let mut kk = 0;
    while kk < k {
        let kb = STREAM_K.min(k - kk);
        if kb == STREAM_K {
            let mut j = c0;
            while j < cv {
                let w = [
                    L::weights(s, kk, j),
                    L::weights(s, kk + 1, j),
                    L::weights(s, kk + 2, j),
                    L::weights(s, kk + 3, j),
                ];
                for r in 0..m {
                    let (xr, yp) = (x.add(r * k + kk), y.add(r * n + j));
                    let mut a = L::load(yp);
                    for (t, wt) in w.iter().enumerate() {
                        a = L::fma(L::splat(*xr.add(t)), *wt, a);
                    }
                    a.store(yp);
                }
                j += L::N;
            }
        } else {
            for t in kk..kk + kb {
                let mut j = c0;
                while j < cv {
                    let w = L::weights(s, t, j);
                    for r in 0..m {
                        let yp = y.add(r * n + j);
                        L::fma(L::splat(*x.add(r * k + t)), w, L::load(yp)).store(yp);
                    }
                    j += L::N;
                }
            }
        }
        for j in cv..c1 {
            for r in 0..m {
                let yp = y.add(r * n + j);
                let mut a = *yp;
                for t in kk..kk + kb {
                    a = (*x.add(r * k + t)).mul_add(s.at(t, j), a);
                }
                *yp = a;
            }
        }
        kk += kb;
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
    fn bf16_weights_give_the_f32_kernel_bits_on_their_rounded_values_on_every_instruction_set() {
        for (m, k, n) in [(7, 576, 200), (1, 128, 100), (3, 64, 1)] {
            let x = rand([m, k], 7);
            let w = rand([k, n], 8);
            let w16: Vec<half::bf16> = vals(w).iter().map(|&v| half::bf16::from_f32(v)).collect();
            let rounded: Vec<f32> = w16.iter().map(|v| v.to_f32()).collect();
            let want = reference(&vals(x.clone()), &rounded, m, k, n);
            let wb = FlexTensor::from_data(TensorData::new(w16.clone(), [k, n]));
            assert_eq!(wb.dtype(), DType::BF16);
            for isa in supported() {
                assert_eq!(vals(linear_with(&x, &wb, isa)), want, "{isa:?} {m}x{k}x{n}");
                // The tied head's transposed layout, in bf16 too.
                let mut t = vec![half::bf16::ZERO; k * n];
                for a in 0..k {
                    for b in 0..n {
                        t[b * k + a] = w16[a * n + b];
                    }
                }
                let wt = transposed(&FlexTensor::from_data(TensorData::new(t, [n, k])));
                assert_eq!(vals(linear_with(&x, &wt, isa)), want, "{isa:?} transposed bf16");
            }
        }
    }

    #[test]
    fn few_rows_stream_the_weight_and_give_the_definition_bits_for_every_weight_type() {
        // m <= STREAM_ROWS takes the streaming kernel: k not a multiple of STREAM_K (a partial
        // last pass), n with a ragged tail, and a weight large enough to be split across the
        // team (k * n >= PARALLEL_WEIGHT_ELEMS).
        for (m, k, n) in [(1, 130, 100), (3, 67, 40), (4, 576, 576), (2, 576, 1536), (1, 64, 49_152)] {
            assert!(m <= STREAM_ROWS);
            let x = rand([m, k], 11);
            let w = vals(rand([k, n], 12));
            let xv = vals(x.clone());
            let want = reference(&xv, &w, m, k, n);
            let w16: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
            let want16 = reference(&xv, &w16.iter().map(|v| v.to_f32()).collect::<Vec<_>>(), m, k, n);
            let wf = FlexTensor::from_data(TensorData::new(w.clone(), [k, n]));
            let wb = FlexTensor::from_data(TensorData::new(w16, [k, n]));
            for isa in supported() {
                assert_eq!(vals(linear_with(&x, &wf, isa)), want, "f32 {isa:?} {m}x{k}x{n}");
                assert_eq!(vals(linear_with(&x, &wb, isa)), want16, "bf16 {isa:?} {m}x{k}x{n}");
            }
        }
    }

    #[test]
    fn streamed_chunks_of_any_width_and_split_give_the_same_bits() {
        // Chunk widths 16, 48 and 144 (not multiples of the 64-column vector group), a single
        // chunk, with and without the threads, on a strided weight view (row stride above n,
        // offset start).
        let (k, n) = (67, 320);
        let w = vals(rand([k, n], 13));
        let mut view = vals(rand([k, n + 40], 14));
        for kk in 0..k {
            view[kk * (n + 40) + 8..kk * (n + 40) + 8 + n].copy_from_slice(&w[kk * n..(kk + 1) * n]);
        }
        let two = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for m in 1..=STREAM_ROWS {
            let x = rand([m, k], 15 + m as u64);
            let xv = vals(x.clone());
            let want = reference(&xv, &w, m, k, n);
            for isa in supported() {
                for (width, parallel) in [(16, true), (48, true), (144, false), (144, true), (n, false)] {
                    let mut out = FlexTensor::empty(Shape::from(vec![m, n]), DType::F32);
                    let src = RowMajor { w: view[8..].as_ptr(), rs: n + 40 };
                    two.install(|| {
                        super::super::team::exclusive(|| {
                            stream_with(&x, m, k, n, &src, &mut out, isa, width, parallel)
                        })
                    });
                    assert_eq!(vals(out), want, "f32 view {isa:?} m {m} width {width}");
                }
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
