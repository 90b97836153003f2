//! Rejection-sampling fine-tuning (Yuan et al. 2023): `samples_per_problem` sampled solutions
//! per training problem, the distinct correct ones kept, plain NLL fine-tuning of the base.

use std::collections::HashSet;

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::fit_and_save;
use super::{
    continuation_tokens, draw, engine, load_train, prepare_for_training, save_untrained, train_settings,
    write_jsonl, ModelSummary,
};
use crate::error::Result;
use crate::infer::{encode_prompt, Request, Stop};
use crate::model::backend::InferBackend;
use crate::rng::Stream;
use crate::stage::{Ctx, Key, ModelRef};
use crate::task::Problem;
use crate::train::data::Example;
use crate::train::trainer::Objective;

/// One kept (or rejected) sample.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RftSample {
    problem: u64,
    sample: usize,
    solution: String,
    correct: bool,
    /// The token limit or the context cut it: not a complete solution, never trained on.
    #[serde(default)]
    cut: bool,
    duplicate: bool,
}

/// One problem's draw, as its sampling shard stored it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Drawn {
    text: String,
    /// Tokens generated, the end-of-sequence token included when it was drawn.
    tokens: u64,
    /// Stopped by the token limit or the context, not by the model.
    #[serde(default)]
    cut: bool,
}

/// Most samples a problem draws under a token budget (a problem whose samples are all short
/// would otherwise draw without end).
pub const MAX_MATCHED_SAMPLES: usize = 64;

/// Samples, filters and fine-tunes; returns the RFT model. With `budget` (compute-matched RFT,
/// `rft.match_tokens`), each problem draws rounds of `samples_per_problem` samples until it
/// has generated `budget / problems` tokens (at most [`MAX_MATCHED_SAMPLES`]); every sample
/// keeps its own stream, so the draws never depend on batching or sharding.
pub fn rft<AB: AutodiffBackend>(ctx: &mut Ctx<AB>, base: &ModelRef, budget: Option<u64>) -> Result<ModelRef>
where
    AB::InnerBackend: InferBackend,
{
    let e = ctx.cfg.exp.clone();
    let problems = draw(&ctx.train_pool, e.rft.problems, ctx.cfg.train_seed, "rft-problems", &[]);
    let ids: Vec<u64> = problems.iter().map(|p| p.id).collect();
    let inputs = (
        &base.id,
        &RftKey::of(&e.rft),
        super::method_lr(&ctx.cfg, e.rft.lr),
        &ids,
        e.eval.max_tokens,
        &e.train,
        ctx.cfg.train_seed,
        ctx.prompt_key(),
        ctx.train_kind,
    );
    let key = match budget {
        None => Key::new("rft", &inputs),
        Some(b) => Key::new("rft", &(&inputs, "matched", b)),
    };
    let name = if budget.is_some() { "rft matched" } else { "rft" };
    let per_problem = budget.map(|b| b.div_ceil(problems.len().max(1) as u64));
    // Sampling splits by problem (each problem's draws are its own file under samples/);
    // the filtering and the fine-tuning are one job.
    ctx.shard_out(&key, problems.len(), &format!("{name} sample"))?;
    ctx.job_out(&key, name)?;
    let s: ModelSummary = ctx.stage(&key, name, |ctx: &mut Ctx<AB>, dir: &std::path::Path| {
        let t0 = std::time::Instant::now();
        let parts = dir.join("samples");
        std::fs::create_dir_all(&parts).map_err(|e| crate::Error::io(&parts, e))?;
        let part = |p: &Problem| parts.join(format!("{}.json", p.id));
        let shard = crate::stage::shard().cloned();
        let todo: Vec<&Problem> = problems
            .iter()
            .enumerate()
            .filter(|(j, p)| shard.as_ref().is_none_or(|sh| sh.owns(*j)) && !part(p).is_file())
            .map(|(_, p)| p)
            .collect();
        let k = e.rft.samples_per_problem;
        if !todo.is_empty() {
            let mut eng = engine(ctx, base)?;
            let template = ctx.template.expect("set by engine()");
            // Samples without a budget; problems with one (their rounds are not known ahead).
            let by_sample = per_problem.is_none();
            let len = if by_sample { todo.len() * k } else { todo.len() };
            let bar = ctx.bar(len as u64, &format!("{name} sample"));
            // Problems go to the engine in groups, each written when done, so an interrupted
            // stage resumes at the group; grouping never changes a draw.
            let group = (4 * e.infer.batch_size).div_ceil(k).max(1);
            for chunk in todo.chunks(group) {
                let prompts = chunk
                    .iter()
                    .map(|p| encode_prompt(&eng.tokenizer, template, &ctx.shots, ctx.train_kind, &p.question))
                    .collect::<Result<Vec<_>>>()?;
                let mut draws: Vec<Vec<Drawn>> = vec![Vec::new(); chunk.len()];
                // Rounds of k samples per problem: one round without a budget; with one, until
                // each problem's tokens reach its share.
                loop {
                    let mut reqs = Vec::new();
                    let mut owner = Vec::new();
                    for (i, (p, prompt)) in chunk.iter().zip(&prompts).enumerate() {
                        let used: u64 = draws[i].iter().map(|d| d.tokens).sum();
                        let more = match per_problem {
                            None => draws[i].is_empty(),
                            Some(b) => used < b && draws[i].len() < MAX_MATCHED_SAMPLES,
                        };
                        if !more {
                            continue;
                        }
                        let room = eng.capacity().saturating_sub(prompt.len() + 1).max(1);
                        let from = draws[i].len();
                        let to = if per_problem.is_some() {
                            (from + k).min(MAX_MATCHED_SAMPLES.max(k))
                        } else {
                            k
                        };
                        for j in from..to {
                            reqs.push(Request {
                                prompt: prompt.clone(),
                                max_new_tokens: e.eval.max_tokens.min(room),
                                temperature: e.rft.temperature,
                                top_p: 1.0,
                                stop: Stop::Eos,
                                rng: Stream::new(ctx.cfg.train_seed, "rft-sample", &[p.id, j as u64]),
                            });
                            owner.push(i);
                        }
                    }
                    if reqs.is_empty() {
                        break;
                    }
                    let outs = eng.generate(reqs, || bar.inc(u64::from(by_sample)))?;
                    for (i, c) in owner.into_iter().zip(outs) {
                        draws[i].push(Drawn {
                            text: c.text.clone(),
                            tokens: c.tokens.len() as u64 + u64::from(c.finish == crate::infer::Finish::Eos),
                            cut: c.finish != crate::infer::Finish::Eos,
                        });
                    }
                }
                for (p, d) in chunk.iter().zip(&draws) {
                    let json = serde_json::to_string(d).expect("serialisable");
                    crate::util::write_atomic(&part(p), json.as_bytes())?;
                }
                if !by_sample {
                    bar.inc(chunk.len() as u64);
                }
            }
            bar.finish_and_clear();
        }
        if crate::stage::partial_shard().is_some() {
            return Err(crate::Error::ShardDone);
        }
        let (model, tok) = load_train(ctx, base)?;
        let template = ctx.template.expect("resolved at start");
        let mut data_tokens = 0;
        let mut samples = Vec::with_capacity(problems.len() * k);
        for p in &problems {
            let path = part(p);
            let text = crate::error::read_to_string(&path)?;
            let draws: Vec<Drawn> = serde_json::from_str(&text)
                .map_err(|e| crate::Error::Checkpoint { path: path.clone(), message: e.to_string() })?;
            for (j, d) in draws.into_iter().enumerate() {
                data_tokens += d.tokens;
                samples.push(RftSample {
                    problem: p.id,
                    sample: j,
                    correct: ctx.train_kind.grade(&d.text, &p.answer).correct,
                    cut: d.cut,
                    duplicate: false,
                    solution: d.text,
                });
            }
        }
        let mut examples = Vec::new();
        let mut seen: HashSet<(u64, String)> = HashSet::new();
        for s in samples.iter_mut() {
            let p = problems.iter().find(|p| p.id == s.problem).expect("sampled problem");
            if !kept(ctx.train_kind, &s.solution, &p.answer, s.cut) {
                continue;
            }
            if !seen.insert((s.problem, s.solution.trim().to_string())) {
                s.duplicate = true;
                continue;
            }
            // The whole solution is the continuation of an empty partial solution, ending the turn.
            let (tokens, loss_from) = continuation_tokens(
                &tok,
                template,
                &ctx.shots,
                ctx.train_kind,
                &p.question,
                "",
                &s.solution,
                true,
            )?;
            examples.push(Example { tokens, loss_from, weight: 1.0 });
        }
        write_jsonl(&dir.join("samples.jsonl"), &samples)?;
        if examples.is_empty() {
            let w = format!(
                "{name}: 0 of {} samples were correct on {} problems (raise rft.samples_per_problem or \
                 rft.problems): the model is the base model, untrained",
                samples.len(),
                problems.len()
            );
            let mut s = save_untrained(ctx, model, &tok, dir, &key, t0, data_tokens, w)?;
            s.seconds += crate::stage::shard_seconds(dir);
            return Ok(s);
        }
        let model = prepare_for_training(ctx, model, "rft-train");
        let settings = train_settings(ctx, "rft-train", super::method_lr(&ctx.cfg, ctx.cfg.exp.rft.lr));
        let objective = Objective::Nll(&examples);
        let (ckpt, rep) = fit_and_save(ctx, model, &tok, &objective, &settings, dir, "train rft")?;
        let mut s = ModelSummary::trained(&key, ckpt, examples.len(), &rep, t0, data_tokens);
        // The sampling shards' seconds too.
        s.seconds += crate::stage::shard_seconds(dir);
        Ok(s)
    })?;
    Ok(s.model)
}

/// The RFT filter: whether a sampled solution is kept for fine-tuning: the model ended it
/// (not `cut` by the token limit or the context) and its answer is correct, graded by
/// [`crate::task::TaskKind::grade`] as MCTS rewards and evaluation are.
pub fn kept(kind: crate::task::TaskKind, completion: &str, gold: &str, cut: bool) -> bool {
    !cut && kind.grade(completion, gold).correct
}

/// The `[rft]` settings that change the paper's RFT stage (`match_tokens` adds another stage,
/// it does not change this one): serialised as `[rft]` was before that key existed.
#[derive(serde::Serialize)]
struct RftKey {
    problems: usize,
    samples_per_problem: usize,
    temperature: f64,
}

impl RftKey {
    fn of(r: &crate::config::schema::Rft) -> Self {
        Self { problems: r.problems, samples_per_problem: r.samples_per_problem, temperature: r.temperature }
    }
}
