//! The search tree over solution steps: nodes with visit counts `N` and total reward `Q`,
//! UCB selection (Kocsis and Szepesvari 2006), backpropagation, the eq. (1) scores of a root's
//! children, and the rules for advancing the partial solution.

use serde::{Deserialize, Serialize};

use crate::config::schema::Advance;

/// A node: one solution step (the root's step is empty).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The step text (without the blank line after it).
    pub step: String,
    /// Whether this step ends the solution (states an answer, or the model stopped).
    pub is_final: bool,
    /// Reward when `is_final` (the correctness of the answer it states).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub final_reward: Option<f64>,
    /// Visits.
    pub n: u64,
    /// Total reward.
    pub q: f64,
    /// Children, in creation order.
    pub children: Vec<Node>,
    /// Visits reserved by selections in flight (virtual loss), not serialised.
    #[serde(skip)]
    pub pending: u64,
    /// Expansions of this node in flight, not serialised.
    #[serde(skip)]
    pub expanding: usize,
    /// A leaf of the search: the step reached `mcts.max_steps`, so the tree does not grow
    /// below it; each selection of it runs another simulation from it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub leaf: bool,
    /// The step was cut by `mcts.max_step_tokens` (no blank line, no end of sequence): not a
    /// complete step, so it is never trained on.
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Node {
    /// A fresh node.
    pub fn new(step: String, is_final: bool, final_reward: Option<f64>) -> Self {
        Self {
            step,
            is_final,
            final_reward,
            n: 0,
            q: 0.0,
            children: Vec::new(),
            pending: 0,
            expanding: 0,
            leaf: false,
            truncated: false,
        }
    }

    /// Whether selection stops here (a final step, or a leaf at the depth limit).
    pub fn is_terminal(&self) -> bool {
        self.is_final || self.leaf
    }

    /// Mean reward `Q/N` (0 when unvisited).
    pub fn value(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.q / self.n as f64
        }
    }

    /// The node at `path` (child indices from this node).
    pub fn at(&self, path: &[usize]) -> &Node {
        path.iter().fold(self, |n, &i| &n.children[i])
    }

    /// Mutable node at `path`.
    pub fn at_mut(&mut self, path: &[usize]) -> &mut Node {
        path.iter().fold(self, |n, &i| &mut n.children[i])
    }
}

/// UCB of a child: `Q/N + c sqrt(ln N_parent / N)`; `+inf` when unvisited. Visits include
/// those reserved by in-flight selections, which count as zero reward (virtual loss).
pub fn ucb(child_q: f64, child_n: u64, parent_n: u64, c: f64) -> f64 {
    if child_n == 0 {
        return f64::INFINITY;
    }
    let n = child_n as f64;
    child_q / n + c * ((parent_n.max(1) as f64).ln() / n).sqrt()
}

/// Index of the child with the highest UCB (first on ties).
pub fn best_ucb(node: &Node, c: f64) -> Option<usize> {
    let parent_n = node.n + node.pending;
    argmax(node.children.iter().map(|ch| ucb(ch.q, ch.n + ch.pending, parent_n, c)))
}

fn argmax(xs: impl Iterator<Item = f64>) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, x) in xs.enumerate() {
        if best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i)
}

/// Adds `reward` to `Q` and one visit to `N` of every node on `path`, root included.
pub fn backpropagate(root: &mut Node, path: &[usize], reward: f64) {
    let mut node = root;
    node.n += 1;
    node.q += reward;
    for &i in path {
        node = &mut node.children[i];
        node.n += 1;
        node.q += reward;
    }
}

/// Reserves (`+1`) or releases (`-1`) a virtual visit on every node of `path`.
pub fn virtual_visit(root: &mut Node, path: &[usize], reserve: bool) {
    let mut node = root;
    let apply = |n: &mut Node| {
        if reserve {
            n.pending += 1;
        } else {
            n.pending -= 1;
        }
    };
    apply(node);
    for &i in path {
        node = &mut node.children[i];
        apply(node);
    }
}

/// A copy of `root` whose children with the same step text (and the same `is_final`) are one child (visits and rewards
/// summed, flags of the first, truncated only when every copy was), in order of first
/// appearance; grandchildren are dropped (eq. (1) and preference pairs read one level).
pub fn merged_children(root: &Node) -> Node {
    let mut out =
        Node { children: Vec::new(), ..Node::new(root.step.clone(), root.is_final, root.final_reward) };
    out.n = root.n;
    out.q = root.q;
    for c in &root.children {
        // The same text ended (a final step) and continued (a blank line after it) are two
        // actions with two training targets.
        match out.children.iter_mut().find(|m| m.step == c.step && m.is_final == c.is_final) {
            Some(m) => {
                m.n += c.n;
                m.q += c.q;
                m.truncated &= c.truncated;
            }
            None => {
                let mut m = Node::new(c.step.clone(), c.is_final, c.final_reward);
                (m.n, m.q, m.leaf, m.truncated) = (c.n, c.q, c.leaf, c.truncated);
                out.children.push(m);
            }
        }
    }
    out
}

/// eq. (1) for every child of `root`:
/// `r_k = alpha * N(k) * (Q(k)/N(k) - sum_m Q(m) / sum_m N(m))`.
pub fn relative_correctness(root: &Node, alpha: f64) -> Vec<f64> {
    let sum_q: f64 = root.children.iter().map(|c| c.q).sum();
    let sum_n: u64 = root.children.iter().map(|c| c.n).sum();
    if sum_n == 0 {
        return vec![0.0; root.children.len()];
    }
    let mean = sum_q / sum_n as f64;
    root.children
        .iter()
        .map(|c| if c.n == 0 { 0.0 } else { alpha * c.n as f64 * (c.q / c.n as f64 - mean) })
        .collect()
}

/// The child the partial solution advances to; a step cut by the token limit only when every
/// child is one.
pub fn advance(root: &Node, rule: Advance, c: f64) -> Option<usize> {
    let ch = &root.children;
    let any_complete = ch.iter().any(|k| !k.truncated);
    let score = |k: &Node| -> f64 {
        if any_complete && k.truncated {
            return f64::NEG_INFINITY;
        }
        match rule {
            Advance::Ucb => ucb(k.q, k.n, root.n, c),
            Advance::MostVisited => k.n as f64,
            Advance::BestValue => {
                if k.n == 0 {
                    f64::NEG_INFINITY
                } else {
                    k.value()
                }
            }
        }
    };
    argmax(ch.iter().map(score))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(q: f64, n: u64) -> Node {
        Node { q, n, ..Node::new(format!("s{q}/{n}"), false, None) }
    }

    fn root(children: Vec<Node>) -> Node {
        let n = children.iter().map(|c| c.n).sum();
        let q = children.iter().map(|c| c.q).sum();
        Node { n, q, children, ..Node::new(String::new(), false, None) }
    }

    #[test]
    fn eq1_on_the_hand_computed_tree() {
        // (Q, N) = (3, 4), (1, 4), (0, 2): mean 4/10; alpha 1:
        // 4 * (3/4 - 0.4) = 1.4; 4 * (1/4 - 0.4) = -0.6; 2 * (0 - 0.4) = -0.8.
        let r = root(vec![child(3.0, 4), child(1.0, 4), child(0.0, 2)]);
        let s = relative_correctness(&r, 1.0);
        for (got, want) in s.iter().zip([1.4, -0.6, -0.8]) {
            assert!((got - want).abs() < 1e-12, "{s:?}");
        }
        // Scores are zero-sum (weighted by N) and scale with alpha.
        assert!(s.iter().sum::<f64>().abs() < 1e-12);
        let s2 = relative_correctness(&r, 2.5);
        assert!((s2[0] - 3.5).abs() < 1e-12);
        // Equal values give zero scores (skipped as records).
        let same = root(vec![child(1.0, 2), child(2.0, 4)]);
        assert!(relative_correctness(&same, 1.0).iter().all(|x| x.abs() < 1e-12));
    }

    #[test]
    fn identical_steps_merge_into_one_candidate() {
        // Children "a" (1, 2), "b" (0, 2), "a" (2, 2): merged "a" (3, 4), "b" (0, 2); mean 3/6:
        // r_a = 4 * (3/4 - 1/2) = 1, r_b = 2 * (0 - 1/2) = -1, which is the sum of the copies'
        // own scores (2 * (1/2 - 1/2) = 0 and 2 * (1 - 1/2) = 1 for "a").
        let mut kids = vec![child(1.0, 2), child(0.0, 2), child(2.0, 2)];
        kids[0].step = "a".into();
        kids[1].step = "b".into();
        kids[2].step = "a".into();
        kids[2].truncated = true;
        let r = root(kids);
        let m = merged_children(&r);
        assert_eq!(m.children.len(), 2);
        assert_eq!((m.children[0].step.as_str(), m.children[0].q, m.children[0].n), ("a", 3.0, 4));
        assert!(!m.children[0].truncated, "one complete copy makes the step complete");
        let s = relative_correctness(&m, 1.0);
        assert!((s[0] - 1.0).abs() < 1e-12 && (s[1] + 1.0).abs() < 1e-12, "{s:?}");
        let per_copy = relative_correctness(&r, 1.0);
        assert!((per_copy[0] + per_copy[2] - s[0]).abs() < 1e-12);
        // The same text once ending the solution and once continued: two candidates.
        let mut kids = vec![child(1.0, 1), child(0.0, 1)];
        kids[0].step = "a".into();
        kids[1].step = "a".into();
        kids[1].is_final = true;
        assert_eq!(merged_children(&root(kids)).children.len(), 2);
    }

    #[test]
    fn ucb_values_and_order() {
        // parent N = 10, c = 1.4: child (3, 4): 0.75 + 1.4 sqrt(ln 10 / 4) = 0.75 + 1.4 * 0.758714
        let u = ucb(3.0, 4, 10, 1.4);
        assert!((u - (0.75 + 1.4 * (10f64.ln() / 4.0).sqrt())).abs() < 1e-12);
        assert!((u - 1.812199).abs() < 1e-6);
        assert_eq!(ucb(0.0, 0, 10, 1.4), f64::INFINITY);
        // Children (3,4) 1.812, (1,4) 1.312, (0,2) 0 + 1.4*sqrt(ln10/2) = 1.502: order 0, 2, 1.
        let r = root(vec![child(3.0, 4), child(1.0, 4), child(0.0, 2)]);
        assert_eq!(best_ucb(&r, 1.4), Some(0));
        // With more exploration the rarely visited child wins: c = 3:
        // 0.75 + 3*0.7587 = 3.026; 0.25 + 2.276 = 2.526; 0 + 3*1.073 = 3.219.
        assert_eq!(best_ucb(&r, 3.0), Some(2));
        // Unvisited children come first.
        let r2 = root(vec![child(3.0, 4), child(0.0, 0)]);
        assert_eq!(best_ucb(&r2, 1.4), Some(1));
    }

    #[test]
    fn advance_rules() {
        let r = root(vec![child(3.0, 4), child(2.0, 2), child(1.0, 6)]);
        // UCB with c = 1.4, N = 12: 0.75+1.4*0.7881=1.853; 1+1.4*1.1146=2.560; 0.1667+1.4*0.6436=1.068.
        assert_eq!(advance(&r, Advance::Ucb, 1.4), Some(1));
        assert_eq!(advance(&r, Advance::MostVisited, 1.4), Some(2));
        assert_eq!(advance(&r, Advance::BestValue, 1.4), Some(1));
        assert_eq!(advance(&root(vec![]), Advance::Ucb, 1.4), None);
    }

    #[test]
    fn backpropagation_updates_the_path_and_the_root() {
        let mut r = root(vec![child(0.0, 0)]);
        r.children[0].children.push(child(0.0, 0));
        backpropagate(&mut r, &[0, 0], 1.0);
        backpropagate(&mut r, &[0], 0.0);
        assert_eq!((r.n, r.q), (2, 1.0));
        assert_eq!((r.children[0].n, r.children[0].q), (2, 1.0));
        assert_eq!((r.children[0].children[0].n, r.children[0].children[0].q), (1, 1.0));
        virtual_visit(&mut r, &[0], true);
        assert_eq!((r.pending, r.children[0].pending), (1, 1));
        virtual_visit(&mut r, &[0], false);
        assert_eq!((r.pending, r.children[0].pending), (0, 0));
    }
}
