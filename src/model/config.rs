//! Hyper-parameters of the Llama-family decoder: the resolved [`LlamaConfig`] (one struct for
//! Llama, Qwen2 and Qwen3, which differ only in the options it names: biases, q/k norm, head
//! width, tied head, RoPE base), the presets, and the serde mirror of a Hugging Face
//! `config.json` ([`HfConfig`]) with its validation.
//!
//! What each family sets (transformers' `modeling_llama.py`, `modeling_qwen2.py`,
//! `modeling_qwen3.py`): Llama puts `attention_bias` on q, k, v and o; Qwen2 always has biases on
//! q, k, v and none on o; Qwen3 puts `attention_bias` (false in every release) on all four and
//! RMSNorms each head of q and k before RoPE, with `head_dim` given explicitly (default 128).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Llama-3.1 style RoPE frequency scaling (`rope_scaling` with `rope_type = "llama3"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Llama3RopeScaling {
    /// Overall wavelength stretch for low frequencies.
    pub factor: f64,
    /// Wavelengths above `original / low_freq_factor` are scaled by `1 / factor`.
    pub low_freq_factor: f64,
    /// Wavelengths below `original / high_freq_factor` are kept.
    pub high_freq_factor: f64,
    /// Context length of the model before scaling.
    pub original_max_position_embeddings: usize,
}

/// The published architecture a config describes. The forward pass reads only the flags of
/// [`LlamaConfig`]; the family names the architecture in a checkpoint's `config.json` and the
/// key prefix in a GGUF file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// `LlamaForCausalLM` (also SmolLM2, DeepSeek-math, TinyLlama).
    Llama,
    /// `Qwen2ForCausalLM` (Qwen2, Qwen2.5 and their Coder/Math models).
    Qwen2,
    /// `Qwen3ForCausalLM` (dense Qwen3).
    Qwen3,
}

impl Family {
    /// `model_type` in `config.json`, and the GGUF `general.architecture` (same strings).
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
        }
    }

    /// The transformers class in `config.json`'s `architectures`.
    pub fn architecture(self) -> &'static str {
        match self {
            Family::Llama => "LlamaForCausalLM",
            Family::Qwen2 => "Qwen2ForCausalLM",
            Family::Qwen3 => "Qwen3ForCausalLM",
        }
    }

    /// Every family, for lookups and messages.
    pub const ALL: [Family; 3] = [Family::Llama, Family::Qwen2, Family::Qwen3];
}

/// Resolved architecture of a Llama-family decoder. No options: every size is known.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// The published architecture (names only; the flags below decide the maths).
    pub family: Family,
    /// Vocabulary size (rows of the embedding, columns of the output head).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// SwiGLU inner width.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when smaller than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// Llama-3.1 RoPE scaling, when present.
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Longest context the model was trained for.
    pub max_position_embeddings: usize,
    /// Output head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q, k and v projections have biases.
    pub qkv_bias: bool,
    /// The output projection o has a bias.
    pub o_bias: bool,
    /// gate/up/down projections have biases.
    pub mlp_bias: bool,
    /// Each head of q and k is RMSNormed (own weight `[head_dim]`, same epsilon) after its
    /// projection and before RoPE (Qwen3).
    pub qk_norm: bool,
}

impl LlamaConfig {
    /// The `tiny` preset: a ~0.8M-parameter model for the synthetic arithmetic task with a
    /// character-level vocabulary of `vocab_size` symbols.
    pub fn tiny(vocab_size: usize, context: usize) -> Self {
        Self {
            family: Family::Llama,
            vocab_size,
            hidden_size: 128,
            intermediate_size: 384,
            num_layers: 4,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 32,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: context,
            tie_word_embeddings: false,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            qk_norm: false,
        }
    }

    /// The `small` preset: a ~13M-parameter model (with the tiny word vocabulary) with grouped-query attention, for backend
    /// agreement checks (CPU vs GPU) at shapes where kernels take their general paths.
    pub fn small(vocab_size: usize, context: usize) -> Self {
        Self {
            family: Family::Llama,
            vocab_size,
            hidden_size: 512,
            intermediate_size: 1408,
            num_layers: 4,
            num_heads: 8,
            num_kv_heads: 2,
            head_dim: 64,
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_scaling: None,
            max_position_embeddings: context,
            tie_word_embeddings: false,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            qk_norm: false,
        }
    }

    /// The shape of Llama-3.1-8B (Meta's config.json: 128256 vocabulary, width 4096, 32
    /// blocks, 32 query and 8 key/value heads, SwiGLU width 14336, RoPE base 500000 with
    /// llama3 scaling factor 8), for benchmarks with random weights.
    pub fn llama31_8b(context: usize) -> Self {
        Self {
            family: Family::Llama,
            vocab_size: 128_256,
            hidden_size: 4096,
            intermediate_size: 14_336,
            num_layers: 32,
            num_heads: 32,
            num_kv_heads: 8,
            head_dim: 128,
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_scaling: Some(Llama3RopeScaling {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            }),
            max_position_embeddings: context,
            tie_word_embeddings: false,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            qk_norm: false,
        }
    }

    /// Query heads per key/value head.
    pub fn group_size(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        let d = self.hidden_size;
        let kv = self.num_kv_heads * self.head_dim;
        let q = self.num_heads * self.head_dim;
        let f = self.intermediate_size;
        let flag = |on: bool, n: usize| if on { n } else { 0 };
        let attn = d * q + 2 * d * kv + q * d + flag(self.qkv_bias, q + 2 * kv) + flag(self.o_bias, d);
        let mlp = 3 * d * f + flag(self.mlp_bias, 2 * f + d);
        let per_layer = attn + mlp + 2 * d + flag(self.qk_norm, 2 * self.head_dim);
        let head = if self.tie_word_embeddings { 0 } else { self.vocab_size * d };
        self.vocab_size * d + self.num_layers * per_layer + d + head
    }

    /// Checks the sizes are mutually consistent.
    pub fn validate(&self, origin: &Path) -> Result<()> {
        let bad = |message: String| Error::Checkpoint { path: origin.to_path_buf(), message };
        if self.num_heads == 0 || self.num_kv_heads == 0 || !self.num_heads.is_multiple_of(self.num_kv_heads)
        {
            return Err(bad(format!(
                "num_attention_heads = {} must be a positive multiple of num_key_value_heads = {}",
                self.num_heads, self.num_kv_heads
            )));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return Err(bad(format!(
                "head_dim = {} must be positive and even (RoPE rotates pairs)",
                self.head_dim
            )));
        }
        // Every flag combination must be one the family's config.json can say, so a saved
        // checkpoint loads back (and into transformers) with the same maths.
        let expressible = match self.family {
            Family::Llama => self.qkv_bias == self.o_bias && !self.qk_norm,
            Family::Qwen2 => self.qkv_bias && !self.o_bias && !self.mlp_bias && !self.qk_norm,
            Family::Qwen3 => self.qkv_bias == self.o_bias && !self.mlp_bias && self.qk_norm,
        };
        if !expressible {
            return Err(bad(format!(
                "{}: q/k/v bias {}, o bias {}, MLP bias {}, q/k norm {} is not a {} configuration",
                self.family.architecture(),
                self.qkv_bias,
                self.o_bias,
                self.mlp_bias,
                self.qk_norm,
                self.family.model_type()
            )));
        }
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_layers),
        ] {
            if v == 0 {
                return Err(bad(format!("{name} = 0, expected a positive size")));
            }
        }
        Ok(())
    }
}

/// Serde mirror of a Hugging Face `config.json` of a Llama, Qwen2 or Qwen3 model (the keys this
/// project reads).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct HfConfig {
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    /// transformers >= 5 writes `rope_theta` and the scaling here instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rope_parameters: Option<serde_json::Value>,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attention_bias: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mlp_bias: Option<bool>,
    /// Qwen2/Qwen3: sliding-window attention on the upper layers (not implemented; rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    use_sliding_window: Option<bool>,
    /// transformers >= 4.5x: `"full_attention"` or `"sliding_attention"` per layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    layer_types: Option<Vec<String>>,
    #[serde(default)]
    hidden_act: Option<String>,
    /// Kept so saved checkpoints carry the ids through.
    #[serde(default)]
    pub bos_token_id: Option<serde_json::Value>,
    /// Kept so saved checkpoints carry the ids through.
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_max_pos() -> usize {
    2048
}

impl HfConfig {
    /// Reads and validates `config.json`, returning the resolved architecture.
    pub fn load(path: &Path) -> Result<(LlamaConfig, HfConfig)> {
        let text = crate::error::read_to_string(path)?;
        let hf: HfConfig = serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("not a Llama config.json: {e}"),
        })?;
        let cfg = hf.resolve(path)?;
        Ok((cfg, hf))
    }

    /// The family named by `architectures` (first) or `model_type`.
    fn family(&self) -> Option<Family> {
        if let Some(archs) = &self.architectures {
            if let Some(f) = Family::ALL.into_iter().find(|f| archs.iter().any(|a| a == f.architecture())) {
                return Some(f);
            }
        }
        let t = self.model_type.as_deref()?;
        Family::ALL.into_iter().find(|f| f.model_type() == t)
    }

    /// Maps the file's keys onto [`LlamaConfig`], rejecting architectures this project does
    /// not implement.
    pub fn resolve(&self, path: &Path) -> Result<LlamaConfig> {
        let bad = |message: String| Error::Checkpoint { path: path.to_path_buf(), message };
        let Some(family) = self.family() else {
            let known: Vec<String> = Family::ALL
                .iter()
                .map(|f| format!("{} / \"{}\"", f.architecture(), f.model_type()))
                .collect();
            return Err(bad(format!(
                "unknown architecture (architectures = {:?}, model_type = {:?}); expected one of {}",
                self.architectures,
                self.model_type,
                known.join(", ")
            )));
        };
        if let Some(act) = &self.hidden_act {
            if act != "silu" {
                return Err(bad(format!("hidden_act = {act:?}, expected \"silu\" (SwiGLU)")));
            }
        }
        if self.use_sliding_window == Some(true) {
            return Err(bad("use_sliding_window = true: sliding-window attention is not implemented; \
                 expected false (every released Qwen2/Qwen3 config)"
                .into()));
        }
        if let Some(kind) = self.layer_types.iter().flatten().find(|t| *t != "full_attention") {
            return Err(bad(format!(
                "layer_types holds {kind:?}; only \"full_attention\" layers are implemented"
            )));
        }
        let mut rope_theta = self.rope_theta;
        let mut scaling = self.rope_scaling.clone();
        if let Some(p) = &self.rope_parameters {
            if let Some(t) = p.get("rope_theta").and_then(|t| t.as_f64()) {
                rope_theta = t;
            }
            let kind = p.get("rope_type").and_then(|t| t.as_str()).unwrap_or("default");
            if kind != "default" {
                scaling = Some(p.clone());
            }
        }
        let rope_scaling = match &scaling {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => {
                let kind =
                    v.get("rope_type").or_else(|| v.get("type")).and_then(|t| t.as_str()).unwrap_or("");
                if kind != "llama3" {
                    return Err(bad(format!(
                        "rope_scaling type {kind:?} is not supported; expected \"llama3\" or none"
                    )));
                }
                Some(
                    serde_json::from_value::<Llama3RopeScaling>(v.clone())
                        .map_err(|e| bad(format!("rope_scaling: {e}")))?,
                )
            }
        };
        let heads = self.num_attention_heads;
        let attention_bias = self.attention_bias.unwrap_or(false);
        // transformers: Qwen2 hard-codes q/k/v biases and none on o; Qwen3's `head_dim`
        // defaults to 128 (Qwen3Config), the others' to hidden / heads.
        let (qkv_bias, o_bias, qk_norm, default_head_dim) = match family {
            Family::Llama => (attention_bias, attention_bias, false, self.hidden_size / heads.max(1)),
            Family::Qwen2 => (true, false, false, self.hidden_size / heads.max(1)),
            Family::Qwen3 => (attention_bias, attention_bias, true, 128),
        };
        if family != Family::Llama && self.mlp_bias == Some(true) {
            return Err(bad(format!("mlp_bias = true; {} has no MLP biases", family.architecture())));
        }
        let cfg = LlamaConfig {
            family,
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: heads,
            num_kv_heads: self.num_key_value_heads.unwrap_or(heads),
            head_dim: self.head_dim.unwrap_or(default_head_dim),
            rms_norm_eps: self.rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(false),
            qkv_bias,
            o_bias,
            mlp_bias: self.mlp_bias.unwrap_or(false),
            qk_norm,
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// The `config.json` written with a project checkpoint.
    pub fn from_config(cfg: &LlamaConfig, bos: Option<u32>, eos: &[u32]) -> Self {
        let llama = cfg.family == Family::Llama;
        Self {
            architectures: Some(vec![cfg.family.architecture().into()]),
            model_type: Some(cfg.family.model_type().into()),
            vocab_size: cfg.vocab_size,
            hidden_size: cfg.hidden_size,
            intermediate_size: cfg.intermediate_size,
            num_hidden_layers: cfg.num_layers,
            num_attention_heads: cfg.num_heads,
            num_key_value_heads: Some(cfg.num_kv_heads),
            head_dim: Some(cfg.head_dim),
            rms_norm_eps: cfg.rms_norm_eps,
            rope_theta: cfg.rope_theta,
            rope_scaling: cfg.rope_scaling.as_ref().map(|s| {
                let mut v = serde_json::to_value(s).expect("rope scaling serializes");
                v["rope_type"] = "llama3".into();
                v
            }),
            rope_parameters: None,
            max_position_embeddings: cfg.max_position_embeddings,
            tie_word_embeddings: Some(cfg.tie_word_embeddings),
            // Qwen2's biases are fixed by its class; Llama's and Qwen3's `attention_bias` covers
            // q, k, v and o alike (the flags agree for every config this project resolves).
            attention_bias: (cfg.family != Family::Qwen2).then_some(cfg.qkv_bias),
            mlp_bias: llama.then_some(cfg.mlp_bias),
            use_sliding_window: (!llama).then_some(false),
            layer_types: None,
            hidden_act: Some("silu".into()),
            bos_token_id: bos.map(|b| b.into()),
            eos_token_id: match eos {
                [] => None,
                [one] => Some((*one).into()),
                many => Some(many.iter().map(|&e| serde_json::Value::from(e)).collect()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_preset_is_about_a_million_parameters() {
        let cfg = LlamaConfig::tiny(100, 512);
        let n = cfg.num_params();
        // Hand count: attention 128*128*2 + 128*64*2 = 49_152; MLP 3*128*384 = 147_456;
        // norms 256 -> 196_864 per layer; 4 layers = 787_456; embedding and head 2*100*128.
        assert_eq!(n, 787_456 + 25_600 + 128);
    }

    #[test]
    fn llama31_8b_preset_has_the_published_parameter_count() {
        // Meta's model card: 8,030,261,248 parameters (embedding and head untied). By hand:
        // per block q,o 2*4096^2 + k,v 2*4096*1024 + MLP 3*4096*14336 + norms 2*4096
        // = 218_112_000; 32 blocks; embedding + head 2*128256*4096; final norm 4096.
        let cfg = LlamaConfig::llama31_8b(8192);
        assert_eq!(32 * 218_112_000 + 2 * 128_256 * 4096 + 4096, 8_030_261_248usize);
        assert_eq!(cfg.num_params(), 8_030_261_248);
    }

    #[test]
    fn rejects_unknown_architecture() {
        let json = r#"{"architectures":["MistralForCausalLM"],"model_type":"mistral",
            "vocab_size":10,"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,
            "num_attention_heads":2}"#;
        let hf: HfConfig = serde_json::from_str(json).unwrap();
        let err = hf.resolve(Path::new("m/config.json")).unwrap_err().to_string();
        assert!(err.contains("m/config.json") && err.contains("MistralForCausalLM"), "{err}");
    }

    #[test]
    fn qwen_families_set_their_options_and_round_trip() {
        let base = r#""vocab_size":10,"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,
            "num_attention_heads":2,"num_key_value_heads":1"#;
        let qwen2: HfConfig =
            serde_json::from_str(&format!(r#"{{"architectures":["Qwen2ForCausalLM"],{base}}}"#)).unwrap();
        let c2 = qwen2.resolve(Path::new("config.json")).unwrap();
        assert_eq!(c2.family, Family::Qwen2);
        assert!(c2.qkv_bias && !c2.o_bias && !c2.qk_norm && c2.head_dim == 4);
        // transformers' Qwen3Config defaults head_dim to 128, not hidden / heads.
        let qwen3: HfConfig = serde_json::from_str(&format!(r#"{{"model_type":"qwen3",{base}}}"#)).unwrap();
        let c3 = qwen3.resolve(Path::new("config.json")).unwrap();
        assert!(c3.qk_norm && !c3.qkv_bias && !c3.o_bias && c3.head_dim == 128);
        for c in [c2, c3, LlamaConfig::tiny(10, 16)] {
            let json = serde_json::to_string(&HfConfig::from_config(&c, None, &[2])).unwrap();
            let back: HfConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(back.resolve(Path::new("c")).unwrap(), c, "{json}");
        }
        let sliding: HfConfig =
            serde_json::from_str(&format!(r#"{{"model_type":"qwen2","use_sliding_window":true,{base}}}"#))
                .unwrap();
        let err = sliding.resolve(Path::new("m/config.json")).unwrap_err().to_string();
        assert!(err.contains("m/config.json") && err.contains("use_sliding_window"), "{err}");
    }

    #[test]
    fn flags_no_family_can_write_are_rejected() {
        let mut c = LlamaConfig::tiny(10, 16);
        c.qk_norm = true;
        let err = c.validate(Path::new("x")).unwrap_err().to_string();
        assert!(err.contains("q/k norm true") && err.contains("llama"), "{err}");
    }

    #[test]
    fn reads_llama31_rope_scaling() {
        let json = r#"{"architectures":["LlamaForCausalLM"],"vocab_size":10,"hidden_size":8,
            "intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,
            "num_key_value_heads":1,"rope_theta":500000.0,
            "rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
            "original_max_position_embeddings":8192,"rope_type":"llama3"}}"#;
        let hf: HfConfig = serde_json::from_str(json).unwrap();
        let cfg = hf.resolve(Path::new("config.json")).unwrap();
        assert_eq!(cfg.head_dim, 4);
        assert_eq!(cfg.group_size(), 2);
        assert_eq!(cfg.rope_scaling.unwrap().original_max_position_embeddings, 8192);
    }
}
