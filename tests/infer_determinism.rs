//! The engine's determinism contract on CPU: a request's output depends only on its prompt,
//! its stream and the model, not on batch size, on which requests share its batch, or on
//! whether its prefix was copied from the prefix cache or computed.

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use mcts_ps::infer::{Completion, Engine, Request, Stop};
use mcts_ps::model::rope::Rope;
use mcts_ps::model::tokenizer::Tokenizer;
use mcts_ps::model::{Llama, LlamaConfig};
use mcts_ps::rng::Stream;

type B = Flex;

fn model() -> Llama<B> {
    Llama::<B>::init(&LlamaConfig::tiny(100, 256), 7, &Default::default())
}

/// Final-position logits of `tokens` computed in the given chunks (prefix then pieces), in
/// cache slot `slot` of a `slots`-slot cache, with `others` rows decoded alongside the last piece.
fn logits_in_chunks(m: &Llama<B>, tokens: &[u32], chunks: &[usize], slots: usize, slot: usize) -> Vec<f32> {
    let dev = Default::default();
    let rope = Rope::<B>::new(&m.config, 256, &dev);
    let mut cache = m.new_cache(slots, 256, &dev);
    let mut pos = 0;
    let mut last = None;
    for &c in chunks {
        // Other slots advance in the same call with their own (unrelated) tokens.
        let mut rows = vec![slot];
        let mut starts = vec![pos];
        let mut ids: Vec<i64> = tokens[pos..pos + c].iter().map(|&t| t as i64).collect();
        if c == 1 {
            for other in (0..slots).filter(|&s| s != slot) {
                rows.push(other);
                starts.push(pos);
                ids.push(((other * 7 + pos) % 90 + 5) as i64);
            }
        }
        if rows.len() * c == 1 {
            rows.push(slot);
            starts.push(pos);
            ids.push(tokens[pos] as i64);
        }
        let l = c;
        let t = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [rows.len(), l]), &dev);
        let (h, cc) = m.forward_cached(t, &rows, &starts, &rope, cache);
        cache = cc;
        last = Some(m.head(h.narrow(0, 0, 1).narrow(1, l - 1, 1)));
        pos += c;
    }
    last.unwrap().into_data().to_vec().unwrap()
}

#[test]
fn logits_are_bit_identical_however_the_sequence_is_split_or_batched() {
    let m = model();
    let tok = Tokenizer::char_level();
    let tokens = tok.encode("Ann has 12 apples. She buys 7 more.\n\n12 + 7 = 19\n\nThe final").unwrap();
    let n = tokens.len();
    let whole = logits_in_chunks(&m, &tokens, &[n], 1, 0);
    let halves = logits_in_chunks(&m, &tokens, &[n / 2, n - n / 2], 3, 2);
    let mut steps = vec![n - 10];
    steps.extend(std::iter::repeat_n(1, 10));
    let decoded = logits_in_chunks(&m, &tokens, &steps, 8, 5);
    let all_single = logits_in_chunks(&m, &tokens, &vec![1; n], 64, 17);
    assert_eq!(whole, halves);
    assert_eq!(whole, decoded);
    assert_eq!(whole, all_single);
}

#[test]
fn cached_forward_matches_the_full_forward() {
    let m = model();
    let dev = Default::default();
    let tok = Tokenizer::char_level();
    let tokens = tok.encode("Ben has 3 pens. He doubles them.\n\n3 * 2 = 6").unwrap();
    let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
    let rope = Rope::<B>::new(&m.config, 256, &dev);
    let full: Vec<f32> = m
        .forward(Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, tokens.len()]), &dev), &rope)
        .narrow(1, tokens.len() - 1, 1)
        .into_data()
        .to_vec()
        .unwrap();
    let cached = logits_in_chunks(&m, &tokens, &[tokens.len()], 1, 0);
    let diff = full.iter().zip(&cached).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff < 1e-5, "max abs diff {diff}");
}

fn requests(tok: &Tokenizer) -> Vec<Request> {
    let questions = ["Ann has 12 apples.", "Ben has 3 pens. He doubles them.", "Cal has 9 cups."];
    let mut out = Vec::new();
    for (qi, q) in questions.iter().enumerate() {
        for partial in ["", "12 + 7 = 19\n\n", "12 + 7 = 19\n\n19 - 2 = 17\n\n"] {
            for k in 0..3u64 {
                let prompt = tok.encode(&format!("{q}\n\n{partial}")).unwrap();
                let stop = if k == 0 { Stop::Eos } else { Stop::StepEnd };
                out.push(Request {
                    prompt,
                    max_new_tokens: 40,
                    temperature: 1.0,
                    top_p: if k == 2 { 0.9 } else { 1.0 },
                    stop,
                    rng: Stream::new(3, "test", &[qi as u64, k, partial.len() as u64]),
                });
            }
        }
    }
    out
}

fn run(batch: usize, prefix_budget: usize) -> (Vec<Completion>, mcts_ps::infer::Stats) {
    let tok = Tokenizer::char_level();
    let mut e = Engine::new(model(), tok.clone(), batch, 256, prefix_budget, &Default::default());
    let reqs = requests(&tok);
    let out = e.generate(reqs.clone(), || {}).unwrap();
    // A second pass over the same requests is served from the prefix cache.
    let again = e.generate(reqs, || {}).unwrap();
    assert_eq!(out, again);
    (out, e.stats)
}

#[test]
fn completions_do_not_depend_on_batch_size_or_prefix_reuse() {
    let (base, stats_nocache) = run(1, 0);
    assert_eq!(stats_nocache.prefill_tokens, stats_nocache.prompt_tokens);
    for (batch, budget) in [(7, 0), (64, 0), (1, 100_000), (7, 100_000), (64, 100_000)] {
        let (out, stats) = run(batch, budget);
        assert_eq!(out, base, "batch {batch}, prefix budget {budget}");
        if budget > 0 {
            assert!(stats.prefill_tokens < stats.prompt_tokens / 2, "{stats:?}");
        }
    }
    assert!(base.iter().any(|c| c.finish == mcts_ps::infer::Finish::StepEnd));
}

/// Regression: rows padded together in one admission forward must stay inside the context
/// (a row with a long cached prefix and a short rest was padded past the last position).
#[test]
fn admission_padding_stays_inside_the_context() {
    let tok = Tokenizer::char_level();
    let mut e = Engine::new(model(), tok, 4, 50, 10_000, &Default::default());
    let req = |prompt: Vec<u32>| Request {
        prompt,
        max_new_tokens: 1,
        temperature: 1.0,
        top_p: 1.0,
        stop: Stop::Eos,
        rng: Stream::new(0, "pad", &[]),
    };
    let p: Vec<u32> = (0..47).map(|i| 5 + (i % 50)).collect();
    e.generate(vec![req(p.clone())], || {}).unwrap();
    let mut b = p[..46].to_vec();
    b.extend([60, 61, 62]); // 46 cached + 3 new = 49 positions
    let c: Vec<u32> = vec![70, 71, 72, 73, 74]; // 5 new positions
    let out = e.generate(vec![req(b), req(c)], || {}).unwrap();
    assert_eq!(out.len(), 2);
}
