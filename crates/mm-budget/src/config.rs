//! Budget configuration and its validation.

use crate::BudgetError;

/// The largest accepted budget limit: 2^56 bytes (64 PiB).
///
/// No 64-bit Linux process can address more (x86-64 with 5-level paging gives user space
/// 2^56 bytes; 4-level paging and AArch64 give less), so a larger limit can never bind and is
/// almost certainly a unit mistake. The cap also leaves 8 bits of headroom in the `u64`
/// counter, so sums of in-limit values cannot overflow.
///
/// The limit is deliberately *not* checked against the machine's RAM: over-committing a
/// budget (counting lazily paged mapped files, or relying on swap) is a legitimate choice and
/// the check would make a configuration valid on one machine and invalid on another. Use
/// [`crate::sys::default_limit`] for a machine-derived figure.
pub const MAX_LIMIT: u64 = 1 << 56;

/// Default warning threshold, in percent of the limit.
pub const DEFAULT_WARNING_PERCENT: u8 = 80;
/// Default critical threshold, in percent of the limit.
pub const DEFAULT_CRITICAL_PERCENT: u8 = 90;
/// Default hysteresis, in percentage points below a threshold.
pub const DEFAULT_HYSTERESIS_PERCENT: u8 = 5;

/// Configuration of a [`crate::MemoryBudget`].
///
/// Build it with [`BudgetConfig::new`] (defaults 80% / 90% / 5 points) and adjust it with
/// the `with_*` setters (the limit has no sensible default, so `new` takes it):
///
/// ```
/// use mm_budget::{BudgetConfig, MemoryBudget};
///
/// let config = BudgetConfig::new(1_000_000_000).with_warning_percent(70);
/// let budget = MemoryBudget::new(config)?;
/// assert_eq!(budget.thresholds().warning, 700_000_000);
/// assert_eq!(budget.thresholds().warning_release, 650_000_000);
/// # Ok::<(), mm_budget::BudgetError>(())
/// ```
///
/// # Thresholds and hysteresis
/// A budget is at [`crate::PressureLevel::Warning`] once `used >= warning_percent` of the
/// limit and at [`crate::PressureLevel::Critical`] once `used >= critical_percent` (threshold
/// bytes are rounded up, so a tiny budget at 0 bytes is never under pressure). It only goes
/// back *down* once usage falls below the threshold minus `hysteresis_percent` points: with
/// the defaults, a budget that reached Warning at 80% returns to Normal below 75%, one at
/// Critical returns to Warning below 85%. Set `hysteresis_percent` to 0 for plain level
/// tracking (every crossing of the threshold in either direction is an event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct BudgetConfig {
    limit: u64,
    #[cfg_attr(feature = "serde", serde(default = "default_warning"))]
    warning_percent: u8,
    #[cfg_attr(feature = "serde", serde(default = "default_critical"))]
    critical_percent: u8,
    #[cfg_attr(feature = "serde", serde(default = "default_hysteresis"))]
    hysteresis_percent: u8,
}

#[cfg(feature = "serde")]
const fn default_warning() -> u8 {
    DEFAULT_WARNING_PERCENT
}
#[cfg(feature = "serde")]
const fn default_critical() -> u8 {
    DEFAULT_CRITICAL_PERCENT
}
#[cfg(feature = "serde")]
const fn default_hysteresis() -> u8 {
    DEFAULT_HYSTERESIS_PERCENT
}

impl BudgetConfig {
    /// A configuration with `limit` bytes and the default thresholds (80% warning, 90%
    /// critical, 5 points of hysteresis). It is validated by [`crate::MemoryBudget::new`] or
    /// [`BudgetConfig::validate`].
    pub const fn new(limit: u64) -> Self {
        BudgetConfig {
            limit,
            warning_percent: DEFAULT_WARNING_PERCENT,
            critical_percent: DEFAULT_CRITICAL_PERCENT,
            hysteresis_percent: DEFAULT_HYSTERESIS_PERCENT,
        }
    }

    /// The hard limit in bytes: `try_reserve` never lets the sum of reservations exceed it.
    /// Must be in `1..=MAX_LIMIT` (checked by [`BudgetConfig::validate`]).
    #[must_use]
    pub const fn with_limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }

    /// Warning threshold in percent of the limit: default 80, in `1..=99` and below the
    /// critical threshold.
    #[must_use]
    pub const fn with_warning_percent(mut self, percent: u8) -> Self {
        self.warning_percent = percent;
        self
    }

    /// Critical threshold in percent of the limit: default 90, in `2..=100`.
    #[must_use]
    pub const fn with_critical_percent(mut self, percent: u8) -> Self {
        self.critical_percent = percent;
        self
    }

    /// How many percentage points below a threshold usage must fall before the level goes
    /// back down: default 5, in `0..warning_percent` (0: plain level tracking).
    #[must_use]
    pub const fn with_hysteresis_percent(mut self, points: u8) -> Self {
        self.hysteresis_percent = points;
        self
    }

    /// The hard limit in bytes.
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// The warning threshold in percent of the limit.
    pub const fn warning_percent(&self) -> u8 {
        self.warning_percent
    }

    /// The critical threshold in percent of the limit.
    pub const fn critical_percent(&self) -> u8 {
        self.critical_percent
    }

    /// The hysteresis in percentage points.
    pub const fn hysteresis_percent(&self) -> u8 {
        self.hysteresis_percent
    }

    /// A configuration whose limit is [`crate::sys::default_limit`] (3/4 of the cgroup limit or
    /// of the machine's RAM, whichever is smaller) with the default thresholds.
    ///
    /// # Errors
    /// Whatever `default_limit` returns: [`BudgetError::Unsupported`] off Linux, or an I/O or
    /// parse error when `/proc/meminfo` cannot be read.
    pub fn from_system() -> Result<Self, BudgetError> {
        Ok(BudgetConfig::new(crate::sys::default_limit()?))
    }

    /// Checks every field; [`crate::MemoryBudget::new`] calls it.
    ///
    /// # Errors
    /// [`BudgetError::ZeroLimit`], [`BudgetError::LimitTooLarge`],
    /// [`BudgetError::PercentOutOfRange`] or [`BudgetError::WarningNotBelowCritical`].
    pub fn validate(&self) -> Result<(), BudgetError> {
        if self.limit == 0 {
            return Err(BudgetError::ZeroLimit);
        }
        if self.limit > MAX_LIMIT {
            return Err(BudgetError::LimitTooLarge {
                limit: self.limit,
                max: MAX_LIMIT,
            });
        }
        check_range("critical_percent", self.critical_percent, 2, 100)?;
        check_range("warning_percent", self.warning_percent, 1, 99)?;
        if self.warning_percent >= self.critical_percent {
            return Err(BudgetError::WarningNotBelowCritical {
                warning: self.warning_percent,
                critical: self.critical_percent,
            });
        }
        check_range(
            "hysteresis_percent",
            self.hysteresis_percent,
            0,
            self.warning_percent - 1,
        )?;
        Ok(())
    }

    /// The byte thresholds this configuration implies. Call on a validated configuration.
    pub(crate) fn thresholds(&self) -> Thresholds {
        let pct = |p: u8| percent_of(self.limit, p);
        Thresholds {
            warning: pct(self.warning_percent),
            critical: pct(self.critical_percent),
            warning_release: pct(self.warning_percent - self.hysteresis_percent),
            critical_release: pct(self.critical_percent - self.hysteresis_percent),
        }
    }
}

fn check_range(field: &'static str, value: u8, min: u8, max: u8) -> Result<(), BudgetError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(BudgetError::PercentOutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

/// `ceil(limit * percent / 100)`, in `u128` so no intermediate overflows.
fn percent_of(limit: u64, percent: u8) -> u64 {
    let scaled = u128::from(limit) * u128::from(percent);
    // The result is at most `limit`, so it fits a u64.
    u64::try_from(scaled.div_ceil(100)).unwrap_or(limit)
}

/// The byte figures at which a budget changes [`crate::PressureLevel`].
///
/// A level is entered when `used >= warning` (or `critical`) and left downwards when
/// `used < warning_release` (or `critical_release`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Thresholds {
    /// Usage at or above which the budget is at least at Warning.
    pub warning: u64,
    /// Usage at or above which the budget is Critical.
    pub critical: u64,
    /// Usage below which a Warning budget returns to Normal.
    pub warning_release: u64,
    /// Usage below which a Critical budget returns to Warning (or Normal).
    pub critical_release: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_up() {
        let c = BudgetConfig::new(1000);
        c.validate().unwrap();
        let t = c.thresholds();
        assert_eq!(t.warning, 800);
        assert_eq!(t.critical, 900);
        assert_eq!(t.warning_release, 750);
        assert_eq!(t.critical_release, 850);
        // A 1-byte budget: thresholds round up so 0 bytes is never "under pressure".
        let t = BudgetConfig::new(1).thresholds();
        assert_eq!((t.warning, t.critical, t.warning_release), (1, 1, 1));
    }

    #[test]
    fn max_limit_has_no_overflow() {
        let t = BudgetConfig::new(MAX_LIMIT)
            .with_critical_percent(100)
            .thresholds();
        assert_eq!(t.critical, MAX_LIMIT);
        assert_eq!(t.warning, (MAX_LIMIT * 4).div_ceil(5));
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        let base = BudgetConfig::new(1 << 20);
        assert!(matches!(
            base.with_limit(0).validate(),
            Err(BudgetError::ZeroLimit)
        ));
        assert!(matches!(
            base.with_limit(MAX_LIMIT + 1).validate(),
            Err(BudgetError::LimitTooLarge { .. })
        ));
        assert!(matches!(
            base.with_limit(u64::MAX).validate(),
            Err(BudgetError::LimitTooLarge { .. })
        ));
        assert!(matches!(
            base.with_critical_percent(101).validate(),
            Err(BudgetError::PercentOutOfRange {
                field: "critical_percent",
                value: 101,
                ..
            })
        ));
        assert!(matches!(
            base.with_warning_percent(0).validate(),
            Err(BudgetError::PercentOutOfRange {
                field: "warning_percent",
                ..
            })
        ));
        assert!(matches!(
            base.with_warning_percent(90)
                .with_critical_percent(90)
                .validate(),
            Err(BudgetError::WarningNotBelowCritical {
                warning: 90,
                critical: 90
            })
        ));
        assert!(matches!(
            base.with_warning_percent(95)
                .with_critical_percent(85)
                .validate(),
            Err(BudgetError::WarningNotBelowCritical { .. })
        ));
        assert!(matches!(
            base.with_hysteresis_percent(80).validate(),
            Err(BudgetError::PercentOutOfRange {
                field: "hysteresis_percent",
                max: 79,
                ..
            })
        ));
        // Edges that are fine.
        base.with_limit(MAX_LIMIT).validate().unwrap();
        base.with_limit(1).validate().unwrap();
        base.with_warning_percent(99)
            .with_critical_percent(100)
            .with_hysteresis_percent(0)
            .validate()
            .unwrap();
        base.with_hysteresis_percent(79).validate().unwrap();
    }
}
