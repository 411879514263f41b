//! The request-path claim: after warm-up, a request that parses into an arena scope and
//! writes its response into pooled buffers makes no heap allocation at all.

use mm_arena::bumpalo;
use mm_pool::{BufferPool, BufferPoolConfig, ObjectPool};

#[global_allocator]
static GLOBAL: mm_track::TrackedAlloc = mm_track::TrackedAlloc::new(std::alloc::System);

const REQUEST: &str = "model=gemma-3-270m;stream=true;max_tokens=256;\
                       prompt=Summarise the design of a request-scoped arena in one line";

/// One simulated request: parse fields into the arena, build a token list, stream SSE
/// chunks into a pooled 64 KiB buffer, and use a pooled scratch vector. Returns the bytes
/// "sent", so the work cannot be optimised away.
fn request(n: usize, buffers: &BufferPool, scratch: &ObjectPool<Vec<u32>>) -> usize {
    mm_arena::scope(|arena| {
        let fields = arena.alloc_slice_fill_copy(8, ("", "")).expect("arena");
        let mut count = 0;
        for (slot, part) in fields.iter_mut().zip(REQUEST.split(';')) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            *slot = (
                arena.alloc_str(k).expect("arena"),
                arena.alloc_str(v).expect("arena"),
            );
            count += 1;
        }
        let prompt = fields[..count]
            .iter()
            .find(|(k, _)| *k == "prompt")
            .map_or("", |f| f.1);
        let words = collect_words(arena, prompt);

        let mut ids = scratch.acquire();
        ids.extend(words.iter().map(|w| w.len() as u32 + n as u32 % 7));

        let mut sse = buffers.acquire(16 * 1024);
        for (word, id) in words.iter().zip(ids.iter()) {
            sse.extend_from_slice(b"data: {\"token\":\"");
            sse.extend_from_slice(word.as_bytes());
            sse.extend_from_slice(b"\",\"id\":");
            sse.extend_from_slice(&id.to_le_bytes());
            sse.extend_from_slice(b"}\n\n");
        }
        let mut scratch_buf = buffers.acquire(1000);
        scratch_buf.extend_from_slice(&sse[..64]);
        sse.len() + scratch_buf.len()
    })
}

/// Words of `text`, in an arena-backed `bumpalo` vector.
fn collect_words<'a>(
    arena: &mm_arena::Arena<'a>,
    text: &'a str,
) -> bumpalo::collections::Vec<'a, &'a str> {
    let mut words = arena.vec();
    words.extend(text.split(' '));
    words
}

#[test]
fn ten_thousand_requests_make_zero_heap_allocations_after_warm_up() {
    assert!(
        mm_track::is_active(),
        "TrackedAlloc must be the global allocator"
    );
    let buffers = BufferPool::new(BufferPoolConfig::default()).unwrap();
    let scratch =
        ObjectPool::with_reset(4, || Vec::with_capacity(64), |v: &mut Vec<u32>| v.clear()).unwrap();

    let mut sent = 0;
    for n in 0..16 {
        sent += request(n, &buffers, &scratch);
    }
    let arena_warm = mm_arena::thread_stats();
    let pool_warm = buffers.stats();

    let (sent_steady, allocs) = mm_track::count(|| {
        (0..10_000)
            .map(|n| request(n, &buffers, &scratch))
            .sum::<usize>()
    });
    assert!(mm_track::is_active(), "tracking was live during the run");
    assert!(sent > 0 && sent_steady >= 10_000 * (sent / 16));
    assert_eq!(
        allocs.allocs, 0,
        "heap allocations in 10,000 requests: {allocs:?}"
    );
    assert_eq!(allocs.reallocs, 0, "{allocs:?}");
    assert_eq!(allocs.deallocs, 0, "{allocs:?}");

    // The arena and the pools agree: no new chunk, every buffer reused.
    let arena = mm_arena::thread_stats();
    assert_eq!(arena.resets, arena_warm.resets + 10_000);
    assert_eq!(arena.chunk_allocations, arena_warm.chunk_allocations);
    let pool = buffers.stats();
    assert_eq!(pool.hits - pool_warm.hits, 20_000);
    assert_eq!(pool.misses, pool_warm.misses);
    assert!(pool.hit_rate().unwrap() > 0.99);
    assert!(scratch.stats().hit_rate().unwrap() > 0.99);
}

#[test]
fn the_counter_would_see_an_allocation() {
    // Guards against a vacuous pass: the same harness does see a heap allocation.
    let (_, stats) = mm_track::count(|| std::hint::black_box(Box::new(7u64)));
    assert_eq!(stats.allocs, 1);
}
