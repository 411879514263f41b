//! One tier of a thread's cache: a single word that says whether the thread holds a cache
//! credit for the tier and, if so, which item (if any) it keeps there.
//!
//! The words: 0 for "credit, empty", 1 for "no credit", anything else the item. No `Box` of
//! a sized, non-zero-sized type has either address (an allocation is never at 0 or 1), so
//! "holds an item" is one compare (`word > 1`), and emptying the slot a store of 0. A
//! zero-sized `Box` may point at 1 (its alignment): pools of zero-sized types keep no
//! thread cache (`Core::new`), so such a box never enters a slot.
//!
//! The word is an atomic only so that `stats()` can count filled slots from any thread
//! with a relaxed load. It is *written* under the owner rule of `src/registry.rs`: by the
//! thread that has claimed the record, or, while no live thread has, by a sweep holding
//! the id lock. Hence every writer is exclusive, and a write is a plain store (no
//! read-modify-write) on a line no other thread writes.

use std::marker::PhantomData;
use std::ptr;

use crate::sync::{AtomicPtr, Ordering};

/// The word that marks "credit held, no item" (module docs).
#[inline(always)]
fn vacant<U>() -> *mut U {
    ptr::null_mut()
}

/// The word that marks "no credit" (module docs).
#[inline(always)]
fn no_credit<U>() -> *mut U {
    ptr::without_provenance_mut(1)
}

/// Whether the word `p` is an item's pointer: neither [`vacant`] nor [`no_credit`].
#[inline(always)]
fn is_item<U>(p: *mut U) -> bool {
    p.addr() > 1
}

/// [`no_credit`], [`vacant`] (credit, empty), or else credit, holding the item
/// that `Box::into_raw` gave (the slot owns that box).
pub(crate) struct Slot<U>(AtomicPtr<U>, PhantomData<Box<U>>);

// SAFETY: a slot owns at most one `Box<U>`. Through `&Slot` other threads only compare the
// pointer (never dereference it); the writers that move the box in and out are exclusive by
// the owner rule, and may be any thread over time, which needs `U: Send` only.
unsafe impl<U: Send> Sync for Slot<U> {}
// SAFETY: as above: moving a slot moves the box it owns.
unsafe impl<U: Send> Send for Slot<U> {}

impl<U> Slot<U> {
    pub(crate) fn new() -> Self {
        Self(AtomicPtr::new(no_credit()), PhantomData)
    }

    /// Whether the slot holds an item (any thread, a relaxed snapshot).
    #[inline]
    pub(crate) fn is_filled(&self) -> bool {
        is_item(self.0.load(Ordering::Relaxed))
    }

    /// Whether the thread holds a credit and the slot is empty.
    #[inline(always)]
    pub(crate) fn has_room(&self) -> bool {
        self.0.load(Ordering::Relaxed) == vacant()
    }

    /// Whether the thread holds a credit for this tier.
    #[inline]
    pub(crate) fn has_credit(&self) -> bool {
        self.0.load(Ordering::Relaxed) != no_credit()
    }

    /// Takes the item, keeping the credit.
    ///
    /// # Safety
    /// The caller is the slot's writer under the owner rule (module docs).
    #[inline(always)]
    pub(crate) unsafe fn take(&self) -> Option<Box<U>> {
        let p = self.0.load(Ordering::Relaxed);
        if !is_item(p) {
            return None;
        }
        self.0.store(vacant(), Ordering::Relaxed);
        // SAFETY: `p` is neither marker, so it came from `Box::into_raw` in
        // `fill`/`replace` and the slot owned it; the caller is the only writer, and the
        // store above gave that ownership up, so the box is moved out exactly once.
        Some(unsafe { Box::from_raw(p) })
    }

    /// Stores `item` if the slot has room (credit, empty); else gives it back.
    ///
    /// # Safety
    /// As for [`take`](Self::take).
    #[inline(always)]
    pub(crate) unsafe fn fill(&self, item: Box<U>) -> Result<(), Box<U>> {
        if !self.has_room() {
            return Err(item);
        }
        self.0.store(Box::into_raw(item), Ordering::Relaxed);
        Ok(())
    }

    /// With a credit held, stores `item` and hands back the item it displaces, if any.
    ///
    /// # Safety
    /// As for [`take`](Self::take); the slot has a credit ([`has_credit`](Self::has_credit)).
    pub(crate) unsafe fn replace(&self, item: Box<U>) -> Option<Box<U>> {
        debug_assert!(self.has_credit());
        // SAFETY: forwarded from the caller.
        let older = unsafe { self.take() };
        self.0.store(Box::into_raw(item), Ordering::Relaxed);
        older
    }

    /// Marks a credit just granted to this slot's thread (the slot was without one).
    ///
    /// # Safety
    /// As for [`take`](Self::take).
    pub(crate) unsafe fn grant(&self) {
        debug_assert!(!self.has_credit());
        self.0.store(vacant(), Ordering::Relaxed);
    }

    /// Gives the credit up: `None` if there was none, else `Some` of the item it held.
    ///
    /// # Safety
    /// As for [`take`](Self::take).
    pub(crate) unsafe fn revoke(&self) -> Option<Option<Box<U>>> {
        if !self.has_credit() {
            return None;
        }
        // SAFETY: forwarded from the caller.
        let item = unsafe { self.take() };
        self.0.store(no_credit(), Ordering::Relaxed);
        Some(item)
    }
}

impl<U> Drop for Slot<U> {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: nothing else can reach the slot.
        drop(unsafe { self.take() });
    }
}
