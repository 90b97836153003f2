//! The paper's published numbers (`results/paper.toml`, compiled in).

use serde::Deserialize;

/// `results/paper.toml`.
pub const PAPER_TOML: &str = include_str!("../../results/paper.toml");

/// One set-up (a column of Table 1 or 2).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Setup {
    /// Column title.
    pub title: String,
    /// Zero-shot CoT `[mean, se]`.
    pub zero_shot_cot: Option<[f64; 2]>,
    /// RFT.
    pub rft: Option<[f64; 2]>,
    /// Step-level DPO per iteration.
    #[serde(default)]
    pub step_dpo: Vec<[f64; 2]>,
    /// Ours per iteration.
    #[serde(default)]
    pub ours: Vec<[f64; 2]>,
}

/// The set-up called `name` ("table1.llama_math"), if known.
pub fn setup(name: &str) -> Option<Setup> {
    let all: toml::Table = PAPER_TOML.parse().expect("results/paper.toml is valid TOML");
    let (table, column) = name.split_once('.')?;
    let v = all.get(table)?.get(column)?.clone();
    v.try_into().ok()
}

/// Every known set-up name.
pub fn names() -> Vec<String> {
    let all: toml::Table = PAPER_TOML.parse().expect("results/paper.toml is valid TOML");
    let mut out = Vec::new();
    for (t, cols) in &all {
        if let Some(cols) = cols.as_table() {
            out.extend(cols.keys().map(|c| format!("{t}.{c}")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_numbers_are_readable() {
        let s = setup("table1.llama_math").unwrap();
        assert_eq!(s.zero_shot_cot, Some([47.07, 0.15]));
        assert_eq!(s.ours[3], [51.92, 0.20]);
        assert_eq!(setup("table2.deepseek_math_to_gsm8k").unwrap().ours.len(), 4);
        assert!(setup("table9.x").is_none());
        assert_eq!(names().len(), 4);
    }
}
