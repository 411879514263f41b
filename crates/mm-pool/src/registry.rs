//! Small thread ids, and the per-pool table of per-thread records they index.
//!
//! Every thread that touches a pool gets a process-wide id, the smallest one free, from
//! [`current`]; the id is given back when the thread's thread-local storage is destroyed,
//! and the next new thread may get it again. A pool keeps one [`Record`] per id in a
//! [`PerThread`] table. A record has a part any thread may read (`S`: atomics) and a part
//! only its owner touches (`O`: plain data behind an `UnsafeCell`, the per-thread cache).
//!
//! Each handing out of an id has a *generation*; a record remembers the generation that
//! claimed it (`owner`). Who may touch the owner part of record `id` (the *owner rule*):
//! - the thread that holds `id` now, once it has claimed the record (through
//!   [`PerThread::mine`], which claims it under the id lock when the generation differs);
//! - while no live thread has claimed it (the claimant exited: `id` is free, or held by a
//!   later thread that has not used this pool yet), whoever holds the id lock (through
//!   [`PerThread::orphans`]).
//!
//! Every hand-over goes through the id lock: a thread gives its id back under the lock
//! after its last access; a sweep runs under it; a new holder claims under it before its
//! first access. A new holder of a reused id inherits the record as it was left (its cache
//! and its counters), unless a sweep emptied it in between.
//!
//! During thread-local destruction, once the id has been given back, [`current`] returns
//! `None` (it never panics): callers then take a path that needs no record.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicPtr, AtomicU64, Mutex, Ordering, UnsafeCell, lock, thread_local};

/// Ids in use and free. `alive[id]` says whether some thread holds `id`; `gens[id]` counts
/// how often `id` was handed out (the holder's *generation*, from 1).
pub(crate) struct Ids {
    next: usize,
    free: BinaryHeap<Reverse<usize>>,
    alive: Vec<bool>,
    gens: Vec<u64>,
}

impl Ids {
    const fn new() -> Self {
        Self {
            next: 0,
            free: BinaryHeap::new(),
            alive: Vec::new(),
            gens: Vec::new(),
        }
    }

    /// A free id and its new generation.
    fn take(&mut self) -> (usize, u64) {
        let id = match self.free.pop() {
            Some(Reverse(id)) => id,
            None => {
                self.next += 1;
                self.next - 1
            }
        };
        if self.alive.len() <= id {
            self.alive.resize(id + 1, false);
            self.gens.resize(id + 1, 0);
        }
        self.alive[id] = true;
        self.gens[id] += 1;
        (id, self.gens[id])
    }

    fn give_back(&mut self, id: usize) {
        self.alive[id] = false;
        self.free.push(Reverse(id));
    }

    /// Whether the thread holding `id` now is `generation` (false when `id` is free).
    pub(crate) fn is_held_by(&self, id: usize, generation: u64) -> bool {
        self.alive.get(id).copied().unwrap_or(false) && self.gens[id] == generation
    }
}

/// The process-wide id lock and a count of ids given back (thread exits), which pools read
/// to know when an orphan sweep may find something.
pub(crate) struct Registry {
    ids: Mutex<Ids>,
    exits: AtomicU64,
}

#[cfg(not(loom))]
static REGISTRY: Registry = Registry {
    ids: Mutex::new(Ids::new()),
    exits: AtomicU64::new(0),
};

#[cfg(not(loom))]
fn registry() -> &'static Registry {
    &REGISTRY
}

// Under loom a lazy static (reset for every execution) behind an `Arc`: loom drops the
// statics before the main thread's thread-locals, so a thread id keeps its own handle.
#[cfg(loom)]
loom::lazy_static! {
    static ref REGISTRY: crate::sync::Arc<Registry> = crate::sync::Arc::new(Registry {
        ids: Mutex::new(Ids::new()),
        exits: AtomicU64::new(0),
    });
}

#[cfg(loom)]
fn registry() -> crate::sync::Arc<Registry> {
    crate::sync::Arc::clone(&REGISTRY)
}

/// Thread exits so far (ids given back). Relaxed: a stale value only delays a sweep.
#[inline]
pub(crate) fn exits() -> u64 {
    registry().exits.load(Ordering::Relaxed)
}

const NO_ID: usize = usize::MAX;

/// This thread's id, held for the thread's life and given back when its thread-local
/// storage is destroyed.
struct ThreadId {
    id: Cell<usize>,
    generation: Cell<u64>,
    #[cfg(loom)]
    registry: std::cell::RefCell<Option<crate::sync::Arc<Registry>>>,
}

impl Drop for ThreadId {
    fn drop(&mut self) {
        let id = self.id.replace(NO_ID);
        if id != NO_ID {
            // The hint must not outlive the id (a later holder may claim the record).
            let _ = LAST.try_with(|last| last.set(NO_HINT));
            #[cfg(not(loom))]
            let reg = registry();
            #[cfg(loom)]
            let Some(reg) = self.registry.borrow_mut().take() else {
                return;
            };
            lock(&reg.ids).give_back(id);
            reg.exits.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(not(loom))]
thread_local! {
    static THREAD_ID: ThreadId = const { ThreadId { id: Cell::new(NO_ID), generation: Cell::new(0) } };
}

#[cfg(loom)]
thread_local! {
    static THREAD_ID: ThreadId = ThreadId {
        id: Cell::new(NO_ID),
        generation: Cell::new(0),
        registry: std::cell::RefCell::new(None),
    };
}

// The record this thread used last: (table tag, record). Set by `PerThread::set_hint` for a
// record this thread holds; cleared when the thread gives its id back. No destructor, so
// it stays readable during thread-local destruction. The empty hint names tag 0, which no
// table has, and a dangling (never dereferenced) pointer: a non-null pointer type lets the
// fast path skip a null test.
const NO_HINT: (u64, NonNull<()>) = (0, NonNull::dangling());

#[cfg(not(loom))]
thread_local! {
    static LAST: Cell<(u64, NonNull<()>)> = const { Cell::new(NO_HINT) };
}

#[cfg(loom)]
thread_local! {
    static LAST: Cell<(u64, NonNull<()>)> = Cell::new(NO_HINT);
}

/// Tags of tables, from 1, never reused (unlike addresses): every table takes a fresh one
/// when it is built and at every [`PerThread::retag`], so a hint naming a dropped table,
/// or a table as it was before its last retag, can never match. Only uniqueness matters,
/// so it needs no loom model.
static TAGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn fresh_tag() -> u64 {
    TAGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// This thread's id and generation, assigned on first use; `None` once the thread's id
/// has been given back (its thread-local storage is being destroyed). Never panics.
#[inline]
pub(crate) fn current() -> Option<(usize, u64)> {
    THREAD_ID
        .try_with(|me| match me.id.get() {
            NO_ID => {
                let reg = registry();
                let (id, generation) = lock(&reg.ids).take();
                #[cfg(loom)]
                me.registry.replace(Some(crate::sync::Arc::clone(&reg)));
                me.id.set(id);
                me.generation.set(generation);
                (id, generation)
            }
            id => (id, me.generation.get()),
        })
        .ok()
}

/// Buckets of the table: bucket `b` holds ids `2^b - 1 ..= 2^(b+1) - 2`. A thread whose id
/// is past the last bucket gets no record (it uses the pools' shared paths).
const BUCKETS: usize = if cfg!(loom) { 3 } else { 40 };

/// Bucket and index of `id` (`id + 1 = 2^bucket + index`).
fn locate(id: usize) -> Option<(usize, usize)> {
    let n = id.checked_add(1)?;
    let bucket = (usize::BITS - 1 - n.leading_zeros()) as usize;
    (bucket < BUCKETS).then(|| (bucket, n - (1 << bucket)))
}

/// One thread's record: `shared` for everyone, `own` for the owner (see the module docs).
/// `repr(C)` with `shared` first, so that `shared` has the record's address (the hint's).
#[repr(C)]
pub(crate) struct Record<S, O> {
    shared: S,
    /// Generation of the thread that claimed the record last; written only under the id
    /// lock, or by the creating thread before it publishes the record.
    owner: AtomicU64,
    own: UnsafeCell<O>,
}

type Slot<S, O> = AtomicPtr<CachePadded<Record<S, O>>>;

/// One [`Record`] per thread id, created on the thread's first use, freed with the table.
pub(crate) struct PerThread<S, O> {
    /// The table's current tag (see [`TAGS`]): what a valid hint names.
    tag: CachePadded<AtomicU64>,
    buckets: Box<[AtomicPtr<Slot<S, O>>]>,
    init: Box<dyn Fn() -> (S, O) + Send + Sync>,
}

// SAFETY: records are shared between threads as `&S` (so `S: Sync`), and their `O` parts
// are moved between threads by id reuse and dropped by whoever drops the table (so
// `O: Send`). The owner rule of the module docs keeps every `O` access exclusive.
unsafe impl<S: Send + Sync, O: Send> Sync for PerThread<S, O> {}
// SAFETY: as above; the table owns its records.
unsafe impl<S: Send + Sync, O: Send> Send for PerThread<S, O> {}

impl<S, O> PerThread<S, O> {
    pub(crate) fn new(init: impl Fn() -> (S, O) + Send + Sync + 'static) -> Self {
        Self {
            tag: CachePadded::new(AtomicU64::new(fresh_tag())),
            buckets: (0..BUCKETS)
                .map(|_| AtomicPtr::new(ptr::null_mut()))
                .collect(),
            init: Box::new(init),
        }
    }

    /// The slots of bucket `b`, allocating them if this is the bucket's first use.
    fn bucket(&self, b: usize) -> *const Slot<S, O> {
        let existing = self.buckets[b].load(Ordering::Acquire);
        if !existing.is_null() {
            return existing;
        }
        let fresh: Box<[Slot<S, O>]> = (0..1usize << b)
            .map(|_| AtomicPtr::new(ptr::null_mut()))
            .collect();
        let fresh = Box::into_raw(fresh).cast::<Slot<S, O>>();
        match self.buckets[b].compare_exchange(
            ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(winner) => {
                // SAFETY: `fresh` came from `Box::into_raw` of a slice of `1 << b` slots
                // just above and was never published.
                drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(fresh, 1 << b)) });
                winner
            }
        }
    }

    /// The table's current tag. A [`retag`](Self::retag) changes it.
    #[inline]
    pub(crate) fn tag(&self) -> u64 {
        self.tag.load(Ordering::Relaxed)
    }

    /// Gives the table a fresh tag: every thread's hint stops matching, so each thread's
    /// next operation takes the slow path ([`lookup`](Self::lookup)), where its pool
    /// catches up with whatever the retag announced (a trim).
    pub(crate) fn retag(&self) {
        self.tag.store(fresh_tag(), Ordering::Relaxed);
    }

    /// This thread's record, if the thread's hint names this table as tagged now: one
    /// thread-local load and a compare. `None` means "take the slow path", not "no record".
    #[inline]
    pub(crate) fn hinted(&self) -> Option<Mine<'_, S, O>> {
        let (tag, rec) = LAST.try_with(Cell::get).ok()?;
        if tag != self.tag() {
            return None;
        }
        Some(Mine {
            // SAFETY: tags are unique per table and retag (and never 0, the empty hint's), so the hint was set by
            // `set_hint` on this thread, for this table, since its last retag, from a
            // `Mine`: a record of this table that this thread claimed while holding its
            // current id (the hint is cleared when the id is given back). Records live as
            // long as `&self`.
            rec: unsafe { rec.cast::<Record<S, O>>().as_ref() },
            _not_send: PhantomData,
        })
    }

    /// Points this thread's hint at `mine` with tag `tag` (read from [`tag`](Self::tag)
    /// before the caller caught up with it: a retag since then makes the hint stale, never
    /// wrong).
    #[inline]
    pub(crate) fn set_hint(&self, mine: &Mine<'_, S, O>, tag: u64) {
        let hint = (tag, NonNull::from(mine.rec).cast::<()>());
        let _ = LAST.try_with(|last| last.set(hint));
    }

    /// This thread's record without the hint: look it up by id, create or claim it.
    /// `None` during thread-local destruction (see [`current`]) or for an id past the
    /// table. Does not set the hint.
    pub(crate) fn lookup(&self) -> Option<Mine<'_, S, O>> {
        let (id, generation) = current()?;
        let (b, i) = locate(id)?;
        // SAFETY: bucket `b` has `1 << b` slots and `i < 1 << b` (from `locate`).
        let slot = unsafe { &*self.bucket(b).add(i) };
        let mut rec = slot.load(Ordering::Acquire);
        if rec.is_null() {
            let (shared, own) = (self.init)();
            rec = Box::into_raw(Box::new(CachePadded::new(Record {
                owner: AtomicU64::new(generation),
                shared,
                own: UnsafeCell::new(own),
            })));
            // Only the holder of this id writes this slot, so a plain publish suffices.
            slot.store(rec, Ordering::Release);
        }
        // SAFETY: published records live until the table is dropped, which needs
        // `&mut self`; the returned borrow is tied to `&self`.
        let rec: &Record<S, O> = unsafe { &*rec };
        // Only this thread ever stores `generation` (ids are unique among live threads,
        // generations among holders of an id), so reading it back means the claim is ours.
        if rec.owner.load(Ordering::Relaxed) != generation {
            Self::claim(rec, generation);
        }
        Some(Mine {
            rec,
            _not_send: PhantomData,
        })
    }

    /// Takes over a record left by an earlier holder of this thread's id, under the id
    /// lock: after the previous holder's last access and after any sweep of it.
    #[cold]
    fn claim(rec: &Record<S, O>, generation: u64) {
        let reg = registry();
        let _ids = lock(&reg.ids);
        rec.owner.store(generation, Ordering::Relaxed);
    }

    /// Calls `f` on the record of every thread id so far, with its id.
    fn each(&self, mut f: impl FnMut(usize, &Record<S, O>)) {
        for (b, bucket) in self.buckets.iter().enumerate() {
            let slots = bucket.load(Ordering::Acquire);
            if slots.is_null() {
                continue;
            }
            for i in 0..1usize << b {
                // SAFETY: a non-null bucket has `1 << b` slots.
                let rec = unsafe { &*slots.add(i) }.load(Ordering::Acquire);
                if !rec.is_null() {
                    // SAFETY: published records live as long as `&self`.
                    f((1 << b) - 1 + i, unsafe { &*rec });
                }
            }
        }
    }

    /// Calls `f` on the shared part of every record.
    pub(crate) fn for_each_shared(&self, mut f: impl FnMut(&S)) {
        self.each(|_, rec| f(&rec.shared));
    }

    /// Calls `f` on both parts of every record that no live thread has claimed (its
    /// thread exited, and the id is free or its new holder has not used this pool yet),
    /// under the id lock, so that no thread can claim it meanwhile. `f` must not run user
    /// code (drops of pooled items included): it runs under a process-wide lock.
    pub(crate) fn orphans(&self, mut f: impl FnMut(&S, &mut O)) {
        let reg = registry();
        let ids = lock(&reg.ids);
        self.each(|id, rec| {
            if !ids.is_held_by(id, rec.owner.load(Ordering::Relaxed)) {
                // SAFETY: the record's claimant no longer holds its id, and a new holder
                // must take the id lock (which we hold) to claim it: by the owner rule no
                // other thread touches the owner part until we release the lock.
                rec.own.with_mut(|own| f(&rec.shared, unsafe { &mut *own }));
            }
        });
    }
}

impl<S, O> Drop for PerThread<S, O> {
    fn drop(&mut self) {
        for (b, bucket) in self.buckets.iter().enumerate() {
            let slots = bucket.load(Ordering::Acquire);
            if slots.is_null() {
                continue;
            }
            // SAFETY: a non-null bucket came from `Box::into_raw` of `1 << b` slots; the
            // table is dropped, so nothing else refers to it.
            let slots = unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(slots, 1 << b)) };
            for slot in slots.iter() {
                let rec = slot.load(Ordering::Acquire);
                if !rec.is_null() {
                    // SAFETY: every record came from `Box::into_raw`; no borrow of it can
                    // outlive `&self`, and we have `&mut self`.
                    drop(unsafe { Box::from_raw(rec) });
                }
            }
        }
    }
}

/// The calling thread's own record: gives the owner part. Not `Send`: it must not leave
/// the thread that holds the id.
pub(crate) struct Mine<'a, S, O> {
    rec: &'a Record<S, O>,
    _not_send: PhantomData<*const ()>,
}

impl<'a, S, O> Mine<'a, S, O> {
    /// The part other threads read (it lives as long as the table).
    #[inline]
    pub(crate) fn shared(&self) -> &'a S {
        &self.rec.shared
    }

    /// Runs `f` on the owner part. `f` must not re-enter the pool or run user code (drop
    /// pooled items outside it): the `&mut` it gets must be the only one.
    #[inline]
    pub(crate) fn with_own<R>(&self, f: impl FnOnce(&mut O) -> R) -> R {
        // SAFETY: this thread holds the record's id (a `Mine` exists only on it, from
        // `mine()`), so by the owner rule no other thread touches the owner part now; on
        // this thread, `f` does not re-enter, so this `&mut` is the only one.
        self.rec.own.with_mut(|own| f(unsafe { &mut *own }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_onto_buckets_densely() {
        assert_eq!(locate(0), Some((0, 0)));
        assert_eq!(locate(1), Some((1, 0)));
        assert_eq!(locate(2), Some((1, 1)));
        assert_eq!(locate(3), Some((2, 0)));
        assert_eq!(locate(6), Some((2, 3)));
        assert_eq!(locate(7), Some((3, 0)));
        assert_eq!(locate(usize::MAX), None);
        assert_eq!(
            locate((1 << BUCKETS) - 2),
            Some((BUCKETS - 1, (1 << (BUCKETS - 1)) - 1))
        );
        assert_eq!(locate((1 << BUCKETS) - 1), None);
    }

    #[test]
    fn freed_ids_are_reused_smallest_first() {
        let mut ids = Ids::new();
        assert_eq!(
            (ids.take(), ids.take(), ids.take()),
            ((0, 1), (1, 1), (2, 1))
        );
        ids.give_back(2);
        ids.give_back(0);
        assert!(!ids.is_held_by(0, 1) && ids.is_held_by(1, 1) && !ids.is_held_by(9, 1));
        assert_eq!(
            (ids.take(), ids.take(), ids.take()),
            ((0, 2), (2, 2), (3, 1))
        );
        assert!(ids.is_held_by(0, 2) && !ids.is_held_by(0, 1));
    }

    #[test]
    fn a_thread_keeps_its_id_and_gives_it_back_at_exit() {
        let me = current().unwrap();
        assert_eq!(current(), Some(me));
        let before = exits();
        let other = std::thread::spawn(|| current().unwrap()).join().unwrap();
        assert_ne!(other.0, me.0);
        assert!(exits() > before, "the spawned thread gave its id back");
    }
}
