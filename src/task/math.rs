//! MATH (Hendrycks et al. 2021) JSONL: `{"problem", "solution", "level", "type"}` with the
//! answer in the solution's last `\boxed{...}`, and LaTeX-aware grading.
//!
//! Normalisation follows the spirit of the MATH paper's `is_equiv` (strip spaces, `\left`,
//! `\right`, `\!`, units in `\text{}`, degree signs, dollar signs, `tfrac`/`dfrac`; repair
//! `\frac12` and `\sqrt2`; drop a leading `x =`), then two answers match when the normalised
//! strings are equal or both evaluate to the same number (`\frac{1}{2}`, `1/2`, `0.5`).

use std::path::Path;

use serde::Deserialize;

use super::answer::{final_answer_phrase, last_boxed, matched_braces, numbers_equal, parse_number};
use super::Problem;
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct Line {
    problem: String,
    solution: String,
    #[serde(default)]
    #[allow(dead_code)]
    level: Option<String>,
    #[serde(default, rename = "type")]
    #[allow(dead_code)]
    kind: Option<String>,
}

/// Reads a MATH-format JSONL file; the gold answer is the last `\boxed{}` of `solution`.
pub fn load(path: &Path) -> Result<Vec<Problem>> {
    let text = crate::error::read_to_string(path)?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let bad = |message: String| Error::Data { path: path.to_path_buf(), line: i + 1, message };
        let line: Line = serde_json::from_str(raw).map_err(|e| {
            bad(format!("expected a JSON object with string fields \"problem\" and \"solution\": {e}"))
        })?;
        let answer = last_boxed(&line.solution)
            .ok_or_else(|| bad("field \"solution\" has no \\boxed{...} answer".into()))?;
        out.push(Problem {
            id: out.len() as u64,
            question: line.problem.trim().to_string(),
            answer,
            solution: Some(line.solution.trim().to_string()),
        });
    }
    Ok(out)
}

/// The predicted answer of a completion: a final-answer phrase (unwrapping `\boxed{}`), else
/// the last `\boxed{}`.
pub fn extract(completion: &str) -> Option<String> {
    last_boxed(completion).or_else(|| final_answer_phrase(completion))
}

/// Whether two LaTeX answers are equivalent.
pub fn answers_match(predicted: &str, gold: &str) -> bool {
    let (p, g) = (normalize(predicted), normalize(gold));
    if p.is_empty() || g.is_empty() {
        return false;
    }
    if p == g {
        return true;
    }
    match (eval_number(&p), eval_number(&g)) {
        (Some(a), Some(b)) => numbers_equal(a, b),
        _ => false,
    }
}

/// Canonical string form of a LaTeX answer.
pub fn normalize(answer: &str) -> String {
    let mut s = answer.trim().to_string();
    if let Some(b) = last_boxed(&s) {
        if s.trim_start().starts_with("\\boxed") || s.trim_start().starts_with("\\fbox") {
            s = b;
        }
    }
    s = s.replace('\n', "").replace("\\!", "");
    for thin in ["\\,", "\\;", "\\:", "\\ "] {
        s = s.replace(thin, "");
    }
    s = s.replace("\\\\", "\\");
    s = s.replace("tfrac", "frac").replace("dfrac", "frac");
    s = s.replace("\\left", "").replace("\\right", "");
    s = s.replace("^{\\circ}", "").replace("^\\circ", "");
    s = s.replace("\\$", "").replace('$', "");
    s = s.replace("\\%", "").replace('%', "");
    s = s.replace("{,}", "");
    s = strip_text_units(&s);
    s = s.replace(' ', "");
    while s.ends_with('.') {
        s.pop();
    }
    // "x=5" -> "5" when the left side is a short variable name.
    if let Some((lhs, rhs)) = s.split_once('=') {
        if lhs.len() <= 2 && !rhs.contains('=') && lhs.chars().all(|c| c.is_ascii_alphabetic()) {
            s = rhs.to_string();
        }
    }
    s = fix_sqrt(&s);
    s = fix_fracs(&s);
    if s.starts_with('.') {
        s.insert(0, '0');
    }
    s = s.replace("{.", "{0.");
    s
}

/// `\text{..}` / `\textbf{..}` / `\mbox{..}`: words-only content (units) is dropped when
/// something else remains; other content is unwrapped.
fn strip_text_units(s: &str) -> String {
    let mut out = s.to_string();
    for key in ["\\text", "\\textbf", "\\mbox", "\\mathrm"] {
        while let Some(at) = find_command(&out, key) {
            let after = &out[at + key.len()..];
            let Some(inner_start) = after.strip_prefix('{') else { break };
            let Some(inner) = matched_braces(inner_start) else { break };
            let inner = inner.to_string();
            let end = at + key.len() + 1 + inner.len() + 1;
            let rest_without = format!("{}{}", &out[..at], &out[end..]);
            let words_only = inner.trim().chars().all(|c| c.is_ascii_alphabetic() || c == ' ');
            out = if words_only && !rest_without.trim().is_empty() {
                rest_without
            } else {
                format!("{}{}{}", &out[..at], inner, &out[end..])
            };
        }
    }
    out
}

/// Position of `\name` not followed by another letter (so `\text` does not match `\textbf`).
fn find_command(s: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(rel) = s[from..].find(key) {
        let at = from + rel;
        let next = s[at + key.len()..].chars().next();
        if !next.is_some_and(|c| c.is_ascii_alphabetic()) {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}

/// `\sqrt2` -> `\sqrt{2}`.
fn fix_sqrt(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("\\sqrt") {
        out.push_str(&rest[..at + 5]);
        rest = &rest[at + 5..];
        if let Some(c) = rest.chars().next() {
            if c != '{' && c != '[' && c != '\\' {
                out.push('{');
                out.push(c);
                out.push('}');
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `\frac12` -> `\frac{1}{2}`, `\frac1{2}` -> `\frac{1}{2}`, `\frac{1}2` -> `\frac{1}{2}`.
fn fix_fracs(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("\\frac") {
        out.push_str(&rest[..at + 5]);
        rest = &rest[at + 5..];
        for _ in 0..2 {
            if let Some(inner) = rest.strip_prefix('{') {
                match matched_braces(inner) {
                    Some(content) => {
                        out.push('{');
                        out.push_str(content);
                        out.push('}');
                        rest = &inner[content.len() + 1..];
                    }
                    None => break,
                }
            } else if let Some(c) = rest.chars().next() {
                if c == '\\' {
                    break;
                }
                out.push('{');
                out.push(c);
                out.push('}');
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Evaluates a normalised answer that is a plain number: decimals, signs, `a/b`,
/// `\frac{A}{B}` (nested), braces and parentheses around a number. `None` otherwise.
pub fn eval_number(s: &str) -> Option<f64> {
    let mut p = Parser { s: s.as_bytes(), i: 0 };
    let v = p.expr()?;
    (p.i == p.s.len()).then_some(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, t: &str) -> bool {
        if self.s[self.i..].starts_with(t.as_bytes()) {
            self.i += t.len();
            true
        } else {
            false
        }
    }

    /// expr := '-'? atom ('/' atom)?
    fn expr(&mut self) -> Option<f64> {
        let neg = self.eat("-");
        let mut v = self.atom()?;
        if self.eat("/") {
            let d = self.atom()?;
            if d == 0.0 {
                return None;
            }
            v /= d;
        }
        Some(if neg { -v } else { v })
    }

    fn atom(&mut self) -> Option<f64> {
        if self.eat("\\frac{") {
            let a = self.expr()?;
            if !self.eat("}{") {
                return None;
            }
            let b = self.expr()?;
            if !self.eat("}") || b == 0.0 {
                return None;
            }
            return Some(a / b);
        }
        if self.eat("{") {
            let v = self.expr()?;
            return self.eat("}").then_some(v);
        }
        if self.eat("(") {
            let v = self.expr()?;
            return self.eat(")").then_some(v);
        }
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9' | b'.' | b',')) {
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        if text.is_empty() {
            return None;
        }
        parse_number(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (predicted, gold, should match). Half are negative.
    const CASES: &[(&str, &str, bool)] = &[
        ("\\frac{1}{2}", "\\frac{1}{2}", true),
        ("\\dfrac12", "\\frac{1}{2}", true),
        ("\\tfrac{1}{2}", "\\frac{1}{2}", true),
        ("1/2", "\\frac{1}{2}", true),
        ("0.5", "\\frac{1}{2}", true),
        (".5", "\\frac12", true),
        ("\\frac{3}{4}", "0.75", true),
        ("-\\frac{1}{2}", "-0.5", true),
        ("\\frac{-1}{2}", "-\\frac{1}{2}", true),
        ("\\frac{\\frac{1}{2}}{2}", "\\frac14", true),
        ("10\\text{ cm}", "10", true),
        ("10 \\text{inches}", "10", true),
        ("5^\\circ", "5", true),
        ("5^{\\circ}", "5", true),
        ("\\$5", "5", true),
        ("50\\%", "50", true),
        ("x = 5", "5", true),
        ("\\sqrt2", "\\sqrt{2}", true),
        ("\\left( 1, 2 \\right)", "(1,2)", true),
        ("2\\sqrt{3}", "2 \\sqrt{3}", true),
        ("\\boxed{7}", "7", true),
        ("7.", "7", true),
        ("1{,}000", "1000", true),
        ("\\text{(A)}", "(A)", true),
        ("\\frac{1}{2}", "\\frac{1}{3}", false),
        ("0.333", "\\frac13", false),
        ("1/2", "2", false),
        ("\\sqrt{2}", "\\sqrt{3}", false),
        ("(1,2)", "(2,1)", false),
        ("-5", "5", false),
        ("\\frac{2}{1}", "\\frac{1}{2}", false),
        ("12", "21", false),
        ("x^2", "x^3", false),
        ("2\\pi", "\\pi", false),
        ("10\\text{ cm}", "100", false),
        ("", "5", false),
        ("\\text{(A)}", "(B)", false),
        ("5^\\circ", "50", false),
        ("[1,2]", "(1,2)", false),
        ("\\frac{1}{2}", "0.51", false),
        ("3\\sqrt{2}", "2\\sqrt{3}", false),
        ("1,2", "12", false),
        ("\\infty", "-\\infty", false),
        ("\\frac{1}{0}", "0", false),
        ("a+b", "a-b", false),
        ("\\boxed{8}", "7", false),
        ("\\frac{1}{2}x", "\\frac{1}{2}", false),
        ("x = 5", "x = 6", false),
        ("0.5\\text{ cm}", "\\frac{1}{3}", false),
    ];

    #[test]
    fn grader_cases() {
        let mut negatives = 0;
        for (pred, gold, want) in CASES {
            assert_eq!(
                answers_match(pred, gold),
                *want,
                "predicted {pred:?} vs gold {gold:?} (normalised {:?} vs {:?})",
                normalize(pred),
                normalize(gold)
            );
            negatives += usize::from(!want);
        }
        assert!(CASES.len() >= 40 && negatives * 2 >= CASES.len());
    }

    #[test]
    fn extraction() {
        assert_eq!(extract("so $x = \\boxed{\\frac{1}{2}}$.").as_deref(), Some("\\frac{1}{2}"));
        assert_eq!(extract("The final answer is $\\boxed{3}$.").as_deref(), Some("3"));
        assert_eq!(extract("The final answer is 3.").as_deref(), Some("3"));
        assert_eq!(extract("nothing"), None);
    }

    #[test]
    fn loader_reads_the_standard_format_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.jsonl");
        std::fs::write(
            &p,
            concat!(
                r#"{"problem":"What is $1/2+1/4$?","solution":"We add: $\\frac12+\\frac14=\\boxed{\\frac{3}{4}}$.","level":"Level 1","type":"Prealgebra"}"#,
                "\n",
                r#"{"problem":"p","solution":"no box","level":"Level 2","type":"Algebra"}"#,
                "\n"
            ),
        )
        .unwrap();
        let err = load(&p).unwrap_err().to_string();
        assert!(err.contains("m.jsonl:2") && err.contains("boxed"), "{err}");
        let first = std::fs::read_to_string(&p).unwrap().lines().next().unwrap().to_string();
        std::fs::write(&p, first + "\n").unwrap();
        let problems = load(&p).unwrap();
        assert_eq!(problems[0].answer, "\\frac{3}{4}");
        assert!(answers_match("0.75", &problems[0].answer));
    }
}
