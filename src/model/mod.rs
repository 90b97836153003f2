//! The Llama-architecture network, its configuration and its weights' loaders.

pub mod backend;
pub mod config;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod cuda_libs;
pub mod flex_linear;
pub mod fused;
pub mod gguf;
pub mod llama;
pub mod load;
pub mod quants;
pub mod rope;
pub mod tokenizer;
pub mod weights;

pub use config::LlamaConfig;
pub use llama::Llama;
