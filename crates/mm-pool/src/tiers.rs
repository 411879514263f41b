//! The concurrent core both pools share: bounded tiers, each with a shared FIFO queue and a
//! one-item slot per thread in front of it.
//!
//! Accounting. Each tier counts *places* (`places`): one per queued item (reserved before
//! the push) plus one per slot *credit*. A thread's slot may hold an item only once the
//! thread owns a credit for it; credits are handed out at most `max_credits` per tier and
//! kept for the pool's life. Hence, at every instant,
//!
//! `items held = queued + in slots <= queued + credits <= places <= max_idle`,
//!
//! and a thread that takes from or returns to its own slot touches no shared cache line:
//! the slot is a one-item `ArrayQueue` on the thread's own line, and its credit stays put.
//! Other threads only *pop* a slot (a miss stealing a stranded item, or `trim`), which
//! needs no credit change either: the place stays reserved for the owner.

use crossbeam_utils::CachePadded;

use crate::PoolStats;
use crate::sync::{AtomicBool, AtomicUsize, Counter, Ordering, PerThread, Queue};

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
            // Half the places at most, so threads without a slot still find room.
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
}

/// One thread's state for one pool: a slot and a credit flag per tier, and its counters.
pub(crate) struct Local<T> {
    slots: Box<[Queue<T>]>,
    /// Written only by the owning thread (read by it alone, too).
    credit: Box<[AtomicBool]>,
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) returns: Counter,
    pub(crate) discards: Counter,
    pub(crate) oversize: Counter,
}

impl<T> Local<T> {
    fn new(tiers: usize) -> Self {
        Self {
            slots: (0..tiers).map(|_| Queue::new(1)).collect(),
            credit: (0..tiers).map(|_| AtomicBool::new(false)).collect(),
            hits: Counter::default(),
            misses: Counter::default(),
            returns: Counter::default(),
            discards: Counter::default(),
            oversize: Counter::default(),
        }
    }

    fn has_credit(&self, t: usize) -> bool {
        self.credit
            .get(t)
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

pub(crate) struct Core<T: Send> {
    tiers: Box<[Tier<T>]>,
    locals: PerThread<Local<T>>,
    thread_cache: bool,
}

impl<T: Send> Core<T> {
    pub(crate) fn new(max_idle: impl Iterator<Item = usize>, thread_cache: bool) -> Self {
        let tiers: Box<[Tier<T>]> = max_idle.map(|m| Tier::new(m, thread_cache)).collect();
        let per_thread = if thread_cache { tiers.len() } else { 0 };
        Self {
            tiers,
            locals: PerThread::new(Local::new, per_thread),
            thread_cache,
        }
    }

    /// This thread's state (created on its first use of the pool).
    #[inline]
    pub(crate) fn local(&self) -> &Local<T> {
        self.locals.get()
    }

    pub(crate) fn thread_cache(&self) -> bool {
        self.thread_cache
    }

    /// An idle item of tier `t`: this thread's slot, then the queue, then (before the caller
    /// allocates) any other thread's slot.
    #[inline]
    pub(crate) fn take(&self, t: usize, local: &Local<T>) -> Option<T> {
        if local.has_credit(t)
            && let Some(item) = local.slots[t].pop()
        {
            return Some(item);
        }
        let tier = &self.tiers[t];
        if let Some(item) = tier.queue.pop() {
            tier.release();
            return Some(item);
        }
        if self.thread_cache {
            // O(threads), on the path that would otherwise allocate. A slot keeps its
            // credit (its place) when robbed, so no count changes.
            return self.locals.iter().find_map(|l| l.slots[t].pop());
        }
        None
    }

    /// Keeps `item` in tier `t` if there is a place, else hands it back to be dropped.
    #[inline]
    pub(crate) fn put(&self, t: usize, local: &Local<T>, item: T) -> Result<(), T> {
        let tier = &self.tiers[t];
        if self.thread_cache && (local.has_credit(t) || self.grant_credit(t, local)) {
            let slot = &local.slots[t];
            let item = match slot.push(item) {
                Ok(()) => return Ok(()),
                Err(item) => item,
            };
            // The slot is full. Keep the newest (hottest) item in it and move the older one
            // to the queue, if the queue has a place; otherwise keep the older one.
            if !tier.reserve() {
                return Err(item);
            }
            let to_queue = match slot.pop() {
                Some(older) => match slot.push(item) {
                    Ok(()) => older,
                    // Only under loom, where the slot is shared: someone refilled it.
                    Err(item) => {
                        let kept = tier.enqueue_reserved(older);
                        return match kept {
                            Ok(()) if tier.reserve() => tier.enqueue_reserved(item),
                            Ok(()) => Err(item),
                            Err(_) => Err(item),
                        };
                    }
                },
                None => item,
            };
            return tier.enqueue_reserved(to_queue);
        }
        if !tier.reserve() {
            return Err(item);
        }
        tier.enqueue_reserved(item)
    }

    /// Gives this thread a slot credit for tier `t` if any is left and a place is free.
    #[cold]
    fn grant_credit(&self, t: usize, local: &Local<T>) -> bool {
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
        local.credit[t].store(true, Ordering::Relaxed);
        true
    }

    /// Whether a return to tier `t` would surely be refused (a hint: skip reset work).
    pub(crate) fn looks_full(&self, t: usize, local: &Local<T>) -> bool {
        let tier = &self.tiers[t];
        !(local.has_credit(t) && local.slots[t].is_empty())
            && tier.places.load(Ordering::Relaxed) >= tier.max_idle
    }

    /// Drops every idle item of tier `t` (queue and every thread's slot); returns how many.
    pub(crate) fn trim(&self, t: usize) -> usize {
        let tier = &self.tiers[t];
        let mut n = 0;
        while tier.queue.pop().is_some() {
            tier.release();
            n += 1;
        }
        if self.thread_cache {
            n += self
                .locals
                .iter()
                .filter(|l| l.slots[t].pop().is_some())
                .count();
        }
        n
    }

    /// Items held idle in tier `t` now (queue plus slots); never above `max_idle`.
    pub(crate) fn held(&self, t: usize) -> usize {
        let tier = &self.tiers[t];
        let in_slots: usize = if self.thread_cache {
            self.locals.iter().map(|l| l.slots[t].len()).sum()
        } else {
            0
        };
        (tier.queue.len() + in_slots).min(tier.max_idle)
    }

    /// Counters summed over threads (held figures left for the caller).
    pub(crate) fn counts(&self) -> PoolStats {
        let mut stats = PoolStats::default();
        for l in self.locals.iter() {
            stats.hits += l.hits.get();
            stats.misses += l.misses.get();
            stats.returns += l.returns.get();
            stats.discards += l.discards.get();
            stats.oversize += l.oversize.get();
        }
        stats
    }
}
