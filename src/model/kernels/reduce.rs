//! Fixed-order f32 sums shared by the CPU kernels: eight interleaved partial sums combined in
//! one tree, so a sum has the same bits on every x86-64 build and thread count.

/// Sum with 8 interleaved partial sums combined in a fixed tree (vectorises; same bits on
/// every x86-64 build).
#[inline(always)]
pub(crate) fn sum8(x: &[f32]) -> f32 {
    sum8_of(x, |v| v)
}

/// [`sum8`] of `f(x_i)`, without materialising the mapped values.
#[inline(always)]
pub(crate) fn sum8_of(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    sum8_by(x.len(), |i| f(x[i]))
}

/// [`sum8`] of `f(i)` for `i in 0..n` (sums over several slices, such as dot products).
#[inline(always)]
pub(crate) fn sum8_by(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let n8 = n / 8 * 8;
    for c0 in (0..n8).step_by(8) {
        for (i, a) in acc.iter_mut().enumerate() {
            *a += f(c0 + i);
        }
    }
    let tail: f32 = (n8..n).map(&f).sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}
