//! Running an experiment: every run of its sweep, every method of each run, then the tables.

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::DType;

use super::graph::{self, NodeId, Op};
use crate::config::schema::{Backend, ExecutorKind};
use crate::config::{Loaded, Resolved};
use crate::error::{Error, Result};
use crate::method::{self, draw, ours, rft, step_dpo, EvalSummary, ModelSummary, Split};
use crate::model::backend::InferBackend;
use crate::report::{self, Cost, RowRef, RunEntry, RunIndex};
use crate::stage::{progress, shard, Counts, Ctx, Key, ModelRef};
use crate::task::Problem;

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

/// The stages a run consists of (before looking at what is already finished): the nodes of
/// [`graph::graph`] that compute (`test_len`: the test set's size when known).
pub fn plan(cfg: &Resolved, test_len: Option<usize>) -> Vec<Planned> {
    graph::graph(cfg, test_len)
        .stages()
        .map(|n| Planned { kind: n.kind, label: n.label.clone(), items: n.items })
        .collect()
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
        // bf16 on the CPU: bf16 matrices for inference, f32 training on the same values
        // (`model::weights::Storage`).
        (Backend::Cpu, dtype) => {
            run_all::<burn::backend::Autodiff<burn::backend::Flex>>(loaded, Default::default(), dtype.burn())
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
    if first.exp.executor.kind == ExecutorKind::Slurm && shard().is_none() {
        super::slurm::check()?;
    }
    let dir = out_dir(first);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    // The resolved configuration of every run is written before any compute.
    for (i, run) in loaded.runs.iter().enumerate() {
        // The training seeds of a sweep point are consecutive runs with one configuration.
        if i > 0 && loaded.runs[i - 1].label == run.label {
            continue;
        }
        let text = crate::config::annotated_toml(run)?;
        // Training seeds share one configuration file (they differ only in the seed of the run).
        let path = if run.label.is_empty() {
            dir.join("config.resolved.toml")
        } else {
            dir.join("runs").join(sanitize(&run.label)).join("config.resolved.toml")
        };
        crate::util::write_atomic(&path, text.as_bytes())?;
    }
    let bars = progress();
    let planned: usize = loaded.runs.iter().map(|r| plan(&r.config, None).len()).sum();
    let top = bars.add(indicatif::ProgressBar::new(planned as u64));
    top.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} stages ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    top.set_prefix(format!("{} stages", first.exp.name));
    crate::stage::progress::watch(&top);
    let mut index = RunIndex {
        experiment: first.exp.name.clone(),
        column: column_title(first),
        paper: first.exp.paper.clone(),
        transfer: first.train_data.kind() != first.test_data.kind(),
        test_size: 0,
        val_size: 0,
        eval_runs: first.exp.eval.runs,
        runs: vec![],
    };
    let mut total = Counts::default();
    for run in &loaded.runs {
        let mut ctx = Ctx::<AB>::new(run.config.clone(), &dir, device.clone(), dtype, bars.clone())?;
        let x = run.config.exp.executor.clone();
        match x.kind {
            ExecutorKind::Local => {}
            ExecutorKind::Workers => ctx.set_dispatch(Box::new(super::executor::Workers(x))),
            ExecutorKind::Slurm => ctx.set_dispatch(Box::new(super::slurm::SlurmDispatch(x))),
        }
        if !run.label.is_empty() {
            ctx.note(&format!("run {}", run.label));
        }
        index.test_size = ctx.test_set.len();
        index.val_size = ctx.val_set.len();
        let rows = run_graph(&mut ctx, &top)?;
        total.computed += ctx.counts.computed;
        total.cached += ctx.counts.cached;
        let warnings = std::mem::take(&mut ctx.warnings);
        index.runs.push(RunEntry {
            label: run.label.clone(),
            seed: run.seed,
            rows,
            warnings,
            shots: run.config.exp.task.shots,
            breakdown: crate::stage::problems::groups(&ctx.test_set, &run.config.exp.report.breakdown),
        });
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

/// What a node of the graph left for the nodes after it.
enum Output {
    /// A model (base, RFT, a training iteration).
    Model(ModelRef),
    /// MCTS data: the stage key, its summary and the problems searched.
    Mcts(Key, ours::MctsSummary, Vec<Problem>),
    /// An evaluation (its stage is named in the row).
    Eval,
}

/// Executes the run's stage graph in order, returning the table's rows.
fn run_graph<AB: AutodiffBackend>(ctx: &mut Ctx<AB>, top: &indicatif::ProgressBar) -> Result<Vec<RowRef>>
where
    AB::InnerBackend: InferBackend,
{
    let g = graph::graph(&ctx.cfg, Some(ctx.test_set.len()));
    let mut out: Vec<Output> = Vec::with_capacity(g.nodes.len());
    let mut rows: Vec<RowRef> = Vec::new();
    let model = |out: &[Output], i: NodeId| match &out[i] {
        Output::Model(m) => m.clone(),
        _ => unreachable!("node {i} gives a model"),
    };
    let mcts = |out: &[Output], i: NodeId| match &out[i] {
        Output::Mcts(k, s, p) => (k.clone(), s.clone(), p.clone()),
        _ => unreachable!("node {i} gives MCTS data"),
    };
    for node in &g.nodes {
        let o = match &node.op {
            Op::Base => {
                let base = method::base_model(ctx)?;
                method::resolve_template(ctx, &base)?;
                Output::Model(base)
            }
            Op::Eval { model: m, split, row, cost, own } => {
                let m = model(&out, *m);
                let label = report::display(row.0, row.1);
                let label = if *split == Split::Validation { format!("{label} (validation)") } else { label };
                let (key, _s): (_, EvalSummary) = method::evaluate(ctx, &m, &label, *split)?;
                let mut c = Cost::default();
                for &i in cost {
                    let (tokens, seconds) = match &out[i] {
                        Output::Mcts(_, s, _) => (s.tokens_generated, s.seconds),
                        Output::Model(m) => {
                            let s = stage_summary(m)?;
                            (s.data_tokens, s.seconds)
                        }
                        Output::Eval => (0, 0.0),
                    };
                    c.data_tokens += tokens;
                    c.seconds += seconds;
                    if own.contains(&i) {
                        c.own_data_tokens += tokens;
                        c.own_seconds += seconds;
                    }
                }
                // One row per (method, iteration); its test and validation stages.
                let at = rows.iter().position(|r| (r.method.as_str(), r.iteration) == (row.0, row.1));
                let r = match at {
                    Some(i) => &mut rows[i],
                    None => {
                        rows.push(RowRef {
                            method: row.0.into(),
                            iteration: row.1,
                            eval_stage: String::new(),
                            val_stage: None,
                            cost: c,
                        });
                        rows.last_mut().expect("pushed")
                    }
                };
                match split {
                    Split::Test => r.eval_stage = key.name(),
                    Split::Validation => r.val_stage = Some(key.name()),
                }
                Output::Eval
            }
            Op::Rft { base, budget } => {
                let budget = budget.map(|i| mcts(&out, i).1.tokens_generated);
                Output::Model(rft::rft(ctx, &model(&out, *base), budget)?)
            }
            Op::Mcts { model: m, iteration, problems } => {
                let i = *iteration as u64;
                let drawn = draw(&ctx.train_pool, *problems, ctx.cfg.train_seed, "iteration-problems", &[i]);
                let who = if node.label.starts_with("step-DPO") { "step-DPO" } else { "ours" };
                let (k, s) = ours::mcts(ctx, &model(&out, *m), &drawn, i, &format!("{who} {iteration}"))?;
                Output::Mcts(k, s, drawn)
            }
            Op::TrainOurs { prev, mcts: m, iteration } => {
                let (k, _, p) = mcts(&out, *m);
                Output::Model(ours::train_iteration(ctx, &model(&out, *prev), &k, &p, *iteration as u64)?)
            }
            Op::TrainDpo { prev, mcts: m, iteration } => {
                let (k, _, p) = mcts(&out, *m);
                Output::Model(step_dpo::train_iteration(ctx, &model(&out, *prev), &k, &p, *iteration as u64)?)
            }
        };
        // Warnings of training stages (kept in their summaries, so a resumed run shows them).
        if let (Output::Model(m), Op::Rft { .. } | Op::TrainOurs { .. } | Op::TrainDpo { .. }) =
            (&o, &node.op)
        {
            for w in stage_summary(m)?.warnings {
                ctx.warn(&w);
            }
        }
        if node.computes() {
            top.inc(1);
        }
        out.push(o);
    }
    let rank = |r: &RowRef| graph::ROW_ORDER.iter().position(|m| *m == r.method).unwrap_or(usize::MAX);
    rows.sort_by_key(|r| (rank(r), r.iteration));
    Ok(rows)
}

/// The summary of the stage that produced `m` (its checkpoint's parent folder).
fn stage_summary(m: &ModelRef) -> Result<ModelSummary> {
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
