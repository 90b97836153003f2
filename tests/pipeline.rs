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

/// Every file the stages wrote that is an artifact (not a log, a shard marker, a batch script
/// or a timing summary), relative to `results/toy/cache`, with its bytes.
fn artifacts(p: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().to_string();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            // done.json and metrics.csv hold wall times; the rest must match byte for byte.
            let skip = name.ends_with(".log")
                || name.ends_with(".out")
                || name.ends_with(".sh")
                || name.ends_with(".done")
                || name == "done.json"
                || name == "metrics.csv";
            if !skip {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let root = p.join("results/toy/cache");
    let mut out = std::collections::BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// Asserts that two projects' runs wrote the same table and the same stage files.
fn same_bytes(a: &Path, b: &Path, what: &str) {
    let read = |p: &Path| std::fs::read(p.join("results/toy/table.csv")).unwrap();
    assert_eq!(read(a), read(b), "table.csv, {what}");
    let (x, y) = (artifacts(a), artifacts(b));
    assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "the same stage files, {what}");
    for (k, v) in &x {
        assert!(v == &y[k], "{k} differs, {what}");
    }
    let kinds = |k: &str| x.keys().filter(|f| f.starts_with(&format!("{k}-"))).count();
    assert!(
        kinds("mcts") > 0 && kinds("eval") > 0 && kinds("rft") > 0 && kinds("train") > 0,
        "{:?}",
        x.keys()
    );
}

/// The `workers` executor splits each MCTS stage and RFT's sampling (by problem) and each
/// evaluation (by run block) across two `runner shard` processes: the table and every stage
/// file are the bytes of a one-process run (all four methods, two iterations). The `slurm`
/// executor, with 4 array tasks per stage, too, where Slurm is installed (CI starts one with
/// scripts/slurm-local.sh).
#[test]
fn executors_give_the_bytes_of_one_process() {
    let local = project("");
    runner(local.path(), &["experiments/toy.toml"]);
    let workers = project("\n[executor]\nkind = \"workers\"\nworkers = 2\n");
    runner(workers.path(), &["experiments/toy.toml"]);
    same_bytes(local.path(), workers.path(), "workers = 2");
    let cache = workers.path().join("results/toy/cache");
    let logs = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|d| d.join("shard-1.log").is_file())
        .count();
    // 2 x MCTS (ours) + 1 x MCTS (step-DPO iteration 2) + RFT sampling + 6 evaluations.
    assert!(logs >= 10, "stages run by two workers: {logs}");

    if !slurm_available("executors_give_the_bytes_of_one_process") {
        return;
    }
    let slurm = project(SLURM);
    let out = runner(slurm.path(), &["experiments/toy.toml"]);
    same_bytes(local.path(), slurm.path(), "slurm, 4 tasks");
    let log = std::fs::read_to_string(slurm.path().join("results/toy/run.log")).unwrap();
    assert!(log.contains("submitted slurm job"), "{log}\n{out}");
    // Shardable stages as 4-task arrays (MCTS on 4 problems, RFT on 4), training as one job.
    assert!(log.contains("(tasks 0-3 of 4)") && log.contains("(tasks 0 of 1)"), "{log}");
    // Training stages ran in Slurm jobs, and count as computed.
    assert!(out.contains("15 stages computed, 0 reused"), "{out}");
}

/// The `[executor]` section of a project that runs on Slurm (short polls for the tests).
const SLURM: &str = "\n[executor]\nkind = \"slurm\"\n[executor.slurm]\ntasks = 4\npoll_seconds = 0.2\n";

/// Whether Slurm answers here; without it a test skips with a message, except where
/// `MCTS_PS_REQUIRE_SLURM=1` (CI), where that is a failure.
fn slurm_available(test: &str) -> bool {
    let ok = Command::new("sinfo").arg("--noheader").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("MCTS_PS_REQUIRE_SLURM").as_deref() != Ok("1"),
            "{test}: MCTS_PS_REQUIRE_SLURM=1 but sinfo does not answer (scripts/slurm-local.sh starts a cluster)"
        );
        eprintln!(
            "{test}: skipped, no Slurm here (sinfo does not answer; scripts/slurm-local.sh starts one)"
        );
    }
    ok
}

/// `squeue` lines `job_task|state|name` of this test's jobs.
fn queue() -> Vec<(String, String, String)> {
    let out = Command::new("squeue")
        .args(["--noheader", "--array", "--format=%i|%T|%j"])
        .output()
        .expect("squeue runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split('|').collect();
            (f.len() == 3).then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string()))
        })
        .collect()
}

/// `scancel` of one running array task: it is resubmitted and the bytes do not change. Then a
/// coordinator killed with SIGKILL mid-stage and started again: the tasks that had finished
/// are not run again (their markers keep their times, their logs hold one attempt) and the
/// bytes are those of a one-process run.
#[test]
fn slurm_survives_scancel_and_a_killed_coordinator() {
    if !slurm_available("slurm_survives_scancel_and_a_killed_coordinator") {
        return;
    }
    let local = project("");
    runner(local.path(), &["experiments/toy.toml"]);
    let bin = env!("CARGO_BIN_EXE_runner");

    // scancel of one running task of an MCTS array. A task can write its shard marker between
    // the check and the scancel (then nothing needs resubmitting): up to three tries.
    let mut resubmitted = None;
    for _attempt in 0..3 {
        let p = project(SLURM);
        let mut child = Command::new(bin).arg("experiments/toy.toml").current_dir(p.path()).spawn().unwrap();
        let stage_dir =
            |name: &str| p.path().join("results/toy/cache").join(name.trim_start_matches("mcts-ps-"));
        let mut cancelled = None;
        for _ in 0..6000 {
            let q = queue();
            let hit = q.iter().find(|(id, state, name)| {
                let task = id.split('_').nth(1).and_then(|t| t.parse::<usize>().ok());
                name.starts_with("mcts-ps-mcts-")
                    && state == "RUNNING"
                    && task.is_some_and(|t| !stage_dir(name).join(format!("shard-{t}-of-4.done")).is_file())
            });
            if let Some((id, _, _)) = hit {
                assert!(Command::new("scancel").arg(id).status().unwrap().success());
                cancelled = Some(id.clone());
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(cancelled.is_some(), "saw no running MCTS task to cancel");
        assert!(child.wait().unwrap().success());
        let log = std::fs::read_to_string(p.path().join("results/toy/run.log")).unwrap();
        same_bytes(local.path(), p.path(), "after scancel");
        if log.contains("left the queue without finishing") && log.contains("resubmitting") {
            resubmitted = Some(p);
            break;
        }
    }
    assert!(resubmitted.is_some(), "no try saw a cancelled task resubmitted");

    // SIGKILL of the coordinator once some tasks of an unfinished stage have finished.
    let p = project(SLURM);
    let cache = p.path().join("results/toy/cache");
    let mut child = Command::new(bin).arg("experiments/toy.toml").current_dir(p.path()).spawn().unwrap();
    let mut killed = None;
    for _ in 0..6000 {
        let hit = std::fs::read_dir(&cache).ok().and_then(|rd| {
            rd.map(|e| e.unwrap().path()).find(|d| {
                !d.join("done.json").is_file()
                    && std::fs::read_dir(d).unwrap().any(|f| {
                        let n = f.unwrap().file_name().to_string_lossy().to_string();
                        n.starts_with("shard-") && n.ends_with("-of-4.done")
                    })
            })
        });
        if hit.is_some() {
            killed = hit;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let d = killed.expect("a stage with a finished task");
    let markers = |d: &Path| -> Vec<(String, std::time::SystemTime)> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|f| f.unwrap())
            .filter(|f| f.file_name().to_string_lossy().ends_with("-of-4.done"))
            .map(|f| (f.file_name().to_string_lossy().to_string(), f.metadata().unwrap().modified().unwrap()))
            .collect();
        v.sort();
        v
    };
    let before = markers(&d);
    runner(p.path(), &["experiments/toy.toml"]);
    let after = markers(&d);
    for (name, t) in &before {
        assert!(after.contains(&(name.clone(), *t)), "{name} was rewritten: {before:?} -> {after:?}");
        let i = name.trim_start_matches("shard-").split('-').next().unwrap();
        let task_log = std::fs::read_to_string(d.join(format!("task-{i}-of-4.log"))).unwrap();
        assert_eq!(task_log.matches("== slurm job").count(), 1, "task {i} ran once:\n{task_log}");
    }
    let log = std::fs::read_to_string(p.path().join("results/toy/run.log")).unwrap();
    let n = before.len();
    assert!(
        log.lines().any(|l| l.contains(&format!(": {n} of ")) && l.contains("tasks finished before"))
            || log.lines().any(|l| l.contains("tasks finished before") && !l.contains(": 0 of ")),
        "the rerun reports finished tasks:\n{log}"
    );
    same_bytes(local.path(), p.path(), "after kill -9 of the coordinator");
}

/// Slurm set-up errors name the command and what it printed.
#[test]
fn slurm_errors_name_the_command() {
    // No sbatch on PATH.
    let p = project(SLURM);
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("experiments/toy.toml")
        .current_dir(p.path())
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("executor.kind = \"slurm\"") && err.contains("cannot run `sbatch --version`"),
        "{err}"
    );
    if !slurm_available("slurm_errors_name_the_command") {
        return;
    }
    // An unknown partition: sbatch's own message.
    let p = project(&format!("{SLURM}partition = \"no-such-partition\"\n"));
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("experiments/toy.toml")
        .current_dir(p.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("sbatch") && err.contains("partition"), "{err}");
}

/// Reads `results/toy/<file>`.
fn read(p: &Path, file: &str) -> String {
    std::fs::read_to_string(p.join("results/toy").join(file)).unwrap()
}

#[test]
fn empty_training_data_and_one_eval_run_are_warned_about_in_the_log_and_the_table() {
    // The toy model (seed 3, 40 pretraining steps) solves nothing: RFT keeps no sample, MCTS
    // scores every child alike (no records, no preference pairs).
    let p = project("");
    let sets = ["--set", "ours.iterations=1", "--set", "step_dpo.iterations=1", "--set", "eval.runs=1"];
    runner(p.path(), &[&["experiments/toy.toml"][..], &sets[..]].concat());
    let (log, md) = (read(p.path(), "run.log"), read(p.path(), "table.md"));
    for w in [
        "rft: 0 of 8 samples were correct on 4 problems (raise rft.samples_per_problem or rft.problems)",
        "ours iteration 1: MCTS gave 0 training records on 4 problems",
        "step-DPO iteration 1: 0 preference pairs on 4 problems",
        "eval.runs = 1: one sampled run per model, so cells have no standard error",
    ] {
        assert!(log.contains(&format!("warning: {w}")), "run.log lacks {w:?}:\n{log}");
        assert!(md.contains(w), "table.md lacks {w:?}:\n{md}");
    }
    assert!(md.contains("| Zero-shot-CoT | 0.00 (no SE: eval.runs = 1) |"), "{md}");
    assert!(!md.contains("± 0.00 |"), "{md}");
    // A rerun computes nothing and still shows the training stages' warnings.
    std::fs::remove_file(p.path().join("results/toy/run.log")).unwrap();
    let again = runner(p.path(), &[&["experiments/toy.toml"][..], &sets[..]].concat());
    assert!(again.contains("nothing was recomputed"), "{again}");
    assert!(read(p.path(), "run.log").contains("warning: ours iteration 1: MCTS gave 0 training records"));
    assert_eq!(read(p.path(), "table.md"), md);
}

#[test]
fn seeds_validation_and_compute_matched_rft() {
    // seeds = [3] is the plain run (seed 3): the same stage folders, nothing recomputed.
    let p = project("");
    let fast = ["--set", "ours.iterations=1", "--set", "step_dpo.iterations=1"];
    runner(p.path(), &[&["experiments/toy.toml"][..], &fast[..]].concat());
    let plain = read(p.path(), "table.csv");
    let again =
        runner(p.path(), &[&["experiments/toy.toml"][..], &fast[..], &["--set", "seeds=[3]"][..]].concat());
    assert!(again.contains("nothing was recomputed"), "{again}");
    // Only the seed column differs: it names the seed now.
    assert_eq!(read(p.path(), "table.csv"), plain.replace("\n,,", "\n,3,"));

    // Two training seeds, a validation split and compute-matched RFT.
    let q = project("");
    let sets = [
        "--set",
        "seeds=[0, 1]",
        "--set",
        "task.val_size=10",
        "--set",
        "rft.match_tokens=\"ours\"",
        "--set",
        "ours.iterations=1",
        "--set",
        "step_dpo.iterations=1",
    ];
    runner(q.path(), &[&["experiments/toy.toml"][..], &sets[..]].concat());
    let md = read(q.path(), "table.md");
    assert!(md.contains("| Method | tiny on arith | validation |"), "{md}");
    assert!(
        md.contains("| RFT (compute-matched) |") && md.contains("mean over 2 training seeds (0, 1)"),
        "{md}"
    );
    assert!(md.contains("chosen on validation") && md.contains("over seeds"), "{md}");
    let csv = read(q.path(), "table.csv");
    for seed in ["0", "1", "mean"] {
        for split in ["test", "validation"] {
            assert!(csv.contains(&format!("\n,{seed},{split},ours,1,")), "{seed} {split}:\n{csv}");
        }
    }
    // Zero-shot CoT does not depend on the training seed: one evaluation per split. Everything
    // trained does: two of each.
    let cache = q.path().join("results/toy/cache");
    let kinds: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().rsplit_once('-').unwrap().0.to_string())
        .collect();
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(count("pretrain"), 1, "{kinds:?}");
    assert_eq!(count("mcts"), 2, "{kinds:?}");
    assert_eq!(count("rft"), 4, "RFT and matched RFT per seed: {kinds:?}");
    // 2 zero-shot + per seed: RFT, matched RFT, ours 1, step-DPO 1, each on 2 splits.
    assert_eq!(count("eval"), 2 + 2 * 4 * 2, "{kinds:?}");
    // The matched RFT stage generated at least the tokens of its seed's first MCTS iteration.
    let runs: serde_json::Value = serde_json::from_str(&read(q.path(), "runs.json")).unwrap();
    for run in runs["runs"].as_array().unwrap() {
        let cost = |m: &str| {
            let r = run["rows"].as_array().unwrap().iter().find(|r| r["method"] == m).unwrap();
            r["cost"]["data_tokens"].as_u64().unwrap()
        };
        let (mcts, matched, rft) = (cost("ours"), cost("rft_matched"), cost("rft"));
        assert!(
            matched >= mcts && matched > rft,
            "seed {}: matched {matched}, mcts {mcts}, rft {rft}",
            run["seed"]
        );
    }
}
