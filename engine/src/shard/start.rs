//! From queued to written: a transaction takes its locks, is planned (after prefetching the
//! committed pages it needs), gets its journal entry, and starts its data writes; or it
//! fails here, having changed nothing.

use keel_drivers::{Command, QueuePair};

use super::io::{ChunkedWrite, Owner, Segments};
use super::locks::LockSet;
use super::path::{self, CommitPath};
use super::plan::{plan_fresh_write, PlanOutcome, Planned, Planner};
use super::{Shard, TxnState, PAGE, PG};
use crate::error::{Result, StoreError};
use crate::journal::encode_parts;

impl<Q: QueuePair> Shard<Q> {
    pub(super) fn start_queued(&mut self) -> bool {
        if self.failed.is_some() {
            return false;
        }
        let mut started = false;
        let mut ahead: Vec<usize> = Vec::new();
        let mut i = 0;
        while i < self.queued.len() {
            let slot = self.queued[i];
            let sets: Vec<&LockSet> = ahead.iter().map(|s| &self.txns[*s].locks).collect();
            if self.locks.may_start(&self.txns[slot].locks, &sets) {
                self.queued.remove(i);
                self.locks.acquire(&self.txns[slot].locks);
                self.plan_txn(slot);
                started = true;
            } else {
                ahead.push(slot);
                i += 1;
            }
        }
        started
    }

    pub(super) fn plan_once(&mut self, slot: usize) -> Result<PlanOutcome> {
        let max_ext = self.max_extent_pages();
        let t = &self.txns[slot];
        let mut buf = self.spares.take();
        let fresh = plan_fresh_write(&self.table, &mut self.alloc, &t.txn, max_ext, &mut buf);
        self.spares.give(buf);
        if let Some(r) = fresh {
            return r.map(PlanOutcome::Done);
        }
        Planner::new(&self.table, &mut self.alloc, &t.pages, max_ext).plan(&t.txn)
    }

    pub(super) fn plan_txn(&mut self, slot: usize) {
        let mut outcome = self.plan_once(slot);
        if matches!(outcome, Err(StoreError::NoSpace(_))) {
            // Acknowledged transactions not yet applied may free pages, and pages freed by
            // this turn's commits may still be waiting: plan again with them.
            self.settle();
            let durable = self.journal.durable_seq;
            if self.alloc.advance(durable, self.io.oldest_inflight()) > 0 {
                outcome = self.plan_once(slot);
            }
        }
        match outcome {
            Err(e) => self.finish_txn(slot, Err(e)),
            Ok(PlanOutcome::NeedPages(pages)) => self.prefetch(slot, pages),
            Ok(PlanOutcome::Done(planned)) => self.planned(slot, planned),
        }
    }

    pub(super) fn prefetch(&mut self, slot: usize, pages: Vec<u64>) {
        if !self.txns[slot].pages.is_empty() {
            // A second pass never needs more pages than the first found.
            self.finish_txn(
                slot,
                Err(StoreError::Corrupt("planning asked for pages twice".into())),
            );
            return;
        }
        self.txns[slot].state = TxnState::Prefetching;
        // Contiguous runs, each at most one buffer.
        let per_buf = (self.cfg.io_buf_bytes / PG).max(1) as u64;
        let mut runs: Vec<(u64, u32)> = Vec::new();
        for p in pages {
            match runs.last_mut() {
                Some((s, n)) if *s + u64::from(*n) == p && u64::from(*n) < per_buf => *n += 1,
                _ => runs.push((p, 1)),
            }
        }
        for (phys, n) in runs {
            // Committed pages only change under this transaction's locks: reading them now
            // sees what planning would. A full-journal page still on its way home is read
            // from the overlay.
            let Some(mut buf) = self.data_pool.alloc() else {
                self.fail("out of data buffers for a prefetch".into());
                return;
            };
            buf.set_len(n as usize * PG);
            let cmd = Command::Read {
                lba: self.lba(phys),
                buf,
            };
            let t = &mut self.txns[slot];
            match self
                .io
                .submit(&mut self.data_qp, Owner::Prefetch(slot, phys, n), cmd)
            {
                Ok(()) => t.pending += 1,
                Err(e) => {
                    self.fail(format!("prefetch read: {e}"));
                    return;
                }
            }
        }
    }

    pub(super) fn planned(&mut self, slot: usize, mut planned: Planned) {
        let full = self.txns[slot].full;
        let max_entry = (self.ring_blocks() * u64::from(self.block_size()) / 4) as usize;
        let verify_fua = self.verify_data_fua();
        let path = if full || planned.runs.is_empty() {
            CommitPath::Serial
        } else {
            self.commit_path(&planned)
        };
        // Rewriting a torn overwrite settles it.
        let closing = self.closing_deltas(&planned);
        planned.deltas.extend(closing);
        let t = &mut self.txns[slot];
        t.pages.clear();
        t.path = path;
        let runs: Vec<(u64, &[u8])> = if full {
            planned.run_data().collect()
        } else {
            Vec::new()
        };
        let overwrites: &[(u64, u32)] = if full { &[] } else { &planned.overwrites };
        t.entry.clear();
        encode_parts(
            &mut t.entry,
            t.id,
            path.verify(),
            &planned.deltas,
            &runs,
            overwrites,
        );
        // Metadata must keep fitting a checkpoint slot: refuse what would take it past 90%,
        // counting what the transactions planned before it and not yet applied will add
        // (each entry's deltas bound what it adds; run data a full entry carries is not
        // metadata), so a checkpoint never fails for size.
        let meta = (t.entry.len() - runs.iter().map(|(_, d)| d.len()).sum::<usize>()) as u64;
        drop(runs);
        let slot_bytes = (self.layout.ckpt_pages - 1) * PAGE;
        let have = self.table.approx_bytes() + self.meta_reserved;
        if have + meta > slot_bytes / 10 * 9 {
            for e in &planned.allocated {
                self.alloc.release_now(*e);
            }
            self.finish_txn(
                slot,
                Err(StoreError::NoSpace(format!(
                    "metadata of {have} bytes (applied and in flight) would outgrow the \
                     {slot_bytes}-byte checkpoint slot"
                ))),
            );
            return;
        }
        let t = &mut self.txns[slot];
        if t.entry.len() > max_entry {
            let len = t.entry.len();
            for e in &planned.allocated {
                self.alloc.release_now(*e);
            }
            self.finish_txn(
                slot,
                Err(StoreError::NoSpace(format!(
                    "a {len}-byte journal entry does not fit a quarter of the journal"
                ))),
            );
            return;
        }
        // Held until the transaction is applied (commit.rs) or released.
        t.meta_reserved = meta;
        self.meta_reserved += meta;
        let t = &mut self.txns[slot];
        // The run data moves to the slot, with a segment per run.
        let mut segments = Segments::with_capacity(planned.runs.len());
        t.data = std::mem::take(&mut planned.data);
        let bpp = PAGE / u64::from(self.geo.block_size);
        let mut at = 0;
        for r in &planned.runs {
            segments.push((r.phys * bpp, at..at + r.pages * PG));
            at += r.pages * PG;
        }
        let has_data = !segments.is_empty();
        // Data of a record that may be durable first must be durable at completion.
        let fua =
            self.cfg.data_fua || (path.verify() && self.geo.volatile_write_cache && verify_fua);
        t.write = Some(ChunkedWrite::new(segments, fua));
        if full || !has_data {
            t.planned = Some(planned);
            t.state = TxnState::Ready;
            if full {
                // The home writes wait for the batch; keep the segments.
            } else {
                t.write = None;
            }
            self.ready.push_back(slot);
            return;
        }
        match path {
            CommitPath::Serial => {
                self.start_data_writes(slot, &planned);
                self.txns[slot].planned = Some(planned);
            }
            CommitPath::Parallel => {
                self.start_data_writes(slot, &planned);
                self.txns[slot].planned = Some(planned);
                self.ready.push_back(slot);
            }
            CommitPath::IntentFirst => {
                // The data waits for the record (batch.rs starts it).
                t.planned = Some(planned);
                t.state = TxnState::Ready;
                self.stats.intents += 1;
                self.ready.push_back(slot);
            }
        }
    }

    /// Starts the data writes of a metadata-only transaction: pages it rewrites in place are
    /// marked as being overwritten (reads accept their old or new bytes) until it commits.
    pub(crate) fn start_data_writes(&mut self, slot: usize, planned: &Planned) {
        for (phys, sum) in path::overwrite_sums(planned) {
            self.overwriting.insert(phys, sum);
        }
        self.txns[slot].state = TxnState::Writing;
        self.writers.push_back(slot);
    }

    /// Issues data and home writes as buffers and queue room allow.
    pub(super) fn issue_writes(&mut self) -> bool {
        let mut any = false;
        let bs = self.geo.block_size;
        while let Some(&slot) = self.writers.front() {
            let t = &mut self.txns[slot];
            let owner = if t.state == TxnState::HomeWriting {
                Owner::Home(slot)
            } else {
                Owner::Data(slot)
            };
            let w = t.write.as_mut().expect("writer has a write");
            let before = w.pending;
            if let Err(e) = w.issue(
                &t.data,
                bs,
                &mut self.data_qp,
                &self.data_pool,
                &mut self.io,
                owner,
            ) {
                self.fail(format!("data write: {e}"));
                return true;
            }
            any |= w.pending != before;
            if !w.all_issued() {
                break; // keep submission order: later writers wait for buffers
            }
            self.writers.pop_front();
        }
        any
    }

    /// Ends a transaction that failed before its entry was written: nothing of it is
    /// visible, its allocations were given back by the planner.
    pub(super) fn finish_txn(&mut self, slot: usize, result: Result<()>) {
        let t = &self.txns[slot];
        if result.is_err() {
            self.stats.txns_failed += 1;
        }
        self.completions.push_back((t.id, result));
        self.release(slot);
    }
}
