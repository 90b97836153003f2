//! Attention with burn's tensor API, for backends without their own kernel (CUDA) and dtypes
//! other than f32: the causal mask of grouped query rows and grouped-query attention over it.

use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Tensor, TensorData};

/// Boolean mask (true = hidden) for grouped query rows: batch row `r` has its first query at
/// position `starts[r]` (one start broadcasts over the batch); query row `t * group + g` may
/// see key columns `0..=starts[r] + t`. Shape `[starts.len(), 1, len * group, capacity]`.
pub fn grouped_causal_mask<B: Backend>(
    starts: &[usize],
    len: usize,
    group: usize,
    capacity: usize,
    device: &B::Device,
) -> Tensor<B, 4, Bool> {
    let rows = len * group;
    let mut m = Vec::with_capacity(starts.len() * rows * capacity);
    for &s in starts {
        for t in 0..len {
            for _ in 0..group {
                m.extend((0..capacity).map(|col| col > s + t));
            }
        }
    }
    Tensor::from_data(TensorData::new(m, [starts.len(), 1, rows, capacity]), device)
}

/// Grouped-query attention with burn's `attention`: the query heads sharing a kv head become
/// extra query rows of that head, `[b, kv_heads, len * group, dim]`, so repeated key/value
/// heads are never materialised. `q: [b, len, heads, dim]`, `k, v: [b, kv_heads, t, dim]`,
/// `mask: [b or 1, 1, len * group, t]`. Returns `[b, len, heads, dim]`.
pub fn masked_grouped_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Tensor<B, 4, Bool>,
) -> Tensor<B, 4> {
    let [b, l, heads, d] = q.dims();
    let [_, kvh, t, _] = k.dims();
    let g = heads / kvh;
    let q = q.reshape([b, l, kvh, g * d]).swap_dims(1, 2).reshape([b, kvh, l * g, d]);
    let mask = mask.expand([b, kvh, l * g, t]);
    let a = attention(q, k, v, Some(mask), None, AttentionModuleOptions::default());
    a.reshape([b, kvh, l, g * d]).swap_dims(1, 2).reshape([b, l, heads, d])
}
