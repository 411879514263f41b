//! Behaviour on small synthetic vocabularies (no downloaded files needed).

mod common;

use common::*;
use mm_budget::MemoryBudget;
use mm_gguf::{Gguf, MetaValue, ValueType};
use mm_tokenizer::{
    DecodeOptions, EncodeOptions, OwnedTokenizer, PreTokenizer, TokenAttr, TokenizerError,
    TokenizerModel, Vocab,
};

const PLAIN: EncodeOptions = EncodeOptions::new();

fn with<R>(spec: &VocabSpec, f: impl FnOnce(mm_tokenizer::Tokenizer<'_>) -> R) -> R {
    let bytes = spec.bytes();
    let g = Gguf::parse(&bytes).unwrap();
    let v = Vocab::from_gguf(&g).unwrap();
    f(v.tokenizer(&g).unwrap())
}

fn ids(t: &mm_tokenizer::Tokenizer<'_>, pieces: &[&str]) -> Vec<u32> {
    pieces.iter().map(|p| t.token_id(p).unwrap()).collect()
}

#[test]
fn spm_merges_by_score_with_a_space_prefix() {
    with(&spm(true), |t| {
        assert_eq!(t.vocab().model(), TokenizerModel::Spm);
        assert_eq!(t.vocab().pre_tokenizer(), None);
        assert!(t.vocab().add_bos() && !t.vocab().add_eos() && t.vocab().add_space_prefix());
        assert_eq!(
            t.encode("hello world", PLAIN),
            ids(&t, &["▁hello", "▁world"])
        );
        let with_bos = t.encode("hello", PLAIN.with_add_special(true));
        assert_eq!(with_bos, [1, t.token_id("▁hello").unwrap()]);
        assert_eq!(t.count("hello world", PLAIN), 2);
        assert!(t.encode("", PLAIN).is_empty());
        assert_eq!(t.encode("", PLAIN.with_add_special(true)), [1]);
        // Unknown characters fall back to their UTF-8 bytes.
        let got = t.encode("hé", PLAIN);
        assert_eq!(got[0], t.token_id("▁h").unwrap());
        assert_eq!(&got[1..], ids(&t, &["<0xC3>", "<0xA9>"]));
        for text in ["hello world", "hé  llo", "  leading", "x\ny"] {
            let ids = t.encode(text, PLAIN);
            assert_eq!(t.decode(&ids, DecodeOptions::new()), text);
            // As in llama.cpp, removing BOS keeps the space prefix.
            let ids = t.encode(text, PLAIN.with_add_special(true));
            let back = t.decode(&ids, DecodeOptions::new().with_remove_special(true));
            assert_eq!(back, format!(" {text}"));
        }
    });
}

#[test]
fn special_tokens_in_text() {
    with(&spm(true), |t| {
        let hello = t.token_id("▁hello").unwrap();
        // Control tokens are text unless parsed; the space prefix follows a special token.
        let plain = t.encode("<start_of_turn>hello", PLAIN);
        assert!(plain.len() > 2 && !plain.contains(&3));
        assert_eq!(
            t.encode("<start_of_turn>hello", PLAIN.with_parse_special(true)),
            [3, hello]
        );
        // User-defined tokens are always matched.
        assert_eq!(t.encode("<|user|>hello", PLAIN), [4, hello]);
        assert_eq!(t.encode("hello<|user|>", PLAIN), [hello, 4]);
        // Control tokens render only when asked.
        let d = DecodeOptions::new();
        assert_eq!(t.decode(&[3, hello], d), " hello");
        assert_eq!(
            t.decode(&[3, hello], d.with_render_special(true)),
            "<start_of_turn> hello"
        );
        assert_eq!(t.decode(&[4], d), "<|user|>");
        assert_eq!(t.decode(&[1, hello], d), " hello");
        assert_eq!(t.decode(&[99_999], d), "");
        // A control token cutting a character in two is not matched.
        assert_eq!(t.attr(3), Some(TokenAttr::CONTROL));
        assert_eq!(t.attr(99_999), None);
        assert_eq!(t.piece(3), Some("<start_of_turn>".as_bytes()));
        assert_eq!(t.piece(99_999), None);
        assert_eq!(t.score(hello), Some(-1.0));
        assert_eq!(t.score(99_999), None);
        assert_eq!(t.n_tokens(), t.vocab().len());
        assert!(!t.vocab().is_empty());
    });
}

#[test]
fn strip_flags_follow_the_model_name() {
    let mut phi = spm(true);
    phi.key("general.name", MetaValue::String("Phi3-mini".into()));
    with(&phi, |t| {
        let hello = t.token_id("▁hello").unwrap();
        assert!(t.attr(4).unwrap().intersects(TokenAttr::RSTRIP));
        assert!(!t.attr(0).unwrap().intersects(TokenAttr::RSTRIP));
        // RSTRIP swallows the spaces after the token.
        assert_eq!(t.encode("<|user|>   hello", PLAIN), [4, hello]);
    });
    let mut nomic = spm(true);
    let mask = nomic.token("<mask>", USER, 0.0);
    nomic.key(
        "general.architecture",
        MetaValue::String("nomic-bert-moe".into()),
    );
    with(&nomic, |t| {
        assert!(t.attr(mask).unwrap().intersects(TokenAttr::LSTRIP));
        let hello = t.token_id("▁hello").unwrap();
        assert_eq!(t.encode("hello  <mask>", PLAIN), [hello, mask]);
        assert_eq!(t.encode("<mask>", PLAIN), [mask]);
    });
}

#[test]
fn end_of_generation_texts_become_control() {
    let mut v = spm(true);
    let eot = v.token("<end_of_turn>", NORMAL, 0.0);
    let unused = v.token("<unused0>", CONTROL, 0.0);
    let fim = v.token("<|fim_prefix|>", USER, 0.0);
    let end = v.token("<|end|>", CONTROL, 0.0);
    v.token("<|return|>", CONTROL, 0.0);
    v.token("<|call|>", CONTROL, 0.0);
    let chan = v.token("<|channel|>", CONTROL, 0.0);
    with(&v, |t| {
        assert!(t.attr(eot).unwrap().intersects(TokenAttr::CONTROL));
        assert!(t.attr(unused).unwrap().intersects(TokenAttr::UNUSED));
        assert!(t.attr(fim).unwrap().intersects(TokenAttr::CONTROL));
        assert_eq!(t.attr(end), Some(TokenAttr::USER_DEFINED));
        assert_eq!(t.attr(chan), Some(TokenAttr::USER_DEFINED));
        // Now control: not matched in plain text.
        assert!(!t.encode("<end_of_turn>", PLAIN).contains(&eot));
        assert_eq!(
            t.encode("<end_of_turn>", PLAIN.with_parse_special(true)),
            [eot]
        );
    });
    let mut g4 = spm(true);
    let s = g4.tokens.iter().position(|x| x.0 == "</s>").unwrap() as u32;
    g4.token("<|tool_response>", CONTROL, 0.0);
    with(&g4, |t| assert_eq!(t.attr(s), Some(TokenAttr::NORMAL)));
}

#[test]
fn longer_special_tokens_claim_first() {
    let mut v = spm(true);
    let ab = v.token("<a><b>", USER, 0.0);
    let a = v.token("<a>", USER, 0.0);
    let b = v.token("<b>", USER, 0.0);
    with(&v, |t| {
        assert_eq!(t.encode("<a><b>", PLAIN), [ab]);
        assert_eq!(t.encode("<b><a><b><a>", PLAIN), [b, ab, a]);
        assert_eq!(t.encode("<a><a>", PLAIN), [a, a]);
    });
}

#[test]
fn flags_and_ids_from_metadata() {
    let mut v = spm(true);
    v.key("tokenizer.ggml.add_eos_token", MetaValue::Bool(true))
        .key("tokenizer.ggml.add_bos_token", MetaValue::Bool(false))
        .key("tokenizer.ggml.add_space_prefix", MetaValue::Bool(false))
        .key("tokenizer.ggml.eos_token_id", MetaValue::U32(3))
        .key("tokenizer.ggml.bos_token_id", MetaValue::U32(1_000_000))
        .key("tokenizer.ggml.padding_token_id", MetaValue::U32(0));
    with(&v, |t| {
        let s = t.vocab().special_ids();
        assert_eq!(s.eos, Some(3));
        assert_eq!(s.bos, Some(1), "an out-of-range id keeps the default");
        assert_eq!(s.pad, Some(0));
        assert_eq!(s.unk, Some(0));
        let got = t.encode("hello", PLAIN.with_add_special(true));
        // No space prefix: "hello" is h,e,ll,o merged by score.
        assert_eq!(got.last(), Some(&3));
        assert_ne!(got[0], 1);
        let d = DecodeOptions::new().with_remove_special(true);
        assert_eq!(t.decode(&got, d), "hello");
    });
}

#[test]
fn missing_byte_tokens_become_unknown() {
    with(&spm(false), |t| {
        assert_eq!(t.encode("é", PLAIN), [t.token_id("▁").unwrap(), 0, 0]);
    });
}

#[test]
fn integer_scores_are_accepted() {
    let mut v = spm(true);
    let bytes = {
        let mut w = mm_gguf::GgufWriter::new();
        w.add_metadata("tokenizer.ggml.model", MetaValue::String("llama".into()))
            .unwrap();
        w.add_metadata(
            "tokenizer.ggml.tokens",
            MetaValue::strings(v.tokens.iter().map(|t| t.0.clone())),
        )
        .unwrap();
        w.add_metadata(
            "tokenizer.ggml.scores",
            MetaValue::Array(
                ValueType::I32,
                v.tokens
                    .iter()
                    .map(|t| MetaValue::I32(t.2 as i32))
                    .collect(),
            ),
        )
        .unwrap();
        w.to_bytes().unwrap()
    };
    v.tokens.clear();
    let g = Gguf::parse(&bytes).unwrap();
    let vocab = Vocab::from_gguf(&g).unwrap();
    let t = vocab.tokenizer(&g).unwrap();
    // No token types: everything is normal, so <s> is plain text.
    assert_eq!(t.attr(1), Some(TokenAttr::NORMAL));
    assert_eq!(t.score(t.token_id("▁hello").unwrap()), Some(-1.0));
    assert!(!t.encode("hello", PLAIN).is_empty());
}

#[test]
fn gpt2_byte_level_bpe() {
    with(&bpe("gpt-2"), |t| {
        assert_eq!(t.vocab().model(), TokenizerModel::Bpe);
        assert_eq!(t.vocab().pre_tokenizer(), Some(PreTokenizer::Gpt2));
        assert!(t.vocab().n_merges() >= 9);
        assert_eq!(t.encode("the the", PLAIN), ids(&t, &["the", "Ġthe"]));
        assert_eq!(t.encode(" world", PLAIN), ids(&t, &["Ġworld"]));
        // é is two bytes, two byte characters.
        assert_eq!(t.encode("é", PLAIN), ids(&t, &["Ã", "©"]));
        // `z` has no token: llama.cpp drops it.
        assert_eq!(t.encode("z", PLAIN), Vec::<u32>::new());
        let eot = t.token_id("<|endoftext|>").unwrap();
        assert_eq!(
            t.encode("<|endoftext|>", PLAIN.with_parse_special(true)),
            [eot]
        );
        assert!(t.encode("<|endoftext|>", PLAIN).len() > 1);
        // gpt2 adds no BOS by default.
        assert_eq!(
            t.encode("the", PLAIN.with_add_special(true)),
            ids(&t, &["the"])
        );
        for text in ["the world é", "a  b\n\nc 123"] {
            let ids = t.encode(text, PLAIN);
            assert_eq!(t.decode(&ids, DecodeOptions::new()), text);
        }
    });
}

#[test]
fn llama3_words_that_are_tokens_skip_merging() {
    let mut v = bpe("llama-bpe");
    // "Ġwor" + "ld" has no direct merge path below, but the word is a token.
    v.merges = Some(vec!["h e".into(), "t he".into()]);
    v.key("tokenizer.ggml.bos_token_id", MetaValue::U32(3));
    with(&v, |t| {
        assert_eq!(t.vocab().pre_tokenizer(), Some(PreTokenizer::Llama3));
        assert!(t.vocab().add_bos());
        assert_eq!(t.encode(" world", PLAIN), ids(&t, &["Ġworld"]));
        assert_eq!(
            t.encode("the", PLAIN.with_add_special(true)),
            [3, t.token_id("the").unwrap()]
        );
    });
    // Without ignore_merges (gpt-2), the same merges leave pieces.
    let mut v = bpe("gpt-2");
    v.merges = Some(vec!["h e".into()]);
    with(&v, |t| {
        assert_eq!(t.encode(" world", PLAIN).len(), 6);
    });
}

#[test]
fn every_supported_pre_tokenizer_loads() {
    for pre in [
        "default",
        "llama3",
        "qwen2",
        "qwen35",
        "smollm",
        "gpt-2",
        "falcon",
        "starcoder",
        "deepseek-llm",
        "deepseek-coder",
        "command-r",
        "refact",
        "mpt",
        "glm4",
        "dbrx",
    ] {
        with(&bpe(pre), |t| {
            let ids = t.encode("the world 1234, é!", PLAIN);
            assert_eq!(
                t.decode(&ids, DecodeOptions::new()).replace('z', ""),
                "the world 1234, é!"
            );
        });
    }
}

#[test]
fn gemma4_bpe_on_escaped_text() {
    let mut v = VocabSpec::new("gemma4");
    for (t, ty) in [
        ("<pad>", CONTROL),
        ("<eos>", CONTROL),
        ("<bos>", CONTROL),
        ("<unk>", UNKNOWN),
        ("\n", NORMAL),
        ("\n\n", NORMAL),
        ("▁", NORMAL),
        ("a", NORMAL),
        ("b", NORMAL),
        ("▁a", NORMAL),
        ("ab", NORMAL),
        ("<0x63>", BYTE),
    ] {
        v.token(t, ty, 0.0);
    }
    v.merges = Some(vec!["▁ a".into(), "a b".into()]);
    v.key("tokenizer.ggml.bos_token_id", MetaValue::U32(2));
    with(&v, |t| {
        assert_eq!(t.vocab().model(), TokenizerModel::Gemma4);
        assert_eq!(t.vocab().pre_tokenizer(), Some(PreTokenizer::Gemma4));
        let got = t.encode("ab a\n\nc", PLAIN.with_add_special(true));
        assert_eq!(got, [2, 10, 9, 5, 11]);
        assert_eq!(
            t.decode(&got, DecodeOptions::new().with_remove_special(true)),
            "ab a\n\nc"
        );
    });
}

#[test]
fn bad_metadata_is_a_typed_error() {
    let load = |spec: &VocabSpec| {
        let bytes = spec.bytes();
        let g = Gguf::parse(&bytes).unwrap();
        Vocab::from_gguf(&g).map(|_| ())
    };
    let e = load(&VocabSpec::new("bert")).unwrap_err();
    assert!(
        matches!(e, TokenizerError::UnsupportedModel(ref m) if m == "bert"),
        "{e}"
    );
    let e = load(&bpe("nope")).unwrap_err();
    assert!(
        matches!(e, TokenizerError::UnsupportedPreTokenizer(_)),
        "{e}"
    );
    let mut no_merges = bpe("gpt-2");
    no_merges.merges = None;
    assert!(matches!(
        load(&no_merges).unwrap_err(),
        TokenizerError::Gguf(_)
    ));
    let mut w = mm_gguf::GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", MetaValue::String("llama".into()))
        .unwrap();
    let bytes = w.to_bytes().unwrap();
    let e = Vocab::from_gguf(&Gguf::parse(&bytes).unwrap()).unwrap_err();
    assert!(matches!(e, TokenizerError::Gguf(_)), "{e}");
    // Token list of the wrong type, scores too short or of the wrong type.
    let mut w = mm_gguf::GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", MetaValue::String("llama".into()))
        .unwrap();
    w.add_metadata(
        "tokenizer.ggml.tokens",
        MetaValue::Array(ValueType::I32, vec![MetaValue::I32(1)]),
    )
    .unwrap();
    let bytes = w.to_bytes().unwrap();
    let e = Vocab::from_gguf(&Gguf::parse(&bytes).unwrap()).unwrap_err();
    assert!(matches!(e, TokenizerError::BadMetadata { .. }), "{e}");
    for (key, val) in [
        (
            "tokenizer.ggml.scores",
            MetaValue::Array(ValueType::F32, vec![]),
        ),
        (
            "tokenizer.ggml.scores",
            MetaValue::Array(ValueType::U8, vec![MetaValue::U8(1)]),
        ),
        ("tokenizer.ggml.scores", MetaValue::U32(1)),
        (
            "tokenizer.ggml.token_type",
            MetaValue::Array(ValueType::F32, vec![MetaValue::F32(1.0)]),
        ),
    ] {
        let mut w = mm_gguf::GgufWriter::new();
        w.add_metadata("tokenizer.ggml.model", MetaValue::String("llama".into()))
            .unwrap();
        w.add_metadata("tokenizer.ggml.tokens", MetaValue::strings(["a"]))
            .unwrap();
        w.add_metadata(key, val).unwrap();
        let bytes = w.to_bytes().unwrap();
        let e = Vocab::from_gguf(&Gguf::parse(&bytes).unwrap()).unwrap_err();
        assert!(matches!(e, TokenizerError::BadMetadata { .. }), "{e}");
        assert!(e.to_string().contains(key), "{e}");
    }
}

#[test]
fn an_index_binds_only_to_its_own_file() {
    let a = spm(true).bytes();
    let mut other = spm(true);
    other.pre = Some("default".into()); // written before the tokens: moves them
    let b = other.bytes();
    let ga = Gguf::parse(&a).unwrap();
    let gb = Gguf::parse(&b).unwrap();
    let v = Vocab::from_gguf(&ga).unwrap();
    assert!(v.tokenizer(&ga).is_ok());
    let e = v.tokenizer(&gb).unwrap_err();
    assert!(matches!(e, TokenizerError::WrongFile { .. }), "{e}");
}

#[test]
fn the_index_is_measured_and_charged() {
    let bytes = spm(true).bytes();
    let g = Gguf::parse(&bytes).unwrap();
    let v = Vocab::from_gguf(&g).unwrap();
    let n = v.heap_bytes();
    assert!(n >= v.len() as u64 * 6, "{n}");
    assert_eq!(v.charged_bytes(), None);
    let budget = MemoryBudget::with_limit(1 << 30).unwrap();
    let charged = Vocab::from_gguf_charged(&g, &budget).unwrap();
    assert_eq!(charged.charged_bytes(), Some(charged.heap_bytes()));
    assert_eq!(budget.used(), charged.heap_bytes());
    drop(charged);
    assert_eq!(budget.used(), 0);
    let tiny = MemoryBudget::with_limit(16).unwrap();
    let e = Vocab::from_gguf_charged(&g, &tiny).unwrap_err();
    assert!(matches!(e, TokenizerError::Budget { .. }), "{e}");
}

#[test]
fn owned_tokenizer_maps_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vocab.gguf");
    std::fs::write(&path, spm(true).bytes()).unwrap();
    // SAFETY: the temporary file is not modified while mapped.
    let owned = unsafe { OwnedTokenizer::open(&path) }.unwrap();
    let t = owned.tokenizer();
    assert_eq!(t.encode("hello", PLAIN), [t.token_id("▁hello").unwrap()]);
    assert_eq!(owned.vocab().len(), t.n_tokens());
    assert!(owned.gguf().mapped_bytes() > 0);
    // SAFETY: as above (the file does not exist).
    assert!(unsafe { OwnedTokenizer::open(dir.path().join("missing.gguf")) }.is_err());
}
