//! The one place that picks `std` or `loom` synchronisation types, so the rest of the crate
//! needs no `cfg(loom)`.

#[cfg(loom)]
pub(crate) use loom::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering},
};
#[cfg(not(loom))]
pub(crate) use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering},
};

/// The string hash of every interner, and the words that identify a short string.
///
/// A string of at most [`SHORT`] bytes is hashed by one folded multiply of two words read
/// from it ([`short_words`]) with two random per-interner keys, the length rotating the
/// second key; [`Key`] keeps the words, so that a lookup compares a candidate by reading
/// its two words instead of calling `memcmp`, and the length is tested once for both. A
/// longer string goes through foldhash's byte hasher (`write` and `finish`, without the
/// `0xFF` terminator that `Hash for str` appends: every hasher here sees one string, so
/// it buys nothing).
///
/// Loom replays schedules and needs each execution to behave the same, so under loom the
/// keys are fixed and the long hasher is std's SipHash with zero keys, instead of
/// foldhash's per-interner random seed, which would send strings to different shards (and
/// so different locks) from one execution to the next.
#[derive(Clone)]
pub(crate) struct HashBuilder {
    #[cfg(not(loom))]
    long: hashbrown::DefaultHashBuilder,
    #[cfg(loom)]
    long: core::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>,
    k0: u64,
    k1: u64,
}

/// Strings up to this many bytes are short: two words of them determine them.
pub(crate) const SHORT: usize = 16;

/// A string's hash and, for a short one, its two words.
#[derive(Clone, Copy)]
pub(crate) struct Key {
    pub(crate) hash: u64,
    pub(crate) words: (u64, u64),
}

#[cfg(not(loom))]
impl Default for HashBuilder {
    fn default() -> Self {
        use core::hash::BuildHasher;
        let long = hashbrown::DefaultHashBuilder::default();
        // Two random words from the randomly seeded builder.
        let k0 = long.hash_one(0x243F_6A88_85A3_08D3_u64);
        let k1 = long.hash_one(0x1319_8A2E_0370_7344_u64);
        Self { long, k0, k1 }
    }
}

#[cfg(loom)]
impl Default for HashBuilder {
    fn default() -> Self {
        Self {
            long: Default::default(),
            k0: 0x243F_6A88_85A3_08D3,
            k1: 0x1319_8A2E_0370_7344,
        }
    }
}

/// The two words that, with its length, determine a string of at most [`SHORT`] bytes:
/// up to 8 bytes, their little-endian value and 0 (what `find` reads back from a span with
/// one word read, `live.rs`); 9 to 16, the native words of its first and last 8 bytes.
#[inline(always)]
pub(crate) fn short_words(b: &[u8]) -> (u64, u64) {
    let n = b.len();
    let p = b.as_ptr();
    // SAFETY: every read covers bytes `[at, at + width)` of `b` with `at + width <= n`, as
    // the branch it is in checks (unaligned reads, so any address is fine).
    unsafe {
        let word4 = |at: usize| u64::from(u32::from_le(p.add(at).cast::<u32>().read_unaligned()));
        if n > 8 {
            (
                p.cast::<u64>().read_unaligned(),
                p.add(n - 8).cast::<u64>().read_unaligned(),
            )
        } else if n == 8 {
            (u64::from_le(p.cast::<u64>().read_unaligned()), 0)
        } else if n >= 4 {
            // Two overlapping 4-byte reads; the overlap holds the same bytes in both.
            (word4(0) | word4(n - 4) << (8 * (n - 4)), 0)
        } else if n > 0 {
            let bytes = u64::from(*p)
                | u64::from(*p.add(n / 2)) << (8 * (n / 2))
                | u64::from(*p.add(n - 1)) << (8 * (n - 1));
            (bytes, 0)
        } else {
            (0, 0)
        }
    }
}

/// The high and low halves of the 128-bit product, folded together.
#[inline(always)]
fn folded_multiply(x: u64, y: u64) -> u64 {
    let p = u128::from(x) * u128::from(y);
    p as u64 ^ (p >> 64) as u64
}

impl HashBuilder {
    /// The key of `s`: its hash (the same for equal strings for the life of this builder)
    /// and, if `s` is short, its words.
    #[inline(always)]
    pub(crate) fn key(&self, s: &str) -> Key {
        let b = s.as_bytes();
        if b.len() <= SHORT {
            let words = short_words(b);
            let hash = folded_multiply(
                words.0 ^ self.k0,
                words.1 ^ self.k1.rotate_left(b.len() as u32),
            );
            Key { hash, words }
        } else {
            Key {
                hash: self.hash_long(b),
                words: (0, 0),
            }
        }
    }

    /// The hash of `s`, as in [`key`](Self::key).
    #[inline(always)]
    pub(crate) fn hash_one(&self, s: &str) -> u64 {
        self.key(s).hash
    }

    fn hash_long(&self, b: &[u8]) -> u64 {
        use core::hash::{BuildHasher, Hasher};
        let mut h = self.long.build_hasher();
        h.write(b);
        h.finish()
    }
}

/// Locks `mutex`, ignoring poisoning: every store operation leaves the shard consistent at
/// each point where it could unwind (see `live.rs`), so a panic elsewhere does not make the
/// data unusable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `mutex`'s value through exclusive access: no lock, no atomic operation; ignores
/// poisoning as [`lock`] does.
#[inline(always)]
pub(crate) fn get_mut<T>(mutex: &mut Mutex<T>) -> &mut T {
    mutex
        .get_mut()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Adds `v` to an atomic the caller has exclusive access to: a plain add, no
/// read-modify-write.
#[inline(always)]
pub(crate) fn add_exclusive(atomic: &mut AtomicU64, v: u64) {
    #[cfg(not(loom))]
    {
        *atomic.get_mut() += v;
    }
    #[cfg(loom)]
    atomic.with_mut(|x| *x += v);
}

/// Number of per-thread counter slots (see `counters.rs`), numbered `1..=SLOTS`; a thread
/// that finds all of them taken uses the shared slot `0`.
pub(crate) const SLOTS: usize = 32;
const _: () = assert!(SLOTS << SLOT_SHIFT <= u16::MAX as usize);

/// One bit per slot (bit `k` for slot `k + 1`): set while a live thread owns it.
#[cfg(not(loom))]
static CLAIMED: AtomicU64 = AtomicU64::new(0);
// Under loom a static lives in the model's execution; each claim keeps an `Arc` of it,
// because loom drops the main thread's thread-locals after its statics.
#[cfg(loom)]
loom::lazy_static! {
    static ref CLAIMED_LOOM: loom::sync::Arc<AtomicU64> = loom::sync::Arc::new(AtomicU64::new(0));
}

/// A thread's claim on one counter slot (`1..=SLOTS`, or `0`: none), given back when the
/// thread exits.
struct SlotClaim(
    usize,
    #[cfg(not(loom))] &'static AtomicU64,
    #[cfg(loom)] loom::sync::Arc<AtomicU64>,
);

impl SlotClaim {
    fn claim() -> Self {
        #[cfg(not(loom))]
        let claim = SlotClaim(Self::claim_in(&CLAIMED), &CLAIMED);
        #[cfg(loom)]
        let claim = {
            let claimed = CLAIMED_LOOM.clone();
            SlotClaim(Self::claim_in(&claimed), claimed)
        };
        claim
    }

    fn claim_in(claimed: &AtomicU64) -> usize {
        let all = (1u64 << SLOTS) - 1;
        let mut seen = claimed.load(Ordering::Relaxed);
        loop {
            let free = !seen & all;
            if free == 0 {
                return 0;
            }
            let bit = free.trailing_zeros() as usize;
            // Acquire: the previous owner's counter stores (before its Release in `drop`)
            // happen before this thread's first load of the slot's counters.
            match claimed.compare_exchange(
                seen,
                seen | 1 << bit,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return bit + 1,
                Err(now) => seen = now,
            }
        }
    }
}

impl Drop for SlotClaim {
    fn drop(&mut self) {
        if self.0 != 0 {
            // Forget the cached slot first: a thread-local destructor that interns after
            // this one must not write a slot that another thread may own by then.
            #[cfg(not(loom))]
            let _ = SLOT_CACHE.try_with(|c| c.set(0));
            // Release: hands this thread's last counter stores to the slot's next owner.
            self.1.fetch_and(!(1u64 << (self.0 - 1)), Ordering::Release);
        }
    }
}

#[cfg(not(loom))]
std::thread_local! {
    static SLOT: SlotClaim = SlotClaim::claim();
    /// The slot of `SLOT` while the claim is held, else 0, kept as the byte offset of the
    /// slot's counters (`slot << SLOT_SHIFT`), so that the counter update adds it to the
    /// array's address without a shift. A `const` cell with no destructor is a plain
    /// thread-local load (no lazy-initialisation or destructor state), which keeps the
    /// per-call counter update to a few instructions.
    static SLOT_CACHE: core::cell::Cell<u16> = const { core::cell::Cell::new(0) };
}
#[cfg(loom)]
loom::thread_local! {
    static SLOT: SlotClaim = SlotClaim::claim();
}

/// Per-thread counters are `1 << SLOT_SHIFT` bytes apart (`counters.rs`).
pub(crate) const SLOT_SHIFT: u32 = 7;

/// The calling thread's slot if it is known without claiming one, as a byte offset
/// `slot << SLOT_SHIFT` with `slot` in `1..=SLOTS`, owned by this thread alone until it
/// exits; or `0`: call [`claim_slot`].
#[cfg(not(loom))]
#[inline(always)]
pub(crate) fn cached_slot_offset() -> usize {
    usize::from(SLOT_CACHE.with(core::cell::Cell::get))
}

/// The calling thread's slot, claiming one on its first call: `1..=SLOTS`, or `0` (the
/// shared slot, updated with read-modify-writes) when every slot is taken or the thread's
/// slot was already given back (a thread-local destructor interning).
#[cfg(not(loom))]
#[cold]
#[inline(never)]
pub(crate) fn claim_slot() -> usize {
    let slot = SLOT.try_with(|s| s.0).unwrap_or(0);
    if slot != 0 {
        // `SLOTS << SLOT_SHIFT` fits a `u16`.
        SLOT_CACHE.with(|c| c.set((slot << SLOT_SHIFT) as u16));
    }
    slot
}

/// Under loom there is no cache (loom models thread-locals per execution): the claim
/// itself, so that the counters' owned-slot path is modelled as it runs.
#[cfg(loom)]
pub(crate) fn cached_slot_offset() -> usize {
    claim_slot() << SLOT_SHIFT
}

/// As without loom, minus the cache.
#[cfg(loom)]
pub(crate) fn claim_slot() -> usize {
    SLOT.try_with(|s| s.0).unwrap_or(0)
}
