//! Every configuration error names where the bad value came from. Each shipped experiment file
//! is mutated line by line (a key deleted, renamed, given a value of the wrong type or out of
//! range, a sweep over bad values added) and loaded from memory under its own path: loading
//! must not panic, and every error must name that file (the only layer that changed).

use std::path::{Path, PathBuf};

use mcts_ps::config;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The experiment as a CPU run: GPU files point at folders that exist only on a GPU host.
fn runnable_here(text: &str) -> String {
    text.lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("path =") {
                "path = \"tests/fixtures/tiny_llama\"".to_string()
            } else if t.starts_with("backend =") {
                "backend = \"cpu\"".to_string()
            } else if t.starts_with("dtype =") {
                "dtype = \"f32\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Mutations of one file: `(description, mutated text)`.
fn mutations(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let with = |i: usize, new: &str| {
        let mut v: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        v[i] = new.to_string();
        v.join("\n")
    };
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim();
        if t.starts_with('#') || t.starts_with('[') || !t.contains(" = ") {
            continue;
        }
        let key = t.split(" = ").next().unwrap().trim();
        out.push((format!("line {}: delete {key}", i + 1), with(i, "")));
        out.push((format!("line {}: rename {key}", i + 1), with(i, &format!("{key}_x = 1"))));
        for bad in ["\"x\"", "-1", "0", "0.5", "[]", "true", "1e30"] {
            out.push((format!("line {}: {key} = {bad}", i + 1), with(i, &format!("{key} = {bad}"))));
        }
    }
    for (k, v) in
        [("eval.runs", "[0.5, 2]"), ("mcts.alpha", "[-1]"), ("nope.key", "[1]"), ("task.kind", "[\"x\"]")]
    {
        out.push((format!("sweep {k} = {v}"), format!("{text}\n[sweep]\n\"{k}\" = {v}\n")));
    }
    out
}

#[test]
fn every_error_from_a_mutated_experiment_names_the_file() {
    std::env::set_current_dir(root()).unwrap();
    let (mut tried, mut errors) = (0, 0);
    let mut unnamed = Vec::new();
    for entry in std::fs::read_dir(root().join("experiments")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let rel = path.strip_prefix(root()).unwrap().to_path_buf();
        let text = runnable_here(&std::fs::read_to_string(&path).unwrap());
        config::load_str(&rel, &text, &[], &[]).unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
        for (what, mutated) in mutations(&text) {
            tried += 1;
            let r = std::panic::catch_unwind(|| config::load_str(&rel, &mutated, &[], &[]));
            let r = r.unwrap_or_else(|_| panic!("{}: {what}: panicked", rel.display()));
            if let Err(e) = r {
                errors += 1;
                let msg = e.to_string();
                if !msg.contains(&rel.display().to_string()) {
                    unnamed.push(format!("{}: {what}: {msg}", rel.display()));
                }
            }
        }
    }
    eprintln!("{tried} mutations, {errors} errors, {} naming no file", unnamed.len());
    assert!(tried > 500 && errors > 200, "{tried} mutations, {errors} errors");
    assert!(unnamed.is_empty(), "errors that do not name the file:\n{}", unnamed.join("\n"));
}

#[test]
fn plan_names_the_file_for_a_sweep_and_for_keys_it_leaves_to_the_defaults() {
    let rel = Path::new("experiments/sweep_alpha.toml");
    std::env::set_current_dir(root()).unwrap();
    let loaded = config::load(rel, &[], &[]).unwrap();
    let text = config::annotated_toml(&loaded.runs[0]).unwrap();
    let sweep: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("[sweep]")).skip(1).collect();
    assert!(!sweep.is_empty(), "{text}");
    for l in sweep.iter().filter(|l| l.contains(" = ")) {
        assert!(l.contains("# experiments/sweep_alpha.toml"), "{l}");
    }
    // A required key that no layer sets: the error names the experiment file.
    let err = config::load_str(rel, "name = \"x\"\n", &[], &[]).unwrap_err().to_string();
    assert!(err.contains("experiments/sweep_alpha.toml") && err.contains("model.preset"), "{err}");
}
