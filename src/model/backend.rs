//! Backends: the CPU default (burn's `flex`), CUDA behind the `cuda` feature, and the two
//! operations the inference engine needs beyond burn's public tensor API.
//!
//! - [`InferBackend::cache_write`] writes new key/value rows into a cache at a different column
//!   per batch row. burn's `slice_assign` expresses it, but flex 0.21's `slice_assign` copies
//!   its whole destination on every call (its contiguity check keeps a second reference alive):
//!   for a 64-row cache every decode step copied gigabytes.
//! - [`InferBackend::cached_attention`] attends each query row to exactly the cache columns
//!   it may see. burn's batched `attention` needs one key length for the whole batch, so rows
//!   of different lengths pay for the longest and need a mask tensor; the flex kernel below
//!   reads only each row's own prefix, and computes every output row with a fixed loop order
//!   that does not depend on the batch, so a request's numbers are the same whichever other
//!   requests share its batch.
//!
//! Every backend gets a default implementation written with burn's tensor API (used on CUDA);
//! flex overrides both with in-place, row-exact kernels. Tests check the two agree.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, DType, Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

/// A backend the inference engine can run on.
pub trait InferBackend: Backend {
    /// Writes `values: [rows, len, heads, dim]` into `cache: [slots, heads, capacity, dim]`:
    /// row `r` goes to slot `slots[r]`, columns `starts[r]..starts[r] + len`.
    fn cache_write(
        cache: Tensor<Self, 4>,
        slots: &[usize],
        starts: &[usize],
        values: Tensor<Self, 4>,
    ) -> Tensor<Self, 4> {
        generic_cache_write(cache, slots, starts, values)
    }

    /// Reads columns `start..start + len` of slot `slot` of `cache: [slots, heads, capacity,
    /// dim]` as `[1, len, heads, dim]` (the layout [`InferBackend::cache_write`] takes).
    fn cache_read(cache: &Tensor<Self, 4>, slot: usize, start: usize, len: usize) -> Tensor<Self, 4> {
        cache.clone().narrow(0, slot, 1).narrow(2, start, len).swap_dims(1, 2)
    }

    /// Causal attention of `q: [rows, len, heads, dim]` against the cached
    /// `k, v: [slots, kv_heads, capacity, dim]`: query `(r, t)` reads slot `slots[r]` and sees
    /// columns `0..=starts[r] + t`; query head `h` uses kv head `h / (heads / kv_heads)`.
    /// Returns `[rows, len, heads, dim]`.
    fn cached_attention(
        q: Tensor<Self, 4>,
        k: &Tensor<Self, 4>,
        v: &Tensor<Self, 4>,
        slots: &[usize],
        starts: &[usize],
    ) -> Tensor<Self, 4> {
        generic_cached_attention(q, k, v, slots, starts)
    }
}

/// [`InferBackend::cache_write`] with burn's tensor API.
pub fn generic_cache_write<B: Backend>(
    cache: Tensor<B, 4>,
    slots: &[usize],
    starts: &[usize],
    values: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let [_, l, h, d] = values.dims();
    let values = values.swap_dims(1, 2); // [rows, h, l, d]
    let mut cache = cache;
    for (row, (&slot, &s)) in slots.iter().zip(starts).enumerate() {
        let v = values.clone().narrow(0, row, 1);
        cache = cache.slice_assign([slot..slot + 1, 0..h, s..s + l, 0..d], v);
    }
    cache
}

/// [`InferBackend::cached_attention`] with burn's tensor API (gathers the rows' slots).
pub fn generic_cached_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    slots: &[usize],
    starts: &[usize],
) -> Tensor<B, 4> {
    let [_, l, heads, _] = q.dims();
    let [_, kvh, cap, _] = k.dims();
    let device = q.device();
    let idx: Vec<i64> = slots.iter().map(|&s| s as i64).collect();
    let idx = Tensor::<B, 1, burn::tensor::Int>::from_data(TensorData::new(idx, [slots.len()]), &device);
    let (k, v) = (k.clone().select(0, idx.clone()), v.clone().select(0, idx));
    let mask = grouped_causal_mask::<B>(starts, l, heads / kvh, cap, &device);
    masked_grouped_attention(q, k, v, mask)
}

/// Boolean mask (true = hidden) for grouped query rows: batch row `r` has its first query at
/// position `starts[r]` (one start broadcasts over the batch); query row `t * group + g` may
/// see key columns `0..=starts[r] + t`. Shape `[starts.len(), 1, len * group, capacity]`.
pub fn grouped_causal_mask<B: Backend>(
    starts: &[usize],
    len: usize,
    group: usize,
    capacity: usize,
    device: &B::Device,
) -> Tensor<B, 4, Bool> {
    let rows = len * group;
    let mut m = Vec::with_capacity(starts.len() * rows * capacity);
    for &s in starts {
        for t in 0..len {
            for _ in 0..group {
                m.extend((0..capacity).map(|col| col > s + t));
            }
        }
    }
    Tensor::from_data(TensorData::new(m, [starts.len(), 1, rows, capacity]), device)
}

/// Grouped-query attention with burn's `attention`: the query heads sharing a kv head become
/// extra query rows of that head, `[b, kv_heads, len * group, dim]`, so repeated key/value
/// heads are never materialised. `q: [b, len, heads, dim]`, `k, v: [b, kv_heads, t, dim]`,
/// `mask: [b or 1, 1, len * group, t]`. Returns `[b, len, heads, dim]`.
pub fn masked_grouped_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Tensor<B, 4, Bool>,
) -> Tensor<B, 4> {
    let [b, l, heads, d] = q.dims();
    let [_, kvh, t, _] = k.dims();
    let g = heads / kvh;
    let q = q.reshape([b, l, kvh, g * d]).swap_dims(1, 2).reshape([b, kvh, l * g, d]);
    let mask = mask.expand([b, kvh, l * g, t]);
    let a = attention(q, k, v, Some(mask), None, AttentionModuleOptions::default());
    a.reshape([b, kvh, l, g * d]).swap_dims(1, 2).reshape([b, l, heads, d])
}

fn flex_f32(t: Tensor<Flex, 4>) -> FlexTensor {
    t.into_primitive().tensor().to_contiguous()
}

fn is_plain_f32(t: &FlexTensor) -> bool {
    t.dtype() == DType::F32 && t.is_contiguous() && t.layout().start_offset() == 0
}

impl InferBackend for Flex {
    fn cache_write(
        cache: Tensor<Self, 4>,
        slots: &[usize],
        starts: &[usize],
        values: Tensor<Self, 4>,
    ) -> Tensor<Self, 4> {
        let [nslots, h, cap, d] = cache.dims();
        let [rows, l, vh, vd] = values.dims();
        assert!(
            vh == h && vd == d && starts.len() == rows && slots.len() == rows,
            "cache_write: shape mismatch"
        );
        let mut c: FlexTensor = cache.into_primitive().tensor();
        if !is_plain_f32(&c) || !c.is_unique() {
            if c.dtype() != DType::F32 {
                let cache = Tensor::from_primitive(TensorPrimitive::Float(c));
                return generic_cache_write(cache, slots, starts, values);
            }
            // Shared or strided: take a private contiguous copy so the writes below cannot
            // alter another owner's data.
            c = FlexTensor::from_data(c.into_data());
        }
        let v = flex_f32(values);
        if v.dtype() != DType::F32 {
            let cache = Tensor::from_primitive(TensorPrimitive::Float(c));
            let values = Tensor::from_primitive(TensorPrimitive::Float(v));
            return generic_cache_write(cache, slots, starts, values);
        }
        let src: &[f32] = v.storage();
        let dst: &mut [f32] = c.storage_mut();
        for (row, (&slot, &s)) in slots.iter().zip(starts).enumerate() {
            assert!(slot < nslots, "cache_write: slot {slot} of {nslots}");
            assert!(s + l <= cap, "cache_write: columns {s}..{} exceed capacity {cap}", s + l);
            for t in 0..l {
                for head in 0..h {
                    let from = ((row * l + t) * h + head) * d;
                    let to = ((slot * h + head) * cap + s + t) * d;
                    dst[to..to + d].copy_from_slice(&src[from..from + d]);
                }
            }
        }
        Tensor::from_primitive(TensorPrimitive::Float(c))
    }

    fn cached_attention(
        q: Tensor<Self, 4>,
        k: &Tensor<Self, 4>,
        v: &Tensor<Self, 4>,
        slots: &[usize],
        starts: &[usize],
    ) -> Tensor<Self, 4> {
        let [b, l, heads, d] = q.dims();
        let [_, kvh, cap, _] = k.dims();
        let (qf, kf, vf) = (flex_f32(q), flex_f32(k.clone()), flex_f32(v.clone()));
        if qf.dtype() != DType::F32 || kf.dtype() != DType::F32 || vf.dtype() != DType::F32 {
            let q = Tensor::from_primitive(TensorPrimitive::Float(qf));
            return generic_cached_attention(q, k, v, slots, starts);
        }
        let shape = AttnShape { l, heads, kvh, cap, d };
        let mut out = vec![0f32; b * l * heads * d];
        let (qs, ks, vs): (&[f32], &[f32], &[f32]) = (qf.storage(), kf.storage(), vf.storage());
        out.par_chunks_mut(heads * d).enumerate().for_each(|(item, dst)| {
            let (row, t) = (item / l, item % l);
            let visible = starts[row] + t + 1;
            assert!(visible <= cap, "cached_attention: position {} beyond capacity {cap}", visible - 1);
            attend_one(&shape, qs, ks, vs, row, slots[row], t, visible, dst);
        });
        let data = TensorData::new(out, [b, l, heads, d]);
        Tensor::from_data(data, &Default::default())
    }
}

struct AttnShape {
    l: usize,
    heads: usize,
    kvh: usize,
    cap: usize,
    d: usize,
}

/// Softmax attention for all heads of query `(row, t)` over columns `0..visible`.
///
/// The query heads sharing a kv head are processed together so each key and value row is read
/// once. Summation order is fixed (8 interleaved partial sums, then a fixed tree; no fused
/// multiply-add), so the result depends only on this row's numbers, and the AVX2 build of the
/// same code gives the same bits as the baseline one.
#[allow(clippy::too_many_arguments)]
fn attend_one(
    s: &AttnShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    row: usize,
    slot: usize,
    t: usize,
    visible: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { attend_one_avx2(s, q, k, v, row, slot, t, visible, out) };
            return;
        }
    }
    attend_one_impl(s, q, k, v, row, slot, t, visible, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_one_avx2(
    s: &AttnShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    row: usize,
    slot: usize,
    t: usize,
    visible: usize,
    out: &mut [f32],
) {
    attend_one_impl(s, q, k, v, row, slot, t, visible, out)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_one_impl(
    s: &AttnShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    row: usize,
    slot: usize,
    t: usize,
    visible: usize,
    out: &mut [f32],
) {
    let g = s.heads / s.kvh;
    let d = s.d;
    let scale = 1.0 / (d as f32).sqrt();
    let mut scores = vec![0f32; visible * g];
    for kv in 0..s.kvh {
        let base = (slot * s.kvh + kv) * s.cap * d;
        let q0 = ((row * s.l + t) * s.heads + kv * g) * d;
        let qs = &q[q0..q0 + g * d];
        for j in 0..visible {
            let krow = &k[base + j * d..][..d];
            for gi in 0..g {
                scores[gi * visible + j] = dot(&qs[gi * d..(gi + 1) * d], krow) * scale;
            }
        }
        let mut inv = [0f32; 16];
        for gi in 0..g {
            let sc = &mut scores[gi * visible..(gi + 1) * visible];
            let max = sc.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            let mut sum = 0f32;
            for x in sc.iter_mut() {
                *x = (*x - max).exp();
                sum += *x;
            }
            if gi < 16 {
                inv[gi] = 1.0 / sum;
            } else {
                for x in sc.iter_mut() {
                    *x /= sum;
                }
            }
        }
        let o = &mut out[kv * g * d..(kv + 1) * g * d];
        o.fill(0.0);
        for j in 0..visible {
            let vrow = &v[base + j * d..][..d];
            for gi in 0..g {
                let p = scores[gi * visible + j];
                for (oi, vi) in o[gi * d..(gi + 1) * d].iter_mut().zip(vrow) {
                    *oi += p * vi;
                }
            }
        }
        for gi in 0..g.min(16) {
            for oi in o[gi * d..(gi + 1) * d].iter_mut() {
                *oi *= inv[gi];
            }
        }
    }
}

/// Dot product with 8 interleaved partial sums (vectorises without reassociation).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let n8 = a.len() / 8 * 8;
    for (ca, cb) in a[..n8].chunks_exact(8).zip(b[..n8].chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += ca[i] * cb[i];
        }
    }
    let mut tail = 0f32;
    for i in n8..a.len() {
        tail += a[i] * b[i];
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    fn rand_tensor(shape: [usize; 4], seed: u64) -> Tensor<Flex, 4> {
        let n: usize = shape.iter().product();
        let mut s = Stream::new(seed, "test", &[]);
        let v: Vec<f32> = (0..n).map(|_| (s.next_f64() * 2.0 - 1.0) as f32).collect();
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }

    fn max_abs_diff(a: Tensor<Flex, 4>, b: Tensor<Flex, 4>) -> f32 {
        let a: Vec<f32> = a.into_data().to_vec().unwrap();
        let b: Vec<f32> = b.into_data().to_vec().unwrap();
        a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn flex_kernels_match_the_generic_tensor_versions() {
        let (b, l, heads, kvh, cap, d) = (3, 4, 4, 2, 16, 8);
        let starts = [0usize, 5, 12];
        let k0 = rand_tensor([b, kvh, cap, d], 1);
        let v0 = rand_tensor([b, kvh, cap, d], 2);
        let nk = rand_tensor([b, l, kvh, d], 3);
        let nv = rand_tensor([b, l, kvh, d], 4);
        let slots = [2usize, 0, 1];
        let kf = <Flex as InferBackend>::cache_write(k0.clone(), &slots, &starts, nk.clone());
        let kg = generic_cache_write(k0, &slots, &starts, nk.clone());
        assert_eq!(max_abs_diff(kf.clone(), kg), 0.0);
        let back = <Flex as InferBackend>::cache_read(&kf, 0, 5, l);
        assert_eq!(max_abs_diff(back, nk.narrow(0, 1, 1)), 0.0);
        let vf = <Flex as InferBackend>::cache_write(v0.clone(), &slots, &starts, nv.clone());
        let q = rand_tensor([b, l, heads, d], 5);
        let af = <Flex as InferBackend>::cached_attention(q.clone(), &kf, &vf, &slots, &starts);
        let ag = generic_cached_attention(q, &kf, &vf, &slots, &starts);
        assert!(max_abs_diff(af, ag) < 1e-5);
    }

    #[test]
    fn cache_write_does_not_alter_a_shared_cache() {
        let k0 = rand_tensor([1, 1, 4, 2], 1);
        let keep: Vec<f32> = k0.clone().into_data().to_vec().unwrap();
        let new = rand_tensor([1, 1, 1, 2], 2);
        let _written = <Flex as InferBackend>::cache_write(k0.clone(), &[0], &[2], new);
        let after: Vec<f32> = k0.into_data().to_vec().unwrap();
        assert_eq!(keep, after);
    }
}
