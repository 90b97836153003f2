//! Stage plumbing shared by every method: the run's problems (training pool, validation split,
//! worked examples, test set), the context a stage runs in ([`Ctx`]), content-addressed stage
//! folders ([`store`]), resume, shards of a stage, progress and the run log. The stages are in
//! `method/`, the order they run in is `pipeline/graph.rs`; executors plug in through
//! [`Dispatch`], so nothing here depends on how or where a stage runs.

pub mod problems;
pub mod progress;
pub mod store;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::DType;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

pub use problems::{problem_sets, split_problems, ProblemSets, Problems};
pub use store::{Key, Store};

use crate::config::Resolved;
use crate::error::{Error, Result};
use crate::model::backend::InferBackend;
use crate::task::prompt::{Shot, Template};
use crate::task::{Problem, TaskKind};

/// A model produced by a stage or given by the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ModelRef {
    /// Stable identity: the producing stage's key, or a fingerprint of the source files.
    pub id: String,
    /// A checkpoint folder or a `.gguf` file.
    pub path: PathBuf,
}

/// The prompt's part of a stage key (see [`Ctx::prompt_key`]).
#[derive(Serialize)]
#[serde(untagged)]
pub enum PromptKey<'a> {
    /// Zero-shot: the configured template name.
    Template(&'a str),
    /// With worked examples.
    Shots {
        /// The configured template name.
        template: &'a str,
        /// The examples, in prompt order.
        shots: &'a [Shot],
    },
}

/// Counters of one pipeline invocation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    /// Stages computed now.
    pub computed: usize,
    /// Stages found finished.
    pub cached: usize,
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

static SHARD: std::sync::OnceLock<Shard> = std::sync::OnceLock::new();

/// Makes this process a shard (once, by `runner shard`).
pub fn set_shard(s: Shard) {
    let _ = SHARD.set(s);
}

/// This process's shard, if it is one.
pub fn shard() -> Option<&'static Shard> {
    SHARD.get()
}

/// Where a run's stages go when they are not computed in this process: implemented by the
/// pipeline's executors (worker processes, Slurm), asked by [`Ctx::shard_out`] and
/// [`Ctx::job_out`]. Stage code never names an executor.
pub trait Dispatch {
    /// Computes the shards of stage `key` (folder `dir`, `items` items in its fixed order)
    /// elsewhere and waits for them; `finished` tells whether the stage is done meanwhile.
    fn shards(
        &mut self,
        key: &Key,
        dir: &Path,
        items: usize,
        label: &str,
        finished: &dyn Fn() -> bool,
        note: &mut dyn FnMut(&str),
    ) -> Result<()>;

    /// Computes stage `key` whole elsewhere and waits; `false` when it is left to this process
    /// (the default: only Slurm sends training stages away).
    fn job(
        &mut self,
        _key: &Key,
        _dir: &Path,
        _label: &str,
        _finished: &dyn Fn() -> bool,
        _note: &mut dyn FnMut(&str),
    ) -> Result<bool> {
        Ok(false)
    }
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
    /// Training pool (without the validation problems and the worked examples).
    pub train_pool: Vec<Problem>,
    /// Validation problems (`task.val_size`), taken out of the training pool.
    pub val_set: Vec<Problem>,
    /// Test set.
    pub test_set: Vec<Problem>,
    /// Worked examples shown before every question (`task.shots`).
    pub shots: Vec<Shot>,
    /// Warnings about the inputs (run.log and the table show them).
    pub warnings: Vec<String>,
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
    /// Where stages go that are not computed here (`None`: everything runs in this process).
    dispatch: Option<Box<dyn Dispatch>>,
    log: Option<std::fs::File>,
    started: Instant,
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
        progress::start(cfg.exp.progress_seconds);
        let Problems { train: train_pool, val: val_set, test: test_set, shots, warnings, .. } =
            split_problems(&cfg)?;
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
            val_set,
            test_set,
            shots,
            warnings: Vec::new(),
            bars,
            counts: Counts::default(),
            remote: Default::default(),
            dispatch: None,
            log,
            started: Instant::now(),
        }
        .with_warnings(warnings))
    }

    fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        for w in warnings {
            self.warn(&w);
        }
        self
    }

    /// A warning: the run log, and the table (through `runs.json`).
    pub fn warn(&mut self, msg: &str) {
        self.note(&format!("warning: {msg}"));
        if !self.warnings.iter().any(|w| w == msg) {
            self.warnings.push(msg.to_string());
        }
    }

    /// What the prompt contributes to a stage key: the template name as configured, and the
    /// worked examples when there are any (so keys of zero-shot runs are what they were before
    /// `task.shots` existed).
    pub fn prompt_key(&self) -> PromptKey<'_> {
        if self.shots.is_empty() {
            PromptKey::Template(&self.cfg.exp.model.template)
        } else {
            PromptKey::Shots { template: &self.cfg.exp.model.template, shots: &self.shots }
        }
    }

    /// Writes a line to the run log and above the progress bars (to stderr when the bars do not
    /// draw: a batch log gets every stage line).
    pub fn note(&mut self, msg: &str) {
        let line = format!("[{:7.1}s] {msg}", self.started.elapsed().as_secs_f64());
        match self.log.as_mut() {
            Some(f) => {
                let _ = writeln!(f, "{line}");
                if self.bars.is_hidden() {
                    eprintln!("{line}");
                } else {
                    let _ = self.bars.println(&line);
                }
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
        progress::watch(&b);
        b
    }

    /// Computes the items of shardable stage `key` (of which there are `items`) in `runner
    /// shard` processes before the stage runs here and merges them: at most
    /// `executor.workers` local processes (`workers`) or `executor.slurm.tasks` array tasks
    /// (`slurm`). Nothing when the stage is finished, the executor is local or this process is
    /// itself a shard.
    pub fn shard_out(&mut self, key: &Key, items: usize, label: &str) -> Result<()> {
        self.dispatched(key, |d, dir, finished, note| d.shards(key, dir, items, label, finished, note))
            .map(|_| ())
    }

    /// Runs stage `key` whole elsewhere (a training stage as one Slurm job) and waits for it,
    /// when the dispatcher does that; nothing otherwise, or when it is finished.
    pub fn job_out(&mut self, key: &Key, label: &str) -> Result<()> {
        if self.dispatched(key, |d, dir, finished, note| d.job(key, dir, label, finished, note))?
            == Some(true)
        {
            self.remote.insert(key.name());
        }
        Ok(())
    }

    /// Calls `f` with the dispatcher, the stage folder, a finished check and the run log,
    /// unless there is no dispatcher, the stage is finished or this process is a shard.
    fn dispatched<T>(
        &mut self,
        key: &Key,
        f: impl FnOnce(&mut dyn Dispatch, &Path, &dyn Fn() -> bool, &mut dyn FnMut(&str)) -> Result<T>,
    ) -> Result<Option<T>> {
        if self.dispatch.is_none() || self.store.is_done(key) || shard().is_some() {
            return Ok(None);
        }
        let dir = self.store.open(key)?;
        let mut d = self.dispatch.take().expect("checked above");
        let store = self.store.clone();
        let finished = || store.is_done(key);
        let r = f(d.as_mut(), &dir, &finished, &mut |m: &str| self.note(m));
        self.dispatch = Some(d);
        r.map(Some)
    }

    /// Sends shardable and training stages to `d` instead of computing them all here (the
    /// pipeline sets it from `[executor]`).
    pub fn set_dispatch(&mut self, d: Box<dyn Dispatch>) {
        self.dispatch = Some(d);
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
