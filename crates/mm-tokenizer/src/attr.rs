//! Per-token attributes, as llama.cpp derives them from `tokenizer.ggml.token_type`.

/// A token's attributes: a small bit set (the same bits llama.cpp uses).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TokenAttr(pub(crate) u16);

impl TokenAttr {
    /// No type was given (`token_type` 0 or out of range).
    pub const UNDEFINED: TokenAttr = TokenAttr(0);
    /// The unknown token (`<unk>`).
    pub const UNKNOWN: TokenAttr = TokenAttr(1 << 0);
    /// A reserved, unused slot.
    pub const UNUSED: TokenAttr = TokenAttr(1 << 1);
    /// An ordinary piece of text.
    pub const NORMAL: TokenAttr = TokenAttr(1 << 2);
    /// A control token (`<bos>`, `<end_of_turn>`...): matched in text only when special
    /// tokens are parsed, and not rendered by a plain decode.
    pub const CONTROL: TokenAttr = TokenAttr(1 << 3);
    /// A user-defined token: always matched in text before the model's algorithm runs.
    pub const USER_DEFINED: TokenAttr = TokenAttr(1 << 4);
    /// A byte-fallback token (`<0x0A>`).
    pub const BYTE: TokenAttr = TokenAttr(1 << 5);
    /// Whitespace to the left of this special token is swallowed when it is matched.
    pub const LSTRIP: TokenAttr = TokenAttr(1 << 7);
    /// Whitespace to the right of this special token is swallowed when it is matched.
    pub const RSTRIP: TokenAttr = TokenAttr(1 << 8);

    /// The attribute for a GGUF `token_type` value (llama.cpp's table).
    pub fn from_token_type(t: i32) -> TokenAttr {
        match t {
            1 => Self::NORMAL,
            2 => Self::UNKNOWN,
            3 => Self::CONTROL,
            4 => Self::USER_DEFINED,
            5 => Self::UNUSED,
            6 => Self::BYTE,
            _ => Self::UNDEFINED,
        }
    }

    /// The raw bits.
    pub fn bits(self) -> u16 {
        self.0
    }

    /// True when any bit of `other` is set in `self`.
    pub fn intersects(self, other: TokenAttr) -> bool {
        self.0 & other.0 != 0
    }

    /// `self` with the bits of `other` set.
    pub fn with(self, other: TokenAttr) -> TokenAttr {
        TokenAttr(self.0 | other.0)
    }

    /// `self` with the bits of `other` cleared.
    pub fn without(self, other: TokenAttr) -> TokenAttr {
        TokenAttr(self.0 & !other.0)
    }

    /// Control, user-defined or unknown: the tokens found in text before the model's
    /// algorithm runs (control and unknown ones only when special tokens are parsed).
    pub fn is_special(self) -> bool {
        self.intersects(SPECIAL)
    }
}

/// The attributes of special tokens (see [`TokenAttr::is_special`]).
pub(crate) const SPECIAL: TokenAttr =
    TokenAttr(TokenAttr::CONTROL.0 | TokenAttr::USER_DEFINED.0 | TokenAttr::UNKNOWN.0);

/// The ids of the tokens whose attributes have any bit of `any`, in order. Skips 16
/// tokens at a time where none has (special tokens are few and bunched).
pub(crate) fn ids_with_any(attrs: &[TokenAttr], any: TokenAttr) -> impl Iterator<Item = u32> + '_ {
    const RUN: usize = 16;
    attrs
        .chunks(RUN)
        .enumerate()
        .filter(move |(_, run)| run.iter().fold(0, |m, a| m | a.0) & any.0 != 0)
        .flat_map(move |(k, run)| {
            run.iter()
                .enumerate()
                .filter(move |(_, a)| a.intersects(any))
                .map(move |(j, _)| (k * RUN + j) as u32)
        })
}

impl std::fmt::Debug for TokenAttr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const NAMES: [(TokenAttr, &str); 8] = [
            (TokenAttr::UNKNOWN, "UNKNOWN"),
            (TokenAttr::UNUSED, "UNUSED"),
            (TokenAttr::NORMAL, "NORMAL"),
            (TokenAttr::CONTROL, "CONTROL"),
            (TokenAttr::USER_DEFINED, "USER_DEFINED"),
            (TokenAttr::BYTE, "BYTE"),
            (TokenAttr::LSTRIP, "LSTRIP"),
            (TokenAttr::RSTRIP, "RSTRIP"),
        ];
        if self.0 == 0 {
            return f.write_str("UNDEFINED");
        }
        let mut first = true;
        for (a, name) in NAMES {
            if self.intersects(a) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_types_map_like_llama_cpp() {
        assert_eq!(TokenAttr::from_token_type(1), TokenAttr::NORMAL);
        assert_eq!(TokenAttr::from_token_type(6), TokenAttr::BYTE);
        assert_eq!(TokenAttr::from_token_type(99), TokenAttr::UNDEFINED);
        let a = TokenAttr::CONTROL.with(TokenAttr::RSTRIP);
        assert!(a.is_special());
        assert_eq!(format!("{a:?}"), "CONTROL|RSTRIP");
        assert_eq!(a.without(TokenAttr::RSTRIP), TokenAttr::CONTROL);
        assert_eq!(format!("{:?}", TokenAttr::UNDEFINED), "UNDEFINED");
        assert!(!TokenAttr::NORMAL.is_special());
        assert_eq!(TokenAttr::BYTE.bits(), 32);
    }

    #[test]
    fn ids_with_any_lists_exactly_the_matching_ids() {
        let mut attrs = vec![TokenAttr::NORMAL; 100];
        for i in [0, 15, 16, 17, 63, 99] {
            attrs[i] = TokenAttr::CONTROL;
        }
        attrs[40] = TokenAttr::BYTE;
        let got: Vec<u32> = ids_with_any(&attrs, TokenAttr::CONTROL).collect();
        assert_eq!(got, [0, 15, 16, 17, 63, 99]);
        let got: Vec<u32> =
            ids_with_any(&attrs, TokenAttr::BYTE.with(TokenAttr::CONTROL)).collect();
        assert_eq!(got, [0, 15, 16, 17, 40, 63, 99]);
        assert_eq!(ids_with_any(&attrs, TokenAttr::UNKNOWN).count(), 0);
    }
}
