//! Fuzzes the SSE parser: arbitrary bytes, cut into chunks at offsets taken from the input,
//! must never panic, and must give exactly the events (and the same error, if any) as the
//! same bytes fed whole. A small buffer limit makes the limit paths reachable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mm_llm::sse::{SseConfig, SseParser};

#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Event(String, String, String, Option<u64>),
    Error(String),
}

fn run(data: &[u8], cuts: &[usize]) -> (Vec<Seen>, Option<u64>, String) {
    let config = SseConfig::new().with_initial_buffer(16).with_max_buffer(512);
    let mut p = SseParser::with_config(config).expect("valid config");
    let mut seen = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&data.len())) {
        let end = end.clamp(start, data.len());
        let r = p.feed(&data[start..end], |e| {
            seen.push(Seen::Event(
                e.event.into(),
                e.data.into(),
                e.id.into(),
                e.retry,
            ))
        });
        if let Err(e) = r {
            // Only the first error is compared: where later chunks start differs by split.
            seen.push(Seen::Error(e.to_string()));
            return (seen, None, String::new());
        }
        start = end;
    }
    p.finish();
    (seen, p.retry(), p.last_event_id().to_owned())
}

fuzz_target!(|input: &[u8]| {
    let Some((&n, rest)) = input.split_first() else {
        return;
    };
    let n = usize::from(n % 16);
    if rest.len() < n {
        return;
    }
    let (cut_bytes, data) = rest.split_at(n);
    let mut cuts: Vec<usize> = cut_bytes
        .iter()
        .map(|&b| usize::from(b) * data.len() / 255)
        .collect();
    cuts.sort_unstable();
    let whole = run(data, &[]);
    assert_eq!(whole, run(data, &cuts));
});
