//! mm-llm on the manager's buffer pool and budget: chat turns on 2 threads, each turn
//! appending a user message (every fourth turn also a tool call and its long result),
//! fitting the conversation into a 16,000-token window, assembling the prompt into a pooled
//! buffer, parsing a 50-event SSE response fed in uneven chunks, appending the reply and
//! looking up or caching one embedding (charged to the budget).
//!
//! After warm-up (once the fit has started cutting history and every buffer has reached
//! its size) a turn must make no heap allocation: `mm_track::count` over the measured turns.

use std::sync::Arc;

use memory_manager::{BufferPool, MemoryConfig, MemoryManager};
use mm_llm::sse::{SseConfig, SseParser};
use mm_llm::{
    ByteEstimate, ContextWindows, Conversation, ConversationSetup, EmbeddingCache,
    EmbeddingCacheConfig, FitPolicy, LlmError, Symbol,
};

use super::on_threads;
use crate::Options;
use crate::check::{Check, Report, fmt_num};

const PART: &str = "mm-llm";

/// Events in each streamed response.
pub const STREAM_EVENTS: usize = 50;
/// The model window, in tokens.
const WINDOW: u32 = 16_000;
const USER_TEXTS: usize = 97;
const CALL_IDS: usize = 16;
const DIMS: usize = 384;

/// One conversation's state and its prebuilt inputs.
#[derive(Debug)]
pub struct ChatWorker {
    pool: BufferPool,
    conv: Conversation<ByteEstimate>,
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
}

/// What a batch of turns did.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurnTally {
    /// Turns run.
    pub turns: u64,
    /// SSE events parsed.
    pub events: u64,
    /// History items the fits dropped.
    pub dropped: u64,
    /// Embedding cache hits.
    pub hits: u64,
    /// Prompt bytes assembled.
    pub prompt_bytes: u64,
}

impl ChatWorker {
    /// A conversation on `manager`'s buffer pool with an embedding cache charged to its
    /// budget; `seed` varies the messages between workers.
    ///
    /// # Errors
    /// A component refusing its configuration (not expected).
    pub fn new(manager: &MemoryManager, seed: usize) -> Result<Self, LlmError> {
        let mut windows = ContextWindows::empty();
        windows.insert("gpt-4o", WINDOW);
        let setup = Arc::new(ConversationSetup::new(windows, FitPolicy::default())?);
        let model = setup.names().get_or_intern("text-embedding-3-small");
        let mut conv = Conversation::new(setup, ByteEstimate::default());
        conv.set_model("gpt-4o")?;
        conv.set_system(&"You are a helpful assistant. Follow the rules. ".repeat(60));
        let tools: Vec<String> = (0..20)
            .map(|i| {
                format!(
                    r#"{{"type":"function","function":{{"name":"tool_{i}","description":"{}","parameters":{{"type":"object","properties":{{}}}}}}}}"#,
                    "Does a useful thing. ".repeat(10)
                )
            })
            .collect();
        conv.set_tools(&format!("[{}]", tools.join(",")))?;
        let pool = manager.buffer_pool().clone();
        let parser = SseParser::with_pool(SseConfig::default(), pool.clone())?;
        let cache = EmbeddingCache::new(
            EmbeddingCacheConfig {
                max_bytes: 16 << 20,
                max_entries: 64,
            },
            Some(manager.budget().clone()),
        );
        let users = (0..USER_TEXTS)
            .map(|i| {
                format!(
                    "Question {seed}.{i}: {}",
                    "please explain this in detail ".repeat(i % 40 + 5)
                )
            })
            .collect();
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
            call_ids: (0..CALL_IDS).map(|i| format!("call_{i:04}")).collect(),
            tool_output: "result line\n".repeat(2000),
            stream,
            vector: (0..DIMS).map(|i| i as f32 * 0.001).collect(),
            reply: String::new(),
            turn: 0,
        })
    }

    /// Runs `turns` turns, adding to `tally`.
    ///
    /// # Errors
    /// Whatever a component returns (none is expected).
    pub fn turns(&mut self, turns: u64, tally: &mut TurnTally) -> Result<(), LlmError> {
        for _ in 0..turns {
            self.turn(tally)?;
        }
        Ok(())
    }

    fn turn(&mut self, tally: &mut TurnTally) -> Result<(), LlmError> {
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
        let reply = &mut self.reply;
        let mut events = 0;
        for chunk in self.stream.chunks(333 + i % 7) {
            events += self.parser.feed(chunk, |ev| {
                if let Some(text) = delta_content(ev.data) {
                    reply.push_str(text);
                }
            })?;
        }
        self.parser.finish();
        self.conv.push_assistant(&self.reply)?;
        let text = if i.is_multiple_of(2) {
            user
        } else {
            &self.users[i % 13]
        };
        let key = self.cache.key(self.model, text);
        let hit = self.cache.get(&key).is_some();
        if !hit {
            self.cache.insert(key, &self.vector)?;
        }
        tally.turns += 1;
        tally.events += events as u64;
        tally.dropped += u64::from(fit.dropped_items);
        tally.hits += u64::from(hit);
        tally.prompt_bytes += assembled.bytes as u64;
        Ok(())
    }
}

/// The `delta.content` string of a chat-completions chunk (the simulation's own unescaped
/// output, so a scan is enough).
fn delta_content(data: &str) -> Option<&str> {
    const KEY: &str = "\"content\":\"";
    let start = data.find(KEY)? + KEY.len();
    let len = data[start..].find('"')?;
    Some(&data[start..start + len])
}

/// Runs the chat-turn check.
pub fn run(opts: &Options, report: &mut Report) {
    let (warm_up, measured) = if opts.quick {
        (1_000, 500)
    } else {
        (2_000, 3_000)
    };
    let manager = match MemoryManager::new(MemoryConfig::default().with_max_memory(1 << 30)) {
        Ok(m) => m,
        Err(e) => {
            report.push(
                Check::holds(PART, "chat: manager builds", false, "yes").detail(e.to_string()),
            );
            return;
        }
    };
    let (results, cpu) = on_threads(2, |w| {
        let mut worker = ChatWorker::new(&manager, w as usize)?;
        let mut warm = TurnTally::default();
        worker.turns(warm_up, &mut warm)?;
        let mut tally = TurnTally::default();
        let (r, stats) = mm_track::count(|| worker.turns(measured, &mut tally));
        r?;
        Ok::<_, LlmError>((warm, tally, stats))
    });
    let mut warm = TurnTally::default();
    let mut tally = TurnTally::default();
    let mut heap = mm_track::ScopeStats::default();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok((w, t, s)) => {
                warm.dropped += w.dropped;
                tally.turns += t.turns;
                tally.events += t.events;
                tally.dropped += t.dropped;
                tally.hits += t.hits;
                tally.prompt_bytes += t.prompt_bytes;
                heap.allocs += s.allocs;
                heap.reallocs += s.reallocs;
                heap.deallocs += s.deallocs;
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let turns = measured * 2;
    report.push(
        Check::equals(
            PART,
            "heap allocations per chat turn at steady state",
            (heap.allocs + heap.reallocs) as f64 / turns as f64,
            "allocs",
            0.0,
        )
        .detail(format!(
            "{} turns after {} warm-up turns per thread ({:.0} us of CPU per turn): {} allocs, {} reallocs, {} frees; {} SSE events, {} history items cut, {} embedding hits, {} of prompts",
            fmt_num(turns as f64),
            fmt_num(warm_up as f64),
            cpu.as_secs_f64() * 1e6 / ((warm_up + measured) * 2) as f64,
            heap.allocs,
            heap.reallocs,
            heap.deallocs,
            fmt_num(tally.events as f64),
            fmt_num(tally.dropped as f64),
            fmt_num(tally.hits as f64),
            super::mb(tally.prompt_bytes as f64)
        ))
        .require(errors.is_empty(), &errors.join("; "))
        .require(mm_track::is_active(), "the tracker is not the global allocator")
        .require(
            tally.events == turns * STREAM_EVENTS as u64,
            "not every streamed event was parsed",
        )
        .require(
            warm.dropped > 0 && tally.dropped > 0,
            "the fit never cut history: not a steady state",
        )
        .require(
            tally.hits > 0 && tally.hits < turns,
            "the embedding cache did not both hit and miss",
        ),
    );
}
