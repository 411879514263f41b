//! `MemoryBudget` and `Reservation`: the lock-free byte counter and the event hand-off.
//!
//! See `docs/mm-budget.md` for why this is sound.

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use event_listener::{Event, Listener};

use crate::BudgetError;
use crate::config::{BudgetConfig, MAX_LIMIT, Thresholds};
use crate::pressure::{PressureEvent, PressureLevel, SubscriberId, Subscribers};
use crate::sync::{AtomicU8, AtomicU64, Ordering};

/// Set in `Inner::notify` while one thread delivers events.
const DELIVERING: u8 = 1;
/// Set in `Inner::notify` when usage crossed a threshold since the deliverer last looked.
const DIRTY: u8 = 2;

/// A byte budget shared by everything that draws on it.
///
/// Cheap to clone (an `Arc` inside); `Send + Sync`. Memory is drawn with
/// [`try_reserve`](Self::try_reserve), which returns a [`Reservation`] that gives the bytes back
/// when dropped. The sum of live reservations made with `try_reserve`/`try_grow` never exceeds
/// the limit, however many threads race: the counter is advanced with a compare-and-swap that
/// checks the limit on every attempt. Only [`force_reserve`](Self::force_reserve) can push usage
/// over the limit, and it says so.
///
/// When usage crosses a threshold (80% Warning and 90% Critical by default, with hysteresis on
/// the way down, see [`BudgetConfig`]) every subscriber receives one [`PressureEvent`].
///
/// A budget is *accounting*: it does not allocate, and it only knows the bytes it is told
/// about. Pair it with the figures of [`crate::sys`] to see what the process really holds.
#[derive(Clone)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    config: BudgetConfig,
    thresholds: Thresholds,
    /// Bytes held by live reservations.
    used: AtomicU64,
    /// Highest value `used` reached (updated after the fact; see `peak()`).
    peak: AtomicU64,
    /// Requests refused by `try_reserve`/`try_grow`.
    denied: AtomicU64,
    /// The published `PressureLevel`; written only by the thread that holds `DELIVERING`.
    level: AtomicU8,
    /// `DELIVERING | DIRTY` flags of the event hand-off.
    notify: AtomicU8,
    /// Events delivered so far.
    events: AtomicU64,
    /// Subscriber calls that panicked (and were caught).
    subscriber_panics: AtomicU64,
    subscribers: Subscribers,
    /// Notified on every release, for the waiting reservations.
    released: Event,
}

/// A point-in-time view of a budget's counters, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetStats {
    /// The limit in bytes.
    pub limit: u64,
    /// Bytes held by live reservations (may exceed `limit` only through `force_reserve`).
    pub used: u64,
    /// Highest `used` seen since the budget was made.
    pub peak: u64,
    /// Requests refused because they did not fit.
    pub denied: u64,
    /// The published pressure level.
    pub level: PressureLevel,
    /// Pressure events delivered so far.
    pub events: u64,
    /// Subscriber calls that panicked (each was caught and the delivery went on).
    pub subscriber_panics: u64,
    /// Number of current subscribers.
    pub subscribers: usize,
}

impl MemoryBudget {
    /// A budget for `config`.
    ///
    /// # Errors
    /// A typed error from [`BudgetConfig::validate`] when the configuration is unusable: zero
    /// or absurd limit, percentages out of range, warning not below critical.
    pub fn new(config: BudgetConfig) -> Result<Self, BudgetError> {
        config.validate()?;
        let released = Event::new();
        // `Event` allocates its listener list on first use, even by `notify`; doing it here
        // keeps every later reserve and release allocation-free.
        drop(released.listen());
        Ok(MemoryBudget {
            inner: Arc::new(Inner {
                config,
                thresholds: config.thresholds(),
                used: AtomicU64::new(0),
                peak: AtomicU64::new(0),
                denied: AtomicU64::new(0),
                level: AtomicU8::new(PressureLevel::Normal as u8),
                notify: AtomicU8::new(0),
                events: AtomicU64::new(0),
                subscriber_panics: AtomicU64::new(0),
                subscribers: Subscribers::new(),
                released,
            }),
        })
    }

    /// A budget of `bytes` with the default thresholds (80% / 90%, 5 points of hysteresis).
    ///
    /// # Errors
    /// [`BudgetError::ZeroLimit`] or [`BudgetError::LimitTooLarge`].
    pub fn with_limit(bytes: u64) -> Result<Self, BudgetError> {
        Self::new(BudgetConfig::new(bytes))
    }

    /// Reserves `bytes`, or fails without changing anything if they do not fit.
    ///
    /// Cost: one compare-and-swap on the shared counter (retried only when another thread
    /// changed it in between), an `Arc` clone, and a few comparisons. If the reservation
    /// crosses a threshold, this call may also run the subscribers (see
    /// [`subscribe`](Self::subscribe)). Never waits for other reservations, never allocates
    /// (except inside subscribers). Reserving 0 bytes always succeeds.
    ///
    /// # Errors
    /// [`BudgetError::RequestTooLarge`] if `bytes > limit` (it can never fit);
    /// [`BudgetError::Exhausted`] if it does not fit now.
    pub fn try_reserve(&self, bytes: u64) -> Result<Reservation, BudgetError> {
        self.inner.charge(bytes)?;
        Ok(Reservation {
            budget: self.clone(),
            bytes,
        })
    }

    /// Waits until `bytes` fit, then reserves them: the backpressure form of
    /// [`try_reserve`](Self::try_reserve), for admitting work by memory instead of failing it.
    ///
    /// Runtime-agnostic: the future is woken by the release that makes room (through
    /// `event-listener`), on any executor. It is cancel-safe: dropping it reserves nothing.
    /// There is no built-in deadline, since timers belong to the runtime: use
    /// [`reserve_before`](Self::reserve_before) with the runtime's sleep, or the runtime's own
    /// timeout around this future.
    ///
    /// Fairness: none is promised. Every release wakes every waiter and each retries
    /// [`try_reserve`](Self::try_reserve); one that still does not fit waits again. A large
    /// request can therefore wait behind a stream of small ones that keep fitting first
    /// (no FIFO order, no aging); bound the wait with a deadline, or size requests alike.
    /// No wake-up is lost: a waiter registers before its last check, so a release that
    /// happens after that check always wakes it (`tests/waiting.rs` hammers this).
    ///
    /// ```
    /// # let budget = mm_budget::MemoryBudget::with_limit(100)?;
    /// let held = budget.try_reserve(80)?;
    /// let waiting = budget.reserve_wait(50); // does not fit yet
    /// drop(held); // the release wakes the waiter
    /// let r = futures::executor::block_on(waiting)?;
    /// assert_eq!(r.bytes(), 50);
    /// # Ok::<(), mm_budget::BudgetError>(())
    /// ```
    ///
    /// # Errors
    /// [`BudgetError::RequestTooLarge`] at once when `bytes` exceeds the limit (it could
    /// never fit).
    pub async fn reserve_wait(&self, bytes: u64) -> Result<Reservation, BudgetError> {
        loop {
            if let Some(done) = self.reserve_unless_full(bytes) {
                return done;
            }
            let listener = self.inner.released.listen();
            // Checked again after registering: a release between the first check and
            // `listen` would otherwise go unnoticed.
            if let Some(done) = self.reserve_unless_full(bytes) {
                return done;
            }
            listener.await;
        }
    }

    /// `try_reserve`, except that `None` stands for "no room yet" (the one outcome a waiter
    /// waits on); every other outcome, success or error, ends the wait.
    fn reserve_unless_full(&self, bytes: u64) -> Option<Result<Reservation, BudgetError>> {
        match self.try_reserve(bytes) {
            Err(BudgetError::Exhausted { .. }) => None,
            done => Some(done),
        }
    }

    /// As [`reserve_wait`](Self::reserve_wait), giving up when `deadline` completes first
    /// (pass the runtime's timer, e.g. `tokio::time::sleep(Duration::from_millis(50))`).
    ///
    /// # Errors
    /// [`BudgetError::TimedOut`] when `deadline` completed before the bytes fit (nothing is
    /// reserved), and the errors of [`reserve_wait`](Self::reserve_wait).
    pub async fn reserve_before<D: Future>(
        &self,
        bytes: u64,
        deadline: D,
    ) -> Result<Reservation, BudgetError> {
        let mut wait = pin!(self.reserve_wait(bytes));
        let mut deadline = pin!(deadline);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = wait.as_mut().poll(cx) {
                return Poll::Ready(r);
            }
            match deadline.as_mut().poll(cx) {
                Poll::Ready(_) => Poll::Ready(Err(self.timed_out(bytes))),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// The blocking form of [`reserve_wait`](Self::reserve_wait) for threads outside an async
    /// runtime: parks the thread until `bytes` fit or `deadline` passes. Same fairness.
    ///
    /// # Errors
    /// [`BudgetError::TimedOut`] when `deadline` passed first (nothing is reserved), and
    /// [`BudgetError::RequestTooLarge`] at once for a request above the limit.
    pub fn reserve_blocking(
        &self,
        bytes: u64,
        deadline: Instant,
    ) -> Result<Reservation, BudgetError> {
        loop {
            if let Some(done) = self.reserve_unless_full(bytes) {
                return done;
            }
            let listener = self.inner.released.listen();
            if let Some(done) = self.reserve_unless_full(bytes) {
                return done;
            }
            if listener.wait_deadline(deadline).is_none() {
                // One last try: a release may have landed just as the deadline passed.
                return match self.try_reserve(bytes) {
                    Err(BudgetError::Exhausted { .. }) => Err(self.timed_out(bytes)),
                    done => done,
                };
            }
        }
    }

    fn timed_out(&self, bytes: u64) -> BudgetError {
        BudgetError::TimedOut {
            requested: bytes,
            available: self.available(),
            limit: self.limit(),
        }
    }

    /// Charges `bytes` even if that takes usage over the limit, for memory the application
    /// already holds or must hold regardless (a model mapped before the budget existed, a
    /// buffer that cannot be refused). While usage is over the limit every `try_reserve` and
    /// `try_grow` of one byte or more fails (0 bytes still succeed: they change nothing) and
    /// the level is Critical.
    ///
    /// This is the only way usage can exceed the limit; [`used`](Self::used) then reports the
    /// true figure.
    ///
    /// # Errors
    /// [`BudgetError::RequestTooLarge`] if `bytes > MAX_LIMIT` or the counter would overflow.
    pub fn force_reserve(&self, bytes: u64) -> Result<Reservation, BudgetError> {
        self.inner.force_charge(bytes)?;
        Ok(Reservation {
            budget: self.clone(),
            bytes,
        })
    }

    /// Bytes held by live reservations. A snapshot: other threads may change it at once.
    pub fn used(&self) -> u64 {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// The hard limit in bytes.
    pub fn limit(&self) -> u64 {
        self.inner.config.limit()
    }

    /// Bytes that a `try_reserve` could get right now (0 when over the limit). A snapshot.
    pub fn available(&self) -> u64 {
        self.limit().saturating_sub(self.used())
    }

    /// The highest usage seen. It is updated just after the counter moves, so while
    /// reservations race it may briefly lag `used`; once they return it is exact.
    pub fn peak(&self) -> u64 {
        self.inner.peak.load(Ordering::Relaxed)
    }

    /// The published pressure level: the `level` of the last event delivered (or being
    /// delivered), `Normal` before any. It can trail `used` while a delivery is in progress on
    /// another thread.
    pub fn level(&self) -> PressureLevel {
        PressureLevel::from_u8(self.inner.level.load(Ordering::Acquire))
    }

    /// The configuration the budget was built with.
    pub fn config(&self) -> &BudgetConfig {
        &self.inner.config
    }

    /// The byte thresholds derived from the configuration.
    pub fn thresholds(&self) -> Thresholds {
        self.inner.thresholds
    }

    /// True when both handles share one budget.
    pub fn same_budget(&self, other: &MemoryBudget) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// All counters at once (each read separately, so not one atomic snapshot).
    pub fn stats(&self) -> BudgetStats {
        let i = &self.inner;
        BudgetStats {
            limit: i.config.limit(),
            used: self.used(),
            peak: self.peak(),
            denied: i.denied.load(Ordering::Relaxed),
            level: self.level(),
            events: i.events.load(Ordering::Relaxed),
            subscriber_panics: i.subscriber_panics.load(Ordering::Relaxed),
            subscribers: i.subscribers.len(),
        }
    }

    /// Registers `f` to be called with every [`PressureEvent`] from now on.
    ///
    /// # When and where subscribers run
    /// Synchronously, on the thread whose `try_reserve`, `try_grow`, `shrink` or drop moved
    /// usage across a threshold, or on a thread that is already delivering an earlier event
    /// (deliveries are serialised, so subscribers see events in order and never two at once).
    /// No lock of the budget is held during the call, so a subscriber may reserve and release
    /// on the same budget, drop reservations to relieve pressure, subscribe or unsubscribe:
    /// the resulting crossings are delivered after it returns. A subscriber must not block on
    /// something that the thread reserving memory may hold; keep it short, or hand the work to
    /// another thread. A panic in a subscriber is caught and counted in
    /// [`BudgetStats::subscriber_panics`].
    ///
    /// A new subscriber is not told the current level; read [`level`](Self::level).
    ///
    /// A subscriber that owns a clone of this budget (or a [`Reservation`] of it) keeps the
    /// budget alive through a reference cycle: [`unsubscribe`](Self::unsubscribe) it when it
    /// is no longer needed, or the budget and the subscriber are never freed.
    ///
    /// Cost: copies the subscriber list (an allocation); delivery itself does not allocate.
    pub fn subscribe<F>(&self, f: F) -> SubscriberId
    where
        F: Fn(&PressureEvent) + Send + Sync + 'static,
    {
        self.inner.subscribers.add(Arc::new(f))
    }

    /// Removes a subscriber; returns whether it was registered. A delivery already in
    /// progress on another thread may still call it once.
    pub fn unsubscribe(&self, id: SubscriberId) -> bool {
        self.inner.subscribers.remove(id)
    }
}

impl Inner {
    /// Adds `bytes` to `used` if the total stays within the limit.
    fn charge(&self, bytes: u64) -> Result<(), BudgetError> {
        let limit = self.config.limit();
        if bytes > limit {
            self.denied.fetch_add(1, Ordering::Relaxed);
            return Err(BudgetError::RequestTooLarge {
                requested: bytes,
                limit,
            });
        }
        if bytes == 0 {
            return Ok(());
        }
        let mut old = self.used.load(Ordering::Relaxed);
        loop {
            // `old <= MAX_LIMIT * k` is not assumed: `force_reserve` may have pushed `used`
            // anywhere up to u64::MAX, hence the checked add.
            let new = match old.checked_add(bytes) {
                Some(new) if new <= limit => new,
                _ => {
                    self.denied.fetch_add(1, Ordering::Relaxed);
                    return Err(BudgetError::Exhausted {
                        requested: bytes,
                        available: limit.saturating_sub(old),
                        limit,
                    });
                }
            };
            match self
                .used
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.after_increase(old, new);
                    return Ok(());
                }
                Err(current) => old = current,
            }
        }
    }

    /// Adds `bytes` to `used` regardless of the limit (but never overflowing).
    fn force_charge(&self, bytes: u64) -> Result<(), BudgetError> {
        if bytes > MAX_LIMIT {
            return Err(BudgetError::RequestTooLarge {
                requested: bytes,
                limit: MAX_LIMIT,
            });
        }
        if bytes == 0 {
            return Ok(());
        }
        let mut old = self.used.load(Ordering::Relaxed);
        loop {
            let Some(new) = old.checked_add(bytes) else {
                return Err(BudgetError::RequestTooLarge {
                    requested: bytes,
                    limit: u64::MAX - old,
                });
            };
            match self
                .used
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.after_increase(old, new);
                    return Ok(());
                }
                Err(current) => old = current,
            }
        }
    }

    /// Returns `bytes` that a reservation held. The caller guarantees it holds them, so the
    /// subtraction cannot underflow.
    fn release(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let old = self.used.fetch_sub(bytes, Ordering::AcqRel);
        let new = old - bytes;
        // Every waiter retries: which of them fits is theirs to find out. Without
        // listeners this is one atomic load.
        self.released.notify(usize::MAX);
        self.after_change(old, new);
    }

    fn after_increase(&self, old: u64, new: u64) {
        // Load first: `fetch_max` is a write and would bounce the cache line on every call.
        if new > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(new, Ordering::Relaxed);
        }
        self.after_change(old, new);
    }

    /// Starts a delivery if the move from `old` to `new` crossed any threshold.
    ///
    /// `PressureLevel::next` depends on usage only through `rising` and `falling`, so a move
    /// that changes neither cannot change the level whatever the published level is; only
    /// crossings need to wake the deliverer.
    fn after_change(&self, old: u64, new: u64) {
        let t = &self.thresholds;
        if PressureLevel::rising(old, t) != PressureLevel::rising(new, t)
            || PressureLevel::falling(old, t) != PressureLevel::falling(new, t)
        {
            self.request_delivery();
        }
    }

    /// Marks the level dirty and, unless another call (on any thread, or further up this
    /// thread's stack) is already delivering, delivers until the level is settled.
    ///
    /// Never waits for another deliverer: the role is taken with one atomic `fetch_or`, and a
    /// thread that does not get it leaves `DIRTY` behind for the deliverer, which re-reads
    /// `used` before giving the role up.
    fn request_delivery(&self) {
        let prev = self.notify.fetch_or(DELIVERING | DIRTY, Ordering::AcqRel);
        if prev & DELIVERING != 0 {
            return;
        }
        loop {
            // Clear DIRTY before reading `used`: any crossing after this swap sets it again and
            // makes the final compare-exchange fail, so it is never missed. AcqRel makes the
            // `used` writes of the threads that set DIRTY visible to the load below.
            self.notify.swap(DELIVERING, Ordering::AcqRel);
            let used = self.used.load(Ordering::Acquire);
            let previous = PressureLevel::from_u8(self.level.load(Ordering::Relaxed));
            let level = previous.next(used, &self.thresholds);
            if level != previous {
                self.level.store(level as u8, Ordering::Release);
                self.events.fetch_add(1, Ordering::Relaxed);
                let event = PressureEvent {
                    previous,
                    level,
                    used,
                    limit: self.config.limit(),
                };
                let panics = self.subscribers.deliver(&event);
                if panics > 0 {
                    self.subscriber_panics.fetch_add(panics, Ordering::Relaxed);
                }
            }
            if self
                .notify
                .compare_exchange(DELIVERING, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
        }
    }
}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("used", &self.used())
            .field("limit", &self.limit())
            .field("level", &self.level())
            .field("subscribers", &self.inner.subscribers)
            .finish()
    }
}

/// Bytes drawn from a [`MemoryBudget`]; they go back when this is dropped.
///
/// Owns a handle to its budget, so it is `'static` and can be stored anywhere (in a cache
/// entry next to the memory it accounts for, for example). It does not own any memory itself.
///
/// `std::mem::forget` on a reservation leaks its bytes from the budget for good.
#[must_use = "dropping a Reservation releases its bytes at once"]
pub struct Reservation {
    budget: MemoryBudget,
    bytes: u64,
}

impl Reservation {
    /// Bytes this reservation holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The budget the bytes are drawn from.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Draws `additional` more bytes, under the same rules as
    /// [`MemoryBudget::try_reserve`] (growing by 0 bytes always succeeds); on error the
    /// reservation is unchanged.
    ///
    /// # Errors
    /// [`BudgetError::RequestTooLarge`] or [`BudgetError::Exhausted`].
    pub fn try_grow(&mut self, additional: u64) -> Result<(), BudgetError> {
        self.budget.inner.charge(additional)?;
        // `used` includes both our bytes and `additional`, so the sum fits a u64.
        self.bytes += additional;
        Ok(())
    }

    /// Gives back up to `bytes` (fewer if the reservation holds fewer) and returns how many
    /// were released. Never fails.
    pub fn shrink(&mut self, bytes: u64) -> u64 {
        let released = bytes.min(self.bytes);
        self.bytes -= released;
        self.budget.inner.release(released);
        released
    }

    /// Grows or shrinks to exactly `bytes`.
    ///
    /// # Errors
    /// As [`try_grow`](Self::try_grow) when growing; shrinking never fails.
    pub fn resize(&mut self, bytes: u64) -> Result<(), BudgetError> {
        if bytes >= self.bytes {
            self.try_grow(bytes - self.bytes)
        } else {
            self.shrink(self.bytes - bytes);
            Ok(())
        }
    }

    /// Moves `bytes` of this reservation into a new one, without touching the budget's usage
    /// (so it cannot fail for lack of room, and fires no event).
    ///
    /// # Errors
    /// [`BudgetError::SplitTooLarge`] if the reservation holds fewer than `bytes`.
    pub fn split(&mut self, bytes: u64) -> Result<Reservation, BudgetError> {
        if bytes > self.bytes {
            return Err(BudgetError::SplitTooLarge {
                requested: bytes,
                held: self.bytes,
            });
        }
        self.bytes -= bytes;
        Ok(Reservation {
            budget: self.budget.clone(),
            bytes,
        })
    }

    /// Takes over the bytes of `other`, which must come from the same budget; usage does not
    /// change.
    ///
    /// # Errors
    /// Gives `other` back untouched when it belongs to a different budget.
    pub fn merge(&mut self, mut other: Reservation) -> Result<(), Reservation> {
        if !self.budget.same_budget(&other.budget) {
            return Err(other);
        }
        // Both are counted in the same `used`, so the sum fits a u64.
        self.bytes += other.bytes;
        other.bytes = 0;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.inner.release(self.bytes);
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("bytes", &self.bytes)
            .field("budget_limit", &self.budget.limit())
            .finish()
    }
}
