//! `runner generate` and `runner score`: the model core from the command line, printing JSON,
//! on the CPU or (feature `cuda`) the GPU.

use std::path::PathBuf;

use burn::tensor::DType;
use clap::Args;
use serde_json::json;

use crate::config::schema::{Backend as BackendKind, Dtype};
use crate::error::{Error, Result};
use crate::infer::{Engine, Request, Stop};
use crate::model::backend::InferBackend;
use crate::model::load::{load_model, template_for, ModelSpec};
use crate::rng::Stream;
use crate::task::prompt::chat_turn;

/// Model selection shared by the model commands.
#[derive(Clone, Debug, Args)]
pub struct ModelArgs {
    /// `preset:NAME[:SEED]` (random weights; NAME is tiny, small or llama-3.1-8b), a `.gguf`
    /// file, or a folder with config.json + safetensors + tokenizer.json (Hugging Face or a
    /// project checkpoint).
    #[arg(long)]
    pub model: String,
    /// Positions per sequence (prompt + generated).
    #[arg(long, default_value_t = 1024)]
    pub context: usize,
    /// Compute backend (cuda needs a build with `--features cuda`).
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    pub backend: BackendKind,
    /// Weight type: bf16 on cuda stores weights and activations in bf16; on cpu it stores the
    /// matrices in bf16 (norms, biases, activations and products in f32); q8 (cpu) stores the
    /// projections and the output head as 8-bit values with a scale per 32 rows of a column,
    /// and rounds the activations to 8 bits inside those products.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
}

/// Calls `$f::<B>(args.., &device, dtype)` for the backend and dtype that `$m: &ModelArgs`
/// names, after checking that the pair is available in this build.
macro_rules! on_backend {
    ($m:expr, $f:ident($($a:expr),*)) => {{
        let m: &$crate::cli::model::ModelArgs = $m;
        $crate::cli::model::check_backend(m)?;
        match m.backend {
            $crate::config::schema::Backend::Cpu => {
                $f::<burn::backend::Flex>($($a,)* &Default::default(), m.dtype.burn())
            }
            #[cfg(feature = "cuda")]
            $crate::config::schema::Backend::Cuda => {
                $f::<$crate::model::cuda::Cuda>($($a,)* &Default::default(), m.dtype.burn())
            }
            #[cfg(not(feature = "cuda"))]
            $crate::config::schema::Backend::Cuda => unreachable!("check_backend refuses cuda in this build"),
        }
    }};
}
pub(crate) use on_backend;

/// Refuses a backend/dtype pair this build or machine cannot run, before any work.
pub fn check_backend(m: &ModelArgs) -> Result<()> {
    match (m.backend, m.dtype) {
        (BackendKind::Cpu, _) => Ok(()),
        (BackendKind::Cuda, Dtype::Q8) => Err(Error::Argument {
            arg: "--dtype".into(),
            found: "q8 with --backend cuda".into(),
            expected: "f32 or bf16 (8-bit weights are a CPU format)".into(),
        }),
        #[cfg(feature = "cuda")]
        (BackendKind::Cuda, _) => crate::model::cuda::check_runtime(),
        #[cfg(not(feature = "cuda"))]
        (BackendKind::Cuda, _) => Err(Error::Argument {
            arg: "--backend".into(),
            found: "cuda".into(),
            expected: "cpu: this runner was built without CUDA (rebuild with `cargo build --release --features cuda`)"
                .into(),
        }),
    }
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

/// Refuses a zero where a count must be positive.
pub fn positive(arg: &str, v: usize) -> Result<()> {
    if v == 0 {
        return Err(Error::Argument {
            arg: arg.into(),
            found: "0".into(),
            expected: "a positive integer".into(),
        });
    }
    Ok(())
}

/// An inference engine for the model `m` names on `device` in `dtype`.
pub fn engine<B: InferBackend>(
    m: &ModelArgs,
    batch: usize,
    prefix_budget: usize,
    device: &B::Device,
    dtype: DType,
) -> Result<Engine<B>> {
    positive("--context", m.context)?;
    let spec = ModelSpec::parse(&m.model)?;
    let (model, tok) = load_model::<B>(&spec, m.context, device, dtype)?;
    Ok(Engine::new(model, tok, batch, m.context, prefix_budget, device))
}

/// Runs `runner generate`.
pub fn generate(a: &GenerateArgs) -> Result<()> {
    positive("--max-tokens", a.max_tokens)?;
    on_backend!(&a.model, generate_on(a))
}

fn generate_on<B: InferBackend>(a: &GenerateArgs, device: &B::Device, dtype: DType) -> Result<()> {
    let mut e = engine::<B>(&a.model, 1, 0, device, dtype)?;
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
    on_backend!(&a.model, score_on(a))
}

fn score_on<B: InferBackend>(a: &ScoreArgs, device: &B::Device, dtype: DType) -> Result<()> {
    let e = engine::<B>(&a.model, 1, 0, device, dtype)?;
    let mut ids = e.tokenizer.encode(&a.text)?;
    if let Some(b) = e.tokenizer.bos {
        if ids.first() != Some(&b) {
            ids.insert(0, b);
        }
    }
    let (lp, logits) = e.score_with_logits(&ids)?;
    if let Some(path) = &a.logits_out {
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
