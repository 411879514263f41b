//! The 70 real chat templates of llama.cpp's `models/templates/` (llama-cpp-python 0.3.36
//! source archive) rendered by [`ChatTemplate`] on the committed conversations, against
//! the renderings Python's `jinja2` made in Hugging Face's environment
//! (`scripts/chat_template_reference.py`, committed as
//! `tests/fixtures/chat_templates/jinja2_renderings.json`). No Python runs here.
//!
//! A case agrees when both render the same text, or both refuse (the template raised an
//! exception, or hit a Python error such as `None + str`). Every case that does not agree is
//! listed in [`KNOWN`] with why; the test fails on any other difference, and on a listed
//! case that has started to agree, so the list stays exact.
//!
//! The templates come from the archive, not from this repository: set `MM_CHAT_TEMPLATES`
//! to the folder (or `MM_TOKENIZER_VOCABS` to `models/`, as `.ci/tokenizer-reference.sh`
//! does). Without either the test says it was skipped.

use mm_llm::{ChatTemplate, GenerationPrompt, RenderOptions};

/// Cases where minijinja and jinja2 do not agree: (template, conversation, why).
const KNOWN: &[(&str, &str, &str)] = &[(
    "LFM2.5-8B-A1B.jinja",
    "tool_call_and_result",
    "the template loops over the tool-call message's `content`, which is null: jinja2 raises \
     (None is not iterable), minijinja's `for` treats none as an empty sequence and renders",
)];

fn templates_dir() -> Option<std::path::PathBuf> {
    if let Some(d) = std::env::var_os("MM_CHAT_TEMPLATES") {
        return Some(d.into());
    }
    std::env::var_os("MM_TOKENIZER_VOCABS").map(|d| std::path::PathBuf::from(d).join("templates"))
}

#[test]
fn real_templates_render_as_jinja2_does() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chat_templates");
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{fixtures}/conversations.json")).unwrap(),
    )
    .unwrap();
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{fixtures}/jinja2_renderings.json")).unwrap(),
    )
    .unwrap();
    let Some(dir) = templates_dir().filter(|d| d.is_dir()) else {
        assert!(
            std::env::var_os("MM_TOKENIZER_REQUIRE_REFERENCE").is_none(),
            "the chat templates are required but missing"
        );
        eprintln!(
            "SKIPPED: set MM_CHAT_TEMPLATES to llama.cpp's models/templates (bash .ci/tokenizer-reference.sh fetches them)"
        );
        return;
    };
    let bos = expected["bos_token"].as_str().unwrap();
    let eos = expected["eos_token"].as_str().unwrap();
    let time = expected["fixed_time"].as_i64();
    let renderings = expected["renderings"].as_object().unwrap();
    let (mut same, mut both_refuse, mut differ) = (0, 0, Vec::new());
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".jinja"))
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        renderings.len(),
        "the folder and the committed renderings list different templates"
    );
    for name in &names {
        let source = std::fs::read_to_string(dir.join(name)).unwrap();
        let template = ChatTemplate::new(&source, bos, eos);
        for case in cases.as_array().unwrap() {
            let cname = case["name"].as_str().unwrap();
            let want = &renderings[name.as_str()][cname];
            let prompt = if case["add_generation_prompt"].as_bool().unwrap() {
                GenerationPrompt::Add
            } else {
                GenerationPrompt::Omit
            };
            let opts = RenderOptions::new()
                .with_generation_prompt(prompt)
                .with_fixed_time(time);
            let got = template.as_ref().map_err(|e| e.to_string()).and_then(|t| {
                t.render_serialized(&case["messages"], &opts)
                    .map_err(|e| e.to_string())
            });
            match (got, want.get("text").and_then(|t| t.as_str())) {
                (Ok(a), Some(b)) if a == b => same += 1,
                (Err(_), None) => both_refuse += 1,
                (got, _) => differ.push((name.clone(), cname.to_owned(), got)),
            }
        }
    }
    let total = names.len() * cases.as_array().unwrap().len();
    eprintln!(
        "chat templates: {} templates x {} conversations: {same} render identically, {both_refuse} refused by both, {} differ (listed)",
        names.len(),
        cases.as_array().unwrap().len(),
        differ.len()
    );
    let mut unexpected = Vec::new();
    for (t, c, got) in &differ {
        if !KNOWN.iter().any(|k| k.0 == t && k.1 == c) {
            let want = &renderings[t.as_str()][c.as_str()];
            unexpected.push(format!("{t} / {c}:\n  ours: {got:?}\n  jinja2: {want}"));
        }
    }
    let stale: Vec<_> = KNOWN
        .iter()
        .filter(|k| !differ.iter().any(|d| d.0 == k.0 && d.1 == k.1))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{} unlisted differences:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        stale.is_empty(),
        "listed differences that now agree: {stale:?}"
    );
    assert_eq!(same + both_refuse + differ.len(), total);
}
