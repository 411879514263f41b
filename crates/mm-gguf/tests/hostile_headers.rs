//! Crafted headers that are valid in every count and length but hostile in what they cost
//! to index, and duplicate names: every entry point (parse, inspect, streaming) refuses
//! them with a typed error, and no reader's heap ever passes its budget or index cap.
//! Peak heap is measured with mm-track (one test per property, each in this binary's own
//! process, so the peak is this test's).

use std::io::Cursor;

use mm_gguf::{Gguf, GgufError, ParseLimits, STREAM_CHUNK, StreamingGguf, inspect, inspect_with};

#[global_allocator]
static GLOBAL: mm_track::TrackedAlloc = mm_track::TrackedAlloc::new(std::alloc::System);

/// One lock so the peak of one test is not raised by another running at the same time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut v = b"GGUF".to_vec();
    v.extend_from_slice(&3u32.to_le_bytes());
    v.extend_from_slice(&n_tensors.to_le_bytes());
    v.extend_from_slice(&n_kv.to_le_bytes());
    v
}

fn push_str(v: &mut Vec<u8>, s: &[u8]) {
    v.extend_from_slice(&(s.len() as u64).to_le_bytes());
    v.extend_from_slice(s);
}

/// A `u8` metadata pair.
fn push_kv_u8(v: &mut Vec<u8>, key: &[u8], value: u8) {
    push_str(v, key);
    v.extend_from_slice(&0u32.to_le_bytes()); // uint8
    v.push(value);
}

/// A one-dimensional F32 tensor info of `n` elements at data offset `offset`.
fn push_tensor(v: &mut Vec<u8>, name: &[u8], n: u64, offset: u64) {
    push_str(v, name);
    v.extend_from_slice(&1u32.to_le_bytes());
    v.extend_from_slice(&n.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes()); // F32
    v.extend_from_slice(&offset.to_le_bytes());
}

/// Pads to the 32-byte alignment and appends `n` zero bytes of tensor data.
fn push_data(v: &mut Vec<u8>, n: usize) {
    v.resize(v.len().next_multiple_of(32) + n, 0);
}

/// Runs `f` and returns its result with the heap's peak above the live bytes at the start.
fn peak_of<R>(f: impl FnOnce() -> R) -> (R, u64) {
    assert!(mm_track::is_active());
    mm_track::reset_peak();
    let base = mm_track::snapshot().expect("tracked").live_bytes;
    let r = f();
    let peak = mm_track::snapshot().expect("tracked").peak_bytes;
    (r, peak.saturating_sub(base))
}

/// The snapshot's peak is folded with a slack of 64 KiB per thread; two threads run here.
const PEAK_SLACK: u64 = 2 * mm_track::LIVE_SLACK_BYTES as u64;

/// 500 keys of 65,535 bytes each (32.8 MB of header) under a 1 MiB budget: the reader
/// charges each key before copying it, so it is refused before it holds more than the
/// budget, and the reservation is gone afterwards.
#[test]
fn streaming_reader_never_holds_more_than_its_budget() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut file = header(0, 500);
    for i in 0..500u32 {
        let mut key = vec![b'k'; 65_535];
        key[..4].copy_from_slice(&i.to_le_bytes().map(|b| b'a' + b % 26));
        key[4..8].copy_from_slice(&(i / 26).to_le_bytes().map(|b| b'a' + b % 26));
        push_kv_u8(&mut file, &key, 1);
    }
    let budget = mm_budget::MemoryBudget::with_limit(1 << 20).unwrap();
    let (res, peak) = peak_of(|| StreamingGguf::open_with(Cursor::new(&file), Some(&budget)));
    let err = res.expect_err("a 32 MB index cannot fit a 1 MiB budget");
    assert!(matches!(err, GgufError::Budget { .. }), "{err}");
    assert!(
        peak <= (1 << 20) + PEAK_SLACK,
        "streaming reader peaked at {peak} B of heap under a 1 MiB budget"
    );
    assert_eq!(
        budget.used(),
        0,
        "the refused reader released its reservation"
    );

    // Without a budget the index cap (8 MiB by default) refuses it, before passing it.
    let (res, peak) = peak_of(|| StreamingGguf::open(Cursor::new(&file)));
    let err = res.expect_err("over the default cap");
    assert!(matches!(err, GgufError::IndexTooLarge { .. }), "{err}");
    let cap = mm_gguf::DEFAULT_MAX_INDEX_BYTES + mm_gguf::STREAM_BUFFER as u64;
    assert!(peak <= cap + PEAK_SLACK, "peaked at {peak} B, cap {cap} B");
    assert!(err.to_string().contains("ParseLimits::max_index_bytes"));
}

/// What a successful streamed open keeps charged is its buffer and index, equal to the
/// index it reports, and a budget that admits the file holds it to the byte.
#[test]
fn streaming_charges_match_the_index() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut file = header(2, 3);
    push_kv_u8(&mut file, b"a", 1);
    push_kv_u8(&mut file, b"bb", 2);
    push_str(&mut file, b"ccc");
    file.extend_from_slice(&8u32.to_le_bytes()); // string
    push_str(&mut file, b"a short inline string");
    push_tensor(&mut file, b"t0", 8, 0);
    push_tensor(&mut file, b"t1", 8, 32);
    push_data(&mut file, 64);
    let budget = mm_budget::MemoryBudget::with_limit(1 << 20).unwrap();
    let s = StreamingGguf::open_with(Cursor::new(&file), Some(&budget)).unwrap();
    assert_eq!(s.tensors().len(), 2);
    assert_eq!(budget.used(), s.reserved_bytes());
    assert_eq!(
        s.reserved_bytes(),
        STREAM_CHUNK as u64 + s.charged_index_bytes()
    );
    assert_eq!(s.charged_index_bytes(), s.index_heap_bytes());
    // A cap one byte short of that index refuses the same file.
    let tight = ParseLimits::new().with_max_index_bytes(s.charged_index_bytes() - 1);
    let err = StreamingGguf::open_with_limits(Cursor::new(&file), None, tight).unwrap_err();
    assert!(matches!(err, GgufError::IndexTooLarge { .. }), "{err}");
    drop(s);
    assert_eq!(budget.used(), 0);
}

/// A 13 MB file declaring 1,000,000 empty keys would need about 60 MiB of index: every
/// entry point refuses it up front, at the count's offset, allocating next to nothing.
#[test]
fn a_million_empty_keys_are_refused_by_every_reader() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let n = 1_000_000u64;
    let mut file = header(0, n);
    for _ in 0..n {
        push_kv_u8(&mut file, b"", 0);
    }
    assert!(file.len() > 13_000_000);
    let (res, peak) = peak_of(|| Gguf::parse(&file).map(|g| g.metadata().len()));
    let err = res.expect_err("refused");
    assert!(
        matches!(err, GgufError::IndexTooLarge { offset: 16, .. }),
        "{err}"
    );
    assert!(peak <= PEAK_SLACK, "parse peaked at {peak} B");

    let (ins, peak) = peak_of(|| inspect(&file));
    assert!(matches!(
        ins.error,
        Some(GgufError::IndexTooLarge { offset: 16, .. })
    ));
    assert!(peak <= PEAK_SLACK, "inspect peaked at {peak} B");

    let (res, peak) = peak_of(|| StreamingGguf::open(Cursor::new(&file)).map(|_| ()));
    let err = res.expect_err("refused");
    assert!(
        matches!(err, GgufError::IndexTooLarge { offset: 16, .. }),
        "{err}"
    );
    assert!(
        peak <= mm_gguf::STREAM_BUFFER as u64 + PEAK_SLACK,
        "streaming peaked at {peak} B"
    );

    // A caller that trusts the file may raise the cap; the duplicates are refused then.
    let wide = ParseLimits::new().with_max_index_bytes(u64::MAX);
    let ins = inspect_with(&file, wide);
    assert_eq!(
        ins.metadata.len() as u64,
        n,
        "all read before the duplicate check"
    );
    assert!(
        matches!(ins.error, Some(GgufError::DuplicateKey { offset: 37, .. })),
        "{:?}",
        ins.error
    );
}

/// A file with a duplicate key and one with a duplicate tensor name: parse, inspect and
/// streaming all refuse them with the same typed error, naming the name and the offset of
/// its second occurrence; inspect still returns everything it read.
#[test]
fn duplicates_are_refused_by_every_entry_point() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut dup_key = header(1, 3);
    push_kv_u8(&mut dup_key, b"general.name", 1);
    push_kv_u8(&mut dup_key, b"other", 2);
    let second_at = dup_key.len() as u64;
    push_kv_u8(&mut dup_key, b"general.name", 3);
    push_tensor(&mut dup_key, b"t", 8, 0);
    push_data(&mut dup_key, 32);

    let mut dup_tensor = header(2, 1);
    push_kv_u8(&mut dup_tensor, b"general.name", 1);
    push_tensor(&mut dup_tensor, b"blk.0.w", 8, 0);
    let tensor_at = dup_tensor.len() as u64;
    push_tensor(&mut dup_tensor, b"blk.0.w", 8, 32);
    push_data(&mut dup_tensor, 64);

    for (file, name, at, is_key) in [
        (&dup_key, "general.name", second_at, true),
        (&dup_tensor, "blk.0.w", tensor_at, false),
    ] {
        let check = |e: &GgufError, who: &str| {
            let ok = match e {
                GgufError::DuplicateKey { offset, key } => is_key && *offset == at && key == name,
                GgufError::DuplicateTensor { offset, name: n } => {
                    !is_key && *offset == at && n == name
                }
                _ => false,
            };
            assert!(ok, "{who}: {e}");
            assert!(e.to_string().contains(name) && e.to_string().contains(&at.to_string()));
        };
        check(&Gguf::parse(file).unwrap_err(), "parse");
        check(
            &StreamingGguf::open(Cursor::new(file)).unwrap_err(),
            "streaming",
        );
        let ins = inspect(file);
        check(ins.error.as_ref().expect("inspect refuses"), "inspect");
        // Everything was read before the check: the duplicates are shown.
        let (keys, tensors) = if is_key { (3, 1) } else { (1, 2) };
        assert_eq!((ins.metadata.len(), ins.tensors.len()), (keys, tensors));
        assert!(ins.data_offset.is_some());
    }
}
