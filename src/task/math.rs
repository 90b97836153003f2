//! MATH (Hendrycks et al. 2021) JSONL: `{"problem", "solution", "level", "type"}` with the
//! answer in the solution's last `\boxed{...}` (or the record's `answer` field, as in
//! data/math/), and LaTeX-aware grading.
//!
//! Normalisation follows the spirit of the MATH paper's `is_equiv` (strip spaces, `\left`,
//! `\right`, `\!`, units in `\text{}`, degree signs, dollar signs, `tfrac`/`dfrac`; repair
//! `\frac12` and `\sqrt2`; drop a leading `x =`), then two answers match when the normalised
//! strings are equal or both evaluate to the same number (`\frac{1}{2}`, `1/2`, `0.5`).

use std::path::Path;

use serde::Deserialize;

use super::answer::{boxed_run, final_answer_phrase, last_boxed};
use super::Problem;
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct Line {
    problem: String,
    solution: String,
    /// The dataset's own gold answer (the last `\boxed` of the solution, in the shipped files).
    #[serde(default)]
    answer: Option<String>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// Reads a MATH-format JSONL file (see [`load_noting`]).
pub fn load(path: &Path) -> Result<Vec<Problem>> {
    load_noting(path).map(|(p, _)| p)
}

/// Reads a MATH-format JSONL file: the gold answer is the record's `answer` when it has one,
/// else the last `\boxed{}` of `solution`; `level` and `type` become the problem's `meta`
/// (for tables broken down by them); the reference solution's steps are its paragraphs
/// ([`paragraph_steps`]). A record whose gold answer is empty (2 of MATH train's, defects of the
/// original data) cannot be graded: it is left out, and the second value says so. A problem's
/// id is its line index.
pub fn load_noting(path: &Path) -> Result<(Vec<Problem>, Vec<String>)> {
    let text = crate::error::read_to_string(path)?;
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let bad = |message: String| Error::Data { path: path.to_path_buf(), line: i + 1, message };
        let line: Line = serde_json::from_str(raw).map_err(|e| {
            bad(format!("expected a JSON object with string fields \"problem\" and \"solution\": {e}"))
        })?;
        let answer = match line.answer {
            Some(a) => a,
            None => last_boxed(&line.solution)
                .ok_or_else(|| bad("field \"solution\" has no \\boxed{...} answer".into()))?,
        };
        if answer.trim().is_empty() {
            notes.push(format!("{}:{}: empty gold answer, left out", path.display(), i + 1));
            continue;
        }
        let meta = [("level", line.level), ("type", line.kind)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect();
        out.push(Problem {
            id: i as u64,
            question: line.problem.trim().to_string(),
            answer: answer.trim().to_string(),
            solution: Some(paragraph_steps(&line.solution).join(super::STEP_SEPARATOR)),
            meta,
        });
    }
    Ok((out, notes))
}

/// The steps of a MATH reference solution: its paragraphs (blank-line separated, as the paper's
/// steps are), except that a blank line inside an environment (a `\begin{..}` not yet closed)
/// does not end a step (one of the 12,500 solutions has one: train/intermediate_algebra/689);
/// that blank line becomes a single line break, since steps are joined by blank lines.
/// `$$` and `\[` are not counted: MATH writes `$$` for empty cells and `\\[-9pt]` for row
/// spacing, so their parity says nothing.
/// Single line breaks stay inside a step. The solution keeps its own wording; its last step is
/// the one with the last `\boxed` (the gold answer).
pub fn paragraph_steps(solution: &str) -> Vec<String> {
    let mut steps: Vec<String> = Vec::new();
    let mut open = false;
    for para in solution.split(super::STEP_SEPARATOR) {
        let para = para.trim_matches('\n');
        if para.trim().is_empty() {
            continue;
        }
        match steps.last_mut() {
            Some(last) if open => {
                // A step never holds a blank line (the separator): one line break instead.
                last.push('\n');
                last.push_str(para);
            }
            _ => steps.push(para.to_string()),
        }
        let last = steps.last().expect("pushed above");
        open = last.matches("\\begin{").count() > last.matches("\\end{").count();
    }
    // A step stating the answer ends a solution everywhere in the pipeline (MCTS, grading):
    // paragraphs after the last boxed one (a remark or a generalisation, in 453 of the 12,500
    // solutions) are left out.
    if let Some(at) = steps.iter().rposition(|s| s.contains("\\boxed") || s.contains("\\fbox")) {
        steps.truncate(at + 1);
    }
    steps
}

/// The predicted answer of a completion: its boxed answer, else the text of a final-answer
/// phrase.
///
/// The boxed answer is the last `\boxed{}` together with the boxes just before it that only
/// separators divide from it ([`boxed_run`]: `\boxed{-2}` and `\boxed{1}`), read as one
/// list answer "-2, 1", so that a model boxing two candidates is graded on both and a hedge is
/// never correct against a single-valued gold. One exception: when every box of the run is
/// equivalent to the last one (`\boxed{x+11}` or `\boxed{11+x}`, `\boxed{\frac{25}{13}} =
/// \boxed{1\frac{12}{13}}`), the run states one answer in several spellings and the answer is
/// the last box. The gold answer is the last box (as in MATH's own code and the `answer` of
/// PRM800K), so the few reference solutions that box every solution of a "find all" problem
/// but whose last box holds only one of them do not grade correct against their own gold (see
/// `tests/graders_real.rs`).
pub fn extract(completion: &str) -> Option<String> {
    let Some(mut items) = boxed_run(completion) else {
        return final_answer_phrase(completion);
    };
    let last = items.pop()?;
    if items.iter().all(|b| answers_match(b, &last)) {
        return Some(last);
    }
    items.push(last);
    Some(items.join(", "))
}

/// Whether two LaTeX answers are equivalent ([`super::latex`]: numbers, expressions,
/// equations, tuples, sets, intervals, matrices, complex numbers, text).
pub fn answers_match(predicted: &str, gold: &str) -> bool {
    super::latex::answers_equivalent(predicted, gold)
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
                "predicted {pred:?} vs gold {gold:?} (cleaned {:?} vs {:?})",
                super::super::latex::clean(pred),
                super::super::latex::clean(gold)
            );
            negatives += usize::from(!want);
        }
        assert!(CASES.len() >= 40 && negatives * 2 >= CASES.len());
    }

    #[test]
    fn paragraph_steps_keep_environments_whole_and_end_at_the_answer() {
        let sol = "First.\n\nThen\n\\begin{align*}\nx &= 1\n\n\\\\ y &= 2\n\\end{align*}\nso\n\n$x,$$y$ gives $\\boxed{3}$.\n\nMore generally, ...";
        assert_eq!(
            paragraph_steps(sol),
            vec![
                "First.",
                "Then\n\\begin{align*}\nx &= 1\n\\\\ y &= 2\n\\end{align*}\nso",
                "$x,$$y$ gives $\\boxed{3}$.",
            ]
        );
        assert_eq!(paragraph_steps("One step, no box."), vec!["One step, no box."]);
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
