//! The process-wide statics and the per-thread state machine behind [`crate::TrackedAlloc`].
//!
//! Two thread-locals per thread:
//! - `LOCAL`: the counters ([`Local`]), `const`-initialised with no `Drop`, so every access is
//!   a plain thread-pointer-relative load: no lazy init, no destructor registration, no
//!   allocation, and it stays readable during and after thread-local destruction.
//! - `EXIT`: a zero-sized guard whose `Drop` folds the thread's last deltas. Touching it the
//!   first time registers its destructor, which may itself allocate (glibc's
//!   `__cxa_thread_atexit_impl` callocs) and so re-enter the allocator.
//!
//! A state byte kept in `LOCAL` makes that safe:
//!
//! | state         | meaning                               | what an allocator call does        |
//! |---------------|---------------------------------------|------------------------------------|
//! | `UNINIT`      | no call seen on this thread yet       | slow path: register `EXIT`, fold   |
//! | `REGISTERING` | inside `EXIT`'s registration          | fold at once (never touch `EXIT`)  |
//! | `ALIVE`       | `EXIT` registered                     | count; roll and fold in batches    |
//! | `DESTROYED`   | `EXIT` ran, or could not be registered| fold at once                       |
//!
//! Only `ALIVE` threads hold unfolded deltas, and each holds less than `LIVE_SLACK_BYTES` of
//! live bytes, which is what bounds the error of the process-wide view.

use crate::counters::{FOLD_SLACK, Local, ScopeStats, Shared, Snapshot};

const UNINIT: u8 = 0;
const REGISTERING: u8 = 1;
const ALIVE: u8 = 2;
const DESTROYED: u8 = 3;

static SHARED: Shared = Shared::new();

thread_local! {
    static LOCAL: Local = const { Local::new(FOLD_SLACK) };
    static EXIT: ExitFold = const { ExitFold };
}

/// Folds the thread's remaining deltas when its thread-locals are destroyed.
struct ExitFold;

impl Drop for ExitFold {
    fn drop(&mut self) {
        let _ = LOCAL.try_with(|local| {
            local.set_state(DESTROYED);
            local.fold(&SHARED, false);
        });
        SHARED.thread_exited();
    }
}

/// Runs `record` on this thread's counters; true when the caller must call [`settle`].
/// `try_with` cannot fail for a `const`, drop-free thread-local; if it ever did, the call
/// would go uncounted rather than panic inside the allocator.
#[inline(always)]
fn record(record: impl FnOnce(&Local) -> bool) -> bool {
    LOCAL.try_with(record).unwrap_or(false)
}

/// The slow path after a `record` that returned true: registers the exit hook on a
/// thread's first call, rolls this thread's hot counters and folds them when due.
#[cold]
#[inline(never)]
pub(crate) fn settle() {
    let _ = LOCAL.try_with(slow_path);
}

fn slow_path(local: &Local) {
    if local.state() == UNINIT {
        local.set_state(REGISTERING);
        // May allocate and re-enter: the nested call sees REGISTERING and folds directly.
        let registered = EXIT.try_with(|_| ()).is_ok();
        if registered {
            SHARED.thread_started();
            local.set_state(ALIVE);
        } else {
            local.set_state(DESTROYED);
        }
    }
    local.settle(&SHARED, local.state() == ALIVE);
}

#[inline(always)]
#[must_use]
pub(crate) fn on_alloc(size: usize) -> bool {
    record(|l| l.record_alloc(size as u64))
}

#[inline(always)]
#[must_use]
pub(crate) fn on_alloc_zeroed(size: usize) -> bool {
    record(|l| l.record_alloc_zeroed(size as u64))
}

#[inline(always)]
#[must_use]
pub(crate) fn on_dealloc(size: usize) -> bool {
    record(|l| l.record_dealloc(size as u64))
}

#[inline(always)]
#[must_use]
pub(crate) fn on_realloc(old: usize, new: usize) -> bool {
    record(|l| l.record_realloc(old as u64, new as u64))
}

pub(crate) fn thread_totals() -> ScopeStats {
    LOCAL.try_with(Local::totals).unwrap_or_default()
}

pub(crate) fn forget_probe(size: usize) {
    let _ = LOCAL.try_with(|l| l.forget_pair(size as u64));
}

pub(crate) fn flush() {
    let _ = LOCAL.try_with(|l| l.fold(&SHARED, l.state() == ALIVE));
}

pub(crate) fn snapshot() -> Snapshot {
    flush();
    SHARED.snapshot()
}

pub(crate) fn reset_peak() {
    flush();
    SHARED.reset_peak();
}
