//! A conversation: system prompt and tool definitions kept aside, a truncatable history in
//! reusable storage, fitting to a model's window, and prompt assembly.
//!
//! One type, [`Conversation`], split by phase: `store` (items and the text store),
//! `ledger` (token accounting), `record` (appending), `fit` (cutting to the window),
//! `prompt` (the prompt's message order) and `assemble` (JSON output); `policy` and `setup`
//! hold what the conversations of a service share.

use std::sync::Arc;

use mm_pool::ObjectPool;

use crate::LlmError;
use crate::names::Symbol;
use crate::tokens::{ByteEstimate, TokenCounter};

mod assemble;
mod fit;
mod ledger;
mod policy;
mod prompt;
mod record;
mod setup;
mod store;

pub use assemble::AssembleReport;
pub use fit::{Compactor, DroppedMessages, FitReport, PromptMeasure};
pub use policy::FitPolicy;
pub use setup::ConversationSetup;
pub use store::MessageView;

#[cfg(feature = "chat-template")]
pub(crate) use prompt::Part;

use ledger::Ledger;
use store::Store;

/// Content of the synthetic result given to a tool call that has none when a prompt is built.
pub const ABORTED_RESULT: &str = "aborted: no result was recorded for this tool call";

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
///
/// # Invariants
/// These hold between any two public calls; `check_invariants` (test builds) asserts them.
/// - Tokens: [`Conversation::tokens`] is the fixed parts (system prompt, tools, summary,
///   each counted when set) plus, over live items, each item's tokens and, for a tool call
///   still awaiting its result, the synthetic result's. Only the ledger (`ledger.rs`) moves
///   these totals, through `enter`, `leave` and `answer`.
/// - Pairs: a live call and its live result name each other (`partner`); a fit drops both
///   or neither, so a partner is always still stored.
/// - Storage: no item is left `Dropping` after a fit; the front item is never dead; every
///   live item's spans lie inside the text store.
/// - Accounting: the setup's tally holds exactly [`Conversation::memory_bytes`]; every
///   public method that can grow a buffer ends with `account`.
#[derive(Debug)]
pub struct Conversation<C: TokenCounter = ByteEstimate> {
    setup: Arc<ConversationSetup>,
    counter: C,
    model: Option<(Symbol, u32)>,
    system: String,
    tools: String,
    summary: String,
    /// The compactor writes the next summary here; swapped with `summary`.
    scratch: String,
    store: Store,
    ledger: Ledger,
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
            tools: String::new(),
            summary: String::new(),
            scratch: String::new(),
            store: Store::default(),
            ledger: Ledger::default(),
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
        self.tools.clear();
        self.summary.clear();
        self.store.clear();
        self.ledger = Ledger::default();
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

    /// The current summary written by a [`Compactor`] (empty if none).
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// Live history items, oldest first.
    pub fn messages(&self) -> impl Iterator<Item = MessageView<'_>> + '_ {
        self.store
            .live()
            .map(move |(_, i)| self.store.view(i, &self.setup.names))
    }

    /// Number of live history items.
    pub fn len(&self) -> usize {
        self.store.live().count()
    }

    /// Whether the history has no live item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Estimated prompt tokens now: system prompt, tools, summary, history, and synthetic
    /// results for unanswered calls. O(1).
    pub fn tokens(&self) -> u64 {
        self.ledger.total()
    }

    /// Counters since creation or the last clear.
    pub fn stats(&self) -> ConversationStats {
        self.stats
    }

    /// Heap bytes this conversation holds (capacities of its buffers).
    pub fn memory_bytes(&self) -> usize {
        self.store.heap_bytes()
            + self.system.capacity()
            + self.tools.capacity()
            + self.summary.capacity()
            + self.scratch.capacity()
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

    /// Asserts the `# Invariants` above.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        use ledger::optional_message_cost;
        self.store.check();
        self.ledger.check(self.store.items().iter());
        assert_eq!(
            self.ledger.system,
            optional_message_cost(&self.counter, &self.system)
        );
        assert_eq!(self.ledger.tools, self.counter.count(&self.tools));
        assert_eq!(
            self.ledger.summary,
            optional_message_cost(&self.counter, &self.summary)
        );
        assert_eq!(self.accounted, self.memory_bytes(), "tally out of date");
    }
}

#[cfg(test)]
mod tests;
