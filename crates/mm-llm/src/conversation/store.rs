//! Storage: the history's items and the one text store they point into.
//!
//! Every text (message content, tool-call ids and arguments, tool output) is appended to one
//! `String`; items are small fixed-size records in a `VecDeque` pointing into it by logical
//! offset. Dropping from the front is O(1); dropping from the middle leaves a tombstone that
//! is popped when it reaches the front. The text of dropped items is reclaimed by shifting
//! the live tail to the front once the dead prefix is over half of the store, so each byte is
//! moved a bounded number of times and nothing allocates once capacities have grown.

use std::collections::VecDeque;
use std::fmt::Write as _;

use crate::LlmError;
use crate::names::{Interner, Symbol};

use super::Role;

/// Room kept for the marker when a tool output is cut.
pub(super) const MARKER_ROOM: usize = 64;

/// A byte range in the text store, as a logical offset (never reused).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Span {
    pub(super) start: u64,
    pub(super) len: u32,
}

impl Span {
    /// An empty span where this one starts (the call id of an item that has none).
    pub(super) fn empty_before(self) -> Span {
        Span {
            start: self.start,
            len: 0,
        }
    }
}

/// Where an item is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Live,
    /// Chosen by the running fit; the compaction hook still sees it.
    Dropping,
    Dead,
}

/// One history item.
#[derive(Debug, Clone, Copy)]
pub(super) struct Item {
    pub(super) role: Role,
    pub(super) state: State,
    pub(super) tool: Option<Symbol>,
    pub(super) call_id: Span,
    pub(super) text: Span,
    /// The sequence number of the paired call or result.
    pub(super) partner: Option<u64>,
    pub(super) tokens: u32,
    /// For a call: what its synthetic "aborted" result would cost.
    pub(super) aborted_tokens: u32,
}

impl Item {
    /// A tool call still waiting for its result (it will get a synthetic one).
    pub(super) fn awaits_result(&self) -> bool {
        self.role == Role::ToolCall && self.partner.is_none()
    }

    /// What this item adds to the prompt now: its own tokens, plus the synthetic result's
    /// while it awaits one.
    pub(super) fn cost(&self) -> u64 {
        let synthetic = if self.awaits_result() {
            self.aborted_tokens
        } else {
            0
        };
        u64::from(self.tokens) + u64::from(synthetic)
    }

    pub(super) fn is_live(&self) -> bool {
        self.state == State::Live
    }
}

/// The items and the text store.
#[derive(Debug, Default)]
pub(super) struct Store {
    items: VecDeque<Item>,
    /// Sequence number of `items[0]`.
    front_seq: u64,
    text: String,
    /// Logical offset of `text[0]`.
    origin: u64,
}

impl Store {
    /// Empties the store, keeping its capacity.
    pub(super) fn clear(&mut self) {
        self.items.clear();
        self.front_seq = 0;
        self.text.clear();
        self.origin = 0;
    }

    /// Heap bytes held (capacities).
    pub(super) fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.items.capacity() * std::mem::size_of::<Item>()
    }

    /// The text of a span.
    pub(super) fn span(&self, s: Span) -> &str {
        let start = (s.start - self.origin) as usize;
        &self.text[start..start + s.len as usize]
    }

    /// Fails when `extra` more bytes would take the store past what `u32` spans address.
    pub(super) fn check_room(&self, extra: usize) -> Result<(), LlmError> {
        let extra = extra.saturating_add(MARKER_ROOM);
        if self.text.len().saturating_add(extra) > u32::MAX as usize {
            return Err(LlmError::ConversationTooLarge);
        }
        Ok(())
    }

    fn end(&self) -> u64 {
        self.origin + self.text.len() as u64
    }

    /// Appends `s` and returns its span (call [`Store::check_room`] first).
    pub(super) fn append(&mut self, s: &str) -> Span {
        let start = self.end();
        self.text.push_str(s);
        Span {
            start,
            len: s.len() as u32,
        }
    }

    /// Appends `s` cut to `max` bytes (see [`cut_middle`]); returns its span and whether it
    /// was cut.
    pub(super) fn append_cut(&mut self, s: &str, max: usize) -> (Span, bool) {
        let start = self.end();
        let cut = cut_middle(&mut self.text, s, max);
        let len = (self.end() - start) as u32;
        (Span { start, len }, cut)
    }

    /// The sequence number the next pushed item gets.
    pub(super) fn next_seq(&self) -> u64 {
        self.front_seq + self.items.len() as u64
    }

    /// The sequence number of the item at `idx`.
    pub(super) fn seq_of(&self, idx: usize) -> u64 {
        self.front_seq + idx as u64
    }

    /// The index of the item with sequence number `seq` (which must still be stored: a
    /// partner is never popped before its pair, since both die in the same fit).
    pub(super) fn index_of(&self, seq: u64) -> usize {
        (seq - self.front_seq) as usize
    }

    pub(super) fn push(&mut self, item: Item) {
        self.items.push_back(item);
    }

    pub(super) fn items(&self) -> &VecDeque<Item> {
        &self.items
    }

    pub(super) fn item_mut(&mut self, idx: usize) -> &mut Item {
        &mut self.items[idx]
    }

    pub(super) fn items_mut(&mut self) -> impl Iterator<Item = &mut Item> {
        self.items.iter_mut()
    }

    /// Live items with their index, oldest first.
    pub(super) fn live(&self) -> impl Iterator<Item = (usize, &Item)> {
        self.items.iter().enumerate().filter(|(_, i)| i.is_live())
    }

    /// Where the oldest stored item's text begins (the end of the store when empty):
    /// everything before it is dead text.
    fn live_start(&self) -> u64 {
        match self.items.front() {
            Some(front) => front.call_id.start.min(front.text.start),
            None => self.end(),
        }
    }

    /// Bytes of text still reachable from stored items.
    pub(super) fn live_text_bytes(&self) -> usize {
        (self.end() - self.live_start()) as usize
    }

    /// Pops dead items off the front and shifts the text store when its dead prefix is over
    /// half of it. Returns whether the text was shifted.
    pub(super) fn reclaim(&mut self) -> bool {
        while self.items.front().is_some_and(|i| i.state == State::Dead) {
            self.items.pop_front();
            self.front_seq += 1;
        }
        let live_start = self.live_start();
        let dead = (live_start - self.origin) as usize;
        if dead > 0 && (dead * 2 > self.text.len() || self.items.is_empty()) {
            self.text.drain(..dead);
            self.origin = live_start;
            return true;
        }
        false
    }

    /// A view of an item, with names resolved in `names`.
    pub(super) fn view<'a>(&'a self, item: &Item, names: &'a Interner) -> MessageView<'a> {
        MessageView {
            role: item.role,
            text: self.span(item.text),
            call_id: self.span(item.call_id),
            tool: item.tool.map_or("", |s| names.resolve(s)),
            tokens: item.tokens,
        }
    }

    /// Checks the storage invariants (see the `# Invariants` of `Conversation`).
    #[cfg(test)]
    pub(super) fn check(&self) {
        let end = self.end();
        for (i, it) in self.items.iter().enumerate() {
            assert_ne!(it.state, State::Dropping, "item {i} left Dropping");
            if !it.is_live() {
                continue;
            }
            for s in [it.call_id, it.text] {
                assert!(s.start >= self.origin && s.start + u64::from(s.len) <= end);
            }
            if let Some(p) = it.partner {
                assert!(p >= self.front_seq && p < self.next_seq(), "partner stored");
                let other = &self.items[self.index_of(p)];
                assert!(other.is_live(), "a live item's partner is live");
                assert_eq!(other.partner, Some(self.seq_of(i)), "partners are mutual");
            }
        }
        assert!(
            self.items.front().is_none_or(|f| f.state != State::Dead),
            "dead items are popped from the front"
        );
    }
}

/// A read-only view of one history item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageView<'a> {
    /// The role.
    pub role: Role,
    /// Content (user, assistant, tool result) or JSON arguments (tool call).
    pub text: &'a str,
    /// The tool-call id (tool call and result), else empty.
    pub call_id: &'a str,
    /// The tool name (tool call), else empty.
    pub tool: &'a str,
    /// The cached token estimate.
    pub tokens: u32,
}

/// Appends `src` to `dst`, cutting its middle when it is longer than `max` bytes: about
/// `max - 64` bytes of head and tail are kept, split on UTF-8 boundaries, around a marker
/// that states how much was cut and the original size. Returns whether it cut.
pub(super) fn cut_middle(dst: &mut String, src: &str, max: usize) -> bool {
    if src.len() <= max {
        dst.push_str(src);
        return false;
    }
    let keep = max.saturating_sub(MARKER_ROOM);
    let head_end = src.floor_char_boundary(keep / 2);
    let tail_start = src.ceil_char_boundary(src.len() - (keep - keep / 2));
    dst.push_str(&src[..head_end]);
    // Writing to a String cannot fail.
    let _ = write!(
        dst,
        "\n[... {} bytes cut from a {}-byte tool output ...]\n",
        tail_start - head_end,
        src.len()
    );
    dst.push_str(&src[tail_start..]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_head_tail_and_states_size() {
        let src: String = "é".repeat(10_000); // 20,000 bytes of 2-byte chars
        let mut out = String::new();
        assert!(cut_middle(&mut out, &src, 1000));
        assert!(out.len() <= 1000, "{}", out.len());
        assert!(out.starts_with("éé"));
        assert!(out.ends_with("éé"));
        assert!(out.contains("from a 20000-byte tool output"));
        let mut short = String::new();
        assert!(!cut_middle(&mut short, "abc", 1000));
        assert_eq!(short, "abc");
    }

    #[test]
    fn reclaim_shifts_the_dead_prefix() {
        let mut s = Store::default();
        for t in ["aaaa", "bbbb", "cccc"] {
            let span = s.append(t);
            s.push(Item {
                role: Role::User,
                state: State::Live,
                tool: None,
                call_id: span.empty_before(),
                text: span,
                partner: None,
                tokens: 1,
                aborted_tokens: 0,
            });
        }
        s.item_mut(0).state = State::Dead;
        assert!(!s.reclaim(), "a third dead is not worth a shift");
        s.item_mut(0).state = State::Dead;
        assert!(s.reclaim());
        assert_eq!(s.items().len(), 1);
        assert_eq!(s.span(s.items()[0].text), "cccc");
        assert_eq!(s.live_text_bytes(), 4);
        s.check();
    }
}
