//! Usage errors: a command line that makes no sense (exit code 2).

/// A command line that makes no sense (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
