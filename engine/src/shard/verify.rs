//! Checking data against its per-page checksums (docs/integrity.md): client reads and the
//! committed pages a transaction reads for planning.
//!
//! A page whose bytes do not match its sum is classified: inside an open intent it is a
//! *torn overwrite* (a power cut interrupted an in-place overwrite; the range belongs to the
//! caller), anywhere else *corruption*. A page being overwritten in place right now may
//! read as its old bytes, its new bytes, or (if the read raced the write) neither: the
//! read is then retried once the overwrite is done, so no client ever sees mixed bytes
//! reported as corruption.

use keel_drivers::QueuePair;

use super::{ReadRun, Shard, PG};
use crate::error::StoreError;
use crate::meta::page_sum;
use crate::types::{ObjKey, PAGE};

/// What a page's bytes say against its recorded sum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageCheck {
    /// The bytes match.
    Clean,
    /// Mismatch inside an open intent: a torn overwrite, caller-owned.
    Torn,
    /// Mismatch anywhere else.
    Corrupt,
}

impl<Q: QueuePair> Shard<Q> {
    /// Classifies device page `phys` holding `bytes` against its committed sum.
    pub(crate) fn check_page(&self, phys: u64, bytes: &[u8]) -> PageCheck {
        let sums = self.table.sums();
        if page_sum(bytes) == sums.get(phys) {
            PageCheck::Clean
        } else if sums.in_intent(phys) {
            PageCheck::Torn
        } else {
            PageCheck::Corrupt
        }
    }

    /// The error for bad pages `[lpage, lpage + pages)` of `key`.
    pub(crate) fn bad_range(key: ObjKey, lpage: u64, pages: u64, check: PageCheck) -> StoreError {
        let (offset, len) = (lpage * PAGE, pages * PAGE);
        match check {
            PageCheck::Torn => StoreError::TornOverwrite { key, offset, len },
            _ => StoreError::DataCorrupt { key, offset, len },
        }
    }

    /// The object and logical page that map device page `phys` (a walk of every extent:
    /// for error messages only).
    pub(crate) fn locate(&self, phys: u64) -> Option<(ObjKey, u64)> {
        self.table
            .all_extents()
            .find_map(|(coll, name, lpage, ext)| {
                (ext.phys..ext.end())
                    .contains(&phys)
                    .then(|| (ObjKey::new(coll, name.to_vec()), lpage + (phys - ext.phys)))
            })
    }

    /// Checks committed pages read for planning. Torn pages are the caller's and pass (a
    /// rewrite or an acknowledge reads them); a corrupt page fails the transaction rather
    /// than be folded into new data under a fresh checksum.
    pub(crate) fn check_prefetch(&self, phys: u64, buf: &[u8]) -> Option<StoreError> {
        for (i, page) in buf.chunks(PG).enumerate() {
            let p = phys + i as u64;
            if self.check_page(p, page) == PageCheck::Corrupt {
                let (key, lpage) = self.locate(p)?;
                return Some(Self::bad_range(key, lpage, 1, PageCheck::Corrupt));
            }
        }
        None
    }

    /// Ends a transaction whose planning read found corruption (nothing was allocated:
    /// the planner gives back its allocations when it asks for pages).
    pub(crate) fn fail_planning(&mut self, slot: usize, e: StoreError) {
        self.txns[slot].pages.clear();
        self.finish_txn(slot, Err(e));
    }

    /// A device read of a client read completed: check every page, then copy.
    pub(crate) fn on_read_done(&mut self, slot: usize, run: usize, buf: &[u8]) {
        let r = &mut self.reads[slot];
        if !r.verify {
            let ReadRun { at, len, .. } = r.runs[run];
            r.out[at..at + len].copy_from_slice(&buf[..len]);
            r.pending -= 1;
            return;
        }
        let r = &self.reads[slot];
        let ReadRun {
            lpage,
            phys,
            pages,
            at,
            skip,
            len,
        } = r.runs[run];
        let mut bad: Option<(u64, u64, PageCheck)> = None;
        let mut retry = false;
        for i in 0..pages {
            let page = &buf[i as usize * PG..(i as usize + 1) * PG];
            let check = self.check_page(phys + i, page);
            if check == PageCheck::Clean {
                continue;
            }
            if let Some(&new_sum) = self.overwriting.get(&(phys + i)) {
                // An overwrite in flight: its new bytes are fine, a racing read is retried.
                retry |= page_sum(page) != new_sum;
                continue;
            }
            match &mut bad {
                Some((first, n, c)) if *first + *n == i && *c == check => *n += 1,
                Some(_) => {}
                None => bad = Some((i, 1, check)),
            }
        }
        let r = &mut self.reads[slot];
        r.pending -= 1;
        r.retry |= retry;
        match bad {
            Some((first, n, check)) => {
                if r.error.is_none() {
                    r.error = Some(Self::bad_range(r.key.clone(), lpage + first, n, check));
                }
            }
            None => r.out[at..at + len].copy_from_slice(&buf[skip..skip + len]),
        }
    }
}
