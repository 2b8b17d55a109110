//! The one error type of the lab library.

use std::path::PathBuf;

/// Everything that can go wrong while bringing the lab up, using it or tearing it down.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read, written or removed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// kube-apiserver, etcd or kubectl could not be found.
    #[error("{0}")]
    MissingBinaries(String),

    /// A certificate or key could not be generated or loaded.
    #[error("certificate {name}: {source}")]
    Certificate {
        name: String,
        #[source]
        source: rcgen::Error,
    },

    /// A program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    /// A component exited, or never became ready; `log` is the end of its log.
    #[error("{component} {problem}; last lines of its log:\n{log}")]
    NotReady {
        component: String,
        problem: String,
        log: String,
    },

    /// A command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },

    /// The state directory belongs to something else, or holds a lab already.
    #[error("state directory {}: {problem}", dir.display())]
    StateDir { dir: PathBuf, problem: String },

    /// A recorded lab description could not be read or written.
    #[error("lab record {}: {source}", path.display())]
    Record {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// The network topology could not be built or changed as asked.
    #[error("topology: {0}")]
    Topology(String),

    /// Something the lab waited for did not happen in time.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout { what: String, seconds: u64 },

    /// An object the API server returned was not what the lab expected.
    #[error("{what}: {problem}")]
    Unexpected { what: String, problem: String },

    /// A process recorded in a pid file could not be signalled.
    #[error("cannot signal {name} (pid {pid}): {source}")]
    Signal {
        name: String,
        pid: i32,
        #[source]
        source: std::io::Error,
    },
}

/// The lab library's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}
