//! Inputs that cannot give a meaningful table get a clear error or a visible warning naming
//! the key: an empty or too-small training pool, a test set shorter than asked for, and (in
//! tests/pipeline.rs, which runs the binary) zero training records or preference pairs and one
//! evaluation run.

use std::path::Path;

use mcts_ps::stage::split_problems;

/// A GSM8K-format line whose answer is `n`.
fn line(q: &str, n: i64) -> String {
    format!("{{\"question\": \"{q}\", \"answer\": \"{n} + 0 = {n}\\n#### {n}\"}}\n")
}

fn write_jsonl(path: &Path, n: usize, prefix: &str) {
    let text: String = (0..n).map(|i| line(&format!("{prefix} question {i}?"), i as i64)).collect();
    std::fs::write(path, text).unwrap();
}

/// Loads an experiment over gsm8k files `train` and `test` (lines written by the caller) with
/// extra `--set`s.
fn resolve(dir: &Path, train_lines: usize, test_lines: usize, sets: &[&str]) -> mcts_ps::config::Resolved {
    let (train, test) = (dir.join("train.jsonl"), dir.join("test.jsonl"));
    if train_lines == 0 {
        std::fs::write(&train, "").unwrap();
    } else {
        write_jsonl(&train, train_lines, "train");
    }
    write_jsonl(&test, test_lines, "test");
    let file = dir.join("exp.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"bad\"\nbaselines = []\n[model]\npreset = \"tiny\"\n[task]\nkind = \"gsm8k\"\n\
             train_path = \"{}\"\ntest_path = \"{}\"\ntrain_size = 0\ntest_size = 5\n\
             [ours]\nproblems_per_iteration = 4\n",
            train.display(),
            test.display()
        ),
    )
    .unwrap();
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    mcts_ps::config::load(&file, &sets, &[]).unwrap().runs.remove(0).config
}

#[test]
fn an_empty_training_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = split_problems(&resolve(dir.path(), 0, 5, &[])).unwrap_err().to_string();
    assert!(err.contains("train.jsonl") && err.contains("task.train_path") && err.contains("empty"), "{err}");
}

#[test]
fn a_pool_smaller_than_a_draw_is_an_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    // 6 problems, 3 of them for validation: ours needs 4.
    let err = split_problems(&resolve(dir.path(), 6, 5, &["task.val_size=3"])).unwrap_err().to_string();
    assert!(
        err.contains("ours.problems_per_iteration = 4")
            && err.contains("has 3 problems")
            && err.contains("task.val_size = 3"),
        "{err}"
    );
    // Validation and examples that take the whole pool.
    let err = split_problems(&resolve(dir.path(), 6, 5, &["task.val_size=4", "task.shots=2"]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("task.shots = 2") && err.contains("task.val_size = 4") && err.contains("of 6"),
        "{err}"
    );
    // Enough: 10 problems, 3 for validation, 1 example; the splits are disjoint and fixed.
    let cfg = resolve(dir.path(), 10, 5, &["task.val_size=3", "task.shots=1"]);
    let p = split_problems(&cfg).unwrap();
    assert_eq!((p.train.len(), p.val.len(), p.shots.len()), (6, 3, 1));
    let train: Vec<&str> = p.train.iter().map(|x| x.question.as_str()).collect();
    assert!(p.val.iter().all(|v| !train.contains(&v.question.as_str())));
    assert!(!train.contains(&p.shots[0].question.as_str()));
    assert!(p.shots[0].solution.contains("The final answer is "), "{:?}", p.shots[0].solution);
    let again = split_problems(&cfg).unwrap();
    assert_eq!(
        again.val.iter().map(|x| x.id).collect::<Vec<_>>(),
        p.val.iter().map(|x| x.id).collect::<Vec<_>>()
    );
}

#[test]
fn a_short_test_set_is_a_warning_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = split_problems(&resolve(dir.path(), 10, 3, &[])).unwrap();
    assert_eq!(p.test.len(), 3);
    assert!(
        p.warnings.iter().any(|w| w.contains("task.test_size = 5") && w.contains("only 3 problems")),
        "{:?}",
        p.warnings
    );
    let p = split_problems(&resolve(dir.path(), 10, 5, &[])).unwrap();
    assert!(p.warnings.iter().all(|w| !w.contains("task.test_size")), "{:?}", p.warnings);
}

#[test]
fn one_evaluation_run_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let p = split_problems(&resolve(dir.path(), 10, 5, &["eval.runs=1"])).unwrap();
    assert!(
        p.warnings.iter().any(|w| w.contains("eval.runs = 1") && w.contains("no standard error")),
        "{:?}",
        p.warnings
    );
}
