//! Conversations as a component of a `memory-manager` `MemoryManager`: live conversations
//! and the heap bytes they hold, charged to the manager's budget and listed in its report.

use std::sync::atomic::{AtomicU64, Ordering};

use memory_manager::{Component, ComponentReading};

/// Live conversations of one [`ConversationSetup`](crate::ConversationSetup) and their heap
/// bytes, updated by each conversation as it grows (at every append, fit and clear).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    live: AtomicU64,
    bytes: AtomicU64,
    created: AtomicU64,
}

impl Tally {
    pub(crate) fn opened(&self) {
        self.live.fetch_add(1, Ordering::Relaxed);
        self.created.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self, bytes: usize) {
        self.live.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes as u64, Ordering::Relaxed);
    }

    /// Records that a conversation now holds `now` bytes instead of `before`.
    pub(crate) fn resized(&self, before: usize, now: usize) {
        if now > before {
            self.bytes
                .fetch_add((now - before) as u64, Ordering::Relaxed);
        } else if before > now {
            self.bytes
                .fetch_sub((before - now) as u64, Ordering::Relaxed);
        }
    }
}

impl Component for Tally {
    fn name(&self) -> &str {
        "conversations"
    }

    fn reading(&self) -> ComponentReading {
        let mut r = ComponentReading::new(self.bytes.load(Ordering::Relaxed));
        r.items = self.live.load(Ordering::Relaxed);
        r.misses = Some(self.created.load(Ordering::Relaxed));
        r
    }
}
