//! The facade's error types.

use std::path::PathBuf;

/// A configuration that cannot be used, naming the setting and the value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An environment variable whose value cannot be parsed or is out of range.
    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    Env {
        /// The variable, e.g. `MM_MAX_MEMORY_MB`.
        var: &'static str,
        /// Its value as given.
        value: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// A setting whose value is out of range or does not fit with the others.
    #[error("setting {field} = {value} is invalid: {reason}")]
    Invalid {
        /// The setting (TOML key or field name).
        field: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// An explicit setting is larger than the memory limit it must fit under.
    #[error(
        "setting {field} = {value} bytes is larger than the memory limit ({limit} bytes): lower it, raise the limit, or leave it unset to follow the limit"
    )]
    AboveLimit {
        /// The setting (`mmap_cache`).
        field: &'static str,
        /// Its value in bytes.
        value: u64,
        /// The limit in bytes (configured or derived from the system).
        limit: u64,
    },
    /// The configuration file cannot be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML document is malformed, has an unknown key or a value of the wrong type.
    #[error("invalid TOML configuration{}: {message}", path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Toml {
        /// The file, when the document came from one.
        path: Option<PathBuf>,
        /// The parser's message.
        message: String,
    },
    /// No limit was configured and none could be derived from the system.
    #[error("cannot derive a memory limit from the system ({source}); set MM_MAX_MEMORY_MB")]
    NoSystemLimit {
        /// Why the system figures could not be read.
        #[source]
        source: mm_budget::BudgetError,
    },
}

/// An operation of a [`MemoryManager`](crate::MemoryManager) that could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// The memory budget refused the bytes.
    #[error(transparent)]
    Budget(#[from] mm_budget::BudgetError),
    /// The buffer pool refused the request.
    #[error(transparent)]
    Pool(#[from] mm_pool::PoolError),
    /// The request arena refused the allocation.
    #[error(transparent)]
    Arena(#[from] mm_arena::ArenaError),
    /// The interner refused the string.
    #[error(transparent)]
    Intern(#[from] mm_intern::InternError),
    /// The mmap cache could not map the file.
    #[error(transparent)]
    Mmap(#[from] mm_mmap::MmapError),
}
