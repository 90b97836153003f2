//! The CUDA backend (feature `cuda`): burn-cuda 0.21, kernels compiled at run time through
//! NVRTC, CUDA libraries loaded dynamically (cudarc "fallback-dynamic-loading", CUDA 13 API).
//! The inference engine uses the tensor-API defaults of [`InferBackend`] here; bf16 runs as
//! f32-declared tensors cast to bf16 at load time (burn dispatches on each tensor's dtype).

use std::path::PathBuf;

use super::backend::InferBackend;
use crate::error::{Error, Result};

/// The CUDA backend type used by the pipeline.
pub type Cuda = burn_cuda::Cuda<f32, i32>;

impl InferBackend for Cuda {}

/// Checks that the CUDA driver and NVRTC can be found before any work starts, naming every
/// place searched when they cannot.
pub fn check_runtime() -> Result<()> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for var in ["CUDA_PATH", "CUDA_HOME", "CUDA_ROOT"] {
        if let Ok(v) = std::env::var(var) {
            dirs.push(PathBuf::from(&v).join("lib64"));
            dirs.push(PathBuf::from(&v).join("lib"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/cuda/lib64"));
    if let Ok(v) = std::env::var("LD_LIBRARY_PATH") {
        dirs.extend(std::env::split_paths(&v));
    }
    dirs.extend(
        ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/nvidia/lib64", "/usr/lib/wsl/lib"]
            .map(PathBuf::from),
    );
    let find = |prefix: &str| {
        dirs.iter().find(|d| {
            std::fs::read_dir(d)
                .map(|it| {
                    it.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with(prefix))
                })
                .unwrap_or(false)
        })
    };
    let searched = || dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    if find("libcuda.so").is_none() {
        return Err(Error::Other(format!(
            "backend \"cuda\": the CUDA driver (libcuda.so) was not found; searched CUDA_PATH, CUDA_HOME, \
             LD_LIBRARY_PATH and standard folders: {}",
            searched()
        )));
    }
    if find("libnvrtc.so").is_none() {
        return Err(Error::Other(format!(
            "backend \"cuda\": NVRTC (libnvrtc.so) was not found; set CUDA_PATH to the CUDA toolkit or add its \
             lib64 to LD_LIBRARY_PATH; searched: {}",
            searched()
        )));
    }
    Ok(())
}
