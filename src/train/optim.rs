//! AdamW (Loshchilov and Hutter 2019) over a burn module, with global-norm gradient clipping,
//! and its state in a form that can be saved and restored exactly.
//!
//! Written here rather than taken from burn-optim so the optimiser state is keyed by the
//! model's deterministic parameter ids and saved as plain safetensors next to the weights.

use std::collections::BTreeMap;

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, ElementConversion, Tensor};

use crate::model::llama::like;

/// AdamW hyper-parameters and state.
#[derive(Clone, Debug)]
pub struct AdamW<B: Backend> {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay, applied to matrices only (not norms or biases).
    pub weight_decay: f64,
    /// Steps taken.
    pub step: u64,
    /// Flattened `(m, v)` per parameter id.
    pub state: BTreeMap<u64, (Tensor<B, 1>, Tensor<B, 1>)>,
}

impl<B: Backend> AdamW<B> {
    /// Fresh optimiser (betas 0.9 / 0.999, eps 1e-8).
    pub fn new(weight_decay: f64) -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay, step: 0, state: BTreeMap::new() }
    }
}

/// Global L2 norm of the gradients of `module`'s parameters (module traversal order, so the
/// sum is deterministic).
pub fn grad_norm<AB: AutodiffBackend, M: AutodiffModule<AB>>(module: &M, grads: &GradientsParams) -> f64 {
    struct Norm<'a> {
        grads: &'a GradientsParams,
        sq: f64,
    }
    impl<AB: AutodiffBackend> ModuleVisitor<AB> for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
            if let Some(g) = self.grads.get::<AB::InnerBackend, D>(param.id) {
                let g = like(g, DType::F32);
                let s: f32 = (g.clone() * g).sum().into_scalar().elem();
                self.sq += s as f64;
            }
        }
    }
    let mut v = Norm { grads, sq: 0.0 };
    module.visit(&mut v);
    v.sq.sqrt()
}

impl<B: Backend> AdamW<B> {
    /// One update of every parameter that has a gradient; gradients are multiplied by
    /// `grad_scale` first (clipping).
    pub fn step<AB, M>(&mut self, module: M, mut grads: GradientsParams, lr: f64, grad_scale: f64) -> M
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<AB>,
    {
        self.step += 1;
        let mut m = StepMapper { opt: self, grads: &mut grads, lr, grad_scale };
        module.map(&mut m)
    }
}

struct StepMapper<'a, B: Backend> {
    opt: &'a mut AdamW<B>,
    grads: &'a mut GradientsParams,
    lr: f64,
    grad_scale: f64,
}

impl<AB: AutodiffBackend> ModuleMapper<AB> for StepMapper<'_, AB::InnerBackend> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<AB, D>>) -> Param<Tensor<AB, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<AB::InnerBackend, D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let o = &mut *self.opt;
        let dims = tensor.dims();
        let n: usize = dims.iter().product();
        // Moments and the update in f32 whatever the parameter's type (bf16 on the GPU): the
        // result is rounded to that type once, at the end.
        let dtype = tensor.dtype();
        let p = like(tensor.inner().reshape([n]), DType::F32);
        let g = like(grad.reshape([n]), DType::F32).mul_scalar(self.grad_scale);
        let key = id.val();
        let (m, v) = match o.state.remove(&key) {
            Some(s) => s,
            None => (p.zeros_like(), p.zeros_like()),
        };
        if let Some((p, m, v)) = flex_update(o, self.lr, &p, &g, &m, &v, D >= 2) {
            o.state.insert(key, (m, v));
            let t = Tensor::<AB, D>::from_inner(like(p, dtype).reshape(dims)).require_grad();
            return Param::from_mapped_value(ParamId::from(key), t, mapper);
        }
        let m = m.mul_scalar(o.beta1) + g.clone().mul_scalar(1.0 - o.beta1);
        let v = v.mul_scalar(o.beta2) + (g.clone() * g).mul_scalar(1.0 - o.beta2);
        let t = o.step as i32;
        let m_hat = m.clone().div_scalar(1.0 - o.beta1.powi(t));
        let v_hat = v.clone().div_scalar(1.0 - o.beta2.powi(t));
        let update = m_hat / v_hat.sqrt().add_scalar(o.eps);
        let mut p = p - update.mul_scalar(self.lr);
        if D >= 2 && o.weight_decay > 0.0 {
            // Decoupled decay from the pre-update weights' scale, as in AdamW.
            p = p.clone() - p.mul_scalar(self.lr * o.weight_decay);
        }
        o.state.insert(key, (m, v));
        let t = Tensor::<AB, D>::from_inner(like(p, dtype).reshape(dims)).require_grad();
        Param::from_mapped_value(ParamId::from(key), t, mapper)
    }
}

/// The same update as the tensor ops of `StepMapper`, in one parallel pass over host
/// buffers when the backend is flex (f32): `(p, m, v)` after the step, or `None` elsewhere.
#[allow(clippy::type_complexity)]
fn flex_update<B: Backend>(
    o: &AdamW<B>,
    lr: f64,
    p: &Tensor<B, 1>,
    g: &Tensor<B, 1>,
    m: &Tensor<B, 1>,
    v: &Tensor<B, 1>,
    decay: bool,
) -> Option<(Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>)> {
    use crate::model::fused::{as_flex, contiguous, flex_of, from_flex};
    use rayon::prelude::*;
    let [p, g, m, v] = [p, g, m, v].map(|t| as_flex(t.clone()).ok());
    let (p, g, m, v) = (p?, g?, m?, v?);
    let (ps, gs, ms, vs) = (contiguous(&p), contiguous(&g), contiguous(&m), contiguous(&v));
    let n = ps.len();
    let t = o.step as i32;
    // Scalars rounded to f32 once, as burn's scalar ops do.
    let (b1, c1) = (o.beta1 as f32, (1.0 - o.beta1) as f32);
    let (b2, c2) = (o.beta2 as f32, (1.0 - o.beta2) as f32);
    let (h1, h2) = ((1.0 - o.beta1.powi(t)) as f32, (1.0 - o.beta2.powi(t)) as f32);
    let (eps, lr32, wd) = (o.eps as f32, lr as f32, (lr * o.weight_decay) as f32);
    let decay = decay && o.weight_decay > 0.0;
    let (mut po, mut mo, mut vo) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    const BLOCK: usize = 8192;
    po.par_chunks_mut(BLOCK)
        .zip(mo.par_chunks_mut(BLOCK))
        .zip(vo.par_chunks_mut(BLOCK))
        .enumerate()
        .for_each(|(bi, ((pc, mc), vc))| {
            let i0 = bi * BLOCK;
            for j in 0..pc.len() {
                let i = i0 + j;
                let gi = gs[i];
                let mi = ms[i] * b1 + gi * c1;
                let vi = vs[i] * b2 + (gi * gi) * c2;
                let update = (mi / h1) / ((vi / h2).sqrt() + eps);
                let mut pi = ps[i] - update * lr32;
                if decay {
                    pi = pi - pi * wd;
                }
                pc[j] = pi;
                mc[j] = mi;
                vc[j] = vi;
            }
        });
    let t = |x: Vec<f32>| from_flex::<B, 1>(flex_of(x, &[n]));
    Some((t(po), t(mo), t(vo)))
}

/// Learning rate at `step` (0-based) of `total`: linear warm-up over `warmup` steps, then
/// cosine decay to `min_frac * lr`.
pub fn lr_at(lr: f64, step: usize, total: usize, warmup: usize, min_frac: f64) -> f64 {
    if step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / span as f64).min(1.0);
    let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    lr * (min_frac + (1.0 - min_frac) * cos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays() {
        assert!((lr_at(1.0, 0, 100, 10, 0.1) - 0.1).abs() < 1e-12);
        assert!((lr_at(1.0, 9, 100, 10, 0.1) - 1.0).abs() < 1e-12);
        assert!((lr_at(1.0, 10, 100, 10, 0.1) - 1.0).abs() < 1e-12);
        assert!((lr_at(1.0, 100, 100, 10, 0.1) - 0.1).abs() < 1e-12);
        let mid = lr_at(1.0, 55, 100, 10, 0.1);
        assert!((mid - 0.55).abs() < 1e-12, "{mid}");
    }
}
