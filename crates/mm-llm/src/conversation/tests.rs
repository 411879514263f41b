//! Unit tests across the phases: random sequences of calls, the invariants checked after
//! each one.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::ContextWindows;

#[derive(Debug, Clone)]
enum Op {
    User(usize),
    Assistant(usize),
    Call(u8),
    Result(u8, usize),
    System(usize),
    Tools(bool),
    Fit,
    FitCompact(usize),
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..400).prop_map(Op::User),
        3 => (0usize..400).prop_map(Op::Assistant),
        3 => (0u8..6).prop_map(Op::Call),
        3 => ((0u8..8), (0usize..3000)).prop_map(|(c, n)| Op::Result(c, n)),
        1 => (0usize..200).prop_map(Op::System),
        1 => any::<bool>().prop_map(Op::Tools),
        3 => Just(Op::Fit),
        1 => (0usize..120).prop_map(Op::FitCompact),
        1 => Just(Op::Clear),
    ]
}

fn conversation() -> Conversation {
    let mut windows = ContextWindows::empty();
    windows.insert("m", 2_048);
    let policy = FitPolicy::new().with_max_tool_output(1024);
    let setup = Arc::new(ConversationSetup::new(windows, policy).unwrap());
    Conversation::new(setup, ByteEstimate::default())
}

fn apply(conv: &mut Conversation, op: &Op) {
    let _ = conv.set_model("m");
    match *op {
        Op::User(n) => conv.push_user(&"u".repeat(n)).unwrap(),
        Op::Assistant(n) => conv.push_assistant(&"a".repeat(n)).unwrap(),
        Op::Call(c) => conv
            .push_tool_call(&format!("c{c}"), "tool", r#"{"x":1}"#)
            .unwrap(),
        Op::Result(c, n) => {
            conv.push_tool_result(&format!("c{c}"), &"r".repeat(n))
                .unwrap();
        }
        Op::System(n) => conv.set_system(&"s".repeat(n)),
        Op::Tools(on) => conv.set_tools(if on { "[{}]" } else { "" }).unwrap(),
        Op::Fit => {
            // Overflow (pinned parts too big) is a legal outcome; the state must still hold.
            let _ = conv.fit();
        }
        Op::FitCompact(n) => {
            let mut compactor = |_: &str, dropped: DroppedMessages<'_>, out: &mut String| {
                assert!(dropped.count() > 0);
                out.push_str(&"z".repeat(n));
            };
            let _ = conv.fit_with(&mut compactor);
        }
        Op::Clear => conv.clear(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn invariants_hold_after_every_call(ops in prop::collection::vec(op(), 1..120)) {
        let mut conv = conversation();
        conv.check_invariants();
        for op in &ops {
            apply(&mut conv, op);
            conv.check_invariants();
        }
        if let Ok(report) = conv.fit() {
            conv.check_invariants();
            prop_assert!(report.tokens_after <= report.limit);
        }
    }
}

#[test]
fn a_fit_drops_a_call_with_its_result() {
    let mut conv = conversation();
    conv.set_model("m").unwrap();
    conv.push_tool_call("c1", "tool", "{}").unwrap();
    conv.push_tool_result("c1", &"r".repeat(900)).unwrap();
    for _ in 0..12 {
        conv.push_user(&"u".repeat(600)).unwrap();
        conv.check_invariants();
    }
    let report = conv.fit().unwrap();
    conv.check_invariants();
    assert!(report.triggered && report.dropped_pairs == 1);
    assert!(conv.messages().all(|m| m.role == Role::User));
}

/// A measure that sees framing the estimate does not: 7 tokens per message plus 20.
fn framed(conv: &Conversation) -> Result<u64, LlmError> {
    Ok(conv.tokens() + 7 * conv.len() as u64 + 20)
}

#[test]
fn a_measured_fit_keeps_the_measured_prompt_under_the_limit() {
    let mut conv = conversation();
    conv.set_model("m").unwrap();
    let mut measure = framed;
    let mut cut = 0;
    for turn in 0..200 {
        conv.push_user(&format!("question {turn} {}", "q".repeat(40)))
            .unwrap();
        conv.push_assistant(&"a".repeat(30)).unwrap();
        let report = conv.fit_measured(&mut measure).unwrap();
        conv.check_invariants();
        assert_eq!(report.tokens_after, framed(&conv).unwrap());
        assert!(report.tokens_after <= report.limit, "{report:?}");
        if report.triggered {
            cut += 1;
            assert!(report.dropped_items > 0);
            assert!(report.tokens_before > report.trigger);
        }
    }
    assert!(cut > 0, "the history outgrew the window");
    // The plain fit, blind to the framing, leaves the measured prompt above the limit
    // at some point; the measured one never did.
    let mut plain = conversation();
    plain.set_model("m").unwrap();
    let mut over = false;
    for turn in 0..200 {
        plain
            .push_user(&format!("question {turn} {}", "q".repeat(40)))
            .unwrap();
        plain.push_assistant(&"a".repeat(30)).unwrap();
        let r = plain.fit().unwrap();
        over |= framed(&plain).unwrap() > r.limit;
    }
    assert!(over);
}

#[test]
fn a_measured_fit_reports_overflow_of_the_kept_parts() {
    let mut conv = conversation();
    conv.set_model("m").unwrap();
    conv.push_user("hello").unwrap();
    let mut huge = |_: &Conversation| Ok::<u64, LlmError>(10_000);
    let err = conv.fit_measured(&mut huge).unwrap_err();
    assert!(matches!(err, LlmError::ContextOverflow { .. }), "{err}");
    conv.check_invariants();
    // A measure that fails passes its error through, the conversation untouched.
    let mut failing = |_: &Conversation| Err::<u64, LlmError>(LlmError::NoModel);
    assert!(matches!(
        conv.fit_measured(&mut failing),
        Err(LlmError::NoModel)
    ));
    assert_eq!(conv.len(), 1);
}
