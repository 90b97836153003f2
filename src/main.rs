//! `runner`: parse the command line, call the library, print the error chain once.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 2's `mimalloc.h` (the Rust bindings do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    mcts_ps::util::mark_start();
    // Keep freed pages mapped for a second instead of 10 ms: tensor buffers of the same sizes
    // are freed and allocated every step, and re-faulting zeroed pages cost a third of a decode
    // step. SAFETY: called before any allocation from another thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
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
