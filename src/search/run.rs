//! The batched MCTS driver: many problems' trees advance together, each running
//! `virtual_loss` selections per round; all expansions of a round go to the policy as one
//! batch, then all simulations.
//!
//! Determinism: a tree's evolution depends only on its own samples, and every sample's stream
//! is derived from `(seed, purpose, iteration, problem id, root index, node path, child
//! index)`; rounds are per tree. So results do not depend on how many problems are in flight,
//! on the policy's batching, or on the order problems finish.

use std::collections::VecDeque;

use super::tree::{self, Node};
use super::{Policy, ProblemResult, Record, RootTree, SampleKind, SampleRequest};
use crate::config::schema::Mcts;
use crate::error::Result;
use crate::rng::Stream;
use crate::task::{Problem, TaskKind, STEP_SEPARATOR};

/// Fixed inputs of a search.
pub struct Search<'a> {
    /// MCTS settings.
    pub cfg: &'a Mcts,
    /// Answer extraction and grading.
    pub kind: TaskKind,
    /// Root seed.
    pub seed: u64,
    /// Self-training iteration (part of every stream id).
    pub iteration: u64,
}

struct Tree {
    problem: usize,
    steps: Vec<String>,
    root: Node,
    rollouts: usize,
    records: Vec<Record>,
    trees: Vec<RootTree>,
    done: bool,
    rollouts_total: u64,
    tokens: u64,
}

enum Pick {
    /// Expand a new child (index) of the node at the path.
    Expand(Vec<usize>, usize),
    /// A final step: its reward is known.
    Final(Vec<usize>),
    /// A leaf at the depth limit: simulate from it again (its visit number names the stream).
    Leaf(Vec<usize>, u64),
}

impl Search<'_> {
    fn partial(steps: &[String]) -> String {
        steps.iter().map(|s| format!("{s}{STEP_SEPARATOR}")).collect()
    }

    /// A request continuing `steps` of `question`'s solution: one step, or the rest of the
    /// solution, on `stream`.
    fn request(
        c: &Mcts,
        question: &str,
        steps: &[String],
        kind: SampleKind,
        stream: Stream,
    ) -> SampleRequest {
        let max_tokens = match kind {
            SampleKind::Step => c.max_step_tokens,
            SampleKind::Rollout => c.max_solution_tokens,
        };
        SampleRequest {
            question: question.to_string(),
            partial: Self::partial(steps),
            kind,
            max_tokens,
            temperature: c.temperature,
            top_p: c.top_p,
            stream,
        }
    }

    fn stream(&self, problem: u64, root: usize, kind: u64, path: &[usize], child: usize) -> Stream {
        let mut ids = vec![self.iteration, problem, root as u64, kind, child as u64, path.len() as u64];
        ids.extend(path.iter().map(|&i| i as u64));
        Stream::new(self.seed, "mcts", &ids)
    }

    /// The reward of a rollout (METHOD.md step 4): 1 when the whole text the model wrote (the
    /// partial solution, the expanded step and the simulation) states the gold answer, graded
    /// by [`TaskKind::grade`] exactly as evaluation and the RFT filter grade a completion.
    /// `mcts.max_steps` bounds the search's depth, not the rollout: a correct answer reached
    /// in more steps is still correct.
    pub fn reward(&self, text: &str, gold: &str) -> f64 {
        f64::from(u8::from(self.kind.grade(text, gold).correct))
    }

    /// Runs MCTS on `problems` (skipping those whose id is in `skip`), calling `done` with each
    /// problem's result as it finishes.
    pub fn run(
        &self,
        policy: &mut dyn Policy,
        problems: &[Problem],
        skip: &std::collections::HashSet<u64>,
        mut done: impl FnMut(ProblemResult) -> Result<()>,
    ) -> Result<()> {
        let mut waiting: VecDeque<usize> =
            (0..problems.len()).filter(|&i| !skip.contains(&problems[i].id)).collect();
        let mut active: Vec<Tree> = Vec::new();
        loop {
            while active.len() < self.cfg.problems_in_flight.max(1) {
                let Some(p) = waiting.pop_front() else { break };
                active.push(Tree {
                    problem: p,
                    steps: vec![],
                    root: Node::new(String::new(), false, None),
                    rollouts: 0,
                    records: vec![],
                    trees: vec![],
                    done: false,
                    rollouts_total: 0,
                    tokens: 0,
                });
            }
            if active.is_empty() {
                return Ok(());
            }
            self.round(policy, problems, &mut active)?;
            let mut still = Vec::with_capacity(active.len());
            for t in active {
                if t.done {
                    done(self.result(t, problems))?;
                } else {
                    still.push(t);
                }
            }
            active = still;
        }
    }

    fn result(&self, t: Tree, problems: &[Problem]) -> ProblemResult {
        let p = &problems[t.problem];
        let solution = t.steps.join(STEP_SEPARATOR);
        ProblemResult {
            problem: p.id,
            solution_correct: self.kind.is_correct(&solution, &p.answer),
            solution,
            records: t.records,
            trees: t.trees,
            rollouts: t.rollouts_total,
            tokens: t.tokens,
        }
    }

    /// One round for every active tree: selections, batched expansions, batched simulations,
    /// backpropagation, and root advances.
    fn round(&self, policy: &mut dyn Policy, problems: &[Problem], active: &mut [Tree]) -> Result<()> {
        let c = self.cfg;
        // Selection with virtual loss.
        let mut picks: Vec<(usize, Pick)> = Vec::new();
        for (ti, t) in active.iter_mut().enumerate() {
            let budget = c.virtual_loss.min(c.rollouts - t.rollouts);
            for _ in 0..budget {
                let Some(pick) = self.select(&mut t.root) else { break };
                picks.push((ti, pick));
            }
        }
        // Expansions.
        let mut reqs = Vec::new();
        for (ti, pick) in &picks {
            if let Pick::Expand(path, child) = pick {
                let t = &active[*ti];
                let p = &problems[t.problem];
                let node_steps: Vec<String> = path_steps(&t.root, path);
                let mut steps = t.steps.clone();
                steps.extend(node_steps);
                let stream = self.stream(p.id, t.steps.len(), 0, path, *child);
                reqs.push(Self::request(c, &p.question, &steps, SampleKind::Step, stream));
            }
        }
        let mut expansions = policy.sample(reqs)?.into_iter();
        // New children and simulation requests.
        let mut rewards: Vec<Option<f64>> = vec![None; picks.len()];
        let mut sims = Vec::new();
        let mut sim_of = Vec::new();
        for (k, (ti, pick)) in picks.iter().enumerate() {
            let t = &mut active[*ti];
            let p = &problems[t.problem];
            match pick {
                Pick::Final(path) => rewards[k] = t.root.at(path).final_reward,
                Pick::Leaf(path, visit) => {
                    // Another simulation from the leaf: its value is an average like any node's.
                    let mut steps = t.steps.clone();
                    steps.extend(path_steps(&t.root, path));
                    let stream = self.stream(p.id, t.steps.len(), 2, path, *visit as usize);
                    sims.push(Self::request(c, &p.question, &steps, SampleKind::Rollout, stream));
                    sim_of.push((k, steps.join(STEP_SEPARATOR)));
                }
                Pick::Expand(path, child) => {
                    let s = expansions.next().expect("one sample per expansion request");
                    t.tokens += s.tokens as u64;
                    let step =
                        s.text.split(STEP_SEPARATOR).next().unwrap_or("").trim_matches('\n').to_string();
                    let mut steps = t.steps.clone();
                    steps.extend(path_steps(&t.root, path));
                    steps.push(step.clone());
                    let is_final = s.ended || self.kind.is_final_step(&step);
                    let final_reward = is_final.then(|| self.reward(&steps.join(STEP_SEPARATOR), &p.answer));
                    let mut new = Node::new(step, is_final, final_reward);
                    // At the depth limit the tree stops growing; the node's simulation below
                    // still runs to the answer and its reward stands for the node.
                    new.leaf = !is_final && steps.len() >= c.max_steps;
                    new.truncated = s.cut;
                    let node = t.root.at_mut(path);
                    debug_assert_eq!(node.children.len(), *child);
                    node.children.push(new);
                    if is_final {
                        rewards[k] = final_reward;
                    } else {
                        let mut child_path = path.clone();
                        child_path.push(*child);
                        let stream = self.stream(p.id, t.steps.len(), 1, &child_path, 0);
                        sims.push(Self::request(c, &p.question, &steps, SampleKind::Rollout, stream));
                        sim_of.push((k, steps.join(STEP_SEPARATOR)));
                    }
                }
            }
        }
        for (s, (k, prefix)) in policy.sample(sims)?.into_iter().zip(sim_of) {
            let t = &mut active[picks[k].0];
            t.tokens += s.tokens as u64;
            let gold = &problems[t.problem].answer;
            rewards[k] = Some(self.reward(&format!("{prefix}{STEP_SEPARATOR}{}", s.text), gold));
        }
        // Backpropagation, in selection order.
        for (k, (ti, pick)) in picks.iter().enumerate() {
            let t = &mut active[*ti];
            let reward = rewards[k].unwrap_or(0.0);
            let full: Vec<usize> = match pick {
                Pick::Final(path) | Pick::Leaf(path, _) => path.clone(),
                Pick::Expand(path, child) => {
                    t.root.at_mut(path).expanding -= 1;
                    let mut p = path.clone();
                    p.push(*child);
                    p
                }
            };
            let reserved = match pick {
                Pick::Final(path) | Pick::Leaf(path, _) | Pick::Expand(path, _) => path,
            };
            tree::virtual_visit(&mut t.root, reserved, false);
            tree::backpropagate(&mut t.root, &full, reward);
            t.rollouts += 1;
            t.rollouts_total += 1;
        }
        for t in active.iter_mut() {
            if t.rollouts >= c.rollouts && !t.done {
                self.finish_root(t, problems);
            }
        }
        Ok(())
    }

    /// Selection with in-flight expansions counted; `None` when the tree has nothing to select
    /// this round (every path leads to a node whose expansions are all in flight).
    fn select(&self, root: &mut Node) -> Option<Pick> {
        let c = self.cfg;
        let mut path = Vec::new();
        loop {
            let node = root.at(&path);
            if node.is_final {
                tree::virtual_visit(root, &path, true);
                return Some(Pick::Final(path));
            }
            if node.leaf {
                let visit = node.n + node.pending;
                tree::virtual_visit(root, &path, true);
                return Some(Pick::Leaf(path, visit));
            }
            if node.children.len() + node.expanding < c.max_children {
                let child = node.children.len() + node.expanding;
                root.at_mut(&path).expanding += 1;
                tree::virtual_visit(root, &path, true);
                return Some(Pick::Expand(path, child));
            }
            path.push(tree::best_ucb(node, c.c_ucb)?);
        }
    }

    /// Scores the root's children (eq. 1), logs the tree, advances the partial solution.
    fn finish_root(&self, t: &mut Tree, problems: &[Problem]) {
        let c = self.cfg;
        let p = &problems[t.problem];
        let partial = Self::partial(&t.steps);
        let next = tree::advance(&t.root, c.advance, c.c_ucb);
        let root = std::mem::replace(&mut t.root, Node::new(String::new(), false, None));
        let logged = RootTree {
            problem: p.id,
            step_index: t.steps.len(),
            partial,
            advanced_to: next,
            root: root.clone(),
        };
        t.records.extend(super::records(&logged, c.alpha));
        t.trees.push(logged);
        t.rollouts = 0;
        match next {
            Some(i) => {
                let chosen = &root.children[i];
                t.steps.push(chosen.step.clone());
                if chosen.is_final || t.steps.len() >= c.max_steps {
                    t.done = true;
                }
            }
            None => t.done = true,
        }
    }
}

fn path_steps(root: &Node, path: &[usize]) -> Vec<String> {
    let mut out = Vec::with_capacity(path.len());
    let mut node = root;
    for &i in path {
        node = &node.children[i];
        out.push(node.step.clone());
    }
    out
}
