//! The served model: registered once in the manager's model registry, loaded on first use,
//! unloaded on critical pressure when no request holds it, reloaded on the next request.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use memory_manager::{Component, ComponentReading, MemoryManager, ObjectPool, PressureLevel};
use mm_gguf::types::GgmlType;
use mm_gguf::{MappedGguf, ModelRegistry, RegistryConfig};
use mm_llm::{ContextWindows, Conversation, ConversationSetup, FitPolicy, GgufTokens};
use mm_tokenizer::OwnedTokenizer;

use crate::error::ApiError;

/// The tensor whose rows are the token embeddings.
pub const EMBEDDING_TENSOR: &str = "token_embd.weight";

/// Idle conversations kept per loaded model.
const IDLE_CONVERSATIONS: usize = 64;

/// Gemma's chat framing costs 5 tokens per message (`<start_of_turn>user\n` ...
/// `<end_of_turn>\n`); other templates are close to it.
const MESSAGE_OVERHEAD: u32 = 5;

/// A loaded model: the mapped file (through the tokenizer), its tokenizer's index, where
/// the embedding rows are, its window, and a pool of conversations counted with its tokens.
pub struct LoadedModel {
    /// The served name.
    pub name: String,
    /// The model's own tokenizer (holds the mapped file).
    pub tokenizer: Arc<OwnedTokenizer>,
    /// Type of the embedding rows.
    pub embd_type: GgmlType,
    /// Values per embedding row (the model's width).
    pub dims: usize,
    /// Rows (the vocabulary size).
    pub rows: usize,
    /// The model's context window in tokens.
    pub context_length: u32,
    /// Conversations sharing this model's token counter (cleared and reused).
    pub conversations: ObjectPool<Conversation<GgufTokens>>,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("name", &self.name)
            .field("embd_type", &self.embd_type)
            .field("dims", &self.dims)
            .field("rows", &self.rows)
            .field("context_length", &self.context_length)
            .finish_non_exhaustive()
    }
}

impl LoadedModel {
    /// The mapped file.
    pub fn gguf(&self) -> &MappedGguf {
        self.tokenizer.gguf()
    }

    /// Builds the served view of a mapped model.
    fn build(
        name: &str,
        mapped: Arc<MappedGguf>,
        manager: &MemoryManager,
    ) -> Result<Self, ApiError> {
        let bad = |what: String| ApiError::internal(format!("model `{name}`: {what}"));
        let g = mapped.gguf();
        let t = g
            .tensor(EMBEDDING_TENSOR)
            .ok_or_else(|| bad(format!("no `{EMBEDDING_TENSOR}` tensor")))?;
        let shape = t.shape();
        let (dims, rows) = match shape {
            [d, r] => (*d, *r),
            _ => return Err(bad(format!("`{EMBEDDING_TENSOR}` has shape {shape:?}"))),
        };
        let dims = usize::try_from(dims).map_err(|_| bad("embedding width too large".into()))?;
        let rows = usize::try_from(rows).map_err(|_| bad("vocabulary too large".into()))?;
        mm_gguf::quant::row_bytes(t.ggml_type(), dims).map_err(|e| bad(e.to_string()))?;
        let embd_type = t.ggml_type();
        let arch = g.get_str("general.architecture").unwrap_or("llama");
        let context_length = g
            .get_u64(&format!("{arch}.context_length"))
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(2048);
        let tokenizer =
            Arc::new(OwnedTokenizer::from_mapped(mapped).map_err(|e| bad(e.to_string()))?);
        let mut windows = ContextWindows::empty();
        windows.insert(name, context_length);
        let setup = Arc::new(
            ConversationSetup::from_manager(manager, windows, FitPolicy::new())
                .map_err(|e| bad(e.to_string()))?,
        );
        let counter =
            GgufTokens::new(Arc::clone(&tokenizer)).with_message_overhead(MESSAGE_OVERHEAD);
        let conversations = Conversation::pool(setup, counter, IDLE_CONVERSATIONS)
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            name: name.to_owned(),
            tokenizer,
            embd_type,
            dims,
            rows,
            context_length,
            conversations,
        })
    }
}

/// The served model's slot: loads on demand, unloads on critical pressure when idle.
/// A component of the manager (`served-model`: the tokenizer's index bytes while loaded).
pub struct ModelSlot {
    name: String,
    path: PathBuf,
    registry: ModelRegistry,
    manager: MemoryManager,
    loaded: Mutex<Option<Arc<LoadedModel>>>,
    held: AtomicU64,
    loads: AtomicU64,
    unloads: AtomicU64,
}

impl std::fmt::Debug for ModelSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSlot")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("loads", &self.loads.load(Ordering::Relaxed))
            .field("unloads", &self.unloads.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ModelSlot {
    /// Registers `path` as `name` in a registry built from `manager`, and the slot itself as
    /// a component. Nothing is mapped until [`get`](Self::get).
    ///
    /// # Safety
    /// The model file must not be modified in place or truncated while the service runs
    /// (replace it by rename): it is memory-mapped.
    pub unsafe fn register(manager: &MemoryManager, name: &str, path: &Path) -> Arc<Self> {
        let registry = ModelRegistry::from_manager(manager, RegistryConfig::new());
        // SAFETY: the caller's promise is the one `register` asks for.
        unsafe { registry.register(name, path) };
        let slot = Arc::new(Self {
            name: name.to_owned(),
            path: path.to_owned(),
            registry,
            manager: manager.clone(),
            loaded: Mutex::new(None),
            held: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            unloads: AtomicU64::new(0),
        });
        manager.register(Arc::clone(&slot) as Arc<dyn Component>);
        slot
    }

    /// The served name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model, loading it if it is not loaded (single flight: one load at a time).
    ///
    /// # Errors
    /// 500 when the file cannot be mapped or is not a model this service can serve.
    pub fn get(&self) -> Result<Arc<LoadedModel>, ApiError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = &*loaded {
            return Ok(Arc::clone(m));
        }
        let mapped = self
            .registry
            .get(&self.name)
            .map_err(|e| ApiError::internal(format!("loading model `{}`: {e}", self.name)))?;
        let model = Arc::new(LoadedModel::build(&self.name, mapped, &self.manager)?);
        self.held
            .store(model.tokenizer.vocab().heap_bytes(), Ordering::Relaxed);
        self.loads.fetch_add(1, Ordering::Relaxed);
        *loaded = Some(Arc::clone(&model));
        drop(loaded);
        self.manager.sync();
        Ok(model)
    }

    /// Whether the model is loaded now.
    pub fn is_loaded(&self) -> bool {
        self.loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Loads so far.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// Unloads so far.
    pub fn unloads(&self) -> u64 {
        self.unloads.load(Ordering::Relaxed)
    }

    /// Unloads the model if no request holds it; returns the heap bytes let go of (the
    /// tokenizer index; the mapped pages are file-backed and go with the map).
    pub fn unload_if_idle(&self) -> u64 {
        // `try_lock`: pressure may be raised by a load in progress under this lock.
        let Ok(mut loaded) = self.loaded.try_lock() else {
            return 0;
        };
        let idle = loaded.as_ref().is_some_and(|m| Arc::strong_count(m) == 1);
        if !idle {
            return 0;
        }
        let freed = self.held.swap(0, Ordering::Relaxed);
        *loaded = None;
        drop(loaded);
        self.registry.unload(&self.name);
        self.unloads.fetch_add(1, Ordering::Relaxed);
        freed
    }
}

impl Component for ModelSlot {
    fn name(&self) -> &str {
        "served-model"
    }

    fn reading(&self) -> ComponentReading {
        let mut r = ComponentReading::new(self.held.load(Ordering::Relaxed));
        r.items = u64::from(self.held.load(Ordering::Relaxed) > 0);
        r.misses = Some(self.loads.load(Ordering::Relaxed));
        r.evictions = Some(self.unloads.load(Ordering::Relaxed));
        r
    }

    fn on_pressure(&self, level: PressureLevel) -> u64 {
        if level >= PressureLevel::Critical {
            self.unload_if_idle()
        } else {
            0
        }
    }
}
