//! Training targets end the way the model's chat format ends a turn: a final MCTS step, a DPO
//! continuation and an RFT solution all go through `continuation_tokens`, whose last token is
//! the template's end-of-turn marker (`<|eot_id|>` for Llama-3, `<|im_end|>` for ChatML,
//! deepseek's end of sentence), or end of sequence for the plain format; a non-final step ends
//! with the step separator. A template whose marker is not in the vocabulary is an error.

use mcts_ps::method::continuation_tokens;
use mcts_ps::model::tokenizer::Tokenizer;
use mcts_ps::task::prompt::Template;
use mcts_ps::task::TaskKind;

const MARKERS: &[&str] = &[
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
    "<\u{ff5c}begin\u{2581}of\u{2581}sentence\u{ff5c}>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
];

/// Characters as tokens, with every chat marker and `</s>` as whole special tokens.
fn tokenizer(markers: &[&str]) -> Tokenizer {
    use tokenizers::models::bpe::BPE;
    let chars = (32u8..=126).map(char::from).chain(['\n', '\u{ff5c}', '\u{2581}']);
    let vocab: tokenizers::models::bpe::Vocab =
        chars.enumerate().map(|(i, c)| (c.to_string(), i as u32)).collect();
    let mut inner =
        tokenizers::Tokenizer::new(BPE::builder().vocab_and_merges(vocab, vec![]).build().unwrap());
    inner.with_decoder(Some(tokenizers::decoders::fuse::Fuse::new()));
    let specials = markers.iter().chain(&["</s>"]).map(|m| tokenizers::AddedToken::from(m.to_string(), true));
    inner.add_special_tokens(specials.collect::<Vec<_>>()).unwrap();
    let eos = inner.token_to_id("</s>").unwrap();
    Tokenizer::with_specials(inner, None, vec![eos])
}

#[test]
fn every_template_ends_a_final_target_with_its_end_of_turn_token() {
    let tok = tokenizer(MARKERS);
    let id = |m: &str| tok.inner().token_to_id(m).unwrap();
    for (template, end) in [
        (Template::Plain, "</s>"),
        (Template::Llama3, "<|eot_id|>"),
        (Template::Deepseek, "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>"),
        (Template::Chatml, "<|im_end|>"),
        (Template::Qwen, "<|im_end|>"),
        (Template::Qwen3, "<|im_end|>"),
    ] {
        let (t, start) = continuation_tokens(
            &tok,
            template,
            &[],
            TaskKind::Arith,
            "Q?",
            "1 + 1 = 2\n\n",
            "The final answer is 2.",
            true,
        )
        .unwrap();
        assert_eq!(*t.last().unwrap(), id(end), "{template:?}");
        assert_eq!(tok.decode(&t[start..t.len() - 1]).unwrap(), "The final answer is 2.", "{template:?}");
        // Not the tokenizer's generic end of sequence for chat formats (Llama-3.1's first eos
        // is <|end_of_text|>, which no chat turn ends with).
        if template != Template::Plain {
            assert_ne!(*t.last().unwrap(), id("</s>"));
        }
        // A non-final step ends with the blank line, no end token.
        let (t, _) =
            continuation_tokens(&tok, template, &[], TaskKind::Arith, "Q?", "", "1 + 1 = 2", false).unwrap();
        assert_eq!(tok.decode(&t[t.len() - 2..]).unwrap(), "\n\n", "{template:?}");
    }
}

#[test]
fn a_template_whose_marker_is_missing_is_an_error() {
    let tok = tokenizer(&[]);
    let err = continuation_tokens(&tok, Template::Llama3, &[], TaskKind::Arith, "Q?", "", "x", true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("<|eot_id|>") && err.contains("model.template"), "{err}");
}
