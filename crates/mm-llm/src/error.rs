//! The crate's one error type.

/// Everything that can go wrong in `mm-llm`.
///
/// Each message says what happened and what to change. An error never leaves a structure
/// inconsistent: a failed cache insert may have evicted entries but the cache and its budget
/// charge still agree; a fit that fails its up-front check changes nothing; a failed SSE feed
/// makes the parser refuse further input until
/// [`SseParser::reset`](crate::sse::SseParser::reset).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// An SSE line grew past the parser's buffer limit before its line terminator arrived.
    #[error(
        "SSE line longer than the {max}-byte buffer limit; raise SseConfig::max_buffer if such lines are legitimate"
    )]
    SseLineTooLong {
        /// The configured limit in bytes.
        max: usize,
    },
    /// The `data` lines of one SSE event together exceed the parser's buffer limit.
    #[error(
        "SSE event data larger than the {max}-byte buffer limit; raise SseConfig::max_buffer if such events are legitimate"
    )]
    SseEventTooLarge {
        /// The configured limit in bytes.
        max: usize,
    },
    /// An SSE `event` or `id` value, decoded, would take the parser's fields (data, event
    /// type and last event id together) past the buffer limit.
    #[error(
        "SSE `{field}` field too long: with the event's other fields it passes the {max}-byte buffer limit (counted after UTF-8 decoding); raise SseConfig::max_buffer if such values are legitimate"
    )]
    SseFieldTooLong {
        /// The field: `event` or `id`.
        field: &'static str,
        /// The configured limit in bytes.
        max: usize,
    },
    /// The parser hit an error earlier in this stream and refuses more input.
    #[error(
        "SSE parser stopped after an earlier error ({0}); call reset() before feeding a new stream"
    )]
    SseStopped(&'static str),
    /// The parts of a prompt that are never cut (system prompt, tool definitions, summary,
    /// pinned user messages, output reserve) do not fit the model's window.
    #[error(
        "prompt cannot fit model {model:?}: the parts that are never cut need {needed} tokens but only {available} are available (window minus output reserve); shorten the system prompt or tool definitions, or use a model with a larger window"
    )]
    ContextOverflow {
        /// The model id the conversation targets.
        model: String,
        /// Tokens needed by the parts that are never cut.
        needed: u64,
        /// Tokens available for the prompt.
        available: u64,
    },
    /// The conversation's model is not in the context-window table and no fallback is set.
    #[error(
        "no context window known for model {model:?}; add it with ContextWindows::insert or set a fallback window"
    )]
    UnknownModel {
        /// The model id.
        model: String,
    },
    /// No model was set on the conversation before fitting or assembling.
    #[error("conversation has no model; call Conversation::set_model first")]
    NoModel,
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// The conversation's text store would pass 4 GiB (offsets are 32-bit).
    #[error(
        "conversation text store would exceed 4 GiB; end the conversation or fit it more aggressively"
    )]
    ConversationTooLarge,
    /// An embedding vector is larger than the cache's whole byte bound.
    #[error(
        "embedding of {bytes} bytes exceeds the cache bound of {max} bytes; raise EmbeddingCacheConfig::max_bytes"
    )]
    EmbeddingTooLarge {
        /// Bytes the vector needs.
        bytes: u64,
        /// The configured bound.
        max: u64,
    },
    /// The memory budget refused the bytes an insert needed, even after evicting everything.
    #[error("memory budget refused {bytes} bytes for the embedding cache: {source}")]
    Budget {
        /// Bytes that were requested.
        bytes: u64,
        /// The budget's refusal.
        #[source]
        source: mm_budget::BudgetError,
    },
    /// The name interner refused a new model id or tool name (a configured limit).
    #[error("interning a name failed: {0}")]
    Intern(#[from] mm_intern::InternError),
    /// Building a pool failed.
    #[error("pool setup failed: {0}")]
    Pool(#[from] mm_pool::PoolError),
    /// A chat template failed to compile or render (feature `chat-template`). The template
    /// itself may have raised it (`raise_exception`, e.g. "roles must alternate"), or it uses
    /// Jinja that the renderer does not support; the message says which and where.
    #[cfg(feature = "chat-template")]
    #[error("chat template: {0}")]
    Template(#[source] Box<minijinja::Error>),
    /// A chat template's rendered prompt would be longer than
    /// [`RenderOptions::max_len`](crate::RenderOptions::max_len) bytes; nothing is returned
    /// (feature `chat-template`).
    #[cfg(feature = "chat-template")]
    #[error(
        "chat template: the rendered prompt is longer than the {max}-byte limit; raise RenderOptions::with_max_len if such prompts are legitimate"
    )]
    TemplateOutputTooLong {
        /// The limit in bytes.
        max: usize,
    },
    /// The model file has no `tokenizer.chat_template` to render with.
    #[error("the model has no tokenizer.chat_template; pass the template text instead")]
    NoChatTemplate,
    /// Reading or writing a stream failed (the `mm sse` dump).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
