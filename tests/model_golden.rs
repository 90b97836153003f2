//! Our decoder against Hugging Face transformers: logits of small random models saved with
//! `save_pretrained` must agree within 1e-4 max abs difference, through the full forward and
//! through the cached (inference) forward; for the Qwen fixtures the inference engine's greedy
//! continuation must also be the reference's token ids.
//!
//! Fixtures (float32, CPU, transformers 5.24): `tiny_llama` (tests/fixtures/make_llama_reference.py:
//! GQA, Llama-3.1 rope scaling), and from tests/fixtures/make_qwen_reference.py `tiny_qwen2_tied`
//! (q/k/v biases, tied head), `tiny_qwen2` (untied head) and `tiny_qwen3` (q/k norms, head_dim
//! 32 with hidden / heads = 12); and `tiny_qwen2_tied.gguf`, `tiny_qwen3.gguf`, the same weights
//! written as llama.cpp's converter writes them (tests/fixtures/make_qwen_gguf.py, which also
//! checks that llama.cpp reads them as transformers does).

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::tensor::{DType, Int, Tensor, TensorData};
use mcts_ps::infer::{Engine, Request, Stop};
use mcts_ps::model::load::load_gguf;
use mcts_ps::model::rope::Rope;
use mcts_ps::model::tokenizer::Tokenizer;
use mcts_ps::model::weights::load_hf_model;
use mcts_ps::model::{Family, Llama};
use mcts_ps::rng::Stream;

type B = Flex;

/// Every fixture's vocabulary size.
const VOCAB: usize = 128;

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn expected(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir(name).join("expected_logits.json")).unwrap()).unwrap()
}

fn fixture(name: &str) -> (Vec<Vec<i64>>, Vec<f32>) {
    let v = expected(name);
    let ids: Vec<Vec<i64>> = serde_json::from_value(v["input_ids"].clone()).unwrap();
    let logits: Vec<Vec<Vec<f32>>> = serde_json::from_value(v["logits"].clone()).unwrap();
    (ids, logits.into_iter().flatten().flatten().collect())
}

fn load(name: &str) -> Llama<B> {
    load_hf_model::<B>(&dir(name), &Default::default(), DType::F32).unwrap().0
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Max abs difference of the full forward's logits from the reference.
fn full_forward_diff(name: &str) -> f32 {
    let dev = Default::default();
    let model = load(name);
    let (ids, expected) = fixture(name);
    let (b, l) = (ids.len(), ids[0].len());
    let t = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.concat(), [b, l]), &dev);
    let rope = Rope::<B>::new(&model.config, 128, &dev);
    let ours: Vec<f32> = model.forward(t, &rope).into_data().to_vec().unwrap();
    let d = max_diff(&ours, &expected);
    eprintln!("{name}: full forward vs transformers: max abs diff {d:e}");
    d
}

/// Max abs difference of the cached forward's logits (first 12 tokens of both rows at once,
/// then one token per step) from the reference.
#[allow(clippy::needless_range_loop)]
fn cached_forward_diff(name: &str) -> f32 {
    let dev = Default::default();
    let model = load(name);
    let (ids, expected) = fixture(name);
    let (b, l) = (ids.len(), ids[0].len());
    let rope = Rope::<B>::new(&model.config, 128, &dev);
    let mut cache = model.new_cache(b, 128, &dev);
    let mut ours = vec![vec![]; b];
    let t = Tensor::<B, 2, Int>::from_data(
        TensorData::new(ids.iter().flat_map(|r| r[..12].to_vec()).collect::<Vec<_>>(), [b, 12]),
        &dev,
    );
    let (h, c) = model.forward_cached(t, &[0, 1], &[0, 0], &rope, cache);
    cache = c;
    let lg: Vec<f32> = model.head(h).into_data().to_vec().unwrap();
    for r in 0..b {
        ours[r].extend_from_slice(&lg[r * 12 * VOCAB..(r + 1) * 12 * VOCAB]);
    }
    for p in 12..l {
        let t = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![ids[0][p], ids[1][p]], [b, 1]), &dev);
        let (h, c) = model.forward_cached(t, &[0, 1], &[p, p], &rope, cache);
        cache = c;
        let lg: Vec<f32> = model.head(h).into_data().to_vec().unwrap();
        for r in 0..b {
            ours[r].extend_from_slice(&lg[r * VOCAB..(r + 1) * VOCAB]);
        }
    }
    let d = max_diff(&ours.concat(), &expected);
    eprintln!("{name}: cached forward vs transformers: max abs diff {d:e}");
    d
}

/// The engine's greedy continuation of the fixture's prompt, at batch 1 and as one row of a
/// batch of 3 (the others other prompts), and the reference's.
fn greedy(name: &str) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let v = expected(name);
    let prompt: Vec<u32> = serde_json::from_value(v["greedy_prompt"].clone()).unwrap();
    let want: Vec<u32> = serde_json::from_value(v["greedy"].clone()).unwrap();
    // Any tokenizer covering ids 0..128 serves: greedy decoding reads ids, and `Stop::Never`
    // ignores its eos.
    let tok = Tokenizer::word_level(&[]);
    assert!(tok.vocab_size() >= VOCAB);
    let req = |prompt: Vec<u32>| Request {
        prompt,
        max_new_tokens: want.len(),
        temperature: 0.0,
        top_p: 1.0,
        stop: Stop::Never,
        rng: Stream::new(0, "test", &[]),
    };
    let mut one = Engine::new(load(name), tok.clone(), 1, 64, 0, &Default::default());
    let alone = one.generate(vec![req(prompt.clone())], || {}).unwrap().remove(0).tokens;
    let mut three = Engine::new(load(name), tok, 3, 64, 0, &Default::default());
    let batch = vec![req(vec![5, 6, 7]), req(prompt), req(vec![9; 10])];
    let batched = three.generate(batch, || {}).unwrap().remove(1).tokens;
    eprintln!("{name}: greedy {alone:?}, in a batch {batched:?}, transformers {want:?}");
    (alone, batched, want)
}

#[test]
fn full_forward_matches_transformers() {
    let model = load("tiny_llama");
    assert!(model.config.rope_scaling.is_some(), "rope scaling read from rope_parameters");
    let d = full_forward_diff("tiny_llama");
    assert!(d < 1e-4, "max abs diff {d}");
}

#[test]
fn cached_forward_matches_transformers() {
    let d = cached_forward_diff("tiny_llama");
    assert!(d < 1e-4, "max abs diff {d}");
}

#[test]
fn qwen_configs_are_read_with_their_family_options() {
    let tied = load("tiny_qwen2_tied").config;
    assert_eq!(tied.family, Family::Qwen2);
    assert!(tied.tie_word_embeddings && tied.qkv_bias && !tied.o_bias && !tied.qk_norm);
    assert_eq!((tied.head_dim, tied.rope_theta), (12, 1e6));
    let untied = load("tiny_qwen2");
    assert!(!untied.config.tie_word_embeddings && untied.lm_head.is_some());
    assert!(untied.layers[0].q.bias.is_some() && untied.layers[0].o.bias.is_none());
    let q3 = load("tiny_qwen3");
    assert_eq!(q3.config.family, Family::Qwen3);
    assert!(q3.config.qk_norm && !q3.config.qkv_bias && !q3.config.o_bias);
    assert_eq!(q3.config.head_dim, 32, "explicit head_dim, not hidden / heads = 12");
    assert!(q3.layers[1].q_norm.is_some() && q3.layers[1].k_norm.is_some());
}

#[test]
fn qwen2_tied_matches_transformers() {
    for d in [full_forward_diff("tiny_qwen2_tied"), cached_forward_diff("tiny_qwen2_tied")] {
        assert!(d < 1e-4, "max abs diff {d}");
    }
    let (alone, batched, want) = greedy("tiny_qwen2_tied");
    assert_eq!(alone, want);
    assert_eq!(batched, want);
}

#[test]
fn qwen2_untied_matches_transformers() {
    for d in [full_forward_diff("tiny_qwen2"), cached_forward_diff("tiny_qwen2")] {
        assert!(d < 1e-4, "max abs diff {d}");
    }
    let (alone, batched, want) = greedy("tiny_qwen2");
    assert_eq!(alone, want);
    assert_eq!(batched, want);
}

#[test]
fn qwen3_matches_transformers() {
    for d in [full_forward_diff("tiny_qwen3"), cached_forward_diff("tiny_qwen3")] {
        assert!(d < 1e-4, "max abs diff {d}");
    }
    let (alone, batched, want) = greedy("tiny_qwen3");
    assert_eq!(alone, want);
    assert_eq!(batched, want);
}

#[test]
fn qwen_gguf_files_match_transformers() {
    let dev = Default::default();
    for (name, family) in [("tiny_qwen2_tied", Family::Qwen2), ("tiny_qwen3", Family::Qwen3)] {
        let path = dir(name).with_extension("gguf");
        let (model, tok) = load_gguf::<B>(&path, 128, &dev, DType::F32).unwrap();
        // GGUF stores the epsilon as f32.
        let (mut from_gguf, from_json) = (model.config.clone(), load(name).config);
        assert_eq!(from_gguf.rms_norm_eps as f32, from_json.rms_norm_eps as f32);
        from_gguf.rms_norm_eps = from_json.rms_norm_eps;
        assert_eq!(from_gguf, from_json, "{name}: GGUF and config.json read alike");
        assert_eq!(model.config.family, family);
        // Byte tokens: ASCII text is its bytes (the qwen2 split, then the byte mapping).
        assert_eq!(
            tok.encode("Qwen, 2 + 3 = ").unwrap(),
            "Qwen, 2 + 3 = ".bytes().map(u32::from).collect::<Vec<_>>()
        );
        let (ids, expected) = fixture(name);
        let (b, l) = (ids.len(), ids[0].len());
        let t = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.concat(), [b, l]), &dev);
        let rope = Rope::<B>::new(&model.config, 128, &dev);
        let ours: Vec<f32> = model.forward(t, &rope).into_data().to_vec().unwrap();
        let d = max_diff(&ours, &expected);
        eprintln!("{name}.gguf: full forward vs transformers: max abs diff {d:e}");
        assert!(d < 1e-4, "{name}.gguf: max abs diff {d}");
    }
}
