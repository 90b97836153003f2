//! A team of helper threads that wait for work by spinning, for the short products of a decode
//! step at small batches.
//!
//! A decode step of one sequence runs a few hundred products of well under a millisecond each.
//! Split over the rayon pool, every product wakes a sleeping worker (a futex wake, a context
//! switch, and in a virtual machine an interrupt to another virtual CPU). Measured with
//! examples/kernel_probe.rs on a 2-core VM (AMD EPYC, 2026-12-03): the SmolLM2-135M layers'
//! 8-bit products took 14.2 ms per step on one thread and 15-16 ms split over two rayon
//! workers; with this team, 13.2 ms, and the f32 products 38 ms -> 22 ms. The helpers
//! watch an atomic counter for [`SPIN`] after each job before they park, so within a decode
//! step a job starts on them without a wake-up.
//!
//! Only a caller that said it has the machine to itself uses the team ([`exclusive`]: the
//! inference engine's single decode lane); anywhere else [`run`] says `false` and the caller
//! splits its work on rayon as before, so helpers never spin against other busy threads.
//!
//! Every helper takes part in every job: the caller publishes the job, runs chunks itself, and
//! returns only after each helper has reported that it finished this job, so no helper can touch
//! the job (which lives on the caller's stack) after the call. One job at a time: a caller that
//! finds the team busy (a nested call) gets `false`. Which thread computes a chunk never
//! changes the chunk's numbers.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long a helper keeps watching for the next job before it parks.
pub const SPIN: Duration = Duration::from_micros(500);

/// The job being run: `chunks` calls of `f`, handed out by `next`.
struct Job {
    f: *const (dyn Fn(usize) + Sync),
    chunks: usize,
}

struct Shared {
    /// Bumped once per job; a helper runs a job when it sees a new value.
    generation: AtomicUsize,
    /// The current job (valid until all helpers have finished its generation).
    job: AtomicPtr<Job>,
    /// Next chunk to hand out.
    next: AtomicUsize,
    /// Helpers that finished the current job.
    finished: AtomicUsize,
    /// Set while a caller owns the team.
    busy: AtomicBool,
    /// Set when `f` panicked on a helper during the current job.
    panicked: AtomicBool,
    /// The helper threads (to unpark), as many as could be started.
    helpers: Vec<Thread>,
}

static TEAM: OnceLock<Shared> = OnceLock::new();

thread_local! {
    static EXCLUSIVE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the team allowed for products computed on this thread (see the module docs).
pub fn exclusive<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            EXCLUSIVE.with(|e| e.set(self.0));
        }
    }
    let _restore = Restore(EXCLUSIVE.with(|e| e.replace(true)));
    f()
}

fn team() -> &'static Shared {
    TEAM.get_or_init(|| {
        // The global pool's size (a fresh thread is in no pool), whichever pool first asks.
        let threads = thread::spawn(rayon::current_num_threads).join().unwrap_or(1);
        // Helpers wait for this initialisation to finish before they look at the team.
        let helpers = (1..threads)
            .filter_map(|i| {
                thread::Builder::new().name(format!("mcts-ps-team-{i}")).spawn(|| helper(team())).ok()
            })
            .map(|h| h.thread().clone())
            .collect();
        Shared {
            generation: AtomicUsize::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            next: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            busy: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            helpers,
        }
    })
}

fn helper(t: &'static Shared) {
    let mut seen = 0;
    loop {
        let started = Instant::now();
        let mut spins = 0u32;
        seen = loop {
            let g = t.generation.load(Ordering::Acquire);
            if g != seen {
                break g;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && started.elapsed() > SPIN {
                thread::park_timeout(Duration::from_millis(50));
                continue;
            }
            std::hint::spin_loop();
        };
        let job = t.job.load(Ordering::Acquire);
        // A panic in `f` is reported to the caller (which would otherwise wait forever).
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // SAFETY: the caller keeps the job alive until this helper's `finished` increment.
            let Some(job) = (unsafe { job.as_ref() }) else { return };
            let f = unsafe { &*job.f };
            loop {
                let c = t.next.fetch_add(1, Ordering::Relaxed);
                if c >= job.chunks {
                    break;
                }
                f(c);
            }
        }))
        .is_ok();
        if !ok {
            t.panicked.store(true, Ordering::Release);
        }
        t.finished.fetch_add(1, Ordering::AcqRel);
    }
}

/// Runs `f(0..chunks)` on the calling thread and the team's helpers; `false` (nothing run)
/// when the caller is not inside [`exclusive`], runs in a one-thread rayon pool, the team has no
/// helpers, or the team is in use.
pub fn run(chunks: usize, f: &(dyn Fn(usize) + Sync)) -> bool {
    if !EXCLUSIVE.with(|e| e.get()) || rayon::current_num_threads() < 2 {
        return false;
    }
    let t = team();
    if t.helpers.is_empty() || t.busy.swap(true, Ordering::Acquire) {
        return false;
    }
    // SAFETY of the lifetime erasure: `job` and `f` outlive every helper's use (we wait for
    // all helpers' `finished` below before returning).
    let f: *const (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(f) };
    let mut job = Job { f, chunks };
    t.job.store(&mut job, Ordering::Relaxed);
    t.next.store(0, Ordering::Relaxed);
    t.finished.store(0, Ordering::Relaxed);
    t.generation.fetch_add(1, Ordering::AcqRel);
    for h in &t.helpers {
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
    // Wait for every helper; yield now and then in case one was descheduled mid-chunk.
    let mut spins = 0u32;
    while t.finished.load(Ordering::Acquire) < t.helpers.len() {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(64) {
            thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    t.job.store(std::ptr::null_mut(), Ordering::Relaxed);
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

    fn pool(n: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap()
    }

    #[test]
    fn only_exclusive_callers_on_several_threads_use_the_team() {
        let two = pool(2);
        assert!(!two.install(|| run(4, &|_| unreachable!("not exclusive: nothing runs here"))));
        let one = pool(1);
        assert!(!one.install(|| exclusive(|| run(4, &|_| unreachable!("one thread: nothing runs")))));
        // Nested: the team is busy with the outer job.
        let inner = AtomicUsize::new(0);
        let ran = two.install(|| {
            exclusive(|| {
                run(2, &|_| {
                    inner.fetch_add(usize::from(run(2, &|_| {})), Ordering::Relaxed);
                })
            })
        });
        if ran {
            assert_eq!(inner.load(Ordering::Relaxed), 0);
        }
        // `exclusive` is scoped.
        assert!(!EXCLUSIVE.with(|e| e.get()));
    }

    #[test]
    fn every_chunk_runs_once_per_job() {
        let counts: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        let two = pool(2);
        let mut ran = 0;
        // Other tests of this process may hold the team for a moment: those calls say `false`
        // and run nothing.
        while ran < 100 {
            let done = two.install(|| {
                exclusive(|| {
                    run(counts.len(), &|c| {
                        counts[c].fetch_add(1, Ordering::Relaxed);
                    })
                })
            });
            if team().helpers.is_empty() {
                assert!(!done, "no helpers, nothing run");
                return;
            }
            ran += usize::from(done);
            assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == ran));
        }
    }

    #[test]
    fn a_panic_on_a_helper_reaches_the_caller_and_frees_the_team() {
        let two = pool(2);
        if team().helpers.is_empty() {
            return;
        }
        // Only chunks computed on a helper panic; each takes 50 us, so a helper (woken by the
        // job) takes one of the 1,000 long before the caller could finish them all.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            two.install(|| {
                exclusive(|| {
                    while !run(1000, &|_| {
                        let on_helper =
                            thread::current().name().is_some_and(|n| n.starts_with("mcts-ps-team-"));
                        assert!(!on_helper, "a chunk fails on a helper");
                        thread::sleep(Duration::from_micros(50));
                    }) {}
                })
            })
        }));
        assert!(r.is_err());
        // Free again: a later job runs.
        let hits = AtomicUsize::new(0);
        while !two.install(|| {
            exclusive(|| {
                run(8, &|_| {
                    hits.fetch_add(1, Ordering::Relaxed);
                })
            })
        }) {}
        assert_eq!(hits.load(Ordering::Relaxed), 8);
    }
}
