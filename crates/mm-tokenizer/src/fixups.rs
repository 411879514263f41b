//! Attribute fix-ups llama.cpp applies after reading `token_type`, so that the same
//! tokens are matched as special in text (they change encoding, not just decoding).

use mm_gguf::Gguf;

use crate::attr::TokenAttr;
use crate::vocab::{TokenId, Vocab};

/// Texts that end generation: marked as control tokens whatever their stored type.
const END_OF_GENERATION: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Fill-in-the-middle texts, marked as control when their id key is absent.
const FIM: &[(&str, &[&str])] = &[
    (
        "tokenizer.ggml.fim_pre_token_id",
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<｜fim▁begin｜>",
            "<PRE>",
            "▁<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
    ),
    (
        "tokenizer.ggml.fim_suf_token_id",
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<｜fim▁hole｜>",
            "<SUF>",
            "▁<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
    ),
    (
        "tokenizer.ggml.fim_mid_token_id",
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<｜fim▁end｜>",
            "<MID>",
            "▁<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
    ),
    (
        "tokenizer.ggml.fim_pad_token_id",
        &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    ),
    (
        "tokenizer.ggml.fim_rep_token_id",
        &[
            "<|fim_repo|>",
            "<|repo_name|>",
            "<fim-repo>",
            "<REPO>",
            "<reponame>",
        ],
    ),
    ("tokenizer.ggml.fim_sep_token_id", &["<|file_sep|>"]),
];

pub(crate) fn apply(v: &mut Vocab, g: &Gguf<'_>) {
    let file = g.bytes();
    let id = |v: &Vocab, t: &str| v.token_id(file, t);
    let set = |v: &mut Vocab, i: TokenId, f: &dyn Fn(TokenAttr) -> TokenAttr| {
        if let Some(a) = v.attrs.get_mut(i as usize) {
            *a = f(*a);
        }
    };
    let control = |a: TokenAttr| a.with(TokenAttr::CONTROL);
    for (key, texts) in FIM {
        if g.get(key).is_none() {
            for t in *texts {
                if let Some(i) = id(v, t) {
                    set(v, i, &control);
                }
            }
        }
    }
    // Control tokens named "unused" are unused.
    let unused: Vec<TokenId> = crate::attr::ids_with_any(&v.attrs, TokenAttr::CONTROL)
        .filter(|&i| contains(v.text(file, i), b"unused"))
        .collect();
    for i in unused {
        let a = &mut v.attrs[i as usize];
        *a = a.with(TokenAttr::UNUSED);
    }
    for t in END_OF_GENERATION {
        if let Some(i) = id(v, t) {
            set(v, i, &control);
        }
    }
    // gpt-oss renders these.
    for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
        if let Some(i) = id(v, t) {
            set(v, i, &|_| TokenAttr::USER_DEFINED);
        }
    }
    let has = |v: &Vocab, t: &str| id(v, t).is_some();
    // o200k_harmony / solar-open: `<|end|>` is not the end of generation.
    let call = has(v, "<|call|>") || has(v, "<|calls|>");
    if let Some(end) = id(v, "<|end|>")
        && call
        && (has(v, "<|return|>") || has(v, "<|flush|>"))
    {
        set(v, end, &|_| TokenAttr::USER_DEFINED);
    }
    // Gemma 4 and PLaMo have an ordinary `</s>`.
    if let Some(s) = id(v, "</s>")
        && (has(v, "<|tool_response>") || has(v, "<|plamo:eos|>"))
    {
        set(v, s, &|_| TokenAttr::NORMAL);
    }
    per_model(v, g);
}

/// Strip flags llama.cpp sets by model or pre-tokenizer name.
fn per_model(v: &mut Vocab, g: &Gguf<'_>) {
    let file = g.bytes();
    let s = |k: &str| g.get(k).and_then(|x| x.as_str()).unwrap_or("");
    let name = s("general.name").to_ascii_lowercase();
    let pre = s("tokenizer.ggml.pre");
    let arch = s("general.architecture");
    let mut set = |t: &str, a: TokenAttr, on: bool| {
        if let Some(i) = v.token_id(file, t) {
            let cur = v.attrs[i as usize];
            v.attrs[i as usize] = if on { cur.with(a) } else { cur.without(a) };
        }
    };
    let any = |s: &str, subs: &[&str]| subs.iter().any(|x| s.contains(x));
    if any(pre, &["jina-v2-de", "jina-v2-es", "jina-v2-code"])
        || any(arch, &["nomic-bert-moe", "jina-bert-v3"])
    {
        set("<mask>", TokenAttr::LSTRIP, true);
    } else if any(&name, &["phi-3", "phi3"]) {
        for a in v.attrs.iter_mut() {
            if a.is_special() {
                *a = a.with(TokenAttr::RSTRIP);
            }
        }
        let mut set = |t: &str, on: bool| {
            if let Some(i) = v.token_id(file, t) {
                let cur = v.attrs[i as usize];
                v.attrs[i as usize] = if on {
                    cur.with(TokenAttr::RSTRIP)
                } else {
                    cur.without(TokenAttr::RSTRIP)
                };
            }
        };
        set("</s>", true);
        for t in ["<unk>", "<s>", "<|endoftext|>"] {
            set(t, false);
        }
    } else if name.contains("modern-bert") {
        set("[MASK]", TokenAttr::LSTRIP, true);
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
