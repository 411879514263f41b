//! The small valid model the CLI's and the MCP server's tests run on (shared by
//! `tests/cli.rs` and `src/mcp.rs`'s unit tests through `#[path]`).

use std::path::{Path, PathBuf};

use mm_gguf::{GgufWriter, MetaValue, types::GgmlType};

/// Writes `tiny.gguf` into `dir`: one 64x4 F32 tensor `w` and a 1000-string
/// `tokenizer.ggml.tokens` array; returns its path and the tensor's values.
pub fn model(dir: &Path) -> (PathBuf, Vec<f32>) {
    let values: Vec<f32> = (0..256).map(|i| i as f32 * 0.5 - 3.0).collect();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", MetaValue::String("tiny".into()))
        .unwrap();
    w.add_metadata(
        "tokenizer.ggml.tokens",
        MetaValue::strings((0..1000).map(|i| format!("t{i}"))),
    )
    .unwrap();
    w.add_tensor("w", GgmlType::F32, &[64, 4], &bytes).unwrap();
    let p = dir.join("tiny.gguf");
    w.write_file(&p).unwrap();
    (p, values)
}
