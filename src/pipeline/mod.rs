//! Running experiments: the stage graph of a run as data ([`graph`]), its execution in one
//! process ([`run`]), and the executors that run shardable stages elsewhere: worker processes
//! on this machine ([`executor`]) and Slurm job arrays ([`slurm`]). The stage plumbing they
//! drive (context, keys, store, shards) is [`crate::stage`]; the stages themselves are
//! [`crate::method`].

pub mod executor;
pub mod graph;
pub mod run;
pub mod slurm;

use std::path::PathBuf;

/// How this process was started (`runner FILE --set ...`), for executors that start
/// `runner shard` processes over the same experiment.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The experiment file.
    pub file: PathBuf,
    /// `--set` overrides, in order.
    pub sets: Vec<String>,
}

static LAUNCH: std::sync::OnceLock<Launch> = std::sync::OnceLock::new();

/// Records how the process was started (once, by the CLI).
pub fn set_launch(l: Launch) {
    let _ = LAUNCH.set(l);
}

/// How the process was started, if by an experiment command.
pub fn launch() -> Option<&'static Launch> {
    LAUNCH.get()
}
