//! The one little-endian codec every on-disk and on-wire format is written with: the metadata
//! file (ST-10), record files and payloads (ST-6 .. ST-8), log entries (LOG-5) and protocol
//! frames (PR-2).
//!
//! Owns: bounds-checked reads that return a [`DecodeError`] and never panic, whatever the bytes
//! (a proptest in `tests/codec_props.rs` feeds every decoder arbitrary bytes), and the few
//! composite writes the formats share (length-prefixed strings). Writing is `bytes::BufMut` on a
//! `Vec<u8>`; reading is [`Reader`], on `bytes::Buf` after a bound check.
//! Must not touch: what the fields mean. Each format decodes its own fields and turns a
//! `DecodeError` into its own error type.

use bytes::{Buf, BufMut};

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end before the field does.
    #[error("the bytes end early ({wanted} more needed, {left} left)")]
    Truncated { wanted: usize, left: usize },
    /// A field holds a value its format does not allow.
    #[error("{0}")]
    Invalid(&'static str),
    /// Bytes are left after the last field.
    #[error("{0} trailing byte(s)")]
    Trailing(usize),
}

/// Reads fields off a byte slice, front to back, checking every length first.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    fn need(&self, wanted: usize) -> Result<(), DecodeError> {
        if self.rest.len() < wanted {
            return Err(DecodeError::Truncated {
                wanted,
                left: self.rest.len(),
            });
        }
        Ok(())
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.rest.get_u8())
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.rest.get_u16_le())
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.rest.get_u32_le())
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.need(8)?;
        Ok(self.rest.get_u64_le())
    }

    /// A byte that must be 0 (false) or 1 (true); anything else is `Invalid(what)`.
    pub fn flag(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid(what)),
        }
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        self.need(n)?;
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// A UTF-8 string prefixed by its length as a u16.
    pub fn str_u16(&mut self) -> Result<String, DecodeError> {
        let n = self.u16()? as usize;
        utf8(self.bytes(n)?)
    }

    /// A UTF-8 string prefixed by its length as a u32.
    pub fn str_u32(&mut self) -> Result<String, DecodeError> {
        let n = self.u32()? as usize;
        utf8(self.bytes(n)?)
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// Ends the read: no bytes may be left.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

fn utf8(bytes: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Invalid("a string not in UTF-8"))
}

/// Writes `s` prefixed by its length as a u16, cut to the first 65,535 bytes (at a character
/// boundary) if longer.
pub fn put_str_u16(out: &mut impl BufMut, s: &str) {
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.put_u16_le(end as u16);
    out.put_slice(&s.as_bytes()[..end]);
}

/// Writes `s` prefixed by its length as a u32.
pub fn put_str_u32(out: &mut impl BufMut, s: &str) {
    out.put_u32_le(s.len() as u32);
    out.put_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_was_written_and_refuses_short_input() {
        let mut out = Vec::new();
        out.put_u8(1);
        out.put_u16_le(0x0203);
        out.put_u32_le(0x0405_0607);
        out.put_u64_le(u64::MAX - 1);
        put_str_u16(&mut out, "héllo");
        put_str_u32(&mut out, "");
        out.put_slice(&[9; 4]);
        let mut r = Reader::new(&out);
        assert!(r.flag("flag").unwrap());
        assert_eq!(r.u16().unwrap(), 0x0203);
        assert_eq!(r.u32().unwrap(), 0x0405_0607);
        assert_eq!(r.u64().unwrap(), u64::MAX - 1);
        assert_eq!(r.str_u16().unwrap(), "héllo");
        assert_eq!(r.str_u32().unwrap(), "");
        assert_eq!(r.clone().finish(), Err(DecodeError::Trailing(4)));
        assert_eq!(r.array::<4>().unwrap(), [9; 4]);
        assert_eq!(r.u8(), Err(DecodeError::Truncated { wanted: 1, left: 0 }));
        r.finish().unwrap();
        let mut short = Reader::new(&[1, 2, 3]);
        assert!(matches!(short.u32(), Err(DecodeError::Truncated { .. })));
        assert_eq!(short.remaining(), 3, "a refused read consumes nothing");
        assert_eq!(
            Reader::new(&[2]).flag("the in-use byte"),
            Err(DecodeError::Invalid("the in-use byte"))
        );
        assert_eq!(
            Reader::new(&[1, 0, 0xff]).str_u16(),
            Err(DecodeError::Invalid("a string not in UTF-8"))
        );
    }

    #[test]
    fn a_long_string_is_cut_at_a_character_boundary() {
        let s = "é".repeat(40_000);
        let mut out = Vec::new();
        put_str_u16(&mut out, &s);
        let back = Reader::new(&out).str_u16().unwrap();
        assert_eq!(back.len(), 65_534);
        assert!(s.starts_with(&back));
    }
}
