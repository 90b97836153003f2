//! Range and cross-key validation of a merged [`Experiment`], producing [`Resolved`].

use std::path::PathBuf;

use figment::Figment;
use serde::Serialize;

use super::layers::{source_name, DEFAULTS_NAME};
use super::schema::{Backend, Experiment, TrainMode};
use crate::error::{Error, Result};
use crate::task::prompt::Template;
use crate::task::TaskKind;

/// Where the base model comes from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum ModelSource {
    /// The built-in `tiny` architecture, pretrained by the pipeline from scratch.
    Tiny,
    /// A Hugging Face folder, a `.gguf` file or a project checkpoint.
    Path(PathBuf),
}

/// Where a problem set comes from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum DataSource {
    /// Generated synthetic arithmetic.
    Arith,
    /// A JSONL file of the given kind.
    File(TaskKind, PathBuf),
}

impl DataSource {
    /// The task kind (which grader applies).
    pub fn kind(&self) -> TaskKind {
        match self {
            DataSource::Arith => TaskKind::Arith,
            DataSource::File(k, _) => *k,
        }
    }
}

/// A validated experiment (one sweep point).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Resolved {
    /// All values, checked.
    pub exp: Experiment,
    /// Sweep label ("" without a sweep).
    pub label: String,
    /// The seed of this run's data draws, MCTS and training: one of `seeds`, or `seed`.
    pub train_seed: u64,
    /// Base model.
    pub model: ModelSource,
    /// Prompt template; `None` = decide from the tokenizer ("auto").
    pub template: Option<Template>,
    /// Training pool.
    pub train_data: DataSource,
    /// Test set.
    pub test_data: DataSource,
    /// The experiment file (named by errors found after resolving, e.g. in the data).
    pub file: PathBuf,
}

struct Check<'a> {
    fig: &'a Figment,
    /// The experiment file (named when a bad value comes from the built-in defaults: that is
    /// where it should have been set).
    file: &'a std::path::Path,
}

impl Check<'_> {
    fn fail(&self, key: &str, found: impl std::fmt::Display, expected: &str) -> Error {
        Error::Config {
            source_name: match source_name(self.fig, key) {
                d if d == DEFAULTS_NAME => {
                    format!("{} (not set there; the built-in default)", self.file.display())
                }
                other => other,
            },
            key: key.to_string(),
            found: found.to_string(),
            expected: expected.to_string(),
        }
    }

    fn positive(&self, key: &str, v: f64) -> Result<()> {
        if v > 0.0 && v.is_finite() {
            Ok(())
        } else {
            Err(self.fail(key, v, "a number > 0"))
        }
    }

    fn non_negative(&self, key: &str, v: f64) -> Result<()> {
        if v >= 0.0 && v.is_finite() {
            Ok(())
        } else {
            Err(self.fail(key, v, "a number >= 0"))
        }
    }

    fn at_least(&self, key: &str, v: usize, min: usize) -> Result<()> {
        if v >= min {
            Ok(())
        } else {
            Err(self.fail(key, v, &format!("an integer >= {min}")))
        }
    }

    fn unit(&self, key: &str, v: f64) -> Result<()> {
        if v > 0.0 && v <= 1.0 {
            Ok(())
        } else {
            Err(self.fail(key, v, "a number in (0, 1]"))
        }
    }

    fn file(&self, key: &str, path: &str) -> Result<PathBuf> {
        let p = PathBuf::from(path);
        if p.is_file() {
            Ok(p)
        } else {
            Err(self.fail(
                key,
                format!("{path:?}, which is not a file"),
                "the path of an existing JSONL file",
            ))
        }
    }
}

/// Validates `exp` (merged in `fig`, read from the experiment `file`) and resolves its sources.
pub fn resolve(exp: Experiment, fig: &Figment, label: &str, file: &std::path::Path) -> Result<Resolved> {
    let c = Check { fig, file };
    let e = &exp;
    if e.name.is_empty() || !e.name.chars().all(|ch| ch.is_ascii_alphanumeric() || "_-.".contains(ch)) {
        return Err(c.fail(
            "name",
            format!("{:?}", e.name),
            "a non-empty name of letters, digits, '_', '-', '.'",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for b in &e.baselines {
        if !seen.insert(b) {
            return Err(c.fail("baselines", format!("{b:?} twice"), "each baseline at most once"));
        }
    }

    if !e.paper.is_empty() && crate::report::paper::setup(&e.paper).is_none() {
        return Err(c.fail(
            "paper",
            format!("{:?}", e.paper),
            &format!("\"\" or one of: {}", crate::report::paper::names().join(", ")),
        ));
    }

    // [model]
    let m = &e.model;
    let model = match (m.preset.as_str(), m.path.as_str()) {
        ("", "") => {
            return Err(c.fail(
                "model.preset",
                "neither model.preset nor model.path set",
                "preset = \"tiny\" or a checkpoint path",
            ))
        }
        ("tiny", "") => ModelSource::Tiny,
        (p, "") => return Err(c.fail("model.preset", format!("{p:?}"), "\"tiny\"")),
        ("", path) => {
            let p = PathBuf::from(path);
            if !p.exists() {
                return Err(c.fail(
                    "model.path",
                    format!("{path:?}, which does not exist"),
                    "a Hugging Face folder, a .gguf file or a checkpoint folder",
                ));
            }
            ModelSource::Path(p)
        }
        (_, _) => {
            return Err(c.fail("model.path", "both model.preset and model.path set", "exactly one of them"))
        }
    };
    if m.backend == Backend::Cuda && !cfg!(feature = "cuda") {
        return Err(c.fail(
            "model.backend",
            "\"cuda\", but this runner was built without CUDA",
            "\"cpu\", or rebuild with `cargo build --release --features cuda`",
        ));
    }
    if m.dtype == super::schema::Dtype::Q8 && m.backend != Backend::Cpu {
        return Err(c.fail(
            "model.dtype",
            "\"q8\" on the cuda backend",
            "\"f32\" or \"bf16\" (8-bit weights are a CPU format)",
        ));
    }
    let template = match m.template.as_str() {
        "auto" => None,
        "plain" => Some(Template::Plain),
        "llama3" => Some(Template::Llama3),
        "deepseek" => Some(Template::Deepseek),
        "chatml" => Some(Template::Chatml),
        "qwen" => Some(Template::Qwen),
        "qwen3" => Some(Template::Qwen3),
        other => {
            return Err(c.fail(
                "model.template",
                format!("{other:?}"),
                "one of: auto, plain, llama3, deepseek, chatml, qwen, qwen3",
            ))
        }
    };
    c.at_least("model.context", m.context, 16)?;
    let t = &m.tiny;
    if t.vocab != "words" && t.vocab != "chars" {
        return Err(c.fail("model.tiny.vocab", format!("{:?}", t.vocab), "\"words\" or \"chars\""));
    }
    c.at_least("model.tiny.hidden_size", t.hidden_size, 2)?;
    c.at_least("model.tiny.intermediate_size", t.intermediate_size, 1)?;
    c.at_least("model.tiny.layers", t.layers, 1)?;
    c.at_least("model.tiny.heads", t.heads, 1)?;
    c.at_least("model.tiny.kv_heads", t.kv_heads, 1)?;
    if !t.hidden_size.is_multiple_of(t.heads) || !(t.hidden_size / t.heads).is_multiple_of(2) {
        return Err(c.fail("model.tiny.heads", t.heads, "a divisor of hidden_size giving an even head size"));
    }
    if !t.heads.is_multiple_of(t.kv_heads) {
        return Err(c.fail("model.tiny.kv_heads", t.kv_heads, "a divisor of model.tiny.heads"));
    }

    // [pretrain]
    c.at_least("pretrain.steps", e.pretrain.steps, 1)?;
    c.at_least("pretrain.batch_size", e.pretrain.batch_size, 1)?;
    c.positive("pretrain.lr", e.pretrain.lr)?;
    c.at_least("pretrain.problems", e.pretrain.problems, 1)?;

    // [task]
    let task = &e.task;
    let test_kind = match task.test_kind.as_str() {
        "" => task.kind,
        "arith" => TaskKind::Arith,
        "gsm8k" => TaskKind::Gsm8k,
        "math" => TaskKind::Math,
        other => {
            return Err(c.fail(
                "task.test_kind",
                format!("{other:?}"),
                "\"\", \"arith\", \"gsm8k\" or \"math\"",
            ))
        }
    };
    let train_data = match task.kind {
        TaskKind::Arith => {
            if !task.train_path.is_empty() {
                return Err(c.fail(
                    "task.train_path",
                    format!("{:?}", task.train_path),
                    "no path for kind = \"arith\" (problems are generated)",
                ));
            }
            DataSource::Arith
        }
        k => {
            if task.train_path.is_empty() {
                return Err(c.fail(
                    "task.train_path",
                    "nothing",
                    "the JSONL training pool for this task kind",
                ));
            }
            DataSource::File(k, c.file("task.train_path", &task.train_path)?)
        }
    };
    let test_data = match test_kind {
        TaskKind::Arith => {
            if task.kind != TaskKind::Arith {
                return Err(c.fail(
                    "task.test_kind",
                    "\"arith\" with a file-based training task",
                    "\"gsm8k\" or \"math\"",
                ));
            }
            if !task.test_path.is_empty() {
                return Err(c.fail(
                    "task.test_path",
                    format!("{:?}", task.test_path),
                    "no path for kind = \"arith\"",
                ));
            }
            DataSource::Arith
        }
        k => {
            if task.test_path.is_empty() {
                return Err(c.fail("task.test_path", "nothing", "the JSONL test set"));
            }
            DataSource::File(k, c.file("task.test_path", &task.test_path)?)
        }
    };
    let a = &task.arith;
    c.at_least("task.arith.min_ops", a.min_ops, 1)?;
    c.at_least("task.arith.max_ops", a.max_ops, a.min_ops)?;
    if a.max_operand < 2 {
        return Err(c.fail("task.arith.max_operand", a.max_operand, "an integer >= 2"));
    }
    if a.max_value < a.max_operand {
        return Err(c.fail("task.arith.max_value", a.max_value, "an integer >= task.arith.max_operand"));
    }

    // [mcts]
    let s = &e.mcts;
    c.positive("mcts.alpha", s.alpha)?;
    c.at_least("mcts.rollouts", s.rollouts, 1)?;
    c.at_least("mcts.max_children", s.max_children, 1)?;
    c.non_negative("mcts.c_ucb", s.c_ucb)?;
    c.non_negative("mcts.temperature", s.temperature)?;
    c.unit("mcts.top_p", s.top_p)?;
    c.at_least("mcts.max_steps", s.max_steps, 1)?;
    c.at_least("mcts.max_step_tokens", s.max_step_tokens, 1)?;
    c.at_least("mcts.max_solution_tokens", s.max_solution_tokens, s.max_step_tokens)?;
    c.at_least("mcts.virtual_loss", s.virtual_loss, 1)?;
    c.at_least("mcts.problems_in_flight", s.problems_in_flight, 1)?;

    // [train]
    let tr = &e.train;
    c.positive("train.lr", tr.lr)?;
    c.at_least("train.epochs", tr.epochs, 1)?;
    c.at_least("train.batch_size", tr.batch_size, 1)?;
    c.non_negative("train.weight_decay", tr.weight_decay)?;
    c.non_negative("train.grad_clip", tr.grad_clip)?;
    if !(0.0..=1.0).contains(&tr.min_lr_frac) {
        return Err(c.fail("train.min_lr_frac", tr.min_lr_frac, "a number in [0, 1]"));
    }
    if tr.mode == TrainMode::Lora {
        c.at_least("train.lora_rank", tr.lora_rank, 1)?;
        c.positive("train.lora_alpha", tr.lora_alpha)?;
        if tr.lora_targets.is_empty() {
            return Err(c.fail(
                "train.lora_targets",
                "an empty list",
                "at least one of q, k, v, o, gate, up, down",
            ));
        }
    }
    for target in &tr.lora_targets {
        if !crate::train::lora::TARGETS.contains(&target.as_str()) {
            return Err(c.fail(
                "train.lora_targets",
                format!("{target:?}"),
                &format!("names among {}", crate::train::lora::TARGETS.join(", ")),
            ));
        }
    }

    // methods
    c.at_least("ours.iterations", e.ours.iterations, 1)?;
    c.at_least("ours.problems_per_iteration", e.ours.problems_per_iteration, 1)?;
    c.non_negative("ours.beta", e.ours.beta)?;
    c.non_negative("ours.lr", e.ours.lr)?;
    c.non_negative("rft.lr", e.rft.lr)?;
    c.at_least("rft.problems", e.rft.problems, 1)?;
    c.at_least("rft.samples_per_problem", e.rft.samples_per_problem, 1)?;
    c.non_negative("rft.temperature", e.rft.temperature)?;
    if !["", "ours"].contains(&e.rft.match_tokens.as_str()) {
        return Err(c.fail("rft.match_tokens", format!("{:?}", e.rft.match_tokens), "\"\" or \"ours\""));
    }
    if e.rft.match_tokens == "ours" && !e.baselines.iter().any(|b| b == "rft") {
        return Err(c.fail("rft.match_tokens", "\"ours\" without the rft baseline", "\"rft\" in baselines"));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = e.seeds.iter().find(|s| !seen.insert(**s)) {
        return Err(c.fail("seeds", format!("{:?} (seed {dup} twice)", e.seeds), "distinct seeds"));
    }
    c.at_least("step_dpo.iterations", e.step_dpo.iterations, 1)?;
    c.at_least("step_dpo.problems_per_iteration", e.step_dpo.problems_per_iteration, 1)?;
    c.positive("step_dpo.beta", e.step_dpo.beta)?;
    c.non_negative("step_dpo.lr", e.step_dpo.lr)?;

    // [eval], [infer]
    c.at_least("eval.runs", e.eval.runs, 1)?;
    c.non_negative("eval.temperature", e.eval.temperature)?;
    c.unit("eval.top_p", e.eval.top_p)?;
    c.at_least("eval.max_tokens", e.eval.max_tokens, 1)?;
    c.at_least("infer.batch_size", e.infer.batch_size, 1)?;
    c.at_least("executor.workers", e.executor.workers, 1)?;
    c.at_least("executor.slurm.tasks", e.executor.slurm.tasks, 1)?;
    c.positive("executor.slurm.poll_seconds", e.executor.slurm.poll_seconds)?;

    c.non_negative("progress_seconds", e.progress_seconds)?;
    if let Some(f) = e.report.breakdown.iter().find(|f| f.is_empty()) {
        return Err(c.fail(
            "report.breakdown",
            format!("{f:?}"),
            "names of test-record fields, e.g. \"type\"",
        ));
    }
    if !e.eval.test && e.task.val_size == 0 {
        return Err(c.fail(
            "eval.test",
            "false with task.val_size = 0",
            "true, or a validation split (task.val_size > 0)",
        ));
    }
    let train_seed = exp.seed;
    Ok(Resolved {
        label: label.to_string(),
        train_seed,
        model,
        template,
        train_data,
        test_data,
        exp,
        file: file.to_path_buf(),
    })
}
