//! Tests against the real Gemma 3 270M model. They skip (saying so) unless
//! MM_GGUF_TEST_MODEL is set; `.ci/gguf-reference.sh` sets it and fails if the model is missing.

mod common;

use mm_gguf::{Gguf, MappedGguf};

#[test]
fn real_model_has_the_documented_shape() {
    let Some(path) = common::real_model() else {
        return;
    };
    // SAFETY: the test model is never modified while the tests run.
    let m = unsafe { MappedGguf::open(&path) }.unwrap();
    let g = m.gguf();
    assert_eq!(g.n_tensors(), 236);
    assert_eq!(g.get_str("general.architecture").unwrap(), "gemma3");
    let tokens = g.get_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 262_144);
    assert_eq!(
        tokens.strings().unwrap().filter(|s| s.is_ok()).count(),
        262_144
    );
    let mut by_type = std::collections::BTreeMap::new();
    for t in g.tensors() {
        *by_type.entry(t.ggml_type().name()).or_insert(0) += 1;
        assert_eq!(t.data.len() as u64, t.n_bytes());
    }
    let want: std::collections::BTreeMap<_, _> = [
        ("F32", 109),
        ("Q5_0", 81),
        ("Q4_K", 27),
        ("Q8_0", 10),
        ("Q6_K", 9),
    ]
    .into_iter()
    .collect();
    assert_eq!(by_type, want);
}

#[test]
fn real_model_parses_identically_to_gguf_py() {
    let Some(path) = common::real_model() else {
        return;
    };
    let Some(python) = common::python() else {
        return;
    };
    let theirs = common::gguf_py_dump(&python, &path);
    let bytes = std::fs::read(&path).unwrap();
    let ours = common::our_dump(&Gguf::parse(&bytes).unwrap());
    common::assert_same(&ours, &theirs);
}

#[test]
fn every_truncation_of_the_real_header_is_a_typed_error() {
    let Some(path) = common::real_model() else {
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    let end = g.data_offset() as usize;
    // Cuts at a spread of points through the header and the data section.
    for cut in (0..end)
        .step_by(7919)
        .chain([end - 1, end + 1, bytes.len() - 1])
    {
        let err = Gguf::parse(&bytes[..cut]).unwrap_err();
        assert!(err.is_truncated(), "cut at {cut}: {err}");
        if cut > end {
            assert_eq!(
                err.missing_bytes(),
                Some((bytes.len() - cut) as u64),
                "cut at {cut}"
            );
        }
    }
}
