//! Hostile streams cannot make the SSE parser hold much more than its limit: every field is
//! bounded after UTF-8 decoding (an invalid byte becomes the 3-byte U+FFFD), the `event` and
//! `id` fields count against the same limit as the data, and the buffers' total capacity
//! stays within about twice `max_buffer` whatever the input.

use mm_llm::LlmError;
use mm_llm::sse::{SseConfig, SseParser};
use mm_pool::{BufferPool, BufferPoolConfig};

const MAX: usize = 1 << 20;

/// Largest total capacity allowed: the partial-line buffer and the fields, each within
/// `max_buffer`.
const BOUND: usize = 2 * MAX;

fn config() -> SseConfig {
    SseConfig::new()
        .with_initial_buffer(64 * 1024)
        .with_max_buffer(MAX)
}

/// Feeds `stream` in chunks of `chunk` bytes, checking the buffers after each; returns the
/// first error and the largest figure seen.
fn feed(parser: &mut SseParser, stream: &[u8], chunk: usize) -> (Option<LlmError>, usize) {
    let mut largest = parser.buffer_bytes();
    for c in stream.chunks(chunk) {
        let r = parser.feed(c, |_| {});
        largest = largest.max(parser.buffer_bytes());
        if let Err(e) = r {
            return (Some(e), largest);
        }
    }
    (None, largest)
}

fn line(name: &str, value_byte: u8, len: usize) -> Vec<u8> {
    let mut l = name.as_bytes().to_vec();
    l.extend(b": ");
    l.extend(std::iter::repeat_n(value_byte, len));
    l.push(b'\n');
    l
}

/// The attacks of the report: invalid bytes that triple when decoded, and `event` / `id`
/// values near the limit (the id persists, so it would otherwise sit next to every event).
fn hostile_streams() -> Vec<(&'static str, Vec<u8>)> {
    let near = MAX - 16;
    let mut tripled = line("data", 0xFF, near);
    tripled.push(b'\n');
    let mut fields = line("id", 0xFF, near);
    fields.extend(line("event", 0xFE, near));
    fields.extend(line("data", 0xFF, near));
    fields.push(b'\n');
    let mut many = Vec::new();
    for _ in 0..8 {
        many.extend(line("data", 0xC0, near / 8));
    }
    many.extend(line("id", b'i', near / 2));
    many.push(b'\n');
    vec![
        ("data of invalid bytes", tripled),
        ("id, event and data each near the limit", fields),
        ("many invalid data lines, then a long id", many),
    ]
}

#[test]
fn hostile_streams_stay_within_twice_the_limit_with_a_typed_error() {
    for (name, stream) in hostile_streams() {
        for chunk in [1 << 20, 4096, 7] {
            for pool in [
                None,
                Some(BufferPool::new(BufferPoolConfig::default()).unwrap()),
            ] {
                let mut p = match &pool {
                    Some(pool) => SseParser::with_pool(config(), pool.clone()).unwrap(),
                    None => SseParser::with_config(config()).unwrap(),
                };
                let (err, largest) = feed(&mut p, &stream, chunk);
                assert!(
                    largest <= BOUND,
                    "{name}, chunks of {chunk}: buffers reached {largest} bytes (bound {BOUND})"
                );
                assert!(
                    matches!(
                        err,
                        Some(
                            LlmError::SseEventTooLarge { max: MAX }
                                | LlmError::SseFieldTooLong { max: MAX, .. }
                        )
                    ),
                    "{name}, chunks of {chunk}: {err:?}"
                );
            }
        }
    }
}

#[test]
fn long_event_and_id_values_are_refused_by_name() {
    let mut p =
        SseParser::with_config(SseConfig::new().with_initial_buffer(16).with_max_buffer(64))
            .unwrap();
    // 30 invalid bytes are 90 decoded bytes: past the limit although the line is not.
    let err = p.feed(&line("event", 0xFF, 30), |_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            LlmError::SseFieldTooLong {
                field: "event",
                max: 64
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("`event`"), "{err}");
    p.reset();
    let err = p.feed(&line("id", b'x', 65), |_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            LlmError::SseLineTooLong { .. } | LlmError::SseFieldTooLong { field: "id", .. }
        ),
        "{err:?}"
    );
    p.reset();
    // An id and data that fit alone but not together: the id persists, so it counts.
    p.feed(&line("id", b'x', 40), |_| {}).unwrap();
    let err = p.feed(&line("data", b'y', 40), |_| {}).unwrap_err();
    assert!(
        matches!(err, LlmError::SseEventTooLarge { max: 64 }),
        "{err:?}"
    );
    // Within the limit everything still parses, invalid bytes included.
    p.reset();
    let mut ok = line("id", 0xFF, 5);
    ok.extend(line("event", b'e', 5));
    ok.extend(line("data", 0xFF, 5));
    ok.push(b'\n');
    let mut seen = Vec::new();
    p.feed(&ok, |e| {
        seen.push((e.id.to_owned(), e.event.to_owned(), e.data.to_owned()))
    })
    .unwrap();
    let fffd = "\u{FFFD}".repeat(5);
    assert_eq!(seen, [(fffd.clone(), "eeeee".to_owned(), fffd)]);
    assert!(p.buffer_bytes() <= 16 + 64, "{}", p.buffer_bytes());
}

#[test]
fn a_small_limit_bounds_pooled_buffers_too() {
    // The pool's smallest tier (4 KiB) is larger than this limit: the parser takes its own
    // buffer rather than hold 4 KiB for a 512-byte limit.
    let pool = BufferPool::new(BufferPoolConfig::default()).unwrap();
    let mut p = SseParser::with_pool(
        SseConfig::new()
            .with_initial_buffer(16)
            .with_max_buffer(512),
        pool,
    )
    .unwrap();
    let (err, largest) = feed(&mut p, &line("data", 0xFF, 600), 5);
    assert!(largest <= 2 * 512, "{largest}");
    assert!(err.is_some());
}
