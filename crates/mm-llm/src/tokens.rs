//! Token counting: a trait and the default byte-based estimate.

/// Counts (or estimates) the tokens a piece of text costs a model.
///
/// A conversation calls it once per recorded item and caches the result in the item, so a
/// fit never re-counts (or re-serialises) the history. Implementations must be deterministic:
/// the same text must always give the same count, or the cached sums drift.
pub trait TokenCounter {
    /// Tokens for `text`.
    fn count(&self, text: &str) -> u32;

    /// Fixed tokens each message costs on top of its text (role markers and framing in the
    /// chat template). The default, 4, is what OpenAI documents for its chat format.
    fn message_overhead(&self) -> u32 {
        4
    }
}

/// The default counter: `ceil(bytes / bytes_per_token)`, 4 bytes per token unless set.
///
/// It costs one division per call, whatever the text, and is what the major APIs suggest as a
/// rule of thumb for English text. It overestimates CJK-light English a little and
/// underestimates code and non-Latin scripts (which can run to 1 to 2 bytes per token); leave
/// headroom with [`FitPolicy::output_reserve`](crate::FitPolicy::output_reserve) and
/// [`FitPolicy::trigger_fraction`](crate::FitPolicy::trigger_fraction), or plug in an exact
/// counter through [`TokenCounter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteEstimate {
    bytes_per_token: u32,
}

impl ByteEstimate {
    /// An estimate at `bytes_per_token` bytes per token (0 is treated as 1).
    pub const fn new(bytes_per_token: u32) -> Self {
        Self {
            bytes_per_token: if bytes_per_token == 0 {
                1
            } else {
                bytes_per_token
            },
        }
    }
}

impl Default for ByteEstimate {
    fn default() -> Self {
        Self::new(4)
    }
}

impl TokenCounter for ByteEstimate {
    fn count(&self, text: &str) -> u32 {
        let tokens = text.len().div_ceil(self.bytes_per_token as usize);
        u32::try_from(tokens).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_up() {
        let c = ByteEstimate::default();
        assert_eq!(c.count(""), 0);
        assert_eq!(c.count("abc"), 1);
        assert_eq!(c.count("abcd"), 1);
        assert_eq!(c.count("abcde"), 2);
        assert_eq!(ByteEstimate::new(0).count("abc"), 3);
    }
}

/// Exact token counts for OpenAI's byte-pair encodings, from the `bpe-openai` crate (feature
/// `exact-tokens`). Its vocabularies are compiled into the binary (a few MB), so nothing is
/// fetched at run time.
///
/// Cost: linear in the text, roughly 10 to 100 times the [`ByteEstimate`]'s (it pre-tokenises
/// with a regex and runs the BPE), and it may allocate while counting. A conversation counts
/// each item once, when it is recorded, so the cost is paid per message, not per turn.
#[cfg(feature = "exact-tokens")]
#[derive(Clone, Copy)]
pub struct OpenAiTokens {
    tokenizer: &'static bpe_openai::Tokenizer,
    name: &'static str,
}

#[cfg(feature = "exact-tokens")]
impl std::fmt::Debug for OpenAiTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiTokens")
            .field("encoding", &self.name)
            .finish()
    }
}

#[cfg(feature = "exact-tokens")]
impl OpenAiTokens {
    /// The `cl100k_base` encoding (GPT-4, GPT-3.5). The tables are built on first use.
    pub fn cl100k() -> Self {
        Self {
            tokenizer: bpe_openai::cl100k_base(),
            name: "cl100k_base",
        }
    }

    /// The `o200k_base` encoding (GPT-4o, GPT-4.1, o-series). Built on first use.
    pub fn o200k() -> Self {
        Self {
            tokenizer: bpe_openai::o200k_base(),
            name: "o200k_base",
        }
    }
}

#[cfg(feature = "exact-tokens")]
impl TokenCounter for OpenAiTokens {
    fn count(&self, text: &str) -> u32 {
        u32::try_from(self.tokenizer.count(text)).unwrap_or(u32::MAX)
    }

    /// OpenAI's documented framing for chat messages: 3 tokens per message.
    fn message_overhead(&self) -> u32 {
        3
    }
}

#[cfg(all(test, feature = "exact-tokens"))]
mod exact_tests {
    use super::*;

    #[test]
    fn counts_known_strings() {
        let c = OpenAiTokens::o200k();
        assert_eq!(c.count(""), 0);
        assert_eq!(c.count("hello"), 1);
        assert_eq!(c.count("hello world"), 2);
        let cl = OpenAiTokens::cl100k();
        assert_eq!(cl.count("hello world"), 2);
        // Code and non-Latin text cost more tokens per byte than the 4-byte estimate assumes.
        let text = "fn main() { println!(\"{}\", 1 + 2); }";
        assert!(c.count(text) > 0);
    }

    #[test]
    fn conversation_uses_exact_counts() {
        use crate::{ContextWindows, Conversation, ConversationSetup, FitPolicy};
        let setup = ConversationSetup::new(ContextWindows::default(), FitPolicy::default());
        let mut conv =
            Conversation::new(std::sync::Arc::new(setup.unwrap()), OpenAiTokens::o200k());
        conv.push_user("hello world").unwrap();
        assert_eq!(conv.tokens(), 2 + 3);
    }
}

/// Exact token counts for a local GGUF model, with the model's own tokenizer
/// ([`mm_tokenizer`], feature `gguf-tokens`): the vocabulary is borrowed from the mapped
/// model file, so a [`Conversation`](crate::Conversation) fits the model's window exactly.
///
/// Text is counted as plain text (no BOS/EOS, control tokens written in it stay text).
/// The per-message framing of the chat template is [`message_overhead`](Self::message_overhead),
/// 4 unless set (Gemma's `<start_of_turn>user\n ... <end_of_turn>\n` is 5 tokens).
///
/// Cost: linear in the text; no allocation once the thread's buffers are warm.
#[cfg(feature = "gguf-tokens")]
#[derive(Debug, Clone)]
pub struct GgufTokens {
    tokenizer: std::sync::Arc<mm_tokenizer::OwnedTokenizer>,
    overhead: u32,
}

#[cfg(feature = "gguf-tokens")]
impl GgufTokens {
    /// A counter over `tokenizer`, 4 tokens of framing per message.
    pub fn new(tokenizer: std::sync::Arc<mm_tokenizer::OwnedTokenizer>) -> Self {
        Self {
            tokenizer,
            overhead: 4,
        }
    }

    /// Sets the tokens each message costs on top of its text.
    pub fn with_message_overhead(mut self, tokens: u32) -> Self {
        self.overhead = tokens;
        self
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &mm_tokenizer::OwnedTokenizer {
        &self.tokenizer
    }
}

#[cfg(feature = "gguf-tokens")]
impl TokenCounter for GgufTokens {
    fn count(&self, text: &str) -> u32 {
        let n = self
            .tokenizer
            .tokenizer()
            .count(text, mm_tokenizer::EncodeOptions::new());
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn message_overhead(&self) -> u32 {
        self.overhead
    }
}

#[cfg(all(test, feature = "gguf-tokens"))]
mod gguf_tests {
    use super::*;
    use mm_gguf::{GgufWriter, MetaValue, ValueType};

    #[test]
    fn counts_with_the_model_vocabulary() {
        let pieces = [
            "<unk>",
            "<s>",
            "</s>",
            "\u{2581}",
            "h",
            "i",
            "\u{2581}h",
            "\u{2581}hi",
        ];
        let mut w = GgufWriter::new();
        w.add_metadata("tokenizer.ggml.model", MetaValue::String("llama".into()))
            .unwrap();
        w.add_metadata("tokenizer.ggml.tokens", MetaValue::strings(pieces))
            .unwrap();
        let scores = [0.0f32, 0.0, 0.0, -1.0, -2.0, -2.0, -1.5, -1.0];
        w.add_metadata(
            "tokenizer.ggml.scores",
            MetaValue::Array(ValueType::F32, scores.map(MetaValue::F32).to_vec()),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.gguf");
        w.write_file(&path).unwrap();
        // SAFETY: the temporary file is not modified while mapped.
        let tok = unsafe { mm_tokenizer::OwnedTokenizer::open(&path) }.unwrap();
        let c = GgufTokens::new(std::sync::Arc::new(tok)).with_message_overhead(5);
        assert_eq!(c.count("hi hi hi"), 3);
        assert_eq!(c.count(""), 0);
        assert_eq!(c.message_overhead(), 5);
        assert_eq!(c.tokenizer().vocab().len(), 8);
    }
}
