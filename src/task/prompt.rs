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
    /// ChatML with Qwen2.5-Instruct's default system prompt (Qwen2, Qwen2.5 and their Coder and
    /// Math models).
    Qwen,
    /// Qwen3's ChatML: no system message (its template writes none unless given one), and the
    /// open assistant turn starts with an empty `<think>` block, as the template writes it with
    /// `enable_thinking=False`: the model answers in the asked format instead of reasoning
    /// freely first.
    Qwen3,
}

impl Template {
    /// The token that ends an assistant turn in this format, which ends every training target
    /// (a final step, an RFT solution, a DPO continuation) so the model learns to close its turn
    /// as its chat format does; `None` for the plain format, whose turns end with the
    /// tokenizer's end of sequence.
    pub fn end_of_turn(self) -> Option<&'static str> {
        match self {
            Template::Plain => None,
            Template::Llama3 => Some("<|eot_id|>"),
            Template::Deepseek => Some("<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>"),
            Template::Chatml | Template::Qwen | Template::Qwen3 => Some("<|im_end|>"),
        }
    }
}

/// The system turn Qwen2.5's chat template writes when the conversation has none.
const QWEN_SYSTEM: &str =
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n";

/// What Qwen3's template writes after `<|im_start|>assistant\n` of the turn it leaves open,
/// with `enable_thinking=False`.
const QWEN3_NO_THINKING: &str = "<think>\n\n</think>\n\n";

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

/// A worked example shown before the question (config `task.shots`): a training problem and
/// its reference solution, in the format the model is asked to answer in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shot {
    /// The example's question.
    pub question: String,
    /// Its reference solution (steps separated by blank lines, ending "The final answer is N.").
    pub solution: String,
}

/// The prompt for `question` (the assistant turn is left open for the solution).
pub fn render(template: Template, kind: TaskKind, question: &str) -> String {
    render_shots(template, kind, &[], question)
}

/// The prompt for `question` after the worked examples `shots`, each an earlier user turn
/// answered by the assistant (chat templates), or a question and solution followed by two blank
/// lines (plain). With no shots this is the zero-shot prompt.
pub fn render_shots(template: Template, kind: TaskKind, shots: &[Shot], question: &str) -> String {
    let inst = instruction(kind);
    let user = |q: &str| match template {
        Template::Plain => format!("{q}\n\n"),
        Template::Llama3 => format!(
            "<|start_header_id|>user<|end_header_id|>\n\n{inst}\n\n{q}\
             <|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        ),
        Template::Deepseek => format!("User: {q}\n{inst}\n\nAssistant: "),
        Template::Chatml | Template::Qwen | Template::Qwen3 => {
            format!("<|im_start|>user\n{inst}\n\n{q}<|im_end|>\n<|im_start|>assistant\n")
        }
    };
    let end_of_answer = match template {
        Template::Plain => "\n\n\n",
        Template::Llama3 => "<|eot_id|>",
        Template::Deepseek => "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
        Template::Chatml | Template::Qwen | Template::Qwen3 => "<|im_end|>\n",
    };
    let mut out = match template {
        Template::Plain => String::new(),
        Template::Llama3 => "<|begin_of_text|>".into(),
        Template::Deepseek => "<\u{ff5c}begin\u{2581}of\u{2581}sentence\u{ff5c}>".into(),
        Template::Chatml => {
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                .into()
        }
        Template::Qwen => QWEN_SYSTEM.into(),
        Template::Qwen3 => String::new(),
    };
    for s in shots {
        out.push_str(&user(&s.question));
        out.push_str(&s.solution);
        out.push_str(end_of_answer);
    }
    out.push_str(&user(question));
    if template == Template::Qwen3 {
        // Only the open turn: Qwen3's template writes earlier answers without a think block.
        out.push_str(QWEN3_NO_THINKING);
    }
    out
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
        Template::Qwen => format!("{QWEN_SYSTEM}<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n"),
        Template::Qwen3 => {
            format!("<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n{QWEN3_NO_THINKING}")
        }
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

    #[test]
    fn zero_shot_prompts_are_the_documented_strings() {
        // Written out by hand: the prompts every stage key before `task.shots` was hashed over.
        assert_eq!(
            render(Template::Chatml, TaskKind::Arith, "Q"),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nSolve the problem step by step. Put a blank line between steps. End with \
             \"The final answer is N.\" where N is a number.\n\nQ<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            render(Template::Deepseek, TaskKind::Arith, "Q"),
            "<\u{ff5c}begin\u{2581}of\u{2581}sentence\u{ff5c}>User: Q\nSolve the problem step by step. Put a \
             blank line between steps. End with \"The final answer is N.\" where N is a number.\n\nAssistant: "
        );
    }

    #[test]
    fn qwen_templates_match_the_chat_templates_of_qwen25_and_qwen3() {
        // Qwen2.5-Instruct's tokenizer_config.json chat_template with one user message and
        // add_generation_prompt=True; Qwen3's with enable_thinking=False.
        assert_eq!(
            chat_turn(Template::Qwen, "Hi"),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            chat_turn(Template::Qwen3, "Hi"),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
        );
        let shots = [Shot { question: "A?".into(), solution: "S".into() }];
        let inst = instruction(TaskKind::Arith);
        assert_eq!(
            render_shots(Template::Qwen3, TaskKind::Arith, &shots, "B?"),
            format!(
                "<|im_start|>user\n{inst}\n\nA?<|im_end|>\n<|im_start|>assistant\nS<|im_end|>\n\
                 <|im_start|>user\n{inst}\n\nB?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
            )
        );
        assert!(render(Template::Qwen, TaskKind::Arith, "B?").starts_with(QWEN_SYSTEM));
        assert!(
            render(Template::Qwen, TaskKind::Arith, "B?").ends_with("B?<|im_end|>\n<|im_start|>assistant\n")
        );
    }

    #[test]
    fn shots_are_answered_turns_before_the_question() {
        let shots = [Shot { question: "A?".into(), solution: "1 + 1 = 2\n\nThe final answer is 2.".into() }];
        let inst = instruction(TaskKind::Arith);
        assert_eq!(
            render_shots(Template::Chatml, TaskKind::Arith, &shots, "B?"),
            format!(
                "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
                 <|im_start|>user\n{inst}\n\nA?<|im_end|>\n<|im_start|>assistant\n\
                 1 + 1 = 2\n\nThe final answer is 2.<|im_end|>\n\
                 <|im_start|>user\n{inst}\n\nB?<|im_end|>\n<|im_start|>assistant\n"
            )
        );
        assert_eq!(
            render_shots(Template::Plain, TaskKind::Arith, &shots, "B?"),
            "A?\n\n1 + 1 = 2\n\nThe final answer is 2.\n\n\nB?\n\n"
        );
        let l = render_shots(Template::Llama3, TaskKind::Arith, &shots, "B?");
        assert_eq!(l.matches("<|begin_of_text|>").count(), 1);
        assert!(l.contains("The final answer is 2.<|eot_id|><|start_header_id|>user"));
    }
}
