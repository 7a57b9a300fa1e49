//! Commit: a transaction whose batch (and, on the parallel path, whose data) is durable is
//! acknowledged at once; its changes reach the table a little later.
//!
//! ```text
//!  turn k     reap: batch durable ─► ack (completion queued)   ─► applying: [t]
//!             ... the client hears of t at the end of turn k ...
//!  turn k+1   reap; plan and submit new transactions; kick      (t still unapplied)
//!             apply t: deltas into the table, frees deferred,
//!             locks released (waiters start now), home writes  ─► applying: []
//! ```
//!
//! Applying a transaction costs about as much as planning one; done after the next turn's
//! submissions, it runs while their I/O is in flight instead of before the client hears of
//! the commit. Nothing can observe the difference:
//!
//! - t keeps its locks until it is applied: a transaction touching any of its objects waits,
//!   and plans against the applied state (locks.rs).
//! - Every way in to committed state settles first: reads, stats of objects, listings,
//!   scrub, fsck, checkpoints (a checkpoint must hold every acknowledged change before the
//!   journal may drop its record), and every reactor query. [`Shard::object`] and
//!   [`Shard::table`] assert it in debug builds.
//! - [`Shard::poll`] settles at its end; only the store's and the reactor's turns, whose
//!   callers go through the settling ways in, leave the applying to the next turn.
//! - A shard that stops applies what it acknowledged: committed state stays readable.

use keel_drivers::QueuePair;

use super::{CommitPath, Shard, TxnState, PG};
use crate::alloc::FreeGate;
use crate::TxnId;

impl<Q: QueuePair> Shard<Q> {
    /// The batch holding this transaction is durable: acknowledge it now, apply it later.
    pub(crate) fn commit(&mut self, slot: usize, seq: u64) {
        let t = &mut self.txns[slot];
        if t.path == CommitPath::Parallel {
            self.stats.parallel_txns += 1;
        }
        if t.full {
            self.stats.full_journal_txns += 1;
        }
        self.stats.txns_committed += 1;
        self.stats.client_bytes += t.data_bytes;
        if let Some(p) = &t.planned {
            self.stats.fresh_pages += p.fresh_pages;
            self.stats.overwrite_pages += p.overwrite_pages;
        }
        t.state = TxnState::Committed;
        self.completions.push_back((t.id, Ok(())));
        self.applying.push_back((slot, seq));
    }

    /// Applies every acknowledged transaction: the table then holds all of them.
    /// Cheap when there is nothing to apply.
    pub fn settle(&mut self) {
        self.acked_earlier = 0;
        while let Some((slot, seq)) = self.applying.pop_front() {
            self.apply(slot, seq);
        }
    }

    /// True when every acknowledged transaction is applied.
    pub fn is_settled(&self) -> bool {
        self.applying.is_empty()
    }

    /// Acknowledged transactions not yet applied.
    pub fn unapplied(&self) -> usize {
        self.applying.len()
    }

    /// Applies the transactions acknowledged before this turn began (the client may have
    /// heard of them); those acknowledged by this turn wait for the next. Transactions
    /// that waited for their locks then start. True if any was applied.
    pub(crate) fn apply_earlier(&mut self) -> bool {
        let n = std::mem::take(&mut self.acked_earlier);
        for _ in 0..n {
            let Some((slot, seq)) = self.applying.pop_front() else {
                break;
            };
            self.apply(slot, seq);
        }
        if n > 0 && !self.queued.is_empty() && self.poll_txns() {
            self.kick();
        }
        n > 0
    }

    /// Marks where this turn's acknowledgements begin (see [`Self::apply_earlier`]).
    pub(crate) fn begin_turn(&mut self) {
        self.acked_earlier = self.applying.len();
    }

    /// Applies one acknowledged transaction: its deltas into the table, its frees deferred,
    /// its locks released; a full-journal transaction then writes home.
    fn apply(&mut self, slot: usize, seq: u64) {
        let t = &mut self.txns[slot];
        let id = t.id;
        let planned = t
            .planned
            .take()
            .expect("committed transactions are planned");
        for &(phys, pages) in &planned.overwrites {
            for p in phys..phys + u64::from(pages) {
                self.overwriting.remove(&p);
            }
        }
        let mut freed = Vec::new();
        for d in &planned.deltas {
            if let Err(e) = self.table.apply(d, &mut freed) {
                // Planning never emits a delta the table refuses: the in-memory state is
                // no longer trustworthy.
                self.fail(format!("committing txn {id}: {e}"));
                return;
            }
        }
        // The table now holds what the transaction reserved.
        self.meta_reserved -= std::mem::take(&mut self.txns[slot].meta_reserved);
        // Every I/O issued so far (issue numbers below mark()) must finish before the freed
        // pages are reused; the gate passes when the oldest in flight is past the last one.
        let gate = FreeGate {
            batch_seq: seq,
            io_mark: self.io.mark().saturating_sub(1),
        };
        for e in freed {
            self.alloc.defer_free(e, gate);
        }
        let t = &mut self.txns[slot];
        if t.full && t.write.as_ref().is_some_and(|w| !w.all_issued()) {
            t.state = TxnState::HomeWriting;
            // Reads see acknowledged data while it travels home.
            let mut off = 0;
            for r in &planned.runs {
                for i in 0..r.pages as u64 {
                    self.overlay.insert(r.phys + i, (slot, off));
                    off += PG;
                }
            }
            self.writers.push_back(slot);
        } else {
            self.release(slot);
        }
    }

    /// The newest full-journal transaction still writing home, if any.
    pub(crate) fn newest_home_writer(&self) -> Option<TxnId> {
        self.txns
            .iter()
            .filter(|(_, t)| t.state == TxnState::HomeWriting)
            .map(|(_, t)| t.id)
            .max()
    }

    /// True while a full-journal transaction with an id up to `upto` is writing home.
    pub(crate) fn home_writing_upto(&self, upto: TxnId) -> bool {
        self.txns
            .iter()
            .any(|(_, t)| t.state == TxnState::HomeWriting && t.id <= upto)
    }

    pub(crate) fn finish_home(&mut self, slot: usize) {
        self.overlay.retain(|_, (s, _)| *s != slot);
        self.release(slot);
    }

    pub(crate) fn release(&mut self, slot: usize) {
        let mut t = self.txns.remove(slot);
        self.meta_reserved -= t.meta_reserved;
        debug_assert!(
            !self.txns.is_empty() || self.meta_reserved == 0,
            "metadata reserved by no transaction: {}",
            self.meta_reserved
        );
        self.spares.give(std::mem::take(&mut t.data));
        self.spares.give(std::mem::take(&mut t.entry));
        self.locks.release(&t.locks);
    }
}
