//! The agent library's errors. Each names what was wrong: the file, the
//! field, the map or the interface.

use std::path::PathBuf;

/// Everything the datapath module and the standalone mode can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a NodeRuleMap/IdentityMap (or its spec) in YAML or JSON: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{object}: {field}: {message}")]
    Invalid {
        object: String,
        field: String,
        message: String,
    },
    #[error("map {map} holds at most {max} entries; this rule map needs {needed}")]
    MapFull {
        map: &'static str,
        max: u32,
        needed: usize,
    },
    #[error("map {map}: {operation}: {source}")]
    Map {
        map: &'static str,
        operation: &'static str,
        source: aya::maps::MapError,
    },
    #[error("map {0} is missing from the BPF object")]
    MissingMap(&'static str),
    #[error("program {0} is missing from the BPF object")]
    MissingProgram(&'static str),
    #[error("loading the BPF object {object}: {source}")]
    Load {
        object: &'static str,
        source: Box<aya::EbpfError>,
    },
    #[error("program {program}: {source}")]
    Program {
        program: &'static str,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("interface {interface}: {message}")]
    Interface { interface: String, message: String },
    #[error("bpffs at {path}: {message}")]
    Bpffs { path: PathBuf, message: String },
    #[error("Service ranges: {0}")]
    ServiceCidrs(String),
}

/// Shorthand for the library's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(
        object: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            object: object.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}
