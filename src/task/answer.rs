//! Final-answer extraction and numeric comparison shared by every task.
//!
//! A solution's final answer is looked for, in order: the last "final answer is X" phrase,
//! the last "#### X" line (GSM8K reference style), the last `\boxed{X}`. Tasks with numeric
//! answers may fall back to the last number in the text when no marker exists.

/// The text after the last "final answer is" (case-insensitive), up to the end of its line,
/// with a trailing full stop and surrounding `$` removed; a `\boxed{..}` inside is unwrapped.
pub fn final_answer_phrase(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let key = "final answer is";
    let at = lower.rfind(key)?;
    let rest = &text[at + key.len()..];
    let line = rest.lines().next().unwrap_or("").trim();
    let line = line.strip_prefix(':').unwrap_or(line).trim();
    if let Some(b) = boxed_list(line) {
        return Some(b);
    }
    let line = first_sentence(line);
    let line = line.trim_end_matches('.').trim();
    let line = line.trim_matches('$').trim();
    (!line.is_empty()).then(|| line.to_string())
}

/// `text` up to the end of its first sentence: a full stop followed by a space or the end,
/// outside `$..$` and braces and not inside a number (`3.5`); "The final answer is $28\\%$. I
/// hope it is correct." gives "$28\\%$".
pub fn first_sentence(text: &str) -> &str {
    let b = text.as_bytes();
    let (mut depth, mut dollars) = (0i32, 0usize);
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b'$' => dollars += 1,
            b'.' if depth == 0 && dollars % 2 == 0 => {
                let next = b.get(i + 1);
                if next.is_none_or(|n| n.is_ascii_whitespace()) {
                    return &text[..i];
                }
            }
            _ => {}
        }
    }
    text
}

/// The last `\\boxed{}` of `text` with the boxed answers just before it that only separators
/// (commas, "and", "or", `$`, spaces) or labels divide from it, joined by ", ":
/// `\\boxed{1}, \\boxed{2}` gives "1, 2" (see [`boxed_run`]).
pub fn boxed_list(text: &str) -> Option<String> {
    boxed_run(text).map(|items| items.join(", "))
}

/// The contents of the last `\boxed{}` of `text` and of the boxes just before it that only
/// separators (commas, "and", "or", `$`, spaces, `\text{}`) or labels (`=`, one letter) divide
/// from it, in order: `$x = \boxed{1}$ or $x = \boxed{2}$` gives ["1", "2"]. Any other word
/// or sign between two boxes ends the run (`\boxed{1}. Then ... \boxed{2}` gives ["2"]).
pub fn boxed_run(text: &str) -> Option<Vec<String>> {
    let found = boxes(text);
    let last = found.last()?;
    let mut start = last.at;
    let mut items = vec![last.content.clone()];
    for b in found.iter().rev().skip(1) {
        if b.end > start {
            continue;
        }
        let gap = text[b.end..start].replace("\\text{", "").replace(['}', '$', ','], " ");
        // Separators, and labels (`$x = \\boxed{1}$ or $x = \\boxed{2}$`).
        let label = |w: &str| w == "=" || (w.len() == 1 && w.chars().all(|c| c.is_ascii_alphabetic()));
        if !gap.split_whitespace().all(|w| matches!(w, "and" | "or") || label(w)) {
            break;
        }
        items.push(b.content.clone());
        start = b.at;
    }
    items.reverse();
    Some(items)
}

/// One `\boxed{..}` (or `\fbox{..}`, or the `\boxed 5` form) in a text.
struct Boxed {
    /// Byte offset of the command.
    at: usize,
    /// Byte offset just after it.
    end: usize,
    /// What it holds (braces matched, nested braces kept).
    content: String,
}

/// Every boxed answer of `text`, in order of position.
fn boxes(text: &str) -> Vec<Boxed> {
    let mut found = Vec::new();
    for key in ["\\boxed", "\\fbox"] {
        let mut from = 0;
        while let Some(rel) = text[from..].find(key) {
            let at = from + rel;
            from = at + key.len();
            let after = &text[from..];
            let trimmed = after.trim_start();
            let skipped = from + (after.len() - trimmed.len());
            if let Some(inner) = trimmed.strip_prefix('{') {
                if let Some(content) = matched_braces(inner) {
                    found.push(Boxed {
                        at,
                        end: skipped + 1 + content.len() + 1,
                        content: content.to_string(),
                    });
                }
            } else {
                // `\boxed 5` form: the next token.
                let tok: String = trimmed.chars().take_while(|c| !c.is_whitespace() && *c != '$').collect();
                if !tok.is_empty() {
                    found.push(Boxed { at, end: skipped + tok.len(), content: tok });
                }
            }
        }
    }
    found.sort_by_key(|b| b.at);
    found
}

/// The text after the last `####`, up to the end of its line.
pub fn hash_answer(text: &str) -> Option<String> {
    let at = text.rfind("####")?;
    let line = text[at + 4..].lines().next().unwrap_or("").trim();
    (!line.is_empty()).then(|| line.to_string())
}

/// Content of the last `\boxed{...}` (or `\fbox{...}`, or the `\boxed 5` form), braces
/// matched, nested braces kept.
pub fn last_boxed(text: &str) -> Option<String> {
    boxes(text).pop().map(|b| b.content)
}

/// Given text just after an opening `{`, the content up to its matching `}`.
pub fn matched_braces(s: &str) -> Option<&str> {
    let mut depth = 1usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&s[..i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// The last number-like token in `text` (digits with optional sign, commas and decimals).
pub fn last_number(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut end = chars.len();
    while end > 0 {
        if chars[end - 1].is_ascii_digit() {
            let mut start = end;
            while start > 0 && (chars[start - 1].is_ascii_digit() || matches!(chars[start - 1], ',' | '.')) {
                start -= 1;
            }
            while start < end && matches!(chars[start], ',' | '.') {
                start += 1;
            }
            if start > 0 && (chars[start - 1] == '-' || chars[start - 1] == '\u{2212}') {
                start -= 1;
            }
            let s: String = chars[start..end].iter().collect();
            return Some(s);
        }
        end -= 1;
    }
    None
}

/// Parses a plain number as written in a GSM8K-style answer: optional sign (ASCII or Unicode
/// minus), `$`, thousands commas, `%`, a trailing full stop, a simple fraction `a/b`.
pub fn parse_number(text: &str) -> Option<f64> {
    let mut s: String = text
        .trim()
        .replace('\u{2212}', "-")
        .replace("\\$", "")
        .replace("\\%", "")
        .replace("\\!", "")
        .replace("{,}", "")
        .replace(['\u{202f}', '\u{2009}', '\u{a0}', '\''], "")
        .chars()
        .filter(|c| !matches!(c, '$' | '%'))
        .collect::<String>()
        .trim()
        .to_string();
    while s.ends_with('.') {
        s.pop();
    }
    let s = s.strip_prefix('+').unwrap_or(&s).to_string();
    if s.is_empty() {
        return None;
    }
    if let Some((a, b)) = s.split_once('/') {
        let (a, b) = (parse_decimal(a)?, parse_decimal(b)?);
        return (b != 0.0).then(|| a / b);
    }
    parse_decimal(&s)
}

/// A decimal with optional sign and well-formed thousands separators ("1,234.5").
fn parse_decimal(s: &str) -> Option<f64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    if int.contains(',') {
        let groups: Vec<&str> = int.split(',').collect();
        let ok = !groups[0].is_empty()
            && groups[0].len() <= 3
            && groups[1..].iter().all(|g| g.len() == 3)
            && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_digit()));
        if !ok {
            return None;
        }
    } else if !int.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if let Some(f) = frac {
        if f.is_empty() || !f.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    if int.is_empty() && frac.is_none() {
        return None;
    }
    let digits: String = int.chars().filter(|c| *c != ',').collect();
    let text = match frac {
        Some(f) => format!("{}.{}", if digits.is_empty() { "0" } else { &digits }, f),
        None => digits,
    };
    let v: f64 = text.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// Numbers equal up to a relative tolerance of 1e-9 (so 18 = 18.0 but 0.333 != 1/3).
pub fn numbers_equal(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrase_extraction() {
        assert_eq!(final_answer_phrase("so\n\nThe final answer is 14.").as_deref(), Some("14"));
        assert_eq!(
            final_answer_phrase("The final answer is $\\boxed{\\frac{1}{2}}$.").as_deref(),
            Some("\\frac{1}{2}")
        );
        assert_eq!(final_answer_phrase("the Final Answer is: 7").as_deref(), Some("7"));
        assert_eq!(final_answer_phrase("no answer here"), None);
        assert_eq!(final_answer_phrase("The final answer is ."), None);
    }

    #[test]
    fn boxed_extraction_matches_nested_braces() {
        assert_eq!(last_boxed("a \\boxed{1} b \\boxed{\\frac{3}{4}}").as_deref(), Some("\\frac{3}{4}"));
        assert_eq!(last_boxed("\\boxed{x^{2}+1}").as_deref(), Some("x^{2}+1"));
        assert_eq!(last_boxed("\\fbox{5}").as_deref(), Some("5"));
        assert_eq!(last_boxed("\\boxed 5$").as_deref(), Some("5"));
        assert_eq!(last_boxed("\\boxed{unclosed"), None);
    }

    #[test]
    fn last_number_finds_signed_and_grouped_numbers() {
        assert_eq!(last_number("he had 3 then -12 left").as_deref(), Some("-12"));
        assert_eq!(last_number("total $1,250.50.").as_deref(), Some("1,250.50"));
        assert_eq!(last_number("none"), None);
    }

    #[test]
    fn parse_number_cases() {
        assert_eq!(parse_number("1,000"), Some(1000.0));
        assert_eq!(parse_number("$18.00"), Some(18.0));
        assert_eq!(parse_number("50%"), Some(50.0));
        assert_eq!(parse_number("\u{2212}3"), Some(-3.0));
        assert_eq!(parse_number("3/4"), Some(0.75));
        assert_eq!(parse_number("7."), Some(7.0));
        assert_eq!(parse_number("1,00"), None);
        assert_eq!(parse_number("abc"), None);
        assert_eq!(parse_number("1/0"), None);
    }
}
