//! Shared helpers for the cross-checks against gguf-py (`scripts/dump_gguf.py`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use mm_gguf::{Gguf, Value, ValueType};
use serde_json::{Value as Json, json};

/// The real model, or `None` (with a message saying how to enable the test).
pub fn real_model() -> Option<PathBuf> {
    match std::env::var_os("MM_GGUF_TEST_MODEL") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                std::env::var_os("MM_GGUF_REQUIRE_REFERENCE").is_none(),
                "MM_GGUF_REQUIRE_REFERENCE is set but MM_GGUF_TEST_MODEL is not"
            );
            eprintln!(
                "SKIPPED: MM_GGUF_TEST_MODEL is not set. Run `bash .ci/gguf-reference.sh`, or \
                 `export MM_GGUF_TEST_MODEL=$(bash .ci/python.sh) MM_PYTHON=$PWD/.venv/bin/python`"
            );
            None
        }
    }
}

/// The venv python with gguf-py, or `None` (with a message).
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("MM_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                std::env::var_os("MM_GGUF_REQUIRE_REFERENCE").is_none(),
                "MM_GGUF_REQUIRE_REFERENCE is set but MM_PYTHON is not"
            );
            eprintln!("SKIPPED: MM_PYTHON is not set (the venv python made by .ci/python.sh)");
            None
        }
    }
}

pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// Runs `dump_gguf.py` on `file` with `python` and parses its JSON.
pub fn gguf_py_dump(python: &Path, file: &Path) -> Json {
    let out = Command::new(python)
        .arg(script("dump_gguf.py"))
        .arg(file)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "dump_gguf.py failed on {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("dump_gguf.py printed JSON")
}

fn types_of(v: &Value<'_>, out: &mut Vec<u32>) {
    out.push(v.value_type().id());
    if let Value::Array(a) = v
        && let Some(first) = a.get(0)
    {
        types_of(&first.expect("element"), out);
    }
}

fn flatten(v: &Value<'_>, out: &mut Vec<Json>) {
    match v {
        Value::Array(a) => {
            for e in a.iter() {
                flatten(&e.expect("element decodes"), out);
            }
        }
        s => out.push(scalar(s)),
    }
}

fn scalar(v: &Value<'_>) -> Json {
    match *v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::F32(x) => json!(x.to_bits()),
        Value::Bool(x) => json!(x),
        Value::String(s) => json!(s),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F64(x) => json!(x.to_bits()),
        Value::Array(_) => unreachable!(),
    }
}

/// Our parse in `dump_gguf.py`'s format.
pub fn our_dump(g: &Gguf<'_>) -> Json {
    let metadata: Vec<Json> = g
        .metadata()
        .iter()
        .map(|m| {
            let mut types = Vec::new();
            types_of(&m.value, &mut types);
            let value = if m.value.value_type() == ValueType::Array {
                let mut items = Vec::new();
                flatten(&m.value, &mut items);
                Json::Array(items)
            } else {
                scalar(&m.value)
            };
            json!({"key": m.key, "offset": m.offset, "types": types, "value": value})
        })
        .collect();
    let tensors: Vec<Json> = g
        .tensors()
        .map(|t| {
            json!({
                "name": t.name(), "type": t.ggml_type().id(), "shape": t.shape(),
                "n_elements": t.n_elements(), "n_bytes": t.n_bytes(), "data_offset": t.file_offset,
            })
        })
        .collect();
    json!({
        "version": g.version(), "alignment": g.alignment(), "data_offset": g.data_offset(),
        "metadata": metadata, "tensors": tensors,
    })
}

/// Asserts our parse equals gguf-py's, entry by entry (for readable failures).
pub fn assert_same(ours: &Json, theirs: &Json) {
    for k in ["version", "alignment", "data_offset"] {
        assert_eq!(ours[k], theirs[k], "{k} differs");
    }
    for list in ["metadata", "tensors"] {
        let (a, b) = (
            ours[list].as_array().unwrap(),
            theirs[list].as_array().unwrap(),
        );
        assert_eq!(a.len(), b.len(), "{list} count differs");
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x, y, "{list} entry differs");
        }
    }
}
