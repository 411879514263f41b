//! The async request path end to end, on a multi-thread tokio runtime: 10,000 requests,
//! each admitted by the budget (`reserve_before`), with a loaded model from the registry
//! (`get_async`), through a pooled arena guard, a conversation fit, the SSE stream adapter over a
//! byte stream that suspends before every chunk, and a pooled buffer frozen into `Bytes`,
//! counted per request with `mm_track::count_future` across the workers that poll it.
//!
//! After warm-up, our parts make no heap allocation: the one allocation a request makes is
//! inside `bytes::Bytes::from_owner` (the shared header of the body that returns the buffer
//! to its pool), counted on its own and asserted to be exactly that one.
#![cfg(not(loom))]

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use memory_manager::{MemoryConfig, MemoryManager};
use mm_llm::sse_stream::{EventStream, Eventsource};
use mm_llm::{ByteEstimate, ContextWindows, Conversation, ConversationSetup, FitPolicy};
use mm_track::{ScopeStats, TrackedAlloc, count_future};

#[global_allocator]
static GLOBAL: TrackedAlloc = TrackedAlloc::new(std::alloc::System);

const LANES: usize = 8;
const WARM_UP: usize = 600;
const REQUESTS: usize = 10_000;
const EVENTS: usize = 50;
const USER_TEXTS: usize = 97;

/// A byte stream that is pending once before each chunk (and wakes itself), as a network
/// body is: every request suspends and may resume on another worker.
struct Trickle<I> {
    chunks: I,
    ready: bool,
}

impl<I: Iterator<Item = Bytes> + Unpin> Stream for Trickle<I> {
    type Item = Result<Bytes, Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if !self.ready {
            self.ready = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.ready = false;
        Poll::Ready(self.chunks.next().map(Ok))
    }
}

type Idle = EventStream<futures::stream::Empty<Result<Bytes, Infallible>>>;

/// One lane of requests (a connection, say): its conversation, its inputs, and the SSE
/// adapter it reuses for every upstream response.
struct Lane {
    manager: MemoryManager,
    models: mm_gguf::ModelRegistry,
    conversation: Conversation<ByteEstimate>,
    users: Vec<String>,
    body: Vec<Bytes>,
    sse: Option<Idle>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    events: usize,
    body_len: usize,
    dropped: u32,
    /// The allocator calls of the body's conversion into `Bytes`, counted on their own.
    to_bytes: ScopeStats,
}

impl Lane {
    fn new(
        manager: &MemoryManager,
        models: &mm_gguf::ModelRegistry,
        setup: &Arc<ConversationSetup>,
        seed: usize,
    ) -> Self {
        let mut conversation = Conversation::new(Arc::clone(setup), ByteEstimate::default());
        conversation.set_model("gpt-4o").expect("model");
        conversation.set_system("You are a helpful assistant. Answer briefly.");
        let users = (0..USER_TEXTS)
            .map(|i| {
                format!(
                    "Question {seed}.{i}: {}",
                    "explain this ".repeat(i % 40 + 5)
                )
            })
            .collect();
        let mut sse = Vec::new();
        for i in 0..EVENTS - 1 {
            sse.extend_from_slice(format!("data: {{\"delta\":\"word{i} \"}}\n\n").as_bytes());
        }
        sse.extend_from_slice(b"data: [DONE]\n\n");
        // Uneven chunks, so events straddle chunk boundaries.
        let body = sse.chunks(331).map(Bytes::copy_from_slice).collect();
        Lane {
            manager: manager.clone(),
            models: models.clone(),
            conversation,
            users,
            body,
            sse: Some(futures::stream::empty().eventsource()),
        }
    }

    /// One request: everything it holds across its awaits is `Send`.
    async fn request(&mut self, i: usize) -> Outcome {
        // Admission by memory (fits at once here; the deadline never fires).
        let admitted = self
            .manager
            .budget()
            .reserve_before(64 << 10, std::future::pending::<()>())
            .await
            .expect("admitted");
        let model = self.models.get_async("m").await.expect("model");
        assert_eq!(model.gguf().n_tensors(), 1);
        let arena = self.manager.request_arena().expect("arena");
        let user = arena.alloc_str(&self.users[i % USER_TEXTS]).expect("alloc");
        self.conversation.push_user(user).expect("push");
        let fit = self.conversation.fit().expect("fit");
        let mut reply = self.manager.buffer(4096).expect("buffer");
        let body = Trickle {
            chunks: self.body.iter().cloned(),
            ready: false,
        };
        let mut events = self.sse.take().expect("idle adapter").reuse(body);
        let mut n = 0;
        while let Some(event) = events.next().await {
            let event = event.expect("event");
            n += 1;
            if event.data == "[DONE]" {
                break;
            }
            reply.extend_from_slice(event.data.as_bytes());
        }
        self.sse = Some(events.reuse(futures::stream::empty()));
        let words = arena.alloc_slice_fill_copy(n, 0u32).expect("alloc").len();
        assert_eq!(words, n);
        let (body, to_bytes) = mm_track::count(|| reply.into_bytes());
        let body_len = body.len();
        drop(body); // sent: the buffer goes back to the pool
        drop(admitted);
        Outcome {
            events: n,
            body_len,
            dropped: fit.dropped_items,
            to_bytes,
        }
    }
}

/// Makes the pools hold more idle buffers and arenas than can ever be in use or parked in
/// a thread's cache at once, so no request finds them empty, whatever the scheduling.
fn fill_pools(manager: &MemoryManager) {
    let buffers: Vec<_> = (0..4 * LANES)
        .map(|_| manager.buffer(4096).expect("buffer"))
        .collect();
    let arenas: Vec<_> = (0..4 * LANES)
        .map(|_| manager.request_arena().expect("arena"))
        .collect();
    drop(buffers);
    drop(arenas);
}

#[test]
fn ten_thousand_requests_make_no_allocation_in_our_parts_after_warm_up() {
    assert!(mm_track::is_active());
    let manager =
        MemoryManager::new(MemoryConfig::new().with_max_memory(256 << 20)).expect("manager");
    let mut windows = ContextWindows::empty();
    windows.insert("gpt-4o", 16_000);
    let setup = Arc::new(
        ConversationSetup::from_manager(&manager, windows, FitPolicy::default()).expect("setup"),
    );
    fill_pools(&manager);
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("m.gguf");
    let mut w = mm_gguf::GgufWriter::new();
    w.add_tensor("w", mm_gguf::types::GgmlType::F32, &[16], &[0u8; 64])
        .expect("tensor");
    w.write_file(&path).expect("write");
    let models = mm_gguf::ModelRegistry::from_manager(&manager, mm_gguf::RegistryConfig::new());
    // SAFETY: the file is written once and never modified.
    unsafe { models.register("m", &path) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let per_lane: Vec<(u64, Vec<Outcome>, Vec<ScopeStats>)> = rt.block_on(async {
        let tasks: Vec<_> = (0..LANES)
            .map(|seed| {
                let mut lane = Lane::new(&manager, &models, &setup, seed);
                tokio::spawn(async move {
                    let mut dropped = 0u64;
                    for i in 0..WARM_UP {
                        dropped += u64::from(lane.request(i).await.dropped);
                    }
                    let mut outcomes = Vec::with_capacity(REQUESTS / LANES);
                    let mut stats = Vec::with_capacity(REQUESTS / LANES);
                    for i in WARM_UP..WARM_UP + REQUESTS / LANES {
                        let (outcome, counted) = count_future(lane.request(i)).await;
                        outcomes.push(outcome);
                        stats.push(counted);
                    }
                    (dropped, outcomes, stats)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(LANES);
        for t in tasks {
            all.push(t.await.expect("lane"));
        }
        all
    });
    let mut requests = 0;
    let mut cut = 0u64;
    for (warm_dropped, outcomes, stats) in &per_lane {
        assert!(
            *warm_dropped > 0,
            "warm-up must reach fits that cut history"
        );
        for (o, s) in outcomes.iter().zip(stats) {
            requests += 1;
            cut += u64::from(o.dropped);
            assert_eq!(o.events, EVENTS);
            assert!(o.body_len > 0);
            // The body's conversion: the one allocation, inside `bytes`.
            assert_eq!((o.to_bytes.allocs, o.to_bytes.reallocs), (1, 0), "{o:?}");
            // Everything else in the request: nothing.
            assert_eq!(
                (s.allocs - o.to_bytes.allocs, s.reallocs),
                (0, 0),
                "request allocated: {s:?} ({o:?})"
            );
        }
    }
    assert_eq!(requests, REQUESTS);
    assert!(cut > 0, "measured requests cut history too");
    // The zero is not vacuous: the counter sees an allocation made inside a counted future.
    let (_, probe) = rt.block_on(count_future(async { std::hint::black_box(vec![1u8; 64]) }));
    assert_eq!(probe.allocs, 1);
    let report = manager.report();
    let arenas = report
        .components
        .iter()
        .find(|c| c.name == "request-arenas")
        .expect("arena row");
    assert_eq!(arenas.items, 0, "every guard went back");
    assert_eq!(
        arenas.misses,
        Some(4 * LANES as u64),
        "only the pre-fill built arenas"
    );
}

/// What the same steps cost without our adapters, for docs/benchmarks.md (print with
/// `--nocapture`): `eventsource-stream` allocates per event, a fresh stream adapter and a
/// fresh `Bump` per request allocate their buffers every time.
#[test]
fn the_peers_allocate_on_every_request() {
    let chunks: Vec<Bytes> = {
        let mut s = Vec::new();
        for i in 0..EVENTS - 1 {
            s.extend_from_slice(format!("data: {{\"delta\":\"word{i} \"}}\n\n").as_bytes());
        }
        s.extend_from_slice(b"data: [DONE]\n\n");
        s.chunks(331).map(Bytes::copy_from_slice).collect()
    };
    let body = || futures::stream::iter(chunks.iter().cloned().map(Ok::<_, Infallible>));
    let drain_peer = || {
        futures::executor::block_on(async {
            let mut events = eventsource_stream::Eventsource::eventsource(body());
            let mut n = 0;
            while let Some(ev) = events.next().await {
                n += usize::from(!ev.expect("event").data.is_empty());
            }
            n
        })
    };
    let drain_fresh = || {
        futures::executor::block_on(async {
            let mut events = body().eventsource();
            let mut n = 0;
            while let Some(ev) = events.next().await {
                n += usize::from(!ev.expect("event").data.is_empty());
            }
            n
        })
    };
    drain_peer();
    drain_fresh();
    let (n, peer) = mm_track::count(drain_peer);
    assert_eq!(n, EVENTS);
    let (n, fresh) = mm_track::count(drain_fresh);
    assert_eq!(n, EVENTS);
    let (_, bump) = mm_track::count(|| {
        let bump = bumpalo::Bump::with_capacity(64 << 10);
        std::hint::black_box(bump.alloc_str("system: be brief"));
    });
    println!(
        "allocations per {EVENTS}-event response: eventsource-stream {}, fresh mm_llm stream {}; per fresh 64 KiB Bump: {}",
        peer.allocs, fresh.allocs, bump.allocs
    );
    assert!(
        peer.allocs >= EVENTS as u64,
        "the peer builds strings per event"
    );
    assert!(fresh.allocs > 0 && bump.allocs > 0);
}
