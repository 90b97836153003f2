//! `runner`: parse the command line, call the library, print the error chain once.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mimalloc.h` (15 in v2 and v3; the Rust bindings do
/// not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    mcts_ps::util::mark_start();
    // Never return freed pages to the OS: tensor buffers of the same sizes are freed and
    // allocated every step, and re-faulting zeroed (huge) pages cost a third of a decode step
    // and ~100 page faults per training step even with mimalloc 3's 1 s purge delay (perf
    // stat over 25 tiny training steps: 13.4k page faults with the delay, 0.56k without).
    // Memory stays with the process and is reused. SAFETY: called before any allocation from
    // another thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    let cli = mcts_ps::cli::Cli::parse();
    match mcts_ps::cli::dispatch(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let e = anyhow::Error::from(e);
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
