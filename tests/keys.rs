//! Stage keys include every setting that changes a stage's output: for a checkpoint model,
//! `model.dtype`, `model.backend` and `model.context` change the keys of its evaluation and MCTS
//! stages (and so of everything downstream); alpha changes the training stage's, not MCTS's.

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use mcts_ps::config::schema::{Backend, Dtype};
use mcts_ps::method::{self, draw, ours};
use mcts_ps::stage::{progress, Ctx};

type AB = Autodiff<Flex>;

fn config(dir: &Path, model: &Path, extra: &[&str]) -> mcts_ps::config::Resolved {
    let file = dir.join("exp.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"keys\"\nbaselines = []\n[model]\npath = \"{}\"\ncontext = 128\n[task]\nkind = \"arith\"\ntrain_size = 20\ntest_size = 4\n[ours]\nproblems_per_iteration = 2\n",
            model.display()
        ),
    )
    .unwrap();
    let sets: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    mcts_ps::config::load(&file, &sets, &[]).unwrap().runs.remove(0).config
}

/// (model id, MCTS key, eval key). `edit` changes the resolved experiment directly: a build
/// without CUDA rejects `model.backend = "cuda"` when loading, but the keys must still differ.
fn keys(
    dir: &Path,
    model: &Path,
    extra: &[&str],
    edit: fn(&mut mcts_ps::config::Experiment),
) -> (String, String, String) {
    let mut cfg = config(dir, model, extra);
    edit(&mut cfg.exp);
    let out = dir.join("results");
    let mut ctx =
        Ctx::<AB>::new(cfg, &out, Default::default(), burn::tensor::DType::F32, progress()).unwrap();
    let base = method::base_model(&mut ctx).unwrap();
    let problems = draw(&ctx.train_pool, 2, ctx.cfg.train_seed, "iteration-problems", &[1]);
    let mcts = ours::mcts_key(&ctx, &base, &problems, 1);
    let eval = method::eval_key(&ctx, &base, method::Split::Test);
    (base.id, mcts.hash, eval.hash)
}

#[test]
fn runtime_settings_change_the_keys_of_a_checkpoint_models_stages() {
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_llama");
    let none = |_: &mut mcts_ps::config::Experiment| {};
    let base = keys(dir.path(), &model, &[], none);
    assert_eq!(base, keys(dir.path(), &model, &[], none), "keys are deterministic");
    let cuda = keys(dir.path(), &model, &[], |e| e.model.backend = Backend::Cuda);
    let bf16 = keys(dir.path(), &model, &[], |e| {
        e.model.backend = Backend::Cuda;
        e.model.dtype = Dtype::Bf16;
    });
    let context = keys(dir.path(), &model, &["model.context=96"], none);
    for (what, a, b) in [("backend", &cuda, &base), ("dtype", &bf16, &cuda), ("context", &context, &base)] {
        assert_ne!(a.0, b.0, "{what}: model id");
        assert_ne!(a.1, b.1, "{what}: MCTS key");
        assert_ne!(a.2, b.2, "{what}: eval key");
    }
    // alpha only weights the records, which the training stage computes: MCTS is shared.
    let k = keys(dir.path(), &model, &["mcts.alpha=0.5"], none);
    assert_eq!(k.1, base.1, "alpha does not change the MCTS key");
}

#[test]
fn worked_examples_and_training_seeds_change_the_keys_they_should() {
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_llama");
    let none = |_: &mut mcts_ps::config::Experiment| {};
    let base = keys(dir.path(), &model, &[], none);
    // Worked examples change every prompt: MCTS and evaluation.
    let shots = keys(dir.path(), &model, &["task.shots=2"], none);
    assert_eq!(shots.0, base.0, "the base model is the same");
    assert_ne!(shots.1, base.1, "shots: MCTS key");
    assert_ne!(shots.2, base.2, "shots: eval key");
    // A training seed changes MCTS (its draws and samples), not the base model's evaluation
    // (evaluation draws stay on `seed`, so every seed meets the same ones).
    let mut cfg = config(dir.path(), &model, &["seeds=[0, 7]"]);
    cfg.train_seed = 7;
    let out = dir.path().join("results");
    let mut ctx =
        Ctx::<AB>::new(cfg, &out, Default::default(), burn::tensor::DType::F32, progress()).unwrap();
    let b = method::base_model(&mut ctx).unwrap();
    let problems = draw(&ctx.train_pool, 2, ctx.cfg.train_seed, "iteration-problems", &[1]);
    assert_ne!(ours::mcts_key(&ctx, &b, &problems, 1).hash, base.1, "seed 7: MCTS key");
    assert_eq!(method::eval_key(&ctx, &b, method::Split::Test).hash, base.2, "seed 7: eval key");
    // The validation split is another stage than the test set.
    let cfg = config(dir.path(), &model, &["task.val_size=4"]);
    let ctx = Ctx::<AB>::new(cfg, &out, Default::default(), burn::tensor::DType::F32, progress()).unwrap();
    assert_ne!(
        method::eval_key(&ctx, &b, method::Split::Validation).hash,
        method::eval_key(&ctx, &b, method::Split::Test).hash
    );
}
