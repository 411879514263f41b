//! A model registry: lazy loading, `Arc` sharing, idle unload, unload on memory pressure.
//!
//! Register models by name and path; the first [`ModelRegistry::get`] maps and parses the
//! file, later ones return the same `Arc<MappedGguf>` to every thread. A model that nobody
//! else holds and that has not been asked for within the idle timeout is dropped by
//! [`ModelRegistry::unload_idle`] (call it from a timer, or let
//! [`ModelRegistry::spawn_reaper`] do so); [`ModelRegistry::handle_pressure`] drops models
//! when a memory budget reports pressure. Every load and unload is reported as a
//! [`RegistryEvent`] to subscribers.
//!
//! What it does not do: it never takes a model away from a caller. Unloading drops the
//! registry's reference; a caller's `Arc` keeps its map alive until it is dropped, so the
//! memory comes back only then. Pressure unloading therefore skips models still in use and
//! says so in its result.
//!
//! Built with [`ModelRegistry::from_manager`], the registry is one of the manager's
//! components: models are mapped through the manager's own mmap cache, the indexes' heap is
//! charged to the manager's budget, the report lists every model (`models` section) and the
//! manager's pressure reaches the registry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use event_listener::{Event, EventListener, Listener};
use memory_manager::{
    Component, ComponentReading, MemoryManager, ModelReading, ModelState, Residency,
};
use mm_budget::{MemoryBudget, PressureLevel, SubscriberId};
use mm_mmap::{Access, MmapCache};

use crate::error::{GgufError, Result};
use crate::mapped::MappedGguf;
use crate::sync::{Mutex, MutexGuard};

/// How a [`ModelRegistry`] behaves. Every value of every setting is valid, so there is
/// nothing to validate.
///
/// ```
/// use std::time::Duration;
/// let config = mm_gguf::RegistryConfig::new()
///     .with_idle_timeout(Duration::from_secs(60))
///     .with_preload(["embedder"]);
/// assert_eq!(config.idle_timeout(), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    idle_timeout: Duration,
    cache: Option<Arc<MmapCache>>,
    preload: Vec<String>,
    read_ahead: ReadAhead,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl RegistryConfig {
    /// The defaults: 5 minutes of idle timeout, the crate's process-wide map cache (or the
    /// manager's, with [`ModelRegistry::from_manager`]), nothing to preload.
    pub const fn new() -> Self {
        RegistryConfig {
            idle_timeout: Duration::from_secs(300),
            cache: None,
            preload: Vec::new(),
            read_ahead: ReadAhead::Skip,
        }
    }

    /// Sets the idle timeout: a loaded model not asked for within it, and not held
    /// elsewhere, is unloaded by the next idle sweep. Default 5 minutes; at least 1 ms.
    pub const fn with_idle_timeout(mut self, t: Duration) -> Self {
        self.idle_timeout = t;
        self
    }

    /// Opens models through `cache`. Default: the crate's process-wide cache.
    pub fn with_cache(mut self, cache: Arc<MmapCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Names of registered models that [`ModelRegistry::spawn_preload`] loads in the
    /// background. Default: none.
    pub fn with_preload<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.preload = names.into_iter().map(Into::into).collect();
        self
    }

    /// Whether preloading also asks the kernel to read the tensor data ahead
    /// (`madvise(WILLNEED)`). Default [`ReadAhead::Skip`].
    pub const fn with_read_ahead(mut self, read_ahead: ReadAhead) -> Self {
        self.read_ahead = read_ahead;
        self
    }

    /// The idle timeout.
    pub const fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The map cache, when set.
    pub fn cache(&self) -> Option<&Arc<MmapCache>> {
        self.cache.as_ref()
    }

    /// The models to preload.
    pub fn preload(&self) -> &[String] {
        &self.preload
    }

    /// The read-ahead choice for preloading.
    pub const fn read_ahead(&self) -> ReadAhead {
        self.read_ahead
    }
}

/// Whether background preloading reads tensor data ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadAhead {
    /// Map and parse only; pages are read on first touch.
    #[default]
    Skip,
    /// Also `madvise(WILLNEED)` the whole file, so the kernel reads it in now.
    WillNeed,
}

/// Why a model was unloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnloadReason {
    /// Not used within the idle timeout.
    Idle,
    /// A memory-pressure signal.
    Pressure(PressureLevel),
    /// [`ModelRegistry::unload`] or re-registration.
    Explicit,
}

/// Something that happened in a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryEvent {
    /// A model was mapped and parsed.
    Loaded {
        /// Its registered name.
        name: String,
        /// Mapped file size.
        mapped_bytes: u64,
        /// Heap of its index.
        heap_bytes: u64,
        /// Time the load took.
        took: Duration,
    },
    /// A load failed (the error is returned to the caller too).
    LoadFailed {
        /// Its registered name.
        name: String,
        /// The error message.
        error: String,
    },
    /// The registry dropped its reference to a model.
    Unloaded {
        /// Its registered name.
        name: String,
        /// Why.
        reason: UnloadReason,
        /// Mapped file size.
        mapped_bytes: u64,
    },
}

/// Figures for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryStats {
    /// Models registered.
    pub registered: usize,
    /// Models loaded now.
    pub loaded: usize,
    /// Bytes of loaded models' maps.
    pub mapped_bytes: u64,
    /// Heap of loaded models' indexes.
    pub heap_bytes: u64,
    /// Loads since creation.
    pub loads: u64,
    /// Unloads since creation.
    pub unloads: u64,
}

#[derive(Debug)]
struct Slot {
    path: PathBuf,
    model: Option<Arc<MappedGguf>>,
    last_used: Instant,
    /// Whether the model was ever asked for (for the report's last use).
    used: bool,
    /// Whether the last load failed.
    failed: bool,
    /// Set while a caller maps and parses the file outside the lock; others wait on it.
    loading: Option<Arc<Event>>,
}

#[derive(Debug, Default)]
struct State {
    slots: HashMap<String, Slot>,
    subscribers: Vec<async_channel::Sender<RegistryEvent>>,
    loads: u64,
    unloads: u64,
}

#[derive(Debug)]
struct Inner {
    config: RegistryConfig,
    state: Mutex<State>,
    /// Figures the manager reads at sync points without taking `state`.
    counters: Counters,
    /// The manager this registry is a component of.
    manager: Option<MemoryManager>,
}

#[derive(Debug, Default)]
struct Counters {
    loaded: AtomicU64,
    index_heap: AtomicU64,
    hits: AtomicU64,
    loads: AtomicU64,
    unloads: AtomicU64,
}

impl Counters {
    fn loaded(&self, m: &MappedGguf) {
        self.loaded.fetch_add(1, Ordering::Relaxed);
        self.loads.fetch_add(1, Ordering::Relaxed);
        self.index_heap
            .fetch_add(m.index_heap_bytes(), Ordering::Relaxed);
    }

    fn unloaded(&self, m: &MappedGguf) {
        self.loaded.fetch_sub(1, Ordering::Relaxed);
        self.unloads.fetch_add(1, Ordering::Relaxed);
        self.index_heap
            .fetch_sub(m.index_heap_bytes(), Ordering::Relaxed);
    }
}

/// Named models loaded on first use and shared as `Arc<MappedGguf>`. Cheap to clone (an
/// `Arc`); `Send + Sync`.
///
/// One mutex guards the table, held only for lookups and bookkeeping. A load (map + header
/// parse) runs outside it, by the first caller that asks for the model; concurrent first
/// uses of that model wait for that load (single flight) instead of loading it again, and
/// uses of other models are not held up. [`get`](Self::get) waits by blocking the thread;
/// [`get_async`](Self::get_async) waits as a future, on any executor.
#[derive(Debug, Clone)]
pub struct ModelRegistry {
    inner: Arc<Inner>,
}

impl Default for ModelRegistry {
    fn default() -> Self {
        Self::new(RegistryConfig::default())
    }
}

impl ModelRegistry {
    /// An empty registry on its own (or the configured) map cache, charged to nothing.
    pub fn new(config: RegistryConfig) -> Self {
        Self::build(config, None)
    }

    /// An empty registry that is a component of `manager`: models are mapped through the
    /// manager's mmap cache, their index heap is charged to its budget, its report lists
    /// them (`models`), and its pressure events unload them (see
    /// [`handle_pressure`](Self::handle_pressure)). A cache set in `config` is replaced by
    /// the manager's.
    ///
    /// ```
    /// use memory_manager::{MemoryConfig, MemoryManager};
    /// use mm_gguf::{ModelRegistry, RegistryConfig};
    ///
    /// let manager = MemoryManager::new(MemoryConfig::new().with_max_memory(64 << 20))?;
    /// let registry = ModelRegistry::from_manager(&manager, RegistryConfig::new());
    /// assert!(manager.report().components.iter().any(|c| c.name == "models"));
    /// # drop(registry);
    /// # Ok::<(), memory_manager::ConfigError>(())
    /// ```
    pub fn from_manager(manager: &MemoryManager, config: RegistryConfig) -> Self {
        let config = config.with_cache(Arc::clone(manager.mmap_cache()));
        let registry = Self::build(config, Some(manager.clone()));
        manager.register(Arc::clone(&registry.inner) as Arc<dyn Component>);
        registry
    }

    fn build(config: RegistryConfig, manager: Option<MemoryManager>) -> Self {
        ModelRegistry {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State::default()),
                counters: Counters::default(),
                manager,
            }),
        }
    }

    /// Brings the manager's charges up to date (never called under the registry's lock).
    fn sync_manager(&self) {
        if let Some(m) = &self.inner.manager {
            m.sync();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock()
    }

    /// Registers `name` for the file at `path` (not opened until first use). Re-registering
    /// a name unloads the old model.
    ///
    /// # Safety
    /// Models are mapped ([`MappedGguf::open`]): the file at `path` must not be modified in
    /// place or truncated while a model loaded from it lives (replace it by renaming a new
    /// file over the path). Reading a model whose file was truncated raises `SIGBUS`.
    pub unsafe fn register(&self, name: impl Into<String>, path: impl AsRef<Path>) {
        let name = name.into();
        let mut st = self.lock();
        let old = st.slots.insert(
            name.clone(),
            Slot {
                path: path.as_ref().to_path_buf(),
                model: None,
                last_used: Instant::now(),
                used: false,
                failed: false,
                loading: None,
            },
        );
        if let Some((m, last_used)) = old.and_then(|s| Some((s.model?, s.last_used))) {
            trace_unload(&name, UnloadReason::Explicit, m.mapped_bytes(), last_used);
            self.inner.counters.unloaded(&m);
            st.unloads += 1;
            emit(
                &mut st,
                RegistryEvent::Unloaded {
                    name,
                    reason: UnloadReason::Explicit,
                    mapped_bytes: m.mapped_bytes(),
                },
            );
            drop(st);
            drop(m);
            self.sync_manager();
        }
    }

    /// The model `name`, loading it on first use. O(1) once loaded (a lookup under the
    /// registry's lock and an `Arc` clone).
    ///
    /// **Blocking.** The first use maps the file and parses its header and index on the
    /// calling thread: measured at 2.3 ms for Gemma 3 270M Q4_K_M (253 MB, 236 tensors,
    /// 6.5 MB of metadata) on a loaded 2-core machine, against 75 ns for a loaded model
    /// (`docs/benchmarks.md`, "The async request path"). The walk over the metadata
    /// dominates; tensor data is not read, so the cost does not grow with the file size.
    /// A call that finds another thread or task loading the model blocks until that load
    /// ends. In async code, use
    /// [`get_async`](Self::get_async), preload ([`spawn_preload`](Self::spawn_preload)), or
    /// run the first `get` where blocking is allowed (`spawn_blocking`).
    ///
    /// # Errors
    /// [`GgufError::NotFound`] for an unregistered name; any error of
    /// [`MappedGguf::open`] on load (reported as [`RegistryEvent::LoadFailed`] too; the
    /// next `get` tries again). A caller that waited for a load that failed tries the load
    /// itself.
    pub fn get(&self, name: &str) -> Result<Arc<MappedGguf>> {
        loop {
            match self.begin(name)? {
                Begin::Ready(model) => return Ok(model),
                Begin::Wait(listener) => listener.wait(),
                Begin::Load(ticket) => return self.load(name, ticket),
            }
        }
    }

    /// As [`get`](Self::get), waiting as a future: when another thread or task is loading
    /// the model, the returned future is pending (it never blocks the thread) until that
    /// load ends. Runtime-agnostic (`event-listener`), and cancel-safe: dropping it while
    /// it waits changes nothing. A load it starts itself (nobody is loading, the model is
    /// not loaded) still runs inside its `poll`, blocking the worker for the map and parse;
    /// preload models or do the first `get` on a blocking thread where that matters.
    ///
    /// ```
    /// # fn demo(registry: mm_gguf::ModelRegistry) -> impl std::future::Future<Output = ()> + Send {
    /// async move {
    ///     // Many requests may arrive while the model is being loaded: one loads it,
    ///     // the others wait here without holding a thread.
    ///     if let Ok(model) = registry.get_async("embedder").await {
    ///         println!("{} tensors", model.gguf().n_tensors());
    ///     }
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn get_async(&self, name: &str) -> Result<Arc<MappedGguf>> {
        loop {
            match self.begin(name)? {
                Begin::Ready(model) => return Ok(model),
                Begin::Wait(listener) => listener.await,
                Begin::Load(ticket) => return self.load(name, ticket),
            }
        }
    }

    /// Looks `name` up under the lock: loaded, being loaded by someone else (a listener
    /// registered under the lock, so the end of that load cannot be missed), or ours to
    /// load (marked as loading before the lock is released).
    fn begin(&self, name: &str) -> Result<Begin> {
        let mut st = self.lock();
        let slot = st.slots.get_mut(name).ok_or_else(|| GgufError::NotFound {
            what: "model",
            name: name.into(),
        })?;
        slot.last_used = Instant::now();
        slot.used = true;
        if let Some(m) = &slot.model {
            self.inner.counters.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Begin::Ready(Arc::clone(m)));
        }
        if let Some(done) = &slot.loading {
            return Ok(Begin::Wait(done.listen()));
        }
        let done = Arc::new(Event::new());
        slot.loading = Some(Arc::clone(&done));
        Ok(Begin::Load(LoadTicket {
            inner: Arc::clone(&self.inner),
            name: name.to_owned(),
            path: slot.path.clone(),
            done,
            cleared: false,
        }))
    }

    /// Maps and parses the file outside the lock, then publishes the outcome and wakes
    /// every waiter. The ticket's drop clears the loading mark even if this unwinds.
    fn load(&self, name: &str, mut ticket: LoadTicket) -> Result<Arc<MappedGguf>> {
        // Events of the load (the mmap cache's evictions to make room) nest under it.
        let _span = tracing::info_span!("model_load", model = name, path = %ticket.path.display())
            .entered();
        let t0 = Instant::now();
        // SAFETY: `register`'s caller promised the file stays unchanged while mapped.
        let loaded = unsafe {
            match &self.inner.config.cache {
                Some(c) => MappedGguf::open_in(c, &ticket.path),
                None => MappedGguf::open(&ticket.path),
            }
        };
        let took = t0.elapsed();
        let mut st = self.lock();
        // The slot is ours only if it is still the one we marked (re-registration or a
        // removal replaces it); a model loaded for a replaced slot goes to this caller only.
        // The mark is cleared first, under this lock, so nothing below can leave it set.
        let mut ours = st.slots.get_mut(name).filter(|slot| {
            slot.loading
                .as_ref()
                .is_some_and(|d| Arc::ptr_eq(d, &ticket.done))
        });
        if let Some(slot) = ours.as_deref_mut() {
            slot.loading = None;
        }
        ticket.cleared = true;
        let outcome = match loaded {
            Ok(m) => {
                let m = Arc::new(m);
                tracing::info!(
                    model = name,
                    mapped_bytes = m.mapped_bytes(),
                    index_heap_bytes = m.index_heap_bytes(),
                    took_ms = took.as_secs_f64() * 1e3,
                    "model loaded"
                );
                if let Some(slot) = ours {
                    slot.model = Some(Arc::clone(&m));
                    slot.failed = false;
                    self.inner.counters.loaded(&m);
                    st.loads += 1;
                    let ev = RegistryEvent::Loaded {
                        name: name.into(),
                        mapped_bytes: m.mapped_bytes(),
                        heap_bytes: m.index_heap_bytes(),
                        took,
                    };
                    emit(&mut st, ev);
                }
                Ok(m)
            }
            Err(e) => {
                tracing::warn!(model = name, error = %e, took_ms = took.as_secs_f64() * 1e3, "model load failed");
                if let Some(slot) = ours {
                    slot.failed = true;
                }
                emit(
                    &mut st,
                    RegistryEvent::LoadFailed {
                        name: name.into(),
                        error: e.to_string(),
                    },
                );
                Err(e)
            }
        };
        drop(st);
        drop(ticket); // wakes the waiters
        if outcome.is_ok() {
            self.sync_manager();
        }
        outcome
    }

    /// Whether `name` is loaded now.
    pub fn is_loaded(&self, name: &str) -> bool {
        self.lock()
            .slots
            .get(name)
            .is_some_and(|s| s.model.is_some())
    }

    /// Drops the registry's reference to `name`; true if it was loaded.
    pub fn unload(&self, name: &str) -> bool {
        let mut st = self.lock();
        let Some((m, last_used)) = st
            .slots
            .get_mut(name)
            .and_then(|s| Some((s.model.take()?, s.last_used)))
        else {
            return false;
        };
        trace_unload(name, UnloadReason::Explicit, m.mapped_bytes(), last_used);
        self.inner.counters.unloaded(&m);
        st.unloads += 1;
        emit(
            &mut st,
            RegistryEvent::Unloaded {
                name: name.into(),
                reason: UnloadReason::Explicit,
                mapped_bytes: m.mapped_bytes(),
            },
        );
        drop(st);
        drop(m);
        self.sync_manager();
        true
    }

    /// Unloads models idle for at least the timeout as of now; returns how many.
    pub fn unload_idle(&self) -> usize {
        self.unload_idle_at(Instant::now())
    }

    /// Unloads models whose last use is at least the idle timeout before `now` and that
    /// no one else holds. Taking the time as an argument makes the policy testable.
    pub fn unload_idle_at(&self, now: Instant) -> usize {
        let timeout = self.inner.config.idle_timeout;
        self.inner
            .unload_where(UnloadReason::Idle, |s| {
                now.saturating_duration_since(s.last_used) >= timeout
            })
            .0
    }

    /// Reacts to memory pressure: at `Critical`, unloads every model no one else holds; at
    /// `Warning`, those idle for at least half the idle timeout; at `Normal`, nothing.
    /// Returns how many were unloaded.
    pub fn handle_pressure(&self, level: PressureLevel) -> usize {
        self.inner.release_for(level).0
    }

    /// A channel of every later [`RegistryEvent`], usable from any async runtime
    /// (`recv().await`) or a plain thread (`recv_blocking`). Events are sent without
    /// blocking (the channel is unbounded: loads and unloads are rare); a dropped receiver
    /// is forgotten at the next event.
    pub fn subscribe(&self) -> RegistryEvents {
        let (tx, rx) = async_channel::unbounded();
        self.lock().subscribers.push(tx);
        RegistryEvents { rx }
    }

    /// Unloads models whenever `budget` reports rising pressure (see
    /// [`handle_pressure`](Self::handle_pressure)). The subscription holds only a weak
    /// reference to the registry; remove it with `budget.unsubscribe(id)`.
    ///
    /// The handler runs on the thread whose reservation crossed the threshold; it takes the
    /// registry's lock, so do not reserve from that budget while holding a registry lock.
    pub fn attach_budget(&self, budget: &MemoryBudget) -> SubscriberId {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        budget.subscribe(move |ev| {
            if ev.is_rising()
                && let Some(inner) = weak.upgrade()
            {
                ModelRegistry { inner }.handle_pressure(ev.level);
            }
        })
    }

    /// A pressure handler for any hook that reports a [`PressureLevel`], such as the
    /// `memory-manager` facade's `on_pressure`; it returns the mapped bytes the registry let
    /// go of (an estimate of what is freed: other holders of a map keep it alive). Holds a
    /// weak reference to the registry.
    ///
    /// ```
    /// # use mm_gguf::{ModelRegistry, PressureLevel};
    /// let registry = ModelRegistry::default();
    /// let hook = registry.pressure_hook();
    /// // e.g. manager.on_pressure("gguf-models", PressureLevel::Warning, move |ctx| hook(ctx.level));
    /// assert_eq!(hook(PressureLevel::Critical), 0); // nothing loaded yet
    /// ```
    pub fn pressure_hook(&self) -> impl Fn(PressureLevel) -> u64 + Send + Sync + 'static {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        move |level| weak.upgrade().map_or(0, |inner| inner.release_for(level).1)
    }

    /// Starts a thread that calls [`unload_idle`](Self::unload_idle) every `interval`; it
    /// stops when the returned handle is dropped (or the registry is gone).
    pub fn spawn_reaper(&self, interval: Duration) -> Reaper {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let (stop, stopped) = channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mm-gguf-reaper".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(interval)
                {
                    let Some(inner) = weak.upgrade() else { break };
                    ModelRegistry { inner }.unload_idle();
                }
            })
            .ok();
        Reaper {
            stop: Some(stop),
            thread,
        }
    }

    /// Loads the configured preload list ([`RegistryConfig::with_preload`]) on a thread
    /// named `mm-gguf-preload`, so a first request does not pay for the map and parse (and,
    /// with [`ReadAhead::WillNeed`], for reading the pages). Join the handle for the
    /// outcome of each model; dropping it lets the thread finish on its own.
    pub fn spawn_preload(&self) -> Preload {
        let registry = self.clone();
        let names = self.inner.config.preload.clone();
        let read_ahead = self.inner.config.read_ahead;
        let thread = std::thread::Builder::new()
            .name("mm-gguf-preload".into())
            .spawn(move || {
                names
                    .into_iter()
                    .map(|name| {
                        let outcome = registry.get(&name).and_then(|m| match read_ahead {
                            ReadAhead::Skip => Ok(()),
                            ReadAhead::WillNeed => m.advise(Access::WillNeed),
                        });
                        (name, outcome)
                    })
                    .collect()
            });
        Preload {
            thread: thread.map_err(|source| GgufError::Io { path: None, source }),
        }
    }

    /// Current figures.
    pub fn stats(&self) -> RegistryStats {
        let st = self.lock();
        let loaded: Vec<&Arc<MappedGguf>> =
            st.slots.values().filter_map(|s| s.model.as_ref()).collect();
        RegistryStats {
            registered: st.slots.len(),
            loaded: loaded.len(),
            mapped_bytes: loaded.iter().map(|m| m.mapped_bytes()).sum(),
            heap_bytes: loaded.iter().map(|m| m.index_heap_bytes()).sum(),
            loads: st.loads,
            unloads: st.unloads,
        }
    }
}

/// The `tracing` event of an unload: what went, why, and how long it had been idle.
fn trace_unload(name: &str, reason: UnloadReason, mapped_bytes: u64, last_used: Instant) {
    let reason = match reason {
        UnloadReason::Idle => "idle",
        UnloadReason::Pressure(PressureLevel::Critical) => "critical pressure",
        UnloadReason::Pressure(_) => "pressure",
        UnloadReason::Explicit => "explicit",
    };
    tracing::info!(
        model = name,
        reason,
        mapped_bytes,
        idle_s = last_used.elapsed().as_secs_f64(),
        "model unloaded"
    );
}

fn emit(st: &mut State, ev: RegistryEvent) {
    st.subscribers.retain(|tx| tx.try_send(ev.clone()).is_ok());
}

/// What [`ModelRegistry::begin`] found.
enum Begin {
    Ready(Arc<MappedGguf>),
    Wait(EventListener),
    Load(LoadTicket),
}

/// The right to load one model: the path to map and the event its waiters listen on.
/// Dropping it (after the load, or while unwinding) clears a loading mark that is still
/// set, then wakes every waiter, which looks again.
struct LoadTicket {
    inner: Arc<Inner>,
    name: String,
    path: PathBuf,
    done: Arc<Event>,
    /// Whether the load cleared the mark itself (then the drop need not lock).
    cleared: bool,
}

impl Drop for LoadTicket {
    fn drop(&mut self) {
        if !self.cleared {
            let mut st = self.inner.lock();
            if let Some(slot) = st.slots.get_mut(&self.name)
                && slot
                    .loading
                    .as_ref()
                    .is_some_and(|d| Arc::ptr_eq(d, &self.done))
            {
                slot.loading = None;
            }
        }
        self.done.notify(usize::MAX);
    }
}

/// Registry events from [`ModelRegistry::subscribe`]: a runtime-agnostic channel.
#[derive(Debug, Clone)]
pub struct RegistryEvents {
    rx: async_channel::Receiver<RegistryEvent>,
}

impl RegistryEvents {
    /// The next event, waiting without blocking a thread (any executor). `None` once the
    /// registry is gone.
    pub async fn recv(&self) -> Option<RegistryEvent> {
        self.rx.recv().await.ok()
    }

    /// The next event, blocking this thread. `None` once the registry is gone.
    pub fn recv_blocking(&self) -> Option<RegistryEvent> {
        self.rx.recv_blocking().ok()
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Option<RegistryEvent> {
        self.rx.try_recv().ok()
    }
}

/// Each preloaded model's name with its outcome.
type PreloadOutcome = Vec<(String, Result<()>)>;

/// The background preload started by [`ModelRegistry::spawn_preload`].
#[derive(Debug)]
pub struct Preload {
    thread: std::result::Result<std::thread::JoinHandle<PreloadOutcome>, GgufError>,
}

impl Preload {
    /// Waits for the preload; returns each model's name with its outcome.
    ///
    /// # Errors
    /// [`GgufError::Io`] when the thread could not be started or panicked.
    pub fn join(self) -> Result<PreloadOutcome> {
        self.thread?.join().map_err(|_| GgufError::Io {
            path: None,
            source: std::io::Error::other("the preload thread panicked"),
        })
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the table consistent (every mutation is
        // a single insert/remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `handle_pressure`'s work: (models unloaded, their mapped bytes).
    fn release_for(&self, level: PressureLevel) -> (usize, u64) {
        let now = Instant::now();
        let half = self.config.idle_timeout / 2;
        match level {
            PressureLevel::Normal => (0, 0),
            PressureLevel::Warning => self.unload_where(UnloadReason::Pressure(level), |s| {
                now.saturating_duration_since(s.last_used) >= half
            }),
            PressureLevel::Critical => self.unload_where(UnloadReason::Pressure(level), |_| true),
        }
    }

    fn unload_where(&self, reason: UnloadReason, pick: impl Fn(&Slot) -> bool) -> (usize, u64) {
        let mut st = self.lock();
        let mut dropped = Vec::new();
        for (name, slot) in st.slots.iter_mut() {
            let unused = slot
                .model
                .as_ref()
                .is_some_and(|m| Arc::strong_count(m) == 1);
            if unused
                && pick(slot)
                && let Some(m) = slot.model.take()
            {
                trace_unload(name, reason, m.mapped_bytes(), slot.last_used);
                self.counters.unloaded(&m);
                dropped.push((name.clone(), m.mapped_bytes()));
            }
        }
        st.unloads += dropped.len() as u64;
        let n = dropped.len();
        let bytes = dropped.iter().map(|(_, b)| b).sum();
        for (name, mapped_bytes) in dropped {
            emit(
                &mut st,
                RegistryEvent::Unloaded {
                    name,
                    reason,
                    mapped_bytes,
                },
            );
        }
        drop(st);
        // Pressure unloads run inside the manager's own sync, which repeats by itself.
        if n > 0
            && !matches!(reason, UnloadReason::Pressure(_))
            && let Some(m) = &self.manager
        {
            m.sync();
        }
        (n, bytes)
    }
}

impl Component for Inner {
    fn name(&self) -> &str {
        "models"
    }

    fn reading(&self) -> ComponentReading {
        let c = &self.counters;
        let mut r = ComponentReading::new(c.index_heap.load(Ordering::Relaxed));
        r.items = c.loaded.load(Ordering::Relaxed);
        r.hits = Some(c.hits.load(Ordering::Relaxed));
        r.misses = Some(c.loads.load(Ordering::Relaxed));
        r.evictions = Some(c.unloads.load(Ordering::Relaxed));
        r
    }

    fn on_pressure(&self, level: PressureLevel) -> u64 {
        self.release_for(level).1
    }

    fn models(&self, residency: Residency) -> Vec<ModelReading> {
        let st = self.lock();
        let now = Instant::now();
        let mut rows: Vec<ModelReading> = st
            .slots
            .iter()
            .map(|(name, slot)| {
                let mut r = ModelReading::new(name.clone(), slot.path.display().to_string());
                r.file_bytes = std::fs::metadata(&slot.path).ok().map(|m| m.len());
                r.idle_seconds = slot
                    .used
                    .then(|| now.saturating_duration_since(slot.last_used).as_secs_f64());
                r.state = if slot.failed {
                    ModelState::Failed
                } else {
                    ModelState::Registered
                };
                if let Some(m) = &slot.model {
                    r.state = ModelState::Loaded;
                    r.mapped_bytes = m.mapped_bytes();
                    r.index_heap_bytes = m.index_heap_bytes();
                    r.tensors = Some(m.gguf().n_tensors() as u64);
                    if residency == Residency::Measure {
                        r.resident_bytes = memory_manager::resident_bytes(m.file().as_bytes());
                    }
                }
                r
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows
    }
}

/// Stops the idle-unload thread started by [`ModelRegistry::spawn_reaper`] when dropped.
#[derive(Debug)]
pub struct Reaper {
    stop: Option<Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
