//! mm-tokenizer on Gemma 3's vocabulary (the real model, MM_GGUF_TEST_MODEL) beside HF
//! `tokenizers` (the Rust crate, one thread) built in this process from the same GGUF:
//! building each from the mapped file, and encoding the committed corpus one message at a
//! time. `sentencepiece` runs in Python: `crates/mm-tokenizer/scripts/bench_peers.py`.
//!
//! HF's tokenizer is a BPE model with byte fallback over the GGUF's pieces, its merges
//! derived from the piece scores the way HF's SentencePiece converter does (a merge for
//! every normal piece that splits into two pieces, ranked by the merged piece's score), and
//! a normalizer turning spaces into `▁`. Its per-word cache is disabled for the main row:
//! with no pre-tokenizer a whole message is one "word", so on a corpus encoded over and
//! over the cache would time a hash lookup, not tokenization. The cached row is shown too.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mm_gguf::MappedGguf;
use mm_tokenizer::{EncodeOptions, TokenAttr, Tokenizer, Vocab};

fn corpus() -> Vec<String> {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/mm-tokenizer/tests/fixtures/gemma3/corpus.json"
    );
    let v: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v.iter()
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect()
}

/// HF `tokenizers` built from the vocabulary `tok` reads from the GGUF.
fn hf_tokenizer(tok: &Tokenizer<'_>, cache: bool) -> tokenizers::Tokenizer {
    use tokenizers::models::bpe::BPE;
    let n = tok.n_tokens() as u32;
    let piece = |i: u32| String::from_utf8_lossy(tok.piece(i).unwrap_or_default()).into_owned();
    let mut vocab = tokenizers::models::bpe::Vocab::default();
    for i in 0..n {
        vocab.insert(piece(i), i);
    }
    let mut merges: Vec<(f32, u32, u32, String, String)> = Vec::new();
    for i in 0..n {
        let normal = tok.attr(i).is_some_and(|a| a.intersects(TokenAttr::NORMAL));
        let t = piece(i);
        if !normal || t.chars().count() < 2 {
            continue;
        }
        for (k, _) in t.char_indices().skip(1) {
            let (a, b) = t.split_at(k);
            if let (Some(&ia), Some(&ib)) = (vocab.get(a), vocab.get(b)) {
                let score = tok.score(i).unwrap_or(0.0);
                merges.push((-score, ia, ib, a.to_owned(), b.to_owned()));
            }
        }
    }
    merges.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let merges = merges.into_iter().map(|(_, _, _, a, b)| (a, b)).collect();
    let unk = tok.vocab().special_ids().unk.map_or(3, |u| u);
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .unk_token(piece(unk))
        .fuse_unk(true)
        .cache_capacity(if cache { 10_000 } else { 0 })
        .build()
        .unwrap();
    let mut hf = tokenizers::Tokenizer::new(bpe);
    hf.with_normalizer(Some(
        tokenizers::normalizers::Replace::new(" ", "\u{2581}").unwrap(),
    ))
    .unwrap();
    hf
}

fn bench(c: &mut Criterion) {
    let Some(path) = std::env::var_os("MM_GGUF_TEST_MODEL") else {
        eprintln!(
            "SKIPPED: MM_GGUF_TEST_MODEL is not set (bash .ci/python.sh prints the model path)"
        );
        return;
    };
    // SAFETY: the model file is not modified while the bench runs.
    let m = unsafe { MappedGguf::open(&path) }.unwrap();
    let vocab = Vocab::from_gguf(m.gguf()).unwrap();
    let tok = vocab.tokenizer(m.gguf()).unwrap();
    let texts = corpus();

    let mut g = c.benchmark_group("tokenizer/load");
    g.sample_size(10);
    g.bench_function(
        "mm_tokenizer::Vocab::from_gguf (gemma3, 262144 tokens)",
        |b| b.iter(|| Vocab::from_gguf(m.gguf()).unwrap()),
    );
    g.bench_function("hf_tokenizers BPE from the same pieces and merges", |b| {
        b.iter(|| hf_tokenizer(&tok, false))
    });
    g.finish();

    let hf = hf_tokenizer(&tok, false);
    let hf_cached = hf_tokenizer(&tok, true);
    let same = texts
        .iter()
        .filter(|t| {
            hf.encode_fast(t.as_str(), false).unwrap().get_ids()
                == tok.encode(t, EncodeOptions::new())
        })
        .count();
    eprintln!(
        "hf tokenizers gives mm-tokenizer's ids on {same}/{} messages",
        texts.len()
    );

    let bytes: usize = texts.iter().map(|t| t.len()).sum();
    let mut g = c.benchmark_group("tokenizer/encode");
    g.throughput(Throughput::Bytes(bytes as u64));
    let mut ids = Vec::with_capacity(4096);
    g.bench_function("mm_tokenizer encode_into (gemma3 corpus)", |b| {
        b.iter(|| {
            let mut n = 0;
            for t in &texts {
                ids.clear();
                tok.encode_into(t, EncodeOptions::new(), &mut ids);
                n += ids.len();
            }
            n
        })
    });
    g.bench_function("hf_tokenizers encode_fast, no cache (gemma3 corpus)", |b| {
        b.iter(|| {
            let mut n = 0;
            for t in &texts {
                n += hf.encode_fast(t.as_str(), false).unwrap().len();
            }
            n
        })
    });
    g.bench_function("hf_tokenizers encode, no cache (gemma3 corpus)", |b| {
        b.iter(|| {
            let mut n = 0;
            for t in &texts {
                n += hf.encode(t.as_str(), false).unwrap().len();
            }
            n
        })
    });
    g.bench_function(
        "hf_tokenizers encode_fast, word cache on (gemma3 corpus, repeated)",
        |b| {
            b.iter(|| {
                let mut n = 0;
                for t in &texts {
                    n += hf_cached.encode_fast(t.as_str(), false).unwrap().len();
                }
                n
            })
        },
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
