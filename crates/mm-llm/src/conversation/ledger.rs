//! Token accounting: what each part of the prompt costs, and the running totals.
//!
//! Every cost enters or leaves the totals here, so the O(1)
//! [`Conversation::tokens`](crate::Conversation::tokens) cannot drift from the items it sums.

use crate::tokens::TokenCounter;

use super::store::Item;

/// The running token totals of one conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Ledger {
    pub(super) system: u32,
    pub(super) tools: u32,
    pub(super) summary: u32,
    /// Sum of [`Item::cost`] over live items.
    history: u64,
    /// Live tool calls awaiting a result.
    unanswered: u32,
}

impl Ledger {
    /// The parts that are never cut: system prompt, tool definitions, summary.
    pub(super) fn fixed(&self) -> u64 {
        u64::from(self.system) + u64::from(self.tools) + u64::from(self.summary)
    }

    /// The whole prompt.
    pub(super) fn total(&self) -> u64 {
        self.fixed() + self.history
    }

    pub(super) fn unanswered(&self) -> u32 {
        self.unanswered
    }

    /// A live item joins the history.
    pub(super) fn enter(&mut self, item: &Item) {
        self.history += item.cost();
        if item.awaits_result() {
            self.unanswered += 1;
        }
    }

    /// A live item leaves the history; returns the tokens it freed.
    pub(super) fn leave(&mut self, item: &Item) -> u64 {
        let freed = item.cost();
        self.history -= freed;
        if item.awaits_result() {
            self.unanswered -= 1;
        }
        freed
    }

    /// `call`, which awaits a result, is about to get one: its synthetic result's cost goes.
    /// (The real result then [`enter`](Ledger::enter)s on its own.)
    pub(super) fn answer(&mut self, call: &Item) {
        debug_assert!(call.awaits_result());
        self.history -= u64::from(call.aborted_tokens);
        self.unanswered -= 1;
    }

    /// Checks the ledger against the items it sums.
    #[cfg(test)]
    pub(super) fn check<'a>(&self, items: impl Iterator<Item = &'a Item>) {
        let mut fresh = Ledger::default();
        for it in items.filter(|i| i.is_live()) {
            fresh.enter(it);
        }
        assert_eq!(self.history, fresh.history, "history tokens drifted");
        assert_eq!(
            self.unanswered, fresh.unanswered,
            "unanswered calls drifted"
        );
    }
}

/// A message of these parts: the counter's framing plus each part's count.
pub(super) fn message_cost<C: TokenCounter>(counter: &C, parts: &[&str]) -> u32 {
    parts.iter().fold(counter.message_overhead(), |sum, p| {
        sum.saturating_add(counter.count(p))
    })
}

/// A system-style message (system prompt, summary): nothing when the text is empty, since no
/// message is sent then.
pub(super) fn optional_message_cost<C: TokenCounter>(counter: &C, text: &str) -> u32 {
    if text.is_empty() {
        0
    } else {
        message_cost(counter, &[text])
    }
}
