//! The training loop: resuming is exact, LoRA starts at the base model and trains only its
//! adapters, a non-finite loss stops training without applying the update.

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module};
use burn::tensor::{Int, Tensor, TensorData};
use mcts_ps::model::rope::Rope;
use mcts_ps::model::weights::hf_tensors;
use mcts_ps::model::{Llama, LlamaConfig};
use mcts_ps::train::data::Example;
use mcts_ps::train::lora::add_lora;
use mcts_ps::train::trainer::{train, Objective, Output, Settings};

type AB = Autodiff<Flex>;

fn small() -> LlamaConfig {
    let mut c = LlamaConfig::tiny(40, 64);
    c.hidden_size = 32;
    c.intermediate_size = 64;
    c.num_layers = 2;
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.head_dim = 8;
    c
}

fn examples() -> Vec<Example> {
    (0..24u32)
        .map(|i| Example {
            tokens: (0..12).map(|t| (i * 7 + t * 3) % 40).collect(),
            loss_from: 4,
            weight: 1.0,
        })
        .collect()
}

fn settings(stop_after: Option<usize>) -> Settings {
    Settings {
        lr: 1e-2,
        epochs: 3,
        batch_size: 4,
        weight_decay: 0.1,
        warmup_steps: 2,
        grad_clip: 1.0,
        min_lr_frac: 0.1,
        seed: 5,
        purpose: "test".into(),
        max_steps: None,
        stop_after,
    }
}

fn weight_bytes(m: &Llama<AB>) -> Vec<u8> {
    hf_tensors(m)
        .unwrap()
        .into_iter()
        .flat_map(|(_, t)| t.data.into_iter().flat_map(|x| x.to_le_bytes()))
        .collect()
}

#[test]
fn resumed_training_gives_byte_identical_weights() {
    let ex = examples();
    let dir = tempfile::tempdir().unwrap();
    let straight = Llama::<AB>::init(&small(), 1, &Default::default());
    let (straight, rep) =
        train(straight, &Objective::Nll(&ex), &settings(None), &Output::default(), None).unwrap();
    assert_eq!(rep.steps, 18);
    // Half, stop (state saved), then a fresh model object resumes from the state folder.
    let out = Output {
        state_dir: Some(dir.path().to_path_buf()),
        save_every: 0,
        metrics: Some(dir.path().join("m.csv")),
    };
    let first = Llama::<AB>::init(&small(), 1, &Default::default());
    let (_half, rep) = train(first, &Objective::Nll(&ex), &settings(Some(9)), &out, None).unwrap();
    assert_eq!(rep.steps, 9);
    let fresh = Llama::<AB>::init(&small(), 1, &Default::default());
    let (resumed, rep) = train(fresh, &Objective::Nll(&ex), &settings(None), &out, None).unwrap();
    assert_eq!(rep.steps, 18);
    assert_eq!(weight_bytes(&straight), weight_bytes(&resumed));
    let rows = std::fs::read_to_string(dir.path().join("m.csv")).unwrap();
    assert_eq!(rows.lines().count(), 19, "header + one row per step, none lost or doubled:\n{rows}");
    // Training moved the weights.
    assert_ne!(weight_bytes(&straight), weight_bytes(&Llama::<AB>::init(&small(), 1, &Default::default())));
}

fn logits(m: &Llama<AB>, ids: &[u32]) -> Vec<f32> {
    let dev = Default::default();
    let t = Tensor::<AB, 2, Int>::from_data(
        TensorData::new(ids.iter().map(|&x| x as i64).collect::<Vec<_>>(), [1, ids.len()]),
        &dev,
    );
    m.forward(t, &Rope::new(&m.config, 64, &dev)).into_data().to_vec().unwrap()
}

#[test]
fn lora_starts_at_the_base_model_and_trains_only_adapters() {
    let base = Llama::<AB>::init(&small(), 2, &Default::default());
    let ids: Vec<u32> = (0..10).collect();
    let before = logits(&base, &ids);
    let targets = vec!["q".to_string(), "v".to_string(), "down".to_string()];
    let adapted = add_lora(base.clone(), 4, 8.0, &targets, 3);
    assert_eq!(logits(&adapted, &ids), before, "B = 0 at init");
    let ex = examples();
    let (trained, _) =
        train(adapted, &Objective::Nll(&ex), &settings(None), &Output::default(), None).unwrap();
    // Base weights unchanged, adapters changed.
    assert_eq!(trained.layers[0].q.weight.val().into_data(), base.layers[0].q.weight.val().into_data());
    assert_eq!(trained.embed.val().into_data(), base.embed.val().into_data());
    assert!(trained.layers[0].k.lora.is_none());
    let b = trained.layers[0].q.lora.as_ref().unwrap().b.val();
    assert!(b.abs().sum().into_scalar() > 0.0);
    // Merging on save keeps the function: a model built from the merged tensors matches.
    let after = logits(&trained, &ids);
    assert_ne!(after, before);
    let merged = hf_tensors(&trained).unwrap();
    let mut src = mcts_ps::model::weights::MapSource::new(merged);
    let rebuilt = mcts_ps::model::weights::build_llama::<AB>(
        &small(),
        &mut src,
        &Default::default(),
        burn::tensor::DType::F32,
    )
    .unwrap();
    let again = logits(&rebuilt, &ids);
    let diff = after.iter().zip(&again).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff < 1e-5, "merged LoRA differs by {diff}");
    assert!(trained.num_params() > base.num_params());
}

#[test]
fn non_finite_loss_stops_before_the_update() {
    let mut ex = examples();
    for e in &mut ex {
        e.weight = f32::NAN;
    }
    let model = Llama::<AB>::init(&small(), 4, &Default::default());
    let reference = model.valid();
    let dir = tempfile::tempdir().unwrap();
    let out = Output { state_dir: Some(dir.path().to_path_buf()), ..Default::default() };
    let err = train(
        model,
        &Objective::WeightedKl { examples: &ex, reference: &reference, beta: 1.0 },
        &settings(None),
        &out,
        None,
    )
    .expect_err("NaN loss must stop training")
    .to_string();
    assert!(err.contains("NaN") && err.contains("step 0"), "{err}");
    assert!(!dir.path().join("state.json").exists(), "no state written from a failed step");
}
