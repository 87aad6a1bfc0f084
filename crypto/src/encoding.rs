//! The tagged length-prefixed layout of envelope.md: each field is `tag (1 B) || len (u32 BE) ||
//! bytes`, fields in a fixed order. Used for everything signed, hashed or authenticated that is not a
//! protobuf message (capsule header, capsule id input, re-key binding, policy hash input).

use crate::error::{Error, Result};

/// Builds a layout field by field.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty layout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one field. Fields are at most 4 GiB by construction of the callers (u32 length).
    pub fn field(mut self, tag: u8, bytes: &[u8]) -> Self {
        self.push(tag, bytes);
        self
    }

    /// Appends one field in place.
    pub fn push(&mut self, tag: u8, bytes: &[u8]) {
        // Callers never pass more than a few KiB; saturate rather than wrap if one ever did.
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.buf.push(tag);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    /// Appends a u32 field (big-endian).
    pub fn u32(self, tag: u8, v: u32) -> Self {
        self.field(tag, &v.to_be_bytes())
    }

    /// Appends a u64 field (big-endian).
    pub fn u64(self, tag: u8, v: u64) -> Self {
        self.field(tag, &v.to_be_bytes())
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads a layout field by field, in the order the layout defines.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    what: &'static str,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading `bytes` as the layout named `what` (for error messages).
    pub fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Self { what, rest: bytes }
    }

    fn err(&self, reason: &'static str) -> Error {
        Error::Layout {
            what: self.what,
            reason,
        }
    }

    /// The next field's tag, if any.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads the next field, which must carry `tag`.
    pub fn field(&mut self, tag: u8) -> Result<&'a [u8]> {
        let (&t, rest) = self.rest.split_first().ok_or(self.err("truncated tag"))?;
        if t != tag {
            return Err(self.err("unexpected tag"));
        }
        if rest.len() < 4 {
            return Err(self.err("truncated length"));
        }
        let (len, rest) = rest.split_at(4);
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if rest.len() < len {
            return Err(self.err("truncated value"));
        }
        let (value, rest) = rest.split_at(len);
        self.rest = rest;
        Ok(value)
    }

    /// Reads a u32 field.
    pub fn u32(&mut self, tag: u8) -> Result<u32> {
        let v = self.field(tag)?;
        let arr: [u8; 4] = v.try_into().map_err(|_| self.err("u32 field length"))?;
        Ok(u32::from_be_bytes(arr))
    }

    /// Reads a u64 field.
    pub fn u64(&mut self, tag: u8) -> Result<u64> {
        let v = self.field(tag)?;
        let arr: [u8; 8] = v.try_into().map_err(|_| self.err("u64 field length"))?;
        Ok(u64::from_be_bytes(arr))
    }

    /// Reads a UTF-8 field.
    pub fn str(&mut self, tag: u8) -> Result<&'a str> {
        let v = self.field(tag)?;
        core::str::from_utf8(v).map_err(|_| self.err("not UTF-8"))
    }

    /// Fails unless every byte was consumed.
    pub fn finish(self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_vector() {
        let bytes = Writer::new().u32(0x02, 1).field(0x03, b"tw").finish();
        assert_eq!(
            bytes,
            [0x02, 0, 0, 0, 4, 0, 0, 0, 1, 0x03, 0, 0, 0, 2, b't', b'w']
        );
        let mut r = Reader::new("t", &bytes);
        assert_eq!(r.u32(0x02).unwrap(), 1);
        assert_eq!(r.str(0x03).unwrap(), "tw");
        r.finish().unwrap();
    }

    #[test]
    fn reader_rejects_bad_layouts() {
        let bytes = Writer::new().field(0x03, b"abc").finish();
        assert!(Reader::new("t", &bytes).field(0x04).is_err());
        assert!(Reader::new("t", &bytes[..7]).field(0x03).is_err());
        assert!(Reader::new("t", &bytes[..3]).field(0x03).is_err());
        let mut long = bytes.clone();
        long.push(0);
        let mut r = Reader::new("t", &long);
        r.field(0x03).unwrap();
        assert!(r.finish().is_err());
        assert!(Reader::new("t", &bytes).u32(0x03).is_err());
    }
}
