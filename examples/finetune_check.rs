//! Does the training loop learn? Fine-tunes a checkpoint of the tiny model on `N` reference
//! solutions of synthetic training problems (plain NLL) and reports held-out accuracy before
//! and after: greedy, and sampled at T = 0.7 (mean ± SE over 5 runs).
//!
//!     cargo run --release --example finetune_check -- CHECKPOINT [N] [LR] [EPOCHS]
//!
//! CHECKPOINT is a tiny-model checkpoint, e.g. results/tiny_arith/cache/pretrain-*/checkpoint.
//! The synthetic task settings are the built-in defaults (as in experiments/tiny_arith.toml).

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::tensor::DType;
use mcts_ps::config::{Layer, DEFAULTS};
use mcts_ps::eval::stats::mean_se;
use mcts_ps::eval::{accuracy, run_once, EvalSettings};
use mcts_ps::infer::Engine;
use mcts_ps::model::weights::load_hf_dir;
use mcts_ps::model::Llama;
use mcts_ps::task::arith::{generate_pool, Pool};
use mcts_ps::task::prompt::Template;
use mcts_ps::task::{Problem, TaskKind};
use mcts_ps::train::pretrain::solution_examples;
use mcts_ps::train::trainer::{train, Objective, Output, Settings};

type AB = Autodiff<Flex>;

fn report(model: &Llama<AB>, tok: &mcts_ps::model::tokenizer::Tokenizer, test: &[Problem], label: &str) {
    let mut e = Engine::new(model.valid(), tok.clone(), 64, 256, 100_000, &Default::default());
    let mut line = format!("{label:>8}:");
    for (temp, runs) in [(0.0, 1u64), (0.7, 5)] {
        let s = EvalSettings { temperature: temp, top_p: 1.0, max_tokens: 200 };
        let accs: Vec<f64> = (0..runs)
            .map(|r| {
                accuracy(
                    &run_once(&mut e, test, TaskKind::Arith, Template::Plain, &[], &s, 0, r, || {}).unwrap(),
                )
            })
            .collect();
        let (m, se) = mean_se(&accs);
        line += &format!("  T={temp}: {:.1} ± {:.1} %", 100.0 * m, 100.0 * se);
    }
    println!("{line}");
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let ckpt =
        std::path::PathBuf::from(a.get(1).expect("usage: finetune_check CHECKPOINT [N] [LR] [EPOCHS]"));
    let n: usize = a.get(2).map_or(200, |x| x.parse().unwrap());
    let lr: f64 = a.get(3).map_or(2e-4, |x| x.parse().unwrap());
    let epochs: usize = a.get(4).map_or(2, |x| x.parse().unwrap());
    let exp: mcts_ps::config::Experiment =
        figment::Figment::from(Layer::toml("built-in defaults", None, DEFAULTS).unwrap()).extract().unwrap();
    let spec = exp.task.arith;
    let test = generate_pool(&spec, 0, Pool::Test, 300, &Default::default());
    let exclude = test.iter().map(|p| p.question.clone()).collect();
    let train_set = generate_pool(&spec, 0, Pool::Train, n, &exclude);
    let (model, tok) = load_hf_dir::<AB>(&ckpt, &Default::default(), DType::F32).unwrap();
    report(&model, &tok, &test, "before");
    let examples = solution_examples(&tok, &train_set, TaskKind::Arith, Template::Plain).unwrap();
    let s = Settings {
        lr,
        epochs,
        batch_size: 16,
        weight_decay: 0.0,
        warmup_steps: 0,
        grad_clip: 1.0,
        min_lr_frac: 0.1,
        seed: 0,
        purpose: "finetune-check".into(),
        max_steps: None,
        stop_after: None,
    };
    let (model, rep) = train(model, &Objective::Nll(&examples), &s, &Output::default(), None).unwrap();
    println!(
        "fine-tuned on {n} reference solutions: {} steps, lr {lr}, {epochs} epochs, final loss {:.3}",
        rep.steps, rep.final_loss
    );
    report(&model, &tok, &test, "after");
}
