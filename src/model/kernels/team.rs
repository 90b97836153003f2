//! A team of helper threads that wait for work by spinning, for the short products of a decode
//! step at small batches.
//!
//! A decode step of one sequence runs a few hundred products of a millisecond or less each.
//! Split over the rayon pool, every product wakes a sleeping worker (a futex wake, a context
//! switch, and in a virtual machine an interrupt to another virtual CPU): measured on a 2-core
//! VM, the layers of SmolLM2-135M took 14 ms on one thread and 15 ms split over two, so the
//! wake-ups cost more than the second core brought. The team's helpers instead watch an atomic
//! counter for a while after each job (`SPIN`) before they park, so during a decode loop a job
//! starts on the helper within a few hundred nanoseconds.
//!
//! Every helper takes part in every job: the caller publishes the job, runs chunks itself, and
//! returns only after each helper has reported that it finished this job, so no helper can touch
//! the job (which lives on the caller's stack) after the call. One job at a time: a caller that
//! finds the team busy (another decode lane, or a nested call) gets `false` and splits its work
//! another way. Which thread computes a chunk never changes the chunk's numbers.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long a helper keeps watching for the next job before it parks.
const SPIN: Duration = Duration::from_millis(2);

/// The job being run: `chunks` calls of `f`, handed out by `next`.
struct Job {
    f: *const (dyn Fn(usize) + Sync),
    chunks: usize,
}

struct Shared {
    /// Bumped once per job; a helper runs a job when it sees a new value.
    generation: AtomicUsize,
    /// The current job (valid while its generation's helpers have not all finished).
    job: Mutex<Option<JobPtr>>,
    /// Next chunk to hand out.
    next: AtomicUsize,
    /// Helpers that finished the current job.
    finished: AtomicUsize,
    /// Helper threads, to unpark.
    helpers: Mutex<Vec<Thread>>,
    /// Set while a caller owns the team.
    busy: AtomicBool,
    /// Set when `f` panicked on a helper during the current job.
    panicked: AtomicBool,
    /// Number of helpers.
    size: usize,
}

#[derive(Clone, Copy)]
struct JobPtr(*const Job);
// SAFETY: the job outlives every helper's use of it (see the module's protocol).
unsafe impl Send for JobPtr {}

static TEAM: OnceLock<Shared> = OnceLock::new();

fn team() -> &'static Shared {
    TEAM.get_or_init(|| {
        // The global pool's size (a fresh thread is in no pool), whichever pool first asks.
        let threads = thread::spawn(rayon::current_num_threads).join().unwrap_or(1);
        let size = threads.saturating_sub(1);
        Shared {
            generation: AtomicUsize::new(0),
            job: Mutex::new(None),
            next: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            helpers: Mutex::new(Vec::new()),
            busy: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            size,
        }
    })
}

fn start_helpers(t: &'static Shared) {
    let mut hs = t.helpers.lock().expect("team helpers");
    if hs.len() == t.size {
        return;
    }
    // A helper starts from the generation before the caller's job, whenever its thread starts.
    let seen = t.generation.load(Ordering::Acquire);
    for i in hs.len()..t.size {
        let h = thread::Builder::new()
            .name(format!("mcts-ps-team-{i}"))
            .spawn(move || helper(t, seen))
            .expect("spawn a team helper thread");
        hs.push(h.thread().clone());
    }
}

fn helper(t: &'static Shared, mut seen: usize) {
    loop {
        let started = Instant::now();
        let mut spins = 0u32;
        let g = loop {
            let g = t.generation.load(Ordering::Acquire);
            if g != seen {
                break g;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) && started.elapsed() > SPIN {
                thread::park_timeout(Duration::from_millis(50));
                continue;
            }
            std::hint::spin_loop();
        };
        seen = g;
        let job = t.job.lock().expect("team job").expect("a published job");
        // SAFETY: the caller keeps the job alive until this helper's `finished` increment.
        let job = unsafe { &*job.0 };
        let f = unsafe { &*job.f };
        // A panic in `f` is reported to the caller (which would otherwise wait forever).
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loop {
            let c = t.next.fetch_add(1, Ordering::Relaxed);
            if c >= job.chunks {
                break;
            }
            f(c);
        }))
        .is_ok();
        if !ok {
            t.panicked.store(true, Ordering::Release);
        }
        t.finished.fetch_add(1, Ordering::AcqRel);
    }
}

/// Runs `f(0..chunks)` on the calling thread and the team's helpers; `false` (nothing run)
/// when the team has no helpers, is in use, or the caller runs in a one-thread rayon pool.
pub fn run(chunks: usize, f: &(dyn Fn(usize) + Sync)) -> bool {
    let t = team();
    if t.size == 0 || rayon::current_num_threads() < 2 || t.busy.swap(true, Ordering::Acquire) {
        return false;
    }
    start_helpers(t);
    // SAFETY of the lifetime erasure: `job` and `f` outlive every helper's use (we wait for
    // all helpers' `finished` below before returning).
    let f: *const (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(f) };
    let job = Job { f, chunks };
    *t.job.lock().expect("team job") = Some(JobPtr(&job));
    t.next.store(0, Ordering::Relaxed);
    t.finished.store(0, Ordering::Relaxed);
    t.generation.fetch_add(1, Ordering::AcqRel);
    for h in t.helpers.lock().expect("team helpers").iter() {
        h.unpark();
    }
    // The caller's own chunks; if one panics, the helpers still finish before it unwinds
    // (they hold pointers into this frame).
    let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loop {
        let c = t.next.fetch_add(1, Ordering::Relaxed);
        if c >= chunks {
            break;
        }
        // SAFETY: `f` is the caller's live closure.
        unsafe { (*f)(c) };
    }));
    while t.finished.load(Ordering::Acquire) < t.size {
        std::hint::spin_loop();
    }
    *t.job.lock().expect("team job") = None;
    let panicked = t.panicked.swap(false, Ordering::AcqRel);
    t.busy.store(false, Ordering::Release);
    if let Err(p) = mine {
        std::panic::resume_unwind(p);
    }
    assert!(!panicked, "a team helper panicked while running a chunk");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_runs_once_per_job_and_the_team_is_free_after() {
        let counts: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let mut ran = 0;
        // Other tests of this process may hold the team for a moment: those calls say `false`
        // and run nothing.
        while ran < 100 {
            let done = pool.install(|| {
                run(counts.len(), &|c| {
                    counts[c].fetch_add(1, Ordering::Relaxed);
                })
            });
            if team().size == 0 {
                assert!(!done, "no helpers, nothing run");
                return;
            }
            ran += usize::from(done);
            assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == ran));
        }
        // In a one-thread pool the caller splits its work another way.
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert!(!one.install(|| run(4, &|_| unreachable!("a one-thread pool runs nothing here"))));
    }

    #[test]
    fn a_panic_in_a_chunk_reaches_the_caller_and_frees_the_team() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        if team().size == 0 {
            return;
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.install(|| while !run(64, &|c| assert!(c != 63, "chunk 63 fails")) {})
        }));
        assert!(r.is_err());
        // Free again: a later job runs.
        let hits = AtomicUsize::new(0);
        while !pool.install(|| {
            run(8, &|_| {
                hits.fetch_add(1, Ordering::Relaxed);
            })
        }) {}
        assert_eq!(hits.load(Ordering::Relaxed), 8);
    }
}
