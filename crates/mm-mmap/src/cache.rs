//! [`MmapCache`]: a byte-budgeted, exact-LRU cache of [`MappedFile`]s.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use crate::index::{Index, Inserted};
use crate::ledger::Ledger;
use crate::map::{self, Access, FileIdentity, MapSettings, MappedFile};
use crate::sync::Mutex;
use crate::{MmapError, counter::StripedCounter};

/// The default budget: 100 MiB of mapped bytes held by the cache.
pub const DEFAULT_BUDGET_BYTES: u64 = 100 * 1024 * 1024;

/// When `get` checks that a cached map still shows the file at the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum Revalidate {
    /// `stat` the path on every `get` (one system call, about a microsecond) and re-map if
    /// the [`FileIdentity`] changed, or fail with [`MmapError::NotFound`] if the file is
    /// gone. A stale map is never handed out after the change is visible to `stat`.
    #[default]
    Always,
    /// Trust the cache: a hit costs no system call. Use only for files that never change
    /// while the process runs (content-addressed model files); a replaced file is noticed
    /// only after its entry is evicted or removed.
    Never,
}

/// What `get` does with a file larger than the whole budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum OversizedPolicy {
    /// Map it without caching it and count its bytes as *outstanding* until the caller drops
    /// the last `Arc`. While one such map is alive, further `get`s of the same unchanged
    /// file return it instead of mapping again. The default, because the files this crate
    /// is for (GGUF models of 0.3 to 5 GB) are larger than any sensible cache budget.
    #[default]
    MapUncached,
    /// Refuse with [`MmapError::TooLarge`].
    Reject,
}

/// How an [`MmapCache`] behaves. Start from [`MmapCacheConfig::default`] and adjust with
/// the `with_*` methods.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct MmapCacheConfig {
    budget_bytes: u64,
    revalidate: Revalidate,
    oversized: OversizedPolicy,
    advice: Option<Access>,
    populate: bool,
    lock: bool,
}

impl Default for MmapCacheConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl MmapCacheConfig {
    /// The defaults: a [`DEFAULT_BUDGET_BYTES`] budget, revalidation on every hit, oversized
    /// files mapped uncached, no access hint, no `MAP_POPULATE`, no `mlock`.
    pub const fn new() -> Self {
        Self {
            budget_bytes: DEFAULT_BUDGET_BYTES,
            revalidate: Revalidate::Always,
            oversized: OversizedPolicy::MapUncached,
            advice: None,
            populate: false,
            lock: false,
        }
    }
}

impl MmapCacheConfig {
    /// Most bytes of maps the cache keeps. Maps evicted but still referenced by callers are
    /// not part of this; see [`CacheStats::outstanding_bytes`].
    pub const fn budget_bytes(&self) -> u64 {
        self.budget_bytes
    }
    /// When a hit re-checks the file on disk.
    pub const fn revalidate(&self) -> Revalidate {
        self.revalidate
    }
    /// What happens to files larger than the budget.
    pub const fn oversized(&self) -> OversizedPolicy {
        self.oversized
    }
    /// The hint applied to every new map (`None`: the kernel default).
    pub const fn advice(&self) -> Option<Access> {
        self.advice
    }
    /// Whether new maps use `MAP_POPULATE` (fault the whole file in at map time).
    pub const fn populate(&self) -> bool {
        self.populate
    }
    /// Whether new maps are `mlock`ed (a failure is [`MmapError::Lock`], nothing cached).
    pub const fn lock(&self) -> bool {
        self.lock
    }
    /// Sets the byte budget (default [`DEFAULT_BUDGET_BYTES`]).
    pub fn with_budget(mut self, bytes: u64) -> Self {
        self.budget_bytes = bytes;
        self
    }
    /// Sets the revalidation policy.
    pub fn with_revalidate(mut self, revalidate: Revalidate) -> Self {
        self.revalidate = revalidate;
        self
    }
    /// Sets the policy for files larger than the budget.
    pub fn with_oversized(mut self, policy: OversizedPolicy) -> Self {
        self.oversized = policy;
        self
    }
    /// Sets the access hint applied to new maps.
    pub fn with_advice(mut self, advice: Option<Access>) -> Self {
        self.advice = advice;
        self
    }
    /// Turns `MAP_POPULATE` on or off.
    pub fn with_populate(mut self, populate: bool) -> Self {
        self.populate = populate;
        self
    }
    /// Turns `mlock` of new maps on or off.
    pub fn with_lock(mut self, lock: bool) -> Self {
        self.lock = lock;
        self
    }
}

/// A snapshot of an [`MmapCache`]'s counters. The fields are read one by one, so under
/// concurrent use they may not add up exactly; quiescent, they do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// `get`s answered from the cache (including live uncached oversized maps).
    pub hits: u64,
    /// `get`s that mapped the file (failed `get`s count as neither hit nor miss).
    pub misses: u64,
    /// Maps removed to make room or by [`MmapCache::trim_to`].
    pub evictions: u64,
    /// Cached maps replaced because the file changed (or removed because it was deleted).
    pub remaps: u64,
    /// Maps handed out without being cached: oversized files, or no room because every
    /// byte of the budget was reserved by concurrent inserts.
    pub uncached: u64,
    /// Bytes of maps the cache holds; never more than `budget_bytes`.
    pub held_bytes: u64,
    /// Bytes of maps the cache does not hold that callers still reference.
    pub outstanding_bytes: u64,
    /// Files in the cache.
    pub entries: u64,
    /// The configured budget.
    pub budget_bytes: u64,
}

/// An eviction-queue record: a map and the recency stamp it had when queued.
struct Queued {
    stamp: u64,
    file: Weak<MappedFile>,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.stamp == other.stamp
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    /// Reversed, so `BinaryHeap` (a max-heap) pops the smallest stamp first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other.stamp.cmp(&self.stamp)
    }
}

/// A concurrent cache of read-only file maps with a byte budget and exact LRU eviction.
///
/// * **Lookup** is a `dashmap::DashMap` keyed by the bytes of the path as given (two spellings of
///   one file, such as `a/b` and `a//b`, are two entries).
/// * **Recency**: every hit stores a fresh value of a global clock into the map's stamp
///   (an atomic, no lock).
/// * **Eviction** pops a min-heap of `(stamp when queued, map)` under a mutex that only
///   misses and trims take. A popped record whose map was touched since is pushed back
///   with its current stamp; the first record that is current is the least recently used
///   map. Each hit therefore costs O(1), and each eviction O(log n) per map touched since
///   it was queued.
/// * **Accounting**: a compare-and-swap reservation keeps the held bytes within the
///   budget; see [`CacheStats`].
///
/// `docs/mm-mmap.md` in the repository explains why this is sound and what it does not do.
pub struct MmapCache {
    /// Path bytes to the cached map (a `DashMap`; see `index.rs`).
    index: Index,
    queue: Mutex<BinaryHeap<Queued>>,
    oversized: Mutex<HashMap<PathBuf, Weak<MappedFile>>>,
    ledger: Arc<Ledger>,
    /// On its own cache line: it is written by every hit, and the fields read by every hit
    /// (index, config) must not share its line.
    clock: Padded<AtomicU64>,
    config: MmapCacheConfig,
    settings: MapSettings,
    hits: StripedCounter,
    misses: AtomicU64,
    evictions: AtomicU64,
    remaps: AtomicU64,
    uncached: AtomicU64,
}

impl fmt::Debug for MmapCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmapCache")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Default for MmapCache {
    fn default() -> Self {
        Self::new(MmapCacheConfig::default())
    }
}

impl MmapCache {
    /// An empty cache. Allocates only the (small) lookup shards; maps are made on `get`.
    pub fn new(config: MmapCacheConfig) -> Self {
        Self {
            index: Index::new(),
            queue: Mutex::new(BinaryHeap::new()),
            oversized: Mutex::new(HashMap::new()),
            ledger: Arc::new(Ledger::new(config.budget_bytes)),
            clock: Padded(AtomicU64::new(0)),
            settings: MapSettings {
                advice: config.advice,
                populate: config.populate,
                lock: config.lock,
            },
            config,
            hits: StripedCounter::default(),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            remaps: AtomicU64::new(0),
            uncached: AtomicU64::new(0),
        }
    }

    /// The configuration the cache was built with.
    pub fn config(&self) -> &MmapCacheConfig {
        &self.config
    }

    /// The map of the file at `path`, from the cache or freshly mapped.
    ///
    /// A hit costs a hash lookup, an `Arc` clone and a recency store, plus one `stat` with
    /// [`Revalidate::Always`] (the default). A miss opens, `fstat`s and maps the file
    /// (with `populate`, reads all of it), possibly evicting least-recently-used maps to
    /// make room; the budget is never exceeded by what the cache holds. A file larger than
    /// the budget follows [`MmapCacheConfig::oversized`].
    ///
    /// # Safety
    /// The returned map shows the file's pages, not a copy, and hands them out as `&[u8]`,
    /// which Rust assumes cannot change while borrowed. So, as for `memmap2::Mmap::map`,
    /// the caller promises that **while the returned `Arc<MappedFile>` (or any clone of
    /// it) is alive, the file is neither modified in place nor truncated**, by this process
    /// or any other. Replacing the file by writing a new one and renaming it over the path
    /// keeps the promise (the old inode lives on for existing maps; revalidation maps the
    /// new file on a later `get`). Breaking the promise is undefined behaviour: bytes that
    /// were checked (a string validated as UTF-8, a length) can change under a live
    /// reference. Files that may change while read are for `read(2)`-based readers (such as
    /// `mm-gguf`'s streaming reader), not for a map.
    ///
    /// # SIGBUS
    /// If the file is truncated while mapped anyway, the next touch of a page past its new
    /// end raises `SIGBUS`, which kills the process (no mapping flag prevents it, and the
    /// cache installs no handler; a binary may install one to print a message).
    ///
    /// # Errors
    /// [`MmapError::NotFound`], [`MmapError::PermissionDenied`], [`MmapError::EmptyFile`],
    /// [`MmapError::NotRegularFile`], [`MmapError::TooLarge`], [`MmapError::Lock`],
    /// [`MmapError::Advise`], or [`MmapError::Io`] for anything else. A failed `get`
    /// caches nothing.
    ///
    /// Calling it without `unsafe` does not compile:
    /// ```compile_fail
    /// let cache = mm_mmap::MmapCache::default();
    /// let _ = cache.get(std::path::Path::new("model.gguf"));
    /// ```
    pub unsafe fn get(&self, path: &Path) -> Result<Arc<MappedFile>, MmapError> {
        if let Some(file) = self.lookup(path)? {
            self.hits.incr();
            return Ok(file);
        }
        self.load(path)
    }

    /// The cached map for `path` if it is still current; `None` on a miss. Removes the
    /// entry if revalidation finds the file changed or gone.
    fn lookup(&self, path: &Path) -> Result<Option<Arc<MappedFile>>, MmapError> {
        let Some(file) = self.index.get(key(path)) else {
            return Ok(None);
        };
        if self.config.revalidate == Revalidate::Always {
            match std::fs::metadata(path) {
                Ok(meta) if FileIdentity::from_metadata(&meta) == file.identity() => {}
                Ok(_) => {
                    // Changed on disk: drop the stale map now so it is never handed out
                    // again, even if mapping the new version fails.
                    self.remove_exact(&file, &self.remaps);
                    return Ok(None);
                }
                Err(e) => {
                    let err = MmapError::from_io(path, "stat", e);
                    if matches!(err, MmapError::NotFound { .. }) {
                        self.remove_exact(&file, &self.remaps);
                    }
                    return Err(err);
                }
            }
        }
        self.touch(&file);
        Ok(Some(file))
    }

    fn tick(&self) -> u64 {
        self.clock.0.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Marks `file` most recently used. Skips the shared clock when it already is, so
    /// threads hammering one hot file do not contend on the clock.
    fn touch(&self, file: &MappedFile) {
        if file.stamp.load(Ordering::Relaxed) != self.clock.0.load(Ordering::Relaxed) {
            file.touch(self.tick());
        }
    }

    /// The miss path: open, check, map, reserve room, insert. Only `get` calls it, whose
    /// caller has taken on the immutability contract for `path`.
    fn load(&self, path: &Path) -> Result<Arc<MappedFile>, MmapError> {
        let opened = map::open_checked(path)?;
        let len = opened.identity.len;
        if len > self.ledger.budget() {
            return self.load_oversized(path, opened);
        }
        let file = Arc::new(map::map_opened(path, opened, self.settings, &self.ledger)?);
        self.misses.fetch_add(1, Ordering::Relaxed);
        if !self.reserve(len) {
            file.charge.charge_outstanding();
            self.uncached.fetch_add(1, Ordering::Relaxed);
            return Ok(file);
        }
        file.charge.commit_held();
        file.touch(self.tick());
        let same = |current: &Arc<MappedFile>| {
            current.identity() == file.identity() && current.charge.is_held()
        };
        let replaced = match self.index.insert_unless(key(path), &file, same) {
            Inserted::Kept(winner) => {
                // Another thread mapped the same file first: use its map, drop ours.
                file.charge.cancel_held();
                self.touch(&winner);
                return Ok(winner);
            }
            Inserted::Replaced(old) => Some(old),
            Inserted::Vacant => None,
        };
        if let Some(old) = replaced
            && old.charge.release_from_cache()
        {
            self.remaps.fetch_add(1, Ordering::Relaxed);
        }
        self.enqueue(&file);
        Ok(file)
    }

    fn load_oversized(
        &self,
        path: &Path,
        opened: map::OpenedFile,
    ) -> Result<Arc<MappedFile>, MmapError> {
        let len = opened.identity.len;
        if self.config.oversized == OversizedPolicy::Reject {
            return Err(MmapError::TooLarge {
                path: path.to_path_buf(),
                len,
                limit: self.ledger.budget(),
            });
        }
        let mut live = lock(&self.oversized);
        if let Some(file) = live.get(path).and_then(Weak::upgrade)
            && file.identity() == opened.identity
        {
            self.hits.incr();
            return Ok(file);
        }
        let file = Arc::new(map::map_opened(path, opened, self.settings, &self.ledger)?);
        self.misses.fetch_add(1, Ordering::Relaxed);
        file.charge.charge_outstanding();
        self.uncached.fetch_add(1, Ordering::Relaxed);
        live.retain(|_, weak| weak.strong_count() > 0);
        live.insert(path.to_path_buf(), Arc::downgrade(&file));
        Ok(file)
    }

    /// Reserves `len` held bytes, evicting least-recently-used maps until they fit.
    /// `false` if nothing is left to evict (the rest of the budget is reserved by inserts
    /// in flight on other threads).
    fn reserve(&self, len: u64) -> bool {
        loop {
            if self.ledger.try_reserve(len) {
                return true;
            }
            if self.evict_one().is_none() {
                return self.ledger.try_reserve(len);
            }
        }
    }

    fn enqueue(&self, file: &Arc<MappedFile>) {
        // Read before locking the queue: no shard lock is ever taken under the queue lock.
        let entries = self.index.len();
        let mut queue = lock(&self.queue);
        queue.push(Queued {
            stamp: file.stamp.load(Ordering::Relaxed),
            file: Arc::downgrade(file),
        });
        // Records of replaced or removed maps linger until popped; compact if they pile up.
        if queue.len() > 2 * entries + 64 {
            queue.retain(|q| q.file.upgrade().is_some_and(|f| f.charge.is_held()));
        }
    }

    /// Evicts the least recently used map and returns its length; `None` if the cache
    /// holds nothing evictable.
    fn evict_one(&self) -> Option<u64> {
        loop {
            let victim = {
                let mut queue = lock(&self.queue);
                loop {
                    let record = queue.pop()?;
                    let Some(file) = record.file.upgrade() else {
                        continue;
                    };
                    if !file.charge.is_held() {
                        continue; // replaced, removed or already evicted
                    }
                    let now = file.stamp.load(Ordering::Relaxed);
                    if now > record.stamp {
                        queue.push(Queued {
                            stamp: now,
                            file: record.file,
                        });
                        continue;
                    }
                    break file;
                }
            };
            // The queue lock is released before the index shard lock is taken: `load`
            // takes them in the other order.
            if self.remove_exact(&victim, &self.evictions) {
                #[cfg(feature = "tracing")]
                tracing::debug!(
                    path = %victim.path().display(),
                    bytes = victim.charge.len(),
                    "mmap cache evicted a map"
                );
                return Some(victim.charge.len());
            }
        }
    }

    /// Removes exactly this map from the index (not a newer one at the same path) and
    /// moves its bytes to outstanding. `true` if this call did it; bumps `counter`.
    fn remove_exact(&self, file: &Arc<MappedFile>, counter: &AtomicU64) -> bool {
        let removed = self.index.remove_exact(key(file.path()), file);
        if removed && file.charge.release_from_cache() {
            counter.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Evicts least-recently-used maps until the cache holds at most `bytes`. Returns the
    /// bytes this call released from the cache (they stay mapped, as outstanding, while
    /// callers hold them; maps that other threads remove meanwhile are not counted here).
    /// O(k log n) for k evictions.
    pub fn trim_to(&self, bytes: u64) -> u64 {
        let mut released = 0;
        let mut evicted = 0u64;
        while self.ledger.held() > bytes {
            match self.evict_one() {
                Some(len) => {
                    released += len;
                    evicted += 1;
                }
                None => break,
            }
        }
        #[cfg(feature = "tracing")]
        if evicted > 0 {
            tracing::info!(
                target_bytes = bytes,
                released_bytes = released,
                evicted,
                held_bytes = self.ledger.held(),
                "mmap cache trimmed"
            );
        }
        let _ = evicted;
        released
    }

    /// Evicts down to `fraction` of the budget (clamped to 0..=1; `0.5` is what a
    /// memory-pressure handler should ask for). Returns the bytes released.
    pub fn evict_to_fraction(&self, fraction: f64) -> u64 {
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        // Exact enough: budgets are far below 2^53 bytes.
        let target = (self.ledger.budget() as f64 * fraction) as u64;
        self.trim_to(target)
    }

    /// Drops the cache's entry for `path`, if any. `true` if one was removed. The map
    /// stays alive (as outstanding) while callers hold it.
    pub fn remove(&self, path: &Path) -> bool {
        let Some(file) = self.index.get(key(path)) else {
            return false;
        };
        self.remove_exact(&file, &self.evictions)
    }

    /// Evicts everything. Returns the bytes released from the cache.
    pub fn clear(&self) -> u64 {
        self.trim_to(0)
    }

    /// Whether `path` has a cached entry (no revalidation, no recency update).
    pub fn contains(&self, path: &Path) -> bool {
        self.index.contains(key(path))
    }

    /// The cached files and their lengths, in no particular order. O(n), allocates.
    pub fn cached_files(&self) -> Vec<(PathBuf, u64)> {
        let mut out = Vec::with_capacity(self.index.len());
        self.index
            .for_each(|f| out.push((f.path().to_path_buf(), f.charge.len())));
        out
    }

    /// The current counters. O(number of lookup shards).
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.sum(),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            remaps: self.remaps.load(Ordering::Relaxed),
            uncached: self.uncached.load(Ordering::Relaxed),
            held_bytes: self.ledger.held(),
            outstanding_bytes: self.ledger.outstanding(),
            entries: self.index.len() as u64,
            budget_bytes: self.ledger.budget(),
        }
    }
}

impl Drop for MmapCache {
    /// Maps still referenced by callers become outstanding in the shared ledger.
    fn drop(&mut self) {
        self.index.for_each(|f| {
            f.charge.release_from_cache();
        });
    }
}

/// A value alone on its cache line (128 bytes covers adjacent-line prefetch).
#[repr(align(128))]
#[derive(Debug)]
struct Padded<T>(T);

/// The lookup key of a path: its bytes as given.
fn key(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves the data valid
/// (a heap or map whose records are checked when used).
fn lock<T>(mutex: &Mutex<T>) -> crate::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn cache_and_maps_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<MmapCache>();
        assert_send_sync::<MappedFile>();
        assert_send_sync::<MmapError>();
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot map files")]
    fn queue_of_replaced_maps_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let cache = MmapCache::new(MmapCacheConfig::default());
        for version in 0..500u32 {
            let tmp = dir.path().join("tmp");
            std::fs::write(&tmp, version.to_le_bytes()).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
            // SAFETY: the file is replaced only by rename, never changed in place.
            let map = unsafe { cache.get(&path) }.unwrap();
            assert_eq!(map[..], version.to_le_bytes());
        }
        assert_eq!(cache.stats().remaps, 499);
        assert_eq!(cache.stats().entries, 1);
        let queued = lock(&cache.queue).len();
        assert!(queued <= 2 + 64, "{queued} queue records for one entry");
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot map files")]
    fn popped_stale_records_are_requeued_with_current_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<_> = (0..3)
            .map(|i| {
                let p = dir.path().join(format!("f{i}"));
                std::fs::write(&p, [i as u8; 100]).unwrap();
                p
            })
            .collect();
        let cache = MmapCache::new(MmapCacheConfig::default().with_budget(300));
        for p in &paths {
            // SAFETY: the test's own files, never changed after being written.
            unsafe { cache.get(p) }.unwrap();
        }
        // Touch f0 and f1 again: their queued records are now stale.
        // SAFETY: as above.
        unsafe { cache.get(&paths[0]) }.unwrap();
        // SAFETY: as above.
        unsafe { cache.get(&paths[1]) }.unwrap();
        assert_eq!(cache.evict_one(), Some(100));
        assert!(!cache.contains(&paths[2]));
        assert_eq!(cache.evict_one(), Some(100));
        assert!(!cache.contains(&paths[0]), "f0 was touched before f1");
        assert!(cache.contains(&paths[1]));
        assert_eq!(lock(&cache.queue).len(), 1);
    }
}
