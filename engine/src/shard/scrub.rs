//! Scrub: read every mapped page and check it against its sum (docs/integrity.md §5).
//!
//! A scrub walks the table in key order (collection, object name, logical page) from a
//! [`ScrubCursor`], a bounded number of pages per step, so it can run a little at a time
//! between transactions (the reactors' background scrub) or all at once
//! ([`Shard::scrub`]). Each page is *clean*, a *torn overwrite* (a mismatch inside an
//! open intent: caller-owned, acknowledge or rewrite it) or *corruption* (a mismatch
//! anywhere else). Pages being rewritten right now, or on their way home from the full
//! journal, are skipped: the step that comes back to them next pass checks them.

use keel_drivers::QueuePair;

use super::verify::PageCheck;
use super::{ReadRun, ReadSlot, Shard, PG};
use crate::error::Result;
use crate::meta::page_sum;
use crate::types::{CollId, ObjKey, PAGE};

/// Where a scrub resumes: the first logical page of an object not yet checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubCursor {
    /// Collection.
    pub coll: CollId,
    /// Object name.
    pub name: Vec<u8>,
    /// Logical page.
    pub lpage: u64,
}

/// A run of bad pages of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRange {
    /// The object.
    pub key: ObjKey,
    /// First byte (page aligned).
    pub offset: u64,
    /// Bytes (whole pages).
    pub len: u64,
}

/// What a scrub found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// Pages read and checked.
    pub pages: u64,
    /// Pages that match their sums.
    pub clean: u64,
    /// Pages skipped because a write to them was in flight.
    pub skipped: u64,
    /// Torn overwrites (inside open intents), merged into runs.
    pub torn: Vec<BadRange>,
    /// Corruption (mismatches outside intents), merged into runs.
    pub corrupt: Vec<BadRange>,
    /// Complete passes over the shard.
    pub passes: u64,
}

impl ScrubReport {
    /// Pages inside torn runs.
    pub fn torn_pages(&self) -> u64 {
        self.torn.iter().map(|r| r.len / PAGE).sum()
    }

    /// Pages inside corrupt runs.
    pub fn corrupt_pages(&self) -> u64 {
        self.corrupt.iter().map(|r| r.len / PAGE).sum()
    }

    /// Adds `other`'s counts and ranges to this one.
    pub fn merge(&mut self, other: ScrubReport) {
        self.pages += other.pages;
        self.clean += other.clean;
        self.skipped += other.skipped;
        self.passes += other.passes;
        self.torn.extend(other.torn);
        self.corrupt.extend(other.corrupt);
    }

    fn push(&mut self, key: &ObjKey, lpage: u64, check: PageCheck) {
        let list = match check {
            PageCheck::Clean => {
                self.clean += 1;
                return;
            }
            PageCheck::Torn => &mut self.torn,
            PageCheck::Corrupt => &mut self.corrupt,
        };
        match list.last_mut() {
            Some(r) if &r.key == key && r.offset + r.len == lpage * PAGE => r.len += PAGE,
            _ => list.push(BadRange {
                key: key.clone(),
                offset: lpage * PAGE,
                len: PAGE,
            }),
        }
    }
}

impl<Q: QueuePair> Shard<Q> {
    /// Checks up to `max_pages` mapped pages from `cursor`, adding what it finds to
    /// `report`, and moves the cursor past them (before reading: a page the device cannot
    /// read fails this step, not every later one). At the end of the table the cursor
    /// goes back to the start and `report.passes` grows. Returns the pages visited (0 on
    /// an empty table).
    ///
    /// Transactions keep committing while the reads are in flight, so a page that fails
    /// against the sum it had when read is read again, alone, and only reported if it
    /// still fails against the sum it has then (and still belongs to the same object).
    pub fn scrub_step(
        &mut self,
        cursor: &mut ScrubCursor,
        max_pages: u64,
        report: &mut ScrubReport,
    ) -> Result<u64> {
        self.settle();
        let todo: Vec<(ObjKey, u64, u64)> = self
            .table
            .pages_from(cursor.coll, &cursor.name, cursor.lpage)
            .take(max_pages as usize)
            .map(|(c, n, lp, p)| (ObjKey::new(c, n.to_vec()), lp, p))
            .collect();
        match todo.last() {
            Some((key, lpage, _)) if todo.len() as u64 == max_pages => {
                *cursor = ScrubCursor {
                    coll: key.coll,
                    name: key.name.clone(),
                    lpage: lpage + 1,
                };
            }
            _ => {
                *cursor = ScrubCursor::default();
                report.passes += 1;
            }
        }
        let sums_then: Vec<u32> = todo
            .iter()
            .map(|(_, _, p)| self.table.sums().get(*p))
            .collect();
        let bytes = self.read_raw(&todo)?;
        let mut suspects = Vec::new();
        for (i, (_, _, phys)) in todo.iter().enumerate() {
            let page = &bytes[i * PG..(i + 1) * PG];
            if self.overwriting.contains_key(phys) || self.overlay.contains_key(phys) {
                report.skipped += 1;
            } else if page_sum(page) == sums_then[i] {
                report.pages += 1;
                report.clean += 1;
            } else {
                suspects.push(i);
            }
        }
        for i in suspects {
            let (key, lpage, phys) = &todo[i];
            let still_there = self
                .table
                .object(key.coll, &key.name)
                .and_then(|o| o.phys_of(*lpage))
                == Some(*phys);
            if !still_there {
                report.skipped += 1;
                continue;
            }
            let again = self.read_raw(std::slice::from_ref(&todo[i]))?;
            if self.overwriting.contains_key(phys) {
                report.skipped += 1;
                continue;
            }
            report.pages += 1;
            let check = self.check_page(*phys, &again);
            report.push(key, *lpage, check);
        }
        Ok(todo.len() as u64)
    }

    /// Reads the device pages of `pages` (object, logical page, device page), without
    /// checking them, into one buffer in order.
    pub(crate) fn read_raw(&mut self, pages: &[(ObjKey, u64, u64)]) -> Result<Vec<u8>> {
        self.settle();
        // Runs of consecutive device pages of one object, one buffer each.
        let per_buf = (self.cfg.io_buf_bytes / PG).max(1) as u64;
        let mut runs: Vec<(usize, u64)> = Vec::new(); // (first index, pages)
        for (i, (key, lp, phys)) in pages.iter().enumerate() {
            match runs.last_mut() {
                Some((s, n))
                    if *n < per_buf && {
                        let (k0, lp0, p0) = &pages[*s];
                        k0 == key && lp0 + *n == *lp && p0 + *n == *phys
                    } =>
                {
                    *n += 1
                }
                _ => runs.push((i, 1)),
            }
        }
        let rslot = self.reads.insert(ReadSlot {
            key: ObjKey::new(0, Vec::new()),
            out: vec![0u8; pages.len() * PG],
            runs: Vec::new(),
            pending: 0,
            error: None,
            retry: false,
            verify: false,
        });
        for &(first, n) in &runs {
            let (_, lpage, phys) = pages[first];
            self.add_read_run(
                rslot,
                ReadRun {
                    lpage,
                    phys,
                    pages: n,
                    at: first * PG,
                    skip: 0,
                    len: n as usize * PG,
                },
            )?;
        }
        Ok(self.drain_read(rslot)?.unwrap_or_default())
    }

    /// One whole pass over the shard.
    pub fn scrub(&mut self) -> Result<ScrubReport> {
        let mut cursor = ScrubCursor::default();
        let mut report = ScrubReport::default();
        while report.passes == 0 {
            self.scrub_step(&mut cursor, 256, &mut report)?;
        }
        Ok(report)
    }
}
