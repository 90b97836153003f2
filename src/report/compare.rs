//! Paired comparisons of two rows of a table on the same test problems. With several training
//! seeds the headline is over seeds: a paired t-test on the seeds' mean accuracies (seeds - 1
//! degrees of freedom) and a bootstrap that resamples seeds and then problems. The test pooled
//! over (seed, problem) pairs is kept, labelled as what it is: it treats problems under
//! different seeds as independent units and leaves the training seed's variation out, so its
//! p-values overstate. With one seed the units are the test problems.

use crate::eval::stats::{bootstrap_seeds_problems, paired, Bootstrap, Paired};

use super::Measured;

/// Resamples of the bootstrap.
pub const RESAMPLES: usize = 2000;

/// Row `a` minus row `b`, measured under the same seeds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Comparison {
    /// Over the seeds' mean accuracies (`None` with one seed).
    pub over_seeds: Option<Paired>,
    /// Seeds, then problems, resampled.
    pub bootstrap: Bootstrap,
    /// Over (seed, problem) pairs as independent units (with one seed: over problems).
    pub pooled: Paired,
}

/// The per-problem accuracies (averaged over runs) of `a` and `b` on the problems both have,
/// in problem order.
fn aligned(a: &Measured, b: &Measured) -> (Vec<f64>, Vec<f64>) {
    a.per_problem.iter().filter_map(|(k, va)| b.per_problem.get(k).map(|vb| (*va, *vb))).unzip()
}

/// Compares `a[s]` with `b[s]` for every seed `s`.
pub fn compare(a: &[&Measured], b: &[&Measured]) -> Comparison {
    assert_eq!(a.len(), b.len(), "rows compared under the same seeds");
    let per_seed: Vec<(Vec<f64>, Vec<f64>)> = a.iter().zip(b).map(|(x, y)| aligned(x, y)).collect();
    let (xa, xb): (Vec<f64>, Vec<f64>) =
        per_seed.iter().flat_map(|(x, y)| x.iter().copied().zip(y.iter().copied())).unzip();
    let pooled = paired(&xa, &xb);
    // The seeds' means over the same problems the other tests use.
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let over_seeds = (a.len() > 1).then(|| {
        let ma: Vec<f64> = per_seed.iter().map(|(x, _)| mean(x)).collect();
        let mb: Vec<f64> = per_seed.iter().map(|(_, y)| mean(y)).collect();
        paired(&ma, &mb)
    });
    let (sa, sb): (Vec<Vec<f64>>, Vec<Vec<f64>>) = per_seed.into_iter().unzip();
    Comparison { over_seeds, bootstrap: bootstrap_seeds_problems(&sa, &sb, RESAMPLES), pooled }
}

/// One bullet of the paired comparisons: the seed-level test and the bootstrap first (with
/// several seeds), then the pooled test with its caveat; in points.
pub fn bullet(other: &str, c: &Comparison) -> String {
    let pts = |x: f64| 100.0 * x;
    let boot = format!(
        "bootstrap 95% CI [{:+.2}, {:+.2}], p = {:.3}",
        pts(c.bootstrap.ci.0),
        pts(c.bootstrap.ci.1),
        c.bootstrap.p_value
    );
    match c.over_seeds {
        Some(s) => format!(
            "- minus {other}: {:+.2} ± {:.2} points over seeds, p = {:.3} (t-test, n = {} seeds); {boot} \
             (seeds and problems resampled; with few seeds it understates their variance); pooled over \
             (seed, problem) pairs as if independent {:+.2} ± {:.2}, p = {:.2e} (n = {}; overstates)",
            pts(s.diff),
            pts(s.se),
            s.p_value,
            s.n,
            pts(c.pooled.diff),
            pts(c.pooled.se),
            c.pooled.p_value,
            c.pooled.n
        ),
        None => format!(
            "- minus {other}: {:+.2} ± {:.2} points, p = {:.2e} (paired t-test over n = {} test problems; one \
             training seed, so the seed's variation is not in it); {boot} (problems resampled)",
            pts(c.pooled.diff),
            pts(c.pooled.se),
            c.pooled.p_value,
            c.pooled.n
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::EvalSummary;
    use std::collections::BTreeMap;

    fn m(per_problem: &[f64]) -> Measured {
        let mean = per_problem.iter().sum::<f64>() / per_problem.len() as f64;
        Measured {
            eval: EvalSummary { accuracies: vec![mean], mean, se: 0.0, tokens: 0, seconds: 0.0 },
            per_problem: per_problem
                .iter()
                .enumerate()
                .map(|(i, v)| (i as u64, *v))
                .collect::<BTreeMap<_, _>>(),
            outcomes: vec![],
        }
    }

    #[test]
    fn seed_level_and_pooled_tests_by_hand() {
        // Seed means of a: 0.75, 0.5, 0.625; b: 0.5 everywhere. Differences 0.25, 0, 0.125:
        // mean 0.125, SE = sd(0.25, 0, 0.125)/sqrt(3) = 0.125/sqrt(3) = 0.0722.
        let a = [m(&[1.0, 0.5]), m(&[0.5, 0.5]), m(&[0.75, 0.5])];
        let b = [m(&[0.5, 0.5]), m(&[0.5, 0.5]), m(&[0.5, 0.5])];
        let c = compare(&a.iter().collect::<Vec<_>>(), &b.iter().collect::<Vec<_>>());
        let s = c.over_seeds.unwrap();
        assert_eq!(s.n, 3);
        assert!((s.diff - 0.125).abs() < 1e-12 && (s.se - 0.125 / 3f64.sqrt()).abs() < 1e-12);
        // Pooled: six (seed, problem) differences 0.5, 0, 0, 0, 0.25, 0.
        assert_eq!(c.pooled.n, 6);
        assert!((c.pooled.diff - 0.125).abs() < 1e-12);
        assert!(bullet("X", &c).contains("over seeds") && bullet("X", &c).contains("overstates"));
        // One seed: no seed-level test; units are problems.
        let one = compare(&[&a[0]], &[&b[0]]);
        assert!(one.over_seeds.is_none() && one.pooled.n == 2);
        assert!(bullet("X", &one).contains("one training seed"));
    }
}
