//! Planning: a transaction becomes metadata deltas and page writes.
//!
//! The planner works against committed state (its objects are locked, so that state cannot
//! change under it) on a shadow copy of the objects it touches, one operation after the
//! other, so later operations see earlier ones. Pages it changes are *dirty pages*: a mapped
//! page is rewritten in place (an overwrite); an unmapped one gets a freshly allocated page
//! (and a `Map` delta). A partial write of a mapped page needs its old contents: the planner
//! records the committed pages it lacks and answers [`PlanOutcome::NeedPages`]; the shard
//! reads them and plans again (the second pass finds them all: the set depends only on
//! committed state).
//!
//! Bytes past an object's size in its last page are undefined on media; whenever an object
//! grows, the planner zeroes them first, so a hole or an extension always reads as zeroes.

use std::collections::{BTreeMap, HashMap};

use crate::alloc::Allocator;
use crate::error::StoreError;
use crate::meta::{page_sum, Delta, MetaTable, Object, MAX_CSUM_PAGES};
use crate::txn::{Transaction, TxnOp};
use crate::types::{CollId, Extent, ObjKey, MAX_TXN_DATA_BYTES, PAGE};

const PG: usize = PAGE as usize;

/// A run of dirty pages with consecutive device pages.
pub(crate) struct PlannedRun {
    pub(crate) phys: u64,
    pub(crate) data: Vec<u8>,
}

/// What a transaction will do.
#[derive(Default)]
pub(crate) struct Planned {
    pub(crate) deltas: Vec<Delta>,
    pub(crate) runs: Vec<PlannedRun>,
    /// Extents allocated for it (given back if it fails before its entry is durable).
    pub(crate) allocated: Vec<Extent>,
    /// Committed pages rewritten in place: (first page, pages).
    pub(crate) overwrites: Vec<(u64, u32)>,
    pub(crate) fresh_pages: u64,
    pub(crate) overwrite_pages: u64,
}

pub(crate) enum PlanOutcome {
    Done(Planned),
    /// Device pages whose committed contents the plan needs.
    NeedPages(Vec<u64>),
}

struct Dirty {
    /// Device page; `None` until allocated.
    phys: Option<u64>,
    fresh: bool,
    data: Box<[u8]>,
}

pub(crate) struct Planner<'a> {
    table: &'a MetaTable,
    alloc: &'a mut Allocator,
    /// Committed contents of pages read for this plan, by device page.
    pages: &'a HashMap<u64, Box<[u8]>>,
    max_extent_pages: u32,
    shadow: HashMap<ObjKey, Option<Object>>,
    colls: HashMap<CollId, bool>,
    dirty: BTreeMap<(ObjKey, u64), Dirty>,
    out: Planned,
    missing: Vec<u64>,
}

fn phys_of(obj: &Object, lpage: u64) -> Option<u64> {
    let (&start, ext) = obj.extents.range(..=lpage).next_back()?;
    (lpage < start + u64::from(ext.pages)).then(|| ext.phys + (lpage - start))
}

impl<'a> Planner<'a> {
    pub(crate) fn new(
        table: &'a MetaTable,
        alloc: &'a mut Allocator,
        pages: &'a HashMap<u64, Box<[u8]>>,
        max_extent_pages: u32,
    ) -> Self {
        Planner {
            table,
            alloc,
            pages,
            max_extent_pages,
            shadow: HashMap::new(),
            colls: HashMap::new(),
            dirty: BTreeMap::new(),
            out: Planned::default(),
            missing: Vec::new(),
        }
    }

    /// Plans the whole transaction. On error every allocation is given back.
    pub(crate) fn plan(mut self, txn: &Transaction) -> Result<PlanOutcome, StoreError> {
        let result = txn
            .ops()
            .iter()
            .enumerate()
            .try_for_each(|(i, op)| self.op(op).map_err(|e| annotate(e, i, op)));
        if let Err(e) = result {
            self.rollback();
            return Err(e);
        }
        if !self.missing.is_empty() {
            self.rollback();
            let mut m = std::mem::take(&mut self.missing);
            m.sort_unstable();
            m.dedup();
            return Ok(PlanOutcome::NeedPages(m));
        }
        self.finish();
        Ok(PlanOutcome::Done(self.out))
    }

    fn rollback(&mut self) {
        for e in self.out.allocated.drain(..) {
            self.alloc.release_now(e);
        }
    }

    fn finish(&mut self) {
        let mut pages: Vec<(u64, bool, Box<[u8]>)> = std::mem::take(&mut self.dirty)
            .into_values()
            .map(|d| (d.phys.expect("every dirty page is placed"), d.fresh, d.data))
            .collect();
        pages.sort_unstable_by_key(|p| p.0);
        for (phys, fresh, data) in pages {
            if fresh {
                self.out.fresh_pages += 1;
            } else {
                self.out.overwrite_pages += 1;
                match self.out.overwrites.last_mut() {
                    Some((start, n)) if *start + u64::from(*n) == phys => *n += 1,
                    _ => self.out.overwrites.push((phys, 1)),
                }
            }
            match self.out.runs.last_mut() {
                Some(r) if r.phys + (r.data.len() / PG) as u64 == phys => {
                    r.data.extend_from_slice(&data)
                }
                _ => self.out.runs.push(PlannedRun {
                    phys,
                    data: data.into_vec(),
                }),
            }
        }
        // The sums of every page written, after the maps that place them.
        for r in &self.out.runs {
            for (i, chunk) in r.data.chunks(MAX_CSUM_PAGES * PG).enumerate() {
                self.out.deltas.push(Delta::Csum {
                    phys: r.phys + (i * MAX_CSUM_PAGES) as u64,
                    sums: chunk.chunks(PG).map(page_sum).collect(),
                });
            }
        }
    }

    // ---- shadow state -------------------------------------------------------------------

    fn coll_exists(&self, c: CollId) -> bool {
        self.colls
            .get(&c)
            .copied()
            .unwrap_or_else(|| self.table.has_coll(c))
    }

    fn obj(&mut self, key: &ObjKey) -> Option<&Object> {
        if !self.shadow.contains_key(key) {
            let committed = self.table.object(key.coll, &key.name).cloned();
            self.shadow.insert(key.clone(), committed);
        }
        self.shadow[key].as_ref()
    }

    fn obj_mut(&mut self, key: &ObjKey) -> &mut Object {
        self.obj(key);
        self.shadow
            .get_mut(key)
            .and_then(Option::as_mut)
            .expect("object exists in shadow")
    }

    fn need_coll(&self, c: CollId) -> Result<(), StoreError> {
        if self.coll_exists(c) {
            Ok(())
        } else {
            Err(StoreError::NoSuchCollection(c))
        }
    }

    fn need_obj(&mut self, key: &ObjKey) -> Result<(), StoreError> {
        self.need_coll(key.coll)?;
        match self.obj(key) {
            Some(_) => Ok(()),
            None => Err(StoreError::NoSuchObject(key.clone())),
        }
    }

    fn ensure_obj(&mut self, key: &ObjKey) -> Result<(), StoreError> {
        self.need_coll(key.coll)?;
        if self.obj(key).is_none() {
            self.shadow.insert(key.clone(), Some(Object::default()));
            self.out.deltas.push(Delta::Create {
                coll: key.coll,
                name: key.name.clone(),
            });
        }
        Ok(())
    }

    fn set_size(&mut self, key: &ObjKey, size: u64) {
        let obj = self.obj_mut(key);
        if obj.size != size {
            obj.size = size;
            self.out.deltas.push(Delta::SetSize {
                coll: key.coll,
                name: key.name.clone(),
                size,
            });
        }
    }

    /// Unmaps `[lpage, lpage + pages)` in shadow and drops dirty pages there.
    fn unmap(&mut self, key: &ObjKey, lpage: u64, pages: u64) {
        let end = lpage.saturating_add(pages);
        let had_dirty = {
            let range = (key.clone(), lpage)..(key.clone(), end);
            let gone: Vec<_> = self.dirty.range(range).map(|(k, _)| k.clone()).collect();
            for k in &gone {
                self.dirty.remove(k);
            }
            !gone.is_empty()
        };
        let obj = self.obj_mut(key);
        let mapped = obj
            .extents
            .range(..end)
            .next_back()
            .is_some_and(|(&s, e)| s + u64::from(e.pages) > lpage);
        if mapped || had_dirty {
            let mut freed = Vec::new();
            obj.unmap(lpage, pages, &mut freed);
            self.out.deltas.push(Delta::Unmap {
                coll: key.coll,
                name: key.name.clone(),
                lpage,
                pages,
            });
        }
    }

    // ---- pages --------------------------------------------------------------------------

    /// The dirty page for `lpage`, loading its committed contents unless `whole` (the caller
    /// overwrites all of it).
    fn page_mut(&mut self, key: &ObjKey, lpage: u64, whole: bool) -> &mut Dirty {
        let k = (key.clone(), lpage);
        if !self.dirty.contains_key(&k) {
            let obj = self.obj(key).expect("page of an existing object");
            let size = obj.size;
            let phys = phys_of(obj, lpage);
            let mut data = vec![0u8; PG].into_boxed_slice();
            if let (Some(p), false) = (phys, whole) {
                match self.pages.get(&p) {
                    Some(old) => {
                        data.copy_from_slice(old);
                        // Past EOF is undefined on media: present it as zeroes.
                        let valid = size.saturating_sub(lpage * PAGE).min(PAGE) as usize;
                        data[valid..].fill(0);
                    }
                    None => self.missing.push(p),
                }
            }
            self.dirty.insert(
                k.clone(),
                Dirty {
                    phys,
                    fresh: phys.is_none(),
                    data,
                },
            );
        }
        self.dirty.get_mut(&k).expect("just inserted")
    }

    fn has_page(&mut self, key: &ObjKey, lpage: u64) -> bool {
        self.dirty.contains_key(&(key.clone(), lpage))
            || self.obj(key).is_some_and(|o| phys_of(o, lpage).is_some())
    }

    /// Before growing an object to `new_end` bytes: its last page, if partly past its size
    /// and mapped, is rewritten to a fresh page rather than in place (copy on write). The
    /// acknowledged bytes it holds are then never at risk of a torn write, and a growing
    /// write stays a write to fresh pages only (atomic, and eligible for parallel commit).
    fn cow_eof_page(&mut self, key: &ObjKey, new_end: u64) {
        let Some(obj) = self.obj(key) else { return };
        let size = obj.size;
        if size % PAGE == 0 || new_end <= size {
            return;
        }
        let lpage = size / PAGE;
        let Some(phys) = phys_of(obj, lpage) else {
            return;
        };
        if self.dirty.contains_key(&(key.clone(), lpage)) {
            return;
        }
        let mut data = vec![0u8; PG].into_boxed_slice();
        match self.pages.get(&phys) {
            Some(old) => {
                let valid = (size % PAGE) as usize;
                data[..valid].copy_from_slice(&old[..valid]);
            }
            None => self.missing.push(phys),
        }
        self.dirty.insert(
            (key.clone(), lpage),
            Dirty {
                phys: None,
                fresh: true,
                data,
            },
        );
    }

    /// Before growing an object: zero what lies past its old size in its last page.
    fn zero_eof_tail(&mut self, key: &ObjKey) {
        let size = self.obj(key).map_or(0, |o| o.size);
        if size % PAGE == 0 {
            return;
        }
        let lpage = size / PAGE;
        if self.has_page(key, lpage) {
            let d = self.page_mut(key, lpage, false);
            d.data[(size % PAGE) as usize..].fill(0);
        }
    }

    /// Gives device pages to the object's new dirty pages, contiguous where it can, and
    /// records the mappings.
    fn place_fresh(&mut self, key: &ObjKey) -> Result<(), StoreError> {
        let range = (key.clone(), 0)..=(key.clone(), u64::MAX);
        let unplaced: Vec<u64> = self
            .dirty
            .range(range)
            .filter(|(_, d)| d.phys.is_none())
            .map(|((_, lp), _)| *lp)
            .collect();
        if unplaced.is_empty() {
            return Ok(());
        }
        let mut exts = Vec::new();
        self.alloc
            .alloc_into(unplaced.len() as u64, self.max_extent_pages, &mut exts)?;
        self.out.allocated.extend_from_slice(&exts);
        let mut next = exts.iter().flat_map(|e| e.phys..e.end());
        for lp in &unplaced {
            let phys = next.next().expect("allocated exactly enough");
            self.dirty.get_mut(&(key.clone(), *lp)).expect("dirty").phys = Some(phys);
        }
        // One Map per run of consecutive logical and device pages.
        let mut i = 0;
        while i < unplaced.len() {
            let lp = unplaced[i];
            let phys = self.dirty[&(key.clone(), lp)].phys.expect("placed");
            let mut n = 1u32;
            while i + (n as usize) < unplaced.len()
                && n < self.max_extent_pages
                && unplaced[i + n as usize] == lp + u64::from(n)
                && self.dirty[&(key.clone(), lp + u64::from(n))].phys == Some(phys + u64::from(n))
            {
                n += 1;
            }
            // Only a page copied on write (cow_eof_page) replaces a mapping.
            let mut freed = Vec::new();
            self.obj_mut(key)
                .map(lp, Extent { phys, pages: n }, &mut freed);
            self.out.deltas.push(Delta::Map {
                coll: key.coll,
                name: key.name.clone(),
                lpage: lp,
                phys,
                pages: n,
            });
            i += n as usize;
        }
        Ok(())
    }

    // ---- operations ---------------------------------------------------------------------

    fn op(&mut self, op: &TxnOp) -> Result<(), StoreError> {
        match op {
            TxnOp::MkColl { coll } => {
                if self.coll_exists(*coll) {
                    return Err(StoreError::CollectionExists(*coll));
                }
                self.colls.insert(*coll, true);
                self.out.deltas.push(Delta::MkColl { coll: *coll });
            }
            TxnOp::RmColl { coll } => {
                self.need_coll(*coll)?;
                if self.live_objects(*coll) > 0 {
                    return Err(StoreError::CollectionNotEmpty(*coll));
                }
                self.colls.insert(*coll, false);
                self.out.deltas.push(Delta::RmColl { coll: *coll });
            }
            TxnOp::Touch { coll, name } => self.ensure_obj(&ObjKey::new(*coll, name.clone()))?,
            TxnOp::Write {
                coll,
                name,
                offset,
                data,
            } => {
                let key = ObjKey::new(*coll, name.clone());
                self.ensure_obj(&key)?;
                self.write(&key, *offset, data)?;
            }
            TxnOp::Zero {
                coll,
                name,
                offset,
                len,
            } => {
                let key = ObjKey::new(*coll, name.clone());
                self.ensure_obj(&key)?;
                self.zero(&key, *offset, *len)?;
            }
            TxnOp::Truncate { coll, name, size } => {
                let key = ObjKey::new(*coll, name.clone());
                self.need_obj(&key)?;
                self.truncate(&key, *size)?;
            }
            TxnOp::Remove { coll, name } => {
                let key = ObjKey::new(*coll, name.clone());
                self.need_obj(&key)?;
                self.remove(&key);
            }
            TxnOp::SetAttr {
                coll,
                name,
                key: k,
                value,
            } => {
                let key = ObjKey::new(*coll, name.clone());
                self.need_obj(&key)?;
                self.obj_mut(&key).attrs.insert(k.clone(), value.clone());
                self.out.deltas.push(Delta::SetAttr {
                    coll: *coll,
                    name: name.clone(),
                    key: k.clone(),
                    value: value.clone(),
                });
            }
            TxnOp::RmAttr { coll, name, key: k } => {
                let key = ObjKey::new(*coll, name.clone());
                self.need_obj(&key)?;
                if self.obj_mut(&key).attrs.remove(k).is_none() {
                    return Err(StoreError::NoSuchAttr {
                        key,
                        attr: String::from_utf8_lossy(k).into_owned(),
                    });
                }
                self.out.deltas.push(Delta::RmAttr {
                    coll: *coll,
                    name: name.clone(),
                    key: k.clone(),
                });
            }
            TxnOp::OmapSet { coll, name, pairs } => {
                let key = ObjKey::new(*coll, name.clone());
                self.need_obj(&key)?;
                for (k, v) in pairs {
                    self.obj_mut(&key).omap.insert(k.clone(), v.clone());
                    self.out.deltas.push(Delta::OmapSet {
                        coll: *coll,
                        name: name.clone(),
                        key: k.clone(),
                        value: v.clone(),
                    });
                }
            }
            TxnOp::OmapRm { coll, name, keys } => {
                let key = ObjKey::new(*coll, name.clone());
                self.need_obj(&key)?;
                for k in keys {
                    self.obj_mut(&key).omap.remove(k);
                    self.out.deltas.push(Delta::OmapRm {
                        coll: *coll,
                        name: name.clone(),
                        key: k.clone(),
                    });
                }
            }
            TxnOp::Clone { coll, src, dst } => {
                let src = ObjKey::new(*coll, src.clone());
                let dst = ObjKey::new(*coll, dst.clone());
                self.need_obj(&src)?;
                self.clone_object(&src, &dst)?;
            }
            TxnOp::CloneRange {
                coll,
                src,
                dst,
                src_offset,
                len,
                dst_offset,
            } => {
                let src = ObjKey::new(*coll, src.clone());
                let dst = ObjKey::new(*coll, dst.clone());
                self.need_obj(&src)?;
                let bytes = self.read_shadow(&src, *src_offset, *len);
                self.ensure_obj(&dst)?;
                self.write(&dst, *dst_offset, &bytes)?;
            }
            TxnOp::Acknowledge {
                coll,
                name,
                offset,
                len,
            } => {
                let key = ObjKey::new(*coll, name.clone());
                self.need_obj(&key)?;
                self.acknowledge(&key, *offset, *len);
            }
        }
        Ok(())
    }

    /// Re-stamps the committed pages of `[offset, offset + len)` that are inside open
    /// intents with the sums of their bytes on media, and closes those intents.
    fn acknowledge(&mut self, key: &ObjKey, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = offset / PAGE;
        let end = (offset + len).div_ceil(PAGE);
        let sums = self.table.sums();
        self.obj(key);
        let obj = self.shadow[key].as_ref().expect("checked");
        let dirty = &self.dirty;
        let torn: Vec<u64> = obj
            .segments(first, end - first)
            .filter_map(|s| s.phys.map(|p| (s.lpage, p, s.pages)))
            .flat_map(|(lp, p, n)| (0..n).map(move |i| (lp + i, p + i)))
            .filter(|&(_, p)| sums.in_intent(p))
            .filter(|&(lp, _)| !dirty.contains_key(&(key.clone(), lp)))
            .map(|(_, p)| p)
            .collect();
        for p in torn {
            match self.pages.get(&p) {
                Some(bytes) => {
                    self.out.deltas.push(Delta::Csum {
                        phys: p,
                        sums: vec![page_sum(bytes)],
                    });
                    self.out
                        .deltas
                        .push(Delta::CloseIntent { phys: p, pages: 1 });
                }
                None => self.missing.push(p),
            }
        }
    }

    fn live_objects(&self, coll: CollId) -> usize {
        let committed = self
            .table
            .objects(coll)
            .map(|it| {
                it.filter(|(name, _)| {
                    !matches!(
                        self.shadow.get(&ObjKey::new(coll, name.to_vec())),
                        Some(None)
                    )
                })
                .count()
            })
            .unwrap_or(0);
        let created = self
            .shadow
            .iter()
            .filter(|(k, v)| {
                k.coll == coll && v.is_some() && self.table.object(coll, &k.name).is_none()
            })
            .count();
        committed + created
    }

    fn write(&mut self, key: &ObjKey, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset + data.len() as u64;
        self.cow_eof_page(key, end);
        if offset > self.obj(key).map_or(0, |o| o.size) {
            self.zero_eof_tail(key);
        }
        for lpage in offset / PAGE..=(end - 1) / PAGE {
            let start = lpage * PAGE;
            let lo = offset.max(start) - start;
            let hi = end.min(start + PAGE) - start;
            let src = (start + lo - offset) as usize..(start + hi - offset) as usize;
            let d = self.page_mut(key, lpage, lo == 0 && hi == PAGE);
            d.data[lo as usize..hi as usize].copy_from_slice(&data[src]);
        }
        self.place_fresh(key)?;
        let size = self.obj(key).map_or(0, |o| o.size).max(end);
        self.set_size(key, size);
        Ok(())
    }

    fn zero(&mut self, key: &ObjKey, offset: u64, len: u64) -> Result<(), StoreError> {
        if len == 0 {
            return Ok(());
        }
        let end = offset + len;
        self.cow_eof_page(key, end);
        if offset > self.obj(key).map_or(0, |o| o.size) {
            self.zero_eof_tail(key);
        }
        let first_whole = offset.div_ceil(PAGE);
        let end_whole = end / PAGE;
        for lpage in [offset / PAGE, (end - 1) / PAGE] {
            let start = lpage * PAGE;
            let whole = start >= offset && start + PAGE <= end;
            if !whole && self.has_page(key, lpage) {
                let lo = (offset.max(start) - start) as usize;
                let hi = (end.min(start + PAGE) - start) as usize;
                self.page_mut(key, lpage, false).data[lo..hi].fill(0);
            }
        }
        if end_whole > first_whole {
            self.unmap(key, first_whole, end_whole - first_whole);
        }
        self.place_fresh(key)?;
        let size = self.obj(key).map_or(0, |o| o.size).max(end);
        self.set_size(key, size);
        Ok(())
    }

    fn truncate(&mut self, key: &ObjKey, size: u64) -> Result<(), StoreError> {
        let old = self.obj(key).map_or(0, |o| o.size);
        if size < old {
            let first_gone = size.div_ceil(PAGE);
            self.unmap(key, first_gone, u64::MAX - first_gone);
        } else if size > old {
            self.cow_eof_page(key, size);
            self.zero_eof_tail(key);
            self.place_fresh(key)?;
        }
        self.set_size(key, size);
        Ok(())
    }

    fn remove(&mut self, key: &ObjKey) {
        let range = (key.clone(), 0)..=(key.clone(), u64::MAX);
        let gone: Vec<_> = self.dirty.range(range).map(|(k, _)| k.clone()).collect();
        for k in gone {
            self.dirty.remove(&k);
        }
        self.shadow.insert(key.clone(), None);
        self.out.deltas.push(Delta::Remove {
            coll: key.coll,
            name: key.name.clone(),
        });
    }

    /// Bytes `[offset, offset + len)` of the object as this transaction sees it (holes and
    /// past EOF read as zeroes).
    fn read_shadow(&mut self, key: &ObjKey, offset: u64, len: u64) -> Vec<u8> {
        let mut out = vec![0u8; len as usize];
        if len == 0 {
            return out;
        }
        let size = self.obj(key).map_or(0, |o| o.size);
        let end = (offset + len).min(size);
        if offset >= end {
            return out;
        }
        for lpage in offset / PAGE..=(end - 1) / PAGE {
            let start = lpage * PAGE;
            let lo = offset.max(start) - start;
            let hi = end.min(start + PAGE) - start;
            let dst = (start + lo - offset) as usize..(start + hi - offset) as usize;
            if let Some(d) = self.dirty.get(&(key.clone(), lpage)) {
                out[dst].copy_from_slice(&d.data[lo as usize..hi as usize]);
            } else if let Some(p) = self.obj(key).and_then(|o| phys_of(o, lpage)) {
                match self.pages.get(&p) {
                    Some(old) => out[dst].copy_from_slice(&old[lo as usize..hi as usize]),
                    None => self.missing.push(p),
                }
            }
        }
        out
    }

    fn clone_object(&mut self, src: &ObjKey, dst: &ObjKey) -> Result<(), StoreError> {
        let s = self.obj(src).expect("checked").clone();
        let data_pages = s.extents.values().map(|e| u64::from(e.pages)).sum::<u64>()
            + self
                .dirty
                .range((src.clone(), 0)..=(src.clone(), u64::MAX))
                .filter(|(_, d)| d.fresh)
                .count() as u64;
        if data_pages * PAGE > MAX_TXN_DATA_BYTES {
            return Err(StoreError::InvalidTxn(format!(
                "clone of {} bytes of data exceeds the {MAX_TXN_DATA_BYTES}-byte transaction limit",
                data_pages * PAGE
            )));
        }
        if self.obj(dst).is_some() {
            self.remove(dst);
        }
        self.ensure_obj(dst)?;
        for (k, v) in &s.attrs {
            self.out.deltas.push(Delta::SetAttr {
                coll: dst.coll,
                name: dst.name.clone(),
                key: k.clone(),
                value: v.clone(),
            });
        }
        for (k, v) in &s.omap {
            self.out.deltas.push(Delta::OmapSet {
                coll: dst.coll,
                name: dst.name.clone(),
                key: k.clone(),
                value: v.clone(),
            });
        }
        {
            let d = self.obj_mut(dst);
            d.attrs = s.attrs.clone();
            d.omap = s.omap.clone();
        }
        // Every page with data: mapped in the source, or dirty in this transaction.
        let mut lpages: Vec<u64> = s
            .extents
            .iter()
            .flat_map(|(&lp, e)| lp..lp + u64::from(e.pages))
            .chain(
                self.dirty
                    .range((src.clone(), 0)..=(src.clone(), u64::MAX))
                    .map(|((_, lp), _)| *lp),
            )
            .filter(|lp| lp * PAGE < s.size)
            .collect();
        lpages.sort_unstable();
        lpages.dedup();
        for lp in lpages {
            let bytes = self.read_shadow(src, lp * PAGE, PAGE);
            let d = self.page_mut(dst, lp, true);
            d.data.copy_from_slice(&bytes);
        }
        self.place_fresh(dst)?;
        self.set_size(dst, s.size);
        Ok(())
    }
}

fn annotate(e: StoreError, i: usize, op: &TxnOp) -> StoreError {
    match e {
        StoreError::InvalidTxn(m) => {
            StoreError::InvalidTxn(format!("op {i} ({}): {m}", op.kind().as_str()))
        }
        other => other,
    }
}
