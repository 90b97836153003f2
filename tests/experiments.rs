//! Every experiment and baseline file shipped in the repository loads and resolves. GPU
//! experiments point at local model folders and dataset files that do not exist here, so they
//! are resolved with their paths redirected to test fixtures and the backend set to cpu; every
//! other key is checked as written.

use std::path::{Path, PathBuf};

use mcts_ps::config::{self, Layer};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_for(kind: &str, split: &str) -> String {
    match kind {
        "math" => "tests/fixtures/math_mini.jsonl".into(),
        _ => format!("data/gsm_symbolic/{split}.jsonl"),
    }
}

#[test]
fn every_experiment_resolves() {
    std::env::set_current_dir(root()).unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("experiments")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        seen += 1;
        let rel = path.strip_prefix(root()).unwrap().to_path_buf();
        let raw: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        let model = raw.get("model").and_then(|m| m.as_table()).cloned().unwrap_or_default();
        let task = raw.get("task").and_then(|m| m.as_table()).cloned().unwrap_or_default();
        let mut sets = vec![];
        if model.contains_key("path") {
            sets.push("model.path=tests/fixtures/tiny_llama".to_string());
            sets.push("model.backend=cpu".to_string());
            sets.push("model.dtype=f32".to_string());
        }
        let kind = task.get("kind").and_then(|k| k.as_str()).unwrap_or("arith").to_string();
        let test_kind = task
            .get("test_kind")
            .and_then(|k| k.as_str())
            .filter(|k| !k.is_empty())
            .unwrap_or(&kind)
            .to_string();
        if kind != "arith" {
            sets.push(format!("task.train_path={}", fixture_for(&kind, "train")));
            sets.push(format!("task.test_path={}", fixture_for(&test_kind, "test")));
        }
        let loaded = config::load(&rel, &sets, &[]).unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
        assert!(!loaded.runs.is_empty());
        for run in &loaded.runs {
            let text = config::annotated_toml(run).unwrap();
            assert!(text.contains(&format!("name = \"{}\"", run.config.exp.name)));
            assert!(!mcts_ps::pipeline::run::plan(&run.config, None).is_empty());
        }
        if rel.ends_with("sweep_alpha.toml") {
            assert_eq!(loaded.runs.len(), 3);
        }
    }
    assert!(seen >= 7, "expected the shipped experiments, found {seen}");
}

#[test]
fn every_baseline_file_sets_only_its_own_table() {
    for name in config::KNOWN_BASELINES {
        let p: &Path = &root().join("baselines").join(format!("{name}.toml"));
        let layer =
            Layer::toml(&p.display().to_string(), Some(p), &std::fs::read_to_string(p).unwrap()).unwrap();
        assert_eq!(layer.top_keys(), vec![name.to_string()], "{}", p.display());
    }
}
