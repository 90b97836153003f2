//! Tokenizers: the tiny model's character-level vocabulary, Hugging Face `tokenizer.json`
//! files, and (in `gguf`) vocabularies embedded in GGUF files; all as a `tokenizers`
//! tokenizer plus the special ids the engine needs.

use std::path::Path;

use tokenizers::decoders::fuse::Fuse;
use tokenizers::models::bpe::BPE;
use tokenizers::AddedToken;

use crate::error::{Error, Result};

/// A tokenizer with its special ids.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Beginning-of-sequence id, if the vocabulary has one.
    pub bos: Option<u32>,
    /// Ids that end generation.
    pub eos: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer(vocab {}, bos {:?}, eos {:?})", self.vocab_size(), self.bos, self.eos)
    }
}

/// Special tokens of the character-level vocabulary, ids 0..4.
pub const CHAR_SPECIALS: [&str; 4] = ["<pad>", "<bos>", "<eos>", "<unk>"];

impl Tokenizer {
    /// Character-level vocabulary for the tiny model: 4 specials, newline, printable ASCII
    /// (100 ids). Unknown characters map to `<unk>`.
    pub fn char_level() -> Self {
        let mut vocab: Vec<(String, u32)> = Vec::new();
        for (i, s) in CHAR_SPECIALS.iter().enumerate() {
            vocab.push((s.to_string(), i as u32));
        }
        let chars = std::iter::once('\n').chain((32u8..=126).map(char::from));
        for (i, c) in chars.enumerate() {
            vocab.push((c.to_string(), (CHAR_SPECIALS.len() + i) as u32));
        }
        let vocab: tokenizers::models::bpe::Vocab = vocab.into_iter().collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, vec![])
            .unk_token("<unk>".into())
            .build()
            .expect("a merge-free character vocabulary always builds");
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_decoder(Some(Fuse::new()));
        let specials: Vec<AddedToken> = CHAR_SPECIALS.iter().map(|s| AddedToken::from(*s, true)).collect();
        inner.add_special_tokens(specials).expect("adding fixed special tokens cannot fail");
        Self { inner, bos: Some(1), eos: vec![2] }
    }

    /// Word-level vocabulary for the tiny model on the synthetic task: the given words (with
    /// and without a leading space), numbers 0..=999 (with and without a leading space), the
    /// blank line, every printable ASCII character and newline, and 4 specials. A regex
    /// pre-tokenizer isolates those pieces (known words as whole tokens, numbers in runs of at
    /// most 3 digits, anything else character by character), so every ASCII text encodes
    /// losslessly and the model reads a synthetic problem in about a third of the positions
    /// a character-level vocabulary needs.
    pub fn word_level(words: &[&str]) -> Self {
        use tokenizers::models::wordlevel::WordLevel;
        use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
        use tokenizers::SplitDelimiterBehavior;
        let mut pieces: Vec<String> = CHAR_SPECIALS.iter().map(|s| s.to_string()).collect();
        pieces.extend(std::iter::once('\n').chain((32u8..=126).map(char::from)).map(String::from));
        pieces.push("\n\n".into());
        for n in 0..1000 {
            pieces.push(n.to_string());
            pieces.push(format!(" {n}"));
        }
        let mut sorted: Vec<&str> = words.to_vec();
        sorted.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        sorted.dedup();
        for w in &sorted {
            pieces.push(w.to_string());
            pieces.push(format!(" {w}"));
        }
        let mut vocab = tokenizers::models::bpe::Vocab::new();
        for p in pieces {
            let id = vocab.len() as u32;
            vocab.entry(p).or_insert(id);
        }
        let alternation = sorted.iter().map(|w| regex_escape(w)).collect::<Vec<_>>().join("|");
        let pattern = format!(r"\n\n| ?(?:{alternation})\b| ?[0-9]{{1,3}}|[\s\S]");
        let model = WordLevel::builder()
            .vocab(vocab)
            .unk_token("<unk>".into())
            .build()
            .expect("a complete word-level vocabulary always builds");
        let mut inner = tokenizers::Tokenizer::new(model);
        let split = Split::new(SplitPattern::Regex(pattern), SplitDelimiterBehavior::Isolated, false)
            .expect("the word pattern is a valid regex");
        inner.with_pre_tokenizer(Some(split));
        inner.with_decoder(Some(Fuse::new()));
        let specials: Vec<AddedToken> = CHAR_SPECIALS.iter().map(|s| AddedToken::from(*s, true)).collect();
        inner.add_special_tokens(specials).expect("adding fixed special tokens cannot fail");
        Self { inner, bos: Some(1), eos: vec![2] }
    }

    /// Reads a Hugging Face `tokenizer.json`. Special ids come from the caller (config.json or
    /// GGUF metadata); `bos`/`eos` tokens are looked up by name when not given.
    pub fn from_file(path: &Path, bos: Option<u32>, eos: Vec<u32>) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("not a valid tokenizer.json: {e}"),
        })?;
        Ok(Self::with_specials(inner, bos, eos))
    }

    /// Wraps a built tokenizer, filling missing special ids from well-known token names.
    ///
    /// Qwen's vocabulary ([`is_qwen_vocab`]) gets no BOS whatever the caller found (its
    /// `config.json` and GGUF name `<|endoftext|>` as BOS, but neither transformers nor llama.cpp
    /// ever prepends it), and ends generation on both `<|im_end|>` and `<|endoftext|>` (its
    /// `generation_config.json`).
    pub fn with_specials(inner: tokenizers::Tokenizer, bos: Option<u32>, mut eos: Vec<u32>) -> Self {
        let qwen = is_qwen_vocab(&inner);
        let find = |names: &[&str]| names.iter().find_map(|n| inner.token_to_id(n));
        let bos = bos.or_else(|| {
            find(&["<|begin_of_text|>", "<s>", "<bos>", "<\u{ff5c}begin\u{2581}of\u{2581}sentence\u{ff5c}>"])
        });
        let bos = if qwen { None } else { bos };
        if eos.is_empty() {
            eos.extend(find(&[
                "<|eot_id|>",
                "<|im_end|>",
                "</s>",
                "<eos>",
                "<|endoftext|>",
                "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
            ]));
        }
        // Chat models end a turn with a turn marker even when config.json names another eos.
        let qwen_eos: &[&str] = if qwen { &["<|endoftext|>"] } else { &[] };
        for &name in ["<|eot_id|>", "<|im_end|>", "<|eom_id|>"].iter().chain(qwen_eos) {
            if let Some(id) = inner.token_to_id(name) {
                if !eos.contains(&id) {
                    eos.push(id);
                }
            }
        }
        Self { inner, bos, eos }
    }

    /// Whether this is Qwen's vocabulary (Qwen2, Qwen2.5, Qwen3; see [`is_qwen_vocab`]).
    pub fn is_qwen(&self) -> bool {
        is_qwen_vocab(&self.inner)
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text`. Special tokens written in the text (`<|eot_id|>`) are recognised;
    /// nothing is added (templates write BOS themselves).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Other(format!("tokenizer cannot encode {:?}: {e}", truncate(text))))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids` (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Other(format!("tokenizer cannot decode {ids:?}: {e}")))
    }

    /// The vocabulary string of one id.
    pub fn token_str(&self, id: u32) -> String {
        self.inner.id_to_token(id).unwrap_or_else(|| format!("<{id}>"))
    }

    /// Writes `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner.save(path, false).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("cannot write tokenizer: {e}"),
        })
    }
}

/// Qwen's byte-level BPE vocabulary (Qwen2, Qwen2.5, Qwen3 share it): 151,643 merged tokens,
/// then `<|endoftext|>` = 151643 and `<|im_start|>` = 151644. Other ChatML vocabularies (SmolLM2)
/// have these tokens at other ids.
pub fn is_qwen_vocab(t: &tokenizers::Tokenizer) -> bool {
    t.token_to_id("<|endoftext|>") == Some(151_643) && t.token_to_id("<|im_start|>") == Some(151_644)
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| if c.is_ascii_alphanumeric() || c == ' ' { vec![c] } else { vec!['\\', c] })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_level_round_trips_and_has_100_ids() {
        let t = Tokenizer::char_level();
        assert_eq!(t.vocab_size(), 100);
        let text = "Ann has 12 apples.\n\n12 + 7 = 19\n\nThe final answer is 19.";
        let ids = t.encode(text).unwrap();
        assert_eq!(ids.len(), text.chars().count());
        assert_eq!(t.decode(&ids).unwrap(), text);
        assert_eq!(t.encode("a<eos>").unwrap(), vec![t.encode("a").unwrap()[0], 2]);
        assert_eq!(t.encode("\u{e9}").unwrap(), vec![3]); // unknown -> <unk>
    }

    #[test]
    fn word_level_keeps_words_and_numbers_whole_and_round_trips() {
        let t = Tokenizer::word_level(&["has", "apples", "Ann", "The", "final", "answer", "is", "a"]);
        let text = "Ann has 12 apples.\n\n12 + 7 = 19\n\nThe final answer is 19.";
        let ids = t.encode(text).unwrap();
        let pieces: Vec<String> = ids.iter().map(|&i| t.token_str(i)).collect();
        assert_eq!(
            pieces,
            [
                "Ann", " has", " 12", " apples", ".", "\n\n", "12", " +", " 7", " =", " 19", "\n\n", "The",
                " final", " answer", " is", " 19", "."
            ]
            .iter()
            .flat_map(|p| if *p == " +" || *p == " =" {
                vec![" ".to_string(), p[1..].to_string()]
            } else {
                vec![p.to_string()]
            })
            .collect::<Vec<_>>()
        );
        assert_eq!(t.decode(&ids).unwrap(), text);
        // Unknown words fall back to characters; long numbers split in runs of 3 digits.
        for s in ["hasten away 123456", "a\nb", "x<eos>"] {
            assert_eq!(t.decode(&t.encode(s).unwrap()).unwrap(), s);
        }
        assert_eq!(t.encode(" hasten").unwrap().len(), 7);
        assert_eq!(t.encode("1234").unwrap().len(), 2);
    }

    #[test]
    fn char_level_survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        let t = Tokenizer::char_level();
        t.save(&p).unwrap();
        let u = Tokenizer::from_file(&p, Some(1), vec![2]).unwrap();
        let text = "x = 3 * 4\n\n";
        assert_eq!(t.encode(text).unwrap(), u.encode(text).unwrap());
        assert_eq!(u.decode(&u.encode(text).unwrap()).unwrap(), text);
    }
}
