//! The counting logic: per-thread cumulative counters (`Local`) folded into process-wide
//! atomics (`Shared`) in batches.
//!
//! Nothing here allocates, panics or touches a thread-local: the allocator glue in
//! `global.rs` owns the statics and the thread-exit handling, and `tests/loom.rs` drives
//! this module directly with loom atomics. All arithmetic wraps, so a counter can never
//! trap; pending deltas are the wrapping difference between a cumulative counter and its
//! last folded mark, which stays exact across wrap-around.

use core::cell::Cell;

use crate::sync::{Atom, StdAtomicU64};

/// What one thread's allocations add up to, as seen by [`crate::count`].
///
/// All figures are for the calling thread only, and only for the calls made between the start
/// and the end of the scope. A `realloc` counts once in `reallocs` (never in `allocs` or
/// `deallocs`), adds its new size to `alloc_bytes` and its old size to `dealloc_bytes`, so
/// `alloc_bytes - dealloc_bytes` is always the change in live bytes. `alloc_zeroed` counts as
/// an alloc.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ScopeStats {
    /// Successful `alloc` and `alloc_zeroed` calls.
    pub allocs: u64,
    /// `dealloc` calls.
    pub deallocs: u64,
    /// Successful `realloc` calls.
    pub reallocs: u64,
    /// Bytes requested by allocs, plus the new size of every realloc.
    pub alloc_bytes: u64,
    /// Bytes released by deallocs, plus the old size of every realloc.
    pub dealloc_bytes: u64,
}

impl ScopeStats {
    /// True when the scope made no allocator call at all (no alloc, dealloc or realloc).
    pub fn is_empty(&self) -> bool {
        self.allocs == 0 && self.deallocs == 0 && self.reallocs == 0
    }

    /// The scope's net change in live bytes (negative when it freed more than it allocated).
    pub fn net_bytes(&self) -> i64 {
        self.alloc_bytes.wrapping_sub(self.dealloc_bytes) as i64
    }

    /// The difference `self - earlier` of two cumulative readings (wrapping).
    pub(crate) fn since(self, earlier: ScopeStats) -> ScopeStats {
        ScopeStats {
            allocs: self.allocs.wrapping_sub(earlier.allocs),
            deallocs: self.deallocs.wrapping_sub(earlier.deallocs),
            reallocs: self.reallocs.wrapping_sub(earlier.reallocs),
            alloc_bytes: self.alloc_bytes.wrapping_sub(earlier.alloc_bytes),
            dealloc_bytes: self.dealloc_bytes.wrapping_sub(earlier.dealloc_bytes),
        }
    }
}

impl core::ops::Add for ScopeStats {
    type Output = ScopeStats;

    /// Field-by-field sum (wrapping, like the counters themselves): the calls of two
    /// scopes taken together, for example the polls of one task on different threads.
    fn add(self, rhs: ScopeStats) -> ScopeStats {
        ScopeStats {
            allocs: self.allocs.wrapping_add(rhs.allocs),
            deallocs: self.deallocs.wrapping_add(rhs.deallocs),
            reallocs: self.reallocs.wrapping_add(rhs.reallocs),
            alloc_bytes: self.alloc_bytes.wrapping_add(rhs.alloc_bytes),
            dealloc_bytes: self.dealloc_bytes.wrapping_add(rhs.dealloc_bytes),
        }
    }
}

impl core::ops::AddAssign for ScopeStats {
    fn add_assign(&mut self, rhs: ScopeStats) {
        *self = *self + rhs;
    }
}

impl core::iter::Sum for ScopeStats {
    fn sum<I: Iterator<Item = ScopeStats>>(iter: I) -> ScopeStats {
        iter.fold(ScopeStats::default(), |a, b| a + b)
    }
}

impl<'a> core::iter::Sum<&'a ScopeStats> for ScopeStats {
    fn sum<I: Iterator<Item = &'a ScopeStats>>(iter: I) -> ScopeStats {
        iter.copied().sum()
    }
}

/// Process-wide figures, as returned by [`crate::snapshot`].
///
/// These are the *folded* totals: each thread keeps its own counters and adds them to the
/// process-wide atomics once its pending live-byte change exceeds a slack of
/// [`LIVE_SLACK_BYTES`] either way, every [`OP_BATCH`] calls of one kind, and when it exits.
/// `snapshot()` folds the calling thread first. So, with `threads` other threads running:
///
/// - `live_bytes` is within `threads x LIVE_SLACK_BYTES` of the true live heap (see
///   [`Snapshot::live_error_bound_bytes`]); it is exact once every other thread has exited
///   or called [`crate::flush`].
/// - `peak_bytes` is the largest value the folded live total has taken since start (or the
///   last [`crate::reset_peak`]), so it is within the same bound of the true peak, and never
///   less than `live_bytes`.
/// - the counts lag the truth by fewer than `OP_BATCH` calls of each kind (alloc, dealloc,
///   realloc) per running thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Snapshot {
    /// Bytes currently allocated (requested sizes, not the inner allocator's rounding).
    pub live_bytes: u64,
    /// Highest folded `live_bytes` seen (see the type's docs for its precision).
    pub peak_bytes: u64,
    /// Bytes requested by all allocs plus the new size of every realloc, since start.
    pub total_alloc_bytes: u64,
    /// Successful `alloc` and `alloc_zeroed` calls.
    pub allocs: u64,
    /// `dealloc` calls.
    pub deallocs: u64,
    /// Successful `realloc` calls.
    pub reallocs: u64,
    /// Successful `alloc_zeroed` calls (also counted in `allocs`).
    pub zeroed_allocs: u64,
    /// Threads currently holding unfolded deltas (registered and not yet exited).
    pub threads: u64,
}

impl Snapshot {
    /// The most `live_bytes` (and `peak_bytes`) can differ from the exact figure because of
    /// deltas other threads hold but have not folded yet: `threads x LIVE_SLACK_BYTES`.
    pub fn live_error_bound_bytes(&self) -> u64 {
        self.threads.saturating_mul(LIVE_SLACK_BYTES as u64)
    }
}

/// A thread folds its live-byte change into the process-wide total once the change exceeds
/// this many bytes either way.
pub const LIVE_SLACK_BYTES: i64 = 64 * 1024;

/// A thread folds its counts after at most this many allocator calls.
pub const OP_BATCH: u32 = 16 * 1024;

/// The process-wide folded totals. Generic over the atomic so loom can model it.
#[derive(Debug)]
#[repr(align(128))]
pub struct Shared<A = StdAtomicU64> {
    /// Live bytes, as a wrapping `u64` holding an `i64`: the folded view can dip below zero
    /// for a moment when one thread frees what another has allocated but not yet folded.
    live: A,
    peak: A,
    total_alloc_bytes: A,
    allocs: A,
    deallocs: A,
    reallocs: A,
    zeroed: A,
    threads: A,
}

impl Shared<StdAtomicU64> {
    /// All zero; `const` so it can be a `static`.
    pub const fn new() -> Self {
        Self {
            live: StdAtomicU64::new(0),
            peak: StdAtomicU64::new(0),
            total_alloc_bytes: StdAtomicU64::new(0),
            allocs: StdAtomicU64::new(0),
            deallocs: StdAtomicU64::new(0),
            reallocs: StdAtomicU64::new(0),
            zeroed: StdAtomicU64::new(0),
            threads: StdAtomicU64::new(0),
        }
    }
}

impl Default for Shared<StdAtomicU64> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Atom> Shared<A> {
    /// Builds from any atomic constructor (loom's are not `const`).
    #[cfg(loom)]
    pub fn with(mut new: impl FnMut() -> A) -> Self {
        Self {
            live: new(),
            peak: new(),
            total_alloc_bytes: new(),
            allocs: new(),
            deallocs: new(),
            reallocs: new(),
            zeroed: new(),
            threads: new(),
        }
    }

    /// Adds a signed live-byte delta and raises the peak to the new folded value.
    ///
    /// Every value `live` ever takes is the result of one `add`, and the thread that made it
    /// raises `peak` to it when it grew, so once the adds in flight return, `peak` is the
    /// maximum of every folded live value.
    #[inline]
    fn add_live(&self, delta: i64) {
        if delta == 0 {
            return;
        }
        let before = self.live.add(delta as u64);
        let after = before.wrapping_add(delta as u64) as i64;
        if delta > 0 && after > 0 {
            self.peak.raise(after as u64);
        }
    }

    /// The raw folded live value, which may be negative for a moment (see `live`).
    #[cfg(any(loom, test))]
    pub fn folded_live(&self) -> i64 {
        self.live.get() as i64
    }

    /// A thread registered its exit hook: it may now hold deltas.
    pub fn thread_started(&self) {
        self.threads.add(1);
    }

    /// A thread folded its last deltas at exit.
    pub fn thread_exited(&self) {
        self.threads.add(u64::MAX);
    }

    /// Lowers the peak to the current folded live bytes.
    pub fn reset_peak(&self) {
        // The folded live value is signed: a dip below zero resets the peak to 0, not to a
        // wrapped-around huge value.
        self.peak.put((self.live.get() as i64).max(0) as u64);
    }

    /// Reads every figure. The reads are not one atomic cut: a fold racing with it may be
    /// half seen. `live_bytes` is clamped at zero and `peak_bytes` raised to `live_bytes`.
    pub fn snapshot(&self) -> Snapshot {
        let live = (self.live.get() as i64).max(0) as u64;
        Snapshot {
            live_bytes: live,
            peak_bytes: self.peak.get().max(live),
            total_alloc_bytes: self.total_alloc_bytes.get(),
            allocs: self.allocs.get(),
            deallocs: self.deallocs.get(),
            reallocs: self.reallocs.get(),
            zeroed_allocs: self.zeroed.get(),
            threads: self.threads.get().min(i64::MAX as u64),
        }
    }
}

/// One thread's counters: plain `Cell`s, no `Drop`, `const`-constructible, so a
/// `thread_local!` of it needs no lazy initialisation and no destructor.
///
/// The `record_*` methods are the hot path: a few loads and stores in one cache line and two
/// compares. They return `true` when the caller must take its slow path (fold via
/// [`Local::fold`], and whatever else it does on that path). A fold is due when the pending
/// live bytes leave `lo..=hi`, or when the call's own counter reaches a multiple of
/// [`OP_BATCH`]. While folding is not wanted to be batched (before the first call, and after
/// the thread's exit hook ran) `hi` and `lo` are set so that every call is due.
#[derive(Debug)]
pub struct Local {
    /// Live bytes changed since the last fold.
    pending_live: Cell<i64>,
    /// A fold is due when `pending_live > hi` ...
    hi: Cell<i64>,
    /// ... or `pending_live < lo`.
    lo: Cell<i64>,
    allocs: Cell<u64>,
    alloc_bytes: Cell<u64>,
    deallocs: Cell<u64>,
    dealloc_bytes: Cell<u64>,
    reallocs: Cell<u64>,
    zeroed: Cell<u64>,
    /// The cumulative values at the last fold.
    folded_allocs: Cell<u64>,
    folded_alloc_bytes: Cell<u64>,
    folded_deallocs: Cell<u64>,
    folded_reallocs: Cell<u64>,
    folded_zeroed: Cell<u64>,
    /// Owned by the caller (the thread-exit state machine); opaque here.
    state: Cell<u8>,
    /// The live-byte slack (a field rather than a constant so loom can use tiny ones).
    slack: i64,
}

/// `OP_BATCH - 1`: a call whose counter has these bits clear is due for a fold.
const BATCH_MASK: u64 = OP_BATCH as u64 - 1;
const _: () = assert!(OP_BATCH.is_power_of_two());

impl Local {
    /// Fresh counters folding at `slack` live bytes either way (clamped to `0..=i64::MAX-1`).
    /// The first call is due for a fold, so it takes the slow path (where the caller
    /// registers its exit hook).
    pub const fn new(slack: i64) -> Self {
        let slack = if slack < 0 {
            0
        } else if slack == i64::MAX {
            i64::MAX - 1
        } else {
            slack
        };
        Self {
            pending_live: Cell::new(0),
            hi: Cell::new(i64::MIN),
            lo: Cell::new(i64::MAX),
            allocs: Cell::new(0),
            alloc_bytes: Cell::new(0),
            deallocs: Cell::new(0),
            dealloc_bytes: Cell::new(0),
            reallocs: Cell::new(0),
            zeroed: Cell::new(0),
            folded_allocs: Cell::new(0),
            folded_alloc_bytes: Cell::new(0),
            folded_deallocs: Cell::new(0),
            folded_reallocs: Cell::new(0),
            folded_zeroed: Cell::new(0),
            state: Cell::new(0),
            slack,
        }
    }

    /// Adds one to `counter`; true when it reached a multiple of the batch.
    #[inline(always)]
    fn bump(counter: &Cell<u64>) -> bool {
        let n = counter.get().wrapping_add(1);
        counter.set(n);
        n & BATCH_MASK == 0
    }

    /// Records a successful alloc of `size` bytes.
    #[inline(always)]
    pub fn record_alloc(&self, size: u64) -> bool {
        let batch_due = Self::bump(&self.allocs);
        self.alloc_bytes
            .set(self.alloc_bytes.get().wrapping_add(size));
        let pending = self.pending_live.get().wrapping_add(size as i64);
        self.pending_live.set(pending);
        batch_due | (pending > self.hi.get())
    }

    /// Records a successful `alloc_zeroed` of `size` bytes.
    #[inline(always)]
    pub fn record_alloc_zeroed(&self, size: u64) -> bool {
        self.zeroed.set(self.zeroed.get().wrapping_add(1));
        self.record_alloc(size)
    }

    /// Records a dealloc of `size` bytes.
    #[inline(always)]
    pub fn record_dealloc(&self, size: u64) -> bool {
        let batch_due = Self::bump(&self.deallocs);
        self.dealloc_bytes
            .set(self.dealloc_bytes.get().wrapping_add(size));
        let pending = self.pending_live.get().wrapping_sub(size as i64);
        self.pending_live.set(pending);
        batch_due | (pending < self.lo.get())
    }

    /// Records a successful realloc from `old` to `new` bytes.
    #[inline(always)]
    pub fn record_realloc(&self, old: u64, new: u64) -> bool {
        let batch_due = Self::bump(&self.reallocs);
        self.alloc_bytes
            .set(self.alloc_bytes.get().wrapping_add(new));
        self.dealloc_bytes
            .set(self.dealloc_bytes.get().wrapping_add(old));
        let delta = new.wrapping_sub(old) as i64;
        let pending = self.pending_live.get().wrapping_add(delta);
        self.pending_live.set(pending);
        batch_due | (pending > self.hi.get()) | (pending < self.lo.get())
    }

    /// This thread's cumulative totals (for scope counting by difference).
    #[inline]
    pub fn totals(&self) -> ScopeStats {
        ScopeStats {
            allocs: self.allocs.get(),
            deallocs: self.deallocs.get(),
            reallocs: self.reallocs.get(),
            alloc_bytes: self.alloc_bytes.get(),
            dealloc_bytes: self.dealloc_bytes.get(),
        }
    }

    /// Takes back one alloc and one dealloc of `size` bytes that were made on purpose by the
    /// tracker itself (the `is_active` probe), so they appear in no scope and no total.
    /// The live delta is untouched: the pair nets to zero.
    pub fn forget_pair(&self, size: u64) {
        self.allocs.set(self.allocs.get().wrapping_sub(1));
        self.deallocs.set(self.deallocs.get().wrapping_sub(1));
        self.alloc_bytes
            .set(self.alloc_bytes.get().wrapping_sub(size));
        self.dealloc_bytes
            .set(self.dealloc_bytes.get().wrapping_sub(size));
    }

    /// Adds everything not yet folded to `shared` and sets the fold marks. With
    /// `keep_batching` later calls fold by the slack and the batch; without, every later
    /// call is due for a fold.
    pub fn fold<A: Atom>(&self, shared: &Shared<A>, keep_batching: bool) {
        // Take every delta and move the marks *before* touching the atomics, so a fold
        // re-entered from anywhere below sees nothing left to fold twice.
        let live = self.pending_live.replace(0);
        let allocs = take(&self.allocs, &self.folded_allocs);
        let alloc_bytes = take(&self.alloc_bytes, &self.folded_alloc_bytes);
        let deallocs = take(&self.deallocs, &self.folded_deallocs);
        let reallocs = take(&self.reallocs, &self.folded_reallocs);
        let zeroed = take(&self.zeroed, &self.folded_zeroed);
        if keep_batching {
            self.hi.set(self.slack);
            self.lo.set(-self.slack);
        } else {
            self.hi.set(i64::MIN);
            self.lo.set(i64::MAX);
        }
        add_nonzero(&shared.allocs, allocs);
        add_nonzero(&shared.total_alloc_bytes, alloc_bytes);
        add_nonzero(&shared.deallocs, deallocs);
        add_nonzero(&shared.reallocs, reallocs);
        add_nonzero(&shared.zeroed, zeroed);
        shared.add_live(live);
    }

    /// The caller's state byte.
    #[inline]
    pub fn state(&self) -> u8 {
        self.state.get()
    }

    /// Sets the caller's state byte.
    #[inline]
    pub fn set_state(&self, state: u8) {
        self.state.set(state);
    }
}

/// Returns `cumulative - mark` and moves the mark up to `cumulative`.
#[inline]
fn take(cumulative: &Cell<u64>, mark: &Cell<u64>) -> u64 {
    let now = cumulative.get();
    now.wrapping_sub(mark.replace(now))
}

#[inline]
fn add_nonzero<A: Atom>(atom: &A, v: u64) {
    if v != 0 {
        atom.add(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(l: &Local, s: &Shared) -> Snapshot {
        l.fold(s, true);
        s.snapshot()
    }

    #[test]
    fn first_call_takes_the_slow_path_then_batches() {
        let l = Local::new(i64::MAX);
        assert!(l.record_alloc(10), "the first call is due");
        let s = Shared::new();
        l.fold(&s, true);
        for i in 2..OP_BATCH {
            assert!(!l.record_alloc(1), "alloc {i} not due");
            assert!(!l.record_dealloc(1));
            assert!(!l.record_realloc(1, 1));
        }
        assert!(l.record_alloc(1), "a batch of allocs is due");
        assert!(!l.record_dealloc(1));
        assert!(l.record_dealloc(1), "a batch of deallocs is due");
        l.fold(&s, false);
        assert!(l.record_dealloc(0), "unbatched: every call is due");
        assert!(l.record_realloc(0, 0));
    }

    #[test]
    fn slack_triggers_a_fold_both_ways() {
        let s = Shared::new();
        let l = Local::new(100);
        l.fold(&s, true);
        assert!(!l.record_alloc(100));
        assert!(l.record_alloc(1), "101 pending > 100");
        l.fold(&s, true);
        assert!(!l.record_dealloc(100));
        assert!(l.record_dealloc(1), "-101 pending");
        l.fold(&s, true);
        assert!(l.record_realloc(0, 500), "a large realloc folds at once");
    }

    #[test]
    fn folded_totals_are_exact() {
        let s = Shared::new();
        let l = Local::new(1 << 20);
        l.record_alloc(100);
        l.record_alloc_zeroed(50);
        l.record_realloc(100, 300);
        l.record_dealloc(50);
        let snap = folded(&l, &s);
        assert_eq!(snap.allocs, 2);
        assert_eq!(snap.zeroed_allocs, 1);
        assert_eq!(snap.reallocs, 1);
        assert_eq!(snap.deallocs, 1);
        assert_eq!(snap.total_alloc_bytes, 450);
        assert_eq!(snap.live_bytes, 300);
        assert_eq!(snap.peak_bytes, 300);
        // folding twice adds nothing
        assert_eq!(folded(&l, &s), snap);
    }

    #[test]
    fn peak_tracks_the_folded_maximum_and_resets() {
        let s = Shared::new();
        let l = Local::new(0);
        l.record_alloc(1000);
        l.fold(&s, true);
        l.record_dealloc(600);
        let snap = folded(&l, &s);
        assert_eq!((snap.live_bytes, snap.peak_bytes), (400, 1000));
        s.reset_peak();
        assert_eq!(s.snapshot().peak_bytes, 400);
    }

    #[test]
    fn cross_thread_free_can_dip_the_raw_view_but_never_the_snapshot() {
        let s = Shared::new();
        let a = Local::new(1 << 20);
        let b = Local::new(1 << 20);
        a.record_alloc(500); // not folded yet
        b.record_dealloc(500); // b frees a's block and folds first
        b.fold(&s, true);
        assert_eq!(s.folded_live(), -500);
        assert_eq!(s.snapshot().live_bytes, 0);
        s.reset_peak();
        assert_eq!(
            s.snapshot().peak_bytes,
            0,
            "a negative dip must not wrap the peak"
        );
        a.fold(&s, true);
        assert_eq!(s.folded_live(), 0);
    }

    #[test]
    fn scope_difference_and_forget_pair() {
        let l = Local::new(1 << 20);
        let before = l.totals();
        l.record_alloc(8);
        l.record_dealloc(8);
        l.record_alloc(32);
        l.forget_pair(8);
        let d = l.totals().since(before);
        assert_eq!(
            d,
            ScopeStats {
                allocs: 1,
                deallocs: 0,
                reallocs: 0,
                alloc_bytes: 32,
                dealloc_bytes: 0
            }
        );
        assert_eq!(d.net_bytes(), 32);
        assert!(!d.is_empty());
        assert!(ScopeStats::default().is_empty());
    }

    #[test]
    fn scope_stats_add_up() {
        let a = ScopeStats {
            allocs: 1,
            deallocs: 2,
            reallocs: 3,
            alloc_bytes: 40,
            dealloc_bytes: 50,
        };
        let b = ScopeStats {
            allocs: 10,
            deallocs: 20,
            reallocs: 30,
            alloc_bytes: u64::MAX,
            dealloc_bytes: 500,
        };
        let sum = a + b;
        assert_eq!(
            sum,
            ScopeStats {
                allocs: 11,
                deallocs: 22,
                reallocs: 33,
                alloc_bytes: 39,
                dealloc_bytes: 550,
            }
        );
        let mut acc = ScopeStats::default();
        acc += a;
        acc += b;
        assert_eq!(acc, sum);
        assert_eq!([a, b].into_iter().sum::<ScopeStats>(), sum);
        assert_eq!([a, b].iter().sum::<ScopeStats>(), sum);
        assert_eq!(
            core::iter::empty::<ScopeStats>().sum::<ScopeStats>(),
            ScopeStats::default()
        );
    }

    #[test]
    fn counters_wrap_instead_of_overflowing() {
        let s = Shared::new();
        let l = Local::new(i64::MAX);
        l.allocs.set(u64::MAX);
        l.folded_allocs.set(u64::MAX);
        l.record_alloc(1);
        l.fold(&s, true);
        assert_eq!(s.snapshot().allocs, 1);
    }
}
