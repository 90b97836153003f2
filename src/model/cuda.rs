//! The CUDA backend (feature `cuda`): burn-cuda 0.21, kernels compiled at run time through
//! NVRTC, CUDA libraries loaded dynamically (cudarc "fallback-dynamic-loading", CUDA 13 API).
//! The inference engine uses the tensor-API defaults of [`InferBackend`] here; bf16 runs as
//! f32-declared tensors cast to bf16 at load time (burn dispatches on each tensor's dtype).

use super::kernels::backend::InferBackend;
use crate::error::Result;

/// The CUDA backend type used by the pipeline.
pub type Cuda = burn_cuda::Cuda<f32, i32>;

impl InferBackend for Cuda {}

/// Checks that the CUDA driver and NVRTC can be found before any work starts, naming every
/// place searched when they cannot.
pub fn check_runtime() -> Result<()> {
    super::cuda_libs::check(&|var| std::env::var(var).ok())
}
