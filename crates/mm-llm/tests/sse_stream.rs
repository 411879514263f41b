//! `mm_llm::sse_stream`: the same events as `SseParser` (and as `eventsource-stream`) over
//! any chunking, inner errors passed through unchanged, and no heap allocation per event once
//! warm.

use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures::executor::block_on;
use futures::{Stream, StreamExt};
use mm_llm::LlmError;
use mm_llm::sse::SseConfig;
use mm_llm::sse_stream::{Event, EventStream, EventStreamError, Eventsource, SharedStr};
use mm_track::TrackedAlloc;

#[global_allocator]
static GLOBAL: TrackedAlloc = TrackedAlloc::new(std::alloc::System);

#[derive(Debug, PartialEq)]
struct TransportError(u32);

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "transport error {}", self.0)
    }
}

fn collect<B: AsRef<[u8]>>(chunks: Vec<B>) -> Vec<Event> {
    let stream = futures::stream::iter(chunks.into_iter().map(Ok::<_, TransportError>));
    block_on(stream.eventsource().map(|e| e.unwrap()).collect())
}

const INPUT: &[u8] = b"\xEF\xBB\xBFretry: 1500\nid: 7\nevent: delta\ndata: one\ndata: two\r\n\r\n: note\ndata: three\n\nid\ndata: \xFFfour\n\ndata: cut";

#[test]
fn events_match_the_parser_whatever_the_chunking() {
    let whole = collect(vec![INPUT]);
    assert_eq!(whole.len(), 3);
    assert_eq!(
        whole[0],
        Event {
            event: SharedStr::from_static("delta"),
            data: SharedStr::from_static("one\ntwo"),
            id: SharedStr::from_static("7"),
            retry: Some(Duration::from_millis(1500)),
        }
    );
    assert_eq!(whole[1].event, "message");
    assert_eq!(whole[1].data, "three");
    assert_eq!(whole[1].id, "7", "the id persists");
    assert_eq!(whole[1].retry, None);
    assert_eq!(whole[2].id, "", "an empty id resets it");
    assert_eq!(whole[2].data, String::from("\u{FFFD}four"));
    for size in [1, 2, 5, 13, 64] {
        let chunks: Vec<Vec<u8>> = INPUT.chunks(size).map(<[u8]>::to_vec).collect();
        assert_eq!(collect(chunks), whole, "chunks of {size}");
    }
    // Any `AsRef<[u8]>` chunk type: `Bytes` (reqwest, hyper), `Vec<u8>`, `&[u8]`, `String`.
    let as_bytes: Vec<Bytes> = INPUT.chunks(3).map(Bytes::copy_from_slice).collect();
    assert_eq!(collect(as_bytes), whole);
}

#[test]
fn the_same_events_as_eventsource_stream_on_valid_input() {
    let input = "id: 1\nevent: a\ndata: x\ndata: y\n\ndata: z\n\nretry: 20\ndata: w\n\n";
    let ours = collect(vec![input.as_bytes()]);
    let stream = futures::stream::iter([Ok::<_, TransportError>(input.as_bytes())]);
    let theirs: Vec<eventsource_like::Owned> = block_on(eventsource_like::collect(stream));
    let ours: Vec<eventsource_like::Owned> = ours
        .into_iter()
        .map(|e| eventsource_like::Owned {
            event: e.event.into(),
            data: e.data.into(),
            id: e.id.into(),
            retry: e.retry,
        })
        .collect();
    assert_eq!(ours, theirs);
}

/// `eventsource-stream`, the crate this module mirrors, as the reference.
mod eventsource_like {
    use futures::{Stream, StreamExt};

    #[derive(Debug, PartialEq, Eq)]
    pub struct Owned {
        pub event: String,
        pub data: String,
        pub id: String,
        pub retry: Option<std::time::Duration>,
    }

    pub async fn collect<S, B, E>(s: S) -> Vec<Owned>
    where
        S: Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::fmt::Debug,
    {
        use eventsource_stream::Eventsource as _;
        s.eventsource()
            .map(|e| {
                let e = e.unwrap();
                Owned {
                    event: e.event,
                    data: e.data,
                    id: e.id,
                    retry: e.retry,
                }
            })
            .collect()
            .await
    }
}

#[test]
fn inner_errors_pass_through_unchanged_and_the_stream_goes_on() {
    let items = vec![
        Ok(&b"data: a\n"[..]),
        Err(TransportError(42)),
        Ok(&b"\ndata: b\n\n"[..]),
    ];
    let got: Vec<_> = block_on(futures::stream::iter(items).eventsource().collect());
    assert_eq!(got.len(), 3);
    assert!(matches!(
        got[0],
        Err(EventStreamError::Transport(TransportError(42)))
    ));
    assert_eq!(got[1].as_ref().unwrap().data, "a");
    assert_eq!(got[2].as_ref().unwrap().data, "b");
}

#[test]
fn a_parser_limit_is_an_error_then_the_end() {
    let items = vec![
        Ok::<_, TransportError>(vec![b'x'; 100]),
        Ok(b"data: late\n\n".to_vec()),
    ];
    let stream = EventStream::with_config(
        futures::stream::iter(items),
        SseConfig::new().with_initial_buffer(8).with_max_buffer(64),
    )
    .unwrap();
    let got: Vec<_> = block_on(stream.collect());
    assert_eq!(got.len(), 1);
    assert!(matches!(
        got[0],
        Err(EventStreamError::Parser(LlmError::SseLineTooLong {
            max: 64
        }))
    ));
    let e = EventStreamError::<TransportError>::Parser(LlmError::SseLineTooLong { max: 64 });
    assert!(e.to_string().contains("SSE parse error"));
}

/// Polls `stream` to the end on this thread (every item is ready), handing each event to
/// `f` and dropping it before the next poll.
fn drain<S: futures::Stream<Item = Result<Event, EventStreamError<TransportError>>>>(
    stream: S,
    mut f: impl FnMut(&Event),
) -> usize {
    let mut stream = pin!(stream);
    let mut cx = Context::from_waker(Waker::noop());
    let mut n = 0;
    loop {
        match stream.as_mut().poll_next(&mut cx) {
            Poll::Ready(Some(Ok(ev))) => {
                f(&ev);
                n += 1;
            }
            Poll::Ready(Some(Err(e))) => panic!("{e:?}"),
            Poll::Ready(None) => return n,
            Poll::Pending => unreachable!("an iter stream is always ready"),
        }
    }
}

fn chat_chunks(events: usize, multi_line: bool) -> Vec<Bytes> {
    let mut s = Vec::new();
    for i in 0..events {
        s.extend_from_slice(format!("data: {{\"delta\":\"token {i}\"}}\n").as_bytes());
        if multi_line {
            s.extend_from_slice(b"data: {\"more\":true}\nid: 3\nevent: delta\n");
        }
        s.push(b'\n');
    }
    // Network-sized chunks, so events straddle chunk boundaries.
    s.chunks(1000).map(Bytes::copy_from_slice).collect()
}

#[test]
fn no_heap_allocation_per_event_once_warm() {
    assert!(mm_track::is_active());
    for multi_line in [false, true] {
        let chunks = chat_chunks(5_000, multi_line);
        let stream = futures::stream::iter(chunks.into_iter().map(Ok::<_, TransportError>));
        let mut stream = pin!(stream.eventsource());
        // Warm-up: the parser's and the stream's buffers reach their sizes.
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..1_000 {
            assert!(matches!(
                stream.as_mut().poll_next(&mut cx),
                Poll::Ready(Some(Ok(_)))
            ));
        }
        let mut bytes = 0;
        let (n, stats) = mm_track::count(|| drain(stream, |ev| bytes += ev.data.len()));
        assert_eq!(n, 4_000);
        assert!(bytes > 4_000 * 15);
        // The stream's own buffers are freed at its end (inside the counted drain): only
        // allocations count here.
        assert_eq!(
            stats.allocs + stats.reallocs,
            0,
            "multi-line {multi_line}: {stats:?} over 4,000 events"
        );
    }
}

#[test]
fn kept_events_stay_valid_while_the_stream_moves_on() {
    let chunks = chat_chunks(3_000, true);
    let stream = futures::stream::iter(chunks.into_iter().map(Ok::<_, TransportError>));
    let kept = collect_kept(stream);
    assert_eq!(kept.len(), 3_000);
    for (i, ev) in kept.iter().enumerate() {
        assert_eq!(
            ev.data,
            format!("{{\"delta\":\"token {i}\"}}\n{{\"more\":true}}")
        );
        assert_eq!(ev.id, "3");
        assert_eq!(ev.event, "delta");
    }
}

fn collect_kept<S>(stream: S) -> Vec<Event>
where
    S: futures::Stream<Item = Result<Bytes, TransportError>>,
{
    block_on(stream.eventsource().map(|e| e.unwrap()).collect())
}
