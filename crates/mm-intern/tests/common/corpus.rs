//! A deterministic English-like token stream, so tests and benches need no download.
//!
//! Word frequencies follow Zipf's law (exponent 1.0, as measured for English text) over a
//! vocabulary of the 120 most common English words followed by generated content words of
//! realistic length (two to four syllables), with sentence-initial capitals and
//! punctuation tokens. Shared by `tests/memory.rs` and `benches/benches/intern.rs`.

#![allow(dead_code)]

const COMMON: &[&str] = &[
    "the", "of", "and", "to", "a", "in", "is", "it", "you", "that", "he", "was", "for", "on",
    "are", "with", "as", "I", "his", "they", "be", "at", "one", "have", "this", "from", "or",
    "had", "by", "not", "word", "but", "what", "some", "we", "can", "out", "other", "were", "all",
    "there", "when", "up", "use", "your", "how", "said", "an", "each", "she", "which", "do",
    "their", "time", "if", "will", "way", "about", "many", "then", "them", "write", "would",
    "like", "so", "these", "her", "long", "make", "thing", "see", "him", "two", "has", "look",
    "more", "day", "could", "go", "come", "did", "number", "sound", "no", "most", "people", "my",
    "over", "know", "water", "than", "call", "first", "who", "may", "down", "side", "been", "now",
    "find", "any", "new", "work", "part", "take", "get", "place", "made", "live", "where", "after",
    "back", "little", "only", "round", "man", "year", "came", "show", "every",
];

const ONSETS: &[&str] = &[
    "b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "v", "w", "br", "cl", "cr",
    "dr", "fl", "gr", "pl", "pr", "sh", "st", "str", "th", "tr",
];
const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ea", "ou", "ai", "io"];
const CODAS: &[&str] = &["", "", "n", "r", "s", "t", "l", "nd", "st", "ng", "ck", "m"];
const SUFFIXES: &[&str] = &["", "", "", "s", "ed", "ing", "ly", "tion", "er", "ness"];

/// splitmix64: tiny, fast and deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `size` distinct words: the common ones first, then generated ones.
pub fn vocabulary(size: usize, rng: &mut Rng) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut words = Vec::with_capacity(size);
    for w in COMMON.iter().take(size) {
        seen.insert(w.to_string());
        words.push(w.to_string());
    }
    while words.len() < size {
        let syllables = 2 + rng.below(3);
        let mut w = String::new();
        for _ in 0..syllables {
            w.push_str(ONSETS[rng.below(ONSETS.len())]);
            w.push_str(VOWELS[rng.below(VOWELS.len())]);
            w.push_str(CODAS[rng.below(CODAS.len())]);
        }
        w.push_str(SUFFIXES[rng.below(SUFFIXES.len())]);
        if seen.insert(w.clone()) {
            words.push(w);
        }
    }
    words
}

/// `tokens` tokens of English-like text over a Zipf(1.0)-distributed vocabulary of
/// `vocab` words, as owned strings (what a tokenizer would hand out).
pub fn token_stream(tokens: usize, vocab: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let words = vocabulary(vocab, &mut rng);
    let mut cumulative = Vec::with_capacity(words.len());
    let mut total = 0.0;
    for rank in 1..=words.len() {
        total += 1.0 / rank as f64;
        cumulative.push(total);
    }
    let mut out = Vec::with_capacity(tokens);
    let mut sentence_start = true;
    while out.len() < tokens {
        let x = rng.unit() * total;
        let i = cumulative.partition_point(|&c| c < x).min(words.len() - 1);
        let word = &words[i];
        if sentence_start {
            let mut cap = word[..1].to_uppercase();
            cap.push_str(&word[1..]);
            out.push(cap);
        } else {
            out.push(word.clone());
        }
        sentence_start = false;
        match rng.below(20) {
            0 => {
                out.push(".".to_string());
                sentence_start = true;
            }
            1 | 2 => out.push(",".to_string()),
            _ => {}
        }
    }
    out.truncate(tokens);
    out
}
