//! Vector storage of one shard: fixed-size slots in shared blocks, and the [`Embedding`]
//! handle a hit hands out.
//!
//! Per vector length ("dimension class") the store keeps blocks of slots; a block is one
//! allocation of `slots * dims` `f32`s plus one pin count per slot, behind an `Arc` so that a
//! handle keeps its block alive even after the cache dropped it. A hit pins the slot (one
//! atomic increment) and clones the block's `Arc`; nothing is copied. Slots are written only
//! while free and unpinned, so a pinned vector never changes under its reader:
//! - a slot is written only by the shard that owns it, under the shard lock, and only after it
//!   was taken from the free list (so no entry refers to it);
//! - a slot is pinned only under the shard lock while an entry refers to it, or by cloning a
//!   handle (which already holds a pin);
//! - an evicted slot with pins goes to a deferred list and becomes free once its pins are
//!   gone (checked with `Acquire` against the handles' `Release` unpin).
//!
//! All `unsafe` of the cache is in this file.

use std::cell::UnsafeCell;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::sync::{AtomicU32, Ordering};

/// Where a vector lives: class, block within the class, slot within the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct SlotRef {
    class: u32,
    block: u32,
    offset: u32,
}

/// One allocation of slots of one vector length.
struct Block {
    dims: usize,
    /// `slots * dims` values; slot `i` is `data[i * dims..(i + 1) * dims]`.
    data: Box<[UnsafeCell<f32>]>,
    /// Live handles per slot.
    pins: Box<[AtomicU32]>,
}

// SAFETY: `Block` is shared between threads through `Arc`s held by its shard and by handles.
// Its `UnsafeCell`s are written only through `SlotStore::write`, which the shard calls under
// its lock on a slot taken from the free list: no entry refers to it and its pin count was
// read as 0 with `Acquire` (so every handle that read it has released its pin, and the
// `Release` unpin orders those reads before the write). New pins are only taken on slots that
// an entry refers to (under the same lock) or by cloning a handle that already pins the slot.
// So a slot is never written while a handle can read it, and reads through handles only ever
// race with other reads.
unsafe impl Sync for Block {}
// SAFETY: `f32` and atomics are `Send`; `UnsafeCell` only removed `Sync`, restored above.
unsafe impl Send for Block {}

impl Block {
    fn new(dims: usize, slots: usize) -> Self {
        Self {
            dims,
            data: (0..slots * dims).map(|_| UnsafeCell::new(0.0)).collect(),
            pins: (0..slots).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn slots(&self) -> usize {
        self.pins.len()
    }

    fn pinned(&self, offset: u32) -> bool {
        self.pins[offset as usize].load(Ordering::Acquire) != 0
    }

    /// The slot's values. Sound while the caller holds a pin on the slot or the shard lock
    /// with the slot referred to by an entry (see the type's safety argument).
    fn slice(&self, offset: u32) -> &[f32] {
        let start = offset as usize * self.dims;
        let cells = &self.data[start..start + self.dims];
        // SAFETY: `UnsafeCell<f32>` has the layout of `f32`, so the cells are `dims`
        // contiguous `f32`s; no writer exists while the slot is pinned or in use (see the
        // `Sync` impl), so a shared view is sound.
        unsafe { std::slice::from_raw_parts(UnsafeCell::raw_get(cells.as_ptr()), self.dims) }
    }
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block")
            .field("dims", &self.dims)
            .field("slots", &self.slots())
            .finish()
    }
}

/// An embedding vector handed out by the cache: derefs to `&[f32]`.
///
/// A hit does not copy the vector: the handle points into the cache's storage and pins that
/// slot, which the cache then does not reuse until every handle on it is dropped (an evicted
/// slot that is still pinned waits on a deferred list, so holding handles for long keeps
/// storage beyond the bound; see [`EmbeddingStats::pinned_slots`](super::EmbeddingStats)).
/// Cloning is two atomic increments. A vector the cache did not keep (declined by admission
/// in [`get_with`](super::EmbeddingCache::get_with)) is handed out in its own allocation.
/// `Send + Sync`, and it outlives the cache if need be.
pub struct Embedding {
    repr: Repr,
}

enum Repr {
    Slot { block: Arc<Block>, offset: u32 },
    Owned(Arc<[f32]>),
}

impl Embedding {
    /// A handle on a vector of its own (one allocation).
    pub(super) fn owned(vector: &[f32]) -> Self {
        Self {
            repr: Repr::Owned(Arc::from(vector)),
        }
    }

    /// The vector.
    pub fn as_slice(&self) -> &[f32] {
        match &self.repr {
            Repr::Slot { block, offset } => block.slice(*offset),
            Repr::Owned(v) => v,
        }
    }

    /// Whether the handle points into the cache's storage (rather than its own allocation).
    pub fn is_cached(&self) -> bool {
        matches!(self.repr, Repr::Slot { .. })
    }
}

impl Clone for Embedding {
    fn clone(&self) -> Self {
        let repr = match &self.repr {
            Repr::Slot { block, offset } => {
                // This handle holds a pin, so the slot stays pinned throughout.
                block.pins[*offset as usize].fetch_add(1, Ordering::Relaxed);
                Repr::Slot {
                    block: Arc::clone(block),
                    offset: *offset,
                }
            }
            Repr::Owned(v) => Repr::Owned(Arc::clone(v)),
        };
        Self { repr }
    }
}

impl Drop for Embedding {
    fn drop(&mut self) {
        if let Repr::Slot { block, offset } = &self.repr {
            // Release: this handle's reads happen before a writer's `Acquire` check sees 0.
            block.pins[*offset as usize].fetch_sub(1, Ordering::Release);
        }
    }
}

impl Deref for Embedding {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        self.as_slice()
    }
}

impl AsRef<[f32]> for Embedding {
    fn as_ref(&self) -> &[f32] {
        self.as_slice()
    }
}

impl fmt::Debug for Embedding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embedding")
            .field("dims", &self.len())
            .field("cached", &self.is_cached())
            .finish()
    }
}

impl PartialEq<[f32]> for Embedding {
    fn eq(&self, other: &[f32]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<&[f32]> for Embedding {
    fn eq(&self, other: &&[f32]) -> bool {
        self.as_slice() == *other
    }
}

/// Slots of one vector length.
#[derive(Debug)]
struct DimClass {
    dims: usize,
    /// `None` where a wholly free block was released (its index is reused).
    blocks: Vec<Option<Arc<Block>>>,
    /// Slots in use per block.
    used: Vec<u32>,
    free: Vec<SlotRef>,
    /// Evicted slots still pinned by handles.
    deferred: Vec<SlotRef>,
    /// Slots allocated (all blocks).
    slots: usize,
    /// Most slots the shard's bounds allow for this length.
    max_slots: usize,
}

/// The vector storage of one shard.
#[derive(Debug, Default)]
pub(super) struct SlotStore {
    classes: Vec<DimClass>,
}

/// Slots in the first block of a class; each new block doubles, up to [`MAX_BLOCK`] (small
/// blocks spread the handles' reference counts of hot entries over many cache lines).
const FIRST_BLOCK: usize = 16;
const MAX_BLOCK: usize = 64;

impl SlotStore {
    /// A free, unpinned slot for a vector of `dims`, allocating a block when none is left.
    /// `max_slots` is what the shard's bounds allow for this length; the store goes past it
    /// only while evicted slots are still pinned by handles.
    pub(super) fn take(&mut self, dims: usize, max_slots: usize) -> SlotRef {
        let ci = match self.classes.iter().position(|c| c.dims == dims) {
            Some(i) => i,
            None => {
                self.classes.push(DimClass {
                    dims,
                    blocks: Vec::new(),
                    used: Vec::new(),
                    free: Vec::new(),
                    deferred: Vec::new(),
                    slots: 0,
                    max_slots: max_slots.max(1),
                });
                self.classes.len() - 1
            }
        };
        let class = &mut self.classes[ci];
        // Deferred slots first (the list is short: slots evicted while a handle was out), so
        // that they do not stay allocated beside the free ones.
        let slot = match class.reclaim_deferred().or_else(|| class.free.pop()) {
            Some(s) => s,
            None => class.grow(ci as u32),
        };
        class.used[slot.block as usize] += 1;
        slot
    }

    /// Copies `vector` into `slot`, which [`take`](Self::take) just returned.
    pub(super) fn write(&mut self, slot: SlotRef, vector: &[f32]) {
        let block = self.block(slot);
        debug_assert!(!block.pinned(slot.offset));
        debug_assert_eq!(block.dims, vector.len());
        let start = slot.offset as usize * block.dims;
        let cells = &block.data[start..start + block.dims];
        // SAFETY: `slot` came from `take` and is not yet referred to by any entry, so no
        // handle on it exists or can be made (pins are taken only on slots entries refer to,
        // and this `&mut self` is the shard's, held under its lock); `take` only returns
        // slots whose pins were seen at 0 with `Acquire`. So this is the only access.
        let dst = unsafe {
            std::slice::from_raw_parts_mut(UnsafeCell::raw_get(cells.as_ptr()), block.dims)
        };
        dst.copy_from_slice(vector);
    }

    /// The values of `slot` (an entry refers to it, under the shard lock).
    #[cfg(test)]
    pub(super) fn read(&self, slot: SlotRef) -> &[f32] {
        self.block(slot).slice(slot.offset)
    }

    /// Starts loading the first values of `slot` into the cache: a hit's caller reads the
    /// vector right after, and the load from memory then overlaps the policy's bookkeeping.
    pub(super) fn prefetch(&self, slot: SlotRef) {
        let block = self.block(slot);
        let first = &block.data[slot.offset as usize * block.dims];
        #[cfg(all(target_arch = "x86_64", not(loom)))]
        // SAFETY: a prefetch is a hint without architectural effect (it cannot fault), and
        // `first` is a live element of the block anyway.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(UnsafeCell::raw_get(first).cast());
        }
        #[cfg(not(all(target_arch = "x86_64", not(loom))))]
        let _ = first;
    }

    /// A pinned handle on `slot` (an entry refers to it, under the shard lock).
    pub(super) fn handle(&self, slot: SlotRef) -> Embedding {
        let block = self.block(slot);
        block.pins[slot.offset as usize].fetch_add(1, Ordering::Relaxed);
        Embedding {
            repr: Repr::Slot {
                block: Arc::clone(block),
                offset: slot.offset,
            },
        }
    }

    /// Gives `slot` back: free at once, or deferred while handles pin it.
    pub(super) fn release(&mut self, slot: SlotRef) {
        let pinned = self.block(slot).pinned(slot.offset);
        let class = &mut self.classes[slot.class as usize];
        class.used[slot.block as usize] -= 1;
        if pinned {
            class.deferred.push(slot);
        } else {
            class.free.push(slot);
        }
    }

    /// Drops blocks with no slot in use and no handle, so their memory goes back to the
    /// allocator. Returns the bytes released.
    pub(super) fn release_unused(&mut self) -> u64 {
        let mut released = 0;
        for class in &mut self.classes {
            released += class.release_unused();
        }
        released
    }

    /// Drops every block (handles keep theirs alive).
    pub(super) fn clear(&mut self) {
        self.classes = Vec::new();
    }

    /// Bytes of vector storage allocated.
    pub(super) fn bytes(&self) -> u64 {
        self.classes
            .iter()
            .map(|c| (c.slots * c.dims * 4) as u64)
            .sum()
    }

    /// Evicted slots still pinned by handles.
    pub(super) fn deferred(&self) -> usize {
        self.classes
            .iter()
            .map(|c| {
                c.deferred
                    .iter()
                    .filter(|s| {
                        c.blocks[s.block as usize]
                            .as_ref()
                            .is_some_and(|b| b.pinned(s.offset))
                    })
                    .count()
            })
            .sum()
    }

    fn block(&self, slot: SlotRef) -> &Arc<Block> {
        self.classes[slot.class as usize].blocks[slot.block as usize]
            .as_ref()
            .expect("slot in a released block")
    }

    /// Checks the slot bookkeeping against `live` (the slots entries refer to).
    #[cfg(test)]
    pub(super) fn check_invariants(&self, live: &[SlotRef]) {
        use std::collections::HashSet;
        let mut seen = HashSet::new();
        for (ci, class) in self.classes.iter().enumerate() {
            let mut slots = 0;
            for (bi, block) in class.blocks.iter().enumerate() {
                let Some(block) = block else {
                    assert_eq!(class.used[bi], 0);
                    continue;
                };
                slots += block.slots();
                let in_use = live
                    .iter()
                    .filter(|s| s.class as usize == ci && s.block as usize == bi)
                    .count();
                assert_eq!(class.used[bi] as usize, in_use, "used count of a block");
            }
            assert_eq!(slots, class.slots, "slot total");
            for s in class.free.iter().chain(&class.deferred) {
                assert_eq!(s.class as usize, ci);
                assert!(seen.insert(*s), "slot listed twice");
            }
            for s in &class.free {
                assert!(!self.block(*s).pinned(s.offset), "free slot pinned");
            }
        }
        for s in live {
            assert!(seen.insert(*s), "live slot also free, or shared");
        }
    }
}

impl DimClass {
    fn reclaim_deferred(&mut self) -> Option<SlotRef> {
        let blocks = &self.blocks;
        let at = self.deferred.iter().position(|s| {
            blocks[s.block as usize]
                .as_ref()
                .is_some_and(|b| !b.pinned(s.offset))
        })?;
        Some(self.deferred.swap_remove(at))
    }

    /// Allocates a block (doubling, capped by the bound) and returns one of its slots.
    fn grow(&mut self, class: u32) -> SlotRef {
        let last = self
            .blocks
            .iter()
            .flatten()
            .map(|b| b.slots())
            .max()
            .unwrap_or(0);
        let want = (last * 2).clamp(FIRST_BLOCK, MAX_BLOCK);
        let size = want.min(self.max_slots.saturating_sub(self.slots)).max(1);
        let block = Arc::new(Block::new(self.dims, size));
        let index = match self.blocks.iter().position(Option::is_none) {
            Some(i) => {
                self.blocks[i] = Some(block);
                i
            }
            None => {
                self.blocks.push(Some(block));
                self.used.push(0);
                self.blocks.len() - 1
            }
        };
        self.slots += size;
        let slot = |offset| SlotRef {
            class,
            block: index as u32,
            offset,
        };
        self.free.extend((1..size as u32).rev().map(slot));
        slot(0)
    }

    fn release_unused(&mut self) -> u64 {
        let mut released = 0;
        for (bi, entry) in self.blocks.iter_mut().enumerate() {
            let unused =
                self.used[bi] == 0 && entry.as_ref().is_some_and(|b| Arc::strong_count(b) == 1);
            if !unused {
                continue;
            }
            if let Some(block) = entry.take() {
                self.slots -= block.slots();
                released += (block.slots() * self.dims * 4) as u64;
            }
        }
        let blocks = &self.blocks;
        let alive = |s: &SlotRef| blocks[s.block as usize].is_some();
        self.free.retain(alive);
        self.deferred.retain(alive);
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_blocks_grow_within_the_bound() {
        let mut s = SlotStore::default();
        let a = s.take(4, 20);
        s.write(a, &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.read(a), &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.bytes(), 16 * 4 * 4);
        let mut live = vec![a];
        for _ in 0..19 {
            live.push(s.take(4, 20));
        }
        // Second block: doubling wanted 32 slots, the bound left 4.
        assert_eq!(s.bytes(), 20 * 4 * 4);
        s.check_invariants(&live);
        let gone = live.pop().unwrap();
        s.release(gone);
        s.check_invariants(&live);
        assert_eq!(s.take(4, 20), gone, "a freed slot is reused first");
    }

    #[test]
    fn a_pinned_slot_is_not_reused_until_its_handles_drop() {
        let mut s = SlotStore::default();
        let a = s.take(2, 1);
        s.write(a, &[7.0, 8.0]);
        let h = s.handle(a);
        let h2 = h.clone();
        s.release(a);
        assert_eq!(s.deferred(), 1);
        s.check_invariants(&[]);
        // Still pinned: a new slot (past the bound of 1) rather than overwriting `h`'s.
        let b = s.take(2, 1);
        assert_ne!(a, b);
        s.write(b, &[0.0, 0.0]);
        assert_eq!(&*h, &[7.0, 8.0]);
        drop(h);
        assert_eq!(*h2, [7.0, 8.0]);
        drop(h2);
        s.release(b);
        // The deferred slot is reclaimed (first) once its pins are gone.
        assert_eq!(s.take(2, 1), a);
        assert_eq!(s.take(2, 1), b);
        assert_eq!(s.deferred(), 0);
    }

    #[test]
    fn unused_blocks_are_released_and_handles_outlive_the_store() {
        let mut s = SlotStore::default();
        let slots: Vec<_> = (0..40).map(|_| s.take(3, 100)).collect();
        for (i, &slot) in slots.iter().enumerate() {
            s.write(slot, &[i as f32; 3]);
        }
        let kept = s.handle(slots[39]);
        for &slot in &slots[..39] {
            s.release(slot);
        }
        // Blocks 0 (16 slots) and 1 (32 slots, 24 used... now 0 but slot 39 pinned by `kept`
        // and still in use) : only block 0 is wholly unused.
        let released = s.release_unused();
        assert_eq!(released, 16 * 3 * 4);
        s.check_invariants(&slots[39..]);
        s.release(slots[39]);
        s.clear();
        assert_eq!(s.bytes(), 0);
        assert_eq!(*kept, [39.0; 3]);
        assert!(kept.is_cached());
        let owned = Embedding::owned(&[1.0]);
        assert!(!owned.is_cached());
        assert_eq!(owned.clone(), &[1.0][..]);
        assert!(format!("{owned:?}").contains("dims"));
    }
}
