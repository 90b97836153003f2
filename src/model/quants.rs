//! ggml's tensor types dequantised to f32: the plain floats (F32, F16, BF16), the 32-value
//! blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and the 256-value k-quant super-blocks (Q2_K, Q3_K,
//! Q4_K, Q5_K, Q6_K, Q8_K).
//!
//! Block layouts and formulas follow ggml's `ggml-common.h` (`block_q*` structs) and
//! `ggml-quants.c` (`dequantize_row_q*`). The arithmetic is in f32 in ggml's order (e.g. Q4_K's
//! `(d * sc) * q - dmin * m`, with no fused multiply-add), so values are bit-identical to gguf-py's
//! `gguf.quants.dequantize`; `tests/gguf_quants.rs` checks this against the fixture made by
//! `tests/fixtures/gguf_quants/make_quants.py`. All multi-byte fields are little-endian.

/// Values in one k-quant super-block (ggml's `QK_K`).
const QK_K: usize = 256;

/// One ggml tensor type: its id in GGUF files, its name and block geometry, and its decoder.
pub struct Format {
    /// ggml's `ggml_type` id, as stored in a GGUF tensor info.
    pub id: u32,
    /// ggml's name for the type (`Q4_K`).
    pub name: &'static str,
    /// Values decoded from one block.
    pub values_per_block: usize,
    /// Bytes in one block.
    pub bytes_per_block: usize,
    /// Decodes `raw` (whole blocks) into `out` (exactly `values_per_block` per block).
    decode: fn(raw: &[u8], out: &mut [f32]),
}

impl Format {
    /// Appends the values of `raw`, which holds whole blocks, to `out`. A trailing partial
    /// block is ignored (the callers slice whole blocks; see [`Format::bytes_for`]).
    pub fn dequantize(&self, raw: &[u8], out: &mut Vec<f32>) {
        debug_assert!(raw.len().is_multiple_of(self.bytes_per_block), "{}: partial block", self.name);
        let blocks = raw.len() / self.bytes_per_block;
        let start = out.len();
        out.resize(start + blocks * self.values_per_block, 0.0);
        (self.decode)(&raw[..blocks * self.bytes_per_block], &mut out[start..]);
    }

    /// Bytes holding `values` values, or `None` when they are not whole blocks.
    pub fn bytes_for(&self, values: usize) -> Option<usize> {
        values
            .is_multiple_of(self.values_per_block)
            .then(|| values / self.values_per_block * self.bytes_per_block)
    }
}

/// Every type this module decodes, in ggml id order.
pub const FORMATS: &[Format] = &[
    Format { id: 0, name: "F32", values_per_block: 1, bytes_per_block: 4, decode: f32s },
    Format { id: 1, name: "F16", values_per_block: 1, bytes_per_block: 2, decode: f16s },
    Format { id: 2, name: "Q4_0", values_per_block: 32, bytes_per_block: 18, decode: q4_0 },
    Format { id: 3, name: "Q4_1", values_per_block: 32, bytes_per_block: 20, decode: q4_1 },
    Format { id: 6, name: "Q5_0", values_per_block: 32, bytes_per_block: 22, decode: q5_0 },
    Format { id: 7, name: "Q5_1", values_per_block: 32, bytes_per_block: 24, decode: q5_1 },
    Format { id: 8, name: "Q8_0", values_per_block: 32, bytes_per_block: 34, decode: q8_0 },
    Format { id: 10, name: "Q2_K", values_per_block: QK_K, bytes_per_block: 84, decode: q2_k },
    Format { id: 11, name: "Q3_K", values_per_block: QK_K, bytes_per_block: 110, decode: q3_k },
    Format { id: 12, name: "Q4_K", values_per_block: QK_K, bytes_per_block: 144, decode: q4_k },
    Format { id: 13, name: "Q5_K", values_per_block: QK_K, bytes_per_block: 176, decode: q5_k },
    Format { id: 14, name: "Q6_K", values_per_block: QK_K, bytes_per_block: 210, decode: q6_k },
    Format { id: 15, name: "Q8_K", values_per_block: QK_K, bytes_per_block: 292, decode: q8_k },
    Format { id: 30, name: "BF16", values_per_block: 1, bytes_per_block: 2, decode: bf16s },
];

/// The format with ggml id `id`, if this module decodes it.
pub fn format(id: u32) -> Option<&'static Format> {
    FORMATS.iter().find(|f| f.id == id)
}

/// `(values_per_block, bytes_per_block)` of ggml type `id`, if this module decodes it.
pub fn block_geometry(id: u32) -> Option<(usize, usize)> {
    format(id).map(|f| (f.values_per_block, f.bytes_per_block))
}

/// The decoded types' names with their ids, for error messages: `F32 (0), F16 (1), ...`.
pub fn supported() -> String {
    FORMATS.iter().map(|f| format!("{} ({})", f.name, f.id)).collect::<Vec<_>>().join(", ")
}

/// The f16 at `b[i..i + 2]`, widened exactly.
fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

fn f32s(raw: &[u8], out: &mut [f32]) {
    for (b, y) in raw.chunks_exact(4).zip(out) {
        *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

fn f16s(raw: &[u8], out: &mut [f32]) {
    for (i, y) in out.iter_mut().enumerate() {
        *y = f16_at(raw, 2 * i);
    }
}

/// bf16 is the top half of an f32.
fn bf16s(raw: &[u8], out: &mut [f32]) {
    for (b, y) in raw.chunks_exact(2).zip(out) {
        *y = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
    }
}

/// `block_q4_0` (18 bytes): d: f16, qs[16]. Value j is `(lo nibble of qs[j] - 8) * d`, value
/// j + 16 the same with the high nibble.
fn q4_0(raw: &[u8], out: &mut [f32]) {
    for (b, y) in raw.chunks_exact(18).zip(out.chunks_exact_mut(32)) {
        let d = f16_at(b, 0);
        let qs = &b[2..18];
        for j in 0..16 {
            y[j] = ((qs[j] & 0x0f) as i32 - 8) as f32 * d;
            y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// `block_q4_1` (20 bytes): d: f16, m: f16, qs[16]. Value is `q * d + m`, nibbles as Q4_0.
fn q4_1(raw: &[u8], out: &mut [f32]) {
    for (b, y) in raw.chunks_exact(20).zip(out.chunks_exact_mut(32)) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        let qs = &b[4..20];
        for j in 0..16 {
            y[j] = (qs[j] & 0x0f) as f32 * d + m;
            y[j + 16] = (qs[j] >> 4) as f32 * d + m;
        }
    }
}

/// The 5-bit quants of Q5_0 / Q5_1 from `qh` (u32, bit j is the fifth bit of value j) and
/// `qs[16]` (low nibbles of values 0..16, high nibbles of values 16..32).
fn five_bit(qh: u32, qs: &[u8], j: usize) -> (u8, u8) {
    let lo = (qs[j] & 0x0f) | ((((qh >> j) & 1) as u8) << 4);
    let hi = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
    (lo, hi)
}

/// `block_q5_0` (22 bytes): d: f16, qh: u32, qs[16]. Value is `(q - 16) * d`.
fn q5_0(raw: &[u8], out: &mut [f32]) {
    for (b, y) in raw.chunks_exact(22).zip(out.chunks_exact_mut(32)) {
        let d = f16_at(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        for j in 0..16 {
            let (lo, hi) = five_bit(qh, &b[6..22], j);
            y[j] = (lo as i32 - 16) as f32 * d;
            y[j + 16] = (hi as i32 - 16) as f32 * d;
        }
    }
}

/// `block_q5_1` (24 bytes): d: f16, m: f16, qh: u32, qs[16]. Value is `q * d + m`.
fn q5_1(raw: &[u8], out: &mut [f32]) {
    for (b, y) in raw.chunks_exact(24).zip(out.chunks_exact_mut(32)) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        for j in 0..16 {
            let (lo, hi) = five_bit(qh, &b[8..24], j);
            y[j] = lo as f32 * d + m;
            y[j + 16] = hi as f32 * d + m;
        }
    }
}

/// `block_q8_0` (34 bytes): d: f16, qs: i8[32]. Value is `q * d`.
fn q8_0(raw: &[u8], out: &mut [f32]) {
    for (b, y) in raw.chunks_exact(34).zip(out.chunks_exact_mut(32)) {
        let d = f16_at(b, 0);
        for (y, &q) in y.iter_mut().zip(&b[2..34]) {
            *y = q as i8 as f32 * d;
        }
    }
}

/// `block_q2_K` (84 bytes): scales[16], qs[64], d: f16, dmin: f16. Sixteen groups of 16 values;
/// group g has scale `scales[g] & 15` and min `scales[g] >> 4`. Value `128 h + 32 j + l`
/// (h < 2, j < 4, l < 32) is the 2-bit field `j` of `qs[32 h + l]`, in group `8 h + 2 j + l / 16`,
/// and decodes to `(d * scale) * q - dmin * min`.
fn q2_k(raw: &[u8], out: &mut [f32]) {
    for (b, y) in raw.chunks_exact(84).zip(out.chunks_exact_mut(QK_K)) {
        let (scales, qs) = (&b[0..16], &b[16..80]);
        let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
        for h in 0..2 {
            for j in 0..4 {
                for l in 0..32 {
                    let sc = scales[8 * h + 2 * j + l / 16];
                    let dl = d * (sc & 0x0f) as f32;
                    let ml = dmin * (sc >> 4) as f32;
                    let q = (qs[32 * h + l] >> (2 * j)) & 3;
                    y[128 * h + 32 * j + l] = dl * q as f32 - ml;
                }
            }
        }
    }
}

/// `block_q3_K` (110 bytes): hmask[32], qs[64], scales[12], d: f16. Sixteen groups of 16 values
/// with 6-bit scales stored minus 32: scale `k` has low bits `scales[k] & 15` (k < 8) or
/// `scales[k - 8] >> 4` (k >= 8) and high bits `(scales[8 + k % 4] >> (2 (k / 4))) & 3`.
/// Value `v = 128 h + 32 j + l` takes the 2-bit field `j` of `qs[32 h + l]`, minus 4 when bit
/// `4 h + j` of `hmask[l]` is clear, and decodes to `(d * (scale[v / 16] - 32)) * q`.
fn q3_k(raw: &[u8], out: &mut [f32]) {
    for (b, y) in raw.chunks_exact(110).zip(out.chunks_exact_mut(QK_K)) {
        let (hmask, qs, sc) = (&b[0..32], &b[32..96], &b[96..108]);
        let d = f16_at(b, 108);
        let scale = |k: usize| -> i32 {
            let low = if k < 8 { sc[k] & 0x0f } else { sc[k - 8] >> 4 };
            let high = (sc[8 + k % 4] >> (2 * (k / 4))) & 3;
            (low | (high << 4)) as i32 - 32
        };
        for h in 0..2 {
            for j in 0..4 {
                for l in 0..32 {
                    let v = 128 * h + 32 * j + l;
                    let dl = d * scale(v / 16) as f32;
                    let low = ((qs[32 * h + l] >> (2 * j)) & 3) as i32;
                    let q = if hmask[l] & (1 << (4 * h + j)) != 0 { low } else { low - 4 };
                    y[v] = dl * q as f32;
                }
            }
        }
    }
}

/// Scale and min `j` (< 8) of the 12 packed 6-bit pairs of Q4_K / Q5_K (ggml's
/// `get_scale_min_k4`): pairs 0..4 are the low 6 bits of bytes `j` and `j + 4`; pairs 4..8 take
/// their low nibble / high nibble from byte `j + 4` and their top two bits from the top of bytes
/// `j - 4` / `j`.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// `block_q4_K` (144 bytes): d: f16, dmin: f16, scales[12], qs[128]. Eight groups of 32 values;
/// value `64 g + l` is the low nibble of `qs[32 g + l]` in group `2 g`, value `64 g + 32 + l` the
/// high nibble in group `2 g + 1`; each decodes to `(d * scale) * q - dmin * min`.
fn q4_k(raw: &[u8], out: &mut [f32]) {
    for (b, y) in raw.chunks_exact(144).zip(out.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let (sc, qs) = (&b[4..16], &b[16..144]);
        for g in 0..4 {
            let (s1, m1) = scale_min_k4(2 * g, sc);
            let (s2, m2) = scale_min_k4(2 * g + 1, sc);
            let (d1, m1) = (d * s1 as f32, dmin * m1 as f32);
            let (d2, m2) = (d * s2 as f32, dmin * m2 as f32);
            for l in 0..32 {
                let q = qs[32 * g + l];
                y[64 * g + l] = d1 * (q & 0x0f) as f32 - m1;
                y[64 * g + 32 + l] = d2 * (q >> 4) as f32 - m2;
            }
        }
    }
}

/// `block_q5_K` (176 bytes): d: f16, dmin: f16, scales[12], qh[32], qs[128]. As Q4_K, plus a
/// fifth bit (16) for value `32 k + l` from bit `k` of `qh[l]`.
fn q5_k(raw: &[u8], out: &mut [f32]) {
    for (b, y) in raw.chunks_exact(176).zip(out.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let (sc, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
        for g in 0..4 {
            let (s1, m1) = scale_min_k4(2 * g, sc);
            let (s2, m2) = scale_min_k4(2 * g + 1, sc);
            let (d1, m1) = (d * s1 as f32, dmin * m1 as f32);
            let (d2, m2) = (d * s2 as f32, dmin * m2 as f32);
            for l in 0..32 {
                let lo = (qs[32 * g + l] & 0x0f) | (((qh[l] >> (2 * g)) & 1) << 4);
                let hi = (qs[32 * g + l] >> 4) | (((qh[l] >> (2 * g + 1)) & 1) << 4);
                y[64 * g + l] = d1 * lo as f32 - m1;
                y[64 * g + 32 + l] = d2 * hi as f32 - m2;
            }
        }
    }
}

/// `block_q6_K` (210 bytes): ql[128], qh[64], scales: i8[16], d: f16. In each half `h` of 128
/// values, for l < 32 the four values `128 h + 32 k + l` (k < 4) take their low nibble from
/// `ql[64 h + l]` (k = 0, 2: low / high nibble) or `ql[64 h + 32 + l]` (k = 1, 3), their top two
/// bits from field `k` of `qh[32 h + l]`, and decode to `(d * scales[8 h + 2 k + l / 16]) * (q - 32)`.
fn q6_k(raw: &[u8], out: &mut [f32]) {
    for (b, y) in raw.chunks_exact(210).zip(out.chunks_exact_mut(QK_K)) {
        let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
        let d = f16_at(b, 208);
        for h in 0..2 {
            for l in 0..32 {
                let (a, c, hb) = (ql[64 * h + l], ql[64 * h + 32 + l], qh[32 * h + l]);
                let q = [
                    (a & 0x0f) | ((hb & 3) << 4),
                    (c & 0x0f) | (((hb >> 2) & 3) << 4),
                    (a >> 4) | (((hb >> 4) & 3) << 4),
                    (c >> 4) | (((hb >> 6) & 3) << 4),
                ];
                for (k, q) in q.into_iter().enumerate() {
                    let s = sc[8 * h + 2 * k + l / 16] as i8;
                    y[128 * h + 32 * k + l] = d * s as f32 * (q as i32 - 32) as f32;
                }
            }
        }
    }
}

/// `block_q8_K` (292 bytes): d: f32, qs: i8[256], bsums: i16[16] (sums for dot products, not
/// needed here). Value is `d * q`.
fn q8_k(raw: &[u8], out: &mut [f32]) {
    for (b, y) in raw.chunks_exact(292).zip(out.chunks_exact_mut(QK_K)) {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        for (y, &q) in y.iter_mut().zip(&b[4..260]) {
            *y = d * q as i8 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes one block of type `id`.
    fn decode(id: u32, block: &[u8]) -> Vec<f32> {
        let f = format(id).expect("known type");
        assert_eq!(block.len(), f.bytes_per_block, "{}", f.name);
        let mut out = Vec::new();
        f.dequantize(block, &mut out);
        assert_eq!(out.len(), f.values_per_block);
        out
    }

    const F16_HALF: [u8; 2] = [0x00, 0x38]; // 0.5
    const F16_QUARTER: [u8; 2] = [0x00, 0x34]; // 0.25
    const F16_TWO: [u8; 2] = [0x00, 0x40]; // 2.0

    #[test]
    fn geometry_matches_ggml_block_structs() {
        // ggml-common.h sizes: Q5_0 2 + 4 + 16, Q5_1 2 + 2 + 4 + 16, Q2_K 16 + 64 + 2 + 2,
        // Q3_K 32 + 64 + 12 + 2, Q4_K 2 + 2 + 12 + 128, Q5_K 2 + 2 + 12 + 32 + 128,
        // Q6_K 128 + 64 + 16 + 2, Q8_K 4 + 256 + 32.
        let want = [
            (0, 1, 4),
            (1, 1, 2),
            (2, 32, 18),
            (3, 32, 20),
            (6, 32, 22),
            (7, 32, 24),
            (8, 32, 34),
            (10, 256, 84),
            (11, 256, 110),
            (12, 256, 144),
            (13, 256, 176),
            (14, 256, 210),
            (15, 256, 292),
            (30, 1, 2),
        ];
        for (id, values, bytes) in want {
            assert_eq!(block_geometry(id), Some((values, bytes)), "type {id}");
        }
        assert_eq!(block_geometry(9), None); // Q8_1 is only an intermediate in ggml
        assert_eq!(format(12).map(|f| f.bytes_for(512)), Some(Some(288)));
        assert_eq!(format(12).map(|f| f.bytes_for(100)), Some(None));
        assert!(supported().starts_with("F32 (0), F16 (1), Q4_0 (2)"));
    }

    #[test]
    fn plain_floats() {
        assert_eq!(decode(0, &1.5f32.to_le_bytes()), [1.5]);
        assert_eq!(decode(1, &[0x00, 0xc0]), [-2.0]); // f16 sign 1, exponent 16 = 2^1
        assert_eq!(decode(1, &[0x01, 0x00]), [2f32.powi(-24)]); // smallest f16 subnormal
        assert_eq!(decode(30, &[0x80, 0x3f]), [1.0]); // bf16 0x3f80 = top half of 1.0f32
    }

    #[test]
    fn q4_0_and_q4_1_by_hand() {
        // Q4_0, d = 0.5, qs[0] = 0x9f: value 0 = (15 - 8) * 0.5 = 3.5, value 16 = (9 - 8) * 0.5;
        // the other nibbles are 0: (0 - 8) * 0.5 = -4.
        let mut b = [0u8; 18];
        b[..2].copy_from_slice(&F16_HALF);
        b[2] = 0x9f;
        let y = decode(2, &b);
        assert_eq!((y[0], y[16], y[1], y[31]), (3.5, 0.5, -4.0, -4.0));
        // Q4_1, d = 0.5, m = 2: value = q * 0.5 + 2.
        let mut b = [0u8; 20];
        b[..2].copy_from_slice(&F16_HALF);
        b[2..4].copy_from_slice(&F16_TWO);
        b[4] = 0x9f;
        let y = decode(3, &b);
        assert_eq!((y[0], y[16], y[1]), (9.5, 6.5, 2.0));
    }

    #[test]
    fn q5_0_and_q5_1_by_hand() {
        // Q5_0, d = 0.5, qh bit 0 and bit 17 set, qs[0] = 0x0f, qs[1] = 0x30:
        //   value 0  = (15 | 16) - 16 = 15 -> 7.5
        //   value 16 = (0 | 0) - 16 -> -8
        //   value 17 = (3 | 16) - 16 = 3 -> 1.5
        //   value 1  = 0 - 16 -> -8
        let mut b = [0u8; 22];
        b[..2].copy_from_slice(&F16_HALF);
        b[2..6].copy_from_slice(&(1u32 | 1 << 17).to_le_bytes());
        b[6] = 0x0f;
        b[7] = 0x30;
        let y = decode(6, &b);
        assert_eq!((y[0], y[16], y[17], y[1]), (7.5, -8.0, 1.5, -8.0));
        // Q5_1, d = 0.5, m = 2, same quants unshifted: 31 * 0.5 + 2, 0 * 0.5 + 2, 19 * 0.5 + 2.
        let mut b = [0u8; 24];
        b[..2].copy_from_slice(&F16_HALF);
        b[2..4].copy_from_slice(&F16_TWO);
        b[4..8].copy_from_slice(&(1u32 | 1 << 17).to_le_bytes());
        b[8] = 0x0f;
        b[9] = 0x30;
        let y = decode(7, &b);
        assert_eq!((y[0], y[16], y[17]), (17.5, 2.0, 11.5));
    }

    #[test]
    fn q8_0_and_q8_k_by_hand() {
        let mut b = [0u8; 34];
        b[..2].copy_from_slice(&F16_HALF);
        b[2] = 0xff; // -1
        b[33] = 0x7f; // 127
        let y = decode(8, &b);
        assert_eq!((y[0], y[1], y[31]), (-0.5, 0.0, 63.5));
        let mut b = [0u8; 292];
        b[..4].copy_from_slice(&0.25f32.to_le_bytes());
        b[4] = 0x80; // -128
        b[259] = 12;
        b[260] = 0xff; // bsums: ignored
        let y = decode(15, &b);
        assert_eq!((y[0], y[1], y[255]), (-32.0, 0.0, 3.0));
    }

    #[test]
    fn q2_k_by_hand() {
        // d = 0.5, dmin = 0.25; group 0 scale byte 0x32 (scale 2, min 3), group 9 scale byte
        // 0x01 (scale 1, min 0); qs[0] = 0b11_10_01_00, qs[32] = 0b10 << 2 (field 1 of byte 32).
        //   value 0   (h 0, j 0, l 0, group 0): q 0 -> 0.5 * 2 * 0 - 0.25 * 3 = -0.75
        //   value 32  (j 1, group 2, scale byte 0): q 1 -> 0 - 0 = 0
        //   value 96  (j 3, group 6): q 3 -> 0
        //   value 160 (h 1, j 1, l 0, group 10): q 2, scale byte 0 -> 0
        //   value 144 (h 1, j 0, l 16, group 9): q 0 -> 0.5 * 1 * 0 - 0 = 0
        let mut b = [0u8; 84];
        b[0] = 0x32;
        b[9] = 0x01;
        b[10] = 0x43; // group 10: scale 3, min 4
        b[16] = 0b11_10_01_00;
        b[16 + 32] = 0b10 << 2;
        b[80..82].copy_from_slice(&F16_HALF);
        b[82..84].copy_from_slice(&F16_QUARTER);
        let y = decode(10, &b);
        assert_eq!(y[0], -0.75);
        assert_eq!(y[1], -0.75); // qs[1] = 0: same group
        assert_eq!(y[32], 0.0);
        // group 10 = value 128 + 32 + 0: q 2 -> 0.5 * 3 * 2 - 0.25 * 4 = 2
        assert_eq!(y[160], 2.0);
        assert_eq!(y[144], 0.0);
    }

    #[test]
    fn q3_k_by_hand() {
        // d = 0.5. Scale 0: low nibble of scales[0] = 1, high bits (scales[8] & 3) = 2 ->
        // 0b10_0001 = 33, minus 32 = 1. Scale 12: low = scales[4] >> 4 = 5, high =
        // (scales[8] >> 6) & 3 = 1 -> 21 - 32 = -11. All other scales are 0 - 32 = -32.
        //   value 0: qs[32] field 0 = 3, hmask[0] bit 0 set -> 3 -> 0.5 * 1 * 3 = 1.5
        //   value 1: q 0, hmask bit clear -> -4 -> 0.5 * 1 * -4 = -2
        //   value 192 (h 1, j 2, l 0, group 12): field 2 of qs[32 + 32] = 1, hmask[0] bit 6
        //   clear -> 1 - 4 = -3 -> 0.5 * -11 * -3 = 16.5
        //   value 16 (group 1, scale -32): q -4 -> 0.5 * -32 * -4 = 64
        let mut b = [0u8; 110];
        b[0] = 0x01; // hmask[0] bit 0
        b[32] = 0x03;
        b[64] = 0b01 << 4;
        b[96] = 0x01; // scales[0]
        b[100] = 0x50; // scales[4]
        b[104] = 0b01_00_00_10; // scales[8]
        b[108..110].copy_from_slice(&F16_HALF);
        let y = decode(11, &b);
        assert_eq!((y[0], y[1], y[192], y[16]), (1.5, -2.0, 16.5, 64.0));
    }

    #[test]
    fn q4_k_and_q5_k_by_hand() {
        // d = 0.5, dmin = 0.25. Pair 0: scales[0] = 3, scales[4] = 2 -> scale 3, min 2.
        // Pair 5: scale = (scales[9] & 15) | (scales[1] >> 6) << 4 = 1 | 16 = 17,
        //         min = (scales[9] >> 4) | (scales[5] >> 6) << 4 = 2 | 48 = 50.
        let mut sc = [0u8; 12];
        sc[0] = 3;
        sc[4] = 2;
        sc[1] = 0b01 << 6;
        sc[5] = 0b11 << 6;
        sc[9] = 0x21;
        assert_eq!(scale_min_k4(0, &sc), (3, 2));
        assert_eq!(scale_min_k4(5, &sc), (17, 50));
        // Q4_K: qs[0] = 0x0f -> value 0 = 0.5 * 3 * 15 - 0.25 * 2 = 22; qs[64] = 0x70 -> value
        // 2 * 64 + 32 (group 5) = 0.5 * 17 * 7 - 0.25 * 50 = 59.5 - 12.5 = 47.
        let mut b = [0u8; 144];
        b[..2].copy_from_slice(&F16_HALF);
        b[2..4].copy_from_slice(&F16_QUARTER);
        b[4..16].copy_from_slice(&sc);
        b[16] = 0x0f;
        b[16 + 64] = 0x70;
        let y = decode(12, &b);
        assert_eq!((y[0], y[160], y[1]), (22.0, 47.0, -0.5));
        // Q5_K: the same plus qh[0] bit 0 (value 0 gets +16) and bit 5 (value 160 = 32 * 5).
        //   value 0   = 0.5 * 3 * 31 - 0.5 = 46
        //   value 160 = 0.5 * 17 * 23 - 12.5 = 195.5 - 12.5 = 183
        let mut b = [0u8; 176];
        b[..2].copy_from_slice(&F16_HALF);
        b[2..4].copy_from_slice(&F16_QUARTER);
        b[4..16].copy_from_slice(&sc);
        b[16] = 0b10_0001; // qh[0]
        b[48] = 0x0f;
        b[48 + 64] = 0x70;
        let y = decode(13, &b);
        assert_eq!((y[0], y[160], y[1]), (46.0, 183.0, -0.5));
    }

    #[test]
    fn q6_k_by_hand() {
        // d = 0.5, scales[0] = 2, scales[14] = -3 (0xfd).
        //   value 0: ql[0] low nibble 5, qh[0] field 0 = 2 -> 32 + 5 - 32 = 5 -> 0.5 * 2 * 5 = 5
        //   value 1: q 0 -> -32 -> 0.5 * 2 * -32 = -32
        //   value 128 + 96 + 16 = 240 (h 1, k 3, l 16): ql[64 + 32 + 16] high nibble 1, qh[32 + 16]
        //   field 3 = 1 -> 17 - 32 = -15, scale index 8 + 6 + 1 = 15 -> scales[15] = 0 -> -0.0
        //   value 224 (h 1, k 3, l 0): ql[96] high nibble 0xf, qh[32] field 3 = 3 -> 63 - 32 = 31,
        //   scales[14] -> 0.5 * -3 * 31 = -46.5
        let mut b = [0u8; 210];
        b[0] = 0x05;
        b[128] = 0b10;
        b[64 + 32 + 16] = 0x10;
        b[128 + 32 + 16] = 0b01 << 6;
        b[96] = 0xf0;
        b[128 + 32] = 0b11 << 6;
        b[192] = 2;
        b[192 + 14] = 0xfd;
        b[208..210].copy_from_slice(&F16_HALF);
        let y = decode(14, &b);
        assert_eq!((y[0], y[1], y[224]), (5.0, -32.0, -46.5));
        assert_eq!(y[240].to_bits(), (-0.0f32).to_bits()); // (0.5 * 0) * -15
    }

    #[test]
    fn dequantize_appends_whole_blocks() {
        let f = format(8).expect("Q8_0");
        let mut out = vec![7.0];
        f.dequantize(&[0u8; 68], &mut out);
        assert_eq!(out.len(), 1 + 64);
        assert_eq!(out[0], 7.0);
    }
}
