//! Rejection-sampling fine-tuning (Yuan et al. 2023): `samples_per_problem` sampled solutions
//! per training problem, the distinct correct ones kept, plain NLL fine-tuning of the base.

use std::collections::HashSet;

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::fit_and_save;
use super::{draw, engine, load_train, prepare_for_training, train_settings, write_jsonl, ModelSummary};
use crate::error::Result;
use crate::infer::{encode_prompt, Request, Stop};
use crate::model::backend::InferBackend;
use crate::pipeline::{Ctx, Key, ModelRef};
use crate::rng::Stream;
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
    duplicate: bool,
}

/// One problem's draw, as its sampling shard stored it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Drawn {
    text: String,
    /// Tokens generated, the end-of-sequence token included when it was drawn.
    tokens: u64,
}

/// Samples, filters and fine-tunes; returns the RFT model.
pub fn rft<AB: AutodiffBackend>(ctx: &mut Ctx<AB>, base: &ModelRef) -> Result<ModelRef>
where
    AB::InnerBackend: InferBackend,
{
    let e = ctx.cfg.exp.clone();
    let problems = draw(&ctx.train_pool, e.rft.problems, e.seed, "rft-problems", &[]);
    let ids: Vec<u64> = problems.iter().map(|p| p.id).collect();
    let key = Key::new(
        "rft",
        &(&base.id, &e.rft, &ids, e.eval.max_tokens, &e.train, e.seed, &e.model.template, ctx.train_kind),
    );
    // Sampling splits by problem (each problem's draws are its own file under samples/);
    // the filtering and the fine-tuning are one job.
    ctx.shard_out(&key, problems.len(), "rft sample")?;
    ctx.job_out(&key, "rft")?;
    let s: ModelSummary = ctx.stage(&key, "rft", |ctx: &mut Ctx<AB>, dir: &std::path::Path| {
        let t0 = std::time::Instant::now();
        let parts = dir.join("samples");
        std::fs::create_dir_all(&parts).map_err(|e| crate::Error::io(&parts, e))?;
        let part = |p: &Problem| parts.join(format!("{}.json", p.id));
        let shard = crate::pipeline::shard().cloned();
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
            let bar = ctx.bar((todo.len() * k) as u64, "rft sample");
            // Problems go to the engine in groups, each written when done, so an interrupted
            // stage resumes at the group; grouping never changes a draw.
            let group = (4 * e.infer.batch_size).div_ceil(k).max(1);
            for chunk in todo.chunks(group) {
                let mut reqs = Vec::with_capacity(chunk.len() * k);
                for p in chunk {
                    let prompt = encode_prompt(&eng.tokenizer, template, ctx.train_kind, &p.question)?;
                    let room = eng.capacity().saturating_sub(prompt.len() + 1).max(1);
                    for j in 0..k {
                        reqs.push(Request {
                            prompt: prompt.clone(),
                            max_new_tokens: e.eval.max_tokens.min(room),
                            temperature: e.rft.temperature,
                            top_p: 1.0,
                            stop: Stop::Eos,
                            rng: Stream::new(e.seed, "rft-sample", &[p.id, j as u64]),
                        });
                    }
                }
                let outs = eng.generate(reqs, || bar.inc(1))?;
                for (p, draws) in chunk.iter().zip(outs.chunks(k)) {
                    let draws: Vec<Drawn> = draws
                        .iter()
                        .map(|c| Drawn {
                            text: c.text.clone(),
                            tokens: c.tokens.len() as u64 + u64::from(c.finish == crate::infer::Finish::Eos),
                        })
                        .collect();
                    let json = serde_json::to_string(&draws).expect("serialisable");
                    crate::util::write_atomic(&part(p), json.as_bytes())?;
                }
            }
            bar.finish_and_clear();
        }
        if crate::pipeline::partial_shard().is_some() {
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
                    correct: ctx.train_kind.is_correct(&d.text, &p.answer),
                    duplicate: false,
                    solution: d.text,
                });
            }
        }
        let mut examples = Vec::new();
        let mut seen: HashSet<(u64, String)> = HashSet::new();
        for s in samples.iter_mut() {
            if !s.correct {
                continue;
            }
            if !seen.insert((s.problem, s.solution.trim().to_string())) {
                s.duplicate = true;
                continue;
            }
            let p = problems.iter().find(|p| p.id == s.problem).expect("sampled problem");
            let mut tokens = encode_prompt(&tok, template, ctx.train_kind, &p.question)?;
            let loss_from = tokens.len();
            tokens.extend(tok.encode(&s.solution)?);
            tokens.extend(tok.eos.first());
            examples.push(Example { tokens, loss_from, weight: 1.0 });
        }
        write_jsonl(&dir.join("samples.jsonl"), &samples)?;
        let model = prepare_for_training(ctx, model, "rft-train");
        let settings = train_settings(ctx, "rft-train");
        let objective = Objective::Nll(&examples);
        let (ckpt, rep) = fit_and_save(ctx, model, &tok, &objective, &settings, dir, "train rft")?;
        let mut s = ModelSummary::trained(&key, ckpt, examples.len(), &rep, t0, data_tokens);
        // The sampling shards' seconds too.
        s.seconds += crate::pipeline::shard_seconds(dir);
        Ok(s)
    })?;
    Ok(s.model)
}
