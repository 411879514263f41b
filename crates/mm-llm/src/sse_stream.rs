//! [`SseParser`] as a `futures::Stream` of owned events: the shape of `eventsource-stream`
//! (feature `stream`).
//!
//! Switching from `eventsource-stream` is the import line:
//!
//! ```
//! # futures::executor::block_on(async {
//! use futures::StreamExt;
//! use mm_llm::sse_stream::Eventsource; // was: use eventsource_stream::Eventsource;
//!
//! let body = futures::stream::iter([
//!     Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"event: delta\ndata: {\"t\":\"hi\"}\n\n")),
//!     Ok(bytes::Bytes::from_static(b"data: [DONE]\n\n")),
//! ]);
//! let mut events = body.eventsource();
//! while let Some(event) = events.next().await {
//!     let event = event?;
//!     if event.data == "[DONE]" {
//!         break;
//!     }
//!     assert_eq!(event.event, "delta");
//!     assert_eq!(&*event.data, r#"{"t":"hi"}"#);
//! }
//! # Ok::<(), mm_llm::sse_stream::EventStreamError<std::io::Error>>(())
//! # }).unwrap();
//! ```
//!
//! Events have the same fields as `eventsource-stream`'s (`event`, `data`, `id`, `retry`),
//! but the strings are [`SharedStr`]: `Bytes`-backed, read as `&str` through `Deref`, compared
//! with `==` against `&str` and `String`, turned into a `String` with `.into()` or
//! `to_string()`.
//!
//! # Allocations
//!
//! Each event's strings are carved out of one reusable buffer per stream (a `BytesMut` split
//! and frozen): the data is copied once out of the parser, the default type `message` is a
//! static string, and an id that did not change is shared with the previous event (a
//! reference count, no copy). Once the buffer has reached its size, and as long as events are
//! dropped before the buffer comes round again (the usual `while let Some(ev) = next().await`
//! loop), a stream makes no heap allocation per event, single-line or multi-line data alike:
//! `bytes` reclaims a buffer whose slices are all gone. Events kept alive hold their part of
//! the buffer, and the stream then allocates a new one. Ids have a buffer of their own, since
//! the current id stays alive: a changed id costs an allocation only when that buffer is full
//! and an older id is still held by an event. `tests/sse_stream.rs` counts all this.
//!
//! Errors of the inner stream come out unchanged as [`EventStreamError::Transport`], and the
//! stream goes on; a parser error ([`EventStreamError::Parser`], a limit of
//! [`SseConfig`]) ends the stream.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_core::Stream;

use crate::LlmError;
use crate::sse::{SseConfig, SseParser};

/// Size of the buffer event strings are carved from; it grows for larger events.
const CARVE_BUFFER: usize = 64 * 1024;

/// An immutable UTF-8 string sharing a `Bytes` buffer: cloning it is a reference count.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SharedStr(Bytes);

impl SharedStr {
    /// A string from a `'static` str, without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // The bytes were copied from a `&str` (see `carve`) or `from_static`, and `Bytes` is
        // immutable: they are valid UTF-8. A failed check would be a bug here; an empty
        // string is the safe answer.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The underlying bytes (for a response body, say), without copying.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl std::ops::Deref for SharedStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for SharedStr {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl From<SharedStr> for String {
    fn from(s: SharedStr) -> String {
        s.as_str().to_owned()
    }
}

/// One event, owned: the fields of `eventsource-stream`'s `Event`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The event type (`message` when the block had no `event` field).
    pub event: SharedStr,
    /// The `data` lines joined with `\n`.
    pub data: SharedStr,
    /// The last event id in force.
    pub id: SharedStr,
    /// The `retry` value of this event's block.
    pub retry: Option<Duration>,
}

/// An error of an [`EventStream`].
#[derive(Debug)]
pub enum EventStreamError<E> {
    /// The inner stream's error, unchanged.
    Transport(E),
    /// The parser refused the stream (a line, event or field past its limit); the stream
    /// ends after it.
    Parser(LlmError),
}

impl<E: fmt::Display> fmt::Display for EventStreamError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventStreamError::Transport(e) => write!(f, "SSE transport error: {e}"),
            EventStreamError::Parser(e) => write!(f, "SSE parse error: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for EventStreamError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EventStreamError::Transport(e) => Some(e),
            EventStreamError::Parser(e) => Some(e),
        }
    }
}

/// Turns a stream of byte chunks into an [`EventStream`]: `body.eventsource()`.
pub trait Eventsource: Sized {
    /// Parses the stream with the default [`SseConfig`].
    fn eventsource(self) -> EventStream<Self>;
}

impl<S, B, E> Eventsource for S
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    fn eventsource(self) -> EventStream<Self> {
        EventStream::new(self)
    }
}

pin_project_lite::pin_project! {
    /// The events of a stream of byte chunks; see the [module docs](self).
    pub struct EventStream<S> {
        #[pin]
        inner: S,
        parser: SseParser,
        carve: BytesMut,
        // Ids persist across events: carved apart, so they never pin `carve`'s buffer.
        id_carve: BytesMut,
        last_id: SharedStr,
        ready: VecDeque<Event>,
        failed: Option<LlmError>,
        done: bool,
    }
}

impl<S> EventStream<S> {
    /// Parses `inner` with the default limits.
    pub fn new(inner: S) -> Self {
        Self::with_parser(inner, SseParser::new())
    }

    /// Parses `inner` with `config`'s limits.
    ///
    /// # Errors
    /// As [`SseParser::with_config`].
    pub fn with_config(inner: S, config: SseConfig) -> Result<Self, LlmError> {
        Ok(Self::with_parser(inner, SseParser::with_config(config)?))
    }

    /// Parses `inner` with a parser you built (for example one on a buffer pool).
    pub fn with_parser(inner: S, parser: SseParser) -> Self {
        Self {
            inner,
            parser,
            carve: BytesMut::new(),
            id_carve: BytesMut::new(),
            last_id: SharedStr::default(),
            ready: VecDeque::new(),
            failed: None,
            done: false,
        }
    }

    /// The last event id in force (what a reconnecting client sends as `Last-Event-ID`).
    pub fn last_event_id(&self) -> &str {
        self.parser.last_event_id()
    }

    /// This stream's parser and buffers, warm, over another body: the events of `inner`,
    /// parsed as a new stream (the parser is [reset](SseParser::reset): no partial line,
    /// last id, reconnection time or error carries over). The old body is dropped.
    ///
    /// A fresh stream allocates its buffers as its first events arrive; keeping one per
    /// task or worker and reusing it for each upstream response makes a warm response cost
    /// no heap allocation at all (`docs/async.md`). Events of the previous body that are
    /// still alive keep their bytes; the buffer is then replaced, not overwritten.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use futures::StreamExt;
    /// use mm_llm::sse_stream::Eventsource;
    ///
    /// let body = |s: &'static [u8]| futures::stream::iter([Ok::<_, std::io::Error>(s)]);
    /// let mut events = body(b"id: 1\ndata: one\n\n").eventsource();
    /// assert_eq!(events.next().await.unwrap()?.data, "one");
    /// let mut events = events.reuse(body(b"data: two\n\n"));
    /// let ev = events.next().await.unwrap()?;
    /// assert_eq!((&*ev.data, &*ev.id), ("two", ""));
    /// # Ok::<(), mm_llm::sse_stream::EventStreamError<std::io::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn reuse<T>(self, inner: T) -> EventStream<T> {
        let EventStream {
            inner: _,
            mut parser,
            carve,
            id_carve,
            last_id: _,
            mut ready,
            failed: _,
            done: _,
        } = self;
        parser.reset();
        ready.clear();
        EventStream {
            inner,
            parser,
            carve,
            id_carve,
            last_id: SharedStr::default(),
            ready,
            failed: None,
            done: false,
        }
    }
}

impl<S> fmt::Debug for EventStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("parser", &self.parser)
            .field("ready", &self.ready.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Copies `s` into `buf` and splits it off as a shared string. Allocates only when `buf` has
/// no room left and its earlier strings are still alive.
fn carve(buf: &mut BytesMut, s: &str) -> SharedStr {
    if s.is_empty() {
        return SharedStr::default();
    }
    if buf.capacity() < s.len() {
        buf.reserve(s.len().max(CARVE_BUFFER));
    }
    buf.extend_from_slice(s.as_bytes());
    SharedStr(buf.split().freeze())
}

const MESSAGE: SharedStr = SharedStr::from_static("message");

impl<S, B, E> Stream for EventStream<S>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    type Item = Result<Event, EventStreamError<E>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if let Some(event) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            if let Some(e) = this.failed.take() {
                *this.done = true;
                return Poll::Ready(Some(Err(EventStreamError::Parser(e))));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.parser.finish();
                    *this.done = true;
                }
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Some(Err(EventStreamError::Transport(e))));
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    let chunk = chunk.as_ref();
                    // Every event handed out so far is gone or owned elsewhere: make room for
                    // this chunk's events now, while the buffer may be reclaimed in place,
                    // rather than in the middle of the chunk, where its first events still
                    // pin it. (Decoded text is at most 3 times the bytes.)
                    let room = chunk.len().saturating_mul(3);
                    if this.carve.capacity() < room {
                        this.carve.reserve(room.max(CARVE_BUFFER));
                    }
                    let (carve_buf, id_buf) = (&mut *this.carve, &mut *this.id_carve);
                    let (last_id, ready) = (&mut *this.last_id, &mut *this.ready);
                    let fed = this.parser.feed(chunk, |ev| {
                        if ev.id != last_id.as_str() {
                            // Let go of the old id first, so its buffer can be reclaimed.
                            *last_id = SharedStr::default();
                            *last_id = carve(id_buf, ev.id);
                        }
                        ready.push_back(Event {
                            event: if ev.event == "message" {
                                MESSAGE
                            } else {
                                carve(carve_buf, ev.event)
                            },
                            data: carve(carve_buf, ev.data),
                            id: last_id.clone(),
                            retry: ev.retry.map(Duration::from_millis),
                        });
                    });
                    if let Err(e) = fed {
                        *this.failed = Some(e);
                    }
                }
            }
        }
    }
}
