//! Conversations built from a `MemoryManager`: on its interner, charged to its budget,
//! listed in its report.

use std::sync::Arc;

use memory_manager::{MemoryConfig, MemoryManager};
use mm_llm::{ByteEstimate, ContextWindows, Conversation, ConversationSetup, FitPolicy};

#[test]
fn conversations_are_a_component_of_the_manager() {
    let m = MemoryManager::new(MemoryConfig::new().with_max_memory(64 << 20)).unwrap();
    let setup = Arc::new(
        ConversationSetup::from_manager(&m, ContextWindows::default(), FitPolicy::default())
            .unwrap(),
    );
    assert!(Arc::ptr_eq(setup.names(), m.interner()), "one interner");
    let base = m.budget().used();
    let mut a = Conversation::new(Arc::clone(&setup), ByteEstimate::default());
    let mut b = Conversation::new(Arc::clone(&setup), ByteEstimate::default());
    a.set_system("You are terse.");
    a.push_user(&"hello ".repeat(500)).unwrap();
    b.push_user("hi").unwrap();
    let report = m.report();
    let row = report
        .components
        .iter()
        .find(|c| c.name == "conversations")
        .expect("conversations row");
    let bytes = (a.memory_bytes() + b.memory_bytes()) as u64;
    assert_eq!((row.held_bytes, row.items), (bytes, 2));
    assert!(m.budget().used() >= base + bytes, "charged to the budget");
    drop(a);
    let row = m
        .report()
        .components
        .into_iter()
        .find(|c| c.name == "conversations")
        .unwrap();
    assert_eq!((row.held_bytes, row.items), (b.memory_bytes() as u64, 1));
    b.clear();
    assert!(
        m.report()
            .components
            .iter()
            .any(|c| c.name == "conversations")
    );
}
