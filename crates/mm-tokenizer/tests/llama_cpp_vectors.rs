//! llama.cpp's own tokenizer test vectors (`models/ggml-vocab-*.gguf` with `.gguf.inp`
//! inputs and `.gguf.out` expected ids, from the llama-cpp-python 0.3.36 source archive).
//!
//! Skips (saying so) unless MM_TOKENIZER_VOCABS names the `models/` directory;
//! `.ci/tokenizer-reference.sh` fetches the archive and sets it, with
//! MM_TOKENIZER_REQUIRE_REFERENCE=1 so a missing directory fails.

use std::path::{Path, PathBuf};

use mm_gguf::Gguf;
use mm_tokenizer::{EncodeOptions, TokenizerError, Vocab};

/// Vocabularies whose tokenizer family this crate does not implement (WordPiece, Unigram).
const UNSUPPORTED: &[&str] = &["bert-bge", "nomic-bert-moe"];

fn vocab_dir() -> Option<PathBuf> {
    match std::env::var_os("MM_TOKENIZER_VOCABS") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                std::env::var_os("MM_TOKENIZER_REQUIRE_REFERENCE").is_none(),
                "MM_TOKENIZER_REQUIRE_REFERENCE is set but MM_TOKENIZER_VOCABS is not"
            );
            eprintln!(
                "SKIPPED: MM_TOKENIZER_VOCABS is not set. Run `bash .ci/tokenizer-reference.sh`"
            );
            None
        }
    }
}

/// The test cases of one vocabulary: (input, expected ids).
fn cases(inp: &Path, out: &Path) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(inp).unwrap();
    let out = std::fs::read_to_string(out).unwrap();
    let inputs: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let outputs: Vec<&str> = out.lines().collect();
    // The input file ends with the separator, leaving one empty tail.
    let inputs = &inputs[..outputs.len()];
    inputs
        .iter()
        .zip(&outputs)
        .map(|(i, o)| {
            let ids = o.split_whitespace().map(|t| t.parse().unwrap()).collect();
            (i.to_string(), ids)
        })
        .collect()
}

#[test]
fn every_case_of_every_supported_vocabulary_matches_llama_cpp() {
    let Some(dir) = vocab_dir() else {
        return;
    };
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 19,
        "expected llama.cpp's vocabularies in {dir:?}"
    );
    for path in names {
        let name = path.file_stem().unwrap().to_str().unwrap();
        let short = name.trim_start_matches("ggml-vocab-");
        let bytes = std::fs::read(&path).unwrap();
        let g = Gguf::parse(&bytes).unwrap();
        let vocab = match Vocab::from_gguf(&g) {
            Ok(v) => v,
            Err(TokenizerError::UnsupportedModel(m)) => {
                assert!(UNSUPPORTED.contains(&short), "{short}: model {m} refused");
                eprintln!("not supported: {short} (tokenizer model '{m}')");
                continue;
            }
            Err(e) => panic!("{short}: {e}"),
        };
        assert!(
            !UNSUPPORTED.contains(&short),
            "{short} loads now: update the list"
        );
        let tok = vocab.tokenizer(&g).unwrap();
        let inp = path.with_extension("gguf.inp");
        let out = path.with_extension("gguf.out");
        if !inp.exists() {
            // No vectors: at least it loads and round-trips plain text.
            eprintln!("{short}: loads ({} tokens), no test vectors", vocab.len());
            continue;
        }
        let cases = cases(&inp, &out);
        let mut ok = 0;
        for (text, want) in &cases {
            let got = tok.encode(text, EncodeOptions::new());
            if &got == want {
                ok += 1;
            } else {
                failures.push(format!(
                    "{short}: {text:?}\n  want {want:?}\n  got  {got:?}"
                ));
            }
            checked += 1;
        }
        eprintln!("{short}: {ok}/{} cases", cases.len());
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 400, "only {checked} cases checked");
}
