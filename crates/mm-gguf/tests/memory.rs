//! Memory behaviour of the two loading modes, measured, in one test (so no other test thread
//! disturbs the process-wide figures):
//! - mapped: opening costs heap for the index only, and touching every tensor page grows
//!   file-backed RSS (`RssFile`) but not anonymous RSS (`RssAnon`): no copy of the model;
//! - streaming: the whole model streams through at most ~1 MiB of heap, charged to a budget.
//!
//! Uses the real model when MM_GGUF_TEST_MODEL is set, else a synthetic 48 MiB file.

use std::io::BufReader;
use std::path::PathBuf;

use mm_gguf::{GgufWriter, MappedGguf, MetaValue, StreamingGguf, types::GgmlType};

#[global_allocator]
static GLOBAL: mm_track::TrackedAlloc = mm_track::TrackedAlloc::new(std::alloc::System);

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = s
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} missing"));
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a number")
}

fn live() -> u64 {
    mm_track::snapshot().expect("tracking active").live_bytes
}

fn peak() -> u64 {
    mm_track::snapshot().expect("tracking active").peak_bytes
}

fn model_file(_dir: &tempfile::TempDir) -> PathBuf {
    if let Some(p) = std::env::var_os("MM_GGUF_TEST_MODEL") {
        return PathBuf::from(p);
    }
    eprintln!("MM_GGUF_TEST_MODEL unset: using a synthetic 48 MiB model instead of the real one");
    let path = _dir.path().join("synthetic.gguf");
    let blob: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut w = GgufWriter::new();
    w.add_metadata(
        "general.architecture",
        MetaValue::String("synthetic".into()),
    )
    .unwrap();
    w.add_metadata(
        "tokenizer.ggml.tokens",
        MetaValue::strings((0..50_000).map(|i| format!("tok{i}"))),
    )
    .unwrap();
    for i in 0..3 {
        w.add_tensor(
            format!("blk.{i}.weight"),
            GgmlType::Q8_0,
            &[32, blob.len() as u64 / 34],
            &blob[..blob.len() / 34 * 34],
        )
        .unwrap();
    }
    w.write_file(&path).unwrap();
    path
}

/// FNV-1a, continued across calls: the same for any chunking of the same byte sequence.
fn checksum(acc: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *acc = (*acc ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
}

#[test]
fn mapped_is_zero_copy_and_streaming_is_bounded() {
    assert!(mm_track::is_active(), "the tracking allocator must be live");
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(&dir);
    let file_len = std::fs::metadata(&path).unwrap().len();

    // --- mapped ---
    let anon0 = status_kib("RssAnon:");
    let file0 = status_kib("RssFile:");
    let live0 = live();
    // SAFETY: the test model is never modified while the tests run.
    let model = unsafe { MappedGguf::open(&path) }.unwrap();
    let open_heap = live() - live0;
    let g = model.gguf();
    let tensor_bytes = g.tensor_bytes();
    eprintln!("mapped open: index heap {open_heap} B for a {file_len} B file");
    assert!(
        open_heap <= file_len / 100,
        "open heap {open_heap} > 1% of {file_len}"
    );
    assert!(
        open_heap >= model.index_heap_bytes() / 2,
        "index heap was measured"
    );

    let mut by_offset: Vec<_> = g.tensors().collect();
    by_offset.sort_by_key(|t| t.offset());
    mm_track::reset_peak();
    let peak0 = peak();
    let mut mapped_sum = 0xcbf2_9ce4_8422_2325u64;
    for t in &by_offset {
        checksum(&mut mapped_sum, t.data);
    }
    let touch_heap = peak() - peak0;
    let anon_growth = (status_kib("RssAnon:") - anon0.min(status_kib("RssAnon:"))) * 1024;
    let file_growth = status_kib("RssFile:").saturating_sub(file0) * 1024;
    eprintln!(
        "mapped touch of {tensor_bytes} B: RssFile +{file_growth} B, RssAnon +{anon_growth} B, heap peak +{touch_heap} B"
    );
    assert_eq!(touch_heap, 0, "reading tensors must not allocate");
    assert!(
        file_growth >= tensor_bytes * 8 / 10,
        "tensor pages must be file-backed RSS"
    );
    assert!(
        anon_growth < tensor_bytes / 10,
        "anonymous RSS grew by {anon_growth} B: a copy was made"
    );
    let n_tokens = g.get_array("tokenizer.ggml.tokens").unwrap().len();
    drop(by_offset);
    drop(model);

    // --- streaming ---
    let budget = mm_budget::MemoryBudget::with_limit(4 << 20).unwrap();
    mm_track::reset_peak();
    let base = live();
    let mut stream_sum = 0xcbf2_9ce4_8422_2325u64;
    let mut streamed = 0u64;
    let file = std::fs::File::open(&path).unwrap();
    let mut s = StreamingGguf::open_with(BufReader::with_capacity(0, file), Some(&budget)).unwrap();
    assert!(
        budget.used() >= mm_gguf::STREAM_CHUNK as u64,
        "the buffer is charged"
    );
    assert_eq!(budget.used(), s.reserved_bytes());
    s.for_each_tensor(|_, _, chunk| {
        checksum(&mut stream_sum, chunk);
        streamed += chunk.len() as u64;
        Ok(())
    })
    .unwrap();
    // The vocabulary, read element by element through the same buffer.
    let mut tokens = 0u64;
    s.visit_array("tokenizer.ggml.tokens", |_, v| {
        tokens += u64::from(v.as_str().is_some());
        Ok(())
    })
    .unwrap();
    assert_eq!(tokens, n_tokens);
    let working = peak() - base;
    eprintln!(
        "streaming: {streamed} B through a working-memory peak of {working} B (reserved {} B)",
        s.reserved_bytes()
    );
    drop(s);
    assert_eq!(budget.used(), 0, "the reservation is released on drop");
    assert_eq!(streamed, tensor_bytes);
    assert_eq!(stream_sum, mapped_sum, "streamed bytes equal mapped bytes");
    assert!(
        working <= 1 << 20,
        "streaming working memory {working} B > 1 MiB"
    );
}
