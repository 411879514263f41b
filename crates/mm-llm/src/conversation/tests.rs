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
