//! [`Arena`]: the allocation handle shared by thread scopes and [`RequestArena`](crate::RequestArena).

use std::alloc::Layout;
use std::fmt;

use bumpalo::Bump;

use crate::ArenaError;

/// A handle to allocate from a bump arena for as long as `'a`.
///
/// Obtained from [`scope`](crate::scope) (thread arena) or
/// [`RequestArena::arena`](crate::RequestArena::arena). Everything it returns borrows for
/// `'a`, which the borrow checker ends before the arena can be reset, so no reference into
/// the arena outlives a reset.
///
/// Values with a destructor are refused at compile time: a bump arena never runs `Drop`,
/// so a `String` or `Vec` stored in it would leak its heap buffer at every reset.
///
/// ```compile_fail,E0080
/// mm_arena::scope(|arena| {
///     // error: `String` needs `Drop`, the arena would leak its buffer.
///     let _ = arena.alloc(String::from("leak"));
/// });
/// ```
///
/// The handle is neither `Send` nor `Sync` (a `Bump` is single-threaded), so it cannot be
/// handed to another thread, even a scoped one:
///
/// ```compile_fail,E0277
/// mm_arena::scope(|arena| {
///     std::thread::scope(|s| {
///         s.spawn(|| arena.alloc(1u8).map(|_| ()));
///     });
/// });
/// ```
///
/// Every allocation returns `Result`: an arena with an allocation limit returns
/// [`ArenaError::LimitExceeded`] instead of growing past it.
#[derive(Clone, Copy)]
pub struct Arena<'a> {
    bump: &'a Bump,
}

impl<'a> Arena<'a> {
    pub(crate) fn new(bump: &'a Bump) -> Self {
        Self { bump }
    }

    /// Moves `val` into the arena and returns a mutable reference to it.
    ///
    /// Cost: a pointer bump when the current chunk has room; otherwise one new chunk from the
    /// global allocator (twice the previous chunk, so rare after warm-up).
    ///
    /// # Errors
    /// [`ArenaError::LimitExceeded`] if a new chunk would pass the limit,
    /// [`ArenaError::OutOfMemory`] if the system allocator fails.
    #[inline]
    pub fn alloc<T>(&self, val: T) -> Result<&'a mut T, ArenaError> {
        const {
            assert!(
                !std::mem::needs_drop::<T>(),
                "mm-arena never runs Drop: store values without a destructor"
            )
        };
        match self.bump.try_alloc(val) {
            Ok(r) => Ok(r),
            Err(_) => Err(self.failure(size_of::<T>())),
        }
    }

    /// Copies `s` into the arena.
    ///
    /// # Errors
    /// As [`alloc`](Self::alloc).
    #[inline]
    pub fn alloc_str(&self, s: &str) -> Result<&'a mut str, ArenaError> {
        self.bump
            .try_alloc_str(s)
            .map_err(|_| self.failure(s.len()))
    }

    /// Copies the slice `src` into the arena.
    ///
    /// # Errors
    /// As [`alloc`](Self::alloc).
    #[inline]
    pub fn alloc_slice_copy<T: Copy>(&self, src: &[T]) -> Result<&'a mut [T], ArenaError> {
        self.bump
            .try_alloc_slice_copy(src)
            .map_err(|_| self.failure(size_of_val(src)))
    }

    /// Allocates `len` copies of `value`.
    ///
    /// `len` may come from untrusted input: the size is checked for overflow and the
    /// arena's limit bounds it.
    ///
    /// # Errors
    /// [`ArenaError::SizeOverflow`] if `len * size_of::<T>()` overflows, otherwise as
    /// [`alloc`](Self::alloc).
    #[inline]
    pub fn alloc_slice_fill_copy<T: Copy>(
        &self,
        len: usize,
        value: T,
    ) -> Result<&'a mut [T], ArenaError> {
        let bytes = Self::slice_bytes::<T>(len)?;
        self.bump
            .try_alloc_slice_fill_copy(len, value)
            .map_err(|_| self.failure(bytes))
    }

    /// Allocates `len` elements, the `i`-th initialised with `f(i)`.
    ///
    /// # Errors
    /// As [`alloc_slice_fill_copy`](Self::alloc_slice_fill_copy).
    #[inline]
    pub fn alloc_slice_fill_with<T, F>(&self, len: usize, f: F) -> Result<&'a mut [T], ArenaError>
    where
        F: FnMut(usize) -> T,
    {
        const {
            assert!(
                !std::mem::needs_drop::<T>(),
                "mm-arena never runs Drop: store values without a destructor"
            )
        };
        let bytes = Self::slice_bytes::<T>(len)?;
        self.bump
            .try_alloc_slice_fill_with(len, f)
            .map_err(|_| self.failure(bytes))
    }

    /// An empty growable vector in the arena (`bumpalo::collections::Vec`).
    ///
    /// It grows by reallocating inside the arena (the old copy stays until the reset), and
    /// its infallible methods (`push`, `extend`) panic when the arena's limit is hit: where
    /// the size comes from input, call its `try_reserve` first. Element types with a
    /// destructor are refused at compile time, as in [`alloc`](Self::alloc): turned into a
    /// slice with `into_bump_slice`, the elements would never be dropped.
    ///
    /// ```compile_fail,E0080
    /// mm_arena::scope(|arena| {
    ///     // error: `String` needs `Drop`.
    ///     let mut v = arena.vec::<String>();
    ///     v.push(String::from("leak"));
    /// });
    /// ```
    ///
    /// There is deliberately no accessor for the underlying `Bump`: `Bump::alloc` would take
    /// any value, destructor or not, and skip its `Drop` at the reset.
    ///
    /// ```compile_fail,E0599
    /// mm_arena::scope(|arena| {
    ///     // error: no method `bump`: the escape hatch around the `Drop` check is closed.
    ///     let _ = arena.bump().alloc(String::from("leak"));
    /// });
    /// ```
    #[inline]
    pub fn vec<T>(&self) -> bumpalo::collections::Vec<'a, T> {
        const {
            assert!(
                !std::mem::needs_drop::<T>(),
                "mm-arena never runs Drop: store values without a destructor"
            )
        };
        bumpalo::collections::Vec::new_in(self.bump)
    }

    /// A vector in the arena with room for `capacity` elements.
    ///
    /// # Errors
    /// [`ArenaError::SizeOverflow`] if the capacity in bytes overflows, otherwise as
    /// [`alloc`](Self::alloc).
    #[inline]
    pub fn vec_with_capacity<T>(
        &self,
        capacity: usize,
    ) -> Result<bumpalo::collections::Vec<'a, T>, ArenaError> {
        let bytes = Self::slice_bytes::<T>(capacity)?;
        let mut v = self.vec::<T>();
        v.try_reserve_exact(capacity)
            .map_err(|_| self.failure(bytes))?;
        Ok(v)
    }

    /// An empty growable string in the arena (`bumpalo::collections::String`); growth as in
    /// [`vec`](Self::vec).
    #[inline]
    pub fn string(&self) -> bumpalo::collections::String<'a> {
        bumpalo::collections::String::new_in(self.bump)
    }

    /// A string in the arena with room for `capacity` bytes.
    ///
    /// # Errors
    /// As [`alloc`](Self::alloc).
    #[inline]
    pub fn string_with_capacity(
        &self,
        capacity: usize,
    ) -> Result<bumpalo::collections::String<'a>, ArenaError> {
        let bytes = self.vec_with_capacity::<u8>(capacity)?;
        // An empty byte vector is valid UTF-8, so the fallback is never taken.
        Ok(bumpalo::collections::String::from_utf8(bytes).unwrap_or_else(|_| self.string()))
    }

    /// Bytes consumed in the arena so far, including alignment padding and the unused tails
    /// of earlier chunks. O(1).
    pub fn consumed_bytes(&self) -> usize {
        consumed(self.bump)
    }

    /// Bytes of chunks the arena holds from the global allocator. O(1).
    pub fn allocated_bytes(&self) -> usize {
        self.bump.allocated_bytes()
    }

    fn slice_bytes<T>(len: usize) -> Result<usize, ArenaError> {
        Layout::array::<T>(len)
            .map(|l| l.size())
            .map_err(|_| ArenaError::SizeOverflow {
                len,
                elem_size: size_of::<T>(),
            })
    }

    #[cold]
    fn failure(&self, requested: usize) -> ArenaError {
        let allocated = self.bump.allocated_bytes();
        match self.bump.allocation_limit() {
            // With a limit set, bumpalo retries with smaller chunks down to the smallest that
            // fits the request before giving up, so a failure means no chunk fits the limit.
            Some(limit) => ArenaError::LimitExceeded {
                requested,
                allocated,
                limit,
            },
            None => ArenaError::OutOfMemory { requested },
        }
    }
}

/// Bytes consumed: chunk bytes minus the free room left in the current chunk.
pub(crate) fn consumed(bump: &Bump) -> usize {
    bump.allocated_bytes().saturating_sub(bump.chunk_capacity())
}

impl fmt::Debug for Arena<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena")
            .field("allocated_bytes", &self.bump.allocated_bytes())
            .field("consumed_bytes", &consumed(self.bump))
            .field("allocation_limit", &self.bump.allocation_limit())
            .finish()
    }
}
