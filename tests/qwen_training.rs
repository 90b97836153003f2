//! Qwen2 and Qwen3 through everything after loading: LoRA on projections with biases, the three
//! training objectives (NLL, eq. (2) with its KL reference, DPO) reaching the biases and the
//! q/k norms, checkpoints that write the right family and load back to the same logits, and the
//! engine's prefix reuse. The models are the golden fixtures of tests/model_golden.rs
//! (tests/fixtures/tiny_qwen*). The gradient check of the q/k norms is in qwen_gradients.rs.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::module::Param;
use burn::tensor::{DType, Int, Tensor, TensorData};
use mcts_ps::infer::{Engine, Request, Stop};
use mcts_ps::model::rope::Rope;
use mcts_ps::model::tokenizer::Tokenizer;
use mcts_ps::model::weights::{
    build_llama, hf_tensors, load_hf_dir, load_hf_model, save_checkpoint, MapSource,
};
use mcts_ps::model::{Family, Llama};
use mcts_ps::rng::Stream;
use mcts_ps::train::data::{Example, Pair};
use mcts_ps::train::lora::add_lora;
use mcts_ps::train::trainer::{train, Objective, Output, Settings};

type AB = Autodiff<Flex>;

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn load<B: burn::tensor::backend::Backend>(name: &str) -> Llama<B> {
    load_hf_model::<B>(&dir(name), &Default::default(), DType::F32).unwrap().0
}

fn examples() -> Vec<Example> {
    (0..12u32)
        .map(|i| Example {
            tokens: (0..10).map(|t| (i * 11 + t * 5) % 128).collect(),
            loss_from: 3,
            weight: 1.0,
        })
        .collect()
}

fn settings() -> Settings {
    Settings {
        lr: 1e-2,
        epochs: 2,
        batch_size: 4,
        weight_decay: 0.0,
        warmup_steps: 0,
        grad_clip: 1.0,
        min_lr_frac: 1.0,
        seed: 1,
        purpose: "test".into(),
        max_steps: None,
        stop_after: None,
    }
}

fn logits<B: burn::tensor::backend::Backend>(m: &Llama<B>, ids: &[u32]) -> Vec<f32> {
    let dev = Default::default();
    let t = Tensor::<B, 2, Int>::from_data(
        TensorData::new(ids.iter().map(|&x| x as i64).collect::<Vec<_>>(), [1, ids.len()]),
        &dev,
    );
    m.forward(t, &Rope::new(&m.config, 64, &dev)).into_data().to_vec().unwrap()
}

fn values<B: burn::tensor::backend::Backend, const D: usize>(p: &Param<Tensor<B, D>>) -> Vec<f32> {
    p.val().into_data().to_vec().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn lora_on_biased_projections_trains_adapters_and_merges_exactly() {
    for name in ["tiny_qwen2_tied", "tiny_qwen3"] {
        let base = load::<AB>(name);
        let ids: Vec<u32> = (3..13).collect();
        let before = logits(&base, &ids);
        let targets: Vec<String> = ["q", "k", "v", "o"].iter().map(|s| s.to_string()).collect();
        let adapted = add_lora(base.clone(), 4, 8.0, &targets, 3);
        assert_eq!(logits(&adapted, &ids), before, "{name}: B = 0 at init");
        let (trained, rep) =
            train(adapted, &Objective::Nll(&examples()), &settings(), &Output::default(), None).unwrap();
        assert!(rep.steps > 0);
        let (t0, b0) = (&trained.layers[0], &base.layers[0]);
        assert_eq!(values(&t0.q.weight), values(&b0.q.weight), "{name}: base frozen");
        if let (Some(tb), Some(bb)) = (&t0.q.bias, &b0.q.bias) {
            assert_eq!(values(tb), values(bb), "{name}: bias frozen under LoRA");
        }
        if let (Some(tn), Some(bn)) = (&t0.q_norm, &b0.q_norm) {
            assert_eq!(values(tn), values(bn), "{name}: q norm frozen under LoRA");
        }
        let after = logits(&trained, &ids);
        assert!(max_diff(&after, &before) > 1e-4, "{name}: adapters moved the model");
        // Merged on save (biases and norms written too), rebuilt: the same function.
        let mut src = MapSource::new(hf_tensors(&trained).unwrap());
        let rebuilt = build_llama::<AB>(&trained.config, &mut src, &Default::default(), DType::F32).unwrap();
        let d = max_diff(&logits(&rebuilt, &ids), &after);
        assert!(d < 1e-5, "{name}: merged LoRA differs by {d}");
    }
}

#[test]
fn every_objective_trains_the_biases_and_q_k_norms() {
    for name in ["tiny_qwen2", "tiny_qwen3"] {
        let reference = load::<Flex>(name);
        let ex = examples();
        let pairs: Vec<Pair> = (0..8u32)
            .map(|i| Pair {
                prompt: vec![i, i + 1, i + 2],
                chosen: vec![40 + i, 41, 42],
                rejected: vec![90 + i, 91],
            })
            .collect();
        let objectives = [
            Objective::Nll(&ex),
            Objective::WeightedKl { examples: &ex, reference: &reference, beta: 0.5 },
            Objective::Dpo { pairs: &pairs, reference: &reference, beta: 0.1 },
        ];
        for objective in &objectives {
            let base = load::<AB>(name);
            let (trained, rep) =
                train(base.clone(), objective, &settings(), &Output::default(), None).unwrap();
            assert!(rep.steps > 0 && rep.final_loss.is_finite(), "{name}: {rep:?}");
            let (t, b) = (&trained.layers[1], &base.layers[1]);
            assert_ne!(values(&t.q.weight), values(&b.q.weight), "{name}: weights trained");
            match (&t.k.bias, &b.k.bias, &t.k_norm, &b.k_norm) {
                (Some(tb), Some(bb), None, None) => {
                    assert_ne!(values(tb), values(bb), "{name}: k bias trained")
                }
                (None, None, Some(tn), Some(bn)) => {
                    assert_ne!(values(tn), values(bn), "{name}: k norm trained")
                }
                _ => panic!("{name}: expected a k bias (qwen2) or a k norm (qwen3)"),
            }
        }
    }
}

#[test]
fn checkpoints_keep_the_family_and_the_logits() {
    let tok = Tokenizer::word_level(&[]);
    for (name, family) in
        [("tiny_qwen2_tied", Family::Qwen2), ("tiny_qwen2", Family::Qwen2), ("tiny_qwen3", Family::Qwen3)]
    {
        let model = load::<Flex>(name);
        let out = tempfile::tempdir().unwrap();
        save_checkpoint(&model, &tok, out.path()).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap()).unwrap();
        assert_eq!(json["model_type"], family.model_type(), "{name}");
        assert_eq!(json["architectures"][0], family.architecture(), "{name}");
        let (again, _) = load_hf_dir::<Flex>(out.path(), &Default::default(), DType::F32).unwrap();
        assert_eq!(again.config, model.config, "{name}");
        let ids: Vec<u32> = (20..30).collect();
        assert_eq!(logits(&again, &ids), logits(&model, &ids), "{name}");
    }
}

#[test]
fn sampled_completions_do_not_depend_on_batch_or_prefix_reuse() {
    let tok = Tokenizer::word_level(&[]);
    let reqs: Vec<Request> = (0..6u64)
        .map(|k| Request {
            prompt: (0..(8 + k as u32 % 3)).map(|t| (t * 13 + 1) % 128).collect(),
            max_new_tokens: 10,
            temperature: 1.0,
            top_p: 0.95,
            stop: Stop::Never,
            rng: Stream::new(9, "test", &[k]),
        })
        .collect();
    let run = |batch: usize, budget: usize| {
        let mut e =
            Engine::new(load::<Flex>("tiny_qwen3"), tok.clone(), batch, 64, budget, &Default::default());
        let first = e.generate(reqs.clone(), || {}).unwrap();
        let second = e.generate(reqs.clone(), || {}).unwrap(); // prefixes cached when budget > 0
        assert_eq!(first, second);
        first
    };
    let base = run(1, 0);
    assert_eq!(run(4, 0), base);
    assert_eq!(run(1, 10_000), base);
    assert_eq!(run(6, 10_000), base);
}
