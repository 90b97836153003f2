//! Fused CPU kernels for whole-sequence passes (training, scoring): causal grouped-query
//! attention, SwiGLU, RMSNorm and RoPE, each one autodiff node with a hand-written backward
//! pass on the flex backend, plus the trainer's host access to logits and its gradient
//! injection.
//!
//! burn's decomposed ops build attention from a dozen tensors per layer (scores, mask, softmax
//! pieces, their gradients) and SiLU from four; at training shapes those element-wise passes,
//! copies and `expf` calls cost more than the matrix products (measured with `runner bench
//! train`). Here attention is computed per `(sequence, kv head)` with its products in the GEMM
//! crate and the log-sum-exp of each row kept for the backward pass (the flash-attention
//! recurrence of Dao et al. 2022, written for CPU), and the element-wise kernels in one pass.
//!
//! The element-wise kernels use plain multiplies and adds and this module's own polynomial
//! `exp`, so their bits are the same on every x86-64 CPU and instruction set (the AVX2 and
//! AVX-512 builds of the same loops only change the vector width); the attention products
//! follow the GEMM crate's kernels, which differ between instruction sets. A sequence's
//! numbers never depend on the others in its batch.
//!
//! Other backends (CUDA) and dtypes other than f32 take burn's ops; the choice is made by
//! type at run time ([`is`]), so the generic model code needs no extra trait bounds.

use std::any::{Any, TypeId};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use rayon::prelude::*;

use super::attention::{grouped_causal_mask, masked_grouped_attention};
use super::flex_linear;
use super::reduce::{sum8, sum8_by, sum8_of};

/// The autodiff backend's float tensor over flex (its type is not exported by name).
type AutodiffTensor<B> = burn::tensor::ops::FloatTensor<Autodiff<B>>;

/// Causal grouped-query attention over whole sequences starting at position 0:
/// `q: [b, l, heads, d]`, `k, v: [b, l, kv_heads, d]` (keys rotated) -> `[b, l, heads, d]`.
/// Query head `h` reads kv head `h / (heads / kv_heads)`.
pub fn causal_attention<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
    let f32s = q.dtype() == DType::F32 && k.dtype() == DType::F32 && v.dtype() == DType::F32;
    if f32s && is::<B, Autodiff<Flex>>() {
        let [q, k, v] = [q, k, v].map(prim::<B, AutodiffTensor<Flex>, 4>);
        return tensor::<B, _, 4>(attention_autodiff(q, k, v));
    }
    if f32s && is::<B, Flex>() {
        let [q, k, v] = [q, k, v].map(prim::<B, FlexTensor, 4>);
        return tensor::<B, _, 4>(attention_forward(&q, &k, &v).0);
    }
    let [_, l, heads, _] = q.dims();
    let kvh = k.dims()[2];
    let mask = grouped_causal_mask::<B>(&[0], l, heads / kvh, l, &q.device());
    masked_grouped_attention(q, k.swap_dims(1, 2), v.swap_dims(1, 2), mask)
}

/// `silu(gate) * up`, element-wise, any shape (the two of the same shape).
pub fn swiglu<B: Backend, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    let f32s = gate.dtype() == DType::F32 && up.dtype() == DType::F32;
    if f32s && is::<B, Autodiff<Flex>>() {
        let [g, u] = [gate, up].map(prim::<B, AutodiffTensor<Flex>, D>);
        return tensor::<B, _, D>(swiglu_autodiff(g, u));
    }
    if f32s && is::<B, Flex>() {
        let [g, u] = [gate, up].map(prim::<B, FlexTensor, D>);
        return tensor::<B, _, D>(swiglu_forward(&g, &u));
    }
    silu(gate) * up
}

/// Whether backend `B` is exactly `T`.
fn is<B: 'static, T: 'static>() -> bool {
    TypeId::of::<B>() == TypeId::of::<T>()
}

/// `x` as a `U` when its type is `U` (checked by [`is`] before the call).
fn downcast<T: 'static, U: 'static>(x: T) -> U {
    let mut slot = Some(x);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take)
        .expect("fused: backend type checked before the downcast")
}

fn tensor<B: Backend, U: 'static, const D: usize>(p: U) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(downcast::<U, B::FloatTensorPrimitive>(p)))
}

fn prim<B: Backend, U: 'static, const D: usize>(t: Tensor<B, D>) -> U {
    downcast::<B::FloatTensorPrimitive, U>(t.into_primitive().tensor())
}

/// The f32 values of `t` in row-major order (borrowed when already contiguous).
pub(crate) fn contiguous(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.to_contiguous().as_slice::<f32>().expect("contiguous").to_vec()),
    }
}

fn flex(values: Vec<f32>, shape: burn::tensor::Shape) -> FlexTensor {
    FlexTensor::from_data(burn::tensor::TensorData::new(values, shape))
}

// ---------------------------------------------------------------------------------------------
// exp

/// `e^x` for f32 to about one ulp: `2^n * p(r)` with `r = x - n ln 2` in two parts and a
/// degree-7 Taylor polynomial on `|r| <= ln2 / 2`. Inputs are clamped to `[-87.3, 88.0]`
/// (results stay finite and normal), NaN stays NaN. Branch-free, so loops over it vectorise;
/// plain multiplies and adds, so every build gives the same bits.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.clamp(-87.3, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

// ---------------------------------------------------------------------------------------------
// SwiGLU

/// Below this many values an element-wise pass runs on the calling thread: decode steps are
/// already split into lanes on their own cores, and a fork-join per op costs more than the op.
const PARALLEL_FROM: usize = 1 << 18;

/// Splits `out` into blocks, processed in parallel from [`PARALLEL_FROM`] values;
/// `f(first_index, block)`.
fn for_chunks(out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync) {
    const BLOCK: usize = 16 * 1024;
    if out.len() < PARALLEL_FROM {
        return out.chunks_mut(BLOCK).enumerate().for_each(|(i, o)| f(i * BLOCK, o));
    }
    out.par_chunks_mut(BLOCK).enumerate().for_each(|(i, o)| f(i * BLOCK, o));
}

macro_rules! wide {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn imp($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn v4($($arg: $ty),*) { imp($($arg),*) }
                #[target_feature(enable = "avx2")]
                unsafe fn v3($($arg: $ty),*) { imp($($arg),*) }
                // The same choice as the inference products (`MCTS_PS_ISA` forces a narrower
                // one in the tests that compare the bits of every path).
                match flex_linear::Isa::detect() {
                    // SAFETY: `detect` reports AVX-512F only when the CPU has it.
                    flex_linear::Isa::Avx512 => return unsafe { v4($($arg),*) },
                    // SAFETY: `detect` reports AVX2 only when the CPU has it.
                    flex_linear::Isa::Avx2 => return unsafe { v3($($arg),*) },
                    flex_linear::Isa::Scalar => {}
                }
            }
            imp($($arg),*)
        }
    };
}

wide! {
    /// `out[j] = exp(z[j] - shift)` with [`exp`].
    pub(crate) fn exp_shifted(z: &[f32], shift: f32, out: &mut [f32]) {
        for (o, &z) in out.iter_mut().zip(z) {
            *o = exp(z - shift);
        }
    }
}

wide! {
    /// `out = g * sigmoid(g) * u`.
    fn swiglu_fwd(g: &[f32], u: &[f32], out: &mut [f32]) {
        for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
            *o = g / (1.0 + exp(-g)) * u;
        }
    }
}

wide! {
    /// Gradients of `g * sigmoid(g) * u` given the output gradient `d`:
    /// `dg = d u s (1 + g (1 - s))`, `du = d g s`, with `s = sigmoid(g)`.
    fn swiglu_bwd(g: &[f32], u: &[f32], d: &[f32], dg: &mut [f32], du: &mut [f32]) {
        for ((((dg, du), &g), &u), &d) in dg.iter_mut().zip(du.iter_mut()).zip(g).zip(u).zip(d) {
            let s = 1.0 / (1.0 + exp(-g));
            *dg = d * u * (s * (1.0 + g * (1.0 - s)));
            *du = d * (g * s);
        }
    }
}

#[derive(Debug)]
struct SwigluBackward;

impl Backward<Flex, 2> for SwigluBackward {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (g, u) = ops.state;
        let d = grads.consume::<Flex>(&ops.node);
        let shape = g.layout().shape().clone();
        let (g, u, d) = (contiguous(&g), contiguous(&u), contiguous(&d));
        let mut dg = vec![0f32; g.len()];
        let mut du = vec![0f32; g.len()];
        const BLOCK: usize = 16 * 1024;
        dg.par_chunks_mut(BLOCK).zip(du.par_chunks_mut(BLOCK)).enumerate().for_each(|(i, (a, b))| {
            let r = i * BLOCK..i * BLOCK + a.len();
            swiglu_bwd(&g[r.clone()], &u[r.clone()], &d[r], a, b);
        });
        let [pg, pu] = ops.parents;
        if let Some(n) = pg {
            grads.register::<Flex>(n.id, flex(dg, shape.clone()));
        }
        if let Some(n) = pu {
            grads.register::<Flex>(n.id, flex(du, shape));
        }
    }
}

/// `silu(g) * u` of two flex tensors of the same shape.
fn swiglu_forward(g: &FlexTensor, u: &FlexTensor) -> FlexTensor {
    let (gs, us) = (contiguous(g), contiguous(u));
    let mut out = vec![0f32; gs.len()];
    for_chunks(&mut out, |i0, o| swiglu_fwd(&gs[i0..i0 + o.len()], &us[i0..i0 + o.len()], o));
    flex(out, g.layout().shape().clone())
}

fn swiglu_autodiff(g: AutodiffTensor<Flex>, u: AutodiffTensor<Flex>) -> AutodiffTensor<Flex> {
    let out = swiglu_forward(&g.primitive, &u.primitive);
    match SwigluBackward
        .prepare::<NoCheckpointing>([g.node.clone(), u.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((g.primitive, u.primitive), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

// ---------------------------------------------------------------------------------------------
// attention

#[derive(Clone, Copy, Debug)]
struct Dims {
    b: usize,
    l: usize,
    heads: usize,
    kvh: usize,
    d: usize,
}

impl Dims {
    fn of(q: &FlexTensor, k: &FlexTensor) -> Self {
        let qs = q.layout().shape();
        let ks = k.layout().shape();
        let (b, l, heads, d) = (qs[0], qs[1], qs[2], qs[3]);
        assert_eq!([ks[0], ks[1], ks[3]], [b, l, d], "fused attention: q and k shapes");
        assert_eq!(heads % ks[2], 0, "fused attention: heads not a multiple of kv heads");
        Self { b, l, heads, kvh: ks[2], d }
    }
    fn group(&self) -> usize {
        self.heads / self.kvh
    }
    /// Offset of query (or output) row `(seq, pos, head)`.
    fn qi(&self, s: usize, t: usize, h: usize) -> usize {
        ((s * self.l + t) * self.heads + h) * self.d
    }
    /// Offset of key/value row `(seq, pos, kv head)`.
    fn ki(&self, s: usize, t: usize, h: usize) -> usize {
        ((s * self.l + t) * self.kvh + h) * self.d
    }
}

/// A strided matrix view: element `(i, j)` at `ptr + i * rs + j * cs`.
#[derive(Clone, Copy)]
struct View {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

impl View {
    /// Row-major rows of `cols` values at `stride` apart, from `x[at..]`.
    fn rows(x: &[f32], at: usize, stride: usize) -> Self {
        Self { ptr: x[at..].as_ptr(), rs: stride as isize, cs: 1 }
    }
    fn t(self) -> Self {
        Self { ptr: self.ptr, rs: self.cs, cs: self.rs }
    }
}

/// `dst (m x n, row-major, row stride n) = beta * lhs (m x k) rhs (k x n) [+ dst if acc]`,
/// one thread (the callers run many of these in parallel).
///
/// # Safety
/// The views must cover `m x k` and `k x n` elements inside live slices.
#[allow(clippy::too_many_arguments)]
unsafe fn mm(dst: &mut [f32], m: usize, n: usize, k: usize, lhs: View, rhs: View, beta: f32, acc: bool) {
    assert!(dst.len() >= m * n, "fused mm: destination too small");
    gemm::gemm(
        m,
        n,
        k,
        dst.as_mut_ptr(),
        1,
        n as isize,
        acc,
        lhs.ptr,
        lhs.cs,
        lhs.rs,
        rhs.ptr,
        rhs.cs,
        rhs.rs,
        if acc { 1.0 } else { 0.0 },
        beta,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// Scores `S = scale Q K^T` of one query head (`[l, l]`) turned into causal probabilities in
/// place, `p_tj = exp(s_tj - lse_t)` for `j <= t` and 0 above the diagonal, writing each row's
/// log-sum-exp into `lse` (forward pass).
fn probabilities(sc: &mut [f32], l: usize, lse: &mut [f32]) {
    for (t, row) in sc.chunks_exact_mut(l).enumerate() {
        let vis = &mut row[..=t];
        let max = vis.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        exp_shifted_in_place(vis, max);
        let z = sum8(vis);
        let inv = 1.0 / z;
        for x in vis.iter_mut() {
            *x *= inv;
        }
        lse[t] = max + z.ln();
        row[t + 1..].fill(0.0);
    }
}

/// [`probabilities`] from the log-sum-exps the forward pass kept (backward pass).
fn probabilities_from(sc: &mut [f32], l: usize, lse: &[f32]) {
    for (t, row) in sc.chunks_exact_mut(l).enumerate() {
        exp_shifted_in_place(&mut row[..=t], lse[t]);
        row[t + 1..].fill(0.0);
    }
}

wide! {
    /// `x[j] = exp(x[j] - shift)` with [`exp`].
    fn exp_shifted_in_place(x: &mut [f32], shift: f32) {
        for v in x.iter_mut() {
            *v = exp(*v - shift);
        }
    }
}

/// One `(seq, kv head)`: outputs `[group, l, d]` and log-sum-exps `[group, l]`.
#[allow(clippy::too_many_arguments)]
fn attn_fwd_task(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n: Dims,
    s: usize,
    h: usize,
    out: &mut [f32],
    lse: &mut [f32],
) {
    let (l, d, g) = (n.l, n.d, n.group());
    let scale = 1.0 / (d as f32).sqrt();
    let kv = View::rows(k, n.ki(s, 0, h), n.kvh * d);
    let vv = View::rows(v, n.ki(s, 0, h), n.kvh * d);
    let mut sc = vec![0f32; l * l];
    for gi in 0..g {
        let qv = View::rows(q, n.qi(s, 0, h * g + gi), n.heads * d);
        // SAFETY: the views cover l rows of d values of the sequence's q, k, v.
        unsafe { mm(&mut sc, l, l, d, qv, kv.t(), scale, false) };
        probabilities(&mut sc, l, &mut lse[gi * l..(gi + 1) * l]);
        // SAFETY: as above; `sc` is l x l.
        unsafe { mm(&mut out[gi * l * d..(gi + 1) * l * d], l, d, l, View::rows(&sc, 0, l), vv, 1.0, false) };
    }
}

/// Forward pass: the output `[b, l, heads, d]` and the log-sum-exp of every query row
/// (`[b, kv_heads, group, l]` order).
fn attention_forward(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor) -> (FlexTensor, Vec<f32>) {
    let n = Dims::of(q, k);
    let (qs, ks, vs) = (contiguous(q), contiguous(k), contiguous(v));
    let (g, d, l) = (n.group(), n.d, n.l);
    let per = l * g * d;
    let mut local = vec![0f32; n.b * n.kvh * per];
    let mut lse = vec![0f32; n.b * n.kvh * l * g];
    local.par_chunks_mut(per).zip(lse.par_chunks_mut(l * g)).enumerate().for_each(|(task, (o, ls))| {
        attn_fwd_task(&qs, &ks, &vs, n, task / n.kvh, task % n.kvh, o, ls);
    });
    // Scatter `[b, kvh, group, l, d]` into `[b, l, heads, d]`.
    let mut out = vec![0f32; n.b * l * n.heads * d];
    for (task, o) in local.chunks_exact(per).enumerate() {
        let (s, h) = (task / n.kvh, task % n.kvh);
        for gi in 0..g {
            for t in 0..l {
                let dst = n.qi(s, t, h * g + gi);
                out[dst..dst + d].copy_from_slice(&o[(gi * l + t) * d..][..d]);
            }
        }
    }
    (flex(out, q.layout().shape().clone()), lse)
}

/// Gradients of one `(seq, kv head)`: `dq` `[group, l, d]`, `dk` and `dv` `[l, d]` (summed
/// over the group's query heads in order).
fn attn_bwd_task(
    x: &AttnSaved<'_>,
    n: Dims,
    s: usize,
    h: usize,
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let (l, d, g) = (n.l, n.d, n.group());
    let scale = 1.0 / (d as f32).sqrt();
    let kv = View::rows(x.k, n.ki(s, 0, h), n.kvh * d);
    let vv = View::rows(x.v, n.ki(s, 0, h), n.kvh * d);
    let mut p = vec![0f32; l * l];
    let mut ds = vec![0f32; l * l];
    let lse = &x.lse[(s * n.kvh + h) * g * l..][..g * l];
    for gi in 0..g {
        let hq = h * g + gi;
        let qv = View::rows(x.q, n.qi(s, 0, hq), n.heads * d);
        let gv = View::rows(x.dout, n.qi(s, 0, hq), n.heads * d);
        // SAFETY (all products): the views cover l rows of d values of this sequence's
        // tensors; `p` and `ds` are l x l.
        unsafe { mm(&mut p, l, l, d, qv, kv.t(), scale, false) };
        probabilities_from(&mut p, l, &lse[gi * l..(gi + 1) * l]);
        // dP = dO V^T
        unsafe { mm(&mut ds, l, l, d, gv, vv.t(), 1.0, false) };
        for t in 0..l {
            let qo = n.qi(s, t, hq);
            let (go, oo) = (&x.dout[qo..][..d], &x.o[qo..][..d]);
            let delta = sum8_by(d, |c| go[c] * oo[c]);
            let (pr, dr) = (&p[t * l..(t + 1) * l], &mut ds[t * l..(t + 1) * l]);
            for j in 0..=t {
                dr[j] = pr[j] * (dr[j] - delta) * scale;
            }
            dr[t + 1..].fill(0.0);
        }
        let (pv, dsv) = (View::rows(&p, 0, l), View::rows(&ds, 0, l));
        unsafe {
            // dQ = dS K; dK += dS^T Q; dV += P^T dO
            mm(&mut dq[gi * l * d..(gi + 1) * l * d], l, d, l, dsv, kv, 1.0, false);
            mm(dk, l, d, l, dsv.t(), qv, 1.0, gi > 0);
            mm(dv, l, d, l, pv.t(), gv, 1.0, gi > 0);
        }
    }
}

struct AttnSaved<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    o: &'a [f32],
    dout: &'a [f32],
    lse: &'a [f32],
}

/// Backward pass: `(dq, dk, dv)` in the inputs' layouts.
fn attention_backward(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    o: &FlexTensor,
    lse: &[f32],
    dout: &FlexTensor,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let n = Dims::of(q, k);
    let (qs, ks, vs, os, ds) = (contiguous(q), contiguous(k), contiguous(v), contiguous(o), contiguous(dout));
    let saved = AttnSaved { q: &qs, k: &ks, v: &vs, o: &os, dout: &ds, lse };
    let (g, d, l) = (n.group(), n.d, n.l);
    let (pq, pk) = (l * g * d, l * d);
    let tasks = n.b * n.kvh;
    let mut lq = vec![0f32; tasks * pq];
    let mut lk = vec![0f32; tasks * pk];
    let mut lv = vec![0f32; tasks * pk];
    lq.par_chunks_mut(pq)
        .zip(lk.par_chunks_mut(pk))
        .zip(lv.par_chunks_mut(pk))
        .enumerate()
        .for_each(|(task, ((a, b), c))| attn_bwd_task(&saved, n, task / n.kvh, task % n.kvh, a, b, c));
    let mut dq = vec![0f32; qs.len()];
    let mut dk = vec![0f32; ks.len()];
    let mut dv = vec![0f32; vs.len()];
    for task in 0..tasks {
        let (s, h) = (task / n.kvh, task % n.kvh);
        for t in 0..l {
            for gi in 0..g {
                let dst = n.qi(s, t, h * g + gi);
                dq[dst..dst + d].copy_from_slice(&lq[task * pq + (gi * l + t) * d..][..d]);
            }
            let dst = n.ki(s, t, h);
            dk[dst..dst + d].copy_from_slice(&lk[task * pk + t * d..][..d]);
            dv[dst..dst + d].copy_from_slice(&lv[task * pk + t * d..][..d]);
        }
    }
    (
        flex(dq, q.layout().shape().clone()),
        flex(dk, k.layout().shape().clone()),
        flex(dv, v.layout().shape().clone()),
    )
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    type State = (FlexTensor, FlexTensor, FlexTensor, FlexTensor, std::sync::Arc<Vec<f32>>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (q, k, v, o, lse) = ops.state;
        let dout = grads.consume::<Flex>(&ops.node);
        let (dq, dk, dv) = attention_backward(&q, &k, &v, &o, &lse, &dout);
        for (node, g) in ops.parents.into_iter().zip([dq, dk, dv]) {
            if let Some(n) = node {
                grads.register::<Flex>(n.id, g);
            }
        }
    }
}

fn attention_autodiff(
    q: AutodiffTensor<Flex>,
    k: AutodiffTensor<Flex>,
    v: AutodiffTensor<Flex>,
) -> AutodiffTensor<Flex> {
    let nodes = [q.node.clone(), k.node.clone(), v.node.clone()];
    match AttentionBackward.prepare::<NoCheckpointing>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (out, lse) = attention_forward(&q.primitive, &k.primitive, &v.primitive);
            let state = (q.primitive, k.primitive, v.primitive, out.clone(), std::sync::Arc::new(lse));
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(attention_forward(&q.primitive, &k.primitive, &v.primitive).0)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RMSNorm

/// RMSNorm of rows `x: [m, d]` with weight `[d]` (the inference engine's kernel,
/// [`flex_linear::rms_norm`], so scoring and decoding normalise to the same bits).
pub fn rms_norm<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 1>, eps: f64) -> Tensor<B, 2> {
    let f32s = x.dtype() == DType::F32 && w.dtype() == DType::F32;
    if f32s && is::<B, Autodiff<Flex>>() {
        let x = prim::<B, AutodiffTensor<Flex>, 2>(x);
        let w = prim::<B, AutodiffTensor<Flex>, 1>(w);
        return tensor::<B, _, 2>(rms_autodiff(x, w, eps));
    }
    if f32s && is::<B, Flex>() {
        let x = prim::<B, FlexTensor, 2>(x);
        let w = prim::<B, FlexTensor, 1>(w);
        return tensor::<B, _, 2>(flex_linear::rms_norm(&x, &w, eps));
    }
    rms_norm_generic(x, w, eps)
}

/// RMSNorm with burn's tensor ops (backends without a fused kernel), over the last dim.
pub(crate) fn rms_norm_generic<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    w: Tensor<B, 1>,
    eps: f64,
) -> Tensor<B, D> {
    let dt = x.dtype();
    if dt != DType::F32 {
        // Reduced precision (bf16): normalise in f32, as Hugging Face's LlamaRMSNorm does.
        let x = x.cast(DType::F32);
        let ms = (x.clone() * x.clone()).mean_dim(D - 1);
        return (x * ms.add_scalar(eps).sqrt().recip()).cast(dt) * w.unsqueeze::<D>();
    }
    let ms = (x.clone() * x.clone()).mean_dim(D - 1);
    x * ms.add_scalar(eps).sqrt().recip() * w.unsqueeze::<D>()
}

/// Rows per block of the weight gradient's partial sums (fixed: the sum order does not depend
/// on the thread count).
const RMS_BLOCK: usize = 64;

#[derive(Debug)]
struct RmsBackward;

impl Backward<Flex, 2> for RmsBackward {
    type State = (FlexTensor, FlexTensor, f64);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w, eps) = ops.state;
        let dy = grads.consume::<Flex>(&ops.node);
        let shape = x.layout().shape().clone();
        let d = shape[1];
        let (xs, ws, dys) = (contiguous(&x), contiguous(&w), contiguous(&dy));
        let eps = eps as f32;
        let mut dx = vec![0f32; xs.len()];
        // Per block of rows: dx rows and the block's partial dw.
        let partial: Vec<Vec<f32>> = dx
            .par_chunks_mut(RMS_BLOCK * d)
            .enumerate()
            .map(|(bi, dxb)| {
                let mut dw = vec![0f32; d];
                let r0 = bi * RMS_BLOCK;
                for (ri, dxr) in dxb.chunks_exact_mut(d).enumerate() {
                    let r = r0 + ri;
                    let (xr, dyr) = (&xs[r * d..][..d], &dys[r * d..][..d]);
                    rms_row_bwd(xr, dyr, &ws, eps, dxr, &mut dw);
                }
                dw
            })
            .collect();
        let [px, pw] = ops.parents;
        if let Some(n) = px {
            grads.register::<Flex>(n.id, flex(dx, shape));
        }
        if let Some(n) = pw {
            let mut dw = vec![0f32; d];
            for p in &partial {
                for (a, b) in dw.iter_mut().zip(p) {
                    *a += b;
                }
            }
            grads.register::<Flex>(n.id, flex(dw, burn::tensor::Shape::new([d])));
        }
    }
}

wide! {
    /// One row of RMSNorm's backward pass: with `r = 1 / sqrt(mean(x^2) + eps)`,
    /// `xn = x r` and `g = dy w`, `dx = r (g - xn mean(g xn))`; adds `dy xn` to `dw`.
    fn rms_row_bwd(x: &[f32], dy: &[f32], w: &[f32], eps: f32, dx: &mut [f32], dw: &mut [f32]) {
        let d = x.len();
        let r = (sum8_of(x, |v| v * v) / d as f32 + eps).sqrt().recip();
        let mean = sum8_by(d, |c| dy[c] * w[c] * (x[c] * r)) / d as f32;
        for c in 0..d {
            let xn = x[c] * r;
            dx[c] = r * (dy[c] * w[c] - xn * mean);
            dw[c] += dy[c] * xn;
        }
    }
}

fn rms_autodiff(x: AutodiffTensor<Flex>, w: AutodiffTensor<Flex>, eps: f64) -> AutodiffTensor<Flex> {
    let out = flex_linear::rms_norm(&x.primitive, &w.primitive, eps);
    match RmsBackward.prepare::<NoCheckpointing>([x.node.clone(), w.node.clone()]).compute_bound().stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((x.primitive, w.primitive, eps), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

// ---------------------------------------------------------------------------------------------
// RoPE

/// Rotary embedding of rows `x: [n, d]` with per-row tables `cos, sin: [n, d]` (the halves
/// convention: `rot(x) = (-x[d/2..], x[..d/2])`): `x cos + rot(x) sin`, or `Err(x)` back when
/// the backend or dtype has no fused kernel (the caller then uses burn's ops). The same products
/// and sums as the matrix form `x R`, so the same bits.
pub fn rope<B: Backend>(
    x: Tensor<B, 2>,
    cos: &Tensor<B, 2>,
    sin: &Tensor<B, 2>,
) -> Result<Tensor<B, 2>, Tensor<B, 2>> {
    let f32s = x.dtype() == DType::F32 && cos.dtype() == DType::F32 && sin.dtype() == DType::F32;
    if f32s && is::<B, Autodiff<Flex>>() {
        let x = prim::<B, AutodiffTensor<Flex>, 2>(x);
        let c = prim::<B, AutodiffTensor<Flex>, 2>(cos.clone()).primitive;
        let s = prim::<B, AutodiffTensor<Flex>, 2>(sin.clone()).primitive;
        return Ok(tensor::<B, _, 2>(rope_autodiff(x, c, s)));
    }
    if f32s && is::<B, Flex>() {
        let x = prim::<B, FlexTensor, 2>(x);
        let c = prim::<B, FlexTensor, 2>(cos.clone());
        let s = prim::<B, FlexTensor, 2>(sin.clone());
        return Ok(tensor::<B, _, 2>(rope_apply(&x, &c, &s, false)));
    }
    Err(x)
}

/// `x cos + rot(x) sin` (forward) or its transpose `dy cos + rot^T(dy sin)` (backward).
fn rope_apply(x: &FlexTensor, cos: &FlexTensor, sin: &FlexTensor, transpose: bool) -> FlexTensor {
    let shape = x.layout().shape().clone();
    let d = shape[1];
    let h = d / 2;
    let (xs, cs, ss) = (contiguous(x), contiguous(cos), contiguous(sin));
    assert_eq!(cs.len(), xs.len(), "fused rope: tables for {} values, rows hold {}", cs.len(), xs.len());
    let mut out = vec![0f32; xs.len()];
    const ROWS: usize = 256;
    if out.len() < PARALLEL_FROM {
        rope_rows(&xs, &cs, &ss, d, h, transpose, &mut out);
    } else {
        out.par_chunks_mut(ROWS * d).enumerate().for_each(|(bi, ob)| {
            let o0 = bi * ROWS * d;
            let n = ob.len();
            rope_rows(&xs[o0..o0 + n], &cs[o0..o0 + n], &ss[o0..o0 + n], d, h, transpose, ob);
        });
    }
    flex(out, shape)
}

wide! {
    fn rope_rows(x: &[f32], c: &[f32], s: &[f32], d: usize, h: usize, transpose: bool, out: &mut [f32]) {
        for (((o, x), c), s) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)).zip(c.chunks_exact(d)).zip(s.chunks_exact(d)) {
            if transpose {
                for i in 0..h {
                    o[i] = x[i] * c[i] + x[i + h] * s[i + h];
                    o[i + h] = x[i + h] * c[i + h] + -(x[i] * s[i]);
                }
            } else {
                for i in 0..h {
                    o[i] = x[i] * c[i] + -x[i + h] * s[i];
                    o[i + h] = x[i + h] * c[i + h] + x[i] * s[i + h];
                }
            }
        }
    }
}

#[derive(Debug)]
struct RopeBackward;

impl Backward<Flex, 1> for RopeBackward {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (c, s) = ops.state;
        let dy = grads.consume::<Flex>(&ops.node);
        let [px] = ops.parents;
        if let Some(n) = px {
            grads.register::<Flex>(n.id, rope_apply(&dy, &c, &s, true));
        }
    }
}

fn rope_autodiff(x: AutodiffTensor<Flex>, c: FlexTensor, s: FlexTensor) -> AutodiffTensor<Flex> {
    let out = rope_apply(&x.primitive, &c, &s, false);
    match RopeBackward.prepare::<NoCheckpointing>([x.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((c, s), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

// ---------------------------------------------------------------------------------------------
// Host access and gradient injection (the trainer's closed-form losses)

/// The values of a float tensor `[n, m]` on the host: the flex buffer itself when the backend
/// is flex (no copy), else a copy.
pub enum Host {
    /// A flex tensor's buffer (contiguous f32).
    Flex(FlexTensor),
    /// Copied values.
    Owned(Vec<f32>),
}

impl std::ops::Deref for Host {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            Host::Flex(t) => t.as_slice::<f32>().expect("contiguous f32 flex tensor"),
            Host::Owned(v) => v,
        }
    }
}

/// `t`'s values on the host (see [`Host`]).
pub fn host<B: Backend>(t: Tensor<B, 2>) -> Result<Host, String> {
    if t.dtype() == DType::F32 {
        let in_place = |f: FlexTensor| {
            let f = if f.as_slice::<f32>().is_some() { f } else { f.to_contiguous() };
            Host::Flex(f)
        };
        if is::<B, Autodiff<Flex>>() {
            return Ok(in_place(prim::<B, AutodiffTensor<Flex>, 2>(t).primitive));
        }
        if is::<B, Flex>() {
            return Ok(in_place(prim::<B, FlexTensor, 2>(t)));
        }
    }
    t.into_data().convert::<f32>().to_vec().map(Host::Owned).map_err(|e| format!("{e:?}"))
}

/// A scalar whose gradient with respect to `x: [n, m]` is `grad` (row-major `[n * m]`): the
/// surrogate `sum(x * grad)` through which a loss computed outside autodiff enters it. Its
/// value is not meaningful on flex (0); elsewhere it is that sum.
pub fn inject_grad<B: Backend>(x: Tensor<B, 2>, grad: Vec<f32>) -> Tensor<B, 1> {
    let [n, m] = x.dims();
    assert_eq!(grad.len(), n * m, "inject_grad: gradient of {} values for [{n}, {m}]", grad.len());
    if x.dtype() == DType::F32 && is::<B, Autodiff<Flex>>() {
        let xa = prim::<B, AutodiffTensor<Flex>, 2>(x);
        let g = flex(grad, burn::tensor::Shape::new([n, m]));
        let out = flex(vec![0.0], burn::tensor::Shape::new([1]));
        let y = match InjectBackward.prepare::<NoCheckpointing>([xa.node.clone()]).compute_bound().stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(g, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        return tensor::<B, _, 1>(y);
    }
    let device = x.device();
    let g = Tensor::<B, 2>::from_data(burn::tensor::TensorData::new(grad, [n, m]), &device);
    (x * g).sum()
}

#[derive(Debug)]
struct InjectBackward;

impl Backward<Flex, 1> for InjectBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        // The incoming gradient is d(loss)/d(this scalar) = 1 (it is the root).
        let _ = grads.consume::<Flex>(&ops.node);
        let [px] = ops.parents;
        if let Some(n) = px {
            grads.register::<Flex>(n.id, ops.state);
        }
    }
}

/// `t`'s flex tensor when the backend is flex and `t` is f32, else `t` back.
pub(crate) fn as_flex<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<FlexTensor, Tensor<B, D>> {
    if t.dtype() == DType::F32 && is::<B, Flex>() {
        Ok(prim::<B, FlexTensor, D>(t))
    } else {
        Err(t)
    }
}

/// A flex tensor as a tensor of `B` (which must be flex: see [`as_flex`]).
pub(crate) fn from_flex<B: Backend, const D: usize>(t: FlexTensor) -> Tensor<B, D> {
    assert!(is::<B, Flex>(), "from_flex on a backend other than flex");
    tensor::<B, _, D>(t)
}

/// `values` as a flex tensor of `shape`.
pub(crate) fn flex_of(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    flex(values, burn::tensor::Shape::from(shape.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;
    use burn::tensor::TensorData;

    type AD = Autodiff<Flex>;

    fn rand(s: &mut Stream, n: usize, scale: f64) -> Vec<f32> {
        (0..n).map(|_| ((s.next_f64() * 2.0 - 1.0) * scale) as f32).collect()
    }

    fn leaf<const D: usize>(v: Vec<f32>, shape: [usize; D]) -> Tensor<AD, D> {
        Tensor::<AD, D>::from_data(TensorData::new(v, shape), &Default::default()).require_grad()
    }

    fn vals<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec().unwrap()
    }

    /// Largest |a - b| relative to the largest |b| (both non-trivial).
    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(scale > 1e-3, "{what}: reference is all zeros");
        let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(err <= tol * scale, "{what}: max error {err} vs scale {scale}");
    }

    #[test]
    fn exp_is_within_two_ulp_of_f64_and_keeps_nan() {
        let mut worst = 0f64;
        for i in 0..200_001 {
            let x = -87.0 + 175.0 * i as f64 / 200_000.0;
            let got = exp(x as f32) as f64;
            let want = (x as f32 as f64).exp();
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 2.4e-7, "relative error {worst}");
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(-1e9) > 0.0 && exp(-1e9) < 1e-37, "clamped below, finite and positive");
        assert!(exp(1e9).is_finite());
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn fused_attention_matches_burn_ops_values_and_gradients() {
        // b 2, l 7, heads 4 over 2 kv heads, d 32 (the tiny model's head size) and 24
        // (an odd size takes the same code).
        for d in [32usize, 24] {
            let (b, l, h, kvh) = (2, 7, 4, 2);
            let mut s = Stream::new(3, "test-attn", &[d as u64]);
            let (q, k, v) = (
                rand(&mut s, b * l * h * d, 1.0),
                rand(&mut s, b * l * kvh * d, 1.0),
                rand(&mut s, b * l * kvh * d, 1.0),
            );
            let r = rand(&mut s, b * l * h * d, 1.0);
            let run = |fused: bool| {
                let (qt, kt, vt) = (
                    leaf(q.clone(), [b, l, h, d]),
                    leaf(k.clone(), [b, l, kvh, d]),
                    leaf(v.clone(), [b, l, kvh, d]),
                );
                let out = if fused {
                    causal_attention(qt.clone(), kt.clone(), vt.clone())
                } else {
                    let mask = grouped_causal_mask::<AD>(&[0], l, h / kvh, l, &Default::default());
                    masked_grouped_attention(
                        qt.clone(),
                        kt.clone().swap_dims(1, 2),
                        vt.clone().swap_dims(1, 2),
                        mask,
                    )
                };
                let loss = (out.clone()
                    * Tensor::<AD, 4>::from_data(
                        TensorData::new(r.clone(), [b, l, h, d]),
                        &Default::default(),
                    ))
                .sum();
                let g = loss.backward();
                let grads = [qt.grad(&g).unwrap(), kt.grad(&g).unwrap(), vt.grad(&g).unwrap()].map(vals);
                (vals(out), grads)
            };
            let (fo, fg) = run(true);
            let (ro, rg) = run(false);
            close(&fo, &ro, 1e-5, "attention output");
            for (name, (a, b)) in ["dq", "dk", "dv"].iter().zip(fg.iter().zip(&rg)) {
                close(a, b, 1e-5, name);
            }
            // The forward on the plain backend equals the autodiff one.
            let plain = causal_attention::<Flex>(
                Tensor::from_data(TensorData::new(q.clone(), [b, l, h, d]), &Default::default()),
                Tensor::from_data(TensorData::new(k.clone(), [b, l, kvh, d]), &Default::default()),
                Tensor::from_data(TensorData::new(v.clone(), [b, l, kvh, d]), &Default::default()),
            );
            assert_eq!(vals(plain), fo);
        }
    }

    #[test]
    fn fused_attention_of_a_sequence_does_not_depend_on_its_batch() {
        let (l, h, kvh, d) = (5, 2, 1, 32);
        let mut s = Stream::new(4, "test-attn-batch", &[]);
        let (q, k, v) = (
            rand(&mut s, 3 * l * h * d, 1.0),
            rand(&mut s, 3 * l * kvh * d, 1.0),
            rand(&mut s, 3 * l * kvh * d, 1.0),
        );
        let t = |x: &[f32], b: usize, heads: usize| {
            Tensor::<Flex, 4>::from_data(TensorData::new(x.to_vec(), [b, l, heads, d]), &Default::default())
        };
        let all = vals(causal_attention(t(&q, 3, h), t(&k, 3, kvh), t(&v, 3, kvh)));
        let (qn, kn) = (l * h * d, l * kvh * d);
        let one = vals(causal_attention(
            t(&q[qn..2 * qn], 1, h),
            t(&k[kn..2 * kn], 1, kvh),
            t(&v[kn..2 * kn], 1, kvh),
        ));
        assert_eq!(&all[qn..2 * qn], &one[..]);
    }

    #[test]
    fn fused_swiglu_rms_norm_and_rope_match_burn_ops() {
        let mut s = Stream::new(5, "test-fused", &[]);
        let (n, m) = (37, 48);
        // SwiGLU, with large gate values at both ends.
        let mut g = rand(&mut s, n * m, 4.0);
        g[0] = 30.0;
        g[1] = -30.0;
        let u = rand(&mut s, n * m, 1.0);
        let r = rand(&mut s, n * m, 1.0);
        let rt = || Tensor::<AD, 2>::from_data(TensorData::new(r.clone(), [n, m]), &Default::default());
        let run = |fused: bool| {
            let (gt, ut) = (leaf(g.clone(), [n, m]), leaf(u.clone(), [n, m]));
            let out = if fused { swiglu(gt.clone(), ut.clone()) } else { silu(gt.clone()) * ut.clone() };
            let gr = (out.clone() * rt()).sum().backward();
            (vals(out), vals(gt.grad(&gr).unwrap()), vals(ut.grad(&gr).unwrap()))
        };
        let (a, b) = (run(true), run(false));
        close(&a.0, &b.0, 1e-6, "swiglu");
        close(&a.1, &b.1, 1e-6, "swiglu dgate");
        close(&a.2, &b.2, 1e-6, "swiglu dup");

        // RMSNorm.
        let x = rand(&mut s, n * m, 2.0);
        let w = rand(&mut s, m, 1.0);
        let run = |fused: bool| {
            let (xt, wt) = (leaf(x.clone(), [n, m]), leaf(w.clone(), [m]));
            let out = if fused {
                rms_norm(xt.clone(), wt.clone(), 1e-5)
            } else {
                rms_norm_generic(xt.clone(), wt.clone(), 1e-5)
            };
            let gr = (out.clone() * rt()).sum().backward();
            (vals(out), vals(xt.grad(&gr).unwrap()), vals(wt.grad(&gr).unwrap()))
        };
        let (a, b) = (run(true), run(false));
        close(&a.0, &b.0, 1e-6, "rms_norm");
        close(&a.1, &b.1, 1e-5, "rms_norm dx");
        close(&a.2, &b.2, 1e-5, "rms_norm dw");

        // RoPE against the matrix form x cos + (x R) sin, bit for bit.
        let h = m / 2;
        let (c, sn) = (rand(&mut s, n * m, 1.0), rand(&mut s, n * m, 1.0));
        let mut rot = vec![0f32; m * m];
        for i in 0..h {
            rot[(i + h) * m + i] = -1.0;
            rot[i * m + i + h] = 1.0;
        }
        let table = |v: &Vec<f32>| {
            Tensor::<AD, 2>::from_data(TensorData::new(v.clone(), [n, m]), &Default::default())
        };
        let run = |fused: bool| {
            let xt = leaf(x.clone(), [n, m]);
            let out = if fused {
                rope(xt.clone(), &table(&c), &table(&sn)).expect("flex has the fused kernel")
            } else {
                let r = Tensor::<AD, 2>::from_data(TensorData::new(rot.clone(), [m, m]), &Default::default());
                xt.clone() * table(&c) + xt.clone().matmul(r) * table(&sn)
            };
            let gr = (out.clone() * rt()).sum().backward();
            (vals(out), vals(xt.grad(&gr).unwrap()))
        };
        let (a, b) = (run(true), run(false));
        assert_eq!(a.0, b.0, "rope forward");
        close(&a.1, &b.1, 1e-6, "rope dx");
    }

    #[test]
    fn injected_gradient_reaches_the_input_and_host_reads_values() {
        let mut s = Stream::new(6, "test-inject", &[]);
        let (x, g) = (rand(&mut s, 12, 1.0), rand(&mut s, 12, 1.0));
        let w = leaf(x.clone(), [3, 4]);
        let y = w.clone() * 2.0;
        let gr = inject_grad(y.clone(), g.clone()).backward();
        let got = vals(w.grad(&gr).unwrap());
        let want: Vec<f32> = g.iter().map(|v| v * 2.0).collect();
        assert_eq!(got, want);
        let want: Vec<f32> = x.iter().map(|v| v * 2.0).collect();
        assert_eq!(&*host(y).unwrap(), &want[..]);
    }
}
