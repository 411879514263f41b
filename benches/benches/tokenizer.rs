//! mm-tokenizer on Gemma 3's vocabulary (the real model, MM_GGUF_TEST_MODEL): building the
//! index from the mapped file, and encoding the committed corpus one message at a time
//! into a reused buffer. Peers (HF `tokenizers`, `sentencepiece`) run in Python on the same
//! corpus: `crates/mm-tokenizer/scripts/bench_peers.py`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mm_gguf::MappedGguf;
use mm_tokenizer::{EncodeOptions, Vocab};

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

fn bench(c: &mut Criterion) {
    let Some(path) = std::env::var_os("MM_GGUF_TEST_MODEL") else {
        eprintln!(
            "SKIPPED: MM_GGUF_TEST_MODEL is not set (bash .ci/python.sh prints the model path)"
        );
        return;
    };
    // SAFETY: the model file is not modified while the bench runs.
    let m = unsafe { MappedGguf::open(&path) }.unwrap();
    let mut g = c.benchmark_group("tokenizer/load");
    g.bench_function(
        "mm_tokenizer::Vocab::from_gguf (gemma3, 262144 tokens)",
        |b| b.iter(|| Vocab::from_gguf(m.gguf()).unwrap()),
    );
    g.finish();

    let vocab = Vocab::from_gguf(m.gguf()).unwrap();
    let tok = vocab.tokenizer(m.gguf()).unwrap();
    let texts = corpus();
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
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
