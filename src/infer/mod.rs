//! Batched sampling: the engine (KV cache, continuous batching, prefix reuse), the sampler.

pub mod engine;
pub mod prefix;
pub mod sampling;

pub use engine::{Completion, Engine, Finish, Request, Stats, Stop};

use crate::error::{Error, Result};
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

/// The id of the token that ends an assistant turn of `template` ([`Template::end_of_turn`]; the
/// tokenizer's first end-of-sequence id for the plain format). An error when the vocabulary has
/// no such token (a template that does not belong to the model).
pub fn end_of_turn(tok: &Tokenizer, template: Template) -> Result<u32> {
    match template.end_of_turn() {
        Some(marker) => tok.inner().token_to_id(marker).ok_or_else(|| {
            Error::Other(format!(
                "model.template = {template:?}: the tokenizer has no {marker:?} token to end a turn with; \
                 expected the template of this model (model.template = \"auto\" picks it)"
            ))
        }),
        None => tok.eos.first().copied().ok_or_else(|| {
            Error::Other("the tokenizer has no end-of-sequence token to end a training target with".into())
        }),
    }
}
