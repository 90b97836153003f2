//! The library's error type.
//!
//! Every variant that comes from user input names where the input came from (a file and a key
//! path, a file and a line, a command-line flag), what was found and what was expected, so
//! `main` can print the chain once and exit.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors raised by the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is missing, unknown, of the wrong type or out of range.
    #[error("{source_name}: key `{key}`: found {found}, expected {expected}")]
    Config {
        /// Where the value came from: a file path, "built-in defaults", "--set", an env var.
        source_name: String,
        /// Dotted key path, e.g. `mcts.alpha`.
        key: String,
        /// What was found, rendered for humans.
        found: String,
        /// What would have been accepted.
        expected: String,
    },

    /// A line of a dataset file is malformed.
    #[error("{}:{line}: {message}", path.display())]
    Data {
        /// The dataset file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },

    /// A checkpoint or model folder is unusable.
    #[error("{}: {message}", path.display())]
    Checkpoint {
        /// The offending file or folder.
        path: PathBuf,
        /// What is wrong (names the tensor or key where there is one).
        message: String,
    },

    /// A command-line argument is invalid.
    #[error("argument {arg}: found {found}, expected {expected}")]
    Argument {
        /// The flag or positional name.
        arg: String,
        /// What was given.
        found: String,
        /// What is accepted.
        expected: String,
    },

    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Numerical failure during training or inference (NaN or infinite loss, ...).
    #[error("{0}")]
    Numerical(String),

    /// Anything else, with a message that says what and where.
    #[error("{0}")]
    Other(String),

    /// A `runner shard` process finished its part of a stage (not a failure: it stops the
    /// pipeline walk there).
    #[error("shard finished")]
    ShardDone,
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// Reads a whole file, naming it on failure.
pub fn read_to_string(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}
