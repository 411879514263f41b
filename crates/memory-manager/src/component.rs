//! The component interface: how parts built above the facade (a model registry, an
//! embedding cache, conversations, arena pools) plug into one budget, one report and one
//! pressure path without the facade depending on them.

use std::fmt;

use mm_budget::PressureLevel;
use serde::Serialize;

/// A part of a service's memory that the manager charges, reports and tells about pressure.
///
/// Build the part from a [`MemoryManager`](crate::MemoryManager) and register it with
/// [`MemoryManager::register`](crate::MemoryManager::register); the manager keeps only a
/// weak reference, so dropping the part unregisters it (its charge is released at the next
/// sync).
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use memory_manager::{Component, ComponentReading, MemoryConfig, MemoryManager, PressureLevel};
///
/// #[derive(Debug, Default)]
/// struct Scratch { bytes: AtomicU64 }
///
/// impl Component for Scratch {
///     fn name(&self) -> &str { "scratch" }
///     fn reading(&self) -> ComponentReading {
///         ComponentReading::new(self.bytes.load(Ordering::Relaxed))
///     }
///     fn on_pressure(&self, _level: PressureLevel) -> u64 {
///         self.bytes.swap(0, Ordering::Relaxed)
///     }
/// }
///
/// let manager = MemoryManager::new(MemoryConfig::default().with_max_memory(256 << 20))?;
/// let scratch = Arc::new(Scratch::default());
/// manager.register(scratch.clone());
/// scratch.bytes.store(4096, Ordering::Relaxed);
/// let report = manager.report(); // syncs: the 4 KiB are charged to the budget
/// assert!(report.components.iter().any(|c| c.name == "scratch" && c.held_bytes == 4096));
/// assert!(report.budget.used_bytes >= 4096);
/// # Ok::<(), memory_manager::ConfigError>(())
/// ```
///
/// # Rules for implementers
/// * [`reading`](Self::reading) is called under the manager's charge lock: keep it cheap
///   (atomic reads), and never call back into the manager from it.
/// * Never call [`MemoryManager::sync`](crate::MemoryManager::sync) or
///   [`report`](crate::MemoryManager::report) while holding a lock that `reading` or
///   `on_pressure` takes.
pub trait Component: Send + Sync {
    /// The row's name in the report (`models`, `embedding-cache`, `conversations`...).
    fn name(&self) -> &str;

    /// What the part holds now.
    fn reading(&self) -> ComponentReading;

    /// Who charges the held bytes to the budget. Default: the manager, at sync points.
    fn charging(&self) -> Charging {
        Charging::ByManager
    }

    /// Frees what it can for `level` (called for every rising pressure event); returns the
    /// bytes it let go of (an estimate, for the report). Default: nothing.
    fn on_pressure(&self, level: PressureLevel) -> u64 {
        let _ = level;
        0
    }

    /// The models the part holds, for the report's `models` section. Default: none.
    fn models(&self, residency: Residency) -> Vec<ModelReading> {
        let _ = residency;
        Vec::new()
    }
}

/// Who charges a component's held bytes to the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Charging {
    /// The manager resizes one reservation to the held bytes at every sync point.
    #[default]
    ByManager,
    /// The component reserves from the budget itself; the manager only reports.
    BySelf,
}

/// Whether a reading measures the resident pages of mapped models (a `mincore` call per
/// model, proportional to the mapped size in pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Residency {
    /// Leave `resident_bytes` out.
    #[default]
    Skip,
    /// Measure it.
    Measure,
}

/// One reading of a component, filled by the component.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ComponentReading {
    /// Bytes held between uses (idle buffers, entries, indexes, retained chunks).
    pub held_bytes: u64,
    /// The most it may hold by construction, when bounded.
    pub bound_bytes: Option<u64>,
    /// Items held (entries, models, conversations, buffers).
    pub items: u64,
    /// Requests served from what was held.
    pub hits: Option<u64>,
    /// Requests that had to allocate, load or compute.
    pub misses: Option<u64>,
    /// Items dropped to stay within the bound or under pressure.
    pub evictions: Option<u64>,
    /// Highest use seen.
    pub high_water_bytes: Option<u64>,
}

impl ComponentReading {
    /// A reading of `held_bytes` with every other figure absent (set the fields you have).
    pub fn new(held_bytes: u64) -> Self {
        ComponentReading {
            held_bytes,
            ..Self::default()
        }
    }
}

/// Where a model is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ModelState {
    /// Registered, not loaded (or unloaded).
    Registered,
    /// Mapped and parsed.
    Loaded,
    /// The last load failed.
    Failed,
}

impl fmt::Display for ModelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelState::Registered => "registered",
            ModelState::Loaded => "loaded",
            ModelState::Failed => "failed",
        })
    }
}

/// One model, as the report's `models` section shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ModelReading {
    /// Registered name.
    pub name: String,
    /// File path.
    pub path: String,
    /// File size on disk (`None` when it cannot be read).
    pub file_bytes: Option<u64>,
    /// Bytes mapped now (0 when not loaded).
    pub mapped_bytes: u64,
    /// Mapped pages resident in memory, when measured ([`Residency::Measure`]).
    pub resident_bytes: Option<u64>,
    /// Heap of the parsed index (0 when not loaded).
    pub index_heap_bytes: u64,
    /// Tensors in the file (when loaded).
    pub tensors: Option<u64>,
    /// State.
    pub state: ModelState,
    /// Seconds since the model was last asked for (`None`: never).
    pub idle_seconds: Option<f64>,
}

impl ModelReading {
    /// A reading of a registered, unloaded model (set the fields you have).
    pub fn new(name: impl Into<String>, path: impl Into<String>) -> Self {
        ModelReading {
            name: name.into(),
            path: path.into(),
            file_bytes: None,
            mapped_bytes: 0,
            resident_bytes: None,
            index_heap_bytes: 0,
            tensors: None,
            state: ModelState::Registered,
            idle_seconds: None,
        }
    }
}

/// Identifies a registered component, for
/// [`MemoryManager::unregister`](crate::MemoryManager::unregister).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ComponentId(pub(crate) u64);

/// Bytes of `bytes` (a mapped region) resident in memory now, by `mincore(2)`; `None` when
/// the call fails or on platforms without it. Costs one byte of scratch per 4 KiB page,
/// in chunks of at most 64 KiB.
pub fn resident_bytes(bytes: &[u8]) -> Option<u64> {
    resident::measure(bytes)
}

#[cfg(target_os = "linux")]
mod resident {
    pub(super) fn measure(bytes: &[u8]) -> Option<u64> {
        if bytes.is_empty() {
            return Some(0);
        }
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
        if page == 0 {
            return None;
        }
        let start = bytes.as_ptr() as usize;
        let aligned = start - start % page;
        let end = start + bytes.len();
        const CHUNK_PAGES: usize = 64 << 10;
        let mut vec = vec![0u8; CHUNK_PAGES];
        let mut resident = 0u64;
        let mut at = aligned;
        while at < end {
            let len = (end - at).min(CHUNK_PAGES * page);
            let pages = len.div_ceil(page);
            // SAFETY: `[at, at + len)` lies within the pages spanned by `bytes`, a live
            // mapping borrowed for this call (start rounded down to its page), and `vec`
            // has room for one byte per page of that range (`pages <= CHUNK_PAGES`).
            // mincore only writes into `vec`.
            let rc = unsafe { libc::mincore(at as *mut libc::c_void, len, vec.as_mut_ptr()) };
            if rc != 0 {
                return None;
            }
            let in_core = vec[..pages].iter().filter(|b| **b & 1 == 1).count();
            resident += (in_core * page) as u64;
            at += len;
        }
        Some(resident.min(((end - aligned).div_ceil(page) * page) as u64))
    }
}

#[cfg(not(target_os = "linux"))]
mod resident {
    pub(super) fn measure(_bytes: &[u8]) -> Option<u64> {
        None
    }
}
