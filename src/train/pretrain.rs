//! Pretraining the `tiny` preset from scratch: next-token NLL on reference solutions of
//! synthetic arithmetic problems (prompt `question + blank line`, loss on the solution and the
//! end-of-sequence token), so the model starts imperfect but useful at the task.

use std::collections::HashSet;

use burn::tensor::backend::AutodiffBackend;
use indicatif::ProgressBar;

use super::data::Example;
use super::trainer::{train, Objective, Output, Report, Settings};
use crate::config::schema::{Pretrain, TinyArch};
use crate::error::Result;
use crate::infer::encode_prompt;
use crate::model::tokenizer::Tokenizer;
use crate::model::{Llama, LlamaConfig};
use crate::task::arith::{generate_pool, ArithSpec, Pool};
use crate::task::prompt::Template;
use crate::task::TaskKind;

/// The tiny architecture from `[model.tiny]`.
pub fn tiny_config(arch: &TinyArch, vocab: usize, context: usize) -> LlamaConfig {
    let mut c = LlamaConfig::tiny(vocab, context);
    c.hidden_size = arch.hidden_size;
    c.intermediate_size = arch.intermediate_size;
    c.num_layers = arch.layers;
    c.num_heads = arch.heads;
    c.num_kv_heads = arch.kv_heads;
    c.head_dim = arch.hidden_size / arch.heads;
    c.tie_word_embeddings = arch.tie_embeddings;
    c
}

/// The tiny model's tokenizer for `[model.tiny] vocab`.
pub fn tiny_tokenizer(vocab: &str) -> Tokenizer {
    match vocab {
        "chars" => Tokenizer::char_level(),
        _ => Tokenizer::word_level(&crate::task::arith::words()),
    }
}

/// Training sequences: prompt, then the reference solution and end-of-sequence, loss on the
/// solution part.
pub fn solution_examples(
    tok: &Tokenizer,
    problems: &[crate::task::Problem],
    kind: TaskKind,
    template: Template,
) -> Result<Vec<Example>> {
    problems
        .iter()
        .filter_map(|p| p.solution.as_ref().map(|s| (p, s)))
        .map(|(p, sol)| {
            let mut tokens = encode_prompt(tok, template, &[], kind, &p.question)?;
            let loss_from = tokens.len();
            tokens.extend(tok.encode(sol)?);
            tokens.extend(tok.eos.first());
            Ok(Example { tokens, loss_from, weight: 1.0 })
        })
        .collect()
}

/// Initialises and pretrains the tiny model. `exclude` are the test questions, never trained on.
#[allow(clippy::too_many_arguments)]
pub fn pretrain_tiny<AB: AutodiffBackend>(
    arch: &TinyArch,
    spec: &ArithSpec,
    cfg: &Pretrain,
    context: usize,
    seed: u64,
    exclude: &HashSet<String>,
    out: &Output,
    bar: Option<&ProgressBar>,
) -> Result<(Llama<AB>, Tokenizer, Report)> {
    let tok = tiny_tokenizer(&arch.vocab);
    let model_cfg = tiny_config(arch, tok.vocab_size(), context);
    let model = Llama::<AB>::init(&model_cfg, seed, &Default::default());
    let problems = generate_pool(spec, seed, Pool::Pretrain, cfg.problems, exclude);
    let examples = solution_examples(&tok, &problems, TaskKind::Arith, Template::Plain)?;
    let settings = Settings {
        lr: cfg.lr,
        epochs: (cfg.steps * cfg.batch_size).div_ceil(examples.len()).max(1),
        batch_size: cfg.batch_size,
        weight_decay: 0.01,
        warmup_steps: cfg.warmup_steps,
        grad_clip: 1.0,
        min_lr_frac: 0.1,
        seed,
        purpose: "pretrain-order".into(),
        max_steps: Some(cfg.steps),
        stop_after: None,
    };
    let (model, report) = train(model, &Objective::Nll(&examples), &settings, out, bar)?;
    Ok((model, tok, report))
}
