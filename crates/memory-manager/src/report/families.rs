//! The catalogue of metric families: every figure of a [`MemoryReport`] with its name, type
//! and unit, read by the Prometheus rendering, the `metrics` bridge and the schema doc.

use super::{ComponentReport, MemoryReport};
use crate::component::{ModelReading, ModelState};

/// How a figure behaves over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricKind {
    /// Only goes up (until the process restarts); named `..._total`. Read it with `rate()`.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl MetricKind {
    /// The Prometheus type name (`counter`, `gauge`).
    pub const fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// The unit of a figure (base units, as Prometheus recommends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricUnit {
    /// Bytes.
    Bytes,
    /// Seconds.
    Seconds,
    /// A fraction from 0 to 1.
    Ratio,
    /// A number of things (allocations, items, events).
    Count,
    /// A state code or flag, described in the family's help.
    State,
}

impl MetricUnit {
    /// The unit as the schema doc writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            MetricUnit::Bytes => "bytes",
            MetricUnit::Seconds => "seconds",
            MetricUnit::Ratio => "ratio (0 to 1)",
            MetricUnit::Count => "count",
            MetricUnit::State => "state",
        }
    }
}

/// One value of a family: its label values (in the order of [`MetricFamily::labels`]) and
/// the figure.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MetricSample<'r> {
    /// Label values, one per name in [`MetricFamily::labels`].
    pub label_values: Vec<&'r str>,
    /// The figure.
    pub value: f64,
}

type Read = for<'r> fn(&'r MemoryReport, &mut Vec<MetricSample<'r>>);

/// One metric family: a name (without prefix), type, unit, help text, label names, and
/// how to read its samples from a report.
///
/// ```
/// use memory_manager::{MetricKind, metric_families};
/// let allocs = metric_families()
///     .iter()
///     .find(|f| f.name() == "allocator_allocations_total")
///     .unwrap();
/// assert_eq!(allocs.kind(), MetricKind::Counter);
/// ```
#[derive(Debug)]
pub struct MetricFamily {
    name: &'static str,
    kind: MetricKind,
    unit: MetricUnit,
    help: &'static str,
    labels: &'static [&'static str],
    /// The report's JSON path(s) the family exports, for the schema doc.
    source: &'static str,
    read: Read,
}

impl MetricFamily {
    /// The name without prefix (`budget_used_bytes`); counters end in `_total`.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Counter or gauge.
    pub const fn kind(&self) -> MetricKind {
        self.kind
    }

    /// The unit (also the name's suffix for bytes, seconds and ratios).
    pub const fn unit(&self) -> MetricUnit {
        self.unit
    }

    /// One line saying what the figure is.
    pub const fn help(&self) -> &'static str {
        self.help
    }

    /// The label names every sample carries (`component`, `model`, `state`), besides any
    /// constant labels of a [`MetricsConfig`](crate::MetricsConfig).
    pub const fn labels(&self) -> &'static [&'static str] {
        self.labels
    }

    /// The field(s) of the JSON report this family exports.
    pub const fn source(&self) -> &'static str {
        self.source
    }

    /// The family's samples in `report`; empty when the figure is absent (an untracked
    /// allocator, no cgroup limit, a component without hits).
    pub fn samples<'r>(&self, report: &'r MemoryReport) -> Vec<MetricSample<'r>> {
        let mut out = Vec::new();
        (self.read)(report, &mut out);
        out
    }
}

/// Every metric family a report exports, in exposition order.
pub fn metric_families() -> &'static [MetricFamily] {
    FAMILIES
}

fn one(out: &mut Vec<MetricSample<'_>>, value: Option<f64>) {
    if let Some(value) = value {
        out.push(MetricSample {
            label_values: Vec::new(),
            value,
        });
    }
}

fn n(v: u64) -> Option<f64> {
    Some(v as f64)
}

fn opt(v: Option<u64>) -> Option<f64> {
    v.map(|v| v as f64)
}

fn per_component<'r>(
    r: &'r MemoryReport,
    out: &mut Vec<MetricSample<'r>>,
    pick: fn(&ComponentReport) -> Option<f64>,
) {
    for c in &r.components {
        if let Some(value) = pick(c) {
            out.push(MetricSample {
                label_values: vec![c.name.as_str()],
                value,
            });
        }
    }
}

fn per_model<'r>(
    r: &'r MemoryReport,
    out: &mut Vec<MetricSample<'r>>,
    pick: fn(&ModelReading) -> Option<f64>,
) {
    for m in &r.models {
        if let Some(value) = pick(m) {
            out.push(MetricSample {
                label_values: vec![m.name.as_str()],
                value,
            });
        }
    }
}

fn model_states<'r>(r: &'r MemoryReport, out: &mut Vec<MetricSample<'r>>) {
    const STATES: [(ModelState, &str); 3] = [
        (ModelState::Registered, "registered"),
        (ModelState::Loaded, "loaded"),
        (ModelState::Failed, "failed"),
    ];
    for m in &r.models {
        for (state, name) in STATES {
            out.push(MetricSample {
                label_values: vec![m.name.as_str(), name],
                value: f64::from(u8::from(m.state == state)),
            });
        }
    }
}

fn level_code(level: &str) -> f64 {
    match level {
        "warning" => 1.0,
        "critical" => 2.0,
        _ => 0.0,
    }
}

const fn family(
    name: &'static str,
    kind: MetricKind,
    unit: MetricUnit,
    help: &'static str,
    source: &'static str,
    read: Read,
) -> MetricFamily {
    MetricFamily {
        name,
        kind,
        unit,
        help,
        labels: &[],
        source,
        read,
    }
}

const fn labelled(mut f: MetricFamily, labels: &'static [&'static str]) -> MetricFamily {
    f.labels = labels;
    f
}

use MetricKind::{Counter, Gauge};
use MetricUnit::{Bytes, Count, Ratio, Seconds, State};

const COMPONENT: &[&str] = &["component"];
const MODEL: &[&str] = &["model"];

static FAMILIES: &[MetricFamily] = &[
    family(
        "allocator_tracked",
        Gauge,
        State,
        "1 when mm_track::TrackedAlloc is the global allocator and has served a call, else 0.",
        "allocator.tracked",
        |r, o| one(o, Some(f64::from(u8::from(r.allocator.tracked)))),
    ),
    family(
        "allocator_live_bytes",
        Gauge,
        Bytes,
        "Live heap bytes (folded per-thread counters).",
        "allocator.live_bytes",
        |r, o| one(o, opt(r.allocator.live_bytes)),
    ),
    family(
        "allocator_peak_bytes",
        Gauge,
        Bytes,
        "Most live heap bytes seen.",
        "allocator.peak_bytes",
        |r, o| one(o, opt(r.allocator.peak_bytes)),
    ),
    family(
        "allocator_error_bound_bytes",
        Gauge,
        Bytes,
        "How far live and peak heap bytes may be from exact (unfolded per-thread deltas).",
        "allocator.error_bound_bytes",
        |r, o| one(o, opt(r.allocator.error_bound_bytes)),
    ),
    family(
        "allocator_allocated_bytes_total",
        Counter,
        Bytes,
        "Bytes allocated since start.",
        "allocator.total_alloc_bytes",
        |r, o| one(o, opt(r.allocator.total_alloc_bytes)),
    ),
    family(
        "allocator_allocations_total",
        Counter,
        Count,
        "Heap allocations since start.",
        "allocator.allocs",
        |r, o| one(o, opt(r.allocator.allocs)),
    ),
    family(
        "allocator_deallocations_total",
        Counter,
        Count,
        "Heap deallocations since start.",
        "allocator.deallocs",
        |r, o| one(o, opt(r.allocator.deallocs)),
    ),
    family(
        "allocator_reallocations_total",
        Counter,
        Count,
        "Heap reallocations since start.",
        "allocator.reallocs",
        |r, o| one(o, opt(r.allocator.reallocs)),
    ),
    family(
        "budget_limit_bytes",
        Gauge,
        Bytes,
        "Hard memory limit of the budget.",
        "budget.limit_bytes",
        |r, o| one(o, n(r.budget.limit_bytes)),
    ),
    family(
        "budget_used_bytes",
        Gauge,
        Bytes,
        "Bytes reserved from the budget now.",
        "budget.used_bytes",
        |r, o| one(o, n(r.budget.used_bytes)),
    ),
    family(
        "budget_peak_bytes",
        Gauge,
        Bytes,
        "Most bytes reserved from the budget at once.",
        "budget.peak_bytes",
        |r, o| one(o, n(r.budget.peak_bytes)),
    ),
    family(
        "budget_used_ratio",
        Gauge,
        Ratio,
        "Reserved bytes as a fraction of the limit.",
        "budget.used_percent",
        |r, o| one(o, Some(r.budget.used_percent / 100.0)),
    ),
    family(
        "budget_pressure_level",
        Gauge,
        State,
        "Pressure level: 0 normal, 1 warning, 2 critical.",
        "budget.level",
        |r, o| one(o, Some(level_code(&r.budget.level))),
    ),
    family(
        "budget_warning_threshold_ratio",
        Gauge,
        Ratio,
        "Used fraction of the limit at which the level becomes warning.",
        "budget.warn_percent",
        |r, o| one(o, Some(f64::from(r.budget.warn_percent) / 100.0)),
    ),
    family(
        "budget_critical_threshold_ratio",
        Gauge,
        Ratio,
        "Used fraction of the limit at which the level becomes critical.",
        "budget.critical_percent",
        |r, o| one(o, Some(f64::from(r.budget.critical_percent) / 100.0)),
    ),
    family(
        "budget_denied_total",
        Counter,
        Count,
        "Reservations the budget refused.",
        "budget.denied",
        |r, o| one(o, n(r.budget.denied)),
    ),
    family(
        "budget_level_changes_total",
        Counter,
        Count,
        "Pressure level changes delivered.",
        "budget.events",
        |r, o| one(o, n(r.budget.events)),
    ),
    family(
        "process_rss_bytes",
        Gauge,
        Bytes,
        "Resident set size of the process.",
        "process.rss_bytes",
        |r, o| one(o, opt(r.process.rss_bytes)),
    ),
    family(
        "process_rss_anon_bytes",
        Gauge,
        Bytes,
        "Resident anonymous memory of the process (RssAnon).",
        "process.rss_anon_bytes",
        |r, o| one(o, opt(r.process.rss_anon_bytes)),
    ),
    family(
        "process_rss_file_bytes",
        Gauge,
        Bytes,
        "Resident file-backed memory of the process (RssFile), mapped models among it.",
        "process.rss_file_bytes",
        |r, o| one(o, opt(r.process.rss_file_bytes)),
    ),
    family(
        "system_memory_total_bytes",
        Gauge,
        Bytes,
        "Machine memory (MemTotal).",
        "process.mem_total_bytes",
        |r, o| one(o, opt(r.process.mem_total_bytes)),
    ),
    family(
        "system_memory_available_bytes",
        Gauge,
        Bytes,
        "Memory available without swapping (MemAvailable).",
        "process.mem_available_bytes",
        |r, o| one(o, opt(r.process.mem_available_bytes)),
    ),
    family(
        "cgroup_limit_bytes",
        Gauge,
        Bytes,
        "The cgroup's memory limit (memory.max), when it has one.",
        "process.cgroup_limit_bytes",
        |r, o| one(o, opt(r.process.cgroup_limit_bytes)),
    ),
    family(
        "cgroup_usage_bytes",
        Gauge,
        Bytes,
        "The cgroup's memory usage, page cache included (memory.current).",
        "process.cgroup_usage_bytes",
        |r, o| one(o, opt(r.process.cgroup_usage_bytes)),
    ),
    labelled(
        family(
            "component_held_bytes",
            Gauge,
            Bytes,
            "Bytes a component holds between uses.",
            "components[].held_bytes",
            |r, o| per_component(r, o, |c| n(c.held_bytes)),
        ),
        COMPONENT,
    ),
    labelled(
        family(
            "component_bound_bytes",
            Gauge,
            Bytes,
            "The most a component may hold, when bounded.",
            "components[].bound_bytes",
            |r, o| per_component(r, o, |c| opt(c.bound_bytes)),
        ),
        COMPONENT,
    ),
    labelled(
        family(
            "component_items",
            Gauge,
            Count,
            "Idle items a component holds (buffers, strings, maps, models, threads).",
            "components[].items",
            |r, o| per_component(r, o, |c| n(c.items)),
        ),
        COMPONENT,
    ),
    labelled(
        family(
            "component_hits_total",
            Counter,
            Count,
            "Requests a component served from held memory.",
            "components[].hits",
            |r, o| per_component(r, o, |c| opt(c.hits)),
        ),
        COMPONENT,
    ),
    labelled(
        family(
            "component_misses_total",
            Counter,
            Count,
            "Requests a component had to allocate, map or load for.",
            "components[].misses",
            |r, o| per_component(r, o, |c| opt(c.misses)),
        ),
        COMPONENT,
    ),
    labelled(
        family(
            "component_hit_ratio",
            Gauge,
            Ratio,
            "Hits as a fraction of hits and misses since start.",
            "components[].hit_rate",
            |r, o| per_component(r, o, |c| c.hit_rate),
        ),
        COMPONENT,
    ),
    labelled(
        family(
            "component_evictions_total",
            Counter,
            Count,
            "Items a component dropped to stay within its bound or under pressure.",
            "components[].evictions",
            |r, o| per_component(r, o, |c| opt(c.evictions)),
        ),
        COMPONENT,
    ),
    labelled(
        family(
            "component_high_water_bytes",
            Gauge,
            Bytes,
            "Highest use a component has seen (arenas: most bytes one request used).",
            "components[].high_water_bytes",
            |r, o| per_component(r, o, |c| opt(c.high_water_bytes)),
        ),
        COMPONENT,
    ),
    labelled(
        family(
            "model_file_bytes",
            Gauge,
            Bytes,
            "Size of a model's file on disk.",
            "models[].file_bytes",
            |r, o| per_model(r, o, |m| opt(m.file_bytes)),
        ),
        MODEL,
    ),
    labelled(
        family(
            "model_mapped_bytes",
            Gauge,
            Bytes,
            "Bytes of a model's file mapped now.",
            "models[].mapped_bytes",
            |r, o| per_model(r, o, |m| n(m.mapped_bytes)),
        ),
        MODEL,
    ),
    labelled(
        family(
            "model_resident_bytes",
            Gauge,
            Bytes,
            "Resident pages of a model's map, when measured.",
            "models[].resident_bytes",
            |r, o| per_model(r, o, |m| opt(m.resident_bytes)),
        ),
        MODEL,
    ),
    labelled(
        family(
            "model_index_heap_bytes",
            Gauge,
            Bytes,
            "Heap of a model's parsed index.",
            "models[].index_heap_bytes",
            |r, o| per_model(r, o, |m| n(m.index_heap_bytes)),
        ),
        MODEL,
    ),
    labelled(
        family(
            "model_tensors",
            Gauge,
            Count,
            "Tensors in a loaded model.",
            "models[].tensors",
            |r, o| per_model(r, o, |m| opt(m.tensors)),
        ),
        MODEL,
    ),
    labelled(
        family(
            "model_state",
            Gauge,
            State,
            "1 for the state a model is in (registered, loaded, failed), 0 for the others.",
            "models[].state",
            model_states,
        ),
        &["model", "state"],
    ),
    labelled(
        family(
            "model_idle_seconds",
            Gauge,
            Seconds,
            "Seconds since a model was last asked for.",
            "models[].idle_seconds",
            |r, o| per_model(r, o, |m| m.idle_seconds),
        ),
        MODEL,
    ),
    family(
        "interner_strings",
        Gauge,
        Count,
        "Distinct strings the interner holds.",
        "interner.strings",
        |r, o| one(o, r.interner.as_ref().and_then(|i| n(i.strings))),
    ),
    family(
        "interner_calls_total",
        Counter,
        Count,
        "Intern calls.",
        "interner.calls",
        |r, o| one(o, r.interner.as_ref().and_then(|i| n(i.calls))),
    ),
    family(
        "interner_requested_bytes_total",
        Counter,
        Bytes,
        "Bytes callers asked to intern, over all calls.",
        "interner.requested_bytes",
        |r, o| one(o, r.interner.as_ref().and_then(|i| n(i.requested_bytes))),
    ),
    family(
        "interner_held_bytes",
        Gauge,
        Bytes,
        "Bytes the interner holds (strings, index, fixed parts).",
        "interner.held_bytes",
        |r, o| one(o, r.interner.as_ref().and_then(|i| n(i.held_bytes))),
    ),
    family(
        "interner_saved_bytes",
        Gauge,
        Bytes,
        "Requested minus held bytes; negative while strings repeat too little to pay off.",
        "interner.saved_bytes",
        |r, o| one(o, r.interner.as_ref().map(|i| i.saved_bytes as f64)),
    ),
    family(
        "mmap_held_bytes",
        Gauge,
        Bytes,
        "Bytes of maps the mmap cache holds (never above its budget).",
        "mmap.held_bytes",
        |r, o| one(o, r.mmap.as_ref().and_then(|m| n(m.held_bytes))),
    ),
    family(
        "mmap_outstanding_bytes",
        Gauge,
        Bytes,
        "Bytes of evicted or uncached maps that callers still hold.",
        "mmap.outstanding_bytes",
        |r, o| one(o, r.mmap.as_ref().and_then(|m| n(m.outstanding_bytes))),
    ),
    family(
        "mmap_budget_bytes",
        Gauge,
        Bytes,
        "The mmap cache's byte budget.",
        "mmap.budget_bytes",
        |r, o| one(o, r.mmap.as_ref().and_then(|m| n(m.budget_bytes))),
    ),
    family(
        "mmap_entries",
        Gauge,
        Count,
        "Files the mmap cache holds.",
        "mmap.entries",
        |r, o| one(o, r.mmap.as_ref().and_then(|m| n(m.entries))),
    ),
    family(
        "mmap_hits_total",
        Counter,
        Count,
        "Gets the mmap cache served from a cached map.",
        "mmap.hits",
        |r, o| one(o, r.mmap.as_ref().and_then(|m| n(m.hits))),
    ),
    family(
        "mmap_misses_total",
        Counter,
        Count,
        "Gets that mapped a file.",
        "mmap.misses",
        |r, o| one(o, r.mmap.as_ref().and_then(|m| n(m.misses))),
    ),
    family(
        "mmap_evictions_total",
        Counter,
        Count,
        "Maps the mmap cache evicted.",
        "mmap.evictions",
        |r, o| one(o, r.mmap.as_ref().and_then(|m| n(m.evictions))),
    ),
    family(
        "arena_threads",
        Gauge,
        Count,
        "Threads whose request arena is alive.",
        "arenas.threads",
        |r, o| one(o, n(r.arenas.threads)),
    ),
    family(
        "arena_high_water_bytes",
        Gauge,
        Bytes,
        "Most bytes one request used in its arena.",
        "arenas.high_water_bytes",
        |r, o| one(o, n(r.arenas.high_water_bytes)),
    ),
    family(
        "arena_retained_bytes",
        Gauge,
        Bytes,
        "Arena chunk bytes kept between requests.",
        "arenas.retained_bytes",
        |r, o| one(o, n(r.arenas.retained_bytes)),
    ),
    family(
        "arena_resets_total",
        Counter,
        Count,
        "Requests completed in arenas (outermost scopes).",
        "arenas.resets",
        |r, o| one(o, n(r.arenas.resets)),
    ),
    family(
        "arena_chunk_allocations_total",
        Counter,
        Count,
        "Chunks the arenas requested from the allocator; flat at steady state.",
        "arenas.chunk_allocations",
        |r, o| one(o, n(r.arenas.chunk_allocations)),
    ),
    family(
        "pressure_handlers",
        Gauge,
        Count,
        "Registered pressure handlers.",
        "pressure.handlers",
        |r, o| one(o, Some(r.pressure.handlers.len() as f64)),
    ),
    family(
        "pressure_handler_runs_total",
        Counter,
        Count,
        "Pressure handler runs, components' hooks included.",
        "pressure.handler_runs",
        |r, o| one(o, n(r.pressure.handler_runs)),
    ),
    family(
        "pressure_handler_panics_total",
        Counter,
        Count,
        "Pressure handler runs that panicked (the other handlers still ran).",
        "pressure.handler_panics",
        |r, o| one(o, n(r.pressure.handler_panics)),
    ),
    family(
        "pressure_freed_bytes_total",
        Counter,
        Bytes,
        "Bytes the pressure handlers reported freeing.",
        "pressure.freed_bytes",
        |r, o| one(o, n(r.pressure.freed_bytes)),
    ),
    family(
        "pressure_dropped_events_total",
        Counter,
        Count,
        "Pressure events not queued to a subscriber whose channel was full.",
        "pressure.dropped_events",
        |r, o| one(o, n(r.pressure.dropped_events)),
    ),
    family(
        "heap_released_bytes_total",
        Counter,
        Bytes,
        "Freed heap bytes given back to the system (release_heap, malloc_trim).",
        "pressure.heap_released_bytes",
        |r, o| one(o, n(r.pressure.heap_released_bytes)),
    ),
    family(
        "heap_unexplained_bytes",
        Gauge,
        Bytes,
        "Anonymous resident bytes the live heap does not explain.",
        "fragmentation.unexplained_bytes",
        |r, o| {
            one(
                o,
                r.fragmentation
                    .as_ref()
                    .and_then(|f| n(f.unexplained_bytes)),
            )
        },
    ),
    family(
        "heap_fragmentation_ratio",
        Gauge,
        Ratio,
        "Unexplained anonymous bytes as a fraction of anonymous resident memory.",
        "fragmentation.fraction",
        |r, o| one(o, r.fragmentation.as_ref().map(|f| f.fraction)),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        let mut seen = std::collections::HashSet::new();
        for f in metric_families() {
            assert!(seen.insert(f.name()), "{} twice", f.name());
            assert!(
                f.name()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                f.name()
            );
            assert_eq!(
                f.kind() == MetricKind::Counter,
                f.name().ends_with("_total"),
                "{}: counters and only counters end in _total",
                f.name()
            );
            let base = f.name().trim_end_matches("_total");
            match f.unit() {
                MetricUnit::Bytes => assert!(base.ends_with("_bytes"), "{}", f.name()),
                MetricUnit::Seconds => assert!(base.ends_with("_seconds"), "{}", f.name()),
                MetricUnit::Ratio => assert!(base.ends_with("_ratio"), "{}", f.name()),
                MetricUnit::Count | MetricUnit::State => {}
            }
            assert!(!f.help().is_empty() && !f.source().is_empty());
        }
    }
}
