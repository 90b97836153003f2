//! The batched sampling engine.
//!
//! Requests wait in a queue; up to `batch` of them occupy cache slots at once. A request that
//! takes a slot copies the longest cached prefix of its prompt ([`PrefixCache`]) and computes
//! the rest of the prompt; then every occupied slot advances one token per decode step; a
//! finished request leaves and the next waiting one takes its slot (continuous batching).
//! Slots are grouped into lanes ([`InferBackend::decode_lanes`]: two on a multi-core CPU, one
//! on a GPU), each with its own cache tensors; lanes run their prefill and decode passes in
//! parallel, and every row samples from its logits in parallel.
//!
//! Determinism: a request's tokens depend only on its prompt, its own random stream and the
//! model. Every per-row computation has the same floating-point result whichever rows share
//! the batch and whether a prefix was copied or computed: the attention kernel is row-exact
//! (see `model::backend`), and matrix products are called with at least two rows because the
//! one-row case takes a different summation path in the CPU GEMM.

use std::collections::VecDeque;
use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData};
use rayon::prelude::*;

use super::prefix::PrefixCache;
use super::sampling::sample;
use crate::error::{Error, Result};
use crate::model::backend::{InferBackend, Kv};
use crate::model::kernels::team;
use crate::model::llama::{LayerCache, Llama};
use crate::model::rope::Rope;
use crate::model::tokenizer::Tokenizer;
use crate::rng::Stream;
use crate::task::STEP_SEPARATOR;

/// When a request stops (besides its token budget and end-of-sequence tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Never before `max_new_tokens` (benchmarks).
    Never,
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

/// Tokens sampled by every engine of this process so far (decode steps as they happen; the
/// progress lines read it for tokens/s). Never part of a result.
pub static SAMPLED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

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

/// Length of the common prefix of two token sequences.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Per lane, per layer: slot caches.
type Lanes<B> = Vec<Vec<LayerCache<B>>>;

/// Logits of placed requests, by their index in the wave.
type RowLogits = Vec<(usize, Vec<f32>)>;

/// One decode step of one lane: `rows` are the lane's slots, with each one's last token and
/// its position. Returns the rows' logits on the host (`[rows * vocab]`) and the lane's cache.
fn decode_lane<B: InferBackend>(
    model: &Llama<B>,
    rope: &Rope<B>,
    device: &B::Device,
    cache: Vec<LayerCache<B>>,
    mut rows: Vec<usize>,
    mut tokens: Vec<i64>,
    mut starts: Vec<usize>,
) -> Result<(Vec<f32>, Vec<LayerCache<B>>)> {
    let n = rows.len();
    if n == 0 {
        return Ok((Vec::new(), cache));
    }
    if n == 1 {
        // see module docs: never a one-row product
        rows.push(rows[0]);
        tokens.push(tokens[0]);
        starts.push(starts[0]);
    }
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(tokens, [rows.len(), 1]), device);
    let (hidden, cache) = model.forward_cached(tokens, &rows, &starts, rope, cache);
    let mut logits = host_logits(model, hidden)?;
    logits.truncate(n * model.config.vocab_size);
    Ok((logits, cache))
}

/// `[rows, 1, d]` hidden states -> host logits `[rows * vocab]`.
fn host_logits<B: InferBackend>(model: &Llama<B>, hidden: Tensor<B, 3>) -> Result<Vec<f32>> {
    to_host(model.head_with(hidden, crate::model::llama::Kernels::infer()))
}

/// Logits (any float type) as host f32 values, row-major.
fn to_host<B: InferBackend>(logits: Tensor<B, 3>) -> Result<Vec<f32>> {
    logits
        .cast(burn::tensor::DType::F32)
        .into_data()
        .to_vec::<f32>()
        .map_err(|e| Error::Other(format!("cannot read logits: {e:?}")))
}

/// The prompts of group `g` of `placed` (one lane's slots, similar remaining lengths) in one
/// padded forward pass from their reused lengths; returns the lane's cache and the logits after
/// each row's last prompt token (`[g.len() * vocab]`).
#[allow(clippy::too_many_arguments)]
fn prefill_group<B: InferBackend>(
    model: &Llama<B>,
    rope: &Rope<B>,
    device: &B::Device,
    cache: Vec<LayerCache<B>>,
    g: &[usize],
    placed: &[(usize, usize, Request)],
    reused: &[usize],
    per_lane: usize,
) -> Result<(Vec<LayerCache<B>>, Vec<f32>)> {
    let width = g.iter().map(|&k| placed[k].2.prompt.len() - reused[k]).max().expect("non-empty group");
    let mut rows: Vec<usize> = Vec::new();
    let mut starts = Vec::new();
    let mut toks: Vec<i64> = Vec::new();
    for &k in g {
        let (_, slot, req) = &placed[k];
        let rest = &req.prompt[reused[k]..];
        rows.push(slot % per_lane);
        starts.push(reused[k]);
        toks.extend(rest.iter().map(|&t| t as i64));
        toks.extend(std::iter::repeat_n(rest[rest.len() - 1] as i64, width - rest.len()));
    }
    if rows.len() * width == 1 {
        // see module docs: never a one-row product
        rows.push(rows[0]);
        starts.push(starts[0]);
        toks.push(toks[0]);
    }
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(toks, [rows.len(), width]), device);
    let (hidden, cache) = model.forward_cached(tokens, &rows, &starts, rope, cache);
    let d = model.config.hidden_size;
    let flat = hidden.reshape([rows.len() * width, d]);
    let pick: Vec<i64> = g
        .iter()
        .enumerate()
        .map(|(i, &k)| (i * width + placed[k].2.prompt.len() - reused[k] - 1) as i64)
        .collect();
    let n = pick.len();
    let pick = Tensor::<B, 1, Int>::from_data(TensorData::new(pick, [n]), device);
    let last = flat.select(0, pick).reshape([n, 1, d]);
    Ok((cache, host_logits(model, last)?))
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
    /// Slots per lane: slot `s` lives in lane `s / per_lane` (see [`InferBackend::decode_lanes`]).
    per_lane: usize,
    /// Per lane, per layer: the slot caches.
    cache: Option<Lanes<B>>,
    prefix: PrefixCache<B>,
    /// Per token id: does its text contain a newline?
    has_newline: Vec<bool>,
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
        let model = if B::untie_head() { model.untie_head() } else { model };
        let rope = Rope::new(&model.config, capacity, device);
        let vocab = model.config.vocab_size.max(tokenizer.vocab_size());
        let has_newline = (0..vocab as u32)
            .map(|t| tokenizer.decode(&[t]).map(|s| s.contains('\n')).unwrap_or(true))
            .collect();
        let batch = batch.max(1);
        // What a decode step streams: the matrices' bytes per parameter (1 for 8-bit).
        let per_param = match model.layers.first().map(|l| l.q.weight.val().dtype()) {
            Some(burn::tensor::DType::QFloat(_)) => 1,
            Some(d) => d.size(),
            None => model.embed.val().dtype().size(),
        };
        let model_bytes = model.config.num_params() * per_param;
        Self {
            has_newline,
            model,
            rope,
            tokenizer,
            device: device.clone(),
            batch,
            capacity,
            per_lane: batch.div_ceil(B::decode_lanes(batch, model_bytes)),
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
            None => (0..self.batch.div_ceil(self.per_lane))
                .map(|_| self.model.new_cache(self.per_lane, self.capacity, &self.device))
                .collect(),
        };
        loop {
            cache = self.admit_waiting(&mut waiting, &mut slots, &mut out, cache, &mut on_done)?;
            let live: Vec<usize> = (0..self.batch).filter(|&s| slots[s].is_some()).collect();
            if live.is_empty() {
                if waiting.is_empty() {
                    break;
                }
                continue;
            }
            let t0 = Instant::now();
            // One step per lane (lanes in parallel); `live` is ascending, so the lanes' logits
            // in lane order are the live rows' logits in order.
            let mut work = Vec::with_capacity(cache.len());
            for (lane, lc) in cache.into_iter().enumerate() {
                let mut rows = Vec::new();
                let mut tokens = Vec::new();
                let mut starts = Vec::new();
                for &s in live.iter().filter(|&&s| s / self.per_lane == lane) {
                    let a = slots[s].as_ref().expect("live");
                    rows.push(s % self.per_lane);
                    tokens.push(*a.seq.last().expect("non-empty") as i64);
                    starts.push(a.seq.len() - 1);
                }
                work.push((lc, rows, tokens, starts));
            }
            let (model, rope, device) = (&self.model, &self.rope, &self.device);
            // A single lane has the machine to itself: its few-row products may use the
            // kernels' spinning helper team (two lanes keep rayon's work stealing).
            let single = work.len() == 1;
            let stepped: Vec<Result<_>> = work
                .into_par_iter()
                .map(|(lc, rows, tokens, starts)| {
                    let step = || decode_lane(model, rope, device, lc, rows, tokens, starts);
                    if single {
                        team::exclusive(step)
                    } else {
                        step()
                    }
                })
                .collect();
            cache = Vec::with_capacity(stepped.len());
            let mut logits = Vec::new();
            for r in stepped {
                let (l, c) = r?;
                logits.extend(l);
                cache.push(c);
            }
            let vocab = self.model.config.vocab_size;
            // Rows sample in parallel (each from its own stream: the same tokens as one by
            // one); with a 128k vocabulary a row's softmax costs about a millisecond.
            let actives: Vec<&mut Active> = slots.iter_mut().filter_map(|s| s.as_mut()).collect();
            let toks: Vec<u32> = actives
                .into_par_iter()
                .zip(logits.par_chunks(vocab))
                .map(|(a, l)| sample(l, a.req.temperature, a.req.top_p, &mut a.req.rng))
                .collect();
            // A decode step's time includes sampling.
            self.stats.decode_steps += 1;
            SAMPLED.fetch_add(toks.len() as u64, std::sync::atomic::Ordering::Relaxed);
            self.stats.decode_seconds += t0.elapsed().as_secs_f64();
            for (&slot, tok) in live.iter().zip(toks) {
                let mut a = slots[slot].take().expect("live");
                match self.push_token(&mut a, tok, &cache, slot)? {
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

    /// Moves waiting requests into free slots, in waves: a request that shares a longer
    /// prefix with another request of the current wave than with the prefix cache waits for
    /// the next wave, so that prefix is computed once and copied.
    fn admit_waiting(
        &mut self,
        waiting: &mut VecDeque<(usize, Request)>,
        slots: &mut [Option<Active>],
        out: &mut [Option<Completion>],
        mut cache: Lanes<B>,
        on_done: &mut impl FnMut(),
    ) -> Result<Lanes<B>> {
        loop {
            let free: Vec<usize> = (0..slots.len()).filter(|&s| slots[s].is_none()).collect();
            if free.is_empty() || waiting.is_empty() {
                return Ok(cache);
            }
            let mut wave: Vec<(usize, Request)> = Vec::new();
            let mut deferred = Vec::new();
            let scan = (free.len() * 4).max(16);
            let mut scanned = 0;
            while wave.len() < free.len() && scanned < scan {
                let Some((index, req)) = waiting.pop_front() else { break };
                scanned += 1;
                let head = &req.prompt[..req.prompt.len() - 1];
                let cached = self.prefix.peek(head);
                let sibling = wave.iter().map(|(_, w)| common_prefix(&w.prompt, head)).max().unwrap_or(0);
                if sibling > cached {
                    deferred.push((index, req));
                } else {
                    wave.push((index, req));
                }
            }
            for d in deferred.into_iter().rev() {
                waiting.push_front(d);
            }
            let placed: Vec<(usize, usize, Request)> =
                wave.into_iter().zip(free).map(|((index, req), slot)| (index, slot, req)).collect();
            let (logits, c) = self.admit_wave(&placed, cache)?;
            cache = c;
            let vocab = self.model.config.vocab_size;
            for (k, (index, slot, req)) in placed.into_iter().enumerate() {
                let mut a = Active { index, seq: req.prompt.clone(), prompt_len: req.prompt.len(), req };
                let l = &logits[k * vocab..(k + 1) * vocab];
                let tok = sample(l, a.req.temperature, a.req.top_p, &mut a.req.rng);
                match self.push_token(&mut a, tok, &cache, slot)? {
                    Some(done) => {
                        out[index] = Some(done);
                        on_done();
                    }
                    None => slots[slot] = Some(a),
                }
            }
        }
    }

    /// Computes the prompts of `placed` (request index, slot, request) after copying their
    /// cached prefixes; returns the logits after each last prompt token (`[n * vocab]`) and
    /// stores the prompts' keys/values for reuse. Rows of similar remaining length share one
    /// padded forward; padding never changes a row's numbers (see module docs) and its
    /// keys/values are overwritten before any query can see them.
    fn admit_wave(
        &mut self,
        placed: &[(usize, usize, Request)],
        mut cache: Lanes<B>,
    ) -> Result<(Vec<f32>, Lanes<B>)> {
        let t0 = Instant::now();
        let per_lane = self.per_lane;
        let mut reused = Vec::with_capacity(placed.len());
        for (_, slot, req) in placed {
            let p = &req.prompt;
            // At least the last prompt token is computed: its logits start the generation.
            let mut len = 0;
            if let Some((entry, n)) = self.prefix.lookup(&p[..p.len() - 1]) {
                let kv = self.prefix.get(entry, n);
                let (lane, local) = (slot / per_lane, slot % per_lane);
                cache[lane] = std::mem::take(&mut cache[lane])
                    .into_iter()
                    .zip(kv)
                    .map(|(lc, (k, v))| LayerCache {
                        k: B::cache_write(Kv::Key, lc.k, &[local], &[0], k),
                        v: B::cache_write(Kv::Value, lc.v, &[local], &[0], v),
                    })
                    .collect();
                len = n;
            }
            reused.push(len);
            self.stats.prompt_tokens += p.len() as u64;
            self.stats.prefill_tokens += (p.len() - len) as u64;
        }
        // Group rows by remaining length so padding stays under a quarter of the work.
        let mut order: Vec<usize> = (0..placed.len()).collect();
        order.sort_by_key(|&k| placed[k].2.prompt.len() - reused[k]);
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for k in order {
            let len = placed[k].2.prompt.len() - reused[k];
            // Padding to `len` must stay cheap and inside every row's context.
            let fits = groups.last().is_some_and(|g| {
                let total: usize =
                    g.iter().map(|&j| placed[j].2.prompt.len() - reused[j]).sum::<usize>() + len;
                (g.len() + 1) * len * 4 <= total * 5 && g.iter().all(|&j| reused[j] + len <= self.capacity)
            });
            if fits {
                groups.last_mut().expect("checked").push(k);
            } else {
                groups.push(vec![k]);
            }
        }
        // A forward pass runs on one lane's cache: each group splits by lane, and the lanes
        // compute their groups in parallel.
        let lanes: Vec<(_, Vec<Vec<usize>>)> = std::mem::take(&mut cache)
            .into_iter()
            .enumerate()
            .map(|(lane, lc)| {
                let mine = groups
                    .iter()
                    .map(|g| {
                        g.iter().copied().filter(|&k| placed[k].1 / per_lane == lane).collect::<Vec<_>>()
                    })
                    .filter(|sub| !sub.is_empty())
                    .collect();
                (lc, mine)
            })
            .collect();
        let (model, rope, device) = (&self.model, &self.rope, &self.device);
        let vocab = model.config.vocab_size;
        let done: Vec<Result<(_, RowLogits)>> = lanes
            .into_par_iter()
            .map(|(mut lc, groups)| {
                let mut rows_logits = Vec::new();
                for g in groups {
                    let (c, lg) = prefill_group(model, rope, device, lc, &g, placed, &reused, per_lane)?;
                    lc = c;
                    for (i, &k) in g.iter().enumerate() {
                        rows_logits.push((k, lg[i * vocab..(i + 1) * vocab].to_vec()));
                    }
                }
                Ok((lc, rows_logits))
            })
            .collect();
        let mut logits = vec![0f32; placed.len() * vocab];
        for r in done {
            let (lc, rows_logits) = r?;
            cache.push(lc);
            for (k, l) in rows_logits {
                logits[k * vocab..(k + 1) * vocab].copy_from_slice(&l);
            }
        }
        for (_, slot, req) in placed {
            if !self.prefix.covers(&req.prompt) {
                let n = req.prompt.len();
                let (lane, local) = (slot / per_lane, slot % per_lane);
                let kv = cache[lane]
                    .iter()
                    .map(|lc| {
                        (
                            B::cache_read(Kv::Key, &lc.k, local, 0, n),
                            B::cache_read(Kv::Value, &lc.v, local, 0, n),
                        )
                    })
                    .collect();
                self.prefix.insert(req.prompt.clone(), kv);
            }
        }
        self.stats.prefill_seconds += t0.elapsed().as_secs_f64();
        Ok((logits, cache))
    }

    /// Appends the sampled token `tok` to `a`; returns the completion if it finished.
    fn push_token(
        &mut self,
        a: &mut Active,
        tok: u32,
        cache: &Lanes<B>,
        slot: usize,
    ) -> Result<Option<Completion>> {
        let generated = a.seq.len() - a.prompt_len;
        let finish = if a.req.stop != Stop::Never && self.tokenizer.eos.contains(&tok) {
            Some(Finish::Eos)
        } else {
            a.seq.push(tok);
            let gen = &a.seq[a.prompt_len..];
            // Decoding is only needed when the new token can complete a blank line.
            if a.req.stop == Stop::StepEnd
                && self.has_newline[tok as usize]
                && self.tokenizer.decode(gen)?.contains(STEP_SEPARATOR)
            {
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
            let (lane, local) = (slot / self.per_lane, slot % self.per_lane);
            let kv = cache[lane]
                .iter()
                .map(|lc| {
                    (
                        B::cache_read(Kv::Key, &lc.k, local, 0, computed),
                        B::cache_read(Kv::Value, &lc.v, local, 0, computed),
                    )
                })
                .collect();
            self.prefix.insert(a.seq[..computed].to_vec(), kv);
        }
        let tokens = a.seq[a.prompt_len..].to_vec();
        let text = self.tokenizer.decode(&tokens)?;
        self.stats.requests += 1;
        self.stats.generated_tokens += tokens.len() as u64 + u64::from(finish == Finish::Eos);
        Ok(Some(Completion { tokens, text, finish }))
    }

    /// Logits `[tokens.len() * vocab]` of one full causal forward over `tokens`.
    pub fn logits(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.is_empty() || tokens.len() > self.capacity {
            return Err(Error::Other(format!(
                "logits need 1..={} tokens, got {}",
                self.capacity,
                tokens.len()
            )));
        }
        let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        let t = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, tokens.len()]), &self.device);
        to_host(self.model.forward_with(t, &self.rope, crate::model::llama::Kernels::scoring()))
    }

    /// Per-token log-probabilities of `tokens[1..]` given the tokens before each (one full
    /// causal forward).
    pub fn score(&self, tokens: &[u32]) -> Result<Vec<f64>> {
        Ok(self.score_with_logits(tokens)?.0)
    }

    /// [`Engine::score`] and the logits it came from (`[tokens.len() * vocab]`).
    pub fn score_with_logits(&self, tokens: &[u32]) -> Result<(Vec<f64>, Vec<f32>)> {
        if tokens.len() < 2 || tokens.len() > self.capacity {
            return Err(Error::Other(format!(
                "score needs 2..={} tokens, got {}",
                self.capacity,
                tokens.len()
            )));
        }
        let host = self.logits(tokens)?;
        let v = self.model.config.vocab_size;
        let lp = (1..tokens.len())
            .map(|i| super::sampling::log_prob(&host[(i - 1) * v..i * v], tokens[i]))
            .collect();
        Ok((lp, host))
    }
}
