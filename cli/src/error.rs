//! The plugin's errors. `main` prints them; every one says what to fix.

use bulkhead_policy::SimulateError;

use crate::load::LoadErrors;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifests are wrong.
    #[error(transparent)]
    Load(#[from] LoadErrors),
    /// The arguments do not make sense together.
    #[error("{0}")]
    Usage(String),
    /// `--from` or `--to` names nothing in the input.
    #[error("{flag} {value}: {message}")]
    Endpoint {
        /// `--from` or `--to`.
        flag: &'static str,
        /// What the user wrote.
        value: String,
        /// What is wrong with it.
        message: String,
    },
    /// The simulation could not run.
    #[error(transparent)]
    Simulate(#[from] SimulateError),
    /// Writing output failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Serializing output failed (a bug, not bad input).
    #[error("cannot serialize output: {0}")]
    Serialize(String),
}

/// The result of a command.
pub type Result<T> = std::result::Result<T, Error>;
