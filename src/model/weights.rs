//! Weights in the Hugging Face layout of Llama, Qwen2 and Qwen3: reading `model.safetensors`
//! (single or sharded), building a [`Llama`] from any [`WeightSource`], and writing project
//! checkpoints (`config.json` + `model.safetensors` + `tokenizer.json`) that transformers can
//! load.
//!
//! Tensor names and shapes are those of `LlamaForCausalLM.state_dict()` (the Qwen classes use
//! the same names, plus `self_attn.{q,k}_norm.weight` in Qwen3 and `.bias` of the projections
//! that have one); linear weights are `[out, in]` there and `[in, out]` in [`Llama`],
//! transposed at this boundary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::{Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use safetensors::{Dtype as StDtype, SafeTensors};

use super::config::{HfConfig, LlamaConfig};
use super::llama::{Block, Llama, Proj};
use super::tokenizer::Tokenizer;
use crate::error::{Error, Result};

/// A host tensor: row-major f32 values and a shape.
#[derive(Clone, Debug)]
pub struct HostTensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// Anything that can hand out tensors by Hugging Face name.
pub trait WeightSource {
    /// The file or folder the weights come from (for messages).
    fn origin(&self) -> &Path;
    /// The tensor called `name`, or `None` when absent.
    fn take(&mut self, name: &str) -> Result<Option<HostTensor>>;
}

/// Tensors already in memory, by Hugging Face name (e.g. from [`hf_tensors`]).
pub struct MapSource {
    map: HashMap<String, HostTensor>,
    origin: PathBuf,
}

impl MapSource {
    /// A source over `(name, tensor)` pairs.
    pub fn new(tensors: Vec<(String, HostTensor)>) -> Self {
        Self { map: tensors.into_iter().collect(), origin: PathBuf::from("(memory)") }
    }
}

impl WeightSource for MapSource {
    fn origin(&self) -> &Path {
        &self.origin
    }

    fn take(&mut self, name: &str) -> Result<Option<HostTensor>> {
        Ok(self.map.remove(name))
    }
}

/// Safetensors files of a Hugging Face folder, memory-mapped.
pub struct SafetensorsSource {
    dir: PathBuf,
    /// (file path, mapping) per shard.
    shards: Vec<(PathBuf, memmap2::Mmap)>,
    /// tensor name -> shard index.
    index: HashMap<String, usize>,
}

impl SafetensorsSource {
    /// Opens `model.safetensors`, or the shards listed in `model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index_file = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.is_file() {
            vec![single]
        } else if index_file.is_file() {
            let text = crate::error::read_to_string(&index_file)?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
                path: index_file.clone(),
                message: format!("invalid JSON: {e}"),
            })?;
            let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| Error::Checkpoint {
                path: index_file.clone(),
                message: "no \"weight_map\" object".into(),
            })?;
            let mut files: Vec<PathBuf> =
                map.values().filter_map(|f| f.as_str()).map(|f| dir.join(f)).collect();
            files.sort();
            files.dedup();
            files
        } else {
            return Err(Error::Checkpoint {
                path: dir.to_path_buf(),
                message: "no model.safetensors or model.safetensors.index.json".into(),
            });
        };
        let mut shards = Vec::new();
        let mut index = HashMap::new();
        for (i, f) in files.into_iter().enumerate() {
            let file = std::fs::File::open(&f).map_err(|e| Error::io(&f, e))?;
            // SAFETY: the mapping is read-only and the file is not modified while mapped.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(&f, e))?;
            let st = SafeTensors::deserialize(&map).map_err(|e| Error::Checkpoint {
                path: f.clone(),
                message: format!("not a safetensors file: {e}"),
            })?;
            for name in st.names() {
                index.insert(name.to_string(), i);
            }
            shards.push((f, map));
        }
        Ok(Self { dir: dir.to_path_buf(), shards, index })
    }
}

impl WeightSource for SafetensorsSource {
    fn origin(&self) -> &Path {
        &self.dir
    }

    fn take(&mut self, name: &str) -> Result<Option<HostTensor>> {
        let Some(&i) = self.index.get(name) else { return Ok(None) };
        let (path, map) = &self.shards[i];
        let st = SafeTensors::deserialize(map)
            .map_err(|e| Error::Checkpoint { path: path.clone(), message: e.to_string() })?;
        let view = st
            .tensor(name)
            .map_err(|e| Error::Checkpoint { path: path.clone(), message: format!("tensor {name}: {e}") })?;
        let bytes = view.data();
        let data: Vec<f32> = match view.dtype() {
            StDtype::F32 => {
                bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
            }
            StDtype::F16 => {
                bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            StDtype::BF16 => {
                bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            other => {
                return Err(Error::Checkpoint {
                    path: path.clone(),
                    message: format!("tensor {name} has dtype {other:?}; expected F32, F16 or BF16"),
                })
            }
        };
        Ok(Some(HostTensor { shape: view.shape().to_vec(), data }))
    }
}

fn need(src: &mut dyn WeightSource, name: &str, shape: &[usize]) -> Result<HostTensor> {
    let t = src.take(name)?.ok_or_else(|| Error::Checkpoint {
        path: src.origin().to_path_buf(),
        message: format!("missing tensor {name} (expected shape {shape:?})"),
    })?;
    if t.shape != shape {
        return Err(Error::Checkpoint {
            path: src.origin().to_path_buf(),
            message: format!("tensor {name} has shape {:?}, expected {shape:?}", t.shape),
        });
    }
    Ok(t)
}

/// `[rows, cols]` -> `[cols, rows]`.
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// Values a matrix is rounded to before it is stored (so the CPU's training copy, in f32, holds
/// the values its inference copy stands for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Values {
    /// As given.
    Exact,
    /// Nearest bf16.
    Bf16,
    /// 8-bit with a scale per 32 rows of a column ([`crate::model::kernels::q8::quantize`]).
    Q8,
}

/// How a model's parameters are stored: matrices (projections, output head), the embedding and
/// vectors (norms, biases) may differ, and activations follow the vectors' type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Storage {
    /// Projections and an untied output head.
    pub matrices: DType,
    /// The embedding (a gathered table, never 8-bit).
    pub embedding: DType,
    /// Norms and biases (and so the activations).
    pub vectors: DType,
    /// What values the matrices hold.
    pub values: Values,
}

/// The 8-bit storage type: symmetric 8-bit values with an f32 scale per block of 32 elements
/// ([`crate::model::kernels::q8::BLOCK`]; the blocks run along the rows of a column, and the
/// values are stored in the kernel's order, which only [`crate::model::kernels::q8`] reads).
pub fn q8_scheme() -> burn::tensor::quantization::QuantScheme {
    use burn::tensor::quantization::{
        QuantLevel, QuantMode, QuantParam, QuantScheme, QuantStore, QuantValue,
    };
    QuantScheme {
        value: QuantValue::Q8S,
        param: QuantParam::F32,
        store: QuantStore::Native,
        level: QuantLevel::block([crate::model::kernels::q8::BLOCK as u8]),
        mode: QuantMode::Symmetric,
    }
}

impl Storage {
    /// Every parameter in `dtype`, values as given.
    pub fn uniform(dtype: DType) -> Self {
        Self { matrices: dtype, embedding: dtype, vectors: dtype, values: Values::Exact }
    }

    /// How `dtype` is stored on backend `B`. f32: everything f32. bf16 on the CPU's inference
    /// backend (flex): bf16 matrices and embedding (half the bytes a decode step streams), f32
    /// norms, biases and activations. 8-bit on it: 8-bit matrices, bf16 embedding, the rest f32.
    /// On the CPU's training backend (autodiff flex): f32 everywhere, the matrices rounded to
    /// the values inference uses, so training starts from them. Any other backend (CUDA):
    /// everything in `dtype`.
    pub fn of<B: Backend>(dtype: DType) -> Self {
        use std::any::TypeId;
        let b = TypeId::of::<B>();
        let cpu_infer = b == TypeId::of::<burn::backend::Flex>();
        let cpu_train = b == TypeId::of::<burn::backend::Autodiff<burn::backend::Flex>>();
        let f32 = DType::F32;
        let rounded = |values| Self { values, ..Self::uniform(f32) };
        match dtype {
            DType::BF16 if cpu_infer => {
                Self { matrices: DType::BF16, embedding: DType::BF16, vectors: f32, values: Values::Bf16 }
            }
            DType::BF16 if cpu_train => rounded(Values::Bf16),
            DType::QFloat(s) if cpu_infer => {
                Self { matrices: DType::QFloat(s), embedding: DType::BF16, vectors: f32, values: Values::Q8 }
            }
            DType::QFloat(_) if cpu_train => rounded(Values::Q8),
            DType::BF16 => Self { values: Values::Bf16, ..Self::uniform(DType::BF16) },
            d => Self::uniform(d),
        }
    }
}

impl Storage {
    /// The values and storage type of a `[rows, cols]` matrix (`embedding`: the embedding
    /// table): a matrix whose shape is not whole 8-bit blocks ([`crate::model::kernels::q8::fits`])
    /// is kept in bf16.
    pub fn matrix(&self, shape: [usize; 2], embedding: bool) -> (Values, DType) {
        let q8_fits = crate::model::kernels::q8::fits(shape[0], shape[1]) && !embedding;
        let values = match self.values {
            Values::Q8 if !q8_fits => Values::Bf16,
            v => v,
        };
        let dtype = match self.matrices {
            _ if embedding => self.embedding,
            DType::QFloat(_) if !q8_fits => DType::BF16,
            d => d,
        };
        (values, dtype)
    }
}

/// `v` rounded to the nearest bf16 value (ties to even), as f32.
pub fn round_to_bf16(v: &mut [f32]) {
    for x in v {
        *x = half::bf16::from_f32(*x).to_f32();
    }
}

/// A `[rows, cols]` matrix of `data` stored as `s` says (`embedding`: the embedding table), on
/// `device`. A matrix whose shape is not whole 8-bit blocks is kept in bf16.
pub fn stored_matrix<B: Backend>(
    mut data: Vec<f32>,
    shape: [usize; 2],
    s: Storage,
    embedding: bool,
    device: &B::Device,
) -> Tensor<B, 2> {
    use crate::model::kernels::q8;
    let (values, dtype) = s.matrix(shape, embedding);
    match values {
        Values::Exact => {}
        Values::Bf16 => round_to_bf16(&mut data),
        Values::Q8 => {
            let (q, scales) = q8::quantize(&data, shape[0], shape[1]);
            if let DType::QFloat(scheme) = dtype {
                return q8_matrix::<B>(q8::storage(&q, &scales), shape, scheme);
            }
            data = q8::dequantize(&q, &scales, shape[0], shape[1]);
        }
    }
    let t = Tensor::<B, 2>::from_data(TensorData::new(data, shape), device);
    if dtype == DType::F32 {
        t
    } else {
        t.cast(dtype)
    }
}

/// An 8-bit matrix on the CPU's inference backend: burn-flex's quantized tensor holding one
/// [`crate::model::kernels::q8::storage`] buffer (values, then scales; the tensor's own scale
/// list is a placeholder, see the q8 module docs). Only that backend stores 8-bit matrices
/// ([`Storage::of`]).
fn q8_matrix<B: Backend>(
    buf: Vec<f32>,
    shape: [usize; 2],
    scheme: burn::tensor::quantization::QuantScheme,
) -> Tensor<B, 2> {
    use burn::tensor::TensorPrimitive;
    use burn_flex::{Flex, FlexQTensor, FlexTensor, Layout};
    let values = FlexTensor::new(
        burn::tensor::Bytes::from_elems(buf),
        Layout::contiguous(burn::tensor::Shape::from(shape.to_vec())),
        DType::I8,
    );
    let t = Tensor::<Flex, 2>::from_primitive(TensorPrimitive::QFloat(FlexQTensor::new(
        values,
        scheme,
        vec![1.0],
    )));
    let any: Box<dyn std::any::Any> = Box::new(t);
    *any.downcast::<Tensor<B, 2>>()
        .unwrap_or_else(|_| panic!("8-bit matrices are stored on the CPU's inference backend only"))
}

/// Builds parameters with ids 1, 2, ... in a fixed order (as [`Llama::init`] does).
struct Builder<'a, B: Backend> {
    next: u64,
    device: &'a B::Device,
    storage: Storage,
}

impl<B: Backend> Builder<'_, B> {
    /// A vector (norm, bias) parameter.
    fn vector(&mut self, data: Vec<f32>, shape: [usize; 1]) -> Param<Tensor<B, 1>> {
        self.next += 1;
        let t = Tensor::<B, 1>::from_data(TensorData::new(data, shape), self.device);
        let t = if self.storage.vectors == DType::F32 { t } else { t.cast(self.storage.vectors) };
        Param::initialized(ParamId::from(self.next), t.require_grad())
    }

    /// A matrix parameter (`embedding`: the embedding table).
    fn matrix(&mut self, data: Vec<f32>, shape: [usize; 2], embedding: bool) -> Param<Tensor<B, 2>> {
        let t = stored_matrix::<B>(data, shape, self.storage, embedding, self.device);
        self.tensor(t)
    }

    /// The next parameter, holding `t`.
    fn tensor<const D: usize>(&mut self, t: Tensor<B, D>) -> Param<Tensor<B, D>> {
        self.next += 1;
        Param::initialized(ParamId::from(self.next), t.require_grad())
    }

    fn proj(
        &mut self,
        src: &mut dyn WeightSource,
        name: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Proj<B>> {
        let w = need(src, &format!("{name}.weight"), &[d_out, d_in])?;
        let weight = self.matrix(transpose(&w.data, d_out, d_in), [d_in, d_out], false);
        let bias = if bias {
            let b = need(src, &format!("{name}.bias"), &[d_out])?;
            Some(self.vector(b.data, [d_out]))
        } else {
            None
        };
        Ok(Proj { weight, bias, lora: None })
    }
}

/// Builds a [`Llama`] from Hugging Face-named tensors.
pub fn build_llama<B: Backend>(
    cfg: &LlamaConfig,
    src: &mut dyn WeightSource,
    device: &B::Device,
    dtype: DType,
) -> Result<Llama<B>> {
    let mut b = Builder::<B> { next: 0, device, storage: Storage::of::<B>(dtype) };
    let (d, v) = (cfg.hidden_size, cfg.vocab_size);
    let q = cfg.num_heads * cfg.head_dim;
    let kv = cfg.num_kv_heads * cfg.head_dim;
    let f = cfg.intermediate_size;
    let embed = need(src, "model.embed_tokens.weight", &[v, d])?;
    let embed = b.matrix(embed.data, [v, d], true);
    let mut layers = Vec::with_capacity(cfg.num_layers);
    for i in 0..cfg.num_layers {
        let p = format!("model.layers.{i}");
        let attn_norm = need(src, &format!("{p}.input_layernorm.weight"), &[d])?;
        let attn_norm = b.vector(attn_norm.data, [d]);
        let qp = b.proj(src, &format!("{p}.self_attn.q_proj"), d, q, cfg.qkv_bias)?;
        let kp = b.proj(src, &format!("{p}.self_attn.k_proj"), d, kv, cfg.qkv_bias)?;
        let vp = b.proj(src, &format!("{p}.self_attn.v_proj"), d, kv, cfg.qkv_bias)?;
        let op = b.proj(src, &format!("{p}.self_attn.o_proj"), q, d, cfg.o_bias)?;
        let hd = cfg.head_dim;
        let mut head_norm = |name: &str| -> Result<_> {
            let w = need(src, &format!("{p}.self_attn.{name}.weight"), &[hd])?;
            Ok(b.vector(w.data, [hd]))
        };
        let (q_norm, k_norm) =
            if cfg.qk_norm { (Some(head_norm("q_norm")?), Some(head_norm("k_norm")?)) } else { (None, None) };
        let mlp_norm = need(src, &format!("{p}.post_attention_layernorm.weight"), &[d])?;
        let mlp_norm = b.vector(mlp_norm.data, [d]);
        let gate = b.proj(src, &format!("{p}.mlp.gate_proj"), d, f, cfg.mlp_bias)?;
        let up = b.proj(src, &format!("{p}.mlp.up_proj"), d, f, cfg.mlp_bias)?;
        let down = b.proj(src, &format!("{p}.mlp.down_proj"), f, d, cfg.mlp_bias)?;
        layers.push(Block {
            attn_norm,
            q: qp,
            k: kp,
            v: vp,
            o: op,
            q_norm,
            k_norm,
            mlp_norm,
            gate,
            up,
            down,
        });
    }
    let norm = need(src, "model.norm.weight", &[d])?;
    let norm = b.vector(norm.data, [d]);
    let lm_head = if cfg.tie_word_embeddings {
        None
    } else {
        let h = need(src, "lm_head.weight", &[v, d])?;
        Some(b.matrix(transpose(&h.data, v, d), [d, v], false))
    };
    Ok(Llama { embed, layers, norm, lm_head, config: cfg.clone() })
}

/// Random weights for benchmarks at large shapes (an 8B model draws 8e9 values) of a Llama
/// model of `cfg`'s sizes (no biases, no q/k norm; the returned config says so): the
/// distribution of [`Llama::init`] (normal, std 0.02, output projections scaled by
/// `1/sqrt(2 layers)`, unit norms), but each chunk of 2^20 values of parameter `p` comes from
/// its own stream `(seed, "init-chunked", [p, chunk])`, drawn in parallel, and every parameter
/// is stored as `dtype` says as it is drawn, so host memory holds one parameter at a time (a
/// matrix stored in bf16 is drawn straight into bf16: an 8B model's 1 GB embedding never exists
/// in f32). [`Llama::init`] stays the tiny model's initialisation (its single stream fixes its
/// results).
pub fn random_llama<B: Backend>(cfg: &LlamaConfig, seed: u64, device: &B::Device, dtype: DType) -> Llama<B> {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 20;
    let mut b = Builder::<B> { next: 0, device, storage: Storage::of::<B>(dtype) };
    // Chunk c of the next parameter's values, each converted by `put`, written into `out`.
    fn draw<T: Send>(out: &mut [T], seed: u64, p: u64, std: f64, put: impl Fn(f32) -> T + Sync) {
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, dst)| {
            let mut s = crate::rng::Stream::new(seed, "init-chunked", &[p, c as u64]);
            let values = super::llama::normal(&mut s, dst.len(), std);
            for (d, x) in dst.iter_mut().zip(values) {
                *d = put(x);
            }
        });
    }
    let matrix = |b: &mut Builder<B>, shape: [usize; 2], std: f64, embedding: bool| -> Param<Tensor<B, 2>> {
        let (n, p) = (shape[0] * shape[1], b.next + 1); // p: the id this parameter will get
        if b.storage.matrix(shape, embedding) == (Values::Bf16, DType::BF16) {
            let mut w = vec![half::bf16::ZERO; n];
            draw(&mut w, seed, p, std, half::bf16::from_f32);
            b.tensor(Tensor::from_data(TensorData::new(w, shape), (b.device, DType::BF16)))
        } else {
            let mut w = vec![0f32; n];
            draw(&mut w, seed, p, std, |x| x);
            b.matrix(w, shape, embedding)
        }
    };
    let (d, v, f) = (cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size);
    let q = cfg.num_heads * cfg.head_dim;
    let kv = cfg.num_kv_heads * cfg.head_dim;
    let std = 0.02;
    let out_std = std / ((2 * cfg.num_layers) as f64).sqrt();
    let proj = |b: &mut Builder<B>, i: usize, o: usize, std: f64| Proj {
        weight: matrix(b, [i, o], std, false),
        bias: None,
        lora: None,
    };
    let embed = matrix(&mut b, [v, d], std, true);
    let mut layers = Vec::with_capacity(cfg.num_layers);
    for _ in 0..cfg.num_layers {
        let attn_norm = b.vector(vec![1.0; d], [d]);
        let (qp, kp, vp) = (proj(&mut b, d, q, std), proj(&mut b, d, kv, std), proj(&mut b, d, kv, std));
        let op = proj(&mut b, q, d, out_std);
        let mlp_norm = b.vector(vec![1.0; d], [d]);
        let gate = proj(&mut b, d, f, std);
        let up = proj(&mut b, d, f, std);
        let down = proj(&mut b, f, d, out_std);
        layers.push(Block {
            attn_norm,
            q: qp,
            k: kp,
            v: vp,
            o: op,
            q_norm: None,
            k_norm: None,
            mlp_norm,
            gate,
            up,
            down,
        });
    }
    let norm = b.vector(vec![1.0; d], [d]);
    let lm_head = (!cfg.tie_word_embeddings).then(|| matrix(&mut b, [d, v], std, false));
    let mut cfg = cfg.clone();
    cfg.family = super::config::Family::Llama;
    (cfg.qkv_bias, cfg.o_bias, cfg.mlp_bias, cfg.qk_norm) = (false, false, false, false);
    Llama { embed, layers, norm, lm_head, config: cfg }
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>> {
    if let DType::QFloat(_) = t.dtype() {
        return Err(Error::Other(
            "8-bit weights (stored in the q8 kernel's order) cannot be read back; export the f32 training copy".into(),
        ));
    }
    let data = t.cast(DType::F32).into_data();
    data.to_vec::<f32>().map_err(|e| Error::Other(format!("cannot read tensor back: {e:?}")))
}

/// The model's tensors under Hugging Face names, `[out, in]` for linear weights. LoRA
/// adapters are merged into their base weights (`W + A B * scale`).
pub fn hf_tensors<B: Backend>(model: &Llama<B>) -> Result<Vec<(String, HostTensor)>> {
    let mut out = Vec::new();
    let cfg = &model.config;
    let mut push =
        |name: String, shape: Vec<usize>, data: Vec<f32>| out.push((name, HostTensor { shape, data }));
    let embed = model.embed.val();
    let [v, d] = embed.dims();
    push("model.embed_tokens.weight".into(), vec![v, d], host(embed)?);
    for (i, l) in model.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        push(format!("{p}.input_layernorm.weight"), vec![d], host(l.attn_norm.val())?);
        push(format!("{p}.post_attention_layernorm.weight"), vec![d], host(l.mlp_norm.val())?);
        for (name, norm) in [("q_norm", &l.q_norm), ("k_norm", &l.k_norm)] {
            if let Some(w) = norm {
                let hd = w.val().dims()[0];
                push(format!("{p}.self_attn.{name}.weight"), vec![hd], host(w.val())?);
            }
        }
        for (name, proj) in [
            ("self_attn.q_proj", &l.q),
            ("self_attn.k_proj", &l.k),
            ("self_attn.v_proj", &l.v),
            ("self_attn.o_proj", &l.o),
            ("mlp.gate_proj", &l.gate),
            ("mlp.up_proj", &l.up),
            ("mlp.down_proj", &l.down),
        ] {
            let [d_in, d_out] = proj.dims();
            let mut w = proj.weight.val();
            if let Some(lora) = &proj.lora {
                w = w + lora.a.val().matmul(lora.b.val()).mul_scalar(lora.scale);
            }
            push(format!("{p}.{name}.weight"), vec![d_out, d_in], transpose(&host(w)?, d_in, d_out));
            if let Some(b) = &proj.bias {
                push(format!("{p}.{name}.bias"), vec![d_out], host(b.val())?);
            }
        }
    }
    push("model.norm.weight".into(), vec![d], host(model.norm.val())?);
    if let Some(h) = &model.lm_head {
        push("lm_head.weight".into(), vec![cfg.vocab_size, d], transpose(&host(h.val())?, d, cfg.vocab_size));
    }
    Ok(out)
}

/// Writes a checkpoint folder: `config.json`, `model.safetensors` (f32), `tokenizer.json`.
/// Files are written to temporary names and renamed, so a killed write leaves no partial file.
pub fn save_checkpoint<B: Backend>(model: &Llama<B>, tokenizer: &Tokenizer, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tensors = hf_tensors(model)?;
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .into_iter()
        .map(|(n, t)| (n, t.data.iter().flat_map(|x| x.to_le_bytes()).collect(), t.shape))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, b, s)| Ok((n.clone(), safetensors::tensor::TensorView::new(StDtype::F32, s.clone(), b)?)))
        .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| Error::Checkpoint { path: dir.to_path_buf(), message: e.to_string() })?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let blob = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::Checkpoint { path: dir.to_path_buf(), message: e.to_string() })?;
    crate::util::write_atomic(&dir.join("model.safetensors"), &blob)?;
    let hf = HfConfig::from_config(&model.config, tokenizer.bos, &tokenizer.eos);
    let json = serde_json::to_string_pretty(&hf).expect("config serializes");
    crate::util::write_atomic(&dir.join("config.json"), json.as_bytes())?;
    let tmp = dir.join("tokenizer.json.tmp");
    tokenizer.save(&tmp)?;
    std::fs::rename(&tmp, dir.join("tokenizer.json"))
        .map_err(|e| Error::io(dir.join("tokenizer.json"), e))?;
    Ok(())
}

/// Loads the weights of a Hugging Face folder (`config.json` + safetensors).
pub fn load_hf_model<B: Backend>(
    dir: &Path,
    device: &B::Device,
    dtype: DType,
) -> Result<(Llama<B>, HfConfig)> {
    let (cfg, hf) = HfConfig::load(&dir.join("config.json"))?;
    let mut src = SafetensorsSource::open(dir)?;
    Ok((build_llama::<B>(&cfg, &mut src, device, dtype)?, hf))
}

/// Loads a checkpoint folder (Hugging Face layout) with its tokenizer.
pub fn load_hf_dir<B: Backend>(
    dir: &Path,
    device: &B::Device,
    dtype: DType,
) -> Result<(Llama<B>, Tokenizer)> {
    let (model, hf) = load_hf_model::<B>(dir, device, dtype)?;
    let ids = |v: &Option<serde_json::Value>| -> Vec<u32> {
        match v {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
            Some(serde_json::Value::Array(a)) => {
                a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect()
            }
            _ => vec![],
        }
    };
    let tok_path = dir.join("tokenizer.json");
    if !tok_path.is_file() {
        return Err(Error::Checkpoint { path: tok_path, message: "missing tokenizer.json".into() });
    }
    let tokenizer =
        Tokenizer::from_file(&tok_path, ids(&hf.bos_token_id).first().copied(), ids(&hf.eos_token_id))?;
    Ok((model, tokenizer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn values<const D: usize>(t: Tensor<Flex, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
    }

    #[test]
    fn chunked_random_weights_are_seeded_and_scaled() {
        let cfg = LlamaConfig::small(2500, 64); // embedding 2500 x 512: one full 2^20 chunk + a part
        let dev = Default::default();
        let a = random_llama::<Flex>(&cfg, 7, &dev, DType::F32);
        let b = random_llama::<Flex>(&cfg, 7, &dev, DType::F32);
        let c = random_llama::<Flex>(&cfg, 8, &dev, DType::F32);
        let (ea, eb, ec) = (values(a.embed.val()), values(b.embed.val()), values(c.embed.val()));
        assert_eq!(ea, eb, "same seed, same weights");
        assert_ne!(ea, ec, "another seed, other weights");
        // Chunks past the first are not copies of it.
        assert_ne!(ea[..1000], ea[1 << 20..(1 << 20) + 1000]);
        let std = |v: &[f32]| (v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        assert!((std(&ea) - 0.02).abs() < 0.0005, "embedding std {}", std(&ea));
        let down = values(a.layers[0].down.weight.val());
        let want = 0.02 / (8f64).sqrt();
        assert!((std(&down) - want).abs() < 0.02 * want, "down std {} vs {want}", std(&down));
        assert!(values(a.layers[1].mlp_norm.val()).iter().all(|&x| x == 1.0));
        // Parameter ids follow the checkpoint builder's order (embedding first).
        assert_eq!(a.embed.id, ParamId::from(1));
        assert_eq!(a.config.num_params(), cfg.num_params());
    }

    #[test]
    fn chunked_random_weights_in_bf16_are_drawn_in_bf16() {
        // Drawn straight into bf16 (an 8B model's f32 copy would not fit in memory): stored as
        // bf16, and the f32 draw's values rounded to nearest.
        let cfg = LlamaConfig::small(2500, 64);
        let dev = Default::default();
        let f = random_llama::<Flex>(&cfg, 7, &dev, DType::F32);
        let h = random_llama::<Flex>(&cfg, 7, &dev, DType::BF16);
        for (a, b) in
            [(f.embed.val(), h.embed.val()), (f.layers[1].up.weight.val(), h.layers[1].up.weight.val())]
        {
            assert_eq!(b.dtype(), DType::BF16);
            let mut want = values(a);
            round_to_bf16(&mut want);
            assert_eq!(values(b), want);
        }
        assert_eq!(h.layers[0].attn_norm.val().dtype(), DType::F32);
    }

    #[test]
    fn an_untied_head_copy_keeps_the_embedding_values_and_type() {
        // The inference engine's row-major head: bf16 stays bf16 (half the bytes a decode step
        // streams), and holds the embedding's values transposed.
        let cfg = LlamaConfig { tie_word_embeddings: true, ..LlamaConfig::tiny(300, 32) };
        let dev = Default::default();
        for dtype in [DType::F32, DType::BF16] {
            let m = random_llama::<Flex>(&cfg, 3, &dev, dtype).untie_head();
            let head = m.lm_head.as_ref().expect("untied").val();
            assert_eq!(head.dtype(), dtype);
            let (e, h) = (values(m.embed.val()), values(head));
            let d = cfg.hidden_size;
            for (v, row) in e.chunks(d).enumerate().step_by(37) {
                for (i, &x) in row.iter().enumerate() {
                    assert_eq!(h[i * cfg.vocab_size + v], x, "token {v} dim {i}");
                }
            }
        }
    }
}
