//! Problems, solution steps, answer extraction and grading, prompts.
//!
//! A solution is a sequence of steps separated by a blank line ([`STEP_SEPARATOR`]); its last
//! step states the final answer. Three task kinds share this shape: the project's synthetic
//! arithmetic ([`arith`]), GSM8K ([`gsm8k`]) and MATH ([`math`]).

pub mod answer;
pub mod arith;
pub mod gsm8k;
pub mod latex;
pub mod math;
pub mod prompt;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Separator between solution steps.
pub const STEP_SEPARATOR: &str = "\n\n";

/// One problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// Index in its pool (line order for files), used in RNG stream ids.
    pub id: u64,
    /// The question text.
    pub question: String,
    /// The gold final answer.
    pub answer: String,
    /// A reference solution in step format, when the dataset has one.
    pub solution: Option<String>,
    /// Other string fields of the record that tables can break accuracy down by (MATH:
    /// `level`, `type`); empty for generated problems.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

/// A graded completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grade {
    /// The final answer the completion states, if any.
    pub extracted: Option<String>,
    /// Whether it equals the gold answer.
    pub correct: bool,
}

/// The kind of task, which fixes answer extraction and grading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Synthetic arithmetic: integer answers stated as "The final answer is N."
    Arith,
    /// GSM8K-format word problems: numeric answers.
    Gsm8k,
    /// MATH-format competition problems: LaTeX answers.
    Math,
}

impl TaskKind {
    /// The final answer a completion states, if any.
    pub fn extract_answer(self, completion: &str) -> Option<String> {
        match self {
            TaskKind::Arith => answer::final_answer_phrase(completion),
            TaskKind::Gsm8k => gsm8k::extract(completion),
            TaskKind::Math => math::extract(completion),
        }
    }

    /// Whether an extracted answer equals the gold one.
    pub fn answers_match(self, predicted: &str, gold: &str) -> bool {
        match self {
            TaskKind::Arith | TaskKind::Gsm8k => gsm8k::answers_match(predicted, gold),
            TaskKind::Math => math::answers_match(predicted, gold),
        }
    }

    /// Grades a completion against the gold answer: the one grading path of the pipeline (the
    /// MCTS reward of every rollout, the RFT filter and the evaluation metric all call it on the
    /// whole text the model wrote).
    pub fn grade(self, completion: &str, gold: &str) -> Grade {
        let extracted = self.extract_answer(self.solution_part(completion));
        let correct = extracted.as_deref().is_some_and(|p| self.answers_match(p, gold));
        Grade { extracted, correct }
    }

    /// The part of a completion that is its solution: the text up to the end of its first step
    /// that states a final answer ([`TaskKind::is_final_step`]), since a solution ends there in
    /// MCTS (a final step ends a path of the tree) and so everywhere; the whole text when no step
    /// does. What a model writes after its answer is not graded.
    pub fn solution_part(self, completion: &str) -> &str {
        let mut at = 0;
        for piece in completion.split(STEP_SEPARATOR) {
            let end = at + piece.len();
            if self.is_final_step(piece) {
                return &completion[..end];
            }
            at = end + STEP_SEPARATOR.len();
        }
        completion
    }

    /// Whether a completion's final answer is correct ([`TaskKind::grade`]).
    pub fn is_correct(self, completion: &str, gold: &str) -> bool {
        self.grade(completion, gold).correct
    }

    /// Whether a step states a final answer (ends a solution in MCTS).
    pub fn is_final_step(self, step: &str) -> bool {
        answer::final_answer_phrase(step).is_some()
            || answer::hash_answer(step).is_some()
            || answer::last_boxed(step).is_some()
    }
}

/// Splits a solution into its steps (blank-line separated, empty pieces dropped).
pub fn split_steps(solution: &str) -> Vec<&str> {
    solution.split(STEP_SEPARATOR).map(|s| s.trim_matches('\n')).filter(|s| !s.trim().is_empty()).collect()
}

/// Joins steps back into a solution.
pub fn join_steps<S: AsRef<str>>(steps: &[S]) -> String {
    steps.iter().map(|s| s.as_ref()).collect::<Vec<_>>().join(STEP_SEPARATOR)
}

/// A question as the overlap checks compare it: lowercase, without whitespace (the same problem
/// retyped with other spacing or capitals is the same problem; no other character is dropped,
/// so `2+3` and `2*3` stay different).
pub fn normalised_question(q: &str) -> String {
    q.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

/// Removes from `pool` every problem whose question repeats one of `others` or an earlier
/// problem of the pool ([`normalised_question`]); returns how many went for each reason.
pub fn drop_overlaps(pool: &mut Vec<Problem>, others: &[Problem]) -> (usize, usize) {
    let other: std::collections::HashSet<String> =
        others.iter().map(|p| normalised_question(&p.question)).collect();
    let mut seen = std::collections::HashSet::new();
    let (mut repeats_other, mut repeats_pool) = (0, 0);
    pool.retain(|p| {
        let q = normalised_question(&p.question);
        if other.contains(&q) {
            repeats_other += 1;
            false
        } else if !seen.insert(q) {
            repeats_pool += 1;
            false
        } else {
            true
        }
    });
    (repeats_other, repeats_pool)
}

/// `k` problems of `pool` drawn by the stream `(seed, purpose, ids)`.
pub fn draw(pool: &[Problem], k: usize, seed: u64, purpose: &str, ids: &[u64]) -> Vec<Problem> {
    let idx = crate::rng::Stream::new(seed, purpose, ids).sample_indices(pool.len(), k);
    idx.into_iter().map(|i| pool[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_split_on_blank_lines() {
        let sol = "1 + 2 = 3\n\n3 * 2 = 6\n\n\n\nThe final answer is 6.";
        assert_eq!(split_steps(sol), vec!["1 + 2 = 3", "3 * 2 = 6", "The final answer is 6."]);
        assert_eq!(join_steps(&split_steps(sol)), "1 + 2 = 3\n\n3 * 2 = 6\n\nThe final answer is 6.");
        assert!(split_steps("").is_empty());
        // A single newline stays inside a step.
        assert_eq!(split_steps("a\nb\n\nc"), vec!["a\nb", "c"]);
    }

    #[test]
    fn overlaps_are_dropped_by_normalised_question() {
        let p = |id, q: &str| Problem {
            id,
            question: q.into(),
            answer: "1".into(),
            solution: None,
            meta: Default::default(),
        };
        let test = [p(0, "What is $2+3$?")];
        let mut pool =
            vec![p(0, "what is $2 + 3$?"), p(1, "What is $2*3$?"), p(2, "What  is $2*3$ ?"), p(3, "Other")];
        assert_eq!(drop_overlaps(&mut pool, &test), (1, 1));
        assert_eq!(pool.iter().map(|p| p.id).collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn the_solution_ends_at_its_first_final_step() {
        let k = TaskKind::Arith;
        let text = "1 + 1 = 2\n\nThe final answer is 2.\n\nNo, the final answer is 3.";
        assert_eq!(k.solution_part(text), "1 + 1 = 2\n\nThe final answer is 2.");
        assert!(k.grade(text, "2").correct && !k.grade(text, "3").correct);
        assert_eq!(k.solution_part("no answer\n\nat all"), "no answer\n\nat all");
        // GSM8K without a final step: the whole text, its last number.
        assert!(TaskKind::Gsm8k.grade("3 + 4 = 7\n\nso 7 apples", "7").correct);
    }

    #[test]
    fn final_step_detection() {
        assert!(TaskKind::Arith.is_final_step("The final answer is 6."));
        assert!(TaskKind::Math.is_final_step("So the answer is $\\boxed{6}$."));
        assert!(TaskKind::Gsm8k.is_final_step("#### 6"));
        assert!(!TaskKind::Gsm8k.is_final_step("3 * 2 = 6"));
    }

    #[test]
    fn arith_grading_is_strict_about_the_phrase() {
        assert!(TaskKind::Arith.is_correct("1 + 2 = 3\n\nThe final answer is 3.", "3"));
        assert!(!TaskKind::Arith.is_correct("1 + 2 = 3", "3"));
        assert!(!TaskKind::Arith.is_correct("The final answer is 4.", "3"));
    }
}
