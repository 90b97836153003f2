//! The experiment schema: serde types mirroring the TOML file, one struct per table.
//!
//! Every struct rejects unknown keys. The built-in defaults layer (`defaults.toml`) fills every
//! key, so extraction never sees a missing one; [`super::resolve`] then checks ranges and
//! cross-key rules and produces [`super::Resolved`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::task::arith::ArithSpec;
use crate::task::TaskKind;

/// A whole experiment file after layering.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Results folder name.
    pub name: String,
    /// Root of every RNG stream.
    pub seed: u64,
    /// Training seeds: every method reruns once per seed (data draws, MCTS, training); the
    /// test set, the validation split, pretraining and evaluation draws stay on `seed`.
    /// Empty = one run on `seed`.
    pub seeds: Vec<u64>,
    /// Where results folders go.
    pub out_dir: String,
    /// Baseline pipelines to run beside ours.
    pub baselines: Vec<String>,
    /// CPU worker threads (0 = all).
    pub threads: usize,
    /// Paper set-up to show beside ours ("" = none).
    pub paper: String,
    /// Seconds between progress lines when stderr is not a terminal (0 = none); never changes
    /// a result.
    pub progress_seconds: f64,
    /// `[model]`.
    pub model: Model,
    /// `[pretrain]`.
    pub pretrain: Pretrain,
    /// `[task]`.
    pub task: Task,
    /// `[mcts]`.
    pub mcts: Mcts,
    /// `[train]`.
    pub train: Train,
    /// `[ours]`.
    pub ours: Ours,
    /// `[zero_shot_cot]`.
    pub zero_shot_cot: ZeroShotCot,
    /// `[rft]`.
    pub rft: Rft,
    /// `[step_dpo]`.
    pub step_dpo: StepDpo,
    /// `[eval]`.
    pub eval: Eval,
    /// `[infer]`.
    pub infer: Infer,
    /// `[executor]`.
    pub executor: Executor,
    /// `[report]`.
    pub report: Report,
    /// `[sweep]`: key path -> values.
    #[serde(default)]
    pub sweep: BTreeMap<String, Vec<figment::value::Value>>,
}

/// `[model]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Built-in architecture name ("tiny") or "".
    pub preset: String,
    /// Checkpoint path or "".
    pub path: String,
    /// Compute backend.
    pub backend: Backend,
    /// Floating-point type of weights and activations.
    pub dtype: Dtype,
    /// Prompt format or "auto".
    pub template: String,
    /// Positions per sequence.
    pub context: usize,
    /// `[model.tiny]`.
    pub tiny: TinyArch,
}

/// Compute backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn-flex on the CPU.
    Cpu,
    /// burn-cuda (feature `cuda`).
    Cuda,
}

/// Floating-point type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit float.
    F32,
    /// bfloat16.
    Bf16,
    /// 8-bit weights with a scale per 32 rows of a column (Q8_0-style; CPU only): projections and
    /// the output head; the embedding in bf16; norms, biases and activations in f32, the
    /// activations rounded to 8-bit blocks inside the 8-bit products.
    Q8,
}

impl Dtype {
    /// burn's type for it (8-bit: a block-quantized type, [`crate::model::weights::q8_scheme`]).
    pub fn burn(self) -> burn::tensor::DType {
        match self {
            Dtype::F32 => burn::tensor::DType::F32,
            Dtype::Bf16 => burn::tensor::DType::BF16,
            Dtype::Q8 => burn::tensor::DType::QFloat(crate::model::weights::q8_scheme()),
        }
    }
}

/// `[model.tiny]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TinyArch {
    /// Vocabulary: "words" (task words and numbers as tokens) or "chars".
    pub vocab: String,
    /// Output head tied to the embedding.
    pub tie_embeddings: bool,
    /// Model width.
    pub hidden_size: usize,
    /// SwiGLU width.
    pub intermediate_size: usize,
    /// Decoder blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
}

/// `[pretrain]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pretrain {
    /// Optimiser steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Peak learning rate (cosine decay after warm-up).
    pub lr: f64,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
    /// Synthetic problems generated for pretraining.
    pub problems: usize,
}

/// `[task]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Training task.
    pub kind: TaskKind,
    /// JSONL training pool (gsm8k/math).
    pub train_path: String,
    /// JSONL test set (gsm8k/math).
    pub test_path: String,
    /// Test task kind for transfer, "" = `kind`.
    pub test_kind: String,
    /// Training pool size (0 = all).
    pub train_size: usize,
    /// Test set size (0 = all).
    pub test_size: usize,
    /// Validation problems taken out of the training pool (0 = none).
    pub val_size: usize,
    /// Worked examples from the training pool shown before every question (0 = zero-shot).
    pub shots: usize,
    /// `[task.arith]`.
    pub arith: ArithSpec,
}

/// Rule for advancing the partial solution after a root's rollouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Advance {
    /// Child with the highest UCB (the paper's rule).
    Ucb,
    /// Child with the most visits.
    MostVisited,
    /// Child with the highest Q/N.
    BestValue,
}

/// `[mcts]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mcts {
    /// Eq. (1) scale.
    pub alpha: f64,
    /// MCTS iterations per root.
    pub rollouts: usize,
    /// Children before a node counts as fully expanded.
    pub max_children: usize,
    /// UCB exploration constant.
    pub c_ucb: f64,
    /// Sampling temperature.
    pub temperature: f64,
    /// Nucleus sampling mass.
    pub top_p: f64,
    /// Roots per problem.
    pub max_steps: usize,
    /// Token limit of one step.
    pub max_step_tokens: usize,
    /// Token limit of one simulation.
    pub max_solution_tokens: usize,
    /// Advance rule.
    pub advance: Advance,
    /// Simulations of one tree per batched round.
    pub virtual_loss: usize,
    /// Trees advanced together.
    pub problems_in_flight: usize,
}

/// Fine-tuning mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainMode {
    /// All weights train.
    Full,
    /// Base weights frozen, LoRA adapters train, merged on save.
    Lora,
}

/// `[train]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Train {
    /// Peak learning rate.
    pub lr: f64,
    /// Passes over the data.
    pub epochs: usize,
    /// Records per optimiser step.
    pub batch_size: usize,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
    /// Global gradient-norm clip (0 = off).
    pub grad_clip: f64,
    /// The cosine schedule's floor, as a fraction of the peak learning rate.
    pub min_lr_frac: f64,
    /// Full fine-tuning or LoRA.
    pub mode: TrainMode,
    /// LoRA rank.
    pub lora_rank: usize,
    /// LoRA alpha (scale = alpha / rank).
    pub lora_alpha: f64,
    /// Projections that get adapters.
    pub lora_targets: Vec<String>,
}

/// `[ours]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ours {
    /// Self-training iterations.
    pub iterations: usize,
    /// Problems drawn per iteration.
    pub problems_per_iteration: usize,
    /// KL weight of eq. (2).
    pub beta: f64,
    /// Learning rate of eq. (2) training (0 = `train.lr`).
    pub lr: f64,
}

/// `[zero_shot_cot]`: no settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZeroShotCot {}

/// `[rft]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rft {
    /// Training problems.
    pub problems: usize,
    /// Samples per problem.
    pub samples_per_problem: usize,
    /// Sampling temperature.
    pub temperature: f64,
    /// "ours": also a compute-matched RFT row whose sampling budget is the tokens of ours'
    /// first MCTS iteration; "" = none.
    pub match_tokens: String,
    /// Learning rate of RFT's fine-tuning (0 = `train.lr`).
    pub lr: f64,
}

/// `[step_dpo]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDpo {
    /// Iterations.
    pub iterations: usize,
    /// Problems per iteration.
    pub problems_per_iteration: usize,
    /// DPO coefficient.
    pub beta: f64,
    /// Learning rate of DPO training (0 = `train.lr`).
    pub lr: f64,
}

/// `[eval]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eval {
    /// Sampled runs over the test set.
    pub runs: usize,
    /// Sampling temperature.
    pub temperature: f64,
    /// Nucleus sampling mass.
    pub top_p: f64,
    /// New tokens per solution.
    pub max_tokens: usize,
    /// Evaluate on the test set (false: validation only, for tuning sweeps).
    pub test: bool,
}

/// Where shardable stages run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// Everything in this process.
    Local,
    /// MCTS problems and evaluation runs split across `executor.workers` `runner shard`
    /// processes on this machine (each pinned to one GPU with `cuda`), merged in a fixed
    /// order: the same bytes as `local`.
    Workers,
    /// Shardable stages as Slurm job arrays of `executor.slurm.tasks` tasks, training stages
    /// as single Slurm jobs; this process submits, polls and merges: the same bytes as `local`.
    Slurm,
}

/// `[executor]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Executor {
    /// `"local"`, `"workers"` or `"slurm"`.
    pub kind: ExecutorKind,
    /// Worker processes for `kind = "workers"`.
    pub workers: usize,
    /// `[executor.slurm]`, for `kind = "slurm"`.
    pub slurm: Slurm,
}

impl Executor {
    /// Into how many shards a stage of `items` items is split: worker processes or array
    /// tasks, never more than the items; 1 when everything runs in this process.
    pub fn shards(&self, items: usize) -> usize {
        let most = match self.kind {
            ExecutorKind::Local => 1,
            ExecutorKind::Workers => self.workers,
            ExecutorKind::Slurm => self.slurm.tasks,
        };
        most.min(items).max(1)
    }
}

/// `[executor.slurm]`: how tasks are submitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slurm {
    /// Array tasks per shardable stage.
    pub tasks: usize,
    /// `--partition` (empty: the cluster's default).
    pub partition: String,
    /// `--account` (empty: none).
    pub account: String,
    /// `--time` per task (empty: the partition's default).
    pub time: String,
    /// `--cpus-per-task` (0: Slurm's default).
    pub cpus_per_task: usize,
    /// `--gpus-per-task` (0: none).
    pub gpus_per_task: usize,
    /// Further `#SBATCH` options, one per entry (e.g. `"--qos=high"`).
    pub extra: Vec<String>,
    /// Resubmissions of a task that failed or was cancelled before the stage gives up.
    pub retries: usize,
    /// Seconds between polls of `squeue`.
    pub poll_seconds: f64,
}

/// `[report]`: what the tables show besides the main one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Fields of the test records to break accuracy down by (`table-breakdown.md`), e.g.
    /// `["type", "level"]` for MATH.
    pub breakdown: Vec<String>,
}

/// `[infer]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Infer {
    /// Sequences decoded together.
    pub batch_size: usize,
}
