//! The workloads the checks time: a pure alloc/free churn driven through any
//! [`GlobalAlloc`], and a service-like request loop that uses the global allocator the way
//! application code does (strings, vectors, maps, a bounded session cache).

use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;

/// Live blocks in the churn.
pub const CHURN_LIVE: usize = 64;

/// A small, fast, deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator; a zero seed is replaced, since xorshift would stay at zero.
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// The next value.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (`n > 0`).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// `n` distinct made-up words of 2 to 12 letters, deterministic for a seed (a vocabulary
/// for the token streams of the interner and request parts).
pub fn vocabulary(n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut words = Vec::with_capacity(n);
    while words.len() < n {
        let len = 2 + rng.below(11) as usize;
        let w: String = (0..len)
            .map(|_| char::from(b'a' + rng.below(26) as u8))
            .collect();
        if seen.insert(w.clone()) {
            words.push(w);
        }
    }
    words
}

impl Rng {
    /// A skewed index in `0..n`: small indices far more often (roughly as word frequencies
    /// fall off in text), so a token stream repeats its common words.
    #[inline]
    pub fn skewed(&mut self, n: usize) -> usize {
        let outer = self.below(n as u64) + 1;
        self.below(outer) as usize
    }
}

/// `pairs` free+alloc pairs over [`CHURN_LIVE`] live blocks of 16 to 184 bytes, called on
/// `alloc` directly through the [`GlobalAlloc`] trait. Returns a checksum of the bytes
/// written, so the optimiser cannot drop the work. A failed allocation ends the churn early
/// (the blocks held are still freed).
pub fn churn<A: GlobalAlloc>(alloc: &A, pairs: u64, seed: u64) -> u64 {
    const MIN: u64 = 16;
    const SPAN: u64 = 184 - 16 + 1;
    let mut rng = Rng::new(seed);
    let mut slots = [(std::ptr::null_mut::<u8>(), 0usize); CHURN_LIVE];
    let mut sum = 0u64;
    for i in 0..pairs + CHURN_LIVE as u64 {
        let slot = &mut slots[(i as usize) % CHURN_LIVE];
        if !slot.0.is_null() {
            // SAFETY: the slot holds a block this function allocated from `alloc` with
            // exactly this size and alignment 8.
            unsafe {
                sum = sum.wrapping_add(u64::from(*slot.0));
                alloc.dealloc(slot.0, Layout::from_size_align_unchecked(slot.1, 8));
            }
            *slot = (std::ptr::null_mut(), 0);
        }
        if i >= pairs {
            continue;
        }
        let size = (MIN + rng.below(SPAN)) as usize;
        // SAFETY: size is 16..=184 and alignment 8 is a power of two: a valid, non-zero
        // layout.
        let ptr = unsafe { alloc.alloc(Layout::from_size_align_unchecked(size, 8)) };
        if ptr.is_null() {
            break;
        }
        // SAFETY: `ptr` is a fresh block of at least 16 bytes.
        unsafe { ptr.write(i as u8) };
        *slot = (black_box(ptr), size);
    }
    for slot in slots.iter().filter(|s| !s.0.is_null()) {
        // SAFETY: as above: a block from `alloc` with this size and alignment 8.
        unsafe { alloc.dealloc(slot.0, Layout::from_size_align_unchecked(slot.1, 8)) };
    }
    sum
}

/// Size of one service pass.
#[derive(Debug, Clone, Copy)]
pub struct ServiceConfig {
    /// Requests per worker thread.
    pub requests: usize,
    /// Distinct users per worker: the session cache holds at most this many entries.
    pub users: u64,
}

/// What one worker did.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceOutcome {
    /// Requests served.
    pub requests: usize,
    /// A checksum of every response, so the work cannot be optimised away.
    pub checksum: u64,
    /// Bytes of cached responses the worker held at its end (a lower bound on its peak).
    pub held_bytes: u64,
}

/// Width of the per-request embedding (that of common small sentence-embedding models).
pub const EMBEDDING_DIM: usize = 384;

const WORDS: [&str; 32] = [
    "memory",
    "token",
    "context",
    "model",
    "embedding",
    "request",
    "stream",
    "buffer",
    "cache",
    "prompt",
    "tensor",
    "layer",
    "attention",
    "batch",
    "vector",
    "query",
    "answer",
    "server",
    "client",
    "window",
    "budget",
    "arena",
    "pool",
    "intern",
    "mapped",
    "weights",
    "quantized",
    "gguf",
    "latency",
    "throughput",
    "pressure",
    "evict",
];

/// Serves `cfg.requests` requests: build a prompt, wrap it as a JSON-ish request line, split
/// it into owned tokens, count them in a map, embed them into a small vector, build a
/// response and keep it in a per-user session cache (replacing the user's previous one).
/// About 60 allocator calls per request, with real work between them.
pub fn serve(cfg: &ServiceConfig, worker: u64) -> ServiceOutcome {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ worker.wrapping_mul(0x1000_0000_01b3));
    let mut sessions: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut checksum = 0u64;
    for id in 0..cfg.requests {
        let user = rng.below(cfg.users);
        let mut prompt = String::new();
        for _ in 0..(16 + rng.below(32)) {
            prompt.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
            prompt.push(' ');
        }
        let line = format!(
            "{{\"id\":{id},\"user\":\"u{user}\",\"prompt\":\"{}\"}}",
            prompt.trim_end()
        );
        let body = line
            .split("\"prompt\":\"")
            .nth(1)
            .unwrap_or("")
            .trim_end_matches("\"}");
        let tokens: Vec<String> = body.split(' ').map(str::to_owned).collect();
        let mut freq: HashMap<&str, u32> = HashMap::new();
        for t in &tokens {
            *freq.entry(t.as_str()).or_insert(0) += 1;
        }
        let mut embedding = vec![0f32; EMBEDDING_DIM];
        for t in &tokens {
            let h = fnv(t.as_bytes());
            for (k, e) in embedding.iter_mut().enumerate() {
                *e += (((h >> (k % 56)) & 0xff) as f32 - 127.5) * 0.01;
            }
        }
        let mut top: Vec<(&str, u32)> = freq.into_iter().collect();
        top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut response = String::new();
        let _ = write!(response, "{{\"id\":{id},\"top\":[");
        for (w, n) in top.iter().take(8) {
            let _ = write!(response, "[\"{w}\",{n}],");
        }
        let norm: f32 = embedding.iter().map(|e| e * e).sum::<f32>().sqrt();
        let _ = write!(response, "],\"norm\":{norm:.4}}}");
        checksum = checksum.wrapping_add(fnv(response.as_bytes()));
        sessions.insert(user, response.into_bytes());
    }
    ServiceOutcome {
        requests: cfg.requests,
        checksum: black_box(checksum),
        held_bytes: sessions.values().map(|v| v.len() as u64).sum(),
    }
}

/// FNV-1a, 64-bit.
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn churn_is_deterministic_and_balanced() {
        let a = churn(&System, 10_000, 7);
        assert_eq!(a, churn(&System, 10_000, 7));
        assert_ne!(a, 0);
    }

    #[test]
    fn serve_does_real_work() {
        let cfg = ServiceConfig {
            requests: 200,
            users: 50,
        };
        let a = serve(&cfg, 1);
        assert_eq!(a.requests, 200);
        assert!(a.held_bytes > 50 * 20, "{a:?}");
        assert_eq!(a.checksum, serve(&cfg, 1).checksum);
        assert_ne!(a.checksum, serve(&cfg, 2).checksum);
    }
}
