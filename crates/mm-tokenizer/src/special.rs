//! Finding special tokens written in the text, before the model's algorithm runs.
//!
//! llama.cpp splits the text once per special token, longest token first: every
//! occurrence of the token inside a piece of raw text that is still unclaimed becomes a
//! token, and tokens flagged LSTRIP/RSTRIP swallow the whitespace beside them. Doing that
//! literally costs one substring search per special token (Gemma 3 has 6,400 of them).
//! Here one Aho-Corasick pass finds every occurrence of every special token, overlapping
//! ones included, and the claims are then replayed in the same order (longest token
//! first, then left to right), which gives the same fragments.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use crate::attr::TokenAttr;
use crate::vocab::{TokenId, Vocab};

/// The special tokens of a vocabulary, as one automaton.
#[derive(Debug, Default)]
pub(crate) struct SpecialMatcher {
    /// Pattern `i` is `ids[i]`; patterns are in claim order (longest first).
    ac: Option<AhoCorasick>,
    ids: Vec<TokenId>,
}

/// A piece of the text after special tokens are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// Raw text `start..end`.
    Text(u32, u32),
    /// A special token.
    Token(TokenId),
}

/// Reused buffers.
#[derive(Debug, Default)]
pub(crate) struct SpecialScratch {
    /// `(claim order, start, end)` of every occurrence found.
    found: Vec<(u32, u32, u32)>,
    /// Claimed ranges, sorted: `(start, end, token or NONE for swallowed whitespace)`.
    claimed: Vec<(u32, u32, TokenId)>,
}

/// `isspace` in the C locale.
fn c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

impl SpecialMatcher {
    pub(crate) fn build(v: &Vocab, file: &[u8]) -> SpecialMatcher {
        let mut ids: Vec<TokenId> = (0..v.len() as TokenId)
            .filter(|&i| v.attrs[i as usize].is_special() && !v.text(file, i).is_empty())
            .collect();
        // Longest first; ties keep id order (llama.cpp's sort is not stable; ties only
        // matter for equal-length special tokens that overlap in the text).
        ids.sort_by_key(|&i| std::cmp::Reverse(v.text(file, i).len()));
        if ids.is_empty() {
            return SpecialMatcher::default();
        }
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            // A DFA over thousands of patterns takes milliseconds to build; the
            // contiguous NFA builds several times faster and texts rarely hold many
            // special tokens.
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .build(ids.iter().map(|&i| v.text(file, i)))
            .ok();
        SpecialMatcher { ac, ids }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.ids.capacity() * 4 + self.ac.as_ref().map_or(0, |a| a.memory_usage())
    }

    /// Splits `text` into raw fragments and special tokens, written to `out`.
    /// Control and unknown tokens count only when `parse_special`.
    pub(crate) fn partition(
        &self,
        v: &Vocab,
        text: &str,
        parse_special: bool,
        out: &mut Vec<Fragment>,
        s: &mut SpecialScratch,
    ) {
        out.clear();
        if text.is_empty() {
            return;
        }
        s.found.clear();
        if let Some(ac) = &self.ac {
            let skip = TokenAttr::CONTROL.with(TokenAttr::UNKNOWN);
            for m in ac.find_overlapping_iter(text) {
                // A token that would cut a character in two is not matched.
                if !text.is_char_boundary(m.start()) || !text.is_char_boundary(m.end()) {
                    continue;
                }
                let p = m.pattern().as_u32();
                let id = self.ids[p as usize];
                if !parse_special && v.attrs[id as usize].intersects(skip) {
                    continue;
                }
                s.found.push((p, m.start() as u32, m.end() as u32));
            }
        }
        if s.found.is_empty() {
            out.push(Fragment::Text(0, text.len() as u32));
            return;
        }
        s.found.sort_unstable();
        let text = text.as_bytes();
        s.claimed.clear();
        for &(p, start, end) in &s.found {
            let at = s.claimed.partition_point(|c| c.0 < start);
            // Free only if it ends before the next claim and starts after the previous.
            let frag_end = s.claimed.get(at).map_or(text.len() as u32, |c| c.0);
            let frag_start = if at == 0 { 0 } else { s.claimed[at - 1].1 };
            if end > frag_end || start < frag_start {
                continue;
            }
            let id = self.ids[p as usize];
            let attr = v.attrs[id as usize];
            let mut ins = vec_insert(&mut s.claimed, at, (start, end, id));
            if attr.intersects(TokenAttr::LSTRIP) && start > frag_start {
                let mut ls = start;
                while ls > frag_start && c_space(text[ls as usize - 1]) {
                    ls -= 1;
                }
                if ls < start {
                    vec_insert(&mut s.claimed, ins, (ls, start, crate::vocab::NONE));
                    ins += 1;
                }
            }
            if attr.intersects(TokenAttr::RSTRIP) && end < frag_end {
                let mut re = end;
                while re < frag_end && c_space(text[re as usize]) {
                    re += 1;
                }
                if re > end {
                    vec_insert(&mut s.claimed, ins + 1, (end, re, crate::vocab::NONE));
                }
            }
        }
        let mut pos = 0;
        for &(start, end, id) in &s.claimed {
            if start > pos {
                out.push(Fragment::Text(pos, start));
            }
            if id != crate::vocab::NONE {
                out.push(Fragment::Token(id));
            }
            pos = end;
        }
        if (pos as usize) < text.len() {
            out.push(Fragment::Text(pos, text.len() as u32));
        }
    }
}

/// Inserts at `at`, returning the index the element now has.
fn vec_insert<T>(v: &mut Vec<T>, at: usize, x: T) -> usize {
    v.insert(at, x);
    at
}
