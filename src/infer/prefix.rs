//! Reusable key/value prefixes.
//!
//! Every finished prompt and every finished sequence leaves its keys and values here, keyed by
//! its token ids. A new prompt copies the longest common prefix it shares with any entry (the
//! key/value of position `i` depends only on tokens `0..=i`) and computes only the rest: in
//! MCTS every rollout from a node shares the question and the partial solution, and a child's
//! prompt extends the sequence that generated it.

use burn::tensor::Tensor;

use crate::model::backend::InferBackend;

/// Keys and values of one layer for `len` positions, `[1, len, kv_heads, head_dim]` each.
pub type LayerKv<B> = (Tensor<B, 4>, Tensor<B, 4>);

struct Entry<B: InferBackend> {
    tokens: Vec<u32>,
    kv: Vec<LayerKv<B>>,
    last_used: u64,
}

/// Least-recently-used store of key/value prefixes with a budget in positions.
pub struct PrefixCache<B: InferBackend> {
    entries: Vec<Entry<B>>,
    budget: usize,
    used: usize,
    clock: u64,
}

impl<B: InferBackend> PrefixCache<B> {
    /// An empty store holding at most `budget` positions in total.
    pub fn new(budget: usize) -> Self {
        Self { entries: Vec::new(), budget, used: 0, clock: 0 }
    }

    /// The longest common prefix between `tokens` and any entry: `(entry, length)`.
    pub fn lookup(&mut self, tokens: &[u32]) -> Option<(usize, usize)> {
        let mut best: Option<(usize, usize)> = None;
        for (i, e) in self.entries.iter().enumerate() {
            let n = e.tokens.iter().zip(tokens).take_while(|(a, b)| a == b).count();
            if n > 0 && best.is_none_or(|(_, m)| n > m) {
                best = Some((i, n));
            }
        }
        if let Some((i, _)) = best {
            self.clock += 1;
            self.entries[i].last_used = self.clock;
        }
        best
    }

    /// The longest common prefix length with any entry, without touching recency.
    pub fn peek(&self, tokens: &[u32]) -> usize {
        self.entries
            .iter()
            .map(|e| e.tokens.iter().zip(tokens).take_while(|(a, b)| a == b).count())
            .max()
            .unwrap_or(0)
    }

    /// The first `len` positions of entry `index`, per layer.
    pub fn get(&self, index: usize, len: usize) -> Vec<LayerKv<B>> {
        self.entries[index]
            .kv
            .iter()
            .map(|(k, v)| (k.clone().narrow(1, 0, len), v.clone().narrow(1, 0, len)))
            .collect()
    }

    /// Whether an entry already covers `tokens` (is it worth reading them out of a slot?).
    pub fn covers(&self, tokens: &[u32]) -> bool {
        self.entries.iter().any(|e| e.tokens.len() >= tokens.len() && e.tokens[..tokens.len()] == *tokens)
    }

    /// Stores `tokens` with their per-layer keys/values; entries that are prefixes of it are
    /// dropped, then least recently used entries until the budget holds.
    pub fn insert(&mut self, tokens: Vec<u32>, kv: Vec<LayerKv<B>>) {
        if tokens.is_empty() || tokens.len() > self.budget || self.covers(&tokens) {
            return;
        }
        let before = self.entries.len();
        self.entries
            .retain(|e| !(e.tokens.len() <= tokens.len() && tokens[..e.tokens.len()] == e.tokens[..]));
        if self.entries.len() != before {
            self.used = self.entries.iter().map(|e| e.tokens.len()).sum();
        }
        self.clock += 1;
        self.used += tokens.len();
        self.entries.push(Entry { tokens, kv, last_used: self.clock });
        while self.used > self.budget {
            let (i, _) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
                .expect("over budget implies an entry");
            let e = self.entries.swap_remove(i);
            self.used -= e.tokens.len();
        }
    }

    /// Positions held.
    pub fn used(&self) -> usize {
        self.used
    }
}
