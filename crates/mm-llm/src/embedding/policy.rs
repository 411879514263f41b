//! The eviction and expiry policy of one shard: window TinyLFU over intrusive lists.
//!
//! Entries are numbered by the shard (`u32` record indices); the policy keeps, per record, a
//! [`Node`] with its links and weight, and knows nothing of keys or vectors. Three recency
//! lists partition the entries:
//! - the **window** (1% of the bounds at first, resized by ghost hits, see
//!   [`Ghosts`](super::ghosts::Ghosts)): every new entry starts here, so a burst of new keys can
//!   build up a little history before it has to compete;
//! - **probation** and **protected** (the main space, protected holding up to 80% of it): a
//!   window entry pushed out of the window becomes a *candidate* for the main space and is
//!   admitted only if the frequency sketch says it was asked for more often than the entry
//!   main would evict (probation's least recent); an entry hit on probation moves to
//!   protected, and protected overflow is demoted back to probation.
//!
//! So one-time keys (a scan, a re-index) pass through the window and die there, while keys
//! that keep coming back win their place. Two more lists, kept only when configured, order
//! entries by write time (time to live) and by access time (time to idle), so expired entries
//! are found at a list tail in O(1) each.

use super::RemovalCause;
use super::ghosts::{Evictor, Ghosts};
use super::sketch::FrequencySketch;

/// "No record" in links.
pub(super) const NIL: u32 = u32::MAX;

/// Which recency list an entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Queue {
    Window = 0,
    Probation = 1,
    Protected = 2,
}

/// Link slots of a node: its recency list, the write-order list, the access-order list.
const QUEUE: usize = 0;
const WRITTEN: usize = 1;
const ACCESSED: usize = 2;

#[derive(Debug, Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
}

const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
};

/// The policy's record of one entry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Node {
    links: [Link; 3],
    queue: Queue,
    /// Hit since it last reached a list end (window and protected): a second chance instead
    /// of a move to the front on every hit, so a hit on a hot entry writes nothing shared.
    referenced: bool,
    /// Bytes the entry counts against the bound.
    weight: u64,
    /// The key's hash for the sketch.
    hash: u64,
    /// Clock reading (ns) at insert.
    written: u64,
    /// Clock reading (ns) at the last hit (or insert).
    accessed: u64,
}

/// One doubly linked list through one link slot of the nodes; most recent at `head`.
#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
    bytes: u64,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
        bytes: 0,
    };
}

/// Size limits of the policy's parts.
#[derive(Debug, Clone, Copy)]
struct Limits {
    entries: usize,
    bytes: u64,
    window_entries: usize,
    window_bytes: u64,
    protected_entries: usize,
    protected_bytes: u64,
}

impl Limits {
    /// Limits with the window at `window` (a fraction of the bounds, 0 to 1).
    fn new(entries: usize, bytes: u64, window: f64) -> Self {
        let window_entries = ((entries as f64 * window) as usize).clamp(1, entries);
        let window_bytes = ((bytes as f64 * window) as u64).min(bytes);
        let main_entries = entries - window_entries;
        let main_bytes = bytes - window_bytes;
        Self {
            entries,
            bytes,
            window_entries,
            window_bytes,
            protected_entries: main_entries * 4 / 5,
            protected_bytes: main_bytes / 5 * 4,
        }
    }
}

/// The window's share of the bounds, moved by ghost hits (see [`Ghosts`]): up half an entry
/// when a key the window let go is asked for again, down one and a half when a key main let go
/// is. The bias towards main keeps frequency-skewed workloads (and scans, whose one-time keys
/// never come back) near a small window, while a popular set that moves keeps missing on keys
/// the window rejected and grows it towards an LRU.
#[derive(Debug, Clone, Copy)]
struct WindowShare {
    share: f64,
}

impl WindowShare {
    const START: f64 = 0.01;
    /// Entries the window grows by per window ghost hit.
    const GROW: f64 = 0.5;
    /// Entries it shrinks by per main ghost hit.
    const SHRINK: f64 = 1.5;

    /// The new share after a ghost hit of `by` in a cache of `entries`.
    fn after(self, by: Evictor, entries: usize) -> f64 {
        let step = match by {
            Evictor::Window => Self::GROW,
            Evictor::Main => -Self::SHRINK,
        };
        (self.share + step / entries.max(1) as f64).clamp(0.0, 1.0)
    }
}

/// Window TinyLFU eviction plus TTL/TTI expiry for one shard.
#[derive(Debug)]
pub(super) struct Policy {
    nodes: Vec<Node>,
    queues: [List; 3],
    /// Write-order and access-order lists (indexed `WRITTEN - 1`, `ACCESSED - 1`).
    timers: [List; 2],
    sketch: FrequencySketch,
    ghosts: Ghosts,
    limits: Limits,
    window: WindowShare,
    /// Time to live and time to idle in ns.
    ttl: Option<u64>,
    tti: Option<u64>,
    /// Candidates that lost admission.
    rejected: u64,
}

impl Policy {
    /// An empty policy for at most `entries` entries and `bytes` bytes.
    pub(super) fn new(entries: usize, bytes: u64, ttl: Option<u64>, tti: Option<u64>) -> Self {
        Self {
            nodes: Vec::new(),
            queues: [List::EMPTY; 3],
            timers: [List::EMPTY; 2],
            sketch: FrequencySketch::default(),
            ghosts: Ghosts::default(),
            limits: Limits::new(entries, bytes, WindowShare::START),
            window: WindowShare {
                share: WindowShare::START,
            },
            ttl,
            tti,
            rejected: 0,
        }
    }

    /// Entries tracked.
    pub(super) fn len(&self) -> usize {
        self.queues.iter().map(|q| q.len).sum()
    }

    /// Bytes of the entries tracked.
    pub(super) fn bytes(&self) -> u64 {
        self.queues.iter().map(|q| q.bytes).sum()
    }

    /// Candidates that lost admission so far.
    pub(super) fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Bytes of the sketch and the ghost table: sized by the entry bound, allocated by the
    /// first lookup, dropped by [`release`](Self::release).
    pub(super) fn table_bytes(&self) -> u64 {
        self.sketch.bytes() + self.ghosts.bytes()
    }

    /// What [`table_bytes`](Self::table_bytes) is once allocated, for `entries` entries.
    pub(super) fn table_bytes_for(entries: usize) -> u64 {
        FrequencySketch::bytes_for(entries) + Ghosts::bytes_for(entries)
    }

    /// Bytes of the sketch, the ghost table and the node table.
    pub(super) fn overhead_bytes(&self) -> u64 {
        self.sketch.bytes()
            + self.ghosts.bytes()
            + (self.nodes.capacity() * size_of::<Node>()) as u64
    }

    /// Counts one request for `hash` (hit or miss) in the sketch.
    pub(super) fn record(&mut self, hash: u64) {
        self.sketch.ensure(self.limits.entries);
        self.ghosts.ensure(self.limits.entries);
        self.sketch.increment(hash);
    }

    /// A lookup of `hash` missed: if a part of the cache evicted it lately, resize the window
    /// towards that part (restoring the bounds, pushing what leaves to `out`).
    pub(super) fn missed(&mut self, hash: u64, out: &mut Vec<(u32, RemovalCause)>) {
        let Some(by) = self.ghosts.take(hash) else {
            return;
        };
        let share = self.window.after(by, self.limits.entries);
        if share != self.window.share {
            self.window.share = share;
            self.limits = Limits::new(self.limits.entries, self.limits.bytes, share);
            self.demote_protected_overflow();
            self.fit(out);
        }
    }

    /// Whether record `idx` has outlived its time to live or time to idle at `now`.
    pub(super) fn is_expired(&self, idx: u32, now: u64) -> bool {
        let n = &self.nodes[idx as usize];
        self.ttl
            .is_some_and(|ttl| now.saturating_sub(n.written) >= ttl)
            || self
                .tti
                .is_some_and(|tti| now.saturating_sub(n.accessed) >= tti)
    }

    /// Tracks the new record `idx` (in the window), then restores the bounds: window overflow
    /// competes for the main space, losers and overflow are pushed to `out` (already
    /// unlinked) with [`RemovalCause::Size`]. `idx` itself may be among them.
    pub(super) fn insert(
        &mut self,
        idx: u32,
        weight: u64,
        hash: u64,
        now: u64,
        out: &mut Vec<(u32, RemovalCause)>,
    ) {
        let node = Node {
            links: [UNLINKED; 3],
            queue: Queue::Window,
            referenced: false,
            weight,
            hash,
            written: now,
            accessed: now,
        };
        let i = idx as usize;
        if i >= self.nodes.len() {
            self.nodes.resize(i + 1, node);
        }
        self.nodes[i] = node;
        self.push_front(QUEUE, idx);
        if self.ttl.is_some() {
            self.push_front(WRITTEN, idx);
        }
        if self.tti.is_some() {
            self.push_front(ACCESSED, idx);
        }
        self.fit(out);
    }

    /// A hit on `idx` at `now`: recency (and idle time) updated, a probation hit promoted.
    pub(super) fn touch(&mut self, idx: u32, now: u64) {
        match self.nodes[idx as usize].queue {
            Queue::Probation => {
                self.unlink(QUEUE, idx);
                self.nodes[idx as usize].queue = Queue::Protected;
                self.push_front(QUEUE, idx);
                self.demote_protected_overflow();
            }
            // CLOCK-style recency: mark it, and let the list end give it another round.
            Queue::Window | Queue::Protected => {
                let n = &mut self.nodes[idx as usize];
                if !n.referenced {
                    n.referenced = true;
                }
            }
        }
        if self.tti.is_some() {
            self.nodes[idx as usize].accessed = now;
            self.move_to_front(ACCESSED, idx);
        }
    }

    /// Stops tracking `idx`.
    pub(super) fn remove(&mut self, idx: u32) {
        self.unlink(QUEUE, idx);
        self.unlink_timers(idx);
    }

    fn unlink_timers(&mut self, idx: u32) {
        if self.ttl.is_some() {
            self.unlink(WRITTEN, idx);
        }
        if self.tti.is_some() {
            self.unlink(ACCESSED, idx);
        }
    }

    /// The bytes record `idx` counts.
    pub(super) fn weight(&self, idx: u32) -> u64 {
        self.nodes[idx as usize].weight
    }

    /// Removes up to `count` entries in eviction order (probation, then protected, then
    /// window, least recent first), pushing them to `out` with `cause`.
    pub(super) fn evict(
        &mut self,
        count: usize,
        cause: RemovalCause,
        out: &mut Vec<(u32, RemovalCause)>,
    ) {
        for _ in 0..count {
            let Some(victim) = self.next_victim(true) else {
                return;
            };
            self.remove(victim);
            out.push((victim, cause));
        }
    }

    /// Removes every entry expired at `now` (found at the tails of the timer lists).
    pub(super) fn expire(&mut self, now: u64, out: &mut Vec<(u32, RemovalCause)>) {
        for (slot, limit) in [(WRITTEN, self.ttl), (ACCESSED, self.tti)] {
            let Some(limit) = limit else { continue };
            loop {
                let tail = self.timers[slot - 1].tail;
                if tail == NIL {
                    break;
                }
                let n = &self.nodes[tail as usize];
                let at = if slot == WRITTEN {
                    n.written
                } else {
                    n.accessed
                };
                if now.saturating_sub(at) < limit {
                    break;
                }
                self.remove(tail);
                out.push((tail, RemovalCause::Expired));
            }
        }
    }

    /// Forgets every entry (keeps the sketch's counts: popularity outlives a flush).
    pub(super) fn clear(&mut self) {
        self.queues = [List::EMPTY; 3];
        self.timers = [List::EMPTY; 2];
    }

    /// Drops the node table's, the sketch's and the ghost table's memory.
    pub(super) fn release(&mut self) {
        self.clear();
        self.nodes = Vec::new();
        self.sketch = FrequencySketch::default();
        self.ghosts = Ghosts::default();
    }

    fn over(&self, extra: u64, extra_len: usize) -> bool {
        self.len() + extra_len > self.limits.entries || self.bytes() + extra > self.limits.bytes
    }

    /// The next entry to evict: probation's tail, else protected's, else (with `window`) the
    /// window's.
    fn next_victim(&self, window: bool) -> Option<u32> {
        let order: &[Queue] = if window {
            &[Queue::Probation, Queue::Protected, Queue::Window]
        } else {
            &[Queue::Probation, Queue::Protected]
        };
        order
            .iter()
            .map(|&q| self.queues[q as usize].tail)
            .find(|&t| t != NIL)
    }

    /// Restores the bounds after an insert (the admission step of window TinyLFU).
    fn fit(&mut self, out: &mut Vec<(u32, RemovalCause)>) {
        let l = self.limits;
        loop {
            let w = self.queues[Queue::Window as usize];
            // The newest entry always stays (so a get right after its insert hits), even when
            // the window's byte share is smaller than it.
            if w.len <= 1 || (w.len <= l.window_entries && w.bytes <= l.window_bytes) {
                break;
            }
            let candidate = w.tail;
            self.unlink(QUEUE, candidate);
            if std::mem::take(&mut self.nodes[candidate as usize].referenced) {
                // Hit while in the window: another round instead of an admission contest.
                self.push_front(QUEUE, candidate);
                continue;
            }
            let weight = self.nodes[candidate as usize].weight;
            let freq = self.sketch.frequency(self.nodes[candidate as usize].hash);
            let mut admitted = true;
            while self.over(weight, 1) {
                let Some(victim) = self.next_victim(false) else {
                    break;
                };
                // The candidate's count includes the miss that brought it in, the victim's
                // has no such lookup yet: require one more, or keys of equal popularity
                // (a loop over more keys than fit) keep displacing each other.
                if freq > self.sketch.frequency(self.nodes[victim as usize].hash) + 1 {
                    self.forget(victim, Evictor::Main);
                    out.push((victim, RemovalCause::Size));
                } else {
                    admitted = false;
                    break;
                }
            }
            if admitted {
                self.nodes[candidate as usize].queue = Queue::Probation;
                self.push_front(QUEUE, candidate);
            } else {
                self.rejected += 1;
                self.ghosts
                    .remember(self.nodes[candidate as usize].hash, Evictor::Window);
                // Unlinked from its queue already; only the timer lists remain.
                self.unlink_timers(candidate);
                out.push((candidate, RemovalCause::Size));
            }
        }
        while self.over(0, 0) {
            let Some(victim) = self.next_victim(true) else {
                break;
            };
            let by = match self.nodes[victim as usize].queue {
                Queue::Window => Evictor::Window,
                Queue::Probation | Queue::Protected => Evictor::Main,
            };
            self.forget(victim, by);
            out.push((victim, RemovalCause::Size));
        }
    }

    /// Removes `idx` for the bounds, remembering which part let it go.
    fn forget(&mut self, idx: u32, by: Evictor) {
        self.ghosts.remember(self.nodes[idx as usize].hash, by);
        self.remove(idx);
    }

    fn demote_protected_overflow(&mut self) {
        let l = self.limits;
        loop {
            let p = self.queues[Queue::Protected as usize];
            if p.len <= 1 || (p.len <= l.protected_entries && p.bytes <= l.protected_bytes) {
                return;
            }
            let idx = p.tail;
            self.unlink(QUEUE, idx);
            if !std::mem::take(&mut self.nodes[idx as usize].referenced) {
                self.nodes[idx as usize].queue = Queue::Probation;
            }
            self.push_front(QUEUE, idx);
        }
    }

    fn list_mut(&mut self, slot: usize, idx: u32) -> &mut List {
        if slot == QUEUE {
            &mut self.queues[self.nodes[idx as usize].queue as usize]
        } else {
            &mut self.timers[slot - 1]
        }
    }

    fn move_to_front(&mut self, slot: usize, idx: u32) {
        self.unlink(slot, idx);
        self.push_front(slot, idx);
    }

    fn unlink(&mut self, slot: usize, idx: u32) {
        let Node { links, weight, .. } = self.nodes[idx as usize];
        let Link { prev, next } = links[slot];
        let list = self.list_mut(slot, idx);
        list.len -= 1;
        list.bytes -= weight;
        if prev == NIL {
            list.head = next;
        } else {
            self.nodes[prev as usize].links[slot].next = next;
        }
        if next == NIL {
            self.list_mut(slot, idx).tail = prev;
        } else {
            self.nodes[next as usize].links[slot].prev = prev;
        }
        self.nodes[idx as usize].links[slot] = UNLINKED;
    }

    fn push_front(&mut self, slot: usize, idx: u32) {
        let weight = self.nodes[idx as usize].weight;
        let list = self.list_mut(slot, idx);
        let old = list.head;
        list.head = idx;
        if list.tail == NIL {
            list.tail = idx;
        }
        list.len += 1;
        list.bytes += weight;
        self.nodes[idx as usize].links[slot] = Link {
            prev: NIL,
            next: old,
        };
        if old != NIL {
            self.nodes[old as usize].links[slot].prev = idx;
        }
    }

    /// Checks every list against the nodes and the limits; returns the tracked records.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) -> Vec<u32> {
        let mut all = Vec::new();
        for (q, list) in self.queues.iter().enumerate() {
            let members = self.walk(QUEUE, list);
            for &m in &members {
                assert_eq!(
                    self.nodes[m as usize].queue as usize, q,
                    "node on the wrong list"
                );
            }
            all.extend(members);
        }
        let p = self.queues[Queue::Protected as usize];
        assert!(
            p.len <= 1
                || (p.len <= self.limits.protected_entries
                    && p.bytes <= self.limits.protected_bytes),
            "protected over its share"
        );
        assert!(self.len() <= self.limits.entries, "entry bound");
        assert!(self.bytes() <= self.limits.bytes, "byte bound");
        all.sort_unstable();
        for (slot, on) in [
            (WRITTEN, self.ttl.is_some()),
            (ACCESSED, self.tti.is_some()),
        ] {
            let list = self.timers[slot - 1];
            if !on {
                assert_eq!(list.len, 0);
                continue;
            }
            let mut members = self.walk(slot, &list);
            // Timer lists are ordered: newest at the head.
            let times: Vec<u64> = members
                .iter()
                .map(|&m| {
                    let n = &self.nodes[m as usize];
                    if slot == WRITTEN {
                        n.written
                    } else {
                        n.accessed
                    }
                })
                .collect();
            assert!(
                times.windows(2).all(|w| w[0] >= w[1]),
                "timer list out of order"
            );
            members.sort_unstable();
            assert_eq!(members, all, "timer list and queues disagree");
        }
        all
    }

    #[cfg(test)]
    fn walk(&self, slot: usize, list: &List) -> Vec<u32> {
        let (mut out, mut bytes, mut prev, mut at) = (Vec::new(), 0, NIL, list.head);
        while at != NIL {
            let n = &self.nodes[at as usize];
            assert_eq!(n.links[slot].prev, prev, "broken back link");
            out.push(at);
            bytes += n.weight;
            prev = at;
            at = n.links[slot].next;
        }
        assert_eq!(list.tail, prev, "tail");
        assert_eq!((out.len(), bytes), (list.len, list.bytes), "list totals");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(i: u32) -> u64 {
        u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xABCD
    }

    /// Inserts `idx` as a caller would after a miss (record, then insert).
    fn add(p: &mut Policy, idx: u32, out: &mut Vec<(u32, RemovalCause)>) {
        p.record(hash(idx));
        p.insert(idx, 10, hash(idx), 0, out);
        p.check_invariants();
    }

    #[test]
    fn ghost_hits_move_the_window_towards_the_part_that_was_wrong() {
        let mut p = Policy::new(100, 1 << 20, None, None);
        let mut out = Vec::new();
        for i in 0..100 {
            add(&mut p, i, &mut out);
        }
        assert_eq!(p.limits.window_entries, 1);
        // The window's candidate loses admission (equal counts) and is remembered as the
        // window's; asking for it again grows the window by half an entry.
        add(&mut p, 1000, &mut out);
        assert_eq!(out, vec![(99, RemovalCause::Size)]);
        p.missed(hash(99), &mut out);
        assert!((p.window.share - 0.015).abs() < 1e-9);
        for k in 0..4 {
            p.ghosts.remember(hash(2000 + k), Evictor::Window);
            p.missed(hash(2000 + k), &mut out);
            p.check_invariants();
        }
        let grown = p.window.share;
        assert!((grown - 0.035).abs() < 1e-9, "{grown}");
        assert_eq!(p.limits.window_entries, 3);
        // The same key again: one eviction argues once.
        p.missed(hash(99), &mut out);
        assert_eq!(p.window.share, grown);
        // A key main let go comes back: the window shrinks three times as fast.
        p.ghosts.remember(hash(5000), Evictor::Main);
        p.missed(hash(5000), &mut out);
        assert!((p.window.share - (grown - 0.015)).abs() < 1e-9);
        p.check_invariants();
        // Never below nothing, never above everything.
        let w = WindowShare { share: 0.0 };
        assert_eq!(w.after(Evictor::Main, 10), 0.0);
        let w = WindowShare { share: 1.0 };
        assert_eq!(w.after(Evictor::Window, 10), 1.0);
    }

    #[test]
    fn limits_split_window_and_protected() {
        let l = Limits::new(1000, 100_000, 0.01);
        assert_eq!((l.window_entries, l.window_bytes), (10, 1000));
        assert_eq!((l.protected_entries, l.protected_bytes), (792, 79_200));
        let tiny = Limits::new(1, 10, 0.01);
        assert_eq!((tiny.window_entries, tiny.protected_entries), (1, 0));
    }

    #[test]
    fn new_entries_start_in_the_window_and_overflow_to_probation() {
        let mut p = Policy::new(200, 1 << 20, None, None);
        let mut out = Vec::new();
        for i in 0..3 {
            add(&mut p, i, &mut out);
        }
        assert!(out.is_empty());
        // Window holds 2 (1% of 200): the oldest moved on to probation without a contest.
        assert_eq!(p.queues[Queue::Window as usize].len, 2);
        assert_eq!(p.queues[Queue::Probation as usize].len, 1);
        p.touch(0, 0);
        assert_eq!(p.nodes[0].queue, Queue::Protected);
    }

    #[test]
    fn a_one_time_candidate_loses_to_a_popular_victim() {
        let mut p = Policy::new(4, 1 << 20, None, None);
        let mut out = Vec::new();
        for i in 0..4 {
            add(&mut p, i, &mut out);
            for _ in 0..3 {
                p.record(hash(i));
            }
        }
        assert!(out.is_empty());
        add(&mut p, 10, &mut out);
        // The window (1 entry) overflowed; its candidate (3, popular) met victim 0 (popular
        // too, equal count): ties keep the victim, so the candidate is the one evicted.
        assert_eq!(out, vec![(3, RemovalCause::Size)]);
        assert_eq!(p.rejected(), 1);
        out.clear();
        // A one-time key pushed out of the window later loses against the popular ones.
        add(&mut p, 11, &mut out);
        assert_eq!(out, vec![(10, RemovalCause::Size)]);
        // A key asked for often enough wins over the victim.
        for _ in 0..8 {
            p.record(hash(11));
        }
        out.clear();
        add(&mut p, 12, &mut out);
        assert_eq!(out, vec![(0, RemovalCause::Size)]);
    }

    #[test]
    fn byte_bound_evicts_several_victims_for_a_heavy_candidate() {
        let mut p = Policy::new(100, 100, None, None);
        let mut out = Vec::new();
        for i in 0..9 {
            p.insert(i, 10, hash(i), 0, &mut out);
        }
        assert!(out.is_empty());
        for _ in 0..10 {
            p.record(hash(50));
        }
        p.insert(50, 40, hash(50), 0, &mut out);
        p.insert(51, 1, hash(51), 0, &mut out);
        p.check_invariants();
        assert!(p.bytes() <= 100);
        assert!(out.len() >= 3, "{out:?}");
        assert!(out.iter().all(|&(i, _)| i != 50));
    }

    #[test]
    fn expiry_lists_find_old_entries() {
        let mut p = Policy::new(100, 1 << 20, Some(100), Some(30));
        let mut out = Vec::new();
        p.insert(0, 1, hash(0), 0, &mut out);
        p.insert(1, 1, hash(1), 10, &mut out);
        p.insert(2, 1, hash(2), 20, &mut out);
        p.touch(0, 25);
        p.check_invariants();
        assert!(!p.is_expired(0, 54));
        assert!(p.is_expired(1, 40), "idle for 30");
        p.expire(45, &mut out);
        assert_eq!(out, vec![(1, RemovalCause::Expired)]);
        out.clear();
        // Entry 0 keeps being hit: it idles never, but lives at most 100.
        for t in [50, 70, 90] {
            p.touch(0, t);
        }
        p.touch(2, 40);
        p.touch(2, 60);
        p.touch(2, 80);
        p.touch(2, 95);
        p.expire(100, &mut out);
        assert_eq!(out, vec![(0, RemovalCause::Expired)]);
        p.check_invariants();
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn evict_takes_probation_then_protected_then_window() {
        let mut p = Policy::new(100, 1 << 20, None, None);
        let mut out = Vec::new();
        for i in 0..5 {
            add(&mut p, i, &mut out);
        }
        p.touch(1, 0);
        out.clear();
        p.evict(10, RemovalCause::Pressure, &mut out);
        let order: Vec<u32> = out.iter().map(|&(i, _)| i).collect();
        // Probation 0, 2, 3 (oldest first), protected 1, then the window's 4.
        assert_eq!(order, vec![0, 2, 3, 1, 4]);
        assert_eq!(p.len(), 0);
        p.check_invariants();
    }
}
