//! Finding the CUDA driver (`libcuda.so`) and NVRTC (`libnvrtc.so`) that the `cuda` feature
//! loads at run time, so a missing installation stops a run before any work with a message
//! naming every folder searched. Compiled in every build so it is tested without a GPU.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The folders searched, in order: `$CUDA_PATH`, `$CUDA_HOME`, `$CUDA_ROOT` (their `lib64` and
/// `lib`), `/usr/local/cuda/lib64`, `$LD_LIBRARY_PATH`, then the usual system folders.
pub fn search_dirs(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for var in ["CUDA_PATH", "CUDA_HOME", "CUDA_ROOT"] {
        if let Some(v) = env(var) {
            dirs.push(PathBuf::from(&v).join("lib64"));
            dirs.push(PathBuf::from(&v).join("lib"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/cuda/lib64"));
    if let Some(v) = env("LD_LIBRARY_PATH") {
        dirs.extend(std::env::split_paths(&v));
    }
    dirs.extend(
        ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/nvidia/lib64", "/usr/lib/wsl/lib"]
            .map(PathBuf::from),
    );
    dirs
}

/// `Ok` when both libraries are in one of [`search_dirs`]; otherwise an error naming the
/// missing library and every folder searched.
pub fn check(env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
    let dirs = search_dirs(env);
    let has = |prefix: &str| {
        dirs.iter().any(|d| {
            std::fs::read_dir(d)
                .map(|it| {
                    it.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with(prefix))
                })
                .unwrap_or(false)
        })
    };
    let searched = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    if !has("libcuda.so") {
        return Err(Error::Other(format!(
            "backend \"cuda\": the CUDA driver (libcuda.so) was not found; searched CUDA_PATH, CUDA_HOME, \
             LD_LIBRARY_PATH and standard folders: {searched}"
        )));
    }
    if !has("libnvrtc.so") {
        return Err(Error::Other(format!(
            "backend \"cuda\": NVRTC (libnvrtc.so) was not found; set CUDA_PATH to the CUDA toolkit or add its \
             lib64 to LD_LIBRARY_PATH; searched: {searched}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
        move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn finds_libraries_under_cuda_path_and_ld_library_path() {
        let root = std::env::temp_dir().join(format!("cuda-libs-test-{}", std::process::id()));
        let (toolkit, driver) = (root.join("toolkit"), root.join("driver"));
        std::fs::create_dir_all(toolkit.join("lib64")).unwrap();
        std::fs::create_dir_all(&driver).unwrap();
        std::fs::write(toolkit.join("lib64/libnvrtc.so.13"), b"").unwrap();
        let only_toolkit = env_with(vec![("CUDA_PATH", toolkit.display().to_string())]);
        let dirs = search_dirs(&only_toolkit);
        assert_eq!(dirs[0], toolkit.join("lib64"));
        // This machine has no driver: the message names the library and the folders searched.
        if !dirs.iter().any(|d| d.join("libcuda.so.1").exists() || d.join("libcuda.so").exists()) {
            let err = check(&only_toolkit).unwrap_err().to_string();
            assert!(
                err.contains("libcuda.so") && err.contains(&toolkit.join("lib64").display().to_string()),
                "{err}"
            );
        }
        std::fs::write(driver.join("libcuda.so.1"), b"").unwrap();
        let both = env_with(vec![
            ("CUDA_PATH", toolkit.display().to_string()),
            ("LD_LIBRARY_PATH", format!("/nonexistent:{}", driver.display())),
        ]);
        check(&both).unwrap();
        // A driver without NVRTC names NVRTC and how to point at it.
        std::fs::remove_file(toolkit.join("lib64/libnvrtc.so.13")).unwrap();
        let system_nvrtc = search_dirs(&both).iter().any(|d| {
            std::fs::read_dir(d)
                .map(|it| {
                    it.filter_map(|e| e.ok())
                        .any(|e| e.file_name().to_string_lossy().starts_with("libnvrtc.so"))
                })
                .unwrap_or(false)
        });
        if !system_nvrtc {
            let err = check(&both).unwrap_err().to_string();
            assert!(
                err.contains("libnvrtc.so") && err.contains("CUDA_PATH") && err.contains("/nonexistent"),
                "{err}"
            );
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
