//! How a metadata-only transaction with data reaches the journal (docs/integrity.md §3):
//!
//! ```text
//!  Serial       data writes ──► [flush] ──► record (FUA) ──► commit    ordered: 2 or 3
//!  Parallel     data writes (FUA) ─┐
//!               record (FUA) ──────┴──► both durable ──► commit        ordered: 1
//!  IntentFirst  record (FUA) ──► data writes (FUA) ──► commit          ordered: 2
//! ```
//!
//! - **Parallel** when every page is fresh (nothing mapped is rewritten in place). The
//!   record carries the pages' sums and is written at the same time as the data.
//! - **IntentFirst** when mapped pages are rewritten in place and the store keeps overwrite
//!   intents: the record, with the new sums, is durable *before* the data write starts, so
//!   it is the overwrite's intent. It closes when a later batch header confirms it (or a
//!   checkpoint covers it).
//! - **Serial** otherwise, for every transaction without data, and for every transaction
//!   of a store without overwrite intents (see [`Shard::commit_path`]).
//!
//! Both Parallel and IntentFirst records are flagged `verify`: until a later batch header
//! confirms them, replay reads the pages they name. All of them hold the new bytes: the
//! record stands. Otherwise the transaction was never acknowledged and the record is
//! dropped, and each page it rewrote in place is settled on its own: old bytes, nothing to
//! do; new bytes, its sum rolls forward (an in-flight overwrite may leave new data);
//! neither, a torn overwrite, left inside an open intent for the caller. An overwrite
//! that fits the device's atomic write unit (NVMe AWUPF) is one command that lands whole
//! or not at all, so it is never torn.
//!
//! Dropping a record is safe whatever it holds: a record that depends on it was planned
//! after it committed, so that record's batch header confirms it; and what it frees is not
//! reused before it commits.

use keel_drivers::QueuePair;

use super::plan::Planned;
use super::Shard;
use crate::meta::Delta;

/// The commit path of one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CommitPath {
    /// Data, then the record.
    Serial,
    /// Data and the record at once.
    Parallel,
    /// The record (the intent), then the data.
    IntentFirst,
}

impl CommitPath {
    /// The record may be durable before its data: replay checks it until confirmed.
    pub(crate) fn verify(self) -> bool {
        self != CommitPath::Serial
    }
}

impl<Q: QueuePair> Shard<Q> {
    /// The path of a metadata-only transaction that writes data.
    ///
    /// Without overwrite intents every transaction is serial, parallel commit or not: a
    /// serial overwrite writes its data in place *before* its record, so it could overwrite
    /// the pages of a parallel record that no batch header on media confirms yet; replay
    /// would then find that record's data gone and drop an acknowledged transaction. (An
    /// intent-first overwrite's data waits for its own batch, whose header confirms every
    /// record committed before it.) The crash explorer found this.
    pub(crate) fn commit_path(&self, p: &Planned) -> CommitPath {
        match (
            p.overwrite_pages,
            self.cfg.parallel_commit,
            self.cfg.overwrite_intents,
        ) {
            (_, _, false) => CommitPath::Serial,
            (0, true, true) => CommitPath::Parallel,
            (0, false, true) => CommitPath::Serial,
            (_, _, true) => CommitPath::IntentFirst,
        }
    }

    /// Whether the data of `verify` entries is written with FUA (durable at completion).
    /// Where the device emulates FUA with a flush per write, plain writes and one Flush per
    /// batch before it commits cost less (`docs/integrity.md` §3).
    pub(crate) fn verify_data_fua(&self) -> bool {
        self.cfg.data_fua || self.geo.fua_native
    }

    /// `CloseIntent` deltas for the pages a plan rewrites in place that sit inside open
    /// intents (a torn overwrite being rewritten: the new bytes settle it).
    pub(crate) fn closing_deltas(&self, p: &Planned) -> Vec<Delta> {
        let sums = self.table.sums();
        p.overwrites
            .iter()
            .flat_map(|&(phys, pages)| phys..phys + u64::from(pages))
            .filter(|&page| sums.in_intent(page))
            .map(|page| Delta::CloseIntent {
                phys: page,
                pages: 1,
            })
            .collect()
    }
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
