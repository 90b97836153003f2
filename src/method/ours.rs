//! The paper's method, one iteration: MCTS on the iteration's problems with the previous
//! model (trees are independent of `alpha`, so an alpha sweep shares them), eq. (1) records
//! at `alpha`, and eq. (2) training from the previous model against itself as reference.

use std::collections::{HashMap, HashSet};

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::fit_and_save;
use super::policy::EnginePolicy;
use super::{
    continuation_tokens, engine, load_train, prepare_for_training, read_jsonl, save_untrained,
    train_settings, write_jsonl, ModelSummary,
};
use crate::error::Result;
use crate::model::backend::InferBackend;
use crate::search::run::Search;
use crate::search::{records, ProblemResult, Record, RootTree};
use crate::stage::{Ctx, Key, ModelRef};
use crate::task::Problem;
use crate::train::data::Example;
use crate::train::trainer::Objective;

/// Summary of an MCTS stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MctsSummary {
    /// Problems searched.
    pub problems: usize,
    /// Roots (partial solutions) searched.
    pub roots: usize,
    /// MCTS iterations run.
    pub rollouts: u64,
    /// Tokens generated.
    pub tokens_generated: u64,
    /// Prompt positions requested.
    pub prompt_tokens: u64,
    /// Prompt positions computed (the rest were copied from the prefix cache).
    pub prefill_tokens: u64,
    /// Share of requested prompt positions that were computed.
    pub prefill_ratio: f64,
    /// Problems whose final partial solution is correct.
    pub solutions_correct: usize,
    /// Wall seconds of this attempt.
    pub seconds: f64,
    /// Rollouts per second.
    pub rollouts_per_s: f64,
    /// Generated tokens per second.
    pub tokens_per_s: f64,
}

/// Tree statistics of the problems an MCTS stage has finished so far (its progress message).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TreeStats {
    /// Roots searched.
    pub roots: usize,
    /// Roots with at least one correct rollout (Q > 0).
    pub roots_correct: usize,
    /// Eq. (1) records (children with r != 0).
    pub records: usize,
    /// Problems finished.
    pub problems: usize,
    /// Problems whose advanced solution is correct.
    pub solved: usize,
}

impl TreeStats {
    /// Counts one finished problem.
    pub fn add(&mut self, r: &ProblemResult) {
        self.roots += r.trees.len();
        self.roots_correct += r.trees.iter().filter(|t| t.root.q > 0.0).count();
        self.records += r.records.len();
        self.problems += 1;
        self.solved += usize::from(r.solution_correct);
    }
}

impl std::fmt::Display for TreeStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "roots with a correct rollout {}/{}, records {}, mean depth {:.1} roots/problem, solutions correct {}/{}",
            self.roots_correct,
            self.roots,
            self.records,
            self.roots as f64 / self.problems.max(1) as f64,
            self.solved,
            self.problems
        )
    }
}

/// The key of the MCTS stage for `model` on `problems` at `iteration` (no `alpha`).
pub fn mcts_key<AB: AutodiffBackend>(
    ctx: &Ctx<AB>,
    model: &ModelRef,
    problems: &[Problem],
    iteration: u64,
) -> Key
where
    AB::InnerBackend: InferBackend,
{
    let e = &ctx.cfg.exp;
    let mut m = e.mcts.clone();
    m.alpha = 1.0; // eq. (1) scale only; trees do not depend on it
    m.problems_in_flight = 0; // batching never changes results
    let ids: Vec<(u64, &str)> = problems.iter().map(|p| (p.id, p.question.as_str())).collect();
    Key::new(
        "mcts",
        &(
            &model.id,
            &m,
            ctx.cfg.train_seed,
            iteration,
            ctx.train_kind,
            ctx.prompt_key(),
            Key::new("problems", &ids).hash,
        ),
    )
}

/// Runs (or resumes) MCTS; per-problem results are written as they finish, so a killed run
/// loses at most the problems in flight. Writes `trees.jsonl`, `solutions.jsonl` and the
/// summary (the alpha-dependent records belong to the training stage).
pub fn mcts<AB: AutodiffBackend>(
    ctx: &mut Ctx<AB>,
    model: &ModelRef,
    problems: &[Problem],
    iteration: u64,
    label: &str,
) -> Result<(Key, MctsSummary)>
where
    AB::InnerBackend: InferBackend,
{
    let key = mcts_key(ctx, model, problems, iteration);
    ctx.shard_out(&key, problems.len(), &format!("mcts {label}"))?;
    let summary = ctx.stage(&key, &format!("mcts {label}"), |ctx: &mut Ctx<AB>, dir: &std::path::Path| {
        let parts = dir.join("problems");
        std::fs::create_dir_all(&parts).map_err(|e| crate::Error::io(&parts, e))?;
        let mut done: HashSet<u64> = problems.iter().map(|p| p.id).filter(|id| parts.join(format!("{id}.json")).is_file()).collect();
        // A shard computes its own problems only (position j with j % count == index).
        let shard = crate::stage::shard().cloned();
        if let Some(sh) = &shard {
            done.extend(problems.iter().enumerate().filter(|(j, _)| !sh.owns(*j)).map(|(_, p)| p.id));
        }
        let t0 = std::time::Instant::now();
        // The model is loaded only when there is a problem left (a coordinator merging its
        // shards' problems needs no model, nor a GPU); the engine counters are this process's.
        let mut st = crate::infer::engine::Stats::default();
        if done.len() < problems.len() {
            let mut eng = engine(ctx, model)?;
            let template = ctx.template.expect("set by engine()");
            let cfg = ctx.cfg.exp.mcts.clone();
            let search = Search { cfg: &cfg, kind: ctx.train_kind, seed: ctx.cfg.train_seed, iteration };
            let bar = ctx.bar(problems.len() as u64, &format!("mcts {label}"));
            bar.set_position(done.len() as u64);
            let shots = ctx.shots.clone();
            let mut policy = EnginePolicy::new(&mut eng, template, &shots, ctx.train_kind);
            let mut so_far = TreeStats::default();
            search.run(&mut policy, problems, &done, |r: ProblemResult| {
                let json = serde_json::to_string(&r).expect("serialisable");
                crate::util::write_atomic(&parts.join(format!("{}.json", r.problem)), json.as_bytes())?;
                so_far.add(&r);
                bar.set_message(so_far.to_string());
                bar.inc(1);
                Ok(())
            })?;
            bar.finish_and_clear();
            drop(policy);
            st = eng.stats;
        }
        if crate::stage::partial_shard().is_some() {
            return Err(crate::Error::ShardDone);
        }
        let mut results = Vec::with_capacity(problems.len());
        for p in problems {
            let path = parts.join(format!("{}.json", p.id));
            let text = crate::error::read_to_string(&path)?;
            let r: ProblemResult = serde_json::from_str(&text)
                .map_err(|e| crate::Error::Checkpoint { path: path.clone(), message: e.to_string() })?;
            results.push(r);
        }
        let trees: Vec<&RootTree> = results.iter().flat_map(|r| r.trees.iter()).collect();
        write_jsonl(&dir.join("trees.jsonl"), &trees)?;
        // The eq. (1) records depend on alpha, which this stage's key leaves out: each
        // training stage writes its own (`records.jsonl` in its folder).
        let sols: Vec<serde_json::Value> = results
            .iter()
            .map(|r| serde_json::json!({"problem": r.problem, "solution": r.solution, "correct": r.solution_correct}))
            .collect();
        write_jsonl(&dir.join("solutions.jsonl"), &sols)?;
        let secs = t0.elapsed().as_secs_f64() + crate::stage::shard_seconds(dir);
        let rollouts: u64 = results.iter().map(|r| r.rollouts).sum();
        Ok(MctsSummary {
            problems: results.len(),
            roots: trees.len(),
            rollouts,
            tokens_generated: results.iter().map(|r| r.tokens).sum(),
            prompt_tokens: st.prompt_tokens,
            prefill_tokens: st.prefill_tokens,
            prefill_ratio: st.prefill_tokens as f64 / st.prompt_tokens.max(1) as f64,
            solutions_correct: results.iter().filter(|r| r.solution_correct).count(),
            seconds: secs,
            rollouts_per_s: rollouts as f64 / secs,
            tokens_per_s: st.generated_tokens as f64 / secs,
        })
    })?;
    Ok((key, summary))
}

/// The root trees an MCTS stage wrote.
pub fn trees<AB: AutodiffBackend>(ctx: &Ctx<AB>, key: &Key) -> Result<Vec<RootTree>>
where
    AB::InnerBackend: InferBackend,
{
    read_jsonl(&ctx.store.dir(key).join("trees.jsonl"))
}

/// Trains `prev` on the eq. (1) records of `mcts` with eq. (2) against `prev` itself.
pub fn train_iteration<AB: AutodiffBackend>(
    ctx: &mut Ctx<AB>,
    prev: &ModelRef,
    mcts: &Key,
    problems: &[Problem],
    iteration: u64,
) -> Result<ModelRef>
where
    AB::InnerBackend: InferBackend,
{
    let e = &ctx.cfg.exp;
    let key = Key::new(
        "train-ours",
        &(
            &prev.id,
            &mcts.hash,
            e.mcts.alpha,
            e.ours.beta,
            &e.train,
            super::method_lr(&ctx.cfg, e.ours.lr),
            ctx.cfg.train_seed,
            iteration,
        ),
    );
    ctx.job_out(&key, &format!("train ours iter {iteration}"))?;
    let s: ModelSummary = ctx.stage(
        &key,
        &format!("train ours iter {iteration}"),
        |ctx: &mut Ctx<AB>, dir: &std::path::Path| {
            let t0 = std::time::Instant::now();
            let alpha = ctx.cfg.exp.mcts.alpha;
            let recs: Vec<Record> = trees(ctx, mcts)?.iter().flat_map(|t| records(t, alpha)).collect();
            write_jsonl(&dir.join("records.jsonl"), &recs)?;
            let (model, tok) = load_train(ctx, prev)?;
            let reference = model.valid();
            let questions: HashMap<u64, &str> =
                problems.iter().map(|p| (p.id, p.question.as_str())).collect();
            let template = ctx.template.expect("resolved at start");
            let examples = recs
                .iter()
                .map(|r| {
                    let (tokens, loss_from) = continuation_tokens(
                        &tok,
                        template,
                        &ctx.shots,
                        ctx.train_kind,
                        questions[&r.problem],
                        &r.partial,
                        &r.step,
                        r.is_final,
                    )?;
                    Ok(Example { tokens, loss_from, weight: r.r as f32 })
                })
                .collect::<Result<Vec<_>>>()?;
            if examples.is_empty() {
                let w = format!(
                    "ours iteration {iteration}: MCTS gave 0 training records on {} problems (every child of \
                     every root scored the same; raise mcts.rollouts or ours.problems_per_iteration): the \
                     model is the previous iteration's, untrained",
                    problems.len()
                );
                return save_untrained(ctx, model, &tok, dir, &key, t0, 0, w);
            }
            let purpose = format!("ours-train-{iteration}");
            let model = prepare_for_training(ctx, model, &purpose);
            let settings = train_settings(ctx, &purpose, super::method_lr(&ctx.cfg, ctx.cfg.exp.ours.lr));
            let objective = Objective::WeightedKl {
                examples: &examples,
                reference: &reference,
                beta: ctx.cfg.exp.ours.beta,
            };
            let label = format!("train ours {iteration}");
            let (ckpt, rep) = fit_and_save(ctx, model, &tok, &objective, &settings, dir, &label)?;
            Ok(ModelSummary::trained(&key, ckpt, examples.len(), &rep, t0, 0))
        },
    )?;
    Ok(s.model)
}
