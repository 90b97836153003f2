//! The Llama-family decoder (Llama, Qwen2, Qwen3 as options of one network), its
//! configuration, its weights' loaders, its tokenizers, and below it the CPU kernels.
//!
//! Layering: [`kernels`] import nothing from the rest of this folder; the architecture
//! ([`llama`], [`rope`]) calls kernels; the loaders ([`weights`], [`gguf`], [`load`]) build the
//! architecture.

pub mod config;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod cuda_libs;
pub mod gguf;
pub mod kernels;
pub mod llama;
pub mod load;
pub mod quants;
pub mod rope;
pub mod tokenizer;
pub mod weights;

// The kernels' modules under their old paths (`model::backend::InferBackend`, `model::fused`),
// which the engine, trainer and methods import.
pub use kernels::{backend, flex_linear, fused};

pub use config::{Family, LlamaConfig};
pub use llama::Llama;
