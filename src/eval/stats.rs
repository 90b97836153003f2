//! Summary statistics: mean +- standard error over runs, paired differences with a p-value.

/// `(mean, standard error)` with SE = sample standard deviation / sqrt(n); SE is 0 for n < 2.
pub fn mean_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, (var / n as f64).sqrt())
}

/// A paired comparison of two methods: per-unit differences `a - b`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Paired {
    /// Mean difference.
    pub diff: f64,
    /// Its standard error.
    pub se: f64,
    /// Two-sided p-value of "mean difference = 0" (paired t-test on the units).
    pub p_value: f64,
    /// Units compared.
    pub n: usize,
}

/// Paired t-test on `a[i] - b[i]` (two-sided).
pub fn paired(a: &[f64], b: &[f64]) -> Paired {
    assert_eq!(a.len(), b.len(), "paired samples must align");
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let (diff, se) = mean_se(&d);
    let n = d.len();
    let p_value = if n < 2 {
        f64::NAN
    } else if se == 0.0 {
        if diff == 0.0 {
            1.0
        } else {
            0.0
        }
    } else {
        2.0 * student_t_sf((diff / se).abs(), (n - 1) as f64)
    };
    Paired { diff, se, p_value, n }
}

/// A two-level bootstrap of a paired difference.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Bootstrap {
    /// Mean difference on the data as observed.
    pub diff: f64,
    /// 2.5% and 97.5% percentiles of the resampled differences.
    pub ci: (f64, f64),
    /// Two-sided p-value: twice the smaller share of resampled differences on either side of 0
    /// (at most 1; at least 1 / resamples when none crosses).
    pub p_value: f64,
    /// Resamples drawn.
    pub resamples: usize,
}

/// Two-way bootstrap of `mean(a - b)` over training seeds and problems: `a[s][i]` and `b[s][i]`
/// are two methods' accuracies on problem `i` under seed `s` (paired; every seed is evaluated
/// on the same problems, so seeds and problems are crossed). Each resample draws the seeds with
/// replacement and, once, the problems with replacement, the same problems for every drawn seed
/// and both methods, so both sources of variation (which training seed, which test problems)
/// enter the interval at their own size. With few seeds it has few distinct seed draws (10 with
/// 3) and understates the seeds' variance by (S - 1) / S: read it beside the t-test over seeds.
/// Deterministic: its draws come from the stream `(0, "bootstrap", [resamples])`.
pub fn bootstrap_seeds_problems(a: &[Vec<f64>], b: &[Vec<f64>], resamples: usize) -> Bootstrap {
    assert_eq!(a.len(), b.len(), "paired seeds must align");
    let d: Vec<Vec<f64>> = a
        .iter()
        .zip(b)
        .map(|(x, y)| {
            assert_eq!(x.len(), y.len(), "paired problems must align");
            x.iter().zip(y).map(|(p, q)| p - q).collect()
        })
        .collect();
    let mean_of = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let diff = mean_of(&d.iter().map(|s| mean_of(s)).collect::<Vec<_>>());
    let problems = d.iter().map(Vec::len).min().unwrap_or(0);
    let mut rng = crate::rng::Stream::new(0, "bootstrap", &[resamples as u64]);
    let mut stats = Vec::with_capacity(resamples);
    let mut picks = vec![0usize; problems];
    for _ in 0..resamples {
        let seeds: Vec<usize> = (0..d.len()).map(|_| rng.below(d.len() as u64) as usize).collect();
        for p in picks.iter_mut() {
            *p = rng.below(problems as u64) as usize;
        }
        let mut total = 0.0;
        for &s in &seeds {
            total += picks.iter().map(|&i| d[s][i]).sum::<f64>() / problems.max(1) as f64;
        }
        stats.push(total / d.len().max(1) as f64);
    }
    stats.sort_by(f64::total_cmp);
    let pct = |q: f64| stats[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    let below = stats.iter().filter(|&&x| x <= 0.0).count() as f64 / resamples as f64;
    let above = stats.iter().filter(|&&x| x >= 0.0).count() as f64 / resamples as f64;
    let p_value = (2.0 * below.min(above)).clamp(1.0 / resamples as f64, 1.0);
    Bootstrap { diff, ci: (pct(0.025), pct(0.975)), p_value, resamples }
}

/// Survival function `P(T > t)` of Student's t with `nu` degrees of freedom, via the
/// regularised incomplete beta function: `P(T > t) = I_{nu/(nu+t^2)}(nu/2, 1/2) / 2`.
pub fn student_t_sf(t: f64, nu: f64) -> f64 {
    0.5 * inc_beta(nu / 2.0, 0.5, nu / (nu + t * t))
}

fn ln_gamma(x: f64) -> f64 {
    // Lanczos approximation (g = 7, n = 9), accurate to ~1e-15 for x > 0.
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularised incomplete beta `I_x(a, b)` by its continued fraction (Numerical Recipes'
/// `betacf` recurrence, modified Lentz).
fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - inc_beta(b, a, 1.0 - x);
    }
    let tiny = 1e-300;
    let floor = |v: f64| if v.abs() < tiny { tiny } else { v };
    let mut c = 1.0;
    let mut d = 1.0 / floor(1.0 - (a + b) * x / (a + 1.0));
    let mut h = d;
    // One Lentz update with coefficient `aa`; returns the factor `d * c` applied to `h`.
    let mut update = |aa: f64| {
        d = 1.0 / floor(1.0 + aa * d);
        c = floor(1.0 + aa / c);
        d * c
    };
    for m in 1..300 {
        let m = m as f64;
        h *= update(m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)));
        let del = update(-(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)));
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    ln_front.exp() * h / a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_standard_error_by_hand() {
        // 1, 2, 3, 4: mean 2.5, sample sd sqrt(5/3), SE sqrt(5/3)/2.
        let (m, se) = mean_se(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((se - (5.0f64 / 3.0).sqrt() / 2.0).abs() < 1e-12);
        assert_eq!(mean_se(&[7.0]), (7.0, 0.0));
    }

    #[test]
    fn t_distribution_tail_matches_tables() {
        // Reference values by Simpson integration of the t density (2e5 panels on [t, 2000]):
        // sf(2.0; 4) = 0.0580582618, sf(2.776445105; 4) = 0.0250000000; sf(1; 1) = 1/4 exactly
        // (Cauchy).
        assert!((student_t_sf(2.0, 4.0) - 0.058_058_261_758_40).abs() < 1e-9);
        assert!((student_t_sf(1.0, 1.0) - 0.25).abs() < 1e-12);
        assert!((student_t_sf(2.776_445_105, 4.0) - 0.025).abs() < 1e-8);
        assert!((student_t_sf(0.0, 7.0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_of_a_constant_shift_and_of_no_difference() {
        // Every problem 0.1 better under every seed: every resample gives 0.1.
        let a = vec![vec![0.6, 0.3, 0.9]; 3];
        let b = vec![vec![0.5, 0.2, 0.8]; 3];
        let r = bootstrap_seeds_problems(&a, &b, 2000);
        assert!((r.diff - 0.1).abs() < 1e-12 && (r.ci.0 - 0.1).abs() < 1e-12 && (r.ci.1 - 0.1).abs() < 1e-12);
        assert_eq!(r.p_value, 1.0 / 2000.0);
        // Identical methods: the difference is 0 in every resample, p = 1.
        let r = bootstrap_seeds_problems(&a, &a, 500);
        assert_eq!((r.diff, r.ci, r.p_value), (0.0, (0.0, 0.0), 1.0));
    }

    #[test]
    fn bootstrap_draws_the_same_problems_for_every_seed() {
        // Two seeds with identical per-problem differences (+1 on problem 0, -1 on problem 1):
        // crossed resampling gives each resample's mean as the mean of the drawn problems, so a
        // draw of {0, 0} gives +1 (probability 1/4); drawing problems per seed would average two
        // independent draws and give +1 only with probability 1/16.
        let a = vec![vec![1.0, 0.0]; 2];
        let b = vec![vec![0.0, 1.0]; 2];
        let r = bootstrap_seeds_problems(&a, &b, 4000);
        assert_eq!(r.diff, 0.0);
        assert_eq!(r.ci, (-1.0, 1.0), "a quarter of resamples at each extreme");
    }

    #[test]
    fn bootstrap_interval_widens_with_seed_variation() {
        // Seed means of the difference +0.3, -0.1, +0.1 (problems all alike within a seed):
        // the observed mean is 0.1 and resampling seeds gives means from -0.1 to 0.3; with
        // three seeds a third of all draws of one seed is -0.1, so the 2.5% percentile is at most
        // the mean of draws (-0.1, -0.1, x), i.e. below 0.1, and the interval covers 0.
        let a = vec![vec![0.8; 4], vec![0.4; 4], vec![0.6; 4]];
        let b = vec![vec![0.5; 4]; 3];
        let r = bootstrap_seeds_problems(&a, &b, 4000);
        assert!((r.diff - 0.1).abs() < 1e-12);
        assert!(r.ci.0 < 0.0 && r.ci.1 > 0.2, "{:?}", r.ci);
        assert!(r.p_value > 0.05, "{}", r.p_value);
    }

    #[test]
    fn paired_test_by_hand() {
        // differences 1, 2, 3, 4, 5: mean 3, SE sqrt(2.5)/sqrt(5) = 0.7071, t = 4.2426, df 4;
        // two-sided p = 2 sf(4.2426; 4) = 0.0132356 (Simpson integration as above).
        let a = [2.0, 4.0, 6.0, 8.0, 10.0];
        let b = [1.0, 2.0, 3.0, 4.0, 5.0];
        let p = paired(&a, &b);
        assert_eq!(p.diff, 3.0);
        assert!((p.se - 0.5f64.sqrt()).abs() < 1e-12);
        assert!((p.p_value - 0.013_236).abs() < 2e-6, "{}", p.p_value);
    }
}
