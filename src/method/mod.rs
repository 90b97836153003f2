//! The methods of Table 1 as stages over the shared services: the base model (pretrained for
//! `preset = "tiny"`), evaluation, zero-shot CoT, RFT, step-level DPO and ours. Every model
//! is evaluated by the same [`evaluate`] on the same test set and seeds.

pub mod ours;
pub mod policy;
pub mod rft;
pub mod step_dpo;

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::config::ModelSource;
use crate::error::{Error, Result};
use crate::eval::{accuracy, run_once, stats, EvalSettings, Outcome};
use crate::infer::Engine;
use crate::model::backend::InferBackend;
use crate::model::load::{load_gguf, template_for};
use crate::model::tokenizer::Tokenizer;
use crate::model::weights::{load_hf_dir, save_checkpoint};
use crate::model::Llama;
use crate::rng::Stream;
use crate::stage::{Ctx, Key, ModelRef};
use crate::task::Problem;
use crate::train::trainer::{train, Objective, Output, Report, Settings};

pub use crate::eval::EvalSummary;
pub use crate::task::draw;
pub use crate::util::{read_jsonl, write_jsonl};

/// Summary of a stage that produced a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// The model.
    pub model: ModelRef,
    /// Training examples (or pairs) used.
    pub examples: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Mean training loss of the last epoch.
    pub final_loss: f64,
    /// Wall seconds.
    pub seconds: f64,
    /// Tokens generated to make the training data (sampling), if any.
    #[serde(default)]
    pub data_tokens: u64,
    /// What went wrong without stopping the run (no data to train on); the table shows it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl ModelSummary {
    /// The summary of training stage `key`: checkpoint `ckpt`, `examples` used, the loop's
    /// report, wall time since `started` and the tokens generated to make the data.
    pub fn trained(
        key: &Key,
        ckpt: std::path::PathBuf,
        examples: usize,
        rep: &Report,
        started: std::time::Instant,
        data_tokens: u64,
    ) -> Self {
        Self {
            model: ModelRef { id: key.hash.clone(), path: ckpt },
            examples,
            steps: rep.steps,
            final_loss: rep.final_loss,
            seconds: started.elapsed().as_secs_f64(),
            data_tokens,
            warnings: Vec::new(),
        }
    }
}

/// The tail every fine-tuning stage shares: trains `model` on `objective` with metrics and
/// resumable state (saved every 50 steps) in the stage folder `dir` and a progress bar named
/// `label`, then saves the checkpoint as `dir/checkpoint`; returns its path and the report.
pub fn fit_and_save<AB: AutodiffBackend>(
    ctx: &Ctx<AB>,
    model: Llama<AB>,
    tok: &Tokenizer,
    objective: &Objective<'_, AB>,
    settings: &Settings,
    dir: &Path,
    label: &str,
) -> Result<(std::path::PathBuf, Report)>
where
    AB::InnerBackend: InferBackend,
{
    let bar = ctx.bar(0, label);
    let out =
        Output { metrics: Some(dir.join("metrics.csv")), state_dir: Some(dir.join("state")), save_every: 50 };
    let (model, rep) = train(model, objective, settings, &out, Some(&bar))?;
    bar.finish_and_clear();
    let ckpt = dir.join("checkpoint");
    save_checkpoint(&model, tok, &ckpt)?;
    Ok((ckpt, rep))
}

/// A training stage with no examples: the model is saved unchanged (so the stages after it
/// run, on the previous model) and the summary carries `warning`, which run.log and the table
/// show.
#[allow(clippy::too_many_arguments)]
pub fn save_untrained<AB: AutodiffBackend>(
    ctx: &mut Ctx<AB>,
    model: Llama<AB>,
    tok: &Tokenizer,
    dir: &Path,
    key: &Key,
    started: std::time::Instant,
    data_tokens: u64,
    warning: String,
) -> Result<ModelSummary>
where
    AB::InnerBackend: InferBackend,
{
    ctx.warn(&warning);
    let ckpt = dir.join("checkpoint");
    save_checkpoint(&model, tok, &ckpt)?;
    let rep = Report { steps: 0, final_loss: 0.0, ..Default::default() };
    let mut s = ModelSummary::trained(key, ckpt, 0, &rep, started, data_tokens);
    s.warnings.push(warning);
    Ok(s)
}

/// Loads a model for inference.
pub fn load_infer<AB: AutodiffBackend>(
    ctx: &Ctx<AB>,
    m: &ModelRef,
) -> Result<(Llama<AB::InnerBackend>, Tokenizer)>
where
    AB::InnerBackend: InferBackend,
{
    if m.path.extension().is_some_and(|e| e == "gguf") {
        load_gguf::<AB::InnerBackend>(&m.path, ctx.cfg.exp.model.context, &ctx.device, ctx.dtype)
    } else {
        load_hf_dir::<AB::InnerBackend>(&m.path, &ctx.device, ctx.dtype)
    }
}

/// Loads a model for training.
pub fn load_train<AB: AutodiffBackend>(ctx: &Ctx<AB>, m: &ModelRef) -> Result<(Llama<AB>, Tokenizer)>
where
    AB::InnerBackend: InferBackend,
{
    let dev: AB::Device = Default::default();
    let _ = &ctx.device;
    if m.path.extension().is_some_and(|e| e == "gguf") {
        load_gguf::<AB>(&m.path, ctx.cfg.exp.model.context, &dev, ctx.dtype)
    } else {
        load_hf_dir::<AB>(&m.path, &dev, ctx.dtype)
    }
}

/// An inference engine for a model, with the run's batch size and context.
pub fn engine<AB: AutodiffBackend>(ctx: &mut Ctx<AB>, m: &ModelRef) -> Result<Engine<AB::InnerBackend>>
where
    AB::InnerBackend: InferBackend,
{
    let (model, tok) = load_infer(ctx, m)?;
    if ctx.template.is_none() {
        ctx.template = Some(template_for(&tok));
    }
    let cap = ctx.cfg.exp.model.context;
    Ok(Engine::new(model, tok, ctx.cfg.exp.infer.batch_size, cap, 128 * cap, &ctx.device))
}

/// A fingerprint of a user-given model: its path, and each file's size and modification time.
fn fingerprint(path: &Path) -> Result<String> {
    let mut parts = vec![path.display().to_string()];
    let files: Vec<std::path::PathBuf> = if path.is_dir() {
        let mut v: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| Error::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_path_buf()]
    };
    for f in files {
        let m = std::fs::metadata(&f).map_err(|e| Error::io(&f, e))?;
        let mtime = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        parts.push(format!("{}:{}:{}", f.display(), m.len(), mtime));
    }
    Ok(Key::new("source", &parts).hash)
}

/// The settings every stage's output depends on besides its inputs: `model.backend`,
/// `model.dtype` and `model.context` (part of the base model's identity, so of every key
/// downstream of it).
pub fn runtime<AB: AutodiffBackend>(
    ctx: &Ctx<AB>,
) -> (crate::config::schema::Backend, crate::config::schema::Dtype, usize)
where
    AB::InnerBackend: InferBackend,
{
    let m = &ctx.cfg.exp.model;
    (m.backend, m.dtype, m.context)
}

/// The base model: the pretrained tiny preset (a stage) or the user's checkpoint.
pub fn base_model<AB: AutodiffBackend>(ctx: &mut Ctx<AB>) -> Result<ModelRef>
where
    AB::InnerBackend: InferBackend,
{
    match ctx.cfg.model.clone() {
        ModelSource::Path(p) => {
            // A model is identified with how it runs: the same files in bf16, on another
            // backend or with another context length give other outputs downstream.
            let id = Key::new("model", &(fingerprint(&p)?, runtime(ctx))).hash;
            Ok(ModelRef { id, path: p })
        }
        ModelSource::Tiny => {
            let e = &ctx.cfg.exp;
            // Pretraining never sees a test or validation question.
            let test_ids: Vec<&str> = ctx.test_set.iter().map(|p| p.question.as_str()).collect();
            let val_ids: Vec<&str> = ctx.val_set.iter().map(|p| p.question.as_str()).collect();
            let key = Key::new(
                "pretrain",
                &(
                    &e.model.tiny,
                    &e.pretrain,
                    &e.task.arith,
                    e.seed,
                    runtime(ctx),
                    Key::new("questions", &test_ids).hash,
                    Key::new("validation questions", &val_ids).hash,
                ),
            );
            ctx.job_out(&key, "pretrain tiny")?;
            let s: ModelSummary =
                ctx.stage(&key, "pretrain tiny", |ctx: &mut Ctx<AB>, dir: &std::path::Path| {
                    let e = ctx.cfg.exp.clone();
                    let exclude =
                        ctx.test_set.iter().chain(&ctx.val_set).map(|p| p.question.clone()).collect();
                    let bar = ctx.bar(e.pretrain.steps as u64, "pretrain");
                    let out = Output {
                        metrics: Some(dir.join("metrics.csv")),
                        state_dir: Some(dir.join("state")),
                        save_every: 200,
                    };
                    let t0 = std::time::Instant::now();
                    let (model, tok, rep) = crate::train::pretrain::pretrain_tiny::<AB>(
                        &e.model.tiny,
                        &e.task.arith,
                        &e.pretrain,
                        e.model.context,
                        e.seed,
                        &exclude,
                        &out,
                        Some(&bar),
                    )?;
                    bar.finish_and_clear();
                    let ckpt = dir.join("checkpoint");
                    save_checkpoint(&model, &tok, &ckpt)?;
                    Ok(ModelSummary {
                        model: ModelRef { id: key.hash.clone(), path: ckpt },
                        examples: e.pretrain.problems,
                        steps: rep.steps,
                        final_loss: rep.final_loss,
                        seconds: t0.elapsed().as_secs_f64(),
                        data_tokens: 0,
                        warnings: Vec::new(),
                    })
                })?;
            Ok(s.model)
        }
    }
}

/// Test problems per evaluation item: a shard takes blocks of this many problems of one run
/// (a fixed size, so the items never depend on the number of shards).
pub const EVAL_BLOCK: usize = 100;

/// Which problems an evaluation stage solves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The test set, graded as the test task.
    Test,
    /// The validation problems taken out of the training pool (`task.val_size`), graded as
    /// the training task: what sweeps and any tuning read.
    Validation,
}

impl Split {
    /// The problems and their grader.
    pub fn problems<AB: AutodiffBackend>(self, ctx: &Ctx<AB>) -> (&[Problem], crate::task::TaskKind)
    where
        AB::InnerBackend: InferBackend,
    {
        match self {
            Split::Test => (&ctx.test_set, ctx.test_kind),
            Split::Validation => (&ctx.val_set, ctx.train_kind),
        }
    }
}

/// The key of the evaluation stage of `model` on `split` (the problems are part of the key, so
/// the two splits never share a stage).
pub fn eval_key<AB: AutodiffBackend>(ctx: &Ctx<AB>, model: &ModelRef, split: Split) -> Key
where
    AB::InnerBackend: InferBackend,
{
    let e = &ctx.cfg.exp;
    let settings =
        EvalSettings { temperature: e.eval.temperature, top_p: e.eval.top_p, max_tokens: e.eval.max_tokens };
    let (set, kind) = split.problems(ctx);
    let questions: Vec<(&str, &str)> = set.iter().map(|p| (p.question.as_str(), p.answer.as_str())).collect();
    Key::new(
        "eval",
        &(
            &model.id,
            &settings,
            e.eval.runs,
            e.seed,
            kind,
            ctx.prompt_key(),
            Key::new("test", &questions).hash,
        ),
    )
}

/// Evaluates `model` on `split`: `eval.runs` sampled runs, each problem with its own stream
/// `(seed, "eval", [run, problem])` (the experiment's seed, never a training seed), so every
/// method meets the same draws. Outcomes go to `eval.jsonl`; each finished block of a run is
/// kept, so an interrupted evaluation resumes.
pub fn evaluate<AB: AutodiffBackend>(
    ctx: &mut Ctx<AB>,
    model: &ModelRef,
    label: &str,
    split: Split,
) -> Result<(Key, EvalSummary)>
where
    AB::InnerBackend: InferBackend,
{
    let e = &ctx.cfg.exp;
    let settings =
        EvalSettings { temperature: e.eval.temperature, top_p: e.eval.top_p, max_tokens: e.eval.max_tokens };
    let key = eval_key(ctx, model, split);
    let runs = e.eval.runs;
    let (set, kind) = split.problems(ctx);
    let set = set.to_vec();
    let blocks = set.len().div_ceil(EVAL_BLOCK).max(1);
    ctx.shard_out(&key, runs * blocks, &format!("eval {label}"))?;
    let shard = crate::stage::shard().cloned();
    let summary = ctx.stage(&key, &format!("eval {label}"), |ctx: &mut Ctx<AB>, dir: &std::path::Path| {
        let t0 = std::time::Instant::now();
        // Loaded at the first block left to compute (merging shards' runs needs no model).
        let mut eng = None;
        let n = set.len();
        let bar = ctx.bar((runs * n) as u64, &format!("eval {label}"));
        let mut accuracies = Vec::with_capacity(runs);
        let mut all = Vec::new();
        for run in 0..runs as u64 {
            let path = dir.join(format!("run-{run}.jsonl"));
            if path.is_file() {
                let outcomes: Vec<Outcome> = read_jsonl(&path)?;
                bar.inc(n as u64);
                accuracies.push(accuracy(&outcomes));
                all.extend(outcomes);
                continue;
            }
            // Item `run * blocks + b` is block `b` of this run (EVAL_BLOCK test problems); a
            // partial shard computes its own blocks, the whole stage the ones still missing.
            let block_path = |b: usize| dir.join(format!("run-{run}.block-{b}.jsonl"));
            let mine: Vec<usize> = (0..blocks)
                .filter(|&b| shard.as_ref().is_none_or(|sh| sh.owns(run as usize * blocks + b)))
                .filter(|&b| !block_path(b).is_file())
                .collect();
            let range = |b: usize| b * EVAL_BLOCK..((b + 1) * EVAL_BLOCK).min(n);
            if !mine.is_empty() {
                if eng.is_none() {
                    eng = Some(engine(ctx, model)?);
                }
                let t = ctx.template.expect("set by engine()");
                // One call over all the blocks to compute (the engine's batches stay full);
                // outcomes never depend on what is decoded beside them.
                let problems: Vec<Problem> = mine.iter().flat_map(|&b| set[range(b)].to_vec()).collect();
                let o = run_once(
                    eng.as_mut().expect("loaded above"),
                    &problems,
                    kind,
                    t,
                    &ctx.shots,
                    &settings,
                    ctx.cfg.exp.seed,
                    run,
                    || bar.inc(1),
                )?;
                let mut rest = o.as_slice();
                for &b in &mine {
                    let (head, tail) = rest.split_at(range(b).len());
                    write_jsonl(&block_path(b), head)?;
                    rest = tail;
                }
            }
            if crate::stage::partial_shard().is_some() {
                continue;
            }
            let mut outcomes: Vec<Outcome> = Vec::with_capacity(n);
            for b in 0..blocks {
                outcomes.extend(read_jsonl::<Outcome>(&block_path(b))?);
            }
            write_jsonl(&path, &outcomes)?;
            for b in 0..blocks {
                let p = block_path(b);
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
            accuracies.push(accuracy(&outcomes));
            all.extend(outcomes);
        }
        bar.finish_and_clear();
        if crate::stage::partial_shard().is_some() {
            return Err(Error::ShardDone);
        }
        write_jsonl(&dir.join("eval.jsonl"), &all)?;
        let (mean, se) = stats::mean_se(&accuracies);
        Ok(EvalSummary {
            accuracies,
            mean,
            se,
            tokens: all.iter().map(|o| o.tokens as u64).sum(),
            seconds: t0.elapsed().as_secs_f64() + crate::stage::shard_seconds(dir),
        })
    })?;
    Ok((key, summary))
}

/// A method's learning rate: its own key (`ours.lr`, `rft.lr`, `step_dpo.lr`) when set, else
/// `train.lr`.
pub fn method_lr(cfg: &crate::config::Resolved, own: f64) -> f64 {
    if own > 0.0 {
        own
    } else {
        cfg.exp.train.lr
    }
}

/// Training settings from `[train]` for a stage (`purpose` names its data-order stream) at
/// learning rate `lr` ([`method_lr`]).
pub fn train_settings<AB: AutodiffBackend>(ctx: &Ctx<AB>, purpose: &str, lr: f64) -> Settings
where
    AB::InnerBackend: InferBackend,
{
    let t = &ctx.cfg.exp.train;
    Settings {
        lr,
        epochs: t.epochs,
        batch_size: t.batch_size,
        weight_decay: t.weight_decay,
        warmup_steps: t.warmup_steps,
        grad_clip: t.grad_clip,
        min_lr_frac: t.min_lr_frac,
        seed: ctx.cfg.train_seed,
        purpose: purpose.to_string(),
        max_steps: None,
        stop_after: None,
    }
}

/// Applies `[train] mode`: LoRA adapters (merged on save) or full fine-tuning.
pub fn prepare_for_training<AB: AutodiffBackend>(ctx: &Ctx<AB>, model: Llama<AB>, purpose: &str) -> Llama<AB>
where
    AB::InnerBackend: InferBackend,
{
    let t = &ctx.cfg.exp.train;
    match t.mode {
        crate::config::schema::TrainMode::Full => model,
        crate::config::schema::TrainMode::Lora => {
            let id = u64::from_str_radix(&Key::new("lora", &purpose).hash, 16).expect("hex digest");
            let seed = Stream::new(ctx.cfg.train_seed, "lora-init", &[id]).next_u64();
            crate::train::lora::add_lora(model, t.lora_rank, t.lora_alpha, &t.lora_targets, seed)
        }
    }
}

/// Resolves `model.template = "auto"` from the base model's tokenizer.
pub fn resolve_template<AB: AutodiffBackend>(ctx: &mut Ctx<AB>, base: &ModelRef) -> Result<()>
where
    AB::InnerBackend: InferBackend,
{
    if ctx.template.is_some() {
        return Ok(());
    }
    let tok = if base.path.extension().is_some_and(|e| e == "gguf") {
        crate::model::gguf::Gguf::open(&base.path)?.tokenizer()?
    } else {
        Tokenizer::from_file(&base.path.join("tokenizer.json"), None, vec![])?
    };
    ctx.template = Some(template_for(&tok));
    Ok(())
}

/// Token ids of `prompt(question) + partial + continuation` and where the continuation starts.
/// A final continuation ends with the template's end-of-turn token ([`crate::infer::end_of_turn`]),
/// any other with the step separator.
#[allow(clippy::too_many_arguments)]
pub fn continuation_tokens(
    tok: &Tokenizer,
    template: crate::task::prompt::Template,
    shots: &[crate::task::prompt::Shot],
    kind: crate::task::TaskKind,
    question: &str,
    partial: &str,
    continuation: &str,
    is_final: bool,
) -> Result<(Vec<u32>, usize)> {
    let mut t = crate::infer::encode_prompt(tok, template, shots, kind, question)?;
    t.extend(tok.encode(partial)?);
    let start = t.len();
    if is_final {
        t.extend(tok.encode(continuation)?);
        t.push(crate::infer::end_of_turn(tok, template)?);
    } else {
        t.extend(tok.encode(&format!("{continuation}{}", crate::task::STEP_SEPARATOR))?);
    }
    Ok((t, start))
}
