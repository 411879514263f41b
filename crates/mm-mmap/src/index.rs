//! The cache's lookup index: path bytes to the cached map.
//!
//! A [`DashMap`] normally (sharded read-write locks: a hit takes one shard's read lock); under
//! `cfg(loom)` one loom `Mutex<HashMap>` with the same operations, because DashMap's own
//! locks spin on `std` atomics that loom cannot see (a loom thread preempted while holding a
//! shard would make another spin forever). The cache calls only the operations below, so the
//! loom models in `tests/loom.rs` run the cache's real `get`, `load`, `evict_one` and
//! `remove_exact` over this index.

use std::sync::Arc;

use crate::map::MappedFile;

/// What [`Index::insert_unless`] did.
pub(crate) enum Inserted {
    /// The key was free; the map is in.
    Vacant,
    /// An entry the caller's test accepted was kept; the caller's map was not inserted.
    Kept(Arc<MappedFile>),
    /// Another entry was replaced by the caller's map; here is the old one.
    Replaced(Arc<MappedFile>),
}

#[cfg(not(loom))]
mod imp {
    use dashmap::DashMap;
    use dashmap::mapref::entry::Entry;

    use super::*;

    /// Keyed by the path's bytes: hashing them with foldhash costs a few nanoseconds,
    /// where `Path`'s component-wise `Hash` with SipHash cost about 30 ns per hit.
    pub(crate) struct Index(DashMap<Box<[u8]>, Arc<MappedFile>, foldhash::fast::RandomState>);

    impl Index {
        pub(crate) fn new() -> Self {
            Index(DashMap::with_hasher(foldhash::fast::RandomState::default()))
        }

        pub(crate) fn get(&self, key: &[u8]) -> Option<Arc<MappedFile>> {
            self.0.get(key).map(|r| r.value().clone())
        }

        /// Inserts `file` at `key`, unless the current entry passes `keep` (evaluated under
        /// the entry's lock).
        pub(crate) fn insert_unless(
            &self,
            key: &[u8],
            file: &Arc<MappedFile>,
            keep: impl FnOnce(&Arc<MappedFile>) -> bool,
        ) -> Inserted {
            match self.0.entry(key.into()) {
                Entry::Occupied(mut slot) => {
                    if keep(slot.get()) {
                        return Inserted::Kept(slot.get().clone());
                    }
                    Inserted::Replaced(slot.insert(file.clone()))
                }
                Entry::Vacant(slot) => {
                    slot.insert(file.clone());
                    Inserted::Vacant
                }
            }
        }

        /// Removes the entry at `key` if it is exactly `file`. `true` if it was.
        pub(crate) fn remove_exact(&self, key: &[u8], file: &Arc<MappedFile>) -> bool {
            self.0.remove_if(key, |_, v| Arc::ptr_eq(v, file)).is_some()
        }

        pub(crate) fn contains(&self, key: &[u8]) -> bool {
            self.0.contains_key(key)
        }

        pub(crate) fn len(&self) -> usize {
            self.0.len()
        }

        pub(crate) fn for_each(&self, mut f: impl FnMut(&Arc<MappedFile>)) {
            for entry in self.0.iter() {
                f(entry.value());
            }
        }
    }
}

#[cfg(loom)]
mod imp {
    use std::collections::HashMap;

    use super::*;
    use crate::sync::Mutex;

    /// The loom form: one lock around a `HashMap`, same operations, same atomicity per call.
    pub(crate) struct Index(Mutex<HashMap<Box<[u8]>, Arc<MappedFile>>>);

    impl Index {
        pub(crate) fn new() -> Self {
            Index(Mutex::new(HashMap::new()))
        }

        fn lock(&self) -> crate::sync::MutexGuard<'_, HashMap<Box<[u8]>, Arc<MappedFile>>> {
            self.0.lock().unwrap_or_else(|p| p.into_inner())
        }

        pub(crate) fn get(&self, key: &[u8]) -> Option<Arc<MappedFile>> {
            self.lock().get(key).cloned()
        }

        pub(crate) fn insert_unless(
            &self,
            key: &[u8],
            file: &Arc<MappedFile>,
            keep: impl FnOnce(&Arc<MappedFile>) -> bool,
        ) -> Inserted {
            let mut map = self.lock();
            match map.get(key) {
                Some(current) if keep(current) => Inserted::Kept(current.clone()),
                _ => match map.insert(key.into(), file.clone()) {
                    Some(old) => Inserted::Replaced(old),
                    None => Inserted::Vacant,
                },
            }
        }

        pub(crate) fn remove_exact(&self, key: &[u8], file: &Arc<MappedFile>) -> bool {
            let mut map = self.lock();
            if map.get(key).is_some_and(|v| Arc::ptr_eq(v, file)) {
                map.remove(key);
                return true;
            }
            false
        }

        pub(crate) fn contains(&self, key: &[u8]) -> bool {
            self.lock().contains_key(key)
        }

        pub(crate) fn len(&self) -> usize {
            self.lock().len()
        }

        pub(crate) fn for_each(&self, mut f: impl FnMut(&Arc<MappedFile>)) {
            for v in self.lock().values() {
                f(v);
            }
        }
    }
}

pub(crate) use imp::Index;
