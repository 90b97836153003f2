//! Progress a person can follow in a batch log. On a terminal, stages draw indicatif bars; when
//! stderr is not a terminal (nohup, Slurm) those bars draw nothing, so a ticker thread prints,
//! every `progress_seconds`, one line per running stage: items done of total, tokens sampled per
//! second, time left, and the stage's own message (MCTS: its tree statistics so far; training:
//! the loss). Nothing here changes a result.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, WeakProgressBar};

use crate::infer::engine::SAMPLED;

/// A stage's bar as the ticker sees it.
struct Watched {
    bar: WeakProgressBar,
    /// [`SAMPLED`] when the bar was made, and when.
    sampled_at_start: u64,
    started: Instant,
}

static WATCHED: Mutex<Vec<Watched>> = Mutex::new(Vec::new());
static PERIOD_MS: AtomicU64 = AtomicU64::new(0);
static TICKER: OnceLock<()> = OnceLock::new();

/// Whether progress goes to lines rather than bars (stderr is not a terminal).
pub fn as_lines() -> bool {
    !std::io::stderr().is_terminal()
}

/// Starts the ticker (once per process) with a line every `seconds` (0: none) when stderr is
/// not a terminal; a later call only changes the period.
pub fn start(seconds: f64) {
    PERIOD_MS.store((seconds * 1000.0).round() as u64, Ordering::Relaxed);
    if seconds <= 0.0 || !as_lines() {
        return;
    }
    TICKER.get_or_init(|| {
        std::thread::Builder::new()
            .name("progress".into())
            .spawn(|| loop {
                let ms = PERIOD_MS.load(Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(ms.max(100)));
                if ms == 0 {
                    continue;
                }
                for line in lines() {
                    eprintln!("{line}");
                }
            })
            .map(|_| ())
            .unwrap_or(())
    });
}

/// Has the ticker report `bar` until it is finished or dropped.
pub fn watch(bar: &ProgressBar) {
    if let Ok(mut w) = WATCHED.lock() {
        w.retain(|x| x.bar.upgrade().is_some_and(|b| !b.is_finished()));
        w.push(Watched {
            bar: bar.downgrade(),
            sampled_at_start: SAMPLED.load(Ordering::Relaxed),
            started: Instant::now(),
        });
    }
}

/// The current line of every running stage.
pub fn lines() -> Vec<String> {
    let Ok(w) = WATCHED.lock() else { return Vec::new() };
    let now = SAMPLED.load(Ordering::Relaxed);
    w.iter()
        .filter_map(|x| x.bar.upgrade().filter(|b| !b.is_finished()).map(|b| (x, b)))
        .map(|(x, b)| {
            let secs = x.started.elapsed().as_secs_f64();
            let rate = (now.saturating_sub(x.sampled_at_start)) as f64 / secs.max(1e-9);
            line(&b.prefix(), b.position(), b.length(), secs, rate, &b.message())
        })
        .collect()
}

/// One progress line: `[elapsed] label: done/total (pct), tokens/s, eta; message`.
pub fn line(label: &str, done: u64, total: Option<u64>, secs: f64, tokens_per_s: f64, msg: &str) -> String {
    let mut out = format!("[{:7.1}s] progress {}: {done}", crate::util::since_start(), label.trim());
    if let Some(t) = total.filter(|&t| t > 0) {
        out.push_str(&format!("/{t} ({:.0}%)", 100.0 * done as f64 / t as f64));
        if done > 0 && done < t {
            out.push_str(&format!(", eta {}", clock(secs / done as f64 * (t - done) as f64)));
        }
    }
    out.push_str(&format!(", {} elapsed", clock(secs)));
    if tokens_per_s > 0.0 {
        out.push_str(&format!(", {tokens_per_s:.1} tokens/s"));
    }
    if !msg.is_empty() {
        out.push_str("; ");
        out.push_str(msg);
    }
    out
}

/// `1h02m`, `3m05s`, `12s`.
fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_done_total_eta_rate_and_message() {
        let l = line("mcts ours 1", 5, Some(20), 100.0, 42.25, "roots with a correct rollout 3/9");
        // 20 s per item, 15 left: 300 s.
        assert!(
            l.contains("progress mcts ours 1: 5/20 (25%), eta 5m00s, 1m40s elapsed, 42.2 tokens/s; roots"),
            "{l}"
        );
        let l = line("train ours 1", 0, Some(0), 5.0, 0.0, "");
        assert!(l.ends_with("progress train ours 1: 0, 5s elapsed"), "{l}");
        assert_eq!(clock(3725.0), "1h02m");
    }

    #[test]
    fn watched_bars_are_listed_until_finished() {
        let b = ProgressBar::hidden();
        b.set_length(10);
        b.set_prefix("eval zzz-unique");
        watch(&b);
        b.inc(3);
        assert!(lines().iter().any(|l| l.contains("eval zzz-unique: 3/10")), "{:?}", lines());
        b.finish_and_clear();
        assert!(!lines().iter().any(|l| l.contains("zzz-unique")));
    }
}
