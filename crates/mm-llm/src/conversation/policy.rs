//! The fit policy (a config in the house shape) and the window bounds derived from it.

use crate::LlmError;

use super::store::MARKER_ROOM;

/// How a conversation is fitted into its model's window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitPolicy {
    output_reserve: u32,
    trigger_fraction: f64,
    target_fraction: f64,
    keep_recent_user: u32,
    max_tool_output: usize,
}

impl Default for FitPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl FitPolicy {
    /// The defaults (the same as [`Default`]).
    pub const fn new() -> Self {
        Self {
            output_reserve: 8192,
            trigger_fraction: 0.9,
            target_fraction: 0.75,
            keep_recent_user: 1,
            max_tool_output: 10 * 1024,
        }
    }

    /// Tokens kept free for the model's answer (default 8,192), capped at a quarter of the
    /// window so small (2k, 8k) windows still fit: 2,048 at 8k, 4,096 at 16k.
    #[must_use]
    pub const fn with_output_reserve(mut self, output_reserve: u32) -> Self {
        self.output_reserve = output_reserve;
        self
    }

    /// The `output_reserve` setting (see [`FitPolicy::with_output_reserve`]).
    pub const fn output_reserve(&self) -> u32 {
        self.output_reserve
    }

    /// Fitting starts when the prompt passes this fraction of the prompt room (the window
    /// minus the reserve; default 0.9).
    #[must_use]
    pub const fn with_trigger_fraction(mut self, trigger_fraction: f64) -> Self {
        self.trigger_fraction = trigger_fraction;
        self
    }

    /// The `trigger_fraction` setting (see [`FitPolicy::with_trigger_fraction`]).
    pub const fn trigger_fraction(&self) -> f64 {
        self.trigger_fraction
    }

    /// Once triggered, the oldest items go until the prompt is under this fraction of the
    /// prompt room (default 0.75). The gap between the two makes cuts rare and large, so a provider's cached
    /// prompt prefix stays valid for many turns instead of shifting every turn.
    #[must_use]
    pub const fn with_target_fraction(mut self, target_fraction: f64) -> Self {
        self.target_fraction = target_fraction;
        self
    }

    /// The `target_fraction` setting (see [`FitPolicy::with_target_fraction`]).
    pub const fn target_fraction(&self) -> f64 {
        self.target_fraction
    }

    /// How many of the most recent user messages are never dropped (default 1, minimum 1:
    /// the newest user turn always stays).
    #[must_use]
    pub const fn with_keep_recent_user(mut self, keep_recent_user: u32) -> Self {
        self.keep_recent_user = keep_recent_user;
        self
    }

    /// The `keep_recent_user` setting (see [`FitPolicy::with_keep_recent_user`]).
    pub const fn keep_recent_user(&self) -> u32 {
        self.keep_recent_user
    }

    /// Tool outputs longer than this many bytes are cut when recorded, keeping head and tail
    /// (default 10 KiB).
    #[must_use]
    pub const fn with_max_tool_output(mut self, max_tool_output: usize) -> Self {
        self.max_tool_output = max_tool_output;
        self
    }

    /// The `max_tool_output` setting (see [`FitPolicy::with_max_tool_output`]).
    pub const fn max_tool_output(&self) -> usize {
        self.max_tool_output
    }
}

impl FitPolicy {
    pub(super) fn validate(&self) -> Result<(), LlmError> {
        let ok = |f: f64| f > 0.0 && f <= 1.0;
        if !ok(self.trigger_fraction) || !ok(self.target_fraction) {
            return Err(LlmError::InvalidConfig("fit fractions must be in (0, 1]"));
        }
        if self.target_fraction > self.trigger_fraction {
            return Err(LlmError::InvalidConfig(
                "target_fraction must not exceed trigger_fraction",
            ));
        }
        if self.max_tool_output < 2 * MARKER_ROOM {
            return Err(LlmError::InvalidConfig(
                "max_tool_output must be at least 128 bytes",
            ));
        }
        Ok(())
    }
}

/// The token bounds a policy gives a window: computed here only, so the fit and its report
/// agree on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bounds {
    pub(super) window: u64,
    /// Window minus the output reserve.
    pub(super) limit: u64,
    pub(super) trigger: u64,
    pub(super) target: u64,
}

impl FitPolicy {
    /// The bounds for a window of `window` tokens. The reserve follows small windows (at
    /// most a quarter of the window), and the fractions apply to what is left, so the
    /// trigger and the target stay apart at every window size.
    pub(super) fn bounds(&self, window: u32) -> Bounds {
        let window = u64::from(window);
        let reserve = u64::from(self.output_reserve).min(window / 4);
        let limit = window - reserve;
        let frac = |f: f64| (limit as f64 * f) as u64;
        let trigger = frac(self.trigger_fraction).min(limit);
        let target = frac(self.target_fraction).min(trigger);
        Bounds {
            window,
            limit,
            trigger,
            target,
        }
    }
}

impl Bounds {
    /// The bounds as a cached estimate must meet them when the prompt measures `shift`
    /// tokens more than the estimate (fewer when negative).
    pub(super) fn in_estimate_terms(self, shift: i64) -> Bounds {
        let at = |b: u64| b.saturating_add_signed(shift.saturating_neg());
        Bounds {
            window: self.window,
            limit: at(self.limit),
            trigger: at(self.trigger),
            target: at(self.target),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_validation() {
        let bad = FitPolicy::default().with_target_fraction(0.95);
        assert!(bad.validate().is_err());
        let bad = FitPolicy::default().with_trigger_fraction(0.0);
        assert!(bad.validate().is_err());
        let bad = FitPolicy::default().with_max_tool_output(100);
        assert!(bad.validate().is_err());
        assert!(FitPolicy::default().validate().is_ok());
    }

    #[test]
    fn bounds_follow_the_window() {
        let p = FitPolicy::default();
        for window in [2_048u32, 8_192, 16_384, 32_768, 128_000] {
            let b = p.bounds(window);
            assert!(b.target < b.trigger && b.trigger < b.limit && b.limit < b.window);
            assert!(b.window - b.limit <= b.window / 4);
        }
        let b = p.bounds(128_000);
        assert_eq!(b.limit, 128_000 - 8_192);
    }
}
