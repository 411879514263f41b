//! A conversation: system prompt and tool definitions kept aside, a truncatable history in
//! reusable storage, fitting to a model's window, and prompt assembly.
//!
//! Storage: every text (message content, tool-call ids and arguments, tool output) is appended
//! to one `String`; items are small fixed-size records in a `VecDeque` pointing into it by
//! offset. Appending is O(1) amortised plus the text copy. Dropping from the front is O(1);
//! dropping from the middle (a tool result whose call was dropped) leaves a tombstone that is
//! popped when it reaches the front. The text of dropped items is reclaimed by shifting the
//! live tail to the front of the string once the dead prefix is over half of it, so each byte
//! is moved a bounded number of times and no call allocates once capacities have grown.
//! [`Conversation::clear`] empties everything but keeps the capacity, so a pool of
//! conversations serves new ones without allocating.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::BytesMut;
use mm_pool::{BufferPool, ObjectPool, PooledBuffer};

use crate::LlmError;
use crate::json::{Sink, write_str, write_str_body};
use crate::names::{Interner, Symbol};
use crate::tokens::{ByteEstimate, TokenCounter};
use crate::windows::ContextWindows;

/// Content of the synthetic result given to a tool call that has none when a prompt is built.
pub const ABORTED_RESULT: &str = "aborted: no result was recorded for this tool call";

/// Room kept for the marker when a tool output is cut.
const MARKER_ROOM: usize = 64;

/// The role of a history item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A user message.
    User,
    /// An assistant message (text).
    Assistant,
    /// A tool call made by the assistant (id, tool name, JSON arguments).
    ToolCall,
    /// The output of a tool call.
    ToolResult,
}

impl Role {
    /// The role's name in the chat-completions JSON shape.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant | Role::ToolCall => "assistant",
            Role::ToolResult => "tool",
        }
    }
}

/// How a conversation is fitted into its model's window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitPolicy {
    output_reserve: u32,
    trigger_fraction: f64,
    target_fraction: f64,
    keep_recent_user: u32,
    max_tool_output: usize,
}

impl Default for FitPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl FitPolicy {
    /// The defaults (the same as [`Default`]).
    pub const fn new() -> Self {
        Self {
            output_reserve: 8192,
            trigger_fraction: 0.9,
            target_fraction: 0.75,
            keep_recent_user: 1,
            max_tool_output: 10 * 1024,
        }
    }

    /// Tokens kept free for the model's answer (default 8,192), capped at a quarter of the
    /// window so small (2k, 8k) windows still fit: 2,048 at 8k, 4,096 at 16k.
    #[must_use]
    pub const fn with_output_reserve(mut self, output_reserve: u32) -> Self {
        self.output_reserve = output_reserve;
        self
    }

    /// The `output_reserve` setting (see [`FitPolicy::with_output_reserve`]).
    pub const fn output_reserve(&self) -> u32 {
        self.output_reserve
    }

    /// Fitting starts when the prompt passes this fraction of the prompt room (the window
    /// minus the reserve; default 0.9).
    #[must_use]
    pub const fn with_trigger_fraction(mut self, trigger_fraction: f64) -> Self {
        self.trigger_fraction = trigger_fraction;
        self
    }

    /// The `trigger_fraction` setting (see [`FitPolicy::with_trigger_fraction`]).
    pub const fn trigger_fraction(&self) -> f64 {
        self.trigger_fraction
    }

    /// Once triggered, the oldest items go until the prompt is under this fraction of the
    /// prompt room (default 0.75). The gap between the two makes cuts rare and large, so a provider's cached
    /// prompt prefix stays valid for many turns instead of shifting every turn.
    #[must_use]
    pub const fn with_target_fraction(mut self, target_fraction: f64) -> Self {
        self.target_fraction = target_fraction;
        self
    }

    /// The `target_fraction` setting (see [`FitPolicy::with_target_fraction`]).
    pub const fn target_fraction(&self) -> f64 {
        self.target_fraction
    }

    /// How many of the most recent user messages are never dropped (default 1, minimum 1:
    /// the newest user turn always stays).
    #[must_use]
    pub const fn with_keep_recent_user(mut self, keep_recent_user: u32) -> Self {
        self.keep_recent_user = keep_recent_user;
        self
    }

    /// The `keep_recent_user` setting (see [`FitPolicy::with_keep_recent_user`]).
    pub const fn keep_recent_user(&self) -> u32 {
        self.keep_recent_user
    }

    /// Tool outputs longer than this many bytes are cut when recorded, keeping head and tail
    /// (default 10 KiB).
    #[must_use]
    pub const fn with_max_tool_output(mut self, max_tool_output: usize) -> Self {
        self.max_tool_output = max_tool_output;
        self
    }

    /// The `max_tool_output` setting (see [`FitPolicy::with_max_tool_output`]).
    pub const fn max_tool_output(&self) -> usize {
        self.max_tool_output
    }
}

impl FitPolicy {
    fn validate(&self) -> Result<(), LlmError> {
        let ok = |f: f64| f > 0.0 && f <= 1.0;
        if !ok(self.trigger_fraction) || !ok(self.target_fraction) {
            return Err(LlmError::InvalidConfig("fit fractions must be in (0, 1]"));
        }
        if self.target_fraction > self.trigger_fraction {
            return Err(LlmError::InvalidConfig(
                "target_fraction must not exceed trigger_fraction",
            ));
        }
        if self.max_tool_output < 2 * MARKER_ROOM {
            return Err(LlmError::InvalidConfig(
                "max_tool_output must be at least 128 bytes",
            ));
        }
        Ok(())
    }
}

/// What the conversations of one service share: the name interner, the window table and the
/// fit policy. Build it once, wrap it in an `Arc`, and hand it to every conversation.
#[derive(Debug)]
pub struct ConversationSetup {
    names: Arc<Interner>,
    windows: ContextWindows,
    policy: FitPolicy,
    tally: Arc<crate::managed::Tally>,
}

impl ConversationSetup {
    /// A setup with its own interner.
    ///
    /// # Errors
    /// [`LlmError::InvalidConfig`] when the policy's fractions are outside (0, 1], the target
    /// is above the trigger, or `max_tool_output` is below 128 bytes.
    pub fn new(windows: ContextWindows, policy: FitPolicy) -> Result<Self, LlmError> {
        Self::with_interner(Arc::new(Interner::new()), windows, policy)
    }

    /// A setup sharing an existing interner (model ids and tool names are interned there).
    ///
    /// # Errors
    /// As [`ConversationSetup::new`].
    pub fn with_interner(
        names: Arc<Interner>,
        windows: ContextWindows,
        policy: FitPolicy,
    ) -> Result<Self, LlmError> {
        policy.validate()?;
        Ok(Self {
            names,
            windows,
            policy,
            tally: Arc::default(),
        })
    }

    /// A setup whose conversations are a component of `manager`: names go to the manager's
    /// interner, and the conversations' heap bytes are charged to its budget and listed in
    /// its report as `conversations` (live conversations as items).
    ///
    /// # Errors
    /// As [`ConversationSetup::new`].
    pub fn from_manager(
        manager: &memory_manager::MemoryManager,
        windows: ContextWindows,
        policy: FitPolicy,
    ) -> Result<Self, LlmError> {
        let setup = Self::with_interner(Arc::clone(manager.interner()), windows, policy)?;
        manager.register(Arc::clone(&setup.tally) as Arc<dyn memory_manager::Component>);
        Ok(setup)
    }

    /// The interner holding model ids and tool names.
    pub fn names(&self) -> &Arc<Interner> {
        &self.names
    }

    /// The fit policy.
    pub fn policy(&self) -> &FitPolicy {
        &self.policy
    }

    /// The window table.
    pub fn windows(&self) -> &ContextWindows {
        &self.windows
    }
}

/// A byte range in the text store, as a logical offset (never reused).
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u64,
    len: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Live,
    /// Chosen by the running fit; the compaction hook still sees it.
    Dropping,
    Dead,
}

#[derive(Debug, Clone, Copy)]
struct Item {
    role: Role,
    state: State,
    tool: Option<Symbol>,
    call_id: Span,
    text: Span,
    /// The sequence number of the paired call or result.
    partner: Option<u64>,
    tokens: u32,
    /// For a call: what its synthetic "aborted" result would cost.
    aborted_tokens: u32,
}

/// A read-only view of one history item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageView<'a> {
    /// The role.
    pub role: Role,
    /// Content (user, assistant, tool result) or JSON arguments (tool call).
    pub text: &'a str,
    /// The tool-call id (tool call and result), else empty.
    pub call_id: &'a str,
    /// The tool name (tool call), else empty.
    pub tool: &'a str,
    /// The cached token estimate.
    pub tokens: u32,
}

/// What happened to a recorded tool result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultOutcome {
    /// Recorded and paired with its call.
    Recorded {
        /// The output was longer than the limit and its middle was cut.
        cut: bool,
    },
    /// No live call with this id is waiting for a result (it was dropped by a fit, already
    /// answered, or never made); the result was dropped, since the APIs reject it.
    Orphan,
}

/// What a fit did. Every fit returns one, triggered or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FitReport {
    /// The model's window in tokens.
    pub window: u64,
    /// Window minus output reserve: the prompt must stay at or under this.
    pub limit: u64,
    /// Fitting starts above this many tokens.
    pub trigger: u64,
    /// A triggered fit cuts down to this many tokens (or as close as the kept parts allow).
    pub target: u64,
    /// Estimated prompt tokens before the fit.
    pub tokens_before: u64,
    /// Estimated prompt tokens after it.
    pub tokens_after: u64,
    /// Whether the trigger was passed and anything was considered for cutting.
    pub triggered: bool,
    /// History items dropped (a tool call and its result count as two).
    pub dropped_items: u32,
    /// Of those, tool call/result pairs dropped together.
    pub dropped_pairs: u32,
    /// Tokens those items cost.
    pub dropped_tokens: u64,
    /// The compaction hook replaced the dropped items with a summary.
    pub compacted: bool,
    /// The kept parts alone are above the target (but within the limit).
    pub above_target: bool,
    /// Tool calls without a result that will get a synthetic "aborted" result.
    pub synthetic_results: u32,
    /// Orphan tool results dropped since the previous fit.
    pub orphans_dropped: u32,
}

/// Counters over a conversation's life (since creation or [`Conversation::clear`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConversationStats {
    /// Items appended.
    pub appended: u64,
    /// Items dropped by fits.
    pub dropped: u64,
    /// Tool results dropped because their call was missing.
    pub orphans_dropped: u64,
    /// Tool outputs cut at record time.
    pub outputs_cut: u64,
    /// Fits that used the compaction hook.
    pub compactions: u64,
    /// Times the text store shifted its live tail to reclaim dropped text.
    pub text_compactions: u64,
}

/// The messages a fit is about to drop, oldest first, as handed to a [`Compactor`].
#[derive(Debug, Clone)]
pub struct DroppedMessages<'a> {
    conv: ConvRef<'a>,
    next: usize,
}

impl<'a> Iterator for DroppedMessages<'a> {
    type Item = MessageView<'a>;

    fn next(&mut self) -> Option<MessageView<'a>> {
        while let Some(item) = self.conv.items.get(self.next) {
            self.next += 1;
            if item.state == State::Dropping {
                return Some(self.conv.view(item));
            }
        }
        None
    }
}

/// Replaces old turns with a summary when a fit cuts them.
///
/// `compact` receives the previous summary (empty at first) and the messages being dropped,
/// oldest first, and writes the new summary into `summary` (given empty). The summary is sent
/// as a system message right after the system prompt and is never cut; keep it short. Any
/// `FnMut(&str, DroppedMessages<'_>, &mut String)` is a compactor.
pub trait Compactor {
    /// Writes the summary that replaces `dropped` (and `previous`) into `summary`.
    fn compact(&mut self, previous: &str, dropped: DroppedMessages<'_>, summary: &mut String);
}

impl<F: FnMut(&str, DroppedMessages<'_>, &mut String)> Compactor for F {
    fn compact(&mut self, previous: &str, dropped: DroppedMessages<'_>, summary: &mut String) {
        self(previous, dropped, summary)
    }
}

/// What [`Conversation::assemble`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AssembleReport {
    /// Messages written (a group of parallel tool calls is one message).
    pub messages: u32,
    /// Synthetic "aborted" results written for calls without a result.
    pub synthetic_results: u32,
    /// Bytes appended to the buffer.
    pub bytes: usize,
}

/// The shared-borrow part of a conversation needed to read items.
#[derive(Debug, Clone, Copy)]
struct ConvRef<'a> {
    items: &'a VecDeque<Item>,
    text: &'a str,
    origin: u64,
    names: &'a Interner,
}

impl<'a> ConvRef<'a> {
    fn span(&self, s: Span) -> &'a str {
        let start = (s.start - self.origin) as usize;
        &self.text[start..start + s.len as usize]
    }

    fn view(&self, item: &Item) -> MessageView<'a> {
        MessageView {
            role: item.role,
            text: self.span(item.text),
            call_id: self.span(item.call_id),
            tool: item.tool.map_or("", |s| self.names.resolve(s)),
            tokens: item.tokens,
        }
    }
}

/// One conversation's memory.
///
/// Storage: every text (message content, tool-call ids and arguments, tool output) is appended
/// to one `String`; items are small fixed-size records in a `VecDeque` pointing into it by
/// offset. Appending is O(1) amortised plus the text copy. Dropping from the front is O(1);
/// dropping from the middle (a tool result whose call was dropped) leaves a tombstone that is
/// popped when it reaches the front. The text of dropped items is reclaimed by shifting the
/// live tail to the front of the string once the dead prefix is over half of it, so each byte
/// is moved a bounded number of times and no call allocates once capacities have grown.
/// [`Conversation::clear`] empties everything but keeps the capacity; [`Conversation::pool`]
/// builds a pool that does that when a conversation ends.
///
/// ```
/// use std::sync::Arc;
/// use mm_llm::{ByteEstimate, ContextWindows, Conversation, ConversationSetup, FitPolicy};
///
/// let setup = Arc::new(ConversationSetup::new(ContextWindows::default(), FitPolicy::default())?);
/// let mut conv = Conversation::new(setup, ByteEstimate::default());
/// conv.set_model("gpt-4o")?;
/// conv.set_system("You are terse.");
/// conv.push_user("What is 2+2?")?;
/// conv.push_tool_call("call_1", "calc", r#"{"expr":"2+2"}"#)?;
/// conv.push_tool_result("call_1", "4")?;
/// let report = conv.fit()?;
/// assert!(!report.triggered);
/// let mut buf = bytes::BytesMut::new();
/// conv.assemble(&mut buf, true)?;
/// assert!(buf.starts_with(br#"{"model":"gpt-4o""#));
/// # Ok::<(), mm_llm::LlmError>(())
/// ```
#[derive(Debug)]
pub struct Conversation<C: TokenCounter = ByteEstimate> {
    setup: Arc<ConversationSetup>,
    counter: C,
    model: Option<(Symbol, u32)>,
    system: String,
    system_tokens: u32,
    tools: String,
    tools_tokens: u32,
    summary: String,
    summary_tokens: u32,
    scratch: String,
    items: VecDeque<Item>,
    /// Sequence number of `items[0]`.
    front_seq: u64,
    text: String,
    /// Logical offset of `text[0]`.
    origin: u64,
    /// Tokens of live history items, plus synthetic results of unanswered calls.
    history_tokens: u64,
    unanswered_calls: u32,
    orphans_since_fit: u32,
    stats: ConversationStats,
    /// Bytes last reported to the setup's tally.
    accounted: usize,
}

impl<C: TokenCounter> Drop for Conversation<C> {
    fn drop(&mut self) {
        self.setup.tally.closed(self.accounted);
    }
}

impl<C: TokenCounter> Conversation<C> {
    /// An empty conversation. Allocates nothing until the first append.
    pub fn new(setup: Arc<ConversationSetup>, counter: C) -> Self {
        setup.tally.opened();
        Self {
            setup,
            counter,
            model: None,
            system: String::new(),
            system_tokens: 0,
            tools: String::new(),
            tools_tokens: 0,
            summary: String::new(),
            summary_tokens: 0,
            scratch: String::new(),
            items: VecDeque::new(),
            front_seq: 0,
            text: String::new(),
            origin: 0,
            history_tokens: 0,
            unanswered_calls: 0,
            orphans_since_fit: 0,
            stats: ConversationStats::default(),
            accounted: 0,
        }
    }

    /// Brings the setup's tally up to date with this conversation's buffers.
    fn account(&mut self) {
        let now = self.memory_bytes();
        self.setup.tally.resized(self.accounted, now);
        self.accounted = now;
    }

    /// Empties the conversation (model, prompts, history, summary, statistics) and keeps every
    /// buffer's capacity for the next conversation.
    pub fn clear(&mut self) {
        self.model = None;
        self.system.clear();
        self.system_tokens = 0;
        self.tools.clear();
        self.tools_tokens = 0;
        self.summary.clear();
        self.summary_tokens = 0;
        self.items.clear();
        self.front_seq = 0;
        self.text.clear();
        self.origin = 0;
        self.history_tokens = 0;
        self.unanswered_calls = 0;
        self.orphans_since_fit = 0;
        self.stats = ConversationStats::default();
        self.account();
    }

    /// Sets the model id (interned) and looks up its window. Returns the window in tokens.
    ///
    /// # Errors
    /// [`LlmError::UnknownModel`] when the table has no entry and no fallback.
    pub fn set_model(&mut self, model: &str) -> Result<u32, LlmError> {
        if let Some((sym, window)) = self.model
            && self.setup.names.resolve(sym) == model
        {
            return Ok(window);
        }
        let window = self
            .setup
            .windows
            .lookup(model)
            .ok_or_else(|| LlmError::UnknownModel {
                model: model.to_owned(),
            })?;
        let sym = self.setup.names.try_get_or_intern(model)?;
        self.model = Some((sym, window));
        Ok(window)
    }

    /// The model id, if set.
    pub fn model(&self) -> Option<&str> {
        self.model.map(|(s, _)| self.setup.names.resolve(s))
    }

    /// Sets the system prompt. It is never cut.
    pub fn set_system(&mut self, text: &str) {
        self.system.clear();
        self.system.push_str(text);
        self.system_tokens = self.cost(text);
        self.account();
    }

    /// Sets the tool definitions: a JSON array in the chat-completions `tools` shape, copied
    /// into the prompt verbatim (it is not parsed; pass valid JSON). Never cut.
    ///
    /// # Errors
    /// [`LlmError::InvalidConfig`] when the text does not look like a JSON array.
    pub fn set_tools(&mut self, json_array: &str) -> Result<(), LlmError> {
        let t = json_array.trim();
        let is_array = t.starts_with('[') && t.ends_with(']');
        if !t.is_empty() && !is_array {
            return Err(LlmError::InvalidConfig(
                "tool definitions must be a JSON array",
            ));
        }
        self.tools.clear();
        self.tools.push_str(t);
        self.tools_tokens = self.counter.count(t);
        self.account();
        Ok(())
    }

    /// The current summary written by a [`Compactor`] (empty if none).
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// Appends a user message.
    ///
    /// # Errors
    /// [`LlmError::ConversationTooLarge`] when the text store would pass 4 GiB.
    pub fn push_user(&mut self, text: &str) -> Result<(), LlmError> {
        self.push_plain(Role::User, text)
    }

    /// Appends an assistant message.
    ///
    /// # Errors
    /// As [`Conversation::push_user`].
    pub fn push_assistant(&mut self, text: &str) -> Result<(), LlmError> {
        self.push_plain(Role::Assistant, text)
    }

    /// Appends a tool call. Consecutive calls are sent as one assistant message with several
    /// `tool_calls` (parallel calls).
    ///
    /// # Errors
    /// As [`Conversation::push_user`].
    pub fn push_tool_call(
        &mut self,
        call_id: &str,
        tool: &str,
        arguments: &str,
    ) -> Result<(), LlmError> {
        self.check_room(call_id.len() + arguments.len())?;
        let tool_sym = self.setup.names.try_get_or_intern(tool)?;
        let call_span = self.append_text(call_id);
        let text = self.append_text(arguments);
        let overhead = self.counter.message_overhead();
        let id_tokens = self.counter.count(call_id);
        let tokens = overhead
            .saturating_add(id_tokens)
            .saturating_add(self.counter.count(tool))
            .saturating_add(self.counter.count(arguments));
        let aborted_tokens = overhead
            .saturating_add(id_tokens)
            .saturating_add(self.counter.count(ABORTED_RESULT));
        self.push_item(Item {
            role: Role::ToolCall,
            state: State::Live,
            tool: Some(tool_sym),
            call_id: call_span,
            text,
            partner: None,
            tokens,
            aborted_tokens,
        });
        self.history_tokens += u64::from(aborted_tokens);
        self.unanswered_calls += 1;
        Ok(())
    }

    /// Records a tool's output for `call_id`. Output longer than
    /// [`FitPolicy::max_tool_output`] is cut now: its head and tail are kept, on UTF-8
    /// boundaries, around a marker stating the original size.
    ///
    /// The matching call is searched from the newest item back (normally a few steps).
    ///
    /// # Errors
    /// As [`Conversation::push_user`].
    pub fn push_tool_result(
        &mut self,
        call_id: &str,
        output: &str,
    ) -> Result<ResultOutcome, LlmError> {
        let Some(call_idx) = self.find_unanswered_call(call_id) else {
            self.orphans_since_fit += 1;
            self.stats.orphans_dropped += 1;
            return Ok(ResultOutcome::Orphan);
        };
        let max = self.setup.policy.max_tool_output;
        self.check_room(call_id.len() + output.len().min(max))?;
        let call_span = self.append_text(call_id);
        let start = self.origin + self.text.len() as u64;
        let cut = cut_middle(&mut self.text, output, max);
        let len = (self.origin + self.text.len() as u64 - start) as u32;
        let text = Span { start, len };
        let stored = ConvRef {
            items: &self.items,
            text: &self.text,
            origin: self.origin,
            names: &self.setup.names,
        }
        .span(text);
        let tokens = self
            .counter
            .message_overhead()
            .saturating_add(self.counter.count(call_id))
            .saturating_add(self.counter.count(stored));
        let seq = self.next_seq();
        let call = &mut self.items[call_idx];
        call.partner = Some(seq);
        let call_seq = self.front_seq + call_idx as u64;
        self.history_tokens -= u64::from(call.aborted_tokens);
        self.unanswered_calls -= 1;
        self.push_item(Item {
            role: Role::ToolResult,
            state: State::Live,
            tool: None,
            call_id: call_span,
            text,
            partner: Some(call_seq),
            tokens,
            aborted_tokens: 0,
        });
        if cut {
            self.stats.outputs_cut += 1;
        }
        Ok(ResultOutcome::Recorded { cut })
    }

    /// Live history items, oldest first.
    pub fn messages(&self) -> impl Iterator<Item = MessageView<'_>> + '_ {
        let conv = self.conv_ref();
        self.items
            .iter()
            .filter(|i| i.state == State::Live)
            .map(move |i| conv.view(i))
    }

    /// Number of live history items.
    pub fn len(&self) -> usize {
        self.items.iter().filter(|i| i.state == State::Live).count()
    }

    /// Whether the history has no live item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Estimated prompt tokens now: system prompt, tools, summary, history, and synthetic
    /// results for unanswered calls. O(1).
    pub fn tokens(&self) -> u64 {
        self.fixed_tokens() + self.history_tokens
    }

    /// Counters since creation or the last clear.
    pub fn stats(&self) -> ConversationStats {
        self.stats
    }

    /// Heap bytes this conversation holds (capacities of its buffers).
    pub fn memory_bytes(&self) -> usize {
        self.text.capacity()
            + self.items.capacity() * std::mem::size_of::<Item>()
            + self.system.capacity()
            + self.tools.capacity()
            + self.summary.capacity()
            + self.scratch.capacity()
    }

    /// Fits the history into the model's window without a compaction hook; see
    /// [`Conversation::fit_with`].
    ///
    /// # Errors
    /// As [`Conversation::fit_with`].
    pub fn fit(&mut self) -> Result<FitReport, LlmError> {
        let report = self.fit_inner(None);
        self.account();
        report
    }

    /// Fits the history into the model's window.
    ///
    /// Nothing happens until the estimate passes `trigger_fraction` of the window (or the
    /// window minus the output reserve, if lower). Then the oldest history items are dropped
    /// until it is under `target_fraction`: a tool call takes its result with it, the newest
    /// `keep_recent_user` user messages stay, and so do the system prompt, tool definitions
    /// and summary. With a `compactor`, the dropped items are first handed to it and its
    /// summary replaces them (if the summary is too large to fit, more items go). The cost is
    /// O(1) when not triggered and O(history) when triggered.
    ///
    /// # Errors
    /// [`LlmError::NoModel`] before [`Conversation::set_model`];
    /// [`LlmError::ContextOverflow`] when the parts that are never cut do not fit in the
    /// window minus the output reserve. The check runs before anything is dropped, so the
    /// conversation is untouched, except when a compactor's new summary is what overflows:
    /// then the compacted items are already gone.
    pub fn fit_with(&mut self, compactor: &mut dyn Compactor) -> Result<FitReport, LlmError> {
        let report = self.fit_inner(Some(compactor));
        self.account();
        report
    }

    /// Writes the prompt into `out` as a chat-completions request body:
    /// `{"model":..,"stream":..,"messages":[..],"tools":[..]}`. The system prompt and summary
    /// come first as system messages; parallel tool calls become one assistant message with
    /// `tool_calls`, each followed by its result, or by a synthetic [`ABORTED_RESULT`] when
    /// none was recorded. Strings are escaped per RFC 8259. Call [`Conversation::fit`] first;
    /// this does not cut anything.
    ///
    /// `out` is appended to (any `BytesMut`, including a pooled buffer); once its capacity
    /// covers the prompt, assembly allocates nothing.
    ///
    /// # Errors
    /// [`LlmError::NoModel`] before [`Conversation::set_model`].
    pub fn assemble(&self, out: &mut BytesMut, stream: bool) -> Result<AssembleReport, LlmError> {
        let (model, _) = self.model.ok_or(LlmError::NoModel)?;
        let start = out.len();
        let names = &*self.setup.names;
        let conv = self.conv_ref();
        let mut report = AssembleReport::default();
        out.put(b"{\"model\":");
        write_str(out, names.resolve(model));
        out.put(if stream {
            b",\"stream\":true"
        } else {
            b",\"stream\":false"
        });
        out.put(b",\"messages\":[");
        let mut first = true;
        for text in [&self.system, &self.summary] {
            if !text.is_empty() {
                message(out, &mut first, "system", text);
                report.messages += 1;
            }
        }
        let mut i = 0;
        while i < self.items.len() {
            let item = &self.items[i];
            i += 1;
            if item.state != State::Live {
                continue;
            }
            match item.role {
                Role::User | Role::Assistant => {
                    message(out, &mut first, item.role.as_str(), conv.span(item.text));
                    report.messages += 1;
                }
                // Results are written right after their call group.
                Role::ToolResult => {}
                Role::ToolCall => {
                    let group_start = i - 1;
                    let mut group_end = i;
                    while group_end < self.items.len() {
                        let next = &self.items[group_end];
                        if next.state == State::Live && next.role != Role::ToolCall {
                            break;
                        }
                        group_end += 1;
                    }
                    self.write_call_group(out, &mut first, group_start, group_end, &mut report);
                    i = group_end;
                }
            }
        }
        out.put(b"]");
        if !self.tools.is_empty() {
            out.put(b",\"tools\":");
            out.put(self.tools.as_bytes());
        }
        out.put(b"}");
        report.bytes = out.len() - start;
        Ok(report)
    }

    /// As [`Conversation::assemble`], into a buffer taken from `pool` and sized from the
    /// history (an estimate: if escaping makes the prompt larger, the buffer grows).
    ///
    /// # Errors
    /// As [`Conversation::assemble`].
    pub fn assemble_pooled(
        &self,
        pool: &BufferPool,
        stream: bool,
    ) -> Result<(PooledBuffer, AssembleReport), LlmError> {
        let mut buf = pool.acquire(self.prompt_size_hint());
        let report = self.assemble(&mut buf, stream)?;
        Ok((buf, report))
    }

    /// A pool of conversations sharing `setup`: a returned conversation is cleared (keeping
    /// its buffers) and handed out again, so starting a conversation allocates nothing once
    /// the pool is warm. At most `max_idle` idle conversations are kept.
    ///
    /// # Errors
    /// [`LlmError::Pool`] for `max_idle == 0`.
    pub fn pool(
        setup: Arc<ConversationSetup>,
        counter: C,
        max_idle: usize,
    ) -> Result<ObjectPool<Conversation<C>>, LlmError>
    where
        C: Clone + Send + Sync + 'static,
    {
        let pool = ObjectPool::with_reset(
            max_idle,
            move || Conversation::new(Arc::clone(&setup), counter.clone()),
            Conversation::clear,
        )?;
        Ok(pool)
    }

    /// Bytes the assembled prompt is expected to take.
    fn prompt_size_hint(&self) -> usize {
        let dead = self
            .items
            .front()
            .map_or(0, |f| (f.call_id.start - self.origin) as usize);
        let text = self.text.len() - dead;
        let raw = self.system.len() + self.summary.len() + self.tools.len() + text;
        (raw + raw / 8).saturating_add(self.items.len() * 96 + 256)
    }

    fn write_call_group(
        &self,
        out: &mut BytesMut,
        first: &mut bool,
        start: usize,
        end: usize,
        report: &mut AssembleReport,
    ) {
        let conv = self.conv_ref();
        let names = &*self.setup.names;
        let live = || {
            self.items
                .range(start..end)
                .filter(|c| c.state == State::Live)
        };
        if !*first {
            out.put(b",");
        }
        *first = false;
        out.put(b"{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[");
        for (n, call) in live().enumerate() {
            if n > 0 {
                out.put(b",");
            }
            out.put(b"{\"id\":");
            write_str(out, conv.span(call.call_id));
            out.put(b",\"type\":\"function\",\"function\":{\"name\":");
            write_str(out, call.tool.map_or("", |s| names.resolve(s)));
            out.put(b",\"arguments\":");
            write_str(out, conv.span(call.text));
            out.put(b"}}");
        }
        out.put(b"]}");
        report.messages += 1;
        for call in live() {
            out.put(b",{\"role\":\"tool\",\"tool_call_id\":");
            write_str(out, conv.span(call.call_id));
            out.put(b",\"content\":");
            match call.partner {
                Some(seq) => {
                    let result = &self.items[(seq - self.front_seq) as usize];
                    write_str(out, conv.span(result.text));
                }
                None => {
                    write_str(out, ABORTED_RESULT);
                    report.synthetic_results += 1;
                }
            }
            out.put(b"}");
            report.messages += 1;
        }
    }

    fn conv_ref(&self) -> ConvRef<'_> {
        ConvRef {
            items: &self.items,
            text: &self.text,
            origin: self.origin,
            names: &self.setup.names,
        }
    }

    fn fixed_tokens(&self) -> u64 {
        u64::from(self.system_tokens)
            + u64::from(self.tools_tokens)
            + u64::from(self.summary_tokens)
    }

    /// Tokens of a system-style message with this text.
    fn cost(&self, text: &str) -> u32 {
        if text.is_empty() {
            0
        } else {
            self.counter
                .message_overhead()
                .saturating_add(self.counter.count(text))
        }
    }

    fn next_seq(&self) -> u64 {
        self.front_seq + self.items.len() as u64
    }

    fn check_room(&self, extra: usize) -> Result<(), LlmError> {
        // Keep logical lengths within u32 per item and the store within 4 GiB.
        let extra = extra.saturating_add(MARKER_ROOM);
        if self.text.len().saturating_add(extra) > u32::MAX as usize {
            return Err(LlmError::ConversationTooLarge);
        }
        Ok(())
    }

    fn append_text(&mut self, s: &str) -> Span {
        let start = self.origin + self.text.len() as u64;
        self.text.push_str(s);
        Span {
            start,
            len: s.len() as u32,
        }
    }

    fn push_plain(&mut self, role: Role, text: &str) -> Result<(), LlmError> {
        self.check_room(text.len())?;
        let span = self.append_text(text);
        let tokens = self.cost(text).max(self.counter.message_overhead());
        self.push_item(Item {
            role,
            state: State::Live,
            tool: None,
            call_id: Span {
                start: span.start,
                len: 0,
            },
            text: span,
            partner: None,
            tokens,
            aborted_tokens: 0,
        });
        Ok(())
    }

    fn push_item(&mut self, item: Item) {
        self.history_tokens += u64::from(item.tokens);
        self.items.push_back(item);
        self.stats.appended += 1;
        self.account();
    }

    fn find_unanswered_call(&self, call_id: &str) -> Option<usize> {
        let conv = self.conv_ref();
        self.items.iter().rposition(|i| {
            i.role == Role::ToolCall
                && i.state == State::Live
                && i.partner.is_none()
                && conv.span(i.call_id) == call_id
        })
    }

    fn fit_inner(&mut self, compactor: Option<&mut dyn Compactor>) -> Result<FitReport, LlmError> {
        let (model, window) = self.model.ok_or(LlmError::NoModel)?;
        let policy = self.setup.policy;
        let window = u64::from(window);
        // The reserve follows small windows (at most a quarter of the window), and the
        // fractions apply to what is left, so the trigger and the target stay apart at
        // every window size.
        let reserve = u64::from(policy.output_reserve).min(window / 4);
        let limit = window - reserve;
        let frac = |f: f64| (limit as f64 * f) as u64;
        let trigger = frac(policy.trigger_fraction).min(limit);
        let target = frac(policy.target_fraction).min(trigger);
        let before = self.tokens();
        let mut report = FitReport {
            window,
            limit,
            trigger,
            target,
            tokens_before: before,
            tokens_after: before,
            synthetic_results: self.unanswered_calls,
            orphans_dropped: std::mem::take(&mut self.orphans_since_fit),
            ..FitReport::default()
        };
        if before <= trigger {
            return Ok(report);
        }
        report.triggered = true;
        let pin_from = self.pin_boundary(policy.keep_recent_user.max(1));
        let pinned: u64 = self
            .items
            .iter()
            .enumerate()
            .filter(|&(i, it)| it.state == State::Live && self.is_pinned(i, it, pin_from))
            .map(|(_, it)| u64::from(it.tokens))
            .sum();
        let needed = self.fixed_tokens() + pinned;
        if needed > limit {
            self.orphans_since_fit = report.orphans_dropped;
            return Err(self.overflow(model, needed, limit));
        }
        let mark = if compactor.is_some() {
            State::Dropping
        } else {
            State::Dead
        };
        self.select_drops(target, pin_from, mark, &mut report);
        if let Some(compactor) = compactor
            && report.dropped_items > 0
        {
            let mut summary = std::mem::take(&mut self.scratch);
            summary.clear();
            let dropped = DroppedMessages {
                conv: self.conv_ref(),
                next: 0,
            };
            compactor.compact(&self.summary, dropped, &mut summary);
            self.scratch = std::mem::replace(&mut self.summary, summary);
            self.summary_tokens = self.cost(&self.summary);
            report.compacted = true;
            self.stats.compactions += 1;
            for it in self.items.iter_mut().filter(|i| i.state == State::Dropping) {
                it.state = State::Dead;
            }
            let needed = self.fixed_tokens() + pinned;
            if needed > limit {
                self.reclaim();
                return Err(self.overflow(model, needed, limit));
            }
            if self.tokens() > limit {
                self.select_drops(limit, pin_from, State::Dead, &mut report);
            }
        }
        self.reclaim();
        report.tokens_after = self.tokens();
        report.above_target = report.tokens_after > target;
        report.synthetic_results = self.unanswered_calls;
        self.stats.dropped += u64::from(report.dropped_items);
        Ok(report)
    }

    fn overflow(&self, model: Symbol, needed: u64, available: u64) -> LlmError {
        LlmError::ContextOverflow {
            model: self.setup.names.resolve(model).to_owned(),
            needed,
            available,
        }
    }

    /// Index of the `keep`-th most recent live user message (items at or after it that are
    /// user messages are pinned), or `items.len()` when there are fewer.
    fn pin_boundary(&self, keep: u32) -> usize {
        let mut seen = 0;
        for (i, it) in self.items.iter().enumerate().rev() {
            if it.state == State::Live && it.role == Role::User {
                seen += 1;
                if seen == keep {
                    return i;
                }
            }
        }
        // Fewer user messages than `keep`: all of them are pinned.
        0
    }

    fn is_pinned(&self, idx: usize, it: &Item, pin_from: usize) -> bool {
        it.role == Role::User && idx >= pin_from
    }

    /// Marks the oldest droppable items with `mark` until the estimate is at most `goal`.
    fn select_drops(&mut self, goal: u64, pin_from: usize, mark: State, report: &mut FitReport) {
        let mut i = 0;
        while self.tokens() > goal && i < self.items.len() {
            let it = self.items[i];
            if it.state != State::Live || self.is_pinned(i, &it, pin_from) {
                i += 1;
                continue;
            }
            self.drop_one(i, mark, report);
            if let Some(seq) = it.partner {
                let j = (seq - self.front_seq) as usize;
                if self.items[j].state == State::Live {
                    self.drop_one(j, mark, report);
                    report.dropped_pairs += 1;
                }
            }
            i += 1;
        }
    }

    fn drop_one(&mut self, idx: usize, mark: State, report: &mut FitReport) {
        let it = &mut self.items[idx];
        it.state = mark;
        let mut freed = u64::from(it.tokens);
        if it.role == Role::ToolCall && it.partner.is_none() {
            freed += u64::from(it.aborted_tokens);
            self.unanswered_calls -= 1;
        }
        self.history_tokens -= freed;
        report.dropped_items += 1;
        report.dropped_tokens += freed;
    }

    /// Pops dead items off the front and shifts the text store when its dead prefix is over
    /// half of it.
    fn reclaim(&mut self) {
        while self.items.front().is_some_and(|i| i.state == State::Dead) {
            self.items.pop_front();
            self.front_seq += 1;
        }
        let live_start = match self.items.front() {
            Some(front) => front.call_id.start.min(front.text.start),
            None => self.origin + self.text.len() as u64,
        };
        let dead = (live_start - self.origin) as usize;
        if dead > 0 && (dead * 2 > self.text.len() || self.items.is_empty()) {
            self.text.drain(..dead);
            self.origin = live_start;
            self.stats.text_compactions += 1;
        }
    }
}

/// Writes one `{"role":..,"content":..}` message.
fn message(out: &mut BytesMut, first: &mut bool, role: &str, content: &str) {
    if !*first {
        out.put(b",");
    }
    *first = false;
    out.put(b"{\"role\":\"");
    write_str_body(out, role);
    out.put(b"\",\"content\":");
    write_str(out, content);
    out.put(b"}");
}

/// Appends `src` to `dst`, cutting its middle when it is longer than `max` bytes: about
/// `max - 64` bytes of head and tail are kept, split on UTF-8 boundaries, around a marker
/// that states how much was cut and the original size. Returns whether it cut.
pub(crate) fn cut_middle(dst: &mut String, src: &str, max: usize) -> bool {
    if src.len() <= max {
        dst.push_str(src);
        return false;
    }
    let keep = max.saturating_sub(MARKER_ROOM);
    let head_end = src.floor_char_boundary(keep / 2);
    let tail_start = src.ceil_char_boundary(src.len() - (keep - keep / 2));
    dst.push_str(&src[..head_end]);
    // Writing to a String cannot fail.
    let _ = write!(
        dst,
        "\n[... {} bytes cut from a {}-byte tool output ...]\n",
        tail_start - head_end,
        src.len()
    );
    dst.push_str(&src[tail_start..]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_head_tail_and_states_size() {
        let src: String = "é".repeat(10_000); // 20,000 bytes of 2-byte chars
        let mut out = String::new();
        assert!(cut_middle(&mut out, &src, 1000));
        assert!(out.len() <= 1000, "{}", out.len());
        assert!(out.starts_with("éé"));
        assert!(out.ends_with("éé"));
        assert!(out.contains("from a 20000-byte tool output"));
        let mut short = String::new();
        assert!(!cut_middle(&mut short, "abc", 1000));
        assert_eq!(short, "abc");
    }

    #[test]
    fn policy_validation() {
        let bad = FitPolicy::default().with_target_fraction(0.95);
        assert!(bad.validate().is_err());
        let bad = FitPolicy::default().with_trigger_fraction(0.0);
        assert!(bad.validate().is_err());
        assert!(FitPolicy::default().validate().is_ok());
    }
}
