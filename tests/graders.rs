//! Hand-written grading cases for the MATH and GSM8K graders, grouped by answer type, with
//! the false positives and misses seen in other graders' test sets as regression cases; the
//! extraction rules; a fuzz test (no panic, bounded time).

use mcts_ps::task::{gsm8k, math, TaskKind};

/// (predicted, gold, equivalent)
type Case = (&'static str, &'static str, bool);

const MATH_NUMBERS: &[Case] = &[
    ("\\frac{1}{2}", "0.5", true),
    ("\\frac12", "\\frac{1}{2}", true),
    ("1/2", "\\frac{1}{2}", true),
    ("\\dfrac{3}{4}", "0.75", true),
    ("\\tfrac{3}{4}", "\\frac34", true),
    ("\\cfrac{1}{2}", "0.5", true),
    ("5\\frac32", "7.5", true),
    ("0.333", "\\frac{1}{3}", false),
    ("1\\frac12", "1.5", true),
    ("1 1/2", "\\frac{3}{2}", true),
    ("1 1/2", "11/2", false),
    ("11/2", "5.5", true),
    ("2\\sqrt{2}", "\\sqrt{8}", true),
    ("\\sqrt2", "\\sqrt{2}", true),
    ("\\sqrt{2}", "1.414", false),
    ("2\\pi", "6.283185307179586", true),
    ("\\pi", "3.14", false),
    ("10^{3}", "1000", true),
    ("1.5 \\times 10^{3}", "1500", true),
    ("1.5 \\times 10^{3}", "150", false),
    ("2^{10}", "1024", true),
    ("2^{10}", "2^{9}", false),
    ("-3", "-3", true),
    ("-3", "3", false),
    ("28\\%", "28", true),
    ("28", "28\\%", true),
    ("0.28", "28\\%", false),
    ("28 percent", "28", true),
    ("90^\\circ", "90", true),
    ("90^{\\circ}", "90", true),
    ("45", "90^\\circ", false),
    ("4210_{7}", "4210_7", true),
    ("4210_7", "4211_7", false),
    ("1010_2", "10_{10}", true),
    ("32, 349", "32349", false),
    ("32{,}349", "32349", true),
    ("32,349", "32349", true),
    ("5!", "120", true),
    ("5!", "24", false),
    ("\\binom{5}{2}", "10", true),
    ("e", "2.718281828459045", true),
    ("2\\mathrm{e}", "2", false),
    ("2e", "2\\mathrm{e}", true),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}", true),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt{2}}{2}", false),
    ("0.5", "5", false),
    ("5.0", "5", true),
    (".5", "0.5", true),
    ("-\\frac{1}{2}", "\\frac{-1}{2}", true),
    ("\\frac{1}{-2}", "-0.5", true),
    ("\\left( 3 \\right)", "3", true),
    ("\\$18.90", "18.90", true),
    ("18.09", "18.9", false),
    ("\\sqrt[3]{8}", "2", true),
    ("\\sqrt[3]{-8}", "-2", true),
    ("\\log_2 8", "3", true),
    ("\\ln 1", "0", true),
    ("1e3", "1000", false),
    ("\\infty", "\\infty", true),
    ("-\\infty", "\\infty", false),
    ("12", "\\boxed{12}", true),
    ("3\\sqrt{3}", "\\sqrt{27}", true),
    ("3\\sqrt{3}", "\\sqrt{18}", false),
    ("\\frac{2}{4}", "\\frac{1}{2}", true),
    ("6", "\\text{6}", true),
    ("10\\text{ cm}^2", "10", true),
    ("10 \\text{ inches}", "10", true),
    ("10\\text{ cm}", "100", false),
    ("5 \\text{ dollars}", "5", true),
    ("1,000", "1000", true),
    ("1,000", "100", false),
    ("\\frac{7}{3}", "2\\frac{1}{3}", true),
    ("2\\frac{1}{3}", "\\frac{2}{3}", false),
    ("\\frac{9}{2}", "4.5", true),
    ("\\frac{9}{2}", "4.05", false),
    ("7", "-7", false),
    ("0", "0.0001", false),
    ("100", "10^2", true),
    ("", "5", false),
    ("\\frac{1}{3}", "0.3", false),
    ("2\\sqrt{3}", "3\\sqrt{2}", false),
    ("\\frac{5}{2}", "5\\frac12", false),
    // Thousands separators spelled with a LaTeX space (MATH writes `32,\\! 349`).
    ("32,\\! 349", "32349", true),
    ("32,\\!349", "32,349", true),
    ("111, \\! 111, \\! 111", "111111111", true),
    ("1\\,000", "1000", true),
    ("32,\\! 349", "32, 349", false),
    ("32,\\! 349", "3249", false),
    // A number with unit words after it (`\\text{}` or not).
    ("10 weeks", "10", true),
    ("10 square feet", "10", true),
    ("10 weeks", "100", false),
    // Words that scale or transform a number are not units.
    ("4 hundred", "4", false),
    ("2 million", "2", false),
    ("7 squared", "7", false),
    ("3 factorial", "3", false),
    ("5 dozen", "5", false),
    ("50 percent", "50", true),
    ("10 x", "10", false),
    // Tiny is not zero: rational arithmetic is compared relatively (MATH has `\\frac{1}{2^{98}}`).
    ("\\frac{1}{2^{98}}", "0", false),
    ("10^{-12}", "0", false),
    ("2^{-98}", "\\frac{1}{2^{98}}", true),
    ("\\sin \\pi", "0", true),
    // Beyond f64: compared as written.
    ("x = 2^{4950}", "2^{4950}", true),
    ("2^{4950}", "2^{4951}", false),
    ("\\frac{1}{2004!}", "\\frac{1}{2005!}", false),
    // Bases with a sign or a radix point.
    ("-37_8", "-37_{8}", true),
    ("-37_8", "37_8", false),
    ("0.0011_{2}", "0.0011_2", true),
    ("0.0011_2", "0.0101_2", false),
];

const MATH_EXPRESSIONS: &[Case] = &[
    ("\\frac{x+2}{7}", "\\frac{x}{7}+\\frac{2}{7}", true),
    ("x^2+2x+1", "(x+1)^2", true),
    ("x^2+2x+1", "(x+1)^3", false),
    ("2x+3", "3+2x", true),
    ("2x+3", "2x-3", false),
    ("\\sqrt{x^2}", "x", true),
    ("a^2-b^2", "(a-b)(a+b)", true),
    ("a^2-b^2", "(a-b)^2", false),
    ("\\frac{1}{x}", "x^{-1}", true),
    ("\\sin^2 x + \\cos^2 x", "1", true),
    ("2\\sin x \\cos x", "\\sin(2x)", true),
    ("\\sin x", "\\cos x", false),
    ("x y", "xy", true),
    ("xy", "x+y", false),
    ("3(x-1)", "3x-3", true),
    ("3(x-1)", "3x-1", false),
    ("\\frac{x^2-1}{x-1}", "x+1", true),
    ("x^3", "x^2", false),
    ("\\pi r^2", "r^2 \\pi", true),
    ("2\\pi r", "\\pi r^2", false),
    ("n(n+1)/2", "\\frac{n^2+n}{2}", true),
    ("\\frac{n(n+1)}{2}", "\\frac{n(n-1)}{2}", false),
    ("e^{x}", "\\exp(x)", true),
    ("\\ln(x^2)", "2\\ln x", true),
    ("x^{1/2}", "\\sqrt{x}", true),
    ("\\frac{1+\\sqrt{5}}{2}", "\\frac{1-\\sqrt{5}}{2}", false),
    ("\\frac{1+\\sqrt{5}}{2}", "\\frac{\\sqrt{5}+1}{2}", true),
    ("2^{n+1}", "2 \\cdot 2^n", true),
    ("2^{n+1}", "2^n + 1", false),
    ("\\frac{a}{b}", "\\frac{b}{a}", false),
    ("x^2", "2x", false),
    ("\\sqrt{x}", "x^2", false),
];

const MATH_TUPLES: &[Case] = &[
    ("(1,\\frac{9}{2})", "(1,4.5)", true),
    ("(1, 2)", "(2, 1)", false),
    ("(1, 2, 3)", "(1,2,3)", true),
    ("(3, -4)", "(3,4)", false),
    ("\\begin{pmatrix} 1/2 \\\\ 3 \\end{pmatrix}", "\\begin{pmatrix} 0.5 \\\\ 3 \\end{pmatrix}", true),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(1,2)", true),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(2,1)", false),
    ("x \\\\ \\sqrt{3}", "x \\sqrt{3}", false),
    ("(p,q) = (2, 3)", "(2,3)", true),
    ("(2,3)", "(2,3,0)", false),
    ("\\left(\\frac{1}{2}, -\\frac{3}{4}\\right)", "(0.5, -0.75)", true),
    ("(0.5, 0.75)", "(0.5, -0.75)", false),
    ("(1,2)", "\\{1,2\\}", false),
    // Inside brackets a comma always separates: `(1,100)` is a pair, not 1100.
    ("(1, 100)", "(1,100)", true),
    ("(20,100)", "(20, 100)", true),
    ("(1,100)", "1100", false),
    ("(1,100)", "1,100", false),
    ("(1,100)", "(100,1)", false),
    ("(1,100)", "(1,10)", false),
];

const MATH_SETS: &[Case] = &[
    ("\\{1,2\\}", "\\{2,1\\}", true),
    ("1, 2", "2, 1", true),
    ("1, 2", "1, 2, 3", false),
    ("\\{1,2\\}", "\\{1,3\\}", false),
    ("6 \\text{ and } 8", "68", false),
    ("6 \\text{ and } 8", "6, 8", true),
    ("\\pm 2", "2, -2", true),
    ("1 \\pm \\sqrt{2}", "1+\\sqrt{2}, 1-\\sqrt{2}", true),
    ("\\pm 2", "2", false),
    ("-2, 2", "\\{2, -2\\}", true),
    ("3, 5, 7", "7, 5, 3", true),
    ("3, 5", "3, 5, 5", false),
    ("1, 2", "(1, 2)", false),
    // "and" / "or" between items, Oxford comma, empty items.
    ("19, 46, \\text{ and } 82", "19, 46, and 82", true),
    ("19, 46, and 82", "19, 46, 82", true),
    ("6, 8\\text{, and }10", "6, 8, 10", true),
    ("2 or 3", "2, 3", true),
    ("19, 46, and 82", "19, 46, 28", false),
    ("19, 46, \\text{ and } 82", "194682", false),
    ("19, 46, and 82", "19, 46", false),
    ("2 or 3", "3", false),
    // A bare `70,110` is the number 70110, or the list 70, 110 in that order.
    ("70,110", "70110", true),
    ("70,110", "70, 110", true),
    ("70,110", "70^\\circ, 110^\\circ", true),
    ("31,250", "31250", true),
    ("70,110", "110, 70", false),
    ("70,110", "(70, 110)", false),
    ("70,110", "70, 11", false),
    ("1,000", "1, 0", false),
    ("1,000", "1, 000", false),
    // Semicolon-separated points, and a point in a union.
    ("(-4, 27);(2, 15)", "(2, 15); (-4, 27)", true),
    ("(-4, 27);(2, 15)", "(-4, 27)", false),
    ("(-4, 27);(2, 15)", "(-4, 27);(2, 16)", false),
];

const MATH_INTERVALS: &[Case] = &[
    ("[1/2, \\infty)", "x \\in [0.5, \\infty)", true),
    ("[1/2, \\infty)", "(1/2, \\infty)", false),
    ("(-\\infty, 3)", "x < 3", true),
    ("(-\\infty, 3]", "x \\leq 3", true),
    ("(-\\infty, 3]", "x < 3", false),
    ("[2, 5)", "2 \\le x < 5", true),
    ("(-\\infty, 0) \\cup (1, \\infty)", "(1, \\infty) \\cup (-\\infty, 0)", true),
    ("(-\\infty, 0) \\cup (1, \\infty)", "(-\\infty, 0) \\cup [1, \\infty)", false),
    ("[0,1]", "[0,1)", false),
    ("(2,3)", "(2, 3]", false),
    ("\\left[ -1, 1 \\right]", "[-1,1]", true),
    ("x > 4", "(4, \\infty)", true),
    ("(0, 1)", "[0, 1]", false),
    ("(2,12) \\cup (12,102)", "(2, 12) \\cup (12, 102)", true),
    ("(2,12) \\cup (12,102)", "(2, 12102)", false),
    ("\\{-1\\} \\cup [0,7)", "[0,7) \\cup \\{-1\\}", true),
    ("x \\in \\{-1\\} \\cup [0,7)", "\\{-1\\}\\cup[0,7)", true),
    ("\\{-1\\} \\cup [0,7)", "[-1,7)", false),
    ("\\{-1\\} \\cup [0,7)", "\\{1\\} \\cup [0,7)", false),
];

const MATH_MATRICES: &[Case] = &[
    (
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
        "\\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}",
        true,
    ),
    (
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
        "\\begin{pmatrix} 1 & 3 \\\\ 2 & 4 \\end{pmatrix}",
        false,
    ),
    (
        "\\begin{pmatrix} 1/2 & 0 \\\\ 0 & 1 \\end{pmatrix}",
        "\\begin{pmatrix} 0.5 & 0 \\\\ 0 & 1 \\end{pmatrix}",
        true,
    ),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 3 \\end{pmatrix}", false),
    (
        "\\begin{pmatrix} \\cos\\theta & -\\sin\\theta \\\\ \\sin\\theta & \\cos\\theta \\end{pmatrix}",
        "\\begin{pmatrix}\\cos \\theta&-\\sin \\theta\\\\ \\sin \\theta&\\cos \\theta\\end{pmatrix}",
        true,
    ),
    ("\\begin{pmatrix} 2 \\\\ -1 \\end{pmatrix}", "\\begin{pmatrix} -1 \\\\ 2 \\end{pmatrix}", false),
];

const MATH_COMPLEX: &[Case] = &[
    ("1+2i", "i(2-i)", true),
    ("1+2i", "1-2i", false),
    ("2i", "\\sqrt{-4}", true),
    ("i^2", "-1", true),
    ("3-4i", "(2-i)^2", true),
    ("3+4i", "(2-i)^2", false),
    ("\\frac{1}{i}", "-i", true),
    ("5", "5i", false),
    ("i", "-i", false),
];

const MATH_EQUATIONS: &[Case] = &[
    ("y = 2x + 3", "2x + 3", true),
    ("f(x) = 2x + 3", "2x + 3", true),
    ("y = 2x + 3", "y = 3 + 2x", true),
    ("y = 2x + 3", "y = 2x - 3", false),
    ("x + y = 1", "2x + 2y = 2", true),
    ("x + y = 1", "x - y = 1", false),
    ("x = 5", "5", true),
    ("x = 5", "6", false),
    ("2x + 3 = y", "2x+3", true),
    ("y = x^2", "x = y^2", false),
    ("y = 2x", "y = x/2", false),
];

const MATH_TEXT: &[Case] = &[
    ("\\text{(C)}", "\\text{C}", true),
    ("(C)", "C", true),
    ("C", "D", false),
    ("\\text{(A)}", "B", false),
    ("\\text{Monday}", "\\text{monday}", true),
    ("\\text{Monday}", "\\text{Tuesday}", false),
    ("\\text{even}", "\\text{odd}", false),
    ("y = \\text{odd}", "\\text{odd}", true),
    ("z = \\text{Friday}", "\\text{Friday}", true),
    ("y = \\text{odd}", "\\text{even}", false),
    ("y = \\text{CFA}", "\\text{ACF}", false),
];

/// Cases where the verdict depends on which side is the gold: a number in another base.
/// (predicted, gold, equivalent)
const MATH_ORIENTED: &[Case] = &[
    // The gold asks for base 7; a model that drops the subscript writes the same digits.
    ("4210", "4210_7", true),
    ("25", "25_{6}", true),
    ("17", "25_6", false),
    // A plain gold; the prediction's base says what number it means.
    ("4210_7", "4210", false),
    ("10000_2", "10{,}000", false),
    ("25_{6}", "25", false),
    ("10000_2", "16", true),
    ("12_{10}", "12", true),
];

const MATH_GROUPS: &[(&str, &[Case])] = &[
    ("numbers", MATH_NUMBERS),
    ("expressions", MATH_EXPRESSIONS),
    ("tuples", MATH_TUPLES),
    ("sets", MATH_SETS),
    ("intervals", MATH_INTERVALS),
    ("matrices", MATH_MATRICES),
    ("complex", MATH_COMPLEX),
    ("equations", MATH_EQUATIONS),
    ("text", MATH_TEXT),
];

const GSM: &[Case] = &[
    ("16,\\!386.20", "16386.2", true),
    ("14{,}916", "14916", true),
    ("AZYUK2A", "2", false),
    ("\\frac{1+\\sqrt{5}}{2}", "2", false),
    ("12 - 2", "2", false),
    ("12 - 2", "10", false),
    ("1 4", "14", false),
    ("$1,000,000", "1000000", true),
    ("18 apples", "18", true),
    ("18 apples", "19", false),
    ("x = 18", "18", true),
    ("\\boxed{18}", "18", true),
    ("five", "5", false),
    ("5 and 6", "5", false),
    ("5%", "5", true),
    ("0.05", "5", false),
    ("$2.5 per hour", "2.5", true),
    ("2,50", "250", false),
    ("3.14159", "3.14", false),
    ("12,345", "12345", true),
    ("1,2345", "12345", false),
    ("1\u{202f}234", "1234", true),
    ("1\u{a0}234", "1234", true),
    ("$28 \\%$", "28", true),
    ("2.50", "2.5", true),
    ("-5", "5", false),
    ("1/2", "0.5", true),
    ("10^3", "1000", false),
    // Units in `\\text{}`, Markdown bold, `\\( \\)`.
    ("10 weeks", "10", true),
    ("10 \\text{ weeks}", "10", true),
    ("10\\text{weeks}", "10", true),
    ("**10**", "10", true),
    ("**10** weeks", "10", true),
    ("\\(10\\)", "10", true),
    ("10 \\text{ weeks}", "100", false),
    ("10 \\text{ and } 20", "10", false),
    ("\\text{10 weeks and 2 days}", "10", false),
    ("**10** or **12**", "10", false),
];

fn check(kind: &str, cases: &[Case], f: fn(&str, &str) -> bool) -> (usize, usize) {
    let mut wrong = Vec::new();
    for (p, g, want) in cases {
        if f(p, g) != *want {
            wrong.push(format!("{kind}: {p:?} vs {g:?} should be {want}"));
        }
    }
    assert!(wrong.is_empty(), "{} wrong:\n{}", wrong.len(), wrong.join("\n"));
    (cases.len(), cases.iter().filter(|c| !c.2).count())
}

#[test]
fn math_grader_cases_by_answer_type() {
    let (mut n, mut neg) = (0, 0);
    for (kind, cases) in MATH_GROUPS {
        let (a, b) = check(kind, cases, math::answers_match);
        n += a;
        neg += b;
        // Symmetric: the grader does not care which side is the gold.
        check(kind, &cases.iter().map(|(p, g, w)| (*g, *p, *w)).collect::<Vec<_>>(), math::answers_match);
    }
    let (a, b) = check("oriented", MATH_ORIENTED, math::answers_match);
    n += a;
    neg += b;
    assert!(n >= 150 && neg * 10 >= n * 4, "{n} MATH cases, {neg} negative");
}

#[test]
fn gsm8k_grader_cases() {
    let (n, neg) = check("gsm8k", GSM, gsm8k::answers_match);
    // The grader's own unit cases (src/task/gsm8k.rs) add 40 more, half negative.
    assert!(n + 40 >= 60 && (neg + 20) * 10 >= (n + 40) * 4, "{n} cases, {neg} negative");
}

#[test]
fn extraction_stops_at_the_sentence_and_keeps_every_box() {
    let gsm = TaskKind::Gsm8k;
    assert_eq!(
        gsm.extract_answer("The final answer is $28 \\%$. I hope it is correct.").as_deref(),
        Some("28 \\%")
    );
    assert!(gsm.is_correct("The final answer is $28 \\%$. I hope it is correct.", "28"));
    assert_eq!(gsm.extract_answer("The final answer is 3.5. Done").as_deref(), Some("3.5"));
    assert_eq!(math::extract("so \\boxed{1}, \\boxed{2}").as_deref(), Some("1, 2"));
    assert_eq!(math::extract("\\boxed{1} and \\boxed{2}").as_deref(), Some("1, 2"));
    assert_eq!(math::extract("so it is \\boxed 5$.").as_deref(), Some("5"));
    assert_eq!(math::extract("first \\boxed{1}. Then more work gives \\boxed{2}").as_deref(), Some("2"));
    assert!(TaskKind::Math.is_correct("so $x = \\boxed{1}$ or $x = \\boxed{2}$", "1, 2"));
    assert!(gsm.is_correct("The final answer is $10 \\text{ weeks}$.", "10"));
    assert!(gsm.is_correct("The final answer is **10 weeks**.", "10"));
}

/// Boxes side by side are one list answer, so a hedge is never correct against a single gold;
/// boxes that all state the same answer are that answer (MATH's `\\boxed{x+11}$ or
/// $\\boxed{11+x}`).
#[test]
fn side_by_side_boxes_are_a_list_unless_they_agree() {
    let math = TaskKind::Math;
    let hedge = "The answers are $\\boxed{-2}$ and $\\boxed{1}$.";
    assert_eq!(math::extract(hedge).as_deref(), Some("-2, 1"));
    assert!(math.is_correct(hedge, "-2, 1"));
    assert!(!math.is_correct(hedge, "1"));
    assert!(!math.is_correct(hedge, "-2"));
    assert!(!math.is_correct("$\\boxed{1}$ or $\\boxed{-2}$", "-2"));
    let same = "This yields $\\boxed{x+11}$ or $\\boxed{11+x}$.";
    assert_eq!(math::extract(same).as_deref(), Some("11+x"));
    assert!(math.is_correct(same, "11+x"));
    assert!(!math.is_correct(same, "x+12"));
    let forms = "$AF = \\boxed{\\frac{25}{13}} = \\boxed{1\\frac{12}{13}}$ units";
    assert!(math.is_correct(forms, "1\\frac{12}{13}"));
    assert!(math.is_correct("$\\boxed{28}$ or $\\boxed{28_9}$", "28_9"));
    // Boxes that agree only in part are still a list.
    assert!(!math.is_correct("$\\boxed{2}$, $\\boxed{2}$ or $\\boxed{3}$", "2"));
    assert_eq!(
        math::extract("The final answer is $\\frac{1}{2}$. I hope it is correct.").as_deref(),
        Some("\\frac{1}{2}")
    );
}

/// Random strings over LaTeX-ish tokens: the grader never panics. The slowest case is printed
/// (`--nocapture`; speed is not asserted in tests); the grader's bound is structural: input
/// length, parser depth, exponent and factorial caps.
#[test]
fn fuzzed_inputs_never_panic_and_finish_fast() {
    const TOKENS: &[&str] = &[
        "1",
        "2",
        "0",
        "9",
        ".",
        ",",
        "x",
        "y",
        "i",
        "e",
        "+",
        "-",
        "*",
        "/",
        "^",
        "_",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        "\\{",
        "\\}",
        "\\frac",
        "\\sqrt",
        "\\pi",
        "\\infty",
        "\\cup",
        "\\pm",
        "\\text{",
        "and",
        "\\\\",
        "&",
        "=",
        "<",
        "\\leq",
        "!",
        "|",
        " ",
        "\\begin{pmatrix}",
        "\\end{pmatrix}",
        "\\boxed{",
        "\\sin",
        "\\log_",
        "%",
        "$",
        "\\in",
        "^{",
        "99999",
        "\\binom",
        "\\circ",
        "f(x)",
        "\u{2212}",
        "°",
    ];
    let mut s = mcts_ps::rng::Stream::new(7, "grader-fuzz", &[]);
    let mut worst = std::time::Duration::ZERO;
    for _ in 0..10_000 {
        let n = 1 + (s.next_f64() * 24.0) as usize;
        let a: String = (0..n).map(|_| TOKENS[(s.next_f64() * TOKENS.len() as f64) as usize]).collect();
        let m = 1 + (s.next_f64() * 24.0) as usize;
        let b: String = (0..m).map(|_| TOKENS[(s.next_f64() * TOKENS.len() as f64) as usize]).collect();
        let t = std::time::Instant::now();
        let _ = math::answers_match(&a, &b);
        let _ = math::extract(&a);
        let _ = gsm8k::answers_match(&a, &b);
        let _ = gsm8k::extract(&a);
        worst = worst.max(t.elapsed());
    }
    // Deep nesting and long inputs.
    for deep in ["(".repeat(5000), "\\frac{".repeat(3000), "2^".repeat(3000), "1".repeat(20_000)] {
        let t = std::time::Instant::now();
        let _ = math::answers_match(&deep, "1");
        worst = worst.max(t.elapsed());
    }
    eprintln!("grader fuzz: 10004 cases, slowest {worst:?}");
}

/// Our MATH grader against Math-Verify's verdicts on pairs generated by
/// `tests/fixtures/grader/make_math_verify_pairs.py`: prints the agreement per answer type and
/// requires every disagreement to be listed in `disagreements.tsv` with who is right and why
/// (and every listed one to still disagree).
#[test]
fn math_grader_against_math_verify() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grader");
    let pairs = std::fs::read_to_string(root.join("math_verify_pairs.jsonl")).unwrap();
    let listed = std::fs::read_to_string(root.join("disagreements.tsv")).unwrap();
    let mut expected: std::collections::BTreeSet<(String, String)> = Default::default();
    for line in listed.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(cols.len() == 5, "disagreements.tsv: want type, gold, pred, right, reason: {line:?}");
        assert!(matches!(cols[3], "ours" | "theirs"), "disagreements.tsv: who is right: {line:?}");
        assert!(!cols[4].trim().is_empty(), "disagreements.tsv: no reason: {line:?}");
        expected.insert((cols[1].to_string(), cols[2].to_string()));
    }
    let mut per_type: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    let mut unlisted = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for line in pairs.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (kind, gold, pred) =
            (v["type"].as_str().unwrap(), v["gold"].as_str().unwrap(), v["pred"].as_str().unwrap());
        let theirs = v["math_verify"].as_bool().unwrap();
        let ours = math::answers_match(pred, gold);
        let e = per_type.entry(kind.to_string()).or_default();
        e.0 += 1;
        e.1 += usize::from(ours == theirs);
        if ours != theirs {
            let key = (gold.to_string(), pred.to_string());
            if !expected.contains(&key) {
                unlisted.push(format!("{kind}\t{gold}\t{pred}\tours={ours} theirs={theirs}"));
            }
            seen.insert(key);
        }
    }
    for (kind, (n, agree)) in &per_type {
        eprintln!(
            "math-verify agreement, {kind:<12} {agree:>3} / {n:<3} ({:.0}%)",
            100.0 * *agree as f64 / *n as f64
        );
    }
    let stale: Vec<_> = expected.difference(&seen).collect();
    assert!(unlisted.is_empty(), "disagreements not listed in disagreements.tsv:\n{}", unlisted.join("\n"));
    assert!(stale.is_empty(), "listed disagreements that now agree: {stale:?}");
}
