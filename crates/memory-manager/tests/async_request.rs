//! The async request path: a pooled arena guard and a pooled buffer inside a real axum
//! handler (compile check of axum's `Handler` bound), warm guards that make no heap
//! allocation across awaits on a multi-thread runtime, and buffers frozen into `Bytes`
//! that go back to the pool (and release their charge) when the last clone drops.
#![cfg(not(loom))]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use memory_manager::{MemoryConfig, MemoryError, MemoryManager};
use mm_pool::bytes::Bytes;
use mm_track::{TrackedAlloc, count_future};

#[global_allocator]
static GLOBAL: TrackedAlloc = TrackedAlloc::new(std::alloc::System);

fn manager() -> MemoryManager {
    MemoryManager::new(MemoryConfig::new().with_max_memory(64 << 20)).expect("manager")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime")
}

fn status(e: MemoryError) -> (StatusCode, String) {
    (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// An axum handler that allocates through the guard, awaits with arena references alive,
/// allocates again and answers with a pooled buffer frozen into `Bytes`.
async fn complete(
    State(manager): State<MemoryManager>,
    body: Bytes,
) -> Result<Bytes, (StatusCode, String)> {
    let arena = manager.request_arena().map_err(status)?;
    let prompt = arena
        .alloc_str(std::str::from_utf8(&body).unwrap_or("?"))
        .map_err(|e| status(e.into()))?;
    tokio::task::yield_now().await; // an upstream call, say
    let tokens = arena
        .alloc_slice_fill_copy(prompt.len(), 1u32)
        .map_err(|e| status(e.into()))?;
    tokio::task::yield_now().await;
    let mut out = manager.buffer(256).map_err(status)?;
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(prompt.as_bytes());
    out.extend_from_slice(format!(" ({} tokens)\n\n", tokens.len()).as_bytes());
    Ok(out.into_bytes())
}

/// The router type-checks only if `complete` implements `Handler`: its future is `Send`.
fn app(manager: MemoryManager) -> Router {
    Router::new()
        .route("/complete", post(complete))
        .with_state(manager)
}

#[test]
fn the_handler_is_an_axum_handler_and_answers() {
    let m = manager();
    let _router = app(m.clone());
    let rt = runtime();
    let out = rt
        .block_on(async {
            tokio::spawn(complete(State(m.clone()), Bytes::from_static(b"hi")))
                .await
                .expect("task")
        })
        .expect("handler");
    assert_eq!(&out[..], b"data: hi (2 tokens)\n\n");
    assert_eq!(
        m.buffer_pool().stats().returns,
        0,
        "the body holds the buffer"
    );
    drop(out);
    assert_eq!(m.buffer_pool().stats().returns, 1);
    let row = m
        .report()
        .components
        .into_iter()
        .find(|c| c.name == "request-arenas")
        .expect("arena row");
    assert_eq!(row.items, 0, "the guard went back");
    assert!(row.held_bytes > 0, "warm in the pool");
}

/// Suspends once and wakes itself (`wake_by_ref` on a tokio waker only schedules the task;
/// `tokio::task::yield_now` would push into a per-worker list that grows on first use, an
/// allocation of the runtime's, not of ours).
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A request through a warm guard: allocate, await, allocate, on whatever worker.
async fn through_guard(m: &MemoryManager, n: u32) -> usize {
    let arena = m.request_arena().expect("arena");
    let a = arena.alloc_slice_fill_copy(64, n).expect("alloc");
    YieldOnce(false).await;
    let b = arena.alloc_str("assistant: ok").expect("alloc");
    YieldOnce(false).await;
    a.len() + b.len()
}

#[test]
fn a_warm_guard_makes_no_heap_allocation_across_awaits() {
    let m = manager();
    let rt = runtime();
    let counts = rt.block_on(async {
        let m2 = m.clone();
        tokio::spawn(async move {
            // Warm-up: the pool's first arena and the component row.
            through_guard(&m2, 0).await;
            let mut counts = Vec::with_capacity(200);
            for n in 0..200 {
                let (len, stats) = count_future(through_guard(&m2, n)).await;
                assert_eq!(len, 77);
                counts.push(stats.allocs + stats.reallocs);
            }
            counts
        })
        .await
        .expect("task")
    });
    assert!(counts.iter().all(|&c| c == 0), "allocations: {counts:?}");
}

#[test]
fn a_frozen_buffer_keeps_its_charge_until_the_last_clone_drops() {
    let m = manager();
    let mut buf = m.buffer(1000).expect("buffer");
    buf.extend_from_slice(b"event: token\ndata: hi\n\n");
    let charged = buf.charged_bytes();
    let body: Bytes = buf.into();
    let slice = body.slice(19..21);
    assert_eq!(m.budget().used(), charged);
    let other = std::thread::spawn(move || {
        drop(body);
        slice
    })
    .join()
    .expect("thread");
    assert_eq!(&other[..], b"hi");
    assert_eq!(m.buffer_pool().stats().returns, 0);
    assert_eq!(m.budget().used(), charged);
    drop(other);
    assert_eq!(m.buffer_pool().stats().returns, 1);
    assert_eq!(m.budget().used(), 0);
}

#[test]
fn freezing_through_split_is_counted_and_releases_the_charge() {
    let m = manager();
    let mut buf = m.buffer(1000).expect("buffer");
    buf.extend_from_slice(b"data: hi\n\n");
    let frozen = buf.split().freeze();
    drop(buf); // the guard goes: its charge is released, the buffer cannot return
    assert_eq!(m.budget().used(), 0);
    let s = m.buffer_pool().stats();
    assert_eq!((s.returns, s.reshaped), (0, 1));
    assert_eq!(&frozen[..], b"data: hi\n\n");
}

#[test]
fn a_warm_buffer_into_bytes_costs_one_allocation_in_bytes() {
    let m = manager();
    drop(m.buffer(100).expect("warm-up").into_bytes());
    let (_, stats) = mm_track::count(|| {
        let mut buf = m.buffer(100).expect("buffer");
        buf.extend_from_slice(b"data: hi\n\n");
        let body = buf.into_bytes();
        let part = body.slice(6..8);
        drop(body);
        assert_eq!(&part[..], b"hi");
    });
    // `Bytes::from_owner` boxes the owner; the pool and the budget allocate nothing.
    assert_eq!((stats.allocs, stats.reallocs, stats.deallocs), (1, 0, 1));
}
