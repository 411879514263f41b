//! Tests against the real Gemma 3 270M model (set MM_GGUF_TEST_MODEL; see .ci/python.sh).

use std::path::PathBuf;

fn model() -> Option<PathBuf> {
    match std::env::var_os("MM_GGUF_TEST_MODEL") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!(
                "SKIPPED: MM_GGUF_TEST_MODEL is not set; run `bash .ci/gguf-reference.sh` \
                 (or export MM_GGUF_TEST_MODEL=$(bash .ci/python.sh)) to run the real-model tests"
            );
            None
        }
    }
}

#[test]
fn opens_real_model() {
    let Some(path) = model() else { return };
    let t = std::time::Instant::now();
    let m = mm_gguf::MappedGguf::open(&path).unwrap();
    eprintln!("open took {:?}, index heap {} B", t.elapsed(), m.index_heap_bytes());
    let g = m.gguf();
    assert_eq!(g.n_tensors(), 236);
    assert_eq!(g.get_str("general.architecture").unwrap(), "gemma3");
    assert_eq!(g.get_array("tokenizer.ggml.tokens").unwrap().len(), 262_144);
}
