//! Synthetic fixtures parsed both ways:
//! - files written by gguf-py (`scripts/make_fixtures.py`) parse here exactly as gguf-py's
//!   reader sees them (the committed `.json` next to each), and our writer re-creates them
//!   byte for byte;
//! - a file written by our writer (`mm_writer.gguf`, every value type, tensors of every
//!   type but Q8_1, alignment 16, version 2) is read by gguf-py (`mm_writer.json`) exactly as we wrote it.
//!
//! With MM_PYTHON set the gguf-py side is re-run live instead of trusting the committed JSON.
//! MM_REGEN_FIXTURES=1 rewrites `mm_writer.gguf` and its JSON (needs MM_PYTHON).

mod common;

use std::fs;
use std::io::Cursor;

use mm_gguf::{
    Gguf, GgufWriter, MetaValue, StreamValue, StreamingGguf, ValueType, types::GgmlType,
};
use serde_json::Value as Json;

const GGUF_PY_FIXTURES: [&str; 3] = ["gguf_py_metadata", "gguf_py_tensors", "gguf_py_align64"];

fn fixture(name: &str) -> (Vec<u8>, Json) {
    let dir = common::fixtures().join("gguf");
    let bytes = fs::read(dir.join(format!("{name}.gguf"))).expect("fixture");
    let json =
        serde_json::from_str(&fs::read_to_string(dir.join(format!("{name}.json"))).expect("json"))
            .unwrap();
    (bytes, json)
}

#[test]
fn gguf_py_fixtures_parse_as_gguf_py_reads_them() {
    for name in GGUF_PY_FIXTURES {
        let (bytes, theirs) = fixture(name);
        let g = Gguf::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        common::assert_same(&common::our_dump(&g), &theirs);
    }
}

/// Re-writes a parsed file with our writer.
fn rewrite(g: &Gguf<'_>) -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.version(g.version()).unwrap();
    for m in g.metadata() {
        w.add_metadata(m.key, MetaValue::from_value(m.value).unwrap())
            .unwrap();
    }
    for t in g.tensors() {
        w.add_tensor(t.name(), t.ggml_type(), t.shape(), t.data)
            .unwrap();
    }
    w.to_bytes().unwrap()
}

#[test]
fn our_writer_recreates_gguf_py_files_byte_for_byte() {
    for name in GGUF_PY_FIXTURES {
        let (bytes, _) = fixture(name);
        let g = Gguf::parse(&bytes).unwrap();
        assert!(
            rewrite(&g) == bytes,
            "{name}: rewritten file differs from gguf-py's"
        );
    }
}

#[test]
fn streaming_reader_agrees_with_the_mapped_parser() {
    for name in GGUF_PY_FIXTURES.iter().copied().chain(["mm_writer"]) {
        let (bytes, _) = fixture(name);
        let g = Gguf::parse(&bytes).unwrap();
        let mut s = StreamingGguf::open(Cursor::new(&bytes)).unwrap();
        assert_eq!(s.data_offset(), g.data_offset(), "{name}");
        assert_eq!(s.metadata().len(), g.metadata().len());
        for ((key, sv), m) in s.metadata().iter().zip(g.metadata()) {
            assert_eq!(key, m.key);
            match sv {
                StreamValue::Inline(v) => {
                    assert_eq!(*v, MetaValue::from_value(m.value).unwrap(), "{key}")
                }
                StreamValue::Deferred { len, offset, .. } => match m.value {
                    mm_gguf::Value::Array(a) => {
                        assert_eq!((*len, *offset), (a.len(), a.offset()), "{key}")
                    }
                    mm_gguf::Value::String(st) => assert_eq!(*len, st.len() as u64, "{key}"),
                    _ => panic!("{key}: scalar deferred"),
                },
            }
        }
        let infos: Vec<_> = s
            .tensors()
            .iter()
            .map(|t| format!("{:?}", t.info()))
            .collect();
        let want: Vec<_> = g.tensor_infos().iter().map(|t| format!("{t:?}")).collect();
        assert_eq!(infos, want, "{name}");
        let mut streamed = Vec::new();
        s.for_each_tensor(|_, _, chunk| {
            streamed.extend_from_slice(chunk);
            Ok(())
        })
        .unwrap();
        let mut mapped: Vec<_> = g.tensors().collect();
        mapped.sort_by_key(|t| t.offset());
        assert_eq!(
            streamed,
            mapped
                .iter()
                .flat_map(|t| t.data.iter().copied())
                .collect::<Vec<u8>>(),
            "{name}"
        );
    }
}

/// Deterministic bytes (xorshift), with every 2-byte f16 scale slot kept finite by the
/// callers that need it: raw blocks are all we need to test parsing.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// The writer-made fixture: every value type, tensors of every ggml type.
fn mm_writer_file() -> Vec<u8> {
    use MetaValue as M;
    let mut w = GgufWriter::new();
    w.version(2).unwrap().alignment(16).unwrap();
    let scalars = [
        ("u8", M::U8(7)),
        ("i8", M::I8(-7)),
        ("u16", M::U16(65_000)),
        ("i16", M::I16(-32_000)),
        ("u32", M::U32(u32::MAX)),
        ("i32", M::I32(i32::MIN)),
        ("f32", M::F32(f32::MIN_POSITIVE)),
        ("bool", M::Bool(true)),
        ("string", M::String("zero-copy ✓".into())),
        ("u64", M::U64(u64::MAX)),
        ("i64", M::I64(i64::MIN)),
        ("f64", M::F64(std::f64::consts::PI)),
    ];
    for (name, v) in scalars.iter().cloned() {
        w.add_metadata(format!("mm.{name}"), v.clone()).unwrap();
        let t = v.value_type();
        w.add_metadata(format!("mm.array.{name}"), M::Array(t, vec![v.clone(), v]))
            .unwrap();
    }
    w.add_metadata(
        "mm.array.nested",
        M::Array(
            ValueType::Array,
            vec![
                M::Array(ValueType::I16, vec![M::I16(1), M::I16(-2)]),
                M::Array(ValueType::I16, vec![M::I16(3)]),
            ],
        ),
    )
    .unwrap();
    let mut blobs = Vec::new();
    // Q8_1 is left out: gguf-py 0.19's size table says 40 bytes a block, ggml (and so
    // llama.cpp and this crate) 36; gguf-py would misread the tensors after it.
    for (i, ty) in GgmlType::ALL
        .iter()
        .enumerate()
        .filter(|(_, t)| **t != GgmlType::Q8_1)
    {
        let shape = [u64::from(ty.block_size()) * 2, 3];
        blobs.push((
            *ty,
            shape,
            noise(ty.tensor_bytes(&shape).unwrap() as usize, i as u64 + 1),
        ));
    }
    for (ty, shape, data) in &blobs {
        w.add_tensor(format!("t.{}", ty.name()), *ty, shape, data)
            .unwrap();
    }
    w.to_bytes().unwrap()
}

#[test]
fn gguf_py_reads_our_writer_as_we_wrote_it() {
    let dir = common::fixtures().join("gguf");
    let bytes = mm_writer_file();
    let python = std::env::var_os("MM_PYTHON").map(std::path::PathBuf::from);
    if std::env::var_os("MM_REGEN_FIXTURES").is_some() {
        let python = python.as_ref().expect("MM_REGEN_FIXTURES needs MM_PYTHON");
        fs::write(dir.join("mm_writer.gguf"), &bytes).unwrap();
        let dump = common::gguf_py_dump(python, &dir.join("mm_writer.gguf"));
        fs::write(
            dir.join("mm_writer.json"),
            serde_json::to_string_pretty(&dump).unwrap() + "\n",
        )
        .unwrap();
    }
    let (committed, theirs) = fixture("mm_writer");
    assert!(
        committed == bytes,
        "the writer's output changed; regenerate with MM_REGEN_FIXTURES=1 if intended"
    );
    let ours = common::our_dump(&Gguf::parse(&bytes).unwrap());
    common::assert_same(&ours, &theirs);
    match python {
        Some(py) => {
            let tmp = tempfile::NamedTempFile::new().unwrap();
            fs::write(tmp.path(), &bytes).unwrap();
            common::assert_same(&ours, &common::gguf_py_dump(&py, tmp.path()));
        }
        None => eprintln!("MM_PYTHON unset: compared with the committed gguf-py dump only"),
    }
}

#[test]
fn gguf_py_fixtures_match_a_live_gguf_py_run() {
    let Some(py) = common::python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(&py)
        .arg(common::script("make_fixtures.py"))
        .arg(tmp.path())
        .status()
        .expect("run make_fixtures.py");
    assert!(status.success());
    for name in GGUF_PY_FIXTURES {
        let fresh = fs::read(tmp.path().join(format!("{name}.gguf"))).unwrap();
        let (committed, theirs) = fixture(name);
        assert!(
            fresh == committed,
            "{name}: gguf-py now writes different bytes than the committed fixture"
        );
        common::assert_same(&common::our_dump(&Gguf::parse(&fresh).unwrap()), &theirs);
    }
}

#[test]
fn streaming_visits_deferred_arrays_element_by_element() {
    for name in ["gguf_py_metadata", "mm_writer"] {
        let (bytes, _) = fixture(name);
        let g = Gguf::parse(&bytes).unwrap();
        let mut s = StreamingGguf::open(Cursor::new(&bytes)).unwrap();
        let keys: Vec<String> = s.metadata().iter().map(|(k, _)| k.clone()).collect();
        let mut visited = 0;
        for key in keys {
            let Some(a) = g.get(&key).and_then(|v| v.as_array()) else {
                continue;
            };
            if a.element_type() == ValueType::Array {
                assert!(matches!(
                    s.visit_array(&key, |_, _| Ok(())),
                    Err(mm_gguf::GgufError::WrongType { .. })
                ));
                continue;
            }
            let want: Vec<MetaValue> = a
                .iter()
                .map(|v| MetaValue::from_value(v.unwrap()).unwrap())
                .collect();
            let mut got = Vec::new();
            s.visit_array(&key, |i, v| {
                assert_eq!(i as usize, got.len());
                got.push(MetaValue::from_value(v)?);
                Ok(())
            })
            .unwrap();
            assert_eq!(got, want, "{name}: {key}");
            visited += 1;
        }
        assert!(visited >= 10, "{name}: only {visited} arrays visited");
    }
}
