//! Tables and plots from the artifacts alone: `runs.json` lists, per run, which evaluation
//! stage measured each row; everything else is read from those stages' folders. Writes
//! `table.md`, `table.csv` and `plot.svg` (one plot per run of a sweep).

pub mod breakdown;
pub mod compare;
pub mod paper;
pub mod plot;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::eval::EvalSummary;
use crate::eval::Outcome;
use crate::util::read_jsonl;

/// What one method/iteration cost to produce (besides its evaluation).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Tokens generated to make its training data (MCTS, RFT sampling), every earlier
    /// iteration's included.
    pub data_tokens: u64,
    /// Seconds of data generation and training, every earlier iteration's included (stages as
    /// first computed).
    pub seconds: f64,
    /// Tokens generated for this iteration's own data.
    #[serde(default)]
    pub own_data_tokens: u64,
    /// Seconds of this iteration's own data generation and training.
    #[serde(default)]
    pub own_seconds: f64,
}

/// One row of a table: which evaluation stage measured it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowRef {
    /// `zero_shot_cot`, `rft`, `step_dpo` or `ours`.
    pub method: String,
    /// Iteration for iterated methods.
    pub iteration: Option<usize>,
    /// Folder (in `cache/`) of the evaluation stage on the test set ("" when `eval.test` is
    /// off).
    pub eval_stage: String,
    /// Folder of the evaluation stage on the validation split, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_stage: Option<String>,
    /// Cost of the row's own data and training.
    pub cost: Cost,
}

/// One run (a sweep point, or the whole experiment).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunEntry {
    /// Sweep label ("" without a sweep).
    pub label: String,
    /// Training seed, when the experiment lists `seeds` (runs with the same label and other
    /// seeds are aggregated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Its rows, in table order.
    pub rows: Vec<RowRef>,
    /// Warnings about its inputs and stages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Worked examples in every prompt (`task.shots`; the base model's row is then few-shot).
    #[serde(default)]
    pub shots: usize,
    /// `report.breakdown`: field -> value -> the test problems (ids) with that value, for the
    /// tables broken down by them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub breakdown: BTreeMap<String, BTreeMap<String, Vec<u64>>>,
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
    /// Validation problems (0 = no validation split).
    #[serde(default)]
    pub val_size: usize,
    /// Evaluation runs per cell.
    pub eval_runs: usize,
    /// The runs.
    pub runs: Vec<RunEntry>,
}

/// One evaluation stage's measurements.
#[derive(Clone, Debug)]
pub struct Measured {
    /// Its summary.
    pub eval: EvalSummary,
    /// Per-problem accuracy averaged over the evaluation runs, by problem id.
    pub per_problem: BTreeMap<u64, f64>,
    /// Every outcome as `(run, problem, correct)`.
    pub outcomes: Vec<(u64, u64, bool)>,
}

/// A row (method, iteration) with its measurements, over one training seed or aggregated
/// over several (then `eval.mean` is the mean over seeds and `eval.se` their standard error).
#[derive(Clone, Debug)]
pub struct Row {
    /// The reference.
    pub r: RowRef,
    /// Evaluation summary on the test set (for the plot).
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
        ("rft_matched", _) => "RFT (compute-matched)".into(),
        ("step_dpo", Some(k)) => format!("Step-level DPO - Iteration {k}"),
        ("ours", Some(k)) => format!("Ours - Iteration {k}"),
        ("step_dpo", None) => "Step-level DPO".into(),
        ("ours", None) => "Ours".into(),
        (m, Some(k)) => format!("{m} - Iteration {k}"),
        (m, None) => m.to_string(),
    }
}

fn load_stage(cache: &Path, stage: &str) -> Result<Measured> {
    let dir = cache.join(stage);
    let text = crate::error::read_to_string(&dir.join("done.json"))?;
    let eval: EvalSummary = serde_json::from_str(&text)
        .map_err(|e| Error::Checkpoint { path: dir.join("done.json"), message: e.to_string() })?;
    let outcomes: Vec<Outcome> = read_jsonl(&dir.join("eval.jsonl"))?;
    let mut acc: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for o in &outcomes {
        let e = acc.entry(o.problem).or_default();
        e.0 += f64::from(u8::from(o.correct));
        e.1 += 1.0;
    }
    let per_problem = acc.into_iter().map(|(k, (c, n))| (k, c / n)).collect();
    let outcomes = outcomes.iter().map(|o| (o.run, o.problem, o.correct)).collect();
    Ok(Measured { eval, per_problem, outcomes })
}

/// A value of a comparison's headline test (over seeds when there are several, else pooled =
/// over problems), for the row's last CSV line only.
fn headline(
    cmp: &Option<compare::Comparison>,
    last: bool,
    f: impl Fn(&crate::eval::stats::Paired) -> String,
) -> String {
    cmp.filter(|_| last).map(|c| f(&c.over_seeds.unwrap_or(c.pooled))).unwrap_or_default()
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

/// One row of a sweep point over its training seeds.
struct Multi {
    r: RowRef,
    /// Test measurements, one per seed (empty when `eval.test` was off).
    test: Vec<Measured>,
    /// Validation measurements, one per seed (empty without a validation split).
    val: Vec<Measured>,
    /// Cost, mean over seeds.
    data_tokens: f64,
    seconds: f64,
    /// This iteration's own share of the two above.
    own_data_tokens: f64,
    own_seconds: f64,
}

/// Mean and SE over seeds of the per-seed means, and the SE of that mean from evaluation
/// sampling alone (sqrt of the summed per-seed variances / seeds).
fn over_seeds(ms: &[Measured]) -> (f64, f64, f64) {
    let means: Vec<f64> = ms.iter().map(|m| m.eval.mean).collect();
    let (mean, se_seeds) = crate::eval::stats::mean_se(&means);
    let n = ms.len() as f64;
    let se_runs = (ms.iter().map(|m| m.eval.se * m.eval.se).sum::<f64>()).sqrt() / n;
    (mean, se_seeds, se_runs)
}

/// The text of a cell: one seed, mean ± SE over evaluation runs (no SE with one run); several,
/// mean ± SE over seeds, with the evaluation-sampling SE in brackets.
fn multi_cell(ms: &[Measured], runs: usize) -> String {
    // A stage every seed shares (zero-shot CoT) is one measurement, not several.
    // Its SE is over evaluation runs only: marked, as the other cells' is over seeds.
    let shared = is_shared(ms);
    let mark = if shared { " †" } else { "" };
    let ms = if shared { &ms[..1] } else { ms };
    match ms {
        [] => "/".into(),
        [m] if runs < 2 => format!("{:.2} (no SE: eval.runs = 1){mark}", 100.0 * m.eval.mean),
        [m] => format!("{}{mark}", cell(m.eval.mean, m.eval.se)),
        _ => {
            let (mean, s, r) = over_seeds(ms);
            if runs < 2 {
                format!("{} [eval SE n/a]", cell(mean, s))
            } else {
                format!("{} [{:.2}]", cell(mean, s), 100.0 * r)
            }
        }
    }
}

/// A method's best validation result in one run of a sweep: method, row name, mean, SE.
type Best<'a> = (&'a str, String, f64, f64);

/// The tuning rule, the same for every trained method: per method, the sweep run (label) where
/// its best iteration's validation accuracy is highest; a tie goes to the run listed first.
fn chosen<'t, 'a>(tuning: &'t [(String, Vec<Best<'a>>)]) -> Vec<(&'static str, &'t str, &'t Best<'a>)> {
    ["rft", "rft_matched", "step_dpo", "ours"]
        .into_iter()
        .filter_map(|m| {
            tuning
                .iter()
                .filter_map(|(label, b)| b.iter().find(|x| x.0 == m).map(|x| (m, label.as_str(), x)))
                .reduce(|a, b| if b.2 .2 > a.2 .2 { b } else { a })
        })
        .collect()
}

/// Mean and SE of a row for the sweep summary: over seeds with several (over runs for a stage
/// the seeds share), over runs with one.
fn summary_cell(ms: &[Measured]) -> Option<(f64, f64)> {
    if ms.is_empty() {
        return None;
    }
    let ms = if is_shared(ms) { &ms[..1] } else { ms };
    let (m, s, r) = over_seeds(ms);
    Some((m, if ms.len() > 1 { s } else { r }))
}

/// Whether the measurements of several seeds are one stage they all share (the base model).
pub(crate) fn is_shared(ms: &[Measured]) -> bool {
    ms.len() > 1 && ms.iter().all(|m| m.eval == ms[0].eval)
}

fn best<'m>(rows: &'m [Multi], method: &str, on_val: bool) -> Option<&'m Multi> {
    let score = |m: &Multi| {
        let ms = if on_val { &m.val } else { &m.test };
        ms.iter().map(|x| x.eval.mean).sum::<f64>() / ms.len().max(1) as f64
    };
    rows.iter().filter(|r| r.r.method == method).reduce(|a, b| if score(b) > score(a) { b } else { a })
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
    // Sweep points in order; the entries of one point are its training seeds.
    let mut groups: Vec<(String, Vec<&RunEntry>)> = Vec::new();
    for e in &idx.runs {
        match groups.iter_mut().find(|(l, _)| *l == e.label) {
            Some((_, v)) => v.push(e),
            None => groups.push((e.label.clone(), vec![e])),
        }
    }
    let n_seeds = groups.first().map(|g| g.1.len()).unwrap_or(1);
    let seeds_text = if n_seeds > 1 {
        let list: Vec<String> =
            groups[0].1.iter().map(|e| e.seed.map(|s| s.to_string()).unwrap_or_default()).collect();
        format!(
            "Cells are the mean over {n_seeds} training seeds ({}) ± SE over seeds (sample std / sqrt(seeds)); \
             in brackets, the SE of that mean from evaluation sampling alone. ",
            list.join(", ")
        )
    } else if idx.eval_runs < 2 {
        "One evaluation run: cells have no standard error (eval.runs = 1). ".into()
    } else {
        format!(
            "Cells are mean ± SE over {} sampled evaluation runs (SE = sample std / sqrt(runs)). ",
            idx.eval_runs
        )
    };
    let mut md = String::new();
    let protocol = if idx.transfer { "Table 2 protocol (transfer)" } else { "Table 1 protocol" };
    let _ = writeln!(md, "# {}: {protocol}\n", idx.experiment);
    let val_text = if idx.val_size > 0 {
        format!(
            " The validation column is {} problems taken out of the training pool (task.val_size): choose \
             settings and iterations there; the test column is read once.",
            idx.val_size
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        md,
        "Accuracy (%) on all {} test problems (the test column), {} sampled evaluation runs per model. \
         {seeds_text}Rebuilt from the artifacts by `runner table {}`.{val_text}\n",
        idx.test_size,
        idx.eval_runs,
        dir.display()
    );
    let mut csv = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| Error::Other(format!("table.csv: {e}"));
    csv.write_record([
        "run",
        "seed",
        "split",
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
        "headline_unit",
        "p_value_pooled",
        "bootstrap_low",
        "bootstrap_high",
        "bootstrap_p",
        "data_tokens",
        "data_tokens_iteration",
        "eval_tokens",
    ])
    .map_err(csv_err)?;
    let mut sweep_summary = Vec::new();
    // Per sweep point, each trained method's best validation accuracy (over its iterations):
    // the same choice for every method.
    let mut tuning: Vec<(String, Vec<Best>)> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut by_field = String::new();
    let mut fields: std::collections::BTreeSet<&str> = Default::default();
    for (label, entries) in &groups {
        // The base model's row is few-shot when the prompt shows worked examples.
        let shots = entries[0].shots;
        let name = |method: &str, iteration: Option<usize>| match (method, shots) {
            ("zero_shot_cot", k) if k > 0 => format!("Few-shot CoT ({k} shots)"),
            _ => display(method, iteration),
        };
        let breakdown_groups = &entries[0].breakdown;
        fields.extend(breakdown_groups.keys().map(String::as_str));
        for e in entries {
            for w in &e.warnings {
                let at = match (label.is_empty(), e.seed) {
                    (true, None) => String::new(),
                    (true, Some(s)) => format!("seed {s}: "),
                    (false, None) => format!("`{label}`: "),
                    (false, Some(s)) => format!("`{label}`, seed {s}: "),
                };
                let line = format!("{at}{w}");
                if !warnings.contains(&line) {
                    warnings.push(line);
                }
            }
        }
        // Rows in the first seed's order; every seed has the same rows.
        let mut rows: Vec<Multi> = Vec::new();
        for r in &entries[0].rows {
            let mut m = Multi {
                r: r.clone(),
                test: vec![],
                val: vec![],
                data_tokens: 0.0,
                seconds: 0.0,
                own_data_tokens: 0.0,
                own_seconds: 0.0,
            };
            for e in entries {
                let Some(x) = e.rows.iter().find(|x| x.method == r.method && x.iteration == r.iteration)
                else {
                    continue;
                };
                if !x.eval_stage.is_empty() {
                    m.test.push(load_stage(&cache, &x.eval_stage)?);
                }
                if let Some(v) = &x.val_stage {
                    m.val.push(load_stage(&cache, v)?);
                }
                let k = entries.len() as f64;
                m.data_tokens += x.cost.data_tokens as f64 / k;
                m.seconds += x.cost.seconds / k;
                m.own_data_tokens += x.cost.own_data_tokens as f64 / k;
                m.own_seconds += x.cost.own_seconds / k;
            }
            rows.push(m);
        }
        if groups.len() > 1 {
            let _ = writeln!(md, "## Run `{label}`\n");
        }
        let has_test = rows.iter().any(|r| !r.test.is_empty());
        let has_val = rows.iter().any(|r| !r.val.is_empty());
        if !breakdown_groups.is_empty() && has_test {
            let named: Vec<(String, &[Measured])> = rows
                .iter()
                .filter(|r| !r.test.is_empty())
                .map(|r| (name(&r.r.method, r.r.iteration), r.test.as_slice()))
                .collect();
            if groups.len() > 1 {
                let _ = writeln!(by_field, "## Run `{label}`\n");
            }
            let se_kind = if n_seeds > 1 {
                format!("mean over {n_seeds} seeds ± SE over seeds")
            } else {
                format!("mean ± SE over {} evaluation runs", idx.eval_runs)
            };
            by_field.push_str(&breakdown::tables(breakdown_groups, &named, &se_kind));
        }
        let mut head = String::from("| Method |");
        if has_test {
            let _ = write!(head, " {} |", idx.column);
        }
        if has_val {
            head.push_str(" validation |");
        }
        let cols = usize::from(has_test) + usize::from(has_val) + usize::from(setup.is_some());
        if let Some(s) = &setup {
            let _ = write!(head, " paper: {} |", s.title);
        }
        let _ = writeln!(md, "{head}");
        let _ = writeln!(md, "|---|{}", "---|".repeat(cols));
        let zs = rows.iter().find(|r| r.r.method == "zero_shot_cot");
        for r in &rows {
            let name = name(&r.r.method, r.r.iteration);
            let mut line = format!("| {name} |");
            if has_test {
                let _ = write!(line, " {} |", multi_cell(&r.test, idx.eval_runs));
            }
            if has_val {
                let _ = write!(line, " {} |", multi_cell(&r.val, idx.eval_runs));
            }
            let p = paper_cell(&setup, &r.r.method, r.r.iteration);
            match (&setup, p) {
                (Some(_), Some([m, s])) => {
                    let _ = write!(line, " {m:.2} ± {s:.2} |");
                }
                (Some(_), None) => line.push_str(" / |"),
                _ => {}
            }
            let _ = writeln!(md, "{line}");
            for (split, ms) in [("test", &r.test), ("validation", &r.val)] {
                if ms.is_empty() {
                    continue;
                }
                let base: Option<&[Measured]> = zs.filter(|z| !std::ptr::eq(*z, r)).map(|z| {
                    if split == "test" {
                        z.test.as_slice()
                    } else {
                        z.val.as_slice()
                    }
                });
                let cmp = base
                    .filter(|b| b.len() == ms.len())
                    .map(|b| compare::compare(&ms.iter().collect::<Vec<_>>(), &b.iter().collect::<Vec<_>>()));
                let mut lines: Vec<(String, f64, f64, usize, u64)> = ms
                    .iter()
                    .zip(entries)
                    .map(|(m, e)| {
                        let seed = e.seed.map(|s| s.to_string()).unwrap_or_default();
                        (seed, m.eval.mean, m.eval.se, m.eval.accuracies.len(), m.eval.tokens)
                    })
                    .collect();
                if ms.len() > 1 {
                    let (mean, s, _) = over_seeds(ms);
                    let tokens = ms.iter().map(|m| m.eval.tokens).sum::<u64>() / ms.len() as u64;
                    lines.push(("mean".into(), mean, s, idx.eval_runs, tokens));
                }
                for (seed, mean, se, runs, tokens) in lines {
                    let last = seed == "mean" || ms.len() == 1;
                    csv.write_record([
                        label.clone(),
                        seed,
                        split.to_string(),
                        r.r.method.clone(),
                        r.r.iteration.map(|k| k.to_string()).unwrap_or_default(),
                        format!("{mean:.6}"),
                        format!("{se:.6}"),
                        runs.to_string(),
                        p.filter(|_| split == "test").map(|x| format!("{:.2}", x[0])).unwrap_or_default(),
                        p.filter(|_| split == "test").map(|x| format!("{:.2}", x[1])).unwrap_or_default(),
                        // The headline test: over seeds with several, over problems with one.
                        headline(&cmp, last, |t| format!("{:.6}", t.diff)),
                        headline(&cmp, last, |t| format!("{:.6}", t.se)),
                        headline(&cmp, last, |t| format!("{:.3e}", t.p_value)),
                        cmp.filter(|_| last)
                            .map(|c| if c.over_seeds.is_some() { "seeds" } else { "problems" }.to_string())
                            .unwrap_or_default(),
                        cmp.filter(|_| last).map(|c| format!("{:.3e}", c.pooled.p_value)).unwrap_or_default(),
                        cmp.filter(|_| last).map(|c| format!("{:.6}", c.bootstrap.ci.0)).unwrap_or_default(),
                        cmp.filter(|_| last).map(|c| format!("{:.6}", c.bootstrap.ci.1)).unwrap_or_default(),
                        cmp.filter(|_| last)
                            .map(|c| format!("{:.3e}", c.bootstrap.p_value))
                            .unwrap_or_default(),
                        format!("{:.0}", r.data_tokens),
                        format!("{:.0}", r.own_data_tokens),
                        tokens.to_string(),
                    ])
                    .map_err(csv_err)?;
                }
            }
        }
        if rows.iter().any(|r| is_shared(&r.test) || is_shared(&r.val)) {
            let _ = writeln!(
                md,
                "\n† One model every training seed shares (the base model is not trained): its SE is over \
                 the evaluation runs only."
            );
        }
        if has_val {
            let mut best_of = Vec::new();
            for m in ["rft", "rft_matched", "step_dpo", "ours"] {
                if let Some(b) = best(&rows, m, true).filter(|b| !b.val.is_empty()) {
                    let (mean, s, r) = over_seeds(&b.val);
                    let se = if b.val.len() > 1 { s } else { r };
                    best_of.push((m, name(&b.r.method, b.r.iteration), mean, se));
                }
            }
            tuning.push((label.clone(), best_of));
        }
        // Paired comparisons of ours at its best iteration, chosen on validation when there
        // is a validation split (choosing on the test set would flatter it).
        let on_val = has_val;
        if let Some(b) = best(&rows, "ours", on_val).filter(|_| has_test) {
            let chosen = if on_val { "chosen on validation" } else { "chosen on the test set" };
            let _ = writeln!(
                md,
                "\nPaired comparisons on the test set of {} (ours at its best iteration, {chosen}); a \
                problem's accuracy is averaged over the evaluation runs; two-sided tests{}:\n",
                name(&b.r.method, b.r.iteration),
                if n_seeds > 1 {
                    ". The headline is over training seeds (each seed one unit); the bootstrap resamples seeds, \
                     then problems; the pooled test is shown for reference only"
                } else {
                    ""
                }
            );
            let others = ["zero_shot_cot", "rft", "rft_matched", "step_dpo"];
            for m in others {
                let Some(o) = best(&rows, m, on_val) else { continue };
                if o.test.len() != b.test.len() {
                    continue;
                }
                let (xa, xb): (Vec<&Measured>, Vec<&Measured>) =
                    (b.test.iter().collect(), o.test.iter().collect());
                let c = compare::compare(&xa, &xb);
                let _ = writeln!(md, "{}", compare::bullet(&name(&o.r.method, o.r.iteration), &c));
            }
            sweep_summary.push((
                label.clone(),
                name(&b.r.method, b.r.iteration),
                summary_cell(&b.test),
                summary_cell(&b.val),
                zs.and_then(|z| summary_cell(&z.test)),
            ));
        } else if let Some(b) = best(&rows, "ours", true).filter(|_| has_val) {
            sweep_summary.push((
                label.clone(),
                name(&b.r.method, b.r.iteration),
                None,
                summary_cell(&b.val),
                None,
            ));
        }
        let _ = writeln!(
            md,
            "\nCompute (this machine, stages as first computed{}); a row's total includes every earlier \
             iteration's data and training (iteration k's model took all of them to make):\n",
            if n_seeds > 1 { "; mean over seeds" } else { "" }
        );
        let _ = writeln!(
            md,
            "| Method | data tokens generated (this iteration) | data tokens, total | data + training seconds (this \
             iteration) | seconds, total | eval tokens |\n|---|---|---|---|---|---|"
        );
        for r in &rows {
            let ms = if r.test.is_empty() { &r.val } else { &r.test };
            let tokens = ms.iter().map(|m| m.eval.tokens).sum::<u64>() / ms.len().max(1) as u64;
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.0} | {:.1} | {:.1} | {} |",
                name(&r.r.method, r.r.iteration),
                r.own_data_tokens,
                r.data_tokens,
                r.own_seconds,
                r.seconds,
                tokens
            );
        }
        // The plot: test accuracy (validation without a test column), over seeds.
        let plot_rows: Vec<Row> = rows
            .iter()
            .map(|r| {
                let ms = if r.test.is_empty() { &r.val } else { &r.test };
                let (mean, s, runs_se) = over_seeds(ms);
                let se = if ms.len() > 1 { s } else { runs_se };
                Row {
                    r: r.r.clone(),
                    eval: EvalSummary { accuracies: vec![], mean, se, tokens: 0, seconds: 0.0 },
                    per_problem: BTreeMap::new(),
                }
            })
            .collect();
        let svg = plot::accuracy_plot(&plot_rows, &format!("{} {}", idx.experiment, label));
        let name = if groups.len() > 1 { format!("plot-{}.svg", sanitize(label)) } else { "plot.svg".into() };
        crate::util::write_atomic(&dir.join(&name), svg.as_bytes())?;
        let _ = writeln!(md, "\n![accuracy per iteration]({name})\n");
    }
    if groups.len() > 1 {
        let _ = writeln!(
            md,
            "## Sweep summary\n\n| Run | best ours | test | validation | zero-shot CoT (test) |\n|---|---|---|---|---|"
        );
        let c = |x: &Option<(f64, f64)>| x.map(|(a, b)| cell(a, b)).unwrap_or_else(|| "/".into());
        for (label, name, t, v, z) in &sweep_summary {
            let _ = writeln!(md, "| `{label}` | {name} | {} | {} | {} |", c(t), c(v), c(z));
        }
        if !tuning.is_empty() {
            let _ = writeln!(
                md,
                "\n## Tuning on validation\n\nEach trained method's best validation accuracy over its iterations, \
                 per run of the sweep; the run chosen for a method is the one where it is highest (the same \
                 rule for every method; a tie goes to the run listed first).\n\n| Run | method at its best iteration | validation |\n|---|---|---|"
            );
            for (label, best_of) in &tuning {
                for (_, n, mean, se) in best_of {
                    let _ = writeln!(md, "| `{label}` | {n} | {} |", cell(*mean, *se));
                }
            }
            let _ = writeln!(md, "\nChosen on validation:\n");
            for (m, label, (_, n, mean, se)) in chosen(&tuning) {
                let _ = writeln!(md, "- {}: `{label}` ({n}, {})", display(m, None), cell(*mean, *se));
            }
            let _ = writeln!(md);
        }
    }
    if !by_field.is_empty() {
        let fields: Vec<&str> = fields.into_iter().collect();
        let _ = writeln!(
            md,
            "Accuracy by {} (report.breakdown): [table-breakdown.md](table-breakdown.md).\n",
            fields.join(", ")
        );
        let head = format!(
            "# {}: accuracy by {} on the test set\n\nThe rows of table.md, each test problem counted in the \
             column of its value; n is the number of test problems with that value.\n\n",
            idx.experiment,
            fields.join(", ")
        );
        crate::util::write_atomic(&dir.join("table-breakdown.md"), (head + &by_field).as_bytes())?;
    }
    if !warnings.is_empty() {
        let _ = writeln!(md, "## Warnings\n");
        for w in &warnings {
            let _ = writeln!(md, "- {w}");
        }
        let _ = writeln!(md);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_gets_the_run_where_its_best_validation_is_highest() {
        let b = |m: &'static str, acc: f64| (m, format!("{m} row"), acc, 1.0);
        let tuning = vec![
            ("lr=1".to_string(), vec![b("rft", 25.0), b("step_dpo", 26.0), b("ours", 26.6)]),
            ("lr=2".to_string(), vec![b("rft", 25.6), b("step_dpo", 18.8), b("ours", 26.6)]),
            ("lr=3".to_string(), vec![b("rft", 23.0), b("ours", 13.6)]),
        ];
        let got: Vec<(&str, &str, f64)> = chosen(&tuning).into_iter().map(|(m, l, x)| (m, l, x.2)).collect();
        // rft: highest at lr=2; step_dpo: lr=1; ours: a tie between lr=1 and lr=2 goes to lr=1;
        // rft_matched: in no run, so not listed.
        assert_eq!(got, vec![("rft", "lr=2", 25.6), ("step_dpo", "lr=1", 26.0), ("ours", "lr=1", 26.6)]);
    }
}
