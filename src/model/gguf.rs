//! GGUF (llama.cpp's file format, version 2 and 3) for Llama, Qwen2 and Qwen3 models: metadata,
//! tensors dequantised to f32 (the types of [`super::quants`]: F32, F16, BF16, Q4_0, Q4_1, Q5_0,
//! Q5_1, Q8_0 and the k-quants Q2_K..Q8_K), the tokenizer rebuilt from the embedded vocabulary
//! and merges, and the architecture from the `<general.architecture>.*` keys (`llama.*`,
//! `qwen2.*`, `qwen3.*`).
//!
//! llama.cpp's converter permutes the rows of `attn_q` / `attn_k` of `llama` files for its
//! interleaved RoPE; [`GgufSource`] undoes that so tensors come out in the Hugging Face layout.
//! `qwen2` and `qwen3` files are not permuted: llama.cpp rotates them with its NEOX RoPE (the
//! Hugging Face "rotate half" layout), and its converter writes their q/k rows as they are.
//! Format reference: ggml's `docs/gguf.md` (header, typed key/values, tensor infos, aligned data).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::config::{Family, LlamaConfig};
use super::quants;
use super::tokenizer::Tokenizer;
use super::weights::{HostTensor, WeightSource};
use crate::error::{Error, Result};

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Any unsigned integer type.
    U(u64),
    /// Any signed integer type.
    I(i64),
    /// f32 or f64.
    F(f64),
    /// bool.
    Bool(bool),
    /// UTF-8 string.
    Str(String),
    /// Array of values.
    Array(Vec<Value>),
}

impl Value {
    fn as_u64(&self) -> Option<u64> {
        match self {
            Value::U(u) => Some(*u),
            Value::I(i) if *i >= 0 => Some(*i as u64),
            _ => None,
        }
    }
    fn as_f64(&self) -> Option<f64> {
        match self {
            Value::F(f) => Some(*f),
            Value::U(u) => Some(*u as f64),
            Value::I(i) => Some(*i as f64),
            _ => None,
        }
    }
}

struct TensorInfo {
    dims: Vec<usize>,
    kind: u32,
    offset: usize,
}

/// A parsed GGUF file (memory-mapped).
pub struct Gguf {
    path: PathBuf,
    map: memmap2::Mmap,
    /// Metadata key/values.
    pub meta: HashMap<String, Value>,
    tensors: HashMap<String, TensorInfo>,
    data_start: usize,
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
    path: &'a Path,
}

impl Reader<'_> {
    fn bad(&self, what: &str) -> Error {
        Error::Checkpoint {
            path: self.path.to_path_buf(),
            message: format!("malformed GGUF at byte {}: {what}", self.i),
        }
    }
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.i + n > self.b.len() {
            return Err(self.bad("unexpected end of file"));
        }
        let s = &self.b[self.i..self.i + n];
        self.i += n;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u64()? as usize;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| self.bad("string is not UTF-8"))
    }
    fn value(&mut self, kind: u32) -> Result<Value> {
        Ok(match kind {
            0 => Value::U(self.take(1)?[0] as u64),
            1 => Value::I(self.take(1)?[0] as i8 as i64),
            2 => Value::U(u16::from_le_bytes(self.take(2)?.try_into().expect("2")) as u64),
            3 => Value::I(i16::from_le_bytes(self.take(2)?.try_into().expect("2")) as i64),
            4 => Value::U(self.u32()? as u64),
            5 => Value::I(self.u32()? as i32 as i64),
            6 => Value::F(f32::from_le_bytes(self.take(4)?.try_into().expect("4")) as f64),
            7 => Value::Bool(self.take(1)?[0] != 0),
            8 => Value::Str(self.string()?),
            9 => {
                let inner = self.u32()?;
                let n = self.u64()? as usize;
                let mut v = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    v.push(self.value(inner)?);
                }
                Value::Array(v)
            }
            10 => Value::U(self.u64()?),
            11 => Value::I(self.u64()? as i64),
            12 => Value::F(f64::from_le_bytes(self.take(8)?.try_into().expect("8"))),
            other => return Err(self.bad(&format!("unknown value type {other}"))),
        })
    }
}

impl Gguf {
    /// Opens and parses the header of a GGUF file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: read-only mapping of a file not modified while mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let mut r = Reader { b: &map, i: 0, path };
        if r.take(4)? != b"GGUF" {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                message: "not a GGUF file (bad magic)".into(),
            });
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!("GGUF version {version}; expected 2 or 3"),
            });
        }
        let n_tensors = r.u64()? as usize;
        let n_kv = r.u64()? as usize;
        let mut meta = HashMap::new();
        for _ in 0..n_kv {
            let k = r.string()?;
            let kind = r.u32()?;
            meta.insert(k, r.value(kind)?);
        }
        let mut tensors = HashMap::new();
        for _ in 0..n_tensors {
            let name = r.string()?;
            let nd = r.u32()? as usize;
            let dims = (0..nd).map(|_| r.u64().map(|d| d as usize)).collect::<Result<Vec<_>>>()?;
            let kind = r.u32()?;
            let offset = r.u64()? as usize;
            tensors.insert(name, TensorInfo { dims, kind, offset });
        }
        let align = meta.get("general.alignment").and_then(Value::as_u64).unwrap_or(32) as usize;
        let data_start = r.i.div_ceil(align) * align;
        let _ = r;
        Ok(Self { path: path.to_path_buf(), map, meta, tensors, data_start })
    }

    fn u(&self, key: &str) -> Result<usize> {
        self.meta.get(key).and_then(Value::as_u64).map(|v| v as usize).ok_or_else(|| Error::Checkpoint {
            path: self.path.clone(),
            message: format!("missing integer metadata {key}"),
        })
    }

    /// The family named by `general.architecture`.
    pub fn family(&self) -> Result<Family> {
        let arch = match self.meta.get("general.architecture") {
            Some(Value::Str(s)) => s.clone(),
            _ => String::new(),
        };
        Family::ALL.into_iter().find(|f| f.model_type() == arch).ok_or_else(|| {
            let known: Vec<&str> = Family::ALL.iter().map(|f| f.model_type()).collect();
            Error::Checkpoint {
                path: self.path.clone(),
                message: format!("general.architecture = {arch:?}; expected one of {known:?}"),
            }
        })
    }

    /// The architecture from the `<arch>.*` metadata (`llama.*`, `qwen2.*`, `qwen3.*`).
    pub fn config(&self, context: usize) -> Result<LlamaConfig> {
        let family = self.family()?;
        let arch = family.model_type();
        let key = |k: &str| format!("{arch}.{k}");
        let hidden = self.u(&key("embedding_length"))?;
        let heads = self.u(&key("attention.head_count"))?;
        let vocab = match self.meta.get("tokenizer.ggml.tokens") {
            Some(Value::Array(t)) => t.len(),
            _ => self.u(&key("vocab_size"))?,
        };
        // Head width: `attention.key_length` (written when config.json gives head_dim, as
        // Qwen3's does), else the RoPE width, else hidden / heads.
        let head_dim = self
            .u(&key("attention.key_length"))
            .or_else(|_| self.u(&key("rope.dimension_count")))
            .unwrap_or(hidden / heads.max(1));
        let has = |t: &str| self.tensors.contains_key(t);
        // llama: biases wherever the file has them (q's bias stands for q, k, v and o, as
        // `attention_bias` does); qwen2: q, k, v always, o never; qwen3: q/k norms always.
        let (qkv_bias, o_bias, qk_norm) = match family {
            Family::Llama => (has("blk.0.attn_q.bias"), has("blk.0.attn_q.bias"), false),
            Family::Qwen2 => (true, false, false),
            Family::Qwen3 => (has("blk.0.attn_q.bias"), has("blk.0.attn_q.bias"), true),
        };
        let cfg = LlamaConfig {
            family,
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: self.u(&key("feed_forward_length"))?,
            num_layers: self.u(&key("block_count"))?,
            num_heads: heads,
            num_kv_heads: self.u(&key("attention.head_count_kv")).unwrap_or(heads),
            head_dim,
            rms_norm_eps: self
                .meta
                .get(&key("attention.layer_norm_rms_epsilon"))
                .and_then(Value::as_f64)
                .unwrap_or(1e-5),
            rope_theta: self.meta.get(&key("rope.freq_base")).and_then(Value::as_f64).unwrap_or(10_000.0),
            rope_scaling: None,
            max_position_embeddings: self.u(&key("context_length")).unwrap_or(context),
            tie_word_embeddings: !has("output.weight"),
            qkv_bias,
            o_bias,
            mlp_bias: false,
            qk_norm,
        };
        cfg.validate(&self.path)?;
        Ok(cfg)
    }

    /// The tokenizer described by `tokenizer.ggml.*` (byte-level BPE, `gpt2` model).
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
        use tokenizers::models::bpe::BPE;
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        use tokenizers::pre_tokenizers::digits::Digits;
        use tokenizers::pre_tokenizers::sequence::Sequence;
        use tokenizers::pre_tokenizers::PreTokenizerWrapper;
        let bad = |m: String| Error::Checkpoint { path: self.path.clone(), message: m };
        match self.meta.get("tokenizer.ggml.model") {
            Some(Value::Str(m)) if m == "gpt2" => {}
            other => {
                return Err(bad(format!(
                    "tokenizer.ggml.model = {other:?}; only \"gpt2\" (byte-level BPE) is supported"
                )))
            }
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            match self.meta.get(key) {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| match v {
                        Value::Str(s) => Ok(s.clone()),
                        _ => Err(bad(format!("{key} holds a non-string"))),
                    })
                    .collect(),
                _ => Err(bad(format!("missing {key}"))),
            }
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = strings("tokenizer.ggml.merges")?
            .into_iter()
            .filter_map(|m| m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
            .collect();
        let types: Vec<u64> = match self.meta.get("tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
            _ => vec![1; tokens.len()],
        };
        let vocab: tokenizers::models::bpe::Vocab =
            tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| bad(format!("cannot build BPE: {e}")))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let pre_name = match self.meta.get("tokenizer.ggml.pre") {
            Some(Value::Str(p)) => p.as_str(),
            _ => "",
        };
        let byte_level = PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true));
        let pre = match pre_name {
            // Digits one by one, then GPT-2's byte-level split.
            "smollm" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                byte_level,
            ])),
            // Qwen2's tokenizer.json (llama.cpp's LLAMA_VOCAB_PRE_TYPE_QWEN2): one split regex
            // (single digits, letter runs with one leading non-letter, ...), then the byte
            // mapping alone; text is NFC-normalised first.
            "qwen2" => {
                use tokenizers::normalizers::unicode::NFC;
                use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
                let split = Split::new(
                    SplitPattern::Regex(QWEN2_SPLIT.into()),
                    tokenizers::SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| bad(format!("cannot build the qwen2 pre-tokenizer: {e}")))?;
                inner.with_normalizer(Some(NFC)).map_err(|e| bad(format!("cannot set NFC: {e}")))?;
                PreTokenizerWrapper::Sequence(Sequence::new(vec![
                    PreTokenizerWrapper::Split(split),
                    PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)),
                ]))
            }
            // GPT-2's byte-level split (also right for plain "gpt2" vocabularies).
            _ => byte_level,
        };
        inner.with_pre_tokenizer(Some(pre));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        // Control (3) and user-defined (4) tokens are matched whole in the text.
        let added = |kind: u64| -> Vec<tokenizers::AddedToken> {
            tokens
                .iter()
                .zip(&types)
                .filter(|(_, t)| **t == kind)
                .map(|(s, _)| tokenizers::AddedToken::from(s.clone(), kind == 3))
                .collect()
        };
        inner.add_special_tokens(added(3)).map_err(|e| bad(format!("cannot add special tokens: {e}")))?;
        inner.add_tokens(added(4)).map_err(|e| bad(format!("cannot add user tokens: {e}")))?;
        let id = |k: &str| self.meta.get(k).and_then(Value::as_u64).map(|v| v as u32);
        let eos = id("tokenizer.ggml.eos_token_id").into_iter().collect();
        Ok(Tokenizer::with_specials(inner, id("tokenizer.ggml.bos_token_id"), eos))
    }

    /// Dequantised values of tensor `name` with its ggml dims (`dims[0]` fastest).
    pub fn tensor_f32(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        let Some(t) = self.tensors.get(name) else { return Ok(None) };
        let n: usize = t.dims.iter().product();
        let start = self.data_start + t.offset;
        let bad =
            |m: String| Error::Checkpoint { path: self.path.clone(), message: format!("tensor {name}: {m}") };
        let Some(format) = quants::format(t.kind) else {
            return Err(bad(format!(
                "ggml type {} is not supported; supported: {}",
                t.kind,
                quants::supported()
            )));
        };
        let Some(len) = format.bytes_for(n) else {
            return Err(bad(format!(
                "{n} values of {} are not whole blocks of {}",
                format.name, format.values_per_block
            )));
        };
        let raw = start.checked_add(len).and_then(|end| self.map.get(start..end)).ok_or_else(|| {
            bad(format!("{} data ({len} bytes) runs past the end of the file", format.name))
        })?;
        let mut out = Vec::with_capacity(n);
        format.dequantize(raw, &mut out);
        Ok(Some((t.dims.clone(), out)))
    }
}

/// The split pattern of Qwen2's `tokenizer.json` (also Qwen2.5's and Qwen3's).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Undoes llama.cpp's q/k row permutation: GGUF row `h * hd + 2 i + j` holds Hugging Face row
/// `h * hd + j * hd / 2 + i`.
pub fn unpermute_rows(data: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let hd = rows / heads;
    let mut out = vec![0f32; data.len()];
    for h in 0..heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let src = h * hd + 2 * i + j;
                let dst = h * hd + j * (hd / 2) + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// A [`WeightSource`] over a GGUF file, answering Hugging Face names.
pub struct GgufSource<'a> {
    gguf: &'a Gguf,
    cfg: LlamaConfig,
}

impl<'a> GgufSource<'a> {
    /// Source for `gguf` with architecture `cfg`.
    pub fn new(gguf: &'a Gguf, cfg: LlamaConfig) -> Self {
        Self { gguf, cfg }
    }
}

fn gguf_name(hf: &str) -> Option<String> {
    if hf == "model.embed_tokens.weight" {
        return Some("token_embd.weight".into());
    }
    if hf == "model.norm.weight" {
        return Some("output_norm.weight".into());
    }
    if hf == "lm_head.weight" {
        return Some("output.weight".into());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, kind) = rest.rsplit_once('.')?;
    let short = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{short}.{kind}"))
}

impl WeightSource for GgufSource<'_> {
    fn origin(&self) -> &Path {
        &self.gguf.path
    }

    fn take(&mut self, name: &str) -> Result<Option<HostTensor>> {
        let Some(gname) = gguf_name(name) else { return Ok(None) };
        let Some((dims, data)) = self.gguf.tensor_f32(&gname)? else { return Ok(None) };
        // ggml dims are fastest-first; row-major shape is the reverse.
        let shape: Vec<usize> = dims.iter().rev().copied().collect();
        let permuted = self.cfg.family == Family::Llama;
        let data = if !permuted {
            data
        } else if gname.ends_with("attn_q.weight") {
            unpermute_rows(&data, shape[0], shape[1], self.cfg.num_heads)
        } else if gname.ends_with("attn_k.weight") {
            unpermute_rows(&data, shape[0], shape[1], self.cfg.num_kv_heads)
        } else {
            data
        };
        Ok(Some(HostTensor { shape, data }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(heads, 2, hd/2, cols).swapaxes(1, 2).reshape(rows, cols)
        let (heads, hd, cols) = (2, 4, 1);
        let hf: Vec<f32> = (0..(heads * hd * cols)).map(|x| x as f32).collect();
        let mut gguf = vec![0f32; hf.len()];
        for h in 0..heads {
            for j in 0..2 {
                for i in 0..hd / 2 {
                    // source index (h, j, i) -> destination (h, i, j)
                    gguf[h * hd + i * 2 + j] = hf[h * hd + j * (hd / 2) + i];
                }
            }
        }
        assert_eq!(unpermute_rows(&gguf, heads * hd, cols, heads), hf);
    }

    /// A GGUF v3 file with no metadata and the given (name, dims, ggml type) tensors, each
    /// followed by `data_len` bytes of data (every tensor's data starts at offset 0).
    fn tiny_gguf(tensors: &[(&str, &[u64], u32)], data_len: usize) -> tempfile::NamedTempFile {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend((tensors.len() as u64).to_le_bytes());
        b.extend(0u64.to_le_bytes());
        for (name, dims, kind) in tensors {
            b.extend((name.len() as u64).to_le_bytes());
            b.extend(name.as_bytes());
            b.extend((dims.len() as u32).to_le_bytes());
            dims.iter().for_each(|d| b.extend(d.to_le_bytes()));
            b.extend(kind.to_le_bytes());
            b.extend(0u64.to_le_bytes());
        }
        b.resize(b.len().div_ceil(32) * 32 + data_len, 0);
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), b).unwrap();
        f
    }

    #[test]
    fn tensor_f32_reads_k_quants_and_names_what_it_cannot() {
        // Q4_K (12), 2 x 256 values in 288 bytes of zeros: every value is 0 * 0 - 0 * 0 = 0.
        // IQ2_XXS (16) is not decoded; 100 values are not whole Q4_K blocks.
        let f = tiny_gguf(&[("q4k", &[256, 2], 12), ("iq2", &[256], 16), ("odd", &[100], 12)], 288);
        let g = Gguf::open(f.path()).unwrap();
        let (dims, values) = g.tensor_f32("q4k").unwrap().unwrap();
        assert_eq!(dims, [256, 2]);
        assert_eq!(values, vec![0.0; 512]);
        assert!(g.tensor_f32("absent").unwrap().is_none());
        let msg = g.tensor_f32("iq2").err().unwrap().to_string();
        assert!(msg.contains("tensor iq2: ggml type 16 is not supported"), "{msg}");
        assert!(msg.contains("Q4_K (12)") && msg.contains("Q5_0 (6)"), "{msg}");
        assert!(msg.contains(&f.path().display().to_string()), "{msg}");
        let msg = g.tensor_f32("odd").err().unwrap().to_string();
        assert!(msg.contains("100 values of Q4_K are not whole blocks of 256"), "{msg}");
        let short = tiny_gguf(&[("q4k", &[256, 2], 12)], 200);
        let msg = Gguf::open(short.path()).unwrap().tensor_f32("q4k").err().unwrap().to_string();
        assert!(msg.contains("Q4_K data (288 bytes) runs past the end of the file"), "{msg}");
    }

    #[test]
    fn names_map_to_gguf() {
        assert_eq!(
            gguf_name("model.layers.3.self_attn.q_proj.weight").as_deref(),
            Some("blk.3.attn_q.weight")
        );
        assert_eq!(
            gguf_name("model.layers.0.post_attention_layernorm.weight").as_deref(),
            Some("blk.0.ffn_norm.weight")
        );
        assert_eq!(gguf_name("model.embed_tokens.weight").as_deref(), Some("token_embd.weight"));
        assert_eq!(gguf_name("model.layers.1.self_attn.q_proj.bias").as_deref(), Some("blk.1.attn_q.bias"));
        assert_eq!(
            gguf_name("model.layers.2.self_attn.k_norm.weight").as_deref(),
            Some("blk.2.attn_k_norm.weight")
        );
        assert_eq!(gguf_name("something.else"), None);
    }
}
