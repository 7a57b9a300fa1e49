//! The operations of a transaction, one by one, against the planner's shadow state
//! (`super`): each turns into deltas and dirty pages.

use super::{shadow_of, Planner};
use crate::error::StoreError;
use crate::meta::{page_sum, Delta};
use crate::txn::TxnOp;
use crate::types::{CollId, ObjKey, MAX_TXN_DATA_BYTES, PAGE};

impl Planner<'_> {
    /// Plans one operation.
    pub(super) fn op(&mut self, op: &TxnOp) -> Result<(), StoreError> {
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
                self.body_mut(&key).attrs.insert(k.clone(), value.clone());
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
                let has = self
                    .shadow(&key)
                    .live
                    .as_ref()
                    .is_some_and(|l| l.body.attrs.contains_key(k));
                if !has {
                    return Err(StoreError::NoSuchAttr {
                        key,
                        attr: String::from_utf8_lossy(k).into_owned(),
                    });
                }
                self.body_mut(&key).attrs.remove(k);
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
                    self.body_mut(&key).omap.insert(k.clone(), v.clone());
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
                    self.body_mut(&key).omap.remove(k);
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
        let sh = self.shadow(key);
        let live = sh.live.as_ref().expect("checked");
        let dirty = &sh.dirty;
        let torn: Vec<u64> = live
            .body
            .segments(first, end - first)
            .filter_map(|s| s.phys.map(|p| (s.lpage, p, s.pages)))
            .flat_map(|(lp, p, n)| (0..n).map(move |i| (lp + i, p + i)))
            .filter(|&(_, p)| sums.in_intent(p))
            .filter(|&(lp, _)| !dirty.contains_key(&lp))
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
                    self.objs
                        .get(&ObjKey::new(coll, name.to_vec()))
                        .is_none_or(|s| s.live.is_some())
                })
                .count()
            })
            .unwrap_or(0);
        let created = self
            .objs
            .iter()
            .filter(|(k, s)| {
                k.coll == coll && s.live.is_some() && self.table.object(coll, &k.name).is_none()
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
        if offset > self.size(key) {
            self.zero_eof_tail(key);
        }
        for lpage in offset / PAGE..=(end - 1) / PAGE {
            let start = lpage * PAGE;
            let lo = offset.max(start) - start;
            let hi = end.min(start + PAGE) - start;
            let src = (start + lo - offset) as usize..(start + hi - offset) as usize;
            let page = self.page_mut(key, lpage, lo == 0 && hi == PAGE);
            page[lo as usize..hi as usize].copy_from_slice(&data[src]);
        }
        self.place_fresh(key)?;
        let size = self.size(key).max(end);
        self.set_size(key, size);
        Ok(())
    }

    fn zero(&mut self, key: &ObjKey, offset: u64, len: u64) -> Result<(), StoreError> {
        if len == 0 {
            return Ok(());
        }
        let end = offset + len;
        self.cow_eof_page(key, end);
        if offset > self.size(key) {
            self.zero_eof_tail(key);
        }
        let first_whole = offset.div_ceil(PAGE);
        let end_whole = end / PAGE;
        for lpage in [offset / PAGE, (end - 1) / PAGE] {
            let start = lpage * PAGE;
            let whole = start >= offset && start + PAGE <= end;
            if !whole && self.shadow(key).has_page(lpage) {
                let lo = (offset.max(start) - start) as usize;
                let hi = (end.min(start + PAGE) - start) as usize;
                self.page_mut(key, lpage, false)[lo..hi].fill(0);
            }
        }
        if end_whole > first_whole {
            self.unmap(key, first_whole, end_whole - first_whole);
        }
        self.place_fresh(key)?;
        let size = self.size(key).max(end);
        self.set_size(key, size);
        Ok(())
    }

    fn truncate(&mut self, key: &ObjKey, size: u64) -> Result<(), StoreError> {
        let old = self.size(key);
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
        let sh = self.shadow(key);
        sh.dirty.clear();
        sh.live = None;
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
        let end = (offset + len).min(self.size(key));
        if offset >= end {
            return out;
        }
        let sh = shadow_of(&mut self.objs, self.table, key);
        for lpage in offset / PAGE..=(end - 1) / PAGE {
            let start = lpage * PAGE;
            let lo = (offset.max(start) - start) as usize;
            let hi = (end.min(start + PAGE) - start) as usize;
            let dst = (start + lo as u64 - offset) as usize..(start + hi as u64 - offset) as usize;
            if let Some(d) = sh.dirty.get(&lpage) {
                out[dst].copy_from_slice(&self.arena[d.at + lo..d.at + hi]);
            } else if let Some(p) = sh.committed_phys(lpage) {
                match self.pages.get(&p) {
                    Some(old) => out[dst].copy_from_slice(&old[lo..hi]),
                    None => self.missing.push(p),
                }
            }
        }
        out
    }

    fn clone_object(&mut self, src: &ObjKey, dst: &ObjKey) -> Result<(), StoreError> {
        let sh = self.shadow(src);
        let live = sh.live.as_ref().expect("checked");
        let size = live.size;
        let attrs = live.body.attrs.clone();
        let omap = live.body.omap.clone();
        // Every page with data: mapped in the source, or dirty in this transaction.
        let mut lpages: Vec<u64> = live
            .body
            .extents()
            .iter()
            .flat_map(|(&lp, e)| lp..lp + u64::from(e.pages))
            .chain(sh.dirty.keys().copied())
            .filter(|lp| lp * PAGE < size)
            .collect();
        lpages.sort_unstable();
        lpages.dedup();
        let data_bytes = lpages.len() as u64 * PAGE;
        if data_bytes > MAX_TXN_DATA_BYTES {
            return Err(StoreError::InvalidTxn(format!(
                "clone of {data_bytes} bytes of data exceeds the {MAX_TXN_DATA_BYTES}-byte transaction limit"
            )));
        }
        if self.exists(dst) {
            self.remove(dst);
        }
        self.ensure_obj(dst)?;
        for (k, v) in &attrs {
            self.out.deltas.push(Delta::SetAttr {
                coll: dst.coll,
                name: dst.name.clone(),
                key: k.clone(),
                value: v.clone(),
            });
        }
        for (k, v) in &omap {
            self.out.deltas.push(Delta::OmapSet {
                coll: dst.coll,
                name: dst.name.clone(),
                key: k.clone(),
                value: v.clone(),
            });
        }
        {
            let d = self.body_mut(dst);
            d.attrs = attrs;
            d.omap = omap;
        }
        for lp in lpages {
            let bytes = self.read_shadow(src, lp * PAGE, PAGE);
            self.page_mut(dst, lp, true).copy_from_slice(&bytes);
        }
        self.place_fresh(dst)?;
        self.set_size(dst, size);
        Ok(())
    }
}
