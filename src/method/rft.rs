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
    let s: ModelSummary = ctx.stage(&key, "rft", |ctx: &mut Ctx<AB>, dir: &std::path::Path| {
        let t0 = std::time::Instant::now();
        let mut eng = engine(ctx, base)?;
        let template = ctx.template.expect("set by engine()");
        let k = e.rft.samples_per_problem;
        let mut reqs = Vec::with_capacity(problems.len() * k);
        for p in &problems {
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
        let bar = ctx.bar(reqs.len() as u64, "rft sample");
        let outs = eng.generate(reqs, || bar.inc(1))?;
        let data_tokens: u64 = outs
            .iter()
            .map(|c| c.tokens.len() as u64 + u64::from(c.finish == crate::infer::Finish::Eos))
            .sum();
        bar.finish_and_clear();
        let mut samples = Vec::with_capacity(outs.len());
        let mut examples = Vec::new();
        for (i, c) in outs.into_iter().enumerate() {
            let p = &problems[i / k];
            samples.push(RftSample {
                problem: p.id,
                sample: i % k,
                correct: ctx.train_kind.is_correct(&c.text, &p.answer),
                duplicate: false,
                solution: c.text,
            });
        }
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
            let mut tokens = encode_prompt(&eng.tokenizer, template, ctx.train_kind, &p.question)?;
            let loss_from = tokens.len();
            tokens.extend(eng.tokenizer.encode(&s.solution)?);
            tokens.extend(eng.tokenizer.eos.first());
            examples.push(Example { tokens, loss_from, weight: 1.0 });
        }
        write_jsonl(&dir.join("samples.jsonl"), &samples)?;
        drop(eng);
        let (model, tok) = load_train(ctx, base)?;
        let model = prepare_for_training(ctx, model, "rft-train");
        let settings = train_settings(ctx, "rft-train");
        let objective = Objective::Nll(&examples);
        let (ckpt, rep) = fit_and_save(ctx, model, &tok, &objective, &settings, dir, "train rft")?;
        Ok(ModelSummary::trained(&key, ckpt, examples.len(), &rep, t0, data_tokens))
    })?;
    Ok(s.model)
}
