//! Group commit: ready entries become journal batches, several in flight at once,
//! committed strictly in sequence order.
//!
//! ```text
//!  ready entries ──seal──► [Flushing] ──► Writing ──(all chunks)──► Written ──► committed
//!                           only if an entry depends on data      (in seq order: a batch
//!                           written since the last flush and the   commits only once every
//!                           device has a volatile cache (and data  earlier one has)
//!                           is not FUA)
//! ```
//!
//! When to seal: with no batch in flight, at once — unless other transactions are still
//! writing their data, in which case the ready entries wait up to `max_batch_wait_us` for
//! them (a lone transaction never waits). With batches in flight, the ready entries wait
//! for those to finish (so batches grow with the load), but no longer than
//! `max_batch_wait_us`: on a device whose flushes take milliseconds, the next batch is
//! sealed and written while earlier ones are still in flight, up to
//! `max_batches_in_flight`. A batch closes at `max_batch_bytes`.
//!
//! Why batches may overlap (docs/format.md §5): a batch is written with FUA when the device
//! has a volatile cache, and its transactions are committed and acknowledged only when it
//! and every earlier batch are durable. Recovery follows the chain of batch headers (each
//! names the crc of the one before) and stops at the first batch that is missing or torn,
//! so a later batch that reached the media before an earlier one is never replayed alone.
//! The same chain covers the flush ordering: a batch sealed while an earlier batch's flush
//! is in flight may rely on that flush for its data; it can only be replayed if the earlier
//! batch is valid, and that batch was written only after its flush completed.

use keel_drivers::{Command, QueuePair};

use super::io::{ChunkedWrite, JobKind, Owner, Segments};
use super::{CkptState, Shard, TxnState};
use crate::journal::{BatchHeader, HEADER_BYTES};

/// Where a sealed batch is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BatchPhase {
    /// A Flush before the batch is in flight.
    Flushing,
    /// The batch's chunks are being written.
    Writing,
    /// Every chunk is durable; it commits once every earlier batch has.
    Written,
    /// A Flush after the data of its `verify` entries is in flight.
    PostFlushing,
}

/// A sealed batch, from seal to commit.
pub(crate) struct SealedBatch {
    seq: u64,
    phase: BatchPhase,
    /// The slots of its transactions (inline up to 8: no allocation at low queue depth).
    entries: smallvec::SmallVec<[usize; 8]>,
    data: Vec<u8>,
    write: ChunkedWrite,
    /// Its `verify` entries write data without FUA on a volatile cache: flush before commit.
    post_flush: bool,
    /// Written with FUA (or no volatile cache): durable once every chunk completed.
    fua: bool,
    /// The data writes of its intent-first entries have been started.
    intents_started: bool,
}

impl SealedBatch {
    /// Whether the batch's record is durable: written with FUA, or flushed after.
    fn record_durable(&self) -> bool {
        match self.phase {
            BatchPhase::Written => self.fua || !self.post_flush,
            _ => false,
        }
    }
}

impl<Q: QueuePair> Shard<Q> {
    /// Issues what the batches in flight have left to write, then seals a new batch when
    /// it is time. True if anything happened.
    pub(crate) fn batch_step(&mut self) -> bool {
        if self.failed.is_some() {
            return false;
        }
        let mut progressed = false;
        for i in 0..self.batches.len() {
            progressed |= self.issue_batch(i);
            if self.failed.is_some() {
                return progressed;
            }
        }
        progressed | self.seal_batch()
    }

    /// Issues the chunks of batch `i` that the journal pool and queue pair have room for.
    fn issue_batch(&mut self, i: usize) -> bool {
        let b = &mut self.batches[i];
        if b.phase != BatchPhase::Writing || b.write.all_issued() {
            return false;
        }
        let before = b.write.pending;
        let r = b.write.issue(
            &b.data,
            self.geo.block_size,
            &mut self.journal_qp,
            &self.journal_pool,
            &mut self.io,
            Owner::Job(JobKind::Batch(b.seq)),
        );
        let progressed = b.write.pending != before;
        if let Err(e) = r {
            self.fail(format!("journal write: {e}"));
        }
        progressed
    }

    /// Whether ready entries should wait rather than be sealed now. The cheap tests come
    /// first: the clock is read only when the answer depends on it.
    fn hold_batch(&mut self) -> bool {
        let in_flight = self.batches.len();
        if in_flight >= self.cfg.max_batches_in_flight.max(1) as usize {
            return true;
        }
        // A checkpoint waits for a batch boundary: let the batches in flight drain.
        if in_flight > 0 && matches!(self.ckpt, CkptState::Idle) && self.ckpt_due() {
            return true;
        }
        let bytes: usize = self.ready.iter().map(|&s| self.txns[s].entry.len()).sum();
        if bytes >= self.batch_payload_max() {
            return false;
        }
        // With nothing in flight, wait only for serial transactions still writing their
        // data (parallel-commit entries are ready while theirs is written): a lone
        // transaction never waits.
        if in_flight == 0
            && !self.txns.iter().any(|(_, t)| {
                t.state == TxnState::Writing && t.path == super::path::CommitPath::Serial
            })
        {
            return false;
        }
        // Let the batch grow while earlier ones finish (or serial data lands), unless
        // that takes longer than the wait allows.
        let since = *self.ready_since.get_or_insert_with(std::time::Instant::now);
        since.elapsed().as_micros() < u128::from(self.cfg.max_batch_wait_us)
    }

    /// The most payload one batch takes: `max_batch_bytes`, but never more than half the
    /// ring, so that a batch always fits once a checkpoint has emptied the ring (an entry
    /// is at most a quarter of it: `planned` refuses larger ones). A batch the ring could
    /// never hold would wait for room forever.
    fn batch_payload_max(&self) -> usize {
        let half_ring = self.ring_blocks() * u64::from(self.geo.block_size) / 2;
        let cap = half_ring.saturating_sub(HEADER_BYTES as u64);
        (u64::from(self.cfg.max_batch_bytes).min(cap)) as usize
    }

    /// Seals ready entries into a batch and starts it (flush first when needed).
    fn seal_batch(&mut self) -> bool {
        if self.ready.is_empty() {
            self.ready_since = None;
            return false;
        }
        if self.hold_batch() {
            return false;
        }
        // Take entries up to the batch size (at least one).
        let bs = u64::from(self.geo.block_size);
        let payload_max = self.batch_payload_max();
        let mut payload = 0usize;
        let mut n = 0;
        for &slot in &self.ready {
            let len = self.txns[slot].entry.len();
            if n > 0 && payload + len > payload_max {
                break;
            }
            payload += len;
            n += 1;
        }
        let blocks = (HEADER_BYTES + payload).div_ceil(bs as usize) as u64;
        let used = self.journal.next_pos - self.journal.head_pos;
        if used + blocks > self.ring_blocks() {
            self.ckpt_wanted = true; // the checkpoint frees the ring; never waits on it
            return false;
        }
        let entries: smallvec::SmallVec<[usize; 8]> = self.ready.drain(..n).collect();
        self.ready_since = None;
        let mut data = self.spares.zeroed((blocks * bs) as usize);
        let mut at = HEADER_BYTES;
        let mut depends_on_data = false;
        let mut verify_data = false;
        let mut intent_first = false;
        for &slot in &entries {
            let t = &mut self.txns[slot];
            data[at..at + t.entry.len()].copy_from_slice(&t.entry);
            at += t.entry.len();
            self.spares.give(std::mem::take(&mut t.entry));
            let serial_data = !t.full
                && !t.path.verify()
                && t.planned.as_ref().is_some_and(|p| !p.runs.is_empty());
            if t.state != TxnState::Writing {
                t.state = TxnState::InBatch; // a parallel entry keeps writing its data
            }
            depends_on_data |= serial_data;
            verify_data |= t.path.verify();
            intent_first |= t.path == super::path::CommitPath::IntentFirst;
        }
        let header = BatchHeader {
            seq: self.journal.next_seq,
            pos: self.journal.next_pos,
            uuid: self.uuid,
            payload_bytes: payload as u32,
            blocks: blocks as u32,
            entries: n as u32,
            prev_crc: self.journal.prev_crc,
            payload_crc: crate::crc::crc32c(&data[HEADER_BYTES..HEADER_BYTES + payload]),
            confirmed: self.journal.durable_seq,
        };
        let crc = header.encode(&mut data);
        // Where it goes: split in two where it wraps around the ring.
        let ring = self.ring_blocks();
        let ring_start = self.lba(self.layout.journal_start);
        let first = self.journal.next_pos % ring;
        let head_blocks = blocks.min(ring - first);
        let mut segments = Segments::new();
        segments.push((ring_start + first, 0..(head_blocks * bs) as usize));
        if head_blocks < blocks {
            segments.push((
                ring_start,
                (head_blocks * bs) as usize..(blocks * bs) as usize,
            ));
        }
        let seq = self.journal.next_seq;
        self.journal.next_seq += 1;
        self.journal.next_pos += blocks;
        self.journal.prev_crc = crc;
        self.stats.batches += 1;
        self.stats.batch_entries += n as u64;
        self.stats.batch_bytes += blocks * bs;
        self.stats.overlapped_batches += u64::from(!self.batches.is_empty());
        let post_flush = verify_data && self.geo.volatile_write_cache && !self.verify_data_fua();
        // A batch flushed before it commits needs no FUA, unless an intent-first entry must
        // be durable before its data goes out.
        let fua = self.geo.volatile_write_cache && (intent_first || !post_flush);
        let need_flush = self.geo.volatile_write_cache
            && !self.cfg.data_fua
            && depends_on_data
            && self.data_since_flush;
        self.batches.push_back(SealedBatch {
            seq,
            phase: if need_flush {
                BatchPhase::Flushing
            } else {
                BatchPhase::Writing
            },
            entries,
            data,
            write: ChunkedWrite::new(segments, fua),
            post_flush,
            fua,
            intents_started: false,
        });
        if need_flush {
            self.data_since_flush = false;
            self.stats.flushes += 1;
            let r = self.io.submit(
                &mut self.journal_qp,
                Owner::Job(JobKind::BatchFlush(seq)),
                Command::Flush,
            );
            if let Err(e) = r {
                self.fail(format!("flush before journal batch {seq}: {e}"));
            }
        } else {
            self.issue_batch(self.batches.len() - 1);
        }
        true
    }

    /// Starts the in-place data writes of intent-first entries whose records are
    /// replayable: their batch and every earlier one durable (replay stops at the first
    /// missing batch, and an intent it cannot see would leave a torn page looking like
    /// corruption).
    fn start_intent_data(&mut self) {
        for i in 0..self.batches.len() {
            if !self.batches[i].record_durable() {
                return;
            }
            if self.batches[i].intents_started {
                continue;
            }
            self.batches[i].intents_started = true;
            let first: Vec<usize> = self.batches[i]
                .entries
                .iter()
                .copied()
                .filter(|&s| self.txns[s].path == super::path::CommitPath::IntentFirst)
                .collect();
            for slot in first {
                let planned = self.txns[slot].planned.take().expect("planned");
                self.start_data_writes(slot, &planned);
                self.txns[slot].planned = Some(planned);
            }
        }
    }

    /// Commits batches in sequence order: only a written batch with every earlier one
    /// committed, and only once the data of its parallel-commit entries is durable.
    pub(crate) fn commit_batches(&mut self) {
        while let Some(b) = self.batches.front() {
            let data_pending = b.entries.iter().any(|&slot| {
                let t = &self.txns[slot];
                t.path.verify() && !t.data_done
            });
            if b.phase != BatchPhase::Written || data_pending {
                return;
            }
            if b.post_flush {
                let seq = b.seq;
                let b = self.batches.front_mut().expect("front exists");
                b.post_flush = false;
                b.phase = BatchPhase::PostFlushing;
                self.stats.flushes += 1;
                let r = self.io.submit(
                    &mut self.journal_qp,
                    Owner::Job(JobKind::BatchPostFlush(seq)),
                    Command::Flush,
                );
                if let Err(e) = r {
                    self.fail(format!("flush after the data of batch {seq}: {e}"));
                }
                return;
            }
            let b = self.batches.pop_front().expect("front exists");
            self.journal.durable_seq = b.seq;
            self.spares.give(b.data);
            for &slot in &b.entries {
                self.commit(slot, b.seq);
            }
        }
    }

    fn batch_index(&self, seq: u64) -> usize {
        let first = self.batches.front().expect("a batch job completes").seq;
        let i = (seq - first) as usize;
        debug_assert_eq!(
            self.batches[i].seq, seq,
            "batches in flight are consecutive"
        );
        i
    }

    pub(crate) fn on_job_done(&mut self, kind: JobKind) {
        match kind {
            JobKind::BatchFlush(seq) => {
                let i = self.batch_index(seq);
                assert_eq!(self.batches[i].phase, BatchPhase::Flushing);
                self.batches[i].phase = BatchPhase::Writing;
                self.issue_batch(i);
            }
            JobKind::BatchPostFlush(seq) => {
                let i = self.batch_index(seq);
                assert_eq!(self.batches[i].phase, BatchPhase::PostFlushing);
                self.batches[i].phase = BatchPhase::Written;
                self.start_intent_data();
                self.commit_batches();
            }
            JobKind::Batch(seq) => {
                let i = self.batch_index(seq);
                let b = &mut self.batches[i];
                assert_eq!(b.phase, BatchPhase::Writing);
                b.write.pending -= 1;
                if b.write.done() {
                    b.phase = BatchPhase::Written;
                }
                self.start_intent_data();
                self.commit_batches();
            }
            JobKind::CkptFlush | JobKind::Ckpt => self.on_ckpt_job_done(kind),
        }
    }
}
