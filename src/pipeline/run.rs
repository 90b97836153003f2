//! Running an experiment: every run of its sweep, every method of each run, then the tables.

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::DType;

use super::{progress, Counts, Ctx, ModelRef};
use crate::config::schema::Backend;
use crate::config::{Loaded, Resolved};
use crate::error::{Error, Result};
use crate::method::{self, draw, ours, rft, step_dpo, EvalSummary, ModelSummary};
use crate::model::backend::InferBackend;
use crate::report::{self, Cost, RowRef, RunEntry, RunIndex};

/// One line of the stage plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    /// Stage kind.
    pub kind: &'static str,
    /// What it does.
    pub label: String,
    /// The independent items the stage's work splits into (what a shard would take a block
    /// of): `(what, how many)`; `None` for training, which is one job.
    pub items: Option<(&'static str, usize)>,
}

/// The stages a run consists of (before looking at what is already finished). The first MCTS
/// iteration of step-level DPO is the same stage as ours' when both draw the same problems.
pub fn plan(cfg: &Resolved) -> Vec<Planned> {
    let e = &cfg.exp;
    let mut out = Vec::new();
    let mut p = |kind: &'static str, label: String| {
        let items = match kind {
            "mcts" => {
                let n = if label.starts_with("step-DPO") {
                    e.step_dpo.problems_per_iteration
                } else {
                    e.ours.problems_per_iteration
                };
                Some(("problems", n))
            }
            "rft" => Some(("problems to sample; training is one job", e.rft.problems)),
            "eval" => Some((
                "blocks of a run",
                e.eval.runs * e.task.test_size.div_ceil(crate::method::EVAL_BLOCK).max(1),
            )),
            _ => None,
        };
        out.push(Planned { kind, label, items })
    };
    if cfg.model == crate::config::ModelSource::Tiny {
        p(
            "pretrain",
            format!("pretrain tiny: {} steps x {} sequences", e.pretrain.steps, e.pretrain.batch_size),
        );
    }
    let evals = format!("{} runs x {} problems", e.eval.runs, e.task.test_size);
    if e.baselines.iter().any(|b| b == "zero_shot_cot") {
        p("eval", format!("eval zero-shot CoT ({evals})"));
    }
    if e.baselines.iter().any(|b| b == "rft") {
        p(
            "rft",
            format!(
                "rft: {} problems x {} samples, NLL fine-tuning",
                e.rft.problems, e.rft.samples_per_problem
            ),
        );
        p("eval", format!("eval RFT ({evals})"));
    }
    for i in 1..=e.ours.iterations {
        p(
            "mcts",
            format!(
                "ours iter {i}: MCTS on {} problems x {} rollouts per root",
                e.ours.problems_per_iteration, e.mcts.rollouts
            ),
        );
        p("train-ours", format!("ours iter {i}: eq. (2) training"));
        p("eval", format!("eval ours iter {i} ({evals})"));
    }
    if e.baselines.iter().any(|b| b == "step_dpo") {
        for i in 1..=e.step_dpo.iterations {
            let shared = i == 1
                && e.step_dpo.problems_per_iteration == e.ours.problems_per_iteration
                && e.ours.iterations >= 1;
            if !shared {
                p(
                    "mcts",
                    format!("step-DPO iter {i}: MCTS on {} problems", e.step_dpo.problems_per_iteration),
                );
            }
            p("train-dpo", format!("step-DPO iter {i}: DPO training"));
            p("eval", format!("eval step-DPO iter {i} ({evals})"));
        }
    }
    out
}

/// The results folder of an experiment.
pub fn out_dir(cfg: &Resolved) -> PathBuf {
    PathBuf::from(&cfg.exp.out_dir).join(&cfg.exp.name)
}

/// Runs a loaded experiment on the configured backend, then writes the tables.
pub fn run_experiment(loaded: &Loaded) -> Result<()> {
    let first = &loaded.runs[0].config;
    if first.exp.threads > 0 {
        // Results never depend on the thread count; only speed does.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(first.exp.threads).build_global();
    }
    match (first.exp.model.backend, first.exp.model.dtype) {
        (Backend::Cpu, _) => {
            run_all::<burn::backend::Autodiff<burn::backend::Flex>>(loaded, Default::default(), DType::F32)
        }
        #[cfg(feature = "cuda")]
        (Backend::Cuda, dtype) => {
            crate::model::cuda::check_runtime()?;
            run_all::<burn::backend::Autodiff<crate::model::cuda::Cuda>>(
                loaded,
                Default::default(),
                dtype.burn(),
            )
        }
        #[cfg(not(feature = "cuda"))]
        (Backend::Cuda, _) => Err(Error::Other("backend \"cuda\" needs a build with --features cuda".into())),
    }
}

fn run_all<AB: AutodiffBackend>(
    loaded: &Loaded,
    device: burn::tensor::Device<AB::InnerBackend>,
    dtype: DType,
) -> Result<()>
where
    AB::InnerBackend: InferBackend,
{
    let first = &loaded.runs[0].config;
    if first.exp.executor.kind == crate::config::schema::ExecutorKind::Slurm && super::shard().is_none() {
        super::slurm::check()?;
    }
    let dir = out_dir(first);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    // The resolved configuration of every run is written before any compute.
    for run in &loaded.runs {
        let text = crate::config::annotated_toml(run)?;
        let path = if loaded.runs.len() == 1 {
            dir.join("config.resolved.toml")
        } else {
            dir.join("runs").join(sanitize(&run.label)).join("config.resolved.toml")
        };
        crate::util::write_atomic(&path, text.as_bytes())?;
    }
    let bars = progress();
    let planned: usize = loaded.runs.iter().map(|r| plan(&r.config).len()).sum();
    let top = bars.add(indicatif::ProgressBar::new(planned as u64));
    top.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} stages ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    top.set_prefix(first.exp.name.clone());
    let mut index = RunIndex {
        experiment: first.exp.name.clone(),
        column: column_title(first),
        paper: first.exp.paper.clone(),
        transfer: first.train_data.kind() != first.test_data.kind(),
        test_size: 0,
        eval_runs: first.exp.eval.runs,
        runs: vec![],
    };
    let mut total = Counts::default();
    for run in &loaded.runs {
        let mut ctx = Ctx::<AB>::new(run.config.clone(), &dir, device.clone(), dtype, bars.clone())?;
        if !run.label.is_empty() {
            ctx.note(&format!("run {}", run.label));
        }
        index.test_size = ctx.test_set.len();
        let rows = run_methods(&mut ctx, &top)?;
        total.computed += ctx.counts.computed;
        total.cached += ctx.counts.cached;
        index.runs.push(RunEntry { label: run.label.clone(), rows });
    }
    top.finish_and_clear();
    let json = serde_json::to_string_pretty(&index).expect("index serialises");
    crate::util::write_atomic(&dir.join("runs.json"), json.as_bytes())?;
    let md = report::write_tables(&dir)?;
    println!("{md}");
    if total.computed == 0 {
        println!("All {} stages were already finished; nothing was recomputed.", total.cached);
    } else {
        println!("{} stages computed, {} reused from earlier runs.", total.computed, total.cached);
    }
    println!("Wrote {}/table.md, table.csv, plots and runs.json.", dir.display());
    Ok(())
}

fn column_title(cfg: &Resolved) -> String {
    let model = match &cfg.model {
        crate::config::ModelSource::Tiny => "tiny".to_string(),
        crate::config::ModelSource::Path(p) => {
            p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
        }
    };
    let (a, b) = (cfg.train_data.kind(), cfg.test_data.kind());
    let name = |k: crate::task::TaskKind| {
        serde_json::to_value(k).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
    };
    if a == b {
        format!("{model} on {}", name(a))
    } else {
        format!("{model}, {} -> {}", name(a), name(b))
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '=' { c } else { '_' })
        .collect()
}

fn eval_row<AB: AutodiffBackend>(
    ctx: &mut Ctx<AB>,
    model: &ModelRef,
    method: &str,
    iteration: Option<usize>,
    cost: Cost,
    top: &indicatif::ProgressBar,
) -> Result<RowRef>
where
    AB::InnerBackend: InferBackend,
{
    let label = report::display(method, iteration);
    let (key, _s): (_, EvalSummary) = method::evaluate(ctx, model, &label)?;
    top.inc(1);
    Ok(RowRef { method: method.into(), iteration, eval_stage: key.name(), cost })
}

/// Every method of one run, in table order.
fn run_methods<AB: AutodiffBackend>(ctx: &mut Ctx<AB>, top: &indicatif::ProgressBar) -> Result<Vec<RowRef>>
where
    AB::InnerBackend: InferBackend,
{
    let e = ctx.cfg.exp.clone();
    let has = |b: &str| e.baselines.iter().any(|x| x == b);
    let base = method::base_model(ctx)?;
    if ctx.cfg.model == crate::config::ModelSource::Tiny {
        top.inc(1);
    }
    method::resolve_template(ctx, &base)?;
    let mut zs = None;
    let mut rft_row = None;
    if has("zero_shot_cot") {
        zs = Some(eval_row(ctx, &base, "zero_shot_cot", None, Cost::default(), top)?);
    }
    if has("rft") {
        let m = rft::rft(ctx, &base)?;
        top.inc(1);
        let s: ModelSummary = stage_summary(ctx, &m)?;
        rft_row = Some(eval_row(
            ctx,
            &m,
            "rft",
            None,
            Cost { data_tokens: s.data_tokens, seconds: s.seconds },
            top,
        )?);
    }
    let mut dpo_rows = Vec::new();
    let mut ours_rows = Vec::new();
    let mut prev = base.clone();
    let mut first_mcts = None;
    for i in 1..=e.ours.iterations {
        let problems =
            draw(&ctx.train_pool, e.ours.problems_per_iteration, e.seed, "iteration-problems", &[i as u64]);
        let (mk, ms) = ours::mcts(ctx, &prev, &problems, i as u64, &format!("ours {i}"))?;
        top.inc(1);
        if i == 1 {
            first_mcts = Some((mk.clone(), problems.clone()));
        }
        prev = ours::train_iteration(ctx, &prev, &mk, &problems, i as u64)?;
        top.inc(1);
        let s: ModelSummary = stage_summary(ctx, &prev)?;
        let cost = Cost { data_tokens: ms.tokens_generated, seconds: ms.seconds + s.seconds };
        ours_rows.push(eval_row(ctx, &prev, "ours", Some(i), cost, top)?);
    }
    if has("step_dpo") {
        let mut prev = base.clone();
        for i in 1..=e.step_dpo.iterations {
            let problems = draw(
                &ctx.train_pool,
                e.step_dpo.problems_per_iteration,
                e.seed,
                "iteration-problems",
                &[i as u64],
            );
            let (mk, ms) = match (&first_mcts, i) {
                (Some((k, p)), 1) if *p == problems => (k.clone(), ctx.store.summary(k)?),
                _ => {
                    let r = ours::mcts(ctx, &prev, &problems, i as u64, &format!("step-DPO {i}"))?;
                    top.inc(1);
                    r
                }
            };
            prev = step_dpo::train_iteration(ctx, &prev, &mk, &problems, i as u64)?;
            top.inc(1);
            let s: ModelSummary = stage_summary(ctx, &prev)?;
            let ms: ours::MctsSummary = ms;
            let cost = Cost { data_tokens: ms.tokens_generated, seconds: ms.seconds + s.seconds };
            dpo_rows.push(eval_row(ctx, &prev, "step_dpo", Some(i), cost, top)?);
        }
    }
    let mut rows: Vec<RowRef> = zs.into_iter().chain(rft_row).collect();
    rows.extend(dpo_rows);
    rows.extend(ours_rows);
    Ok(rows)
}

/// The summary of the stage that produced `m` (its checkpoint's parent folder).
fn stage_summary<AB: AutodiffBackend>(_ctx: &Ctx<AB>, m: &ModelRef) -> Result<ModelSummary>
where
    AB::InnerBackend: InferBackend,
{
    let done = m.path.parent().map(|d| d.join("done.json")).unwrap_or_default();
    let text = crate::error::read_to_string(&done)?;
    serde_json::from_str(&text).map_err(|e| Error::Checkpoint { path: done, message: e.to_string() })
}

/// `runner table DIR`.
pub fn table(dir: &Path) -> Result<()> {
    let md = report::write_tables(dir)?;
    println!("{md}");
    Ok(())
}
