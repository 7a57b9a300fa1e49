//! The checkpoint payload: a whole [`MetaTable`] as bytes.
//!
//! This is the payload of a checkpoint slot (docs/format.md §4); the slot header, with its
//! magic, generation, length and crc32c, is written and checked by the shard's checkpoint
//! code. Fields are little-endian and fixed-width; a byte string is `u32 length` then the
//! bytes ([`codec`](crate::codec)).
//!
//! ```text
//! payload:
//! +-------------+----------------------+--------------+-----+----------------+
//! | u32 version | u32 collection count | collection 0 | ... | collection C-1 |
//! | = 2         | = C                  |              |     |                |
//! +-------------+----------------------+--------------+-----+----------------+
//! | u32 intent count = I | intents: I x u64 device page (open overwrite intents) |
//! +----------------------+-------------------------------------------------------+
//!
//! collection:
//! +------------+------------------+-------------+-----+---------------+
//! | u64 id     | u32 object count | object 0    | ... | object N-1    |
//! +------------+------------------+-------------+-----+---------------+
//!
//! object:
//! +--------------+------+----------+-----------------+---------------------------+
//! | u32 name len | name | u64 size | u32 extent count| extents: E x (20 + 4 x pages)|
//! +--------------+------+----------+-----------------+---------------------------+
//! | u32 attr count | attrs: A x pair | u32 omap count | omap: M x pair            |
//! +----------------+-----------------+----------------+---------------------------+
//!
//! extent (20 bytes + its sums):                      pair:
//! +-----------+----------+-----------+-------------+  +-------------+-----+-----------+-------+
//! | u64 lpage | u64 phys | u32 pages | pages x u32 |  | u32 key len | key | u32 v len | value |
//! |           |          |           | crc32c/page |  +-------------+-----+-----------+-------+
//! +-----------+----------+-----------+-------------+
//! ```
//!
//! Everything is in key order: collections by id, objects by name (bytewise), extents by
//! first logical page, attributes and omap entries by key (bytewise). Decoding checks, and
//! answers [`StoreError::Corrupt`] when any check fails:
//!
//! - the version is 2 and no bytes follow the intents;
//! - intent pages are strictly increasing and below [`MAX_DEVICE_PAGES`];
//! - collection ids, object names within a collection, extent lpages within an object and
//!   attribute and omap keys within an object are strictly increasing;
//! - extents do not overlap, each has at least one page, ends at or below
//!   [`MAX_OBJECT_PAGES`] logically and does not overflow
//!   physically;
//! - names, keys and values are within their limits in [`types`](crate::types);
//! - every count fits in the bytes that remain (so a corrupt count cannot make the decoder
//!   allocate more than the input could hold).
//!
//! Decoding does not check that extents of different objects are physically disjoint; the
//! allocator's rebuild at open does.

use std::collections::BTreeMap;

use crate::codec::{DecodeError, Put, Reader};
use crate::error::StoreError;
use crate::meta::object::{Object, EXTENT_RECORD_BYTES, OBJECT_FIXED_BYTES};
use crate::meta::objects::Objects;
use crate::meta::sums::PageSums;
use crate::meta::table::{MetaTable, COLL_HEADER_BYTES, MAX_DEVICE_PAGES, MAX_OBJECT_PAGES};
use crate::types::{CollId, Extent, MAX_KEY_BYTES, MAX_NAME_BYTES, MAX_VALUE_BYTES};

/// The payload format version this code writes and reads.
pub const CHECKPOINT_VERSION: u32 = 2;

/// Smallest encoded object record (empty name, nothing mapped, no keys).
const MIN_OBJECT_BYTES: usize = 4 + OBJECT_FIXED_BYTES as usize;
/// Smallest encoded attribute or omap pair.
const MIN_PAIR_BYTES: usize = 4 + 4;

/// Encodes the whole table. The result is [`MetaTable::approx_bytes`] long.
pub fn encode_table(t: &MetaTable) -> Vec<u8> {
    let colls = t.inner();
    let mut out = Vec::with_capacity(usize::try_from(t.approx_bytes()).unwrap_or(0));
    out.put_u32(CHECKPOINT_VERSION);
    out.put_u32(count(colls.len()));
    for (&id, objs) in colls {
        out.put_u64(id);
        out.put_u32(count(objs.len()));
        for (name, obj) in objs.iter() {
            out.put_bytes(name);
            out.put_u64(obj.size);
            out.put_u32(count(obj.extents().len()));
            for (&lpage, ext) in obj.extents() {
                out.put_u64(lpage);
                out.put_u64(ext.phys);
                out.put_u32(ext.pages);
                for p in ext.phys..ext.end() {
                    out.put_u32(t.sums().get(p));
                }
            }
            for map in [&obj.attrs, &obj.omap] {
                out.put_u32(count(map.len()));
                for (k, v) in map {
                    out.put_bytes(k);
                    out.put_bytes(v);
                }
            }
        }
    }
    out.put_u32(count(t.sums().intent_pages()));
    for p in t.sums().intents() {
        out.put_u64(p);
    }
    debug_assert_eq!(out.len() as u64, t.approx_bytes(), "running total drifted");
    out
}

/// A count as its u32 field. Tables this large cannot fit a checkpoint slot anyway.
fn count(n: usize) -> u32 {
    u32::try_from(n).expect("more than u32::MAX entries in one metadata map")
}

/// Decodes a checkpoint payload, checking everything listed in the module docs.
pub fn decode_table(bytes: &[u8]) -> Result<MetaTable, StoreError> {
    decode(&mut Reader::new(bytes))
        .map(|(colls, sums)| MetaTable::from_parts(colls, sums))
        .map_err(|e| StoreError::Corrupt(format!("checkpoint payload: {e}")))
}

type Colls = BTreeMap<CollId, Objects>;

fn bad(what: &'static str, value: u64) -> DecodeError {
    DecodeError::Bad { what, value }
}

fn decode(r: &mut Reader<'_>) -> Result<(Colls, PageSums), DecodeError> {
    let mut sums = PageSums::default();
    let version = r.u32("checkpoint version")?;
    if version != CHECKPOINT_VERSION {
        return Err(bad("checkpoint version", version.into()));
    }
    let n_colls = r.count("collection count", COLL_HEADER_BYTES as usize)?;
    let mut colls = Colls::new();
    let mut prev_id = None;
    for _ in 0..n_colls {
        let id = r.u64("collection id")?;
        if prev_id.is_some_and(|p| id <= p) {
            return Err(bad("collection id (out of order)", id));
        }
        prev_id = Some(id);
        let n_objs = r.count("object count", MIN_OBJECT_BYTES)?;
        let mut objs = Objects::new();
        let mut prev_name: Option<Vec<u8>> = None;
        for i in 0..n_objs {
            let name = r.bytes_vec("object name", MAX_NAME_BYTES)?;
            if prev_name.as_ref().is_some_and(|p| name <= *p) {
                return Err(bad("object name (out of order) at index", i as u64));
            }
            let obj = decode_object(r, &mut sums)?;
            objs.insert(&name, obj);
            prev_name = Some(name);
        }
        colls.insert(id, objs);
    }
    let n_intents = r.count("intent count", 8)?;
    let mut prev = None;
    for _ in 0..n_intents {
        let p = r.u64("intent page")?;
        if prev.is_some_and(|q| p <= q) || p >= MAX_DEVICE_PAGES {
            return Err(bad(
                "intent page (out of order or past the device limit)",
                p,
            ));
        }
        prev = Some(p);
        sums.open_intent(p, 1);
    }
    if !r.is_empty() {
        return Err(bad("trailing bytes", r.remaining() as u64));
    }
    Ok((colls, sums))
}

fn decode_object(r: &mut Reader<'_>, sums: &mut PageSums) -> Result<Object, DecodeError> {
    let size = r.u64("object size")?;
    let n_ext = r.count("extent count", EXTENT_RECORD_BYTES as usize)?;
    let mut extents = BTreeMap::new();
    let mut next_free = 0u64; // first logical page after the previous extent
    for i in 0..n_ext {
        let lpage = r.u64("extent lpage")?;
        let phys = r.u64("extent phys")?;
        let pages = r.u32("extent pages")?;
        if pages == 0 {
            return Err(bad("extent pages", 0));
        }
        if i > 0 && lpage < next_free {
            return Err(bad("extent lpage (out of order or overlapping)", lpage));
        }
        let end = lpage
            .checked_add(pages.into())
            .filter(|&end| end <= MAX_OBJECT_PAGES)
            .ok_or_else(|| bad("extent lpage (past the object limit)", lpage))?;
        if phys
            .checked_add(pages.into())
            .is_none_or(|e| e > MAX_DEVICE_PAGES)
        {
            return Err(bad("extent phys (past the device limit)", phys));
        }
        if r.remaining() < pages as usize * 4 {
            return Err(bad("extent sums (truncated) at page", phys));
        }
        let page_sums = (0..pages)
            .map(|_| r.u32("page sum"))
            .collect::<Result<Vec<_>, _>>()?;
        sums.set(phys, &page_sums);
        next_free = end;
        extents.insert(lpage, Extent { phys, pages });
    }
    let attrs = decode_pairs(r, "attribute")?;
    let omap = decode_pairs(r, "omap")?;
    Ok(Object::from_parts(size, extents, attrs, omap))
}

fn decode_pairs(
    r: &mut Reader<'_>,
    what: &'static str,
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, DecodeError> {
    let n = r.count(what, MIN_PAIR_BYTES)?;
    let mut map = BTreeMap::new();
    let mut prev: Option<Vec<u8>> = None;
    for i in 0..n {
        let key = r.bytes_vec("key", MAX_KEY_BYTES)?;
        let value = r.bytes_vec("value", MAX_VALUE_BYTES)?;
        if prev.as_ref().is_some_and(|p| key <= *p) {
            return Err(bad("key (out of order) at index", i as u64));
        }
        prev = Some(key.clone());
        map.insert(key, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Delta;

    fn sample() -> MetaTable {
        let mut t = MetaTable::new();
        let mut freed = Vec::new();
        let name = || b"ob".to_vec();
        for d in [
            Delta::MkColl { coll: 9 },
            Delta::MkColl { coll: 2 },
            Delta::Create {
                coll: 2,
                name: name(),
            },
            Delta::SetSize {
                coll: 2,
                name: name(),
                size: 5000,
            },
            Delta::Map {
                coll: 2,
                name: name(),
                lpage: 1,
                phys: 77,
                pages: 2,
            },
            Delta::Csum {
                phys: 77,
                sums: vec![0xaabb_ccdd, 7],
            },
            Delta::OpenIntent { phys: 78, pages: 1 },
            Delta::SetAttr {
                coll: 2,
                name: name(),
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            },
            Delta::OmapSet {
                coll: 2,
                name: name(),
                key: b"o".to_vec(),
                value: Vec::new(),
            },
        ] {
            t.apply(&d, &mut freed).unwrap();
        }
        t
    }

    #[test]
    fn empty_table_is_twelve_bytes() {
        let v = encode_table(&MetaTable::new());
        assert_eq!(v, [2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode_table(&v).unwrap(), MetaTable::new());
    }

    #[test]
    fn byte_layout_matches_the_diagram() {
        let mut want = Vec::new();
        want.put_u32(2);
        want.put_u32(2);
        want.put_u64(2);
        want.put_u32(1);
        want.put_bytes(b"ob");
        want.put_u64(5000);
        want.put_u32(1);
        want.put_u64(1);
        want.put_u64(77);
        want.put_u32(2);
        want.put_u32(0xaabb_ccdd);
        want.put_u32(7);
        want.put_u32(1);
        want.put_bytes(b"k");
        want.put_bytes(b"v");
        want.put_u32(1);
        want.put_bytes(b"o");
        want.put_bytes(b"");
        want.put_u64(9);
        want.put_u32(0);
        want.put_u32(1);
        want.put_u64(78);
        let t = sample();
        assert_eq!(encode_table(&t), want);
        assert_eq!(t.approx_bytes(), want.len() as u64);
        assert_eq!(decode_table(&want).unwrap(), t);
    }

    #[test]
    fn rejects_trailing_bytes_truncation_and_bad_version() {
        let mut v = encode_table(&sample());
        for cut in 0..v.len() {
            assert!(decode_table(&v[..cut]).is_err(), "cut at {cut}");
        }
        v.push(0);
        assert!(matches!(decode_table(&v), Err(StoreError::Corrupt(_))));
        let mut v = encode_table(&sample());
        v[0] = 1;
        assert!(decode_table(&v).is_err());
    }

    /// Builds a one-collection, one-object payload from its parts.
    fn payload(
        ids: &[u64],
        names: &[&[u8]],
        extents: &[(u64, u64, u32)],
        keys: &[&[u8]],
    ) -> Vec<u8> {
        let mut v = Vec::new();
        v.put_u32(2);
        v.put_u32(ids.len() as u32);
        for &id in ids {
            v.put_u64(id);
            v.put_u32(names.len() as u32);
            for name in names {
                v.put_bytes(name);
                v.put_u64(0);
                v.put_u32(extents.len() as u32);
                for &(l, p, n) in extents {
                    v.put_u64(l);
                    v.put_u64(p);
                    v.put_u32(n);
                    for i in 0..n {
                        v.put_u32(i + 1);
                    }
                }
                v.put_u32(keys.len() as u32);
                for k in keys {
                    v.put_bytes(k);
                    v.put_bytes(b"");
                }
                v.put_u32(0);
            }
        }
        v.put_u32(0);
        v
    }

    #[test]
    fn checks_order_overlap_and_limits() {
        let ok = payload(
            &[1, 2],
            &[b"a", b"b"],
            &[(0, 10, 2), (2, 50, 1)],
            &[b"x", b"y"],
        );
        let t = decode_table(&ok).unwrap();
        assert_eq!(t.object_count(), 4);
        assert_eq!(encode_table(&t), ok);
        let bad = [
            payload(&[2, 1], &[b"a"], &[], &[]),
            payload(&[1, 1], &[b"a"], &[], &[]),
            payload(&[1], &[b"b", b"a"], &[], &[]),
            payload(&[1], &[b"a", b"a"], &[], &[]),
            payload(&[1], &[b"a"], &[(0, 10, 2), (1, 50, 1)], &[]), // overlap
            payload(&[1], &[b"a"], &[(5, 10, 1), (2, 50, 1)], &[]), // order
            payload(&[1], &[b"a"], &[(5, 10, 1), (5, 50, 1)], &[]), // duplicate
            payload(&[1], &[b"a"], &[(0, 10, 0)], &[]),             // empty
            payload(&[1], &[b"a"], &[(MAX_OBJECT_PAGES, 10, 1)], &[]),
            payload(&[1], &[b"a"], &[(u64::MAX, 10, 1)], &[]),
            payload(&[1], &[b"a"], &[(0, u64::MAX, 1)], &[]),
            payload(&[1], &[b"a"], &[(0, MAX_DEVICE_PAGES, 1)], &[]),
            payload(&[1], &[b"a"], &[], &[b"y", b"x"]),
            payload(&[1], &[b"a"], &[], &[b"x", b"x"]),
            payload(&[1], &[&[b'n'; MAX_NAME_BYTES + 1]], &[], &[]),
            payload(&[1], &[b"a"], &[], &[&[b'k'; MAX_KEY_BYTES + 1]]),
        ];
        for (i, v) in bad.iter().enumerate() {
            assert!(
                matches!(decode_table(v), Err(StoreError::Corrupt(_))),
                "case {i} accepted"
            );
        }
    }

    #[test]
    fn intents_must_be_increasing_and_on_the_device() {
        for pages in [[5u64, 5], [6, 5], [1, MAX_DEVICE_PAGES]] {
            let mut v = Vec::new();
            v.put_u32(2);
            v.put_u32(0);
            v.put_u32(2);
            v.put_u64(pages[0]);
            v.put_u64(pages[1]);
            assert!(decode_table(&v).is_err(), "{pages:?}");
        }
        let mut v = Vec::new();
        v.put_u32(2);
        v.put_u32(0);
        v.put_u32(2);
        v.put_u64(5);
        v.put_u64(9);
        let t = decode_table(&v).unwrap();
        assert_eq!(t.sums().intents().collect::<Vec<_>>(), vec![5, 9]);
        assert_eq!(encode_table(&t), v);
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        let mut v = Vec::new();
        v.put_u32(1);
        v.put_u32(u32::MAX);
        v.extend_from_slice(&[0; 64]);
        assert!(decode_table(&v).is_err());
    }
}
