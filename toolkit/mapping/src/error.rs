//! What can be wrong with a mapping file.

use std::path::PathBuf;

/// A mapping file that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// The file could not be read.
    #[error("cannot read the mapping file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or breaks a rule.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending value.
        line: usize,
        /// What is wrong and what to do.
        message: String,
    },
    /// The file has no such capability.
    #[error("the mapping file {path} has no capability `{name}`; it has: {known}")]
    UnknownCapability {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// The names it has.
        known: String,
    },
}
