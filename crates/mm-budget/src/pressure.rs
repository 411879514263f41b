//! Pressure levels, events, and the subscriber list.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::config::Thresholds;
use crate::sync::Mutex;

/// How close a budget is to its limit.
///
/// Ordered: `Normal < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum PressureLevel {
    /// Below the warning threshold (or not yet back above it after hysteresis).
    Normal = 0,
    /// At or above the warning threshold (80% by default).
    Warning = 1,
    /// At or above the critical threshold (90% by default).
    Critical = 2,
}

impl PressureLevel {
    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            0 => PressureLevel::Normal,
            1 => PressureLevel::Warning,
            _ => PressureLevel::Critical,
        }
    }

    /// The level a usage of `used` bytes reaches when *rising* (thresholds as configured).
    pub(crate) fn rising(used: u64, t: &Thresholds) -> Self {
        if used >= t.critical {
            PressureLevel::Critical
        } else if used >= t.warning {
            PressureLevel::Warning
        } else {
            PressureLevel::Normal
        }
    }

    /// The level a usage of `used` bytes keeps when *falling* (thresholds lowered by the
    /// hysteresis).
    pub(crate) fn falling(used: u64, t: &Thresholds) -> Self {
        if used >= t.critical_release {
            PressureLevel::Critical
        } else if used >= t.warning_release {
            PressureLevel::Warning
        } else {
            PressureLevel::Normal
        }
    }

    /// The level after observing `used` while the published level is `self`.
    ///
    /// Moves up to `rising(used)` if that is higher, down to `falling(used)` if that is lower,
    /// else stays. Since `rising <= falling` for every `used`, the result is a fixed point:
    /// applying `next` again with the same `used` returns the same level.
    pub(crate) fn next(self, used: u64, t: &Thresholds) -> Self {
        let up = Self::rising(used, t);
        if up > self {
            return up;
        }
        let down = Self::falling(used, t);
        if down < self { down } else { self }
    }
}

impl fmt::Display for PressureLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PressureLevel::Normal => "normal",
            PressureLevel::Warning => "warning",
            PressureLevel::Critical => "critical",
        })
    }
}

/// A change of a budget's [`PressureLevel`], delivered to subscribers.
///
/// Events form a chain: each event's `previous` is the `level` of the event before it (the
/// first one's `previous` is `Normal`), and no event has `previous == level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PressureEvent {
    /// The level before this change.
    pub previous: PressureLevel,
    /// The level now.
    pub level: PressureLevel,
    /// Bytes in use when the change was decided (may have moved since).
    pub used: u64,
    /// The budget's limit.
    pub limit: u64,
}

impl PressureEvent {
    /// True when pressure rose (`level > previous`).
    pub fn is_rising(&self) -> bool {
        self.level > self.previous
    }
}

/// Identifies a subscription, for [`crate::MemoryBudget::unsubscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriberId(pub(crate) u64);

type Callback = dyn Fn(&PressureEvent) + Send + Sync + 'static;

/// The subscriber list: copy-on-write, so delivery takes the lock only to clone an `Arc` and
/// never calls a subscriber while holding it.
pub(crate) struct Subscribers {
    inner: Mutex<SubscriberList>,
}

struct SubscriberList {
    next_id: u64,
    list: Arc<[(SubscriberId, Arc<Callback>)]>,
}

impl Subscribers {
    pub(crate) fn new() -> Self {
        Subscribers {
            inner: Mutex::new(SubscriberList {
                next_id: 0,
                list: Arc::new([]),
            }),
        }
    }

    fn lock(&self) -> crate::sync::MutexGuard<'_, SubscriberList> {
        // The guarded data is a counter and an immutable list that is swapped whole, so it is
        // consistent even if a holder panicked.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn add(&self, f: Arc<Callback>) -> SubscriberId {
        let mut g = self.lock();
        let id = SubscriberId(g.next_id);
        g.next_id += 1;
        let list: Vec<_> = g.list.iter().cloned().chain([(id, f)]).collect();
        g.list = list.into();
        id
    }

    pub(crate) fn remove(&self, id: SubscriberId) -> bool {
        let mut g = self.lock();
        if !g.list.iter().any(|(i, _)| *i == id) {
            return false;
        }
        let list: Vec<_> = g.list.iter().filter(|(i, _)| *i != id).cloned().collect();
        g.list = list.into();
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().list.len()
    }

    /// Calls every subscriber with `event`, outside the lock. Returns how many panicked (a
    /// panicking subscriber is caught so that it cannot unwind through `Reservation::drop`
    /// or leave the delivery flag set).
    pub(crate) fn deliver(&self, event: &PressureEvent) -> u64 {
        let snapshot = Arc::clone(&self.lock().list);
        let mut panics = 0;
        for (_, f) in snapshot.iter() {
            if catch_unwind(AssertUnwindSafe(|| f(event))).is_err() {
                panics += 1;
            }
        }
        panics
    }
}

impl fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscribers")
            .field("count", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::PressureLevel::*;
    use super::*;
    use crate::BudgetConfig;

    #[test]
    fn next_is_a_fixed_point_with_hysteresis() {
        let t = BudgetConfig::new(100).thresholds();
        // Rising.
        assert_eq!(Normal.next(79, &t), Normal);
        assert_eq!(Normal.next(80, &t), Warning);
        assert_eq!(Normal.next(95, &t), Critical);
        assert_eq!(Warning.next(90, &t), Critical);
        // Falling needs to go below threshold - 5 points.
        assert_eq!(Warning.next(79, &t), Warning);
        assert_eq!(Warning.next(75, &t), Warning);
        assert_eq!(Warning.next(74, &t), Normal);
        assert_eq!(Critical.next(85, &t), Critical);
        assert_eq!(Critical.next(84, &t), Warning);
        assert_eq!(Critical.next(10, &t), Normal);
        for used in 0..=120 {
            for l in [Normal, Warning, Critical] {
                let n = l.next(used, &t);
                assert_eq!(n.next(used, &t), n, "used {used} from {l:?}");
            }
        }
    }

    #[test]
    fn zero_hysteresis_is_plain_level_tracking() {
        let t = BudgetConfig::new(100)
            .with_hysteresis_percent(0)
            .thresholds();
        assert_eq!(Warning.next(79, &t), Normal);
        assert_eq!(Critical.next(89, &t), Warning);
        assert_eq!(Normal.next(80, &t), Warning);
    }

    #[test]
    fn panicking_subscriber_is_contained() {
        let s = Subscribers::new();
        let hits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        s.add(Arc::new(|_: &PressureEvent| panic!("subscriber bug")));
        let h = Arc::clone(&hits);
        let id = s.add(Arc::new(move |_: &PressureEvent| {
            h.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }));
        let ev = PressureEvent {
            previous: Normal,
            level: Warning,
            used: 8,
            limit: 10,
        };
        assert_eq!(s.deliver(&ev), 1);
        assert_eq!(hits.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(s.remove(id));
        assert!(!s.remove(id));
        assert_eq!(s.len(), 1);
    }
}
