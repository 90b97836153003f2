//! mcts-ps: reproduces "Enhancing Reasoning through Process Supervision with Monte Carlo Tree
//! Search" (arXiv 2501.01478). The method (eqs. 1 and 2) is summarised in the README and in
//! the module docs of `search` and `train::loss`.

pub mod cli;
pub mod config;
pub mod error;
pub mod eval;
pub mod infer;
pub mod method;
pub mod model;
pub mod pipeline;
pub mod report;
pub mod rng;
pub mod search;
pub mod stage;
pub mod task;
pub mod train;
pub mod util;

pub use error::{Error, Result};
