//! SentencePiece-style BPE (llama.cpp's `llama` tokenizer): start from single characters
//! and repeatedly merge the adjacent pair whose concatenation is the highest-scoring
//! token (ties: leftmost), then spell what never became a token as byte tokens.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::vocab::{NONE, TokenId, Vocab};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Sym {
    pub start: u32,
    pub len: u32,
    pub prev: i32,
    pub next: i32,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct SpmBigram {
    score: f32,
    left: u32,
    right: u32,
    size: u32,
}

impl PartialEq for SpmBigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for SpmBigram {}
impl PartialOrd for SpmBigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for SpmBigram {
    /// Greater pops first: higher score, then the leftmost.
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}

/// Reused buffers.
#[derive(Debug, Default)]
pub(crate) struct SpmScratch {
    syms: Vec<Sym>,
    heap: BinaryHeap<SpmBigram>,
}

/// Splits `text` (already escaped, `▁` for spaces) into tokens appended to `out`.
pub(crate) fn encode(
    v: &Vocab,
    file: &[u8],
    text: &[u8],
    out: &mut Vec<TokenId>,
    s: &mut SpmScratch,
) {
    s.syms.clear();
    s.heap.clear();
    let mut offs = 0usize;
    while offs < text.len() {
        let len = utf8_len(text[offs]).min(text.len() - offs);
        let i = s.syms.len() as i32;
        offs += len;
        s.syms.push(Sym {
            start: (offs - len) as u32,
            len: len as u32,
            prev: i - 1,
            next: if offs == text.len() { -1 } else { i + 1 },
        });
    }
    for i in 1..s.syms.len() {
        try_add(v, file, text, s, i as i32 - 1, i as i32);
    }
    while let Some(b) = s.heap.pop() {
        let (l, r) = (s.syms[b.left as usize], s.syms[b.right as usize]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
            continue;
        }
        let left = &mut s.syms[b.left as usize];
        left.len += r.len;
        left.next = r.next;
        let prev = left.prev;
        s.syms[b.right as usize].len = 0;
        if r.next >= 0 {
            s.syms[r.next as usize].prev = b.left as i32;
        }
        try_add(v, file, text, s, prev, b.left as i32);
        try_add(v, file, text, s, b.left as i32, r.next);
    }
    let mut i = 0i32;
    while i != -1 && !s.syms.is_empty() {
        let sym = s.syms[i as usize];
        let piece = &text[sym.start as usize..(sym.start + sym.len) as usize];
        match v.find(file, piece) {
            Some(id) => out.push(id),
            None => push_bytes(v, piece, out),
        }
        i = sym.next;
    }
}

/// Byte fallback: each byte's `<0xXX>` token (or the unknown token if the vocabulary
/// has no token for that byte; llama.cpp aborts there).
pub(crate) fn push_bytes(v: &Vocab, piece: &[u8], out: &mut Vec<TokenId>) {
    for &b in piece {
        let id = v.byte_tokens[b as usize];
        if id != NONE {
            out.push(id);
        } else if let Some(unk) = v.ids.unk {
            out.push(unk);
        }
    }
}

fn try_add(v: &Vocab, file: &[u8], text: &[u8], s: &mut SpmScratch, left: i32, right: i32) {
    if left < 0 || right < 0 {
        return;
    }
    let (l, r) = (s.syms[left as usize], s.syms[right as usize]);
    let end = (r.start + r.len) as usize;
    let Some(id) = v.find(file, &text[l.start as usize..end]) else {
        return;
    };
    s.heap.push(SpmBigram {
        score: v.score(file, id),
        left: left as u32,
        right: right as u32,
        size: l.len + r.len,
    });
}

/// Length of the UTF-8 sequence a lead byte starts (llama.cpp's table: a stray
/// continuation byte counts as one).
pub(crate) fn utf8_len(b: u8) -> usize {
    const LOOKUP: [usize; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4];
    LOOKUP[(b >> 4) as usize]
}
