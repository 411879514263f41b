//! [`Generational<T>`]: long-lived objects behind handles that go stale, on `slotmap`.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

use slotmap::{DefaultKey, Key, SlotMap};

use crate::ArenaError;

/// A handle to an object in a [`Generational<T>`]: a slot index and the slot's generation.
///
/// `Copy`, 8 bytes, `Send + Sync` whatever `T` is. A handle whose object was removed is
/// *stale*: every lookup with it returns `None`, even after the slot is reused.
pub struct Handle<T> {
    key: DefaultKey,
    _marker: PhantomData<fn() -> T>,
}

impl<T> Handle<T> {
    /// The handle as a `u64` (slot index and generation), for logs and foreign keys.
    pub fn to_bits(self) -> u64 {
        self.key.data().as_ffi()
    }
}

impl<T> Clone for Handle<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Handle<T> {}
impl<T> PartialEq for Handle<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl<T> Eq for Handle<T> {}
impl<T> Hash for Handle<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}
impl<T> fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle({:?})", self.key.data())
    }
}

/// Counters of a [`Generational`] arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct GenerationalStats {
    /// Live objects.
    pub len: usize,
    /// Slots allocated (live plus free for reuse).
    pub capacity: usize,
    /// Successful inserts so far.
    pub inserts: u64,
    /// Removals so far.
    pub removes: u64,
    /// Approximate bytes of the slot array (capacity times slot size).
    pub slot_bytes: usize,
}

/// A generational arena for long-lived objects (sessions, loaded models).
///
/// Insert returns a [`Handle`]; removing the object bumps the slot's generation, so an old
/// handle gets `None`, never the object that later reuses the slot. Lookups are O(1) (an
/// index and a generation compare). Built on `slotmap::SlotMap` (see `docs/mm-arena.md` for
/// why not the unmaintained `generational-arena`).
///
/// ```
/// use mm_arena::Generational;
///
/// let mut sessions = Generational::new();
/// let old = sessions.insert("alice")?;
/// sessions.remove(old);
/// let new = sessions.insert("bob")?; // likely reuses the slot
/// assert_eq!(sessions.get(old), None);
/// assert_eq!(sessions.get(new), Some(&"bob"));
/// # Ok::<(), mm_arena::ArenaError>(())
/// ```
///
/// What it does not do: it is not `Sync`-mutable (wrap it in a lock to share it), and
/// generations are 32-bit, so after about two billion insert/remove cycles *on one slot*
/// a very old handle could match again (slotmap's documented limit).
pub struct Generational<T> {
    map: SlotMap<DefaultKey, T>,
    max_len: usize,
    inserts: u64,
    removes: u64,
}

impl<T> Default for Generational<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Generational<T> {
    /// An empty arena with no length limit (beyond slotmap's `u32::MAX - 1` slots).
    pub fn new() -> Self {
        Self {
            map: SlotMap::new(),
            max_len: u32::MAX as usize - 1,
            inserts: 0,
            removes: 0,
        }
    }

    /// An empty arena that refuses inserts past `max_len` live objects.
    ///
    /// # Errors
    /// [`ArenaError::ZeroMaxLen`] for 0.
    pub fn with_max_len(max_len: usize) -> Result<Self, ArenaError> {
        if max_len == 0 {
            return Err(ArenaError::ZeroMaxLen);
        }
        Ok(Self {
            max_len: max_len.min(u32::MAX as usize - 1),
            ..Self::new()
        })
    }

    /// Stores `value`, reusing a free slot if there is one. Amortised O(1).
    ///
    /// # Errors
    /// [`ArenaError::Full`] when `max_len` objects are live; `value` is dropped.
    pub fn insert(&mut self, value: T) -> Result<Handle<T>, ArenaError> {
        if self.map.len() >= self.max_len {
            return Err(ArenaError::Full {
                max_len: self.max_len,
            });
        }
        self.inserts += 1;
        Ok(Handle {
            key: self.map.insert(value),
            _marker: PhantomData,
        })
    }

    /// The object behind `handle`, or `None` if it was removed.
    #[inline]
    pub fn get(&self, handle: Handle<T>) -> Option<&T> {
        self.map.get(handle.key)
    }

    /// Mutable access to the object behind `handle`, or `None` if it was removed.
    #[inline]
    pub fn get_mut(&mut self, handle: Handle<T>) -> Option<&mut T> {
        self.map.get_mut(handle.key)
    }

    /// Whether `handle` still names a live object.
    #[inline]
    pub fn contains(&self, handle: Handle<T>) -> bool {
        self.map.contains_key(handle.key)
    }

    /// Removes and returns the object; later lookups with `handle` return `None`.
    pub fn remove(&mut self, handle: Handle<T>) -> Option<T> {
        let removed = self.map.remove(handle.key);
        if removed.is_some() {
            self.removes += 1;
        }
        removed
    }

    /// Keeps only the objects for which `keep` returns true (e.g. evict idle sessions).
    pub fn retain(&mut self, mut keep: impl FnMut(Handle<T>, &mut T) -> bool) {
        let before = self.map.len();
        self.map.retain(|key, value| {
            keep(
                Handle {
                    key,
                    _marker: PhantomData,
                },
                value,
            )
        });
        self.removes += (before - self.map.len()) as u64;
    }

    /// Live objects with their handles, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (Handle<T>, &T)> + '_ {
        self.map.iter().map(|(key, value)| {
            (
                Handle {
                    key,
                    _marker: PhantomData,
                },
                value,
            )
        })
    }

    /// Number of live objects.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no object is live.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Counters and sizes.
    pub fn stats(&self) -> GenerationalStats {
        GenerationalStats {
            len: self.map.len(),
            capacity: self.map.capacity(),
            inserts: self.inserts,
            removes: self.removes,
            // A slot is the value (or a free-list link) plus a 32-bit version.
            slot_bytes: self.map.capacity() * (size_of::<T>().max(4) + 4),
        }
    }
}

impl<T> fmt::Debug for Generational<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generational")
            .field("stats", &self.stats())
            .field("max_len", &self.max_len)
            .finish()
    }
}
