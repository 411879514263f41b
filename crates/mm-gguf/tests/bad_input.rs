//! The bad-input contract: every malformed file gives a typed error naming the offset and
//! the field; never a panic.

use mm_gguf::{Gguf, GgufError, GgufWriter, MetaValue, ValueType, inspect, types::GgmlType};

/// A hand-rolled little-endian byte builder for files the writer refuses to produce.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        let mut r = Raw::default();
        r.0.extend_from_slice(b"GGUF");
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s);
        self
    }
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key.as_bytes()).u32(ValueType::U32.id()).u32(v)
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name.as_bytes()).u32(dims.len() as u32);
        for d in dims {
            self.u64(*d);
        }
        self.u32(ty).u64(offset)
    }
    fn pad_to(&mut self, align: usize) -> &mut Self {
        while !self.0.len().is_multiple_of(align) {
            self.0.push(0);
        }
        self
    }
    fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
}

fn err(bytes: &[u8]) -> GgufError {
    // The streaming reader must refuse the same files, for the same reason at the same place.
    let streamed = mm_gguf::StreamingGguf::open(std::io::Cursor::new(bytes));
    match Gguf::parse(bytes) {
        Ok(_) => panic!("parse accepted a bad file"),
        Err(e) => {
            match &streamed {
                Ok(_) => panic!("streaming accepted a file the parser refused: {e}"),
                Err(s) => assert_eq!(
                    std::mem::discriminant(s),
                    std::mem::discriminant(&e),
                    "streaming: {s} / parse: {e}"
                ),
            }
            assert_eq!(
                streamed.as_ref().err().and_then(|s| s.offset()),
                e.offset(),
                "offsets: {e}"
            );
            // Every message is one line a person can act on.
            let msg = e.to_string();
            assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
            e
        }
    }
}

fn small_file() -> Vec<u8> {
    let data: Vec<u8> = (0..64u8).collect();
    let q8 = vec![0u8; 34 * 2];
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", MetaValue::String("test".into()))
        .unwrap();
    w.add_metadata("a.list", MetaValue::strings(["x", "yy", "zzz"]))
        .unwrap();
    w.add_metadata(
        "a.nested",
        MetaValue::Array(
            ValueType::Array,
            vec![MetaValue::Array(ValueType::U8, vec![MetaValue::U8(1)])],
        ),
    )
    .unwrap();
    w.add_tensor("t0", GgmlType::F32, &[4, 4], &data).unwrap();
    w.add_tensor("t1", GgmlType::Q8_0, &[64], &q8).unwrap();
    w.to_bytes().unwrap()
}

#[test]
fn wrong_magic_is_refused() {
    assert!(matches!(err(b"GGML\x03\0\0\0"), GgufError::BadMagic { .. }));
    assert!(matches!(err(b"\x7fELF"), GgufError::BadMagic { .. }));
    assert!(matches!(err(b"xy"), GgufError::BadMagic { .. }));
}

#[test]
fn empty_and_tiny_files_are_truncated_with_missing_counts() {
    assert_eq!(err(b"").missing_bytes(), Some(4));
    assert_eq!(err(b"GG").missing_bytes(), Some(2));
    let e = err(b"GGUF\x03\0");
    assert!(
        matches!(
            e,
            GgufError::Truncated {
                offset: 4,
                missing: 2,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn version_one_and_future_versions_are_refused() {
    for v in [0u32, 1, 4, 99] {
        let e = err(&Raw::header(v, 0, 0).0);
        assert!(
            matches!(e, GgufError::UnsupportedVersion { version } if version == v),
            "{e}"
        );
    }
    assert!(
        err(&Raw::header(1, 0, 0).0)
            .to_string()
            .contains("version 1")
    );
}

#[test]
fn big_endian_files_are_detected_and_refused() {
    // gguf-py --bigendian: the magic and every number byte-swapped.
    let mut be = b"FUGG".to_vec();
    be.extend_from_slice(&3u32.to_be_bytes());
    be.extend_from_slice(&[0; 16]);
    assert!(matches!(err(&be), GgufError::BigEndian { version: 3 }));
    // Little-endian magic bytes with a big-endian version (llama.cpp's writer).
    let mut mixed = b"GGUF".to_vec();
    mixed.extend_from_slice(&3u32.to_be_bytes());
    mixed.extend_from_slice(&[0; 16]);
    assert!(matches!(err(&mixed), GgufError::BigEndian { version: 3 }));
}

#[test]
fn huge_counts_are_refused_before_allocating() {
    let e = err(&Raw::header(3, 0, u64::MAX).0);
    assert!(
        matches!(
            e,
            GgufError::CountTooLarge {
                offset: 16,
                count: u64::MAX,
                ..
            }
        ),
        "{e}"
    );
    let e = err(&Raw::header(3, 1 << 60, 0).0);
    assert!(
        matches!(e, GgufError::CountTooLarge { offset: 8, .. }),
        "{e}"
    );
    assert!(e.is_truncated());
}

#[test]
fn string_length_past_the_end_names_offset_and_field() {
    let mut r = Raw::header(3, 0, 1);
    r.u64(1 << 40).zeros(8);
    let e = err(&r.0);
    assert!(
        matches!(&e, GgufError::Truncated { offset: 32, field, .. } if field.contains("metadata #0 key")),
        "{e}"
    );
    assert_eq!(e.missing_bytes(), Some((1u64 << 40) - 8));
}

#[test]
fn array_lengths_past_the_end_are_refused() {
    let mut r = Raw::header(3, 0, 1);
    r.str(b"arr")
        .u32(ValueType::Array.id())
        .u32(ValueType::U64.id())
        .u64(u64::MAX / 4);
    let e = err(&r.0);
    assert!(
        matches!(&e, GgufError::CountTooLarge { field, .. } if field.contains("'arr'")),
        "{e}"
    );
    // A string array whose 3rd string runs past the end.
    let mut r = Raw::header(3, 0, 1);
    r.str(b"toks")
        .u32(ValueType::Array.id())
        .u32(ValueType::String.id())
        .u64(3);
    r.str(b"a").str(b"b").u64(100).zeros(10);
    let e = err(&r.0);
    assert!(matches!(e, GgufError::Truncated { missing: 90, .. }), "{e}");
}

#[test]
fn nested_array_bombs_hit_the_depth_limit() {
    let nest = |depth: u32| {
        let mut r = Raw::header(3, 0, 1);
        r.str(b"bomb").u32(ValueType::Array.id());
        for _ in 0..depth - 1 {
            r.u32(ValueType::Array.id()).u64(1);
        }
        r.u32(ValueType::U8.id()).u64(1);
        r.0.push(7);
        r.0
    };
    let ok = nest(mm_gguf::MAX_ARRAY_DEPTH);
    let g = Gguf::parse(&ok).unwrap();
    assert_eq!(g.get_array("bomb").unwrap().len(), 1);
    let e = err(&nest(mm_gguf::MAX_ARRAY_DEPTH + 1));
    assert!(matches!(e, GgufError::NestingTooDeep { .. }), "{e}");
    // Deep enough to overflow the stack if the walk were unbounded.
    let e = err(&nest(100_000));
    assert!(matches!(e, GgufError::NestingTooDeep { .. }), "{e}");
}

#[test]
fn unknown_value_type_is_refused() {
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(13).u32(0);
    let e = err(&r.0);
    assert!(
        matches!(
            e,
            GgufError::UnknownValueType {
                type_id: 13,
                offset: 33,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn invalid_utf8_keys_are_refused() {
    let mut r = Raw::header(3, 0, 1);
    r.str(&[0xc3, 0x28]).u32(0).zeros(1);
    assert!(matches!(
        err(&r.0),
        GgufError::InvalidUtf8 { offset: 32, .. }
    ));
}

#[test]
fn bad_alignment_values_are_refused() {
    for a in [0u32, 3, 48] {
        let mut r = Raw::header(3, 0, 1);
        r.kv_u32("general.alignment", a);
        assert!(
            matches!(err(&r.0), GgufError::BadAlignment { .. }),
            "alignment {a}"
        );
    }
    let mut r = Raw::header(3, 0, 1);
    r.str(b"general.alignment").u32(ValueType::U64.id()).u64(32);
    assert!(err(&r.0).to_string().contains("uint32"));
}

#[test]
fn bad_shapes_are_refused() {
    let cases: [(&[u64], u32, &str); 5] = [
        (&[1, 1, 1, 1, 1], 0, "dimensions"),
        (&[u64::MAX], 0, "i64::MAX"),
        (&[1 << 32, 1 << 32], 0, "overflows"),
        (&[33], GgmlType::Q4_0.id(), "block size"),
        (&[1 << 62, 4], 0, "overflows"),
    ];
    for (dims, ty, needle) in cases {
        let mut r = Raw::header(3, 1, 0);
        r.tensor("t", dims, ty, 0);
        let e = err(&r.0);
        assert!(
            matches!(e, GgufError::BadShape { .. }) && e.to_string().contains(needle),
            "{dims:?}: {e}"
        );
    }
}

#[test]
fn unknown_and_removed_tensor_types_are_refused() {
    for ty in [4u32, 31, 1000] {
        let mut r = Raw::header(3, 1, 0);
        r.tensor("t", &[32], ty, 0);
        let e = err(&r.0);
        assert!(
            matches!(e, GgufError::UnknownTensorType { type_id, .. } if type_id == ty),
            "{e}"
        );
    }
}

#[test]
fn misaligned_tensor_offsets_are_refused() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[4], 0, 4).pad_to(32).zeros(64);
    let e = err(&r.0);
    assert!(
        matches!(
            e,
            GgufError::MisalignedTensor {
                data_offset: 4,
                alignment: 32,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn overlapping_tensors_are_refused() {
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[16], 0, 0)
        .tensor("b", &[16], 0, 32)
        .pad_to(32)
        .zeros(128);
    let e = err(&r.0);
    assert!(
        matches!(&e, GgufError::OverlappingTensors { first, second, .. } if first == "a" && second == "b"),
        "{e}"
    );
}

#[test]
fn duplicates_are_refused() {
    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("k", 1).kv_u32("k", 2);
    let e = err(&r.0);
    assert!(
        matches!(&e, GgufError::DuplicateKey { key, offset: 41 } if key == "k"),
        "{e}"
    );
    let mut r = Raw::header(3, 2, 0);
    r.tensor("t", &[8], 0, 0)
        .tensor("t", &[8], 0, 32)
        .pad_to(32)
        .zeros(64);
    assert!(matches!(err(&r.0), GgufError::DuplicateTensor { .. }));
}

#[test]
fn tensor_data_past_the_end_says_exactly_how_much_is_missing() {
    let full = small_file();
    let g = Gguf::parse(&full).unwrap();
    let data_end = g
        .tensor_infos()
        .iter()
        .map(|t| g.data_range(t).end)
        .max()
        .unwrap();
    for cut in [
        full.len() - 1,
        data_end as usize - 1,
        g.data_offset() as usize + 3,
    ] {
        if cut as u64 >= data_end {
            // Only the trailing padding is missing: the tensors are whole.
            assert!(Gguf::parse(&full[..cut]).is_ok());
            continue;
        }
        let e = err(&full[..cut]);
        assert_eq!(e.missing_bytes(), Some(data_end - cut as u64), "{e}");
        assert!(e.to_string().contains("truncated"), "{e}");
        // inspect still shows the whole header.
        let ins = inspect(&full[..cut]);
        assert!(ins.is_truncated());
        assert_eq!(ins.metadata.len(), 3);
        assert_eq!(ins.tensors.len(), 2);
    }
}

#[test]
fn every_prefix_of_a_valid_file_is_a_typed_error() {
    let full = small_file();
    assert!(Gguf::parse(&full).is_ok());
    let g = Gguf::parse(&full).unwrap();
    let data_end = g
        .tensor_infos()
        .iter()
        .map(|t| g.data_range(t).end)
        .max()
        .unwrap() as usize;
    for cut in 0..data_end {
        let e = err(&full[..cut]);
        assert!(e.is_truncated(), "cut {cut}: {e}");
        assert!(
            e.offset().is_some_and(|o| o <= full.len() as u64),
            "cut {cut}: {e}"
        );
        let ins = inspect(&full[..cut]);
        assert!(ins.error.is_some());
    }
}

#[test]
fn every_single_byte_corruption_is_handled() {
    let full = small_file();
    let g = Gguf::parse(&full).unwrap();
    let header_end = g.data_offset() as usize;
    for i in 0..header_end {
        for v in [0x00, 0xff, 0x80, 0x7f, full[i] ^ 1] {
            let mut bad = full.clone();
            bad[i] = v;
            // Ok or a typed error; never a panic (the harness would report one).
            if let Ok(g) = Gguf::parse(&bad) {
                for t in g.tensors() {
                    assert_eq!(t.data.len() as u64, t.n_bytes());
                }
                for m in g.metadata() {
                    if let Some(a) = m.value.as_array() {
                        a.iter().for_each(drop);
                    }
                }
            }
        }
    }
}

#[test]
fn long_invalid_utf8_strings_are_refused_by_both_readers() {
    for len in [5000usize, 70_000, 200_000] {
        // Multi-byte characters straddle the streaming reader's 64 KiB reads ...
        let mut text: Vec<u8> = "é".repeat(len / 2).into_bytes();
        let mut r = Raw::header(3, 0, 1);
        r.str(b"long").u32(ValueType::String.id()).str(&text);
        let g = Gguf::parse(&r.0).unwrap();
        assert_eq!(g.get_str("long").unwrap().len(), text.len());
        let s = mm_gguf::StreamingGguf::open(std::io::Cursor::new(&r.0)).unwrap();
        assert_eq!(s.metadata().len(), 1);
        // ... and one bad byte near the end is found by both.
        let at = text.len() - 3;
        text[at] = 0xff;
        let mut r = Raw::header(3, 0, 1);
        r.str(b"long").u32(ValueType::String.id()).str(&text);
        assert!(
            matches!(err(&r.0), GgufError::InvalidUtf8 { .. }),
            "len {len}"
        );
    }
}

#[test]
fn inspect_names_the_record_a_cut_falls_in() {
    let full = small_file();
    let g = Gguf::parse(&full).unwrap();
    // Two bytes before the third key starts: inside the last string of `a.list`.
    let cut = g.metadata()[2].offset as usize - 2;
    let ins = inspect(&full[..cut]);
    assert_eq!(ins.cut_in, Some("a.list"));
    assert_eq!(ins.metadata.len(), 1);
    // Inside the second tensor's info.
    let cut = g.tensor_infos()[1].info_offset() as usize + 12;
    let ins = inspect(&full[..cut]);
    assert_eq!(ins.cut_in, Some("t1"));
    assert_eq!(ins.tensors.len(), 1);
    // Inside a key itself: no name to give.
    let ins = inspect(&full[..g.metadata()[1].offset as usize + 9]);
    assert_eq!(ins.cut_in, None);
}
