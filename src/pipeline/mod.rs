//! The experiment pipeline: data, stage bookkeeping (content-addressed folders, resume,
//! progress, run log) and the order in which methods run. The stages themselves live in
//! `method/`.

pub mod executor;
pub mod run;
pub mod slurm;
pub mod store;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::DType;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

pub use store::{Key, Store};

use crate::config::schema::ExecutorKind;
use crate::config::{DataSource, Resolved};
use crate::error::{Error, Result};
use crate::model::backend::InferBackend;
use crate::task::arith::{generate_pool, Pool};
use crate::task::prompt::Template;
use crate::task::{gsm8k, math, Problem, TaskKind};

/// A model produced by a stage or given by the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ModelRef {
    /// Stable identity: the producing stage's key, or a fingerprint of the source files.
    pub id: String,
    /// A checkpoint folder or a `.gguf` file.
    pub path: PathBuf,
}

/// Counters of one pipeline invocation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    /// Stages computed now.
    pub computed: usize,
    /// Stages found finished.
    pub cached: usize,
}

/// How this process was started (`runner FILE --set ...`), for executors that start
/// `runner shard` processes over the same experiment.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The experiment file.
    pub file: PathBuf,
    /// `--set` overrides, in order.
    pub sets: Vec<String>,
}

/// This process's part of one stage (`runner shard FILE --stage KEY --index i --count n`):
/// items `j` with `j % count == index`. A shard of `count > 1` stops once its items are
/// written (the coordinator merges); a shard of `count == 1` runs the whole stage, merge or
/// training included, and finishes it (how training stages run as one Slurm job).
#[derive(Clone, Debug, PartialEq)]
pub struct Shard {
    /// The stage folder name (`kind-hash`).
    pub stage: String,
    /// This shard.
    pub index: usize,
    /// Shards in all.
    pub count: usize,
}

impl Shard {
    /// Whether item `j` (in the stage's fixed item order) is this shard's.
    pub fn owns(&self, j: usize) -> bool {
        j % self.count == self.index
    }

    /// Whether this shard stops after its items, leaving the merge to the coordinator.
    pub fn partial(&self) -> bool {
        self.count > 1
    }
}

/// The marker a finished shard leaves in its stage folder (its content: the shard's compute
/// seconds, as JSON).
pub fn shard_marker(dir: &Path, index: usize, count: usize) -> std::path::PathBuf {
    dir.join(format!("shard-{index}-of-{count}.done"))
}

/// The compute seconds the shards of a stage recorded in their markers (added to the merging
/// process's own in the stage summary, so a sharded stage reports the work it took).
pub fn shard_seconds(dir: &Path) -> f64 {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0.0 };
    rd.filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with("shard-") && n.ends_with(".done")
        })
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter_map(|v| v.get("seconds").and_then(|s| s.as_f64()))
        .sum()
}

/// This process's shard when it computes only part of a stage (see [`Shard::partial`]).
pub fn partial_shard() -> Option<&'static Shard> {
    shard().filter(|s| s.partial())
}

static LAUNCH: std::sync::OnceLock<Launch> = std::sync::OnceLock::new();
static SHARD: std::sync::OnceLock<Shard> = std::sync::OnceLock::new();

/// Records how the process was started (once, by the CLI).
pub fn set_launch(l: Launch) {
    let _ = LAUNCH.set(l);
}

/// How the process was started, if by an experiment command.
pub fn launch() -> Option<&'static Launch> {
    LAUNCH.get()
}

/// Makes this process a shard (once, by `runner shard`).
pub fn set_shard(s: Shard) {
    let _ = SHARD.set(s);
}

/// This process's shard, if it is one.
pub fn shard() -> Option<&'static Shard> {
    SHARD.get()
}

/// Everything the stages of one run share.
pub struct Ctx<AB: AutodiffBackend>
where
    AB::InnerBackend: InferBackend,
{
    /// The configuration of this run.
    pub cfg: Resolved,
    /// Stage folders.
    pub store: Store,
    /// `results/<experiment>`.
    pub out_dir: PathBuf,
    /// Device of all tensors.
    pub device: burn::tensor::Device<AB::InnerBackend>,
    /// Weight/activation type.
    pub dtype: DType,
    /// Training pool.
    pub train_pool: Vec<Problem>,
    /// Test set.
    pub test_set: Vec<Problem>,
    /// Grader of the training task.
    pub train_kind: TaskKind,
    /// Grader of the test task.
    pub test_kind: TaskKind,
    /// Prompt format (known once the base tokenizer is loaded).
    pub template: Option<Template>,
    /// Progress bars.
    pub bars: MultiProgress,
    /// Stage counts.
    pub counts: Counts,
    /// Stages computed by a Slurm job for this process (counted as computed, not reused).
    remote: std::collections::HashSet<String>,
    log: Option<std::fs::File>,
    started: Instant,
}

/// Loads or generates the training pool and the test set.
pub fn problem_sets(cfg: &Resolved) -> Result<(Vec<Problem>, Vec<Problem>)> {
    let t = &cfg.exp.task;
    let take = |mut v: Vec<Problem>, n: usize| {
        if n > 0 {
            v.truncate(n);
        }
        v
    };
    let test = match &cfg.test_data {
        DataSource::Arith => {
            generate_pool(&t.arith, cfg.exp.seed, Pool::Test, t.test_size.max(1), &Default::default())
        }
        DataSource::File(TaskKind::Math, p) => take(math::load(p)?, t.test_size),
        DataSource::File(_, p) => take(gsm8k::load(p)?, t.test_size),
    };
    let exclude: std::collections::HashSet<String> = test.iter().map(|p| p.question.clone()).collect();
    let train = match &cfg.train_data {
        DataSource::Arith => {
            generate_pool(&t.arith, cfg.exp.seed, Pool::Train, t.train_size.max(1), &exclude)
        }
        DataSource::File(TaskKind::Math, p) => take(math::load(p)?, t.train_size),
        DataSource::File(_, p) => take(gsm8k::load(p)?, t.train_size),
    };
    Ok((train, test))
}

impl<AB: AutodiffBackend> Ctx<AB>
where
    AB::InnerBackend: InferBackend,
{
    /// The context of one run: loads data, opens the log.
    pub fn new(
        cfg: Resolved,
        out_dir: &Path,
        device: burn::tensor::Device<AB::InnerBackend>,
        dtype: DType,
        bars: MultiProgress,
    ) -> Result<Self> {
        std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
        let (train_pool, test_set) = problem_sets(&cfg)?;
        // A shard's lines go to its own log (its stderr), not the experiment's run.log.
        let log = if shard().is_some() {
            None
        } else {
            let log_path = out_dir.join("run.log");
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| Error::io(&log_path, e))?;
            Some(f)
        };
        Ok(Self {
            train_kind: cfg.train_data.kind(),
            test_kind: cfg.test_data.kind(),
            template: cfg.template,
            store: Store::new(out_dir.join("cache")),
            out_dir: out_dir.to_path_buf(),
            cfg,
            device,
            dtype,
            train_pool,
            test_set,
            bars,
            counts: Counts::default(),
            remote: Default::default(),
            log,
            started: Instant::now(),
        })
    }

    /// Writes a line to the run log and above the progress bars.
    pub fn note(&mut self, msg: &str) {
        let line = format!("[{:7.1}s] {msg}", self.started.elapsed().as_secs_f64());
        match self.log.as_mut() {
            Some(f) => {
                let _ = writeln!(f, "{line}");
                let _ = self.bars.println(&line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// A progress bar for `len` items of a stage.
    pub fn bar(&self, len: u64, label: &str) -> ProgressBar {
        let b = self.bars.add(ProgressBar::new(len));
        b.set_style(
            ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} {msg} (eta {eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b.set_prefix(label.to_string());
        b
    }

    /// Computes the items of shardable stage `key` (of which there are `items`) in `runner
    /// shard` processes before the stage runs here and merges them: at most
    /// `executor.workers` local processes (`workers`) or `executor.slurm.tasks` array tasks
    /// (`slurm`). Nothing when the stage is finished, the executor is local or this process is
    /// itself a shard.
    pub fn shard_out(&mut self, key: &Key, items: usize, label: &str) -> Result<()> {
        let x = self.cfg.exp.executor.clone();
        if x.kind == ExecutorKind::Local || self.store.is_done(key) || shard().is_some() {
            return Ok(());
        }
        let dir = self.store.open(key)?;
        match x.kind {
            ExecutorKind::Workers => executor::run_workers(key, &dir, x.shards(items), label),
            _ => self.slurm(key, &dir, x.shards(items), label),
        }
    }

    /// With `executor.kind = "slurm"`, runs stage `key` whole as one Slurm job (training
    /// stages) and waits for it; nothing otherwise, or when it is finished.
    pub fn job_out(&mut self, key: &Key, label: &str) -> Result<()> {
        if self.cfg.exp.executor.kind != ExecutorKind::Slurm || self.store.is_done(key) || shard().is_some() {
            return Ok(());
        }
        let dir = self.store.open(key)?;
        self.slurm(key, &dir, 1, label)?;
        self.remote.insert(key.name());
        Ok(())
    }

    fn slurm(&mut self, key: &Key, dir: &Path, count: usize, label: &str) -> Result<()> {
        let cfg = self.cfg.exp.executor.slurm.clone();
        let store = self.store.clone();
        let finished = || store.is_done(key);
        slurm::run(key, dir, count, label, &cfg, &finished, &mut |m: &str| self.note(m))
    }

    /// Runs `f` in the folder of `key` unless the stage finished before; `f` returns the
    /// summary recorded in `done.json`.
    pub fn stage<S: Serialize + serde::de::DeserializeOwned>(
        &mut self,
        key: &Key,
        label: &str,
        f: impl FnOnce(&mut Self, &Path) -> Result<S>,
    ) -> Result<S> {
        let target = shard().filter(|sh| sh.stage == key.name());
        if self.store.is_done(key) {
            if target.is_some() {
                // A shard started after its stage was finished (e.g. a resubmitted task).
                return Err(Error::ShardDone);
            }
            if self.remote.contains(&key.name()) {
                self.counts.computed += 1;
            } else {
                self.counts.cached += 1;
            }
            return self.store.summary(key);
        }
        if let Some(sh) = shard() {
            if target.is_none() {
                return Err(Error::Other(format!(
                    "runner shard --stage {}: the stage before it, {} ({label}), is not finished; shards run once their inputs are",
                    sh.stage,
                    key.name()
                )));
            }
        }
        let dir = self.store.open(key)?;
        self.note(&format!("{label}: computing ({})", key.name()));
        let t0 = Instant::now();
        let summary = match f(self, &dir) {
            Err(Error::ShardDone) => None,
            Err(e) => return Err(e),
            Ok(s) => Some(s),
        };
        if let Some(s) = &summary {
            self.store.finish(key, s)?;
            self.counts.computed += 1;
        }
        self.note(&format!("{label}: done in {:.1}s", t0.elapsed().as_secs_f64()));
        match (summary, target) {
            (Some(s), None) => Ok(s),
            (_, Some(sh)) => {
                // A shard's items (or its whole stage) are written: leave the marker the
                // coordinator waits for, and stop.
                let m = shard_marker(&dir, sh.index, sh.count);
                let secs = serde_json::json!({ "seconds": t0.elapsed().as_secs_f64() });
                crate::util::write_atomic(&m, secs.to_string().as_bytes())?;
                Err(Error::ShardDone)
            }
            (None, None) => Err(Error::Other(format!("{label}: stopped as a shard outside runner shard"))),
        }
    }
}

/// A progress bar target that draws only on a terminal.
pub fn progress() -> MultiProgress {
    MultiProgress::with_draw_target(ProgressDrawTarget::stderr())
}
