//! Finding special tokens written in the text, before the model's algorithm runs.
//!
//! llama.cpp splits the text once per special token, longest token first: every
//! occurrence of the token inside a piece of raw text that is still unclaimed becomes a
//! token, and tokens flagged LSTRIP/RSTRIP swallow the whitespace beside them. Doing that
//! literally costs one substring search per special token (Gemma 3 has 6,400 of them).
//! Here one pass finds every occurrence of every special token, overlapping ones
//! included, and the claims are then replayed in the same order (longest token first,
//! then left to right), which gives the same fragments.
//!
//! The pass looks up candidate substrings in a small hash table of the special tokens'
//! texts, trying at each position only the lengths some special token starting with that
//! byte has, and only when the pair of bytes there starts such a token and the last byte
//! fits too. An Aho-Corasick automaton (the `aho-corasick` crate, which this used before)
//! finds the same set, but building one over Gemma's 6,414 special tokens took about 2 ms,
//! a third of the whole vocabulary load at the time; this index builds in about 0.2 ms
//! (docs/benchmarks.md, "mm-tokenizer"). A position costs one table read when its byte
//! starts no special token; text full of runs of a special token's bytes (Gemma has
//! tokens for runs of up to 31 spaces or newlines) costs up to one lookup per length per
//! position, a bounded constant.

use crate::attr::TokenAttr;
use crate::table::TokenTable;
use crate::vocab::{TokenId, Vocab};

/// A set of the numbers below `64 * N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bits<const N: usize>([u64; N]);

impl<const N: usize> Default for Bits<N> {
    fn default() -> Self {
        Bits([0; N])
    }
}

impl<const N: usize> Bits<N> {
    fn insert(&mut self, i: usize) {
        self.0[i >> 6] |= 1 << (i & 63);
    }

    #[inline]
    fn contains(&self, i: usize) -> bool {
        self.0[i >> 6] >> (i & 63) & 1 != 0
    }
}

/// A set of bytes.
type ByteSet = Bits<4>;

/// A set of byte pairs, `b0 << 8 | b1`.
type PairSet = Bits<1024>;

fn pair(b0: u8, b1: u8) -> usize {
    usize::from(b0) << 8 | usize::from(b1)
}

/// Texts found with [`TokenAttr::CONTROL`] or [`TokenAttr::UNKNOWN`] count only when
/// special tokens are parsed.
const PARSED_ONLY: TokenAttr = TokenAttr(TokenAttr::CONTROL.0 | TokenAttr::UNKNOWN.0);

/// The special tokens of a vocabulary, indexed for finding them in text.
#[derive(Debug, Default)]
pub(crate) struct SpecialMatcher {
    /// Per first byte, the range of `lens` for the special tokens starting with it (empty
    /// when the vocabulary has no special token).
    by_first: Box<[(u32, u32)]>,
    /// `(length, possible last bytes)` of the special tokens with one first byte, by
    /// length.
    lens: Vec<(u32, ByteSet)>,
    /// The pairs of bytes that start a special token of two bytes or more.
    pairs: Box<PairSet>,
    /// Text to id of every special token; of tokens spelled alike, the first in claim
    /// order (the lowest id).
    all: TokenTable,
    /// The same for the tokens matched without parsing special tokens (no
    /// [`PARSED_ONLY`] attribute).
    always: TokenTable,
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
    /// `(claim key, start, end)` of every occurrence found, the key as [`claim_key`].
    found: Vec<(u64, u32, u32)>,
    /// Claimed ranges, sorted: `(start, end, token or NONE for swallowed whitespace)`.
    claimed: Vec<(u32, u32, TokenId)>,
}

/// Orders occurrences as llama.cpp claims them: longest token first, then by id.
fn claim_key(len: usize, id: TokenId) -> u64 {
    u64::from(u32::MAX - len as u32) << 32 | u64::from(id)
}

/// `isspace` in the C locale.
fn c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

impl SpecialMatcher {
    pub(crate) fn build(v: &Vocab, file: &[u8]) -> SpecialMatcher {
        // Claim keys (the id in the low half), sorted into claim order so that of tokens
        // spelled alike the first in it is inserted last and wins.
        let mut keys: Vec<u64> = crate::attr::ids_with_any(&v.attrs, crate::attr::SPECIAL)
            .filter_map(|i| match v.text(file, i).len() {
                0 => None,
                len => Some(claim_key(len, i)),
            })
            .collect();
        if keys.is_empty() {
            return SpecialMatcher::default();
        }
        keys.sort_unstable();
        let n_always = keys
            .iter()
            .filter(|&&k| !v.attrs[k as TokenId as usize].intersects(PARSED_ONLY))
            .count();
        let mut all = TokenTable::with_capacity(keys.len());
        let mut always = TokenTable::with_capacity(n_always);
        let mut pairs = Box::<PairSet>::default();
        // (first byte, length, last byte) of every token.
        let mut shapes: Vec<(u8, u32, u8)> = Vec::with_capacity(keys.len());
        for &k in keys.iter().rev() {
            let i = k as TokenId;
            let t = v.text(file, i);
            let h = v.hash(t);
            all.insert(h, i, |o| v.text(file, o) == t);
            if !v.attrs[i as usize].intersects(PARSED_ONLY) {
                always.insert(h, i, |o| v.text(file, o) == t);
            }
            if let [b0, b1, ..] = *t {
                pairs.insert(pair(b0, b1));
            }
            shapes.push((t[0], t.len() as u32, t[t.len() - 1]));
        }
        shapes.sort_unstable();
        let mut by_first = vec![(0u32, 0u32); 256].into_boxed_slice();
        let mut lens: Vec<(u32, ByteSet)> = Vec::new();
        for (k, &(first, len, last)) in shapes.iter().enumerate() {
            let new_first = k == 0 || shapes[k - 1].0 != first;
            if new_first {
                by_first[usize::from(first)].0 = lens.len() as u32;
            }
            if new_first || shapes[k - 1].1 != len {
                lens.push((len, ByteSet::default()));
            }
            if let Some((_, set)) = lens.last_mut() {
                set.insert(usize::from(last));
            }
            by_first[usize::from(first)].1 = lens.len() as u32;
        }
        SpecialMatcher {
            by_first,
            lens,
            pairs,
            all,
            always,
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.by_first)
            + self.lens.capacity() * std::mem::size_of::<(u32, ByteSet)>()
            + std::mem::size_of_val(&*self.pairs)
            + self.all.heap_bytes()
            + self.always.heap_bytes()
    }

    /// Appends every occurrence of a special token in `text` to `found` (overlapping ones
    /// too), looking them up in `table`.
    fn find_all(
        &self,
        v: &Vocab,
        file: &[u8],
        table: &TokenTable,
        text: &str,
        found: &mut Vec<(u64, u32, u32)>,
    ) {
        if self.by_first.is_empty() {
            return;
        }
        let t = text.as_bytes();
        for (pos, &b0) in t.iter().enumerate() {
            let (from, to) = self.by_first[usize::from(b0)];
            // A token that would cut a character in two is not matched.
            if from == to || !text.is_char_boundary(pos) {
                continue;
            }
            let pair_starts = t
                .get(pos + 1)
                .is_some_and(|&b1| self.pairs.contains(pair(b0, b1)));
            for &(len, last) in &self.lens[from as usize..to as usize] {
                let end = pos + len as usize;
                if (len > 1 && !pair_starts) || end > t.len() {
                    break;
                }
                if !last.contains(usize::from(t[end - 1])) || !text.is_char_boundary(end) {
                    continue;
                }
                let piece = &t[pos..end];
                if let Some(id) = table.find(v.hash(piece), |id| v.text(file, id) == piece) {
                    found.push((claim_key(piece.len(), id), pos as u32, end as u32));
                }
            }
        }
    }

    /// Splits `text` into raw fragments and special tokens, written to `out`.
    /// Control and unknown tokens count only when `parse_special`.
    pub(crate) fn partition(
        &self,
        v: &Vocab,
        file: &[u8],
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
        let table = if parse_special {
            &self.all
        } else {
            &self.always
        };
        self.find_all(v, file, table, text, &mut s.found);
        if s.found.is_empty() {
            out.push(Fragment::Text(0, text.len() as u32));
            return;
        }
        s.found.sort_unstable();
        let text = text.as_bytes();
        s.claimed.clear();
        for &(key, start, end) in &s.found {
            let at = s.claimed.partition_point(|c| c.0 < start);
            // Free only if it ends before the next claim and starts after the previous.
            let frag_end = s.claimed.get(at).map_or(text.len() as u32, |c| c.0);
            let frag_start = if at == 0 { 0 } else { s.claimed[at - 1].1 };
            if end > frag_end || start < frag_start {
                continue;
            }
            let id = key as TokenId;
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
