//! 8-bit weights times 8-bit activations: the CPU's products for `model.dtype = "q8"`.
//!
//! Why: with weights widened to f32 before each multiply-add, a decode step at batch 1 is bound
//! by the widening (4 instructions per 16 weights before the FMA: 7-8 G weights/s per core on a
//! Zen 4 host, results/bench/decode-b1-2026-12-03-amd-epyc.md). Quantizing each activation row
//! to 8 bits too turns the inner loop into integer dot products (AVX512-VNNI `vpdpbusd`: 64
//! multiply-adds per instruction), as llama.cpp does for its quantized types.
//!
//! ## Numbers
//!
//! A `[k, n]` weight is cut along `k` (the reduction) into blocks of [`BLOCK`] = 32 rows. Each
//! column of a block has a scale `dw = max|w| / 127` and values `qw = round(w / dw)` in
//! -127..=127 (Q8_0's rule, with the blocks along the reduction as in GGUF). At each product,
//! each row of activations is quantized the same way, a scale `dx` per 32 of its `k` values
//! (halves rounding to even there).
//! Then, for row `r` and column `j`, over the blocks `b` in order, from `acc = 0`:
//!
//! ```text
//! isum = sum over kk in block b of qx[r][kk] * qw[kk][j]      (an exact integer)
//! acc  = fma(isum as f32, dx[r][b] * dw[b][j], acc)           (f32, one rounding each)
//! ```
//!
//! The integer sums are exact and the float steps are the same operations in the same order on
//! every path (AVX512-VNNI, the portable code compiled for AVX2, the portable code), so the bits
//! do not depend on the instruction set, the thread count, or which other rows share the call:
//! a row's result depends only on that row. They are not the f32 product's bits: the
//! activations are rounded to 8 bits (tests/low_precision.rs measures the logit difference).
//!
//! ## Storage
//!
//! The values are kept in the order the kernel reads them: column panels of 16, each panel's
//! `k` rows in order, and within a panel 4 consecutive rows of a column in one 32-bit lane
//! (byte `(j / 16) * 16k + (kk / 4) * 64 + (j % 16) * 4 + kk % 4`), stored as `qw + 128`
//! (unsigned, the operand `vpdpbusd` multiplies by signed bytes; the kernel subtracts
//! `128 * sum(qx)` per block). A panel is one sequential stream of `16 k` bytes. The scales are
//! panel-major too: `dw[b][j]` at `(j / 16) * 16 (k / 32) + b * 16 + j % 16`.
//!
//! A stored weight is one 4-byte-aligned buffer, the values followed by the scales
//! ([`storage`]): burn-flex keeps a quantized tensor's scales in a `Vec` that every clone of the
//! tensor copies (each `Param::val()`: 13 MB a decode step on SmolLM2-135M, 8% of a batch-1
//! step), while the value bytes are shared.

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Shape};
use rayon::prelude::*;

use super::flex_linear::Isa;

/// Rows of `k` per scale, for weights and activations.
pub const BLOCK: usize = 32;

/// Columns per panel (one 512-bit vector of 32-bit sums).
const PANEL: usize = 16;

/// Rows of `k` per 32-bit lane.
const LANE: usize = 4;

/// Lanes per block.
const GROUPS: usize = BLOCK / LANE;

/// Weights below this many elements are not split across threads.
const PARALLEL_WEIGHT_ELEMS: usize = 64 * 1024;

/// Whether a `[k, n]` weight can be stored in 8 bits (whole blocks and whole scale groups).
pub fn fits(k: usize, n: usize) -> bool {
    k > 0 && n > 0 && k.is_multiple_of(BLOCK) && n.is_multiple_of(BLOCK)
}

/// Where weight `(kk, j)` of a `k`-row weight is stored.
#[inline(always)]
fn at(kk: usize, j: usize, k: usize) -> usize {
    (j / PANEL) * PANEL * k + (kk / LANE) * PANEL * LANE + (j % PANEL) * LANE + kk % LANE
}

/// Where scale `(b, j)` of a `k`-row weight is stored.
#[inline(always)]
fn scale_at(b: usize, j: usize, k: usize) -> usize {
    (j / PANEL) * PANEL * (k / BLOCK) + b * PANEL + j % PANEL
}

/// A row-major `[k, n]` f32 weight in this module's 8-bit format: `(values, scales)`, the values
/// as the kernel's `i8` storage (bits of `qw + 128`).
pub fn quantize(w: &[f32], k: usize, n: usize) -> (Vec<i8>, Vec<f32>) {
    assert!(fits(k, n) && w.len() == k * n, "q8 quantize: shape [{k}, {n}] with {} values", w.len());
    let mut q = vec![0i8; k * n];
    let mut s = vec![0f32; k / BLOCK * n];
    let mut amax = vec![0f32; n];
    let mut inv = vec![0f32; n];
    for b in 0..k / BLOCK {
        let rows = &w[b * BLOCK * n..(b + 1) * BLOCK * n];
        amax.fill(0.0);
        for row in rows.chunks_exact(n) {
            for (m, v) in amax.iter_mut().zip(row) {
                *m = m.max(v.abs());
            }
        }
        for j in 0..n {
            let d = amax[j] / 127.0;
            s[scale_at(b, j, k)] = d;
            inv[j] = if d > 0.0 { d.recip() } else { 0.0 };
        }
        for (i, row) in rows.chunks_exact(n).enumerate() {
            for (j, v) in row.iter().enumerate() {
                let qv = (v * inv[j]).round().clamp(-127.0, 127.0) as i32;
                q[at(b * BLOCK + i, j, k)] = ((qv + 128) as u8) as i8;
            }
        }
    }
    (q, s)
}

/// The row-major `[k, n]` values an 8-bit weight stands for (`qw as f32 * dw`).
pub fn dequantize(q: &[i8], s: &[f32], k: usize, n: usize) -> Vec<f32> {
    assert!(fits(k, n) && q.len() == k * n && s.len() == k / BLOCK * n, "q8 dequantize: shapes");
    let mut w = vec![0f32; k * n];
    for kk in 0..k {
        for j in 0..n {
            let v = i32::from(q[at(kk, j, k)] as u8) - 128;
            w[kk * n + j] = v as f32 * s[scale_at(kk / BLOCK, j, k)];
        }
    }
    w
}

/// Activation rows in 8 bits: `q[r][kk / 4]` holds 4 consecutive values (little-endian bytes),
/// `d[r][b]` the block scales and `c[r][b]` `128 * sum(q)` of each block.
struct Rows {
    q: Vec<i32>,
    d: Vec<f32>,
    c: Vec<i32>,
}

/// Quantizes each row of `x` (`[m, k]`, row-major) in blocks of [`BLOCK`], as the weights are,
/// except that halves round to even (a rounding every vector unit has).
fn quantize_rows(x: &[f32], m: usize, k: usize, isa: Isa) -> Rows {
    let kb = k / BLOCK;
    let mut rows = Rows { q: vec![0; m * k / LANE], d: vec![0.0; m * kb], c: vec![0; m * kb] };
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Scalar {
        // SAFETY: AVX2 is part of both vector instruction sets.
        unsafe { quantize_blocks_avx2(x, &mut rows) };
        return rows;
    }
    quantize_blocks(x, &mut rows);
    rows
}

/// [`quantize_blocks`] compiled for AVX2 (it vectorizes; the same bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_blocks_avx2(x: &[f32], rows: &mut Rows) {
    quantize_blocks(x, rows)
}

#[inline(always)]
fn quantize_blocks(x: &[f32], rows: &mut Rows) {
    for (bi, block) in x.chunks_exact(BLOCK).enumerate() {
        // The largest magnitude, compared as bits (the order of non-negative floats).
        let amax = f32::from_bits(block.iter().fold(0u32, |a, v| a.max(v.to_bits() & 0x7fff_ffff)));
        let d = amax / 127.0;
        let inv = if d > 0.0 { d.recip() } else { 0.0 };
        let mut q = [0i32; BLOCK];
        for (q, v) in q.iter_mut().zip(block) {
            *q = (v * inv).round_ties_even() as i32;
        }
        for (g, four) in q.chunks_exact(LANE).enumerate() {
            rows.q[bi * GROUPS + g] =
                i32::from_le_bytes([four[0] as u8, four[1] as u8, four[2] as u8, four[3] as u8]);
        }
        rows.d[bi] = d;
        rows.c[bi] = 128 * q.iter().sum::<i32>();
    }
}

/// One product's operands, for a range of output columns (whole panels).
#[derive(Clone, Copy)]
struct Part {
    /// Activation lanes `[m][k / 4]`, block scales and corrections `[m][k / 32]`.
    xq: *const i32,
    xd: *const f32,
    xc: *const i32,
    /// Weight values and scales (module layout).
    w: *const u8,
    wd: *const f32,
    /// Output `[m, n]`, zeroed.
    y: *mut f32,
    m: usize,
    k: usize,
    n: usize,
    /// Panels `p0..p1`.
    p0: usize,
    p1: usize,
}
// SAFETY: the chunks of one product share its inputs and write disjoint columns of `y`.
unsafe impl Send for Part {}
unsafe impl Sync for Part {}

impl Part {
    /// Panels `p0..p1` of the same product (a method, so a closure captures the whole `Part`).
    fn panels(self, p0: usize, p1: usize) -> Part {
        Part { p0, p1, ..self }
    }
}

/// One buffer for a quantized weight (`q`, `s` from [`quantize`]): the values, then the scales,
/// 4-byte aligned. [`linear`] reads it as `i8`.
pub fn storage(q: &[i8], s: &[f32]) -> Vec<f32> {
    assert!(q.len().is_multiple_of(4 * BLOCK) && s.len() * BLOCK == q.len(), "q8 storage: lengths");
    let mut buf = vec![0f32; q.len() / 4 + s.len()];
    let (values, scales) = buf.split_at_mut(q.len() / 4);
    for (v, four) in values.iter_mut().zip(q.chunks_exact(4)) {
        *v = f32::from_ne_bytes([four[0] as u8, four[1] as u8, four[2] as u8, four[3] as u8]);
    }
    scales.copy_from_slice(s);
    buf
}

/// The values and scales of a [`storage`] buffer viewed as `i8`.
fn split(buf: &[i8], k: usize, n: usize) -> (&[i8], &[f32]) {
    assert!(
        fits(k, n) && buf.len() == k * n + 4 * (k / BLOCK * n),
        "q8: a [{k}, {n}] weight buffer of {} bytes",
        buf.len()
    );
    let (values, scales) = buf.split_at(k * n);
    assert!((scales.as_ptr() as usize).is_multiple_of(4), "q8: scales not 4-byte aligned");
    // SAFETY: in bounds (checked length), aligned (checked), and any bits are an f32.
    let scales = unsafe { std::slice::from_raw_parts(scales.as_ptr() as *const f32, k / BLOCK * n) };
    (values, scales)
}

/// `x [m, k] · w [k, n]` for a weight in this module's format, as one [`storage`] buffer.
pub fn linear(x: &FlexTensor, w: &[i8], k: usize, n: usize) -> FlexTensor {
    linear_with(x, w, k, n, Isa::detect())
}

/// [`linear`] on a given instruction set (AVX-512 uses VNNI where the CPU has it).
pub fn linear_with(x: &FlexTensor, w: &[i8], k: usize, n: usize, isa: Isa) -> FlexTensor {
    let (q, s) = split(w, k, n);
    assert!(x.dtype() == DType::F32, "q8 linear: f32 activations");
    let xs = x.layout().shape();
    assert!(xs.num_dims() == 2 && xs[1] == k, "q8 linear: activations {:?} for k = {k}", xs);
    let m = xs[0];
    let x = if x.is_contiguous() && x.layout().start_offset() == 0 { x.clone() } else { x.to_contiguous() };
    let mut out = FlexTensor::empty(Shape::from(vec![m, n]), DType::F32);
    if m == 0 {
        return out;
    }
    out.storage_mut::<f32>().fill(0.0);
    let rows = quantize_rows(&x.storage::<f32>()[..m * k], m, k, isa);
    let all = Part {
        xq: rows.q.as_ptr(),
        xd: rows.d.as_ptr(),
        xc: rows.c.as_ptr(),
        w: q.as_ptr() as *const u8,
        wd: s.as_ptr(),
        y: out.storage_mut::<f32>().as_mut_ptr(),
        m,
        k,
        n,
        p0: 0,
        p1: n / PANEL,
    };
    let panels = n / PANEL;
    let threads = rayon::current_num_threads();
    let parallel = k * n >= PARALLEL_WEIGHT_ELEMS && threads > 1;
    // Several chunks per thread when split (load balance), whole groups of 4 panels.
    let per = if parallel { panels.div_ceil(4 * threads).next_multiple_of(4) } else { panels };
    let chunks = panels.div_ceil(per);
    let kernel = Kernel::of(isa);
    let run = |c: usize| {
        let p = all.panels(c * per, ((c + 1) * per).min(panels));
        // SAFETY: the buffers are live and of the shapes checked above; chunk `c` writes only
        // its panels' columns of `y`.
        unsafe { kernel.run(p) }
    };
    if parallel && chunks > 1 {
        if !super::team::run(chunks, &run) {
            (0..chunks).into_par_iter().for_each(run);
        }
    } else {
        (0..chunks).for_each(run);
    }
    out
}

/// Which code computes a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Vnni,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Kernel {
    fn of(isa: Isa) -> Kernel {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if vnni() => Kernel::Vnni,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Avx2 => Kernel::Avx2,
            _ => Kernel::Portable,
        }
    }

    unsafe fn run(self, p: Part) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni => chunk_vnni(p),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => chunk_avx2(p),
            Kernel::Portable => chunk_portable(p),
        }
    }
}

/// Whether this CPU has 512-bit integer dot products.
#[cfg(target_arch = "x86_64")]
fn vnni() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vnni")
}

/// The portable code, compiled for AVX2 and FMA (the integer sums vectorize; `mul_add` is one
/// instruction).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chunk_avx2(p: Part) {
    chunk_portable(p)
}

/// Panels `p0..p1`: for each panel, each block, each row, the block's integer sums of 16
/// columns, then the float step of the module docs.
#[inline(always)]
unsafe fn chunk_portable(p: Part) {
    let Part { xq, xd, xc, w, wd, y, m, k, n, p0, p1 } = p;
    let kb = k / BLOCK;
    for panel in p0..p1 {
        let wp = w.add(panel * PANEL * k);
        let dp = wd.add(panel * PANEL * kb);
        for b in 0..kb {
            let wb = wp.add(b * BLOCK * PANEL);
            for r in 0..m {
                let mut acc = [0i32; PANEL];
                for g in 0..GROUPS {
                    let xv =
                        (*xq.add(r * k / LANE + b * GROUPS + g)).to_le_bytes().map(|v| i32::from(v as i8));
                    let wg = wb.add(g * PANEL * LANE);
                    for (j, a) in acc.iter_mut().enumerate() {
                        let mut s = 0i32;
                        for (t, xt) in xv.iter().enumerate() {
                            s += i32::from(*wg.add(j * LANE + t)) * xt;
                        }
                        *a += s;
                    }
                }
                let dx = *xd.add(r * kb + b);
                let c = *xc.add(r * kb + b);
                let yr = y.add(r * n + panel * PANEL);
                for (j, a) in acc.iter().enumerate() {
                    let t = dx * *dp.add(b * PANEL + j);
                    *yr.add(j) = ((a - c) as f32).mul_add(t, *yr.add(j));
                }
            }
        }
    }
}

/// Panels `p0..p1` with `vpdpbusd`: four panels at a time (four independent chains), then one.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn chunk_vnni(p: Part) {
    let mut panel = p.p0;
    while panel + 4 <= p.p1 {
        panels_vnni::<4>(&p, panel);
        panel += 4;
    }
    while panel < p.p1 {
        panels_vnni::<1>(&p, panel);
        panel += 1;
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn panels_vnni<const V: usize>(p: &Part, panel: usize) {
    for b in 0..p.k / BLOCK {
        let mut r = 0;
        while r + 4 <= p.m {
            tile_vnni::<4, V>(p, panel, b, r);
            r += 4;
        }
        match p.m - r {
            3 => tile_vnni::<3, V>(p, panel, b, r),
            2 => tile_vnni::<2, V>(p, panel, b, r),
            1 => tile_vnni::<1, V>(p, panel, b, r),
            _ => {}
        }
    }
}

/// Block `b` of rows `r0..r0 + R` and panels `panel..panel + V`: `R x V` vectors of sums in
/// registers, each weight vector loaded once for the `R` rows.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_vnni<const R: usize, const V: usize>(p: &Part, panel: usize, b: usize, r0: usize) {
    use std::arch::x86_64::*;
    let Part { xq, xd, xc, w, wd, y, k, n, .. } = *p;
    let kb = k / BLOCK;
    let mut acc = [[_mm512_setzero_si512(); V]; R];
    for g in 0..GROUPS {
        let mut wv = [_mm512_setzero_si512(); V];
        for (v, wv) in wv.iter_mut().enumerate() {
            *wv = _mm512_loadu_si512(
                w.add((panel + v) * PANEL * k + (b * GROUPS + g) * PANEL * LANE) as *const _
            );
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let xv = _mm512_set1_epi32(*xq.add((r0 + r) * k / LANE + b * GROUPS + g));
            for (a, wv) in acc.iter_mut().zip(&wv) {
                *a = _mm512_dpbusd_epi32(*a, *wv, xv);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let dx = _mm512_set1_ps(*xd.add((r0 + r) * kb + b));
        let c = _mm512_set1_epi32(*xc.add((r0 + r) * kb + b));
        for (v, a) in acc.iter().enumerate() {
            let t = _mm512_mul_ps(dx, _mm512_loadu_ps(wd.add((panel + v) * PANEL * kb + b * PANEL)));
            let yp = y.add((r0 + r) * n + (panel + v) * PANEL);
            let s = _mm512_cvtepi32_ps(_mm512_sub_epi32(*a, c));
            _mm512_storeu_ps(yp, _mm512_fmadd_ps(s, t, _mm512_loadu_ps(yp)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;
    use burn::tensor::TensorData;

    fn rand(len: usize, seed: u64) -> Vec<f32> {
        let mut s = Stream::new(seed, "q8-test", &[]);
        (0..len).map(|_| (s.next_f64() * 2.0 - 1.0) as f32).collect()
    }

    /// Q8_0's rule on one block, written out: scale and values (halves away from zero for
    /// weights, to even for activations).
    fn q8_block(v: &[f32], even: bool) -> (f32, Vec<i32>) {
        let amax = v.iter().map(|x| x.abs()).fold(0f32, f32::max);
        let d = amax / 127.0;
        let round = |t: f32| if even { t.round_ties_even() } else { t.round() };
        let q = v.iter().map(|x| if d > 0.0 { round(x * (1.0 / d)) as i32 } else { 0 }).collect();
        (d, q)
    }

    /// The module docs' definition, from plain f32 inputs, one element at a time.
    fn reference(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for r in 0..m {
            for j in 0..n {
                let mut acc = 0f32;
                for b in 0..k / BLOCK {
                    let (dx, qx) = q8_block(&x[r * k + b * BLOCK..r * k + (b + 1) * BLOCK], true);
                    let col: Vec<f32> = (0..BLOCK).map(|i| w[(b * BLOCK + i) * n + j]).collect();
                    let (dw, qw) = q8_block(&col, false);
                    let isum: i32 = qx.iter().zip(&qw).map(|(a, b)| a * b).sum();
                    acc = (isum as f32).mul_add(dx * dw, acc);
                }
                y[r * n + j] = acc;
            }
        }
        y
    }

    fn isas() -> Vec<Isa> {
        let mut v = vec![Isa::Scalar];
        if Isa::best() != Isa::Scalar {
            v.push(Isa::Avx2);
        }
        if Isa::best() == Isa::Avx512 {
            v.push(Isa::Avx512);
        }
        v
    }

    fn product(x: &[f32], m: usize, k: usize, q: &[i8], s: &[f32], n: usize, isa: Isa) -> Vec<f32> {
        let xt = FlexTensor::from_data(TensorData::new(x.to_vec(), [m, k]));
        let buf = storage(q, s);
        // SAFETY: plain bytes of a live buffer.
        let w = unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const i8, buf.len() * 4) };
        linear_with(&xt, w, k, n, isa).into_data().to_vec().unwrap()
    }

    #[test]
    fn dequantized_values_are_the_q8_0_rule_per_column_block() {
        let (k, n) = (64, 96);
        let w = rand(k * n, 1);
        let (q, s) = quantize(&w, k, n);
        let got = dequantize(&q, &s, k, n);
        for b in 0..k / BLOCK {
            for j in 0..n {
                let col: Vec<f32> = (0..BLOCK).map(|i| w[(b * BLOCK + i) * n + j]).collect();
                let (d, qv) = q8_block(&col, false);
                for i in 0..BLOCK {
                    assert_eq!(got[(b * BLOCK + i) * n + j], qv[i] as f32 * d, "({}, {j})", b * BLOCK + i);
                }
            }
        }
        // Rounding error at most half a step of its block.
        for (a, b) in got.iter().zip(&w) {
            assert!((a - b).abs() <= 1.0 / 127.0 * 0.5 + 1e-6);
        }
    }

    #[test]
    fn every_instruction_set_gives_the_definition_bit_for_bit() {
        // Panels in fours and a remainder, one to many rows, a zero activation block.
        for (m, k, n) in [(1, 32, 32), (1, 64, 96), (3, 96, 160), (7, 128, 64), (17, 64, 224)] {
            let mut x = rand(m * k, 2 + m as u64);
            x[..BLOCK].fill(0.0);
            let w = rand(k * n, 3 + n as u64);
            let (q, s) = quantize(&w, k, n);
            let want = reference(&x, &w, m, k, n);
            for isa in isas() {
                assert_eq!(product(&x, m, k, &q, &s, n, isa), want, "{isa:?} {m}x{k}x{n}");
            }
        }
    }

    #[test]
    fn a_row_does_not_depend_on_its_batch_or_the_thread_count() {
        // Large enough to be split across threads (k * n >= PARALLEL_WEIGHT_ELEMS).
        let (k, n) = (256, 512);
        let w = rand(k * n, 5);
        let (q, s) = quantize(&w, k, n);
        let x = rand(9 * k, 6);
        let whole = product(&x, 9, k, &q, &s, n, Isa::detect());
        let one = |pool: &rayon::ThreadPool, r: usize| {
            pool.install(|| product(&x[r * k..(r + 1) * k], 1, k, &q, &s, n, Isa::detect()))
        };
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for r in [0, 4, 8] {
                assert_eq!(one(&pool, r), whole[r * n..(r + 1) * n], "row {r}, {threads} threads");
            }
        }
        // And under the decode team (a single lane).
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let teamed = pool
            .install(|| super::super::team::exclusive(|| product(&x[..k], 1, k, &q, &s, n, Isa::detect())));
        assert_eq!(teamed, whole[..n]);
    }

    #[test]
    fn close_to_the_f32_product() {
        let (m, k, n) = (2, 512, 64);
        let x = rand(m * k, 7);
        let w = rand(k * n, 8);
        let (q, s) = quantize(&w, k, n);
        let got = product(&x, m, k, &q, &s, n, Isa::detect());
        for r in 0..m {
            for j in 0..n {
                let exact: f64 = (0..k).map(|kk| x[r * k + kk] as f64 * w[kk * n + j] as f64).sum();
                // Each factor is within half a step (1/254 of its block's max, here < 1) of its
                // value: |error| <= sum(|x| + |w|) / 254 + products of the two, loosely k / 100.
                assert!((got[r * n + j] as f64 - exact).abs() < k as f64 / 100.0, "({r}, {j})");
            }
        }
    }
}
