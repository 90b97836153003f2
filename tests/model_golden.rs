//! Our Llama against Hugging Face transformers: logits of a small random model saved with
//! `save_pretrained` (tests/fixtures/make_llama_reference.py made the fixture; transformers 5.24,
//! float32, CPU) must agree within 1e-4 max abs difference, through the full forward and
//! through the cached (inference) forward.

use std::path::Path;

use burn::backend::Flex;
use burn::tensor::{DType, Int, Tensor, TensorData};
use mcts_ps::model::rope::Rope;
use mcts_ps::model::weights::load_hf_model;

type B = Flex;

fn fixture() -> (Vec<Vec<i64>>, Vec<f32>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_llama");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected_logits.json")).unwrap()).unwrap();
    let ids: Vec<Vec<i64>> = serde_json::from_value(v["input_ids"].clone()).unwrap();
    let logits: Vec<Vec<Vec<f32>>> = serde_json::from_value(v["logits"].clone()).unwrap();
    (ids, logits.into_iter().flatten().flatten().collect())
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn full_forward_matches_transformers() {
    let dev = Default::default();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_llama");
    let (model, _) = load_hf_model::<B>(&dir, &dev, DType::F32).unwrap();
    assert!(model.config.rope_scaling.is_some(), "rope scaling read from rope_parameters");
    let (ids, expected) = fixture();
    let (b, l) = (ids.len(), ids[0].len());
    let t = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.concat(), [b, l]), &dev);
    let rope = Rope::<B>::new(&model.config, 128, &dev);
    let ours: Vec<f32> = model.forward(t, &rope).into_data().to_vec().unwrap();
    let d = max_diff(&ours, &expected);
    eprintln!("full forward vs transformers: max abs diff {d:e}");
    assert!(d < 1e-4, "max abs diff {d}");
}

#[test]
#[allow(clippy::needless_range_loop)]
fn cached_forward_matches_transformers() {
    let dev = Default::default();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_llama");
    let (model, _) = load_hf_model::<B>(&dir, &dev, DType::F32).unwrap();
    let (ids, expected) = fixture();
    let (b, l) = (ids.len(), ids[0].len());
    let rope = Rope::<B>::new(&model.config, 128, &dev);
    let mut cache = model.new_cache(b, 128, &dev);
    // First 12 tokens of both rows at once, then the rest one token per step.
    let mut ours = vec![vec![]; b];
    let t = Tensor::<B, 2, Int>::from_data(
        TensorData::new(ids.iter().flat_map(|r| r[..12].to_vec()).collect::<Vec<_>>(), [b, 12]),
        &dev,
    );
    let (h, c) = model.forward_cached(t, &[0, 1], &[0, 0], &rope, cache);
    cache = c;
    let lg: Vec<f32> = model.head(h).into_data().to_vec().unwrap();
    for r in 0..b {
        ours[r].extend_from_slice(&lg[r * 12 * 128..(r + 1) * 12 * 128]);
    }
    for p in 12..l {
        let t = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![ids[0][p], ids[1][p]], [b, 1]), &dev);
        let (h, c) = model.forward_cached(t, &[0, 1], &[p, p], &rope, cache);
        cache = c;
        let lg: Vec<f32> = model.head(h).into_data().to_vec().unwrap();
        for r in 0..b {
            ours[r].extend_from_slice(&lg[r * 128..(r + 1) * 128]);
        }
    }
    let d = max_diff(&ours.concat(), &expected);
    eprintln!("cached forward vs transformers: max abs diff {d:e}");
    assert!(d < 1e-4, "max abs diff {d}");
}
