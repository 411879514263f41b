//! Allocations made by the service's own request work, per route, from per-task counting
//! (`mm_track::count` / `count_future`): what `GET /debug/allocs` shows.
//!
//! Counted: everything a handler does between the parsed request and the bytes handed to
//! the HTTP stack (budget, model, cache, tokenizer, dequantization, conversation fit and
//! assembly, the SSE parse and re-encode of each event). Not counted: hyper and axum (the
//! connection, headers, the request body, the boxed response body), `serde_json`'s parse of
//! the request, and the upstream client (reqwest), whose polls are measured apart and
//! subtracted.

use std::sync::atomic::{AtomicU64, Ordering};

use mm_track::ScopeStats;
use serde::Serialize;

/// Counters of one route.
#[derive(Debug, Default)]
pub struct RouteTally {
    requests: AtomicU64,
    allocs: AtomicU64,
    bytes: AtomicU64,
    last_allocs: AtomicU64,
    zero_streak: AtomicU64,
}

/// A reading of a [`RouteTally`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RouteReading {
    /// Requests counted (completed or cancelled).
    pub requests: u64,
    /// Allocator calls (allocations and reallocations) in the counted parts, summed.
    pub allocs: u64,
    /// Bytes those calls asked for.
    pub bytes: u64,
    /// Calls of the last request counted.
    pub last_allocs: u64,
    /// Requests in a row, up to the last, that made none.
    pub zero_streak: u64,
}

impl RouteTally {
    /// Adds one request's counted calls.
    pub fn record(&self, stats: ScopeStats) {
        let calls = stats.allocs + stats.reallocs;
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.allocs.fetch_add(calls, Ordering::Relaxed);
        self.bytes.fetch_add(stats.alloc_bytes, Ordering::Relaxed);
        self.last_allocs.store(calls, Ordering::Relaxed);
        if calls == 0 {
            self.zero_streak.fetch_add(1, Ordering::Relaxed);
        } else {
            self.zero_streak.store(0, Ordering::Relaxed);
        }
    }

    /// The counters now.
    pub fn reading(&self) -> RouteReading {
        RouteReading {
            requests: self.requests.load(Ordering::Relaxed),
            allocs: self.allocs.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            last_allocs: self.last_allocs.load(Ordering::Relaxed),
            zero_streak: self.zero_streak.load(Ordering::Relaxed),
        }
    }
}

/// The service's counters.
#[derive(Debug, Default)]
pub struct Tallies {
    /// `POST /v1/embeddings`.
    pub embeddings: RouteTally,
    /// `POST /v1/chat/completions`.
    pub chat: RouteTally,
    /// Streams whose client went away before the end.
    pub cancelled_streams: AtomicU64,
    /// Requests refused with 503 for memory.
    pub overloaded: AtomicU64,
}

/// What `GET /debug/allocs` returns.
#[derive(Debug, Clone, Serialize)]
pub struct TallyReport {
    /// Whether a tracking allocator is installed (all counts are 0 without one).
    pub tracking: bool,
    /// `POST /v1/embeddings`.
    pub embeddings: RouteReading,
    /// `POST /v1/chat/completions`.
    pub chat: RouteReading,
    /// Streams cancelled by their client.
    pub cancelled_streams: u64,
    /// 503s for memory.
    pub overloaded: u64,
}

impl Tallies {
    /// The report.
    pub fn report(&self) -> TallyReport {
        TallyReport {
            tracking: mm_track::is_active(),
            embeddings: self.embeddings.reading(),
            chat: self.chat.reading(),
            cancelled_streams: self.cancelled_streams.load(Ordering::Relaxed),
            overloaded: self.overloaded.load(Ordering::Relaxed),
        }
    }
}
