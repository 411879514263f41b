//! Encoding allocates nothing once warm, writing ids into a reused buffer. Counted with
//! mm-track as this binary's global allocator.

mod common;

use mm_gguf::Gguf;
use mm_tokenizer::{EncodeOptions, Vocab};

#[global_allocator]
static GLOBAL: mm_track::TrackedAlloc = mm_track::TrackedAlloc::new(std::alloc::System);

const MESSAGES: &[&str] = &[
    "hello world, hello <|user|> world",
    "héllo wörld 12345 <start_of_turn>the the  \n\n x",
    "the world 1234, é! <|endoftext|>",
];

#[test]
fn warm_encoding_does_not_allocate() {
    assert!(
        mm_track::is_active(),
        "mm-track must be the global allocator"
    );
    for spec in [
        common::spm(true),
        common::bpe("gpt-2"),
        common::bpe("llama3"),
        common::bpe("default"),
    ] {
        let bytes = spec.bytes();
        let g = Gguf::parse(&bytes).unwrap();
        let vocab = Vocab::from_gguf(&g).unwrap();
        let tok = vocab.tokenizer(&g).unwrap();
        let opts = EncodeOptions::new()
            .with_add_special(true)
            .with_parse_special(true);
        let mut ids = Vec::with_capacity(1024);
        // Warm-up: the per-thread buffers grow to these messages.
        for m in MESSAGES {
            tok.encode_into(m, opts, &mut ids);
            ids.clear();
            tok.count(m, opts);
        }
        for m in MESSAGES {
            let (n, stats) = mm_track::count(|| {
                tok.encode_into(m, opts, &mut ids);
                let n = ids.len();
                ids.clear();
                n
            });
            assert!(n > 0);
            assert_eq!(stats.allocs + stats.reallocs, 0, "{m:?}: {stats:?}");
            let (c, stats) = mm_track::count(|| tok.count(m, opts));
            assert_eq!(c, n);
            assert_eq!(stats.allocs + stats.reallocs, 0, "count {m:?}: {stats:?}");
        }
    }
}

/// The same on Gemma 3's real vocabulary and the committed corpus (MM_GGUF_TEST_MODEL;
/// skipped without it): once warm, encoding every message into a reused buffer, and
/// counting it, allocate nothing.
#[test]
fn warm_gemma3_encoding_does_not_allocate() {
    let Some(path) = std::env::var_os("MM_GGUF_TEST_MODEL") else {
        eprintln!(
            "SKIPPED: MM_GGUF_TEST_MODEL is not set (bash .ci/python.sh prints the model path)"
        );
        return;
    };
    // SAFETY: the model file is not modified while mapped.
    let tok = unsafe { mm_tokenizer::OwnedTokenizer::open(&path) }.unwrap();
    let tok = tok.tokenizer();
    let corpus: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/gemma3/corpus.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let texts: Vec<&str> = corpus.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let mut ids = Vec::with_capacity(4096);
    for opts in [
        EncodeOptions::new(),
        EncodeOptions::new()
            .with_add_special(true)
            .with_parse_special(true),
    ] {
        for t in &texts {
            ids.clear();
            tok.encode_into(t, opts, &mut ids);
            tok.count(t, opts);
        }
        let (total, stats) = mm_track::count(|| {
            let mut total = 0;
            for t in &texts {
                ids.clear();
                tok.encode_into(t, opts, &mut ids);
                total += ids.len() + tok.count(t, opts);
            }
            total
        });
        assert!(total > texts.len());
        assert_eq!(stats.allocs + stats.reallocs, 0, "{stats:?}");
    }
}
