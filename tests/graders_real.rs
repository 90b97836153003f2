//! The graders on the real datasets (`data/gsm8k`, `data/math`), read through the project's own
//! loaders: every gold answer against itself, against the answer extracted from its own
//! reference solution, against the forms a model writes, and against the golds of other problems
//! (false positives). Every miss and every accepted pair of different golds is listed below with
//! its reason, and each test asserts exactly its list.
//!
//! `cargo test --release --test graders_real -- --nocapture` prints the figures.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use mcts_ps::task::{gsm8k, math, Problem, TaskKind};

const GSM8K_FILES: [&str; 2] = ["gsm8k/train.jsonl", "gsm8k/test.jsonl"];
const MATH_FILES: [&str; 3] = ["math/train.jsonl", "math/test.jsonl", "math/math500.jsonl"];

/// MATH golds that are no answer: they grade correct against nothing, themselves included, and
/// are left out of the model-form and false-positive checks.
const EMPTY_GOLDS: &[(&str, &str)] = &[
    ("train/number_theory/7115.json", "empty \\boxed{} in the original solution (data/math/README.md)"),
    ("train/number_theory/7117.json", "empty \\boxed{} in the original solution (data/math/README.md)"),
];

/// Why a "find all" reference solution misses its own gold: MATH's gold is the last box, and
/// this solution boxes each of the solutions side by side (`\boxed{-2}` and `\boxed{1}`); the
/// extraction reads them as the list the problem asks for, the gold holds only the last one.
const INCOMPLETE_GOLD: &str = "gold is the last of the solutions the reference boxes side by side; \
    the problem asks for all of them";
/// Why a "give one of them" reference solution misses its own gold.
const HEDGED_REFERENCE: &str = "the problem says \"enter only one\", the reference boxes both; \
    a completion that boxes both is a hedge and must not be rewarded";

/// Reference solutions whose extracted answer does not grade correct against their own gold.
const REFERENCE_EXCEPTIONS: &[(&str, &str)] = &[
    ("train/algebra/152.json", INCOMPLETE_GOLD),
    ("train/algebra/1771.json", INCOMPLETE_GOLD),
    ("train/intermediate_algebra/1486.json", INCOMPLETE_GOLD),
    ("train/intermediate_algebra/1964.json", INCOMPLETE_GOLD),
    ("train/intermediate_algebra/396.json", HEDGED_REFERENCE),
    ("train/number_theory/7115.json", "empty \\boxed{} (EMPTY_GOLDS)"),
    ("train/number_theory/7117.json", "empty \\boxed{} (EMPTY_GOLDS)"),
    (
        "train/number_theory/837.json",
        "boxes 20:34 or 8:34 p.m., the same time on two clocks; the grader does not equate clock times",
    ),
    ("train/precalculus/1040.json", INCOMPLETE_GOLD),
    ("train/precalculus/1089.json", INCOMPLETE_GOLD),
    ("train/precalculus/1149.json", INCOMPLETE_GOLD),
    ("train/precalculus/860.json", INCOMPLETE_GOLD),
    ("test/algebra/1878.json", INCOMPLETE_GOLD),
    ("test/intermediate_algebra/1855.json", INCOMPLETE_GOLD),
    ("test/intermediate_algebra/225.json", INCOMPLETE_GOLD),
    ("test/intermediate_algebra/25.json", HEDGED_REFERENCE),
    ("test/intermediate_algebra/702.json", HEDGED_REFERENCE),
    ("test/precalculus/1227.json", INCOMPLETE_GOLD),
    ("test/precalculus/679.json", INCOMPLETE_GOLD),
];

/// Golds of different problems that the grader accepts for one another (or a model form of one
/// for the other), each checked by hand to be the same answer: (gold, other gold, in string
/// order, and why).
const EQUIVALENT_GOLDS: &[(&str, &str, &str)] = &[
    ("(-3,4)", "\\begin{pmatrix} -3 \\\\ 4 \\end{pmatrix}", COLUMN),
    ("(0,-5)", "\\begin{pmatrix} 0 \\\\ -5 \\end{pmatrix}", COLUMN),
    ("(1,3)", "\\begin{pmatrix} 1 \\\\ 3 \\end{pmatrix}", COLUMN),
    ("(7,5)", "\\begin{pmatrix} 7 \\\\ 5 \\end{pmatrix}", COLUMN),
    ("-x + 1", "1-x", "the same polynomial"),
    ("\\frac{2 \\pi}{3}", "\\frac{2}{3}\\pi", "the same number, 2 pi / 3"),
    ("\\frac{3 \\pi}{4}", "\\frac{3}{4}\\pi\\text{ inches}", "the same number, 3 pi / 4, with a unit"),
    (
        "1",
        "1_6",
        "1 in base 6 is 1; the grader equates a base-b number with its digits written without the base",
    ),
];

/// Why a column vector equals a tuple.
const COLUMN: &str = "a column vector is the tuple of its entries";

fn data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(file)
}

/// A dataset file: its kind and its problems, each named (MATH: `unique_id`; GSM8K:
/// `file:line`).
fn load(file: &str) -> (TaskKind, Vec<(String, Problem)>) {
    if file.starts_with("gsm8k/") {
        let problems = gsm8k::load(&data(file)).unwrap();
        return (
            TaskKind::Gsm8k,
            problems.into_iter().map(|p| (format!("{file}:{}", p.id + 1), p)).collect(),
        );
    }
    // Named through the problem text (unique within a file), so that a loader that leaves a
    // record out does not shift the names.
    let problems = math::load(&data(file)).unwrap();
    let text = std::fs::read_to_string(data(file)).unwrap();
    let ids: BTreeMap<String, String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["problem"].as_str().unwrap().trim().to_string(), v["unique_id"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(ids.len(), text.lines().count(), "{file}: problem texts are unique");
    let named = problems.into_iter().map(|p| (ids[&p.question].clone(), p)).collect();
    (TaskKind::Math, named)
}

fn all_files() -> impl Iterator<Item = &'static str> {
    GSM8K_FILES.into_iter().chain(MATH_FILES)
}

fn is_empty_gold(id: &str) -> bool {
    EMPTY_GOLDS.iter().any(|(e, _)| *e == id)
}

fn rate(ok: usize, n: usize) -> String {
    format!("{ok}/{n} ({:.2}%)", 100.0 * ok as f64 / n.max(1) as f64)
}

#[test]
fn every_gold_grades_correct_against_itself() {
    for file in all_files() {
        let (kind, problems) = load(file);
        let missed: BTreeSet<&str> = problems
            .iter()
            .filter(|(_, p)| !kind.answers_match(&p.answer, &p.answer))
            .map(|(id, _)| id.as_str())
            .collect();
        eprintln!("gold vs gold, {file:<20} {}", rate(problems.len() - missed.len(), problems.len()));
        let listed: BTreeSet<&str> = EMPTY_GOLDS
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| problems.iter().any(|(pid, _)| pid == id))
            .collect();
        assert_eq!(missed, listed, "{file}: golds that miss themselves vs EMPTY_GOLDS");
    }
}

#[test]
fn reference_solutions_grade_correct_against_their_gold() {
    for file in all_files() {
        let (kind, problems) = load(file);
        let mut missed = BTreeMap::new();
        for (id, p) in &problems {
            let extracted = kind.extract_answer(p.solution.as_deref().unwrap());
            if !extracted.as_deref().is_some_and(|e| kind.answers_match(e, &p.answer)) {
                missed.insert(id.as_str(), format!("gold {:?}, extracted {extracted:?}", p.answer));
            }
        }
        eprintln!(
            "gold vs reference solution, {file:<20} {}",
            rate(problems.len() - missed.len(), problems.len())
        );
        let listed: BTreeSet<&str> = REFERENCE_EXCEPTIONS
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| problems.iter().any(|(pid, _)| pid == id))
            .collect();
        let unlisted: Vec<String> = missed
            .iter()
            .filter(|(id, _)| !listed.contains(*id))
            .map(|(id, why)| format!("{id}: {why}"))
            .collect();
        let stale: Vec<&&str> = listed.iter().filter(|id| !missed.contains_key(**id)).collect();
        assert!(unlisted.is_empty(), "{file}: unlisted misses:\n{}", unlisted.join("\n"));
        assert!(stale.is_empty(), "{file}: listed in REFERENCE_EXCEPTIONS but now correct: {stale:?}");
    }
}

#[test]
fn model_written_forms_of_every_gold_are_accepted() {
    for file in all_files() {
        let (kind, problems) = load(file);
        let mut per: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let mut missed = Vec::new();
        for (id, p) in problems.iter().filter(|(id, _)| !is_empty_gold(id)) {
            for (name, form) in forms(kind, &p.answer) {
                let ok = graded(kind, &form, &p.answer);
                let e = per.entry(name).or_default();
                e.0 += 1;
                e.1 += usize::from(ok);
                if !ok {
                    missed.push(format!("{name}: {id}: gold {:?}, form {form:?}", p.answer));
                }
            }
        }
        for (name, (n, ok)) in &per {
            eprintln!("model form, {file:<20} {name:<26} {}", rate(*ok, *n));
        }
        assert!(missed.is_empty(), "{file}: {} forms rejected:\n{}", missed.len(), missed.join("\n"));
    }
}

#[test]
fn no_gold_accepts_another_problems_gold() {
    // (gold, other gold), sorted, and the forms of the other that were accepted.
    let mut accepted: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for file in all_files() {
        let (kind, problems) = load(file);
        let golds: Vec<(&str, &str)> = problems
            .iter()
            .filter(|(id, _)| !is_empty_gold(id))
            .map(|(id, p)| (id.as_str(), p.answer.as_str()))
            .collect();
        let (mut pairs, mut hits) = (0, 0);
        let mut check = |gold: &str, other: &str, with_forms: bool| {
            let mut candidates = vec![("gold", other.to_string())];
            if with_forms {
                candidates.extend(forms(kind, other));
            }
            for (name, form) in candidates {
                pairs += 1;
                let hit = graded(kind, &form, gold) || (name == "gold" && kind.answers_match(gold, other));
                if hit {
                    hits += 1;
                    let key = if gold <= other { (gold, other) } else { (other, gold) };
                    accepted.entry((key.0.to_string(), key.1.to_string())).or_default().push(form);
                }
            }
        };
        // Each gold against the next NEXT golds that differ from it, and their model forms.
        const NEXT: usize = 2;
        for (i, (_, gold)) in golds.iter().enumerate() {
            let others = (1..golds.len()).map(|k| golds[(i + k) % golds.len()].1);
            for other in others.filter(|o| !same_answer(gold, o)).take(NEXT) {
                check(gold, other, true);
            }
        }
        // Every pair of distinct golds with the same digits in the same order (`(1,100)`,
        // `1,100`, `1100`, `[1,100]`): the pairs a careless grader would confuse.
        let mut by_digits: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
        for (_, gold) in &golds {
            by_digits.entry(gold.chars().filter(char::is_ascii_digit).collect()).or_default().insert(gold);
        }
        for group in by_digits.values() {
            let group: Vec<&str> = group.iter().copied().collect();
            for (a, gold) in group.iter().enumerate() {
                for other in &group[a + 1..] {
                    if !same_answer(gold, other) {
                        check(gold, other, false);
                    }
                }
            }
        }
        eprintln!("false positives, {file:<20} {hits} accepted of {pairs} pairs of different golds");
    }
    let listed: BTreeSet<(String, String)> =
        EQUIVALENT_GOLDS.iter().map(|(a, b, _)| (a.to_string(), b.to_string())).collect();
    let unlisted: Vec<_> = accepted.iter().filter(|(k, _)| !listed.contains(*k)).collect();
    let stale: Vec<_> = listed.iter().filter(|k| !accepted.contains_key(*k)).collect();
    assert!(unlisted.is_empty(), "different golds accepted:\n{unlisted:#?}");
    assert!(stale.is_empty(), "listed in EQUIVALENT_GOLDS but no longer accepted: {stale:?}");
}

/// Every pair of distinct golds of MATH train and test (6 million pairs, minutes): prints the
/// accepted pairs of different answers, for a reading by hand. `cargo test --release --test
/// graders_real every_pair -- --ignored --nocapture`.
#[test]
#[ignore]
fn every_pair_of_distinct_math_golds() {
    for file in ["math/train.jsonl", "math/test.jsonl"] {
        let (_, problems) = load(file);
        let golds: BTreeSet<&str> =
            problems.iter().filter(|(id, _)| !is_empty_gold(id)).map(|(_, p)| p.answer.as_str()).collect();
        let golds: Vec<&str> = golds.into_iter().collect();
        let (mut pairs, mut hits) = (0usize, 0usize);
        for (a, gold) in golds.iter().enumerate() {
            for other in &golds[a + 1..] {
                if same_answer(gold, other) {
                    continue;
                }
                pairs += 1;
                if math::answers_match(other, gold) || math::answers_match(gold, other) {
                    hits += 1;
                    eprintln!("accepted, {file}: {gold:?} vs {other:?}");
                }
            }
        }
        eprintln!("every pair of distinct golds, {file}: {hits} accepted of {pairs}");
    }
}

/// The grader's verdict on a form: GSM8K forms are whole completions, MATH forms answers.
fn graded(kind: TaskKind, form: &str, gold: &str) -> bool {
    match kind {
        TaskKind::Math => {
            if let Some(completion) = form.strip_prefix(COMPLETION) {
                return kind.is_correct(completion, gold);
            }
            kind.answers_match(form, gold)
        }
        _ => kind.is_correct(form, gold),
    }
}

/// Marks a MATH form that is a whole completion rather than an answer.
const COMPLETION: &str = "\u{0}completion:";

/// The forms a model writes for a gold: (form name, form). Only forms that differ from the gold.
fn forms(kind: TaskKind, gold: &str) -> Vec<(&'static str, String)> {
    match kind {
        TaskKind::Math => math_forms(gold),
        _ => gsm8k_forms(gold),
    }
}

/// MATH: without `\!` (a model writes `32,349` for `32,\! 349`), without `\left`/`\right`,
/// `\dfrac` for `\frac`, in `$..$`, with a label `x = ` (a letter the gold does not use; not for
/// relations or words), a terminating fraction as its decimal, `\frac{a}{b}` as `a/b`, and the
/// gold in the final step the MATH prompt asks for (`The final answer is $\boxed{..}$.`).
fn math_forms(gold: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut push = |name: &'static str, v: String| {
        if v != gold {
            out.push((name, v));
        }
    };
    let parts: Vec<&str> = gold.split("\\!").collect();
    let last = parts.len() - 1;
    let unspaced = parts.iter().enumerate().map(|(k, p)| {
        let p = if k > 0 { p.trim_start() } else { p };
        if k < last {
            p.trim_end()
        } else {
            p
        }
    });
    push("without \\!", unspaced.collect());
    push("without \\left \\right", gold.replace("\\left", "").replace("\\right", ""));
    let plain = gold.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac");
    push("\\dfrac", plain.replace("\\frac", "\\dfrac"));
    push("$..$", format!("${gold}$"));
    let relation =
        ["=", "<", ">", "\\le", "\\ge", "\\in", "\\ne", "\\approx"].iter().any(|r| gold.contains(r));
    let wordy = ["\\text", "\\mbox", "\\textnormal"].iter().any(|w| gold.contains(w)) || gold.contains(':');
    if !relation && !wordy {
        if let Some(l) = ['x', 'y', 'z', 't', 'n', 'k', 'm'].into_iter().find(|c| !gold.contains(*c)) {
            push("label =", format!("{l} = {gold}"));
        }
    }
    if let Some((neg, a, b)) = simple_fraction(gold) {
        if let Some(d) = terminating_decimal(neg, a, b) {
            push("decimal", d);
        }
        if !gold.contains('/') {
            push("a/b", format!("{}{a}/{b}", if neg { "-" } else { "" }));
        }
    }
    push(
        "final step \\boxed{}",
        format!("{COMPLETION}So we are done.\n\nThe final answer is $\\boxed{{{gold}}}$."),
    );
    out
}

/// GSM8K (integer golds), each as the final step the GSM8K prompt asks for ("The final answer
/// is N."): `$N`, `\$N`, `N.00`, `N weeks`, `N \text{ weeks}`, `$N$ weeks`, `\boxed{N}`,
/// `**N**`, and with thousands commas (`1,080`, `$1,080`) when the gold has four digits or more.
fn gsm8k_forms(gold: &str) -> Vec<(&'static str, String)> {
    let n: i64 = gold.parse().unwrap();
    let digits = n.unsigned_abs().to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if n < 0 { "-" } else { "" };
    let mut answers: Vec<(&'static str, String)> = vec![
        ("N", gold.to_string()),
        ("$N", format!("{sign}${digits}")),
        ("\\$N", format!("{sign}\\${digits}")),
        ("N.00", format!("{gold}.00")),
        ("N weeks", format!("{gold} weeks")),
        ("N \\text{ weeks}", format!("{gold} \\text{{ weeks}}")),
        ("$N$ weeks", format!("${gold}$ weeks")),
        ("\\boxed{N}", format!("$\\boxed{{{gold}}}$")),
        ("**N**", format!("**{gold}**")),
    ];
    if digits.len() >= 4 {
        answers.push(("thousands commas", format!("{sign}{grouped}")));
        answers.push(("$ thousands commas", format!("{sign}${grouped}")));
    }
    answers
        .into_iter()
        .map(|(name, a)| (name, format!("So we are done.\n\nThe final answer is {a}.")))
        .collect()
}

/// `\frac{a}{b}`, `\dfrac{a}{b}`, `\tfrac ab`, `a/b` (optional minus, integers a and b): (minus,
/// a, b).
fn simple_fraction(gold: &str) -> Option<(bool, u64, u64)> {
    let s = gold.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r.trim()),
        None => (false, s),
    };
    let int = |t: &str| -> Option<u64> {
        let t = t.trim();
        (!t.is_empty() && t.len() < 15 && t.bytes().all(|c| c.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    if let Some((a, b)) = s.split_once('/') {
        return Some((neg, int(a)?, int(b)?));
    }
    let rest = ["\\frac", "\\dfrac", "\\tfrac"].iter().find_map(|k| s.strip_prefix(k))?.trim_start();
    // One argument: `{12}` or a single digit.
    let arg = |r: &str| -> Option<(u64, usize)> {
        if let Some(inner) = r.strip_prefix('{') {
            let (a, _) = inner.split_once('}')?;
            Some((int(a)?, a.len() + 2))
        } else {
            Some((u64::from(r.chars().next()?.to_digit(10)?), 1))
        }
    };
    let (a, used) = arg(rest)?;
    let rest = rest[used..].trim_start();
    let (b, used) = arg(rest)?;
    rest[used..].trim().is_empty().then_some((neg, a, b))
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The exact decimal of a/b when a/b is not an integer and b, reduced, has no prime factor but
/// 2 and 5 (`3/8` is `0.375`).
fn terminating_decimal(neg: bool, a: u64, b: u64) -> Option<String> {
    if b == 0 {
        return None;
    }
    let g = gcd(a, b);
    let (a, b) = (a / g, b / g);
    if b == 1 {
        return None;
    }
    let (mut rest, mut places) = (b, 0u32);
    while rest.is_multiple_of(2) || rest.is_multiple_of(5) {
        rest /= if rest.is_multiple_of(2) { 2 } else { 5 };
        places += 1;
    }
    if rest != 1 {
        return None;
    }
    let scale = 10u128.pow(places);
    let scaled = u128::from(a) * scale / u128::from(b);
    let s = format!("{}.{:0width$}", scaled / scale, scaled % scale, width = places as usize);
    Some(if neg { format!("-{s}") } else { s })
}

/// The reference for "the same answer" in the false-positive check, independent of the grader:
/// equal strings once presentation-only LaTeX, text wrappers, a unit in `\text{}` after a
/// number, a one-letter label, braces around one character and the order of a bare comma list
/// are normalised away, or both plain numbers (integers, decimals, simple fractions) of the
/// same value.
fn same_answer(a: &str, b: &str) -> bool {
    let (x, y) = (reference_form(a), reference_form(b));
    x == y
        || matches!((number(&x), number(&y)), (Some(p), Some(q)) if (p - q).abs() <= 1e-12 * p.abs().max(1.0))
}

fn reference_form(s: &str) -> String {
    let mut t = s.to_string();
    for (from, to) in [
        ("\\left", ""),
        ("\\right", ""),
        ("\\displaystyle", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\:", ""),
        ("\\ ", ""),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\$", ""),
        ("$", ""),
        ("{,}", ""),
        ("^\\circ", ""),
        ("^{\\circ}", ""),
        ("\\%", ""),
        ("\\text ", "\\text"),
    ] {
        t = t.replace(from, to);
    }
    // Text wrappers: a unit after a number goes, anything else is unwrapped.
    for key in ["\\textbf{", "\\text{", "\\mbox{", "\\mathbf{", "\\mathrm{", "\\textnormal{"] {
        while let Some(at) = t.find(key) {
            let open = at + key.len();
            let Some(close) = t[open..].find('}').map(|c| open + c) else { break };
            let inner = t[open..close].to_string();
            let unit = inner.trim().len() >= 2
                && inner.chars().all(|c| c.is_alphabetic() || c.is_whitespace() || c == '.')
                && t[..at].trim_end().ends_with(|c: char| c.is_ascii_digit() || c == '}');
            let keep = if unit { String::new() } else { inner };
            t = format!("{}{keep}{}", &t[..at], &t[close + 1..]);
        }
    }
    let mut t: String = t.chars().filter(|c| !c.is_whitespace()).collect();
    // `{3}` is `3`.
    loop {
        let b = t.as_bytes();
        let at = (0..b.len().saturating_sub(2)).find(|&i| {
            b[i] == b'{'
                && b[i + 1].is_ascii_alphanumeric()
                && b[i + 2] == b'}'
                && (i == 0 || b[i - 1] != b'\\')
        });
        match at {
            Some(i) => t = format!("{}{}{}", &t[..i], &t[i + 1..i + 2], &t[i + 3..]),
            None => break,
        }
    }
    let t = t.trim_end_matches(['.', ',']);
    let t = match t.split_once('=') {
        Some((l, r)) if l.len() == 1 && l.chars().all(|c| c.is_ascii_alphabetic()) => r,
        _ => t,
    };
    // `(E)` is `E`.
    let t = match t.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        Some(inner) if inner.len() == 1 => inner,
        _ => t,
    };
    // A bare comma list in any order (not thousands).
    if !t.contains(['(', '[', '{']) && t.contains(',') && number(t).is_none() {
        let mut items: Vec<&str> = t.split(',').collect();
        items.sort_unstable();
        return items.join(",");
    }
    t.to_string()
}

/// A plain number: integer (thousands commas in groups of three), decimal or simple fraction.
fn number(s: &str) -> Option<f64> {
    if let Some((neg, a, b)) = simple_fraction(s) {
        return (b != 0).then(|| if neg { -1.0 } else { 1.0 } * a as f64 / b as f64);
    }
    let body = s.strip_prefix('-').unwrap_or(s);
    let int = body.split('.').next().unwrap_or("");
    let groups: Vec<&str> = int.split(',').collect();
    if groups.len() > 1
        && (groups[0].is_empty() || groups[0].len() > 3 || groups[1..].iter().any(|g| g.len() != 3))
    {
        return None;
    }
    let digits: String = body.chars().filter(|c| *c != ',').collect();
    let ok = !digits.is_empty()
        && digits.bytes().all(|c| c.is_ascii_digit() || c == b'.')
        && digits.matches('.').count() <= 1;
    let v: f64 = if ok { digits.parse().ok()? } else { return None };
    Some(if s.starts_with('-') { -v } else { v })
}
