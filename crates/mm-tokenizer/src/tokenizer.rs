//! The tokenizer: a [`Vocab`] bound to its file's bytes.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

use mm_gguf::MappedGguf;

use crate::attr::TokenAttr;
use crate::bpe::{self, BpeScratch};
use crate::error::Result;
use crate::special::{Fragment, SpecialScratch};
use crate::spm::{self, SpmScratch};
use crate::vocab::{TokenId, TokenizerModel, Vocab};

/// How [`Tokenizer::encode`] treats special tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    add_special: bool,
    parse_special: bool,
}

impl EncodeOptions {
    /// Plain text: no BOS/EOS added, control tokens written in the text stay text
    /// (user-defined tokens are still matched, as in llama.cpp). Same as `Default`.
    pub const fn new() -> Self {
        EncodeOptions {
            add_special: false,
            parse_special: false,
        }
    }

    /// Adds BOS/EOS as the vocabulary's `add_bos_token`/`add_eos_token` flags say.
    /// Default: off.
    pub const fn with_add_special(mut self, on: bool) -> Self {
        self.add_special = on;
        self
    }

    /// Matches control tokens written in the text (`<start_of_turn>`) as those tokens.
    /// Default: off.
    pub const fn with_parse_special(mut self, on: bool) -> Self {
        self.parse_special = on;
        self
    }

    /// Whether BOS/EOS are added.
    pub const fn add_special(&self) -> bool {
        self.add_special
    }

    /// Whether control tokens in the text are parsed.
    pub const fn parse_special(&self) -> bool {
        self.parse_special
    }
}

/// How [`Tokenizer::decode`] renders tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    remove_special: bool,
    render_special: bool,
}

impl DecodeOptions {
    /// Control tokens render as nothing; a leading BOS is kept. Same as `Default`.
    pub const fn new() -> Self {
        DecodeOptions {
            remove_special: false,
            render_special: false,
        }
    }

    /// Drops a leading BOS and a trailing EOS that encoding would have added. Default: off.
    pub const fn with_remove_special(mut self, on: bool) -> Self {
        self.remove_special = on;
        self
    }

    /// Renders control and unknown tokens as their text. Default: off.
    pub const fn with_render_special(mut self, on: bool) -> Self {
        self.render_special = on;
        self
    }
}

/// Buffers reused across calls on one thread.
#[derive(Debug, Default)]
struct Scratch {
    frags: Vec<Fragment>,
    special: SpecialScratch,
    text: String,
    spm: SpmScratch,
    bpe: BpeScratch,
    /// Ids for [`Tokenizer::count`].
    ids: Vec<TokenId>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// A GGUF model's tokenizer, borrowing its vocabulary from the file's bytes.
///
/// A cheap `Copy` view: the [`Vocab`] index and the file (a map or a buffer). Encoding
/// uses per-thread buffers that grow to the largest message seen and are then reused,
/// so once warm [`encode_into`](Self::encode_into) allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct Tokenizer<'a> {
    pub(crate) file: &'a [u8],
    pub(crate) vocab: &'a Vocab,
}

impl<'a> Tokenizer<'a> {
    /// The index.
    pub fn vocab(&self) -> &'a Vocab {
        self.vocab
    }

    /// Number of tokens in the vocabulary.
    pub fn n_tokens(&self) -> usize {
        self.vocab.len()
    }

    /// Token `id`'s text as stored in the file (the `▁`/byte-level spelling), borrowed
    /// from the file; `None` past the end.
    pub fn piece(&self, id: TokenId) -> Option<&'a [u8]> {
        ((id as usize) < self.vocab.len()).then(|| self.vocab.text(self.file, id))
    }

    /// Token `id`'s score (`tokenizer.ggml.scores`, 0 without), `None` past the end.
    pub fn score(&self, id: TokenId) -> Option<f32> {
        self.vocab.score_of(self.file, id)
    }

    /// Token `id`'s attributes, `None` past the end.
    pub fn attr(&self, id: TokenId) -> Option<TokenAttr> {
        self.vocab.attr(id)
    }

    /// The id of the token spelled exactly `text` (stored spelling).
    pub fn token_id(&self, text: &str) -> Option<TokenId> {
        self.vocab.token_id(self.file, text)
    }

    /// Encodes `text` into a new vector.
    pub fn encode(&self, text: &str, opts: EncodeOptions) -> Vec<TokenId> {
        let mut out = Vec::new();
        self.encode_into(text, opts, &mut out);
        out
    }

    /// Number of tokens `text` encodes to.
    pub fn count(&self, text: &str, opts: EncodeOptions) -> usize {
        SCRATCH.with(|c| match c.try_borrow_mut() {
            Ok(mut s) => {
                let mut ids = std::mem::take(&mut s.ids);
                ids.clear();
                self.encode_with(&mut s, text, opts, &mut ids);
                let n = ids.len();
                s.ids = ids;
                n
            }
            Err(_) => self.encode(text, opts).len(),
        })
    }

    /// Appends the ids of `text` to `out` (which is not cleared).
    pub fn encode_into(&self, text: &str, opts: EncodeOptions, out: &mut Vec<TokenId>) {
        SCRATCH.with(|c| match c.try_borrow_mut() {
            Ok(mut s) => self.encode_with(&mut s, text, opts, out),
            // Re-entered from a callback on this thread: use fresh buffers.
            Err(_) => self.encode_with(&mut Scratch::default(), text, opts, out),
        });
    }

    fn encode_with(
        &self,
        s: &mut Scratch,
        text: &str,
        opts: EncodeOptions,
        out: &mut Vec<TokenId>,
    ) {
        let v = self.vocab;
        let Scratch {
            frags,
            special,
            text: buf,
            spm: spm_s,
            bpe: bpe_s,
            ids: _,
        } = s;
        v.specials
            .partition(v, self.file, text, opts.parse_special, frags, special);
        let bos = opts.add_special && v.add_bos;
        if bos && let Some(b) = v.ids.bos {
            out.push(b);
        }
        let mut prev_special = true;
        for &f in frags.iter() {
            match f {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(a, b) => {
                    let raw = &text[a as usize..b as usize];
                    match v.model {
                        TokenizerModel::Spm => {
                            buf.clear();
                            if v.add_space_prefix && prev_special {
                                buf.push('▁');
                            }
                            escape_into(raw, buf);
                            spm::encode(v, self.file, buf.as_bytes(), out, spm_s);
                        }
                        TokenizerModel::Bpe | TokenizerModel::Gemma4 => {
                            if v.escape_whitespace {
                                buf.clear();
                                escape_into(raw, buf);
                                bpe::encode(v, self.file, buf, out, bpe_s);
                            } else {
                                bpe::encode(v, self.file, raw, out, bpe_s);
                            }
                        }
                    }
                    prev_special = false;
                }
            }
        }
        if opts.add_special
            && v.add_eos
            && let Some(e) = v.ids.eos
        {
            out.push(e);
        }
    }

    /// Appends the bytes token `id` stands for to `out` (llama.cpp's `token_to_piece`):
    /// `▁` becomes a space, byte tokens their byte, byte-level characters their bytes;
    /// control and unknown tokens render only with `render_special`.
    pub fn piece_bytes_into(&self, id: TokenId, render_special: bool, out: &mut Vec<u8>) {
        let Some(attr) = self.vocab.attr(id) else {
            return;
        };
        let text = self.vocab.text(self.file, id);
        let special = TokenAttr::UNKNOWN.with(TokenAttr::CONTROL);
        if attr.intersects(special) && !render_special {
            return;
        }
        if attr.intersects(special.with(TokenAttr::USER_DEFINED)) {
            out.extend_from_slice(text);
        } else if attr.intersects(TokenAttr::NORMAL) {
            if self.vocab.escape_whitespace {
                unescape_into(text, out);
            } else {
                byte_decode_into(text, out);
            }
        } else if attr.intersects(TokenAttr::BYTE)
            && let Some(b) = text
                .get(3..5)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
        }
    }

    /// Appends the text of `ids` to `out` as bytes (pieces may split UTF-8 sequences).
    pub fn decode_into(&self, ids: &[TokenId], opts: DecodeOptions, out: &mut Vec<u8>) {
        let v = self.vocab;
        let mut ids = ids;
        let mut strip_space = v.add_space_prefix;
        if opts.remove_special && v.add_bos && ids.first().is_some_and(|&f| Some(f) == v.ids.bos) {
            ids = &ids[1..];
            strip_space = false;
        }
        if opts.remove_special && v.add_eos && ids.last().is_some_and(|&l| Some(l) == v.ids.eos) {
            ids = &ids[..ids.len() - 1];
        }
        for (i, &id) in ids.iter().enumerate() {
            let at = out.len();
            self.piece_bytes_into(id, opts.render_special, out);
            if i == 0 && strip_space && out.get(at) == Some(&b' ') {
                out.remove(at);
            }
        }
    }

    /// The text of `ids` (invalid UTF-8 from partial byte tokens is replaced).
    pub fn decode(&self, ids: &[TokenId], opts: DecodeOptions) -> String {
        let mut out = Vec::new();
        self.decode_into(ids, opts, &mut out);
        match String::from_utf8(out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }
}

fn escape_into(raw: &str, buf: &mut String) {
    for (i, part) in raw.split(' ').enumerate() {
        if i > 0 {
            buf.push('▁');
        }
        buf.push_str(part);
    }
}

fn unescape_into(text: &[u8], out: &mut Vec<u8>) {
    const MARK: &[u8] = "▁".as_bytes();
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(MARK) {
            out.push(b' ');
            i += MARK.len();
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
}

fn byte_decode_into(text: &[u8], out: &mut Vec<u8>) {
    let Ok(s) = std::str::from_utf8(text) else {
        out.extend_from_slice(text);
        return;
    };
    for c in s.chars() {
        match crate::bytes::char_byte(c) {
            Some(b) => out.push(b),
            None => {
                let mut u = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut u).as_bytes());
            }
        }
    }
}

/// A tokenizer that owns (a share of) its mapped GGUF file, for holding in long-lived
/// structures; [`tokenizer`](Self::tokenizer) lends the borrowing view.
#[derive(Debug)]
pub struct OwnedTokenizer {
    vocab: Vocab,
    gguf: Arc<MappedGguf>,
}

impl OwnedTokenizer {
    /// Maps `path` (through mm-gguf's process-wide map cache) and builds the index.
    ///
    /// # Safety
    /// As [`MappedGguf::open`]: the file must not be modified in place or truncated while
    /// the returned value lives.
    ///
    /// # Errors
    /// Every error of [`MappedGguf::open`] and [`Vocab::from_gguf`].
    pub unsafe fn open(path: impl AsRef<Path>) -> Result<Self> {
        // SAFETY: the caller's contract is the one `MappedGguf::open` asks for.
        let m = unsafe { MappedGguf::open(path) }?;
        Self::from_mapped(Arc::new(m))
    }

    /// Builds the index of an already mapped file.
    ///
    /// # Errors
    /// As [`Vocab::from_gguf`].
    pub fn from_mapped(gguf: Arc<MappedGguf>) -> Result<Self> {
        let vocab = Vocab::from_gguf(gguf.gguf())?;
        Ok(OwnedTokenizer { vocab, gguf })
    }

    /// The borrowing view.
    pub fn tokenizer(&self) -> Tokenizer<'_> {
        Tokenizer {
            file: self.gguf.gguf().bytes(),
            vocab: &self.vocab,
        }
    }

    /// The index.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// The mapped file.
    pub fn gguf(&self) -> &Arc<MappedGguf> {
        &self.gguf
    }
}
