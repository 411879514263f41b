//! Token counting: a trait and the default byte-based estimate.

/// Counts (or estimates) the tokens a piece of text costs a model.
///
/// A conversation calls it once per recorded item and caches the result in the item, so a
/// fit never re-counts (or re-serialises) the history. Implementations must be deterministic:
/// the same text must always give the same count, or the cached sums drift.
pub trait TokenCounter {
    /// Tokens for `text`.
    fn count(&self, text: &str) -> u32;

    /// Fixed tokens each message costs on top of its text (role markers and framing in the
    /// chat template). The default, 4, is what OpenAI documents for its chat format.
    fn message_overhead(&self) -> u32 {
        4
    }
}

/// The default counter: `ceil(bytes / bytes_per_token)`, 4 bytes per token unless set.
///
/// It costs one division per call, whatever the text, and is what the major APIs suggest as a
/// rule of thumb for English text. It overestimates CJK-light English a little and
/// underestimates code and non-Latin scripts (which can run to 1 to 2 bytes per token); leave
/// headroom with [`FitPolicy::output_reserve`](crate::FitPolicy::output_reserve) and
/// [`FitPolicy::trigger_fraction`](crate::FitPolicy::trigger_fraction), or plug in an exact
/// counter through [`TokenCounter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteEstimate {
    bytes_per_token: u32,
}

impl ByteEstimate {
    /// An estimate at `bytes_per_token` bytes per token (0 is treated as 1).
    pub const fn new(bytes_per_token: u32) -> Self {
        Self {
            bytes_per_token: if bytes_per_token == 0 {
                1
            } else {
                bytes_per_token
            },
        }
    }
}

impl Default for ByteEstimate {
    fn default() -> Self {
        Self::new(4)
    }
}

impl TokenCounter for ByteEstimate {
    fn count(&self, text: &str) -> u32 {
        let tokens = text.len().div_ceil(self.bytes_per_token as usize);
        u32::try_from(tokens).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_up() {
        let c = ByteEstimate::default();
        assert_eq!(c.count(""), 0);
        assert_eq!(c.count("abc"), 1);
        assert_eq!(c.count("abcd"), 1);
        assert_eq!(c.count("abcde"), 2);
        assert_eq!(ByteEstimate::new(0).count("abc"), 3);
    }
}
