//! Training examples and padded batches.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// A token sequence with loss on `tokens[loss_from..]` (each predicted from the tokens before
/// it), weighted by `weight` (the eq. (1) score `r` for eq. (2); 1 for NLL).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Prompt followed by the completion/step.
    pub tokens: Vec<u32>,
    /// Index of the first token that carries loss (at least 1).
    pub loss_from: usize,
    /// Per-sequence weight.
    pub weight: f32,
}

/// A DPO pair sharing a prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    /// Shared prompt (question and partial solution).
    pub prompt: Vec<u32>,
    /// Preferred continuation.
    pub chosen: Vec<u32>,
    /// Dispreferred continuation.
    pub rejected: Vec<u32>,
}

/// Model inputs for a batch of examples: `inputs`/`targets` `[b, len - 1]`, loss mask
/// `[b, len - 1]`, weights `[b]`. Right padding with token 0 and mask 0.
pub struct Batch<B: Backend> {
    /// Tokens fed to the model.
    pub inputs: Tensor<B, 2, Int>,
    /// Next tokens.
    pub targets: Tensor<B, 2, Int>,
    /// 1 where the target carries loss.
    pub mask: Tensor<B, 2>,
    /// Per-sequence weights.
    pub weights: Tensor<B, 1>,
    /// Number of loss-carrying tokens.
    pub loss_tokens: usize,
    /// The loss-carrying positions as indices into the flattened `[b * (len - 1)]` positions,
    /// in order: the rows the output head and the loss are computed on.
    pub loss_rows: Tensor<B, 1, Int>,
    /// The targets at [`Batch::loss_rows`].
    pub loss_targets: Vec<u32>,
    /// The weight of each loss row's sequence.
    pub loss_weights: Vec<f32>,
    /// The sequence (index in the batch) of each loss row.
    pub loss_seq: Vec<usize>,
}

/// Builds a padded batch from examples.
pub fn batch<B: Backend>(examples: &[&Example], device: &B::Device) -> Batch<B> {
    let b = examples.len();
    let width = examples.iter().map(|e| e.tokens.len()).max().unwrap_or(2).max(2) - 1;
    let mut inputs = vec![0i64; b * width];
    let mut targets = vec![0i64; b * width];
    let mut mask = vec![0f32; b * width];
    let mut loss_tokens = 0;
    let (mut rows, mut row_targets, mut row_weights) = (Vec::new(), Vec::new(), Vec::new());
    let mut row_seq = Vec::new();
    for (i, e) in examples.iter().enumerate() {
        for t in 0..e.tokens.len().saturating_sub(1) {
            inputs[i * width + t] = e.tokens[t] as i64;
            targets[i * width + t] = e.tokens[t + 1] as i64;
            if t + 1 >= e.loss_from.max(1) {
                mask[i * width + t] = 1.0;
                loss_tokens += 1;
                rows.push((i * width + t) as i64);
                row_targets.push(e.tokens[t + 1]);
                row_weights.push(e.weight);
                row_seq.push(i);
            }
        }
    }
    let weights: Vec<f32> = examples.iter().map(|e| e.weight).collect();
    let n = rows.len();
    Batch {
        loss_rows: Tensor::from_data(TensorData::new(rows, [n]), device),
        loss_targets: row_targets,
        loss_weights: row_weights,
        loss_seq: row_seq,
        inputs: Tensor::from_data(TensorData::new(inputs, [b, width]), device),
        targets: Tensor::from_data(TensorData::new(targets, [b, width]), device),
        mask: Tensor::from_data(TensorData::new(mask, [b, width]), device),
        weights: Tensor::from_data(TensorData::new(weights, [b]), device),
        loss_tokens,
    }
}

impl Pair {
    /// The chosen and rejected sequences as examples (loss on the continuation).
    pub fn examples(&self) -> (Example, Example) {
        let mk = |cont: &[u32]| Example {
            tokens: self.prompt.iter().chain(cont).copied().collect(),
            loss_from: self.prompt.len(),
            weight: 1.0,
        };
        (mk(&self.chosen), mk(&self.rejected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn batch_masks_only_completion_tokens() {
        let a = Example { tokens: vec![5, 6, 7, 8], loss_from: 2, weight: 1.5 };
        let b = Example { tokens: vec![9, 10], loss_from: 1, weight: -0.5 };
        let bt = batch::<Flex>(&[&a, &b], &Default::default());
        let inputs: Vec<i64> = bt.inputs.into_data().convert::<i64>().to_vec().unwrap();
        let targets: Vec<i64> = bt.targets.into_data().convert::<i64>().to_vec().unwrap();
        let mask: Vec<f32> = bt.mask.into_data().to_vec().unwrap();
        assert_eq!(inputs, [5, 6, 7, 9, 0, 0]);
        assert_eq!(targets, [6, 7, 8, 10, 0, 0]);
        // a: targets 6 (index 1, prompt), 7 and 8 (completion); b: target 10.
        assert_eq!(mask, [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        assert_eq!(bt.loss_tokens, 3);
        let rows: Vec<i64> = bt.loss_rows.into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(rows, [1, 2, 3]);
        assert_eq!(bt.loss_targets, [7, 8, 10]);
        assert_eq!(bt.loss_weights, [1.5, 1.5, -0.5]);
        assert_eq!(bt.loss_seq, [0, 0, 1]);
    }
}
