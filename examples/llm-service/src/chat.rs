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

fn minus(a: ScopeStats, b: ScopeStats) -> ScopeStats {
    ScopeStats {
        allocs: a.allocs.saturating_sub(b.allocs),
        deallocs: a.deallocs.saturating_sub(b.deallocs),
        reallocs: a.reallocs.saturating_sub(b.reallocs),
        alloc_bytes: a.alloc_bytes.saturating_sub(b.alloc_bytes),
        dealloc_bytes: a.dealloc_bytes.saturating_sub(b.dealloc_bytes),
    }
}

/// The stream re-emitted to the client.
pub struct Relay<S> {
    events: EventStream<Metered<S>>,
    out: PooledBuffer,
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
    /// `counted` is what preparing the request allocated.
    pub fn new(
        events: EventStream<Metered<S>>,
        out: PooledBuffer,
        charge: Reservation,
        tallies: Arc<Tallies>,
        counted: ScopeStats,
    ) -> Self {
        Self {
            events,
            out,
            counted,
            tallies,
            finished: false,
            _charge: charge,
        }
    }
}

/// Writes one event as SSE into `out` and splits it off. `reserve` first takes the whole
/// buffer back when the previous events' bytes are gone (the usual case), so at steady state
/// this allocates nothing.
fn encode(out: &mut BytesMut, event: &str, data: &str) -> Bytes {
    let lines = data.bytes().filter(|&b| b == b'\n').count() + 1;
    out.reserve(event.len() + data.len() + 8 + 7 * lines);
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
        if self.finished {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.events).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(ev))) => {
                if &*ev.data == "[DONE]" {
                    self.finished = true;
                }
                Poll::Ready(Some(Ok(encode(&mut self.out, &ev.event, &ev.data))))
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
                Poll::Ready(Some(Ok(encode(&mut self.out, "error", data))))
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
        TRANSPORT.with(|t| t.set(ScopeStats::default()));
        let (r, stats) = mm_track::count(|| this.poll_inner(cx));
        let transport = TRANSPORT.with(|t| t.replace(ScopeStats::default()));
        this.counted += minus(stats, transport);
        r
    }
}

impl<S> Drop for Relay<S> {
    fn drop(&mut self) {
        self.tallies.chat.record(self.counted);
        if !self.finished {
            self.tallies
                .cancelled_streams
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}
