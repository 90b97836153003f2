//! MCTS driven by scripted policies: a hand-computed search, and determinism whatever the
//! number of problems in flight.

use std::collections::{HashMap, HashSet, VecDeque};

use mcts_ps::config::schema::{Advance, Mcts};
use mcts_ps::error::Result;
use mcts_ps::search::run::Search;
use mcts_ps::search::{Policy, ProblemResult, Sample, SampleKind, SampleRequest};
use mcts_ps::task::{Problem, TaskKind};

fn cfg(
    rollouts: usize,
    max_children: usize,
    c_ucb: f64,
    max_steps: usize,
    virtual_loss: usize,
    in_flight: usize,
) -> Mcts {
    Mcts {
        alpha: 1.0,
        rollouts,
        max_children,
        c_ucb,
        temperature: 1.0,
        top_p: 1.0,
        max_steps,
        max_step_tokens: 16,
        max_solution_tokens: 64,
        advance: Advance::Ucb,
        virtual_loss,
        problems_in_flight: in_flight,
    }
}

/// Answers from a script, checking each request is the one expected.
struct Scripted(VecDeque<(SampleKind, &'static str, &'static str)>);

impl Policy for Scripted {
    fn sample(&mut self, requests: Vec<SampleRequest>) -> Result<Vec<Sample>> {
        Ok(requests
            .into_iter()
            .map(|r| {
                let (kind, partial, text) = self.0.pop_front().expect("script has an answer");
                assert_eq!((r.kind, r.partial.as_str()), (kind, partial), "unexpected request");
                Sample { text: text.to_string(), tokens: 1, ended: r.kind == SampleKind::Rollout, cut: false }
            })
            .collect())
    }
}

#[test]
fn hand_computed_search() {
    use SampleKind::{Rollout, Step};
    let script = Scripted(
        [
            // Root 0 (partial ""): rollout 1 expands A and wins, rollout 2 expands B and loses,
            // rollout 3 selects A (UCB 1.83 vs 0.83) and expands a winning final step,
            // rollout 4 selects A (1.74 vs 1.05) and expands C, which loses.
            (Step, "", "A\n\n"),
            (Rollout, "A\n\n", "The final answer is 1."),
            (Step, "", "B\n\n"),
            (Rollout, "B\n\n", "The final answer is 2."),
            (Step, "A\n\n", "The final answer is 1."),
            (Step, "A\n\n", "C\n\n"),
            (Rollout, "A\n\nC\n\n", "The final answer is 3."),
            // Root 1 (partial "A"): two final children, right then wrong; rollouts 3 and 4
            // select the right one again (final nodes need no sampling).
            (Step, "A\n\n", "The final answer is 1."),
            (Step, "A\n\n", "The final answer is 5."),
        ]
        .into_iter()
        .collect(),
    );
    let mut policy = script;
    let problems = vec![Problem {
        id: 7,
        question: "q".into(),
        answer: "1".into(),
        solution: None,
        meta: Default::default(),
    }];
    let c = cfg(4, 2, 1.0, 8, 1, 1);
    let search = Search { cfg: &c, kind: TaskKind::Arith, seed: 0, iteration: 1 };
    let mut results = Vec::new();
    search
        .run(&mut policy, &problems, &HashSet::new(), |r| {
            results.push(r);
            Ok(())
        })
        .unwrap();
    assert!(policy.0.is_empty(), "every scripted answer used");
    let r = &results[0];
    assert_eq!(r.solution, "A\n\nThe final answer is 1.");
    assert!(r.solution_correct);
    assert_eq!(r.rollouts, 8);
    // Root 0: A (Q 2, N 3), B (Q 0, N 1); mean 0.5: r_A = 3 (2/3 - 1/2) = 0.5, r_B = -0.5.
    // Root 1: right (Q 3, N 3), wrong (Q 0, N 1); mean 0.75: +0.75, -0.75.
    let got: Vec<(usize, &str, f64, u64, f64)> =
        r.records.iter().map(|x| (x.step_index, x.step.as_str(), x.r, x.n, x.q)).collect();
    let want = [
        (0, "A", 0.5, 3, 2.0),
        (0, "B", -0.5, 1, 0.0),
        (1, "The final answer is 1.", 0.75, 3, 3.0),
        (1, "The final answer is 5.", -0.75, 1, 0.0),
    ];
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.0, g.1, g.3, g.4), (w.0, w.1, w.3, w.4));
        assert!((g.2 - w.2).abs() < 1e-12, "{g:?} vs {w:?}");
    }
    assert_eq!(r.records[0].sibling_n, 4);
    assert_eq!(r.trees.len(), 2);
    assert_eq!(r.trees[0].root.n, 4);
    assert_eq!(r.trees[0].advanced_to, Some(0));
    assert_eq!(r.trees[0].root.children[0].children.len(), 2);
}

#[test]
fn zero_scores_are_skipped_and_max_steps_stops() {
    // Every step is the same non-final text and every rollout loses: all scores are zero,
    // no records; the partial solution stops at max_steps.
    struct Same;
    impl Policy for Same {
        fn sample(&mut self, requests: Vec<SampleRequest>) -> Result<Vec<Sample>> {
            Ok(requests
                .into_iter()
                .map(|_| Sample { text: "x\n\n".into(), tokens: 2, ended: false, cut: false })
                .collect())
        }
    }
    let problems = vec![Problem {
        id: 0,
        question: "q".into(),
        answer: "1".into(),
        solution: None,
        meta: Default::default(),
    }];
    let c = cfg(3, 3, 1.4, 4, 2, 1);
    let search = Search { cfg: &c, kind: TaskKind::Arith, seed: 0, iteration: 0 };
    let mut results = Vec::new();
    search
        .run(&mut Same, &problems, &HashSet::new(), |r| {
            results.push(r);
            Ok(())
        })
        .unwrap();
    let r = &results[0];
    assert!(r.records.is_empty());
    assert_eq!(r.solution.matches('x').count(), 4);
    assert!(!r.solution_correct);
    assert_eq!(r.trees.len(), 4);
}

/// A random arithmetic-ish policy whose output depends only on the request's stream.
struct Random;

impl Policy for Random {
    fn sample(&mut self, requests: Vec<SampleRequest>) -> Result<Vec<Sample>> {
        Ok(requests
            .into_iter()
            .map(|mut r| {
                let s = &mut r.stream;
                let text = match r.kind {
                    SampleKind::Step => {
                        if s.below(4) == 0 {
                            format!("The final answer is {}.", s.below(3))
                        } else {
                            format!("{} + 1 = {}\n\n", s.below(5), s.below(5))
                        }
                    }
                    SampleKind::Rollout => {
                        format!("{} + 1 = 2\n\nThe final answer is {}.", s.below(5), s.below(3))
                    }
                };
                let ended = text.contains("final");
                Sample { tokens: text.len(), text, ended, cut: false }
            })
            .collect())
    }
}

fn run_all(in_flight: usize, virtual_loss: usize, skip: &HashSet<u64>) -> Vec<ProblemResult> {
    let problems: Vec<Problem> = (0..20)
        .map(|i| Problem {
            id: i,
            question: format!("q{i}"),
            answer: (i % 3).to_string(),
            solution: None,
            meta: Default::default(),
        })
        .collect();
    let c = cfg(8, 3, 1.4, 5, virtual_loss, in_flight);
    let search = Search { cfg: &c, kind: TaskKind::Arith, seed: 11, iteration: 2 };
    let mut out = HashMap::new();
    search
        .run(&mut Random, &problems, skip, |r| {
            out.insert(r.problem, r);
            Ok(())
        })
        .unwrap();
    let mut v: Vec<ProblemResult> = out.into_values().collect();
    v.sort_by_key(|r| r.problem);
    v
}

#[test]
fn results_do_not_depend_on_problems_in_flight() {
    let one = run_all(1, 4, &HashSet::new());
    assert_eq!(one.len(), 20);
    assert!(one.iter().map(|r| r.records.len()).sum::<usize>() > 20);
    for k in [3, 8, 64] {
        assert_eq!(run_all(k, 4, &HashSet::new()), one, "problems in flight {k}");
    }
    // Resuming: skipping finished problems leaves the others unchanged.
    let skip: HashSet<u64> = (0..7).collect();
    let rest = run_all(8, 4, &skip);
    assert_eq!(rest, one[7..].to_vec());
    // Virtual loss changes the search (documented), so it is part of the configuration.
    assert_ne!(run_all(8, 1, &HashSet::new()), one);
}

#[test]
fn records_match_eq1_on_their_own_statistics() {
    for r in run_all(8, 4, &HashSet::new()) {
        for rec in &r.records {
            let want = rec.n as f64 * (rec.q / rec.n as f64 - rec.sibling_q / rec.sibling_n as f64);
            assert!((rec.r - want).abs() < 1e-12);
            assert!(rec.r != 0.0);
        }
        for t in &r.trees {
            assert!(t.root.children.len() <= 3);
            assert_eq!(t.root.n, 8);
            assert_eq!(t.root.n, t.root.children.iter().map(|c| c.n).sum::<u64>());
        }
    }
}
