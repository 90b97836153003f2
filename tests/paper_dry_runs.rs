//! Dry runs of the paper's experiment files (Table 1: llama_math, deepseek_gsm8k; Table 2: both
//! transfers) on CPU, so a GPU user's first run is not the first time these files execute. Each
//! runs through the `runner` binary as written, on the real data in data/, with only the model
//! replaced by a small Hugging Face-format Llama written here (byte-level vocabulary plus the
//! chat template's special tokens; it answers `\boxed{D}` with a random digit, so a fifth of
//! the problems get right and wrong rollouts and every training stage has data), backend cpu in
//! f32, and sizes cut by `--set`; every table row the file asks for must be present, every
//! method must have trained on something, and MATH test sets get their subject/level breakdown.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::backend::Flex;
use burn::tensor::DType;
use mcts_ps::model::config::LlamaConfig;
use mcts_ps::model::tokenizer::Tokenizer;
use mcts_ps::model::weights::{
    build_llama, hf_tensors, random_llama, save_checkpoint, HostTensor, MapSource,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A byte-level BPE vocabulary (the 256 byte symbols in byte order, no merges) with `specials`
/// as whole tokens: any text encodes, and the template's markers are single tokens as in the
/// real models.
fn byte_tokenizer(specials: &[&str], bos: &str, eos: &[&str]) -> Tokenizer {
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let mut symbols: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    symbols.sort();
    let vocab: tokenizers::models::bpe::Vocab =
        symbols.into_iter().enumerate().map(|(i, c)| (c.to_string(), i as u32)).collect();
    let bpe = BPE::builder().vocab_and_merges(vocab, vec![]).build().unwrap();
    let mut inner = tokenizers::Tokenizer::new(bpe);
    inner.with_pre_tokenizer(Some(ByteLevel::new(false, false, false)));
    inner.with_decoder(Some(ByteLevel::default()));
    let added: Vec<tokenizers::AddedToken> =
        specials.iter().map(|s| tokenizers::AddedToken::from(s.to_string(), true)).collect();
    inner.add_special_tokens(added).unwrap();
    let id = |s: &str| inner.token_to_id(s).unwrap();
    let eos = eos.iter().map(|s| id(s)).collect();
    Tokenizer::with_specials(inner.clone(), Some(id(bos)), eos)
}

/// Writes into `dir` a model for `template` that answers every question with `\boxed{D}`, D a
/// uniformly sampled digit, then ends its turn: about a fifth of GSM8K and MATH answers are a
/// single digit, so some rollouts are right and others wrong, and every training objective
/// gets data. It is a bigram model in a transformer's clothes: one-hot embeddings (width >=
/// vocabulary), every attention and MLP weight zero (the residual stream is the embedding), and
/// the output head holds the transitions (the last prompt token -> `\`, then `boxed{`, a
/// digit, `}`, end of turn).
fn answering_model(dir: &Path, template: &str) {
    let (tok, end) = match template {
        "llama3" => (
            byte_tokenizer(
                &[
                    "<|begin_of_text|>",
                    "<|end_of_text|>",
                    "<|start_header_id|>",
                    "<|end_header_id|>",
                    "<|eot_id|>",
                ],
                "<|begin_of_text|>",
                &["<|end_of_text|>", "<|eot_id|>"],
            ),
            "<|eot_id|>",
        ),
        "deepseek" => (
            byte_tokenizer(
                &[
                    "<\u{ff5c}begin\u{2581}of\u{2581}sentence\u{ff5c}>",
                    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
                ],
                "<\u{ff5c}begin\u{2581}of\u{2581}sentence\u{ff5c}>",
                &["<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>"],
            ),
            "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
        ),
        other => panic!("no model for template {other}"),
    };
    let v = tok.vocab_size();
    let mut cfg = LlamaConfig::tiny(v, 4096);
    cfg.num_heads = 4;
    cfg.num_kv_heads = 2;
    cfg.head_dim = v.div_ceil(8) * 2; // even, and heads * head_dim >= vocabulary
    cfg.hidden_size = cfg.num_heads * cfg.head_dim;
    cfg.intermediate_size = 32;
    cfg.num_layers = 2;
    let d = cfg.hidden_size;
    let one = |s: &str| -> usize {
        let ids = tok.encode(s).unwrap();
        assert_eq!(ids.len(), 1, "{s:?} is one token");
        ids[0] as usize
    };
    // next[t] = the tokens that may follow t (uniformly); anything else ends the turn.
    let mut next: Vec<Vec<usize>> = vec![vec![one(end)]; v];
    for start in ["\n", " "] {
        next[one(start)] = vec![one("\\")];
    }
    let chain = ["\\", "b", "o", "x", "e", "d", "{"];
    for w in chain.windows(2) {
        next[one(w[0])] = vec![one(w[1])];
    }
    let digits: Vec<usize> = (0..10).map(|k| one(&k.to_string())).collect();
    next[one("{")] = digits.clone();
    for &dg in &digits {
        next[dg] = vec![one("}")];
    }
    // RMSNorm turns the one-hot row into sqrt(d) at its index: logits are head[j][t] * sqrt(d).
    let scale = 30.0 / (d as f32).sqrt();
    let mut head = vec![0.0f32; v * d];
    for (t, js) in next.iter().enumerate() {
        for &j in js {
            head[j * d + t] = scale;
        }
    }
    let mut embed = vec![0.0f32; v * d];
    for t in 0..v {
        embed[t * d + t] = 1.0;
    }
    let shapes = hf_tensors(&random_llama::<Flex>(&cfg, 0, &Default::default(), DType::F32)).unwrap();
    let tensors: Vec<(String, HostTensor)> = shapes
        .into_iter()
        .map(|(name, t)| {
            let data = match name.as_str() {
                "model.embed_tokens.weight" => embed.clone(),
                "lm_head.weight" => head.clone(),
                n if n.ends_with("norm.weight") => vec![1.0; t.data.len()],
                _ => vec![0.0; t.data.len()],
            };
            (name, HostTensor { shape: t.shape, data })
        })
        .collect();
    let model =
        build_llama::<Flex>(&cfg, &mut MapSource::new(tensors), &Default::default(), DType::F32).unwrap();
    save_checkpoint(&model, &tok, dir).unwrap();
}

/// Sizes cut so that a file takes about a minute on 2 cores; every other key as written.
const CUT: &[&str] = &[
    "model.backend=cpu",
    "model.dtype=f32",
    "task.test_size=30",
    "task.val_size=4",
    "eval.runs=2",
    "eval.max_tokens=12",
    "mcts.rollouts=12",
    "mcts.max_children=10",
    "mcts.max_steps=2",
    "mcts.max_step_tokens=12",
    "mcts.max_solution_tokens=12",
    "ours.problems_per_iteration=24",
    "step_dpo.problems_per_iteration=24",
    "rft.problems=16",
    "rft.samples_per_problem=8",
    "train.batch_size=2",
    "train.lora_rank=2",
    "infer.batch_size=16",
    "progress_seconds=0",
];

fn dry_run(file: &str, template: &str, rows: &[&str], breakdown: bool) {
    let tmp = tempfile::tempdir().unwrap();
    // DRY_RUN_KEEP=DIR keeps the run there for inspection.
    let keep = std::env::var_os("DRY_RUN_KEEP").map(PathBuf::from);
    let base = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let name = Path::new(file).file_stem().unwrap().to_string_lossy().to_string();
    let model = base.join(&name).join("model");
    answering_model(&model, template);
    let out = base.join(&name).join("results");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
    cmd.current_dir(root()).arg(file);
    for s in CUT {
        cmd.arg("--set").arg(s);
    }
    cmd.arg("--set").arg(format!("model.path={}", model.display()));
    cmd.arg("--set").arg(format!("out_dir={}", out.display()));
    let t0 = std::time::Instant::now();
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{file}: runner failed\n{err}");
    let dir = out.join(&name);
    let table = std::fs::read_to_string(dir.join("table.md")).unwrap();
    for row in rows {
        assert!(table.contains(&format!("| {row} |")), "{file}: no row {row:?} in\n{table}");
    }
    // The validation column (500 problems in the file, cut to 4 here) and the paper's numbers.
    assert!(table.contains("| validation |") && table.contains("paper:"), "{file}:\n{table}");
    // Every method trained: no stage fell back to the previous model for want of data.
    for untrained in ["rft: 0 of", "MCTS gave 0 training records", "0 preference pairs"] {
        assert!(!table.contains(untrained), "{file}: a stage had no data ({untrained}):\n{table}");
    }
    let csv = std::fs::read_to_string(dir.join("table.csv")).unwrap();
    assert_eq!(csv.lines().filter(|l| l.contains(",test,")).count(), rows.len(), "{file}:\n{csv}");
    if breakdown {
        let b = std::fs::read_to_string(dir.join("table-breakdown.md")).unwrap();
        for field in ["`type`", "`level`"] {
            assert!(b.contains(field), "{file}: no breakdown by {field}:\n{b}");
        }
        for row in rows {
            assert_eq!(b.matches(&format!("| {row} |")).count(), 2, "{file}: {row} in\n{b}");
        }
    }
    eprintln!("{file}: {:.0} s", t0.elapsed().as_secs_f64());
}

fn rows(baselines: bool, iterations: usize) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    if baselines {
        v.push("Zero-shot-CoT".into());
        v.push("RFT".into());
        v.extend((1..=iterations).map(|k| format!("Step-level DPO - Iteration {k}")));
    }
    v.extend((1..=iterations).map(|k| format!("Ours - Iteration {k}")));
    v
}

#[test]
fn llama_math_runs_end_to_end() {
    let r = rows(true, 4);
    dry_run("experiments/llama_math.toml", "llama3", &r.iter().map(String::as_str).collect::<Vec<_>>(), true);
}

#[test]
fn deepseek_gsm8k_runs_end_to_end() {
    let r = rows(true, 2);
    dry_run(
        "experiments/deepseek_gsm8k.toml",
        "deepseek",
        &r.iter().map(String::as_str).collect::<Vec<_>>(),
        false,
    );
}

#[test]
fn transfer_gsm8k_to_math_runs_end_to_end() {
    let r = rows(false, 2);
    dry_run(
        "experiments/transfer_gsm8k_to_math.toml",
        "llama3",
        &r.iter().map(String::as_str).collect::<Vec<_>>(),
        true,
    );
}

#[test]
fn transfer_math_to_gsm8k_runs_end_to_end() {
    let r = rows(false, 4);
    dry_run(
        "experiments/transfer_math_to_gsm8k.toml",
        "deepseek",
        &r.iter().map(String::as_str).collect::<Vec<_>>(),
        false,
    );
}
