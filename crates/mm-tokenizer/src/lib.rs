#![doc = include_str!("../README.md")]

mod attr;
mod bpe;
mod bytes;
mod error;
mod fixups;
mod pretok;
mod special;
mod spm;
mod table;
mod tokenizer;
mod vocab;

pub use attr::TokenAttr;
pub use error::{Result, TokenizerError};
pub use pretok::PreTokenizer;
pub use tokenizer::{DecodeOptions, EncodeOptions, OwnedTokenizer, Tokenizer};
pub use vocab::{SpecialIds, TokenId, TokenizerModel, Vocab};
