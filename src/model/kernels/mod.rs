//! CPU kernels and backend glue, below the architecture: the inference products
//! ([`flex_linear`]; [`q8`] for 8-bit weights and activations), the fused whole-sequence kernels with their backward passes ([`fused`]:
//! attention, SwiGLU, RMSNorm, RoPE), tensor-API attention for other backends ([`attention`]),
//! fixed-order sums ([`reduce`]), spinning helper threads for a decode step's short products
//! ([`team`]), and the [`backend::InferBackend`] trait the inference engine
//! runs on (KV cache layout, cached attention).
//!
//! Nothing here knows the decoder: kernels take tensors and sizes, never a config or a layer.
//! Within the folder the imports run one way: `reduce`, `attention` and `team` import nothing;
//! `flex_linear` uses `reduce` and `team`; `q8` uses `flex_linear` (its instruction-set
//! choice) and `team`; `fused` uses `reduce`, `attention` and
//! `flex_linear`; `backend` uses `attention`, `reduce`, `flex_linear` and `fused`.

pub mod attention;
pub mod backend;
pub mod flex_linear;
pub mod fused;
pub mod q8;
pub(crate) mod reduce;
pub mod team;
