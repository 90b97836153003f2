//! Evaluation: sampled runs over a test set, accuracy per run, mean +- standard error, and
//! paired comparisons of two methods over the same runs and problems.

pub mod stats;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::infer::{encode_prompt, Engine, Request, Stop};
use crate::model::backend::InferBackend;
use crate::rng::Stream;
use crate::task::prompt::Template;
use crate::task::{Problem, TaskKind};

/// Sampling settings of an evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalSettings {
    /// Sampling temperature (0 = greedy).
    pub temperature: f64,
    /// Nucleus mass.
    pub top_p: f64,
    /// New tokens per solution.
    pub max_tokens: usize,
}

/// One problem of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Evaluation run.
    pub run: u64,
    /// Problem id.
    pub problem: u64,
    /// The model's solution.
    pub completion: String,
    /// The answer extracted from it.
    pub extracted: Option<String>,
    /// Gold answer.
    pub gold: String,
    /// Whether they match.
    pub correct: bool,
    /// Tokens generated.
    #[serde(default)]
    pub tokens: usize,
}

/// Summary of an evaluation stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalSummary {
    /// Accuracy of each run.
    pub accuracies: Vec<f64>,
    /// Mean accuracy.
    pub mean: f64,
    /// Standard error over runs.
    pub se: f64,
    /// Tokens generated.
    pub tokens: u64,
    /// Wall seconds.
    pub seconds: f64,
}

/// Solves every problem once (run `run`), each with its own stream `(seed, "eval", [run, id])`
/// so results do not depend on batching or on which other runs are evaluated.
#[allow(clippy::too_many_arguments)]
pub fn run_once<B: InferBackend>(
    engine: &mut Engine<B>,
    problems: &[Problem],
    kind: TaskKind,
    template: Template,
    shots: &[crate::task::prompt::Shot],
    s: &EvalSettings,
    seed: u64,
    run: u64,
    on_done: impl FnMut(),
) -> Result<Vec<Outcome>> {
    let mut reqs = Vec::with_capacity(problems.len());
    for p in problems {
        let prompt = encode_prompt(&engine.tokenizer, template, shots, kind, &p.question)?;
        let max = s.max_tokens.min(engine.capacity().saturating_sub(prompt.len() + 1)).max(1);
        reqs.push(Request {
            prompt,
            max_new_tokens: max,
            temperature: s.temperature,
            top_p: s.top_p,
            stop: Stop::Eos,
            rng: Stream::new(seed, "eval", &[run, p.id]),
        });
    }
    let outs = engine.generate(reqs, on_done)?;
    Ok(problems
        .iter()
        .zip(outs)
        .map(|(p, c)| {
            let tokens = c.tokens.len() + usize::from(c.finish == crate::infer::Finish::Eos);
            outcome(kind, run, p, c.text, tokens)
        })
        .collect())
}

/// The outcome of `completion` on problem `p` in run `run`: graded by [`TaskKind::grade`], as
/// MCTS rewards and the RFT filter are.
pub fn outcome(kind: TaskKind, run: u64, p: &Problem, completion: String, tokens: usize) -> Outcome {
    let g = kind.grade(&completion, &p.answer);
    Outcome {
        run,
        problem: p.id,
        completion,
        extracted: g.extracted,
        gold: p.answer.clone(),
        correct: g.correct,
        tokens,
    }
}

/// Share of correct outcomes.
pub fn accuracy(outcomes: &[Outcome]) -> f64 {
    if outcomes.is_empty() {
        return 0.0;
    }
    outcomes.iter().filter(|o| o.correct).count() as f64 / outcomes.len() as f64
}
