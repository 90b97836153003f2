//! Accuracy broken down by fields of the test records (`report.breakdown`, e.g. MATH's subject
//! `type` and difficulty `level`): `table-breakdown.md`, one table per field, rows as in the main
//! table, a column per value. A cell is the accuracy on that value's problems, with the main
//! table's kind of SE: over evaluation runs for one seed, over seeds for several.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::eval::stats::mean_se;

use super::Measured;

/// Field -> value -> the test problems (ids) with that value (as kept in `runs.json`).
pub type Groups = BTreeMap<String, BTreeMap<String, Vec<u64>>>;

/// Accuracy of `m` on `ids`, one value per evaluation run.
fn per_run(m: &Measured, ids: &[u64]) -> Vec<f64> {
    let want: std::collections::HashSet<u64> = ids.iter().copied().collect();
    let mut by_run: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    for &(run, problem, correct) in &m.outcomes {
        if want.contains(&problem) {
            let e = by_run.entry(run).or_default();
            e.0 += usize::from(correct);
            e.1 += 1;
        }
    }
    by_run.values().map(|&(c, n)| c as f64 / n.max(1) as f64).collect()
}

/// Mean and SE of a row on `ids`: over runs for one measurement, over the seeds' means for
/// several (a stage every seed shares counts once: its SE is over runs, and the table marks it).
pub fn cell(ms: &[Measured], ids: &[u64]) -> Option<(f64, f64)> {
    let ms = if super::is_shared(ms) { &ms[..1] } else { ms };
    match ms {
        [] => None,
        [m] => Some(mean_se(&per_run(m, ids))),
        _ => {
            let means: Vec<f64> = ms.iter().map(|m| mean_se(&per_run(m, ids)).0).collect();
            Some(mean_se(&means))
        }
    }
}

/// The Markdown of the breakdown tables for `rows` (display name, test measurements per seed).
pub fn tables(groups: &Groups, rows: &[(String, &[Measured])], se_kind: &str) -> String {
    let mut md = String::new();
    for (field, values) in groups {
        let _ = writeln!(md, "### Accuracy (%) by `{field}` ({se_kind})\n");
        let mut head = String::from("| Method |");
        for (v, ids) in values {
            let _ = write!(head, " {v} (n = {}) |", ids.len());
        }
        let _ = writeln!(md, "{head}\n|---|{}", "---|".repeat(values.len()));
        let mut shared_any = false;
        for (name, ms) in rows {
            let mark = if super::is_shared(ms) { " †" } else { "" };
            shared_any |= !mark.is_empty();
            let mut line = format!("| {name} |");
            for ids in values.values() {
                match cell(ms, ids) {
                    Some((m, s)) => {
                        let _ = write!(line, " {:.2} ± {:.2}{mark} |", 100.0 * m, 100.0 * s);
                    }
                    None => line.push_str(" / |"),
                }
            }
            let _ = writeln!(md, "{line}");
        }
        if shared_any {
            let _ =
                writeln!(md, "\n† One model every training seed shares: its SE is over the evaluation runs.");
        }
        let _ = writeln!(md);
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::EvalSummary;

    fn measured(outcomes: Vec<(u64, u64, bool)>) -> Measured {
        // Distinct summaries (a stage shared by seeds is recognised by an equal summary).
        let mean = outcomes.iter().filter(|o| o.2).count() as f64 / outcomes.len() as f64;
        let eval =
            EvalSummary { accuracies: vec![], mean, se: 0.0, tokens: outcomes.len() as u64, seconds: 0.0 };
        Measured { eval, per_problem: BTreeMap::new(), outcomes }
    }

    #[test]
    fn cells_are_per_run_accuracies_on_the_group() {
        // Two runs over problems 1, 2 (group a) and 3 (group b).
        let m = measured(vec![
            (0, 1, true),
            (0, 2, false),
            (0, 3, true),
            (1, 1, true),
            (1, 2, true),
            (1, 3, false),
        ]);
        // Group a: runs 0.5 and 1.0 -> mean 0.75, SE = std(0.5, 1.0) / sqrt(2) = 0.3536 / 1.414 = 0.25.
        let (mean, se) = cell(std::slice::from_ref(&m), &[1, 2]).unwrap();
        assert!((mean - 0.75).abs() < 1e-12 && (se - 0.25).abs() < 1e-12, "{mean} {se}");
        // Group b: 1.0 and 0.0.
        let (mean, se) = cell(std::slice::from_ref(&m), &[3]).unwrap();
        assert!((mean - 0.5).abs() < 1e-12 && (se - 0.5).abs() < 1e-12);
        let mut groups = Groups::new();
        groups.insert("type".into(), [("a".to_string(), vec![1, 2]), ("b".to_string(), vec![3])].into());
        let md = tables(&groups, &[("Zero-shot-CoT".into(), std::slice::from_ref(&m))], "SE over runs");
        assert!(md.contains("| Method | a (n = 2) | b (n = 1) |"), "{md}");
        assert!(md.contains("| Zero-shot-CoT | 75.00 ± 25.00 | 50.00 ± 50.00 |"), "{md}");
    }

    #[test]
    fn several_seeds_give_the_se_over_seed_means() {
        let a = measured(vec![(0, 1, true), (1, 1, true)]);
        let b = measured(vec![(0, 1, false), (1, 1, true)]);
        // Seed means 1.0 and 0.5: mean 0.75, SE 0.25.
        let (mean, se) = cell(&[a, b], &[1]).unwrap();
        assert!((mean - 0.75).abs() < 1e-12 && (se - 0.25).abs() < 1e-12, "{mean} {se}");
    }
}
