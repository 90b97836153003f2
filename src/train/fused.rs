//! The token losses of training with their gradients in closed form, computed row by row in
//! parallel on the host, instead of through autodiff.
//!
//! The trainer computes logits only at the loss-carrying positions (`Llama::forward_rows`),
//! reads them once, and evaluates here, per row `i` with `p = softmax(z_i)`:
//!
//! - NLL (RFT, pretraining): `L = -(1/n) sum_i log p(t_i)`, `dL/dz_i = (p - e_{t_i}) / n`.
//! - eq. (2): `L = (1/B) sum_i [-r_i log p(t_i) + beta KL(p || q_i)]` over the rows of
//!   `B` sequences (`r_i` the eq. (1) score of row `i`'s sequence, `q_i` the frozen reference),
//!   `dL/dz_i = (1/B) [r_i (p - e_{t_i}) + beta p * (log p - log q_i - KL(p || q_i))]`.
//!
//! The gradient enters autodiff through the surrogate `sum(z * G)` with `G` constant, whose
//! gradient with respect to `z` is exactly `G`; everything below the logits (head, blocks,
//! LoRA) is differentiated by burn as before. This replaces about ten autodiff nodes over
//! `[n, vocab]` tensors (log-softmax, gather, exp, products, their backward passes, each a
//! single-threaded pass with a fresh buffer) by one parallel pass. Rows are computed in f64
//! and independently, so the result does not depend on the thread count. The values match
//! `train::loss` (checked against PyTorch in tests/train_losses.rs).

use rayon::prelude::*;

/// A loss value and its gradient with respect to the logits rows (`[n * vocab]`).
#[derive(Clone, Debug)]
pub struct RowLoss {
    /// The loss.
    pub value: f64,
    /// `dL/dz`, row-major like the logits.
    pub grad: Vec<f32>,
}

/// A row's softmax numerators `e_j = exp(z_j - max z)` (f32, written into `e`), the row's
/// maximum, and its `log sum exp` (f64, over the f32 numerators summed in f64).
fn exps(z: &[f32], e: &mut [f32]) -> (f32, f64) {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    crate::model::fused::exp_shifted(z, max, e);
    (max, max as f64 + sum_f64(e).ln())
}

/// `log sum exp` of a row, with `scratch` (at least the row's length) for the numerators.
fn lse(z: &[f32], scratch: &mut [f32]) -> f64 {
    exps(z, &mut scratch[..z.len()]).1
}

/// Sum in f64 with 4 interleaved partial sums combined in a fixed order.
fn sum_f64(x: &[f32]) -> f64 {
    let mut acc = [0f64; 4];
    let n4 = x.len() / 4 * 4;
    for c in x[..n4].chunks_exact(4) {
        for i in 0..4 {
            acc[i] += c[i] as f64;
        }
    }
    let tail: f64 = x[n4..].iter().map(|&v| v as f64).sum();
    (acc[0] + acc[2]) + (acc[1] + acc[3]) + tail
}

/// Mean NLL over the rows: `logits: [n * vocab]`, `targets: [n]`.
pub fn nll(logits: &[f32], vocab: usize, targets: &[u32]) -> RowLoss {
    let n = targets.len();
    assert_eq!(logits.len(), n * vocab, "fused nll: logits are not [n, vocab]");
    let mut grad = vec![0f32; n * vocab];
    let inv = 1.0 / n.max(1) as f64;
    let terms: Vec<f64> = grad
        .par_chunks_mut(vocab)
        .zip(logits.par_chunks(vocab))
        .zip(targets.par_iter())
        .map(|((g, z), &t)| {
            let (max, l) = exps(z, g);
            // p_j = e_j / sum = e_j exp(max - l)
            let to_p = (max as f64 - l).exp();
            for gj in g.iter_mut() {
                *gj = (*gj as f64 * to_p * inv) as f32;
            }
            let lpt = z[t as usize] as f64 - l;
            g[t as usize] = ((lpt.exp() - 1.0) * inv) as f32;
            -lpt
        })
        .collect();
    RowLoss { value: terms.iter().sum::<f64>() * inv, grad }
}

/// eq. (2) over the rows of `batch` sequences: `logits`, `reference: [n * vocab]`,
/// `targets`, `weights: [n]` (each row's sequence score `r`).
pub fn weighted_nll_kl(
    logits: &[f32],
    reference: &[f32],
    vocab: usize,
    targets: &[u32],
    weights: &[f32],
    beta: f64,
    batch: usize,
) -> RowLoss {
    let n = targets.len();
    assert!(
        logits.len() == n * vocab && reference.len() == n * vocab && weights.len() == n,
        "fused eq. (2): shapes"
    );
    let mut grad = vec![0f32; n * vocab];
    let inv = 1.0 / batch.max(1) as f64;
    let terms: Vec<f64> = grad
        .par_chunks_mut(vocab)
        .zip(logits.par_chunks(vocab).zip(reference.par_chunks(vocab)))
        .zip(targets.par_iter().zip(weights.par_iter()))
        .map_init(
            || vec![0f32; vocab],
            |scratch, ((g, (z, zr)), (&t, &r))| {
                let (max, l) = exps(z, g);
                let to_p = (max as f64 - l).exp();
                let lr = lse(zr, scratch);
                let mut kl = 0.0;
                for ((&ej, &zj), &zrj) in g.iter().zip(z).zip(zr) {
                    let lp = zj as f64 - l;
                    kl += ej as f64 * to_p * (lp - (zrj as f64 - lr));
                }
                let r = r as f64;
                for ((gj, &zj), &zrj) in g.iter_mut().zip(z).zip(zr) {
                    let lp = zj as f64 - l;
                    let p = *gj as f64 * to_p;
                    *gj = (inv * (r * p + beta * p * (lp - (zrj as f64 - lr) - kl))) as f32;
                }
                let lpt = z[t as usize] as f64 - l;
                g[t as usize] = (g[t as usize] as f64 - inv * r) as f32;
                -r * lpt + beta * kl
            },
        )
        .collect();
    RowLoss { value: terms.iter().sum::<f64>() * inv, grad }
}

/// DPO (Rafailov et al. 2023) over `n` pairs from the rows of `2n` sequences, chosen `2i` and
/// rejected `2i + 1` (`seq: [rows]` each row's sequence): with `lp_s` the sum of a sequence's
/// row log-probabilities and `m_i = beta ((lp_2i - rc_i) - (lp_2i+1 - rr_i))` against the
/// reference's `refs[i] = (rc_i, rr_i)`, `L = mean_i -log sigmoid(m_i)`; a row of sequence `s`
/// gets `dL/dz = -(dL/dlp_s) (p - e_t)` with `dL/dlp_2i = -beta sigmoid(-m_i) / n` and
/// `dL/dlp_2i+1 = beta sigmoid(-m_i) / n`.
pub fn dpo(
    logits: &[f32],
    vocab: usize,
    targets: &[u32],
    seq: &[usize],
    refs: &[(f32, f32)],
    beta: f64,
) -> RowLoss {
    let rows = targets.len();
    let n = refs.len();
    assert!(logits.len() == rows * vocab && seq.len() == rows, "fused dpo: shapes");
    assert!(seq.iter().all(|&s| s < 2 * n), "fused dpo: a row's sequence is outside the pairs");
    // Each row's softmax numerators go into its gradient row now and are scaled below, once
    // the pairs' coefficients are known.
    let mut grad = vec![0f32; rows * vocab];
    let rows_max_lse: Vec<(f32, f64)> =
        grad.par_chunks_mut(vocab).zip(logits.par_chunks(vocab)).map(|(g, z)| exps(z, g)).collect();
    let mut lp = vec![0f64; 2 * n];
    for (j, (&s, &t)) in seq.iter().zip(targets).enumerate() {
        lp[s] += logits[j * vocab + t as usize] as f64 - rows_max_lse[j].1;
    }
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let mut value = 0.0;
    let mut coef = vec![0f64; 2 * n]; // dL/dlp_s
    for (i, &(rc, rr)) in refs.iter().enumerate() {
        let m = beta * ((lp[2 * i] - rc as f64) - (lp[2 * i + 1] - rr as f64));
        // -log sigmoid(m) = softplus(-m), computed stably
        value += if m > 0.0 { (-m).exp().ln_1p() } else { -m + m.exp().ln_1p() };
        let d = beta * sig(-m) / n as f64;
        coef[2 * i] = -d;
        coef[2 * i + 1] = d;
    }
    grad.par_chunks_mut(vocab).enumerate().for_each(|(j, g)| {
        let c = -coef[seq[j]];
        let (max, l) = rows_max_lse[j];
        let to_p = (max as f64 - l).exp();
        for gj in g.iter_mut() {
            *gj = (c * (*gj as f64 * to_p)) as f32;
        }
        let t = targets[j] as usize;
        g[t] = (g[t] as f64 - c) as f32;
    });
    RowLoss { value: value / n.max(1) as f64, grad }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nll_gradient_is_softmax_minus_one_hot() {
        // Two rows over 3 tokens, by hand: row 0 uniform, row 1 logits ln(1), ln(3), ln(4).
        let z = [0.0f32, 0.0, 0.0, 0.0, 3f32.ln(), 4f32.ln()];
        let l = nll(&z, 3, &[2, 1]);
        let want = -((1.0f64 / 3.0).ln() + (3.0f64 / 8.0).ln()) / 2.0;
        assert!((l.value - want).abs() < 1e-6, "{} vs {want}", l.value);
        let g: Vec<f64> = [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0 - 1.0, 1.0 / 8.0, 3.0 / 8.0 - 1.0, 4.0 / 8.0]
            .iter()
            .map(|x| x / 2.0)
            .collect();
        for (a, b) in l.grad.iter().zip(&g) {
            assert!((*a as f64 - b).abs() < 1e-6, "{:?} vs {g:?}", l.grad);
        }
    }

    #[test]
    fn eq2_with_the_reference_equal_to_the_policy_is_weighted_nll() {
        // KL(p || p) = 0 and its gradient vanishes: eq. (2) reduces to -r log p / B.
        let z = [0.5f32, -1.0, 2.0, 0.0, 0.3, 0.1];
        let e = weighted_nll_kl(&z, &z, 3, &[0, 2], &[2.0, -1.0], 0.7, 4);
        let (l0, l1) = (lse(&z[..3], &mut [0.0; 3]), lse(&z[3..], &mut [0.0; 3]));
        let want = (-2.0 * (0.5 - l0) + (0.1 - l1)) / 4.0;
        assert!((e.value - want).abs() < 1e-6);
        let n = nll(&z[..3], 3, &[0]);
        for j in 0..3 {
            // row 0: r = 2, B = 4 -> 2/4 of the one-row NLL gradient
            assert!((e.grad[j] - 0.5 * n.grad[j]).abs() < 1e-6);
        }
    }
}
