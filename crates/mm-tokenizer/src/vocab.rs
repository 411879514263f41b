//! The vocabulary index: built once from the GGUF metadata, holding no token text.
//!
//! Token strings stay in the file (the map): the index keeps, per token, the offset of
//! its length-prefixed string inside `tokenizer.ggml.tokens` (4 bytes), its attributes
//! (2 bytes) and a slot in a hash table of ids keyed by the text the ids point at
//! (`table.rs`).
//! Scores and token types are read from the file when needed.

use std::hash::{BuildHasher, Hasher};

use foldhash::fast::FixedState;
use hashbrown::HashMap;
use mm_budget::{MemoryBudget, Reservation};
use mm_gguf::{ArrayView, Gguf, Value, ValueType};

use crate::attr::TokenAttr;
use crate::error::{Result, TokenizerError};
use crate::pretok::{PreTokenizer, Splitter};
use crate::special::SpecialMatcher;
use crate::table::TokenTable;

/// A token id.
pub type TokenId = u32;

const TOKENS: &str = "tokenizer.ggml.tokens";
const SCORES: &str = "tokenizer.ggml.scores";
const TYPES: &str = "tokenizer.ggml.token_type";
const MERGES: &str = "tokenizer.ggml.merges";

/// The tokenizer family (`tokenizer.ggml.model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenizerModel {
    /// `llama`: SentencePiece-style BPE by piece score over the whole text, spaces as
    /// `▁`, byte fallback to `<0xXX>` tokens.
    Spm,
    /// `gpt2`: byte-level BPE over `tokenizer.ggml.merges`, after a pre-tokenizer.
    Bpe,
    /// `gemma4`: BPE over merges on raw UTF-8 with spaces as `▁` and `<0xXX>` fallback.
    Gemma4,
}

/// The special token ids a vocabulary declares (or llama.cpp's defaults for the family).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpecialIds {
    /// Beginning of sequence.
    pub bos: Option<TokenId>,
    /// End of sequence.
    pub eos: Option<TokenId>,
    /// End of turn.
    pub eot: Option<TokenId>,
    /// End of message.
    pub eom: Option<TokenId>,
    /// Unknown.
    pub unk: Option<TokenId>,
    /// Separator.
    pub sep: Option<TokenId>,
    /// Padding.
    pub pad: Option<TokenId>,
    /// Mask.
    pub mask: Option<TokenId>,
}

/// Where an `f32`/`i32` array lives in the file.
#[derive(Debug, Clone, Copy)]
struct NumArray {
    offset: u64,
    int: bool,
}

/// The vocabulary index of a GGUF tokenizer, holding no token text.
///
/// Build it with [`Vocab::from_gguf`], then bind it to the same file's bytes with
/// [`Vocab::tokenizer`] to encode and decode. Its heap ([`Vocab::heap_bytes`]) is 6 bytes
/// per token plus 8 to 16 in the text-to-id table (64-byte lines of ten slots, at most 80 %
/// full, a power of two of lines), for BPE 24 per merge, and the special-token automaton;
/// [`Vocab::from_gguf_charged`] reserves it from a [`MemoryBudget`] for as long as the
/// index lives.
#[derive(Debug)]
pub struct Vocab {
    pub(crate) model: TokenizerModel,
    pub(crate) splitter: Option<Splitter>,
    /// File offset of the first element of `tokenizer.ggml.tokens`.
    tokens_at: u64,
    /// Per token, the offset of its length prefix from `tokens_at`.
    offsets: Vec<u32>,
    lookup: TokenTable,
    hasher: FixedState,
    pub(crate) attrs: Vec<TokenAttr>,
    scores: Option<NumArray>,
    /// `(left id, right id)` to `(rank, merged id or NONE)`.
    pub(crate) merges: HashMap<u64, (u32, TokenId), FixedState>,
    pub(crate) specials: SpecialMatcher,
    pub(crate) ids: SpecialIds,
    /// Token for each byte value (`<0xXX>`, or the byte's own text), `NONE` if absent.
    pub(crate) byte_tokens: Box<[TokenId; 256]>,
    pub(crate) add_bos: bool,
    pub(crate) add_eos: bool,
    pub(crate) add_space_prefix: bool,
    pub(crate) escape_whitespace: bool,
    pub(crate) byte_encode: bool,
    pub(crate) ignore_merges: bool,
    reservation: Option<Reservation>,
}

/// "No token" inside the index.
pub(crate) const NONE: TokenId = TokenId::MAX;

fn bad(key: &'static str, problem: impl Into<String>) -> TokenizerError {
    TokenizerError::BadMetadata {
        key,
        problem: problem.into(),
    }
}

fn num_array(g: &Gguf<'_>, key: &'static str, n: u64, ints_only: bool) -> Result<Option<NumArray>> {
    let Some(v) = g.get(key) else {
        return Ok(None);
    };
    let a = v.as_array().ok_or_else(|| bad(key, "expected an array"))?;
    let int = match a.element_type() {
        ValueType::I32 => true,
        ValueType::F32 if !ints_only => false,
        t => return Err(bad(key, format!("unexpected element type {}", t.name()))),
    };
    if a.len() < n {
        return Err(bad(key, format!("{} elements for {n} tokens", a.len())));
    }
    Ok(Some(NumArray {
        offset: a.offset(),
        int,
    }))
}

fn opt_bool(g: &Gguf<'_>, key: &str) -> Option<bool> {
    g.get(key).and_then(|v| v.as_bool())
}

impl Vocab {
    /// Builds the index from a parsed GGUF file's `tokenizer.*` metadata.
    ///
    /// Walks the token strings once (hashing each), reads the token types and, for BPE,
    /// the merges. Nothing of the text is copied.
    ///
    /// # Errors
    /// [`TokenizerError::UnsupportedModel`] / [`TokenizerError::UnsupportedPreTokenizer`]
    /// for a family not implemented here; [`TokenizerError::Gguf`] when
    /// `tokenizer.ggml.model` or the token list is missing; [`TokenizerError::BadMetadata`]
    /// for arrays of the wrong type or length.
    pub fn from_gguf(g: &Gguf<'_>) -> Result<Vocab> {
        let model_name = g.get_str("tokenizer.ggml.model")?;
        let pre_name = g
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let model = match model_name {
            "llama" => TokenizerModel::Spm,
            "gpt2" => TokenizerModel::Bpe,
            "gemma4" => TokenizerModel::Gemma4,
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        let tokens = g.get_array(TOKENS)?;
        if tokens.element_type() != ValueType::String {
            return Err(bad(TOKENS, "expected an array of strings"));
        }
        let n = tokens.len();
        if n >= u64::from(NONE) {
            return Err(TokenizerError::TooManyTokens(n));
        }
        let file = g.bytes();
        let (offsets, lookup, hasher) = index_strings(tokens)?;
        let scores = num_array(g, SCORES, n, false)?;
        let types = num_array(g, TYPES, n, true)?;

        let mut v = Vocab {
            model,
            splitter: None,
            tokens_at: tokens.offset(),
            offsets,
            lookup,
            hasher,
            attrs: Vec::new(),
            scores,
            merges: HashMap::with_hasher(FixedState::with_seed(0)),
            specials: SpecialMatcher::default(),
            ids: SpecialIds::default(),
            byte_tokens: Box::new([NONE; 256]),
            add_bos: false,
            add_eos: false,
            add_space_prefix: false,
            escape_whitespace: false,
            byte_encode: false,
            ignore_merges: false,
            reservation: None,
        };
        v.attrs = match types {
            Some(t) => token_attrs(file, t.offset, n as usize),
            None => vec![TokenAttr::NORMAL; n as usize],
        };

        let mut defaults = SpecialIds::default();
        match model {
            TokenizerModel::Spm => {
                v.add_space_prefix = true;
                v.add_bos = true;
                v.escape_whitespace = true;
                defaults.bos = Some(1);
                defaults.eos = Some(2);
                defaults.unk = Some(0);
            }
            TokenizerModel::Bpe | TokenizerModel::Gemma4 => {
                let pre = if model == TokenizerModel::Gemma4 {
                    "gemma4"
                } else {
                    pre_name
                };
                let (kind, flags) = PreTokenizer::resolve(pre)
                    .ok_or_else(|| TokenizerError::UnsupportedPreTokenizer(pre.to_string()))?;
                v.splitter = Some(Splitter::new(kind));
                v.ignore_merges = flags.ignore_merges;
                if let Some(b) = flags.add_bos {
                    v.add_bos = b;
                }
                v.byte_encode = kind != PreTokenizer::Gemma4;
                v.escape_whitespace = kind == PreTokenizer::Gemma4;
                if model == TokenizerModel::Bpe && !flags.no_bos {
                    defaults.bos = Some(11);
                }
                if model == TokenizerModel::Bpe {
                    defaults.eos = Some(11);
                }
                v.load_merges(g)?;
            }
        }
        if let Some(b) = opt_bool(g, "tokenizer.ggml.add_space_prefix") {
            v.add_space_prefix = b;
        }
        v.read_special_ids(g, defaults);
        if let Some(b) = opt_bool(g, "tokenizer.ggml.add_bos_token") {
            v.add_bos = b;
        }
        if let Some(b) = opt_bool(g, "tokenizer.ggml.add_eos_token") {
            v.add_eos = b;
        }
        if model == TokenizerModel::Gemma4 {
            v.add_bos = true;
        }
        v.byte_tokens = Box::new(std::array::from_fn(|b| v.byte_token_for(file, b as u8)));
        crate::fixups::apply(&mut v, g);
        v.specials = SpecialMatcher::build(&v, file);
        Ok(v)
    }

    /// As [`from_gguf`](Self::from_gguf), then reserves [`heap_bytes`](Self::heap_bytes)
    /// from `budget`, released when the index drops.
    ///
    /// # Errors
    /// As `from_gguf`, and [`TokenizerError::Budget`] when the budget refuses.
    pub fn from_gguf_charged(g: &Gguf<'_>, budget: &MemoryBudget) -> Result<Vocab> {
        let mut v = Self::from_gguf(g)?;
        let bytes = v.heap_bytes();
        let r = budget
            .try_reserve(bytes)
            .map_err(|source| TokenizerError::Budget { bytes, source })?;
        v.reservation = Some(r);
        Ok(v)
    }

    /// The bytes reserved from a budget for this index, if it was charged.
    pub fn charged_bytes(&self) -> Option<u64> {
        self.reservation.as_ref().map(|r| r.bytes())
    }

    /// Binds the index to the bytes of the file it was built from.
    ///
    /// # Errors
    /// [`TokenizerError::WrongFile`] when `g` is not that file (its token list sits
    /// elsewhere), [`TokenizerError::Gguf`] when it has no token list.
    pub fn tokenizer<'a>(&'a self, g: &Gguf<'a>) -> Result<crate::Tokenizer<'a>> {
        let found = g.get_array(TOKENS)?.offset();
        if found != self.tokens_at || g.get_array(TOKENS)?.len() != self.offsets.len() as u64 {
            return Err(TokenizerError::WrongFile {
                expected: self.tokens_at,
                found,
            });
        }
        Ok(crate::Tokenizer {
            file: g.bytes(),
            vocab: self,
        })
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// True when the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The tokenizer family.
    pub fn model(&self) -> TokenizerModel {
        self.model
    }

    /// The pre-tokenizer (BPE families only).
    pub fn pre_tokenizer(&self) -> Option<PreTokenizer> {
        self.splitter.as_ref().map(|s| s.kind())
    }

    /// The special token ids.
    pub fn special_ids(&self) -> SpecialIds {
        self.ids
    }

    /// Whether encoding with special tokens added puts BOS first.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether encoding with special tokens added puts EOS last.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Whether SentencePiece-style text gets a leading space (`▁`) before the first piece
    /// and after each special token.
    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// A token's attributes (after llama.cpp's fix-ups), `None` past the end.
    pub fn attr(&self, id: TokenId) -> Option<TokenAttr> {
        self.attrs.get(id as usize).copied()
    }

    /// A token's score (0 when the file has none), `None` past the end.
    pub fn score_of(&self, file: &[u8], id: TokenId) -> Option<f32> {
        if id as usize >= self.len() {
            return None;
        }
        Some(self.score(file, id))
    }

    /// Heap held by the index: offsets, attributes, hash table, merges, the
    /// special-token automaton and the byte table.
    pub fn heap_bytes(&self) -> u64 {
        let table = self.lookup.heap_bytes();
        let merges = self.merges.capacity() * (8 + 8 + 1);
        let splitter = if self.splitter.is_some() {
            64 * 1024
        } else {
            0
        };
        (self.offsets.capacity() * 4
            + self.attrs.capacity() * 2
            + table
            + merges
            + self.specials.heap_bytes()
            + 256 * 4
            + splitter) as u64
    }

    /// Number of merges kept (BPE).
    pub fn n_merges(&self) -> usize {
        self.merges.len()
    }

    pub(crate) fn score(&self, file: &[u8], id: TokenId) -> f32 {
        match self.scores {
            None => 0.0,
            Some(NumArray { offset, int: true }) => read_i32(file, offset, id) as f32,
            Some(NumArray { offset, int: false }) => {
                f32::from_bits(read_i32(file, offset, id) as u32)
            }
        }
    }

    /// A token's text as stored (empty when `id` is out of range).
    pub(crate) fn text<'f>(&self, file: &'f [u8], id: TokenId) -> &'f [u8] {
        let Some(&rel) = self.offsets.get(id as usize) else {
            return &[];
        };
        string_at(file, self.tokens_at + u64::from(rel)).unwrap_or(&[])
    }

    /// The hash the text-to-id tables key `text` by.
    #[inline]
    pub(crate) fn hash(&self, text: &[u8]) -> u64 {
        hash_text(&self.hasher, text)
    }

    /// The id of the token spelled `text`.
    #[inline]
    pub(crate) fn find(&self, file: &[u8], text: &[u8]) -> Option<TokenId> {
        let h = self.hash(text);
        self.lookup.find(h, |id| self.text(file, id) == text)
    }

    pub(crate) fn merge(&self, left: TokenId, right: TokenId) -> Option<(u32, TokenId)> {
        if left == NONE || right == NONE {
            return None;
        }
        self.merges
            .get(&(u64::from(left) << 32 | u64::from(right)))
            .copied()
    }

    fn byte_token_for(&self, file: &[u8], b: u8) -> TokenId {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let spelled = [
            b'<',
            b'0',
            b'x',
            HEX[(b >> 4) as usize],
            HEX[(b & 15) as usize],
            b'>',
        ];
        match self.model {
            TokenizerModel::Spm | TokenizerModel::Gemma4 => self
                .find(file, &spelled)
                .or_else(|| self.find(file, &[b]))
                .unwrap_or(NONE),
            TokenizerModel::Bpe => {
                let (u, n) = crate::bytes::BYTE_UTF8[b as usize];
                self.find(file, &u[..n as usize]).unwrap_or(NONE)
            }
        }
    }

    fn load_merges(&mut self, g: &Gguf<'_>) -> Result<()> {
        let merges = g.get_array(MERGES)?;
        if merges.element_type() != ValueType::String {
            return Err(bad(MERGES, "expected an array of strings"));
        }
        let file = g.bytes();
        self.merges.reserve(merges.len().min(1 << 24) as usize);
        let mut joined = Vec::new();
        for (rank, m) in merges.iter().enumerate() {
            let Value::String(m) = m? else {
                return Err(bad(MERGES, "expected strings"));
            };
            let m = m.as_bytes();
            // llama.cpp splits at the first space after the first byte.
            let Some(sp) = m.iter().skip(1).position(|&c| c == b' ').map(|p| p + 1) else {
                continue;
            };
            let (a, b) = (&m[..sp], &m[sp + 1..]);
            let (Some(l), Some(r)) = (self.find(file, a), self.find(file, b)) else {
                continue;
            };
            joined.clear();
            joined.extend_from_slice(a);
            joined.extend_from_slice(b);
            let merged = self.find(file, &joined).unwrap_or(NONE);
            // The first (lowest-rank) occurrence of a pair wins, as with llama.cpp's
            // `emplace`.
            self.merges
                .entry(u64::from(l) << 32 | u64::from(r))
                .or_insert((rank as u32, merged));
        }
        Ok(())
    }

    fn read_special_ids(&mut self, g: &Gguf<'_>, defaults: SpecialIds) {
        let n = self.len() as u64;
        let in_range = |id: Option<TokenId>| id.filter(|&i| u64::from(i) < n);
        let key = |k: &str, d: Option<TokenId>| -> Option<TokenId> {
            match g.get(k).and_then(|v| v.as_u64()) {
                Some(id) if id < n => Some(id as TokenId),
                _ => in_range(d),
            }
        };
        self.ids = SpecialIds {
            bos: key("tokenizer.ggml.bos_token_id", defaults.bos),
            eos: key("tokenizer.ggml.eos_token_id", defaults.eos),
            eot: key("tokenizer.ggml.eot_token_id", None),
            eom: key("tokenizer.ggml.eom_token_id", None),
            unk: key("tokenizer.ggml.unknown_token_id", defaults.unk),
            sep: key("tokenizer.ggml.seperator_token_id", None),
            pad: key("tokenizer.ggml.padding_token_id", None),
            mask: key("tokenizer.ggml.mask_token_id", None),
        };
    }

    /// The id of the token spelled exactly `text`, if any.
    pub fn token_id(&self, file: &[u8], text: &str) -> Option<TokenId> {
        self.find(file, text.as_bytes())
    }
}

fn read_i32(file: &[u8], offset: u64, i: TokenId) -> i32 {
    let at = offset as usize + 4 * i as usize;
    file.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_le_bytes)
        .unwrap_or(0)
}

/// The attributes of the `n` tokens whose `token_type` array starts at `offset`, in one
/// pass over the array in place (the compiler turns the type match into a table). The
/// parser checked that the array lies in the file; were it cut short, the missing types
/// read as 0, as [`read_i32`] reads them.
fn token_attrs(file: &[u8], offset: u64, n: usize) -> Vec<TokenAttr> {
    let types = usize::try_from(offset)
        .ok()
        .zip(n.checked_mul(4))
        .and_then(|(at, len)| file.get(at..at.checked_add(len)?))
        .unwrap_or(&[]);
    let mut attrs: Vec<TokenAttr> = types
        .chunks_exact(4)
        .map(|c| TokenAttr::from_token_type(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    attrs.resize(n, TokenAttr::from_token_type(0));
    attrs
}

/// The GGUF string (u64 length, bytes) starting at file offset `at`.
fn string_at(file: &[u8], at: u64) -> Option<&[u8]> {
    let at = usize::try_from(at).ok()?;
    let len: [u8; 8] = file.get(at..at.checked_add(8)?)?.try_into().ok()?;
    let len = usize::try_from(u64::from_le_bytes(len)).ok()?;
    let start = at + 8;
    file.get(start..start.checked_add(len)?)
}

type Index = (Vec<u32>, TokenTable, FixedState);

/// The hash of a token's text: its bytes alone (not `Hash for [u8]`, which hashes the
/// length first, an extra round that every key here pays for nothing).
#[inline]
fn hash_text(hasher: &FixedState, text: &[u8]) -> u64 {
    let mut h = hasher.build_hasher();
    h.write(text);
    h.finish()
}

/// How many tokens ahead of its insertion a token is parsed and hashed, so that the table
/// line it needs is already on its way from memory (`TokenTable::prefetch`). A power of
/// two.
const AHEAD: usize = 32;

/// Walks the token strings once: their offsets and the text-to-id table.
fn index_strings(tokens: ArrayView<'_>) -> Result<Index> {
    let n = tokens.len() as usize;
    let bytes = tokens.as_bytes();
    if u32::try_from(bytes.len()).is_err() {
        return Err(bad(TOKENS, "token strings take more than 4 GiB"));
    }
    let mut offsets: Vec<u32> = Vec::with_capacity(n);
    let hasher = FixedState::with_seed(0x006d_6d74_6f6b);
    let mut lookup = TokenTable::with_capacity(n);
    // A ring of (hash, id, start, end) of the parsed tokens not yet inserted.
    let mut ring = [(0u64, 0u32, 0u32, 0u32); AHEAD];
    let (mut parsed, mut inserted) = (0usize, 0usize);
    let mut pos = 0usize;
    for id in 0..n as u32 {
        let text = string_at(bytes, pos as u64)
            .ok_or_else(|| bad(TOKENS, format!("token {id} runs past the array")))?;
        offsets.push(pos as u32);
        let start = pos + 8;
        pos = start + text.len();
        if text.is_empty() {
            continue;
        }
        let h = hash_text(&hasher, text);
        lookup.prefetch(h);
        if parsed - inserted == AHEAD {
            insert_token(&mut lookup, bytes, &offsets, ring[inserted % AHEAD]);
            inserted += 1;
        }
        ring[parsed % AHEAD] = (h, id, start as u32, pos as u32);
        parsed += 1;
    }
    while inserted < parsed {
        insert_token(&mut lookup, bytes, &offsets, ring[inserted % AHEAD]);
        inserted += 1;
    }
    Ok((offsets, lookup, hasher))
}

#[inline]
fn insert_token(
    lookup: &mut TokenTable,
    bytes: &[u8],
    offsets: &[u32],
    (h, id, start, end): (u64, u32, u32, u32),
) {
    let text = &bytes[start as usize..end as usize];
    // A duplicate spelling: the later id wins, as in llama.cpp's map.
    let done = lookup.insert(h, id, |other| {
        string_at(bytes, u64::from(offsets[other as usize])) == Some(text)
    });
    debug_assert!(done, "the table is sized for every token");
}
