//! The byte encoding of a [`Delta`], as journal entries carry it.
//!
//! A delta is a one-byte tag, then its fields in the order the enum declares them, with the
//! [`codec`](crate::codec) conventions: integers little-endian and fixed-width, byte strings
//! as `u32 length` then the bytes.
//!
//! | tag | delta | fields after the tag |
//! |---:|---|---|
//! | 1 | `MkColl` | `u64 coll` |
//! | 2 | `RmColl` | `u64 coll` |
//! | 3 | `Create` | `u64 coll, name` |
//! | 4 | `Remove` | `u64 coll, name` |
//! | 5 | `SetSize` | `u64 coll, name, u64 size` |
//! | 6 | `Map` | `u64 coll, name, u64 lpage, u64 phys, u32 pages` |
//! | 7 | `Unmap` | `u64 coll, name, u64 lpage, u64 pages` |
//! | 8 | `SetAttr` | `u64 coll, name, key, value` |
//! | 9 | `RmAttr` | `u64 coll, name, key` |
//! | 10 | `OmapSet` | `u64 coll, name, key, value` |
//! | 11 | `OmapRm` | `u64 coll, name, key` |
//! | 12 | `Csum` | `u64 phys, u32 count, count x u32 crc32c` |
//! | 13 | `OpenIntent` | `u64 phys, u32 pages` |
//! | 14 | `CloseIntent` | `u64 phys, u32 pages` |
//!
//! `name` holds at most [`MAX_NAME_BYTES`], `key` at most [`MAX_KEY_BYTES`] and `value` at
//! most [`MAX_VALUE_BYTES`]. Tags are part of the on-media format: never renumber one; a new
//! delta takes the next free number. Tag 0 is never used (a zeroed buffer is not a delta).
//!
//! Decoding refuses an unknown tag, an over-long byte string, a `Map`, `Csum` or intent of
//! zero pages and a `Csum` of more pages than a transaction may write; it
//! reads exactly one delta and leaves the rest of the input to the caller.

use crate::codec::{DecodeError, Put, Reader};
use crate::meta::Delta;
use crate::types::{
    CollId, MAX_KEY_BYTES, MAX_NAME_BYTES, MAX_TXN_DATA_BYTES, MAX_VALUE_BYTES, PAGE,
};

const MK_COLL: u8 = 1;
const RM_COLL: u8 = 2;
const CREATE: u8 = 3;
const REMOVE: u8 = 4;
const SET_SIZE: u8 = 5;
const MAP: u8 = 6;
const UNMAP: u8 = 7;
const SET_ATTR: u8 = 8;
const RM_ATTR: u8 = 9;
const OMAP_SET: u8 = 10;
const OMAP_RM: u8 = 11;
const CSUM: u8 = 12;
const OPEN_INTENT: u8 = 13;
const CLOSE_INTENT: u8 = 14;

/// Most sums one `Csum` delta may carry: the pages of the largest transaction.
pub const MAX_CSUM_PAGES: usize = (MAX_TXN_DATA_BYTES / PAGE) as usize + 2;

impl Delta {
    /// Appends the encoding to `out`.
    ///
    /// Byte strings must be within their limits (planning checks them); one that is not
    /// would not decode.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let head = |out: &mut Vec<u8>, tag: u8, coll: CollId, name: &[u8]| {
            debug_assert!(name.len() <= MAX_NAME_BYTES, "object name over the limit");
            out.put_u8(tag);
            out.put_u64(coll);
            out.put_bytes(name);
        };
        let key_value = |out: &mut Vec<u8>, key: &[u8], value: Option<&[u8]>| {
            debug_assert!(key.len() <= MAX_KEY_BYTES, "key over the limit");
            out.put_bytes(key);
            if let Some(value) = value {
                debug_assert!(value.len() <= MAX_VALUE_BYTES, "value over the limit");
                out.put_bytes(value);
            }
        };
        match self {
            Delta::MkColl { coll } => {
                out.put_u8(MK_COLL);
                out.put_u64(*coll);
            }
            Delta::RmColl { coll } => {
                out.put_u8(RM_COLL);
                out.put_u64(*coll);
            }
            Delta::Create { coll, name } => head(out, CREATE, *coll, name),
            Delta::Remove { coll, name } => head(out, REMOVE, *coll, name),
            Delta::SetSize { coll, name, size } => {
                head(out, SET_SIZE, *coll, name);
                out.put_u64(*size);
            }
            Delta::Map {
                coll,
                name,
                lpage,
                phys,
                pages,
            } => {
                head(out, MAP, *coll, name);
                out.put_u64(*lpage);
                out.put_u64(*phys);
                out.put_u32(*pages);
            }
            Delta::Unmap {
                coll,
                name,
                lpage,
                pages,
            } => {
                head(out, UNMAP, *coll, name);
                out.put_u64(*lpage);
                out.put_u64(*pages);
            }
            Delta::SetAttr {
                coll,
                name,
                key,
                value,
            } => {
                head(out, SET_ATTR, *coll, name);
                key_value(out, key, Some(value));
            }
            Delta::RmAttr { coll, name, key } => {
                head(out, RM_ATTR, *coll, name);
                key_value(out, key, None);
            }
            Delta::OmapSet {
                coll,
                name,
                key,
                value,
            } => {
                head(out, OMAP_SET, *coll, name);
                key_value(out, key, Some(value));
            }
            Delta::OmapRm { coll, name, key } => {
                head(out, OMAP_RM, *coll, name);
                key_value(out, key, None);
            }
            Delta::Csum { phys, sums } => {
                out.put_u8(CSUM);
                out.put_u64(*phys);
                out.put_u32(sums.len() as u32);
                for s in sums {
                    out.put_u32(*s);
                }
            }
            Delta::OpenIntent { phys, pages } | Delta::CloseIntent { phys, pages } => {
                let tag = if matches!(self, Delta::OpenIntent { .. }) {
                    OPEN_INTENT
                } else {
                    CLOSE_INTENT
                };
                out.put_u8(tag);
                out.put_u64(*phys);
                out.put_u32(*pages);
            }
        }
    }

    /// Decodes one delta from the front of `r`.
    pub fn decode(r: &mut Reader<'_>) -> Result<Delta, DecodeError> {
        let tag = r.u8("delta tag")?;
        if !(MK_COLL..=CLOSE_INTENT).contains(&tag) {
            return Err(DecodeError::Bad {
                what: "delta tag",
                value: tag.into(),
            });
        }
        match tag {
            CSUM => {
                let phys = r.u64("csum phys")?;
                let n = r.count("csum count", 4)?;
                if n == 0 || n > MAX_CSUM_PAGES {
                    return Err(DecodeError::Bad {
                        what: "csum count",
                        value: n as u64,
                    });
                }
                let sums = (0..n)
                    .map(|_| r.u32("csum"))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(Delta::Csum { phys, sums });
            }
            OPEN_INTENT | CLOSE_INTENT => {
                let phys = r.u64("intent phys")?;
                let pages = r.u32("intent pages")?;
                if pages == 0 {
                    return Err(DecodeError::Bad {
                        what: "intent pages",
                        value: 0,
                    });
                }
                return Ok(if tag == OPEN_INTENT {
                    Delta::OpenIntent { phys, pages }
                } else {
                    Delta::CloseIntent { phys, pages }
                });
            }
            _ => {}
        }
        let coll = r.u64("collection id")?;
        match tag {
            MK_COLL => return Ok(Delta::MkColl { coll }),
            RM_COLL => return Ok(Delta::RmColl { coll }),
            _ => {}
        }
        let name = r.bytes_vec("object name", MAX_NAME_BYTES)?;
        let key = |r: &mut Reader<'_>| r.bytes_vec("key", MAX_KEY_BYTES);
        let value = |r: &mut Reader<'_>| r.bytes_vec("value", MAX_VALUE_BYTES);
        Ok(match tag {
            CREATE => Delta::Create { coll, name },
            REMOVE => Delta::Remove { coll, name },
            SET_SIZE => Delta::SetSize {
                coll,
                name,
                size: r.u64("size")?,
            },
            MAP => {
                let lpage = r.u64("map lpage")?;
                let phys = r.u64("map phys")?;
                let pages = r.u32("map pages")?;
                if pages == 0 {
                    return Err(DecodeError::Bad {
                        what: "map pages",
                        value: 0,
                    });
                }
                Delta::Map {
                    coll,
                    name,
                    lpage,
                    phys,
                    pages,
                }
            }
            UNMAP => Delta::Unmap {
                coll,
                name,
                lpage: r.u64("unmap lpage")?,
                pages: r.u64("unmap pages")?,
            },
            SET_ATTR => Delta::SetAttr {
                coll,
                name,
                key: key(r)?,
                value: value(r)?,
            },
            RM_ATTR => Delta::RmAttr {
                coll,
                name,
                key: key(r)?,
            },
            OMAP_SET => Delta::OmapSet {
                coll,
                name,
                key: key(r)?,
                value: value(r)?,
            },
            OMAP_RM => Delta::OmapRm {
                coll,
                name,
                key: key(r)?,
            },
            _ => unreachable!("tag {tag} checked above"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_of_each() -> Vec<Delta> {
        let n = || b"obj".to_vec();
        vec![
            Delta::MkColl { coll: 1 },
            Delta::RmColl { coll: u64::MAX },
            Delta::Create { coll: 2, name: n() },
            Delta::Remove {
                coll: 3,
                name: Vec::new(),
            },
            Delta::SetSize {
                coll: 4,
                name: n(),
                size: 1 << 40,
            },
            Delta::Map {
                coll: 5,
                name: n(),
                lpage: 7,
                phys: 1000,
                pages: 3,
            },
            Delta::Unmap {
                coll: 6,
                name: n(),
                lpage: 9,
                pages: u64::MAX - 9,
            },
            Delta::SetAttr {
                coll: 7,
                name: n(),
                key: b"k".to_vec(),
                value: vec![0xab; MAX_VALUE_BYTES],
            },
            Delta::RmAttr {
                coll: 8,
                name: n(),
                key: vec![b'k'; MAX_KEY_BYTES],
            },
            Delta::OmapSet {
                coll: 9,
                name: vec![b'n'; MAX_NAME_BYTES],
                key: Vec::new(),
                value: Vec::new(),
            },
            Delta::OmapRm {
                coll: 10,
                name: n(),
                key: b"x".to_vec(),
            },
            Delta::Csum {
                phys: 77,
                sums: vec![0, u32::MAX, 0xdead_beef],
            },
            Delta::OpenIntent {
                phys: u64::MAX - 1,
                pages: 1,
            },
            Delta::CloseIntent {
                phys: 3,
                pages: u32::MAX,
            },
        ]
    }

    #[test]
    fn every_variant_round_trips_with_its_tag() {
        for (i, d) in one_of_each().iter().enumerate() {
            let mut v = Vec::new();
            d.encode(&mut v);
            assert_eq!(v[0] as usize, i + 1, "tag of {d:?}");
            let mut r = Reader::new(&v);
            assert_eq!(&Delta::decode(&mut r).unwrap(), d);
            assert!(r.is_empty());
            for cut in 0..v.len() {
                assert!(
                    Delta::decode(&mut Reader::new(&v[..cut])).is_err(),
                    "{d:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn byte_layout_of_map() {
        let mut v = Vec::new();
        Delta::Map {
            coll: 0x0102,
            name: b"ab".to_vec(),
            lpage: 3,
            phys: 4,
            pages: 5,
        }
        .encode(&mut v);
        let mut want = vec![6, 2, 1, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, b'a', b'b'];
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(&4u64.to_le_bytes());
        want.extend_from_slice(&5u32.to_le_bytes());
        assert_eq!(v, want);
    }

    #[test]
    fn refuses_bad_tags_zero_page_maps_and_long_strings() {
        for tag in [0u8, 15, 255] {
            assert_eq!(
                Delta::decode(&mut Reader::new(&[tag])),
                Err(DecodeError::Bad {
                    what: "delta tag",
                    value: tag.into()
                })
            );
        }
        let mut v = Vec::new();
        Delta::Map {
            coll: 1,
            name: b"n".to_vec(),
            lpage: 0,
            phys: 9,
            pages: 1,
        }
        .encode(&mut v);
        let len = v.len();
        v[len - 4..].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            Delta::decode(&mut Reader::new(&v)),
            Err(DecodeError::Bad {
                what: "map pages",
                ..
            })
        ));
        for bad in [
            vec![CSUM, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![OPEN_INTENT, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![CLOSE_INTENT, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            assert!(
                matches!(
                    Delta::decode(&mut Reader::new(&bad)),
                    Err(DecodeError::Bad { .. })
                ),
                "zero pages of tag {}",
                bad[0]
            );
        }
        let mut v = vec![CSUM];
        v.put_u64(1);
        v.put_u32(MAX_CSUM_PAGES as u32 + 1);
        assert!(Delta::decode(&mut Reader::new(&v)).is_err());
        let mut v = vec![CREATE];
        v.put_u64(1);
        v.put_bytes(&[b'n'; MAX_NAME_BYTES + 1]);
        assert!(matches!(
            Delta::decode(&mut Reader::new(&v)),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn decodes_a_sequence_and_leaves_the_rest() {
        let mut v = Vec::new();
        for d in one_of_each() {
            d.encode(&mut v);
        }
        v.push(0xee);
        let mut r = Reader::new(&v);
        for d in one_of_each() {
            assert_eq!(Delta::decode(&mut r).unwrap(), d);
        }
        assert_eq!(r.remaining(), 1);
    }
}
