//! The optimisation loop shared by pretraining, RFT, step-level DPO and ours.
//!
//! Deterministic: the order of examples in epoch `e` is a shuffle drawn from the stream
//! `(seed, purpose, [e])`; batches are consecutive chunks of it. With a state folder the loop
//! saves resumable state every `save_every` steps and resumes from it, giving the same bytes
//! as an uninterrupted run. A non-finite loss stops training with an error before the update
//! is applied, leaving the last saved state untouched.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use indicatif::ProgressBar;
use rayon::prelude::*;

use super::data::{batch, Example, Pair};
use super::loss;
use super::optim::{grad_norm, lr_at, AdamW};
use super::state::{self, Meta};
use crate::error::{Error, Result};
use crate::model::fused::{self, Host};
use crate::model::rope::Rope;
use crate::model::Llama;
use crate::rng::Stream;

/// Optimisation settings of one training run.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Peak learning rate.
    pub lr: f64,
    /// Passes over the data.
    pub epochs: usize,
    /// Examples (or pairs) per step.
    pub batch_size: usize,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
    /// Global gradient-norm clip (0 = off).
    pub grad_clip: f64,
    /// Cosine decay floor as a fraction of `lr`.
    pub min_lr_frac: f64,
    /// Seed of the data order.
    pub seed: u64,
    /// Stream purpose of the data order (distinct per stage).
    pub purpose: String,
    /// Cap on the total number of steps (the schedule spans the capped total); `None` =
    /// `epochs` full passes.
    pub max_steps: Option<usize>,
    /// Stop after this many steps without changing the schedule (to test resuming);
    /// `None` = run to the end.
    pub stop_after: Option<usize>,
}

/// What is optimised.
pub enum Objective<'a, AB: AutodiffBackend> {
    /// Mean NLL over the loss tokens of each batch.
    Nll(&'a [Example]),
    /// eq. (2) against a frozen reference model.
    WeightedKl {
        /// Records as examples weighted by their eq. (1) score.
        examples: &'a [Example],
        /// The previous iteration's model.
        reference: &'a Llama<AB::InnerBackend>,
        /// KL weight.
        beta: f64,
    },
    /// DPO against a frozen reference model.
    Dpo {
        /// Preference pairs.
        pairs: &'a [Pair],
        /// The previous iteration's model.
        reference: &'a Llama<AB::InnerBackend>,
        /// DPO coefficient.
        beta: f64,
    },
}

/// Where the loop writes.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// `metrics.csv` (one row per step), if any.
    pub metrics: Option<PathBuf>,
    /// Folder for resumable state, if any.
    pub state_dir: Option<PathBuf>,
    /// Save state every this many steps (0 = only at the end).
    pub save_every: usize,
}

/// Summary of a finished run.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Report {
    /// Optimiser steps.
    pub steps: usize,
    /// Mean loss over the last epoch's steps.
    pub final_loss: f64,
    /// Loss-carrying tokens seen.
    pub tokens: u64,
    /// Wall seconds (this process).
    pub seconds: f64,
}

/// One metrics row.
#[derive(serde::Serialize)]
struct Row {
    step: usize,
    epoch: usize,
    loss: f64,
    lr: f64,
    grad_norm: f64,
    loss_tokens: usize,
}

fn order(n: usize, seed: u64, purpose: &str, epoch: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    Stream::new(seed, purpose, &[epoch as u64]).shuffle(&mut idx);
    idx
}

/// Trains `model` on `objective`; returns the trained model and a report.
pub fn train<AB: AutodiffBackend>(
    mut model: Llama<AB>,
    objective: &Objective<'_, AB>,
    s: &Settings,
    out: &Output,
    bar: Option<&ProgressBar>,
) -> Result<(Llama<AB>, Report)> {
    let device = model.embed.val().device();
    let n = match objective {
        Objective::Nll(e) | Objective::WeightedKl { examples: e, .. } => e.len(),
        Objective::Dpo { pairs, .. } => pairs.len(),
    };
    if n == 0 {
        return Ok((model, Report::default()));
    }
    let per_epoch = n.div_ceil(s.batch_size);
    let total = (per_epoch * s.epochs).min(s.max_steps.unwrap_or(usize::MAX));
    let ctx = max_len(objective) + 1;
    let rope = Rope::<AB>::new(&model.config, ctx, &device);
    let mut opt = AdamW::<AB::InnerBackend>::new(s.weight_decay);
    let mut start = 0usize;
    if let Some(dir) = &out.state_dir {
        if let Some((m, meta)) = state::load(dir, model.clone(), &mut opt)? {
            if meta.total_steps as usize != total {
                return Err(Error::Checkpoint {
                    path: dir.clone(),
                    message: format!(
                        "training state is for {} steps, this run has {total}",
                        meta.total_steps
                    ),
                });
            }
            model = m;
            start = meta.step as usize;
        }
    }
    // DPO: reference log-probabilities once per dataset.
    let dpo_ref: Option<Vec<(f32, f32)>> = match objective {
        Objective::Dpo { pairs, reference, .. } => {
            Some(reference_pair_logps(reference, pairs, s.batch_size, ctx)?)
        }
        _ => None,
    };
    let t0 = Instant::now();
    let mut writer = match &out.metrics {
        Some(p) => Some(open_metrics(p, start)?),
        None => None,
    };
    let mut report = Report { steps: start, ..Default::default() };
    let mut epoch_losses = Vec::new();
    let stop = s.stop_after.unwrap_or(total).min(total);
    if let Some(b) = bar {
        b.set_length(total as u64);
        b.set_position(start as u64);
    }
    for step in start..stop {
        let epoch = step / per_epoch;
        let idx = order(n, s.seed, &s.purpose, epoch);
        let chunk = &idx[(step % per_epoch) * s.batch_size..((step % per_epoch + 1) * s.batch_size).min(n)];
        let (grads, value, loss_tokens) = step_grads(&model, objective, chunk, dpo_ref.as_deref(), &rope)?;
        if !value.is_finite() {
            return Err(Error::Numerical(format!(
                "training loss is {value} at step {step} ({}); the update was not applied and the last saved state{} is kept",
                s.purpose,
                out.state_dir.as_ref().map(|d| format!(" in {}", d.display())).unwrap_or_default()
            )));
        }
        let norm = grad_norm::<AB, _>(&model, &grads);
        let scale = if s.grad_clip > 0.0 && norm > s.grad_clip { s.grad_clip / norm } else { 1.0 };
        let lr = lr_at(s.lr, step, total, s.warmup_steps, s.min_lr_frac);
        model = opt.step::<AB, _>(model, grads, lr, scale);
        report.steps = step + 1;
        report.tokens += loss_tokens as u64;
        if step % per_epoch == 0 {
            epoch_losses.clear();
        }
        epoch_losses.push(value);
        if let Some(w) = writer.as_mut() {
            w.serialize(Row { step: step + 1, epoch, loss: value, lr, grad_norm: norm, loss_tokens })
                .and_then(|_| w.flush().map_err(csv::Error::from))
                .map_err(|e| Error::Other(format!("metrics.csv: {e}")))?;
        }
        if let Some(b) = bar {
            b.set_position((step + 1) as u64);
            b.set_message(format!("loss {value:.4}"));
        }
        if let Some(dir) = &out.state_dir {
            if out.save_every > 0 && (step + 1) % out.save_every == 0 && step + 1 < stop {
                state::save::<AB, _>(
                    dir,
                    &model,
                    &opt,
                    &Meta { step: (step + 1) as u64, total_steps: total as u64 },
                )?;
            }
        }
    }
    if let Some(dir) = &out.state_dir {
        state::save::<AB, _>(dir, &model, &opt, &Meta { step: stop as u64, total_steps: total as u64 })?;
    }
    report.final_loss = if epoch_losses.is_empty() {
        f64::NAN
    } else {
        epoch_losses.iter().sum::<f64>() / epoch_losses.len() as f64
    };
    report.seconds = t0.elapsed().as_secs_f64();
    Ok((model, report))
}

fn max_len<AB: AutodiffBackend>(objective: &Objective<'_, AB>) -> usize {
    match objective {
        Objective::Nll(e) | Objective::WeightedKl { examples: e, .. } => {
            e.iter().map(|x| x.tokens.len()).max().unwrap_or(2)
        }
        Objective::Dpo { pairs, .. } => {
            pairs.iter().map(|p| p.prompt.len() + p.chosen.len().max(p.rejected.len())).max().unwrap_or(2)
        }
    }
}

fn open_metrics(path: &Path, start: usize) -> Result<csv::Writer<std::fs::File>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    // A resumed run keeps the rows of the steps it does not redo.
    let keep: Vec<String> = if start > 0 && path.is_file() {
        crate::error::read_to_string(path)?.lines().take(start + 1).map(str::to_string).collect()
    } else {
        vec![]
    };
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let has_header = !keep.is_empty();
    {
        use std::io::Write;
        for l in &keep {
            writeln!(f, "{l}").map_err(|e| Error::io(path, e))?;
        }
    }
    Ok(csv::WriterBuilder::new().has_headers(!has_header).from_writer(f))
}

/// Sequences of a step are split into this many contiguous parts, whose forward and backward
/// passes run on their own threads (data parallelism inside a step; burn-flex runs most
/// element-wise work on one thread). A fixed number, so results do not depend on the thread
/// count.
const PARTS: usize = 2;

/// The model with fresh autodiff leaves over the same parameter buffers (same ids, no copy):
/// a part's graph then shares no node with another part's, so their backward passes run
/// concurrently instead of under one graph lock.
fn replica<AB: AutodiffBackend>(model: &Llama<AB>) -> Llama<AB> {
    struct Fresh;
    impl<AB: AutodiffBackend> burn::module::ModuleMapper<AB> for Fresh {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<AB, D>>,
        ) -> burn::module::Param<Tensor<AB, D>> {
            param.map(|t| if t.is_require_grad() { t.detach().require_grad() } else { t })
        }
    }
    burn::module::Module::map(model.clone(), &mut Fresh)
}

/// `a + b` for every parameter of `model` (traversal order; `a`'s then `b`'s gradient).
fn add_grads<AB: AutodiffBackend>(model: &Llama<AB>, a: &mut GradientsParams, mut b: GradientsParams) {
    struct Add<'a> {
        a: &'a mut GradientsParams,
        b: &'a mut GradientsParams,
    }
    impl<AB: AutodiffBackend> burn::module::ModuleVisitor<AB> for Add<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<AB, D>>) {
            if let Some(gb) = self.b.remove::<AB::InnerBackend, D>(param.id) {
                let sum = match self.a.remove::<AB::InnerBackend, D>(param.id) {
                    Some(ga) => ga + gb,
                    None => gb,
                };
                self.a.register::<AB::InnerBackend, D>(param.id, sum);
            }
        }
    }
    burn::module::Module::visit(model, &mut Add { a, b: &mut b });
}

/// One part's forward: logits at its loss rows (on the graph) and their host copy, the
/// reference's (eq. 2), and the part's batch.
struct Part<AB: AutodiffBackend> {
    logits: Tensor<AB, 2>,
    host: Host,
    ref_host: Option<Host>,
    b: super::data::Batch<AB>,
}

/// The gradients of one step's loss, its value and its loss tokens.
fn step_grads<AB: AutodiffBackend>(
    model: &Llama<AB>,
    objective: &Objective<'_, AB>,
    chunk: &[usize],
    dpo_ref: Option<&[(f32, f32)]>,
    rope: &Rope<AB>,
) -> Result<(GradientsParams, f64, usize)> {
    let device = model.embed.val().device();
    let vocab = model.config.vocab_size;
    // Each part computes logits at its loss rows only; the loss and its gradient over all rows
    // come in closed form (`train::fused`) and enter autodiff through the surrogate
    // `sum(logits * grad)`. DPO pairs stay whole inside a part (chosen and rejected in turn).
    let size = chunk.len().div_ceil(PARTS).max(1);
    let parts: Vec<&[usize]> = chunk.chunks(size).collect();
    let part_examples = |part: &[usize]| -> Vec<Example> {
        match objective {
            Objective::Nll(e) | Objective::WeightedKl { examples: e, .. } => {
                part.iter().map(|&i| e[i].clone()).collect()
            }
            Objective::Dpo { pairs, .. } => part
                .iter()
                .flat_map(|&i| {
                    let (c, r) = pairs[i].examples();
                    [c, r]
                })
                .collect(),
        }
    };
    let models: Vec<Llama<AB>> =
        (0..parts.len()).map(|i| if i == 0 { model.clone() } else { replica(model) }).collect();
    let ref_rope = rope.inner();
    let forwards: Vec<Result<_>> = parts
        .par_iter()
        .zip(models.par_iter())
        .map(|(part, m)| {
            let owned = part_examples(part);
            let ex: Vec<&Example> = owned.iter().collect();
            let b = batch::<AB>(&ex, &device);
            let ref_host = match objective {
                Objective::WeightedKl { reference, .. } => Some(host_f32(reference.forward_rows(
                    b.inputs.clone().inner(),
                    b.loss_rows.clone().inner(),
                    &ref_rope,
                ))?),
                _ => None,
            };
            let logits = m.forward_rows(b.inputs.clone(), b.loss_rows.clone(), rope);
            let host = host_f32(logits.clone())?;
            Ok(Part { logits, host, ref_host, b })
        })
        .collect();
    let forwards = forwards.into_iter().collect::<Result<Vec<_>>>()?;
    let host: Vec<f32> = forwards.iter().flat_map(|p| p.host.iter().copied()).collect();
    let targets: Vec<u32> = forwards.iter().flat_map(|p| p.b.loss_targets.iter().copied()).collect();
    let tokens: usize = forwards.iter().map(|p| p.b.loss_tokens).sum();
    let loss = match objective {
        Objective::Nll(_) => super::fused::nll(&host, vocab, &targets),
        Objective::WeightedKl { beta, .. } => {
            let ref_host: Vec<f32> =
                forwards.iter().flat_map(|p| p.ref_host.iter().flat_map(|h| h.iter().copied())).collect();
            let weights: Vec<f32> = forwards.iter().flat_map(|p| p.b.loss_weights.iter().copied()).collect();
            super::fused::weighted_nll_kl(&host, &ref_host, vocab, &targets, &weights, *beta, chunk.len())
        }
        Objective::Dpo { beta, .. } => {
            let refs = dpo_ref.expect("reference log-probs computed for DPO");
            let refs: Vec<(f32, f32)> = chunk.iter().map(|&i| refs[i]).collect();
            // Sequence indices over the whole step: each part's, offset by the parts before.
            let mut seq = Vec::with_capacity(targets.len());
            let mut before = 0;
            for (p, part) in forwards.iter().zip(&parts) {
                seq.extend(p.b.loss_seq.iter().map(|&s| before + s));
                before += 2 * part.len();
            }
            super::fused::dpo(&host, vocab, &targets, &seq, &refs, *beta)
        }
    };
    // Each part's rows of the gradient, then the parts' backward passes in parallel.
    let mut offset = 0;
    let mut work = Vec::with_capacity(forwards.len());
    for (p, m) in forwards.into_iter().zip(&models) {
        let [n, v] = p.logits.dims();
        let g = loss.grad[offset * v..(offset + n) * v].to_vec();
        offset += n;
        work.push((p.logits, g, m));
    }
    let grads: Vec<GradientsParams> = work
        .into_par_iter()
        .map(|(logits, g, m)| GradientsParams::from_grads(fused::inject_grad(logits, g).backward(), m))
        .collect();
    let mut grads = grads.into_iter();
    let mut total = grads.next().expect("at least one part");
    for g in grads {
        add_grads(model, &mut total, g);
    }
    Ok((total, loss.value, tokens))
}

/// A tensor's values as host f32 (without a copy on flex).
fn host_f32<B: burn::tensor::backend::Backend>(t: Tensor<B, 2>) -> Result<Host> {
    fused::host(t).map_err(|e| Error::Other(format!("cannot read logits: {e}")))
}

/// `(log pi_ref(chosen), log pi_ref(rejected))` for every pair.
fn reference_pair_logps<B: burn::tensor::backend::Backend>(
    reference: &Llama<B>,
    pairs: &[Pair],
    batch_size: usize,
    ctx: usize,
) -> Result<Vec<(f32, f32)>> {
    let device = reference.embed.val().device();
    let rope = Rope::<B>::new(&reference.config, ctx, &device);
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(batch_size.max(1)) {
        let ex: Vec<Example> = chunk
            .iter()
            .flat_map(|p| {
                let (c, r) = p.examples();
                [c, r]
            })
            .collect();
        let exr: Vec<&Example> = ex.iter().collect();
        let b = batch::<B>(&exr, &device);
        let logits = reference.forward(b.inputs, &rope);
        let lp: Vec<f32> = loss::sequence_log_probs(logits, b.targets, b.mask)
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| Error::Other(format!("{e:?}")))?;
        out.extend(lp.chunks_exact(2).map(|c| (c[0], c[1])));
    }
    Ok(out)
}

/// The inference copy of a trained model.
pub fn inference_model<AB: AutodiffBackend>(model: &Llama<AB>) -> Llama<AB::InnerBackend> {
    model.valid()
}
