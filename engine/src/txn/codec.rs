//! The transaction's byte encoding: stable, versioned, checksummed.
//!
//! Used wherever a transaction leaves the process's memory as bytes (the C ABI, recorded
//! workloads, messages between processes). Little-endian, fixed-width, no platform-sized
//! field; byte strings are `u32 length` then the bytes (the shared helpers in
//! [`crate::codec`]).
//!
//! ```text
//! offset   size  field
//! 0        4     magic      "KTXN" (4b 54 58 4e)
//! 4        2     version    1
//! 6        2     flags      bit 0: full journal (Transaction::set_full_journal);
//!                           bits 1..=15 are 0 (a decoder refuses any it does not know)
//! 8        4     op_count   1..=MAX_TXN_OPS
//! 12       ...   op_count ops, each:
//!                  1     tag     the op's kind (table below)
//!                  8     coll    collection id
//!                  ...   the op's other fields, in the order TxnOp declares them
//! n-4      4     crc32c     Castagnoli, of bytes 0..n-4
//! ```
//!
//! Fields after `coll`, per tag (`bytes` is `u32 len | len bytes`; `u64` little-endian):
//!
//! | tag | op | fields after `coll` |
//! |---:|---|---|
//! | 0 | *(reserved: never an op, so zeroed memory does not decode)* | |
//! | 1 | mkcoll | — |
//! | 2 | rmcoll | — |
//! | 3 | touch | name: bytes |
//! | 4 | write | name: bytes, offset: u64, data: bytes |
//! | 5 | zero | name: bytes, offset: u64, len: u64 |
//! | 6 | truncate | name: bytes, size: u64 |
//! | 7 | remove | name: bytes |
//! | 8 | setattr | name: bytes, key: bytes, value: bytes |
//! | 9 | rmattr | name: bytes, key: bytes |
//! | 10 | omap_set | name: bytes, n: u32, then n × (key: bytes, value: bytes) |
//! | 11 | omap_rm | name: bytes, n: u32, then n × key: bytes |
//! | 12 | clone | src: bytes, dst: bytes |
//! | 13 | clone_range | src: bytes, dst: bytes, src_offset: u64, len: u64, dst_offset: u64 |
//! | 14 | acknowledge | name: bytes, offset: u64, len: u64 |
//!
//! **Stability.** A tag, once given, keeps its meaning forever and is never reused; a new
//! op gets the next free number. Changing an existing op's fields, or the header, takes a
//! new `version`; a decoder refuses versions it does not know rather than guess. The golden
//! test in `engine/tests/txn_codec.rs` pins the bytes of version 1.
//!
//! **Decoding** refuses, with [`StoreError::Decode`]: an input shorter than a header and a
//! crc, a wrong magic, an unknown version, a crc mismatch, unknown flag bits, an op count
//! over `MAX_TXN_OPS` or more than the input could hold, an unknown tag, a truncated field,
//! a byte string over its limit (names `MAX_NAME_BYTES`, keys `MAX_KEY_BYTES`, values
//! `MAX_VALUE_BYTES`, write data `MAX_TXN_DATA_BYTES`), and bytes left over after the last
//! op. The crc is checked before anything past the version is interpreted, so a corrupt
//! input reports a crc mismatch rather than a confusing field error. A transaction that
//! decodes must then pass [`Transaction::validate`], whose error is returned as is.
//! Decoding never panics, and allocates no more than the input's size justifies.

use crate::codec::{DecodeError, Put, Reader};
use crate::error::{Result, StoreError};
use crate::types::{
    MAX_KEY_BYTES, MAX_NAME_BYTES, MAX_TXN_DATA_BYTES, MAX_TXN_OPS, MAX_VALUE_BYTES,
};

use super::{OpKind, Transaction, TxnOp};

/// First four bytes of every encoded transaction.
pub const MAGIC: [u8; 4] = *b"KTXN";
/// The encoding version this build writes, and the only one it reads.
pub const VERSION: u16 = 1;
/// Flag bit: the transaction goes through the full journal.
pub const FLAG_FULL_JOURNAL: u16 = 1 << 0;
/// Every flag bit version 1 defines.
const KNOWN_FLAGS: u16 = FLAG_FULL_JOURNAL;

/// Magic, version, flags, op count.
const HEADER_BYTES: usize = 12;
/// The trailing crc32c.
const CRC_BYTES: usize = 4;
/// The smallest op: tag and collection (mkcoll, rmcoll).
const MIN_OP_BYTES: usize = 1 + 8;

/// The stable tag of each kind (module table). Exhaustive, so a new kind does not compile
/// until it has a tag.
const fn tag(kind: OpKind) -> u8 {
    match kind {
        OpKind::MkColl => 1,
        OpKind::RmColl => 2,
        OpKind::Touch => 3,
        OpKind::Write => 4,
        OpKind::Zero => 5,
        OpKind::Truncate => 6,
        OpKind::Remove => 7,
        OpKind::SetAttr => 8,
        OpKind::RmAttr => 9,
        OpKind::OmapSet => 10,
        OpKind::OmapRm => 11,
        OpKind::Clone => 12,
        OpKind::CloneRange => 13,
        OpKind::Acknowledge => 14,
    }
}

/// The kind a tag stands for, if any.
fn kind_of_tag(t: u8) -> Option<OpKind> {
    OpKind::ALL.into_iter().find(|&k| tag(k) == t)
}

impl Transaction {
    /// The transaction's encoding (module documentation).
    ///
    /// Encodes whatever the transaction holds, valid or not; [`decode`](Self::decode) only
    /// accepts what [`validate`](Self::validate) accepts.
    ///
    /// # Panics
    ///
    /// If a byte string, an omap list or the op list has more than `u32::MAX` entries, which
    /// no transaction that passes `validate` has.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&MAGIC);
        out.put_u16(VERSION);
        out.put_u16(if self.full_journal() {
            FLAG_FULL_JOURNAL
        } else {
            0
        });
        out.put_u32(u32::try_from(self.len()).expect("more than u32::MAX ops"));
        for op in self.ops() {
            encode_op(op, &mut out);
        }
        let crc = crate::crc::crc32c(&out);
        out.put_u32(crc);
        debug_assert_eq!(out.len(), self.encoded_len());
        out
    }

    /// The length in bytes of [`encode`](Self::encode)'s output.
    pub fn encoded_len(&self) -> usize {
        HEADER_BYTES + self.ops().iter().map(op_len).sum::<usize>() + CRC_BYTES
    }

    /// Decodes a transaction from exactly the bytes [`encode`](Self::encode) produced,
    /// checks it with [`validate`](Self::validate), and returns it.
    ///
    /// Errors: [`StoreError::Decode`] for anything the module documentation lists;
    /// `validate`'s error for a well-formed encoding of an invalid transaction.
    pub fn decode(buf: &[u8]) -> Result<Transaction> {
        let txn = decode(buf)?;
        txn.validate()?;
        Ok(txn)
    }
}

/// Appends one op: tag, coll, the rest in declaration order.
fn encode_op(op: &TxnOp, out: &mut Vec<u8>) {
    out.put_u8(tag(op.kind()));
    out.put_u64(op.coll());
    match op {
        TxnOp::MkColl { .. } | TxnOp::RmColl { .. } => {}
        TxnOp::Touch { name, .. } | TxnOp::Remove { name, .. } => out.put_bytes(name),
        TxnOp::Write {
            name, offset, data, ..
        } => {
            out.put_bytes(name);
            out.put_u64(*offset);
            out.put_bytes(data);
        }
        TxnOp::Zero {
            name, offset, len, ..
        }
        | TxnOp::Acknowledge {
            name, offset, len, ..
        } => {
            out.put_bytes(name);
            out.put_u64(*offset);
            out.put_u64(*len);
        }
        TxnOp::Truncate { name, size, .. } => {
            out.put_bytes(name);
            out.put_u64(*size);
        }
        TxnOp::SetAttr {
            name, key, value, ..
        } => {
            out.put_bytes(name);
            out.put_bytes(key);
            out.put_bytes(value);
        }
        TxnOp::RmAttr { name, key, .. } => {
            out.put_bytes(name);
            out.put_bytes(key);
        }
        TxnOp::OmapSet { name, pairs, .. } => {
            out.put_bytes(name);
            out.put_u32(u32::try_from(pairs.len()).expect("more than u32::MAX omap pairs"));
            for (key, value) in pairs {
                out.put_bytes(key);
                out.put_bytes(value);
            }
        }
        TxnOp::OmapRm { name, keys, .. } => {
            out.put_bytes(name);
            out.put_u32(u32::try_from(keys.len()).expect("more than u32::MAX omap keys"));
            for key in keys {
                out.put_bytes(key);
            }
        }
        TxnOp::Clone { src, dst, .. } => {
            out.put_bytes(src);
            out.put_bytes(dst);
        }
        TxnOp::CloneRange {
            src,
            dst,
            src_offset,
            len,
            dst_offset,
            ..
        } => {
            out.put_bytes(src);
            out.put_bytes(dst);
            out.put_u64(*src_offset);
            out.put_u64(*len);
            out.put_u64(*dst_offset);
        }
    }
}

/// Encoded length of one op.
fn op_len(op: &TxnOp) -> usize {
    let b = |s: &[u8]| 4 + s.len();
    MIN_OP_BYTES
        + match op {
            TxnOp::MkColl { .. } | TxnOp::RmColl { .. } => 0,
            TxnOp::Touch { name, .. } | TxnOp::Remove { name, .. } => b(name),
            TxnOp::Write { name, data, .. } => b(name) + 8 + b(data),
            TxnOp::Zero { name, .. } | TxnOp::Acknowledge { name, .. } => b(name) + 16,
            TxnOp::Truncate { name, .. } => b(name) + 8,
            TxnOp::SetAttr {
                name, key, value, ..
            } => b(name) + b(key) + b(value),
            TxnOp::RmAttr { name, key, .. } => b(name) + b(key),
            TxnOp::OmapSet { name, pairs, .. } => {
                b(name) + 4 + pairs.iter().map(|(k, v)| b(k) + b(v)).sum::<usize>()
            }
            TxnOp::OmapRm { name, keys, .. } => {
                b(name) + 4 + keys.iter().map(|k| b(k)).sum::<usize>()
            }
            TxnOp::Clone { src, dst, .. } => b(src) + b(dst),
            TxnOp::CloneRange { src, dst, .. } => b(src) + b(dst) + 24,
        }
}

/// Decodes without the final `validate`.
fn decode(buf: &[u8]) -> Result<Transaction> {
    let fail = |msg: String| StoreError::Decode(msg);
    if buf.len() < HEADER_BYTES + CRC_BYTES {
        return Err(fail(format!(
            "truncated: {} bytes, a transaction takes at least {}",
            buf.len(),
            HEADER_BYTES + CRC_BYTES
        )));
    }
    let (body, crc) = buf.split_at(buf.len() - CRC_BYTES);
    let mut r = Reader::new(body);
    let de = |e: DecodeError| StoreError::Decode(e.to_string());

    let magic = r.take(MAGIC.len(), "magic").map_err(de)?;
    if magic != MAGIC {
        return Err(fail(format!(
            "bad magic {magic:02x?}, expected {MAGIC:02x?} (\"KTXN\")"
        )));
    }
    let version = r.u16("version").map_err(de)?;
    if version != VERSION {
        return Err(fail(format!(
            "unknown version {version}; this build reads version {VERSION}"
        )));
    }
    let stored = u32::from_le_bytes(crc.try_into().expect("split at CRC_BYTES"));
    let computed = crate::crc::crc32c(body);
    if stored != computed {
        return Err(fail(format!(
            "crc32c mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )));
    }
    let flags = r.u16("flags").map_err(de)?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(fail(format!(
            "unknown flags {:#06x} (version {VERSION} knows {KNOWN_FLAGS:#06x})",
            flags & !KNOWN_FLAGS
        )));
    }
    let count = r.count("op count", MIN_OP_BYTES).map_err(de)?;
    if count > MAX_TXN_OPS {
        return Err(fail(format!(
            "op count {count} over the limit of {MAX_TXN_OPS} (MAX_TXN_OPS)"
        )));
    }

    let mut txn = Transaction::new();
    txn.set_full_journal(flags & FLAG_FULL_JOURNAL != 0);
    for i in 0..count {
        let t = r.u8("tag").map_err(|e| fail(format!("op {i}: {e}")))?;
        let kind = kind_of_tag(t).ok_or_else(|| fail(format!("op {i}: unknown tag {t}")))?;
        let op = decode_op(kind, &mut r).map_err(|e| fail(format!("op {i} ({kind}): {e}")))?;
        txn.push(op);
    }
    if !r.is_empty() {
        return Err(fail(format!(
            "{} bytes left over after the last of {count} ops",
            r.remaining()
        )));
    }
    Ok(txn)
}

/// Decodes the fields of one op of `kind`, its tag already read.
fn decode_op(kind: OpKind, r: &mut Reader<'_>) -> Result<TxnOp, DecodeError> {
    let coll = r.u64("collection")?;
    let read_name = |r: &mut Reader<'_>, what| r.bytes_vec(what, MAX_NAME_BYTES);
    let op = match kind {
        OpKind::MkColl => TxnOp::MkColl { coll },
        OpKind::RmColl => TxnOp::RmColl { coll },
        OpKind::Touch => TxnOp::Touch {
            coll,
            name: read_name(r, "object name")?,
        },
        OpKind::Write => {
            let name = read_name(r, "object name")?;
            let offset = r.u64("offset")?;
            let data = r.bytes_vec("write data", MAX_TXN_DATA_BYTES as usize)?;
            TxnOp::Write {
                coll,
                name,
                offset,
                data,
            }
        }
        OpKind::Zero => {
            let name = read_name(r, "object name")?;
            let offset = r.u64("offset")?;
            let len = r.u64("length")?;
            TxnOp::Zero {
                coll,
                name,
                offset,
                len,
            }
        }
        OpKind::Acknowledge => {
            let name = read_name(r, "object name")?;
            let offset = r.u64("offset")?;
            let len = r.u64("length")?;
            TxnOp::Acknowledge {
                coll,
                name,
                offset,
                len,
            }
        }
        OpKind::Truncate => {
            let name = read_name(r, "object name")?;
            let size = r.u64("size")?;
            TxnOp::Truncate { coll, name, size }
        }
        OpKind::Remove => TxnOp::Remove {
            coll,
            name: read_name(r, "object name")?,
        },
        OpKind::SetAttr => {
            let name = read_name(r, "object name")?;
            let key = r.bytes_vec("attribute key", MAX_KEY_BYTES)?;
            let value = r.bytes_vec("attribute value", MAX_VALUE_BYTES)?;
            TxnOp::SetAttr {
                coll,
                name,
                key,
                value,
            }
        }
        OpKind::RmAttr => {
            let name = read_name(r, "object name")?;
            let key = r.bytes_vec("attribute key", MAX_KEY_BYTES)?;
            TxnOp::RmAttr { coll, name, key }
        }
        OpKind::OmapSet => {
            let name = read_name(r, "object name")?;
            // Each pair is at least two empty byte strings.
            let n = r.count("omap pair count", 8)?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                let key = r.bytes_vec("omap key", MAX_KEY_BYTES)?;
                let value = r.bytes_vec("omap value", MAX_VALUE_BYTES)?;
                pairs.push((key, value));
            }
            TxnOp::OmapSet { coll, name, pairs }
        }
        OpKind::OmapRm => {
            let name = read_name(r, "object name")?;
            let n = r.count("omap key count", 4)?;
            let mut keys = Vec::with_capacity(n);
            for _ in 0..n {
                keys.push(r.bytes_vec("omap key", MAX_KEY_BYTES)?);
            }
            TxnOp::OmapRm { coll, name, keys }
        }
        OpKind::Clone => {
            let src = read_name(r, "source name")?;
            let dst = read_name(r, "destination name")?;
            TxnOp::Clone { coll, src, dst }
        }
        OpKind::CloneRange => {
            let src = read_name(r, "source name")?;
            let dst = read_name(r, "destination name")?;
            let src_offset = r.u64("source offset")?;
            let len = r.u64("length")?;
            let dst_offset = r.u64("destination offset")?;
            TxnOp::CloneRange {
                coll,
                src,
                dst,
                src_offset,
                len,
                dst_offset,
            }
        }
    };
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_nonzero_distinct_and_invert() {
        for (i, &a) in OpKind::ALL.iter().enumerate() {
            assert_ne!(tag(a), 0, "{a}: tag 0 is reserved");
            assert_eq!(kind_of_tag(tag(a)), Some(a));
            for &b in &OpKind::ALL[i + 1..] {
                assert_ne!(tag(a), tag(b), "{a} and {b} share a tag");
            }
        }
        assert_eq!(kind_of_tag(0), None);
        assert_eq!(kind_of_tag(15), None);
    }

    #[test]
    fn encoded_len_matches_every_kind() {
        let mut t = Transaction::new();
        t.mkcoll(1)
            .rmcoll(2)
            .touch(1, "a")
            .write(1, "a", 5, vec![1; 33])
            .zero(1, "a", 1, 2)
            .truncate(1, "a", 9)
            .remove(1, "a")
            .setattr(1, "a", "k", "v")
            .rmattr(1, "a", "k")
            .omap_set(1, "a", vec![(b"x".to_vec(), b"yy".to_vec())])
            .omap_rm(1, "a", vec![b"x".to_vec(), Vec::new()])
            .clone_object(1, "a", "b")
            .clone_range(1, "a", "b", 1, 2, 3);
        assert_eq!(t.encode().len(), t.encoded_len());
    }
}
