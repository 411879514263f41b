//! A service's memory through one manager: a request handler on the manager's arena, buffer
//! pool and interner under the tracked allocator; a model loaded through a registry built
//! from the manager (a synthetic GGUF file written here); a conversation on the manager's
//! interner; then the report, which shows all of them.
//! Run: `cargo run --example service -p memory-manager`.

use std::fmt::Write as _;
use std::sync::Arc;

use memory_manager::{MemoryConfig, MemoryError, MemoryManager, Residency, TrackedAlloc};
use mm_gguf::{GgufWriter, MetaValue, ModelRegistry, RegistryConfig, types::GgmlType};
use mm_llm::{ByteEstimate, ContextWindows, Conversation, ConversationSetup, FitPolicy};

#[global_allocator]
static GLOBAL: TrackedAlloc = TrackedAlloc::new(std::alloc::System);

/// Handles one request: tokenizes the prompt in the arena, interns the model name and writes
/// the response into a pooled buffer. Returns the response length.
fn handle(manager: &MemoryManager, model: &str, prompt: &str) -> Result<usize, MemoryError> {
    let model = manager.interner().get_or_intern(model);
    let mut out = manager.buffer(4096)?;
    let tokens = manager.scope(|arena| {
        let words = arena.alloc_slice_fill_with(prompt.split_whitespace().count(), |_| "")?;
        for (slot, word) in words.iter_mut().zip(prompt.split_whitespace()) {
            *slot = word;
        }
        Ok::<_, MemoryError>(words.len())
    })?;
    out.extend_from_slice(b"data: {\"model\":\"");
    out.extend_from_slice(manager.interner().resolve(model).as_bytes());
    out.extend_from_slice(b"\",\"tokens\":");
    let mut n = [0u8; 20];
    let digits = format_u64(tokens as u64, &mut n);
    out.extend_from_slice(digits);
    out.extend_from_slice(b"}\n\n");
    Ok(out.len())
}

/// Formats without allocating, so the steady-state request path makes no heap call.
fn format_u64(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

/// A small model file: 4 F32 tensors of 16 KiB.
fn write_model(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let data = vec![0u8; 4 * 4096];
    let mut w = GgufWriter::new();
    w.add_metadata("general.name", MetaValue::String("tiny-embedder".into()))?;
    for i in 0..4 {
        w.add_tensor(format!("blk.{i}.w"), GgmlType::F32, &[4096], &data)?;
    }
    w.write_file(path)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = MemoryManager::new(MemoryConfig::new().with_max_memory(256 << 20))?;

    // The model: registered by name, loaded on first use through the manager's cache.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tiny-embedder.gguf");
    write_model(&path)?;
    let models = ModelRegistry::from_manager(&manager, RegistryConfig::new());
    // SAFETY: the file was written above and is not modified while mapped.
    unsafe { models.register("tiny-embedder", &path) };
    let model = models.get("tiny-embedder")?;
    println!(
        "model: {} tensors, {} bytes mapped, {} bytes of index heap",
        model.gguf().n_tensors(),
        model.mapped_bytes(),
        model.index_heap_bytes()
    );

    // A conversation on the manager's interner, charged to its budget.
    let setup = Arc::new(ConversationSetup::from_manager(
        &manager,
        ContextWindows::default(),
        FitPolicy::default(),
    )?);
    let mut chat = Conversation::new(Arc::clone(&setup), ByteEstimate::default());
    chat.set_system("You answer in one sentence.");
    chat.push_user("What is a GGUF file?")?;
    chat.push_assistant("A single-file format for model weights and metadata.")?;

    let prompts = [
        "hello there",
        "summarise this long document please",
        "what is a GGUF file",
    ];
    for (i, prompt) in prompts.iter().cycle().take(1000).enumerate() {
        handle(&manager, "tiny-embedder", prompt)?;
        if i == 999 {
            let (len, stats) = mm_track::count(|| handle(&manager, "tiny-embedder", prompt));
            let mut line = String::new();
            write!(
                line,
                "steady-state request: {} bytes out, {} heap allocations",
                len?, stats.allocs
            )?;
            println!("{line}");
            assert_eq!(stats.allocs, 0, "a warm request should not touch the heap");
        }
    }
    let report = manager.report_with(Residency::Measure);
    assert!(report.models.iter().any(|m| m.name == "tiny-embedder"));
    assert!(report.components.iter().any(|c| c.name == "conversations"));
    println!("{report}");
    drop(chat);
    Ok(())
}
