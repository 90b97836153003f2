//! Rotary position embedding tables (Su et al. 2021), with Llama-3.1 frequency scaling.
//!
//! Uses the Hugging Face "rotate half" layout: a head vector `x = [x1, x2]` (halves) at position
//! `p` becomes `x * cos(p f) + [-x2, x1] * sin(p f)` with `f` repeated over both halves. GGUF
//! files store q/k weights permuted for the interleaved layout; the GGUF loader undoes that.

use burn::tensor::{backend::Backend, Tensor, TensorData};

use super::config::LlamaConfig;
use super::llama::like;

/// Inverse frequencies `theta^(-2i/d)` for `i < d/2`, with Llama-3.1 scaling applied.
pub fn inv_freq(cfg: &LlamaConfig) -> Vec<f64> {
    let d = cfg.head_dim;
    let base: Vec<f64> = (0..d / 2).map(|i| 1.0 / cfg.rope_theta.powf((2 * i) as f64 / d as f64)).collect();
    let Some(s) = &cfg.rope_scaling else {
        return base;
    };
    // Llama-3.1 "llama3" rope_type: keep high frequencies, divide low ones by `factor`,
    // interpolate smoothly in between.
    let old = s.original_max_position_embeddings as f64;
    let low_wavelen = old / s.low_freq_factor;
    let high_wavelen = old / s.high_freq_factor;
    base.into_iter()
        .map(|f| {
            let wavelen = 2.0 * std::f64::consts::PI / f;
            if wavelen < high_wavelen {
                f
            } else if wavelen > low_wavelen {
                f / s.factor
            } else {
                let smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                (1.0 - smooth) * f / s.factor + smooth * f
            }
        })
        .collect()
}

/// RoPE tables for positions `0..len` kept on the host, plus the "rotate half" matrix on the
/// device.
///
/// The per-call tables are built on the host already repeated over heads, so the device ops
/// are plain same-shape multiplies: broadcasting a `[.., 1, dim]` table over heads sends
/// burn-flex down a scalar strided loop that cost more than the rest of a decode step.
#[derive(Clone, Debug)]
pub struct Rope<B: Backend> {
    cos: Vec<f32>,
    sin: Vec<f32>,
    dim: usize,
    len: usize,
    /// `[dim, dim]` signed permutation with `x R = [-x2, x1]`; exact in floating point (every
    /// output is one input times +-1 plus zeros).
    rotate: Tensor<B, 2>,
}

/// The rotation tables for one call: `[tokens * heads, dim]` each.
#[derive(Clone, Debug)]
pub struct RopeAt<B: Backend> {
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
    heads: usize,
}

impl<B: Backend> RopeAt<B> {
    /// The tables in `dtype` (the activations' type).
    pub fn cast(self, dtype: burn::tensor::DType) -> Self {
        Self { cos: like(self.cos, dtype), sin: like(self.sin, dtype), heads: self.heads }
    }
}

impl<B: Backend> Rope<B> {
    /// Tables for `len` positions.
    pub fn new(cfg: &LlamaConfig, len: usize, device: &B::Device) -> Self {
        let d = cfg.head_dim;
        // Angles in f32 as Hugging Face computes them (f32 inverse frequencies times f32
        // positions), so long positions round the same way.
        let freqs: Vec<f32> = inv_freq(cfg).into_iter().map(|f| f as f32).collect();
        let mut cos = Vec::with_capacity(len * d);
        let mut sin = Vec::with_capacity(len * d);
        for p in 0..len {
            for _half in 0..2 {
                for f in &freqs {
                    let a = p as f32 * f;
                    cos.push(a.cos());
                    sin.push(a.sin());
                }
            }
        }
        let mut r = vec![0f32; d * d];
        for i in 0..d / 2 {
            r[(i + d / 2) * d + i] = -1.0; // out[i] = -x[i + d/2]
            r[i * d + i + d / 2] = 1.0; // out[i + d/2] = x[i]
        }
        Self { cos, sin, dim: d, len, rotate: Tensor::from_data(TensorData::new(r, [d, d]), device) }
    }

    /// The same tables for the inner (non-autodiff) backend.
    pub fn inner(&self) -> Rope<B::InnerBackend>
    where
        B: burn::tensor::backend::AutodiffBackend,
    {
        Rope {
            cos: self.cos.clone(),
            sin: self.sin.clone(),
            dim: self.dim,
            len: self.len,
            rotate: self.rotate.clone().inner(),
        }
    }

    /// Number of positions covered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: tables cover at least one position.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tables for tokens at `positions` (row-major over `[batch, seq]`), repeated for `heads`.
    pub fn at(&self, positions: &[usize], heads: usize, device: &B::Device) -> RopeAt<B> {
        let d = self.dim;
        let mut cos = Vec::with_capacity(positions.len() * heads * d);
        let mut sin = Vec::with_capacity(positions.len() * heads * d);
        for &p in positions {
            assert!(p < self.len, "RoPE position {p} beyond table length {}", self.len);
            for _ in 0..heads {
                cos.extend_from_slice(&self.cos[p * d..(p + 1) * d]);
                sin.extend_from_slice(&self.sin[p * d..(p + 1) * d]);
            }
        }
        let n = positions.len() * heads;
        RopeAt {
            cos: Tensor::from_data(TensorData::new(cos, [n, d]), device),
            sin: Tensor::from_data(TensorData::new(sin, [n, d]), device),
            heads,
        }
    }

    /// Rotates `x: [batch, seq, heads, dim]` by the tables `at` (built for the same tokens and
    /// head count).
    pub fn apply(&self, x: Tensor<B, 4>, at: &RopeAt<B>) -> Tensor<B, 4> {
        let [b, l, h, d] = x.dims();
        assert_eq!(h, at.heads, "RoPE tables built for {} heads, applied to {h}", at.heads);
        let flat = match super::kernels::fused::rope(x.reshape([b * l * h, d]), &at.cos, &at.sin) {
            Ok(y) => return y.reshape([b, l, h, d]),
            Err(flat) => flat,
        };
        let rotated = flat.clone().matmul(like(self.rotate.clone(), flat.dtype()));
        (flat * at.cos.clone() + rotated * at.sin.clone()).reshape([b, l, h, d])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Llama3RopeScaling;

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let mut cfg = LlamaConfig::tiny(10, 16);
        cfg.head_dim = 128;
        cfg.rope_theta = 500_000.0;
        cfg.rope_scaling = Some(Llama3RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        });
        let scaled = inv_freq(&cfg);
        cfg.rope_scaling = None;
        let plain = inv_freq(&cfg);
        // Highest frequency: wavelength 2*pi < 8192/4, unchanged.
        assert_eq!(scaled[0], plain[0]);
        // Lowest frequency: wavelength far above 8192, divided by 8.
        let last = plain.len() - 1;
        assert!((scaled[last] - plain[last] / 8.0).abs() < 1e-18);
        // In between, scaled lies between f/8 and f.
        for (s, p) in scaled.iter().zip(&plain) {
            assert!(*s <= *p && *s >= p / 8.0 - 1e-18);
        }
    }
}
