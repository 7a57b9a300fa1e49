//! Little-endian, fixed-width encoding helpers shared by every on-media and on-wire format of
//! the engine (transactions, journal entries, checkpoints). Byte strings are `u32 length`
//! then the bytes. Decoding never panics and never allocates more than the input could hold.

/// Why a byte string could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("truncated: {what} needs {need} bytes, {left} left")]
    Truncated {
        /// The field.
        what: &'static str,
        /// Bytes it needs.
        need: usize,
        /// Bytes left.
        left: usize,
    },
    /// A field holds a value it may not.
    #[error("bad {what}: {value}")]
    Bad {
        /// The field.
        what: &'static str,
        /// The value found.
        value: u64,
    },
    /// A byte string is longer than its limit.
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// The field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Appends fields to a byte vector.
pub trait Put {
    /// A byte.
    fn put_u8(&mut self, v: u8);
    /// A u16, little-endian.
    fn put_u16(&mut self, v: u16);
    /// A u32, little-endian.
    fn put_u32(&mut self, v: u32);
    /// A u64, little-endian.
    fn put_u64(&mut self, v: u64);
    /// `u32 len` then the bytes. Panics past u32::MAX bytes (callers check limits first).
    fn put_bytes(&mut self, b: &[u8]);
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_bytes(&mut self, b: &[u8]) {
        let len = u32::try_from(b.len()).expect("byte string over 4 GiB");
        self.put_u32(len);
        self.extend_from_slice(b);
    }
}

/// Reads fields from a byte slice, front to back.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// True when everything has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                what,
                need: n,
                left: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// A byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    /// A little-endian u16.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(
            self.take(2, what)?.try_into().expect("2 bytes"),
        ))
    }

    /// A little-endian u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }

    /// A little-endian u64.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }

    /// A `u32 len` byte string of at most `max` bytes, borrowed.
    pub fn bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)? as usize;
        if len > max {
            return Err(DecodeError::TooLong { what, len, max });
        }
        self.take(len, what)
    }

    /// A `u32 len` byte string of at most `max` bytes, owned.
    pub fn bytes_vec(&mut self, what: &'static str, max: usize) -> Result<Vec<u8>, DecodeError> {
        self.bytes(what, max).map(<[u8]>::to_vec)
    }

    /// A count that must fit in what is left, if each item takes at least `min_item` bytes
    /// (bounds allocations by the input's size).
    pub fn count(&mut self, what: &'static str, min_item: usize) -> Result<usize, DecodeError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_item.max(1)) > self.buf.len() {
            return Err(DecodeError::Bad {
                what,
                value: n as u64,
            });
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_truncation() {
        let mut v = Vec::new();
        v.put_u8(7);
        v.put_u32(0xdead_beef);
        v.put_u64(u64::MAX - 1);
        v.put_bytes(b"keel");
        let mut r = Reader::new(&v);
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.u32("b").unwrap(), 0xdead_beef);
        assert_eq!(r.u64("c").unwrap(), u64::MAX - 1);
        assert_eq!(r.bytes("d", 4).unwrap(), b"keel");
        assert!(r.is_empty());
        let mut r = Reader::new(&v[..v.len() - 1]);
        r.take(13, "skip").unwrap();
        assert!(matches!(
            r.bytes("d", 4),
            Err(DecodeError::Truncated { .. })
        ));
        let mut r = Reader::new(&v[13..]);
        assert!(matches!(
            r.bytes("d", 3),
            Err(DecodeError::TooLong { len: 4, .. })
        ));
    }

    #[test]
    fn count_is_bounded_by_input() {
        let mut v = Vec::new();
        v.put_u32(1_000_000);
        v.extend_from_slice(&[0; 16]);
        assert!(Reader::new(&v).count("n", 8).is_err());
        let mut v = Vec::new();
        v.put_u32(2);
        v.extend_from_slice(&[0; 16]);
        assert_eq!(Reader::new(&v).count("n", 8).unwrap(), 2);
    }
}
