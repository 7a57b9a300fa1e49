//! How a metadata-only transaction with data reaches the journal (docs/integrity.md §3):
//!
//! ```text
//!  Serial    data writes ──► [flush] ──► commit record (FUA)          two ordered writes
//!  Intent    intent record ──► data writes ──► [flush] ──► commit record   three
//!  Parallel  data writes (FUA) ─┐
//!            commit record ─────┴──► both durable ──► commit          one
//! ```
//!
//! - **Parallel** when every page is fresh (nothing mapped is rewritten in place), or
//!   when the transaction rewrites one run of mapped pages that fits the device's atomic
//!   write unit and does not cross its boundary. The record carries the pages' sums; until
//!   a later batch header confirms it, replay reads the pages and drops a record whose data
//!   is not there (such a transaction was never acknowledged). An atomic overwrite holds
//!   either its old or its new bytes after a power cut, so it is never torn.
//! - **Intent** when the transaction rewrites mapped pages in place otherwise and the store
//!   keeps overwrite intents: a record naming the pages is durable before the data write
//!   starts, and the commit record closes it. After a power cut, pages still inside an open
//!   intent that fail their sums are a torn overwrite, not corruption.
//! - **Serial** otherwise (and for every transaction without data).

use keel_drivers::QueuePair;

use super::plan::Planned;
use super::Shard;
use crate::meta::Delta;
use crate::types::PAGE;

/// The commit path of one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CommitPath {
    /// Data, then the record.
    Serial,
    /// An intent record, data, then the record.
    Intent,
    /// Data and the record at once.
    Parallel,
}

impl<Q: QueuePair> Shard<Q> {
    /// The path of a metadata-only transaction that writes data.
    pub(crate) fn commit_path(&self, p: &Planned) -> CommitPath {
        // Dropping an unconfirmed record at replay is safe whatever it holds: a record that
        // depends on it was planned after it committed, so that record's batch header
        // confirms it; and what it frees is not reused before it commits.
        let parallel_ok = self.cfg.parallel_commit;
        if p.overwrite_pages == 0 {
            return if parallel_ok {
                CommitPath::Parallel
            } else {
                CommitPath::Serial
            };
        }
        if parallel_ok && p.fresh_pages == 0 && self.atomic_overwrite(&p.overwrites) {
            return CommitPath::Parallel;
        }
        if self.cfg.overwrite_intents {
            CommitPath::Intent
        } else {
            CommitPath::Serial
        }
    }

    /// Whether `overwrites` is one run that the device writes atomically across a power
    /// failure (NVMe AWUPF/NAWUPF): at most the unit, not crossing a multiple of it, and
    /// one command.
    fn atomic_overwrite(&self, overwrites: &[(u64, u32)]) -> bool {
        let [(phys, pages)] = overwrites else {
            return false;
        };
        let bpp = PAGE / u64::from(self.geo.block_size);
        let unit = u64::from(self.geo.atomic_write_blocks.max(1));
        let (lba, blocks) = (phys * bpp, u64::from(*pages) * bpp);
        let one_command = u64::from(*pages) * PAGE <= self.cfg.io_buf_bytes as u64;
        one_command && blocks <= unit && lba / unit == (lba + blocks - 1) / unit
    }
}

/// The `OpenIntent` (or `CloseIntent`) deltas of the pages a plan rewrites in place.
pub(crate) fn intent_deltas(p: &Planned, open: bool) -> Vec<Delta> {
    p.overwrites
        .iter()
        .map(|&(phys, pages)| {
            if open {
                Delta::OpenIntent { phys, pages }
            } else {
                Delta::CloseIntent { phys, pages }
            }
        })
        .collect()
}

/// The new sums of the pages a plan rewrites in place: (device page, sum).
pub(crate) fn overwrite_sums(p: &Planned) -> Vec<(u64, u32)> {
    let rewritten = |page: u64| {
        p.overwrites
            .iter()
            .any(|&(s, n)| (s..s + u64::from(n)).contains(&page))
    };
    p.deltas
        .iter()
        .filter_map(|d| match d {
            Delta::Csum { phys, sums } => Some((*phys, sums)),
            _ => None,
        })
        .flat_map(|(phys, sums)| {
            sums.iter()
                .enumerate()
                .map(move |(i, &s)| (phys + i as u64, s))
        })
        .filter(|&(page, _)| rewritten(page))
        .collect()
}
