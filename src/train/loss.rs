//! Training losses as pure tensor functions: the reference definitions, golden-tested against
//! PyTorch. The trainer evaluates the same losses in closed form ([`super::fused`], checked
//! against these); `sequence_log_probs` also scores DPO's reference model.
//!
//! Shapes: `logits: [batch, seq, vocab]` where position `t` predicts `targets[:, t]`;
//! `mask: [batch, seq]` is 1 on the tokens that carry loss (the step or completion) and 0
//! elsewhere (prompt, padding).

use burn::tensor::activation::{log_sigmoid, log_softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// `log p(targets)` at every position: `[batch, seq]`.
pub fn token_log_probs<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    let lp = log_softmax(logits, 2);
    lp.gather(2, targets.unsqueeze_dim::<3>(2)).squeeze_dim::<2>(2)
}

/// Sum of masked token log-probabilities per sequence: `log pi(s | x, p)`, `[batch]`.
pub fn sequence_log_probs<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    (token_log_probs(logits, targets) * mask).sum_dim(1).squeeze_dim::<1>(1)
}

/// Exact `KL(pi_theta || pi_ref)` over the vocabulary at every position, `[batch, seq]`.
pub fn token_kl<B: Backend>(logits: Tensor<B, 3>, ref_logits: Tensor<B, 3>) -> Tensor<B, 2> {
    let lp = log_softmax(logits, 2);
    let lq = log_softmax(ref_logits, 2);
    (lp.clone().exp() * (lp - lq)).sum_dim(2).squeeze_dim::<2>(2)
}

/// eq. (2): `mean_b [ -r_b * sum_t m_bt log pi_theta(s_t) + beta * sum_t m_bt
/// KL_t(pi_theta || pi_ref) ]`. `weights: [batch]` are the eq. (1) scores `r` (negative
/// allowed: a worse-than-average step is pushed down); `ref_logits` come from the frozen
/// previous-iteration model.
pub fn weighted_nll_kl<B: Backend>(
    logits: Tensor<B, 3>,
    ref_logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
    weights: Tensor<B, 1>,
    beta: f64,
) -> Tensor<B, 1> {
    let seq_lp = sequence_log_probs(logits.clone(), targets, mask.clone()); // [b]
    let kl = (token_kl(logits, ref_logits) * mask).sum_dim(1).squeeze_dim::<1>(1); // [b]
    (seq_lp * weights.neg() + kl.mul_scalar(beta)).mean()
}

/// Plain negative log-likelihood, averaged over the masked tokens of the batch (RFT,
/// pretraining).
pub fn nll<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>, mask: Tensor<B, 2>) -> Tensor<B, 1> {
    let n = mask.clone().sum();
    (token_log_probs(logits, targets) * mask).sum().neg() / n
}

/// DPO (Rafailov et al. 2023): `mean -log sigmoid(beta * ((pc - rc) - (pr - rr)))` over
/// sequence log-probabilities of chosen (`c`) and rejected (`r`) continuations under the
/// policy (`p*`) and the frozen reference (`r*`), all `[batch]`.
pub fn dpo<B: Backend>(
    policy_chosen: Tensor<B, 1>,
    policy_rejected: Tensor<B, 1>,
    ref_chosen: Tensor<B, 1>,
    ref_rejected: Tensor<B, 1>,
    beta: f64,
) -> Tensor<B, 1> {
    let margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected);
    log_sigmoid(margin.mul_scalar(beta)).neg().mean()
}
