//! The Llama-family decoder in burn, generic over the backend: token embedding, RMSNorm, RoPE,
//! grouped-query attention, SwiGLU MLP, tied or untied output head, optional LoRA adapters on
//! any projection. One network for Llama (Touvron et al. 2023; Llama-3 as in Dubey et al. 2024),
//! Qwen2 (Yang et al. 2024: biases on q, k, v) and Qwen3 (Yang et al. 2025: RMSNorm of each q
//! and k head before RoPE, explicit head width); the options are the flags of [`LlamaConfig`].
//!
//! Matrix products, norms, attention and SwiGLU are the kernels of [`super::kernels`], which
//! know nothing of this file.
//!
//! Weights are stored `[d_in, d_out]` (burn's row layout), the transpose of the Hugging Face
//! `[d_out, d_in]`; the loaders and the checkpoint writer transpose at the boundary.
//!
//! Grouped-query attention is computed without materialising repeated key/value heads: the
//! `group` query heads that share one key/value head are laid out as extra query rows of that
//! head, `[batch, kv_heads, seq * group, head_dim]`, and the mask gives each row its position.

use burn::module::{Module, Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};

use super::config::LlamaConfig;
use super::kernels::backend::{InferBackend, Kv};
use super::kernels::fused;
use super::rope::{Rope, RopeAt};
use crate::rng::Stream;

/// Low-rank adapter `x -> (x A) B * scale` (Hu et al. 2021) added to a frozen projection.
#[derive(Module, Debug)]
pub struct Lora<B: Backend> {
    /// Down projection `[d_in, rank]`, random init.
    pub a: Param<Tensor<B, 2>>,
    /// Up projection `[rank, d_out]`, zero init so training starts at the base model.
    pub b: Param<Tensor<B, 2>>,
    /// `lora_alpha / rank`.
    pub scale: f64,
}

/// A linear projection `x W (+ bias) (+ LoRA)` with `W: [d_in, d_out]`.
#[derive(Module, Debug)]
pub struct Proj<B: Backend> {
    /// Weight `[d_in, d_out]`.
    pub weight: Param<Tensor<B, 2>>,
    /// Optional bias `[d_out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Optional adapter.
    pub lora: Option<Lora<B>>,
}

impl<B: Backend> Proj<B> {
    /// `x: [.., d_in] -> [.., d_out]`.
    ///
    /// Leading dims are flattened into one matrix product: a batched product over `[b, 1, d]`
    /// would run `b` vector products, and burn-flex gives its output non-canonical strides
    /// that push every following elementwise op onto a slow strided path.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        self.forward_with(x, matmul)
    }

    /// [`Proj::forward`] with the base product `x W` computed by `mm` (the inference engine
    /// passes its backend's [`InferBackend::weight_matmul`]).
    pub fn forward_with<const D: usize>(&self, x: Tensor<B, D>, mm: MatMul<B>) -> Tensor<B, D> {
        let dims = x.dims();
        let d_in = dims[D - 1];
        let rows = dims[..D - 1].iter().product::<usize>();
        let x = x.reshape([rows, d_in]);
        let mut y = mm(x.clone(), self.weight.val());
        if let Some(b) = &self.bias {
            y = y + b.val().unsqueeze::<2>();
        }
        if let Some(l) = &self.lora {
            // Adapters stay f32 (the optimiser's precision); the product runs in the
            // activations' type, as autocast would.
            let dt = x.dtype();
            y = y + x.matmul(like(l.a.val(), dt)).matmul(like(l.b.val(), dt)).mul_scalar(l.scale);
        }
        let mut out = dims;
        out[D - 1] = y.dims()[1];
        y.reshape(out)
    }

    /// `[d_in, d_out]`.
    pub fn dims(&self) -> [usize; 2] {
        self.weight.val().dims()
    }
}

/// A matrix product `[m, k] x [k, n]`: burn's `matmul` (training, scoring) or the inference
/// backend's [`InferBackend::weight_matmul`].
pub type MatMul<B> = fn(Tensor<B, 2>, Tensor<B, 2>) -> Tensor<B, 2>;

/// burn's matrix product, as a [`MatMul`]; a weight stored in another type than the
/// activations (bf16 matrices on the CPU) is widened to theirs first.
///
/// Panics on an 8-bit weight: its values are stored in the order of the CPU's 8-bit kernel
/// ([`crate::model::kernels::q8`]), which burn's dequantization does not know; those products
/// go through [`InferBackend::weight_matmul`] (as [`Kernels::scoring`] does).
pub fn matmul<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    assert!(
        !matches!(w.dtype(), DType::QFloat(_)),
        "an 8-bit weight multiplied through burn's matmul: use InferBackend::weight_matmul"
    );
    let dt = x.dtype();
    x.matmul(like(w, dt))
}

/// [`matmul`], except that 8-bit weights go through the backend's own kernel.
fn scoring_matmul<B: InferBackend>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    if matches!(w.dtype(), DType::QFloat(_)) {
        B::weight_matmul(x, w)
    } else {
        matmul(x, w)
    }
}

/// RMSNorm of rows `[m, d]` with weight `[d]` and epsilon.
pub type Norm<B> = fn(Tensor<B, 2>, Tensor<B, 1>, f64) -> Tensor<B, 2>;

/// The products and norms of a forward pass: burn's ops ([`Kernels::burn`], training and
/// scoring) or the inference backend's own ([`InferBackend::weight_matmul`],
/// [`InferBackend::rms_norm_rows`]).
pub struct Kernels<B: Backend> {
    /// Matrix product.
    pub mm: MatMul<B>,
    /// RMSNorm over rows.
    pub norm: Norm<B>,
}

impl<B: Backend> Clone for Kernels<B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for Kernels<B> {}

impl<B: Backend> Kernels<B> {
    /// burn's tensor ops (with the fused whole-sequence kernels on flex).
    pub fn burn() -> Self {
        Self { mm: matmul, norm: fused::rms_norm }
    }

    /// RMSNorm (Zhang and Sennrich 2019), `x / sqrt(mean(x^2) + eps) * w`, of `x: [.., d]`
    /// over its last dim, through `self.norm`.
    fn rms<const D: usize>(&self, x: Tensor<B, D>, w: &Param<Tensor<B, 1>>, eps: f64) -> Tensor<B, D> {
        let dims = x.dims();
        let rows = dims[..D - 1].iter().product::<usize>();
        (self.norm)(x.reshape([rows, dims[D - 1]]), w.val(), eps).reshape(dims)
    }
}

impl<B: InferBackend> Kernels<B> {
    /// The inference backend's kernels.
    pub fn infer() -> Self {
        Self { mm: B::weight_matmul, norm: B::rms_norm_rows }
    }

    /// The engine's full-sequence scoring: burn's ops (the numbers training computes), except
    /// 8-bit weights, which only the backend's kernel reads.
    pub fn scoring() -> Self {
        Self { mm: scoring_matmul::<B>, norm: fused::rms_norm }
    }
}

/// One decoder block: pre-norm attention and pre-norm SwiGLU MLP, both residual.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// RMSNorm weight before attention.
    pub attn_norm: Param<Tensor<B, 1>>,
    /// Query projection.
    pub q: Proj<B>,
    /// Key projection.
    pub k: Proj<B>,
    /// Value projection.
    pub v: Proj<B>,
    /// Output projection.
    pub o: Proj<B>,
    /// RMSNorm weight `[head_dim]` of each query head, before RoPE (Qwen3's `q_norm`).
    pub q_norm: Option<Param<Tensor<B, 1>>>,
    /// RMSNorm weight `[head_dim]` of each key head, before RoPE (Qwen3's `k_norm`).
    pub k_norm: Option<Param<Tensor<B, 1>>>,
    /// RMSNorm weight before the MLP.
    pub mlp_norm: Param<Tensor<B, 1>>,
    /// SwiGLU gate.
    pub gate: Proj<B>,
    /// SwiGLU up projection.
    pub up: Proj<B>,
    /// SwiGLU down projection.
    pub down: Proj<B>,
}

/// The whole decoder.
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    /// Token embedding `[vocab, hidden]`.
    pub embed: Param<Tensor<B, 2>>,
    /// Decoder blocks.
    pub layers: Vec<Block<B>>,
    /// Final RMSNorm weight.
    pub norm: Param<Tensor<B, 1>>,
    /// Output head `[hidden, vocab]`; `None` when tied to the embedding.
    pub lm_head: Option<Param<Tensor<B, 2>>>,
    /// Architecture.
    pub config: LlamaConfig,
}

/// Key/value cache of one layer (layout chosen by the backend, see `backend::Kv`).
#[derive(Clone, Debug)]
pub struct LayerCache<B: Backend> {
    /// Keys (after RoPE).
    pub k: Tensor<B, 4>,
    /// Values.
    pub v: Tensor<B, 4>,
}

/// Deterministic parameter ids: the `n`-th parameter created gets id `n`, so optimiser state
/// keyed by id is stable across processes.
struct Ids(u64);
impl Ids {
    fn next(&mut self) -> ParamId {
        self.0 += 1;
        ParamId::from(self.0)
    }
}

pub(crate) fn normal(stream: &mut Stream, n: usize, std: f64) -> Vec<f32> {
    // Box-Muller on the project's own uniform draws.
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let u1 = 1.0 - stream.next_f64(); // (0, 1]
        let u2 = stream.next_f64();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let t = 2.0 * std::f64::consts::PI * u2;
        out.push((r * t.cos()) as f32);
        if out.len() < n {
            out.push((r * t.sin()) as f32);
        }
    }
    out
}

fn param<B: Backend, const D: usize>(
    ids: &mut Ids,
    values: Vec<f32>,
    shape: [usize; D],
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    Param::initialized(ids.next(), Tensor::from_data(TensorData::new(values, shape), device).require_grad())
}

impl<B: Backend> Llama<B> {
    /// Random initialisation (normal, std 0.02; output projections scaled by
    /// `1/sqrt(2 layers)` as in GPT-2), every draw from the stream `(seed, "init")`.
    pub fn init(config: &LlamaConfig, seed: u64, device: &B::Device) -> Self {
        let mut ids = Ids(0);
        let c = config;
        let std = 0.02;
        let out_std = std / ((2 * c.num_layers) as f64).sqrt();
        let mut s = Stream::new(seed, "init", &[]);
        let proj = |s: &mut Stream, ids: &mut Ids, i: usize, o: usize, std: f64, bias: bool| Proj {
            weight: param(ids, normal(s, i * o, std), [i, o], device),
            bias: bias.then(|| param(ids, vec![0.0; o], [o], device)),
            lora: None,
        };
        let d = c.hidden_size;
        let q = c.num_heads * c.head_dim;
        let kv = c.num_kv_heads * c.head_dim;
        let embed = param(&mut ids, normal(&mut s, c.vocab_size * d, std), [c.vocab_size, d], device);
        let hd = c.head_dim;
        let layers = (0..c.num_layers)
            .map(|_| Block {
                attn_norm: param(&mut ids, vec![1.0; d], [d], device),
                q: proj(&mut s, &mut ids, d, q, std, c.qkv_bias),
                k: proj(&mut s, &mut ids, d, kv, std, c.qkv_bias),
                v: proj(&mut s, &mut ids, d, kv, std, c.qkv_bias),
                o: proj(&mut s, &mut ids, q, d, out_std, c.o_bias),
                q_norm: c.qk_norm.then(|| param(&mut ids, vec![1.0; hd], [hd], device)),
                k_norm: c.qk_norm.then(|| param(&mut ids, vec![1.0; hd], [hd], device)),
                mlp_norm: param(&mut ids, vec![1.0; d], [d], device),
                gate: proj(&mut s, &mut ids, d, c.intermediate_size, std, c.mlp_bias),
                up: proj(&mut s, &mut ids, d, c.intermediate_size, std, c.mlp_bias),
                down: proj(&mut s, &mut ids, c.intermediate_size, d, out_std, c.mlp_bias),
            })
            .collect();
        let norm = param(&mut ids, vec![1.0; d], [d], device);
        let lm_head = (!c.tie_word_embeddings)
            .then(|| param(&mut ids, normal(&mut s, d * c.vocab_size, std), [d, c.vocab_size], device));
        Self { embed, layers, norm, lm_head, config: c.clone() }
    }

    /// The parameters stored as `s` says (matrices, embedding and vectors in their types and
    /// values, [`crate::model::weights::stored_matrix`]; ids and trainability kept). Adapters
    /// are left as they are.
    pub fn to_storage(mut self, s: crate::model::weights::Storage) -> Self {
        use crate::model::weights::stored_matrix;
        let matrix = |p: Param<Tensor<B, 2>>, embedding: bool| -> Param<Tensor<B, 2>> {
            p.map(|t| {
                let grad = t.is_require_grad();
                let device = t.device();
                let shape: [usize; 2] = t.dims();
                let data: Vec<f32> =
                    like(t.set_require_grad(false), DType::F32).into_data().to_vec().unwrap_or_default();
                let t = stored_matrix::<B>(data, shape, s, embedding, &device);
                if grad {
                    t.require_grad()
                } else {
                    t
                }
            })
        };
        let vector = |p: Param<Tensor<B, 1>>| -> Param<Tensor<B, 1>> {
            p.map(|t| {
                let grad = t.is_require_grad();
                let t = like(t.set_require_grad(false), s.vectors);
                if grad {
                    t.require_grad()
                } else {
                    t
                }
            })
        };
        let proj = |mut p: Proj<B>| -> Proj<B> {
            p.weight = matrix(p.weight, false);
            p.bias = p.bias.map(vector);
            p
        };
        self.embed = matrix(self.embed, true);
        self.norm = vector(self.norm);
        self.lm_head = self.lm_head.map(|h| matrix(h, false));
        self.layers = self
            .layers
            .into_iter()
            .map(|mut l| {
                l.attn_norm = vector(l.attn_norm);
                l.mlp_norm = vector(l.mlp_norm);
                l.q_norm = l.q_norm.map(vector);
                l.k_norm = l.k_norm.map(vector);
                (l.q, l.k, l.v, l.o) = (proj(l.q), proj(l.k), proj(l.v), proj(l.o));
                (l.gate, l.up, l.down) = (proj(l.gate), proj(l.up), proj(l.down));
                l
            })
            .collect();
        self
    }

    /// The activations' type: the norms' (f32 when only the matrices are bf16).
    pub fn act_dtype(&self) -> DType {
        self.norm.val().dtype()
    }

    /// Every float parameter cast to `dtype` (ids and trainability kept).
    pub fn cast(self, dtype: DType) -> Self {
        struct Cast(DType);
        impl<B: Backend> burn::module::ModuleMapper<B> for Cast {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
                let dtype = self.0;
                param.map(|t| {
                    if t.dtype() == dtype {
                        return t;
                    }
                    let grad = t.is_require_grad();
                    // Off the graph first (`detach` keeps the flag), so the cast is a new leaf.
                    let t = t.set_require_grad(false).cast(dtype);
                    if grad {
                        t.require_grad()
                    } else {
                        t
                    }
                })
            }
        }
        self.map(&mut Cast(dtype))
    }

    /// A tied output head copied into its own row-major `[hidden, vocab]` weight (the same
    /// values, so the same logits, unless 8-bit, below): kernels that stream weight rows then read the head in
    /// place instead of gathering the embedding's columns every step. Untied models are
    /// returned as they are.
    ///
    /// A model whose matrices are 8-bit gets an 8-bit head (the embedding's values quantized
    /// like the other matrices, [`crate::model::weights::stored_matrix`]), as an untied 8-bit
    /// model has: half the bytes of the bf16 table at every decode step.
    pub fn untie_head(mut self) -> Self {
        use crate::model::weights::{stored_matrix, Storage, Values};
        if self.lm_head.is_none() {
            let e = self.embed.val();
            let (device, dtype) = (e.device(), e.dtype());
            let [v, d] = e.dims();
            let q8 = self
                .layers
                .first()
                .map(|l| l.q.weight.val().dtype())
                .filter(|t| matches!(t, DType::QFloat(_)));
            let t = match q8 {
                Some(q) if crate::model::kernels::q8::fits(d, v) => {
                    let values: Vec<f32> =
                        like(e.transpose(), DType::F32).into_data().to_vec().unwrap_or_default();
                    let s =
                        Storage { matrices: q, embedding: dtype, vectors: DType::F32, values: Values::Q8 };
                    stored_matrix::<B>(values, [d, v], s, false, &device)
                }
                // The embedding's own type: `from_data` without one would widen a bf16 table
                // to f32 and double the bytes the head streams every step.
                _ => Tensor::<B, 2>::from_data(e.transpose().into_data(), (&device, dtype)),
            };
            self.lm_head = Some(Param::from_tensor(t));
        }
        self
    }

    /// Embeds `tokens: [batch, seq]` -> `[batch, seq, hidden]`.
    pub fn embed(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, l] = tokens.dims();
        let d = self.config.hidden_size;
        like(self.embed.val().select(0, tokens.reshape([b * l])), self.act_dtype()).reshape([b, l, d])
    }

    /// Final norm and output head: `[.., hidden] -> [.., vocab]` logits.
    pub fn head<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        self.head_with(x, Kernels::burn())
    }

    /// [`Llama::head`] with the given kernels.
    pub fn head_with<const D: usize>(&self, x: Tensor<B, D>, k: Kernels<B>) -> Tensor<B, D> {
        let mm = k.mm;
        let x = k.rms(x, &self.norm, self.config.rms_norm_eps);
        let dims = x.dims();
        let rows = dims[..D - 1].iter().product::<usize>();
        let x = x.reshape([rows, dims[D - 1]]);
        let y = match &self.lm_head {
            Some(w) => mm(x, w.val()),
            None => mm(x, self.embed.val().transpose()),
        };
        let mut out = dims;
        out[D - 1] = self.config.vocab_size;
        // Logits in f32 whatever the weights' type (softmax and losses need the range).
        like(y, DType::F32).reshape(out)
    }

    /// Full causal forward over whole sequences (training and scoring):
    /// `tokens: [batch, seq]` -> logits `[batch, seq, vocab]`. Positions start at 0; right
    /// padding does not affect earlier positions.
    pub fn forward(&self, tokens: Tensor<B, 2, Int>, rope: &Rope<B>) -> Tensor<B, 3> {
        self.head(self.body(tokens, rope))
    }

    /// [`Llama::forward`] with the given kernels.
    pub fn forward_with(&self, tokens: Tensor<B, 2, Int>, rope: &Rope<B>, k: Kernels<B>) -> Tensor<B, 3> {
        self.head_with(self.body_with(tokens, rope, k), k)
    }

    /// [`Llama::forward`] with logits only at `rows` (indices into the flattened
    /// `[batch * seq]` positions): `[rows.len(), vocab]`. Training computes the head and the
    /// loss on the loss-carrying positions alone.
    pub fn forward_rows(
        &self,
        tokens: Tensor<B, 2, Int>,
        rows: Tensor<B, 1, Int>,
        rope: &Rope<B>,
    ) -> Tensor<B, 2> {
        let h = self.body(tokens, rope);
        let [b, l, d] = h.dims();
        self.head(h.reshape([b * l, d]).select(0, rows))
    }

    /// The decoder blocks over whole sequences: `[batch, seq]` -> hidden states
    /// `[batch, seq, hidden]` before the final norm.
    pub fn body(&self, tokens: Tensor<B, 2, Int>, rope: &Rope<B>) -> Tensor<B, 3> {
        self.body_with(tokens, rope, Kernels::burn())
    }

    /// [`Llama::body`] with the given kernels.
    pub fn body_with(&self, tokens: Tensor<B, 2, Int>, rope: &Rope<B>, kn: Kernels<B>) -> Tensor<B, 3> {
        let [b, l] = tokens.dims();
        let device = tokens.device();
        let positions: Vec<usize> = (0..b).flat_map(|_| 0..l).collect();
        let ropes = Ropes::new(rope, &positions, &self.config, &device, self.act_dtype());
        let mut x = self.embed(tokens); // [b, l, d]
        for layer in &self.layers {
            let (k, v) = layer.project_kv(x.clone(), &self.config, &ropes, kn); // [b, l, kvh, hd]
            x = layer.forward(x, &self.config, &ropes, kn, |q| fused::causal_attention(q, k, v));
        }
        x
    }
}

impl<B: InferBackend> Llama<B> {
    /// An empty cache for `batch` sequences of `capacity` positions (layout chosen by the
    /// backend).
    pub fn new_cache(&self, batch: usize, capacity: usize, device: &B::Device) -> Vec<LayerCache<B>> {
        let (h, d) = (self.config.num_kv_heads, self.config.head_dim);
        let dtype = self.act_dtype();
        (0..self.config.num_layers)
            .map(|_| LayerCache {
                k: like(B::kv_cache(Kv::Key, batch, h, capacity, d, device), dtype),
                v: like(B::kv_cache(Kv::Value, batch, h, capacity, d, device), dtype),
            })
            .collect()
    }

    /// Incremental forward with a key/value cache of several slots.
    ///
    /// Row `r` of `tokens: [rows, seq]` continues the sequence in cache slot `slots[r]` at
    /// positions `starts[r]..starts[r] + seq`: its keys and values are written there and it
    /// attends causally to that slot. Returns the final hidden states `[rows, seq, hidden]`
    /// (apply [`Llama::head`] to the rows that need logits) and the updated cache, taken by
    /// value so its buffers are updated in place.
    pub fn forward_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        slots: &[usize],
        starts: &[usize],
        rope: &Rope<B>,
        cache: Vec<LayerCache<B>>,
    ) -> (Tensor<B, 3>, Vec<LayerCache<B>>) {
        let [_, l] = tokens.dims();
        let device = tokens.device();
        let positions: Vec<usize> = starts.iter().flat_map(|&s| s..s + l).collect();
        let ropes = Ropes::new(rope, &positions, &self.config, &device, self.act_dtype());
        let mut x = self.embed(tokens);
        let mut out = Vec::with_capacity(cache.len());
        for (layer, lc) in self.layers.iter().zip(cache) {
            let (k, v) = layer.project_kv(x.clone(), &self.config, &ropes, Kernels::infer()); // [b, l, kvh, hd]
            let kc = B::cache_write(Kv::Key, lc.k, slots, starts, k);
            let vc = B::cache_write(Kv::Value, lc.v, slots, starts, v);
            x = layer.forward(x, &self.config, &ropes, Kernels::infer(), |q| {
                B::cached_attention(q, &kc, &vc, slots, starts)
            });
            out.push(LayerCache { k: kc, v: vc });
        }
        (x, out)
    }
}

/// RoPE tables for one forward call, for queries and for keys.
struct Ropes<'a, B: Backend> {
    rope: &'a Rope<B>,
    q: RopeAt<B>,
    k: RopeAt<B>,
}

impl<'a, B: Backend> Ropes<'a, B> {
    fn new(
        rope: &'a Rope<B>,
        positions: &[usize],
        c: &LlamaConfig,
        device: &B::Device,
        dtype: DType,
    ) -> Self {
        Self {
            rope,
            q: rope.at(positions, c.num_heads, device).cast(dtype),
            k: rope.at(positions, c.num_kv_heads, device).cast(dtype),
        }
    }
}

/// `t` in `dtype` (unchanged when it already is): caches and tables follow the weights' type
/// (bf16 on GPU).
pub fn like<B: Backend, const D: usize>(t: Tensor<B, D>, dtype: DType) -> Tensor<B, D> {
    assert!(
        t.dtype() == dtype || !matches!(t.dtype(), DType::QFloat(_)),
        "8-bit weights are stored in the q8 kernel's order and cannot be converted by burn"
    );
    if t.dtype() == dtype {
        t
    } else {
        t.cast(dtype)
    }
}

impl<B: Backend> Block<B> {
    /// Keys (rotated) and values for `x: [b, l, d]`, as `[b, l, kv_heads, head_dim]`.
    fn project_kv(
        &self,
        x: Tensor<B, 3>,
        c: &LlamaConfig,
        r: &Ropes<'_, B>,
        kn: Kernels<B>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [b, l, _] = x.dims();
        let mm = kn.mm;
        let h = kn.rms(x, &self.attn_norm, c.rms_norm_eps);
        let k = self.k.forward_with(h.clone(), mm).reshape([b, l, c.num_kv_heads, c.head_dim]);
        let k = match &self.k_norm {
            Some(w) => kn.rms(k, w, c.rms_norm_eps), // per head, over head_dim
            None => k,
        };
        let k = r.rope.apply(k, &r.k);
        let v = self.v.forward_with(h, mm).reshape([b, l, c.num_kv_heads, c.head_dim]);
        (k, v)
    }

    /// The block on `x: [b, l, d]`; `attend` maps rotated queries `[b, l, heads, head_dim]`
    /// to attention outputs of the same shape.
    fn forward(
        &self,
        x: Tensor<B, 3>,
        c: &LlamaConfig,
        r: &Ropes<'_, B>,
        kn: Kernels<B>,
        attend: impl FnOnce(Tensor<B, 4>) -> Tensor<B, 4>,
    ) -> Tensor<B, 3> {
        let [b, l, _] = x.dims();
        let mm = kn.mm;
        let h = kn.rms(x.clone(), &self.attn_norm, c.rms_norm_eps);
        let q = self.q.forward_with(h, mm).reshape([b, l, c.num_heads, c.head_dim]);
        let q = match &self.q_norm {
            Some(w) => kn.rms(q, w, c.rms_norm_eps), // per head, over head_dim
            None => q,
        };
        let q = r.rope.apply(q, &r.q); // [b, l, heads, hd]
        let a = attend(q).reshape([b, l, c.num_heads * c.head_dim]);
        let x = x + self.o.forward_with(a, mm);
        let h = kn.rms(x.clone(), &self.mlp_norm, c.rms_norm_eps);
        let m = fused::swiglu(self.gate.forward_with(h.clone(), mm), self.up.forward_with(h, mm)); // [b, l, ffn]
        x + self.down.forward_with(m, mm)
    }
}
