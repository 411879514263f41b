//! Behaviour of conversations: what fitting keeps, pairs, repairs, errors, and the JSON shape.

use std::sync::Arc;

use bytes::BytesMut;
use mm_llm::{
    ABORTED_RESULT, ByteEstimate, ContextWindows, Conversation, ConversationSetup, DroppedMessages,
    FitPolicy, LlmError, ResultOutcome, Role,
};
use proptest::prelude::*;
use serde_json::Value;

fn setup(window: u32, policy: FitPolicy) -> Arc<ConversationSetup> {
    let mut w = ContextWindows::empty();
    w.insert("tiny", window);
    Arc::new(ConversationSetup::new(w, policy).unwrap())
}

fn small_policy() -> FitPolicy {
    FitPolicy::default().with_output_reserve(100)
}

fn conv(window: u32) -> Conversation {
    let mut c = Conversation::new(setup(window, small_policy()), ByteEstimate::default());
    c.set_model("tiny").unwrap();
    c
}

fn assemble(c: &Conversation) -> Value {
    let mut buf = BytesMut::new();
    c.assemble(&mut buf, true).unwrap();
    serde_json::from_slice(&buf).expect("assembled prompt is valid JSON")
}

/// Checks the rules chat APIs enforce on tool messages: each `tool` message answers a call
/// of the nearest preceding assistant `tool_calls` message, and every call is answered
/// before any other kind of message follows.
fn check_api_shape(v: &Value) {
    let msgs = v["messages"].as_array().unwrap();
    let mut open: Vec<String> = Vec::new();
    for m in msgs {
        let role = m["role"].as_str().unwrap();
        match role {
            "tool" => {
                let id = m["tool_call_id"].as_str().unwrap();
                let pos = open
                    .iter()
                    .position(|c| c == id)
                    .expect("tool result answers an open call");
                open.remove(pos);
            }
            _ => {
                assert!(
                    open.is_empty(),
                    "calls {open:?} unanswered before a {role} message"
                );
                if let Some(calls) = m.get("tool_calls") {
                    for c in calls.as_array().unwrap() {
                        open.push(c["id"].as_str().unwrap().to_owned());
                    }
                }
            }
        }
    }
    assert!(open.is_empty(), "calls {open:?} unanswered at the end");
}

#[test]
fn system_tools_and_newest_user_always_stay() {
    let mut c = conv(1000);
    c.set_system(&"S".repeat(400));
    c.set_tools(r#"[{"type":"function","function":{"name":"calc","parameters":{}}}]"#)
        .unwrap();
    for i in 0..50 {
        c.push_user(&format!("question {i} {}", "q".repeat(100)))
            .unwrap();
        c.push_assistant(&format!("answer {i} {}", "a".repeat(100)))
            .unwrap();
    }
    c.push_user("the newest question").unwrap();
    let r = c.fit().unwrap();
    assert!(r.triggered);
    assert!(r.tokens_after <= r.target, "{r:?}");
    assert!(r.dropped_items > 0);
    assert_eq!(r.tokens_after, c.tokens());
    let v = assemble(&c);
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["role"], "system");
    assert_eq!(msgs[0]["content"].as_str().unwrap().len(), 400);
    assert_eq!(msgs.last().unwrap()["content"], "the newest question");
    assert_eq!(v["tools"][0]["function"]["name"], "calc");
    // Oldest first: what is left is a suffix of the history.
    let kept: Vec<_> = c.messages().map(|m| m.text.to_owned()).collect();
    assert!(kept[0].starts_with("question") || kept[0].starts_with("answer"));
    let first_kept: usize = kept[0].split(' ').nth(1).unwrap().parse().unwrap();
    assert!(first_kept > 0);
}

#[test]
fn no_cut_below_trigger() {
    let mut c = conv(100_000);
    c.push_user("hi").unwrap();
    let r = c.fit().unwrap();
    assert!(!r.triggered);
    assert_eq!(r.dropped_items, 0);
    assert_eq!(r.window, 100_000);
    assert_eq!(r.limit, 100_000 - 100);
    assert_eq!(r.trigger, 89_910);
}

#[test]
fn default_policy_fits_small_windows_with_distinct_points() {
    for window in [2_048u32, 8_192, 16_384, 32_768, 131_072] {
        let mut c = Conversation::new(setup(window, FitPolicy::default()), ByteEstimate::default());
        c.set_model("tiny").unwrap();
        // About twice the window of history, in 100-token turns.
        for i in 0..(window / 50) {
            c.push_user(&format!("question {i} {}", "x".repeat(380)))
                .unwrap();
            c.push_assistant(&format!("answer {i} {}", "y".repeat(380)))
                .unwrap();
        }
        let r = c.fit().unwrap();
        assert!(r.limit >= u64::from(window) * 3 / 4, "{window}: {r:?}");
        assert!(
            r.target < r.trigger && r.trigger < r.limit,
            "{window}: {r:?}"
        );
        assert!(r.triggered && r.tokens_after <= r.target, "{window}: {r:?}");
    }
}

#[test]
fn tool_pairs_go_together_and_json_is_api_valid() {
    let mut c = conv(1200);
    for i in 0..30 {
        c.push_user(&format!("task {i}")).unwrap();
        c.push_tool_call(&format!("a{i}"), "search", r#"{"q":"x"}"#)
            .unwrap();
        c.push_tool_call(&format!("b{i}"), "fetch", r#"{"url":"y"}"#)
            .unwrap();
        c.push_tool_result(&format!("a{i}"), &"r".repeat(200))
            .unwrap();
        c.push_tool_result(&format!("b{i}"), &"s".repeat(200))
            .unwrap();
        c.push_assistant("done").unwrap();
    }
    let r = c.fit().unwrap();
    assert!(r.dropped_pairs > 0);
    assert_eq!(
        r.dropped_pairs * 2 + (r.dropped_items - r.dropped_pairs * 2),
        r.dropped_items
    );
    let v = assemble(&c);
    check_api_shape(&v);
    let calls = c.messages().filter(|m| m.role == Role::ToolCall).count();
    let results = c.messages().filter(|m| m.role == Role::ToolResult).count();
    assert_eq!(calls, results);
}

#[test]
fn unanswered_call_gets_aborted_result_and_orphans_are_dropped() {
    let mut c = conv(100_000);
    c.push_user("go").unwrap();
    c.push_tool_call("c1", "slow", "{}").unwrap();
    c.push_tool_call("c2", "fast", "{}").unwrap();
    assert_eq!(
        c.push_tool_result("c2", "ok").unwrap(),
        ResultOutcome::Recorded { cut: false }
    );
    assert_eq!(
        c.push_tool_result("nope", "?").unwrap(),
        ResultOutcome::Orphan
    );
    assert_eq!(
        c.push_tool_result("c2", "again").unwrap(),
        ResultOutcome::Orphan
    );
    c.push_user("next").unwrap();
    let r = c.fit().unwrap();
    assert_eq!(r.synthetic_results, 1);
    assert_eq!(r.orphans_dropped, 2);
    let v = assemble(&c);
    check_api_shape(&v);
    let msgs = v["messages"].as_array().unwrap();
    // user, assistant(tool_calls c1,c2), tool c1 (aborted), tool c2, user
    assert_eq!(msgs.len(), 5);
    assert_eq!(msgs[1]["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!(msgs[2]["tool_call_id"], "c1");
    assert_eq!(msgs[2]["content"], ABORTED_RESULT);
    assert_eq!(msgs[3]["content"], "ok");
    assert_eq!(msgs[1]["tool_calls"][1]["function"]["name"], "fast");
}

#[test]
fn kept_parts_that_do_not_fit_are_a_typed_error_and_leave_history_alone() {
    let mut c = conv(1000);
    c.set_system(&"S".repeat(4000));
    c.push_user("a").unwrap();
    c.push_assistant("b").unwrap();
    c.push_user("c").unwrap();
    let before = c.tokens();
    let err = c.fit().unwrap_err();
    match err {
        LlmError::ContextOverflow {
            model,
            needed,
            available,
        } => {
            assert_eq!(model, "tiny");
            assert!(needed > available);
            assert_eq!(available, 900);
        }
        e => panic!("unexpected {e}"),
    }
    assert_eq!(c.tokens(), before);
    assert_eq!(c.len(), 3);
}

#[test]
fn newest_user_message_alone_too_big_is_an_error() {
    let mut c = conv(1000);
    c.push_user(&"u".repeat(8000)).unwrap();
    assert!(matches!(c.fit(), Err(LlmError::ContextOverflow { .. })));
}

#[test]
fn unknown_model_and_missing_model_are_errors() {
    let mut c = Conversation::new(setup(1000, small_policy()), ByteEstimate::default());
    assert!(matches!(c.fit(), Err(LlmError::NoModel)));
    assert!(matches!(
        c.set_model("other"),
        Err(LlmError::UnknownModel { .. })
    ));
    let mut buf = BytesMut::new();
    assert!(matches!(
        c.assemble(&mut buf, false),
        Err(LlmError::NoModel)
    ));
}

#[test]
fn long_tool_output_is_cut_on_record() {
    let mut c = conv(100_000);
    c.push_tool_call("c", "cat", "{}").unwrap();
    let big = format!("HEAD{}TAIL", "€".repeat(20_000));
    assert_eq!(
        c.push_tool_result("c", &big).unwrap(),
        ResultOutcome::Recorded { cut: true }
    );
    let stored = c
        .messages()
        .find(|m| m.role == Role::ToolResult)
        .unwrap()
        .text
        .to_owned();
    assert!(stored.len() <= 10 * 1024);
    assert!(stored.starts_with("HEAD") && stored.ends_with("TAIL"));
    assert!(stored.contains(&format!("{}-byte tool output", big.len())));
    assert_eq!(c.stats().outputs_cut, 1);
}

#[test]
fn compaction_hook_replaces_old_turns_with_summary() {
    let mut c = conv(2000);
    for i in 0..40 {
        c.push_user(&format!("u{i} {}", "x".repeat(200))).unwrap();
        c.push_assistant(&format!("a{i}")).unwrap();
    }
    let mut seen = 0;
    let mut hook = |prev: &str, dropped: DroppedMessages<'_>, out: &mut String| {
        assert!(prev.is_empty());
        for m in dropped {
            seen += 1;
            assert_ne!(m.text, "");
        }
        out.push_str("summary of earlier turns");
    };
    let r = c.fit_with(&mut hook).unwrap();
    assert!(r.compacted);
    assert_eq!(seen, r.dropped_items);
    assert_eq!(c.summary(), "summary of earlier turns");
    let v = assemble(&c);
    assert_eq!(v["messages"][0]["content"], "summary of earlier turns");
    // The summary is added after cutting to the target, so it may sit a little above it.
    assert!(r.tokens_after <= r.trigger, "{r:?}");
    assert_eq!(r.tokens_after, c.tokens());
}

#[test]
fn clear_keeps_capacity_and_storage_is_reclaimed() {
    let mut c = conv(3000);
    for i in 0..2000 {
        c.push_user(&format!("message number {i} {}", "z".repeat(50)))
            .unwrap();
        c.fit().unwrap();
    }
    // The text store does not grow with the number of turns: dropped text is reclaimed.
    assert!(c.memory_bytes() < 64 * 1024, "{}", c.memory_bytes());
    assert!(c.stats().text_compactions > 0);
    let mem = c.memory_bytes();
    c.clear();
    assert!(c.is_empty());
    assert_eq!(c.memory_bytes(), mem);
    assert_eq!(c.model(), None);
}

#[derive(Debug, Clone)]
enum Op {
    User(usize),
    Assistant(usize),
    Call(u8),
    Result(u8, usize),
    Fit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..600).prop_map(Op::User),
        (0usize..600).prop_map(Op::Assistant),
        (0u8..6).prop_map(Op::Call),
        (0u8..6, 0usize..20_000).prop_map(|(c, n)| Op::Result(c, n)),
        Just(Op::Fit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Whatever the sequence of appends, a successful fit leaves the prompt within the limit,
    /// the cached token sum equals a recount, and the assembled prompt is valid JSON that the
    /// chat APIs' tool-message rules accept.
    #[test]
    fn fits_stay_in_limit_and_json_stays_valid(ops in prop::collection::vec(op(), 1..120)) {
        let mut c = conv(3000);
        c.set_system("system \"prompt\"\n");
        let mut call_no = 0u32;
        for op in ops {
            match op {
                Op::User(n) => c.push_user(&"u\u{1}".repeat(n / 2)).unwrap(),
                Op::Assistant(n) => c.push_assistant(&"a\\".repeat(n / 2)).unwrap(),
                Op::Call(k) => {
                    call_no += 1;
                    c.push_tool_call(&format!("id{k}"), "tool", "{\"k\":1}").unwrap();
                }
                Op::Result(k, n) => { c.push_tool_result(&format!("id{k}"), &"é".repeat(n / 2)).unwrap(); }
                Op::Fit => match c.fit() {
                    Ok(r) => {
                        prop_assert!(r.tokens_after <= r.limit, "{:?}", r);
                        prop_assert_eq!(r.tokens_after, c.tokens());
                    }
                    Err(LlmError::ContextOverflow { .. }) => {}
                    Err(e) => panic!("{e}"),
                },
            }
        }
        let _ = call_no;
        let overhead = 4u64;
        let recount: u64 = c.messages().map(|m| u64::from(m.tokens)).sum();
        let sys = overhead + ("system \"prompt\"\n".len() as u64).div_ceil(4);
        let unanswered: u64 = {
            let v = assemble(&c);
            check_api_shape(&v);
            v["messages"].as_array().unwrap().iter()
                .filter(|m| m["content"] == ABORTED_RESULT)
                .map(|m| overhead + (m["tool_call_id"].as_str().unwrap().len() as u64).div_ceil(4)
                    + (ABORTED_RESULT.len() as u64).div_ceil(4))
                .sum()
        };
        prop_assert_eq!(c.tokens(), sys + recount + unanswered);
    }
}
