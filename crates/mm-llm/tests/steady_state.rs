//! The target: after warm-up, a simulated chat turn (append, fit, assemble into a
//! pooled buffer, parse a 50-event stream, cache one embedding) makes no heap allocation.

use mm_llm::simulate::{ChatTurnSim, STREAM_EVENTS};

#[global_allocator]
static GLOBAL: mm_track::TrackedAlloc = mm_track::TrackedAlloc::new(std::alloc::System);

const WARM_UP: usize = 2_000;
const MEASURED: usize = 10_000;

#[test]
fn chat_turn_allocates_nothing_after_warm_up() {
    assert!(
        mm_track::is_active(),
        "the tracking allocator must be live for this test to mean anything"
    );
    // A 16k window keeps prompts small (this runs unoptimised under `cargo test`); the code
    // paths are the same as with 128k.
    let mut sim = ChatTurnSim::with_window(16_000).unwrap();
    let mut dropped = 0u64;
    for _ in 0..WARM_UP {
        dropped += u64::from(sim.turn().unwrap().dropped);
    }
    assert!(
        dropped > 0,
        "warm-up must reach the point where fits cut history"
    );

    let (outcome, stats) = mm_track::count(|| {
        let mut events = 0usize;
        let mut dropped = 0u64;
        let mut hits = 0usize;
        for _ in 0..MEASURED {
            let t = sim.turn().unwrap();
            events += t.events;
            dropped += u64::from(t.dropped);
            hits += usize::from(t.embedding_hit);
        }
        (events, dropped, hits)
    });
    let (events, dropped, hits) = outcome;
    // The measured loop did real work: every stream parsed, history cut, cache both hit and missed.
    assert_eq!(events, MEASURED * STREAM_EVENTS);
    assert!(dropped > 0);
    assert!(hits > 0 && hits < MEASURED);
    assert_eq!(
        (stats.allocs, stats.reallocs, stats.deallocs),
        (0, 0, 0),
        "steady-state turns touched the allocator: {stats:?}"
    );
    // And the tracker still sees this thread's allocations (the zero is not vacuous).
    let (_, probe) = mm_track::count(|| std::hint::black_box(vec![1u8; 64]));
    assert_eq!(probe.allocs, 1);
    let cache = sim.cache().stats();
    assert!(cache.entries <= 64);
    assert!(sim.conversation().tokens() <= 16_000);
}

/// The SSE parser alone, including a 512 KiB line that spills from the 64 KiB pool tier into
/// the 1 MiB tier and back: once warm, no allocation per event or per spill.
#[test]
fn sse_events_and_spills_allocate_nothing_when_warm() {
    use mm_llm::sse::{SseConfig, SseParser};
    assert!(mm_track::is_active());
    let pool = mm_pool::BufferPool::new(mm_pool::BufferPoolConfig::default()).unwrap();
    let mut parser = SseParser::with_pool(SseConfig::default(), pool).unwrap();
    let mut input = Vec::new();
    for i in 0..1000 {
        input.extend_from_slice(
            format!("id: {i}\nevent: delta\ndata: {{\"n\":{i}}}\r\n\r\n").as_bytes(),
        );
    }
    input.extend_from_slice(b"data: ");
    input.extend(std::iter::repeat_n(b'z', 512 * 1024));
    input.extend_from_slice(b"\n\n");
    let run = |parser: &mut SseParser| {
        let mut n = 0usize;
        for chunk in input.chunks(1500) {
            n += parser
                .feed(chunk, |ev| assert!(!ev.data.is_empty()))
                .unwrap();
        }
        parser.finish();
        n
    };
    for _ in 0..3 {
        assert_eq!(run(&mut parser), 1001);
    }
    let spills = parser.stats().spills;
    let (events, stats) = mm_track::count(|| (0..20).map(|_| run(&mut parser)).sum::<usize>());
    assert_eq!(events, 20 * 1001);
    assert!(
        parser.stats().spills > spills,
        "the long line must spill in the measured runs"
    );
    assert_eq!(
        (stats.allocs, stats.reallocs, stats.deallocs),
        (0, 0, 0),
        "{stats:?}"
    );
}
