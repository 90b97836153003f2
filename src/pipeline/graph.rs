//! The stage graph of one run, as data: the only place where the sequence of METHOD.md's
//! protocol is written down. `runner plan` prints it and `runner run` executes it node by node
//! ([`super::run`]); executors use each node's items to split it.
//!
//! ```text
//! base (pretrain tiny | load checkpoint)
//!  ├─ eval zero-shot CoT
//!  ├─ rft: sample base on rft.problems, keep the correct, NLL ─ eval RFT
//!  ├─ ours, i = 1..ours.iterations:
//!  │    mcts(model_{i-1}, problems_i) ─ train eq. (2) (model_{i-1}, mcts_i) ─ eval ours i
//!  ├─ rft matched (rft.match_tokens = "ours"): sampling budget = tokens of ours' mcts_1 ─ eval
//!  └─ step-DPO, i = 1..step_dpo.iterations:
//!       mcts (ours' mcts_1 when the problems are the same) ─ train DPO ─ eval step-DPO i
//! ```
//!
//! Every evaluation node exists once per split: the test set (unless `eval.test = false`) and
//! the validation problems (when `task.val_size > 0`).

use crate::config::schema::Backend;
use crate::config::{ModelSource, Resolved};
use crate::method::{Split, EVAL_BLOCK};

/// Index of a node in [`Graph::nodes`].
pub type NodeId = usize;

/// What a node computes.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// The base model: pretraining (preset `tiny`) or the checkpoint as it is.
    Base,
    /// Evaluation of a model on a split; measures one row of the table.
    Eval {
        /// The node whose model is evaluated.
        model: NodeId,
        /// Test or validation problems.
        split: Split,
        /// The table row: method and iteration.
        row: (&'static str, Option<usize>),
        /// Nodes whose data and training made the model: every earlier iteration's too (the
        /// row's cumulative cost).
        cost: Vec<NodeId>,
        /// The nodes of `cost` that are this row's own (its iteration's data and training).
        own: Vec<NodeId>,
    },
    /// RFT from the base model; `budget` is the node whose generated tokens set the sampling
    /// budget (compute-matched RFT), `None` for the paper's fixed samples per problem.
    Rft {
        /// The base model's node.
        base: NodeId,
        /// Budget source (an MCTS node) for the compute-matched variant.
        budget: Option<NodeId>,
    },
    /// MCTS data of an iteration from the model of the previous one.
    Mcts {
        /// The model searched with.
        model: NodeId,
        /// Iteration (1-based): selects the iteration's problems.
        iteration: usize,
        /// Problems drawn.
        problems: usize,
    },
    /// Eq. (2) training of ours.
    TrainOurs {
        /// The previous iteration's model (also the KL reference).
        prev: NodeId,
        /// The MCTS node whose records are trained on.
        mcts: NodeId,
        /// Iteration.
        iteration: usize,
    },
    /// Step-level DPO training.
    TrainDpo {
        /// The previous iteration's model (also the DPO reference).
        prev: NodeId,
        /// The MCTS node whose trees give the preference pairs.
        mcts: NodeId,
        /// Iteration.
        iteration: usize,
    },
}

/// Where a node's work runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// No model compute (a checkpoint taken as it is).
    None,
    /// CPU threads.
    Cpu,
    /// One GPU.
    Gpu,
}

/// One node of the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Stage kind, as in the stage folders' names: pretrain, base, eval, rft, mcts, train-ours,
    /// train-dpo.
    pub kind: &'static str,
    /// What it does, for `runner plan` and the progress bar.
    pub label: String,
    /// What it computes, with its inputs.
    pub op: Op,
    /// The independent items its work splits into (`(what, how many)`), what a shard takes a
    /// block of; `None` for a node that is one job (training).
    pub items: Option<(&'static str, usize)>,
    /// What it runs on.
    pub resource: Resource,
}

impl Node {
    /// The nodes this one reads the outputs of.
    pub fn inputs(&self) -> Vec<NodeId> {
        match &self.op {
            Op::Base => vec![],
            Op::Eval { model, .. } => vec![*model],
            Op::Rft { base, budget } => std::iter::once(*base).chain(*budget).collect(),
            Op::Mcts { model, .. } => vec![*model],
            Op::TrainOurs { prev, mcts, .. } | Op::TrainDpo { prev, mcts, .. } => vec![*prev, *mcts],
        }
    }

    /// Whether the node does work of its own (the base node of a checkpoint does not).
    pub fn computes(&self) -> bool {
        self.resource != Resource::None
    }
}

/// The stages of one run in execution order (every node after its inputs).
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    /// The nodes; a node's inputs always come before it.
    pub nodes: Vec<Node>,
}

/// The table order of the methods' rows.
pub const ROW_ORDER: &[&str] = &["zero_shot_cot", "rft", "rft_matched", "step_dpo", "ours"];

/// The stage graph of a resolved configuration (pure: reads no data and no store). `test_len`
/// is the test set's size when known (a file-based set with `task.test_size = 0` is the whole
/// file): it only sets the labels and item counts.
pub fn graph(cfg: &Resolved, test_len: Option<usize>) -> Graph {
    let e = &cfg.exp;
    let has = |b: &str| e.baselines.iter().any(|x| x == b);
    let compute = if e.model.backend == Backend::Cuda { Resource::Gpu } else { Resource::Cpu };
    let mut nodes: Vec<Node> = Vec::new();
    let add = |nodes: &mut Vec<Node>, kind, label: String, op, items| {
        let resource =
            if matches!(op, Op::Base) && cfg.model != ModelSource::Tiny { Resource::None } else { compute };
        nodes.push(Node { kind, label, op, items, resource });
        nodes.len() - 1
    };
    let base = if cfg.model == ModelSource::Tiny {
        let label =
            format!("pretrain tiny: {} steps x {} sequences", e.pretrain.steps, e.pretrain.batch_size);
        add(&mut nodes, "pretrain", label, Op::Base, None)
    } else {
        add(&mut nodes, "base", "base model as given (no compute)".into(), Op::Base, None)
    };
    let mut splits = Vec::new();
    if e.eval.test {
        splits.push((Split::Test, test_len.unwrap_or(e.task.test_size)));
    }
    if e.task.val_size > 0 {
        splits.push((Split::Validation, e.task.val_size));
    }
    let eval = |nodes: &mut Vec<Node>,
                model: NodeId,
                name: &str,
                row: (&'static str, Option<usize>),
                cost: Vec<NodeId>,
                own: Vec<NodeId>| {
        for &(split, n) in &splits {
            let what = match split {
                Split::Test => format!("{} runs x {} problems", e.eval.runs, n),
                Split::Validation => format!("validation, {} runs x {} problems", e.eval.runs, n),
            };
            let items = Some(("blocks of a run", e.eval.runs * n.div_ceil(EVAL_BLOCK).max(1)));
            let op = Op::Eval { model, split, row, cost: cost.clone(), own: own.clone() };
            let resource = compute;
            nodes.push(Node { kind: "eval", label: format!("eval {name} ({what})"), op, items, resource });
        }
    };
    if has("zero_shot_cot") {
        eval(&mut nodes, base, "zero-shot CoT", ("zero_shot_cot", None), vec![], vec![]);
    }
    if has("rft") {
        let label = format!(
            "rft: {} problems x {} samples, NLL fine-tuning",
            e.rft.problems, e.rft.samples_per_problem
        );
        let items = Some(("problems to sample; training is one job", e.rft.problems));
        let r = add(&mut nodes, "rft", label, Op::Rft { base, budget: None }, items);
        eval(&mut nodes, r, "RFT", ("rft", None), vec![r], vec![r]);
    }
    let mut prev = base;
    let mut first_mcts = None;
    let mut so_far = Vec::new();
    for i in 1..=e.ours.iterations {
        let n = e.ours.problems_per_iteration;
        let label = format!("ours iter {i}: MCTS on {n} problems x {} rollouts per root", e.mcts.rollouts);
        let op = Op::Mcts { model: prev, iteration: i, problems: n };
        let m = add(&mut nodes, "mcts", label, op, Some(("problems", n)));
        if i == 1 {
            first_mcts = Some(m);
        }
        let op = Op::TrainOurs { prev, mcts: m, iteration: i };
        prev = add(&mut nodes, "train-ours", format!("ours iter {i}: eq. (2) training"), op, None);
        so_far.extend([m, prev]);
        eval(&mut nodes, prev, &format!("ours iter {i}"), ("ours", Some(i)), so_far.clone(), vec![m, prev]);
    }
    if has("rft") && e.rft.match_tokens == "ours" {
        let label =
            format!("rft matched: {} problems, as many tokens as ours' MCTS iteration 1", e.rft.problems);
        let items = Some(("problems to sample; training is one job", e.rft.problems));
        let op = Op::Rft { base, budget: first_mcts };
        let r = add(&mut nodes, "rft", label, op, items);
        eval(&mut nodes, r, "RFT (matched)", ("rft_matched", None), vec![r], vec![r]);
    }
    if has("step_dpo") {
        let mut prev = base;
        let mut so_far = Vec::new();
        for i in 1..=e.step_dpo.iterations {
            let n = e.step_dpo.problems_per_iteration;
            // Iteration 1 searches the base model on the same draw as ours' iteration 1 when
            // the counts agree (same pool, seed and purpose): one stage for both.
            let m = match first_mcts {
                Some(m) if i == 1 && n == e.ours.problems_per_iteration => m,
                _ => {
                    let label = format!("step-DPO iter {i}: MCTS on {n} problems");
                    let op = Op::Mcts { model: prev, iteration: i, problems: n };
                    add(&mut nodes, "mcts", label, op, Some(("problems", n)))
                }
            };
            let op = Op::TrainDpo { prev, mcts: m, iteration: i };
            prev = add(&mut nodes, "train-dpo", format!("step-DPO iter {i}: DPO training"), op, None);
            so_far.extend([m, prev]);
            let row = ("step_dpo", Some(i));
            eval(&mut nodes, prev, &format!("step-DPO iter {i}"), row, so_far.clone(), vec![m, prev]);
        }
    }
    Graph { nodes }
}

impl Graph {
    /// The nodes that do work (what `runner plan` lists and the progress bar counts).
    pub fn stages(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.computes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every method, 4 iterations each on 300 problems, no validation split.
    fn cfg(sets: &[&str]) -> Resolved {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/graph_test.toml");
        let text = "baselines = [\"zero_shot_cot\", \"rft\", \"step_dpo\"]\n[model]\npreset = \"tiny\"\n\
                    [ours]\niterations = 4\nproblems_per_iteration = 300\n\
                    [step_dpo]\niterations = 4\nproblems_per_iteration = 300\n";
        crate::config::load_str(&path, text, &sets, &[]).unwrap().runs.remove(0).config
    }

    #[test]
    fn inputs_come_before_their_nodes_and_step_dpo_shares_the_first_mcts() {
        let g = graph(&cfg(&[]), None);
        for (i, n) in g.nodes.iter().enumerate() {
            assert!(n.inputs().iter().all(|&j| j < i), "{} reads a later node", n.label);
        }
        let mcts = g.nodes.iter().filter(|n| n.kind == "mcts").count();
        // 4 iterations of ours + iterations 2..4 of step-DPO.
        assert_eq!(mcts, 4 + 3);
        let dpo1 = g.nodes.iter().find(|n| matches!(n.op, Op::TrainDpo { iteration: 1, .. })).unwrap();
        let ours1 = g.nodes.iter().position(|n| matches!(n.op, Op::Mcts { iteration: 1, .. })).unwrap();
        assert!(matches!(dpo1.op, Op::TrainDpo { mcts, .. } if mcts == ours1));
        // Other problem counts: step-DPO searches on its own.
        let g = graph(&cfg(&["step_dpo.problems_per_iteration=100"]), None);
        assert_eq!(g.nodes.iter().filter(|n| n.kind == "mcts").count(), 4 + 4);
    }

    #[test]
    fn splits_and_the_matched_baseline_add_nodes() {
        let plain = graph(&cfg(&[]), None);
        let evals = |g: &Graph| g.nodes.iter().filter(|n| n.kind == "eval").count();
        assert_eq!(evals(&plain), 1 + 1 + 4 + 4);
        let val = graph(&cfg(&["task.val_size=50"]), None);
        assert_eq!(evals(&val), 2 * evals(&plain));
        let val_only = graph(&cfg(&["task.val_size=50", "eval.test=false"]), None);
        assert_eq!(evals(&val_only), evals(&plain));
        let matched = graph(&cfg(&["rft.match_tokens=\"ours\""]), None);
        let r = matched.nodes.iter().find(|n| matches!(n.op, Op::Rft { budget: Some(_), .. })).unwrap();
        let Op::Rft { budget: Some(m), .. } = r.op else { unreachable!() };
        assert!(matches!(matched.nodes[m].op, Op::Mcts { iteration: 1, .. }));
        assert_eq!(evals(&matched), evals(&plain) + 1);
    }
}
