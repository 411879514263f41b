//! The counting logic: per-thread counters (`Local`: two packed hot words rolled into
//! cumulative counters) folded into process-wide atomics (`Shared`) in batches.
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
/// process-wide atomics in batches (before its unfolded live-byte change can exceed
/// [`LIVE_SLACK_BYTES`] either way, before it holds [`OP_BATCH`] unfolded calls of one kind,
/// and when it exits).
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

/// The most live bytes one running thread holds back from the process-wide total (either
/// way): its per-thread hot counters hold less than 32 KiB each way, and what it moved out of
/// them but did not fold is kept within the other 32 KiB.
pub const LIVE_SLACK_BYTES: i64 = 64 * 1024;

/// A running thread folds its counts into the process-wide totals before it holds this many
/// unfolded calls of one kind.
pub const OP_BATCH: u32 = 64 * 1024;

/// A hot word is rolled into the thread's cumulative counters once it holds this many bytes.
pub const ROLL_BYTES: u64 = 32 * 1024;

// The two hot words (one for allocs, one for deallocs) pack three fields each:
//   bits  0..20  calls           (allocs | deallocs)
//   bits 20..40  a second count  (zeroed allocs | reallocs)
//   bits 40..64  bytes
// A word starts at a base whose bytes field is 2^24 - ROLL_BYTES, so the add that brings the
// bytes since the last roll to ROLL_BYTES carries out of bit 63: the carry flag of the one
// add is the whole due test. (With the base's bytes field at 2^24 - 1, every call carries.)
// The word minus its base is the exact packed count as long as the bytes since the roll stay
// below 2^24. A word is rolled as soon as it carries, and every call adds at least one byte
// (a layout's size is never 0; a 0 takes the slow path anyway), so the two counts stay below
// ROLL_BYTES + 1 and never carry into the next field. One call adds fewer than SMALL_MAX
// bytes on the hot path; larger sizes go straight to the cumulative counters.
const MID_SHIFT: u32 = 20;
const BYTES_SHIFT: u32 = 40;
const FIELD_MASK: u64 = (1 << MID_SHIFT) - 1;
const ONE_CALL: u64 = 1;
const ONE_MID: u64 = 1 << MID_SHIFT;
/// The hot words' base while calls are batched: the add reaching `ROLL_BYTES` carries.
const BATCHED: u64 = ((1 << (64 - BYTES_SHIFT)) - ROLL_BYTES) << BYTES_SHIFT;
/// The base when every call must be due: any add of a byte or more carries.
const EVERY_CALL: u64 = ((1 << (64 - BYTES_SHIFT)) - 1) << BYTES_SHIFT;
/// Sizes from this up skip the hot words.
const SMALL_MAX: u64 = 1 << 23;
/// Rolled but unfolded live bytes a running thread keeps at most (either way); with what its
/// hot words hold, under `LIVE_SLACK_BYTES` in all.
pub const FOLD_SLACK: i64 = LIVE_SLACK_BYTES - ROLL_BYTES as i64;
/// Rolled but unfolded calls of one kind a thread may keep: with the fewer than
/// `ROLL_BYTES` calls a hot word holds, under `OP_BATCH` in all.
const FOLD_CALLS: u64 = OP_BATCH as u64 - ROLL_BYTES;

const _: () = {
    // Both counts of a word fit their 20 bits, with one call's worth of margin.
    assert!(ROLL_BYTES + 1 < FIELD_MASK);
    // The bytes since a roll (fewer than ROLL_BYTES, plus one small call) fit the field.
    assert!(ROLL_BYTES + SMALL_MAX < 1 << (64 - BYTES_SHIFT));
    assert!(FOLD_SLACK > 0 && OP_BATCH as u64 > ROLL_BYTES);
};

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
/// Three levels, each exact:
/// - two hot words (`alloc_word`, `dealloc_word`), each packing a call count, a second count
///   and a byte count (see the layout above): the hot path is one add to one of them and one
///   compare;
/// - the cumulative counters, into which the hot words are *rolled* (locally, no atomics)
///   once one of them holds [`ROLL_BYTES`], or for a call of `SMALL_MAX` bytes or more;
/// - the fold marks: what has been added to [`Shared`] so far. After a roll the thread folds
///   when its rolled-but-unfolded live bytes exceed `FOLD_SLACK` either way or its unfolded
///   calls of one kind reach `FOLD_CALLS`.
///
/// The `record_*` methods return `true` when the caller must take its slow path
/// ([`Local::settle`], and whatever else it does there). The signal is the carry of one add
/// and is given once: the caller must settle before the thread's next call. Both hot words start at `base`,
/// which is `BATCHED` while folds are batched, and `EVERY_CALL` when they are not (before the
/// first call, and after the thread's exit hook ran), so that then every call is due.
#[derive(Debug)]
#[repr(C)]
pub struct Local {
    /// Allocs, zeroed allocs, bytes allocated (plus `base`): first, the hot cache line.
    alloc_word: Cell<u64>,
    /// Deallocs, reallocs, bytes released (plus `base`).
    dealloc_word: Cell<u64>,
    /// `BATCHED`, or `EVERY_CALL` when every call must be due.
    base: Cell<u64>,
    /// The cumulative counters, up to the last roll (a realloc adds its new size to
    /// `alloc_bytes` and its old size to `dealloc_bytes`).
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
    folded_dealloc_bytes: Cell<u64>,
    folded_reallocs: Cell<u64>,
    folded_zeroed: Cell<u64>,
    /// Rolled live bytes a thread may keep unfolded (a field so loom can use tiny ones).
    slack: i64,
    /// Owned by the caller (the thread-exit state machine); opaque here.
    state: Cell<u8>,
}

impl Local {
    /// Fresh counters keeping at most `slack` rolled live bytes unfolded either way (clamped
    /// to `0..=i64::MAX - 1`). The first call is due, so it takes the slow path (where the
    /// caller registers its exit hook).
    pub const fn new(slack: i64) -> Self {
        let slack = if slack < 0 {
            0
        } else if slack == i64::MAX {
            i64::MAX - 1
        } else {
            slack
        };
        Self {
            alloc_word: Cell::new(EVERY_CALL),
            dealloc_word: Cell::new(EVERY_CALL),
            base: Cell::new(EVERY_CALL),
            allocs: Cell::new(0),
            alloc_bytes: Cell::new(0),
            deallocs: Cell::new(0),
            dealloc_bytes: Cell::new(0),
            reallocs: Cell::new(0),
            zeroed: Cell::new(0),
            folded_allocs: Cell::new(0),
            folded_alloc_bytes: Cell::new(0),
            folded_deallocs: Cell::new(0),
            folded_dealloc_bytes: Cell::new(0),
            folded_reallocs: Cell::new(0),
            folded_zeroed: Cell::new(0),
            slack,
            state: Cell::new(0),
        }
    }

    /// True when `size` can go through a hot word (`..SMALL_MAX`). `GlobalAlloc` callers
    /// never pass a size of 0 (its contract), so it is not tested for: a 0 would count a
    /// call of no bytes, exactly, unless about a million of them came between two rolls.
    #[inline(always)]
    fn small(size: u64) -> bool {
        size < SMALL_MAX
    }

    /// Adds `size` bytes and `calls` (packed) to `word`; true when it is due for a roll
    /// (the add carried). One memory add and a branch on its carry flag.
    #[inline(always)]
    fn add(word: &Cell<u64>, size: u64, calls: u64) -> bool {
        let (w, carried) = word.get().overflowing_add((size << BYTES_SHIFT) | calls);
        word.set(w);
        carried
    }

    /// Records a successful alloc of `size` bytes.
    #[inline(always)]
    pub fn record_alloc(&self, size: u64) -> bool {
        if Self::small(size) {
            Self::add(&self.alloc_word, size, ONE_CALL)
        } else {
            self.large_alloc(size, 0)
        }
    }

    /// Records a successful `alloc_zeroed` of `size` bytes.
    #[inline(always)]
    pub fn record_alloc_zeroed(&self, size: u64) -> bool {
        if Self::small(size) {
            Self::add(&self.alloc_word, size, ONE_CALL | ONE_MID)
        } else {
            self.large_alloc(size, 1)
        }
    }

    /// Records a dealloc of `size` bytes.
    #[inline(always)]
    pub fn record_dealloc(&self, size: u64) -> bool {
        if Self::small(size) {
            Self::add(&self.dealloc_word, size, ONE_CALL)
        } else {
            bump(&self.deallocs, 1);
            bump(&self.dealloc_bytes, size);
            true
        }
    }

    /// Records a successful realloc from `old` to `new` bytes.
    #[inline(always)]
    pub fn record_realloc(&self, old: u64, new: u64) -> bool {
        if Self::small(old) & Self::small(new) {
            Self::add(&self.alloc_word, new, 0) | Self::add(&self.dealloc_word, old, ONE_MID)
        } else {
            bump(&self.reallocs, 1);
            bump(&self.alloc_bytes, new);
            bump(&self.dealloc_bytes, old);
            true
        }
    }

    /// An alloc too large for the hot word goes straight to the cumulative counters; the
    /// caller's slow path then folds it (it exceeds the slack).
    #[cold]
    fn large_alloc(&self, size: u64, zeroed: u64) -> bool {
        bump(&self.allocs, 1);
        bump(&self.zeroed, zeroed);
        bump(&self.alloc_bytes, size);
        true
    }

    /// This thread's cumulative totals (for scope counting by difference).
    #[inline]
    pub fn totals(&self) -> ScopeStats {
        let base = self.base.get();
        let a = self.alloc_word.get().wrapping_sub(base);
        let d = self.dealloc_word.get().wrapping_sub(base);
        ScopeStats {
            allocs: self.allocs.get().wrapping_add(a & FIELD_MASK),
            deallocs: self.deallocs.get().wrapping_add(d & FIELD_MASK),
            reallocs: self
                .reallocs
                .get()
                .wrapping_add((d >> MID_SHIFT) & FIELD_MASK),
            alloc_bytes: self.alloc_bytes.get().wrapping_add(a >> BYTES_SHIFT),
            dealloc_bytes: self.dealloc_bytes.get().wrapping_add(d >> BYTES_SHIFT),
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

    /// Moves the hot words into the cumulative counters and restarts them at the base for
    /// `batching` (`BATCHED`) or not (`EVERY_CALL`).
    fn roll(&self, batching: bool) {
        let new_base = if batching { BATCHED } else { EVERY_CALL };
        let base = self.base.replace(new_base);
        let a = self.alloc_word.replace(new_base).wrapping_sub(base);
        let d = self.dealloc_word.replace(new_base).wrapping_sub(base);
        bump(&self.allocs, a & FIELD_MASK);
        bump(&self.zeroed, (a >> MID_SHIFT) & FIELD_MASK);
        bump(&self.alloc_bytes, a >> BYTES_SHIFT);
        bump(&self.deallocs, d & FIELD_MASK);
        bump(&self.reallocs, (d >> MID_SHIFT) & FIELD_MASK);
        bump(&self.dealloc_bytes, d >> BYTES_SHIFT);
    }

    /// Rolled live bytes and calls not yet folded: is a fold due?
    fn fold_due(&self) -> bool {
        let live = self
            .alloc_bytes
            .get()
            .wrapping_sub(self.folded_alloc_bytes.get())
            .wrapping_sub(
                self.dealloc_bytes
                    .get()
                    .wrapping_sub(self.folded_dealloc_bytes.get()),
            ) as i64;
        let calls = |c: &Cell<u64>, m: &Cell<u64>| c.get().wrapping_sub(m.get()) >= FOLD_CALLS;
        live > self.slack
            || live < -self.slack
            || calls(&self.allocs, &self.folded_allocs)
            || calls(&self.deallocs, &self.folded_deallocs)
            || calls(&self.reallocs, &self.folded_reallocs)
    }

    /// The slow path after a `record_*` returned true: rolls the hot words, then folds into
    /// `shared` when the rolled figures are due (always, without `keep_batching`). With
    /// `keep_batching` later calls roll by `ROLL_BYTES`; without, every later call is due.
    pub fn settle<A: Atom>(&self, shared: &Shared<A>, keep_batching: bool) {
        self.roll(keep_batching);
        if !keep_batching || self.fold_due() {
            self.push(shared);
        }
    }

    /// Rolls and adds everything not yet folded to `shared` (see [`Local::settle`] for
    /// `keep_batching`).
    pub fn fold<A: Atom>(&self, shared: &Shared<A>, keep_batching: bool) {
        self.roll(keep_batching);
        self.push(shared);
    }

    /// Adds the rolled deltas to `shared` and moves the fold marks.
    fn push<A: Atom>(&self, shared: &Shared<A>) {
        // Take every delta and move the marks *before* touching the atomics, so a fold
        // re-entered from anywhere below sees nothing left to fold twice.
        let allocs = take(&self.allocs, &self.folded_allocs);
        let alloc_bytes = take(&self.alloc_bytes, &self.folded_alloc_bytes);
        let deallocs = take(&self.deallocs, &self.folded_deallocs);
        let dealloc_bytes = take(&self.dealloc_bytes, &self.folded_dealloc_bytes);
        let reallocs = take(&self.reallocs, &self.folded_reallocs);
        let zeroed = take(&self.zeroed, &self.folded_zeroed);
        add_nonzero(&shared.allocs, allocs);
        add_nonzero(&shared.total_alloc_bytes, alloc_bytes);
        add_nonzero(&shared.deallocs, deallocs);
        add_nonzero(&shared.reallocs, reallocs);
        add_nonzero(&shared.zeroed, zeroed);
        shared.add_live(alloc_bytes.wrapping_sub(dealloc_bytes) as i64);
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

/// Adds `v` to a cell (wrapping).
#[inline]
fn bump(cell: &Cell<u64>, v: u64) {
    cell.set(cell.get().wrapping_add(v));
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
    fn first_call_takes_the_slow_path_then_rolls_by_bytes() {
        let s = Shared::new();
        let l = Local::new(FOLD_SLACK);
        assert!(l.record_alloc(10), "the first call is due");
        l.settle(&s, true);
        assert_eq!(s.snapshot().allocs, 0, "10 bytes are not worth a fold");
        assert_eq!(l.totals().allocs, 1);
        // 100-byte calls: the alloc word is due once it holds ROLL_BYTES.
        let per_roll = ROLL_BYTES.div_ceil(100);
        for i in 1..per_roll {
            assert!(!l.record_alloc(100), "alloc {i} not due");
            assert!(!l.record_dealloc(100));
        }
        assert!(l.record_alloc(100), "a word full of bytes is due");
        l.settle(&s, true);
        assert_eq!(l.totals().allocs, 1 + per_roll);
        assert_eq!(l.totals().deallocs, per_roll - 1);
        l.fold(&s, false);
        assert!(l.record_dealloc(1), "unbatched: every call is due");
        l.settle(&s, false);
        assert!(l.record_realloc(1, 1));
        l.settle(&s, false);
        assert!(l.record_alloc_zeroed(1));
        l.settle(&s, false);
        let snap = s.snapshot();
        assert_eq!(
            (snap.allocs, snap.deallocs, snap.reallocs),
            (2 + per_roll, per_roll, 1)
        );
        assert_eq!(snap.zeroed_allocs, 1);
        assert_eq!(snap.live_bytes, 10 + 100);
    }

    #[test]
    fn rolled_live_bytes_beyond_the_slack_fold() {
        let s = Shared::new();
        let l = Local::new(100);
        l.settle(&s, true);
        // A roll of little net change keeps it local ...
        for _ in 0..ROLL_BYTES / 64 {
            l.record_alloc(32);
            l.record_dealloc(32);
        }
        assert!(l.record_alloc(ROLL_BYTES));
        l.settle(&s, true);
        assert_eq!(
            s.snapshot().allocs,
            ROLL_BYTES / 64 + 1,
            "net change > slack folds"
        );
        assert_eq!(s.snapshot().live_bytes, ROLL_BYTES);
        // ... a large call goes past the hot words and folds at once.
        assert!(l.record_alloc(SMALL_MAX));
        l.settle(&s, true);
        assert_eq!(s.snapshot().live_bytes, ROLL_BYTES + SMALL_MAX);
        assert!(l.record_dealloc(SMALL_MAX));
        l.settle(&s, true);
        assert_eq!(s.snapshot().live_bytes, ROLL_BYTES);
        assert!(l.record_realloc(ROLL_BYTES, 2 * SMALL_MAX));
        l.settle(&s, true);
        let snap = s.snapshot();
        assert_eq!((snap.live_bytes, snap.reallocs), (2 * SMALL_MAX, 1));
        assert!(l.record_alloc_zeroed(SMALL_MAX));
        l.settle(&s, true);
        assert_eq!(s.snapshot().zeroed_allocs, 1);
        // A zero size (never passed by a sound caller) counts a call of no bytes.
        let before = l.totals();
        assert!(!l.record_alloc(0));
        assert_eq!(l.totals().since(before).allocs, 1);
        assert_eq!(l.totals().since(before).alloc_bytes, 0);
    }

    #[test]
    fn calls_fold_before_a_batch_is_held() {
        let s = Shared::new();
        let l = Local::new(i64::MAX);
        l.settle(&s, true);
        let mut folded_at = None;
        for i in 1..=u64::from(OP_BATCH) {
            if l.record_dealloc(1) {
                l.settle(&s, true);
                if s.snapshot().deallocs > 0 && folded_at.is_none() {
                    folded_at = Some(i);
                }
            }
            // Never OP_BATCH calls of one kind unfolded.
            assert!(l.totals().deallocs - s.snapshot().deallocs < u64::from(OP_BATCH));
        }
        assert!(folded_at.is_some(), "never folded");
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
        l.settle(&s, true);
        l.allocs.set(u64::MAX);
        l.folded_allocs.set(u64::MAX);
        l.record_alloc(1);
        l.fold(&s, true);
        assert_eq!(s.snapshot().allocs, 1);
    }
}
