//! Bit-identity with gguf-py: the fixtures under `tests/fixtures/dequant/` were written by
//! `scripts/dequant_ref.py` (gguf-py 0.19 and numpy); every kernel, scalar and fast, and the
//! chunked walker must reproduce them bit for bit.

use std::path::{Path, PathBuf};

use mm_gguf::quant::{DequantChunks, Kernel, dequantize_with, output_len};
use mm_gguf::types::GgmlType;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dequant")
}

struct Fixture {
    ty: GgmlType,
    raw: Vec<u8>,
    want: Vec<u32>,
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
}

fn load(ty: GgmlType) -> Option<Fixture> {
    let bytes = std::fs::read(dir().join(format!("{}.bin", ty.name()))).ok()?;
    assert_eq!(&bytes[..4], b"MMDQ", "{ty}: bad magic");
    assert_eq!(u32_at(&bytes, 4), ty.id(), "{ty}: type id");
    let n_blocks = u32_at(&bytes, 8) as usize;
    assert_eq!(u32_at(&bytes, 12), ty.type_size(), "{ty}: type size");
    assert_eq!(u32_at(&bytes, 16), ty.block_size(), "{ty}: block size");
    let raw_len = n_blocks * ty.type_size() as usize;
    let raw = bytes[20..20 + raw_len].to_vec();
    let want: Vec<u32> = bytes[20 + raw_len..]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        want.len(),
        n_blocks * ty.block_size() as usize,
        "{ty}: output length"
    );
    Some(Fixture { ty, raw, want })
}

/// Compares bit patterns and names the first differing value.
fn assert_bits(ty: GgmlType, what: &str, got: &[f32], want: &[u32]) {
    assert_eq!(got.len(), want.len(), "{ty} {what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.to_bits(),
            *w,
            "{ty} {what}: value {i} (block {}) is {g:e} ({:#010x}), gguf-py gives {:e} ({w:#010x})",
            i / ty.block_size() as usize,
            g.to_bits(),
            f32::from_bits(*w),
        );
    }
}

/// Types with no fixture: gguf-py 0.19 has no dequantizer for them (tested by hand in
/// `dequant_kernels.rs`).
const NOT_IN_GGUF_PY: [GgmlType; 3] = [GgmlType::Q8_1, GgmlType::Q8_K, GgmlType::Q1_0];

#[test]
fn every_gguf_py_type_has_a_fixture() {
    for ty in GgmlType::ALL {
        let has = dir().join(format!("{}.bin", ty.name())).exists();
        assert_eq!(has, !NOT_IN_GGUF_PY.contains(&ty), "{ty}");
    }
}

#[test]
fn scalar_and_fast_match_gguf_py() {
    for ty in GgmlType::ALL {
        let Some(f) = load(ty) else { continue };
        for kernel in [Kernel::Scalar, Kernel::Fast] {
            let mut out = vec![f32::NAN; f.want.len()];
            let n = dequantize_with(kernel, f.ty, &f.raw, &mut out).unwrap();
            assert_eq!(n, out.len());
            assert_bits(f.ty, &format!("{kernel:?}"), &out, &f.want);
        }
    }
}

#[test]
fn chunked_walk_matches_gguf_py() {
    for ty in GgmlType::ALL {
        let Some(f) = load(ty) else { continue };
        // Three blocks per chunk: several chunks and a short last one for most fixtures.
        let mut chunks =
            DequantChunks::with_chunk_bytes(ty, &f.raw, 3 * ty.type_size() as usize).unwrap();
        let mut buf = Vec::new();
        let mut all = Vec::with_capacity(f.want.len());
        let mut next_first = 0u64;
        while let Some(c) = chunks.next_into(&mut buf) {
            assert_eq!(c.first, next_first, "{ty}");
            next_first += c.values.len() as u64;
            all.extend_from_slice(c.values);
        }
        assert_bits(ty, "chunked", &all, &f.want);
    }
}

#[test]
fn output_len_agrees_with_fixtures() {
    for ty in GgmlType::ALL {
        let Some(f) = load(ty) else { continue };
        assert_eq!(output_len(ty, f.raw.len()), Ok(f.want.len()), "{ty}");
    }
}

#[test]
fn type_table_matches_gguf_py() {
    let text = std::fs::read_to_string(dir().join("table.txt")).unwrap();
    let mut seen = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let id: u32 = f[0].parse().unwrap();
        let ty = GgmlType::from_id(id).unwrap_or_else(|e| panic!("gguf-py type {}: {e}", f[1]));
        assert_eq!(ty.name(), f[1]);
        assert_eq!(ty.block_size().to_string(), f[2], "{ty} block size");
        if ty == GgmlType::Q8_1 {
            // gguf-py 0.19 lists 40 bytes (f32 scale and sum, an old layout); ggml's C code
            // defines and static_asserts 36 (two f16 and 32 quants), which is what files use.
            // If gguf-py is fixed, this fails and the exception should go.
            assert_eq!((ty.type_size(), f[3]), (36, "40"), "Q8_1 type size");
            seen.push(ty);
            continue;
        }
        assert_eq!(ty.type_size().to_string(), f[3], "{ty} type size");
        seen.push(ty);
    }
    seen.sort();
    let mut all = GgmlType::ALL.to_vec();
    all.sort();
    assert_eq!(seen, all, "our table and gguf-py's list different types");
}
