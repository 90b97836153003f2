//! GSM8K (Cobbe et al. 2021) JSONL: `{"question": ..., "answer": "<worked solution>\n#### N"}`,
//! and numeric grading.
//!
//! Predicted and gold answers are compared as numbers: commas, `$`, `%`, a trailing full stop
//! and a trailing `.0` do not matter; a sign does.

use std::path::Path;

use serde::Deserialize;

use super::answer::{
    final_answer_phrase, hash_answer, last_boxed, last_number, matched_braces, numbers_equal, parse_number,
};
use super::Problem;
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct Line {
    question: String,
    answer: String,
}

/// Reads a GSM8K-format JSONL file. Every line must hold `question` and an `answer` ending in
/// `#### N`; the worked solution becomes the reference solution, one step per line.
pub fn load(path: &Path) -> Result<Vec<Problem>> {
    let text = crate::error::read_to_string(path)?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let bad = |message: String| Error::Data { path: path.to_path_buf(), line: i + 1, message };
        let line: Line = serde_json::from_str(raw).map_err(|e| {
            bad(format!("expected a JSON object with string fields \"question\" and \"answer\": {e}"))
        })?;
        let gold = hash_answer(&line.answer)
            .ok_or_else(|| bad("field \"answer\" has no final \"#### N\" line".into()))?;
        let gold = gold.replace(',', "");
        if parse_number(&gold).is_none() {
            return Err(bad(format!("answer after \"####\" is {gold:?}, expected a number")));
        }
        let steps: Vec<String> = line.answer[..line.answer.rfind("####").unwrap_or(0)]
            .lines()
            .map(strip_calculator_annotations)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let mut solution = steps.join(super::STEP_SEPARATOR);
        if !solution.is_empty() {
            solution.push_str(super::STEP_SEPARATOR);
        }
        solution.push_str(&format!("The final answer is {gold}."));
        out.push(Problem {
            // The line index, as for MATH files (a problem keeps its id whatever else the file holds).
            id: i as u64,
            question: line.question.trim().to_string(),
            answer: gold,
            solution: Some(solution),
            meta: Default::default(),
        });
    }
    Ok(out)
}

/// Removes GSM8K calculator annotations `<<48/2=24>>`.
pub fn strip_calculator_annotations(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("<<") {
        out.push_str(&rest[..at]);
        match rest[at..].find(">>") {
            Some(end) => rest = &rest[at + end + 2..],
            None => {
                rest = &rest[at..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The predicted answer of a completion: a final-answer phrase, `####`, `\boxed{}`, else the
/// last number.
pub fn extract(completion: &str) -> Option<String> {
    final_answer_phrase(completion)
        .or_else(|| hash_answer(completion))
        .or_else(|| last_boxed(completion))
        .or_else(|| last_number(completion))
}

/// Whether a predicted answer text equals the gold number. The prediction must be a number
/// (any of [`parse_number`]'s spellings, LaTeX or Unicode thousands separators), optionally
/// with a label before it (`x = 18`) or unit words after it (`18 apples`, `18 \text{ apples}`),
/// in Markdown bold or LaTeX math delimiters (`**18**`, `\(18\)`); a string that merely
/// contains a digit (`AZYUK2A`, `12 - 2`, `12 \text{ and } 18`) is not a number.
pub fn answers_match(predicted: &str, gold: &str) -> bool {
    let Some(g) = parse_number(gold) else {
        return false;
    };
    number_of_answer(predicted).is_some_and(|p| numbers_equal(p, g))
}

/// The number an extracted answer states (see [`answers_match`]).
pub fn number_of_answer(text: &str) -> Option<f64> {
    let plain = unwrap_text(text).replace("**", "").replace("\\(", " ").replace("\\)", " ");
    let mut t = plain.trim();
    if let Some(inner) = t.strip_prefix("\\boxed{").and_then(|r| r.strip_suffix('}')) {
        t = inner.trim();
    }
    // `x = 18`, `total: 18`.
    if let Some((lhs, rhs)) = t.rsplit_once('=') {
        if lhs.trim().chars().all(|c| c.is_alphabetic() || c == ' ' || c == '_') {
            t = rhs.trim();
        }
    }
    if let Some(v) = parse_number(t) {
        return Some(v);
    }
    // `18 apples`, `$18 per hour`: a number, then words only.
    let (num, rest) = t.split_once(' ')?;
    let words = rest.trim().trim_end_matches('.');
    let wordy = words.chars().all(|c| c.is_alphabetic() || c == ' ' || c == '\'');
    (wordy && !words.is_empty()).then(|| parse_number(num)).flatten()
}

/// `text` with LaTeX text wrappers (`\text{ apples}`, `\mbox{..}`, `\textbf{..}`,
/// `\mathrm{..}`) replaced by their content between spaces.
fn unwrap_text(text: &str) -> String {
    let mut out = text.to_string();
    for key in ["\\textbf{", "\\textrm{", "\\text{", "\\mbox{", "\\mathrm{"] {
        while let Some(at) = out.find(key) {
            let Some(inner) = matched_braces(&out[at + key.len()..]) else { break };
            let end = at + key.len() + inner.len() + 1;
            out = format!("{} {} {}", &out[..at], inner, &out[end..]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (predicted text, gold, should match). Half are negative.
    const CASES: &[(&str, &str, bool)] = &[
        ("18", "18", true),
        ("18.0", "18", true),
        ("18.00", "18", true),
        ("$18", "18", true),
        ("$18.00", "18", true),
        ("1,000", "1000", true),
        ("1000", "1000", true),
        ("1,234,567", "1234567", true),
        ("50%", "50", true),
        ("-3", "-3", true),
        ("\u{2212}3", "-3", true),
        ("7.", "7", true),
        ("+7", "7", true),
        ("0.5", "0.5", true),
        (".5", "0.5", true),
        ("18 apples", "18", true),
        ("x = 18", "18", true),
        ("3/4", "0.75", true),
        ("\\$18", "18", true),
        ("1{,}000", "1000", true),
        ("19", "18", false),
        ("180", "18", false),
        ("1.8", "18", false),
        ("-18", "18", false),
        ("3", "-3", false),
        ("1,000", "100", false),
        ("100", "1000", false),
        ("0.5", "5", false),
        ("5", "0.5", false),
        ("0.33", "0.333333", false),
        ("18.01", "18", false),
        ("", "18", false),
        ("apples", "18", false),
        ("$1,80", "180", false),
        ("12 then 19", "12", false),
        ("1/3", "0.333", false),
        ("2/4", "0.75", false),
        ("1e3", "1000", false),
        ("eighteen", "18", false),
        ("17.999", "18", false),
    ];

    #[test]
    fn grader_cases() {
        let mut negatives = 0;
        for (pred, gold, want) in CASES {
            assert_eq!(answers_match(pred, gold), *want, "predicted {pred:?} vs gold {gold:?}");
            negatives += usize::from(!want);
        }
        assert!(CASES.len() >= 40 && negatives * 2 >= CASES.len());
    }

    #[test]
    fn extraction_prefers_markers_over_numbers() {
        assert_eq!(extract("3 + 4 = 7\n\nThe final answer is 7.").as_deref(), Some("7"));
        assert_eq!(extract("Natalia sold 48/2 = 24 clips.\n#### 72").as_deref(), Some("72"));
        assert_eq!(extract("so it is \\boxed{12} and 5 more").as_deref(), Some("12"));
        assert_eq!(extract("answer: 42 apples").as_deref(), Some("42"));
        assert_eq!(extract("no digits"), None);
    }

    #[test]
    fn strips_calculator_annotations() {
        assert_eq!(strip_calculator_annotations("48/2 = <<48/2=24>>24 clips"), "48/2 = 24 clips");
        assert_eq!(strip_calculator_annotations("no <<end"), "no <<end");
    }

    #[test]
    fn loader_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.jsonl");
        std::fs::write(&p, "{\"question\":\"q\",\"answer\":\"a\\n#### 5\"}\n{\"question\":\"q\"}\n").unwrap();
        let err = load(&p).unwrap_err().to_string();
        assert!(err.contains("g.jsonl:2") && err.contains("answer"), "{err}");
        std::fs::write(&p, "{\"question\":\"q\",\"answer\":\"no marker\"}\n").unwrap();
        let err = load(&p).unwrap_err().to_string();
        assert!(err.contains("g.jsonl:1") && err.contains("####"), "{err}");
    }

    #[test]
    fn loads_gsm_symbolic_and_every_reference_grades_correct() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/gsm_symbolic");
        for (name, n) in [("train.jsonl", 3981), ("test.jsonl", 1000)] {
            let problems = load(&root.join(name)).unwrap();
            assert_eq!(problems.len(), n, "{name}");
            for p in &problems {
                let sol = p.solution.as_deref().unwrap();
                let pred = extract(sol).unwrap();
                assert!(answers_match(&pred, &p.answer), "{name} #{}: {pred:?} vs {:?}", p.id, p.answer);
            }
        }
    }
}
