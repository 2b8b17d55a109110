//! Load errors: each names the file (and line, when the parser can tell), the
//! object and the field.

use std::fmt;
use std::path::PathBuf;

use super::locate::Position;

/// Where something is: a file, and within it a position or a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file, as the user named it (or as found under a directory).
    pub file: PathBuf,
    /// The document, from 0.
    pub document: usize,
    /// The index in a `kind: List`'s `items`, when the object is one.
    pub item: Option<usize>,
    /// The line and column, when known.
    pub position: Option<Position>,
}

impl Location {
    /// The same place, pinned to a position when one is known.
    pub fn at(&self, position: Option<Position>) -> Self {
        Self {
            position: position.or(self.position),
            ..self.clone()
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        match (self.position, self.item) {
            (Some(p), _) => write!(f, ":{}:{}", p.line, p.column),
            (None, Some(item)) => write!(f, " (document {}, items[{item}])", self.document + 1),
            (None, None) => write!(f, " (document {})", self.document + 1),
        }
    }
}

/// Why the input could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A directory without a single manifest.
    #[error("{0}: no *.yaml, *.yml or *.json files found")]
    NoManifests(String),
    /// The text is not YAML (or JSON).
    #[error("{at}: invalid YAML: {message}")]
    Syntax {
        /// Where the parser stopped.
        at: Location,
        /// What it said.
        message: String,
    },
    /// The document is not a Kubernetes object at all.
    #[error("{at}: {message}")]
    NotAnObject {
        /// The document.
        at: Location,
        /// What is missing.
        message: String,
    },
    /// An object with a bad field.
    #[error("{at}: {object}: {message}")]
    Invalid {
        /// The field's position, or the object's.
        at: Location,
        /// `Kind name`.
        object: String,
        /// `field: what is wrong`.
        message: String,
    },
    /// Two objects of one kind and name.
    #[error("{object} is defined twice: at {first} and at {second}")]
    Duplicate {
        /// `Kind name`.
        object: String,
        /// The first definition.
        first: Box<Location>,
        /// The second.
        second: Box<Location>,
    },
}

/// Every error found in the input, one per line.
#[derive(Debug)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}
