//! Llama architecture hyper-parameters: the resolved [`LlamaConfig`], the `tiny` preset, and
//! the serde mirror of a Hugging Face `config.json` ([`HfConfig`]) with its validation.

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

/// Resolved architecture of a Llama-family decoder. No options: every size is known.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
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
    /// q/k/v/o projections have biases.
    pub attention_bias: bool,
    /// gate/up/down projections have biases.
    pub mlp_bias: bool,
}

impl LlamaConfig {
    /// The `tiny` preset: a ~0.8M-parameter model for the synthetic arithmetic task with a
    /// character-level vocabulary of `vocab_size` symbols.
    pub fn tiny(vocab_size: usize, context: usize) -> Self {
        Self {
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
            attention_bias: false,
            mlp_bias: false,
        }
    }

    /// The `small` preset: a ~13M-parameter model (with the tiny word vocabulary) with grouped-query attention, for backend
    /// agreement checks (CPU vs GPU) at shapes where kernels take their general paths.
    pub fn small(vocab_size: usize, context: usize) -> Self {
        Self {
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
            attention_bias: false,
            mlp_bias: false,
        }
    }

    /// The shape of Llama-3.1-8B (Meta's config.json: 128256 vocabulary, width 4096, 32
    /// blocks, 32 query and 8 key/value heads, SwiGLU width 14336, RoPE base 500000 with
    /// llama3 scaling factor 8), for benchmarks with random weights.
    pub fn llama31_8b(context: usize) -> Self {
        Self {
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
            attention_bias: false,
            mlp_bias: false,
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
        let attn = d * q + 2 * d * kv + q * d;
        let mlp = 3 * d * self.intermediate_size;
        let per_layer = attn + mlp + 2 * d;
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

/// Serde mirror of a Hugging Face Llama `config.json` (the keys this project reads).
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
    #[serde(default)]
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
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default)]
    mlp_bias: Option<bool>,
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

    /// Maps the file's keys onto [`LlamaConfig`], rejecting architectures this project does
    /// not implement.
    pub fn resolve(&self, path: &Path) -> Result<LlamaConfig> {
        let bad = |message: String| Error::Checkpoint { path: path.to_path_buf(), message };
        let is_llama =
            self.architectures.as_ref().map(|a| a.iter().any(|s| s == "LlamaForCausalLM")).unwrap_or(false)
                || self.model_type.as_deref() == Some("llama");
        if !is_llama {
            return Err(bad(format!(
                "unknown architecture (architectures = {:?}, model_type = {:?}); expected \
                 LlamaForCausalLM / model_type \"llama\"",
                self.architectures, self.model_type
            )));
        }
        if let Some(act) = &self.hidden_act {
            if act != "silu" {
                return Err(bad(format!("hidden_act = {act:?}, expected \"silu\" (SwiGLU)")));
            }
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
        let cfg = LlamaConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            num_kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim: self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1)),
            rms_norm_eps: self.rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(false),
            attention_bias: self.attention_bias.unwrap_or(false),
            mlp_bias: self.mlp_bias.unwrap_or(false),
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// The `config.json` written with a project checkpoint.
    pub fn from_config(cfg: &LlamaConfig, bos: Option<u32>, eos: &[u32]) -> Self {
        Self {
            architectures: Some(vec!["LlamaForCausalLM".into()]),
            model_type: Some("llama".into()),
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
            attention_bias: Some(cfg.attention_bias),
            mlp_bias: Some(cfg.mlp_bias),
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
