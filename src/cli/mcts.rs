//! `runner mcts FILE`: MCTS step data for the first iteration of an experiment, for
//! inspection: records, trees, TRL-format exports, throughput and the signal check.

use burn::backend::{Autodiff, Flex};
use burn::tensor::DType;

use crate::config::Loaded;
use crate::error::Result;
use crate::eval::stats::mean_se;
use crate::method::{self, draw, ours, read_jsonl, write_jsonl};
use crate::search::{preference_pair, Record, RootTree};
use crate::stage::{progress, Ctx};
use crate::task::{arith, TaskKind};

type AB = Autodiff<Flex>;

/// Runs (or reuses) the iteration-1 MCTS stage of the first run and prints its statistics.
pub fn mcts(loaded: &Loaded) -> Result<()> {
    let cfg = loaded.runs[0].config.clone();
    let dir = crate::pipeline::run::out_dir(&cfg);
    let mut ctx = Ctx::<AB>::new(cfg.clone(), &dir, Default::default(), DType::F32, progress())?;
    let base = method::base_model(&mut ctx)?;
    method::resolve_template(&mut ctx, &base)?;
    let e = &cfg.exp;
    let problems =
        draw(&ctx.train_pool, e.ours.problems_per_iteration, ctx.cfg.train_seed, "iteration-problems", &[1]);
    let (key, s) = ours::mcts(&mut ctx, &base, &problems, 1, "iter 1")?;
    let sdir = ctx.store.dir(&key);
    let trees: Vec<RootTree> = read_jsonl(&sdir.join("trees.jsonl"))?;
    // Records at this configuration's alpha (the stage is shared across alphas).
    let records: Vec<Record> = trees.iter().flat_map(|t| crate::search::records(t, e.mcts.alpha)).collect();
    write_jsonl(&sdir.join(format!("records.alpha-{}.jsonl", e.mcts.alpha)), &records)?;
    // TRL-style exports derived from the trees alone.
    let questions: std::collections::HashMap<u64, &str> =
        problems.iter().map(|p| (p.id, p.question.as_str())).collect();
    let weighted: Vec<serde_json::Value> = records
        .iter()
        .map(|r| serde_json::json!({"prompt": format!("{}\n\n{}", questions[&r.problem], r.partial), "completion": r.step, "weight": r.r}))
        .collect();
    write_jsonl(&sdir.join(format!("trl_weighted.alpha-{}.jsonl", e.mcts.alpha)), &weighted)?;
    let pairs: Vec<serde_json::Value> = trees
        .iter()
        .filter_map(|t| {
            preference_pair(t).map(|(c, r)| {
                serde_json::json!({"prompt": format!("{}\n\n{}", questions[&t.problem], t.partial), "chosen": c.step, "rejected": r.step})
            })
        })
        .collect();
    write_jsonl(&sdir.join("trl_pairs.jsonl"), &pairs)?;
    println!("MCTS iteration 1 of {}: {}", e.name, sdir.display());
    println!("{}", serde_json::to_string_pretty(&s).expect("summary serialises"));
    println!("records (r != 0): {}; preference pairs: {}", records.len(), pairs.len());
    if ctx.train_kind == TaskKind::Arith {
        // Signal check: steps whose own equation is right should score higher.
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        for r in &records {
            match arith::step_is_correct(&r.step) {
                Some(true) => good.push(r.r),
                Some(false) => bad.push(r.r),
                None => {}
            }
        }
        let (gm, gs) = mean_se(&good);
        let (bm, bs) = mean_se(&bad);
        println!("mean r of arithmetically correct steps: {gm:.4} ± {gs:.4} (n = {})", good.len());
        println!("mean r of arithmetically wrong steps:   {bm:.4} ± {bs:.4} (n = {})", bad.len());
    }
    Ok(())
}
