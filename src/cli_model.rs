//! `runner generate`, `runner score` and `runner bench generate`: the model core from the
//! command line, printing JSON.

use std::path::PathBuf;
use std::time::Instant;

use burn::backend::Flex;
use burn::tensor::DType;
use clap::Args;
use serde_json::json;

use crate::error::{Error, Result};
use crate::infer::{Engine, Request, Stop};
use crate::model::load::{load_model, template_for, ModelSpec};
use crate::rng::Stream;
use crate::task::prompt::chat_turn;

/// Model selection shared by the model commands.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// `preset:tiny[:SEED]`, a `.gguf` file, or a folder with config.json + safetensors +
    /// tokenizer.json (Hugging Face or a project checkpoint).
    #[arg(long)]
    pub model: String,
    /// Positions per sequence (prompt + generated).
    #[arg(long, default_value_t = 1024)]
    pub context: usize,
}

/// `runner generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt text.
    #[arg(long)]
    pub prompt: String,
    /// Wrap the prompt as a user turn in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Most new tokens.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus mass.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Seed of the sampling stream.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `runner score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text to score.
    #[arg(long)]
    pub text: String,
    /// Also write the token ids and full logits (`[tokens][vocab]`) as JSON to this file.
    #[arg(long)]
    pub logits_out: Option<PathBuf>,
}

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

fn positive(arg: &str, v: usize) -> Result<()> {
    if v == 0 {
        return Err(Error::Argument {
            arg: arg.into(),
            found: "0".into(),
            expected: "a positive integer".into(),
        });
    }
    Ok(())
}

fn engine(m: &ModelArgs, batch: usize, prefix_budget: usize) -> Result<Engine<Flex>> {
    positive("--context", m.context)?;
    let spec = ModelSpec::parse(&m.model)?;
    let (model, tok) = load_model::<Flex>(&spec, m.context, &Default::default(), DType::F32)?;
    Ok(Engine::new(model, tok, batch, m.context, prefix_budget, &Default::default()))
}

/// Runs `runner generate`.
pub fn generate(a: &GenerateArgs) -> Result<()> {
    positive("--max-tokens", a.max_tokens)?;
    let mut e = engine(&a.model, 1, 0)?;
    let text = if a.chat { chat_turn(template_for(&e.tokenizer), &a.prompt) } else { a.prompt.clone() };
    let prompt = e.tokenizer.encode(&text)?;
    let req = Request {
        prompt: prompt.clone(),
        max_new_tokens: a.max_tokens,
        temperature: a.temperature,
        top_p: a.top_p,
        stop: Stop::Eos,
        rng: Stream::new(a.seed, "generate", &[]),
    };
    let c = e.generate(vec![req], || {})?.remove(0);
    let tokens: Vec<_> =
        c.tokens.iter().map(|&t| json!({"id": t, "text": e.tokenizer.token_str(t)})).collect();
    let out = json!({"prompt": text, "prompt_tokens": prompt.len(), "completion": c.text, "finish": c.finish, "tokens": tokens});
    println!("{}", serde_json::to_string_pretty(&out).expect("json"));
    Ok(())
}

/// Runs `runner score`.
pub fn score(a: &ScoreArgs) -> Result<()> {
    let e = engine(&a.model, 1, 0)?;
    let mut ids = e.tokenizer.encode(&a.text)?;
    if let Some(b) = e.tokenizer.bos {
        if ids.first() != Some(&b) {
            ids.insert(0, b);
        }
    }
    let lp = e.score(&ids)?;
    if let Some(path) = &a.logits_out {
        let logits = e.logits(&ids)?;
        let v = e.model().config.vocab_size;
        let rows: Vec<&[f32]> = logits.chunks(v).collect();
        let text = serde_json::to_string(&json!({"input_ids": ids, "logits": rows})).expect("json");
        crate::util::write_atomic(path, text.as_bytes())?;
    }
    let tokens: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, &t)| json!({"id": t, "text": e.tokenizer.token_str(t), "logprob": if i == 0 { None } else { Some(lp[i - 1]) }}))
        .collect();
    let total: f64 = lp.iter().sum();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({"tokens": tokens, "total_logprob": total})).expect("json")
    );
    Ok(())
}

/// Peak resident memory of this process in bytes (Linux), if readable.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs `runner bench generate`.
pub fn bench_generate(a: &BenchGenerateArgs) -> Result<()> {
    positive("--batch", a.batch)?;
    positive("--prompt-tokens", a.prompt_tokens)?;
    positive("--new-tokens", a.new_tokens)?;
    let ctx = a.prompt_tokens + a.new_tokens + 1;
    let m = ModelArgs { model: a.model.model.clone(), context: a.model.context.max(ctx) };
    let t_load = Instant::now();
    let mut e = engine(&m, a.batch, 0)?;
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
    // Warm-up pass (allocations, thread pool), then the measured pass.
    e.generate(
        reqs.iter()
            .take(a.batch.min(2))
            .cloned()
            .map(|mut r| {
                r.max_new_tokens = 2;
                r
            })
            .collect(),
        || {},
    )?;
    e.stats = Default::default();
    let t0 = Instant::now();
    e.generate(reqs, || {})?;
    let wall = t0.elapsed().as_secs_f64();
    let st = e.stats;
    let out = json!({
        "model": a.model.model,
        "params": e.model().config.num_params(),
        "batch": a.batch,
        "prompt_tokens": a.prompt_tokens,
        "new_tokens": a.new_tokens,
        "threads": rayon::current_num_threads(),
        "load_seconds": load_s,
        "prefill_tokens_per_s": st.prefill_tokens as f64 / st.prefill_seconds,
        "decode_tokens_per_s": st.generated_tokens as f64 / st.decode_seconds,
        "generated_tokens_per_s_wall": st.generated_tokens as f64 / wall,
        "wall_seconds": wall,
        "peak_rss_mib": peak_rss_bytes().map(|b| b as f64 / (1 << 20) as f64),
    });
    let text = serde_json::to_string_pretty(&out).expect("json");
    println!("{text}");
    if let Some(p) = &a.out {
        crate::util::write_atomic(p, text.as_bytes())?;
    }
    Ok(())
}
