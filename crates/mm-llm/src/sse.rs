//! A server-sent events (`text/event-stream`) parser that follows the WHATWG rules.
//!
//! Feed it the bytes of a stream in chunks of any size; it yields [`Event`]s that borrow the
//! parser's reusable buffers, so a warmed-up parser allocates nothing per event. Work is linear
//! in the bytes fed whatever the chunking: each byte is scanned once (with `memchr`) and copied
//! at most twice (into the partial-line buffer when a line straddles chunks, and into the
//! event's data buffer).
//!
//! The rules implemented, from the HTML standard's "event stream interpretation":
//! - exactly one leading U+FEFF BOM is stripped, even when it is split across chunks;
//! - lines end at LF, CR or CRLF, including a CR that ends one chunk and an LF that starts the
//!   next; a CR-terminated line is processed at once, without waiting for the next byte;
//! - invalid UTF-8 becomes U+FFFD (maximal-subpart substitution, as the WHATWG decoder does);
//! - a line starting with `:` is a comment; a line without `:` is a field with an empty value;
//!   one space after the colon is stripped;
//! - `data` values are joined with `\n`; an event with an empty data buffer dispatches nothing;
//! - `event` sets the type (default `message`); `id` containing NUL is ignored, an empty `id`
//!   resets the last event id, which otherwise persists across events;
//! - `retry` is used only when its value is all ASCII digits (so `+10` and `1e3` are ignored);
//! - at end of stream an event without its terminating blank line is discarded.
//!
//! What it does not do: it does not reconnect, does not track the `Last-Event-ID` header and
//! does not decode the data (JSON parsing of `data` is the caller's).

use std::fmt;

use bytes::BytesMut;
use mm_pool::{BufferPool, PooledBuffer};

use crate::LlmError;

/// Starting size of the partial-line buffer (the pooled 64 KiB tier).
pub const DEFAULT_INITIAL_BUFFER: usize = 64 * 1024;
/// Default limit on one line and on one event's data: 16 MiB.
pub const DEFAULT_MAX_BUFFER: usize = 16 * 1024 * 1024;

/// Event data buffers larger than this are shrunk back after their event.
const SHRINK_ABOVE: usize = 1024 * 1024;

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Limits and sizes of an [`SseParser`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseConfig {
    initial_buffer: usize,
    max_buffer: usize,
}

impl Default for SseConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl SseConfig {
    /// The defaults (the same as [`Default`]).
    pub const fn new() -> Self {
        Self {
            initial_buffer: DEFAULT_INITIAL_BUFFER,
            max_buffer: DEFAULT_MAX_BUFFER,
        }
    }

    /// Capacity of the partial-line buffer taken at creation (default 64 KiB). Lines that
    /// straddle chunks and grow past it spill into a larger buffer, which is given back once
    /// the line is done.
    #[must_use]
    pub const fn with_initial_buffer(mut self, initial_buffer: usize) -> Self {
        self.initial_buffer = initial_buffer;
        self
    }

    /// The `initial_buffer` setting (see [`SseConfig::with_initial_buffer`]).
    pub const fn initial_buffer(&self) -> usize {
        self.initial_buffer
    }

    /// Largest line, and largest data buffer of one event, in bytes (default 16 MiB). Past it
    /// the parser returns [`LlmError::SseLineTooLong`] or [`LlmError::SseEventTooLarge`]
    /// instead of growing further.
    #[must_use]
    pub const fn with_max_buffer(mut self, max_buffer: usize) -> Self {
        self.max_buffer = max_buffer;
        self
    }

    /// The `max_buffer` setting (see [`SseConfig::with_max_buffer`]).
    pub const fn max_buffer(&self) -> usize {
        self.max_buffer
    }
}

/// One dispatched event. It borrows the parser: read it (or copy what you need) before
/// feeding more bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The event type: the last `event` field of the block, or `message` when there was none.
    pub event: &'a str,
    /// The `data` lines of the block joined with `\n`. A block without any `data` line is
    /// not dispatched; a block with one empty `data` line is, with empty data.
    pub data: &'a str,
    /// The last event id in force (persists across events until an `id` field changes it).
    pub id: &'a str,
    /// A valid `retry` value seen in this event's block, in milliseconds (saturating at
    /// `u64::MAX`).
    pub retry: Option<u64>,
}

/// Counters of one parser since creation or the last [`SseParser::reset`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SseStats {
    /// Bytes fed.
    pub bytes: u64,
    /// Lines processed.
    pub lines: u64,
    /// Events dispatched.
    pub events: u64,
    /// Times a straddling line outgrew the partial-line buffer and moved to a larger one.
    pub spills: u64,
    /// Longest partial line held across chunks, in bytes.
    pub max_line_buffered: u64,
}

/// Sticky failure kinds (kept `Copy` so the parser can repeat them cheaply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    LineTooLong,
    EventTooLarge,
    /// An `event` or `id` value would take the decoded fields past the limit.
    FieldTooLong(&'static str),
}

impl Failure {
    fn name(self) -> &'static str {
        match self {
            Failure::LineTooLong => "line too long",
            Failure::EventTooLarge => "event too large",
            Failure::FieldTooLong(_) => "field too long",
        }
    }
}

/// Which decoded field a value goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Data,
    EventType,
    LastId,
}

/// What the parser knows about the event being built; separate from the line buffer so a
/// buffered line can be processed while these are mutated.
#[derive(Debug)]
struct Fields {
    data: String,
    event_type: String,
    last_id: String,
    block_retry: Option<u64>,
    retry: Option<u64>,
    /// An event was handed out: clear data and type before the next line touches them.
    clear_pending: bool,
    max: usize,
}

impl Fields {
    fn new(max: usize) -> Self {
        Self {
            data: String::new(),
            event_type: String::new(),
            last_id: String::new(),
            block_retry: None,
            retry: None,
            clear_pending: false,
            max,
        }
    }

    fn clear_block(&mut self) {
        self.data.clear();
        // One huge event should not pin its buffer for the rest of the stream.
        if self.data.capacity() > SHRINK_ABOVE {
            self.data.shrink_to(DEFAULT_INITIAL_BUFFER);
        }
        self.event_type.clear();
        self.block_retry = None;
        self.clear_pending = false;
    }

    /// Processes one complete line (without its terminator). Returns `true` when an event is
    /// ready to be read with [`Fields::event`].
    fn process_line(&mut self, line: &[u8]) -> Result<bool, Failure> {
        if self.clear_pending {
            self.clear_block();
        }
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(0) => return Ok(false),
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                self.make_room(Field::Data, lossy_len(value) + 1)?;
                push_lossy(&mut self.data, value);
                self.data.push('\n');
            }
            b"event" => {
                self.make_room(Field::EventType, lossy_len(value))?;
                self.event_type.clear();
                push_lossy(&mut self.event_type, value);
            }
            b"id" if memchr::memchr(0, value).is_none() => {
                self.make_room(Field::LastId, lossy_len(value))?;
                self.last_id.clear();
                push_lossy(&mut self.last_id, value);
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                let ms = value.iter().fold(0u64, |acc, d| {
                    acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
                });
                self.retry = Some(ms);
                self.block_retry = Some(ms);
            }
            _ => {}
        }
        Ok(false)
    }

    /// Checks that `field` can take `decoded` more bytes (data appends; the type and the id
    /// are replaced) with the three fields' decoded lengths together within `max`, and
    /// grows its capacity so that the three capacities together stay within `max` too:
    /// growth doubles but is capped there, and the other fields give back their spare room
    /// when the cap is reached. Nothing changes on failure.
    fn make_room(&mut self, field: Field, decoded: usize) -> Result<(), Failure> {
        let failure = match field {
            Field::Data => Failure::EventTooLarge,
            Field::EventType => Failure::FieldTooLong("event"),
            Field::LastId => Failure::FieldTooLong("id"),
        };
        let [target, a, b] = match field {
            Field::Data => [&mut self.data, &mut self.event_type, &mut self.last_id],
            Field::EventType => [&mut self.event_type, &mut self.data, &mut self.last_id],
            Field::LastId => [&mut self.last_id, &mut self.data, &mut self.event_type],
        };
        let kept = if field == Field::Data {
            target.len()
        } else {
            0
        };
        let need = kept.checked_add(decoded).ok_or(failure)?;
        let others = a.len() + b.len();
        if need > self.max.saturating_sub(others) {
            return Err(failure);
        }
        if need <= target.capacity() {
            return Ok(());
        }
        if a.capacity() + b.capacity() + need > self.max {
            a.shrink_to_fit();
            b.shrink_to_fit();
        }
        let room = self.max.saturating_sub(a.capacity() + b.capacity());
        let want = need.max(target.capacity().saturating_mul(2).min(room));
        if field != Field::Data {
            target.clear();
        }
        target.reserve_exact(want - target.len());
        Ok(())
    }

    fn dispatch(&mut self) -> bool {
        if self.data.is_empty() {
            self.clear_block();
            return false;
        }
        self.data.pop();
        self.clear_pending = true;
        true
    }

    fn event(&self) -> Event<'_> {
        Event {
            event: if self.event_type.is_empty() {
                "message"
            } else {
                &self.event_type
            },
            data: &self.data,
            id: &self.last_id,
            retry: self.block_retry,
        }
    }
}

/// Length in bytes of `bytes` decoded as [`push_lossy`] decodes them (each maximal invalid
/// subpart becomes the 3-byte U+FFFD, so the decoded text can be 3 times the input).
fn lossy_len(bytes: &[u8]) -> usize {
    if bytes.is_ascii() {
        return bytes.len();
    }
    bytes
        .utf8_chunks()
        .map(|c| {
            c.valid().len()
                + if c.invalid().is_empty() {
                    0
                } else {
                    char::REPLACEMENT_CHARACTER.len_utf8()
                }
        })
        .sum()
}

/// Appends `bytes` decoded as UTF-8, each maximal invalid subpart replaced by U+FFFD.
fn push_lossy(dst: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => dst.push_str(s),
        Err(_) => {
            for chunk in bytes.utf8_chunks() {
                dst.push_str(chunk.valid());
                if !chunk.invalid().is_empty() {
                    dst.push(char::REPLACEMENT_CHARACTER);
                }
            }
        }
    }
}

/// Storage of the partial-line buffer: from a [`BufferPool`] when the parser has one.
enum Backing {
    Owned(BytesMut),
    Pooled(PooledBuffer),
}

impl Backing {
    /// A buffer of at least `capacity` bytes, from the pool unless the pool's tier would be
    /// larger than `max` (a small limit must bound the memory too, not only the length).
    fn new(pool: Option<&BufferPool>, capacity: usize, max: usize) -> Self {
        if let Some(p) = pool {
            let pooled = p.acquire(capacity);
            if pooled.capacity() <= max.max(capacity) {
                return Backing::Pooled(pooled);
            }
        }
        Backing::Owned(BytesMut::with_capacity(capacity))
    }
}

impl std::ops::Deref for Backing {
    type Target = BytesMut;
    fn deref(&self) -> &BytesMut {
        match self {
            Backing::Owned(b) => b,
            Backing::Pooled(b) => b,
        }
    }
}

impl std::ops::DerefMut for Backing {
    fn deref_mut(&mut self) -> &mut BytesMut {
        match self {
            Backing::Owned(b) => b,
            Backing::Pooled(b) => b,
        }
    }
}

/// The partial-line buffer: a line that straddles chunks is gathered here.
///
/// It starts at the configured initial capacity (a pool tier when there is a pool); a line
/// that outgrows it moves to a buffer at least twice as large (the next pool tier, then plain
/// allocations past the largest tier), repeatedly, up to the maximum. Once that line is
/// processed the large buffer goes back and an initial-size one is used again, so a single
/// 10 MiB `response.completed` line does not pin 16 MiB for the rest of the stream.
struct LineBuffer {
    buf: Backing,
    pool: Option<BufferPool>,
    /// Capacity of the buffer taken at creation; anything larger is a spill.
    base: usize,
    initial: usize,
    max: usize,
}

impl fmt::Debug for LineBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineBuffer")
            .field("len", &self.buf.len())
            .field("capacity", &self.buf.capacity())
            .field("pooled", &self.pool.is_some())
            .field("max", &self.max)
            .finish()
    }
}

impl LineBuffer {
    fn new(initial: usize, max: usize, pool: Option<BufferPool>) -> Self {
        let buf = Backing::new(pool.as_ref(), initial, max);
        Self {
            base: buf.capacity(),
            buf,
            pool,
            initial,
            max,
        }
    }

    /// Appends bytes; returns whether the buffer had to move to a larger allocation.
    fn extend(&mut self, bytes: &[u8]) -> Result<bool, Failure> {
        let need = self.buf.len() + bytes.len();
        if need > self.max {
            return Err(Failure::LineTooLong);
        }
        let mut spilled = false;
        if need > self.buf.capacity() {
            let mut cap = self.buf.capacity().max(self.initial).max(1);
            while cap < need {
                cap = cap.saturating_mul(2);
            }
            let mut bigger = Backing::new(self.pool.as_ref(), cap.min(self.max), self.max);
            bigger.extend_from_slice(&self.buf);
            self.buf = bigger;
            spilled = true;
        }
        self.buf.extend_from_slice(bytes);
        Ok(spilled)
    }

    /// Empties the buffer, going back to the initial size if a long line spilled it.
    fn clear(&mut self) {
        if self.buf.capacity() > self.base {
            self.buf = Backing::new(self.pool.as_ref(), self.initial, self.max);
            self.base = self.buf.capacity();
        } else {
            self.buf.clear();
        }
    }
}

/// Where the parser stands on the optional leading byte-order mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bom {
    /// This many bytes of the BOM have matched so far (0 to 2).
    Matching(u8),
    Done,
}

/// An incremental WHATWG event-stream parser over reusable buffers.
///
/// ```
/// use mm_llm::sse::SseParser;
/// let mut parser = SseParser::new();
/// let mut seen = Vec::new();
/// for chunk in [&b"data: hel"[..], b"lo\r", b"\ndata: world\n\nda", b"ta: cut off"] {
///     parser.feed(chunk, |ev| seen.push(ev.data.to_owned())).unwrap();
/// }
/// assert!(parser.finish()); // the last event had no blank line: discarded
/// assert_eq!(seen, ["hello\nworld"]);
/// ```
#[derive(Debug)]
pub struct SseParser {
    line: LineBuffer,
    fields: Fields,
    bom: Bom,
    /// The previous line ended with CR: an LF that follows belongs to it.
    skip_lf: bool,
    failed: Option<Failure>,
    stats: SseStats,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the default limits (64 KiB start, 16 MiB maximum). Allocates the
    /// 64 KiB partial-line buffer now; the event buffers grow on first use and are kept.
    pub fn new() -> Self {
        Self::with_config(SseConfig::default()).expect("default SSE config is valid")
    }

    /// A parser with the given limits.
    ///
    /// # Errors
    /// [`LlmError::InvalidConfig`] when `max_buffer` is 0 or smaller than `initial_buffer`.
    pub fn with_config(config: SseConfig) -> Result<Self, LlmError> {
        Self::build(config, None)
    }

    /// A parser whose partial-line buffer comes from `pool` (64 KiB tier by default) and
    /// spills into the pool's larger tiers for long lines; buffers go back to the pool when
    /// the long line is done and when the parser is dropped.
    ///
    /// # Errors
    /// As [`SseParser::with_config`].
    pub fn with_pool(config: SseConfig, pool: BufferPool) -> Result<Self, LlmError> {
        Self::build(config, Some(pool))
    }

    fn build(config: SseConfig, pool: Option<BufferPool>) -> Result<Self, LlmError> {
        if config.max_buffer == 0 {
            return Err(LlmError::InvalidConfig(
                "SseConfig::max_buffer must be at least 1",
            ));
        }
        if config.initial_buffer > config.max_buffer {
            return Err(LlmError::InvalidConfig(
                "SseConfig::initial_buffer must not exceed SseConfig::max_buffer",
            ));
        }
        Ok(Self {
            line: LineBuffer::new(config.initial_buffer, config.max_buffer, pool),
            fields: Fields::new(config.max_buffer),
            bom: Bom::Matching(0),
            skip_lf: false,
            failed: None,
            stats: SseStats::default(),
        })
    }

    /// Starts parsing `chunk`; pull events with [`Events::next_event`] until it returns
    /// `Ok(None)`. Dropping the cursor early still processes the rest of the chunk (so the
    /// stream state stays right) but discards its events.
    pub fn events<'p, 'c>(&'p mut self, chunk: &'c [u8]) -> Events<'p, 'c> {
        self.stats.bytes += chunk.len() as u64;
        Events {
            parser: self,
            chunk,
            pos: 0,
        }
    }

    /// Feeds one chunk and calls `on_event` for every event it completes. Returns how many
    /// events were dispatched.
    ///
    /// # Errors
    /// [`LlmError::SseLineTooLong`] or [`LlmError::SseEventTooLarge`] when a line or an
    /// event's data passes `max_buffer`; [`LlmError::SseStopped`] when an earlier call failed.
    /// After an error the parser refuses input until [`SseParser::reset`].
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut on_event: impl FnMut(Event<'_>),
    ) -> Result<usize, LlmError> {
        let mut events = self.events(chunk);
        let mut n = 0;
        while let Some(ev) = events.next_event()? {
            on_event(ev);
            n += 1;
        }
        Ok(n)
    }

    /// Ends the stream: an unterminated final event and any partial line are discarded, as the
    /// standard requires. Returns whether anything was discarded. The parser is then ready for
    /// a new stream; the last event id and reconnection time are kept (a reconnecting client
    /// sends them back), use [`SseParser::reset`] to clear them too.
    pub fn finish(&mut self) -> bool {
        let discarded = (!self.fields.clear_pending && !self.fields.data.is_empty())
            || !self.line.buf.is_empty()
            || matches!(self.bom, Bom::Matching(k) if k > 0);
        self.fields.clear_block();
        self.line.clear();
        self.bom = Bom::Matching(0);
        self.skip_lf = false;
        self.failed = None;
        discarded
    }

    /// Clears everything, including the last event id, the reconnection time, a stored error
    /// and the statistics. Buffers keep their capacity.
    pub fn reset(&mut self) {
        self.finish();
        self.fields.last_id.clear();
        self.fields.retry = None;
        self.stats = SseStats::default();
    }

    /// The reconnection time from the latest valid `retry` field, in milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.fields.retry
    }

    /// The last event id in force.
    pub fn last_event_id(&self) -> &str {
        &self.fields.last_id
    }

    /// Counters since creation or the last reset.
    pub fn stats(&self) -> SseStats {
        self.stats
    }

    /// Bytes the parser's buffers hold now (capacity, not length).
    pub fn buffer_bytes(&self) -> usize {
        self.line.buf.capacity()
            + self.fields.data.capacity()
            + self.fields.event_type.capacity()
            + self.fields.last_id.capacity()
    }

    fn fail(&mut self, failure: Failure) -> LlmError {
        self.failed = Some(failure);
        self.line.clear();
        self.fields.clear_block();
        match failure {
            Failure::LineTooLong => LlmError::SseLineTooLong {
                max: self.fields.max,
            },
            Failure::EventTooLarge => LlmError::SseEventTooLarge {
                max: self.fields.max,
            },
            Failure::FieldTooLong(field) => LlmError::SseFieldTooLong {
                field,
                max: self.fields.max,
            },
        }
    }

    /// Consumes bytes of `chunk` from `*pos` up to and including the next complete line and
    /// processes that line. Returns `Ok(true)` when an event became ready, `Ok(false)` when a
    /// line produced none or the chunk ran out (then `*pos == chunk.len()`).
    fn step(&mut self, chunk: &[u8], pos: &mut usize) -> Result<bool, Failure> {
        while let Bom::Matching(k) = self.bom {
            let Some(&b) = chunk.get(*pos) else {
                return Ok(false);
            };
            if b == BOM[usize::from(k)] {
                *pos += 1;
                self.bom = if k == 2 {
                    Bom::Done
                } else {
                    Bom::Matching(k + 1)
                };
            } else {
                self.bom = Bom::Done;
                // The bytes that looked like a BOM are ordinary line content after all.
                self.line.extend(&BOM[..usize::from(k)])?;
            }
        }
        if self.skip_lf {
            match chunk.get(*pos) {
                None => return Ok(false),
                Some(b'\n') => *pos += 1,
                Some(_) => {}
            }
            self.skip_lf = false;
        }
        let rest = &chunk[*pos..];
        let Some(end) = memchr::memchr2(b'\n', b'\r', rest) else {
            if !rest.is_empty() {
                if self.line.extend(rest)? {
                    self.stats.spills += 1;
                }
                self.stats.max_line_buffered =
                    self.stats.max_line_buffered.max(self.line.buf.len() as u64);
            }
            *pos = chunk.len();
            return Ok(false);
        };
        *pos += end + 1;
        self.skip_lf = rest[end] == b'\r';
        self.stats.lines += 1;
        let ready = if self.line.buf.is_empty() {
            if end > self.fields.max {
                return Err(Failure::LineTooLong);
            }
            self.fields.process_line(&rest[..end])?
        } else {
            if self.line.extend(&rest[..end])? {
                self.stats.spills += 1;
            }
            self.stats.max_line_buffered =
                self.stats.max_line_buffered.max(self.line.buf.len() as u64);
            let ready = self.fields.process_line(&self.line.buf)?;
            self.line.clear();
            ready
        };
        if ready {
            self.stats.events += 1;
        }
        Ok(ready)
    }
}

/// A cursor over the events one chunk completes; see [`SseParser::events`].
#[derive(Debug)]
pub struct Events<'p, 'c> {
    parser: &'p mut SseParser,
    chunk: &'c [u8],
    pos: usize,
}

impl Events<'_, '_> {
    /// The next event completed by this chunk, or `Ok(None)` when the chunk is used up (its
    /// unfinished tail is kept for the next chunk).
    ///
    /// # Errors
    /// As [`SseParser::feed`].
    pub fn next_event(&mut self) -> Result<Option<Event<'_>>, LlmError> {
        if let Some(failure) = self.parser.failed {
            self.pos = self.chunk.len();
            return Err(LlmError::SseStopped(failure.name()));
        }
        while self.pos < self.chunk.len() {
            match self.parser.step(self.chunk, &mut self.pos) {
                Ok(true) => return Ok(Some(self.parser.fields.event())),
                Ok(false) => {}
                Err(failure) => {
                    self.pos = self.chunk.len();
                    return Err(self.parser.fail(failure));
                }
            }
        }
        Ok(None)
    }
}

impl Drop for Events<'_, '_> {
    fn drop(&mut self) {
        while self.pos < self.chunk.len() {
            if self.next_event().is_err() {
                break;
            }
        }
    }
}

/// Largest chunk size [`cli_dump`] accepts (64 MiB).
pub const MAX_DUMP_CHUNK: usize = 64 * 1024 * 1024;

/// What [`cli_dump`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpSummary {
    /// Bytes read.
    pub bytes: u64,
    /// Events printed.
    pub events: u64,
    /// The stream ended inside an event (or a line), which was discarded.
    pub discarded_tail: bool,
}

/// The logic of `mm sse`: reads a captured event stream from `reader`, feeds it to a parser in
/// chunks of exactly `chunk_size` bytes (the last may be shorter), and writes one JSON object
/// per event to `writer`, one per line: `{"event":..,"data":..,"id":..}` plus `"retry":N` when
/// the event's block had a valid `retry` field. Replaying a capture with different chunk sizes
/// shows whether a problem depends on how the bytes arrived (it should not).
///
/// Memory: one `chunk_size` read buffer plus the parser's buffers.
///
/// # Errors
/// [`LlmError::InvalidConfig`] for a `chunk_size` of 0 or above [`MAX_DUMP_CHUNK`];
/// [`LlmError::Io`] when reading or writing fails; the parser's errors for lines or events
/// past 16 MiB.
pub fn cli_dump(
    mut reader: impl std::io::Read,
    mut writer: impl std::io::Write,
    chunk_size: usize,
) -> Result<DumpSummary, LlmError> {
    if chunk_size == 0 || chunk_size > MAX_DUMP_CHUNK {
        return Err(LlmError::InvalidConfig(
            "chunk size must be between 1 byte and 64 MiB",
        ));
    }
    let mut parser = SseParser::new();
    let mut chunk = vec![0u8; chunk_size];
    let mut line = Vec::new();
    let mut summary = DumpSummary {
        bytes: 0,
        events: 0,
        discarded_tail: false,
    };
    loop {
        let mut filled = 0;
        while filled < chunk_size {
            match reader.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if filled == 0 {
            break;
        }
        summary.bytes += filled as u64;
        let mut events = parser.events(&chunk[..filled]);
        while let Some(ev) = events.next_event()? {
            line.clear();
            event_json(&mut line, &ev);
            line.push(b'\n');
            writer.write_all(&line)?;
            summary.events += 1;
        }
    }
    summary.discarded_tail = parser.finish();
    writer.flush()?;
    Ok(summary)
}

/// Writes one event as a JSON object.
fn event_json(out: &mut Vec<u8>, ev: &Event<'_>) {
    use crate::json::{Sink, write_str, write_u64};
    out.put(b"{\"event\":");
    write_str(out, ev.event);
    out.put(b",\"data\":");
    write_str(out, ev.data);
    out.put(b",\"id\":");
    write_str(out, ev.id);
    if let Some(retry) = ev.retry {
        out.put(b",\"retry\":");
        write_u64(out, retry);
    }
    out.put(b"}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Owned {
        event: String,
        data: String,
        id: String,
        retry: Option<u64>,
    }

    fn parse_chunks(chunks: &[&[u8]]) -> (Vec<Owned>, bool) {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, |e| {
                out.push(Owned {
                    event: e.event.into(),
                    data: e.data.into(),
                    id: e.id.into(),
                    retry: e.retry,
                })
            })
            .unwrap();
        }
        let discarded = p.finish();
        (out, discarded)
    }

    fn datas(chunks: &[&[u8]]) -> Vec<String> {
        parse_chunks(chunks).0.into_iter().map(|e| e.data).collect()
    }

    #[test]
    fn bom_stripped_once_even_split() {
        assert_eq!(datas(&[b"\xEF\xBB\xBFdata: a\n\n"]), ["a"]);
        assert_eq!(datas(&[b"\xEF", b"\xBB", b"\xBFdata: a\n\n"]), ["a"]);
        // A second BOM is content: the field name no longer reads "data".
        assert_eq!(
            datas(&[b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n"]),
            Vec::<String>::new()
        );
        // A BOM prefix that diverges is ordinary (invalid UTF-8) content, not lost.
        let (evs, _) = parse_chunks(&[b"\xEF\xBB", b"x\n", b"data: b\n\n"]);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].data, "b");
    }

    #[test]
    fn diverging_bom_prefix_becomes_replacement_char() {
        // Field "\xEF\xBBdata" is unknown and ignored; check with an id value instead.
        let (evs, _) = parse_chunks(&[b"\xEF\xBB", b"\n"]);
        assert!(evs.is_empty());
        let mut p = SseParser::new();
        p.feed(b"id: \xEF\xBB\n", |_| {}).unwrap();
        assert_eq!(p.last_event_id(), "\u{FFFD}");
    }

    #[test]
    fn line_endings() {
        assert_eq!(datas(&[b"data: a\r\ndata: b\r\n\r\n"]), ["a\nb"]);
        assert_eq!(datas(&[b"data: a\rdata: b\r\r"]), ["a\nb"]);
        assert_eq!(datas(&[b"data: a\r", b"\n", b"\r", b"\n"]), ["a"]);
        // CR then LF across chunks is one line ending, not two (no spurious blank line).
        assert_eq!(datas(&[b"data: a\r", b"\ndata: b\n\n"]), ["a\nb"]);
    }

    #[test]
    fn cr_terminated_event_dispatches_without_more_bytes() {
        let mut p = SseParser::new();
        let mut n = 0;
        p.feed(b"data: a\r\r", |e| {
            assert_eq!(e.data, "a");
            n += 1
        })
        .unwrap();
        assert_eq!(n, 1);
        assert!(!p.finish());
    }

    #[test]
    fn invalid_utf8_becomes_replacement() {
        assert_eq!(
            datas(&[b"data: a\xFFb\xE2\x82\n\n"]),
            ["a\u{FFFD}b\u{FFFD}"]
        );
    }

    #[test]
    fn comments_fields_spaces() {
        let (evs, _) = parse_chunks(&[b": hello\ndata\ndata:  two\nevent:x\n\n"]);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].data, "\n two");
        assert_eq!(evs[0].event, "x");
    }

    #[test]
    fn empty_data_dispatches_nothing_but_single_empty_data_line_does() {
        // "data" with empty value appends "\n"; after removing the final LF the data is
        // empty, yet the buffer was not empty, so an event with empty data is dispatched.
        let (evs, _) = parse_chunks(&[b"data\n\n"]);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].data, "");
        let (evs, _) = parse_chunks(&[b"event: x\nid: 1\n\n"]);
        assert!(evs.is_empty());
        // The event type does not leak into the next event.
        let (evs, _) = parse_chunks(&[b"event: x\n\ndata: y\n\n"]);
        assert_eq!(evs[0].event, "message");
    }

    #[test]
    fn id_rules() {
        let (evs, _) =
            parse_chunks(&[b"id: 1\ndata: a\n\ndata: b\n\nid: x\0y\ndata: c\n\nid\ndata: d\n\n"]);
        let ids: Vec<_> = evs.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["1", "1", "1", ""]);
    }

    #[test]
    fn retry_rules() {
        let mut p = SseParser::new();
        p.feed(b"retry: +10\n", |_| {}).unwrap();
        assert_eq!(p.retry(), None);
        p.feed(b"retry: 1e3\nretry:\n", |_| {}).unwrap();
        assert_eq!(p.retry(), None);
        p.feed(b"retry: 1500\n", |_| {}).unwrap();
        assert_eq!(p.retry(), Some(1500));
        p.feed(b"retry: 99999999999999999999999\ndata: x\n\n", |e| {
            assert_eq!(e.retry, Some(u64::MAX))
        })
        .unwrap();
    }

    #[test]
    fn unterminated_final_event_discarded() {
        let (evs, discarded) = parse_chunks(&[b"data: a\n\ndata: b\n"]);
        assert_eq!(evs.len(), 1);
        assert!(discarded);
        let (evs, discarded) = parse_chunks(&[b"data: a\n\ndata: b"]);
        assert_eq!(evs.len(), 1);
        assert!(discarded);
        let (_, discarded) = parse_chunks(&[b"data: a\n\n"]);
        assert!(!discarded);
    }

    #[test]
    fn long_line_spills_and_returns_to_initial_size() {
        let cfg = SseConfig::new()
            .with_initial_buffer(16)
            .with_max_buffer(1 << 20);
        let mut p = SseParser::with_config(cfg).unwrap();
        let mut line = b"data: ".to_vec();
        line.extend(std::iter::repeat_n(b'x', 100_000));
        line.extend(b"\n\n");
        let mut got = 0;
        for c in line.chunks(97) {
            p.feed(c, |e| {
                assert_eq!(e.data.len(), 100_000);
                got += 1
            })
            .unwrap();
        }
        assert_eq!(got, 1);
        assert!(p.stats().spills > 0);
        assert!(p.line.buf.capacity() <= 16);
    }

    #[test]
    fn pooled_buffer_spills_through_tiers_and_returns() {
        let pool = BufferPool::new(mm_pool::BufferPoolConfig::default()).unwrap();
        let mut p = SseParser::with_pool(SseConfig::default(), pool.clone()).unwrap();
        assert_eq!(p.line.buf.capacity(), 64 * 1024);
        let mut input = b"data: ".to_vec();
        input.extend(std::iter::repeat_n(b'y', 3 << 20));
        input.extend(b"\n\n");
        let mut n = 0;
        for c in input.chunks(4096) {
            p.feed(c, |e| {
                assert_eq!(e.data.len(), 3 << 20);
                n += 1
            })
            .unwrap();
        }
        assert_eq!(n, 1);
        assert!(p.stats().spills >= 2); // 64 KiB -> 1 MiB tier -> beyond the tiers
        assert_eq!(p.line.buf.capacity(), 64 * 1024);
        let before = pool.stats();
        drop(p);
        assert!(pool.stats().returns > before.returns);
    }

    #[test]
    fn limits_are_typed_errors_and_sticky() {
        let cfg = SseConfig::new().with_initial_buffer(8).with_max_buffer(64);
        let mut p = SseParser::with_config(cfg).unwrap();
        let long = [b'x'; 100];
        let err = p.feed(&long, |_| {}).unwrap_err();
        assert!(matches!(err, LlmError::SseLineTooLong { max: 64 }));
        let err = p.feed(b"data: a\n\n", |_| {}).unwrap_err();
        assert!(matches!(err, LlmError::SseStopped(_)));
        p.reset();
        assert_eq!(p.feed(b"data: a\n\n", |_| {}).unwrap(), 1);
        // Many short data lines in one event hit the event limit.
        let mut many = Vec::new();
        for _ in 0..20 {
            many.extend(b"data: 0123456789\n");
        }
        let err = p.feed(&many, |_| {}).unwrap_err();
        assert!(matches!(err, LlmError::SseEventTooLarge { max: 64 }));
        // A too-long line inside one chunk is refused the same way.
        p.reset();
        let mut one = long.to_vec();
        one.push(b'\n');
        assert!(matches!(
            p.feed(&one, |_| {}),
            Err(LlmError::SseLineTooLong { .. })
        ));
    }

    #[test]
    fn dropping_cursor_keeps_state() {
        let mut p = SseParser::new();
        {
            let mut evs = p.events(b"id: 7\ndata: a\n\ndata: b\n\ndata: par");
            assert_eq!(evs.next_event().unwrap().unwrap().data, "a");
        }
        let mut got = Vec::new();
        p.feed(b"tial\n\n", |e| {
            got.push((e.id.to_owned(), e.data.to_owned()))
        })
        .unwrap();
        assert_eq!(got, [("7".to_owned(), "partial".to_owned())]);
    }

    #[test]
    fn dump_prints_json_lines_independent_of_chunking() {
        let input = b"\xEF\xBB\xBFretry: 10\nid: 1\nevent: delta\ndata: {\"a\":\"\\n\"}\r\ndata: \"q\"\r\n\r\ndata: tail";
        let mut first = None;
        for chunk in [1, 2, 3, 7, 4096] {
            let mut out = Vec::new();
            let sum = cli_dump(&input[..], &mut out, chunk).unwrap();
            assert_eq!(sum.events, 1);
            assert!(sum.discarded_tail);
            let text = String::from_utf8(out).unwrap();
            let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
            assert_eq!(v["event"], "delta");
            assert_eq!(v["data"], "{\"a\":\"\\n\"}\n\"q\"");
            assert_eq!(v["id"], "1");
            assert_eq!(v["retry"], 10);
            match &first {
                None => first = Some(text),
                Some(f) => assert_eq!(f, &text),
            }
        }
        assert!(cli_dump(&input[..], Vec::new(), 0).is_err());
    }

    #[test]
    fn config_validation() {
        let bad = SseConfig::new().with_initial_buffer(10).with_max_buffer(5);
        assert!(SseParser::with_config(bad).is_err());
        assert!(
            SseParser::with_config(SseConfig::new().with_initial_buffer(0).with_max_buffer(0))
                .is_err()
        );
    }
}
