//! A bounds-checked little-endian cursor over borrowed bytes.
//!
//! Every read checks the bytes that remain first; a short read becomes
//! [`GgufError::Truncated`] naming the offset, the field and how many bytes are missing.
//! Field descriptions are closures so the success path formats nothing.

use crate::error::{GgufError, Result};

/// A cursor over `buf` starting at file offset `base`.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// File offset of `buf[0]` (non-zero for array payload views).
    base: u64,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            base: 0,
        }
    }

    pub(crate) fn with_base(buf: &'a [u8], base: u64) -> Self {
        Reader { buf, pos: 0, base }
    }

    /// File offset of the next byte.
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// The whole buffer this reader walks.
    pub(crate) fn whole(&self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Takes `n` bytes, or reports how many are missing.
    pub(crate) fn take(&mut self, n: u64, field: impl FnOnce() -> String) -> Result<&'a [u8]> {
        let rem = self.remaining() as u64;
        if n > rem {
            return Err(GgufError::Truncated {
                offset: self.offset(),
                field: field(),
                missing: n - rem,
            });
        }
        // `n <= remaining`, which is a `usize`, so the cast is lossless.
        let n = n as usize;
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: impl FnOnce() -> String,
    ) -> Result<[u8; N]> {
        let b = self.take(N as u64, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: impl FnOnce() -> String) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u32(&mut self, field: impl FnOnce() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: impl FnOnce() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A GGUF string: `u64` length then that many bytes, validated as UTF-8.
    pub(crate) fn str(&mut self, field: impl Fn() -> String) -> Result<&'a str> {
        let (bytes, at) = self.str_bytes(&field)?;
        std::str::from_utf8(bytes).map_err(|_| GgufError::InvalidUtf8 {
            offset: at,
            field: field(),
        })
    }

    /// A GGUF string's raw bytes and the file offset where they start, not validated.
    pub(crate) fn str_bytes(&mut self, field: &impl Fn() -> String) -> Result<(&'a [u8], u64)> {
        let len = self.u64(|| format!("{} length", field()))?;
        let at = self.offset();
        Ok((self.take(len, field)?, at))
    }

    /// Reads a count and checks that `count * min_elem` bytes can still follow.
    pub(crate) fn count(&mut self, min_elem: u64, field: impl Fn() -> String) -> Result<u64> {
        let at = self.offset();
        let count = self.u64(&field)?;
        check_count(at, count, self.remaining() as u64, min_elem, &field)
    }
}

/// Checks a count read at `at` against the `remaining` bytes of the file, each element taking
/// at least `min_elem` bytes, so nothing is ever allocated or looped for elements that cannot
/// be there. Shared by the slice reader and the streaming reader.
pub(crate) fn check_count(
    at: u64,
    count: u64,
    remaining: u64,
    min_elem: u64,
    field: &dyn Fn() -> String,
) -> Result<u64> {
    let max = remaining / min_elem.max(1);
    if count > max {
        return Err(GgufError::CountTooLarge {
            offset: at,
            field: field(),
            count,
            remaining,
            max,
            needed: count.saturating_mul(min_elem.max(1)),
        });
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_report_missing_bytes() {
        let mut r = Reader::new(&[1, 2, 3]);
        let err = r.u64(|| "x".into()).unwrap_err();
        assert_eq!(err.missing_bytes(), Some(5));
        assert_eq!(err.offset(), Some(0));
        assert_eq!(r.u8(|| "y".into()).unwrap(), 1);
    }

    #[test]
    fn counts_are_checked_against_remaining_bytes() {
        let mut bytes = 3u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 24]);
        assert_eq!(Reader::new(&bytes).count(8, || "n".into()).unwrap(), 3);
        let err = Reader::new(&bytes).count(12, || "n".into()).unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::CountTooLarge {
                    count: 3,
                    max: 2,
                    needed: 36,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn strings_validate_utf8() {
        let mut bytes = 2u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        let err = Reader::new(&bytes).str(|| "s".into()).unwrap_err();
        assert!(
            matches!(err, GgufError::InvalidUtf8 { offset: 8, .. }),
            "{err}"
        );
    }
}
