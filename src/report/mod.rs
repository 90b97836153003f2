//! Tables and plots from the artifacts alone: `runs.json` lists, per run, which evaluation
//! stage measured each row; everything else is read from those stages' folders. Writes
//! `table.md`, `table.csv` and `plot.svg` (one plot per run of a sweep).

pub mod paper;
pub mod plot;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::eval::stats::{paired, Paired};
use crate::eval::Outcome;
use crate::method::{read_jsonl, EvalSummary};

/// What one method/iteration cost to produce (besides its evaluation).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Tokens generated to make its training data (MCTS, RFT sampling).
    pub data_tokens: u64,
    /// Seconds of data generation and training (this row's own stages, as first computed).
    pub seconds: f64,
}

/// One row of a table: which evaluation stage measured it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowRef {
    /// `zero_shot_cot`, `rft`, `step_dpo` or `ours`.
    pub method: String,
    /// Iteration for iterated methods.
    pub iteration: Option<usize>,
    /// Folder (in `cache/`) of the evaluation stage.
    pub eval_stage: String,
    /// Cost of the row's own data and training.
    pub cost: Cost,
}

/// One run (a sweep point, or the whole experiment).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunEntry {
    /// Sweep label ("" without a sweep).
    pub label: String,
    /// Its rows, in table order.
    pub rows: Vec<RowRef>,
}

/// `runs.json`: the index the tables are built from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunIndex {
    /// Experiment name.
    pub experiment: String,
    /// Column title for our numbers.
    pub column: String,
    /// Paper set-up shown beside ours ("" = none).
    pub paper: String,
    /// Whether training and test tasks differ (Table 2 layout).
    pub transfer: bool,
    /// Test problems.
    pub test_size: usize,
    /// Evaluation runs per cell.
    pub eval_runs: usize,
    /// The runs.
    pub runs: Vec<RunEntry>,
}

/// A row with its measurements.
#[derive(Clone, Debug)]
pub struct Row {
    /// The reference.
    pub r: RowRef,
    /// Evaluation summary.
    pub eval: EvalSummary,
    /// Per-problem accuracy averaged over runs, by problem id.
    pub per_problem: BTreeMap<u64, f64>,
}

impl Row {
    /// Display name as in the paper.
    pub fn name(&self) -> String {
        display(&self.r.method, self.r.iteration)
    }
}

/// The paper's row names.
pub fn display(method: &str, iteration: Option<usize>) -> String {
    match (method, iteration) {
        ("zero_shot_cot", _) => "Zero-shot-CoT".into(),
        ("rft", _) => "RFT".into(),
        ("step_dpo", Some(k)) => format!("Step-level DPO - Iteration {k}"),
        ("ours", Some(k)) => format!("Ours - Iteration {k}"),
        (m, Some(k)) => format!("{m} - Iteration {k}"),
        (m, None) => m.to_string(),
    }
}

fn load_row(cache: &Path, r: &RowRef) -> Result<Row> {
    let dir = cache.join(&r.eval_stage);
    let text = crate::error::read_to_string(&dir.join("done.json"))?;
    let eval: EvalSummary = serde_json::from_str(&text)
        .map_err(|e| Error::Checkpoint { path: dir.join("done.json"), message: e.to_string() })?;
    let outcomes: Vec<Outcome> = read_jsonl(&dir.join("eval.jsonl"))?;
    let mut acc: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for o in outcomes {
        let e = acc.entry(o.problem).or_default();
        e.0 += f64::from(u8::from(o.correct));
        e.1 += 1.0;
    }
    let per_problem = acc.into_iter().map(|(k, (c, n))| (k, c / n)).collect();
    Ok(Row { r: r.clone(), eval, per_problem })
}

/// Paired comparison of two rows over problems (accuracy averaged over runs).
pub fn compare(a: &Row, b: &Row) -> Paired {
    let ids: Vec<u64> = a.per_problem.keys().filter(|k| b.per_problem.contains_key(k)).copied().collect();
    let xa: Vec<f64> = ids.iter().map(|k| a.per_problem[k]).collect();
    let xb: Vec<f64> = ids.iter().map(|k| b.per_problem[k]).collect();
    paired(&xa, &xb)
}

fn cell(mean: f64, se: f64) -> String {
    format!("{:.2} ± {:.2}", 100.0 * mean, 100.0 * se)
}

fn paper_cell(setup: &Option<paper::Setup>, method: &str, iteration: Option<usize>) -> Option<[f64; 2]> {
    let s = setup.as_ref()?;
    match (method, iteration) {
        ("zero_shot_cot", _) => s.zero_shot_cot,
        ("rft", _) => s.rft,
        ("step_dpo", Some(k)) => s.step_dpo.get(k - 1).copied(),
        ("ours", Some(k)) => s.ours.get(k - 1).copied(),
        _ => None,
    }
}

/// Writes `table.md`, `table.csv` and the plots for the experiment in `dir`. `table.csv` holds
/// only quantities that are a pure function of the configuration (no wall times), so reruns
/// and resumed runs reproduce it byte for byte; wall times are in `table.md`.
pub fn write_tables(dir: &Path) -> Result<String> {
    let idx_path = dir.join("runs.json");
    let idx: RunIndex = serde_json::from_str(&crate::error::read_to_string(&idx_path)?).map_err(|e| {
        Error::Checkpoint { path: idx_path.clone(), message: format!("not a runs index: {e}") }
    })?;
    let cache = dir.join("cache");
    let setup = if idx.paper.is_empty() { None } else { paper::setup(&idx.paper) };
    let mut md = String::new();
    let protocol = if idx.transfer { "Table 2 protocol (transfer)" } else { "Table 1 protocol" };
    let _ = writeln!(md, "# {}: {protocol}\n", idx.experiment);
    let _ = writeln!(
        md,
        "Accuracy on the test set (%), mean ± SE over {} sampled evaluation runs of all {} test problems \
         (SE = sample std / sqrt(runs)). Rebuilt from the artifacts by `runner table {}`.\n",
        idx.eval_runs,
        idx.test_size,
        dir.display()
    );
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record([
        "run",
        "method",
        "iteration",
        "accuracy_mean",
        "accuracy_se",
        "runs",
        "paper_mean",
        "paper_se",
        "diff_vs_zero_shot",
        "diff_se",
        "p_value",
        "data_tokens",
        "eval_tokens",
    ])
    .map_err(|e| Error::Other(format!("table.csv: {e}")))?;
    let mut sweep_summary = Vec::new();
    for run in &idx.runs {
        let rows: Vec<Row> = run.rows.iter().map(|r| load_row(&cache, r)).collect::<Result<_>>()?;
        if idx.runs.len() > 1 {
            let _ = writeln!(md, "## Run `{}`\n", run.label);
        }
        let zs = rows.iter().find(|r| r.r.method == "zero_shot_cot");
        let header_paper = setup.as_ref().map(|s| format!(" | paper: {}", s.title)).unwrap_or_default();
        let _ = writeln!(md, "| Method | {}{header_paper} |", idx.column);
        let _ = writeln!(md, "|---|---|{}", if setup.is_some() { "---|" } else { "" });
        for r in &rows {
            let p = paper_cell(&setup, &r.r.method, r.r.iteration);
            let pc = match (&setup, p) {
                (Some(_), Some([m, s])) => format!(" | {m:.2} ± {s:.2}"),
                (Some(_), None) => " | /".into(),
                _ => String::new(),
            };
            let _ = writeln!(md, "| {} | {}{pc} |", r.name(), cell(r.eval.mean, r.eval.se));
            let cmp = zs.filter(|z| !std::ptr::eq(*z, r)).map(|z| compare(r, z));
            csv.write_record([
                run.label.clone(),
                r.r.method.clone(),
                r.r.iteration.map(|k| k.to_string()).unwrap_or_default(),
                format!("{:.6}", r.eval.mean),
                format!("{:.6}", r.eval.se),
                r.eval.accuracies.len().to_string(),
                p.map(|x| format!("{:.2}", x[0])).unwrap_or_default(),
                p.map(|x| format!("{:.2}", x[1])).unwrap_or_default(),
                cmp.map(|c| format!("{:.6}", c.diff)).unwrap_or_default(),
                cmp.map(|c| format!("{:.6}", c.se)).unwrap_or_default(),
                cmp.map(|c| format!("{:.3e}", c.p_value)).unwrap_or_default(),
                r.r.cost.data_tokens.to_string(),
                r.eval.tokens.to_string(),
            ])
            .map_err(|e| Error::Other(format!("table.csv: {e}")))?;
        }
        // Paired comparisons of ours at its best iteration.
        let best = rows.iter().filter(|r| r.r.method == "ours").reduce(|a, b| {
            if b.eval.mean > a.eval.mean {
                b
            } else {
                a
            }
        });
        if let Some(b) = best {
            let _ = writeln!(
                md,
                "\nPaired comparisons of {} (ours at its best iteration), per test problem \
                (accuracy averaged over the runs; two-sided paired t-test):\n",
                b.name()
            );
            for other in rows
                .iter()
                .filter(|r| r.r.method == "zero_shot_cot" || r.r.method == "rft" || r.r.method == "step_dpo")
            {
                if other.r.method == "step_dpo"
                    && rows.iter().filter(|r| r.r.method == "step_dpo").any(|s| s.eval.mean > other.eval.mean)
                {
                    continue; // step-DPO at its best iteration only
                }
                let c = compare(b, other);
                let _ = writeln!(
                    md,
                    "- minus {}: {:+.2} ± {:.2} points, p = {:.2e} (n = {})",
                    other.name(),
                    100.0 * c.diff,
                    100.0 * c.se,
                    c.p_value,
                    c.n
                );
            }
            sweep_summary.push((
                run.label.clone(),
                b.name(),
                b.eval.mean,
                b.eval.se,
                zs.map(|z| (z.eval.mean, z.eval.se)),
            ));
        }
        let _ = writeln!(md, "\nCompute (this machine, stages as first computed):\n");
        let _ = writeln!(
            md,
            "| Method | data tokens generated | eval tokens | data + training seconds |\n|---|---|---|---|"
        );
        for r in &rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.1} |",
                r.name(),
                r.r.cost.data_tokens,
                r.eval.tokens,
                r.r.cost.seconds
            );
        }
        let svg = plot::accuracy_plot(&rows, &format!("{} {}", idx.experiment, run.label));
        let name =
            if idx.runs.len() > 1 { format!("plot-{}.svg", sanitize(&run.label)) } else { "plot.svg".into() };
        crate::util::write_atomic(&dir.join(&name), svg.as_bytes())?;
        let _ = writeln!(md, "\n![accuracy per iteration]({name})\n");
    }
    if idx.runs.len() > 1 {
        let _ = writeln!(
            md,
            "## Sweep summary\n\n| Run | best ours | accuracy | zero-shot CoT |\n|---|---|---|---|"
        );
        for (label, name, m, s, z) in &sweep_summary {
            let zc = z.map(|(a, b)| cell(a, b)).unwrap_or_else(|| "/".into());
            let _ = writeln!(md, "| `{label}` | {name} | {} | {zc} |", cell(*m, *s));
        }
    }
    let csv = String::from_utf8(csv.into_inner().map_err(|e| Error::Other(format!("table.csv: {e}")))?)
        .expect("utf-8");
    crate::util::write_atomic(&dir.join("table.md"), md.as_bytes())?;
    crate::util::write_atomic(&dir.join("table.csv"), csv.as_bytes())?;
    Ok(md)
}

fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect()
}
