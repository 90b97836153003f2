//! Configuration tests: layering, provenance, errors, sweeps.

use std::path::{Path, PathBuf};

use super::*;

/// A temp project with `experiments/x.toml` and the three baseline files.
fn project(experiment: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("experiments")).unwrap();
    std::fs::create_dir_all(dir.path().join("baselines")).unwrap();
    for (name, body) in [
        ("zero_shot_cot", "[zero_shot_cot]\n"),
        ("rft", "[rft]\nsamples_per_problem = 8\n"),
        ("step_dpo", "[step_dpo]\nbeta = 0.2\n"),
    ] {
        std::fs::write(dir.path().join("baselines").join(format!("{name}.toml")), body).unwrap();
    }
    let path = dir.path().join("experiments/x.toml");
    std::fs::write(&path, experiment).unwrap();
    (dir, path)
}

const BASE: &str =
    "name = \"t\"\nbaselines = [\"zero_shot_cot\", \"rft\", \"step_dpo\"]\n[model]\npreset = \"tiny\"\n";

fn err(path: &Path, sets: &[&str]) -> String {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    load(path, &sets, &[]).unwrap_err().to_string()
}

#[test]
fn defaults_alone_are_a_complete_schema() {
    let fig = Figment::from(Layer::toml("built-in defaults", None, DEFAULTS).unwrap());
    let exp: Experiment = fig.extract().unwrap();
    assert_eq!(exp.mcts.rollouts, 16);
    assert_eq!(exp.ours.beta, 1.0);
}

#[test]
fn layers_apply_in_order() {
    let (_d, path) = project(&format!("{BASE}[mcts]\nalpha = 2.0\nrollouts = 8\n"));
    let env = vec![("RUNNER_MCTS__ROLLOUTS".to_string(), "12".to_string())];
    let l = load(&path, &["mcts.c_ucb=0.5".to_string()], &env).unwrap();
    let c = &l.runs[0].config.exp;
    assert_eq!(c.mcts.alpha, 2.0); // file over defaults
    assert_eq!(c.mcts.rollouts, 12); // env over file
    assert_eq!(c.mcts.c_ucb, 0.5); // --set over all
    assert_eq!(c.rft.samples_per_problem, 8); // baseline file over defaults
    assert_eq!(c.step_dpo.beta, 0.2);
    // The experiment file overrides a baseline file.
    let (_d, path) = project(&format!("{BASE}[rft]\nsamples_per_problem = 2\n"));
    assert_eq!(load(&path, &[], &[]).unwrap().runs[0].config.exp.rft.samples_per_problem, 2);
}

#[test]
fn provenance_names_each_layer() {
    let (_d, path) = project(&format!("{BASE}[mcts]\nalpha = 2.0\n"));
    let l = load(&path, &["mcts.rollouts=3".to_string()], &[]).unwrap();
    let text = annotated_toml(&l.runs[0]).unwrap();
    let line = |key: &str| text.lines().find(|l| l.starts_with(&format!("{key} ="))).unwrap().to_string();
    assert!(line("alpha").contains("x.toml"), "{text}");
    assert!(line("rollouts").contains("--set mcts.rollouts"), "{text}");
    assert!(line("c_ucb").contains("built-in defaults"), "{text}");
    assert!(line("samples_per_problem").contains("rft.toml"), "{text}");
}

#[test]
fn typo_names_file_and_key() {
    let (_d, path) = project(&format!("{BASE}[mcts]\nalpah = 1\n"));
    let e = err(&path, &[]);
    assert!(e.contains("x.toml") && e.contains("key `mcts.alpah`") && e.contains("unknown key"), "{e}");
    assert!(e.contains("alpha"), "should list the accepted keys: {e}");
}

#[test]
fn typo_in_set_and_env_names_that_layer() {
    let (_d, path) = project(BASE);
    let e = err(&path, &["mcts.rolouts=3"]);
    assert!(e.contains("--set mcts.rolouts") && e.contains("key `mcts.rolouts`"), "{e}");
    let env = vec![("RUNNER_MCTS__ALPAH".to_string(), "1".to_string())];
    let e = load(&path, &[], &env).unwrap_err().to_string();
    assert!(e.contains("RUNNER_MCTS__ALPAH") && e.contains("mcts.alpah"), "{e}");
}

#[test]
fn out_of_range_values_are_rejected_naming_their_source() {
    let (_d, path) = project(BASE);
    let e = err(&path, &["mcts.rollouts=0"]);
    assert!(e.contains("--set mcts.rollouts") && e.contains("mcts.rollouts") && e.contains(">= 1"), "{e}");
    let e = err(&path, &["mcts.alpha=0"]);
    assert!(e.contains("mcts.alpha") && e.contains("> 0"), "{e}");
    let e = err(&path, &["mcts.alpha=-1.5"]);
    assert!(e.contains("mcts.alpha"), "{e}");
    let e = err(&path, &["eval.temperature=-0.1"]);
    assert!(e.contains("eval.temperature") && e.contains(">= 0"), "{e}");
    let (_d, path) = project(&format!("{BASE}[mcts]\ntemperature = -1.0\n"));
    let e = err(&path, &[]);
    assert!(e.contains("x.toml") && e.contains("mcts.temperature"), "{e}");
}

#[test]
fn wrong_type_names_file_key_and_types() {
    let (_d, path) = project(&format!("{BASE}[mcts]\nrollouts = \"many\"\n"));
    let e = err(&path, &[]);
    assert!(e.contains("x.toml") && e.contains("mcts.rollouts") && e.contains("string"), "{e}");
    let e = err(&project(BASE).1, &["mcts.rollouts=1.5"]);
    assert!(e.contains("mcts.rollouts"), "{e}");
}

#[test]
fn unknown_variant_lists_choices() {
    let (_d, path) = project(&format!("{BASE}[mcts]\nadvance = \"random\"\n"));
    let e = err(&path, &[]);
    assert!(e.contains("mcts.advance") && e.contains("most_visited"), "{e}");
}

#[test]
fn missing_dataset_file_is_an_error() {
    let (_d, path) = project(&format!(
        "{BASE}[task]\nkind = \"gsm8k\"\ntrain_path = \"/no/such/train.jsonl\"\ntest_path = \"/no/such/test.jsonl\"\n"
    ));
    let e = err(&path, &[]);
    assert!(e.contains("task.train_path") && e.contains("/no/such/train.jsonl"), "{e}");
}

#[test]
fn unknown_baseline_is_an_error() {
    let (_d, path) = project("baselines = [\"rtf\"]\n[model]\npreset = \"tiny\"\n");
    let e = err(&path, &[]);
    assert!(
        e.contains("x.toml") && e.contains("baselines") && e.contains("\"rtf\"") && e.contains("rft"),
        "{e}"
    );
}

#[test]
fn baseline_files_may_only_set_their_own_table() {
    let (d, path) = project(BASE);
    std::fs::write(d.path().join("baselines/rft.toml"), "[rft]\nproblems = 3\n[mcts]\nalpha = 9.0\n")
        .unwrap();
    let e = err(&path, &[]);
    assert!(e.contains("rft.toml") && e.contains("mcts"), "{e}");
}

#[test]
fn model_needs_exactly_one_source() {
    let (_d, path) = project("name = \"t\"\n");
    assert!(err(&path, &[]).contains("model.preset"));
    let (_d, path) = project("[model]\npreset = \"tiny\"\npath = \"/tmp\"\n");
    assert!(err(&path, &[]).contains("both"));
}

#[test]
fn sweep_expands_to_the_cartesian_product() {
    let (_d, path) =
        project(&format!("{BASE}[sweep]\n\"mcts.alpha\" = [0.5, 1.0]\n\"mcts.rollouts\" = [8, 16]\n"));
    let l = load(&path, &[], &[]).unwrap();
    assert_eq!(l.runs.len(), 4);
    let labels: Vec<&str> = l.runs.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "mcts.alpha=0.5,mcts.rollouts=8",
            "mcts.alpha=0.5,mcts.rollouts=16",
            "mcts.alpha=1,mcts.rollouts=8",
            "mcts.alpha=1,mcts.rollouts=16"
        ]
    );
    assert_eq!(l.runs[1].config.exp.mcts.rollouts, 16);
    assert_eq!(l.runs[2].config.exp.mcts.alpha, 1.0);
    let text = annotated_toml(&l.runs[0]).unwrap();
    assert!(text.lines().any(|x| x.starts_with("alpha = 0.5") && x.contains("[sweep]")), "{text}");
}

#[test]
fn sweep_values_are_validated() {
    let (_d, path) = project(&format!("{BASE}[sweep]\n\"mcts.alpha\" = [0.5, -1.0]\n"));
    let e = err(&path, &[]);
    assert!(e.contains("mcts.alpha") && e.contains("[sweep]"), "{e}");
    let (_d, path) = project(&format!("{BASE}[sweep]\n\"mcts.alpah\" = [0.5]\n"));
    let e = err(&path, &[]);
    assert!(e.contains("mcts.alpah"), "{e}");
}

#[test]
fn set_flag_syntax_is_checked() {
    let (_d, path) = project(BASE);
    let e = err(&path, &["mcts.alpha"]);
    assert!(e.contains("--set") && e.contains("key.path=value"), "{e}");
}

#[test]
fn toml_syntax_errors_name_the_file() {
    let (_d, path) = project("name = \n");
    let e = err(&path, &[]);
    assert!(e.contains("x.toml") && e.contains("TOML"), "{e}");
}
