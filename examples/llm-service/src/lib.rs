//! A reference LLM service on the whole memory-manager stack: static embeddings from a GGUF
//! model, streamed chat completions proxied to an OpenAI-compatible upstream, and the
//! manager's report as JSON and Prometheus text. One [`MemoryManager`] (from `MM_*`) owns
//! the model registry, the embedding cache, the conversations, the buffer pool, the request
//! arenas and the budget every request reserves from; under pressure a request waits a
//! little for memory, then gets 503 with `Retry-After`, and the idle model is unloaded.
//!
//! `docs/service.md` (at the top of the repository) says how to run it, what each route
//! does with memory, and the load figures.
//!
//! [`MemoryManager`]: memory_manager::MemoryManager

pub mod app;
pub mod chat;
pub mod embed;
pub mod error;
pub mod model;
pub mod stub;
pub mod tally;

pub use app::{Service, ServiceConfig, ServiceError};
pub use error::ApiError;
pub use model::{LoadedModel, ModelSlot};
