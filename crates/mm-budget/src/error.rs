//! The crate's one error type.

use std::io;

/// Everything that can go wrong in `mm-budget`: bad configuration, a reservation that does not
/// fit, and reading or parsing the kernel's memory figures.
///
/// The enum is `#[non_exhaustive]`: match the variants you act on and keep a fallback arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// `BudgetConfig::limit` was 0; a budget that can hold nothing is almost certainly a
    /// configuration mistake (an unset environment variable parsed as 0, for example).
    #[error(
        "memory budget limit is 0 bytes; set a positive limit (or use mm_budget::sys::default_limit())"
    )]
    ZeroLimit,

    /// `BudgetConfig::limit` was above [`crate::MAX_LIMIT`] (64 PiB), more than any 64-bit
    /// Linux process can address; most likely a unit mistake.
    #[error(
        "memory budget limit {limit} bytes is above the maximum {max} bytes (64 PiB, the largest \
         address space of any 64-bit target); check the unit of the configured value"
    )]
    LimitTooLarge {
        /// The configured limit.
        limit: u64,
        /// The largest accepted limit, [`crate::MAX_LIMIT`].
        max: u64,
    },

    /// A threshold percentage was outside its accepted range.
    #[error("{field} is {value}%, but it must be between {min}% and {max}%")]
    PercentOutOfRange {
        /// Which `BudgetConfig` field: `"warning_percent"`, `"critical_percent"` or
        /// `"hysteresis_percent"`.
        field: &'static str,
        /// The configured value.
        value: u8,
        /// The smallest accepted value.
        min: u8,
        /// The largest accepted value.
        max: u8,
    },

    /// The warning threshold was not strictly below the critical threshold.
    #[error(
        "warning_percent ({warning}%) must be below critical_percent ({critical}%); \
         e.g. the defaults are 80% and 90%"
    )]
    WarningNotBelowCritical {
        /// The configured warning percentage.
        warning: u8,
        /// The configured critical percentage.
        critical: u8,
    },

    /// The reservation would push the budget's usage above its limit. Retry after memory
    /// was released, or shed load.
    #[error(
        "memory budget exhausted: {requested} bytes requested, {available} of {limit} bytes \
         available"
    )]
    Exhausted {
        /// Bytes asked for.
        requested: u64,
        /// Bytes that were still free when the request was refused (a snapshot: other
        /// threads may have changed it since).
        available: u64,
        /// The budget's limit.
        limit: u64,
    },

    /// A waiting reservation ([`crate::MemoryBudget::reserve_before`],
    /// [`crate::MemoryBudget::reserve_blocking`]) reached its deadline before enough memory
    /// was released; nothing was reserved. Shed the request, or retry later.
    #[error(
        "memory budget wait timed out: {requested} bytes requested, {available} of {limit} bytes \
         available at the deadline"
    )]
    TimedOut {
        /// Bytes asked for.
        requested: u64,
        /// Bytes free at the deadline (a snapshot).
        available: u64,
        /// The budget's limit.
        limit: u64,
    },

    /// The request is larger than the budget's whole limit and can never succeed (for
    /// `force_reserve`: larger than [`crate::MAX_LIMIT`], or it would overflow the counter).
    #[error(
        "request of {requested} bytes can never fit a budget of {limit} bytes; split the work \
         or raise the limit"
    )]
    RequestTooLarge {
        /// Bytes asked for.
        requested: u64,
        /// The largest amount that could ever be granted.
        limit: u64,
    },

    /// [`crate::Reservation::split`] was asked for more bytes than the reservation holds.
    #[error("cannot split {requested} bytes off a reservation of {held} bytes")]
    SplitTooLarge {
        /// Bytes asked for.
        requested: u64,
        /// Bytes the reservation holds.
        held: u64,
    },

    /// A kernel file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that was read.
        path: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A kernel file did not have the expected format.
    #[error("cannot parse {file}: {detail}")]
    Parse {
        /// Which file format was being parsed (e.g. `"/proc/self/statm"`).
        file: &'static str,
        /// What was wrong, with a short excerpt of the offending text.
        detail: String,
    },

    /// The figure does not exist on this platform (only Linux is supported).
    #[error("{what} is only available on Linux")]
    Unsupported {
        /// What was asked for.
        what: &'static str,
    },
}

impl BudgetError {
    /// Builds a [`BudgetError::Parse`] with an excerpt of `text` bounded to 48 characters, so an
    /// error never holds a copy sized by untrusted input.
    pub(crate) fn parse(file: &'static str, what: &str, text: &str) -> Self {
        const MAX: usize = 48;
        let mut excerpt: String = text.chars().take(MAX).collect();
        if text.chars().nth(MAX).is_some() {
            excerpt.push('…');
        }
        BudgetError::Parse {
            file,
            detail: format!("{what} (near {excerpt:?})"),
        }
    }
}
