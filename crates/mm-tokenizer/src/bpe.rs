//! Byte-level BPE (llama.cpp's `gpt2` and `gemma4` tokenizers): each pre-tokenized word
//! starts as single characters and the adjacent pair with the lowest merge rank is merged
//! (ties: leftmost) until no pair has a merge.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::bytes::BYTE_UTF8;
use crate::pretok::SplitScratch;
use crate::spm::utf8_len;
use crate::vocab::{NONE, TokenId, Vocab};

#[derive(Debug, Clone, Copy)]
struct Sym {
    start: u32,
    len: u32,
    next: i32,
    prev: i32,
    id: TokenId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BpeBigram {
    rank: u32,
    left: u32,
    right: u32,
    size: u32,
    merged: TokenId,
}

impl PartialOrd for BpeBigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for BpeBigram {
    /// Greater pops first: lowest rank, then the leftmost.
    fn cmp(&self, o: &Self) -> Ordering {
        o.rank.cmp(&self.rank).then_with(|| o.left.cmp(&self.left))
    }
}

/// Reused buffers.
#[derive(Debug, Default)]
pub(crate) struct BpeScratch {
    words: Vec<(u32, u32)>,
    split: SplitScratch,
    word: Vec<u8>,
    syms: Vec<Sym>,
    heap: BinaryHeap<BpeBigram>,
}

/// Tokenizes one raw fragment (already escaped for Gemma 4) into `out`.
pub(crate) fn encode(
    v: &Vocab,
    file: &[u8],
    text: &str,
    out: &mut Vec<TokenId>,
    s: &mut BpeScratch,
) {
    let Some(splitter) = &v.splitter else {
        return;
    };
    splitter.split(text, &mut s.words, &mut s.split);
    for wi in 0..s.words.len() {
        let (a, b) = s.words[wi];
        let raw = &text.as_bytes()[a as usize..b as usize];
        s.word.clear();
        if v.byte_encode {
            for &c in raw {
                let (u, n) = BYTE_UTF8[c as usize];
                s.word.extend_from_slice(&u[..n as usize]);
            }
        } else {
            s.word.extend_from_slice(raw);
        }
        encode_word(v, file, out, s);
    }
}

fn encode_word(v: &Vocab, file: &[u8], out: &mut Vec<TokenId>, s: &mut BpeScratch) {
    let word = &s.word[..];
    let whole_newlines = !v.byte_encode && word.iter().all(|&c| c == b'\n');
    if (v.ignore_merges || whole_newlines)
        && let Some(id) = v.find(file, word)
    {
        out.push(id);
        return;
    }
    s.syms.clear();
    s.heap.clear();
    let mut offs = 0usize;
    while offs < word.len() {
        let len = utf8_len(word[offs]).min(word.len() - offs);
        let i = s.syms.len() as i32;
        let id = v.find(file, &word[offs..offs + len]).unwrap_or(NONE);
        offs += len;
        s.syms.push(Sym {
            start: (offs - len) as u32,
            len: len as u32,
            prev: i - 1,
            next: if offs == word.len() { -1 } else { i + 1 },
            id,
        });
    }
    for i in 1..s.syms.len() {
        add_bigram(v, s, i as i32 - 1, i as i32);
    }
    while let Some(b) = s.heap.pop() {
        let (l, r) = (s.syms[b.left as usize], s.syms[b.right as usize]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
            continue;
        }
        let left = &mut s.syms[b.left as usize];
        left.len += r.len;
        left.next = r.next;
        left.id = b.merged;
        let prev = left.prev;
        s.syms[b.right as usize].len = 0;
        if r.next >= 0 {
            s.syms[r.next as usize].prev = b.left as i32;
        }
        add_bigram(v, s, prev, b.left as i32);
        add_bigram(v, s, b.left as i32, r.next);
    }
    let word = &s.word[..];
    let mut i = 0i32;
    while i != -1 && !s.syms.is_empty() {
        let sym = s.syms[i as usize];
        i = sym.next;
        if sym.id != NONE {
            out.push(sym.id);
            continue;
        }
        // Not a token: llama.cpp looks up each byte on its own.
        for &c in &word[sym.start as usize..(sym.start + sym.len) as usize] {
            let id = if v.byte_encode {
                v.find(file, &[c])
            } else {
                Some(v.byte_tokens[c as usize]).filter(|&t| t != NONE)
            };
            if let Some(id) = id {
                out.push(id);
            }
        }
    }
}

fn add_bigram(v: &Vocab, s: &mut BpeScratch, left: i32, right: i32) {
    if left < 0 || right < 0 {
        return;
    }
    let (l, r) = (s.syms[left as usize], s.syms[right as usize]);
    let Some((rank, merged)) = v.merge(l.id, r.id) else {
        return;
    };
    s.heap.push(BpeBigram {
        rank,
        left: left as u32,
        right: right as u32,
        size: l.len + r.len,
        merged,
    });
}
