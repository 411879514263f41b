//! Every tensor of the real Gemma 3 270M model dequantizes bit-identically to gguf-py.
//!
//! Skips (saying so) unless `MM_GGUF_TEST_MODEL` (the model) and `MM_PYTHON` (a python with
//! gguf==0.19.0 and numpy, e.g. the venv `.ci/python.sh` makes) are set; with
//! `MM_GGUF_REQUIRE_REFERENCE` set, skipping is a failure. The python side is
//! `scripts/dequant_real_model.py`, which prints per-tensor digests of gguf-py's output; this
//! test computes the same digests over ours, for the fast and the scalar kernels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mm_gguf::MappedGguf;
use mm_gguf::quant::{DequantChunks, Kernel};

fn env_path(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                std::env::var_os("MM_GGUF_REQUIRE_REFERENCE").is_none(),
                "MM_GGUF_REQUIRE_REFERENCE is set but {var} is not"
            );
            eprintln!(
                "SKIPPED: {var} is not set; `export MM_GGUF_TEST_MODEL=$(bash .ci/python.sh) \
                 MM_PYTHON=$PWD/.venv/bin/python` to run this test"
            );
            None
        }
    }
}

/// `(H1, H2)` as documented in `scripts/dequant_real_model.py`, accumulated chunk by chunk.
#[derive(Default, PartialEq, Eq, Debug)]
struct Digest {
    n: u64,
    h1: u64,
    h2: u64,
}

impl Digest {
    fn add(&mut self, first: u64, values: &[f32]) {
        assert_eq!(first, self.n, "chunks arrive in order");
        for (i, v) in values.iter().enumerate() {
            let b = u64::from(v.to_bits());
            let odd = (first + i as u64).wrapping_mul(2).wrapping_add(1);
            self.h1 = self.h1.wrapping_add(b.wrapping_mul(odd));
            self.h2 = self.h2.wrapping_add(b.wrapping_mul(b));
        }
        self.n += values.len() as u64;
    }
}

fn gguf_py_digests(python: &Path, model: &Path) -> BTreeMap<String, (String, Digest)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dequant_real_model.py");
    let out = Command::new(python)
        .arg(script)
        .arg(model)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "dequant_real_model.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 5, "bad line {line:?}");
            let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
            let d = Digest {
                n: f[2].parse().unwrap(),
                h1: hex(f[3]),
                h2: hex(f[4]),
            };
            (f[0].to_string(), (f[1].to_string(), d))
        })
        .collect()
}

#[test]
fn every_tensor_matches_gguf_py() {
    let (Some(model), Some(python)) = (env_path("MM_GGUF_TEST_MODEL"), env_path("MM_PYTHON"))
    else {
        return;
    };
    let want = gguf_py_digests(&python, &model);
    // SAFETY: the test model is never modified while the tests run.
    let m = unsafe { MappedGguf::open(&model) }.unwrap();
    let g = m.gguf();
    assert_eq!(want.len(), g.n_tensors(), "tensor count");
    let mut buf = Vec::new();
    for t in g.tensors() {
        let (ty_name, digest) = want
            .get(t.name())
            .unwrap_or_else(|| panic!("{} not in gguf-py", t.name()));
        assert_eq!(t.ggml_type().name(), ty_name, "{}", t.name());
        for kernel in [Kernel::Fast, Kernel::Scalar] {
            let mut ours = Digest::default();
            let chunks = DequantChunks::new(t.ggml_type(), t.data)
                .unwrap()
                .with_kernel(kernel);
            chunks
                .for_each(&mut buf, |c| {
                    ours.add(c.first, c.values);
                    Ok::<(), ()>(())
                })
                .unwrap();
            assert_eq!(&ours, digest, "{} ({}, {kernel:?})", t.name(), ty_name);
        }
    }
}
