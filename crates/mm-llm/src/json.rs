//! Minimal JSON writing: string escaping into byte buffers, without allocating.

use bytes::BytesMut;

/// A byte sink the JSON writers append to.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for BytesMut {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `s` as a JSON string literal, quotes included (RFC 8259: `"`, `\` and the control
/// characters U+0000..U+001F are escaped; everything else is copied as UTF-8).
pub(crate) fn write_str(out: &mut impl Sink, s: &str) {
    out.put(b"\"");
    write_str_body(out, s);
    out.put(b"\"");
}

/// Writes the escaped contents of a JSON string literal, without the quotes.
pub(crate) fn write_str_body(out: &mut impl Sink, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0C => b"\\f",
            0..=0x1F => &[],
            _ => continue,
        };
        out.put(&bytes[start..i]);
        if esc.is_empty() {
            out.put(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        } else {
            out.put(esc);
        }
        start = i + 1;
    }
    out.put(&bytes[start..]);
}

/// Writes an unsigned integer in decimal.
pub(crate) fn write_u64(out: &mut impl Sink, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_round_trip_through_serde_json() {
        let all: String = (0u32..0x80)
            .filter_map(char::from_u32)
            .chain("é€😀\u{2028}".chars())
            .collect();
        for s in [
            "",
            "plain",
            "quote\" back\\slash",
            "\n\r\t\u{8}\u{c}\u{0}\u{1f}",
            all.as_str(),
        ] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn integers() {
        for n in [0, 7, 10, 12345, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }
}
