//! The text-to-id table: open addressing over cache-line groups of ten slots.
//!
//! Each 64-byte group holds ten ids, a 16-bit tag of each id's hash and the number of
//! slots in use (slots fill from the front and are never removed). A lookup reads one
//! line (its home group, found from the hash's low bits) and compares the text only for
//! slots whose tag matches; a full group sends the probe to the next one. The table never
//! holds the text: the caller's `eq` compares the text an id points at.
//!
//! Why not `hashbrown::HashTable<u32>`, which this replaced: building the index of a
//! 262,144-token vocabulary is one insert per token into a table larger than L2, so its
//! cost is cache misses. hashbrown touches two lines per insert (a control group and the
//! bucket, in two arrays), and its 7-bit tags send a few percent of inserts to compare
//! the text of a false candidate (two more dependent misses: the offset, then the text).
//! Here an insert touches one line, which the builder prefetches a few dozen tokens ahead
//! ([`TokenTable::prefetch`]), and 16-bit tags make a false candidate rarer than one in
//! a thousand. On Gemma 3 the whole index build takes about a third less CPU, in 2 MiB of
//! table instead of 2.5 MiB (docs/benchmarks.md, "mm-tokenizer").

/// Slots per group.
const SLOTS: usize = 10;

/// One cache line: `len` slots in use, their tags and their ids.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Group {
    tags: [u16; SLOTS],
    len: u16,
    _pad: u16,
    ids: [u32; SLOTS],
}

const EMPTY: Group = Group {
    tags: [0; SLOTS],
    len: 0,
    _pad: 0,
    ids: [0; SLOTS],
};

/// A set of token ids keyed by a 64-bit hash of the text each id stands for.
///
/// # Invariants
/// - At most `capacity` ids are inserted (the builder inserts each token at most once),
///   and `capacity` leaves at least a fifth of the slots free, so every probe sequence
///   meets a group that is not full.
/// - Within a group, slots `0..len` are in use, in insertion order.
pub(crate) struct TokenTable {
    groups: Box<[Group]>,
    mask: usize,
}

impl std::fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenTable")
            .field("groups", &self.groups.len())
            .finish()
    }
}

impl Default for TokenTable {
    fn default() -> Self {
        TokenTable::with_capacity(0)
    }
}

/// Bit `s` set for each slot `s` of `g` whose tag is `tag`.
#[inline]
fn tag_matches(g: &Group, tag: u16) -> u32 {
    let mut m = 0u32;
    for (s, &t) in g.tags.iter().enumerate() {
        m |= u32::from(t == tag) << s;
    }
    m & ((1u32 << g.len) - 1)
}

impl TokenTable {
    /// A table for up to `n` ids (at most 80 % of its slots used).
    pub(crate) fn with_capacity(n: usize) -> TokenTable {
        let groups = (n + n / 4).div_ceil(SLOTS).max(1).next_power_of_two();
        TokenTable {
            groups: vec![EMPTY; groups].into_boxed_slice(),
            mask: groups - 1,
        }
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.groups)
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    #[inline]
    fn tag(hash: u64) -> u16 {
        (hash >> 48) as u16
    }

    /// Asks the CPU to start loading the group `hash` starts its probe at (a hint; no
    /// effect on what the table holds).
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        let g: *const Group = &self.groups[self.home(hash)];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: SSE is part of the x86_64 baseline, so the instruction exists; a
        // prefetch only hints the cache and never faults (`g` is a valid pointer anyway).
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(g.cast::<i8>());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = g;
    }

    /// Where the probe for `hash` ends: `Found(group, slot)` at the first id for which `eq`
    /// holds, else `Free(group)` at the first group that is not full, else `Full`.
    #[inline]
    fn locate(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Probe {
        let tag = Self::tag(hash);
        let mut i = self.home(hash);
        // Bounded by the number of groups; a group that is not full ends it sooner.
        for _ in 0..self.groups.len() {
            let g = &self.groups[i];
            let mut m = tag_matches(g, tag);
            while m != 0 {
                let s = m.trailing_zeros() as usize;
                if eq(g.ids[s]) {
                    return Probe::Found(i, s);
                }
                m &= m - 1;
            }
            if usize::from(g.len) < SLOTS {
                return Probe::Free(i);
            }
            i = (i + 1) & self.mask;
        }
        Probe::Full
    }

    /// The id with this hash for which `eq` holds.
    #[inline]
    pub(crate) fn find(&self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<u32> {
        match self.locate(hash, eq) {
            Probe::Found(g, s) => Some(self.groups[g].ids[s]),
            Probe::Free(_) | Probe::Full => None,
        }
    }

    /// Inserts `id`; an id already present for which `eq` holds is replaced (the later
    /// id wins). Returns false only if the table is full, which its capacity rules out.
    #[inline]
    pub(crate) fn insert(&mut self, hash: u64, id: u32, eq: impl FnMut(u32) -> bool) -> bool {
        match self.locate(hash, eq) {
            Probe::Found(g, s) => self.groups[g].ids[s] = id,
            Probe::Free(g) => {
                let g = &mut self.groups[g];
                let len = usize::from(g.len);
                g.tags[len] = Self::tag(hash);
                g.ids[len] = id;
                g.len += 1;
            }
            Probe::Full => return false,
        }
        true
    }
}

/// The end of a probe (see [`TokenTable::locate`]).
enum Probe {
    Found(usize, usize),
    Free(usize),
    Full,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_was_inserted_and_later_ids_replace_equal_keys() {
        // Keys are the ids' values modulo 1000; hashes collide on purpose so that groups
        // overflow into their neighbours and tags repeat.
        let mut t = TokenTable::with_capacity(2000);
        let hash = |k: u32| u64::from(k % 7) | (u64::from(k % 3) << 48);
        for id in 0..2000u32 {
            assert!(t.insert(hash(id % 1000), id, |other| other % 1000 == id % 1000));
        }
        for k in 0..1000u32 {
            assert_eq!(t.find(hash(k), |id| id % 1000 == k), Some(k + 1000));
        }
        assert_eq!(t.find(hash(5), |_| false), None);
        assert_eq!(t.heap_bytes(), t.groups.len() * 64);
        assert_eq!(std::mem::size_of::<Group>(), 64);
    }

    #[test]
    fn a_full_table_refuses_instead_of_looping() {
        let mut t = TokenTable::with_capacity(0);
        let n = t.groups.len() * SLOTS;
        for id in 0..n as u32 {
            assert!(t.insert(u64::from(id), id, |_| false));
        }
        assert!(!t.insert(7, 99, |_| false));
        assert_eq!(t.find(7, |_| false), None);
        assert_eq!(t.find(3, |id| id == 3), Some(3));
        t.prefetch(3);
        assert!(format!("{t:?}").contains("groups"));
    }
}
