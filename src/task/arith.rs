//! The project's synthetic multi-step arithmetic word problems.
//!
//! A problem starts from a small count and applies `ops` operations described in words; its
//! reference solution has one equation per step (`12 + 7 = 19`), a blank line between steps,
//! and a last step `The final answer is N.` Every problem is a pure function of
//! `(seed, pool, index)` through the project's RNG streams, so pools never need storing.
//!
//! ```text
//! Ann has 12 apples. She buys 7 more. She gives away 5. She doubles them.
//! How many apples does Ann have now?
//!
//! 12 + 7 = 19
//!
//! 19 - 5 = 14
//!
//! 14 * 2 = 28
//!
//! The final answer is 28.
//! ```

use serde::{Deserialize, Serialize};

use super::{Problem, STEP_SEPARATOR};
use crate::rng::Stream;

/// Difficulty knobs of the synthetic task (config `[task.arith]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArithSpec {
    /// Fewest operations per problem.
    pub min_ops: usize,
    /// Most operations per problem.
    pub max_ops: usize,
    /// Largest starting count and largest added/removed amount.
    pub max_operand: i64,
    /// Intermediate results stay within `0..=max_value`.
    pub max_value: i64,
}

/// Which pool a problem is drawn from; pools use disjoint RNG streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// The test set.
    Test = 0,
    /// The training pool methods draw from.
    Train = 1,
    /// Pretraining data for the tiny model.
    Pretrain = 2,
}

const NAMES: &[(&str, &str)] = &[
    ("Ann", "She"),
    ("Ben", "He"),
    ("Cal", "He"),
    ("Dee", "She"),
    ("Eve", "She"),
    ("Fay", "She"),
    ("Gus", "He"),
    ("Hal", "He"),
    ("Ivy", "She"),
    ("Jon", "He"),
    ("Kim", "She"),
    ("Lee", "He"),
];
const ITEMS: &[&str] =
    &["apples", "pens", "coins", "cards", "eggs", "books", "shells", "stamps", "rocks", "cups"];

#[derive(Clone, Copy)]
enum Op {
    Add(i64),
    Sub(i64),
    Mul(i64),
    Div(i64),
}

/// Words other than names and items that questions and solutions use.
const WORDS: &[&str] = &[
    "has", "buys", "finds", "gets", "more", "gives", "away", "loses", "sells", "doubles", "them", "triples",
    "keeps", "half", "a", "third", "How", "many", "does", "have", "now", "The", "final", "answer", "is",
];

/// Every word the generator writes (names, pronouns, items, verbs, fixed phrases): the
/// word-level vocabulary of the tiny model is built from it.
pub fn words() -> Vec<&'static str> {
    let mut w: Vec<&str> = NAMES.iter().flat_map(|(n, p)| [*n, *p]).collect();
    w.extend(ITEMS);
    w.extend(WORDS);
    w.sort();
    w.dedup();
    w
}

/// Generates problem `index` of `pool`.
pub fn generate(spec: &ArithSpec, seed: u64, pool: Pool, index: u64) -> Problem {
    let mut s = Stream::new(seed, "arith", &[pool as u64, index]);
    let (name, pron) = *s.choose(NAMES);
    let item = *s.choose(ITEMS);
    let n_ops = s.range_inclusive(spec.min_ops as i64, spec.max_ops as i64) as usize;
    let mut value = s.range_inclusive(2, spec.max_operand.max(2));
    let mut question = format!("{name} has {value} {item}.");
    let mut steps = Vec::with_capacity(n_ops + 1);
    for _ in 0..n_ops {
        let op = pick_op(&mut s, spec, value);
        let (next, sym, b) = match op {
            Op::Add(b) => (value + b, '+', b),
            Op::Sub(b) => (value - b, '-', b),
            Op::Mul(b) => (value * b, '*', b),
            Op::Div(b) => (value / b, '/', b),
        };
        question.push(' ');
        question.push_str(&describe(&mut s, op, pron));
        steps.push(format!("{value} {sym} {b} = {next}"));
        value = next;
    }
    question.push_str(&format!(" How many {item} does {name} have now?"));
    steps.push(format!("The final answer is {value}."));
    Problem {
        id: index,
        question,
        answer: value.to_string(),
        solution: Some(steps.join(STEP_SEPARATOR)),
        meta: Default::default(),
    }
}

fn pick_op(s: &mut Stream, spec: &ArithSpec, value: i64) -> Op {
    loop {
        let op = match s.below(6) {
            0 | 1 => Op::Add(s.range_inclusive(1, spec.max_operand)),
            2 | 3 => Op::Sub(s.range_inclusive(1, spec.max_operand)),
            4 => Op::Mul(s.range_inclusive(2, 3)),
            _ => Op::Div(s.range_inclusive(2, 3)),
        };
        let ok = match op {
            Op::Add(b) => value + b <= spec.max_value,
            Op::Sub(b) => b <= value,
            Op::Mul(b) => value * b <= spec.max_value,
            Op::Div(b) => value % b == 0 && value > 0,
        };
        if ok {
            return op;
        }
    }
}

fn describe(s: &mut Stream, op: Op, pron: &str) -> String {
    match op {
        Op::Add(b) => match s.below(3) {
            0 => format!("{pron} buys {b} more."),
            1 => format!("{pron} finds {b} more."),
            _ => format!("{pron} gets {b} more."),
        },
        Op::Sub(b) => match s.below(3) {
            0 => format!("{pron} gives away {b}."),
            1 => format!("{pron} loses {b}."),
            _ => format!("{pron} sells {b}."),
        },
        Op::Mul(2) => format!("{pron} doubles them."),
        Op::Mul(_) => format!("{pron} triples them."),
        Op::Div(2) => format!("{pron} keeps half."),
        Op::Div(_) => format!("{pron} keeps a third."),
    }
}

/// `n` problems of `pool` (indices `0..`), skipping any whose question is in `exclude`.
pub fn generate_pool(
    spec: &ArithSpec,
    seed: u64,
    pool: Pool,
    n: usize,
    exclude: &std::collections::HashSet<String>,
) -> Vec<Problem> {
    let mut out = Vec::with_capacity(n);
    let mut index = 0u64;
    while out.len() < n {
        let mut p = generate(spec, seed, pool, index);
        index += 1;
        if exclude.contains(&p.question) {
            continue;
        }
        p.id = out.len() as u64;
        out.push(p);
    }
    out
}

/// For a step of the form `a op b = c`, whether the equation is arithmetically true. `None`
/// when the step is not such an equation (a final-answer step, free text).
pub fn step_is_correct(step: &str) -> Option<bool> {
    let (lhs, rhs) = step.trim().split_once('=')?;
    let c: i64 = rhs.trim().parse().ok()?;
    let parts: Vec<&str> = lhs.split_whitespace().collect();
    let [a, op, b] = parts.as_slice() else { return None };
    let (a, b): (i64, i64) = (a.parse().ok()?, b.parse().ok()?);
    let v = match *op {
        "+" => a + b,
        "-" => a - b,
        "*" => a * b,
        "/" => {
            if b == 0 || a % b != 0 {
                return Some(false);
            }
            a / b
        }
        _ => return None,
    };
    Some(v == c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{split_steps, TaskKind};

    fn spec() -> ArithSpec {
        ArithSpec { min_ops: 2, max_ops: 6, max_operand: 20, max_value: 200 }
    }

    #[test]
    fn generation_is_deterministic_and_pools_differ() {
        let a = generate(&spec(), 3, Pool::Train, 17);
        let b = generate(&spec(), 3, Pool::Train, 17);
        assert_eq!(a.question, b.question);
        assert_eq!(a.solution, b.solution);
        assert_ne!(generate(&spec(), 3, Pool::Test, 17).question, a.question);
        assert_ne!(generate(&spec(), 4, Pool::Train, 17).question, a.question);
    }

    #[test]
    fn reference_solutions_are_correct_step_by_step_and_grade_correct() {
        for i in 0..500 {
            let p = generate(&spec(), 0, Pool::Train, i);
            let sol = p.solution.as_deref().unwrap();
            let steps = split_steps(sol);
            assert!((3..=7).contains(&steps.len()), "{sol}");
            for st in &steps[..steps.len() - 1] {
                assert_eq!(step_is_correct(st), Some(true), "{st}");
            }
            assert!(TaskKind::Arith.is_final_step(steps[steps.len() - 1]));
            assert!(TaskKind::Arith.is_correct(sol, &p.answer));
            let v: i64 = p.answer.parse().unwrap();
            assert!((0..=200).contains(&v));
        }
    }

    #[test]
    fn step_checker() {
        assert_eq!(step_is_correct("12 + 7 = 19"), Some(true));
        assert_eq!(step_is_correct("12 + 7 = 18"), Some(false));
        assert_eq!(step_is_correct("9 / 2 = 4"), Some(false));
        assert_eq!(step_is_correct("8 * 3 = 24"), Some(true));
        assert_eq!(step_is_correct("The final answer is 3."), None);
    }

    #[test]
    fn pools_exclude_test_questions() {
        let test = generate_pool(&spec(), 0, Pool::Test, 50, &Default::default());
        let seen: std::collections::HashSet<String> = test.iter().map(|p| p.question.clone()).collect();
        let train = generate_pool(&spec(), 0, Pool::Train, 200, &seen);
        assert_eq!(train.len(), 200);
        assert!(train.iter().all(|p| !seen.contains(&p.question)));
        assert!(train.iter().enumerate().all(|(i, p)| p.id == i as u64));
    }
}
