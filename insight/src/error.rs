//! The errors of the analysis crate.

/// Input to an analysis that does not make sense, naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InsightError {
    /// A command-line style argument with a bad value.
    #[error("{name} {input:?}: {reason}")]
    Argument {
        name: String,
        input: String,
        reason: String,
    },
}
