//! `runner bench generate` and `runner bench train`: throughput of the inference engine and of
//! one training step, at any model shape, on the CPU or (feature `cuda`) the GPU. Results are
//! JSON on stdout (and `--out`); scripts/gpu-check.sh compares them with transformers.

use std::path::PathBuf;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::DType;
use clap::Args;
use serde_json::json;

use crate::cli::model::{engine, on_backend, positive, ModelArgs};
use crate::error::Result;
use crate::infer::{Request, Stop};
use crate::model::backend::InferBackend;
use crate::model::load::{load_model, ModelSpec};
use crate::rng::Stream;
use crate::train::data::Example;
use crate::train::trainer::{train, Objective, Output, Settings};

/// `runner bench generate`.
#[derive(Debug, Args)]
pub struct BenchGenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Sequences decoded together.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Prompt length in tokens (random ids).
    #[arg(long, default_value_t = 64)]
    pub prompt_tokens: usize,
    /// New tokens per sequence (end-of-sequence ignored).
    #[arg(long, default_value_t = 128)]
    pub new_tokens: usize,
    /// Seed for prompts and sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the JSON result to this file too.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `runner bench train`.
#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Sequences per step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Tokens per sequence (random ids; loss on the second half).
    #[arg(long, default_value_t = 512)]
    pub seq_len: usize,
    /// LoRA rank (0 = full fine-tuning).
    #[arg(long, default_value_t = 16)]
    pub lora_rank: usize,
    /// Projections with adapters (comma-separated; any of q k v o gate up down).
    #[arg(long, default_value = "q,k,v,o,gate,up,down", value_delimiter = ',')]
    pub lora_targets: Vec<String>,
    /// Measured steps (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Loss: `nll` (mean token NLL) or `kl` (eq. 2: weighted NLL plus `--beta` times
    /// the exact KL to a frozen copy of the loaded model, whose forward runs every step).
    #[arg(long, default_value = "nll", value_parser = ["nll", "kl"])]
    pub objective: String,
    /// KL weight of `--objective kl`.
    #[arg(long, default_value_t = 0.05)]
    pub beta: f64,
    /// Seed for the data and the adapters.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the JSON result to this file too.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Peak resident memory of this process in bytes (Linux), if readable.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn emit(out: serde_json::Value, path: &Option<PathBuf>) -> Result<()> {
    let text = serde_json::to_string_pretty(&out).expect("json");
    println!("{text}");
    if let Some(p) = path {
        crate::util::write_atomic(p, text.as_bytes())?;
    }
    Ok(())
}

/// Runs `runner bench generate`.
pub fn bench_generate(a: &BenchGenerateArgs) -> Result<()> {
    positive("--batch", a.batch)?;
    positive("--prompt-tokens", a.prompt_tokens)?;
    positive("--new-tokens", a.new_tokens)?;
    on_backend!(&a.model, bench_generate_on(a))
}

fn bench_generate_on<B: InferBackend>(a: &BenchGenerateArgs, device: &B::Device, dtype: DType) -> Result<()> {
    let ctx = a.prompt_tokens + a.new_tokens + 1;
    let m = ModelArgs { context: a.model.context.max(ctx), ..a.model.clone() };
    let t_load = Instant::now();
    let mut e = engine::<B>(&m, a.batch, 0, device, dtype)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let vocab = e.model().config.vocab_size as u64;
    let mut s = Stream::new(a.seed, "bench-prompt", &[]);
    let reqs: Vec<Request> = (0..a.batch)
        .map(|i| Request {
            prompt: (0..a.prompt_tokens).map(|_| s.below(vocab) as u32).collect(),
            max_new_tokens: a.new_tokens,
            temperature: 1.0,
            top_p: 1.0,
            stop: Stop::Never,
            rng: Stream::new(a.seed, "bench-sample", &[i as u64]),
        })
        .collect();
    let short = |n: usize, k: usize| -> Vec<Request> {
        reqs.iter()
            .take(n)
            .cloned()
            .map(|mut r| {
                r.max_new_tokens = k;
                r
            })
            .collect()
    };
    // Time to the first token: one request, one token, from process start (includes loading
    // and, on the GPU, kernel compilation and autotuning of the prefill shapes).
    e.generate(short(1, 1), || {})?;
    let first_token_s = crate::util::since_start();
    // Warm-up at the measured batch (allocations, thread pool, GPU kernels of these shapes).
    e.generate(short(a.batch, 2), || {})?;
    e.stats = Default::default();
    let t0 = Instant::now();
    e.generate(reqs, || {})?;
    let wall = t0.elapsed().as_secs_f64();
    let st = e.stats;
    let cfg = &e.model().config;
    emit(
        json!({
            "model": a.model.model,
            "config": crate::model::config::HfConfig::from_config(cfg, None, &[]),
            "backend": a.model.backend,
            "dtype": a.model.dtype,
            "params": cfg.num_params(),
            "weight_bytes": cfg.num_params() * dtype.size(),
            "batch": a.batch,
            "prompt_tokens": a.prompt_tokens,
            "new_tokens": a.new_tokens,
            "threads": rayon::current_num_threads(),
            "load_seconds": load_s,
            "first_token_seconds_since_start": first_token_s,
            "prefill_tokens_per_s": st.prefill_tokens as f64 / st.prefill_seconds,
            "decode_tokens_per_s": st.generated_tokens as f64 / st.decode_seconds,
            "decode_step_ms": 1e3 * st.decode_seconds / st.decode_steps.max(1) as f64,
            "generated_tokens_per_s_wall": st.generated_tokens as f64 / wall,
            "wall_seconds": wall,
            "peak_rss_mib": peak_rss_bytes().map(|b| b as f64 / (1 << 20) as f64),
        }),
        &a.out,
    )
}

/// Runs `runner bench train`.
pub fn bench_train(a: &BenchTrainArgs) -> Result<()> {
    positive("--batch", a.batch)?;
    positive("--steps", a.steps)?;
    if a.seq_len < 2 {
        return Err(crate::error::Error::Argument {
            arg: "--seq-len".into(),
            found: a.seq_len.to_string(),
            expected: "at least 2".into(),
        });
    }
    for t in &a.lora_targets {
        if !crate::train::lora::TARGETS.contains(&t.as_str()) {
            return Err(crate::error::Error::Argument {
                arg: "--lora-targets".into(),
                found: format!("{t:?}"),
                expected: format!("any of {}", crate::train::lora::TARGETS.join(", ")),
            });
        }
    }
    on_backend!(&a.model, bench_train_on(a))
}

fn bench_train_on<B: InferBackend>(a: &BenchTrainArgs, device: &B::Device, dtype: DType) -> Result<()> {
    let spec = ModelSpec::parse(&a.model.model)?;
    let t_load = Instant::now();
    let (model, _) = load_model::<Autodiff<B>>(&spec, a.model.context.max(a.seq_len), device, dtype)?;
    let model = if a.lora_rank > 0 {
        crate::train::lora::add_lora(model, a.lora_rank, 2.0 * a.lora_rank as f64, &a.lora_targets, a.seed)
    } else {
        model
    };
    let load_s = t_load.elapsed().as_secs_f64();
    let vocab = model.config.vocab_size as u64;
    let params = model.config.num_params();
    let mut s = Stream::new(a.seed, "bench-train", &[]);
    let examples: Vec<Example> = (0..a.batch * (a.steps + 1))
        .map(|_| Example {
            tokens: (0..a.seq_len).map(|_| s.below(vocab) as u32).collect(),
            loss_from: a.seq_len / 2,
            weight: 1.0,
        })
        .collect();
    let settings = |steps: usize| Settings {
        lr: 1e-4,
        epochs: 1,
        batch_size: a.batch,
        weight_decay: 0.0,
        warmup_steps: 0,
        grad_clip: 1.0,
        min_lr_frac: 1.0,
        seed: a.seed,
        purpose: "bench-train".into(),
        max_steps: Some(steps),
        stop_after: None,
    };
    let (warm, measured) = examples.split_at(a.batch);
    let config = crate::model::config::HfConfig::from_config(&model.config, None, &[]);
    // The eq. (2) reference: the loaded model itself, frozen (as iteration 1 of ours uses it).
    let reference = if a.objective == "kl" {
        Some(load_model::<B>(&spec, a.model.context.max(a.seq_len), device, dtype)?.0)
    } else {
        None
    };
    let objective = |examples| match &reference {
        Some(r) => Objective::WeightedKl { examples, reference: r, beta: a.beta },
        None => Objective::Nll(examples),
    };
    let (model, first) = train(model, &objective(warm), &settings(1), &Output::default(), None)?;
    let (_, rep) = train(model, &objective(measured), &settings(a.steps), &Output::default(), None)?;
    let step_s = rep.seconds / rep.steps.max(1) as f64;
    emit(
        json!({
            "model": a.model.model,
            "backend": a.model.backend,
            "dtype": a.model.dtype,
            "params": params,
            "config": config,
            "objective": a.objective,
            "lora_rank": a.lora_rank,
            "lora_targets": a.lora_targets,
            "threads": rayon::current_num_threads(),
            "batch": a.batch,
            "seq_len": a.seq_len,
            "load_seconds": load_s,
            "first_step_seconds": first.seconds,
            "steps": rep.steps,
            "step_seconds": step_s,
            "tokens_per_s": (a.batch * a.seq_len) as f64 / step_s,
            "final_loss": rep.final_loss,
            "peak_rss_mib": peak_rss_bytes().map(|b| b as f64 / (1 << 20) as f64),
        }),
        &a.out,
    )
}
