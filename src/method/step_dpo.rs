//! Step-level DPO, one iteration (MCTS-DPO style): from each root of the MCTS trees, the child
//! with the highest `Q/N` is chosen and the lowest rejected (when they differ); DPO against the
//! previous iteration's model.

use std::collections::HashMap;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;

use super::fit_and_save;
use super::ours::trees;
use super::{
    continuation_tokens, load_train, prepare_for_training, save_untrained, train_settings, write_jsonl,
    ModelSummary,
};
use crate::error::Result;
use crate::model::backend::InferBackend;
use crate::search::preference_pair;
use crate::stage::{Ctx, Key, ModelRef};
use crate::task::Problem;
use crate::train::data::Pair;
use crate::train::trainer::Objective;

/// Trains `prev` with DPO on the step pairs of the trees of `mcts`.
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
        "train-dpo",
        &(
            &prev.id,
            &mcts.hash,
            e.step_dpo.beta,
            super::method_lr(&ctx.cfg, e.step_dpo.lr),
            &e.train,
            ctx.cfg.train_seed,
            iteration,
        ),
    );
    ctx.job_out(&key, &format!("train step-DPO iter {iteration}"))?;
    let s: ModelSummary = ctx.stage(
        &key,
        &format!("train step-DPO iter {iteration}"),
        |ctx: &mut Ctx<AB>, dir: &std::path::Path| {
            let t0 = std::time::Instant::now();
            let (model, tok) = load_train(ctx, prev)?;
            let reference = model.valid();
            let questions: HashMap<u64, &str> =
                problems.iter().map(|p| (p.id, p.question.as_str())).collect();
            let template = ctx.template.expect("resolved at start");
            let mut pairs = Vec::new();
            let mut shown = Vec::new();
            for t in trees(ctx, mcts)? {
                let Some((c, r)) = preference_pair(&t) else { continue };
                let q = questions[&t.problem];
                let (ct, start) =
                    continuation_tokens(&tok, template, &ctx.shots, ctx.train_kind, q, &t.partial, &c.step, c.is_final)?;
                let (rt, _) =
                    continuation_tokens(&tok, template, &ctx.shots, ctx.train_kind, q, &t.partial, &r.step, r.is_final)?;
                pairs.push(Pair {
                    prompt: ct[..start].to_vec(),
                    chosen: ct[start..].to_vec(),
                    rejected: rt[start..].to_vec(),
                });
                shown.push(serde_json::json!({
                "problem": t.problem, "step_index": t.step_index, "prompt": t.partial,
                "chosen": c.step, "chosen_value": c.value(), "rejected": r.step, "rejected_value": r.value(),
            }));
            }
            write_jsonl(&dir.join("pairs.jsonl"), &shown)?;
            if pairs.is_empty() {
                let w = format!(
                    "step-DPO iteration {iteration}: 0 preference pairs on {} problems (no root had a \
                     correct and an incorrect child; raise mcts.rollouts or step_dpo.problems_per_iteration): \
                     the model is the previous iteration's, untrained",
                    problems.len()
                );
                return save_untrained(ctx, model, &tok, dir, &key, t0, 0, w);
            }
            let purpose = format!("dpo-train-{iteration}");
            let model = prepare_for_training(ctx, model, &purpose);
            let settings = train_settings(ctx, &purpose, super::method_lr(&ctx.cfg, ctx.cfg.exp.step_dpo.lr));
            let objective =
                Objective::Dpo { pairs: &pairs, reference: &reference, beta: ctx.cfg.exp.step_dpo.beta };
            let label = format!("train DPO {iteration}");
            let (ckpt, rep) = fit_and_save(ctx, model, &tok, &objective, &settings, dir, &label)?;
            Ok(ModelSummary::trained(&key, ckpt, pairs.len(), &rep, t0, 0))
        },
    )?;
    Ok(s.model)
}
