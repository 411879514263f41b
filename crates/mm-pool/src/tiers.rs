//! The concurrent core both pools share: bounded tiers, each with a shared FIFO queue and a
//! one-item cache per thread in front of it.
//!
//! Accounting. Each tier counts *places* (`places`): one per queued item (reserved before
//! the push) plus one per cache *credit*. A thread's cache may hold an item of a tier only
//! while the thread owns a credit for it; at most `max_credits` credits per tier are out.
//! Hence, at every instant,
//!
//! `items held = queued + cached <= queued + credits <= places <= max_idle`.
//!
//! The cache is one word per tier in the thread's own record (`src/slot.rs`,
//! `src/registry.rs`): a hit or a return on the owning thread is the hint check, a load and
//! a plain store of that word (and, for a hit, a counter; the return is counted on read,
//! see [`Event`]): no atomic read-modify-write, no write to a line another thread writes.
//! Other threads never touch a live thread's cache. Instead:
//! - `trim` gives the record table a fresh tag, so every thread's hint stops matching; each
//!   thread's next operation on the pool takes the slow path, which empties its cache
//!   (the trimming thread's at once);
//! - the cache of a thread that has exited (its id is free) is swept, under the id lock, by
//!   the next miss or `trim` after the exit: its item goes to the queue or to the thread
//!   that missed, and its credit is handed back.

use std::ptr;

use crossbeam_utils::CachePadded;

use crate::PoolStats;
use crate::fence;
use crate::registry::{self, Mine, PerThread};
use crate::slot::Slot;
use crate::sync::{self, AtomicBool, AtomicU64, AtomicUsize, Counter, Ordering, Queue};

pub(crate) struct Tier<T> {
    queue: Queue<T>,
    places: CachePadded<AtomicUsize>,
    credits: AtomicUsize,
    max_idle: usize,
    max_credits: usize,
}

impl<T> Tier<T> {
    fn new(max_idle: usize, thread_cache: bool) -> Self {
        Self {
            queue: Queue::new(max_idle),
            places: CachePadded::new(AtomicUsize::new(0)),
            credits: AtomicUsize::new(0),
            max_idle,
            // Half the places at most, so threads without a cache still find room.
            max_credits: if thread_cache {
                max_idle.div_ceil(2)
            } else {
                0
            },
        }
    }

    /// Reserves one place; false (and nothing reserved) when the tier is full.
    fn reserve(&self) -> bool {
        if self.places.fetch_add(1, Ordering::AcqRel) >= self.max_idle {
            self.places.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn release(&self) {
        self.places.fetch_sub(1, Ordering::AcqRel);
    }

    /// Pushes into the queue on a place already reserved; the queue has room for every
    /// reserved place, so failure is impossible, but it is handled (place released).
    fn enqueue_reserved(&self, item: T) -> Result<(), T> {
        self.queue.push(item).inspect_err(|_| self.release())
    }

    /// Reserves a place and queues `item`, or hands it back when the tier is full.
    fn enqueue(&self, item: T) -> Result<(), T> {
        if !self.reserve() {
            return Err(item);
        }
        self.enqueue_reserved(item)
    }
}

/// What a pool counts, per thread.
///
/// The fast path counts one event per round trip: a hit taken from the thread's cache is
/// [`FastHit`](Self::FastHit), and the return that refills the cache is not counted at all.
/// Those returns are worked out on read instead ([`Core::counts`]): every item that enters
/// a cache slot leaves it again or is still there, so the fast returns (entries by
/// `put_hot`) are the items in the slots now, plus the fast hits and the other exits
/// ([`SlotOut`](Self::SlotOut)), less the other entries ([`SlotIn`](Self::SlotIn)), which
/// the slow paths count.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event {
    /// A hit on a slow path (the queue, the cache through the slow path, a sweep).
    Hit,
    Miss,
    /// A return on a slow path (a fast return is not counted: see above).
    Return,
    Discard,
    Oversize,
    Reshaped,
    /// A hit from the thread's cache on the fast path (`take_hot`).
    FastHit,
    /// An item put into a cache slot other than by `put_hot`.
    SlotIn,
    /// An item taken out of a cache slot other than by `take_hot`.
    SlotOut,
}

const EVENTS: usize = 9;

/// The part of a thread's record other threads read: counters and the cache slots (whose
/// writes follow the owner rule, see `src/slot.rs`). Tier 0's slot is inline, so a pool
/// of one tier (every `ObjectPool`, and a `BufferPool`'s smallest tier) reaches it without
/// a second pointer. `repr(C)`, [`Lent`] first: a record's [`Lent`] then has the record's
/// own address (`Record` is `repr(C)` with this part first), so the owned guard's lease and
/// the fast path's record pointer are one value (no offset added on acquire, nor on drop
/// before the compare); its other threads' counter stays on a line of its own.
#[repr(C)]
pub(crate) struct LocalStats<U> {
    /// Owned guards lent from this record, and given back (see [`Core::lend`]).
    lent: Lent,
    /// Before the counters: on one line with the fast path's counter.
    slot0: Slot<U>,
    counts: [Counter; EVENTS],
    more: Box<[Slot<U>]>,
}

/// The owned guards of one record (see `docs/mm-pool.md`, "Owned guards").
///
/// A guard given back on the record's owning thread is counted in `own` with plain stores
/// ([`give_back_owned`](Self::give_back_owned)); one given back anywhere else, or after the
/// close, with a read-modify-write of `foreign` ([`give_back_foreign`](Self::give_back_foreign)).
/// The close ([`Core::close_lending`]) and the owner's give-back see each other through an
/// asymmetric fence.
#[repr(C)]
pub(crate) struct Lent {
    /// Guards lent from this record. One writer: the record's owner (a relaxed load and
    /// store, no read-modify-write).
    lends: Counter,
    /// Twice the guards the owner gave back, plus 1 while it is inside a give-back. One
    /// writer: the record's owner (plain stores).
    own: AtomicU64,
    /// Set by the close, before its heavy fence, on every record that lent; set from the
    /// start where the process has no asymmetric fence (`fence::asymmetric`).
    closed: AtomicBool,
    /// Guards given back by other threads, or after the close (a read-modify-write each),
    /// on its own cache line, so that they do not take the owner's line away. The close
    /// adds [`CLOSED`]` - lends + own / 2` to it, so that afterwards it reads `CLOSED` minus
    /// the guards still out, and the give-back that brings it to `CLOSED` is the record's
    /// last.
    foreign: CachePadded<AtomicU64>,
}

/// The [`Lent`] of the calling thread's own record, taken from its [`Local`] during the
/// current pool operation (or none): what lets [`Lent::give_back_mine`] use the owner's plain
/// stores. Not `Send`; made only by [`own_lent`], and not kept past the operation.
#[derive(Clone, Copy)]
pub(crate) struct OwnLent(*const Lent);

impl OwnLent {
    /// No record: the give-back takes the read-modify-write.
    pub(crate) const NONE: Self = Self(ptr::null());

    /// Whether this is `lent` (compares addresses only: `lent` may be any pointer).
    #[inline(always)]
    pub(crate) fn names(self, lent: *const Lent) -> bool {
        ptr::eq(self.0, lent)
    }
}

/// The [`OwnLent`] of this thread's record `l`.
#[inline(always)]
pub(crate) fn own_lent<U>(l: &Local<'_, U>) -> OwnLent {
    OwnLent(&l.shared().lent)
}

/// What [`Core::close_lending`] moves every record's `foreign` to, less its guards still
/// out. Counts stay far below it (2^63 give-backs), so before the close no give-back
/// reaches `CLOSED - 1`.
const CLOSED: u64 = 1 << 63;

/// The starting value of `Core::drains`: more than there can be records.
const DRAINS_OPEN: usize = 1 << (usize::BITS - 2);

impl Lent {
    fn new(closed: bool) -> Self {
        Self {
            lends: Counter::default(),
            own: AtomicU64::new(0),
            closed: AtomicBool::new(closed),
            foreign: CachePadded::new(AtomicU64::new(0)),
        }
    }

    /// Gives one lent guard back on the record's owning thread, without a read-modify-write:
    /// `own` goes odd, an asymmetric fence's light side, a check of `closed`, and `own` goes
    /// even again, one give-back up. False when the close has begun: then nothing is
    /// counted and the caller must call [`give_back_foreign`](Self::give_back_foreign).
    ///
    /// Between the two stores the pool stays alive: the close waits for `own` to be even
    /// before it reads it (and so before anything can be freed). After the last store this
    /// touches nothing: the close may free the record at once.
    ///
    /// # Safety
    /// The calling thread owns the record (it holds a `Mine` of it): it is the only writer
    /// of `lends` and `own`.
    #[inline(always)]
    pub(crate) unsafe fn give_back_owned(&self) -> bool {
        let s = self.own.load(Ordering::Relaxed);
        self.own.store(s + 1, Ordering::Relaxed);
        // Of this store and the close's store to `closed`, each before its side's fence,
        // at least one is seen by the other side's load after its fence: either the close
        // reads `own` odd (and waits) or later, or this load sees `closed`.
        fence::light();
        if self.closed.load(Ordering::Relaxed) {
            // Not counted here: the close may have read `own` before the store above.
            // Release: the close reads `own` with acquire.
            self.own.store(s, Ordering::Release);
            return false;
        }
        // Release: this guard's uses of the pool happen before the close reads this.
        self.own.store(s + 2, Ordering::Release);
        true
    }

    /// Gives one lent guard back from any thread. True when it was the last one of its record
    /// after the pool closed: the caller must then count a drain in [`Core::drains`]. After
    /// it returns false the caller must not touch the pool again.
    #[inline]
    pub(crate) fn give_back_foreign(&self) -> bool {
        // Release: this guard's uses of the pool happen before whoever frees it (the
        // drainer acquires through this counter's release sequence). Acquire: the last
        // give-back sees the closer's and the other give-backs' writes. The answer comes
        // from the returned value alone: once this add is done, another give-back may free
        // the record, so nothing of it is read afterwards.
        self.foreign.fetch_add(1, Ordering::AcqRel) == CLOSED - 1
    }

    /// Gives one lent guard back with the owner's plain stores, if `mine` names this record
    /// (the calling thread owns it) and the pool has not closed. True: done, and the caller
    /// must not touch the pool again; false: nothing was counted, the caller must call
    /// [`give_back_foreign`](Self::give_back_foreign).
    #[inline(always)]
    pub(crate) fn give_back_mine(&self, mine: OwnLent) -> bool {
        // SAFETY: `mine` came from this thread's `Local` during the current operation
        // (`OwnLent`), and it is this record: the calling thread owns the record.
        ptr::eq(self, mine.0) && unsafe { self.give_back_owned() }
    }

    /// The owner's give-backs once it is not inside one (the close, after its heavy fence).
    fn settled_own(&self) -> u64 {
        loop {
            // Acquire: the owner's give-backs counted here are done with the pool.
            let s = self.own.load(Ordering::Acquire);
            if s.is_multiple_of(2) {
                return s / 2;
            }
            // The owner is between its two stores, a few instructions: let it finish.
            sync::wait_a_moment();
        }
    }
}

impl<U> LocalStats<U> {
    #[inline]
    fn slot(&self, t: usize) -> &Slot<U> {
        match t {
            0 => &self.slot0,
            _ => &self.more[t - 1],
        }
    }

    /// Counts `event` for this thread: a relaxed load and store on its own record.
    #[inline]
    pub(crate) fn count(&self, event: Event) {
        self.counts[event as usize].inc();
    }
}

/// The part only the owner touches: the table tag whose trim it has caught up with.
pub(crate) struct LocalCache {
    trim_seen: u64,
}

/// This thread's record in a pool.
pub(crate) type Local<'a, U> = Mine<'a, LocalStats<U>, LocalCache>;

/// Items are pooled boxed (`Box<U>`): a guard and a cache move a pointer, never the value.
pub(crate) struct Core<U: Send> {
    tiers: Box<[Tier<Box<U>>]>,
    locals: PerThread<LocalStats<U>, LocalCache>,
    thread_cache: bool,
    /// Counts of operations made without a record (during thread-local destruction).
    unowned: [AtomicU64; EVENTS],
    /// `registry::exits()` when this pool last swept exited threads' caches.
    exits_swept: AtomicU64,
    /// [`DRAINS_OPEN`] until the pool closes; then counts down the records that still had
    /// lent guards (and the closer itself) to 0 (see [`close_lending`](Self::close_lending)).
    drains: AtomicUsize,
    /// Live pool handles (`lease::Handle`); the last one's drop closes lending.
    handles: AtomicUsize,
}

impl<U: Send> Core<U> {
    pub(crate) fn new(max_idle: impl Iterator<Item = usize>, thread_cache: bool) -> Self {
        // A zero-sized `Box` may have the address of a slot's marker (`src/slot.rs`): such
        // items skip the thread caches.
        let thread_cache = thread_cache && size_of::<U>() != 0;
        let tiers: Box<[Tier<Box<U>>]> = max_idle.map(|m| Tier::new(m, thread_cache)).collect();
        let n = tiers.len();
        // Without a working asymmetric fence every record starts closed: owned guards then
        // always take the read-modify-write path.
        let closed = !fence::asymmetric();
        Self {
            tiers,
            locals: PerThread::new(move || {
                (
                    LocalStats {
                        counts: std::array::from_fn(|_| Counter::default()),
                        slot0: Slot::new(),
                        more: (1..n).map(|_| Slot::new()).collect(),
                        lent: Lent::new(closed),
                    },
                    // Tags start at 1: a fresh record catches up once, with nothing to drop.
                    LocalCache { trim_seen: 0 },
                )
            }),
            thread_cache,
            unowned: std::array::from_fn(|_| AtomicU64::new(0)),
            exits_swept: AtomicU64::new(0),
            drains: AtomicUsize::new(DRAINS_OPEN),
            handles: AtomicUsize::new(1),
        }
    }

    /// Counts one more pool handle.
    pub(crate) fn add_handle(&self) {
        self.handles.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one pool handle gone; true for the last one, which must then call
    /// [`close_lending`](Self::close_lending).
    pub(crate) fn drop_handle(&self) -> bool {
        // AcqRel: the last handle's drop happens after every acquire made through any
        // handle, so `close_lending` sees every lent count.
        self.handles.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// Counts an owned guard lent from this thread's record `l` and returns what the guard
    /// gives back to ([`Lent::give_back`]), on whatever thread it is dropped. A plain
    /// one-writer increment on this thread's own record. Call it only through a live pool
    /// handle (the pool is not closed).
    #[inline]
    pub(crate) fn lend<'a>(&self, l: &Local<'a, U>) -> &'a Lent {
        let lent = &l.shared().lent;
        // The closer happens after every acquire made through a handle (it drops the last
        // one), so it reads this count, as every later holder of the record does (the id
        // lock orders them).
        lent.lends.inc();
        lent
    }

    /// Closes lending when the pool's last handle is gone (no guard can be lent after
    /// this). True when no lent guard is out, so the caller releases what keeps the pool
    /// alive for lent guards now; otherwise the last guard of the last record to drain
    /// (its decrement of [`drains`](Self::drains) the last) releases it.
    ///
    /// First every record that lent is marked `closed`, then a heavy fence: an owner's
    /// give-back from then on sees the mark and counts in `foreign` instead of `own`, and
    /// one from before is visible in `own` (waited for if it is in progress). Then each
    /// such record's `foreign` moves from its give-backs `f` to `CLOSED - (lends - own - f)`,
    /// with `lends` and `own` final; the `k` records with guards still out will each see,
    /// exactly once, the give-back that brings it to `CLOSED` (counts only grow by 1), and
    /// decrement `drains`. `drains` goes from `DRAINS_OPEN` down by `DRAINS_OPEN - k` here
    /// and by 1 per drained record, in any order, so exactly one of these calls brings it
    /// to 0. A record created after this (a guard returned on a new thread) never lends.
    pub(crate) fn close_lending(&self) -> bool {
        let mut lent_any = false;
        self.locals.for_each_shared(|s| {
            // The close happens after every acquire made through a handle, so `lends` is
            // final here.
            if s.lent.lends.get() != 0 {
                s.lent.closed.store(true, Ordering::Relaxed);
                lent_any = true;
            }
        });
        if lent_any && !fence::heavy() {
            // Without the barrier an owner's give-back may go unseen: keep the state
            // (leaked, with its idle objects) rather than risk freeing it under a guard.
            return false;
        }
        let mut pending = 0;
        self.locals.for_each_shared(|s| {
            let lent = &s.lent;
            let lends = lent.lends.get();
            if lends == 0 {
                return;
            }
            let own = lent.settled_own();
            // Acquire: give-backs counted here are done with the pool. Release: the last
            // give-back, which frees the pool, sees this close.
            let foreign = lent
                .foreign
                .fetch_add(CLOSED - lends + own, Ordering::AcqRel);
            if foreign + own != lends {
                pending += 1;
            }
        });
        let mine = DRAINS_OPEN - pending;
        self.drains.fetch_sub(mine, Ordering::AcqRel) == mine
    }

    /// The count of records still to drain after close. A drainer decrements it through
    /// this reference (`drains().fetch_sub(1, AcqRel) == 1` names the last): no `&Core`
    /// stays borrowed across the decrement, after which another drainer may free the pool.
    pub(crate) fn drains(&self) -> &AtomicUsize {
        &self.drains
    }

    /// This thread's record through its hint alone (the fast path); `None`: use
    /// [`local`](Self::local).
    #[inline(always)]
    pub(crate) fn hinted(&self) -> Option<Local<'_, U>> {
        self.locals.hinted()
    }

    /// This thread's record, created on its first use of the pool, caught up with any
    /// `trim` since its last look; `None` while the thread's thread-local storage is being
    /// destroyed (then only shared paths are used).
    #[inline]
    pub(crate) fn local(&self) -> Option<Local<'_, U>> {
        self.hinted().or_else(|| self.local_slow(&mut |_| {}))
    }

    /// [`local`](Self::local) past the hint: look the record up, drop its cached items if
    /// a `trim` ran since its last look (calling `released` with each one's tier), and
    /// point the hint at it.
    #[cold]
    #[inline(never)]
    fn local_slow(&self, released: &mut dyn FnMut(usize)) -> Option<Local<'_, U>> {
        let tag = self.locals.tag();
        let l = self.locals.lookup()?;
        if l.with_own(|c| std::mem::replace(&mut c.trim_seen, tag)) != tag {
            for t in 0..self.tiers.len() {
                // SAFETY: `l` is this thread's claimed record (a `Mine`): by the owner
                // rule this thread is the only writer of its slots.
                if let Some(item) = unsafe { l.shared().slot(t).take() } {
                    l.shared().count(Event::SlotOut);
                    drop(item);
                    released(t);
                }
            }
        }
        self.locals.set_hint(&l, tag);
        Some(l)
    }

    pub(crate) fn thread_cache(&self) -> bool {
        self.thread_cache
    }

    /// Counts `event` for this thread, or in the shared counters without a record.
    #[inline]
    pub(crate) fn count(&self, local: Option<&Local<'_, U>>, event: Event) {
        match local {
            Some(l) => l.shared().count(event),
            None => {
                self.unowned[event as usize].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The fast path of a take, shared by both pools: this thread's cached item of tier `t`,
    /// found through the thread's hint, counted as a hit; with the record, for the caller's
    /// owned-guard count. `None`: take the slow path (no hint, or nothing cached).
    #[inline(always)]
    pub(crate) fn take_hot(&self, t: usize) -> Option<(Box<U>, Local<'_, U>)> {
        let l = self.hinted()?;
        let item = self.take_cached(&l, t)?;
        l.shared().count(Event::FastHit);
        Some((item, l))
    }

    /// The fast path of a put, shared by both pools: `item` into this thread's cache of tier
    /// `t` (record `l`, from [`hinted`](Self::hinted)) if it has room (a return, counted on
    /// read: see [`Event`]); else it is handed back for the slow path.
    #[inline(always)]
    pub(crate) fn put_hot(&self, l: &Local<'_, U>, t: usize, item: Box<U>) -> Result<(), Box<U>> {
        self.fill_cache(l, t, item)
    }

    /// The item in this thread's cache of tier `t`, if any (the fast path of a take).
    #[inline(always)]
    pub(crate) fn take_cached(&self, l: &Local<'_, U>, t: usize) -> Option<Box<U>> {
        // SAFETY: `l` is this thread's claimed record (a `Mine`): by the owner rule this
        // thread is the only writer of its slots.
        unsafe { l.shared().slot(t).take() }
    }

    /// Whether this thread's cache of tier `t` has room (a credit and no item).
    #[inline]
    pub(crate) fn cache_has_room(&self, l: &Local<'_, U>, t: usize) -> bool {
        l.shared().slot(t).has_room()
    }

    /// Keeps `item` in this thread's cache of tier `t` if it has room (the fast path of a
    /// put); else hands it back.
    #[inline(always)]
    pub(crate) fn fill_cache(
        &self,
        l: &Local<'_, U>,
        t: usize,
        item: Box<U>,
    ) -> Result<(), Box<U>> {
        // SAFETY: as in `take_cached`.
        unsafe { l.shared().slot(t).fill(item) }
    }

    /// An idle item of tier `t`: this thread's cache, then the queue, then (before the
    /// caller allocates) the cache of a thread that has exited.
    pub(crate) fn take(&self, t: usize, local: Option<&Local<'_, U>>) -> Option<Box<U>> {
        if let Some(l) = local
            && let Some(item) = self.take_cached(l, t)
        {
            l.shared().count(Event::SlotOut);
            return Some(item);
        }
        let tier = &self.tiers[t];
        if let Some(item) = tier.queue.pop() {
            tier.release();
            return Some(item);
        }
        if self.thread_cache && self.exits_swept.load(Ordering::Relaxed) != registry::exits() {
            let mut got = None;
            self.sweep_exited(Some((t, &mut got)), &mut |_| {});
            return got;
        }
        None
    }

    /// Empties the caches of exited threads and hands their credits back. Their items go to
    /// the queue, except the first of tier `want.0`, which is stored in `want.1`; an item
    /// that finds no room is dropped after the sweep, and `dropped` called with its tier.
    #[cold]
    fn sweep_exited(
        &self,
        mut want: Option<(usize, &mut Option<Box<U>>)>,
        dropped: &mut dyn FnMut(usize),
    ) {
        self.exits_swept.store(registry::exits(), Ordering::Relaxed);
        let mut spill: Vec<(usize, Box<U>)> = Vec::new();
        self.locals.orphans(|stats, _cache| {
            for (t, tier) in self.tiers.iter().enumerate() {
                // SAFETY: `orphans` runs this under the id lock on a record no live thread
                // has claimed: by the owner rule the sweep is its slots' only writer.
                let Some(item) = (unsafe { stats.slot(t).revoke() }) else {
                    continue;
                };
                if item.is_some() {
                    // The sweep is the record's only writer now (the owner rule).
                    stats.count(Event::SlotOut);
                }
                tier.credits.fetch_sub(1, Ordering::AcqRel);
                let Some(item) = item else {
                    tier.release();
                    continue;
                };
                match &mut want {
                    Some((w, out)) if *w == t && out.is_none() => {
                        tier.release();
                        **out = Some(item);
                    }
                    // The credit's place becomes the queued item's.
                    _ => {
                        if let Err(item) = tier.enqueue_reserved(item) {
                            spill.push((t, item));
                        }
                    }
                }
            }
        });
        for (t, item) in spill {
            drop(item);
            dropped(t);
        }
    }

    /// Keeps `item` in tier `t` if there is a place, else hands it back to be dropped.
    pub(crate) fn put(
        &self,
        t: usize,
        local: Option<&Local<'_, U>>,
        item: Box<U>,
    ) -> Result<(), Box<U>> {
        let Some(l) = local else {
            return self.tiers[t].enqueue(item);
        };
        let item = match self.fill_cache(l, t, item) {
            Ok(()) => {
                l.shared().count(Event::SlotIn);
                return Ok(());
            }
            Err(item) => item,
        };
        let tier = &self.tiers[t];
        if !self.thread_cache {
            return tier.enqueue(item);
        }
        let slot = l.shared().slot(t);
        if slot.has_credit() || self.grant_credit(t, l) {
            // The newest item stays cached (it is the hottest); an older one moves to the
            // queue if there is a place.
            // SAFETY: as in `take_cached`; the slot has a credit.
            let older = unsafe { slot.replace(item) };
            l.shared().count(Event::SlotIn);
            return match older {
                None => Ok(()),
                Some(older) => {
                    l.shared().count(Event::SlotOut);
                    tier.enqueue(older)
                }
            };
        }
        tier.enqueue(item)
    }

    /// Gives this thread a cache credit for tier `t` if any is left and a place is free.
    #[cold]
    fn grant_credit(&self, t: usize, l: &Local<'_, U>) -> bool {
        let tier = &self.tiers[t];
        let granted = tier
            .credits
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c < tier.max_credits).then_some(c + 1)
            })
            .is_ok();
        if !granted {
            return false;
        }
        if !tier.reserve() {
            tier.credits.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        // SAFETY: as in `take_cached`.
        unsafe { l.shared().slot(t).grant() };
        true
    }

    /// Whether a return to tier `t` would surely be refused (a hint: skip reset work).
    pub(crate) fn looks_full(&self, t: usize, local: Option<&Local<'_, U>>) -> bool {
        let tier = &self.tiers[t];
        let room_in_cache = local.is_some_and(|l| self.cache_has_room(l, t));
        !room_in_cache && tier.places.load(Ordering::Relaxed) >= tier.max_idle
    }

    /// Drops every idle item the calling thread can reach now: the queues, its own cache
    /// and the caches of exited threads; other threads drop their cached item at their
    /// next operation on the pool. Calls `released` with the tier of each item dropped.
    pub(crate) fn trim(&self, released: &mut dyn FnMut(usize)) {
        // Every thread's hint stops matching: its next operation catches up (`local_slow`).
        self.locals.retag();
        self.drain_queues(released);
        if !self.thread_cache {
            return;
        }
        let _ = self.local_slow(&mut *released);
        self.sweep_exited(None, &mut *released);
        // The sweep moved exited threads' items to the queues: drop them too.
        self.drain_queues(released);
    }

    fn drain_queues(&self, released: &mut dyn FnMut(usize)) {
        for (t, tier) in self.tiers.iter().enumerate() {
            while let Some(item) = tier.queue.pop() {
                tier.release();
                drop(item);
                released(t);
            }
        }
    }

    /// Items held idle in tier `t` now (queue plus caches); never above `max_idle`.
    pub(crate) fn held(&self, t: usize) -> usize {
        let tier = &self.tiers[t];
        let mut cached = 0;
        if self.thread_cache {
            self.locals
                .for_each_shared(|s| cached += usize::from(s.slot(t).is_filled()));
        }
        (tier.queue.len() + cached).min(tier.max_idle)
    }

    /// Counters summed over threads (held figures left for the caller). The fast returns
    /// are worked out from the cache slots (see [`Event`]): exact when the pool is quiet, a
    /// snapshot (possibly off by the operations in flight) while other threads use it.
    pub(crate) fn counts(&self) -> PoolStats {
        let mut sum = [0u64; EVENTS];
        for (s, u) in sum.iter_mut().zip(&self.unowned) {
            *s = u.load(Ordering::Relaxed);
        }
        let mut filled = 0u64;
        let tiers = self.tiers.len();
        self.locals.for_each_shared(|l| {
            for (s, c) in sum.iter_mut().zip(&l.counts) {
                *s = s.wrapping_add(c.get());
            }
            for t in 0..tiers {
                filled += u64::from(l.slot(t).is_filled());
            }
        });
        let fast_hits = sum[Event::FastHit as usize];
        // entries by `put_hot` = items in the slots + exits by `take_hot` + other exits
        // - other entries; a snapshot taken while the owners run may not add up: clamp.
        let fast_returns =
            (i128::from(filled) + i128::from(fast_hits) + i128::from(sum[Event::SlotOut as usize])
                - i128::from(sum[Event::SlotIn as usize]))
            .clamp(0, i128::from(u64::MAX)) as u64;
        PoolStats {
            hits: sum[Event::Hit as usize].wrapping_add(fast_hits),
            misses: sum[Event::Miss as usize],
            returns: sum[Event::Return as usize].wrapping_add(fast_returns),
            discards: sum[Event::Discard as usize],
            oversize: sum[Event::Oversize as usize],
            reshaped: sum[Event::Reshaped as usize],
            ..PoolStats::default()
        }
    }
}
