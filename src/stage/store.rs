//! Content-addressed stage folders.
//!
//! A stage's folder is named by the SHA-256 of its kind, the pipeline version, the slice of
//! configuration it reads and the keys of the stages it consumes. A finished stage has
//! `done.json` (written last, atomically) and is never recomputed; a changed input changes
//! the key of exactly the stages downstream of it.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Version of stage semantics; bump when a stage's outputs would change for the same inputs.
/// 5: one grading path (the first final step's answer; the MCTS reward without the step cap),
/// leaves at the depth limit, merged identical steps, end-of-turn targets, overlap-free pools.
pub const PIPELINE_VERSION: &str = "mcts-ps/pipeline/5";

/// A stage's identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct Key {
    /// Stage kind, e.g. `mcts`.
    pub kind: String,
    /// First 16 hex digits of the content hash.
    pub hash: String,
}

impl Key {
    /// The key of a stage of `kind` whose inputs serialise to `inputs`.
    pub fn new(kind: &str, inputs: &impl Serialize) -> Self {
        let json = serde_json::to_string(inputs).expect("stage inputs serialise");
        let mut h = Sha256::new();
        h.update(PIPELINE_VERSION.as_bytes());
        h.update([0]);
        h.update(kind.as_bytes());
        h.update([0]);
        h.update(json.as_bytes());
        let hex: String = h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
        Self { kind: kind.to_string(), hash: hex }
    }

    /// Folder name: `kind-hash`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.kind, self.hash)
    }
}

/// The cache folder of an experiment.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// A store under `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder of `key`.
    pub fn dir(&self, key: &Key) -> PathBuf {
        self.root.join(key.name())
    }

    /// Whether `key` finished.
    pub fn is_done(&self, key: &Key) -> bool {
        self.dir(key).join("done.json").is_file()
    }

    /// Creates the folder of `key` (keeping partial work from an interrupted attempt).
    pub fn open(&self, key: &Key) -> Result<PathBuf> {
        let d = self.dir(key);
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        Ok(d)
    }

    /// Marks `key` finished with a summary.
    pub fn finish(&self, key: &Key, summary: &impl Serialize) -> Result<()> {
        let json = serde_json::to_string_pretty(summary).expect("summary serialises");
        crate::util::write_atomic(&self.dir(key).join("done.json"), json.as_bytes())
    }

    /// The summary of a finished stage.
    pub fn summary<T: serde::de::DeserializeOwned>(&self, key: &Key) -> Result<T> {
        let p = self.dir(key).join("done.json");
        let text = crate::error::read_to_string(&p)?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Checkpoint { path: p, message: format!("unreadable stage summary: {e}") })
    }

    /// The store's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_change_with_any_input_and_kind() {
        let a = Key::new("mcts", &("x", 1));
        assert_eq!(a, Key::new("mcts", &("x", 1)));
        assert_ne!(a.hash, Key::new("mcts", &("x", 2)).hash);
        assert_ne!(a.hash, Key::new("train", &("x", 1)).hash);
        assert_eq!(a.hash.len(), 16);
    }

    #[test]
    fn finish_marks_done() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        let k = Key::new("t", &1);
        assert!(!s.is_done(&k));
        s.open(&k).unwrap();
        assert!(!s.is_done(&k));
        s.finish(&k, &serde_json::json!({"n": 3})).unwrap();
        assert!(s.is_done(&k));
        let v: serde_json::Value = s.summary(&k).unwrap();
        assert_eq!(v["n"], 3);
    }
}
