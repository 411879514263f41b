//! Small synthetic vocabularies written with mm-gguf's writer.
#![allow(dead_code)]

use mm_gguf::{GgufWriter, MetaValue, ValueType};

/// A vocabulary under construction: pieces with type and score.
#[derive(Default)]
pub struct VocabSpec {
    pub model: String,
    pub pre: Option<String>,
    pub tokens: Vec<(String, i32, f32)>,
    pub merges: Option<Vec<String>>,
    pub extra: Vec<(String, MetaValue)>,
}

impl VocabSpec {
    pub fn new(model: &str) -> Self {
        VocabSpec {
            model: model.into(),
            ..Default::default()
        }
    }
    pub fn token(&mut self, text: &str, ty: i32, score: f32) -> u32 {
        self.tokens.push((text.into(), ty, score));
        self.tokens.len() as u32 - 1
    }
    pub fn key(&mut self, k: &str, v: MetaValue) -> &mut Self {
        self.extra.push((k.into(), v));
        self
    }
    pub fn bytes(&self) -> Vec<u8> {
        let mut w = GgufWriter::new();
        w.add_metadata(
            "tokenizer.ggml.model",
            MetaValue::String(self.model.clone()),
        )
        .unwrap();
        if let Some(p) = &self.pre {
            w.add_metadata("tokenizer.ggml.pre", MetaValue::String(p.clone()))
                .unwrap();
        }
        w.add_metadata(
            "tokenizer.ggml.tokens",
            MetaValue::strings(self.tokens.iter().map(|t| t.0.clone())),
        )
        .unwrap();
        w.add_metadata(
            "tokenizer.ggml.token_type",
            MetaValue::Array(
                ValueType::I32,
                self.tokens.iter().map(|t| MetaValue::I32(t.1)).collect(),
            ),
        )
        .unwrap();
        w.add_metadata(
            "tokenizer.ggml.scores",
            MetaValue::Array(
                ValueType::F32,
                self.tokens.iter().map(|t| MetaValue::F32(t.2)).collect(),
            ),
        )
        .unwrap();
        if let Some(m) = &self.merges {
            w.add_metadata("tokenizer.ggml.merges", MetaValue::strings(m.clone()))
                .unwrap();
        }
        for (k, v) in &self.extra {
            w.add_metadata(k.clone(), v.clone()).unwrap();
        }
        w.to_bytes().unwrap()
    }
}

pub const NORMAL: i32 = 1;
pub const UNKNOWN: i32 = 2;
pub const CONTROL: i32 = 3;
pub const USER: i32 = 4;
pub const BYTE: i32 = 6;

/// A SentencePiece-style vocabulary: `<unk> <s> </s> <start_of_turn> <|user|>`, the 256
/// byte tokens, then pieces enough for "hello world".
pub fn spm(with_bytes: bool) -> VocabSpec {
    let mut v = VocabSpec::new("llama");
    v.token("<unk>", UNKNOWN, 0.0);
    v.token("<s>", CONTROL, 0.0);
    v.token("</s>", CONTROL, 0.0);
    v.token("<start_of_turn>", CONTROL, 0.0);
    v.token("<|user|>", USER, 0.0);
    if with_bytes {
        for b in 0..=255u8 {
            v.token(&format!("<0x{b:02X}>"), BYTE, 0.0);
        }
    }
    for (p, s) in [
        ("▁", -1.0),
        ("h", -2.0),
        ("e", -2.0),
        ("l", -2.0),
        ("o", -2.0),
        ("w", -2.0),
        ("r", -2.0),
        ("d", -2.0),
        ("▁h", -1.5),
        ("he", -1.4),
        ("ll", -1.3),
        ("▁he", -1.2),
        ("▁hell", -1.1),
        ("▁hello", -1.0),
        ("▁w", -1.5),
        ("or", -1.4),
        ("▁wor", -1.2),
        ("ld", -1.3),
        ("▁world", -1.0),
        ("▁▁", -3.0),
    ] {
        v.token(p, NORMAL, s);
    }
    v
}

/// GPT-2's byte-to-character table (printable Latin-1 as itself, the rest from U+0100).
pub fn byte_char(b: u8) -> char {
    let printable = |x: u8| matches!(x, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return b as char;
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).unwrap()
}

/// A byte-level BPE vocabulary: the 256 byte characters (minus `z`), a few merges and
/// `<|endoftext|>`.
pub fn bpe(pre: &str) -> VocabSpec {
    let mut v = VocabSpec::new("gpt2");
    v.pre = Some(pre.into());
    for b in 0..=255u8 {
        if b != b'z' {
            v.token(&byte_char(b).to_string(), NORMAL, 0.0);
        }
    }
    for t in [
        "he", "the", "Ġt", "Ġthe", "Ġw", "or", "Ġwor", "ld", "Ġworld", "Ġ1",
    ] {
        v.token(t, NORMAL, 0.0);
    }
    v.token("<|endoftext|>", CONTROL, 0.0);
    v.merges = Some(
        [
            "h e", "Ġ t", "t he", "Ġt he", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "x zz",
            "noSpace", "Ġ 1",
        ]
        .map(String::from)
        .to_vec(),
    );
    v
}
