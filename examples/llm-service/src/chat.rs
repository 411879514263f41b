//! `POST /v1/chat/completions` with `"stream": true`: the conversation is fitted into the
//! served model's window with exact token counts (the model's own tokenizer), assembled into a
//! pooled buffer, sent to the upstream, and the upstream's SSE is parsed
//! (`mm_llm::sse_stream`) and re-emitted to the client from one pooled buffer per stream.
//! A client that goes away drops the relay: the upstream connection, the parser's buffer,
//! the output buffer and the stream's budget reservation go with it.

use std::borrow::Cow;
use std::cell::Cell;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use memory_manager::{BufferPool, PooledBuffer, Reservation};
use mm_llm::sse_stream::{EventStream, EventStreamError};
use mm_llm::{FitReport, LlmError};
use mm_pool::Pooled;
use mm_track::ScopeStats;
use serde::Deserialize;

use crate::error::ApiError;
use crate::model::LoadedModel;
use crate::tally::Tallies;

/// One message of the request.
#[derive(Debug, Deserialize)]
pub struct ChatMessage<'a> {
    /// `system`, `developer`, `user` or `assistant`.
    #[serde(borrow)]
    pub role: Cow<'a, str>,
    /// The text (`null` is taken as empty).
    #[serde(default, borrow)]
    pub content: Option<Cow<'a, str>>,
}

/// The request body (OpenAI's shape; other fields are not forwarded).
#[derive(Debug, Deserialize)]
pub struct ChatRequest<'a> {
    /// The model id.
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    /// The conversation.
    #[serde(borrow)]
    pub messages: Vec<ChatMessage<'a>>,
    /// Must be `true`.
    #[serde(default)]
    pub stream: bool,
}

impl ChatRequest<'_> {
    /// Checks the request.
    ///
    /// # Errors
    /// 400 without `"stream": true` or without messages; 404 for another model.
    pub fn validate(&self, served: &str, max_messages: usize) -> Result<(), ApiError> {
        if self.model != served {
            return Err(ApiError::unknown_model(&self.model, served));
        }
        if !self.stream {
            return Err(ApiError::bad_request(
                "only streamed completions are served: set \"stream\": true",
            ));
        }
        if self.messages.is_empty() {
            return Err(ApiError::bad_request("`messages` is empty"));
        }
        if self.messages.len() > max_messages {
            return Err(ApiError::bad_request(format!(
                "`messages` has {} items; at most {max_messages} are accepted",
                self.messages.len()
            )));
        }
        Ok(())
    }
}

fn llm_error(e: LlmError) -> ApiError {
    match e {
        LlmError::ContextOverflow { .. } => ApiError {
            code: "context_length_exceeded",
            ..ApiError::bad_request(e.to_string())
        },
        LlmError::UnknownModel { .. } => ApiError::bad_request(e.to_string()),
        e => ApiError::from(e),
    }
}

/// Fills a pooled conversation from the request, fits it into the model's window and writes
/// the upstream request body into a pooled buffer.
///
/// # Errors
/// 400 for an unknown role or a conversation whose kept parts alone overflow the window.
pub fn prepare(
    model: &LoadedModel,
    req: &ChatRequest<'_>,
    pool: &BufferPool,
) -> Result<(PooledBuffer, FitReport), ApiError> {
    let mut conv = model.conversations.acquire();
    conv.set_model(&model.name).map_err(llm_error)?;
    let mut system: Option<Cow<'_, str>> = None;
    for (i, m) in req.messages.iter().enumerate() {
        let text = m.content.as_deref().unwrap_or("");
        match &*m.role {
            "system" | "developer" => {
                system = Some(match system.take() {
                    None => Cow::Borrowed(text),
                    Some(s) => Cow::Owned(format!("{s}\n\n{text}")),
                });
            }
            "user" => conv.push_user(text).map_err(llm_error)?,
            "assistant" => conv.push_assistant(text).map_err(llm_error)?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "`messages[{i}].role` `{other}` is not supported (system, developer, user, assistant)"
                )));
            }
        }
    }
    if let Some(s) = &system {
        conv.set_system(s);
    }
    let fit = conv.fit().map_err(llm_error)?;
    let (buf, _) = conv.assemble_pooled(pool, true).map_err(llm_error)?;
    Ok((buf, fit))
}

thread_local! {
    /// Allocator calls of the upstream client's polls inside the current relay poll (they
    /// run nested in it, on this thread), subtracted from the relay's count.
    static TRANSPORT: Cell<ScopeStats> = const { Cell::new(ScopeStats { allocs: 0, deallocs: 0, reallocs: 0, alloc_bytes: 0, dealloc_bytes: 0 }) };
}

/// Counts what the wrapped transport stream allocates while polled, into `TRANSPORT`.
#[derive(Debug)]
pub struct Metered<S>(pub S);

impl<S: Stream + Unpin> Stream for Metered<S> {
    type Item = S::Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let (r, stats) = mm_track::count(|| Pin::new(&mut self.0).poll_next(cx));
        TRANSPORT.with(|t| t.set(t.get() + stats));
        r
    }
}

/// Clears the transport count of this thread (before a relay poll).
pub(crate) fn reset_transport() {
    TRANSPORT.with(|t| t.set(ScopeStats::default()));
}

/// Takes the transport count of this thread (after a relay poll).
pub(crate) fn take_transport() -> ScopeStats {
    TRANSPORT.with(|t| t.replace(ScopeStats::default()))
}

/// `a - b`, field by field, floored at 0.
pub(crate) fn minus(a: ScopeStats, b: ScopeStats) -> ScopeStats {
    ScopeStats {
        allocs: a.allocs.saturating_sub(b.allocs),
        deallocs: a.deallocs.saturating_sub(b.deallocs),
        reallocs: a.reallocs.saturating_sub(b.reallocs),
        alloc_bytes: a.alloc_bytes.saturating_sub(b.alloc_bytes),
        dealloc_bytes: a.dealloc_bytes.saturating_sub(b.dealloc_bytes),
    }
}

/// An event stream between upstream responses: its parser (on a pooled buffer), its event
/// buffers and its queue, kept in an object pool and put back on a new body with
/// [`EventStream::reuse`], with the pooled buffer its events are re-encoded into, so a warm
/// stream allocates none of them.
///
/// The output buffers stay with the idle stream instead of going back to the buffer pool
/// when the relay ends: the HTTP stack may still hold the last events' bytes then, and a
/// buffer split while its other part is alive is not the pool's to keep (it would be
/// discarded, and the next stream would allocate a fresh one, then the shared header of its
/// first split). Kept here, their bytes are long gone when the next stream writes into them.
pub type IdleEvents = Option<(EventStream<()>, Outputs)>;

/// How many output buffers a stream rotates through.
pub const OUTPUTS: usize = 3;

/// A stream's output buffers. Events are written into the first; when it is full and the
/// HTTP stack still holds some of its events (hyper queues up to 16 chunks before it writes
/// them), the next one whose events are all gone takes its place, so no event waits for an
/// allocation while the stack holds the previous ones.
pub type Outputs = [PooledBuffer; OUTPUTS];

/// The stream re-emitted to the client.
pub struct Relay<S> {
    /// The event stream and the output buffer, until they go back to `slot` on drop.
    live: Option<(EventStream<Metered<S>>, Outputs)>,
    /// `Some` until drop, which hands it back to its pool before the stream is counted.
    slot: Option<Pooled<IdleEvents>>,
    counted: ScopeStats,
    tallies: Arc<Tallies>,
    finished: bool,
    _charge: Reservation,
}

impl<S> std::fmt::Debug for Relay<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<S> Relay<S> {
    /// A relay of `events` writing into `out`, holding `charge` until it is dropped;
    /// `counted` is what preparing the request allocated. The event stream (emptied of this
    /// body) and `out` go back to `slot` when the relay is dropped.
    pub fn new(
        events: EventStream<Metered<S>>,
        slot: Pooled<IdleEvents>,
        out: Outputs,
        charge: Reservation,
        tallies: Arc<Tallies>,
        counted: ScopeStats,
    ) -> Self {
        Self {
            live: Some((events, out)),
            slot: Some(slot),
            counted,
            tallies,
            finished: false,
            _charge: charge,
        }
    }

    /// Adds allocator calls made for this stream outside its polls.
    pub fn add_counted(&mut self, more: ScopeStats) {
        self.counted += more;
    }
}

/// Writes one event as SSE into the first of `outs` and splits it off. When that buffer is
/// full and cannot be taken back whole (the HTTP stack holds some of its events), the first
/// other buffer that can takes its place; only when none can does `reserve` allocate, so at
/// steady state this allocates nothing.
fn encode(outs: &mut Outputs, event: &str, data: &str) -> Bytes {
    let lines = data.bytes().filter(|&b| b == b'\n').count() + 1;
    let need = event.len() + data.len() + 8 + 7 * lines;
    if outs[0].capacity() < need
        && !outs[0].try_reclaim(need)
        && let Some(j) = (1..OUTPUTS).find(|&j| outs[j].try_reclaim(need))
    {
        outs.swap(0, j);
    }
    let out: &mut BytesMut = &mut outs[0];
    out.reserve(need);
    if event != "message" {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.extend_from_slice(b"\n");
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"\n");
    out.split().freeze()
}

impl<S, E> Relay<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        let Some((events, out)) = self.live.as_mut() else {
            return Poll::Ready(None);
        };
        if self.finished {
            return Poll::Ready(None);
        }
        match Pin::new(events).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(ev))) => {
                if &*ev.data == "[DONE]" {
                    self.finished = true;
                }
                Poll::Ready(Some(Ok(encode(out, &ev.event, &ev.data))))
            }
            Poll::Ready(Some(Err(e))) => {
                // The client gets an error event, then the end of the stream.
                self.finished = true;
                let data = match e {
                    EventStreamError::Transport(_) => {
                        r#"{"error":{"message":"upstream connection failed mid-stream","type":"upstream_error"}}"#
                    }
                    EventStreamError::Parser(_) => {
                        r#"{"error":{"message":"upstream sent a malformed event stream","type":"upstream_error"}}"#
                    }
                };
                Poll::Ready(Some(Ok(encode(out, "error", data))))
            }
        }
    }
}

impl<S, E> Stream for Relay<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        reset_transport();
        let (r, stats) = mm_track::count(|| this.poll_inner(cx));
        this.counted += minus(stats, take_transport());
        r
    }
}

impl<S> Drop for Relay<S> {
    fn drop(&mut self) {
        if let (Some((events, mut out)), Some(slot)) = (self.live.take(), self.slot.as_mut()) {
            // Drops the upstream body (closing its connection if unfinished) and keeps the
            // parser and buffers for the next stream.
            out.iter_mut().for_each(|b| b.clear());
            **slot = Some((events.reuse(()), out));
        }
        // Back in the pool before the stream is counted, so that whoever sees the count
        // (the next request of a sequence, a test) finds it there.
        drop(self.slot.take());
        self.tallies.chat.record(self.counted);
        if !self.finished {
            self.tallies
                .cancelled_streams
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}
