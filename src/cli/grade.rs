//! `runner grade`: the graders on their own, for checking answers by hand, comparing grader
//! versions, and re-grading finished evaluations.
//!
//! - `runner grade --task math FILE.jsonl` (or `-` for stdin): each line has `"gold"` and
//!   either `"answer"` (an extracted answer) or `"completion"` (a whole model output, extracted
//!   as the pipeline does). Each line is printed back with `"extracted"` and `"correct"` added;
//!   a summary goes to stderr.
//! - `runner grade --task arith --eval DIR`: re-grades the completions of a finished eval stage
//!   (`DIR/eval.jsonl`) with the current grader and prints the stored and the new accuracy, per
//!   run and overall, with every changed verdict on stderr, so a grader change is visible on
//!   existing results.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::eval::Outcome;
use crate::task::TaskKind;

/// `runner grade` arguments.
#[derive(Debug, Args)]
pub struct GradeArgs {
    /// Which grader: arith, gsm8k or math.
    #[arg(long, value_enum)]
    pub task: TaskKind,
    /// A JSONL file of {"gold", "answer" | "completion"} lines, or `-` for stdin.
    #[arg(required_unless_present = "eval", conflicts_with = "eval")]
    pub file: Option<PathBuf>,
    /// An eval stage folder (holding eval.jsonl) to re-grade.
    #[arg(long)]
    pub eval: Option<PathBuf>,
}

/// Runs `runner grade`.
pub fn grade(a: &GradeArgs) -> Result<()> {
    match (&a.eval, &a.file) {
        (Some(dir), _) => regrade(a.task, dir),
        (None, Some(file)) => grade_lines(a.task, file),
        (None, None) => Err(Error::Other("runner grade: give a FILE (or -) or --eval DIR".into())),
    }
}

fn grade_lines(task: TaskKind, file: &Path) -> Result<()> {
    let (name, reader): (PathBuf, Box<dyn BufRead>) = if file == Path::new("-") {
        (PathBuf::from("<stdin>"), Box::new(std::io::stdin().lock()))
    } else {
        let f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
        (file.to_path_buf(), Box::new(std::io::BufReader::new(f)))
    };
    let out = std::io::stdout();
    let mut out = out.lock();
    let (mut n, mut correct) = (0usize, 0usize);
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| Error::io(&name, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| Error::Data { path: name.clone(), line: i + 1, message };
        let mut v: Value = serde_json::from_str(&line).map_err(|e| bad(format!("not a JSON object: {e}")))?;
        let obj = v.as_object_mut().ok_or_else(|| bad("expected a JSON object".into()))?;
        let field = |k: &str| {
            obj.get(k).map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(format!("field \"{k}\" must be a string, found {x}")))
            })
        };
        let gold = field("gold").ok_or_else(|| bad("missing field \"gold\"".into()))??;
        let extracted = match (field("answer"), field("completion")) {
            (Some(a), _) => Some(a?),
            (None, Some(c)) => task.extract_answer(&c?),
            (None, None) => return Err(bad("expected a field \"answer\" or \"completion\"".into())),
        };
        let ok = extracted.as_deref().is_some_and(|p| task.answers_match(p, &gold));
        obj.insert("extracted".into(), json!(extracted));
        obj.insert("correct".into(), json!(ok));
        writeln!(out, "{v}").map_err(|e| Error::io(Path::new("<stdout>"), e))?;
        n += 1;
        correct += usize::from(ok);
    }
    eprintln!(
        "{}: {correct} of {n} correct ({:.2}%)",
        name.display(),
        100.0 * correct as f64 / n.max(1) as f64
    );
    Ok(())
}

fn regrade(task: TaskKind, dir: &Path) -> Result<()> {
    let path = dir.join("eval.jsonl");
    if !path.is_file() {
        return Err(Error::Other(format!(
            "{}: no eval.jsonl here; --eval takes a finished eval stage folder (results/<experiment>/cache/eval-...)",
            dir.display()
        )));
    }
    let text = crate::error::read_to_string(&path)?;
    let mut per_run: std::collections::BTreeMap<u64, (usize, usize, usize)> = Default::default();
    let mut changed = 0usize;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let o: Outcome = serde_json::from_str(line).map_err(|e| Error::Data {
            path: path.clone(),
            line: i + 1,
            message: format!("expected an evaluation outcome (run, problem, completion, gold, correct): {e}"),
        })?;
        let extracted = task.extract_answer(&o.completion);
        let now = extracted.as_deref().is_some_and(|p| task.answers_match(p, &o.gold));
        let e = per_run.entry(o.run).or_default();
        e.0 += 1;
        e.1 += usize::from(o.correct);
        e.2 += usize::from(now);
        if now != o.correct {
            changed += 1;
            eprintln!(
                "run {} problem {}: {} -> {} (extracted {:?}, was {:?}, gold {:?})",
                o.run, o.problem, o.correct, now, extracted, o.extracted, o.gold
            );
        }
    }
    fn pct(a: usize, n: usize) -> f64 {
        100.0 * a as f64 / n.max(1) as f64
    }
    let runs: Vec<Value> = per_run
        .iter()
        .map(|(r, (n, old, new))| json!({"run": r, "problems": n, "stored": pct(*old, *n), "regraded": pct(*new, *n)}))
        .collect();
    let mean = |f: fn(&(usize, usize, usize)) -> f64| {
        per_run.values().map(f).sum::<f64>() / per_run.len().max(1) as f64
    };
    let report = json!({
        "eval": dir,
        "task": task,
        "runs": runs,
        "stored_accuracy": mean(|(n, o, _)| pct(*o, *n)),
        "regraded_accuracy": mean(|(n, _, w)| pct(*w, *n)),
        "changed_verdicts": changed,
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
    Ok(())
}
