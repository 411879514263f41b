//! A tiny OpenAI-compatible upstream for tests and the load stage: `POST
//! /v1/chat/completions` answers every request with a recorded chat-completions stream,
//! one event per `pace`. `GET /stub/stats` tells how many streams started, ended and were
//! cancelled by their client, and the last request body it received.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

/// The stream replayed by default (`tests/fixtures/chat-stream.sse`).
pub const RECORDED: &str = include_str!("../tests/fixtures/chat-stream.sse");

/// The stub's state.
#[derive(Debug)]
pub struct Stub {
    events: Vec<Bytes>,
    pace: Duration,
    started: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    last_request: Mutex<Bytes>,
}

/// Splits an SSE recording into its events (blocks ending in a blank line).
pub fn split_events(recording: &str) -> Vec<Bytes> {
    let text = recording.replace("\r\n", "\n");
    text.split_inclusive("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|b| Bytes::copy_from_slice(b.as_bytes()))
        .collect()
}

impl Stub {
    /// A stub replaying `recording`, one event every `pace`.
    pub fn new(recording: &str, pace: Duration) -> Arc<Self> {
        Arc::new(Self {
            events: split_events(recording),
            pace,
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            last_request: Mutex::new(Bytes::new()),
        })
    }

    /// Streams started, completed, and cancelled by the client.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.started.load(Ordering::SeqCst),
            self.completed.load(Ordering::SeqCst),
            self.cancelled.load(Ordering::SeqCst),
        )
    }

    /// The last request body.
    pub fn last_request(&self) -> Bytes {
        self.last_request
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The stub's routes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(complete))
            .route("/stub/stats", get(stats))
            .with_state(Arc::clone(self))
    }
}

/// Counts a stream as cancelled if it is dropped before its last event.
struct Replay {
    stub: Arc<Stub>,
    next: usize,
}

impl Drop for Replay {
    fn drop(&mut self) {
        let counter = if self.next >= self.stub.events.len() {
            &self.stub.completed
        } else {
            &self.stub.cancelled
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

async fn complete(State(stub): State<Arc<Stub>>, body: Bytes) -> Response {
    *stub
        .last_request
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = body;
    stub.started.fetch_add(1, Ordering::SeqCst);
    let replay = Replay {
        stub: Arc::clone(&stub),
        next: 0,
    };
    let events = futures::stream::unfold(replay, |mut r| async move {
        let ev = r.stub.events.get(r.next)?.clone();
        if r.next > 0 && !r.stub.pace.is_zero() {
            tokio::time::sleep(r.stub.pace).await;
        }
        r.next += 1;
        Some((Ok::<_, std::convert::Infallible>(ev), r))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(events),
    )
        .into_response()
}

async fn stats(State(stub): State<Arc<Stub>>) -> Response {
    let (started, completed, cancelled) = stub.counts();
    let last = stub.last_request();
    let last: serde_json::Value = serde_json::from_slice(&last).unwrap_or_default();
    axum::Json(serde_json::json!({
        "started": started,
        "completed": completed,
        "cancelled": cancelled,
        "last_request": last,
    }))
    .into_response()
}
