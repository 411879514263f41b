//! SSE parsing: `mm_llm::sse::SseParser` side by side with `eventsource-stream` 0.2.3 on the
//! issue's inputs: 40,000 small events in one 1.3 MB chunk, one 4 MiB line delivered in 1,024
//! chunks, and a chat-completions stream of the shape real APIs send, in network-sized chunks.
//! `mm_llm_stream` is `mm_llm::sse_stream` (feature `stream`): the same `Stream` of owned
//! events as `eventsource-stream`, over the same chunk stream.
//!
//! Run: `cargo bench -p mm-benches --bench sse -- --warm-up-time 1 --measurement-time 3`

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use mm_llm::sse::SseParser;

/// 40,000 events of about 33 bytes each, in one chunk (~1.3 MB).
fn many_small() -> Vec<Vec<u8>> {
    let mut s = Vec::new();
    for i in 0..40_000 {
        s.extend_from_slice(format!("data: {{\"i\":{i:05},\"v\":\"abcdef\"}}\n\n").as_bytes());
    }
    vec![s]
}

/// One `data:` line of 4 MiB, in 1,024 chunks of 4 KiB (plus the terminator).
fn long_line() -> Vec<Vec<u8>> {
    let mut s = b"data: ".to_vec();
    s.extend(std::iter::repeat_n(b'x', 4 << 20));
    s.extend_from_slice(b"\n\n");
    s.chunks(s.len().div_ceil(1024))
        .map(<[u8]>::to_vec)
        .collect()
}

/// A chat-completions stream: a role chunk, 600 content deltas, a finish chunk, a usage
/// chunk and `[DONE]`, cut into chunks of 200 to 1,400 bytes as a TCP reader would see them.
fn chat_stream() -> Vec<Vec<u8>> {
    let head = r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":"#;
    let mut s = Vec::new();
    let mut push = |delta: &str, finish: &str| {
        s.extend_from_slice(b"data: ");
        s.extend_from_slice(head.as_bytes());
        s.extend_from_slice(delta.as_bytes());
        s.extend_from_slice(
            format!(r#","logprobs":null,"finish_reason":{finish}}}]}}"#).as_bytes(),
        );
        s.extend_from_slice(b"\n\n");
    };
    push(
        r#"{"role":"assistant","content":"","refusal":null}"#,
        "null",
    );
    let words = [
        "The", " memory", " budget", " keeps", " the", " cache", " under", " its", " limit", ".",
    ];
    for i in 0..600 {
        push(
            &format!(r#"{{"content":"{}"}}"#, words[i % words.len()]),
            "null",
        );
    }
    push("{}", "\"stop\"");
    s.extend_from_slice(b"data: {\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\"choices\":[],\"usage\":{\"prompt_tokens\":1117,\"completion_tokens\":600,\"total_tokens\":1717}}\n\ndata: [DONE]\n\n");
    let mut chunks = Vec::new();
    let mut pos = 0;
    let mut seed = 12345u32;
    while pos < s.len() {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = 200 + (seed >> 16) as usize % 1200;
        let end = (pos + n).min(s.len());
        chunks.push(s[pos..end].to_vec());
        pos = end;
    }
    chunks
}

fn ours(parser: &mut SseParser, chunks: &[Vec<u8>]) -> usize {
    let mut total = 0;
    for c in chunks {
        parser.feed(c, |ev| total += ev.data.len()).unwrap();
    }
    parser.finish();
    total
}

fn theirs(chunks: &[Vec<u8>]) -> usize {
    let stream = futures::stream::iter(chunks.iter().map(|c| Ok::<_, Infallible>(c.as_slice())));
    futures::executor::block_on(async {
        let mut events = stream.eventsource();
        let mut total = 0;
        while let Some(ev) = events.next().await {
            total += ev.unwrap().data.len();
        }
        total
    })
}

fn ours_stream(chunks: &[Vec<u8>]) -> usize {
    let stream = futures::stream::iter(chunks.iter().map(|c| Ok::<_, Infallible>(c.as_slice())));
    futures::executor::block_on(async {
        let mut events = mm_llm::sse_stream::Eventsource::eventsource(stream);
        let mut total = 0;
        while let Some(ev) = events.next().await {
            total += ev.unwrap().data.len();
        }
        total
    })
}

fn bench(c: &mut Criterion) {
    let inputs = [
        ("40k_small_events_one_chunk", many_small()),
        ("4MiB_line_1024_chunks", long_line()),
        ("chat_stream", chat_stream()),
    ];
    for (name, chunks) in &inputs {
        let bytes: usize = chunks.iter().map(Vec::len).sum();
        let mut parser = SseParser::new();
        let expect = ours(&mut parser, chunks);
        assert_eq!(expect, theirs(chunks), "the two parsers disagree on {name}");
        assert_eq!(
            expect,
            ours_stream(chunks),
            "the stream adapter disagrees on {name}"
        );
        let mut group = c.benchmark_group(format!("sse/{name}"));
        group.throughput(Throughput::Bytes(bytes as u64));
        if *name != "chat_stream" {
            group.sample_size(10);
        }
        group.bench_function(BenchmarkId::new("mm_llm", bytes), |b| {
            b.iter(|| black_box(ours(&mut parser, black_box(chunks))))
        });
        group.bench_function(BenchmarkId::new("mm_llm_stream", bytes), |b| {
            b.iter(|| black_box(ours_stream(black_box(chunks))))
        });
        group.bench_function(BenchmarkId::new("eventsource_stream_0_2_3", bytes), |b| {
            b.iter(|| black_box(theirs(black_box(chunks))))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
