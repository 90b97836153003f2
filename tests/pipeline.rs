//! The whole Table 1 protocol end to end through the `runner` binary, at toy scale: every row
//! and file is written; a rerun computes nothing; batch size and problems in flight do not
//! change table.csv; `runner table` rebuilds it from the artifacts; a sweep over alpha shares
//! the MCTS trees of the first iteration.

use std::path::Path;
use std::process::Command;

const SMALL: &str = r#"
name = "toy"
seed = 3
baselines = ["zero_shot_cot", "rft", "step_dpo"]

[model]
preset = "tiny"
context = 160

[model.tiny]
hidden_size = 32
intermediate_size = 64
layers = 2
heads = 4
kv_heads = 2

[pretrain]
steps = 40
batch_size = 8
problems = 400

[task]
kind = "arith"
train_size = 60
test_size = 16

[task.arith]
max_ops = 3

[mcts]
rollouts = 4
max_children = 2
max_steps = 5
max_step_tokens = 16
max_solution_tokens = 48

[train]
lr = 1e-3
batch_size = 4

[ours]
iterations = 2
problems_per_iteration = 4

[rft]
problems = 4
samples_per_problem = 2

[step_dpo]
iterations = 2
problems_per_iteration = 4

[eval]
runs = 2
max_tokens = 48
"#;

fn project(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.path().join("experiments")).unwrap();
    std::fs::create_dir_all(dir.path().join("baselines")).unwrap();
    for b in ["zero_shot_cot", "rft", "step_dpo"] {
        std::fs::copy(
            root.join("baselines").join(format!("{b}.toml")),
            dir.path().join("baselines").join(format!("{b}.toml")),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("experiments/toy.toml"), format!("{SMALL}{extra}")).unwrap();
    dir
}

fn runner(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("runner starts");
    let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "runner {args:?} failed:\n{o}\n{e}");
    o.into_owned()
}

#[test]
fn table1_protocol_end_to_end() {
    let p = project("");
    let out = runner(p.path(), &["experiments/toy.toml"]);
    let res = p.path().join("results/toy");
    for f in ["table.md", "table.csv", "plot.svg", "runs.json", "config.resolved.toml", "run.log"] {
        assert!(res.join(f).is_file(), "missing {f}");
    }
    let md = std::fs::read_to_string(res.join("table.md")).unwrap();
    for row in [
        "| Zero-shot-CoT |",
        "| RFT |",
        "| Step-level DPO - Iteration 1 |",
        "| Step-level DPO - Iteration 2 |",
        "| Ours - Iteration 1 |",
        "| Ours - Iteration 2 |",
    ] {
        assert!(md.contains(row), "{row} missing from:\n{md}");
    }
    assert!(md.contains(" ± ") && md.contains("paired t-test") && md.contains("p = "), "{md}");
    let csv = std::fs::read_to_string(res.join("table.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7, "{csv}");
    assert!(out.contains("stages computed"), "{out}");
    let svg = std::fs::read_to_string(res.join("plot.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("Ours") && svg.contains("polyline"));

    // A second run recomputes nothing and says so.
    let again = runner(p.path(), &["experiments/toy.toml"]);
    assert!(again.contains("nothing was recomputed"), "{again}");
    assert_eq!(std::fs::read_to_string(res.join("table.csv")).unwrap(), csv);

    // `runner table` rebuilds the same CSV from the artifacts alone.
    std::fs::remove_file(res.join("table.csv")).unwrap();
    runner(p.path(), &["table", "results/toy"]);
    assert_eq!(std::fs::read_to_string(res.join("table.csv")).unwrap(), csv);

    // Another batch size and number of problems in flight, from scratch: same table.csv.
    let q = project("");
    runner(
        q.path(),
        &["experiments/toy.toml", "--set", "infer.batch_size=3", "--set", "mcts.problems_in_flight=1"],
    );
    assert_eq!(std::fs::read_to_string(q.path().join("results/toy/table.csv")).unwrap(), csv);

    // Resume: remove a finished stage's marker and part of its items; the rerun recomputes
    // exactly what is missing and reproduces the table.
    let cache = res.join("cache");
    let mcts: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|d| d.file_name().unwrap().to_string_lossy().starts_with("mcts-"))
        .collect();
    let d = &mcts[0];
    std::fs::remove_file(d.join("done.json")).unwrap();
    let first = std::fs::read_dir(d.join("problems")).unwrap().next().unwrap().unwrap().path();
    std::fs::remove_file(first).unwrap();
    let resumed = runner(p.path(), &["experiments/toy.toml"]);
    assert!(resumed.contains("1 stages computed"), "{resumed}");
    assert_eq!(std::fs::read_to_string(res.join("table.csv")).unwrap(), csv);
}

#[test]
fn alpha_sweep_shares_the_first_mcts_trees() {
    let p = project("\n[sweep]\n\"mcts.alpha\" = [0.5, 2.0]\n");
    let out =
        runner(p.path(), &["experiments/toy.toml", "--set", "baselines=[]", "--set", "ours.iterations=1"]);
    let res = p.path().join("results/toy");
    let kinds: Vec<String> = std::fs::read_dir(res.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().split('-').next().unwrap().to_string())
        .collect();
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(count("mcts"), 1, "one MCTS stage shared by both alphas: {kinds:?}");
    assert_eq!(count("pretrain"), 1);
    assert_eq!(count("train"), 2, "training differs per alpha: {kinds:?}");
    let md = std::fs::read_to_string(res.join("table.md")).unwrap();
    assert!(
        md.contains("Sweep summary") && md.contains("mcts.alpha=0.5") && md.contains("mcts.alpha=2"),
        "{md}"
    );
    assert!(
        res.join("plot-mcts.alpha_0.5.svg").is_file()
            || std::fs::read_dir(&res).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("plot-"))
    );
    assert!(out.contains("stages computed"));
}

/// The `workers` executor splits each MCTS stage (by problem) and each evaluation (by run)
/// across two `runner shard` processes; the table and every merged file are the bytes of a
/// one-process run.
#[test]
fn workers_executor_gives_the_bytes_of_one_process() {
    let local = project("");
    runner(local.path(), &["experiments/toy.toml", "--set", "baselines=[\"step_dpo\"]"]);
    let workers = project("\n[executor]\nkind = \"workers\"\nworkers = 2\n");
    runner(workers.path(), &["experiments/toy.toml", "--set", "baselines=[\"step_dpo\"]"]);
    let read = |p: &Path, rel: &str| std::fs::read(p.join("results/toy").join(rel)).unwrap();
    assert_eq!(read(local.path(), "table.csv"), read(workers.path(), "table.csv"));
    let stage_dirs = |p: &Path, kind: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p.join("results/toy/cache"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with(&format!("{kind}-")))
            .collect();
        v.sort();
        v
    };
    let evals = stage_dirs(local.path(), "eval");
    assert!(evals.len() >= 3, "{evals:?}");
    assert_eq!(evals, stage_dirs(workers.path(), "eval"), "same eval keys");
    for d in &evals {
        for f in ["eval.jsonl", "run-0.jsonl", "run-1.jsonl"] {
            let rel = format!("cache/{d}/{f}");
            assert_eq!(read(local.path(), &rel), read(workers.path(), &rel), "{rel}");
        }
        assert!(workers.path().join("results/toy/cache").join(d).join("shard-1.log").is_file(), "{d}");
    }
    let dirs = stage_dirs(local.path(), "mcts");
    assert!(dirs.len() >= 2, "{dirs:?}");
    assert_eq!(dirs, stage_dirs(workers.path(), "mcts"), "same stage keys");
    for d in &dirs {
        for f in ["trees.jsonl", "solutions.jsonl"] {
            let rel = format!("cache/{d}/{f}");
            assert_eq!(read(local.path(), &rel), read(workers.path(), &rel), "{rel}");
        }
        let logs = workers.path().join("results/toy/cache").join(d);
        assert!(
            logs.join("shard-0.log").is_file() && logs.join("shard-1.log").is_file(),
            "shard logs in {d}"
        );
    }
}
