//! The crate's one error type.

use mm_budget::BudgetError;
use mm_gguf::GgufError;

/// Why a tokenizer could not be built from a GGUF file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// A metadata key the tokenizer needs is missing or has the wrong type.
    #[error("GGUF tokenizer metadata: {0}")]
    Gguf(#[from] GgufError),
    /// `tokenizer.ggml.model` names a tokenizer family this crate does not implement.
    #[error(
        "tokenizer model '{0}' is not supported (supported: 'llama' SentencePiece-style, 'gpt2' byte-level BPE, 'gemma4')"
    )]
    UnsupportedModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not implement.
    #[error(
        "pre-tokenizer '{0}' is not supported; see mm_tokenizer::PreTokenizer for the names that are"
    )]
    UnsupportedPreTokenizer(String),
    /// A metadata array has an unexpected element type or too few elements.
    #[error("GGUF key '{key}': {problem}")]
    BadMetadata {
        /// The key.
        key: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The vocabulary has more tokens than a `u32` id can name.
    #[error("vocabulary has {0} tokens, more than a u32 token id can address")]
    TooManyTokens(u64),
    /// A [`Vocab`](crate::Vocab) was bound to a file other than the one it was built from.
    #[error(
        "this vocabulary index was built from another GGUF file (tokens at offset {expected}, found {found})"
    )]
    WrongFile {
        /// File offset of the token array the index was built from.
        expected: u64,
        /// File offset of the token array in the file given.
        found: u64,
    },
    /// The memory budget refused the index's heap.
    #[error("the memory budget refused the tokenizer index ({bytes} bytes): {source}")]
    Budget {
        /// Bytes asked for.
        bytes: u64,
        /// The budget's answer.
        #[source]
        source: BudgetError,
    },
}

/// Result alias for this crate.
pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;
