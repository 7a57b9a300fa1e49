//! Striping: how a volume's byte range maps onto its data objects.
//!
//! ```text
//!  volume bytes  0 ........ B ........ 2B ........ 3B ...   (B = object_bytes)
//!  objects       data.0000000000000000 | data.0000000000000001 | data.0000000000000002
//! ```
//!
//! Byte `x` of the volume lives in object `x / B` at offset `x % B`. Objects are created
//! by their first write (or zeroing) and never grow past `B` bytes; an object that does
//! not exist, or is shorter than `B`, reads as zeroes past its end (sparse).

use crate::types::PAGE;

/// Smallest object size: one engine page.
pub const MIN_OBJECT_BYTES: u64 = PAGE;
/// Largest object size (1 GiB).
pub const MAX_OBJECT_BYTES: u64 = 1 << 30;
/// Default object size (4 MiB, as RBD).
pub const DEFAULT_OBJECT_BYTES: u64 = 4 << 20;
/// A volume's size is a multiple of this (a sector).
pub const SECTOR_BYTES: u64 = 512;

/// One object's share of a volume byte range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Object index (its name is [`object_name`]).
    pub index: u64,
    /// Offset inside the object.
    pub object_offset: u64,
    /// Offset of this piece from the start of the range.
    pub range_offset: u64,
    /// Bytes.
    pub len: u64,
}

/// The pieces of `[offset, offset + len)` over objects of `object_bytes`, in order.
/// `object_bytes` must be non-zero; an empty range has no piece.
pub fn pieces(offset: u64, len: u64, object_bytes: u64) -> impl Iterator<Item = Piece> {
    assert!(object_bytes > 0, "object size of 0");
    let end = offset.saturating_add(len);
    let mut at = offset;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let index = at / object_bytes;
        let object_offset = at % object_bytes;
        let n = (object_bytes - object_offset).min(end - at);
        let p = Piece {
            index,
            object_offset,
            range_offset: at - offset,
            len: n,
        };
        at += n;
        Some(p)
    })
}

/// Name of data object `index`: `data.` and 16 lower-case hex digits, so that names sort
/// in index order.
pub fn object_name(index: u64) -> Vec<u8> {
    format!("data.{index:016x}").into_bytes()
}

/// The index of a data object's name, or None for another name.
pub fn object_index(name: &[u8]) -> Option<u64> {
    let hex = name.strip_prefix(b"data.")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// Objects a volume of `size_bytes` spans at most.
pub fn object_count(size_bytes: u64, object_bytes: u64) -> u64 {
    size_bytes.div_ceil(object_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_inside_one_object_is_one_piece() {
        let v: Vec<_> = pieces(10, 100, 4096).collect();
        assert_eq!(
            v,
            [Piece {
                index: 0,
                object_offset: 10,
                range_offset: 0,
                len: 100
            }]
        );
    }

    #[test]
    fn a_range_across_boundaries_is_split_at_each() {
        let v: Vec<_> = pieces(4000, 9000, 4096).collect();
        assert_eq!(v.len(), 4);
        assert_eq!((v[0].index, v[0].object_offset, v[0].len), (0, 4000, 96));
        assert_eq!((v[1].index, v[1].object_offset, v[1].len), (1, 0, 4096));
        assert_eq!((v[2].index, v[2].object_offset, v[2].len), (2, 0, 4096));
        assert_eq!((v[3].index, v[3].object_offset, v[3].len), (3, 0, 712));
        assert_eq!(v[3].range_offset, 96 + 2 * 4096);
        assert_eq!(v.iter().map(|p| p.len).sum::<u64>(), 9000);
        assert_eq!(pieces(5, 0, 4096).count(), 0);
    }

    #[test]
    fn names_round_trip_and_sort_by_index() {
        for i in [0, 1, 255, 1 << 40, u64::MAX] {
            assert_eq!(object_index(&object_name(i)), Some(i));
        }
        assert!(object_name(2) < object_name(16));
        assert_eq!(object_index(b"header"), None);
        assert_eq!(object_index(b"data.12"), None);
        assert_eq!(object_count(0, 4096), 0);
        assert_eq!(object_count(4097, 4096), 2);
    }
}
