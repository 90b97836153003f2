//! Token sampling from logits: temperature, nucleus (top-p), greedy at temperature 0.
//!
//! Computed in f64 on the host from the model's f32 logits with one uniform draw from the
//! request's own stream per token, so a token depends only on its logits and its stream.

use crate::rng::Stream;

/// Picks the next token. `temperature == 0` is greedy (lowest id wins ties).
pub fn sample(logits: &[f32], temperature: f64, top_p: f64, rng: &mut Stream) -> u32 {
    let u = rng.next_f64(); // drawn even when greedy, so streams advance uniformly
    if temperature <= 0.0 {
        return argmax(logits);
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut probs: Vec<(u32, f64)> =
        logits.iter().enumerate().map(|(i, &l)| (i as u32, ((l as f64 - max) / temperature).exp())).collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    if top_p < 1.0 {
        // Keep the smallest set of most likely tokens whose mass reaches top_p.
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut acc = 0.0;
        let mut keep = probs.len();
        for (i, p) in probs.iter().enumerate() {
            acc += p.1 / total;
            if acc >= top_p {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
    }
    let mass: f64 = probs.iter().map(|p| p.1).sum();
    let target = u * mass;
    let mut acc = 0.0;
    for &(id, p) in &probs {
        acc += p;
        if target < acc {
            return id;
        }
    }
    probs.last().map(|p| p.0).unwrap_or(0)
}

/// Index of the largest logit (first on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// `log softmax(logits)[id]` in f64.
pub fn log_prob(logits: &[f32], id: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = logits.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln() + max;
    logits[id as usize] as f64 - lse
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut r = Stream::new(0, "t", &[]);
        assert_eq!(sample(&[0.0, 2.0, 2.0, 1.0], 0.0, 1.0, &mut r), 1);
    }

    #[test]
    fn sampling_follows_the_softmax() {
        // logits ln(1), ln(3): probabilities 1/4, 3/4.
        let logits = [0.0f32, 3f32.ln()];
        let mut r = Stream::new(1, "t", &[]);
        let n = 40_000;
        let ones = (0..n).filter(|_| sample(&logits, 1.0, 1.0, &mut r) == 1).count();
        let p = ones as f64 / n as f64;
        // 5 sigma of a binomial(40000, 0.75) is about 0.011.
        assert!((p - 0.75).abs() < 0.011, "{p}");
    }

    #[test]
    fn top_p_drops_the_tail() {
        // probabilities 0.6, 0.3, 0.1: top_p 0.8 keeps the first two only.
        let logits = [0.6f32.ln(), 0.3f32.ln(), 0.1f32.ln()];
        let mut r = Stream::new(2, "t", &[]);
        for _ in 0..2000 {
            assert_ne!(sample(&logits, 1.0, 0.8, &mut r), 2);
        }
    }

    #[test]
    fn log_prob_of_uniform_logits() {
        assert!((log_prob(&[1.0, 1.0, 1.0, 1.0], 2) - 0.25f64.ln()).abs() < 1e-12);
    }
}
