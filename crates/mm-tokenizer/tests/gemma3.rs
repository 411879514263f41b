//! Gemma 3's vocabulary (from the real model) on a committed corpus, against
//! `sentencepiece` with a model built from the GGUF's own pieces and scores
//! (`tests/fixtures/gemma3/sentencepiece_ids.json`, made by `scripts/gemma_reference.py`).
//!
//! The two tokenizers are not the same algorithm on every input: llama.cpp (which this
//! crate follows) matches user-defined tokens such as `\n\n` and runs of spaces in the raw
//! text before merging, where SentencePiece merges them inside the normalized text. The
//! cases where they disagree are listed in `KNOWN_DIFFERENT`; the test fails if that list
//! is wrong in either direction.
//!
//! Skips (saying so) unless MM_GGUF_TEST_MODEL names the model (`bash .ci/python.sh`).

use std::collections::BTreeMap;
use std::path::Path;

use mm_gguf::MappedGguf;
use mm_tokenizer::{DecodeOptions, EncodeOptions, Vocab};

/// Corpus cases where llama.cpp's algorithm (and so ours) gives other ids than
/// SentencePiece, with why.
const KNOWN_DIFFERENT: &[(&str, &str)] = &[
    (
        "code-rust",
        "4-space indents: Gemma's user-defined token for a run of spaces (ids 138-168) is matched first",
    ),
    (
        "code-python",
        "two spaces before `#`: the user-defined two-space token",
    ),
    (
        "whitespace-runs",
        "runs of 2-4 spaces: the user-defined space-run tokens",
    ),
    (
        "spaces-only",
        "eight spaces: one user-defined token (144) against eight `▁`",
    ),
];

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gemma3")
        .join(name);
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn gemma3_corpus_against_sentencepiece() {
    let Some(path) = std::env::var_os("MM_GGUF_TEST_MODEL") else {
        assert!(
            std::env::var_os("MM_TOKENIZER_REQUIRE_REFERENCE").is_none(),
            "MM_TOKENIZER_REQUIRE_REFERENCE is set but MM_GGUF_TEST_MODEL is not"
        );
        eprintln!("SKIPPED: MM_GGUF_TEST_MODEL is not set. Run `bash .ci/tokenizer-reference.sh`");
        return;
    };
    let corpus: Vec<serde_json::Value> = serde_json::from_str(&fixture("corpus.json")).unwrap();
    let reference: BTreeMap<String, Vec<u32>> =
        serde_json::from_str(&fixture("sentencepiece_ids.json")).unwrap();
    // SAFETY: the test model is not modified while the test runs.
    let m = unsafe { MappedGguf::open(&path) }.unwrap();
    let vocab = Vocab::from_gguf(m.gguf()).unwrap();
    let tok = vocab.tokenizer(m.gguf()).unwrap();
    assert_eq!(tok.n_tokens(), 262_144);
    let mut different = Vec::new();
    for case in &corpus {
        let name = case["name"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        let ours = tok.encode(text, EncodeOptions::new());
        let theirs = &reference[name];
        // Whatever the split, the text comes back.
        assert_eq!(tok.decode(&ours, DecodeOptions::new()), text, "{name}");
        if &ours != theirs {
            eprintln!(
                "DIFFERENT {name}: {text:?}\n  ours        {ours:?}\n  sentencepiece {theirs:?}"
            );
            different.push(name.to_string());
        }
    }
    let known: Vec<String> = KNOWN_DIFFERENT.iter().map(|k| k.0.to_string()).collect();
    assert_eq!(different, known, "the disagreements changed");
}
