//! The inference engine as an MCTS [`Policy`]: requests become engine requests (prompt tokens
//! of the question, then the partial solution), all answered in one batched call.

use std::collections::HashMap;

use crate::error::Result;
use crate::infer::{encode_prompt, Engine, Finish, Request, Stop};
use crate::model::backend::InferBackend;
use crate::search::{Policy, Sample, SampleKind, SampleRequest};
use crate::task::prompt::Template;
use crate::task::TaskKind;

/// An engine answering MCTS requests.
pub struct EnginePolicy<'a, B: InferBackend> {
    /// The engine.
    pub engine: &'a mut Engine<B>,
    /// Prompt format.
    pub template: Template,
    /// Worked examples before each question.
    pub shots: &'a [crate::task::prompt::Shot],
    /// Task kind (prompt instruction).
    pub kind: TaskKind,
    prompts: HashMap<String, Vec<u32>>,
    /// Called once per finished sample (progress).
    pub on_sample: Box<dyn FnMut() + 'a>,
}

impl<'a, B: InferBackend> EnginePolicy<'a, B> {
    /// A policy over `engine`.
    pub fn new(
        engine: &'a mut Engine<B>,
        template: Template,
        shots: &'a [crate::task::prompt::Shot],
        kind: TaskKind,
    ) -> Self {
        Self { engine, template, shots, kind, prompts: HashMap::new(), on_sample: Box::new(|| {}) }
    }

    fn tokens(&mut self, question: &str, partial: &str) -> Result<Vec<u32>> {
        if !self.prompts.contains_key(question) {
            let p = encode_prompt(&self.engine.tokenizer, self.template, self.shots, self.kind, question)?;
            self.prompts.insert(question.to_string(), p);
        }
        let mut t = self.prompts[question].clone();
        t.extend(self.engine.tokenizer.encode(partial)?);
        Ok(t)
    }
}

impl<B: InferBackend> Policy for EnginePolicy<'_, B> {
    fn sample(&mut self, requests: Vec<SampleRequest>) -> Result<Vec<Sample>> {
        let cap = self.engine.capacity();
        let mut reqs = Vec::with_capacity(requests.len());
        let mut too_long = Vec::with_capacity(requests.len());
        for r in requests {
            let prompt = self.tokens(&r.question, &r.partial)?;
            // A partial solution that fills the context cannot continue: an empty, ended sample.
            too_long.push(prompt.len() + 1 >= cap);
            let room = cap.saturating_sub(prompt.len() + 1).max(1);
            reqs.push(Request {
                prompt: if prompt.len() + 1 >= cap { prompt[..1].to_vec() } else { prompt },
                max_new_tokens: r.max_tokens.min(room),
                temperature: r.temperature,
                top_p: r.top_p,
                stop: match r.kind {
                    SampleKind::Step => Stop::StepEnd,
                    SampleKind::Rollout => Stop::Eos,
                },
                rng: r.stream,
            });
        }
        let out = self.engine.generate(reqs, &mut self.on_sample)?;
        Ok(out
            .into_iter()
            .zip(too_long)
            .map(|(c, long)| {
                // The context's end stops a sample for good (ended) and cuts it (not a complete
                // step or solution: never trained on).
                if long {
                    Sample { text: String::new(), tokens: 0, ended: true, cut: true }
                } else {
                    Sample {
                        tokens: c.tokens.len(),
                        ended: matches!(c.finish, Finish::Eos | Finish::Context),
                        cut: matches!(c.finish, Finish::Length | Finish::Context),
                        text: c.text,
                    }
                }
            })
            .collect())
    }
}
