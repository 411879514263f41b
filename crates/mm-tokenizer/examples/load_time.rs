//! Prints how long building Gemma's index takes (MM_GGUF_TEST_MODEL), best of 20.
use mm_gguf::MappedGguf;
fn main() {
    let path = std::env::var_os("MM_GGUF_TEST_MODEL").expect("MM_GGUF_TEST_MODEL");
    // SAFETY: the model file is not modified while this runs.
    let m = unsafe { MappedGguf::open(&path) }.unwrap();
    let mut best = std::time::Duration::MAX;
    for _ in 0..20 {
        let t = std::time::Instant::now();
        let v = mm_tokenizer::Vocab::from_gguf(m.gguf()).unwrap();
        best = best.min(t.elapsed());
        std::hint::black_box(v);
    }
    let v = mm_tokenizer::Vocab::from_gguf(m.gguf()).unwrap();
    println!(
        "load: best of 20 {best:?}; index heap {} bytes",
        v.heap_bytes()
    );
}
