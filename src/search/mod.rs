//! MCTS step-data generation (the paper's "Data generation with MCTS").
//!
//! For each problem the partial solution grows one step at a time; from each partial solution
//! (a root) `rollouts` MCTS iterations run (selection by UCB, expansion of one sampled step,
//! simulation to a final answer, backpropagation of the 0/1 reward); the root's children are
//! scored by eq. (1) and the partial solution advances by the configured rule.
//!
//! This module sees language models only through [`Policy`], so tests drive it with scripted
//! policies; the real policy wraps the inference engine.

pub mod run;
pub mod tree;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::rng::Stream;

/// What a sample request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleKind {
    /// One next step: stop at a blank line or end of sequence.
    Step,
    /// The rest of the solution: stop at end of sequence.
    Rollout,
}

/// A request for the policy: continue `question`'s prompt followed by `partial`.
#[derive(Clone, Debug)]
pub struct SampleRequest {
    /// The problem's question text (the policy renders its prompt).
    pub question: String,
    /// Solution text so far (steps, each followed by a blank line).
    pub partial: String,
    /// Step or rollout.
    pub kind: SampleKind,
    /// Token limit.
    pub max_tokens: usize,
    /// Sampling temperature.
    pub temperature: f64,
    /// Nucleus mass.
    pub top_p: f64,
    /// The stream of this sample.
    pub stream: Stream,
}

/// A policy's answer to one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Generated text (for a step, up to and including the blank line if one was reached).
    pub text: String,
    /// Tokens generated.
    pub tokens: usize,
    /// The model ended the sequence (end-of-sequence token).
    pub ended: bool,
    /// The token limit cut it (a step without its blank line or end of sequence).
    pub cut: bool,
}

/// A language model as MCTS sees it.
pub trait Policy {
    /// Answers every request (results in request order); a batch is answered together.
    fn sample(&mut self, requests: Vec<SampleRequest>) -> Result<Vec<Sample>>;
}

/// One eq. (1) record: `(x, p, s, r)` plus the statistics it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Problem id.
    pub problem: u64,
    /// Index of the root (number of steps in `partial`).
    pub step_index: usize,
    /// Partial solution `p` (steps each followed by a blank line).
    pub partial: String,
    /// Candidate next step `s`.
    pub step: String,
    /// Eq. (1) score `r`.
    pub r: f64,
    /// Visits of this child.
    pub n: u64,
    /// Total reward of this child.
    pub q: f64,
    /// Visits summed over the root's children.
    pub sibling_n: u64,
    /// Reward summed over the root's children.
    pub sibling_q: f64,
    /// Whether the step ends the solution.
    pub is_final: bool,
}

/// One root's search tree, for deriving other data (DPO pairs, exports) without searching
/// again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RootTree {
    /// Problem id.
    pub problem: u64,
    /// Index of the root.
    pub step_index: usize,
    /// Partial solution at the root.
    pub partial: String,
    /// The tree (root step empty).
    pub root: tree::Node,
    /// Index of the child the partial solution advanced to.
    pub advanced_to: Option<usize>,
}

/// The eq. (1) records of one root: its candidate steps with `r != 0`, scored with `alpha`.
/// Children with the same step text are one candidate (their visits and rewards summed: eq. (1)
/// is linear in them, so the score is the sum of theirs), in order of first appearance; a step
/// the token limit cut is not a complete step and gives no record (its visits still count in
/// the siblings' mean).
pub fn records(t: &RootTree, alpha: f64) -> Vec<Record> {
    let merged = tree::merged_children(&t.root);
    let scores = tree::relative_correctness(&merged, alpha);
    let sibling_n = merged.children.iter().map(|k| k.n).sum();
    let sibling_q = merged.children.iter().map(|k| k.q).sum();
    merged
        .children
        .iter()
        .zip(scores)
        .filter(|(k, r)| *r != 0.0 && !k.truncated)
        .map(|(k, r)| Record {
            problem: t.problem,
            step_index: t.step_index,
            partial: t.partial.clone(),
            step: k.step.clone(),
            r,
            n: k.n,
            q: k.q,
            sibling_n,
            sibling_q,
            is_final: k.is_final,
        })
        .collect()
}

/// Step-level preference pair of one root: the candidate step with the highest `Q/N`
/// ("chosen") and the lowest ("rejected"), when their values differ. Candidates are the root's
/// children with identical steps merged (as for [`records`]), complete steps only (a step cut
/// by the token limit is neither chosen nor rejected).
pub fn preference_pair(t: &RootTree) -> Option<(tree::Node, tree::Node)> {
    let merged = tree::merged_children(&t.root);
    let visited: Vec<&tree::Node> = merged.children.iter().filter(|k| k.n > 0 && !k.truncated).collect();
    let best = visited.iter().copied().reduce(|a, b| if b.value() > a.value() { b } else { a })?;
    let worst = visited.iter().copied().reduce(|a, b| if b.value() < a.value() { b } else { a })?;
    (best.value() > worst.value()).then(|| (best.clone(), worst.clone()))
}

/// Everything MCTS produced for one problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProblemResult {
    /// Problem id.
    pub problem: u64,
    /// Records with `r != 0`.
    pub records: Vec<Record>,
    /// Every root's tree.
    pub trees: Vec<RootTree>,
    /// The solution the partial solution grew into.
    pub solution: String,
    /// Whether that solution's answer is correct.
    pub solution_correct: bool,
    /// Rollouts run.
    pub rollouts: u64,
    /// Tokens generated.
    pub tokens: u64,
}
