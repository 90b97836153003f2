//! The `workers` executor: a shardable stage's items split across `runner shard` processes on
//! this machine, each writing its finished items atomically into the shared stage folder; the
//! coordinating process then runs the stage as usual, finds every item done and merges them in
//! the fixed item order, so the stage's files are the bytes a single process writes.
//!
//! Each worker gets `cores / workers` threads (`RAYON_NUM_THREADS`) and, when
//! `CUDA_VISIBLE_DEVICES` lists several GPUs, one of them; its output goes to
//! `<stage>/shard-<i>.log`.

use std::path::Path;
use std::process::{Command, Stdio};

use super::launch;
use crate::error::{Error, Result};
use crate::stage::Key;

/// Runs shards `0..count` of stage `key` as `runner shard` processes and waits for them all.
pub fn run_workers(key: &Key, dir: &Path, count: usize, label: &str) -> Result<()> {
    let Some(l) = launch() else {
        return Err(Error::Other(format!(
            "executor.kind = \"workers\": {label} can only be sharded when runner was started on an experiment file"
        )));
    };
    let exe =
        std::env::current_exe().map_err(|e| Error::Other(format!("cannot find the runner binary: {e}")))?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = (cores / count).max(1);
    let gpus: Vec<String> = std::env::var("CUDA_VISIBLE_DEVICES")
        .ok()
        .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    let mut children = Vec::with_capacity(count);
    for i in 0..count {
        let log_path = dir.join(format!("shard-{i}.log"));
        let log = std::fs::File::create(&log_path).map_err(|e| Error::io(&log_path, e))?;
        let err = log.try_clone().map_err(|e| Error::io(&log_path, e))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("shard").arg(&l.file);
        for s in &l.sets {
            cmd.arg("--set").arg(s);
        }
        cmd.args(["--stage", &key.name(), "--index", &i.to_string(), "--count", &count.to_string()]);
        cmd.env("RAYON_NUM_THREADS", threads.to_string()).stdout(Stdio::from(log)).stderr(Stdio::from(err));
        if !gpus.is_empty() {
            cmd.env("CUDA_VISIBLE_DEVICES", &gpus[i % gpus.len()]);
        }
        let child = cmd.spawn().map_err(|e| Error::Other(format!("cannot start {cmd:?}: {e}")))?;
        children.push((i, child, log_path));
    }
    let mut failed = Vec::new();
    for (i, mut child, log_path) in children {
        let status = child.wait().map_err(|e| Error::Other(format!("shard {i} of {label}: {e}")))?;
        if !status.success() {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            failed.push(format!(
                "shard {i} ({status}; log {}): {}",
                log_path.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "{label}: {} of {count} shards failed:\n{}",
            failed.len(),
            failed.join("\n")
        )))
    }
}

/// The `workers` executor: shardable stages in at most `executor.workers` local processes;
/// training stages stay in the coordinator.
pub struct Workers(pub crate::config::schema::Executor);

impl crate::stage::Dispatch for Workers {
    fn shards(
        &mut self,
        key: &Key,
        dir: &Path,
        items: usize,
        label: &str,
        _finished: &dyn Fn() -> bool,
        _note: &mut dyn FnMut(&str),
    ) -> Result<()> {
        run_workers(key, dir, self.0.shards(items), label)
    }
}
