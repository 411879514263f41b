//! How a pool's owned guards keep its state alive without a shared reference count:
//! [`Handle`] (what a pool handle holds) and [`Lease`] (what an owned guard holds), shared
//! by [`ObjectPool`](crate::ObjectPool)'s `Pooled` and [`BufferPool`](crate::BufferPool)'s
//! `PooledBuffer`.
//!
//! The state is one `Arc<S>`. Besides the handles' `Arc`s it has one more strong count, the
//! *lending reference*, taken when the pool is built. A guard lent on a thread with a record
//! is counted on that record ([`Core::lend`]) and holds no count of its own; the lending
//! reference is released once the last handle is gone and every lent guard is back
//! ([`Core::close_lending`], [`Core::drains`]). A guard lent without a record (during
//! thread-local destruction) takes a strong count instead ([`Lender::STRONG`]).

use std::ptr::NonNull;

use crate::sync::{Arc, Ordering};
use crate::tiers::{Core, Lent, OwnLent};

/// A pool's state: what holds its [`Core`].
pub(crate) trait Lending: Send + Sync {
    /// What the pool's tiers hold (boxed).
    type Item: Send;
    /// The pool's core (its records, where guards are counted).
    fn core(&self) -> &Core<Self::Item>;
}

/// A pool handle: one `Arc` of the state, counted in [`Core::handles`]; the last one to
/// drop closes lending.
pub(crate) struct Handle<S: Lending> {
    shared: Arc<S>,
}

impl<S: Lending> Handle<S> {
    /// The first handle of a new pool, with the lending reference taken.
    pub(crate) fn new(state: S) -> Self {
        let shared = Arc::new(state);
        // The lending reference: released through `release_count`.
        let _ = Arc::into_raw(Arc::clone(&shared));
        Self { shared }
    }

    /// The state.
    #[inline(always)]
    pub(crate) fn state(&self) -> &S {
        &self.shared
    }

    /// A lease for an owned guard counted on `lent` (a record of this pool, from
    /// [`Core::lend`]), or, with `None` (no record), holding one strong count.
    #[inline(always)]
    pub(crate) fn lease(&self, lent: Option<&Lent>) -> Lease<S> {
        let lender = match lent {
            Some(lent) => Lender(NonNull::from(lent)),
            None => {
                let _ = Arc::into_raw(Arc::clone(&self.shared));
                Lender::STRONG
            }
        };
        Lease {
            shared: state_ptr(&self.shared),
            lender,
        }
    }
}

impl<S: Lending> Clone for Handle<S> {
    fn clone(&self) -> Self {
        self.shared.core().add_handle();
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: Lending> Drop for Handle<S> {
    fn drop(&mut self) {
        if self.shared.core().drop_handle() && self.shared.core().close_lending() {
            // SAFETY: the lending reference is released once: here, when no lent guard is
            // out at close, or by the guard whose drain is the last (`drain`). This handle's
            // own `Arc` still holds the state, so it is not freed here.
            unsafe { release_count(state_ptr(&self.shared)) };
        }
    }
}

/// What an owned guard holds: the state, kept alive by `lender` until
/// [`release`](Self::release).
pub(crate) struct Lease<S: Lending> {
    shared: NonNull<S>,
    lender: Lender,
}

// SAFETY: a lease may be given back from any thread: `Lent::give_back_mine` takes the
// plain-store path only on the thread that owns the record, `give_back_foreign` is a
// read-modify-write, and `Arc` counts are thread-safe. The state is `Sync` (`Lending`).
unsafe impl<S: Lending> Send for Lease<S> {}
// SAFETY: `&Lease` gives out only `&S`, and `S: Sync`.
unsafe impl<S: Lending> Sync for Lease<S> {}

impl<S: Lending> Lease<S> {
    /// The state (alive until [`release`](Self::release), which the caller calls last).
    #[inline(always)]
    pub(crate) fn state(&self) -> &S {
        // SAFETY: the lease keeps the state alive until it is released, and the caller
        // releases it only as its last use of the state (`release`'s contract).
        unsafe { self.shared.as_ref() }
    }

    /// Gives back what keeps the state alive for this lease; `mine`: this thread's record,
    /// if the caller just found it (the give-back then needs no read-modify-write).
    ///
    /// # Safety
    /// Called once, as the lease's last use of the state (no `&S` from
    /// [`state`](Self::state) is used afterwards).
    #[inline(always)]
    pub(crate) unsafe fn release(&self, mine: OwnLent) {
        // SAFETY: forwarded from the caller (when it returns true this was the last use).
        if unsafe { self.release_mine(mine) } {
            return;
        }
        // SAFETY: forwarded from the caller; nothing was given back above.
        unsafe { release_shared(self.shared, self.lender) };
    }

    /// The owner's part of [`release`](Self::release) alone: gives the lease back with the
    /// owner's plain stores if `mine` is the record it was lent from and the pool is not
    /// closing. True: released (the caller must not touch the state again); false: nothing
    /// was given back, and the caller must still [`release`](Self::release) the lease
    /// (with [`OwnLent::NONE`]).
    ///
    /// # Safety
    /// When it returns true, as for [`release`](Self::release): the call is the lease's
    /// last use of the state.
    #[inline(always)]
    pub(crate) unsafe fn release_mine(&self, mine: OwnLent) -> bool {
        let lent = self.lender.0;
        // `mine` is this thread's record or none, never `Lender::STRONG`: equal, `lent` is
        // a record.
        mine.names(lent.as_ptr())
            // SAFETY: the record lives as long as the state, which this lease's count keeps
            // alive until this call.
            && unsafe { lent.as_ref() }.give_back_mine(mine)
    }
}

/// What keeps a lease's state alive: the record it is counted in (its [`Lent`], a record
/// of the pool, so it lives as long as the state: while the count is out, the pool's
/// lending reference stays), or [`STRONG`](Self::STRONG): the lease holds one strong count
/// of the state's `Arc` (taken without a record).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Lender(NonNull<Lent>);

impl Lender {
    /// Not a record: a dangling address (`Lent`'s alignment), which no record, and no
    /// [`OwnLent`], has.
    const STRONG: Self = Self(NonNull::dangling());
}

/// A pointer to the state with the provenance of the `Arc`'s whole allocation, so that
/// `Arc::decrement_strong_count` may later be called on it. (A pointer made from `&S` may
/// only reach the state itself, not the reference counts beside it: Miri reports that as
/// undefined behaviour.)
#[inline(always)]
fn state_ptr<S>(shared: &Arc<S>) -> NonNull<S> {
    // SAFETY: `Arc::as_ptr` points into the `Arc`'s live allocation, so it is not null.
    unsafe { NonNull::new_unchecked(Arc::as_ptr(shared).cast_mut()) }
}

/// Drops one strong count of the state's `Arc` that was taken with `Arc::into_raw`: the
/// lending reference, or a lease's own count ([`Lender::STRONG`]).
///
/// # Safety
/// `shared` points to the state of an `Arc<S>`, and the caller owns the count it drops and
/// drops it once: the lending reference when `Core::close_lending` or the caller's
/// decrement of `Core::drains` was the last, a lease's own count when the lease is
/// released. The state may be freed here: the caller must not use it afterwards.
unsafe fn release_count<S>(shared: NonNull<S>) {
    // SAFETY: from the caller: one strong count of this `Arc`, from `into_raw`.
    unsafe { Arc::decrement_strong_count(shared.as_ptr().cast_const()) };
}

/// [`Lease::release`] past the owner's path: a read-modify-write of the record's shared
/// counter (and the drain, if it was the last after close), or the lease's own `Arc` count.
///
/// # Safety
/// As for [`Lease::release`], with the lease's `shared` and `lender`.
#[cold]
#[inline(never)]
unsafe fn release_shared<S: Lending>(shared: NonNull<S>, lender: Lender) {
    if lender == Lender::STRONG {
        // SAFETY: the lease's own strong count, from `Arc::into_raw` in `Handle::lease`,
        // dropped once, as the lease's last use of the state (the caller's contract).
        return unsafe { release_count(shared) };
    }
    // SAFETY: not `STRONG`, so a record, which lives as long as the state, which this
    // lease's count keeps alive until this call.
    if unsafe { lender.0.as_ref() }.give_back_foreign() {
        // SAFETY: the state is alive until our drain is counted.
        unsafe { drain(shared) };
    }
}

/// The last lent guard of a record is back after close: count the drain, and release the
/// lending reference if it was the last one pending.
///
/// # Safety
/// `shared` is alive, kept so by the caller's record count, which
/// `Lent::give_back_foreign` just reported as the record's last after close. The state may
/// be freed here.
#[cold]
#[inline(never)]
unsafe fn drain<S: Lending>(shared: NonNull<S>) {
    // No borrow of the state is held across the release (it may free the state), and
    // during the decrement only the counter's own (atomic) reference is: once another
    // drainer's decrement is the last, it may free the state.
    // SAFETY: from the caller.
    let drains = unsafe { shared.as_ref() }.core().drains();
    if drains.fetch_sub(1, Ordering::AcqRel) == 1 {
        // SAFETY: this decrement was the last of `Core::drains`, which names this call the
        // one that releases the lending reference; nothing uses the state after it.
        unsafe { release_count(shared) };
    }
}

/// Releases a lease if dropped: armed around code that may unwind (a reset hook), so that
/// a panic still gives the guard back. [`disarm`](Self::disarm) it on the normal path.
pub(crate) struct ReleaseOnUnwind<'a, S: Lending>(pub(crate) &'a Lease<S>);

impl<S: Lending> ReleaseOnUnwind<'_, S> {
    /// The code it guarded returned: nothing is released here.
    #[inline(always)]
    pub(crate) fn disarm(self) {
        std::mem::forget(self);
    }
}

impl<S: Lending> Drop for ReleaseOnUnwind<'_, S> {
    fn drop(&mut self) {
        // SAFETY: armed only around code after which the lease would be released, and
        // disarmed when that code returns: this runs only when it unwinds, instead of that
        // release, as the guard's last use of the pool.
        unsafe { self.0.release(OwnLent::NONE) };
    }
}
