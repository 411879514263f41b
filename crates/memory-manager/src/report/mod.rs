//! [`MemoryReport`]: every figure in one struct, rendered as a table, JSON or Prometheus text
//! (the metric families in `families.rs`, their exposition in `prometheus.rs`).

use std::fmt;

use mm_arena::GlobalArenaStats;
use mm_budget::BudgetStats;
use mm_intern::InternStats;
use mm_mmap::CacheStats;
use serde::Serialize;

use crate::component::{ComponentReading, ModelReading};

#[cfg(feature = "metrics")]
mod bridge;
mod families;
mod prometheus;

pub use families::{MetricFamily, MetricKind, MetricSample, MetricUnit, metric_families};
pub use prometheus::MetricsConfig;

/// The plain readings a report is built from; the manager fills them. The report knows the
/// component interface and the lower crates' statistics, nothing of the manager.
#[derive(Debug)]
pub(crate) struct Readings {
    pub(crate) budget: BudgetStats,
    pub(crate) warn_percent: u8,
    pub(crate) critical_percent: u8,
    pub(crate) components: Vec<(String, ComponentReading)>,
    pub(crate) interner: Option<InternStats>,
    pub(crate) mmap: Option<CacheStats>,
    pub(crate) arenas: GlobalArenaStats,
    pub(crate) handlers: Vec<String>,
    pub(crate) handler_runs: u64,
    pub(crate) handler_panics: u64,
    pub(crate) dropped_events: u64,
    pub(crate) heap_released: u64,
    pub(crate) freed_by_handlers: u64,
    pub(crate) models: Vec<ModelReading>,
}

/// The single source of figures: allocator, budget, process and each component.
///
/// Render it with [`Display`](fmt::Display) (a table for people), [`to_json`](Self::to_json)
/// or [`to_prometheus`](Self::to_prometheus). The JSON schema is documented in
/// `docs/report-schema.md`. A figure that does not exist (no cgroup limit, an allocator that
/// is not tracked) is `None`/`null`, never a made-up 0.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct MemoryReport {
    /// The global allocator's figures, when [`mm_track::TrackedAlloc`] is installed.
    pub allocator: AllocatorReport,
    /// The memory budget.
    pub budget: BudgetReport,
    /// Process and system memory read from `/proc` and the cgroup.
    pub process: ProcessReport,
    /// One row per component that exists (components not used yet are absent): the
    /// built-in parts, then every registered [`Component`](crate::Component).
    pub components: Vec<ComponentReport>,
    /// Models of registered components (a GGUF model registry), loaded or not.
    pub models: Vec<ModelReading>,
    /// Interner figures, once the interner exists.
    pub interner: Option<InternerReport>,
    /// Mmap cache figures, once the cache exists.
    pub mmap: Option<MmapReport>,
    /// Thread arenas, summed over threads.
    pub arenas: ArenaReport,
    /// Pressure handling.
    pub pressure: PressureReport,
    /// Anonymous memory the heap does not explain, when the allocator is tracked.
    pub fragmentation: Option<FragmentationReport>,
}

/// Anonymous resident memory not explained by the live heap (which includes the arenas'
/// chunks and the pools' idle buffers, all taken from the global allocator): freed heap the
/// allocator keeps, allocator metadata, thread stacks. `malloc_trim` gives back the first.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FragmentationReport {
    /// `rss_anon - live heap` (0 when the heap is larger, e.g. not yet touched pages).
    pub unexplained_bytes: u64,
    /// `unexplained / rss_anon`, in `0..=1`.
    pub fraction: f64,
}

/// The global allocator's figures.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct AllocatorReport {
    /// Whether `TrackedAlloc` is the global allocator (all other fields are `None` if not).
    pub tracked: bool,
    /// Live heap bytes.
    pub live_bytes: Option<u64>,
    /// Peak live heap bytes.
    pub peak_bytes: Option<u64>,
    /// How far `live_bytes` and `peak_bytes` may be from exact (unfolded per-thread deltas).
    pub error_bound_bytes: Option<u64>,
    /// Bytes allocated since start.
    pub total_alloc_bytes: Option<u64>,
    /// Allocations since start.
    pub allocs: Option<u64>,
    /// Deallocations since start.
    pub deallocs: Option<u64>,
    /// Reallocations since start.
    pub reallocs: Option<u64>,
}

/// The memory budget's figures.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct BudgetReport {
    /// Hard limit.
    pub limit_bytes: u64,
    /// Bytes reserved now.
    pub used_bytes: u64,
    /// Most bytes ever reserved at once.
    pub peak_bytes: u64,
    /// `used / limit`, in percent.
    pub used_percent: f64,
    /// `normal`, `warning` or `critical`.
    pub level: String,
    /// Warning threshold, percent.
    pub warn_percent: u8,
    /// Critical threshold, percent.
    pub critical_percent: u8,
    /// Reservations refused.
    pub denied: u64,
    /// Level changes delivered.
    pub events: u64,
}

/// Process and system memory.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ProcessReport {
    /// Resident set size (`/proc/self/statm`).
    pub rss_bytes: Option<u64>,
    /// Resident anonymous memory (`RssAnon`).
    pub rss_anon_bytes: Option<u64>,
    /// Resident file-backed memory (`RssFile`), mapped models among it.
    pub rss_file_bytes: Option<u64>,
    /// Machine memory (`MemTotal`).
    pub mem_total_bytes: Option<u64>,
    /// Memory available without swapping (`MemAvailable`).
    pub mem_available_bytes: Option<u64>,
    /// The cgroup's memory limit, when it has one.
    pub cgroup_limit_bytes: Option<u64>,
    /// The cgroup's usage, including page cache.
    pub cgroup_usage_bytes: Option<u64>,
}

/// One component's figures, uniform across components.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ComponentReport {
    /// `buffer-pool`, `pool:<name>`, `interner`, `mmap-cache`, `arenas`, or a registered
    /// component's name.
    pub name: String,
    /// Bytes the component holds between uses (idle buffers, stored strings, cached maps,
    /// retained arena chunks).
    pub held_bytes: u64,
    /// The most it may hold by construction, when bounded.
    pub bound_bytes: Option<u64>,
    /// Idle items held (buffers, objects, strings, maps, threads).
    pub items: u64,
    /// Requests served from what was held.
    pub hits: Option<u64>,
    /// Requests that had to allocate or map.
    pub misses: Option<u64>,
    /// `hits / (hits + misses)`.
    pub hit_rate: Option<f64>,
    /// Items dropped to stay within the bound or under pressure (pools: discards).
    pub evictions: Option<u64>,
    /// Highest use seen (arenas: most bytes one request used).
    pub high_water_bytes: Option<u64>,
}

/// The interner's accounting.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct InternerReport {
    /// Distinct strings.
    pub strings: u64,
    /// Intern calls.
    pub calls: u64,
    /// Bytes callers asked to intern, over all calls.
    pub requested_bytes: u64,
    /// Bytes the interner holds (strings, index, fixed parts).
    pub held_bytes: u64,
    /// `requested - held`: negative while strings repeat too little to pay off.
    pub saved_bytes: i64,
}

/// The mmap cache's figures.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct MmapReport {
    /// Bytes of maps the cache holds (never above the budget).
    pub held_bytes: u64,
    /// Bytes of maps no longer (or never) cached that callers still hold.
    pub outstanding_bytes: u64,
    /// The cache's budget.
    pub budget_bytes: u64,
    /// Cached files.
    pub entries: u64,
    /// Gets served from the cache.
    pub hits: u64,
    /// Gets that mapped a file.
    pub misses: u64,
    /// Maps evicted.
    pub evictions: u64,
}

/// Thread arenas, summed over threads.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ArenaReport {
    /// Threads whose arena is alive.
    pub threads: u64,
    /// Most bytes one request used.
    pub high_water_bytes: u64,
    /// Chunk bytes kept between requests.
    pub retained_bytes: u64,
    /// Requests completed (outermost scopes).
    pub resets: u64,
    /// Chunks requested from the allocator; flat at steady state.
    pub chunk_allocations: u64,
}

/// Pressure handling figures.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PressureReport {
    /// Registered handlers, in run order.
    pub handlers: Vec<String>,
    /// Handler runs so far (components' pressure hooks included).
    pub handler_runs: u64,
    /// Handler runs that panicked (the other handlers still ran).
    pub handler_panics: u64,
    /// Events not queued to a subscriber whose channel was full.
    pub dropped_events: u64,
    /// Bytes [`release_heap`](crate::MemoryManager::release_heap) gave back so far.
    pub heap_released_bytes: u64,
    /// Bytes the handlers reported freeing.
    pub freed_bytes: u64,
}

impl MemoryReport {
    pub(crate) fn from_readings(r: Readings) -> Self {
        let allocator = match mm_track::snapshot() {
            Some(s) => AllocatorReport {
                tracked: true,
                live_bytes: Some(s.live_bytes),
                peak_bytes: Some(s.peak_bytes),
                error_bound_bytes: Some(s.live_error_bound_bytes()),
                total_alloc_bytes: Some(s.total_alloc_bytes),
                allocs: Some(s.allocs),
                deallocs: Some(s.deallocs),
                reallocs: Some(s.reallocs),
            },
            None => AllocatorReport {
                tracked: false,
                live_bytes: None,
                peak_bytes: None,
                error_bound_bytes: None,
                total_alloc_bytes: None,
                allocs: None,
                deallocs: None,
                reallocs: None,
            },
        };
        let b = r.budget;
        let budget = BudgetReport {
            limit_bytes: b.limit,
            used_bytes: b.used,
            peak_bytes: b.peak,
            used_percent: b.used as f64 * 100.0 / b.limit.max(1) as f64,
            level: b.level.to_string(),
            warn_percent: r.warn_percent,
            critical_percent: r.critical_percent,
            denied: b.denied,
            events: b.events,
        };
        let status = mm_budget::sys::status_memory().ok();
        let meminfo = mm_budget::sys::meminfo().ok();
        let cgroup = mm_budget::sys::cgroup_memory().ok().flatten();
        let process = ProcessReport {
            rss_bytes: mm_budget::sys::rss_bytes().ok(),
            rss_anon_bytes: status.as_ref().and_then(|s| s.rss_anon),
            rss_file_bytes: status.as_ref().and_then(|s| s.rss_file),
            mem_total_bytes: meminfo.as_ref().map(|m| m.total),
            mem_available_bytes: meminfo.as_ref().and_then(|m| m.available),
            cgroup_limit_bytes: cgroup.as_ref().and_then(|c| c.limit),
            cgroup_usage_bytes: cgroup.as_ref().and_then(|c| c.current),
        };
        let components = r
            .components
            .into_iter()
            .map(|(name, c)| ComponentReport {
                name,
                held_bytes: c.held_bytes,
                bound_bytes: c.bound_bytes,
                items: c.items,
                hits: c.hits,
                misses: c.misses,
                hit_rate: match (c.hits, c.misses) {
                    (Some(h), Some(m)) => rate(h, m),
                    _ => None,
                },
                evictions: c.evictions,
                high_water_bytes: c.high_water_bytes,
            })
            .collect();
        let interner = r.interner.map(|s| InternerReport {
            strings: s.strings,
            calls: s.calls,
            requested_bytes: s.requested_bytes,
            held_bytes: s.held_bytes(),
            saved_bytes: s.saved_bytes(),
        });
        let mmap = r.mmap.map(|s| MmapReport {
            held_bytes: s.held_bytes,
            outstanding_bytes: s.outstanding_bytes,
            budget_bytes: s.budget_bytes,
            entries: s.entries,
            hits: s.hits,
            misses: s.misses,
            evictions: s.evictions,
        });
        let a = r.arenas;
        let arenas = ArenaReport {
            threads: a.threads as u64,
            high_water_bytes: a.high_water_bytes,
            retained_bytes: a.retained_bytes,
            resets: a.resets,
            chunk_allocations: a.chunk_allocations,
        };
        let pressure = PressureReport {
            handlers: r.handlers,
            handler_runs: r.handler_runs,
            handler_panics: r.handler_panics,
            dropped_events: r.dropped_events,
            heap_released_bytes: r.heap_released,
            freed_bytes: r.freed_by_handlers,
        };
        let fragmentation = match (allocator.live_bytes, process.rss_anon_bytes) {
            (Some(live), Some(anon)) if anon > 0 => {
                let unexplained = anon.saturating_sub(live);
                Some(FragmentationReport {
                    unexplained_bytes: unexplained,
                    fraction: unexplained as f64 / anon as f64,
                })
            }
            _ => None,
        };
        MemoryReport {
            fragmentation,
            allocator,
            budget,
            process,
            components,
            models: r.models,
            interner,
            mmap,
            arenas,
            pressure,
        }
    }

    /// The report as pretty-printed JSON (schema in `docs/report-schema.md`).
    pub fn to_json(&self) -> String {
        // Serializing plain structs of numbers and strings cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

fn rate(hits: u64, misses: u64) -> Option<f64> {
    let total = hits + misses;
    (total > 0).then(|| hits as f64 / total as f64)
}

/// Bytes in a unit a person reads at a glance.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), human)
}

impl fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.allocator;
        if a.tracked {
            writeln!(
                f,
                "heap       live {} (±{}), peak {}, {} allocs",
                opt(a.live_bytes),
                opt(a.error_bound_bytes),
                opt(a.peak_bytes),
                a.allocs.unwrap_or(0)
            )?;
        } else {
            writeln!(
                f,
                "heap       not tracked (install mm_track::TrackedAlloc as #[global_allocator])"
            )?;
        }
        let b = &self.budget;
        writeln!(
            f,
            "budget     {} of {} ({:.1}%, {}), peak {}, {} denied",
            human(b.used_bytes),
            human(b.limit_bytes),
            b.used_percent,
            b.level,
            human(b.peak_bytes),
            b.denied
        )?;
        let p = &self.process;
        writeln!(
            f,
            "process    rss {} (anon {}, file {}), available {}, cgroup limit {}",
            opt(p.rss_bytes),
            opt(p.rss_anon_bytes),
            opt(p.rss_file_bytes),
            opt(p.mem_available_bytes),
            opt(p.cgroup_limit_bytes)
        )?;
        writeln!(
            f,
            "{:<22} {:>11} {:>11} {:>8} {:>9} {:>11}",
            "component", "held", "bound", "items", "hit rate", "high water"
        )?;
        for c in &self.components {
            writeln!(
                f,
                "{:<22} {:>11} {:>11} {:>8} {:>9} {:>11}",
                c.name,
                human(c.held_bytes),
                opt(c.bound_bytes),
                c.items,
                c.hit_rate
                    .map_or_else(|| "n/a".to_owned(), |r| format!("{:.1}%", r * 100.0)),
                opt(c.high_water_bytes)
            )?;
        }
        if let Some(i) = &self.interner {
            writeln!(
                f,
                "interner   {} strings, {} asked, {} held, {} saved",
                i.strings,
                human(i.requested_bytes),
                human(i.held_bytes),
                i.saved_bytes
            )?;
        }
        if let Some(m) = &self.mmap {
            writeln!(
                f,
                "mmap       {} held of {}, {} outstanding, {} evictions",
                human(m.held_bytes),
                human(m.budget_bytes),
                human(m.outstanding_bytes),
                m.evictions
            )?;
        }
        for m in &self.models {
            writeln!(
                f,
                "model      {} ({}): {}, file {}, mapped {}, resident {}, index heap {}, {} tensors",
                m.name,
                m.path,
                m.state,
                opt(m.file_bytes),
                human(m.mapped_bytes),
                opt(m.resident_bytes),
                human(m.index_heap_bytes),
                m.tensors
                    .map_or_else(|| "n/a".to_owned(), |t| t.to_string())
            )?;
        }
        if let Some(fr) = &self.fragmentation {
            writeln!(
                f,
                "fragment   {} of anonymous memory not explained by the heap ({:.1}%)",
                human(fr.unexplained_bytes),
                fr.fraction * 100.0
            )?;
        }
        write!(
            f,
            "pressure   {} handler runs, {} freed",
            self.pressure.handler_runs,
            human(self.pressure.freed_bytes)
        )
    }
}
