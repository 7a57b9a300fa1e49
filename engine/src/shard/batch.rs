//! Group commit: ready entries become one journal batch, one batch in flight at a time.
//!
//! ```text
//!  Idle ──(ready entries, journal space)──► [Flushing] ──► Writing ──(all chunks)──► Idle
//!                                             only if an entry depends on data written
//!                                             since the last flush and the device has a
//!                                             volatile cache (and data is not FUA)
//! ```
//!
//! While a batch is in flight, newly ready entries wait and so join the next batch: the
//! batch size follows the load by itself. The batch is written with FUA when the device has
//! a volatile cache; its transactions are committed and acknowledged when every chunk
//! has completed, in order (docs/format.md §5 rules 1–3).

use keel_drivers::{Command, QueuePair};

use super::io::{ChunkedWrite, JobKind, Owner};
use super::{Shard, TxnState};
use crate::journal::{BatchHeader, HEADER_BYTES};

/// The batch in flight, if any.
pub(crate) enum BatchState {
    /// No batch in flight.
    Idle,
    /// A Flush before the batch is in flight.
    Flushing(SealedBatch),
    /// The batch's chunks are being written.
    Writing(SealedBatch),
}

pub(crate) struct SealedBatch {
    seq: u64,
    entries: Vec<usize>,
    data: Vec<u8>,
    write: ChunkedWrite,
}

impl<Q: QueuePair> Shard<Q> {
    pub(crate) fn batch_step(&mut self) -> bool {
        if self.failed.is_some() {
            return false;
        }
        match &mut self.batch {
            BatchState::Writing(b) if !b.write.all_issued() => {
                let before = b.write.pending;
                let bs = self.geo.block_size;
                let r = b.write.issue(
                    &b.data,
                    bs,
                    &mut self.journal_qp,
                    &self.journal_pool,
                    &mut self.io,
                    Owner::Job(JobKind::Batch),
                );
                let progressed = b.write.pending != before;
                if let Err(e) = r {
                    self.fail(format!("journal write: {e}"));
                }
                return progressed;
            }
            BatchState::Idle => {}
            _ => return false,
        }
        if self.ready.is_empty() {
            self.ready_since = None;
            return false;
        }
        if self.cfg.max_batch_wait_us > 0 {
            let since = *self.ready_since.get_or_insert_with(std::time::Instant::now);
            let more_coming = self.txns.iter().any(|(_, t)| t.state == TxnState::Writing);
            let bytes: usize = self.ready.iter().map(|&s| self.txns[s].entry.len()).sum();
            let waited = since.elapsed().as_micros() >= u128::from(self.cfg.max_batch_wait_us);
            if more_coming && bytes < self.cfg.max_batch_bytes as usize && !waited {
                return false;
            }
        }
        // Take entries up to the batch size (at least one).
        let bs = u64::from(self.geo.block_size);
        let mut payload = 0usize;
        let mut n = 0;
        for &slot in &self.ready {
            let len = self.txns[slot].entry.len();
            if n > 0 && payload + len > self.cfg.max_batch_bytes as usize {
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
        let entries: Vec<usize> = self.ready.drain(..n).collect();
        self.ready_since = None;
        let mut data = vec![0u8; (blocks * bs) as usize];
        let mut at = HEADER_BYTES;
        let mut depends_on_data = false;
        for &slot in &entries {
            let t = &mut self.txns[slot];
            data[at..at + t.entry.len()].copy_from_slice(&t.entry);
            at += t.entry.len();
            t.entry = Vec::new();
            t.state = TxnState::InBatch;
            depends_on_data |= !t.full && t.planned.as_ref().is_some_and(|p| !p.runs.is_empty());
        }
        let header = BatchHeader {
            seq: self.journal.next_seq,
            pos: self.journal.next_pos,
            uuid: self.uuid,
            payload_bytes: payload as u32,
            blocks: blocks as u32,
            entries: n as u32,
            prev_crc: self.journal.prev_crc,
            payload_crc: crc32c::crc32c(&data[HEADER_BYTES..HEADER_BYTES + payload]),
        };
        let crc = header.encode(&mut data);
        // Where it goes: split in two where it wraps around the ring.
        let ring = self.ring_blocks();
        let ring_start = self.lba(self.layout.journal_start);
        let first = self.journal.next_pos % ring;
        let head_blocks = blocks.min(ring - first);
        let mut segments = vec![(ring_start + first, 0..(head_blocks * bs) as usize)];
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
        let sealed = SealedBatch {
            seq,
            entries,
            data,
            write: ChunkedWrite::new(segments, self.geo.volatile_write_cache),
        };
        let need_flush = self.geo.volatile_write_cache
            && !self.cfg.data_fua
            && depends_on_data
            && self.data_since_flush;
        if need_flush {
            self.data_since_flush = false;
            self.stats.flushes += 1;
            let r = self.io.submit(
                &mut self.journal_qp,
                Owner::Job(JobKind::BatchFlush),
                Command::Flush,
            );
            self.batch = BatchState::Flushing(sealed);
            if let Err(e) = r {
                self.fail(format!("flush before journal batch: {e}"));
            }
        } else {
            self.batch = BatchState::Writing(sealed);
            self.batch_step();
        }
        true
    }

    pub(crate) fn on_job_done(&mut self, kind: JobKind) {
        match kind {
            JobKind::BatchFlush => {
                let BatchState::Flushing(b) = std::mem::replace(&mut self.batch, BatchState::Idle)
                else {
                    unreachable!("batch flush completes while flushing")
                };
                self.batch = BatchState::Writing(b);
                self.batch_step();
            }
            JobKind::Batch => {
                let BatchState::Writing(b) = &mut self.batch else {
                    unreachable!("batch chunk completes while writing")
                };
                b.write.pending -= 1;
                if !b.write.done() {
                    return;
                }
                let BatchState::Writing(b) = std::mem::replace(&mut self.batch, BatchState::Idle)
                else {
                    unreachable!()
                };
                self.journal.durable_seq = b.seq;
                for slot in b.entries {
                    self.commit(slot, b.seq);
                }
            }
            JobKind::CkptFlush | JobKind::Ckpt => self.on_ckpt_job_done(kind),
        }
    }
}
