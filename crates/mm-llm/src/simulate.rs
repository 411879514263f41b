//! A simulated chat turn over every part of the crate, for allocation tests, benches and the
//! stress report.
//!
//! One [`ChatTurnSim::turn`] appends a user message (and every fourth turn a tool call with
//! its result), fits the conversation, assembles the prompt into a pooled buffer, parses a
//! 50-event streamed response (fed in uneven chunks) into the assistant reply, and looks up or
//! caches one embedding. All inputs are built up front, so after a warm-up a turn should make
//! no heap allocation; `crates/mm-llm/tests/steady_state.rs` checks exactly that.

use std::sync::Arc;

use mm_budget::MemoryBudget;
use mm_pool::{BufferPool, BufferPoolConfig, ObjectPool, Pooled};

use crate::sse::{SseConfig, SseParser};
use crate::{
    ByteEstimate, ContextWindows, Conversation, ConversationSetup, EmbeddingCache,
    EmbeddingCacheConfig, FitPolicy, LlmError, Symbol,
};

/// Events in the simulated streamed response.
pub const STREAM_EVENTS: usize = 50;
/// Distinct user messages the simulation cycles through.
const USER_TEXTS: usize = 97;
/// Distinct tool-call ids.
const CALL_IDS: usize = 16;
/// Embedding dimensions.
pub const DIMS: usize = 768;

/// What one turn did (for sanity checks in tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnOutcome {
    /// Events parsed from the stream.
    pub events: usize,
    /// Bytes of the assembled prompt.
    pub prompt_bytes: usize,
    /// Items the fit dropped.
    pub dropped: u32,
    /// Whether the embedding was already cached.
    pub embedding_hit: bool,
}

/// The state of the simulation: a pooled conversation, an SSE parser on pooled buffers, an
/// embedding cache charged to a budget, and the prebuilt inputs.
#[derive(Debug)]
pub struct ChatTurnSim {
    pool: BufferPool,
    conv: Pooled<Conversation>,
    parser: SseParser,
    cache: EmbeddingCache,
    model: Symbol,
    users: Vec<String>,
    call_ids: Vec<String>,
    tool_output: String,
    stream: Vec<u8>,
    vector: Vec<f32>,
    reply: String,
    turn: usize,
    // Kept last so the conversation goes back to it when the simulation is dropped.
    _conversations: ObjectPool<Conversation>,
}

impl ChatTurnSim {
    /// Builds the simulation: a 128,000-token model window (`gpt-4o`) with a ~5 KB system
    /// prompt, ~20 KB of tool definitions, an embedding cache of at most 64 entries, a 64 MiB
    /// budget.
    ///
    /// # Errors
    /// Only if a component rejects its configuration (it should not).
    pub fn new() -> Result<Self, LlmError> {
        Self::with_window(128_000)
    }

    /// As [`ChatTurnSim::new`] with a model window of `window` tokens (at least 16,000: the
    /// system prompt and tools take about 7,000). A smaller window means smaller prompts and
    /// faster turns, with the same code paths.
    ///
    /// # Errors
    /// As [`ChatTurnSim::new`]; [`LlmError::InvalidConfig`] for a window under 16,000.
    pub fn with_window(window: u32) -> Result<Self, LlmError> {
        let pool = BufferPool::new(BufferPoolConfig::default())?;
        let budget = MemoryBudget::with_limit(64 << 20)
            .map_err(|_| LlmError::InvalidConfig("budget limit"))?;
        Self::on(pool, budget, window, 0)
    }

    /// As [`ChatTurnSim::with_window`], on a caller's buffer pool (prompts and SSE lines) and
    /// budget (charged for the embedding cache), e.g. a memory manager's, so several
    /// simulations can share them across threads. `seed` varies the message texts and the
    /// stream's id between simulations; the work per turn is the same for any seed.
    ///
    /// # Errors
    /// As [`ChatTurnSim::with_window`].
    pub fn on(
        pool: BufferPool,
        budget: MemoryBudget,
        window: u32,
        seed: usize,
    ) -> Result<Self, LlmError> {
        if window < 16_000 {
            return Err(LlmError::InvalidConfig(
                "simulation window must be at least 16,000 tokens",
            ));
        }
        let mut windows = ContextWindows::empty();
        windows.insert("gpt-4o", window);
        let setup = Arc::new(ConversationSetup::new(windows, FitPolicy::default())?);
        let model = setup.names().get_or_intern("text-embedding-3-small");
        let conversations = Conversation::pool(setup, ByteEstimate::default(), 4)?;
        let mut conv = conversations.acquire();
        conv.set_model("gpt-4o")?;
        conv.set_system(&"You are a helpful assistant. Follow the rules. ".repeat(100));
        let mut tools = String::from("[");
        for i in 0..40 {
            if i > 0 {
                tools.push(',');
            }
            tools.push_str(&format!(
                r#"{{"type":"function","function":{{"name":"tool_{i}","description":"{}","parameters":{{"type":"object","properties":{{}}}}}}}}"#,
                "Does a useful thing. ".repeat(20)
            ));
        }
        tools.push(']');
        conv.set_tools(&tools)?;
        let parser = SseParser::with_pool(SseConfig::default(), pool.clone())?;
        let cache = EmbeddingCache::new(
            EmbeddingCacheConfig::new()
                .with_max_bytes(16 << 20)
                .with_max_entries(64),
            Some(budget),
        )?;
        let users = (0..USER_TEXTS)
            .map(|i| {
                format!(
                    "Question {seed}.{i}: {}",
                    "please explain this in detail ".repeat(i % 40 + 5)
                )
            })
            .collect();
        let call_ids = (0..CALL_IDS).map(|i| format!("call_{i:04}")).collect();
        let mut stream = Vec::new();
        for i in 0..STREAM_EVENTS - 1 {
            stream.extend_from_slice(
                format!(
                    "data: {{\"id\":\"chatcmpl-{seed}\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"word{i} \"}}}}]}}\n\n"
                )
                .as_bytes(),
            );
        }
        stream.extend_from_slice(b"data: [DONE]\n\n");
        Ok(Self {
            pool,
            conv,
            parser,
            cache,
            model,
            users,
            call_ids,
            tool_output: "result line\n".repeat(2000),
            stream,
            vector: (0..DIMS).map(|i| i as f32 * 0.001).collect(),
            reply: String::new(),
            turn: 0,
            _conversations: conversations,
        })
    }

    /// Runs one turn.
    ///
    /// # Errors
    /// Whatever a component returns (none is expected).
    pub fn turn(&mut self) -> Result<TurnOutcome, LlmError> {
        let i = self.turn;
        self.turn += 1;
        let user = &self.users[i % USER_TEXTS];
        self.conv.push_user(user)?;
        if i.is_multiple_of(4) {
            let id = &self.call_ids[i % CALL_IDS];
            self.conv
                .push_tool_call(id, "tool_3", r#"{"query":"memory"}"#)?;
            self.conv.push_tool_result(id, &self.tool_output)?;
        }
        let fit = self.conv.fit()?;
        let (prompt, assembled) = self.conv.assemble_pooled(&self.pool, true)?;
        drop(prompt);

        self.reply.clear();
        let mut events = 0;
        // Uneven chunks, so lines straddle chunk boundaries.
        let reply = &mut self.reply;
        for chunk in self.stream.chunks(333 + i % 7) {
            events += self.parser.feed(chunk, |ev| {
                if let Some(text) = delta_content(ev.data) {
                    reply.push_str(text);
                }
            })?;
        }
        self.parser.finish();
        self.conv.push_assistant(&self.reply)?;

        // Even turns embed the new message (mostly misses); odd turns embed one of a small
        // hot set (hits once warm).
        let text = if i.is_multiple_of(2) {
            user
        } else {
            &self.users[i % 13]
        };
        let key = self.cache.key(self.model, text);
        let embedding_hit = self.cache.get(&key).is_some();
        if !embedding_hit {
            self.cache.insert(key, &self.vector)?;
        }
        Ok(TurnOutcome {
            events,
            prompt_bytes: assembled.bytes,
            dropped: fit.dropped_items,
            embedding_hit,
        })
    }

    /// The conversation (for inspection).
    pub fn conversation(&self) -> &Conversation {
        &self.conv
    }

    /// The embedding cache (for its statistics).
    pub fn cache(&self) -> &EmbeddingCache {
        &self.cache
    }

    /// The SSE parser (for its statistics).
    pub fn parser(&self) -> &SseParser {
        &self.parser
    }
}

/// The `delta.content` string of a chat-completions chunk, found by scanning (no JSON parse;
/// good enough for the simulation's own unescaped output).
fn delta_content(data: &str) -> Option<&str> {
    const KEY: &str = "\"content\":\"";
    let start = data.find(KEY)? + KEY.len();
    let len = data[start..].find('"')?;
    Some(&data[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `on` runs on the caller's pool and charges the caller's budget; seeds change the
    /// texts, not the work.
    #[test]
    fn on_uses_the_callers_pool_and_budget() {
        let pool = BufferPool::new(BufferPoolConfig::default()).unwrap();
        let budget = MemoryBudget::with_limit(64 << 20).unwrap();
        let mut a = ChatTurnSim::on(pool.clone(), budget.clone(), 16_000, 1).unwrap();
        let mut b = ChatTurnSim::on(pool.clone(), budget.clone(), 16_000, 2).unwrap();
        assert_eq!(budget.used(), 0);
        let (ta, tb) = (a.turn().unwrap(), b.turn().unwrap());
        assert_eq!(ta.events, STREAM_EVENTS);
        assert_eq!(tb.events, STREAM_EVENTS);
        assert!(!ta.embedding_hit && !tb.embedding_hit);
        assert!(budget.used() >= 2 * (DIMS * 4) as u64, "{}", budget.used());
        assert!(
            pool.stats().returns > 0,
            "prompts went back to the shared pool"
        );
        assert!(matches!(
            ChatTurnSim::on(pool, budget, 15_999, 0),
            Err(LlmError::InvalidConfig(_))
        ));
    }
}
