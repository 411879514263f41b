//! `mm tokenize`: the model's own tokenizer on a text.

use std::io::Read;
use std::path::Path;

use mm_tokenizer::{EncodeOptions, Vocab};
use serde_json::json;

use crate::Fail;

/// A piece as people read it: the stored spelling, with control characters escaped.
fn shown(piece: &[u8]) -> String {
    String::from_utf8_lossy(piece).escape_debug().to_string()
}

/// `mm tokenize`.
pub fn run(
    path: &Path,
    text: Option<String>,
    add_special: bool,
    parse_special: bool,
    as_json: bool,
) -> Result<(), Fail> {
    let text = match text {
        Some(t) => t,
        None => {
            let mut t = String::new();
            std::io::stdin()
                .read_to_string(&mut t)
                .map_err(|e| Fail::file(format!("stdin: {e}")))?;
            t
        }
    };
    let m = crate::commands::open_mapped(path)?;
    let vocab =
        Vocab::from_gguf(m.gguf()).map_err(|e| Fail::file(format!("{}: {e}", path.display())))?;
    let tok = vocab
        .tokenizer(m.gguf())
        .map_err(|e| Fail::file(format!("{}: {e}", path.display())))?;
    let opts = EncodeOptions::new()
        .with_add_special(add_special)
        .with_parse_special(parse_special);
    let ids = tok.encode(&text, opts);
    let pieces: Vec<String> = ids
        .iter()
        .map(|&id| String::from_utf8_lossy(tok.piece(id).unwrap_or_default()).into_owned())
        .collect();
    if as_json {
        let v = json!({
            "ids": ids, "pieces": pieces, "count": ids.len(), "bytes": text.len(),
            "model": format!("{:?}", vocab.model()),
            "pre_tokenizer": vocab.pre_tokenizer().map(|p| format!("{p:?}")),
            "vocab_size": vocab.len(), "index_heap_bytes": vocab.heap_bytes(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        for &id in &ids {
            println!("{id}\t{}", shown(tok.piece(id).unwrap_or_default()));
        }
        println!("{} tokens ({} bytes of text)", ids.len(), text.len());
    }
    Ok(())
}
