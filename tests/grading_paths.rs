//! One grading path: the MCTS reward of a rollout, the RFT filter and the evaluation metric
//! give the same verdict on the same completion, for every task kind, including the cases where
//! they once differed (a correct answer reached after `mcts.max_steps` steps; a GSM8K answer
//! stated only as the last number). Also the search's handling of the depth limit (a leaf's
//! simulation still runs to the answer) and of steps cut by the token limit (never trained).

use std::collections::{HashSet, VecDeque};

use mcts_ps::config::schema::{Advance, Mcts};
use mcts_ps::error::Result;
use mcts_ps::search::run::Search;
use mcts_ps::search::{records, Policy, Sample, SampleKind, SampleRequest};
use mcts_ps::task::{Problem, TaskKind};

fn cfg(rollouts: usize, max_children: usize, max_steps: usize) -> Mcts {
    Mcts {
        alpha: 1.0,
        rollouts,
        max_children,
        c_ucb: 1.4,
        temperature: 1.0,
        top_p: 1.0,
        max_steps,
        max_step_tokens: 16,
        max_solution_tokens: 64,
        advance: Advance::Ucb,
        virtual_loss: 1,
        problems_in_flight: 1,
    }
}

fn problem(answer: &str) -> Problem {
    Problem { id: 0, question: "q".into(), answer: answer.into(), solution: None, meta: Default::default() }
}

/// Answers in order: `(text, cut)` per request; once the script is used up (later roots of the
/// search), a wrong final answer.
struct Script(VecDeque<(&'static str, bool)>);

impl Policy for Script {
    fn sample(&mut self, requests: Vec<SampleRequest>) -> Result<Vec<Sample>> {
        Ok(requests
            .into_iter()
            .map(|r| {
                let (text, cut) = self.0.pop_front().unwrap_or(("The final answer is -1.", false));
                Sample { text: text.into(), tokens: 1, ended: r.kind == SampleKind::Rollout, cut }
            })
            .collect())
    }
}

/// The MCTS reward of `rest` as the simulation after a first step "Let us start.": one root,
/// one rollout, so the root's Q is that rollout's reward.
fn mcts_reward(kind: TaskKind, rest: &'static str, gold: &str) -> f64 {
    let c = cfg(1, 1, 2);
    let search = Search { cfg: &c, kind, seed: 0, iteration: 0 };
    let mut policy = Script([("Let us start.\n\n", false), (rest, false)].into_iter().collect());
    let mut q = None;
    search
        .run(&mut policy, &[problem(gold)], &HashSet::new(), |r| {
            q.get_or_insert(r.trees[0].root.q);
            Ok(())
        })
        .unwrap();
    q.unwrap()
}

#[test]
fn mcts_rft_and_eval_give_the_same_verdicts() {
    let long: &'static str =
        Box::leak((1..=14).map(|i| format!("Step {i}: 1 + 1 = 2.\n\n")).collect::<String>().into_boxed_str());
    let long_correct: &'static str = Box::leak(format!("{long}The final answer is 2.").into_boxed_str());
    // (kind, simulation text after the first step, gold, verdict by hand)
    let cases: Vec<(TaskKind, &'static str, &str, bool)> = vec![
        (TaskKind::Arith, "The final answer is 2.", "2", true),
        (TaskKind::Arith, "The final answer is 3.", "2", false),
        // Fourteen steps before the answer: beyond max_steps = 2, still correct.
        (TaskKind::Arith, long_correct, "2", true),
        (TaskKind::Gsm8k, long_correct, "2", true),
        // GSM8K: an answer stated only as the last number counts, as in evaluation.
        (TaskKind::Gsm8k, "She has 3 + 4 = 7 apples left.", "7", true),
        (TaskKind::Gsm8k, "She has 3 + 4 = 7 apples left.", "3", false),
        (TaskKind::Gsm8k, "#### 72", "72", true),
        // The answer, then more text: the first final step ends the solution everywhere (an
        // expanded final step ends a path of the tree; evaluation does not read on either).
        (TaskKind::Arith, "The final answer is 5.\n\nNo wait. The final answer is 6.", "5", true),
        (TaskKind::Arith, "The final answer is 5.\n\nNo wait. The final answer is 6.", "6", false),
        (TaskKind::Math, "So $\\boxed{1}$.\n\nOr rather $\\boxed{2}$.", "1", true),
        (TaskKind::Math, "So $x = \\boxed{\\frac12}$.", "0.5", true),
        (TaskKind::Math, long_correct, "2", true),
        (TaskKind::Math, "So $x = \\boxed{\\frac13}$.", "0.5", false),
        (TaskKind::Math, "no answer here", "1", false),
    ];
    for (kind, rest, gold, want) in cases {
        let completion = format!("Let us start.\n\n{rest}");
        let p = problem(gold);
        let eval = mcts_ps::eval::outcome(kind, 0, &p, completion.clone(), 0).correct;
        let rft = mcts_ps::method::rft::kept(kind, &completion, gold, false);
        let mcts = mcts_reward(kind, rest, gold) == 1.0;
        assert_eq!((mcts, rft, eval), (want, want, want), "{kind:?} gold {gold:?}: {rest:?}");
    }
}

#[test]
fn a_leaf_at_the_depth_limit_is_simulated_to_its_answer() {
    // max_steps = 1: the root's children are leaves. Child A's simulation answers correctly
    // after two more steps; child B's wrongly. Rollouts 3 and 4 select A again and simulate
    // from it again each time (a leaf's value is an average, not its first draw).
    let c = cfg(4, 2, 1);
    let search = Search { cfg: &c, kind: TaskKind::Arith, seed: 0, iteration: 0 };
    let mut policy = Script(
        [
            ("A\n\n", false),
            ("1 + 1 = 2\n\n2 + 0 = 2\n\nThe final answer is 2.", false),
            ("B\n\n", false),
            ("The final answer is 3.", false),
            ("The final answer is 5.", false),
            ("The final answer is 2.", false),
        ]
        .into_iter()
        .collect(),
    );
    let mut out = Vec::new();
    search
        .run(&mut policy, &[problem("2")], &HashSet::new(), |r| {
            out.push(r);
            Ok(())
        })
        .unwrap();
    assert!(policy.0.is_empty(), "every re-simulation drew its own sample");
    let root = &out[0].trees[0].root;
    let (a, b) = (&root.children[0], &root.children[1]);
    assert!(a.leaf && !a.is_final && a.final_reward.is_none(), "{a:?}");
    // Rollout 3, root N = 2: UCB A = 1 + 1.4 sqrt(ln 2 / 1) = 2.166, B = 0 + 1.166: A, which
    // simulates "5" (wrong). Rollout 4, N = 3: A = 1/2 + 1.4 sqrt(ln 3 / 2) = 1.538,
    // B = 1.4 sqrt(ln 3) = 1.467: A again, "2" (right).
    assert_eq!((a.n, a.q, b.n, b.q), (3, 2.0, 1, 0.0), "{root:?}");
    // Leaves are not final steps: their training targets end with the step separator.
    let recs = records(&out[0].trees[0], 1.0);
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|r| !r.is_final));
    // The partial solution stops at max_steps, one step long; the paper's UCB rule advances with
    // N = 4: A = 2/3 + 1.4 sqrt(ln 4 / 3) = 1.619, B = 0 + 1.4 sqrt(ln 4) = 1.648: B.
    assert_eq!(out[0].solution, "B");
}

#[test]
fn a_step_cut_by_the_token_limit_is_never_trained() {
    // Two children: A complete and wrong, B cut by the token limit and right. B scores
    // positive by eq. (1) but gives no record; A's negative record stays.
    let c = cfg(2, 2, 3);
    let search = Search { cfg: &c, kind: TaskKind::Arith, seed: 0, iteration: 0 };
    let mut policy = Script(
        [
            ("A\n\n", false),
            ("The final answer is 3.", false),
            ("B without its end", true),
            ("The final answer is 2.", false),
        ]
        .into_iter()
        .collect(),
    );
    let mut out = Vec::new();
    search
        .run(&mut policy, &[problem("2")], &HashSet::new(), |r| {
            out.push(r);
            Ok(())
        })
        .unwrap();
    let t = &out[0].trees[0];
    assert!(t.root.children[1].truncated && !t.root.children[0].truncated);
    let recs = records(t, 1.0);
    assert_eq!(recs.len(), 1);
    assert_eq!((recs[0].step.as_str(), recs[0].r), ("A", -0.5));
    assert!(mcts_ps::search::preference_pair(t).is_none(), "a cut step is neither chosen nor rejected");
}
