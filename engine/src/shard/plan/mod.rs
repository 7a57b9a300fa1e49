//! Planning: a transaction becomes metadata deltas and page writes.
//!
//! The planner works against committed state (its objects are locked, so that state cannot
//! change under it), one operation after the other, so later operations see earlier ones.
//! What it has changed so far lives in a *shadow* of each object it touches:
//!
//! - the object's size, and whether it exists;
//! - its committed extents, attributes and omap, borrowed from the table and copied only on
//!   the first change to one of them (an unmap, an attribute, an omap key), so a write to
//!   an object with a large extent map does not copy that map;
//! - its *dirty pages*: the pages this transaction writes, by logical page, with their
//!   bytes in one arena. A dirty page is never entered in the shadow's extent map: every
//!   lookup consults the dirty pages first.
//!
//! A dirty page of a mapped page is rewritten in place (an overwrite); one of an unmapped
//! page gets a freshly allocated page (and a `Map` delta). A partial write of a mapped page
//! needs its old contents: the planner records the committed pages it lacks and answers
//! [`PlanOutcome::NeedPages`]; the shard reads them and plans again (the second pass finds
//! them all: the set depends only on committed state).
//!
//! Bytes past an object's size in its last page are undefined on media; whenever an object
//! grows, the planner zeroes them first, so a hole or an extension always reads as zeroes.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use smallvec::SmallVec;

use crate::alloc::{Allocator, Extents};
use crate::error::StoreError;
use crate::meta::{page_sum, Delta, MetaTable, Object, MAX_CSUM_PAGES};
use crate::txn::{Transaction, TxnOp};
use crate::types::{CollId, ObjKey, MAX_TXN_DATA_BYTES, PAGE};

mod fresh;
mod ops;

pub(crate) use fresh::plan_fresh_write;

const PG: usize = PAGE as usize;

/// A run of dirty pages with consecutive device pages; its bytes are `pages` pages of
/// [`Planned::data`], right after those of the runs before it.
pub(crate) struct PlannedRun {
    pub(crate) phys: u64,
    pub(crate) pages: usize,
}

/// What a transaction will do.
#[derive(Default)]
pub(crate) struct Planned {
    pub(crate) deltas: Vec<Delta>,
    /// Runs in device order.
    pub(crate) runs: SmallVec<[PlannedRun; 2]>,
    /// The bytes of every run, one after the other.
    pub(crate) data: Vec<u8>,
    /// Extents allocated for it (given back if it fails before its entry is durable).
    pub(crate) allocated: Extents,
    /// Committed pages rewritten in place: (first page, pages).
    pub(crate) overwrites: Vec<(u64, u32)>,
    pub(crate) fresh_pages: u64,
    pub(crate) overwrite_pages: u64,
}

impl Planned {
    /// Each run with its bytes: (first device page, bytes).
    pub(crate) fn run_data(&self) -> impl Iterator<Item = (u64, &[u8])> {
        runs_with_data(&self.runs, &self.data)
    }

    /// Adds device page `phys` (the next in device order) to the runs.
    fn push_run_page(&mut self, phys: u64) {
        self.push_run(phys, 1);
    }

    /// Appends `pages` device pages from `phys`, extending the last run if they follow it.
    fn push_run(&mut self, phys: u64, pages: usize) {
        match self.runs.last_mut() {
            Some(r) if r.phys + r.pages as u64 == phys => r.pages += pages,
            _ => self.runs.push(PlannedRun { phys, pages }),
        }
    }

    /// Appends the sums of every page written, after the maps that place them.
    fn push_sums(&mut self) {
        for (phys, bytes) in runs_with_data(&self.runs, &self.data) {
            for (i, chunk) in bytes.chunks(MAX_CSUM_PAGES * PG).enumerate() {
                self.deltas.push(Delta::Csum {
                    phys: phys + (i * MAX_CSUM_PAGES) as u64,
                    sums: chunk.chunks(PG).map(page_sum).collect(),
                });
            }
        }
    }

    /// Appends a `Map` per run of `placed` (logical page, device page) pairs that are
    /// consecutive in both, at most `max_extent_pages` long.
    fn push_maps(&mut self, key: (CollId, &[u8]), placed: &[(u64, u64)], max_extent_pages: u32) {
        let mut i = 0;
        while i < placed.len() {
            let (lp, p) = placed[i];
            let mut n = 1u32;
            while i + (n as usize) < placed.len()
                && n < max_extent_pages
                && placed[i + n as usize] == (lp + u64::from(n), p + u64::from(n))
            {
                n += 1;
            }
            self.deltas.push(Delta::Map {
                coll: key.0,
                name: key.1.to_vec(),
                lpage: lp,
                phys: p,
                pages: n,
            });
            i += n as usize;
        }
    }
}

/// Each run with its bytes: `data` holds the runs' pages back to back.
fn runs_with_data<'a>(
    runs: &'a [PlannedRun],
    data: &'a [u8],
) -> impl Iterator<Item = (u64, &'a [u8])> {
    let mut at = 0;
    runs.iter().map(move |r| {
        let bytes = &data[at..at + r.pages * PG];
        at += r.pages * PG;
        (r.phys, bytes)
    })
}

pub(crate) enum PlanOutcome {
    Done(Planned),
    /// Device pages whose committed contents the plan needs.
    NeedPages(Vec<u64>),
}

/// A page this transaction writes.
struct Dirty {
    /// Device page; `None` until allocated.
    phys: Option<u64>,
    fresh: bool,
    /// Offset of its bytes in the planner's arena.
    at: usize,
}

/// An existing object as the transaction sees it so far.
struct Live<'a> {
    size: u64,
    /// Committed extents, attributes and omap; copied on the first change. `body.size` is
    /// not kept up to date: `size` is the size.
    body: Cow<'a, Object>,
}

/// One object the transaction touches.
struct Shadow<'a> {
    /// `None`: the object does not exist (yet, or any more).
    live: Option<Live<'a>>,
    /// Pages written, by logical page.
    dirty: BTreeMap<u64, Dirty>,
}

impl<'a> Shadow<'a> {
    fn size(&self) -> u64 {
        self.live.as_ref().map_or(0, |l| l.size)
    }

    /// The committed device page `lpage` maps to (dirty pages aside).
    fn committed_phys(&self, lpage: u64) -> Option<u64> {
        self.live.as_ref()?.body.phys_of(lpage)
    }

    /// Whether `lpage` has data: dirty, or mapped.
    fn has_page(&self, lpage: u64) -> bool {
        self.dirty.contains_key(&lpage) || self.committed_phys(lpage).is_some()
    }

    fn live_mut(&mut self) -> &mut Live<'a> {
        self.live.as_mut().expect("object exists in shadow")
    }
}

pub(crate) struct Planner<'a> {
    table: &'a MetaTable,
    alloc: &'a mut Allocator,
    /// Committed contents of pages read for this plan, by device page.
    pages: &'a HashMap<u64, Box<[u8]>>,
    max_extent_pages: u32,
    objs: BTreeMap<ObjKey, Shadow<'a>>,
    colls: HashMap<CollId, bool>,
    /// Bytes of every dirty page, a page each (a dropped page's bytes stay, unused).
    arena: Vec<u8>,
    out: Planned,
    missing: Vec<u64>,
}

/// The shadow of `key`, made from committed state on first use.
fn shadow_of<'s, 'a>(
    objs: &'s mut BTreeMap<ObjKey, Shadow<'a>>,
    table: &'a MetaTable,
    key: &ObjKey,
) -> &'s mut Shadow<'a> {
    if !objs.contains_key(key) {
        let live = table.object(key.coll, &key.name).map(|o| Live {
            size: o.size,
            body: Cow::Borrowed(o),
        });
        objs.insert(
            key.clone(),
            Shadow {
                live,
                dirty: BTreeMap::new(),
            },
        );
    }
    objs.get_mut(key).expect("just inserted")
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
            objs: BTreeMap::new(),
            colls: HashMap::new(),
            arena: Vec::new(),
            out: Planned {
                deltas: Vec::with_capacity(8),
                ..Planned::default()
            },
            missing: Vec::new(),
        }
    }

    /// Plans the whole transaction. On error every allocation is given back.
    pub(crate) fn plan(mut self, txn: &Transaction) -> Result<PlanOutcome, StoreError> {
        // Room for the pages written whole, and the partial pages at their edges.
        let bytes = txn.data_bytes().min(MAX_TXN_DATA_BYTES) as usize;
        self.arena.reserve(bytes + 2 * PG * txn.len().min(64));
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
        let mut pages: Vec<(u64, bool, usize)> = self
            .objs
            .values()
            .flat_map(|s| s.dirty.values())
            .map(|d| (d.phys.expect("every dirty page is placed"), d.fresh, d.at))
            .collect();
        pages.sort_unstable_by_key(|p| p.0);
        let out = &mut self.out;
        // Usually the arena already holds the pages in device order, one after the other
        // (pages are allocated in the order they are written): then it is the data.
        let in_order = pages.iter().enumerate().all(|(i, p)| p.2 == i * PG);
        if in_order {
            self.arena.truncate(pages.len() * PG);
            out.data = std::mem::take(&mut self.arena);
        } else {
            out.data.reserve_exact(pages.len() * PG);
        }
        for (phys, fresh, at) in pages {
            if fresh {
                out.fresh_pages += 1;
            } else {
                out.overwrite_pages += 1;
                match out.overwrites.last_mut() {
                    Some((start, n)) if *start + u64::from(*n) == phys => *n += 1,
                    _ => out.overwrites.push((phys, 1)),
                }
            }
            out.push_run_page(phys);
            if !in_order {
                out.data.extend_from_slice(&self.arena[at..at + PG]);
            }
        }
        out.push_sums();
    }

    // ---- shadow state -------------------------------------------------------------------

    fn coll_exists(&self, c: CollId) -> bool {
        self.colls
            .get(&c)
            .copied()
            .unwrap_or_else(|| self.table.has_coll(c))
    }

    fn shadow(&mut self, key: &ObjKey) -> &mut Shadow<'a> {
        shadow_of(&mut self.objs, self.table, key)
    }

    fn exists(&mut self, key: &ObjKey) -> bool {
        self.shadow(key).live.is_some()
    }

    fn size(&mut self, key: &ObjKey) -> u64 {
        self.shadow(key).size()
    }

    /// The object's committed body, to change (copied from the table the first time).
    fn body_mut(&mut self, key: &ObjKey) -> &mut Object {
        self.shadow(key).live_mut().body.to_mut()
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
        if self.exists(key) {
            Ok(())
        } else {
            Err(StoreError::NoSuchObject(key.clone()))
        }
    }

    fn ensure_obj(&mut self, key: &ObjKey) -> Result<(), StoreError> {
        self.need_coll(key.coll)?;
        let sh = self.shadow(key);
        if sh.live.is_none() {
            sh.live = Some(Live {
                size: 0,
                body: Cow::Owned(Object::default()),
            });
            self.out.deltas.push(Delta::Create {
                coll: key.coll,
                name: key.name.clone(),
            });
        }
        Ok(())
    }

    fn set_size(&mut self, key: &ObjKey, size: u64) {
        let live = self.shadow(key).live_mut();
        if live.size != size {
            live.size = size;
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
        let sh = self.shadow(key);
        let gone: Vec<u64> = sh.dirty.range(lpage..end).map(|(lp, _)| *lp).collect();
        for lp in &gone {
            sh.dirty.remove(lp);
        }
        let live = sh.live_mut();
        let mapped = live
            .body
            .extents()
            .range(..end)
            .next_back()
            .is_some_and(|(&s, e)| s + u64::from(e.pages) > lpage);
        if mapped {
            live.body.to_mut().unmap(lpage, pages, &mut Vec::new());
        }
        if mapped || !gone.is_empty() {
            self.out.deltas.push(Delta::Unmap {
                coll: key.coll,
                name: key.name.clone(),
                lpage,
                pages,
            });
        }
    }

    // ---- pages --------------------------------------------------------------------------

    /// A new page in the arena (zeroes); returns its offset.
    fn arena_page(&mut self) -> usize {
        let at = self.arena.len();
        self.arena.resize(at + PG, 0);
        at
    }

    /// The bytes of the dirty page for `lpage`, loading its committed contents unless
    /// `whole` (the caller overwrites all of it).
    fn page_mut(&mut self, key: &ObjKey, lpage: u64, whole: bool) -> &mut [u8] {
        let at = match self.shadow(key).dirty.get(&lpage) {
            Some(d) => d.at,
            None => {
                let sh = self.shadow(key);
                let size = sh.size();
                let phys = sh.committed_phys(lpage);
                let at = self.arena_page();
                if let (Some(p), false) = (phys, whole) {
                    match self.pages.get(&p) {
                        Some(old) => {
                            // Past EOF is undefined on media: present it as zeroes.
                            let valid = size.saturating_sub(lpage * PAGE).min(PAGE) as usize;
                            self.arena[at..at + valid].copy_from_slice(&old[..valid]);
                        }
                        None => self.missing.push(p),
                    }
                }
                let dirty = Dirty {
                    phys,
                    fresh: phys.is_none(),
                    at,
                };
                self.shadow(key).dirty.insert(lpage, dirty);
                at
            }
        };
        &mut self.arena[at..at + PG]
    }

    /// Before growing an object to `new_end` bytes: its last page, if partly past its size
    /// and mapped, is rewritten to a fresh page rather than in place (copy on write). The
    /// acknowledged bytes it holds are then never at risk of a torn write, and a growing
    /// write stays a write to fresh pages only (atomic, and eligible for parallel commit).
    fn cow_eof_page(&mut self, key: &ObjKey, new_end: u64) {
        let sh = self.shadow(key);
        let size = sh.size();
        if sh.live.is_none() || size % PAGE == 0 || new_end <= size {
            return;
        }
        let lpage = size / PAGE;
        let Some(phys) = sh.committed_phys(lpage) else {
            return;
        };
        if sh.dirty.contains_key(&lpage) {
            return;
        }
        let at = self.arena_page();
        match self.pages.get(&phys) {
            Some(old) => {
                let valid = (size % PAGE) as usize;
                self.arena[at..at + valid].copy_from_slice(&old[..valid]);
            }
            None => self.missing.push(phys),
        }
        let dirty = Dirty {
            phys: None,
            fresh: true,
            at,
        };
        self.shadow(key).dirty.insert(lpage, dirty);
    }

    /// Before growing an object: zero what lies past its old size in its last page.
    fn zero_eof_tail(&mut self, key: &ObjKey) {
        let size = self.size(key);
        if size % PAGE == 0 {
            return;
        }
        let lpage = size / PAGE;
        if self.shadow(key).has_page(lpage) {
            self.page_mut(key, lpage, false)[(size % PAGE) as usize..].fill(0);
        }
    }

    /// Gives device pages to the object's new dirty pages, contiguous where it can, and
    /// records the mappings.
    fn place_fresh(&mut self, key: &ObjKey) -> Result<(), StoreError> {
        let unplaced: Vec<u64> = self
            .shadow(key)
            .dirty
            .iter()
            .filter(|(_, d)| d.phys.is_none())
            .map(|(lp, _)| *lp)
            .collect();
        if unplaced.is_empty() {
            return Ok(());
        }
        let mut exts = Extents::new();
        self.alloc
            .alloc_into(unplaced.len() as u64, self.max_extent_pages, &mut exts)?;
        self.out.allocated.extend_from_slice(&exts);
        let sh = shadow_of(&mut self.objs, self.table, key);
        let mut phys = exts.iter().flat_map(|e| e.phys..e.end());
        let placed: Vec<(u64, u64)> = unplaced
            .iter()
            .map(|&lp| (lp, phys.next().expect("allocated exactly enough")))
            .collect();
        for &(lp, p) in &placed {
            sh.dirty.get_mut(&lp).expect("dirty").phys = Some(p);
        }
        // The shadow's extents stay as they are: the dirty pages answer for these pages
        // from now on.
        self.out
            .push_maps((key.coll, &key.name), &placed, self.max_extent_pages);
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
