//! The `slurm` executor: a shardable stage becomes one `sbatch --array=0-(n-1)` job whose
//! task `i` runs `runner shard FILE --stage KEY --index i --count n`; a training stage becomes
//! one single-task job (`--count 1`: the whole stage). This process is the coordinator: it
//! submits, polls `squeue`, resubmits tasks that left the queue without finishing (failed,
//! cancelled, node lost) up to `executor.slurm.retries` times, and merges when all are done.
//!
//! What is finished is read from the store, never from Slurm: a task is done when its marker
//! `shard-<i>-of-<n>.done` is in the stage folder (or the whole stage is), so a coordinator
//! killed and restarted resubmits only the tasks that are neither done nor still queued
//! (queued tasks are found by their job name, which holds the stage key). Tasks write their
//! output to `task-<i>-of-<n>.log` in the stage folder (appended, one header per attempt) and Slurm's
//! own messages to `slurm-<job id>.out` there.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::launch;
use crate::config::schema::Slurm;
use crate::error::{Error, Result};
use crate::stage::{shard_marker, Key};

/// The log of task `index` of `count`.
fn task_log(dir: &Path, index: usize, count: usize) -> std::path::PathBuf {
    dir.join(format!("task-{index}-of-{count}.log"))
}

/// Runs tasks `0..count` of stage `key` on Slurm and waits until each is done (its marker is
/// written or `finished()` says the whole stage is). `count == 1` submits a plain job.
pub fn run(
    key: &Key,
    dir: &Path,
    count: usize,
    label: &str,
    cfg: &Slurm,
    finished: &dyn Fn() -> bool,
    note: &mut dyn FnMut(&str),
) -> Result<()> {
    let script = write_script(key, dir, count, cfg)?;
    let name = job_name(key);
    let done = |i: usize| finished() || shard_marker(dir, i, count).is_file();
    let mut attempts = vec![0usize; count];
    // The per-task job id last seen in the queue (for sacct and the error message).
    let mut job_of: BTreeMap<usize, String> = BTreeMap::new();
    let mut first = true;
    loop {
        let live = queued(&name)?;
        for (i, (job, _)) in &live {
            job_of.insert(*i, job.clone());
        }
        let missing: Vec<usize> = (0..count).filter(|&i| !done(i) && !live.contains_key(&i)).collect();
        if first {
            let before = (0..count).filter(|&i| done(i)).count();
            if before > 0 || !live.is_empty() {
                note(&format!(
                    "{label}: {name}: {before} of {count} tasks finished before, {} still queued from an earlier coordinator; submitting {}",
                    live.len(),
                    missing.len()
                ));
            }
        } else {
            for &i in &missing {
                let why =
                    job_of.get(&i).map(|j| accounting(j)).unwrap_or_else(|| "never seen in the queue".into());
                if attempts[i] > cfg.retries {
                    return Err(Error::Other(format!(
                        "{label}: slurm task {i} of {count} left the queue without finishing {} times (last: {why}); executor.slurm.retries = {}; its log: {}{}",
                        attempts[i],
                        cfg.retries,
                        task_log(dir, i, count).display(),
                        log_tail(&task_log(dir, i, count))
                    )));
                }
                note(&format!(
                    "{label}: slurm task {i} left the queue without finishing ({why}); resubmitting (attempt {} of {})",
                    attempts[i] + 1,
                    cfg.retries + 1
                ));
            }
        }
        first = false;
        if (0..count).all(done) {
            return Ok(());
        }
        if !missing.is_empty() {
            let job = submit(&script, count, &missing)?;
            for &i in &missing {
                attempts[i] += 1;
            }
            note(&format!("{label}: submitted slurm job {job} (tasks {} of {count})", ranges(&missing)));
        }
        std::thread::sleep(Duration::from_secs_f64(cfg.poll_seconds));
    }
}

/// Fails early, before any compute, when `sbatch` or `squeue` cannot be run.
pub fn check() -> Result<()> {
    for prog in ["sbatch", "squeue"] {
        output(Command::new(prog).arg("--version"))?;
    }
    Ok(())
}

/// The job name of a stage's tasks: unique per stage key, so a restarted coordinator finds
/// the tasks an earlier one queued.
fn job_name(key: &Key) -> String {
    format!("mcts-ps-{}", key.name())
}

/// The batch script of a stage (rewritten on every submission round; the same text).
fn write_script(key: &Key, dir: &Path, count: usize, cfg: &Slurm) -> Result<std::path::PathBuf> {
    let Some(l) = launch() else {
        return Err(Error::Other(
            "executor.kind = \"slurm\": stages can only be submitted when runner was started on an experiment file"
                .into(),
        ));
    };
    let exe =
        std::env::current_exe().map_err(|e| Error::Other(format!("cannot find the runner binary: {e}")))?;
    let cwd =
        std::env::current_dir().map_err(|e| Error::Other(format!("cannot read the working folder: {e}")))?;
    let abs = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { cwd.join(p) };
    let dir = abs(dir);
    let mut s = String::from("#!/bin/bash\n");
    let mut opt = |o: String| {
        s.push_str("#SBATCH ");
        s.push_str(&o);
        s.push('\n');
    };
    opt(format!("--job-name={}", job_name(key)));
    opt(format!("--chdir={}", cwd.display()));
    opt(format!("--output={}", dir.join("slurm-%j.out").display()));
    if !cfg.partition.is_empty() {
        opt(format!("--partition={}", cfg.partition));
    }
    if !cfg.account.is_empty() {
        opt(format!("--account={}", cfg.account));
    }
    if !cfg.time.is_empty() {
        opt(format!("--time={}", cfg.time));
    }
    if cfg.cpus_per_task > 0 {
        opt(format!("--cpus-per-task={}", cfg.cpus_per_task));
    }
    if cfg.gpus_per_task > 0 {
        opt(format!("--gpus-per-task={}", cfg.gpus_per_task));
    }
    for x in &cfg.extra {
        opt(x.clone());
    }
    let mut cmd =
        vec![quote(&exe.display().to_string()), "shard".into(), quote(&abs(&l.file).display().to_string())];
    for set in &l.sets {
        cmd.push("--set".into());
        cmd.push(quote(set));
    }
    cmd.extend([
        "--stage".into(),
        quote(&key.name()),
        "--index".into(),
        "\"$i\"".into(),
        "--count".into(),
        count.to_string(),
    ]);
    let log = format!("{}\"$i-of-{count}.log\"", quote(&dir.join("task-").display().to_string()));
    s.push_str(&format!(
        "i=${{SLURM_ARRAY_TASK_ID:-0}}\n\
         if [ -n \"${{SLURM_CPUS_PER_TASK:-}}\" ]; then export RAYON_NUM_THREADS=$SLURM_CPUS_PER_TASK; fi\n\
         echo \"== slurm job $SLURM_JOB_ID on $(hostname), $(date -u +%FT%TZ)\" >>{log}\n\
         exec {} >>{log} 2>&1\n",
        cmd.join(" ")
    ));
    let path = dir.join(if count == 1 { "slurm-job.sh" } else { "slurm-array.sh" });
    crate::util::write_atomic(&path, s.as_bytes())?;
    Ok(path)
}

/// `s` in single quotes for bash.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `sbatch --parsable [--array=LIST] SCRIPT`; the job id.
fn submit(script: &Path, count: usize, tasks: &[usize]) -> Result<String> {
    let mut cmd = Command::new("sbatch");
    cmd.arg("--parsable");
    if count > 1 {
        cmd.arg(format!("--array={}", ranges(tasks)));
    }
    cmd.arg(script);
    let out = output(&mut cmd)?;
    let id = out.split(';').next().unwrap_or("").trim().to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(Error::Other(format!("{}: expected a job id on stdout, found {out:?}", describe(&cmd))));
    }
    Ok(id)
}

/// The queued tasks of job `name`: array index (0 for a plain job) -> (per-task job id, state).
fn queued(name: &str) -> Result<BTreeMap<usize, (String, String)>> {
    let mut cmd = Command::new("squeue");
    cmd.args(["--noheader", "--array", "--name", name, "--format=%K %A %T"]);
    let out = output(&mut cmd)?;
    let mut live = BTreeMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 3 {
            continue;
        }
        // A plain job's array index prints as N/A.
        let i = f[0].parse().unwrap_or(0);
        live.insert(i, (f[1].to_string(), f[2].to_string()));
    }
    Ok(live)
}

/// How a job ended, from `sacct` when accounting is on (else what is known without it).
fn accounting(job: &str) -> String {
    let mut cmd = Command::new("sacct");
    cmd.args(["--noheader", "--parsable2", "--allocations", "--format=State,ExitCode", "--jobs", job]);
    match cmd.output() {
        Ok(o) if o.status.success() && !o.stdout.is_empty() => {
            format!("job {job}: {}", String::from_utf8_lossy(&o.stdout).trim().replace('|', ", exit code "))
        }
        _ => format!("job {job}; sacct has no record of it"),
    }
}

/// Runs `cmd`, returning stdout; a missing program or a failure is an error naming the
/// command and its stderr.
fn output(cmd: &mut Command) -> Result<String> {
    let o = cmd.output().map_err(|e| {
        Error::Other(format!(
            "executor.kind = \"slurm\": cannot run `{}`: {e} (is Slurm installed and on PATH?)",
            describe(cmd)
        ))
    })?;
    if !o.status.success() {
        return Err(Error::Other(format!(
            "executor.kind = \"slurm\": `{}` failed ({}): {}",
            describe(cmd),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// The last lines of a task log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {}", tail.into_iter().rev().collect::<Vec<_>>().join(" | "))
    }
}

/// `[0, 1, 2, 5]` -> `"0-2,5"` (sbatch's array syntax).
fn ranges(v: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if i == j { v[i].to_string() } else { format!("{}-{}", v[i], v[j]) });
        i = j + 1;
    }
    out.join(",")
}

/// The `slurm` executor: shardable stages as job arrays of `executor.slurm.tasks` tasks,
/// training stages as single jobs.
pub struct SlurmDispatch(pub crate::config::schema::Executor);

impl crate::stage::Dispatch for SlurmDispatch {
    fn shards(
        &mut self,
        key: &Key,
        dir: &Path,
        items: usize,
        label: &str,
        finished: &dyn Fn() -> bool,
        note: &mut dyn FnMut(&str),
    ) -> Result<()> {
        run(key, dir, self.0.shards(items), label, &self.0.slurm, finished, note)
    }

    fn job(
        &mut self,
        key: &Key,
        dir: &Path,
        label: &str,
        finished: &dyn Fn() -> bool,
        note: &mut dyn FnMut(&str),
    ) -> Result<bool> {
        run(key, dir, 1, label, &self.0.slurm, finished, note)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_ranges() {
        assert_eq!(ranges(&[0, 1, 2, 5]), "0-2,5");
        assert_eq!(ranges(&[3]), "3");
        assert_eq!(ranges(&[0, 2, 3, 4, 7, 8]), "0,2-4,7-8");
    }

    #[test]
    fn quoting_survives_bash() {
        let s = "it's a \"test\" $HOME";
        let out = Command::new("bash").arg("-c").arg(format!("printf %s {}", quote(s))).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), s);
    }
}
