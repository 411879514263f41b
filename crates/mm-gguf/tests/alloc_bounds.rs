//! No allocation is sized by a number the file merely claims: parsing files with huge
//! counts and lengths allocates a few hundred bytes (the error message), never anything
//! near the claim. Measured with mm-track.

use mm_gguf::{Gguf, StreamingGguf, ValueType};

#[global_allocator]
static GLOBAL: mm_track::TrackedAlloc = mm_track::TrackedAlloc::new(std::alloc::System);

fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut v = b"GGUF".to_vec();
    v.extend_from_slice(&3u32.to_le_bytes());
    v.extend_from_slice(&n_tensors.to_le_bytes());
    v.extend_from_slice(&n_kv.to_le_bytes());
    v
}

fn claims() -> Vec<(&'static str, Vec<u8>)> {
    let mut huge_kv = header(0, u64::MAX / 2);
    huge_kv.extend_from_slice(&[0u8; 4096]);
    let mut huge_tensors = header(1 << 40, 0);
    huge_tensors.extend_from_slice(&[0u8; 4096]);
    let mut huge_string = header(0, 1);
    huge_string.extend_from_slice(&(1u64 << 50).to_le_bytes());
    huge_string.extend_from_slice(&[b'a'; 4096]);
    let mut huge_array = header(0, 1);
    huge_array.extend_from_slice(&1u64.to_le_bytes());
    huge_array.push(b'k');
    huge_array.extend_from_slice(&ValueType::Array.id().to_le_bytes());
    huge_array.extend_from_slice(&ValueType::String.id().to_le_bytes());
    huge_array.extend_from_slice(&(1u64 << 40).to_le_bytes());
    huge_array.extend_from_slice(&[0u8; 4096]);
    // Many small tensors claimed, only a few present.
    let mut many_tensors = header(500, 0);
    for i in 0..3u64 {
        let name = format!("t{i}");
        many_tensors.extend_from_slice(&(name.len() as u64).to_le_bytes());
        many_tensors.extend_from_slice(name.as_bytes());
        many_tensors.extend_from_slice(&1u32.to_le_bytes());
        many_tensors.extend_from_slice(&(1u64 << 60).to_le_bytes());
        many_tensors.extend_from_slice(&0u32.to_le_bytes());
        many_tensors.extend_from_slice(&0u64.to_le_bytes());
    }
    vec![
        ("huge n_kv", huge_kv),
        ("huge n_tensors", huge_tensors),
        ("huge string length", huge_string),
        ("huge array length", huge_array),
        ("dims past i64", many_tensors),
    ]
}

#[test]
fn claimed_sizes_never_drive_allocation() {
    assert!(mm_track::is_active(), "the tracking allocator must be live");
    for (what, bytes) in claims() {
        let (res, stats) = mm_track::count(|| Gguf::parse(&bytes).map(|g| g.n_tensors()));
        assert!(res.is_err(), "{what}: accepted");
        assert!(
            stats.alloc_bytes <= 2048,
            "{what}: parse allocated {} B for a {} B file",
            stats.alloc_bytes,
            bytes.len()
        );
        let (res, stats) = mm_track::count(|| {
            StreamingGguf::open(std::io::Cursor::new(&bytes)).map(|s| s.tensors().len())
        });
        assert!(res.is_err(), "{what}: streaming accepted");
        // The 64 KiB read buffer is the streaming reader's fixed cost.
        let budget = mm_gguf::STREAM_CHUNK as u64 + 2048;
        assert!(
            stats.alloc_bytes <= budget,
            "{what}: streaming allocated {} B",
            stats.alloc_bytes
        );
    }
}
