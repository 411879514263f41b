//! Cache keys and the hashes derived from them.

use std::hash::{BuildHasherDefault, Hasher};

use crate::names::Symbol;

/// A cache key: the model and a 64-bit keyed hash of the text.
///
/// The hash is SipHash-1-3 with a key drawn at random per cache, so keys from one cache mean
/// nothing to another and an outsider cannot build colliding texts. Two different texts
/// sharing a key (probability about `n^2 / 2^65` for `n` cached texts, ~3e-12 at 10,000)
/// would return one text's vector for the other; store the text yourself if that is not
/// acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EmbeddingKey {
    /// The model id (interned).
    pub model: Symbol,
    /// The keyed hash of the text.
    pub text_hash: u64,
}

impl EmbeddingKey {
    /// One well-mixed 64-bit hash of the whole key (model folded into the text hash). The
    /// shard is picked from its top bits, the frequency sketch hashes it further.
    pub(super) fn mixed(&self) -> u64 {
        let h = self.text_hash ^ u64::from(self.model.to_u32()).wrapping_mul(0xA076_1D64_78BD_642F);
        (h ^ (h >> 32)).wrapping_mul(0xE703_7ED1_A0B4_28DB)
    }
}

/// The index's hasher. Keys already carry a keyed SipHash of the text, so re-hashing them
/// with SipHash would only cost time: this folds the words with a multiply, which keeps the
/// randomness of `text_hash` (and cannot be steered by an outsider who does not know the
/// per-cache SipHash key).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(23) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// `BuildHasher` of [`KeyHasher`].
pub(super) type KeyHash = BuildHasherDefault<KeyHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn hasher_mixes_every_input() {
        let b = KeyHash::default();
        let mut h = KeyHasher::default();
        h.write(&[1, 2]);
        assert_ne!(h.finish(), KeyHasher::default().finish());
        let a = b.hash_one(1u32);
        assert_ne!(a, b.hash_one(2u32));
        assert_ne!(b.hash_one(7u64), a);
    }
}
