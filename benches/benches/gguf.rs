//! GGUF open time and heap, mm-gguf side by side with candle-core 0.11's reader (feature
//! `candle`), and streaming throughput against the mapped path.
//!
//! Model: MM_GGUF_TEST_MODEL (the real Gemma 3 270M, see `.ci/python.sh`); without it a
//! synthetic file with the same vocabulary size is written to a temp dir, and the figures
//! say so.
//!
//! ```text
//! MM_GGUF_TEST_MODEL=$(bash .ci/python.sh) cargo bench -p mm-benches --features candle \
//!     --bench gguf -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::io::BufReader;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mm_gguf::{
    Gguf, GgufWriter, MappedGguf, MetaValue, MmapCache, MmapCacheConfig, StreamingGguf,
    types::GgmlType,
};

#[global_allocator]
static GLOBAL: mm_track::TrackedAlloc = mm_track::TrackedAlloc::new(std::alloc::System);

struct Model {
    path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

fn model() -> Model {
    if let Some(p) = std::env::var_os("MM_GGUF_TEST_MODEL") {
        return Model {
            path: p.into(),
            _dir: None,
        };
    }
    eprintln!(
        "gguf bench: MM_GGUF_TEST_MODEL unset; using a synthetic model (262,144 tokens, 64 MiB)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("synthetic.gguf");
    let blob = vec![0x11u8; 34 * (1 << 20) * 2];
    let mut w = GgufWriter::new();
    w.add_metadata(
        "general.architecture",
        MetaValue::String("synthetic".into()),
    )
    .unwrap();
    w.add_metadata(
        "tokenizer.ggml.tokens",
        MetaValue::strings((0..262_144).map(|i| format!("▁tok{i}"))),
    )
    .unwrap();
    w.add_metadata(
        "tokenizer.ggml.scores",
        MetaValue::Array(
            mm_gguf::ValueType::F32,
            (0..262_144).map(|i| MetaValue::F32(i as f32)).collect(),
        ),
    )
    .unwrap();
    for i in 0..8 {
        let part = &blob[i * blob.len() / 8..(i + 1) * blob.len() / 8];
        w.add_tensor(
            format!("blk.{i}.w"),
            GgmlType::Q8_0,
            &[32, part.len() as u64 / 34],
            part,
        )
        .unwrap();
    }
    w.write_file(&path).unwrap();
    Model {
        path,
        _dir: Some(dir),
    }
}

/// Live heap and allocation count an open leaves behind (measured once, outside criterion).
fn heap_of<T>(label: &str, open: impl FnOnce() -> T) -> T {
    let before = mm_track::snapshot().expect("mm-track is the allocator");
    let (value, scope) = mm_track::count(open);
    let after = mm_track::snapshot().expect("mm-track is the allocator");
    eprintln!(
        "heap {label:<28} live +{:>10} B  in {:>7} allocations ({} B allocated in total)",
        after.live_bytes.saturating_sub(before.live_bytes),
        scope.allocs,
        scope.alloc_bytes
    );
    value
}

fn open(c: &mut Criterion) {
    let m = model();
    let cache = MmapCache::new(MmapCacheConfig::default());
    // SAFETY: the model file is never modified while the bench maps it (nor below).
    let map = unsafe { cache.get(&m.path) }.expect("map the model");
    drop(heap_of("mm-gguf Gguf::parse (mapped)", || {
        Gguf::parse(&map).expect("parse")
    }));
    drop(heap_of("mm-gguf MappedGguf::open", || {
        // SAFETY: as above.
        unsafe { MappedGguf::open_in(&cache, &m.path) }.expect("open")
    }));
    drop(heap_of("mm-gguf StreamingGguf::open", || {
        StreamingGguf::open(std::fs::File::open(&m.path).unwrap()).expect("stream")
    }));
    #[cfg(feature = "candle")]
    drop(heap_of("candle Content::read", || {
        let mut f = std::fs::File::open(&m.path).unwrap();
        candle_core::quantized::gguf_file::Content::read(&mut f).expect("candle reads it")
    }));

    let mut g = c.benchmark_group("gguf_open");
    g.bench_function("mm_gguf_parse_mapped", |b| {
        b.iter(|| black_box(Gguf::parse(black_box(&map)).unwrap().n_tensors()))
    });
    g.bench_function("mm_gguf_open_cached_map", |b| {
        b.iter(|| {
            // SAFETY: as above.
            black_box(
                unsafe { MappedGguf::open_in(&cache, &m.path) }
                    .unwrap()
                    .gguf()
                    .n_tensors(),
            )
        })
    });
    g.bench_function("mm_gguf_streaming_header", |b| {
        b.iter(|| {
            black_box(
                StreamingGguf::open(std::fs::File::open(&m.path).unwrap())
                    .unwrap()
                    .tensors()
                    .len(),
            )
        })
    });
    #[cfg(feature = "candle")]
    g.bench_function("candle_content_read", |b| {
        b.iter(|| {
            let mut f = std::fs::File::open(&m.path).unwrap();
            black_box(
                candle_core::quantized::gguf_file::Content::read(&mut f)
                    .unwrap()
                    .tensor_infos
                    .len(),
            )
        })
    });
    g.finish();
}

fn streaming(c: &mut Criterion) {
    let m = model();
    let cache = MmapCache::new(MmapCacheConfig::default());
    // SAFETY: the model file is never modified while the bench runs.
    let mapped = unsafe { MappedGguf::open_in(&cache, &m.path) }.expect("open");
    let bytes = mapped.gguf().tensor_bytes();
    let mut g = c.benchmark_group("gguf_read_all_tensors");
    g.throughput(Throughput::Bytes(bytes)).sample_size(10);
    g.bench_function("mapped", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for t in mapped.gguf().tensors() {
                acc = acc.wrapping_add(
                    t.data
                        .iter()
                        .step_by(64)
                        .map(|&x| u64::from(x))
                        .sum::<u64>(),
                );
            }
            black_box(acc)
        })
    });
    g.bench_function("streaming_64k", |b| {
        b.iter(|| {
            let f = BufReader::with_capacity(0, std::fs::File::open(&m.path).unwrap());
            let mut s = StreamingGguf::open(f).unwrap();
            let mut acc = 0u64;
            s.for_each_tensor(|_, _, chunk| {
                acc =
                    acc.wrapping_add(chunk.iter().step_by(64).map(|&x| u64::from(x)).sum::<u64>());
                Ok(())
            })
            .unwrap();
            black_box(acc)
        })
    });
    g.finish();
}

criterion_group!(benches, open, streaming);
criterion_main!(benches);
