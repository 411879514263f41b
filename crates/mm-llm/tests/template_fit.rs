//! A conversation fitted with the model's own chat template and tokenizer counts exactly
//! the tokens of the rendered prompt: on a small synthetic model whose GGUF carries a
//! template, and on Gemma 3 270M (MM_GGUF_TEST_MODEL, skipped without it) with the
//! Gemma turn template of llama.cpp's `models/templates/` (MM_CHAT_TEMPLATES).

use std::sync::Arc;

use mm_gguf::{GgufWriter, MetaValue, ValueType};
use mm_llm::{
    ChatTemplate, ContextWindows, Conversation, ConversationSetup, FitPolicy, GgufTokens,
    RenderOptions, TemplateTokens,
};
use mm_tokenizer::{EncodeOptions, OwnedTokenizer};

const TEMPLATE: &str = "{{ bos_token }}{% for m in messages %}<turn>{{ m.role }}\n{{ m.content }}</turn>\n{% endfor %}{% if add_generation_prompt %}<turn>assistant\n{% endif %}";

fn synthetic_model(dir: &std::path::Path) -> OwnedTokenizer {
    let mut pieces: Vec<String> = ["<unk>", "<s>", "</s>", "<turn>", "</turn>", "\u{2581}"]
        .map(String::from)
        .to_vec();
    pieces.extend((0u8..=255).map(|b| format!("<0x{b:02X}>")));
    pieces.extend(["\u{2581}the", "\u{2581}cat", "user", "assistant", "\n"].map(String::from));
    let n = pieces.len();
    let mut types = vec![1i32; n];
    types[0] = 2;
    types[1] = 3;
    types[2] = 3;
    types[3] = 3;
    types[4] = 3;
    for t in &mut types[6..262] {
        *t = 6;
    }
    let scores: Vec<f32> = (0..n).map(|i| -(i as f32)).collect();
    let mut w = GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", MetaValue::String("llama".into()))
        .unwrap();
    w.add_metadata("tokenizer.ggml.tokens", MetaValue::strings(pieces))
        .unwrap();
    w.add_metadata(
        "tokenizer.ggml.scores",
        MetaValue::Array(
            ValueType::F32,
            scores.into_iter().map(MetaValue::F32).collect(),
        ),
    )
    .unwrap();
    w.add_metadata(
        "tokenizer.ggml.token_type",
        MetaValue::Array(
            ValueType::I32,
            types.into_iter().map(MetaValue::I32).collect(),
        ),
    )
    .unwrap();
    w.add_metadata("tokenizer.ggml.add_space_prefix", MetaValue::Bool(false))
        .unwrap();
    w.add_metadata(
        "tokenizer.chat_template",
        MetaValue::String(TEMPLATE.into()),
    )
    .unwrap();
    let path = dir.join("chat.gguf");
    w.write_file(&path).unwrap();
    // SAFETY: the temporary file is not modified while mapped.
    unsafe { OwnedTokenizer::open(&path) }.unwrap()
}

fn fit_exactly(tok: Arc<OwnedTokenizer>, template: &ChatTemplate, window: u32, texts: &[String]) {
    let mut windows = ContextWindows::empty();
    windows.insert("local", window);
    let setup = Arc::new(ConversationSetup::new(windows, FitPolicy::default()).unwrap());
    let mut conv = Conversation::new(setup, GgufTokens::new(Arc::clone(&tok)));
    conv.set_model("local").unwrap();
    let opts = RenderOptions::new().with_fixed_time(Some(0));
    let mut measure = TemplateTokens::new(template, &tok, opts.clone());
    let mut cuts = 0;
    for (i, text) in texts.iter().enumerate() {
        conv.push_user(text).unwrap();
        conv.push_assistant(&texts[(i + 7) % texts.len()]).unwrap();
        let report = conv.fit_measured(&mut measure).unwrap();
        // The report's count is the rendered prompt's, tokenized from scratch.
        let rendered = template.render(&conv, &opts).unwrap();
        let ids = tok
            .tokenizer()
            .encode(&rendered, EncodeOptions::new().with_parse_special(true));
        assert_eq!(report.tokens_after, ids.len() as u64, "turn {i}");
        assert!(report.tokens_after <= report.limit, "turn {i}: {report:?}");
        cuts += usize::from(report.dropped_items > 0);
    }
    assert!(cuts > 0, "the conversation outgrew the window");
}

#[test]
fn synthetic_model_fits_exactly_with_its_own_template() {
    let dir = tempfile::tempdir().unwrap();
    let tok = Arc::new(synthetic_model(dir.path()));
    let template = ChatTemplate::from_tokenizer(&tok).unwrap();
    let out = template
        .render_serialized(
            &serde_json::json!([{"role": "user", "content": "the cat"}]),
            &RenderOptions::new(),
        )
        .unwrap();
    assert_eq!(out, "<s><turn>user\nthe cat</turn>\n<turn>assistant\n");
    let texts: Vec<String> = (0..60)
        .map(|i| "the cat ".repeat(1 + i % 9) + &"é".repeat(i % 4))
        .collect();
    fit_exactly(tok, &template, 1024, &texts);
}

#[test]
fn gemma3_fits_exactly_with_the_gemma_template() {
    let Some(model) = std::env::var_os("MM_GGUF_TEST_MODEL") else {
        eprintln!(
            "SKIPPED: MM_GGUF_TEST_MODEL is not set (bash .ci/python.sh prints the model path)"
        );
        return;
    };
    let dir = std::env::var_os("MM_CHAT_TEMPLATES")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("MM_TOKENIZER_VOCABS")
                .map(|d| std::path::PathBuf::from(d).join("templates"))
        });
    let Some(source) =
        dir.and_then(|d| std::fs::read_to_string(d.join("google-gemma-2-2b-it.jinja")).ok())
    else {
        eprintln!("SKIPPED: MM_CHAT_TEMPLATES is not set (llama.cpp's models/templates)");
        return;
    };
    // SAFETY: the model file is not modified while mapped.
    let tok = Arc::new(unsafe { OwnedTokenizer::open(&model) }.unwrap());
    // Gemma 3 270M's file carries no template; its turn format is Gemma 2's.
    let template = ChatTemplate::new(&source, "<bos>", "<eos>").unwrap();
    let corpus: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../mm-tokenizer/tests/fixtures/gemma3/corpus.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let texts: Vec<String> = corpus
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_owned())
        .collect();
    let texts: Vec<String> = texts.iter().cycle().take(120).cloned().collect();
    fit_exactly(tok, &template, 2048, &texts);
}
