//! Pre-tokenizers: how a BPE model splits text into words before merging.
//!
//! llama.cpp applies a list of patterns one after the other; each splits every piece the
//! previous ones produced into its matches and the gaps between them (both kept). The
//! four GPT-2/Llama-3-style patterns it runs through hand-written matchers are matched
//! here the same way (codepoint classes, not a regex engine), because those matchers are
//! the reference behaviour; the other patterns run on the `regex` crate.

use regex::Regex;
use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// The pre-tokenizer named by `tokenizer.ggml.pre` (grouped as llama.cpp groups them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PreTokenizer {
    /// `default` (and a missing key): punctuation runs, the GPT-2 pattern, digit runs,
    /// then groups of three ASCII digits.
    Default,
    /// `llama3`, `llama-bpe`, `llama-v3`, `falcon3`, `pixtral`, `dbrx`, `smaug-bpe`,
    /// `chatglm-bpe`, `glm4`...: the Llama 3 pattern (digits in groups of up to three).
    Llama3,
    /// `qwen2`, `deepseek-r1-qwen`, `stablelm2`, `megrez`, `hunyuan`, `grok-2`...: the
    /// Llama 3 pattern with single digits.
    Qwen2,
    /// `qwen35`: as `Qwen2`, with combining marks kept in letter runs.
    Qwen35,
    /// `gpt-2`, `mpt`, `olmo`, `phi-2`, `jais`, `exaone4`...: the GPT-2 pattern.
    Gpt2,
    /// `falcon`: punctuation runs, the GPT-2 pattern, groups of three ASCII digits.
    Falcon,
    /// `starcoder`, `refact`, `command-r`, `smollm`, `codeshell`, `exaone`,
    /// `minerva-7b`: single digits, then the GPT-2 pattern.
    Starcoder,
    /// `deepseek-llm`.
    DeepseekLlm,
    /// `deepseek-coder`.
    DeepseekCoder,
    /// `gemma4`: runs of newlines and runs of other text (no word split).
    Gemma4,
}

/// Flags llama.cpp derives from the `tokenizer.ggml.pre` name besides the pattern.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PreFlags {
    /// A word that is already a token is emitted without merging.
    pub ignore_merges: bool,
    /// `Some(v)` overrides the family's add-BOS default.
    pub add_bos: Option<bool>,
    /// The family's default BOS id is dropped.
    pub no_bos: bool,
}

impl PreTokenizer {
    /// Resolves a `tokenizer.ggml.pre` value (as llama.cpp 0.3.36's vocabulary loader
    /// does), or `None` when the name is not supported here.
    pub fn from_name(name: &str) -> Option<PreTokenizer> {
        Self::resolve(name).map(|(p, _)| p)
    }

    pub(crate) fn resolve(name: &str) -> Option<(PreTokenizer, PreFlags)> {
        let plain = PreFlags::default();
        let llama3 = PreFlags {
            ignore_merges: true,
            add_bos: Some(true),
            no_bos: false,
        };
        Some(match name {
            "" | "default" => (PreTokenizer::Default, plain),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" => (PreTokenizer::Llama3, llama3),
            "dbrx" | "smaug-bpe" => (PreTokenizer::Llama3, plain),
            "chatglm-bpe" => (
                PreTokenizer::Llama3,
                PreFlags {
                    no_bos: true,
                    ..plain
                },
            ),
            "glm4" | "glm5" => (
                PreTokenizer::Llama3,
                PreFlags {
                    no_bos: true,
                    ignore_merges: true,
                    add_bos: None,
                },
            ),
            "deepseek-llm" => (PreTokenizer::DeepseekLlm, plain),
            "deepseek-coder" => (PreTokenizer::DeepseekCoder, plain),
            "falcon" => (PreTokenizer::Falcon, plain),
            "mpt" | "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "olmo" | "jais" | "exaone4"
            | "trillion" | "granite-docling" => (PreTokenizer::Gpt2, plain),
            "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone"
            | "minerva-7b" | "mellum2" => (PreTokenizer::Starcoder, plain),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "stablelm2" | "megrez"
            | "hunyuan" | "solar-open" | "grok-2" => (PreTokenizer::Qwen2, plain),
            "qwen35" => (PreTokenizer::Qwen35, plain),
            "gemma4" => (
                PreTokenizer::Gemma4,
                PreFlags {
                    add_bos: None,
                    ..plain
                },
            ),
            _ => return None,
        })
    }

    fn steps(self) -> Vec<Step> {
        let re = |p: &str| Step::Regex(Regex::new(p).expect("built-in pattern compiles"));
        let llama3 = |digits, marks| Step::Llama3 { digits, marks };
        match self {
            PreTokenizer::Default => vec![
                re(r"[\p{P}\$\+<=>\^~\|]+"),
                Step::Gpt2,
                re(r"\p{N}+"),
                re(r"[0-9][0-9][0-9]"),
            ],
            PreTokenizer::Falcon => vec![
                re(r"[\p{P}\$\+<=>\^~\|`]+"),
                Step::Gpt2,
                re(r"[0-9][0-9][0-9]"),
            ],
            PreTokenizer::Starcoder => vec![re(r"\p{N}"), Step::Gpt2],
            PreTokenizer::Gpt2 => vec![Step::Gpt2],
            PreTokenizer::Llama3 => vec![llama3(3, false)],
            PreTokenizer::Qwen2 => vec![llama3(1, false)],
            PreTokenizer::Qwen35 => vec![llama3(1, true)],
            PreTokenizer::DeepseekLlm => vec![
                re(r"[\r\n]"),
                re(DEEPSEEK_LLM_LETTERS),
                re(
                    r"\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+",
                ),
                re(r"\s+$"),
                re(r"[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+"),
                re(r"\p{N}+"),
            ],
            PreTokenizer::DeepseekCoder => vec![
                re(r"[\r\n]"),
                re(r"\s?\p{L}+"),
                re(r"\s?\p{P}+"),
                re(r"[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+"),
                re(r"\p{N}"),
            ],
            PreTokenizer::Gemma4 => vec![Step::Newlines],
        }
    }
}

/// The letter class of DeepSeek LLM's pre-tokenizer (Latin, Greek, Cyrillic, Armenian,
/// Georgian, Cherokee... letter ranges), as its tokenizer configuration spells it.
const DEEPSEEK_LLM_LETTERS: &str = r"\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+";

#[derive(Debug)]
enum Step {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
    Gpt2,
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,digits}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`, with `\p{M}` joining `\p{L}`
    /// when `marks`.
    Llama3 { digits: u8, marks: bool },
    /// `[^\n]+|[\n]+`
    Newlines,
    /// Any other pattern.
    Regex(Regex),
}

/// A compiled pre-tokenizer: its steps, applied in order.
#[derive(Debug)]
pub(crate) struct Splitter {
    kind: PreTokenizer,
    steps: Vec<Step>,
}

/// Reused buffers for splitting.
#[derive(Debug, Default)]
pub(crate) struct SplitScratch {
    next: Vec<(u32, u32)>,
    cpts: Vec<(char, u32)>,
}

impl Splitter {
    pub(crate) fn new(kind: PreTokenizer) -> Self {
        Splitter {
            kind,
            steps: kind.steps(),
        }
    }

    pub(crate) fn kind(&self) -> PreTokenizer {
        self.kind
    }

    /// Splits `text` into word ranges (byte offsets), written to `out`.
    pub(crate) fn split(&self, text: &str, out: &mut Vec<(u32, u32)>, s: &mut SplitScratch) {
        out.clear();
        if text.is_empty() {
            return;
        }
        out.push((0, text.len() as u32));
        for step in &self.steps {
            s.next.clear();
            for &(a, b) in out.iter() {
                let piece = &text[a as usize..b as usize];
                match step {
                    Step::Regex(re) => split_regex(re, piece, a, &mut s.next),
                    Step::Newlines => split_newlines(piece, a, &mut s.next),
                    Step::Gpt2 => {
                        decode_cpts(piece, &mut s.cpts);
                        split_gpt2(&s.cpts, a, piece.len() as u32, &mut s.next);
                    }
                    Step::Llama3 { digits, marks } => {
                        decode_cpts(piece, &mut s.cpts);
                        split_llama3(&s.cpts, a, piece.len() as u32, *digits, *marks, &mut s.next);
                    }
                }
            }
            std::mem::swap(out, &mut s.next);
        }
    }
}

fn split_regex(re: &Regex, piece: &str, base: u32, out: &mut Vec<(u32, u32)>) {
    let mut last = 0;
    for m in re.find_iter(piece) {
        if m.start() > last {
            out.push((base + last as u32, base + m.start() as u32));
        }
        if m.end() > m.start() {
            out.push((base + m.start() as u32, base + m.end() as u32));
        }
        last = m.end();
    }
    if last < piece.len() {
        out.push((base + last as u32, base + piece.len() as u32));
    }
}

fn split_newlines(piece: &str, base: u32, out: &mut Vec<(u32, u32)>) {
    let b = piece.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let nl = b[i] == b'\n';
        let start = i;
        while i < b.len() && (b[i] == b'\n') == nl {
            i += 1;
        }
        out.push((base + start as u32, base + i as u32));
    }
}

fn decode_cpts(piece: &str, cpts: &mut Vec<(char, u32)>) {
    cpts.clear();
    cpts.extend(piece.char_indices().map(|(i, c)| (c, i as u32)));
}

/// Codepoint classes as llama.cpp's matchers see them.
#[derive(Clone, Copy, Default)]
struct Flags(u8);

impl Flags {
    const IN: u8 = 1;
    const LETTER: u8 = 2;
    const NUMBER: u8 = 4;
    const SPACE: u8 = 8;
    const MARK: u8 = 16;

    fn of(c: char) -> Flags {
        let mut f = Self::IN;
        if c.is_whitespace() {
            f |= Self::SPACE;
        }
        if c.is_ascii() {
            if c.is_ascii_alphabetic() {
                f |= Self::LETTER;
            } else if c.is_ascii_digit() {
                f |= Self::NUMBER;
            }
            return Flags(f);
        }
        f |= match c.general_category_group() {
            GeneralCategoryGroup::Letter => Self::LETTER,
            GeneralCategoryGroup::Number => Self::NUMBER,
            GeneralCategoryGroup::Mark => Self::MARK,
            _ => 0,
        };
        Flags(f)
    }
    fn inside(self) -> bool {
        self.0 & Self::IN != 0
    }
    fn letter(self) -> bool {
        self.0 & Self::LETTER != 0
    }
    fn number(self) -> bool {
        self.0 & Self::NUMBER != 0
    }
    fn space(self) -> bool {
        self.0 & Self::SPACE != 0
    }
    fn mark(self) -> bool {
        self.0 & Self::MARK != 0
    }
}

/// Codepoint access bounded to one piece, as the reference matchers do (outside the
/// piece a codepoint is "out of range" with no flags).
struct Cursor<'c> {
    cpts: &'c [(char, u32)],
    base: u32,
    len: u32,
    out: &'c mut Vec<(u32, u32)>,
    prev_end: usize,
}

impl Cursor<'_> {
    fn cpt(&self, pos: usize) -> Option<char> {
        self.cpts.get(pos).map(|c| c.0)
    }
    fn flags(&self, pos: usize) -> Flags {
        self.cpt(pos).map(Flags::of).unwrap_or_default()
    }
    fn byte(&self, pos: usize) -> u32 {
        self.cpts.get(pos).map_or(self.len, |c| c.1)
    }
    /// Emits the codepoints from the previous end up to `end`; returns how many.
    fn add(&mut self, end: usize) -> usize {
        let n = end - self.prev_end;
        if n > 0 {
            let (a, b) = (self.byte(self.prev_end), self.byte(end));
            self.out.push((self.base + a, self.base + b));
        }
        self.prev_end = end;
        n
    }
    fn contraction(&mut self, pos: usize, fold: bool) -> Option<usize> {
        if self.cpt(pos) != Some('\'') || pos + 1 >= self.cpts.len() {
            return None;
        }
        let low = |c: Option<char>| c.map(|c| if fold { c.to_ascii_lowercase() } else { c });
        let next = low(self.cpt(pos + 1));
        if matches!(next, Some('s' | 't' | 'm' | 'd')) {
            return Some(self.add(pos + 2));
        }
        if pos + 2 < self.cpts.len() {
            let nn = low(self.cpt(pos + 2));
            if matches!(
                (next, nn),
                (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l'))
            ) {
                return Some(self.add(pos + 3));
            }
        }
        None
    }
}

fn split_gpt2(cpts: &[(char, u32)], base: u32, len: u32, out: &mut Vec<(u32, u32)>) {
    let mut c = Cursor {
        cpts,
        base,
        len,
        out,
        prev_end: 0,
    };
    let end = cpts.len();
    let mut pos = 0;
    while pos < end {
        let cpt = c.cpt(pos);
        let flags = c.flags(pos);
        if let Some(n) = c.contraction(pos, false) {
            pos += n;
            continue;
        }
        let mut f2 = if cpt == Some(' ') {
            c.flags(pos + 1)
        } else {
            flags
        };
        let sp = usize::from(cpt == Some(' '));
        if f2.letter() {
            pos += sp;
            while f2.letter() {
                pos += 1;
                f2 = c.flags(pos);
            }
            c.add(pos);
            continue;
        }
        if f2.number() {
            pos += sp;
            while f2.number() {
                pos += 1;
                f2 = c.flags(pos);
            }
            c.add(pos);
            continue;
        }
        let other = |f: Flags| !(f.space() || f.letter() || f.number()) && f.inside();
        if other(f2) {
            pos += sp;
            while other(f2) {
                pos += 1;
                f2 = c.flags(pos);
            }
            c.add(pos);
            continue;
        }
        let mut n_ws = 0;
        while c.flags(pos + n_ws).space() {
            n_ws += 1;
        }
        if n_ws > 1 && c.cpt(pos + n_ws).is_some() {
            pos += n_ws - 1;
            c.add(pos);
            continue;
        }
        if n_ws > 0 {
            pos += n_ws;
            c.add(pos);
            continue;
        }
        pos += 1;
        c.add(pos);
    }
}

fn split_llama3(
    cpts: &[(char, u32)],
    base: u32,
    len: u32,
    digits: u8,
    marks: bool,
    out: &mut Vec<(u32, u32)>,
) {
    let mut c = Cursor {
        cpts,
        base,
        len,
        out,
        prev_end: 0,
    };
    let word = |f: Flags| f.letter() || (marks && f.mark());
    let end = cpts.len();
    let mut pos = 0;
    while pos < end {
        let cpt = c.cpt(pos);
        let flags = c.flags(pos);
        if let Some(n) = c.contraction(pos, true) {
            pos += n;
            continue;
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !(cpt == Some('\r') || cpt == Some('\n') || flags.number())
            && (word(flags) || word(c.flags(pos + 1)))
        {
            pos += 1;
            while word(c.flags(pos)) {
                pos += 1;
            }
            c.add(pos);
            continue;
        }
        // \p{N}{1,digits}
        if flags.number() {
            if digits == 1 {
                pos += 1;
            } else {
                let mut ini = pos;
                while c.flags(pos).number() {
                    pos += 1;
                    if pos - ini >= digits as usize {
                        c.add(pos);
                        ini = pos;
                    }
                }
            }
            c.add(pos);
            continue;
        }
        // ' '?[^\s\p{L}\p{N}]+[\r\n]*
        let mut f2 = if cpt == Some(' ') {
            c.flags(pos + 1)
        } else {
            flags
        };
        let other = |f: Flags| !(f.space() || word(f) || f.number()) && f.inside();
        if !(f2.space() || word(f2) || f2.number()) && flags.inside() {
            pos += usize::from(cpt == Some(' '));
            while other(f2) {
                pos += 1;
                f2 = c.flags(pos);
            }
            while matches!(c.cpt(pos), Some('\r' | '\n')) {
                pos += 1;
            }
            c.add(pos);
            continue;
        }
        let mut n_ws = 0;
        let mut last_rn = 0;
        while c.flags(pos + n_ws).space() {
            if matches!(c.cpt(pos + n_ws), Some('\r' | '\n')) {
                last_rn = pos + n_ws + 1;
            }
            n_ws += 1;
        }
        // \s*[\r\n]+
        if last_rn > 0 {
            pos = last_rn;
            c.add(pos);
            continue;
        }
        // \s+(?!\S)
        if n_ws > 1 && c.cpt(pos + n_ws).is_some() {
            pos += n_ws - 1;
            c.add(pos);
            continue;
        }
        if n_ws > 0 {
            pos += n_ws;
            c.add(pos);
            continue;
        }
        pos += 1;
        c.add(pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(p: PreTokenizer, text: &str) -> Vec<&str> {
        let sp = Splitter::new(p);
        let mut out = Vec::new();
        sp.split(text, &mut out, &mut SplitScratch::default());
        out.iter()
            .map(|&(a, b)| &text[a as usize..b as usize])
            .collect()
    }

    #[test]
    fn gpt2_pattern() {
        assert_eq!(
            words(PreTokenizer::Gpt2, "Hello world's  123 ok!!\n\n  x"),
            [
                "Hello", " world", "'s", " ", " 123", " ok", "!!", "\n\n ", " x"
            ]
        );
        assert_eq!(words(PreTokenizer::Gpt2, "  "), ["  "]);
        assert_eq!(words(PreTokenizer::Gpt2, "I'LL"), ["I", "'", "LL"]);
    }

    #[test]
    fn llama3_pattern() {
        assert_eq!(
            words(PreTokenizer::Llama3, "Hello world's 12345 I'LL\r\n  x..\n"),
            [
                "Hello", " world", "'s", " ", "123", "45", " I", "'LL", "\r\n", " ", " x", "..\n"
            ]
        );
        assert_eq!(
            words(PreTokenizer::Qwen2, "a 123"),
            ["a", " ", "1", "2", "3"]
        );
        assert_eq!(words(PreTokenizer::Llama3, "\t\t"), ["\t\t"]);
        // Combining marks: separate in Qwen2, inside the letter run in Qwen 3.5.
        assert_eq!(words(PreTokenizer::Qwen2, "ne\u{301}e"), ["ne", "\u{301}e"]);
        assert_eq!(words(PreTokenizer::Qwen35, "ne\u{301}e"), ["ne\u{301}e"]);
    }

    #[test]
    fn sequential_patterns_keep_gaps() {
        assert_eq!(
            words(PreTokenizer::Default, "a+b 1234"),
            ["a", "+", "b", " ", "123", "4"]
        );
        assert_eq!(words(PreTokenizer::Starcoder, "x 12"), ["x", " ", "1", "2"]);
        assert_eq!(words(PreTokenizer::Falcon, "a|b"), ["a", "|", "b"]);
        assert_eq!(
            words(PreTokenizer::Gemma4, "a\n\nb c"),
            ["a", "\n\n", "b c"]
        );
        assert_eq!(words(PreTokenizer::DeepseekCoder, "ab 1"), ["ab", " ", "1"]);
        assert_eq!(
            words(PreTokenizer::DeepseekLlm, "ab\ncd  "),
            ["ab", "\n", "cd", "  "]
        );
        assert!(words(PreTokenizer::Gpt2, "").is_empty());
    }

    #[test]
    fn names_resolve() {
        assert_eq!(
            PreTokenizer::from_name("llama-bpe"),
            Some(PreTokenizer::Llama3)
        );
        assert_eq!(
            PreTokenizer::from_name("smollm"),
            Some(PreTokenizer::Starcoder)
        );
        assert_eq!(PreTokenizer::from_name(""), Some(PreTokenizer::Default));
        assert_eq!(PreTokenizer::from_name("nope"), None);
        assert!(PreTokenizer::resolve("glm4").unwrap().1.no_bos);
        assert_eq!(
            Splitter::new(PreTokenizer::Qwen35).kind(),
            PreTokenizer::Qwen35
        );
    }
}
