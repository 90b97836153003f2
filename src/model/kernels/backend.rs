//! Backends: the CPU default (burn's `flex`), CUDA behind the `cuda` feature, and the cache
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
//! - The cache layout is the backend's choice ([`InferBackend::kv_cache`]): flex keeps keys
//!   transposed, `[slots, heads, dim, capacity]`, so attention scores for 8 consecutive keys
//!   are one vector accumulation over `dim` with no horizontal sums.
//!
//! Every backend gets a default implementation written with burn's tensor API (used on CUDA);
//! flex overrides all of it with in-place, row-exact kernels. Tests check the two agree.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

pub use super::attention::{grouped_causal_mask, masked_grouped_attention};
use super::reduce::sum8;
use super::{flex_linear, fused, q8};

/// Which half of a key/value cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kv {
    /// Keys (after RoPE).
    Key,
    /// Values.
    Value,
}

/// A backend the inference engine can run on.
pub trait InferBackend: Backend {
    /// Independent groups of cache slots ("lanes") a decode batch of `batch` rows of a model
    /// of `weight_bytes` is split into; lanes run their forward passes concurrently. Rows
    /// compute the same numbers in any grouping, so this changes speed only. Default 1 (one
    /// batched pass, as a GPU wants).
    fn decode_lanes(batch: usize, weight_bytes: usize) -> usize {
        let _ = (batch, weight_bytes);
        1
    }

    /// Whether the engine should give a tied output head its own row-major copy (the
    /// decoder's `untie_head`). Default false.
    fn untie_head() -> bool {
        false
    }

    /// The inference engine's RMSNorm of rows `x: [m, d]` with weight `[d]`. Default: the
    /// whole-sequence kernel [`fused::rms_norm`] (burn's tensor ops off flex).
    fn rms_norm_rows(x: Tensor<Self, 2>, w: Tensor<Self, 1>, eps: f64) -> Tensor<Self, 2> {
        fused::rms_norm(x, w, eps)
    }

    /// The inference engine's matrix product `x [m, k] · w [k, n]` (weights, head). Default:
    /// burn's `matmul`.
    fn weight_matmul(x: Tensor<Self, 2>, w: Tensor<Self, 2>) -> Tensor<Self, 2> {
        x.matmul(w)
    }

    /// An empty cache of `slots` sequences of `capacity` positions, `heads` kv heads of size
    /// `dim`. Default layout `[slots, heads, capacity, dim]`.
    fn kv_cache(
        kind: Kv,
        slots: usize,
        heads: usize,
        capacity: usize,
        dim: usize,
        device: &Self::Device,
    ) -> Tensor<Self, 4> {
        let _ = kind;
        Tensor::zeros([slots, heads, capacity, dim], device)
    }

    /// Writes `values: [rows, len, heads, dim]` into `cache`: row `r` goes to slot `slots[r]`,
    /// positions `starts[r]..starts[r] + len`.
    fn cache_write(
        kind: Kv,
        cache: Tensor<Self, 4>,
        slots: &[usize],
        starts: &[usize],
        values: Tensor<Self, 4>,
    ) -> Tensor<Self, 4> {
        let _ = kind;
        let [_, l, h, d] = values.dims();
        let values = values.swap_dims(1, 2); // [rows, h, l, d]
        let mut cache = cache;
        for (row, (&slot, &s)) in slots.iter().zip(starts).enumerate() {
            let v = values.clone().narrow(0, row, 1);
            cache = cache.slice_assign([slot..slot + 1, 0..h, s..s + l, 0..d], v);
        }
        cache
    }

    /// Positions `start..start + len` of slot `slot` as `[1, len, heads, dim]` (the layout
    /// [`InferBackend::cache_write`] takes).
    fn cache_read(
        kind: Kv,
        cache: &Tensor<Self, 4>,
        slot: usize,
        start: usize,
        len: usize,
    ) -> Tensor<Self, 4> {
        let _ = kind;
        // `* 1` materialises a copy on every backend and is exact for every value: a view would
        // keep the whole cache buffer shared, and the next in-place write would copy all of it.
        cache.clone().narrow(0, slot, 1).narrow(2, start, len).swap_dims(1, 2).mul_scalar(1.0)
    }

    /// Causal attention of `q: [rows, len, heads, dim]` against the caches: query `(r, t)`
    /// reads slot `slots[r]` and sees positions `0..=starts[r] + t`; query head `h` uses kv
    /// head `h / (heads / kv_heads)`. Returns `[rows, len, heads, dim]`.
    fn cached_attention(
        q: Tensor<Self, 4>,
        k: &Tensor<Self, 4>,
        v: &Tensor<Self, 4>,
        slots: &[usize],
        starts: &[usize],
    ) -> Tensor<Self, 4> {
        let [_, l, heads, _] = q.dims();
        let [_, kvh, cap, _] = k.dims();
        let device = q.device();
        let idx: Vec<i64> = slots.iter().map(|&s| s as i64).collect();
        let idx =
            Tensor::<Self, 1, burn::tensor::Int>::from_data(TensorData::new(idx, [slots.len()]), &device);
        let (k, v) = (k.clone().select(0, idx.clone()), v.clone().select(0, idx));
        let mask = grouped_causal_mask::<Self>(starts, l, heads / kvh, cap, &device);
        masked_grouped_attention(q, k, v, mask)
    }
}

fn flex_f32(t: Tensor<Flex, 4>) -> FlexTensor {
    to_flex(t).to_contiguous()
}

/// The flex tensor under a float tensor (any layout).
fn to_flex<const D: usize>(t: Tensor<Flex, D>) -> FlexTensor {
    t.into_primitive().tensor()
}

fn from_flex<const D: usize>(t: FlexTensor) -> Tensor<Flex, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// A uniquely owned, contiguous f32 buffer for in-place writes (copied once if shared).
fn owned_f32(t: Tensor<Flex, 4>) -> FlexTensor {
    let mut c = to_flex(t);
    let plain = c.dtype() == DType::F32 && c.is_contiguous() && c.layout().start_offset() == 0;
    if !plain || !c.is_unique() {
        c = FlexTensor::from_data(c.into_data().convert::<f32>());
    }
    c
}

/// Largest model (weight bytes) decoded in two lanes from 16 rows: both lanes' weights then
/// fit in a server CPU's caches.
const LANE_WEIGHT_BYTES: usize = 32 << 20;

/// Flex: f32 caches, keys transposed (`[slots, heads, dim, capacity]`), values
/// `[slots, heads, capacity, dim]`.
impl InferBackend for Flex {
    /// Two lanes on two or more threads: for a model whose weights stay in cache (the tiny
    /// preset) from 16 rows, whose products are too small to split; for a larger model from 32
    /// rows, where each half-batch keeps a core busy on its own (each lane streams every weight
    /// once per step, which at 16 rows costs more than [`InferBackend::weight_matmul`]'s column
    /// split; measured on SmolLM2-135M: one lane 179-190 tokens/s at 16 rows, 223-278 at 64;
    /// two lanes 173 and 326-334).
    fn decode_lanes(batch: usize, weight_bytes: usize) -> usize {
        let rows = if weight_bytes <= LANE_WEIGHT_BYTES { 16 } else { 32 };
        if batch >= rows && rayon::current_num_threads() >= 2 {
            2
        } else {
            1
        }
    }

    /// Yes: [`InferBackend::weight_matmul`] streams weight rows.
    fn untie_head() -> bool {
        true
    }

    /// A fixed summation order ([`flex_linear::rms_norm`]): burn-flex's reductions take the
    /// CPU's widest vectors, so their rounding differs between AVX2 and AVX-512.
    fn rms_norm_rows(x: Tensor<Self, 2>, w: Tensor<Self, 1>, eps: f64) -> Tensor<Self, 2> {
        if x.dtype() != DType::F32 || w.dtype() != DType::F32 {
            return fused::rms_norm(x, w, eps);
        }
        from_flex(flex_linear::rms_norm(&to_flex(x), &to_flex(w), eps))
    }

    /// Column blocks in parallel ([`flex_linear`]: f32 or bf16 weights; [`q8`]: 8-bit weights with
    /// their block scales); burn's `matmul` for other types.
    fn weight_matmul(x: Tensor<Self, 2>, w: Tensor<Self, 2>) -> Tensor<Self, 2> {
        if x.dtype() == DType::F32 {
            if let DType::QFloat(_) = w.dtype() {
                let [k, n] = w.dims();
                if let TensorPrimitive::QFloat(q) = w.into_primitive() {
                    let values = q.tensor().storage::<i8>();
                    return from_flex(q8::linear(&to_flex(x), values, k, n));
                }
                unreachable!("a QFloat dtype is a quantized primitive");
            }
        }
        if !flex_linear::supports(x.dtype(), w.dtype()) {
            let dt = x.dtype();
            return x.matmul(crate::model::llama::like(w, dt));
        }
        from_flex(flex_linear::linear(&to_flex(x), &to_flex(w)))
    }

    fn kv_cache(
        kind: Kv,
        slots: usize,
        heads: usize,
        capacity: usize,
        dim: usize,
        device: &Self::Device,
    ) -> Tensor<Self, 4> {
        match kind {
            Kv::Key => Tensor::zeros([slots, heads, dim, capacity], device),
            Kv::Value => Tensor::zeros([slots, heads, capacity, dim], device),
        }
    }

    fn cache_write(
        kind: Kv,
        cache: Tensor<Self, 4>,
        slots: &[usize],
        starts: &[usize],
        values: Tensor<Self, 4>,
    ) -> Tensor<Self, 4> {
        let [nslots, h, a, b] = cache.dims();
        let (cap, d) = match kind {
            Kv::Key => (b, a),
            Kv::Value => (a, b),
        };
        let [rows, l, vh, vd] = values.dims();
        assert!(
            vh == h && vd == d && starts.len() == rows && slots.len() == rows,
            "cache_write: shape mismatch"
        );
        let mut c = owned_f32(cache);
        let v = flex_f32(values);
        let v =
            if v.dtype() == DType::F32 { v } else { FlexTensor::from_data(v.into_data().convert::<f32>()) };
        let src: &[f32] = v.storage();
        let dst: &mut [f32] = c.storage_mut();
        for (row, (&slot, &s)) in slots.iter().zip(starts).enumerate() {
            assert!(slot < nslots, "cache_write: slot {slot} of {nslots}");
            assert!(s + l <= cap, "cache_write: positions {s}..{} exceed capacity {cap}", s + l);
            for t in 0..l {
                for head in 0..h {
                    let from = &src[((row * l + t) * h + head) * d..][..d];
                    let base = (slot * h + head) * cap * d;
                    match kind {
                        Kv::Value => dst[base + (s + t) * d..][..d].copy_from_slice(from),
                        Kv::Key => {
                            for (i, x) in from.iter().enumerate() {
                                dst[base + i * cap + s + t] = *x;
                            }
                        }
                    }
                }
            }
        }
        from_flex(c)
    }

    fn cache_read(
        kind: Kv,
        cache: &Tensor<Self, 4>,
        slot: usize,
        start: usize,
        len: usize,
    ) -> Tensor<Self, 4> {
        let view = cache.clone().narrow(0, slot, 1);
        let view = match kind {
            Kv::Value => view.narrow(2, start, len).swap_dims(1, 2),
            Kv::Key => view.narrow(3, start, len).permute([0, 3, 1, 2]),
        };
        // An owned compact copy: a view would keep the whole cache buffer shared.
        let t = to_flex(view);
        from_flex(FlexTensor::from_data(t.into_data()))
    }

    fn cached_attention(
        q: Tensor<Self, 4>,
        k: &Tensor<Self, 4>,
        v: &Tensor<Self, 4>,
        slots: &[usize],
        starts: &[usize],
    ) -> Tensor<Self, 4> {
        let [b, l, heads, d] = q.dims();
        let [_, kvh, cap, _] = v.dims();
        let (qf, kf, vf) = (flex_f32(q), flex_f32(k.clone()), flex_f32(v.clone()));
        assert!(
            qf.dtype() == DType::F32 && kf.dtype() == DType::F32 && vf.dtype() == DType::F32,
            "the flex inference kernels run in f32 (model.dtype = \"f32\" on cpu)"
        );
        let shape = AttnShape { l, heads, kvh, cap, d };
        let mut out = vec![0f32; b * l * heads * d];
        let (qs, ks, vs): (&[f32], &[f32], &[f32]) = (qf.storage(), kf.storage(), vf.storage());
        out.par_chunks_mut(heads * d).enumerate().for_each(|(item, dst)| {
            let (row, t) = (item / l, item % l);
            let visible = starts[row] + t + 1;
            assert!(visible <= cap, "cached_attention: position {} beyond capacity {cap}", visible - 1);
            attend(&shape, qs, ks, vs, row, slots[row], t, visible, dst);
        });
        Tensor::from_data(TensorData::new(out, [b, l, heads, d]), &Default::default())
    }
}

struct AttnShape {
    l: usize,
    heads: usize,
    kvh: usize,
    cap: usize,
    d: usize,
}

/// Softmax attention for all heads of query `(row, t)` over positions `0..visible` of `slot`.
///
/// Scores for 32 consecutive keys are accumulated together over the head dimension (keys are
/// stored transposed); each score is the sum over `d` in index order, with no fused
/// multiply-add, so the AVX2 build of this code gives the same bits as the baseline one and
/// the result depends only on this row's numbers.
#[allow(clippy::too_many_arguments)]
fn attend(
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
            unsafe { attend_avx2(s, q, k, v, row, slot, t, visible, out) };
            return;
        }
    }
    attend_impl(s, q, k, v, row, slot, t, visible, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_avx2(
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
    attend_impl(s, q, k, v, row, slot, t, visible, out)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_impl(
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
    const W: usize = 32;
    let d = s.d;
    let g = s.heads / s.kvh;
    let scale = 1.0 / (d as f32).sqrt();
    let padded = visible.div_ceil(W) * W;
    let mut scores = vec![0f32; padded];
    for h in 0..s.heads {
        let kv = h / g;
        let qrow = &q[((row * s.l + t) * s.heads + h) * d..][..d];
        let kt = &k[(slot * s.kvh + kv) * d * s.cap..][..d * s.cap];
        let vb = &v[(slot * s.kvh + kv) * s.cap * d..][..s.cap * d];
        // Scores, W keys at a time (W / 8 independent vector accumulations keep the adder
        // busy); a final partial block reads keys past `visible` (finite cache contents) and
        // is discarded below.
        for j0 in (0..visible).step_by(W) {
            let mut acc = [0f32; W];
            if j0 + W <= s.cap {
                for (i, &qi) in qrow.iter().enumerate() {
                    let kk: &[f32; W] = kt[i * s.cap + j0..][..W].try_into().expect("W keys");
                    for w in 0..W {
                        acc[w] += qi * kk[w];
                    }
                }
            } else {
                for (i, &qi) in qrow.iter().enumerate() {
                    for w in 0..(s.cap - j0) {
                        acc[w] += qi * kt[i * s.cap + j0 + w];
                    }
                }
            }
            let n = W.min(padded - j0);
            for w in 0..n {
                scores[j0 + w] = acc[w] * scale;
            }
        }
        let sc = &mut scores[..visible];
        let max = sc.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        for x in sc.iter_mut() {
            *x = (*x - max).exp();
        }
        let sum = sum8(sc);
        let o = &mut out[h * d..(h + 1) * d];
        o.fill(0.0);
        for (j, p) in sc.iter().enumerate() {
            for (oi, vi) in o.iter_mut().zip(&vb[j * d..(j + 1) * d]) {
                *oi += p * vi;
            }
        }
        let inv = 1.0 / sum;
        for oi in o.iter_mut() {
            *oi *= inv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    /// The trait's default (tensor API) implementations, called on flex tensors.
    mod generic {
        use super::super::*;
        pub fn cache_write(
            kind: Kv,
            c: Tensor<Flex, 4>,
            slots: &[usize],
            starts: &[usize],
            v: Tensor<Flex, 4>,
        ) -> Tensor<Flex, 4> {
            let _ = kind;
            let [_, l, h, d] = v.dims();
            let v = v.swap_dims(1, 2);
            let mut c = c;
            for (row, (&slot, &s)) in slots.iter().zip(starts).enumerate() {
                c = c.slice_assign([slot..slot + 1, 0..h, s..s + l, 0..d], v.clone().narrow(0, row, 1));
            }
            c
        }
        pub fn cached_attention(
            q: Tensor<Flex, 4>,
            k: &Tensor<Flex, 4>,
            v: &Tensor<Flex, 4>,
            slots: &[usize],
            starts: &[usize],
        ) -> Tensor<Flex, 4> {
            let [_, l, heads, _] = q.dims();
            let [_, kvh, cap, _] = k.dims();
            let idx: Vec<i64> = slots.iter().map(|&s| s as i64).collect();
            let idx = Tensor::<Flex, 1, burn::tensor::Int>::from_data(
                TensorData::new(idx, [slots.len()]),
                &Default::default(),
            );
            let (k, v) = (k.clone().select(0, idx.clone()), v.clone().select(0, idx));
            let mask = grouped_causal_mask::<Flex>(starts, l, heads / kvh, cap, &Default::default());
            masked_grouped_attention(q, k, v, mask)
        }
    }

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
        // The same writes through flex (transposed keys) and through the generic tensor code.
        let kt0 = k0.clone().swap_dims(2, 3);
        let kf = <Flex as InferBackend>::cache_write(Kv::Key, kt0, &slots, &starts, nk.clone());
        let kg = generic::cache_write(Kv::Key, k0, &slots, &starts, nk.clone());
        assert_eq!(max_abs_diff(kf.clone().swap_dims(2, 3), kg.clone()), 0.0);
        let back = <Flex as InferBackend>::cache_read(Kv::Key, &kf, 0, 5, l);
        assert_eq!(max_abs_diff(back, nk.narrow(0, 1, 1)), 0.0);
        let vf = <Flex as InferBackend>::cache_write(Kv::Value, v0.clone(), &slots, &starts, nv.clone());
        let vg = generic::cache_write(Kv::Value, v0, &slots, &starts, nv.clone());
        assert_eq!(max_abs_diff(vf.clone(), vg.clone()), 0.0);
        let back = <Flex as InferBackend>::cache_read(Kv::Value, &vf, 2, 0, l);
        assert_eq!(max_abs_diff(back, nv.narrow(0, 0, 1)), 0.0);
        let q = rand_tensor([b, l, heads, d], 5);
        let af = <Flex as InferBackend>::cached_attention(q.clone(), &kf, &vf, &slots, &starts);
        let ag = generic::cached_attention(q, &kg, &vg, &slots, &starts);
        assert!(max_abs_diff(af, ag) < 1e-5);
    }

    #[test]
    fn cache_write_does_not_alter_a_shared_cache() {
        let k0 = rand_tensor([1, 1, 4, 2], 1);
        let keep: Vec<f32> = k0.clone().into_data().to_vec().unwrap();
        let new = rand_tensor([1, 1, 1, 2], 2);
        let _written = <Flex as InferBackend>::cache_write(Kv::Value, k0.clone(), &[0], &[2], new);
        let after: Vec<f32> = k0.into_data().to_vec().unwrap();
        assert_eq!(keep, after);
    }
}
