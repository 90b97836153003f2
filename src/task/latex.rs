//! Answer equivalence for MATH-style LaTeX answers: a small parser from an answer string to a
//! structured [`Answer`] (expression, equation, tuple, set, interval union, matrix, text) and a
//! comparison that is numeric where it can be and symbolic through evaluation at fixed random
//! points otherwise.
//!
//! What is equal (checked by the tests in `tests/graders.rs`, and on every gold of MATH in
//! `tests/graders_real.rs`):
//! - numbers in any notation: fractions, mixed numbers (`1\frac12`, `1 1/2`), decimals,
//!   percent (`28\%` is 28, as MATH writes it), `\sqrt`, `\pi`, powers, `\times 10^k`,
//!   degrees (dropped); numbers beyond f64 (`2^{4950}`) only as the same expression;
//! - thousands separators `32,349`, `32{,}349`, `32,\! 349`, `1\,000`; a plain comma and a space
//!   (`32, 349`) is a list, and inside brackets every comma separates (`(1,100)` is a pair); a
//!   bare `70,110` is the number 70110 or, against a list, the list 70, 110 in that order;
//! - numbers in another base (`4210_7` is `4210_{7}`, `-37_8`, `0.0011_2`), compared by value;
//!   against a plain number, a gold in base b equals the same digits (`4210`), a prediction in
//!   base b equals its value (`10000_2` is 16), the one case where the verdict depends on which
//!   side is the gold;
//! - units dropped after a number, in `\text{}` (`10\text{ cm}^2` is 10) or as plain lower-case
//!   words (`10 weeks`), but never by merging what is around them: `6 \text{ and } 8` is the
//!   list 6, 8;
//! - labels stripped: `x =`, `f(x) =`, `(p,q) =`, `x \in`;
//! - ordered tuples and vectors element-wise (`(1,\frac92)` is `(1,4.5)`), a column `pmatrix`
//!   equal to the tuple of its entries, matrices entry-wise, unordered sets (`\{1,2\}`, and a bare
//!   list, which MATH uses for "all solutions": commas, "and", "or", Oxford commas, semicolons)
//!   as multisets, intervals and unions (points `\{-1\}` included) by their endpoints and
//!   closedness, `\pm` as the set of both signs;
//! - complex numbers (`i` is the imaginary unit): `1+2i` is `i(2-i)`;
//! - expressions with variables when they agree at 6 fixed points (complex arithmetic, so
//!   `\sqrt{x-3}` is defined everywhere), equations when `lhs - rhs` agree up to a constant
//!   nonzero factor;
//! - multiple-choice letters and other text case- and wrapper-insensitively (`\text{(C)}` is `C`,
//!   `y = \text{odd}` is `odd`).
//!
//! Bounded: answers over [`MAX_LEN`] characters are compared as normalised text only, the parser
//! stops at depth [`MAX_DEPTH`], powers and factorials are capped, so every comparison finishes
//! in microseconds and nothing panics (fuzzed in the tests).

use std::fmt;

/// Longest answer parsed (longer ones are compared as text).
pub const MAX_LEN: usize = 1000;
/// Deepest nesting the parser follows.
pub const MAX_DEPTH: usize = 40;

// ---------------------------------------------------------------------------------------------
// complex numbers

/// A complex number (the answers' arithmetic: `i` and square roots of negatives are common).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct C {
    re: f64,
    im: f64,
}

impl C {
    const fn r(re: f64) -> Self {
        Self { re, im: 0.0 }
    }
    const I: C = C { re: 0.0, im: 1.0 };
    fn add(self, o: C) -> C {
        C { re: self.re + o.re, im: self.im + o.im }
    }
    fn sub(self, o: C) -> C {
        C { re: self.re - o.re, im: self.im - o.im }
    }
    fn mul(self, o: C) -> C {
        C { re: self.re * o.re - self.im * o.im, im: self.re * o.im + self.im * o.re }
    }
    fn div(self, o: C) -> C {
        let d = o.re * o.re + o.im * o.im;
        if d == 0.0 {
            return C::r(f64::NAN);
        }
        C { re: (self.re * o.re + self.im * o.im) / d, im: (self.im * o.re - self.re * o.im) / d }
    }
    fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
    fn is_real(self) -> bool {
        self.im.abs() <= 1e-12 * self.re.abs().max(1.0)
    }
    fn finite(self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }
    fn ln(self) -> C {
        C { re: self.abs().ln(), im: self.im.atan2(self.re) }
    }
    fn exp(self) -> C {
        let m = self.re.exp();
        C { re: m * self.im.cos(), im: m * self.im.sin() }
    }
    fn sqrt(self) -> C {
        if self.im == 0.0 {
            return if self.re >= 0.0 { C::r(self.re.sqrt()) } else { C { re: 0.0, im: (-self.re).sqrt() } };
        }
        let m = self.abs();
        let re = ((m + self.re) / 2.0).sqrt();
        let im = ((m - self.re) / 2.0).sqrt().copysign(self.im);
        C { re, im }
    }
    fn pow(self, e: C) -> C {
        if e.im == 0.0 && e.re.fract() == 0.0 && e.re.abs() <= 64.0 {
            // Integer powers by multiplication (exact for exact inputs).
            let n = e.re as i64;
            let mut acc = C::r(1.0);
            for _ in 0..n.unsigned_abs() {
                acc = acc.mul(self);
            }
            return if n < 0 { C::r(1.0).div(acc) } else { acc };
        }
        if self.im == 0.0 && e.im == 0.0 && self.re > 0.0 {
            return C::r(self.re.powf(e.re));
        }
        if self.im == 0.0 && e.im == 0.0 && self.re < 0.0 {
            // Real odd roots of negatives (`(-8)^{1/3} = -2`), as a reader means them.
            let inv = 1.0 / e.re;
            if (inv - inv.round()).abs() < 1e-9 && (inv.round() as i64) % 2 != 0 {
                return C::r(-(-self.re).powf(e.re));
            }
        }
        if self.re == 0.0 && self.im == 0.0 {
            return if e.re > 0.0 { C::r(0.0) } else { C::r(f64::NAN) };
        }
        e.mul(self.ln()).exp()
    }
    fn sin(self) -> C {
        C { re: self.re.sin() * self.im.cosh(), im: self.re.cos() * self.im.sinh() }
    }
    fn cos(self) -> C {
        C { re: self.re.cos() * self.im.cosh(), im: -self.re.sin() * self.im.sinh() }
    }
}

/// Numbers equal up to a relative tolerance.
fn near(a: C, b: C, tol: f64) -> bool {
    if !a.finite() || !b.finite() {
        return false;
    }
    let scale = a.abs().max(b.abs()).max(1.0);
    a.sub(b).abs() <= tol * scale
}

// ---------------------------------------------------------------------------------------------
// expressions

/// An arithmetic expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A number.
    Num(f64),
    /// A variable (a letter, with its subscript if any).
    Var(String),
    /// `i`.
    I,
    /// `\infty` (sign through `Neg`).
    Inf,
    /// Sum.
    Add(Box<Expr>, Box<Expr>),
    /// Difference.
    Sub(Box<Expr>, Box<Expr>),
    /// Product.
    Mul(Box<Expr>, Box<Expr>),
    /// Quotient.
    Div(Box<Expr>, Box<Expr>),
    /// Power.
    Pow(Box<Expr>, Box<Expr>),
    /// Negation.
    Neg(Box<Expr>),
    /// A named function of one argument (`sqrt`, `sin`, `ln`, `abs`, `fact`, ...).
    F(&'static str, Box<Expr>),
}

impl Expr {
    /// Whether evaluation is rational arithmetic on its numbers (no roots, logs or trigonometry,
    /// integer powers only), so its result carries a relative rounding error only.
    fn is_exact(&self) -> bool {
        match self {
            Expr::Num(_) | Expr::Var(_) | Expr::I => true,
            Expr::Inf => false,
            Expr::Add(a, b) | Expr::Sub(a, b) | Expr::Mul(a, b) | Expr::Div(a, b) => {
                a.is_exact() && b.is_exact()
            }
            Expr::Pow(a, b) => {
                let int = |e: &Expr| matches!(e, Expr::Num(n) if n.fract() == 0.0);
                a.is_exact() && (int(b) || matches!(&**b, Expr::Neg(n) if int(n)))
            }
            Expr::Neg(a) => a.is_exact(),
            Expr::F(name, a) => matches!(*name, "abs" | "fact") && a.is_exact(),
        }
    }

    fn has_vars(&self) -> bool {
        match self {
            Expr::Var(_) => true,
            Expr::Num(_) | Expr::I | Expr::Inf => false,
            Expr::Add(a, b) | Expr::Sub(a, b) | Expr::Mul(a, b) | Expr::Div(a, b) | Expr::Pow(a, b) => {
                a.has_vars() || b.has_vars()
            }
            Expr::Neg(a) | Expr::F(_, a) => a.has_vars(),
        }
    }

    fn vars(&self, out: &mut Vec<String>) {
        match self {
            Expr::Var(v) => {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Expr::Num(_) | Expr::I | Expr::Inf => {}
            Expr::Add(a, b) | Expr::Sub(a, b) | Expr::Mul(a, b) | Expr::Div(a, b) | Expr::Pow(a, b) => {
                a.vars(out);
                b.vars(out);
            }
            Expr::Neg(a) | Expr::F(_, a) => a.vars(out),
        }
    }

    /// `+inf` / `-inf` when the expression is a signed infinity.
    fn infinity(&self) -> Option<bool> {
        match self {
            Expr::Inf => Some(true),
            Expr::Neg(a) => a.infinity().map(|s| !s),
            _ => None,
        }
    }

    /// The value at an assignment of the variables.
    fn eval(&self, at: &dyn Fn(&str) -> Option<C>) -> C {
        let nan = C::r(f64::NAN);
        match self {
            Expr::Num(v) => C::r(*v),
            Expr::Var(v) => at(v).unwrap_or(nan),
            Expr::I => C::I,
            Expr::Inf => C::r(f64::INFINITY),
            Expr::Add(a, b) => a.eval(at).add(b.eval(at)),
            Expr::Sub(a, b) => a.eval(at).sub(b.eval(at)),
            Expr::Mul(a, b) => a.eval(at).mul(b.eval(at)),
            Expr::Div(a, b) => a.eval(at).div(b.eval(at)),
            Expr::Pow(a, b) => {
                let (x, e) = (a.eval(at), b.eval(at));
                if e.abs() > 1e4 || (x.abs() > 1e6 && e.re > 64.0) {
                    return nan;
                }
                x.pow(e)
            }
            Expr::Neg(a) => C::r(0.0).sub(a.eval(at)),
            Expr::F(name, a) => {
                let x = a.eval(at);
                match *name {
                    "sqrt" => x.sqrt(),
                    "cbrt" => x.pow(C::r(1.0 / 3.0)),
                    "sin" => x.sin(),
                    "cos" => x.cos(),
                    "tan" => x.sin().div(x.cos()),
                    "sec" => C::r(1.0).div(x.cos()),
                    "csc" => C::r(1.0).div(x.sin()),
                    "cot" => x.cos().div(x.sin()),
                    "arcsin" if x.is_real() => C::r(x.re.asin()),
                    "arccos" if x.is_real() => C::r(x.re.acos()),
                    "arctan" if x.is_real() => C::r(x.re.atan()),
                    "sinh" if x.is_real() => C::r(x.re.sinh()),
                    "cosh" if x.is_real() => C::r(x.re.cosh()),
                    "tanh" if x.is_real() => C::r(x.re.tanh()),
                    "ln" => x.ln(),
                    "log" => x.ln().div(C::r(10f64.ln())),
                    "lg" => x.ln().div(C::r(2f64.ln())),
                    "exp" => x.exp(),
                    "abs" => C::r(x.abs()),
                    "fact" => {
                        if x.is_real() && x.re >= 0.0 && x.re.fract() == 0.0 && x.re <= 170.0 {
                            C::r((1..=x.re as u64).fold(1.0, |a, k| a * k as f64))
                        } else {
                            nan
                        }
                    }
                    _ => nan,
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// structured answers

/// One endpoint-delimited interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Interval {
    /// Lower end.
    pub lo: Expr,
    /// Upper end.
    pub hi: Expr,
    /// `[` rather than `(`.
    pub lo_closed: bool,
    /// `]` rather than `)`.
    pub hi_closed: bool,
}

/// A parsed answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// A number or expression.
    Expr(Expr),
    /// `lhs = rhs` (not a label).
    Eq(Expr, Expr),
    /// An ordered tuple or vector.
    Tuple(Vec<Answer>),
    /// An unordered collection (set braces, a bare comma list, `\pm`).
    Set(Vec<Answer>),
    /// A union of intervals (one or more).
    Intervals(Vec<Interval>),
    /// A matrix, rows of entries.
    Matrix(Vec<Vec<Expr>>),
    /// A number in another base: digits and base.
    Based(String, u32),
    /// Anything else, as normalised text.
    Text(String),
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

// ---------------------------------------------------------------------------------------------
// normalisation (string level)

/// Removes presentation-only LaTeX and rewrites equivalent spellings; keeps token boundaries
/// (spaces stay, so `1 1/2` is not `11/2`).
pub fn clean(s: &str) -> String {
    let mut s = s.trim().to_string();
    // Outer \boxed{..}.
    if let Some(inner) = s.strip_prefix("\\boxed{").and_then(super::answer::matched_braces) {
        if inner.len() + 8 == s.len() {
            s = inner.to_string();
        }
    }
    s = join_digit_groups(&s);
    // Row breaks `\\\\` survive the replacements below (`\\ ` is a space, `\\\\ ` is not).
    const ROW: &str = "\u{1}";
    s = s.replace("\\\\", ROW);
    for (from, to) in [
        ("\\left", ""),
        ("\\right", ""),
        ("\\bigl", ""),
        ("\\bigr", ""),
        ("\\Bigl", ""),
        ("\\Bigr", ""),
        ("\\big", ""),
        ("\\Big", ""),
        ("\\displaystyle", ""),
        ("\\!", ""),
        ("\\,", " "),
        ("\\;", " "),
        ("\\:", " "),
        ("\\quad", " "),
        ("\\qquad", " "),
        ("\\ ", " "),
        ("~", " "),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\cfrac", "\\frac"),
        ("\\dbinom", "\\binom"),
        ("\\tbinom", "\\binom"),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\\circ", ""),
        ("\\degree", ""),
        ("°", ""),
        ("\\%", ""),
        ("%", ""),
        ("\\$", ""),
        ("$", ""),
        ("{,}", ""),
        ("\\lvert", "|"),
        ("\\rvert", "|"),
        ("\\vert", "|"),
        ("\\mid", "|"),
        ("\\lbrace", "\\{"),
        ("\\rbrace", "\\}"),
        ("\\le ", "\\leq "),
        ("\\ge ", "\\geq "),
        ("\\leqslant", "\\leq"),
        ("\\geqslant", "\\geq"),
        ("≤", "\\leq "),
        ("≥", "\\geq "),
        ("\u{2212}", "-"),
        ("×", "\\times "),
        ("·", "\\cdot "),
        ("π", "\\pi "),
        ("∞", "\\infty "),
        ("√", "\\sqrt"),
        ("\\emptyset", "\\varnothing"),
    ] {
        s = s.replace(from, to);
    }
    s = strip_text(&s).replace(ROW, "\\\\");
    // Words a solution writes after its answer.
    for word in [" percent", " degrees", " degree", " units", " unit"] {
        if let Some(t) = s.strip_suffix(word) {
            s = t.to_string();
        }
    }
    let s = s.trim().trim_end_matches('.').trim();
    // Collapse runs of whitespace.
    let s = list_separators(&s.split_whitespace().collect::<Vec<_>>().join(" "));
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    drop_unit_words(&s).to_string()
}

/// Digit groups joined where a thousands separator is spelled with a LaTeX space: `32,\! 349`,
/// `111, \! 111`, `1\,000` are `32349`, `111111`, `1000` (a digit, the separator, exactly three
/// digits). A plain `,` is left alone: `32, 349` stays a list.
fn join_digit_groups(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if i > 0 && b[i - 1].is_ascii_digit() {
            let rest = &s[i..];
            let sep = if let Some(r) = rest.trim_start().strip_prefix(',') {
                r.trim_start().strip_prefix("\\!")
            } else {
                rest.strip_prefix("\\,")
            };
            if let Some(after) = sep.map(str::trim_start) {
                let a = after.as_bytes();
                if a.len() >= 3
                    && a[..3].iter().all(u8::is_ascii_digit)
                    && !a.get(3).is_some_and(u8::is_ascii_digit)
                {
                    i = s.len() - after.len();
                    continue;
                }
            }
        }
        let c = s[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// The words "and" and "or" between list items become commas, and empty items go (`19, 46, and
/// 82`, `6, 8\text{, and }10` and `2 or 3` are lists; `1, 2,` is `1, 2`).
fn list_separators(s: &str) -> String {
    let words: Vec<&str> = s.split(' ').collect();
    let mut t = String::with_capacity(s.len());
    for (k, w) in words.iter().enumerate() {
        if k > 0 {
            t.push(' ');
        }
        let inner = k > 0 && k + 1 < words.len();
        t.push_str(if inner && matches!(*w, "and" | "or") { "," } else { w });
    }
    // Commas with only spaces between them are one comma.
    let mut out = String::with_capacity(t.len());
    for c in t.chars() {
        if c == ',' && out.trim_end().ends_with(',') {
            continue;
        }
        out.push(c);
    }
    out.trim().trim_matches(',').trim().to_string()
}

/// A number followed by plain lower-case words of three letters or more (`10 weeks`, `4 square
/// feet`) is the number: the words are its unit.
fn drop_unit_words(s: &str) -> &str {
    // Words that change the number they follow are not units: "4 hundred" is not 4.
    const NOT_UNITS: &[&str] = &[
        "hundred",
        "hundreds",
        "thousand",
        "thousands",
        "million",
        "millions",
        "billion",
        "billions",
        "trillion",
        "dozen",
        "dozens",
        "squared",
        "cubed",
        "factorial",
        "times",
        "half",
        "halves",
        "third",
        "thirds",
        "quarter",
        "quarters",
        "minus",
        "plus",
        "over",
        "power",
    ];
    let mut end = s.len();
    while let Some(sp) = s[..end].rfind(' ') {
        let w = &s[sp + 1..end];
        if w.len() < 3 || !w.bytes().all(|c| c.is_ascii_lowercase()) || NOT_UNITS.contains(&w) {
            break;
        }
        end = sp;
    }
    let head = s[..end].trim_end();
    if end < s.len() && head.ends_with(|c: char| c.is_ascii_digit()) {
        head
    } else {
        s
    }
}

/// `\text{..}`-like wrappers: connective words become a comma (`6 \text{ and } 8` is the list
/// 6, 8), unit words after something are dropped (`10\text{ cm}^2`), anything else is
/// unwrapped (`\text{(C)}`, `\mathrm{e}`).
fn strip_text(s: &str) -> String {
    let mut out = s.to_string();
    for _ in 0..64 {
        let Some((at, key)) = [
            "\\textbf",
            "\\textrm",
            "\\textit",
            "\\text",
            "\\mbox",
            "\\mathrm",
            "\\mathbf",
            "\\operatorname",
        ]
        .iter()
        .filter_map(|k| find_command(&out, k).map(|a| (a, *k)))
        .min_by_key(|(a, _)| *a) else {
            break;
        };
        let after = &out[at + key.len()..];
        let Some(inner) = after.trim_start().strip_prefix('{').and_then(super::answer::matched_braces) else {
            out.replace_range(at..at + key.len(), "");
            continue;
        };
        let skipped = after.len() - after.trim_start().len();
        let end = at + key.len() + skipped + 1 + inner.len() + 1;
        let word = inner.trim().to_ascii_lowercase();
        let before = out[..at].trim();
        let mut rest = out[end..].to_string();
        let replacement = if matches!(word.as_str(), "and" | "or" | ",") {
            ", ".to_string()
        } else if key != "\\operatorname"
            && word.len() >= 2
            && word.chars().all(|c| c.is_ascii_alphabetic() || c == ' ' || c == '.')
            && before.ends_with(|c: char| c.is_alphanumeric() || matches!(c, '}' | ')' | ']' | '!'))
        {
            // A unit after a quantity: drop it and an exponent on it.
            for exp in ["^2", "^3", "^{2}", "^{3}"] {
                if let Some(r) = rest.strip_prefix(exp) {
                    rest = r.to_string();
                }
            }
            " ".to_string()
        } else if key == "\\operatorname" {
            format!("\\{}", inner.trim())
        } else {
            format!(" {inner} ")
        };
        out = format!("{}{}{}", &out[..at], replacement, rest);
    }
    out
}

/// Position of `\name` not followed by another letter.
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

// ---------------------------------------------------------------------------------------------
// tokens

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(String),
    Letter(char),
    Cmd(String),
    Sym(char),
}

#[derive(Clone, Debug)]
struct T {
    tok: Tok,
    /// Whitespace before this token.
    space: bool,
}

fn tokenize(s: &str) -> Option<Vec<T>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut space = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            space = true;
            i += 1;
            continue;
        }
        let tok = if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            // Thousands separators: `1,234` (a comma, then exactly three digits, no space).
            while chars.get(i) == Some(&',')
                && i + 4 <= chars.len()
                && chars[i + 1..i + 4].iter().all(|d| d.is_ascii_digit())
                && !chars.get(i + 4).is_some_and(|d| d.is_ascii_digit())
            {
                i += 4;
            }
            if i < chars.len() && chars[i] == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let text: String = chars[start..i].iter().filter(|&&x| x != ',').collect();
            out.push(T { tok: Tok::Num(text), space });
            space = false;
            continue;
        } else if c == '\\' {
            let start = i + 1;
            let mut j = start;
            while j < chars.len() && chars[j].is_ascii_alphabetic() {
                j += 1;
            }
            if j == start {
                // `\\`, `\{`, `\}`, `\|`.
                let n = *chars.get(start)?;
                i = start + 1;
                out.push(T { tok: Tok::Cmd(n.to_string()), space });
                space = false;
                continue;
            }
            let name: String = chars[start..j].iter().collect();
            i = j;
            out.push(T { tok: Tok::Cmd(name), space });
            space = false;
            continue;
        } else if c.is_alphabetic() {
            Tok::Letter(c)
        } else if "+-*/^_()[]{},=<>!|&':;".contains(c) {
            Tok::Sym(c)
        } else {
            return None;
        };
        out.push(T { tok, space });
        space = false;
        i += 1;
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// parser

struct P {
    t: Vec<T>,
    i: usize,
    depth: usize,
}

type R<T> = Option<T>;

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i).map(|t| &t.tok)
    }
    fn peek_at(&self, k: usize) -> Option<&Tok> {
        self.t.get(self.i + k).map(|t| &t.tok)
    }
    fn space(&self) -> bool {
        self.t.get(self.i).is_some_and(|t| t.space)
    }
    fn sym(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Sym(c))
    }
    fn cmd(&self, name: &str) -> bool {
        matches!(self.peek(), Some(Tok::Cmd(n)) if n == name)
    }
    fn eat_sym(&mut self, c: char) -> bool {
        let ok = self.sym(c);
        self.i += usize::from(ok);
        ok
    }
    fn eat_cmd(&mut self, name: &str) -> bool {
        let ok = self.cmd(name);
        self.i += usize::from(ok);
        ok
    }
    fn done(&self) -> bool {
        self.i >= self.t.len()
    }
    /// `f` one nesting level deeper, failing beyond [`MAX_DEPTH`]; the level is left again
    /// whether `f` succeeds or not (a failed alternative may be followed by another).
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> R<T>) -> R<T> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    /// expr := term (('+' | '-') term)*
    fn expr(&mut self) -> R<Expr> {
        self.nested(|p| {
            let mut a = p.term()?;
            loop {
                if p.eat_sym('+') {
                    a = Expr::Add(Box::new(a), Box::new(p.term()?));
                } else if p.eat_sym('-') {
                    a = Expr::Sub(Box::new(a), Box::new(p.term()?));
                } else {
                    break;
                }
            }
            Some(a)
        })
    }

    /// term := unary (('*' | '/' | implicit) unary)*
    fn term(&mut self) -> R<Expr> {
        let mut a = self.unary()?;
        loop {
            if self.eat_sym('*') || self.eat_cmd("times") || self.eat_cmd("cdot") || self.eat_cmd("ast") {
                a = Expr::Mul(Box::new(a), Box::new(self.unary()?));
            } else if self.eat_sym('/') || self.eat_cmd("div") {
                a = Expr::Div(Box::new(a), Box::new(self.unary()?));
            } else if self.starts_atom() {
                // Implicit product; two plain numbers side by side are not one.
                if matches!(self.peek(), Some(Tok::Num(_))) && ends_in_number(&a) {
                    return None;
                }
                a = Expr::Mul(Box::new(a), Box::new(self.power()?));
            } else {
                break;
            }
        }
        Some(a)
    }

    fn starts_atom(&self) -> bool {
        match self.peek() {
            Some(Tok::Num(_)) | Some(Tok::Letter(_)) => true,
            Some(Tok::Sym('(')) => true,
            Some(Tok::Sym('|')) => false,
            Some(Tok::Cmd(c)) => {
                matches!(c.as_str(), "frac" | "sqrt" | "pi" | "infty" | "binom")
                    || FUNCS.iter().any(|(n, _)| n == c)
                    || GREEK.contains(&c.as_str())
            }
            _ => false,
        }
    }

    fn unary(&mut self) -> R<Expr> {
        if self.eat_sym('-') {
            return self.nested(|p| Some(Expr::Neg(Box::new(p.unary()?))));
        }
        if self.eat_sym('+') {
            return self.nested(Self::unary);
        }
        self.power()
    }

    /// power := postfix ('^' exponent)?
    fn power(&mut self) -> R<Expr> {
        let base = self.postfix()?;
        if self.eat_sym('^') {
            let e = self.nested(|p| if p.sym('{') { p.group() } else { p.exponent_atom() })?;
            let p = Expr::Pow(Box::new(base), Box::new(e));
            return self.factorials(p);
        }
        Some(base)
    }

    /// A bare exponent: one digit (`x^23` is `x^2 3` in LaTeX), a letter, or a signed atom.
    fn exponent_atom(&mut self) -> R<Expr> {
        if self.eat_sym('-') {
            return self.nested(|p| Some(Expr::Neg(Box::new(p.exponent_atom()?))));
        }
        if matches!(self.peek(), Some(Tok::Num(_))) {
            return self.first_digit();
        }
        self.postfix()
    }

    /// The first digit of the number token here (the rest stays a token): LaTeX reads
    /// `x^23` as `x^2 3` and `\frac12` as `\frac{1}{2}`; a leading `.` is no digit.
    fn first_digit(&mut self) -> R<Expr> {
        let Some(Tok::Num(n)) = self.peek().cloned() else { return None };
        let mut chars = n.chars();
        let first = chars.next()?;
        let rest: String = chars.collect();
        let digit = first.to_digit(10)?;
        if rest.is_empty() {
            self.i += 1;
        } else {
            self.t[self.i].tok = Tok::Num(rest);
            self.t[self.i].space = false;
        }
        Some(Expr::Num(digit as f64))
    }

    fn factorials(&mut self, mut e: Expr) -> R<Expr> {
        while self.eat_sym('!') {
            e = Expr::F("fact", Box::new(e));
        }
        Some(e)
    }

    fn postfix(&mut self) -> R<Expr> {
        let a = self.atom()?;
        self.factorials(a)
    }

    /// `{ expr }`
    fn group(&mut self) -> R<Expr> {
        if !self.eat_sym('{') {
            return None;
        }
        let e = self.expr()?;
        self.eat_sym('}').then_some(e)
    }

    /// An argument: a braced group or a single atom (`\frac12`, `\sqrt2`).
    fn arg(&mut self) -> R<Expr> {
        if self.sym('{') {
            return self.group();
        }
        if matches!(self.peek(), Some(Tok::Num(_))) {
            // `\frac12`: one digit per argument.
            return self.first_digit();
        }
        self.atom()
    }

    fn atom(&mut self) -> R<Expr> {
        self.nested(Self::atom_inner)
    }

    fn atom_inner(&mut self) -> R<Expr> {
        let tok = self.peek()?.clone();
        match tok {
            Tok::Num(n) => {
                self.i += 1;
                let v: f64 = n.parse().ok()?;
                // Mixed number: `1\frac12`, `1 1/2`.
                if self.cmd("frac") && !n.contains('.') {
                    // `arg` may split a number token (`\frac32`): keep the tokens to go back to.
                    let save = (self.i, self.t.clone());
                    self.i += 1;
                    if let (Some(Expr::Num(a)), Some(Expr::Num(b))) = (self.arg(), self.arg()) {
                        if b != 0.0 && a < b && a.fract() == 0.0 && b.fract() == 0.0 {
                            return Some(Expr::Num(v + a / b));
                        }
                    }
                    (self.i, self.t) = save;
                }
                if self.space() && !n.contains('.') {
                    if let (Some(Tok::Num(a)), Some(Tok::Sym('/')), Some(Tok::Num(b))) =
                        (self.peek().cloned(), self.peek_at(1).cloned(), self.peek_at(2).cloned())
                    {
                        let (a, b): (f64, f64) = (a.parse().ok()?, b.parse().ok()?);
                        if b != 0.0 && a < b && self.t.get(self.i + 3).is_none_or(|t| t.space) {
                            self.i += 3;
                            return Some(Expr::Num(v + a / b));
                        }
                    }
                }
                Some(Expr::Num(v))
            }
            Tok::Letter(c) => {
                self.i += 1;
                if c == 'i' {
                    return Some(Expr::I);
                }
                let mut name = c.to_string();
                if self.eat_sym('_') {
                    let sub = if self.sym('{') {
                        self.i += 1;
                        let mut s = String::new();
                        while !self.sym('}') {
                            s.push_str(&tok_text(self.peek()?));
                            self.i += 1;
                        }
                        self.i += 1;
                        s
                    } else {
                        let t = tok_text(self.peek()?);
                        self.i += 1;
                        t
                    };
                    name = format!("{name}_{sub}");
                }
                if c == 'e' && name == "e" {
                    return Some(Expr::F("exp", Box::new(Expr::Num(1.0))));
                }
                Some(Expr::Var(name))
            }
            Tok::Sym('(') | Tok::Sym('[') => {
                let close = if tok == Tok::Sym('(') { ')' } else { ']' };
                self.i += 1;
                let e = self.expr()?;
                self.eat_sym(close).then_some(e)
            }
            Tok::Sym('{') => self.group(),
            Tok::Sym('|') => {
                self.i += 1;
                let e = self.expr()?;
                self.eat_sym('|').then(|| Expr::F("abs", Box::new(e)))
            }
            Tok::Cmd(c) => {
                self.i += 1;
                match c.as_str() {
                    "frac" => {
                        let a = self.arg()?;
                        let b = self.arg()?;
                        Some(Expr::Div(Box::new(a), Box::new(b)))
                    }
                    "binom" => {
                        let n = self.arg()?;
                        let k = self.arg()?;
                        let f = |e: Expr| Expr::F("fact", Box::new(e));
                        let nk = Expr::Sub(Box::new(n.clone()), Box::new(k.clone()));
                        Some(Expr::Div(Box::new(f(n)), Box::new(Expr::Mul(Box::new(f(k)), Box::new(f(nk))))))
                    }
                    "sqrt" => {
                        if self.eat_sym('[') {
                            let n = self.expr()?;
                            if !self.eat_sym(']') {
                                return None;
                            }
                            let x = self.arg()?;
                            return Some(Expr::Pow(
                                Box::new(x),
                                Box::new(Expr::Div(Box::new(Expr::Num(1.0)), Box::new(n))),
                            ));
                        }
                        Some(Expr::F("sqrt", Box::new(self.arg()?)))
                    }
                    "pi" => Some(Expr::Num(std::f64::consts::PI)),
                    "infty" | "inf" => Some(Expr::Inf),
                    "{" => {
                        let e = self.expr()?;
                        self.eat_cmd("}").then_some(e)
                    }
                    name => {
                        if let Some((_, f)) = FUNCS.iter().find(|(n, _)| *n == name) {
                            // `\sin^2 x`, `\log_2 8`, `\sin(x)`, `\sin x`.
                            let mut power = None;
                            let mut base = None;
                            if self.eat_sym('^') {
                                power =
                                    Some(if self.sym('{') { self.group()? } else { self.exponent_atom()? });
                            }
                            if *f == "log" && self.eat_sym('_') {
                                base = Some(self.arg()?);
                            }
                            let x = if self.sym('(') { self.atom()? } else { self.power()? };
                            let mut e = Expr::F(f, Box::new(x));
                            if let Some(b) = base {
                                // log_b x = ln x / ln b
                                let Expr::F(_, x) = e else { return None };
                                e = Expr::Div(
                                    Box::new(Expr::F("ln", x)),
                                    Box::new(Expr::F("ln", Box::new(b))),
                                );
                            }
                            if let Some(p) = power {
                                e = Expr::Pow(Box::new(e), Box::new(p));
                            }
                            return Some(e);
                        }
                        if GREEK.contains(&name) {
                            return Some(Expr::Var(format!("\\{name}")));
                        }
                        None
                    }
                }
            }
            Tok::Sym(_) => None,
        }
    }
}

fn ends_in_number(e: &Expr) -> bool {
    match e {
        Expr::Num(_) => true,
        Expr::Mul(_, b) => ends_in_number(b),
        _ => false,
    }
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Num(n) => n.clone(),
        Tok::Letter(c) | Tok::Sym(c) => c.to_string(),
        Tok::Cmd(c) => format!("\\{c}"),
    }
}

const FUNCS: &[(&str, &str)] = &[
    ("sin", "sin"),
    ("cos", "cos"),
    ("tan", "tan"),
    ("sec", "sec"),
    ("csc", "csc"),
    ("cot", "cot"),
    ("arcsin", "arcsin"),
    ("arccos", "arccos"),
    ("arctan", "arctan"),
    ("sinh", "sinh"),
    ("cosh", "cosh"),
    ("tanh", "tanh"),
    ("ln", "ln"),
    ("log", "log"),
    ("lg", "lg"),
    ("exp", "exp"),
];

const GREEK: &[&str] = &[
    "alpha", "beta", "gamma", "delta", "theta", "lambda", "mu", "sigma", "phi", "omega", "tau", "rho",
    "epsilon",
];

/// Parses a whole string as one expression.
fn parse_expr(s: &str) -> R<Expr> {
    let mut p = P { t: tokenize(s)?, i: 0, depth: 0 };
    let e = p.expr()?;
    p.done().then_some(e)
}

// ---------------------------------------------------------------------------------------------
// structure

/// Splits `s` at top-level occurrences of `sep` (outside any brackets).
fn split_top(s: &str, sep: &str) -> Vec<String> {
    split_top_with(s, sep, true)
}

/// The items of a bracketed list (`(1,100)`, `[a, b]`, `\{1,2\}`): split at every top-level
/// comma. Inside brackets a comma always separates; MATH writes a thousands separator there as
/// `,\!` (joined by [`clean`]), so `(1,100)` is a pair and `1,100` alone is a number.
fn split_items(inner: &str) -> Vec<String> {
    split_top_with(inner, ",", false)
}

/// [`split_top`], with `thousands` telling whether a comma between a digit and exactly three
/// digits is a thousands separator rather than a separator.
fn split_top_with(s: &str, sep: &str, thousands: bool) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && i + 1 < b.len() && (b[i + 1] == b'{' || b[i + 1] == b'}') {
            depth += if b[i + 1] == b'{' { 1 } else { -1 };
            i += 2;
            continue;
        }
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        // A thousands separator (`32,349`) is not a list comma.
        if thousands && sep == "," && c == b',' && thousands_comma(b, i) {
            i += 1;
            continue;
        }
        if depth == 0 && b[i..].starts_with(sep.as_bytes()) {
            parts.push(s[start..i].to_string());
            i += sep.len();
            start = i;
            continue;
        }
        i += 1;
    }
    parts.push(s[start..].to_string());
    parts
}

/// A comma at `i` between a digit and exactly three digits (then no digit).
fn thousands_comma(b: &[u8], i: usize) -> bool {
    i > 0
        && b[i - 1].is_ascii_digit()
        && b.len() >= i + 4
        && b[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        && !b.get(i + 4).is_some_and(u8::is_ascii_digit)
}

/// Whether the brackets of `s` from its first to its last character form one group.
fn one_group(s: &str, open: usize, close_at: usize) -> bool {
    let b = s.as_bytes();
    let mut depth = 0i32;
    for (i, &c) in b.iter().enumerate().take(close_at + 1).skip(open) {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth == 0 && i < close_at {
            return false;
        }
    }
    true
}

/// The answer a string denotes.
pub fn parse(answer: &str) -> Answer {
    let s = clean(answer);
    if s.chars().count() > MAX_LEN {
        return Answer::Text(text_form(&s));
    }
    parse_clean(&s, 0).unwrap_or_else(|| Answer::Text(text_form(without_label(&s))))
}

/// `s` without a leading label (`x =`, `f(x) =`, `x \in`), for answers compared as text:
/// `y = \text{odd}` is `odd`.
fn without_label(s: &str) -> &str {
    if let Some(at) = find_command(s, "\\in") {
        if is_label(&s[..at]) {
            return s[at + 3..].trim();
        }
    }
    let eqs = split_top(s, "=");
    if eqs.len() == 2 && is_label(&eqs[0]) {
        return s[eqs[0].len() + 1..].trim();
    }
    s
}

fn parse_clean(s: &str, depth: usize) -> R<Answer> {
    if depth > 8 {
        return None;
    }
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    // Labels: `x \in ...`, `x = ...`, `f(x) = ...`, `(p, q) = ...`.
    if let Some(at) = find_command(s, "\\in") {
        if is_label(&s[..at]) {
            return parse_clean(&s[at + 3..], depth + 1);
        }
    }
    let eqs = split_top(s, "=");
    if eqs.len() == 2 && is_label(&eqs[0]) {
        return parse_clean(&eqs[1], depth + 1);
    }
    // Matrices.
    if let Some(m) = matrix(s) {
        return Some(m);
    }
    // Unions of intervals and of sets of points (`\{-1\} \cup [0,7)`).
    let union = split_top(s, "\\cup");
    if union.len() > 1 {
        let mut parts = Vec::new();
        for p in &union {
            match p.trim().strip_prefix("\\{").and_then(|r| r.strip_suffix("\\}")) {
                Some(points) => {
                    for x in split_items(points) {
                        let x = parse_expr(&x)?;
                        parts.push(Interval { lo: x.clone(), hi: x, lo_closed: true, hi_closed: true });
                    }
                }
                None => parts.push(interval(p.trim())?),
            }
        }
        return Some(Answer::Intervals(parts));
    }
    // Lists: `a; b` (MATH's points "separated by semicolons"), `a, b`, `a \text{ and } b`
    // (already a comma).
    let semicolons = split_top(s, ";");
    if semicolons.len() > 1 {
        let items: R<Vec<Answer>> = semicolons.iter().map(|p| parse_clean(p, depth + 1)).collect();
        return items.map(Answer::Set);
    }
    let commas = split_top(s, ",");
    if commas.len() > 1 && !wrapped(s) {
        let items: R<Vec<Answer>> = commas.iter().map(|p| parse_clean(p, depth + 1)).collect();
        return items.map(Answer::Set);
    }
    // `\{ ... \}`: a set.
    if let Some(inner) = s.strip_prefix("\\{").and_then(|r| r.strip_suffix("\\}")) {
        let items: R<Vec<Answer>> = split_items(inner).iter().map(|p| parse_clean(p, depth + 1)).collect();
        return items.map(Answer::Set);
    }
    // Brackets around a comma list: an interval or a tuple.
    if wrapped(s) {
        let inner = &s[1..s.len() - 1];
        let items = split_items(inner);
        let (open, close) = (s.as_bytes()[0], s.as_bytes()[s.len() - 1]);
        // `[a, b]`, `(a, b]`, `[a, b)` and anything reaching infinity are intervals; `(a, b)`
        // is a pair (equal to the open interval, see `equal`).
        if items.len() == 2 && (open == b'[' || close == b']' || inner.contains("\\infty")) {
            if let Some(iv) = interval(s) {
                return Some(Answer::Intervals(vec![iv]));
            }
        }
        if items.len() >= 2 {
            let elems: R<Vec<Answer>> = items.iter().map(|p| parse_clean(p, depth + 1)).collect();
            return elems.map(Answer::Tuple);
        }
    }
    // Column vectors written with `\\` outside a matrix.
    if split_top(s, "\\\\").len() > 1 {
        let elems: R<Vec<Answer>> = split_top(s, "\\\\").iter().map(|p| parse_clean(p, depth + 1)).collect();
        return elems.map(Answer::Tuple);
    }
    // `a \pm b`.
    if let Some((a, b)) = s.split_once("\\pm") {
        let (a, b) = (a.trim(), b.trim());
        let lhs = if a.is_empty() { "0" } else { a };
        let plus = parse_expr(&format!("{lhs}+({b})"))?;
        let minus = parse_expr(&format!("{lhs}-({b})"))?;
        return Some(Answer::Set(vec![Answer::Expr(plus), Answer::Expr(minus)]));
    }
    // Inequalities as intervals.
    if let Some(iv) = inequality(s) {
        return Some(Answer::Intervals(vec![iv]));
    }
    // Based numbers: `4210_7`, `4210_{7}`.
    if let Some(b) = based(s) {
        return Some(b);
    }
    // Multiple choice: `(C)`, `C`.
    let letter = s.trim_matches(|c| c == '(' || c == ')' || c == ' ');
    if letter.len() == 1 && letter.chars().all(|c| c.is_ascii_uppercase()) {
        return Some(Answer::Text(letter.to_string()));
    }
    if eqs.len() == 2 {
        let (l, r) = (parse_expr(&eqs[0])?, parse_expr(&eqs[1])?);
        return Some(Answer::Eq(l, r));
    }
    parse_expr(s).map(Answer::Expr)
}

/// Whether `s` is one bracketed group: `(..)`, `[..)`, `(..]`, `[..]`.
fn wrapped(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && matches!(b[0], b'(' | b'[')
        && matches!(b[b.len() - 1], b')' | b']')
        && one_group(s, 0, b.len() - 1)
}

/// A label before `=` or `\in`: a variable (with subscript), `f(x)`, or a tuple of variables.
fn is_label(lhs: &str) -> bool {
    let l: String = lhs.chars().filter(|c| !c.is_whitespace()).collect();
    if l.is_empty() || l.len() > 24 {
        return false;
    }
    let var = |v: &str| {
        let v = v.trim();
        let (head, sub) = v.split_once('_').unwrap_or((v, ""));
        let head_ok = (head.len() == 1 && head.chars().all(|c| c.is_ascii_alphabetic()))
            || GREEK.iter().any(|g| head == format!("\\{g}"));
        head_ok && sub.chars().all(|c| c.is_ascii_alphanumeric() || c == '{' || c == '}')
    };
    if var(&l) {
        return true;
    }
    // f(x), g(x, y)
    if let Some(open) = l.find('(') {
        if l.ends_with(')') && open >= 1 && var(&l[..open]) {
            return l[open + 1..l.len() - 1].split(',').all(var);
        }
        if open == 0 && l.ends_with(')') {
            return l[1..l.len() - 1].split(',').all(var);
        }
    }
    false
}

/// An interval `(a, b]` etc.
fn interval(s: &str) -> R<Interval> {
    let b = s.as_bytes();
    if b.len() < 5 || !wrapped(s) {
        return None;
    }
    let items = split_items(&s[1..s.len() - 1]);
    if items.len() != 2 {
        return None;
    }
    Some(Interval {
        lo: parse_expr(&items[0])?,
        hi: parse_expr(&items[1])?,
        lo_closed: b[0] == b'[',
        hi_closed: b[b.len() - 1] == b']',
    })
}

/// `x > a`, `x \geq a`, `a < x \leq b` (one variable) as an interval.
fn inequality(s: &str) -> R<Interval> {
    let norm = s.replace("\\leq", "<=").replace("\\geq", ">=").replace("\\lt", "<").replace("\\gt", ">");
    let mut parts = Vec::new();
    let mut ops = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = norm.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '<' || chars[i] == '>' {
            let strict = chars.get(i + 1) != Some(&'=');
            parts.push(std::mem::take(&mut cur));
            ops.push((chars[i], strict));
            i += if strict { 1 } else { 2 };
            continue;
        }
        cur.push(chars[i]);
        i += 1;
    }
    parts.push(cur);
    if ops.is_empty() || ops.len() > 2 {
        return None;
    }
    let inf = || Expr::Inf;
    let ninf = || Expr::Neg(Box::new(Expr::Inf));
    if ops.len() == 1 {
        let (l, r) = (parts[0].trim(), parts[1].trim());
        let (var_left, bound) = if is_label(l) && !is_label(r) {
            (true, r)
        } else if is_label(r) {
            (false, l)
        } else {
            return None;
        };
        let bound = parse_expr(bound)?;
        let (op, strict) = ops[0];
        // Normalise to `x op bound`.
        let less = (op == '<') == var_left;
        return Some(if less {
            Interval { lo: ninf(), hi: bound, lo_closed: false, hi_closed: !strict }
        } else {
            Interval { lo: bound, hi: inf(), lo_closed: !strict, hi_closed: false }
        });
    }
    let (a, x, b) = (parts[0].trim(), parts[1].trim(), parts[2].trim());
    if !is_label(x) || ops[0].0 != ops[1].0 {
        return None;
    }
    let (a, b) = (parse_expr(a)?, parse_expr(b)?);
    if ops[0].0 == '<' {
        Some(Interval { lo: a, hi: b, lo_closed: !ops[0].1, hi_closed: !ops[1].1 })
    } else {
        Some(Interval { lo: b, hi: a, lo_closed: !ops[1].1, hi_closed: !ops[0].1 })
    }
}

/// `\begin{pmatrix} a & b \\ c & d \end{pmatrix}` (any matrix environment).
fn matrix(s: &str) -> R<Answer> {
    let rest = s.strip_prefix("\\begin{")?;
    let (env, body) = rest.split_once('}')?;
    if !env.ends_with("matrix") && env != "array" {
        return None;
    }
    let body = body.strip_suffix(&format!("\\end{{{env}}}"))?;
    let body = if env == "array" {
        // Skip the column spec `{cc}`.
        let b = body.trim_start().strip_prefix('{')?;
        &b[super::answer::matched_braces(b)?.len() + 1..]
    } else {
        body
    };
    let rows: Vec<Vec<Expr>> = body
        .split("\\\\")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| r.split('&').map(|c| parse_expr(c.trim())).collect::<R<Vec<_>>>())
        .collect::<R<Vec<_>>>()?;
    if rows.is_empty() || rows.iter().any(|r| r.len() != rows[0].len()) {
        return None;
    }
    Some(Answer::Matrix(rows))
}

/// `digits_base` with the base written plainly or braced.
fn based(s: &str) -> R<Answer> {
    let (digits, base) = s.split_once('_')?;
    let base = base.trim_matches(|c| c == '{' || c == '}');
    let base: u32 = base.parse().ok()?;
    let digits = digits.trim();
    if !(2..=36).contains(&base) || based_value(digits, base).is_none() {
        return None;
    }
    Some(Answer::Based(digits.to_ascii_uppercase(), base))
}

/// A last-resort text form: lower case, no spaces, no wrappers.
fn text_form(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase()
}

// ---------------------------------------------------------------------------------------------
// comparison

/// Points at which expressions with variables are compared: fixed, irregular values in
/// (0.3, 2.8), so that `\sqrt x`, `\ln x` and `1/x` are defined and no simple identity holds
/// by accident.
const POINTS: [f64; 6] = [0.5731, 1.2917, 2.3313, 0.8269, 1.7443, 2.7089];

fn at_point(vars: &[String], k: usize) -> impl Fn(&str) -> Option<C> + '_ {
    move |name: &str| {
        let j = vars.iter().position(|v| v == name)?;
        // A different value per variable and point.
        Some(C::r(POINTS[(k + 2 * j) % POINTS.len()] + 0.137 * j as f64))
    }
}

/// Values `x` of `a` and `y` of `b` equal up to `tol`: relative only when both are rational
/// arithmetic (so `\frac{1}{2^{98}}` is not 0), else relative with an absolute floor of `tol`
/// for the rounding of roots and trigonometry (`\sin \pi` is 0).
fn close(a: &Expr, b: &Expr, x: C, y: C, tol: f64) -> bool {
    if a.is_exact() && b.is_exact() {
        return x.finite() && y.finite() && x.sub(y).abs() <= tol * x.abs().max(y.abs());
    }
    near(x, y, tol)
}

/// Expressions equal as numbers (no variables, relative 1e-9) or at every sample point.
pub fn expr_equal(a: &Expr, b: &Expr) -> bool {
    if let (Some(x), Some(y)) = (a.infinity(), b.infinity()) {
        return x == y;
    }
    if a.infinity().is_some() || b.infinity().is_some() {
        return false;
    }
    if !a.has_vars() && !b.has_vars() {
        let none = |_: &str| None;
        let (x, y) = (a.eval(&none), b.eval(&none));
        if !x.finite() && !y.finite() {
            // Beyond f64 (`2^{4950}`, `\frac{1}{2004!}`): the same expression only.
            return a == b;
        }
        return close(a, b, x, y, 1e-9);
    }
    let mut vars = Vec::new();
    a.vars(&mut vars);
    b.vars(&mut vars);
    let mut agreed = 0;
    for k in 0..POINTS.len() {
        let f = at_point(&vars, k);
        let (x, y) = (a.eval(&f), b.eval(&f));
        if !x.finite() && !y.finite() {
            continue;
        }
        if !close(a, b, x, y, 1e-8) {
            return false;
        }
        agreed += 1;
    }
    agreed >= 3
}

/// `l1 = r1` and `l2 = r2` are the same equation: `l1 - r1` is a nonzero constant times
/// `l2 - r2` at every sample point.
fn equation_equal(l1: &Expr, r1: &Expr, l2: &Expr, r2: &Expr) -> bool {
    let d1 = Expr::Sub(Box::new(l1.clone()), Box::new(r1.clone()));
    let d2 = Expr::Sub(Box::new(l2.clone()), Box::new(r2.clone()));
    let mut vars = Vec::new();
    d1.vars(&mut vars);
    d2.vars(&mut vars);
    let mut ratio: Option<C> = None;
    let mut agreed = 0;
    for k in 0..POINTS.len() {
        let f = at_point(&vars, k);
        let (x, y) = (d1.eval(&f), d2.eval(&f));
        if !x.finite() || !y.finite() {
            continue;
        }
        if x.abs() < 1e-12 && y.abs() < 1e-12 {
            agreed += 1;
            continue;
        }
        if y.abs() < 1e-12 || x.abs() < 1e-12 {
            return false;
        }
        let r = x.div(y);
        match ratio {
            None => ratio = Some(r),
            Some(r0) if near(r, r0, 1e-8) => {}
            Some(_) => return false,
        }
        agreed += 1;
    }
    agreed >= 3
}

fn interval_equal(a: &Interval, b: &Interval) -> bool {
    a.lo_closed == b.lo_closed
        && a.hi_closed == b.hi_closed
        && expr_equal(&a.lo, &b.lo)
        && expr_equal(&a.hi, &b.hi)
}

/// Whether the parsed predicted answer `a` is equivalent to the parsed gold `b`. Symmetric,
/// except for a number in another base against a plain number (see the `Based` arms).
pub fn equal(a: &Answer, b: &Answer) -> bool {
    use Answer::*;
    match (a, b) {
        (Expr(x), Expr(y)) => expr_equal(x, y),
        (Eq(l1, r1), Eq(l2, r2)) => equation_equal(l1, r1, l2, r2),
        // `2x + 3 = y` against `2x + 3`: the side opposite a lone variable.
        (Eq(l, r), Expr(e)) | (Expr(e), Eq(l, r)) => {
            (matches!(l, self::Expr::Var(_)) && expr_equal(r, e))
                || (matches!(r, self::Expr::Var(_)) && expr_equal(l, e))
        }
        (Tuple(x), Tuple(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal(p, q)),
        (Set(x), Set(y)) => multiset_equal(x, y),
        (Intervals(x), Intervals(y)) => {
            x.len() == y.len()
                && x.iter().all(|p| y.iter().any(|q| interval_equal(p, q)))
                && y.iter().all(|q| x.iter().any(|p| interval_equal(p, q)))
        }
        // An open interval is written like an ordered pair.
        (Intervals(x), Tuple(t)) | (Tuple(t), Intervals(x)) => {
            x.len() == 1
                && !x[0].lo_closed
                && !x[0].hi_closed
                && t.len() == 2
                && equal(&Expr(x[0].lo.clone()), &t[0])
                && equal(&Expr(x[0].hi.clone()), &t[1])
        }
        (Matrix(x), Matrix(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(r, s)| r.len() == s.len() && r.iter().zip(s).all(|(p, q)| expr_equal(p, q)))
        }
        // A column (or row) vector is the tuple of its entries.
        (Matrix(m), Tuple(t)) | (Tuple(t), Matrix(m)) => {
            let flat: Vec<&self::Expr> = if m.iter().all(|r| r.len() == 1) {
                m.iter().map(|r| &r[0]).collect()
            } else if m.len() == 1 {
                m[0].iter().collect()
            } else {
                return false;
            };
            flat.len() == t.len() && flat.iter().zip(t).all(|(p, q)| equal(&Expr((*p).clone()), q))
        }
        (Based(d1, b1), Based(d2, b2)) => {
            (d1 == d2 && b1 == b2)
                || matches!((based_value(d1, *b1), based_value(d2, *b2)), (Some(x), Some(y)) if x == y)
        }
        // A gold in base b (`4210_7`): its value written in base 10 is not what MATH asks; only
        // the same digits with the subscript dropped count (`4210`).
        (Expr(e), Based(d, _)) => {
            let none = |_: &str| None;
            d.chars().all(|c| c.is_ascii_digit() || c == '-' || c == '.')
                && !e.has_vars()
                && d.parse::<f64>().is_ok_and(|v| near(e.eval(&none), C::r(v), 1e-12))
        }
        // A prediction in base b against a plain gold: its value (`10000_2` is 16, not
        // `10{,}000`; `12_{10}` is 12).
        (Based(d, base), Expr(e)) => {
            let none = |_: &str| None;
            !e.has_vars() && based_value(d, *base).is_some_and(|v| near(e.eval(&none), C::r(v), 1e-12))
        }
        // One-element collections stand for their element.
        (Set(x), y) if x.len() == 1 => equal(&x[0], y),
        (y, Set(x)) if x.len() == 1 => equal(y, &x[0]),
        (Text(x), Text(y)) => x.eq_ignore_ascii_case(y),
        _ => false,
    }
}

/// The value of digits in `base`, with an optional minus sign and radix point (`-37_8`,
/// `0.0011_2`).
fn based_value(digits: &str, base: u32) -> Option<f64> {
    let (neg, body) = match digits.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, digits),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() || int.len() > 40 || frac.len() > 40 {
        return None;
    }
    let b = f64::from(base);
    let mut v = 0.0;
    for c in int.chars() {
        v = v * b + f64::from(c.to_digit(base)?);
    }
    let mut scale = 1.0 / b;
    for c in frac.chars() {
        v += f64::from(c.to_digit(base)?) * scale;
        scale /= b;
    }
    Some(if neg { -v } else { v })
}

fn multiset_equal(x: &[Answer], y: &[Answer]) -> bool {
    if x.len() != y.len() || x.len() > 64 {
        return false;
    }
    let mut used = vec![false; y.len()];
    for p in x {
        let Some(j) = (0..y.len()).find(|&j| !used[j] && equal(p, &y[j])) else {
            return false;
        };
        used[j] = true;
    }
    true
}

/// Whether two MATH answer strings are equivalent.
pub fn answers_equivalent(predicted: &str, gold: &str) -> bool {
    let (p, g) = (clean(predicted), clean(gold));
    if p.is_empty() || g.is_empty() {
        return false;
    }
    if p == g {
        return true;
    }
    // Words (`\text{Monday}`, `y = \text{odd}`): case-insensitive.
    let wordy = |x: &str| {
        x.chars().all(|c| c.is_alphabetic() || c == ' ') && x.split(' ').all(|w| w.chars().count() >= 3)
    };
    let (pw, gw) = (without_label(&p), without_label(&g));
    if wordy(pw) && wordy(gw) {
        return pw.eq_ignore_ascii_case(gw);
    }
    let (pa, ga) = (parse(predicted), parse(gold));
    equal(&pa, &ga)
        || digit_groups_as_list(&p).is_some_and(|xs| same_list(&xs, &ga))
        || digit_groups_as_list(&g).is_some_and(|xs| same_list(&xs, &pa))
}

/// The second reading of a bare `70,110`: MATH writes both thousands (`31,250`, 7 golds) and
/// short lists (`70,110`, "enter all the solutions, separated by commas", 1 gold) this way. It
/// is parsed as the number; as a list it equals only the same numbers in the same order
/// (`70, 110`), so `250, 31` is not `31,250`, and a group with a leading zero (`1,000`) is
/// never a list item.
fn digit_groups_as_list(clean: &str) -> Option<Vec<f64>> {
    let body = clean.strip_prefix('-').unwrap_or(clean);
    let groups: Vec<&str> = body.split(',').collect();
    let first_ok = (1..=3).contains(&groups[0].len());
    let rest_ok = groups[1..].iter().all(|g| g.len() == 3 && !g.starts_with('0'));
    if groups.len() < 2
        || !first_ok
        || !rest_ok
        || !groups.iter().all(|g| g.bytes().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    let mut xs: Vec<f64> = groups.iter().map(|g| g.parse().ok()).collect::<Option<_>>()?;
    if clean.starts_with('-') {
        xs[0] = -xs[0];
    }
    Some(xs)
}

/// Whether `a` is a bare list (not a tuple) of exactly the numbers `xs`, in that order.
fn same_list(xs: &[f64], a: &Answer) -> bool {
    let Answer::Set(items) = a else {
        return false;
    };
    let none = |_: &str| None;
    items.len() == xs.len()
        && items.iter().zip(xs).all(|(item, x)| {
            matches!(item, Answer::Expr(e) if !e.has_vars() && near(e.eval(&none), C::r(*x), 1e-12))
        })
}
