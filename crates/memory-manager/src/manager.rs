//! [`MemoryManager`]: the composition of the budget, pools, arenas, interner and mmap cache.

use std::cell::Cell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use mm_arena::Arena;
use mm_budget::{MemoryBudget, PressureEvent, PressureLevel, Reservation, SubscriberId};
use mm_intern::{Interner, InternerConfig};
use mm_mmap::{MappedFile, MmapCache, MmapCacheConfig};
use mm_pool::bytes::{Bytes, BytesMut};
use mm_pool::{BufferPool, ObjectPool, PoolStats, PooledBuffer};

use crate::component::{Charging, Component, ComponentId, ComponentReading, Residency};
use crate::config::{MemoryConfig, PressureDelivery};
use crate::error::{ConfigError, MemoryError};
use crate::gate::ChargeGate;
use crate::owned::ArenaPart;
use crate::report::{MemoryReport, Readings};

/// Gives every manager a distinct id, so a thread knows whether its arena was configured by
/// the manager it is serving now.
static NEXT_MANAGER_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// Id of the manager that last configured this thread's arena (0: none).
    static ARENA_CONFIGURED_BY: Cell<u64> = const { Cell::new(0) };
}

/// One place to get bounded, accounted memory from: a budget with pressure handling, a
/// buffer pool, request arenas, an interner and an mmap cache, created lazily.
///
/// Cloning is cheap (an `Arc`); clones share everything. `Send + Sync`.
///
/// # What is charged to the budget
/// * Buffers handed out by [`buffer`](Self::buffer) are charged while in use (a request that
///   would pass the hard limit fails with [`MemoryError::Budget`]).
/// * Memory the components *hold* between uses (idle pooled buffers and objects, the
///   interner's storage, cached maps, the arenas' retained chunks) is charged at sync points:
///   [`sync`](Self::sync), [`report`](Self::report), [`map`](Self::map) and after pressure
///   handlers ran. Between two sync points that figure may lag by what changed since.
/// * The thread arenas behind [`scope`](Self::scope) belong to the process, not to one
///   manager: one per thread, shared by every manager and by direct `mm_arena::scope` calls.
///   Their retained chunks are charged, as one process-wide figure, to the budget of every
///   manager that syncs, so a process with two managers counts them in both budgets. A
///   manager whose arena memory must be its own alone uses
///   [`request_arena`](Self::request_arena): those arenas come from the manager's own pool
///   and are charged to it only.
///
/// # Pressure
/// Crossing the warning threshold runs the handlers registered for
/// [`PressureLevel::Warning`]: built in, trimming the buffer and object pools and asking the
/// thread arenas to drop their retained chunks. Crossing the critical threshold runs those
/// and the critical ones: built in, evicting the mmap cache down to half its budget.
/// [`on_pressure`](Self::on_pressure) adds more (the GGUF model registry unloads idle
/// models this way). Handlers run on the thread whose reservation crossed the threshold,
/// with no lock of the manager or the budget held, so they may free memory charged to the
/// same budget.
#[derive(Clone)]
pub struct MemoryManager {
    inner: Arc<Inner>,
}

type HandlerFn = dyn Fn(&PressureContext<'_>) -> u64 + Send + Sync;

struct Handler {
    id: HandlerId,
    name: String,
    min_level: PressureLevel,
    run: Arc<HandlerFn>,
}

/// Identifies a registered pressure handler, for [`MemoryManager::remove_pressure_handler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandlerId(u64);

/// What a pressure handler is told.
#[derive(Debug)]
pub struct PressureContext<'a> {
    /// The level reached.
    pub level: PressureLevel,
    /// The budget's figures when the level changed.
    pub event: &'a PressureEvent,
    /// The manager, to trim or unload through.
    pub manager: &'a MemoryManager,
}

/// Type-erased view of a registered object pool, for trimming and the report.
trait TrimPool: Send + Sync {
    fn trim(&self) -> usize;
    fn stats(&self) -> PoolStats;
}

impl<T: Send + 'static> TrimPool for ObjectPool<T> {
    fn trim(&self) -> usize {
        ObjectPool::trim(self)
    }
    fn stats(&self) -> PoolStats {
        ObjectPool::stats(self)
    }
}

/// The reservations that charge held (idle) memory of each component to the budget.
#[derive(Default)]
struct Charges {
    buffers: Option<Reservation>,
    objects: Option<Reservation>,
    interner: Option<Reservation>,
    mmap: Option<Reservation>,
    arenas: Option<Reservation>,
    /// One per registered component charged by the manager, by component id.
    parts: Vec<(u64, Option<Reservation>)>,
}

/// A registered component: the manager holds it weakly.
struct Registered {
    id: u64,
    part: Weak<dyn Component>,
}

struct Inner {
    id: u64,
    config: MemoryConfig,
    /// The mmap cache's budget: the setting, or derived from the limit.
    mmap_budget: u64,
    budget: MemoryBudget,
    buffers: OnceLock<BufferPool>,
    interner: OnceLock<Arc<Interner>>,
    mmap: OnceLock<Arc<MmapCache>>,
    object_pools: Mutex<Vec<(String, Arc<dyn TrimPool>)>>,
    components: Mutex<Vec<Registered>>,
    next_component: AtomicU64,
    charges: ChargeGate<Charges>,
    handlers: Mutex<Vec<Handler>>,
    next_handler: AtomicU64,
    handler_runs: AtomicU64,
    handler_panics: AtomicU64,
    freed_by_handlers: AtomicU64,
    subscriber: OnceLock<SubscriberId>,
    /// The queue of the `mm-pressure` thread (thread delivery), started on the first event.
    delivery: OnceLock<Option<std::sync::mpsc::Sender<PressureEvent>>>,
    /// Channels of [`MemoryManager::subscribe`].
    listeners: Mutex<Vec<async_channel::Sender<PressureEvent>>>,
    dropped_events: AtomicU64,
    heap_released: AtomicU64,
    /// The arena pool, registered as the `request-arenas` component on the first
    /// [`MemoryManager::request_arena`].
    arena_part: OnceLock<Arc<ArenaPart>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(id) = self.subscriber.get() {
            self.budget.unsubscribe(*id);
        }
    }
}

impl fmt::Debug for MemoryManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryManager")
            .field("limit", &self.inner.budget.limit())
            .field("used", &self.inner.budget.used())
            .field("buffers", &self.inner.buffers.get().is_some())
            .field("interner", &self.inner.interner.get().is_some())
            .field("mmap", &self.inner.mmap.get().is_some())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves the data consistent (each critical
    // section is a single push, retain or resize), so poisoning is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryManager {
    /// A manager for `config` (validated). Only the budget is created now; every other
    /// component is created on first use.
    ///
    /// # Errors
    /// Any [`ConfigError`]; [`ConfigError::NoSystemLimit`] when no limit is configured and
    /// none can be read from the system.
    pub fn new(config: MemoryConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let limit = match config.max_memory_bytes() {
            Some(limit) => limit,
            None => mm_budget::sys::default_limit()
                .map_err(|source| ConfigError::NoSystemLimit { source })?,
        };
        config.check_within(limit)?;
        let mmap_budget = config.mmap_cache_bytes_for(limit);
        let budget =
            MemoryBudget::new(config.budget_config(limit)).map_err(|e| ConfigError::Invalid {
                field: "max_memory",
                value: limit.to_string(),
                reason: e.to_string(),
            })?;
        let inner = Arc::new(Inner {
            id: NEXT_MANAGER_ID.fetch_add(1, Ordering::Relaxed),
            config,
            mmap_budget,
            budget,
            buffers: OnceLock::new(),
            interner: OnceLock::new(),
            mmap: OnceLock::new(),
            object_pools: Mutex::new(Vec::new()),
            components: Mutex::new(Vec::new()),
            next_component: AtomicU64::new(1),
            charges: ChargeGate::new(Charges::default()),
            handlers: Mutex::new(Vec::new()),
            next_handler: AtomicU64::new(1),
            handler_runs: AtomicU64::new(0),
            handler_panics: AtomicU64::new(0),
            delivery: OnceLock::new(),
            listeners: Mutex::new(Vec::new()),
            dropped_events: AtomicU64::new(0),
            heap_released: AtomicU64::new(0),
            arena_part: OnceLock::new(),
            freed_by_handlers: AtomicU64::new(0),
            subscriber: OnceLock::new(),
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        let id = inner.budget.subscribe(move |event| {
            if let Some(inner) = weak.upgrade() {
                MemoryManager { inner }.deliver(event);
            }
        });
        let _ = inner.subscriber.set(id);
        let manager = MemoryManager { inner };
        manager.register_builtin_handlers();
        Ok(manager)
    }

    /// A manager built from [`MemoryConfig::from_env`].
    ///
    /// # Errors
    /// As [`MemoryConfig::from_env`] and [`new`](Self::new).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::new(MemoryConfig::from_env()?)
    }

    /// The configuration this manager was built from.
    pub fn config(&self) -> &MemoryConfig {
        &self.inner.config
    }

    /// The memory budget everything is charged to. Reserve from it for memory of your own.
    pub fn budget(&self) -> &MemoryBudget {
        &self.inner.budget
    }

    /// Runs `f` in a request scope of this thread's bump arena: everything allocated from the
    /// arena is freed at once when the outermost scope ends, and the arena keeps its chunk,
    /// so a request that fits makes no heap allocation after warm-up.
    ///
    /// The first scope a thread runs for this manager applies the manager's arena settings
    /// (initial capacity, per-request limit) to the thread's arena. Scopes nest.
    pub fn scope<R>(&self, f: impl for<'a> FnOnce(&Arena<'a>) -> R) -> R {
        let id = self.inner.id;
        if ARENA_CONFIGURED_BY.get() != id && !mm_arena::in_scope() {
            // Settings were validated with the config; an error here means the thread's
            // arena is inside a scope of another manager or short of memory, and the arena
            // then keeps its previous settings, which is safe.
            if mm_arena::configure_thread(&self.inner.config.arena_config()).is_ok() {
                ARENA_CONFIGURED_BY.set(id);
            }
        }
        mm_arena::scope(f)
    }

    /// A request arena on loan from the manager's arena pool, with the manager's arena
    /// settings (initial capacity, per-request limit): `Send + 'static`, so it can live
    /// across `.await`s (unlike [`scope`](Self::scope)), with the allocation methods on the
    /// guard. Dropping it resets the arena and returns it to the pool (up to
    /// [`ARENA_POOL_MAX_IDLE`](crate::ARENA_POOL_MAX_IDLE) idle arenas), so the next request
    /// gets it warm: a request that fits its retained chunk makes no heap allocation, here
    /// or in the guard's methods.
    ///
    /// The pool is the `request-arenas` component: its chunks (idle or on loan) are charged
    /// to the budget, it is trimmed under pressure and by [`trim`](Self::trim). A cold get
    /// (no idle arena) allocates the initial chunk and syncs the charges. It never refuses
    /// for lack of budget (the chunks exist once made, so they are charged even past the
    /// limit, like all held memory): admit requests by memory with
    /// [`MemoryBudget::reserve_before`] first, as `docs/async.md` shows.
    ///
    /// # Errors
    /// [`MemoryError::Arena`] when a new arena's initial chunk cannot be allocated.
    pub fn request_arena(&self) -> Result<crate::ManagedArena, MemoryError> {
        let part = self.arena_part_or_init()?;
        let guard = part.pool.get()?;
        // An arena that has been returned once was reset at least once.
        let cold = guard.stats().resets == 0;
        let arena = crate::ManagedArena::new(guard, self.clone(), Arc::clone(part));
        if cold {
            self.sync();
        }
        Ok(arena)
    }

    fn arena_part_or_init(&self) -> Result<&Arc<ArenaPart>, MemoryError> {
        if let Some(part) = self.inner.arena_part.get() {
            return Ok(part);
        }
        let pool =
            mm_arena::ArenaPool::new(self.inner.config.arena_config(), crate::ARENA_POOL_MAX_IDLE)?;
        let mut fresh = None;
        let part = self.inner.arena_part.get_or_init(|| {
            let part = Arc::new(ArenaPart::new(pool));
            fresh = Some(Arc::clone(&part));
            part
        });
        if let Some(part) = fresh {
            let id = self.inner.next_component.fetch_add(1, Ordering::Relaxed);
            lock(&self.inner.components).push(Registered {
                id,
                part: Arc::downgrade(&part) as Weak<dyn Component>,
            });
        }
        Ok(part)
    }

    /// The buffer pool (created on first use, filled lazily).
    pub fn buffer_pool(&self) -> &BufferPool {
        self.inner.buffers.get_or_init(|| {
            // The tiers were validated with the config, so this cannot fail; if it ever did,
            // a single-tier pool of the smallest size keeps the manager usable.
            BufferPool::new(self.inner.config.buffer_pool_config()).unwrap_or_else(|_| {
                BufferPool::new(mm_pool::BufferPoolConfig::with_tiers([(4096, 1)]))
                    .expect("a one-tier pool of 4 KiB is valid")
            })
        })
    }

    /// A buffer of at least `min_len` bytes of capacity from the pool, charged to the budget
    /// while it is in use.
    ///
    /// # Errors
    /// [`MemoryError::Budget`] when the charge would pass the hard limit;
    /// [`MemoryError::Pool`] for a request above the pool's `max_request`.
    pub fn buffer(&self, min_len: usize) -> Result<ManagedBuffer, MemoryError> {
        let buf = self.buffer_pool().try_acquire(min_len)?;
        let charge = self.inner.budget.try_reserve(buf.capacity() as u64)?;
        Ok(ManagedBuffer { buf, charge })
    }

    /// An object pool registered with this manager: it is trimmed under pressure and appears
    /// in the report as `pool:<name>` (its held bytes are the shallow `size_of::<T>()` of the
    /// idle objects; heap memory the objects own is not seen).
    ///
    /// # Errors
    /// [`MemoryError::Pool`] for `max_idle == 0`.
    pub fn object_pool<T: Send + 'static>(
        &self,
        name: &str,
        max_idle: usize,
        factory: impl Fn() -> T + Send + Sync + 'static,
        reset: impl Fn(&mut T) + Send + Sync + 'static,
    ) -> Result<ObjectPool<T>, MemoryError> {
        let pool = ObjectPool::with_reset(max_idle, factory, reset)?;
        lock(&self.inner.object_pools).push((name.to_owned(), Arc::new(pool.clone())));
        Ok(pool)
    }

    /// The interner (created on first use with the configured limits). Clone the `Arc` to
    /// share it (conversations intern model ids and tool names here).
    pub fn interner(&self) -> &Arc<Interner> {
        self.inner.interner.get_or_init(|| {
            let c = &self.inner.config;
            let mut config = InternerConfig::default();
            if let Some(n) = c.intern_max_strings() {
                config = config.max_strings(n);
            }
            if let Some(n) = c.intern_max_bytes() {
                config = config.max_bytes(n);
            }
            Arc::new(Interner::with_config(config).unwrap_or_default())
        })
    }

    /// The mmap cache (created on first use with the configured budget). Clone the `Arc` to
    /// share it (the GGUF model registry maps its models here).
    pub fn mmap_cache(&self) -> &Arc<MmapCache> {
        self.inner.mmap.get_or_init(|| {
            Arc::new(MmapCache::new(
                MmapCacheConfig::default().with_budget(self.inner.mmap_budget),
            ))
        })
    }

    /// Registers `part`: from now on it is charged (see [`Component::charging`]), reported
    /// as a row of [`MemoryReport::components`] (and [`MemoryReport::models`]) and told about
    /// rising pressure. The manager keeps a weak reference: dropping the part unregisters it.
    pub fn register(&self, part: Arc<dyn Component>) -> ComponentId {
        let id = self.inner.next_component.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.components).push(Registered {
            id,
            part: Arc::downgrade(&part),
        });
        drop(part);
        self.sync();
        ComponentId(id)
    }

    /// Removes a registered component (its charge is released now); returns whether it was
    /// registered.
    pub fn unregister(&self, id: ComponentId) -> bool {
        let mut parts = lock(&self.inner.components);
        let before = parts.len();
        parts.retain(|r| r.id != id.0);
        let removed = parts.len() != before;
        drop(parts);
        self.sync();
        removed
    }

    /// The registered components that are still alive, in registration order (dead ones
    /// are forgotten here).
    fn parts(&self) -> Vec<(u64, Arc<dyn Component>)> {
        let mut parts = lock(&self.inner.components);
        parts.retain(|r| r.part.strong_count() > 0);
        parts
            .iter()
            .filter_map(|r| r.part.upgrade().map(|p| (r.id, p)))
            .collect()
    }

    /// Maps `path` through the cache; the cache's held bytes are charged to the budget.
    ///
    /// # Safety
    /// The contract of [`MmapCache::get`]: the file must not be modified in place or
    /// truncated while the returned map (or a clone) lives; replace files by rename. A file
    /// truncated anyway raises `SIGBUS` on the next read of a vanished page.
    ///
    /// # Errors
    /// [`MemoryError::Mmap`] as [`MmapCache::get`].
    pub unsafe fn map(&self, path: impl AsRef<Path>) -> Result<Arc<MappedFile>, MemoryError> {
        // SAFETY: the caller's promise is the one `MmapCache::get` asks for.
        let file = unsafe { self.mmap_cache().get(path.as_ref()) }?;
        self.sync();
        Ok(file)
    }

    /// Registers a pressure handler run when the level rises to `min_level` or above. It
    /// returns the bytes it freed (an estimate, for the report and the log).
    pub fn on_pressure(
        &self,
        name: &str,
        min_level: PressureLevel,
        handler: impl Fn(&PressureContext<'_>) -> u64 + Send + Sync + 'static,
    ) -> HandlerId {
        let id = HandlerId(self.inner.next_handler.fetch_add(1, Ordering::Relaxed));
        lock(&self.inner.handlers).push(Handler {
            id,
            name: name.to_owned(),
            min_level,
            run: Arc::new(handler),
        });
        id
    }

    /// Removes a pressure handler; returns whether it was registered.
    pub fn remove_pressure_handler(&self, id: HandlerId) -> bool {
        let mut handlers = lock(&self.inner.handlers);
        let before = handlers.len();
        handlers.retain(|h| h.id != id);
        handlers.len() != before
    }

    /// Names of the registered pressure handlers with their levels, in run order.
    pub fn pressure_handlers(&self) -> Vec<(String, PressureLevel)> {
        lock(&self.inner.handlers)
            .iter()
            .map(|h| (h.name.clone(), h.min_level))
            .collect()
    }

    /// Releases idle memory of every component now: pools, arenas (at their next request
    /// end) and the mmap cache down to `mmap_fraction` of its budget. Returns the bytes freed
    /// (the arenas' share is freed later and not counted).
    pub fn trim(&self, mmap_fraction: f64) -> u64 {
        let t0 = std::time::Instant::now();
        let mut freed = self.trim_pools();
        if let Some(part) = self.inner.arena_part.get() {
            freed += part.pool.trim();
        }
        mm_arena::request_trim();
        if let Some(cache) = self.inner.mmap.get() {
            freed += cache.evict_to_fraction(mmap_fraction);
        }
        self.sync();
        tracing::info!(
            freed_bytes = freed,
            mmap_fraction,
            took_us = t0.elapsed().as_micros() as u64,
            "trimmed idle memory"
        );
        freed
    }

    fn trim_pools(&self) -> u64 {
        let mut freed = 0u64;
        if let Some(pool) = self.inner.buffers.get() {
            freed += pool.trim() as u64;
        }
        let pools: Vec<Arc<dyn TrimPool>> = lock(&self.inner.object_pools)
            .iter()
            .map(|(_, p)| Arc::clone(p))
            .collect();
        for pool in pools {
            let before = pool.stats().held_bytes;
            pool.trim();
            freed += before;
        }
        freed
    }

    fn register_builtin_handlers(&self) {
        self.on_pressure("trim-pools", PressureLevel::Warning, |cx| {
            cx.manager.trim_pools()
        });
        self.on_pressure("trim-arenas", PressureLevel::Warning, |_| {
            mm_arena::request_trim();
            0
        });
        self.on_pressure("release-heap", PressureLevel::Critical, |cx| {
            cx.manager.release_heap().unwrap_or(0)
        });
        self.on_pressure("evict-mmap-cache", PressureLevel::Critical, |cx| {
            match cx.manager.inner.mmap.get() {
                Some(cache) => cache.evict_to_fraction(0.5),
                None => 0,
            }
        });
    }

    /// Publishes `event` to the subscribers and runs the handlers where the configuration
    /// says. Called on the thread whose reservation changed the level.
    fn deliver(&self, event: &PressureEvent) {
        {
            let mut listeners = lock(&self.inner.listeners);
            listeners.retain(|tx| match tx.try_send(*event) {
                Ok(()) => true,
                Err(async_channel::TrySendError::Full(_)) => {
                    self.inner.dropped_events.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(async_channel::TrySendError::Closed(_)) => false,
            });
        }
        if self.inner.config.pressure_delivery() == PressureDelivery::Thread
            && let Some(queue) = self.pressure_thread()
            && queue.send(*event).is_ok()
        {
            return;
        }
        self.on_event(event);
    }

    /// The queue of the `mm-pressure` thread, started on first use (`None` if the thread
    /// cannot be spawned; handlers then run inline). The thread holds a weak reference and
    /// ends when the last clone of the manager is dropped (its queue closes).
    fn pressure_thread(&self) -> Option<&std::sync::mpsc::Sender<PressureEvent>> {
        self.inner
            .delivery
            .get_or_init(|| {
                let (tx, rx) = std::sync::mpsc::channel::<PressureEvent>();
                let weak = Arc::downgrade(&self.inner);
                let spawned = std::thread::Builder::new()
                    .name("mm-pressure".to_owned())
                    .spawn(move || {
                        while let Ok(event) = rx.recv() {
                            let Some(inner) = weak.upgrade() else { break };
                            MemoryManager { inner }.on_event(&event);
                        }
                    });
                match spawned {
                    Ok(_) => Some(tx),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the pressure thread; handlers run inline");
                        None
                    }
                }
            })
            .as_ref()
    }

    /// Hands freed heap memory back to the operating system (`malloc_trim(0)` on glibc) and
    /// returns the anonymous resident bytes that went away (`RssAnon` before minus after;
    /// other threads allocating meanwhile make it an estimate). `None` where there is no
    /// such call (other C libraries, other systems) or `RssAnon` cannot be read. The built-in
    /// critical handler `release-heap` calls it. Cost: a walk of the allocator's free lists,
    /// milliseconds for a large heap.
    pub fn release_heap(&self) -> Option<u64> {
        let anon = || {
            mm_budget::sys::status_memory()
                .ok()
                .and_then(|s| s.rss_anon)
        };
        let before = anon()?;
        if !trim::malloc_trim() {
            return None;
        }
        let released = before.saturating_sub(anon()?);
        self.inner
            .heap_released
            .fetch_add(released, Ordering::Relaxed);
        tracing::info!(released, "returned freed heap to the system");
        Some(released)
    }

    /// A channel of every later pressure event (rising and easing), usable from any async
    /// runtime (`recv().await`) or from a plain thread (`recv_blocking`). It holds up to
    /// `capacity` undelivered events (at least 1); when full, new events are dropped and
    /// counted in the report (`pressure.dropped_events`), so a slow subscriber never stalls
    /// the request that changed the level. Dropping it unsubscribes.
    pub fn subscribe(&self, capacity: usize) -> PressureEvents {
        let (tx, rx) = async_channel::bounded(capacity.max(1));
        lock(&self.inner.listeners).push(tx);
        PressureEvents { rx }
    }

    fn on_event(&self, event: &PressureEvent) {
        if !event.is_rising() {
            tracing::info!(level = %event.level, previous = %event.previous, used_bytes = event.used, limit_bytes = event.limit, "memory pressure eased");
            return;
        }
        tracing::warn!(level = %event.level, previous = %event.previous, used_bytes = event.used, limit_bytes = event.limit, "memory pressure rose");
        // The handlers' own events (evictions, unloads, trims) nest under this span.
        let _span = tracing::warn_span!("memory_pressure", level = %event.level).entered();
        // Copy the handlers out so none runs under the list's lock: a handler may register
        // or remove handlers, or free memory whose release delivers another event.
        let handlers: Vec<(String, Arc<HandlerFn>)> = lock(&self.inner.handlers)
            .iter()
            .filter(|h| h.min_level <= event.level)
            .map(|h| (h.name.clone(), Arc::clone(&h.run)))
            .collect();
        let cx = PressureContext {
            level: event.level,
            event,
            manager: self,
        };
        for (name, run) in handlers {
            self.run_handler(&name, || run(&cx));
        }
        for (_, part) in self.parts() {
            let level = event.level;
            self.run_handler(part.name(), || part.on_pressure(level));
        }
        self.sync();
    }

    /// Runs one handler; a panic is caught, counted and logged, so the others still run.
    fn run_handler(&self, name: &str, run: impl FnOnce() -> u64) {
        match catch_unwind(AssertUnwindSafe(run)) {
            Ok(freed) => {
                self.inner.handler_runs.fetch_add(1, Ordering::Relaxed);
                self.inner
                    .freed_by_handlers
                    .fetch_add(freed, Ordering::Relaxed);
                tracing::info!(handler = %name, freed, "pressure handler ran");
            }
            Err(_) => {
                self.inner.handler_panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!(handler = %name, "pressure handler panicked");
            }
        }
    }

    /// Brings the budget's charges for held memory up to date with what each component holds
    /// now (built-in parts and registered components charged by the manager). When it
    /// returns, everything the calling thread did before the call is charged. Cheap (atomic
    /// reads and one reservation resize per part); waits only for another thread's sync.
    /// Called from a pressure handler that a sync itself triggered, it returns at once and
    /// that sync repeats instead (see `gate.rs`).
    pub fn sync(&self) {
        let inner = &self.inner;
        inner.charges.sync(|charges| {
            let held = self.held_bytes();
            let budget = &inner.budget;
            resize(budget, &mut charges.buffers, held.buffers);
            resize(budget, &mut charges.objects, held.objects);
            resize(budget, &mut charges.interner, held.interner);
            resize(budget, &mut charges.mmap, held.mmap);
            resize(budget, &mut charges.arenas, held.arenas);
            let parts: Vec<(u64, u64)> = self
                .parts()
                .into_iter()
                .filter(|(_, p)| p.charging() == Charging::ByManager)
                .map(|(id, p)| (id, p.reading().held_bytes))
                .collect();
            // Charges of parts that are gone (or charge themselves) are released.
            charges
                .parts
                .retain(|(id, _)| parts.iter().any(|(live, _)| live == id));
            for (id, bytes) in parts {
                let slot = match charges.parts.iter().position(|(c, _)| *c == id) {
                    Some(i) => &mut charges.parts[i].1,
                    None => {
                        charges.parts.push((id, None));
                        &mut charges.parts.last_mut().expect("just pushed").1
                    }
                };
                resize(budget, slot, bytes);
            }
        });
    }

    fn held_bytes(&self) -> HeldBytes {
        let inner = &self.inner;
        HeldBytes {
            buffers: inner.buffers.get().map_or(0, |p| p.stats().held_bytes),
            objects: lock(&inner.object_pools)
                .iter()
                .map(|(_, p)| p.stats().held_bytes)
                .sum(),
            interner: inner.interner.get().map_or(0, |i| i.stats().held_bytes()),
            mmap: inner.mmap.get().map_or(0, |c| c.stats().held_bytes),
            arenas: mm_arena::global_stats().retained_bytes,
        }
    }

    /// Held bytes per built-in part, for the sampler.
    pub(crate) fn sampled_held(&self) -> [u64; 5] {
        let h = self.held_bytes();
        [h.buffers, h.objects, h.interner, h.mmap, h.arenas]
    }

    /// The rows of the built-in parts that exist, then of every registered component.
    fn component_readings(&self) -> Vec<(String, ComponentReading)> {
        let inner = &self.inner;
        let mut rows = Vec::new();
        if let Some(pool) = inner.buffers.get() {
            rows.push(("buffer-pool".to_owned(), pool_reading(pool.stats())));
        }
        for (name, p) in lock(&inner.object_pools).iter() {
            rows.push((format!("pool:{name}"), pool_reading(p.stats())));
        }
        if let Some(i) = inner.interner.get() {
            let s = i.stats();
            let mut r = ComponentReading::new(s.held_bytes());
            r.bound_bytes = inner.config.intern_max_bytes();
            r.items = s.strings;
            r.hits = Some(s.calls.saturating_sub(s.strings));
            r.misses = Some(s.strings);
            rows.push(("interner".to_owned(), r));
        }
        if let Some(c) = inner.mmap.get() {
            let s = c.stats();
            let mut r = ComponentReading::new(s.held_bytes);
            r.bound_bytes = Some(s.budget_bytes);
            r.items = s.entries;
            r.hits = Some(s.hits);
            r.misses = Some(s.misses);
            r.evictions = Some(s.evictions);
            rows.push(("mmap-cache".to_owned(), r));
        }
        let a = mm_arena::global_stats();
        if a.threads > 0 || a.resets > 0 {
            let mut r = ComponentReading::new(a.retained_bytes);
            r.items = a.threads as u64;
            r.hits = Some(a.resets.saturating_sub(a.chunk_allocations));
            r.misses = Some(a.chunk_allocations);
            r.high_water_bytes = Some(a.high_water_bytes);
            rows.push(("arenas".to_owned(), r));
        }
        for (_, part) in self.parts() {
            rows.push((part.name().to_owned(), part.reading()));
        }
        rows
    }

    /// A report of every figure: allocator, budget, process, each component. Syncs the
    /// budget's charges first. See [`MemoryReport`] for its renderings. Resident bytes of
    /// mapped models are left out; [`report_with`](Self::report_with) measures them.
    pub fn report(&self) -> MemoryReport {
        self.report_with(Residency::Skip)
    }

    /// As [`report`](Self::report), measuring the resident pages of mapped models when
    /// `residency` is [`Residency::Measure`].
    pub fn report_with(&self, residency: Residency) -> MemoryReport {
        self.sync();
        let inner = &self.inner;
        let models = self
            .parts()
            .iter()
            .flat_map(|(_, p)| p.models(residency))
            .collect();
        MemoryReport::from_readings(Readings {
            budget: inner.budget.stats(),
            warn_percent: inner.config.warn_percent(),
            critical_percent: inner.config.critical_percent(),
            components: self.component_readings(),
            interner: inner.interner.get().map(|i| i.stats()),
            mmap: inner.mmap.get().map(|c| c.stats()),
            arenas: mm_arena::global_stats(),
            handlers: self
                .pressure_handlers()
                .into_iter()
                .map(|(name, level)| format!("{name} ({level})"))
                .collect(),
            handler_runs: inner.handler_runs.load(Ordering::Relaxed),
            handler_panics: inner.handler_panics.load(Ordering::Relaxed),
            dropped_events: inner.dropped_events.load(Ordering::Relaxed),
            heap_released: inner.heap_released.load(Ordering::Relaxed),
            freed_by_handlers: inner.freed_by_handlers.load(Ordering::Relaxed),
            models,
        })
    }
}

fn pool_reading(s: PoolStats) -> ComponentReading {
    let mut r = ComponentReading::new(s.held_bytes);
    r.bound_bytes = Some(s.bound_bytes);
    r.items = s.held;
    r.hits = Some(s.hits);
    r.misses = Some(s.misses);
    r.evictions = Some(s.discards);
    r
}

/// Bytes each built-in part holds idle.
#[derive(Debug, Clone, Copy, Default)]
struct HeldBytes {
    buffers: u64,
    objects: u64,
    interner: u64,
    mmap: u64,
    arenas: u64,
}

/// Sets the charge in `slot` to `bytes`, forcing growth past the limit (the memory is held
/// already; refusing to count it would only hide it).
fn resize(budget: &MemoryBudget, slot: &mut Option<Reservation>, bytes: u64) {
    let current = slot.as_ref().map_or(0, Reservation::bytes);
    if bytes < current {
        if let Some(r) = slot.as_mut() {
            r.shrink(current - bytes);
        }
    } else if bytes > current {
        match budget.force_reserve(bytes - current) {
            Ok(extra) => match slot {
                Some(r) => {
                    // Both come from the same budget, so merge cannot fail; if it did, the
                    // extra charge is released on drop, which under-counts rather than leaks.
                    let _ = r.merge(extra);
                }
                None => *slot = Some(extra),
            },
            Err(e) => tracing::error!(error = %e, "cannot charge held memory to the budget"),
        }
    }
}

/// A pooled buffer charged to the manager's budget while in use; both are given back on drop.
///
/// As a response body, [`into_bytes`](Self::into_bytes) freezes it into [`Bytes`] without
/// copying: the buffer goes back to the pool, and its charge to the budget is released, when
/// the last clone or slice of those `Bytes` drops. Freezing through the `BytesMut` instead
/// (`buf.split().freeze()`) keeps the bytes alive but not the guard: when the guard drops,
/// its charge is released while the split-off bytes still live, and the buffer, whose
/// capacity changed, leaves the pool (counted in [`PoolStats::reshaped`]).
#[derive(Debug)]
pub struct ManagedBuffer {
    buf: PooledBuffer,
    charge: Reservation,
}

impl ManagedBuffer {
    /// The bytes charged to the budget for this buffer (its capacity when acquired).
    pub fn charged_bytes(&self) -> u64 {
        self.charge.bytes()
    }

    /// Freezes the filled bytes into [`Bytes`] without copying. The buffer stays charged to
    /// the budget and out of the pool until the last clone (or slice) of the `Bytes` drops,
    /// on whatever thread; then it returns to the pool and the charge is released. Costs one
    /// small allocation (the owner's reference count, inside `bytes`), as
    /// [`PooledBuffer::into_bytes`].
    ///
    /// ```
    /// use memory_manager::{MemoryConfig, MemoryManager};
    ///
    /// let manager = MemoryManager::new(MemoryConfig::new().with_max_memory(64 << 20))?;
    /// let mut buf = manager.buffer(100)?;
    /// buf.extend_from_slice(b"data: hi\n\n");
    /// let body = buf.into_bytes();
    /// let part = body.slice(6..8);
    /// drop(body);
    /// assert_eq!(&part[..], b"hi");
    /// assert_eq!(manager.budget().used(), 4096, "still charged while `part` lives");
    /// drop(part);
    /// assert_eq!(manager.buffer_pool().stats().returns, 1);
    /// assert_eq!(manager.budget().used(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(FrozenManaged(self))
    }
}

/// The owner of a frozen [`ManagedBuffer`]'s bytes: the buffer and its charge, given back
/// when the last `Bytes` clone drops.
struct FrozenManaged(ManagedBuffer);

impl AsRef<[u8]> for FrozenManaged {
    fn as_ref(&self) -> &[u8] {
        &self.0.buf
    }
}

impl From<ManagedBuffer> for Bytes {
    /// As [`ManagedBuffer::into_bytes`].
    fn from(buf: ManagedBuffer) -> Bytes {
        buf.into_bytes()
    }
}

impl Deref for ManagedBuffer {
    type Target = BytesMut;
    fn deref(&self) -> &BytesMut {
        &self.buf
    }
}

impl DerefMut for ManagedBuffer {
    fn deref_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }
}

/// Pressure events from [`MemoryManager::subscribe`]: a bounded, runtime-agnostic channel.
#[derive(Debug, Clone)]
pub struct PressureEvents {
    rx: async_channel::Receiver<PressureEvent>,
}

impl PressureEvents {
    /// The next event, waiting without blocking a thread (any executor). `None` once the
    /// manager is gone.
    pub async fn recv(&self) -> Option<PressureEvent> {
        self.rx.recv().await.ok()
    }

    /// The next event, blocking this thread. `None` once the manager is gone.
    pub fn recv_blocking(&self) -> Option<PressureEvent> {
        self.rx.recv_blocking().ok()
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Option<PressureEvent> {
        self.rx.try_recv().ok()
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod trim {
    /// `malloc_trim(0)`; true when the call exists.
    pub(super) fn malloc_trim() -> bool {
        // SAFETY: malloc_trim only walks and releases the allocator's own free memory; it
        // has no preconditions and is thread-safe in glibc.
        unsafe { libc::malloc_trim(0) };
        true
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod trim {
    pub(super) fn malloc_trim() -> bool {
        false
    }
}
