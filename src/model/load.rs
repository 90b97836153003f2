//! Model specifications (`preset:tiny`, a Hugging Face or checkpoint folder, a `.gguf` file)
//! and loading them with their tokenizer and prompt template.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::DType;

use super::config::LlamaConfig;
use super::gguf::{Gguf, GgufSource};
use super::tokenizer::Tokenizer;
use super::weights::{build_llama, load_hf_dir, random_llama};
use super::Llama;
use crate::error::{Error, Result};
use crate::task::prompt::Template;

/// Where a model comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSpec {
    /// A built-in architecture with random weights from `seed`.
    Preset {
        /// Preset name ("tiny").
        name: String,
        /// Initialisation seed.
        seed: u64,
    },
    /// A folder with `config.json`, safetensors and `tokenizer.json`.
    HfDir(PathBuf),
    /// A GGUF file.
    Gguf(PathBuf),
}

impl ModelSpec {
    /// Parses `preset:tiny`, `preset:tiny:SEED`, a path to a `.gguf` file or a folder.
    pub fn parse(spec: &str) -> Result<Self> {
        if let Some(rest) = spec.strip_prefix("preset:") {
            let (name, seed) = match rest.split_once(':') {
                Some((n, s)) => (
                    n,
                    s.parse().map_err(|_| Error::Argument {
                        arg: "--model".into(),
                        found: format!("{spec:?}"),
                        expected: "preset:NAME or preset:NAME:SEED with an integer seed".into(),
                    })?,
                ),
                None => (rest, 0),
            };
            if !PRESETS.contains(&name) {
                return Err(Error::Argument {
                    arg: "--model".into(),
                    found: format!("{spec:?}"),
                    expected: format!("one of preset:{}", PRESETS.join(", preset:")),
                });
            }
            return Ok(ModelSpec::Preset { name: name.into(), seed });
        }
        let p = PathBuf::from(spec);
        if p.is_file() && p.extension().is_some_and(|e| e == "gguf") {
            Ok(ModelSpec::Gguf(p))
        } else if p.is_dir() {
            Ok(ModelSpec::HfDir(p))
        } else {
            Err(Error::Argument {
                arg: "--model".into(),
                found: format!("{spec:?}"),
                expected:
                    "preset:tiny, a .gguf file, or a folder with config.json, safetensors and tokenizer.json"
                        .into(),
            })
        }
    }
}

/// Built-in architectures with random weights: `tiny` (the synthetic task's model), `small`
/// (backend agreement checks) and `llama-3.1-8b` (benchmarks at the paper's scale).
pub const PRESETS: &[&str] = &["tiny", "small", "llama-3.1-8b"];

/// The prompt template a tokenizer's special tokens imply: Qwen's vocabulary gets `qwen3` when
/// it has Qwen3's `<think>` token and `qwen` otherwise, before other ChatML vocabularies.
pub fn template_for(tokenizer: &Tokenizer) -> Template {
    let has = |t: &str| tokenizer.inner().token_to_id(t).is_some();
    if has("<|start_header_id|>") {
        Template::Llama3
    } else if tokenizer.is_qwen() {
        if has("<think>") {
            Template::Qwen3
        } else {
            Template::Qwen
        }
    } else if has("<|im_start|>") {
        Template::Chatml
    } else if has("<\u{ff5c}begin\u{2581}of\u{2581}sentence\u{ff5c}>") {
        Template::Deepseek
    } else {
        Template::Plain
    }
}

/// Loads a model on `device` in `dtype`; `context` sizes preset models and bounds the others.
pub fn load_model<B: Backend>(
    spec: &ModelSpec,
    context: usize,
    device: &B::Device,
    dtype: DType,
) -> Result<(Llama<B>, Tokenizer)> {
    match spec {
        ModelSpec::Preset { name, seed } => {
            let tokenizer = Tokenizer::word_level(&crate::task::arith::words());
            let cast = |m: Llama<B>| {
                if dtype == DType::F32 {
                    m
                } else {
                    m.to_storage(crate::model::weights::Storage::of::<B>(dtype))
                }
            };
            match name.as_str() {
                "tiny" => {
                    let mut cfg = LlamaConfig::tiny(tokenizer.vocab_size(), context);
                    cfg.tie_word_embeddings = true;
                    Ok((cast(Llama::init(&cfg, *seed, device)), tokenizer))
                }
                "small" => {
                    let cfg = LlamaConfig::small(tokenizer.vocab_size(), context);
                    Ok((cast(Llama::init(&cfg, *seed, device)), tokenizer))
                }
                // Benchmarks feed random ids; ids past the word list decode to nothing.
                _ => Ok((random_llama(&LlamaConfig::llama31_8b(context), *seed, device, dtype), tokenizer)),
            }
        }
        ModelSpec::HfDir(dir) => load_hf_dir(dir, device, dtype),
        ModelSpec::Gguf(path) => load_gguf(path, context, device, dtype),
    }
}

/// Loads a GGUF file (weights dequantised to f32, then cast to `dtype`).
pub fn load_gguf<B: Backend>(
    path: &Path,
    context: usize,
    device: &B::Device,
    dtype: DType,
) -> Result<(Llama<B>, Tokenizer)> {
    let g = Gguf::open(path)?;
    let cfg = g.config(context)?;
    let tokenizer = g.tokenizer()?;
    let mut src = GgufSource::new(&g, cfg.clone());
    let model = build_llama::<B>(&cfg, &mut src, device, dtype)?;
    Ok((model, tokenizer))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word-level tokenizer holding `tokens` at the given ids (only the ids matter here).
    fn vocab(tokens: &[(&str, u32)], bos: Option<u32>, eos: Vec<u32>) -> Tokenizer {
        let v = tokens.iter().map(|(t, i)| (t.to_string(), *i)).collect();
        let model = tokenizers::models::wordlevel::WordLevel::builder()
            .vocab(v)
            .unk_token("a".into())
            .build()
            .unwrap();
        Tokenizer::with_specials(tokenizers::Tokenizer::new(model), bos, eos)
    }

    #[test]
    fn qwen_vocabularies_get_qwen_templates_no_bos_and_both_end_tokens() {
        let qwen = [("a", 0), ("<|endoftext|>", 151_643), ("<|im_start|>", 151_644), ("<|im_end|>", 151_645)];
        // Qwen2.5's config.json names <|endoftext|> as BOS and <|im_end|> as eos.
        let t = vocab(&qwen, Some(151_643), vec![151_645]);
        assert_eq!(t.bos, None);
        assert_eq!(t.eos, [151_645, 151_643]);
        assert_eq!(template_for(&t), Template::Qwen);
        let mut qwen3 = qwen.to_vec();
        qwen3.push(("<think>", 151_667));
        assert_eq!(template_for(&vocab(&qwen3, None, vec![151_645])), Template::Qwen3);
        // SmolLM2: the same ChatML tokens at other ids stay ChatML, with its own BOS and eos.
        let smol = [("<|endoftext|>", 0), ("<|im_start|>", 1), ("<|im_end|>", 2), ("a", 3)];
        let t = vocab(&smol, Some(1), vec![2]);
        assert_eq!((t.bos, t.eos.clone()), (Some(1), vec![2]));
        assert_eq!(template_for(&t), Template::Chatml);
    }
}
