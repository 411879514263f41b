#![doc = include_str!("../README.md")]

#[cfg(feature = "chat-template")]
mod chat_template;
mod conversation;
mod embedding;
mod error;
mod json;
mod managed;
mod names;
pub mod simulate;
pub mod sse;
#[cfg(feature = "stream")]
pub mod sse_stream;
mod sync;
mod tokens;
mod windows;

#[cfg(all(feature = "chat-template", feature = "gguf-tokens"))]
pub use chat_template::TemplateTokens;
#[cfg(feature = "chat-template")]
pub use chat_template::{ChatTemplate, GenerationPrompt, RenderOptions};
pub use conversation::{
    ABORTED_RESULT, AssembleReport, Compactor, Conversation, ConversationSetup, ConversationStats,
    DroppedMessages, FitPolicy, FitReport, MessageView, PromptMeasure, ResultOutcome, Role,
};
pub use embedding::{
    Clock, ENTRY_OVERHEAD, Embedding, EmbeddingCache, EmbeddingCacheConfig, EmbeddingKey,
    EmbeddingStats, EvictionCounts, EvictionNotice, ManualClock, MonotonicClock, RemovalCause,
};
pub use error::LlmError;
pub use names::{Interner, Symbol};
#[cfg(feature = "gguf-tokens")]
pub use tokens::GgufTokens;
#[cfg(feature = "exact-tokens")]
pub use tokens::OpenAiTokens;
pub use tokens::{ByteEstimate, TokenCounter};
pub use windows::ContextWindows;
