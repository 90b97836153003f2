//! The problems of a run: the training pool and test set read from their files (or generated),
//! the validation split and worked examples taken out of the pool, and the checks that every
//! draw the configuration makes finds its problems.

use std::collections::BTreeMap;

use crate::config::{DataSource, Resolved};
use crate::error::{Error, Result};
use crate::task::arith::{generate_pool, Pool};
use crate::task::prompt::Shot;
use crate::task::{gsm8k, math, Problem, TaskKind};

/// The problems of one run after the validation split and the worked examples are taken out
/// of the training pool.
#[derive(Clone, Debug)]
pub struct Problems {
    /// What methods draw their training problems from.
    pub train: Vec<Problem>,
    /// `task.val_size` problems of the pool, drawn by `(seed, "validation")`.
    pub val: Vec<Problem>,
    /// The test set.
    pub test: Vec<Problem>,
    /// `task.shots` problems of the pool with reference solutions, drawn by `(seed, "shots")`.
    pub shots: Vec<Shot>,
    /// Inputs that are accepted but deserve a word (a test set shorter than asked for).
    pub warnings: Vec<String>,
    /// Records the training and the test file gave, as loaded.
    pub file_records: (usize, usize),
}

/// Loads the problem sets, splits off validation and worked examples, and checks that the pool
/// covers every draw the configuration makes. Both splits use the experiment's `seed` (not a
/// training seed), so every training seed meets the same validation and test problems.
pub fn split_problems(cfg: &Resolved) -> Result<Problems> {
    let ProblemSets { mut train, test, notes, records: file_records } = problem_sets(cfg)?;
    let e = &cfg.exp;
    let t = &e.task;
    let pool_desc = match &cfg.train_data {
        DataSource::Arith => format!("task.train_size = {}", t.train_size),
        DataSource::File(_, p) => {
            format!("{}, task.train_path, task.train_size = {}", p.display(), t.train_size)
        }
    };
    if train.is_empty() {
        return Err(Error::Other(format!(
            "{}: {}: the training pool is empty; expected at least one problem",
            cfg.file.display(),
            pool_desc
        )));
    }
    let mut warnings = notes;
    // Leakage: the pool keeps no question of the test set and none twice (validation and worked
    // examples are drawn from it below, so they are disjoint from the test set too).
    let (repeats_test, repeats_pool) = crate::task::drop_overlaps(&mut train, &test);
    if repeats_test > 0 {
        warnings.push(format!(
            "{repeats_test} problems of the training pool ({pool_desc}) repeat a test question (same text up to \
             case and spaces): left out of the pool"
        ));
    }
    if repeats_pool > 0 {
        warnings.push(format!(
            "{repeats_pool} problems of the training pool ({pool_desc}) repeat an earlier question of the pool: \
             left out"
        ));
    }
    for field in &e.report.breakdown {
        if !test.iter().any(|p| p.meta.contains_key(field)) {
            let fields: std::collections::BTreeSet<&str> =
                test.iter().flat_map(|p| p.meta.keys().map(String::as_str)).collect();
            let fields: Vec<&str> = fields.into_iter().collect();
            return Err(Error::Other(format!(
                "{}: report.breakdown: field {field:?} is in no record of the test set ({}); expected one of: {}",
                cfg.file.display(),
                data_name(&cfg.test_data),
                if fields.is_empty() {
                    "(none: these records have no such fields)".to_string()
                } else {
                    fields.join(", ")
                }
            )));
        }
    }
    if e.eval.runs == 1 {
        warnings.push(
            "eval.runs = 1: one sampled run per model, so cells have no standard error over runs".to_string(),
        );
    }
    if t.test_size > 0 && test.len() < t.test_size {
        warnings.push(format!(
            "task.test_size = {} but the test set has only {} problems: the table is over {}",
            t.test_size,
            test.len(),
            test.len()
        ));
    }
    let take = |pool: &mut Vec<Problem>, k: usize, purpose: &str| -> Vec<Problem> {
        if k == 0 {
            return Vec::new();
        }
        let picked = crate::task::draw(pool, k.min(pool.len()), e.seed, purpose, &[]);
        let ids: std::collections::HashSet<u64> = picked.iter().map(|p| p.id).collect();
        pool.retain(|p| !ids.contains(&p.id));
        picked
    };
    let pool_len = train.len();
    if t.shots + t.val_size >= pool_len {
        return Err(Error::Other(format!(
            "{}: task.shots = {} and task.val_size = {} take {} problems out of a training pool of {} ({}); \
             expected fewer, leaving problems to train on",
            cfg.file.display(),
            t.shots,
            t.val_size,
            t.shots + t.val_size,
            pool_len,
            pool_desc
        )));
    }
    let shots: Vec<Shot> = {
        let with_solution: Vec<Problem> = train.iter().filter(|p| p.solution.is_some()).cloned().collect();
        if t.shots > with_solution.len() {
            return Err(Error::Other(format!(
                "{}: task.shots = {}: the training pool has {} problems with reference solutions; expected at least {}",
                cfg.file.display(),
                t.shots,
                with_solution.len(),
                t.shots
            )));
        }
        let picked = crate::task::draw(&with_solution, t.shots, e.seed, "shots", &[]);
        let ids: std::collections::HashSet<u64> = picked.iter().map(|p| p.id).collect();
        train.retain(|p| !ids.contains(&p.id));
        picked
            .into_iter()
            .map(|p| Shot { question: p.question, solution: p.solution.expect("filtered above") })
            .collect()
    };
    let val = take(&mut train, t.val_size, "validation");
    // Every draw must find its problems in the pool.
    let mut needs = vec![("ours.problems_per_iteration", e.ours.problems_per_iteration)];
    if e.baselines.iter().any(|b| b == "rft") {
        needs.push(("rft.problems", e.rft.problems));
    }
    if e.baselines.iter().any(|b| b == "step_dpo") {
        needs.push(("step_dpo.problems_per_iteration", e.step_dpo.problems_per_iteration));
    }
    for (key, n) in needs {
        if n > train.len() {
            return Err(Error::Other(format!(
                "{}: {key} = {n} but the training pool has {} problems ({}, less task.val_size = {} and \
                 task.shots = {}); expected at most {}",
                cfg.file.display(),
                train.len(),
                pool_desc,
                t.val_size,
                t.shots,
                train.len()
            )));
        }
    }
    Ok(Problems { train, val, test, shots, warnings, file_records })
}

/// The training pool and test set as loaded, before validation and worked examples.
#[derive(Clone, Debug)]
pub struct ProblemSets {
    /// The training pool (a subset of its file when `task.train_size` asks).
    pub train: Vec<Problem>,
    /// The test set.
    pub test: Vec<Problem>,
    /// What the loaders left out (MATH records with an empty gold answer).
    pub notes: Vec<String>,
    /// Records the training and the test file gave (before any subset).
    pub records: (usize, usize),
}

/// Loads or generates the training pool and the test set. A size below a file's length
/// (`task.train_size`, `task.test_size`) takes a subset drawn on `seed` (streams
/// "train-subset", "test-subset") and kept in file order: MATH files are sorted by subject, so
/// their first lines would be one subject only.
pub fn problem_sets(cfg: &Resolved) -> Result<ProblemSets> {
    let t = &cfg.exp.task;
    let mut notes = Vec::new();
    let mut records = Vec::new();
    let mut read = |source: &DataSource, n: usize, purpose: &str| -> Result<Vec<Problem>> {
        let DataSource::File(kind, p) = source else { unreachable!("files only") };
        let all = match kind {
            TaskKind::Math => {
                let (v, left_out) = math::load_noting(p)?;
                notes.extend(left_out);
                v
            }
            _ => gsm8k::load(p)?,
        };
        records.push(all.len());
        Ok(subset(all, n, cfg.exp.seed, purpose))
    };
    let test = match &cfg.test_data {
        DataSource::Arith => {
            generate_pool(&t.arith, cfg.exp.seed, Pool::Test, t.test_size.max(1), &Default::default())
        }
        file => read(file, t.test_size, "test-subset")?,
    };
    let test_records = test.len();
    let train = match &cfg.train_data {
        DataSource::Arith => {
            let exclude: std::collections::HashSet<String> =
                test.iter().map(|p| p.question.clone()).collect();
            generate_pool(&t.arith, cfg.exp.seed, Pool::Train, t.train_size.max(1), &exclude)
        }
        file => read(file, t.train_size, "train-subset")?,
    };
    let train_records = train.len();
    // A file's records as loaded (a generated set has no file: its size).
    let (train_records, test_records) = match (&cfg.train_data, &cfg.test_data, records.as_slice()) {
        (DataSource::File(..), DataSource::File(..), [te, tr]) => (*tr, *te),
        (_, DataSource::File(..), [te]) => (train_records, *te),
        _ => (train_records, test_records),
    };
    Ok(ProblemSets { train, test, notes, records: (train_records, test_records) })
}

/// The test problems by the values of each field of `fields` (`report.breakdown`): field ->
/// value -> problem ids, for `runs.json` and the breakdown tables.
pub fn groups(test: &[Problem], fields: &[String]) -> BTreeMap<String, BTreeMap<String, Vec<u64>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<u64>>> = BTreeMap::new();
    for f in fields {
        let by_value = out.entry(f.clone()).or_default();
        for p in test {
            if let Some(v) = p.meta.get(f) {
                by_value.entry(v.clone()).or_default().push(p.id);
            }
        }
    }
    out
}

/// A problem source as messages name it: the file, or "generated arithmetic".
pub fn data_name(d: &DataSource) -> String {
    match d {
        DataSource::Arith => "generated arithmetic".into(),
        DataSource::File(_, p) => p.display().to_string(),
    }
}

/// What `runner plan` says of a run's problems: each data file with its record count and a
/// short content hash, and how the pool, validation split, worked examples and test set are
/// drawn from them (`p`: [`split_problems`] of `cfg`).
pub fn describe(cfg: &Resolved, p: &Problems) -> Result<Vec<String>> {
    let (e, t) = (&cfg.exp, &cfg.exp.task);
    let file = |d: &DataSource, role: &str| -> Result<String> {
        Ok(match d {
            DataSource::Arith => format!("{role}: generated arithmetic (task.arith, seed {})", e.seed),
            DataSource::File(kind, path) => {
                let bytes = std::fs::read(path).map_err(|err| Error::io(path, err))?;
                let lines = bytes.iter().filter(|&&b| b == b'\n').count();
                let hash = crate::util::sha256_hex(&bytes);
                let kind = format!("{kind:?}").to_lowercase();
                let records = match role {
                    "training file" => p.file_records.0,
                    _ => p.file_records.1,
                };
                format!(
                    "{role}: {} ({kind} format, {lines} lines, {records} records loaded, sha256 {})",
                    path.display(),
                    &hash[..12]
                )
            }
        })
    };
    let size = |d: &DataSource, n: usize, purpose: &str| match (d, n) {
        (DataSource::Arith, n) => format!("{n} generated"),
        (_, 0) => "all records of the file".to_string(),
        (_, n) => format!("{n} records drawn on seed {} (stream {purpose:?}), in file order", e.seed),
    };
    let mut out = vec![
        file(&cfg.train_data, "training file")?,
        file(&cfg.test_data, "test file")?,
        format!(
            "test set: {} problems ({}; task.test_size = {})",
            p.test.len(),
            size(&cfg.test_data, t.test_size, "test-subset"),
            t.test_size
        ),
        format!(
            "worked examples: {} (task.shots), drawn on seed {} (stream \"shots\") from the pool, removed from it",
            p.shots.len(),
            e.seed
        ),
        format!(
            "validation: {} problems (task.val_size), drawn on seed {} (stream \"validation\") from the pool, removed from it",
            p.val.len(),
            e.seed
        ),
        format!(
            "training pool: {} problems left (of {}; task.train_size = {}); each training seed draws its \
             iterations' problems from it",
            p.train.len(),
            size(&cfg.train_data, t.train_size, "train-subset"),
            t.train_size
        ),
    ];
    out.extend(p.warnings.iter().map(|w| format!("warning: {w}")));
    Ok(out)
}

/// `n` problems of `all` drawn by `(seed, purpose)`, in their file order; all of them when `n`
/// is 0 or not below their number.
fn subset(all: Vec<Problem>, n: usize, seed: u64, purpose: &str) -> Vec<Problem> {
    if n == 0 || n >= all.len() {
        return all;
    }
    let mut picked = crate::task::draw(&all, n, seed, purpose, &[]);
    picked.sort_by_key(|p| p.id);
    picked
}
