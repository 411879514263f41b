//! A request handler that uses the manager's arena, buffer pool and interner under the
//! tracked allocator, then prints the report. Run: `cargo run --example service -p memory-manager`.

use std::fmt::Write as _;

use memory_manager::{MemoryConfig, MemoryError, MemoryManager, TrackedAlloc};

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = MemoryManager::new(MemoryConfig::default().with_max_memory(256 << 20))?;
    let prompts = [
        "hello there",
        "summarise this long document please",
        "what is a GGUF file",
    ];
    for (i, prompt) in prompts.iter().cycle().take(1000).enumerate() {
        handle(&manager, "gemma-3-270m", prompt)?;
        if i == 999 {
            let (len, stats) = mm_track::count(|| handle(&manager, "gemma-3-270m", prompt));
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
    println!("{}", manager.report());
    Ok(())
}
