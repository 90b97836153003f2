//! Prompt templates, one per model family, in one place.
//!
//! The model sees `prompt(question) + partial solution`; every method (zero-shot CoT, RFT,
//! step-level DPO, ours) and the evaluation use the same prompt, so differences between rows
//! of a table come from the weights alone.

use serde::{Deserialize, Serialize};

use super::TaskKind;

/// A prompt format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Template {
    /// `question` then a blank line: the format the tiny model is pretrained on.
    Plain,
    /// Llama-3 / 3.1 Instruct chat format.
    Llama3,
    /// deepseek-math-7b-instruct chat format.
    Deepseek,
    /// ChatML (SmolLM2-Instruct).
    Chatml,
}

/// The zero-shot chain-of-thought instruction for a task kind.
pub fn instruction(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Arith | TaskKind::Gsm8k => {
            "Solve the problem step by step. Put a blank line between steps. \
             End with \"The final answer is N.\" where N is a number."
        }
        TaskKind::Math => {
            "Solve the problem step by step. Put a blank line between steps. \
             End with \"The final answer is $\\boxed{ANSWER}$.\""
        }
    }
}

/// The prompt for `question` (the assistant turn is left open for the solution).
pub fn render(template: Template, kind: TaskKind, question: &str) -> String {
    let inst = instruction(kind);
    match template {
        Template::Plain => format!("{question}\n\n"),
        Template::Llama3 => format!(
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{inst}\n\n{question}\
             <|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        ),
        Template::Deepseek => format!("<\u{ff5c}begin\u{2581}of\u{2581}sentence\u{ff5c}>User: {question}\n{inst}\n\nAssistant: "),
        Template::Chatml => format!(
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\n{inst}\n\n{question}<|im_end|>\n<|im_start|>assistant\n"
        ),
    }
}

/// A single user turn with the assistant turn left open (no task instruction): for
/// `runner generate --chat`.
pub fn chat_turn(template: Template, message: &str) -> String {
    match template {
        Template::Plain => message.to_string(),
        Template::Llama3 => format!(
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{message}\
             <|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        ),
        Template::Deepseek => format!("<\u{ff5c}begin\u{2581}of\u{2581}sentence\u{ff5c}>User: {message}\n\nAssistant: "),
        Template::Chatml => format!(
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_prompt_has_the_header_tokens_in_order() {
        let p = render(Template::Llama3, TaskKind::Math, "What is 1+1?");
        assert!(p.starts_with("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"));
        assert!(p.ends_with("What is 1+1?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"));
        assert!(p.contains("\\boxed{ANSWER}"));
    }

    #[test]
    fn plain_prompt_is_question_and_blank_line() {
        assert_eq!(render(Template::Plain, TaskKind::Arith, "Q?"), "Q?\n\n");
    }

    #[test]
    fn chatml_and_deepseek_open_the_assistant_turn() {
        assert!(render(Template::Chatml, TaskKind::Gsm8k, "Q").ends_with("<|im_start|>assistant\n"));
        assert!(render(Template::Deepseek, TaskKind::Gsm8k, "Q").ends_with("Assistant: "));
    }
}
