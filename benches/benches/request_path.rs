//! The async request path's adapters against what a service would write without them:
//! a pooled arena guard against a fresh `Bump` per request, the SSE stream adapter (reused
//! per response, or fresh) against `eventsource-stream` 0.2.3, and a pooled buffer frozen
//! into `Bytes` against a fresh `Vec` turned into `Bytes`. Run: see docs/benchmarks.md,
//! section "The async request path".

use std::convert::Infallible;
use std::hint::black_box;

use bumpalo::Bump;
use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use memory_manager::{MemoryConfig, MemoryManager};
use mm_arena::{ArenaConfig, ArenaPool};
use mm_llm::sse_stream::EventStream;

/// One request's arena work: 100 small values and a 1 KiB prompt.
const VALUES: u64 = 100;

fn prompt() -> &'static str {
    static PROMPT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PROMPT.get_or_init(|| "explain this ".repeat(79))
}

fn arena(c: &mut Criterion) {
    let mut group = c.benchmark_group("request/arena");
    let manager = MemoryManager::new(MemoryConfig::new().with_max_memory(256 << 20)).unwrap();
    group.bench_function("mm_manager_request_arena", |b| {
        b.iter(|| {
            let arena = manager.request_arena().unwrap();
            for i in 0..VALUES {
                black_box(arena.alloc(black_box(i)).unwrap());
            }
            black_box(arena.alloc_str(prompt()).unwrap().len())
        })
    });
    let pool = ArenaPool::new(ArenaConfig::new().with_initial_capacity(64 << 10), 8).unwrap();
    group.bench_function("mm_arena_pool", |b| {
        b.iter(|| {
            let arena = pool.get().unwrap();
            for i in 0..VALUES {
                black_box(arena.alloc(black_box(i)).unwrap());
            }
            black_box(arena.alloc_str(prompt()).unwrap().len())
        })
    });
    group.bench_function("bumpalo_fresh_64k", |b| {
        b.iter(|| {
            let bump = Bump::with_capacity(64 << 10);
            for i in 0..VALUES {
                black_box(bump.alloc(black_box(i)));
            }
            black_box(bump.alloc_str(prompt()).len())
        })
    });
    group.bench_function("bumpalo_fresh", |b| {
        b.iter(|| {
            let bump = Bump::new();
            for i in 0..VALUES {
                black_box(bump.alloc(black_box(i)));
            }
            black_box(bump.alloc_str(prompt()).len())
        })
    });
    group.finish();
}

/// A 50-event chat-completions response in chunks of about 1,400 bytes.
fn response() -> Vec<bytes::Bytes> {
    let mut s = Vec::new();
    for i in 0..49 {
        s.extend_from_slice(format!("data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"word{i} \"}}}}]}}\n\n").as_bytes());
    }
    s.extend_from_slice(b"data: [DONE]\n\n");
    s.chunks(1400).map(bytes::Bytes::copy_from_slice).collect()
}

type Body<'a> = futures::stream::Iter<
    std::iter::Map<
        std::slice::Iter<'a, bytes::Bytes>,
        fn(&bytes::Bytes) -> Result<bytes::Bytes, Infallible>,
    >,
>;

fn body(chunks: &[bytes::Bytes]) -> Body<'_> {
    let ok: fn(&bytes::Bytes) -> Result<bytes::Bytes, Infallible> = |c| Ok(c.clone());
    futures::stream::iter(chunks.iter().map(ok))
}

type Idle = EventStream<futures::stream::Empty<Result<bytes::Bytes, Infallible>>>;

fn sse(c: &mut Criterion) {
    let chunks = response();
    let mut group = c.benchmark_group("request/sse_50_events");
    let mut idle: Option<Idle> = Some(mm_llm::sse_stream::Eventsource::eventsource(
        futures::stream::empty(),
    ));
    group.bench_function("mm_llm_stream_reused", |b| {
        b.iter(|| {
            futures::executor::block_on(async {
                let mut events = idle.take().unwrap().reuse(body(&chunks));
                let mut total = 0;
                while let Some(ev) = events.next().await {
                    total += ev.unwrap().data.len();
                }
                idle = Some(events.reuse(futures::stream::empty()));
                black_box(total)
            })
        })
    });
    group.bench_function("mm_llm_stream_fresh", |b| {
        b.iter(|| {
            futures::executor::block_on(async {
                let mut events = mm_llm::sse_stream::Eventsource::eventsource(body(&chunks));
                let mut total = 0;
                while let Some(ev) = events.next().await {
                    total += ev.unwrap().data.len();
                }
                black_box(total)
            })
        })
    });
    group.bench_function("eventsource_stream_0_2_3", |b| {
        b.iter(|| {
            futures::executor::block_on(async {
                let mut events = eventsource_stream::Eventsource::eventsource(body(&chunks));
                let mut total = 0;
                while let Some(ev) = events.next().await {
                    total += ev.unwrap().data.len();
                }
                black_box(total)
            })
        })
    });
    group.finish();
}

fn body_bytes(c: &mut Criterion) {
    let mut group = c.benchmark_group("request/body_1k");
    let manager = MemoryManager::new(MemoryConfig::new().with_max_memory(256 << 20)).unwrap();
    let text = prompt().as_bytes();
    group.bench_function("mm_managed_buffer_into_bytes", |b| {
        b.iter(|| {
            let mut buf = manager.buffer(text.len()).unwrap();
            buf.extend_from_slice(text);
            let body = buf.into_bytes();
            black_box(body.slice(10..20).len())
        })
    });
    let pool = mm_pool::BufferPool::new(Default::default()).unwrap();
    group.bench_function("mm_pooled_buffer_into_bytes", |b| {
        b.iter(|| {
            let mut buf = pool.acquire(text.len());
            buf.extend_from_slice(text);
            let body = buf.into_bytes();
            black_box(body.slice(10..20).len())
        })
    });
    group.bench_function("vec_into_bytes", |b| {
        b.iter(|| {
            let mut buf = Vec::with_capacity(4096);
            buf.extend_from_slice(text);
            let body = bytes::Bytes::from(buf);
            black_box(body.slice(10..20).len())
        })
    });
    group.finish();
}

/// The registry's `get` on the real model (`MM_GGUF_TEST_MODEL`; skipped without it): a
/// first get (map from the warm cache + parse, then unload) against a loaded one (a hit).
fn registry(c: &mut Criterion) {
    let Some(path) = std::env::var_os("MM_GGUF_TEST_MODEL") else {
        eprintln!("request/registry_get skipped: MM_GGUF_TEST_MODEL is not set");
        return;
    };
    let registry = mm_gguf::ModelRegistry::default();
    // SAFETY: the test model is never modified while the bench runs.
    unsafe { registry.register("m", &path) };
    let mut group = c.benchmark_group("request/registry_get");
    group.bench_function("first_get_map_and_parse", |b| {
        b.iter(|| {
            let model = registry.get("m").unwrap();
            let n = model.gguf().n_tensors();
            drop(model);
            registry.unload("m");
            black_box(n)
        })
    });
    drop(registry.get("m").unwrap());
    group.bench_function("loaded_get", |b| {
        b.iter(|| black_box(registry.get("m").unwrap().gguf().n_tensors()))
    });
    group.bench_function("loaded_get_async", |b| {
        b.iter(|| {
            let model = futures::executor::block_on(registry.get_async("m")).unwrap();
            black_box(model.gguf().n_tensors())
        })
    });
    group.finish();
}

criterion_group!(benches, arena, sse, body_bytes, registry);
criterion_main!(benches);
