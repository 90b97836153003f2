//! Batched sampling: the engine (KV cache, continuous batching, prefix reuse), the sampler.

pub mod engine;
pub mod prefix;
pub mod sampling;

pub use engine::{Completion, Engine, Finish, Request, Stats, Stop};
