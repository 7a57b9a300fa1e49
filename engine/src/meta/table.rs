//! A shard's committed metadata table: collections of named [`Object`]s, changed only by
//! applying [`Delta`]s.
//!
//! The shard applies a committed transaction's deltas, in order, once its journal batch is
//! durable; recovery applies the deltas of every replayed batch on top of the table decoded
//! from the checkpoint. Both go through [`MetaTable::apply`], so live state and replayed
//! state agree by construction.
//!
//! # What `apply` does
//!
//! | delta | collection missing | object missing | otherwise |
//! |---|---|---|---|
//! | `MkColl` | creates it | — | no-op |
//! | `RmColl` | no-op | — | removes it and its objects, freeing all their extents |
//! | `Create` | `Corrupt` | creates it, empty | no-op |
//! | `Remove` | no-op | no-op | removes it, freeing its extents |
//! | `SetSize` | `Corrupt` | `Corrupt` | sets the size (maps nothing, unmaps nothing) |
//! | `Map` | `Corrupt` | `Corrupt` | [`Object::map`] |
//! | `Unmap` | `Corrupt` | `Corrupt` | [`Object::unmap`] |
//! | `SetAttr`, `OmapSet` | `Corrupt` | `Corrupt` | inserts or replaces the key |
//! | `RmAttr`, `OmapRm` | no-op | no-op | removes the key (no-op if missing) |
//! | `Csum` | — | — | records the pages' sums ([`PageSums`]) |
//! | `OpenIntent`, `CloseIntent` | — | — | opens or closes intents on the pages |
//!
//! Pages an `apply` frees lose their sums and intents; pages a `Map` newly maps start
//! without a sum.
//!
//! Planning never emits a delta that this table answers with `Corrupt`, so meeting one at
//! replay means the journal is corrupt. `apply` also refuses (with `Corrupt`) a delta that
//! the checkpoint could not hold: a name, key or value over its limit in
//! [`types`](crate::types), a `Map` of zero pages, or a `Map` whose logical end passes
//! [`MAX_OBJECT_BYTES`] or whose physical end overflows. Whatever `apply` accepts,
//! [`encode_table`](super::encode_table) writes and [`decode_table`](super::decode_table)
//! reads back.
//!
//! A refused delta changes nothing. Every delta is idempotent: applying it twice in a row
//! leaves the table as applying it once does, and the second application frees nothing.
//!
//! # Size accounting
//!
//! [`MetaTable::approx_bytes`] is the size of the table's checkpoint payload. It is kept as a
//! running total that `apply` adjusts by the bytes each delta adds or removes (O(1) for
//! every delta but `Remove` and `RmColl`, which already walk what they remove), so calling it
//! once per transaction for admission control costs nothing. The total is currently exact;
//! callers should treat it as an estimate.

use std::collections::BTreeMap;

use crate::error::StoreError;
use crate::meta::delta_codec::MAX_CSUM_PAGES;
use crate::meta::object::{bytes_record, pair_record, Object, EXTENT_RECORD_BYTES, PAGE_SUM_BYTES};
use crate::meta::objects::Objects;
use crate::meta::sums::PageSums;
use crate::meta::Delta;
use crate::types::{
    CollId, Extent, ObjKey, MAX_KEY_BYTES, MAX_NAME_BYTES, MAX_OBJECT_BYTES, MAX_VALUE_BYTES, PAGE,
};

/// Device pages a store may address (a 256 TiB device): bounds what a `Csum` or intent may
/// name, so a corrupt record cannot make the sum array grow without bound.
pub const MAX_DEVICE_PAGES: u64 = 1 << 36;

/// Logical pages an object may map: `[0, MAX_OBJECT_PAGES)`.
pub const MAX_OBJECT_PAGES: u64 = MAX_OBJECT_BYTES / PAGE;

/// Checkpoint payload bytes outside collections: `u32 version, u32 collection count` before
/// them, `u32 intent count` after.
pub(crate) const TABLE_HEADER_BYTES: u64 = 4 + 4 + 4;
/// Checkpoint bytes of one open intent page: `u64 phys`.
pub(crate) const INTENT_RECORD_BYTES: u64 = 8;
/// Checkpoint bytes of a collection before its objects: `u64 id, u32 object count`.
pub(crate) const COLL_HEADER_BYTES: u64 = 8 + 4;

/// Checkpoint bytes of one named object record.
pub(crate) fn object_record_bytes(name: &[u8], obj: &Object) -> u64 {
    bytes_record(name.len()) + obj.approx_bytes()
}

/// The committed metadata of a shard.
///
/// Two tables are equal when their collections, objects and open intents are, and every
/// mapped page has the same sum in both (a sum of a page no extent maps is not state: the
/// checkpoint does not keep it).
#[derive(Clone, Debug, Default)]
pub struct MetaTable {
    colls: BTreeMap<CollId, Objects>,
    /// Sums of mapped pages and open intents.
    sums: PageSums,
    /// Checkpoint payload bytes after the table header (running total).
    body_bytes: u64,
}

impl PartialEq for MetaTable {
    fn eq(&self, other: &Self) -> bool {
        self.colls == other.colls
            && self.body_bytes == other.body_bytes
            && self.sums.intents().eq(other.sums.intents())
            && self
                .all_extents()
                .flat_map(|(_, _, _, e)| e.phys..e.end())
                .all(|p| self.sums.get(p) == other.sums.get(p))
    }
}

impl Eq for MetaTable {}

impl MetaTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// A table holding `colls`, `sums` and intents (the checkpoint decoder's constructor).
    pub(super) fn from_parts(colls: BTreeMap<CollId, Objects>, sums: PageSums) -> Self {
        let body_bytes = colls
            .values()
            .map(|objs| {
                COLL_HEADER_BYTES
                    + objs
                        .iter()
                        .map(|(n, o)| object_record_bytes(n, o))
                        .sum::<u64>()
            })
            .sum::<u64>()
            + sums.intent_pages() as u64 * INTENT_RECORD_BYTES;
        Self {
            colls,
            sums,
            body_bytes,
        }
    }

    /// Sums of mapped pages and open intents.
    pub fn sums(&self) -> &PageSums {
        &self.sums
    }

    /// Collections and their objects, in key order (the checkpoint encoder's view).
    pub(super) fn inner(&self) -> &BTreeMap<CollId, Objects> {
        &self.colls
    }

    /// Applies one delta (see the module docs), pushing the physical extents it frees to
    /// `freed`. On error the table is unchanged.
    pub fn apply(&mut self, d: &Delta, freed: &mut Vec<Extent>) -> Result<(), StoreError> {
        validate(d)?;
        let freed_before = freed.len();
        self.apply_inner(d, freed)?;
        let intents_before = self.sums.intent_pages();
        for e in &freed[freed_before..] {
            self.sums.forget(e.phys, u64::from(e.pages));
        }
        self.body_bytes -= (intents_before - self.sums.intent_pages()) as u64 * INTENT_RECORD_BYTES;
        Ok(())
    }

    fn apply_inner(&mut self, d: &Delta, freed: &mut Vec<Extent>) -> Result<(), StoreError> {
        match d {
            Delta::Csum { phys, sums } => self.sums.set(*phys, sums),
            Delta::OpenIntent { phys, pages } | Delta::CloseIntent { phys, pages } => {
                let before = self.sums.intent_pages() as u64;
                if matches!(d, Delta::OpenIntent { .. }) {
                    self.sums.open_intent(*phys, u64::from(*pages));
                } else {
                    self.sums.close_intent(*phys, u64::from(*pages));
                }
                self.body_bytes = self.body_bytes
                    + self.sums.intent_pages() as u64 * INTENT_RECORD_BYTES
                    - before * INTENT_RECORD_BYTES;
            }
            Delta::MkColl { coll } => {
                if !self.colls.contains_key(coll) {
                    self.colls.insert(*coll, Objects::new());
                    self.body_bytes += COLL_HEADER_BYTES;
                }
            }
            Delta::RmColl { coll } => {
                if let Some(objs) = self.colls.remove(coll) {
                    self.body_bytes -= COLL_HEADER_BYTES;
                    for (name, obj) in objs.iter() {
                        self.body_bytes -= object_record_bytes(name, obj);
                        freed.extend(obj.extents().values().copied());
                    }
                }
            }
            Delta::Create { coll, name } => {
                let Some(objs) = self.colls.get_mut(coll) else {
                    return Err(missing(d, "collection"));
                };
                if !objs.contains(name) {
                    let obj = Object::default();
                    self.body_bytes += object_record_bytes(name, &obj);
                    objs.insert(name, obj);
                }
            }
            Delta::Remove { coll, name } => {
                if let Some(obj) = self.colls.get_mut(coll).and_then(|objs| objs.remove(name)) {
                    self.body_bytes -= object_record_bytes(name, &obj);
                    freed.extend(obj.extents().values().copied());
                }
            }
            Delta::RmAttr { coll, name, key } | Delta::OmapRm { coll, name, key } => {
                let Some(obj) = object_mut(&mut self.colls, *coll, name) else {
                    return Ok(());
                };
                let map = if matches!(d, Delta::RmAttr { .. }) {
                    &mut obj.attrs
                } else {
                    &mut obj.omap
                };
                if let Some(value) = map.remove(key) {
                    self.body_bytes -= pair_record(key, &value);
                }
            }
            Delta::SetAttr {
                coll,
                name,
                key,
                value,
            }
            | Delta::OmapSet {
                coll,
                name,
                key,
                value,
            } => {
                let Some(obj) = object_mut(&mut self.colls, *coll, name) else {
                    return Err(missing(d, "object"));
                };
                let map = if matches!(d, Delta::SetAttr { .. }) {
                    &mut obj.attrs
                } else {
                    &mut obj.omap
                };
                self.body_bytes += pair_record(key, value);
                if let Some(old) = map.insert(key.clone(), value.clone()) {
                    self.body_bytes -= pair_record(key, &old);
                }
            }
            Delta::SetSize { coll, name, size } => {
                let Some(obj) = object_mut(&mut self.colls, *coll, name) else {
                    return Err(missing(d, "object"));
                };
                obj.size = *size;
            }
            Delta::Map {
                coll,
                name,
                lpage,
                phys,
                pages,
            } => {
                let Some(obj) = object_mut(&mut self.colls, *coll, name) else {
                    return Err(missing(d, "object"));
                };
                let before = obj.extents().len() as u64;
                let ext = Extent {
                    phys: *phys,
                    pages: *pages,
                };
                // A page newly mapped has no sum until a Csum gives it one (a repeated Map
                // keeps the sums of pages it maps again).
                for i in 0..u64::from(*pages) {
                    if obj.phys_of(lpage + i) != Some(phys + i) {
                        self.sums.clear(phys + i);
                    }
                }
                let replaced = obj.map(*lpage, ext, freed);
                self.body_bytes = self.body_bytes
                    + obj.extents().len() as u64 * EXTENT_RECORD_BYTES
                    + u64::from(*pages) * PAGE_SUM_BYTES
                    - before * EXTENT_RECORD_BYTES
                    - replaced * PAGE_SUM_BYTES;
            }
            Delta::Unmap {
                coll,
                name,
                lpage,
                pages,
            } => {
                let Some(obj) = object_mut(&mut self.colls, *coll, name) else {
                    return Err(missing(d, "object"));
                };
                let before = obj.extents().len() as u64;
                let removed = obj.unmap(*lpage, *pages, freed);
                self.body_bytes = self.body_bytes
                    + obj.extents().len() as u64 * EXTENT_RECORD_BYTES
                    - before * EXTENT_RECORD_BYTES
                    - removed * PAGE_SUM_BYTES;
            }
        }
        Ok(())
    }

    /// Whether the collection exists.
    pub fn has_coll(&self, coll: CollId) -> bool {
        self.colls.contains_key(&coll)
    }

    /// Collection ids, in increasing order.
    pub fn colls(&self) -> impl Iterator<Item = CollId> + '_ {
        self.colls.keys().copied()
    }

    /// Number of collections.
    pub fn coll_count(&self) -> usize {
        self.colls.len()
    }

    /// The objects of a collection in name order, or `None` if it does not exist.
    pub fn objects(&self, coll: CollId) -> Option<impl Iterator<Item = (&[u8], &Object)> + '_> {
        self.colls.get(&coll).map(Objects::iter)
    }

    /// An object, if it exists.
    pub fn object(&self, coll: CollId, name: &[u8]) -> Option<&Object> {
        self.colls.get(&coll)?.get(name)
    }

    /// Number of objects in all collections (O(collections)).
    pub fn object_count(&self) -> usize {
        self.colls.values().map(Objects::len).sum()
    }

    /// Every mapped extent: (collection, object name, first logical page, extent), in key
    /// and logical order.
    pub fn all_extents(&self) -> impl Iterator<Item = (CollId, &[u8], u64, Extent)> + '_ {
        self.colls.iter().flat_map(|(&coll, objs)| {
            objs.iter().flat_map(move |(name, obj)| {
                obj.extents_iter()
                    .map(move |(lpage, ext)| (coll, name, lpage, ext))
            })
        })
    }

    /// Mapped pages from `(coll, name, lpage)` on, in key and logical order:
    /// (collection, object name, logical page, device page). Finds its start in
    /// O(log n), so a scrub resuming from a cursor does not walk what it has done.
    pub fn pages_from<'a>(
        &'a self,
        coll: CollId,
        name: &'a [u8],
        lpage: u64,
    ) -> impl Iterator<Item = (CollId, &'a [u8], u64, u64)> + 'a {
        use std::ops::Bound::{Included, Unbounded};
        self.colls
            .range(coll..)
            .flat_map(move |(&c, objs)| {
                let from = if c == coll { Included(name) } else { Unbounded };
                objs.iter_from(from).map(move |(n, o)| (c, n, o))
            })
            .flat_map(move |(c, n, o)| {
                let first = if c == coll && n == name { lpage } else { 0 };
                // The extent holding `first`, if any, then every later one.
                let start = o
                    .extents()
                    .range(..=first)
                    .next_back()
                    .map_or(first, |(&s, _)| s);
                o.extents()
                    .range((Included(start), Unbounded))
                    .flat_map(move |(&lp, e)| {
                        (0..u64::from(e.pages)).map(move |i| (lp + i, e.phys + i))
                    })
                    .filter(move |&(lp, _)| lp >= first)
                    .map(move |(lp, p)| (c, n, lp, p))
            })
    }

    /// Size of the table's checkpoint payload in bytes, from a running total (O(1)).
    /// Currently exact; treat it as an estimate.
    pub fn approx_bytes(&self) -> u64 {
        TABLE_HEADER_BYTES + self.body_bytes
    }
}

fn object_mut<'a>(
    colls: &'a mut BTreeMap<CollId, Objects>,
    coll: CollId,
    name: &[u8],
) -> Option<&'a mut Object> {
    colls.get_mut(&coll)?.get_mut(name)
}

/// The variant's name, for messages.
fn kind(d: &Delta) -> &'static str {
    match d {
        Delta::MkColl { .. } => "MkColl",
        Delta::RmColl { .. } => "RmColl",
        Delta::Create { .. } => "Create",
        Delta::Remove { .. } => "Remove",
        Delta::SetSize { .. } => "SetSize",
        Delta::Map { .. } => "Map",
        Delta::Unmap { .. } => "Unmap",
        Delta::SetAttr { .. } => "SetAttr",
        Delta::RmAttr { .. } => "RmAttr",
        Delta::OmapSet { .. } => "OmapSet",
        Delta::OmapRm { .. } => "OmapRm",
        Delta::Csum { .. } => "Csum",
        Delta::OpenIntent { .. } => "OpenIntent",
        Delta::CloseIntent { .. } => "CloseIntent",
    }
}

/// The collection and object name a delta targets (empty name for collection deltas).
fn target(d: &Delta) -> (CollId, &[u8]) {
    match d {
        Delta::MkColl { coll } | Delta::RmColl { coll } => (*coll, &[]),
        Delta::Csum { .. } | Delta::OpenIntent { .. } | Delta::CloseIntent { .. } => (0, &[]),
        Delta::Create { coll, name }
        | Delta::Remove { coll, name }
        | Delta::SetSize { coll, name, .. }
        | Delta::Map { coll, name, .. }
        | Delta::Unmap { coll, name, .. }
        | Delta::SetAttr { coll, name, .. }
        | Delta::RmAttr { coll, name, .. }
        | Delta::OmapSet { coll, name, .. }
        | Delta::OmapRm { coll, name, .. } => (*coll, name),
    }
}

fn refuse(d: &Delta, why: String) -> StoreError {
    let (coll, name) = target(d);
    StoreError::Corrupt(format!(
        "delta {} on {}: {why}",
        kind(d),
        ObjKey::new(coll, name)
    ))
}

fn missing(d: &Delta, what: &str) -> StoreError {
    refuse(d, format!("{what} does not exist"))
}

/// State-independent checks: what the checkpoint format could not hold.
fn validate(d: &Delta) -> Result<(), StoreError> {
    let too_long = |what: &str, len: usize, max: usize| {
        Err(refuse(d, format!("{what} of {len} bytes exceeds {max}")))
    };
    let (_, name) = target(d);
    if name.len() > MAX_NAME_BYTES {
        return too_long("name", name.len(), MAX_NAME_BYTES);
    }
    match d {
        Delta::SetAttr { key, value, .. } | Delta::OmapSet { key, value, .. } => {
            if key.len() > MAX_KEY_BYTES {
                return too_long("key", key.len(), MAX_KEY_BYTES);
            }
            if value.len() > MAX_VALUE_BYTES {
                return too_long("value", value.len(), MAX_VALUE_BYTES);
            }
        }
        Delta::RmAttr { key, .. } | Delta::OmapRm { key, .. } if key.len() > MAX_KEY_BYTES => {
            return too_long("key", key.len(), MAX_KEY_BYTES);
        }
        Delta::Map {
            lpage, phys, pages, ..
        } => {
            let n = u64::from(*pages);
            if n == 0 {
                return Err(refuse(d, "map of 0 pages".into()));
            }
            if lpage
                .checked_add(n)
                .is_none_or(|end| end > MAX_OBJECT_PAGES)
            {
                return Err(refuse(
                    d,
                    format!("logical pages {lpage} + {n} pass the object limit"),
                ));
            }
            if phys.checked_add(n).is_none() {
                return Err(refuse(d, format!("device pages {phys} + {n} overflow")));
            }
        }
        Delta::Csum { phys, sums } => {
            if sums.is_empty() || sums.len() > MAX_CSUM_PAGES {
                return Err(refuse(d, format!("{} sums", sums.len())));
            }
            device_range(d, *phys, sums.len() as u64)?;
        }
        Delta::OpenIntent { phys, pages } | Delta::CloseIntent { phys, pages } => {
            if *pages == 0 {
                return Err(refuse(d, "intent of 0 pages".into()));
            }
            device_range(d, *phys, u64::from(*pages))?;
        }
        _ => {}
    }
    Ok(())
}

/// Refuses device pages `[phys, phys + n)` past [`MAX_DEVICE_PAGES`].
fn device_range(d: &Delta, phys: u64, n: u64) -> Result<(), StoreError> {
    if phys.checked_add(n).is_none_or(|end| end > MAX_DEVICE_PAGES) {
        return Err(refuse(
            d,
            format!("device pages {phys} + {n} pass the device limit"),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
