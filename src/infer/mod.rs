//! Batched sampling: the engine (KV cache, continuous batching, prefix reuse), the sampler.

pub mod engine;
pub mod prefix;
pub mod sampling;

pub use engine::{Completion, Engine, Finish, Request, Stats, Stop};

use crate::error::Result;
use crate::model::tokenizer::Tokenizer;
use crate::task::prompt::{render_shots, Shot, Template};
use crate::task::TaskKind;

/// Token ids of the prompt for `question` after the worked examples `shots`: the rendered
/// template, preceded by the BOS token for the plain template (chat templates write their own).
pub fn encode_prompt(
    tok: &Tokenizer,
    template: Template,
    shots: &[Shot],
    kind: TaskKind,
    question: &str,
) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    if template == Template::Plain {
        ids.extend(tok.bos);
    }
    ids.extend(tok.encode(&render_shots(template, kind, shots, question))?);
    Ok(ids)
}
