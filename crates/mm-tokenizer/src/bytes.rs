//! GPT-2's byte-to-character table: byte-level BPE vocabularies spell every byte as one
//! printable character (printable Latin-1 bytes as themselves, the rest shifted to
//! U+0100 and up), so a token is a string even when it holds part of a UTF-8 sequence.

/// The character standing for each byte.
pub(crate) const fn byte_char(b: u8) -> char {
    let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable {
        return b as char;
    }
    // The non-printable bytes, in order, take U+0100, U+0101, ...
    let mut n = 0u32;
    let mut i = 0u32;
    while i < b as u32 {
        let p = matches!(i as u8, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        if !p {
            n += 1;
        }
        i += 1;
    }
    match char::from_u32(256 + n) {
        Some(c) => c,
        None => '\u{FFFD}',
    }
}

/// UTF-8 of each byte's character: up to 2 bytes, and the length.
pub(crate) static BYTE_UTF8: [([u8; 2], u8); 256] = {
    let mut t = [([0u8; 2], 0u8); 256];
    let mut b = 0;
    while b < 256 {
        let c = byte_char(b as u8) as u32;
        t[b] = if c < 0x80 {
            ([c as u8, 0], 1)
        } else {
            ([0xC0 | (c >> 6) as u8, 0x80 | (c & 0x3F) as u8], 2)
        };
        b += 1;
    }
    t
};

/// The byte a character stands for, if it is one of the 256.
pub(crate) fn char_byte(c: char) -> Option<u8> {
    let u = c as u32;
    if u < 256 && byte_char(u as u8) == c {
        return Some(u as u8);
    }
    if (256..256 + 68).contains(&u) {
        let want = u - 256;
        let mut n = 0;
        for b in 0..=255u8 {
            if byte_char(b) as u32 >= 256 {
                if n == want {
                    return Some(b);
                }
                n += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_a_bijection() {
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = byte_char(b);
            assert!(seen.insert(c));
            assert_eq!(char_byte(c), Some(b));
            let (u, n) = BYTE_UTF8[b as usize];
            assert_eq!(
                std::str::from_utf8(&u[..n as usize]).unwrap(),
                c.to_string()
            );
        }
        assert_eq!(byte_char(b' '), 'Ġ');
        assert_eq!(byte_char(b'\n'), 'Ċ');
        assert_eq!(byte_char(b'a'), 'a');
        assert_eq!(char_byte('€'), None);
    }
}
