//! The batched sampling engine.
//!
//! Requests wait in a queue; up to `batch` of them occupy cache slots at once. A request that
//! takes a slot copies the longest cached prefix of its prompt ([`PrefixCache`]) and computes
//! the rest of the prompt; then every occupied slot advances one token per decode step; a
//! finished request leaves and the next waiting one takes its slot (continuous batching).
//!
//! Determinism: a request's tokens depend only on its prompt, its own random stream and the
//! model. Every per-row computation has the same floating-point result whichever rows share
//! the batch and whether a prefix was copied or computed: the attention kernel is row-exact
//! (see `model::backend`), and matrix products are called with at least two rows because the
//! one-row case takes a different summation path in the CPU GEMM.

use std::collections::VecDeque;
use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData};

use super::prefix::PrefixCache;
use super::sampling::sample;
use crate::error::{Error, Result};
use crate::model::backend::InferBackend;
use crate::model::llama::{LayerCache, Llama};
use crate::model::rope::Rope;
use crate::model::tokenizer::Tokenizer;
use crate::rng::Stream;
use crate::task::STEP_SEPARATOR;

/// When a request stops (besides its token budget and end-of-sequence tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Only at an end-of-sequence token.
    Eos,
    /// Also once the generated text contains a step separator (a blank line).
    StepEnd,
}

/// One generation request.
#[derive(Clone, Debug)]
pub struct Request {
    /// Prompt token ids (at least one).
    pub prompt: Vec<u32>,
    /// Most tokens to generate.
    pub max_new_tokens: usize,
    /// Sampling temperature (0 = greedy).
    pub temperature: f64,
    /// Nucleus mass.
    pub top_p: f64,
    /// Stop rule.
    pub stop: Stop,
    /// This request's random stream.
    pub rng: Stream,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// An end-of-sequence token (not included in the output).
    Eos,
    /// The text reached a step separator.
    StepEnd,
    /// `max_new_tokens` reached.
    Length,
    /// The cache capacity (model context) reached.
    Context,
}

/// A finished request.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// Generated token ids (without a final end-of-sequence token).
    pub tokens: Vec<u32>,
    /// Their text.
    pub text: String,
    /// Why it ended.
    pub finish: Finish,
}

/// Counters of work done, cumulative over the engine's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Requests completed.
    pub requests: u64,
    /// Prompt positions requested.
    pub prompt_tokens: u64,
    /// Prompt positions computed (the rest came from the prefix cache).
    pub prefill_tokens: u64,
    /// Tokens generated.
    pub generated_tokens: u64,
    /// Decode steps run.
    pub decode_steps: u64,
    /// Seconds spent computing prompts.
    pub prefill_seconds: f64,
    /// Seconds spent in decode steps.
    pub decode_seconds: f64,
}

struct Active {
    index: usize,
    /// Prompt and generated tokens; all but the last have keys/values in the slot.
    seq: Vec<u32>,
    prompt_len: usize,
    req: Request,
}

/// A model, its tokenizer, a slot cache and a prefix store.
pub struct Engine<B: InferBackend> {
    model: Llama<B>,
    rope: Rope<B>,
    /// The tokenizer of the model.
    pub tokenizer: Tokenizer,
    device: B::Device,
    batch: usize,
    capacity: usize,
    cache: Option<Vec<LayerCache<B>>>,
    prefix: PrefixCache<B>,
    /// Work counters.
    pub stats: Stats,
}

impl<B: InferBackend> Engine<B> {
    /// An engine decoding up to `batch` sequences of at most `capacity` positions each, keeping
    /// up to `prefix_budget` positions of reusable prefixes.
    pub fn new(
        model: Llama<B>,
        tokenizer: Tokenizer,
        batch: usize,
        capacity: usize,
        prefix_budget: usize,
        device: &B::Device,
    ) -> Self {
        let rope = Rope::new(&model.config, capacity, device);
        Self {
            model,
            rope,
            tokenizer,
            device: device.clone(),
            batch: batch.max(1),
            capacity,
            cache: None,
            prefix: PrefixCache::new(prefix_budget),
            stats: Stats::default(),
        }
    }

    /// The model.
    pub fn model(&self) -> &Llama<B> {
        &self.model
    }

    /// Positions per sequence.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Runs all `requests` to completion; results are in request order. `on_done` is called
    /// once per finished request (for progress bars).
    pub fn generate(&mut self, requests: Vec<Request>, mut on_done: impl FnMut()) -> Result<Vec<Completion>> {
        let n = requests.len();
        for (i, r) in requests.iter().enumerate() {
            if r.prompt.is_empty() {
                return Err(Error::Other(format!("generation request {i} has an empty prompt")));
            }
            if r.prompt.len() >= self.capacity {
                return Err(Error::Other(format!(
                    "prompt of {} tokens does not fit the context of {} positions (model.context)",
                    r.prompt.len(),
                    self.capacity
                )));
            }
        }
        let mut out: Vec<Option<Completion>> = vec![None; n];
        let mut waiting: VecDeque<(usize, Request)> = requests.into_iter().enumerate().collect();
        let mut slots: Vec<Option<Active>> = (0..self.batch).map(|_| None).collect();
        let mut cache = match self.cache.take() {
            Some(c) => c,
            None => self.model.new_cache(self.batch, self.capacity, &self.device),
        };
        loop {
            for (slot, occupant) in slots.iter_mut().enumerate() {
                if occupant.is_some() {
                    continue;
                }
                let Some((index, req)) = waiting.pop_front() else { break };
                let (logits, c) = self.admit(&req, slot, cache)?;
                cache = c;
                let mut a = Active { index, seq: req.prompt.clone(), prompt_len: req.prompt.len(), req };
                if let Some(done) = self.push_token(&mut a, &logits, &cache, slot)? {
                    out[a.index] = Some(done);
                    on_done();
                } else {
                    *occupant = Some(a);
                }
            }
            let live: Vec<usize> = (0..self.batch).filter(|&s| slots[s].is_some()).collect();
            if live.is_empty() {
                if waiting.is_empty() {
                    break;
                }
                continue;
            }
            let t0 = Instant::now();
            let mut rows: Vec<usize> = live.clone();
            if rows.len() == 1 {
                rows.push(rows[0]); // see module docs: never a one-row product
            }
            let tokens: Vec<i64> = rows
                .iter()
                .map(|&s| *slots[s].as_ref().expect("live").seq.last().expect("non-empty") as i64)
                .collect();
            let starts: Vec<usize> =
                rows.iter().map(|&s| slots[s].as_ref().expect("live").seq.len() - 1).collect();
            let tokens =
                Tensor::<B, 2, Int>::from_data(TensorData::new(tokens, [rows.len(), 1]), &self.device);
            let (hidden, c) = self.model.forward_cached(tokens, &rows, &starts, &self.rope, cache);
            cache = c;
            let logits = self.logits_rows(hidden)?;
            self.stats.decode_steps += 1;
            self.stats.decode_seconds += t0.elapsed().as_secs_f64();
            let vocab = self.model.config.vocab_size;
            for (row, &slot) in live.iter().enumerate() {
                let mut a = slots[slot].take().expect("live");
                let l = &logits[row * vocab..(row + 1) * vocab];
                match self.push_token(&mut a, l, &cache, slot)? {
                    Some(done) => {
                        out[a.index] = Some(done);
                        on_done();
                    }
                    None => slots[slot] = Some(a),
                }
            }
        }
        self.cache = Some(cache);
        Ok(out.into_iter().map(|c| c.expect("every request finishes")).collect())
    }

    /// Puts `req` in `slot`: copies the cached prefix, computes the rest of the prompt, and
    /// returns the logits after the last prompt token.
    fn admit(
        &mut self,
        req: &Request,
        slot: usize,
        mut cache: Vec<LayerCache<B>>,
    ) -> Result<(Vec<f32>, Vec<LayerCache<B>>)> {
        let t0 = Instant::now();
        let p = &req.prompt;
        // At least the last prompt token is computed: its logits start the generation.
        let mut reused = 0;
        if let Some((entry, len)) = self.prefix.lookup(&p[..p.len() - 1]) {
            let kv = self.prefix.get(entry, len);
            cache = cache
                .into_iter()
                .zip(kv)
                .map(|(lc, (k, v))| LayerCache {
                    k: B::cache_write(lc.k, &[slot], &[0], k),
                    v: B::cache_write(lc.v, &[slot], &[0], v),
                })
                .collect();
            reused = len;
        }
        let rest = &p[reused..];
        let (rows, starts, toks): (Vec<usize>, Vec<usize>, Vec<i64>) = if rest.len() == 1 {
            (vec![slot, slot], vec![reused, reused], vec![rest[0] as i64, rest[0] as i64])
        } else {
            (vec![slot], vec![reused], rest.iter().map(|&t| t as i64).collect())
        };
        let l = if rest.len() == 1 { 1 } else { rest.len() };
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(toks, [rows.len(), l]), &self.device);
        let (hidden, cache) = self.model.forward_cached(tokens, &rows, &starts, &self.rope, cache);
        let last = hidden.narrow(0, 0, 1).narrow(1, l - 1, 1); // [1, 1, d]
        let logits = self.logits_rows(last)?;
        self.stats.prompt_tokens += p.len() as u64;
        self.stats.prefill_tokens += rest.len() as u64;
        self.stats.prefill_seconds += t0.elapsed().as_secs_f64();
        Ok((logits, cache))
    }

    /// `[rows, 1, d]` hidden states -> host logits `[rows * vocab]`.
    fn logits_rows(&self, hidden: Tensor<B, 3>) -> Result<Vec<f32>> {
        let logits = self.model.head(hidden);
        logits
            .cast(burn::tensor::DType::F32)
            .into_data()
            .to_vec::<f32>()
            .map_err(|e| Error::Other(format!("cannot read logits: {e:?}")))
    }

    /// Samples the next token for `a` from `logits`; returns the completion if it finished.
    fn push_token(
        &mut self,
        a: &mut Active,
        logits: &[f32],
        cache: &[LayerCache<B>],
        slot: usize,
    ) -> Result<Option<Completion>> {
        let tok = sample(logits, a.req.temperature, a.req.top_p, &mut a.req.rng);
        let generated = a.seq.len() - a.prompt_len;
        let finish = if self.tokenizer.eos.contains(&tok) {
            Some(Finish::Eos)
        } else {
            a.seq.push(tok);
            let gen = &a.seq[a.prompt_len..];
            if a.req.stop == Stop::StepEnd && self.tokenizer.decode(gen)?.contains(STEP_SEPARATOR) {
                Some(Finish::StepEnd)
            } else if generated + 1 >= a.req.max_new_tokens {
                Some(Finish::Length)
            } else if a.seq.len() >= self.capacity {
                Some(Finish::Context)
            } else {
                None
            }
        };
        let Some(finish) = finish else { return Ok(None) };
        // Keys/values exist for every position but the last token.
        let computed = if finish == Finish::Eos { a.seq.len() } else { a.seq.len() - 1 };
        if computed > 0 && !self.prefix.covers(&a.seq[..computed]) {
            let kv = cache
                .iter()
                .map(|lc| (B::cache_read(&lc.k, slot, 0, computed), B::cache_read(&lc.v, slot, 0, computed)))
                .collect();
            self.prefix.insert(a.seq[..computed].to_vec(), kv);
        }
        let tokens = a.seq[a.prompt_len..].to_vec();
        let text = self.tokenizer.decode(&tokens)?;
        self.stats.requests += 1;
        self.stats.generated_tokens += tokens.len() as u64 + u64::from(finish == Finish::Eos);
        Ok(Some(Completion { tokens, text, finish }))
    }

    /// Per-token log-probabilities of `tokens[1..]` given the tokens before each (one full
    /// causal forward).
    pub fn score(&self, tokens: &[u32]) -> Result<Vec<f64>> {
        if tokens.len() < 2 || tokens.len() > self.capacity {
            return Err(Error::Other(format!(
                "score needs 2..={} tokens, got {}",
                self.capacity,
                tokens.len()
            )));
        }
        let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        let t = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, tokens.len()]), &self.device);
        let logits = self.model.forward(t, &self.rope);
        let v = self.model.config.vocab_size;
        let host: Vec<f32> = logits
            .cast(burn::tensor::DType::F32)
            .into_data()
            .to_vec()
            .map_err(|e| Error::Other(format!("{e:?}")))?;
        Ok((1..tokens.len())
            .map(|i| super::sampling::log_prob(&host[(i - 1) * v..i * v], tokens[i]))
            .collect())
    }
}
