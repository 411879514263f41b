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
//! The cache is plain data in the thread's own record (`src/registry.rs`): a hit or a
//! return on the owning thread makes no atomic read-modify-write and writes no line another
//! thread writes. Other threads never touch a live thread's cache. Instead:
//! - `trim` bumps `trim_epoch`; each thread empties its cache at its next operation on the
//!   pool (the trimming thread at once);
//! - the cache of a thread that has exited (its id is free) is swept, under the id lock, by
//!   the next miss or `trim` after the exit: its item goes to the queue or to the thread
//!   that missed, and its credit is handed back.

use crossbeam_utils::CachePadded;

use crate::PoolStats;
use crate::registry::{self, Mine, PerThread};
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Counter, Ordering, Queue};

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
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event {
    Hit,
    Miss,
    Return,
    Discard,
    Oversize,
    Reshaped,
}

const EVENTS: usize = 6;

/// The part of a thread's record other threads read: counters and which cache places are
/// filled. Written only by the record's owner (or, for an exited thread, by a sweep).
pub(crate) struct LocalStats {
    counts: [Counter; EVENTS],
    filled: Box<[AtomicBool]>,
}

/// The part only the owner touches: the cache itself (empty without thread caches).
pub(crate) struct LocalCache<T> {
    tiers: Box<[CacheTier<T>]>,
    trim_seen: u64,
}

/// One tier of a thread's cache: at most one item, held only with a credit.
struct CacheTier<T> {
    item: Option<T>,
    credit: bool,
}

/// This thread's record in a pool.
pub(crate) type Local<'a, T> = Mine<'a, LocalStats, LocalCache<T>>;

pub(crate) struct Core<T: Send> {
    tiers: Box<[Tier<T>]>,
    locals: PerThread<LocalStats, LocalCache<T>>,
    thread_cache: bool,
    /// Counts of operations made without a record (during thread-local destruction).
    unowned: [AtomicU64; EVENTS],
    trim_epoch: CachePadded<AtomicU64>,
    /// `registry::exits()` when this pool last swept exited threads' caches.
    exits_swept: AtomicU64,
}

impl<T: Send> Core<T> {
    pub(crate) fn new(max_idle: impl Iterator<Item = usize>, thread_cache: bool) -> Self {
        let tiers: Box<[Tier<T>]> = max_idle.map(|m| Tier::new(m, thread_cache)).collect();
        let n = if thread_cache { tiers.len() } else { 0 };
        Self {
            tiers,
            locals: PerThread::new(move || {
                (
                    LocalStats {
                        counts: std::array::from_fn(|_| Counter::default()),
                        filled: (0..n).map(|_| AtomicBool::new(false)).collect(),
                    },
                    LocalCache {
                        tiers: (0..n)
                            .map(|_| CacheTier {
                                item: None,
                                credit: false,
                            })
                            .collect(),
                        trim_seen: 0,
                    },
                )
            }),
            thread_cache,
            unowned: std::array::from_fn(|_| AtomicU64::new(0)),
            trim_epoch: CachePadded::new(AtomicU64::new(0)),
            exits_swept: AtomicU64::new(0),
        }
    }

    /// This thread's record, created on its first use of the pool; `None` while the
    /// thread's thread-local storage is being destroyed (then only shared paths are used).
    #[inline]
    pub(crate) fn local(&self) -> Option<Local<'_, T>> {
        self.locals.mine()
    }

    pub(crate) fn thread_cache(&self) -> bool {
        self.thread_cache
    }

    /// Counts `event` for this thread.
    #[inline]
    pub(crate) fn count(&self, local: Option<&Local<'_, T>>, event: Event) {
        match local {
            Some(l) => l.shared().counts[event as usize].inc(),
            None => {
                self.unowned[event as usize].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Empties this thread's cache if a `trim` ran since its last look; calls `released`
    /// with the tier of each item dropped.
    #[cold]
    fn catch_up_with_trim(&self, l: &Local<'_, T>, epoch: u64, released: &mut dyn FnMut(usize)) {
        l.with_own(|c| c.trim_seen = epoch);
        for t in 0..self.tiers.len() {
            let item = l.with_own(|c| c.tiers.get_mut(t).and_then(|ct| ct.item.take()));
            if let Some(item) = item {
                l.shared().filled[t].store(false, Ordering::Relaxed);
                drop(item);
                released(t);
            }
        }
    }

    /// An idle item of tier `t`: this thread's cache, then the queue, then (before the
    /// caller allocates) the cache of a thread that has exited.
    #[inline]
    pub(crate) fn take(&self, t: usize, local: Option<&Local<'_, T>>) -> Option<T> {
        if let Some(l) = local {
            let epoch = self.trim_epoch.load(Ordering::Relaxed);
            let cached = l.with_own(|c| match c.tiers.get_mut(t) {
                Some(ct) if c.trim_seen == epoch => ct.item.take(),
                _ => None,
            });
            if let Some(item) = cached {
                l.shared().filled[t].store(false, Ordering::Relaxed);
                return Some(item);
            }
        }
        self.take_shared(t, local)
    }

    /// [`take`](Self::take) past this thread's cache.
    #[inline(never)]
    fn take_shared(&self, t: usize, local: Option<&Local<'_, T>>) -> Option<T> {
        if let Some(l) = local.filter(|_| self.thread_cache) {
            let epoch = self.trim_epoch.load(Ordering::Relaxed);
            if l.with_own(|c| c.trim_seen != epoch) {
                self.catch_up_with_trim(l, epoch, &mut |_| {});
            }
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
        mut want: Option<(usize, &mut Option<T>)>,
        dropped: &mut dyn FnMut(usize),
    ) {
        self.exits_swept.store(registry::exits(), Ordering::Relaxed);
        let mut spill: Vec<(usize, T)> = Vec::new();
        self.locals.orphans(|stats, cache| {
            for (t, tier) in self.tiers.iter().enumerate() {
                let Some(ct) = cache.tiers.get_mut(t) else {
                    continue;
                };
                if !std::mem::take(&mut ct.credit) {
                    continue;
                }
                tier.credits.fetch_sub(1, Ordering::AcqRel);
                stats.filled[t].store(false, Ordering::Relaxed);
                let Some(item) = ct.item.take() else {
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
    #[inline]
    pub(crate) fn put(&self, t: usize, local: Option<&Local<'_, T>>, item: T) -> Result<(), T> {
        let Some(l) = local else {
            return self.tiers[t].enqueue(item);
        };
        let epoch = self.trim_epoch.load(Ordering::Relaxed);
        let refused = l.with_own(|c| match c.tiers.get_mut(t) {
            Some(ct) if c.trim_seen == epoch && ct.credit && ct.item.is_none() => {
                ct.item = Some(item);
                None
            }
            _ => Some(item),
        });
        match refused {
            None => {
                l.shared().filled[t].store(true, Ordering::Relaxed);
                Ok(())
            }
            Some(item) => self.put_shared(t, l, item),
        }
    }

    /// [`put`](Self::put) when this thread's cache cannot simply take the item.
    #[inline(never)]
    fn put_shared(&self, t: usize, l: &Local<'_, T>, item: T) -> Result<(), T> {
        let tier = &self.tiers[t];
        if !self.thread_cache {
            return tier.enqueue(item);
        }
        let epoch = self.trim_epoch.load(Ordering::Relaxed);
        if l.with_own(|c| c.trim_seen != epoch) {
            self.catch_up_with_trim(l, epoch, &mut |_| {});
        }
        if l.with_own(|c| c.tiers[t].credit) || self.grant_credit(t, l) {
            // The newest item stays cached (it is the hottest); an older one moves to the
            // queue if there is a place.
            return match l.with_own(|c| c.tiers[t].item.replace(item)) {
                None => {
                    l.shared().filled[t].store(true, Ordering::Relaxed);
                    Ok(())
                }
                Some(older) => tier.enqueue(older),
            };
        }
        tier.enqueue(item)
    }

    /// Gives this thread a cache credit for tier `t` if any is left and a place is free.
    #[cold]
    fn grant_credit(&self, t: usize, l: &Local<'_, T>) -> bool {
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
        l.with_own(|c| c.tiers[t].credit = true);
        true
    }

    /// Whether a return to tier `t` would surely be refused (a hint: skip reset work).
    #[inline]
    pub(crate) fn looks_full(&self, t: usize, local: Option<&Local<'_, T>>) -> bool {
        let tier = &self.tiers[t];
        let room_in_cache = local.is_some_and(|l| {
            l.with_own(|c| {
                c.tiers
                    .get(t)
                    .is_some_and(|ct| ct.credit && ct.item.is_none())
            })
        });
        !room_in_cache && tier.places.load(Ordering::Relaxed) >= tier.max_idle
    }

    /// Drops every idle item the calling thread can reach now: the queues, its own cache
    /// and the caches of exited threads; other threads drop their cached item at their
    /// next operation on the pool. Calls `released` with the tier of each item dropped.
    pub(crate) fn trim(&self, released: &mut dyn FnMut(usize)) {
        self.trim_epoch.fetch_add(1, Ordering::Relaxed);
        for (t, tier) in self.tiers.iter().enumerate() {
            while let Some(item) = tier.queue.pop() {
                tier.release();
                drop(item);
                released(t);
            }
        }
        if !self.thread_cache {
            return;
        }
        if let Some(l) = self.local() {
            self.catch_up_with_trim(&l, self.trim_epoch.load(Ordering::Relaxed), released);
        }
        self.sweep_exited(None, &mut *released);
        // The sweep moved exited threads' items to the queues: drop them too.
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
                .for_each_shared(|s| cached += usize::from(s.filled[t].load(Ordering::Relaxed)));
        }
        (tier.queue.len() + cached).min(tier.max_idle)
    }

    /// Counters summed over threads (held figures left for the caller).
    pub(crate) fn counts(&self) -> PoolStats {
        let mut sum = [0u64; EVENTS];
        for (s, u) in sum.iter_mut().zip(&self.unowned) {
            *s = u.load(Ordering::Relaxed);
        }
        self.locals.for_each_shared(|l| {
            for (s, c) in sum.iter_mut().zip(&l.counts) {
                *s += c.get();
            }
        });
        PoolStats {
            hits: sum[Event::Hit as usize],
            misses: sum[Event::Miss as usize],
            returns: sum[Event::Return as usize],
            discards: sum[Event::Discard as usize],
            oversize: sum[Event::Oversize as usize],
            reshaped: sum[Event::Reshaped as usize],
            ..PoolStats::default()
        }
    }
}
