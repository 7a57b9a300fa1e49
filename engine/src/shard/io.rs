//! The shard's view of its two queue pairs: tags, issue numbers, and chunked writes.
//!
//! Every command gets an *issue number* (monotonic per shard). The oldest issue number still
//! in flight gates the reuse of freed pages (docs/format.md §5 rule 4).

use std::collections::VecDeque;

use keel_drivers::{Command, DmaPool, DriverError, QueuePair};
use slab::Slab;

/// Who is waiting for a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A read of committed pages for planning: (txn slot, first device page, pages).
    Prefetch(usize, u64, u32),
    /// A data write of a transaction (metadata-only path).
    Data(usize),
    /// A home-location write of a transaction that went through the full journal.
    Home(usize),
    /// A client read: (read slot, index of the run in the slot).
    Read(usize, usize),
    /// A journal-queue job (flush, batch, checkpoint).
    Job(JobKind),
}

/// Jobs on the journal queue pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JobKind {
    /// The flush before the batch of this sequence number.
    BatchFlush(u64),
    /// The flush after the data of a batch's `verify` entries (their data was written
    /// without FUA), before the batch commits.
    BatchPostFlush(u64),
    /// A chunk of the batch of this sequence number.
    Batch(u64),
    /// The flush before a checkpoint.
    CkptFlush,
    /// The checkpoint slot write.
    Ckpt,
}

pub(crate) struct IoRec {
    pub(crate) owner: Owner,
    pub(crate) issue: u64,
}

/// In-flight commands of both queue pairs.
#[derive(Default)]
pub(crate) struct IoTable {
    recs: Slab<IoRec>,
    /// Issue numbers from the oldest in flight up to the newest given out
    /// (`next_issue - 1`): whether each is still in flight. Finished ones at the front are
    /// dropped, so the front is the oldest in flight, in O(1).
    window: VecDeque<bool>,
    next_issue: u64,
}

impl IoTable {
    /// Submits `cmd` on `qp` for `owner`. On refusal nothing is recorded.
    pub(crate) fn submit<Q: QueuePair>(
        &mut self,
        qp: &mut Q,
        owner: Owner,
        cmd: Command,
    ) -> Result<(), DriverError> {
        let issue = self.next_issue;
        let key = self.recs.insert(IoRec { owner, issue });
        match qp.submit(key as u64, cmd) {
            Ok(()) => {
                self.next_issue += 1;
                self.window.push_back(true);
                Ok(())
            }
            Err(rejected) => {
                self.recs.remove(key);
                Err(rejected.error)
            }
        }
    }

    /// Forgets a finished command; returns its owner.
    pub(crate) fn finish(&mut self, tag: u64) -> Owner {
        let rec = self.recs.remove(tag as usize);
        let at = rec.issue - self.first();
        self.window[at as usize] = false;
        while self.window.front() == Some(&false) {
            self.window.pop_front();
        }
        rec.owner
    }

    /// The next issue number to be given out.
    pub(crate) fn mark(&self) -> u64 {
        self.next_issue
    }

    /// The issue number at the front of the window.
    fn first(&self) -> u64 {
        self.next_issue - self.window.len() as u64
    }

    /// The oldest issue number in flight, or `u64::MAX` when idle.
    pub(crate) fn oldest_inflight(&self) -> u64 {
        if self.window.is_empty() {
            u64::MAX
        } else {
            self.first()
        }
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.window.is_empty()
    }
}

/// (first device block, byte range of the bytes) per contiguous destination of a
/// [`ChunkedWrite`]. Nearly every write has one or two (a record that wraps around the
/// ring, a write across two extents): those need no heap allocation on the write path.
pub(crate) type Segments = smallvec::SmallVec<[(u64, std::ops::Range<usize>); 2]>;

/// A sequence of bytes to write to device blocks in chunks, as buffers allow.
pub(crate) struct ChunkedWrite {
    segments: Segments,
    seg: usize,
    off: usize,
    pub(crate) pending: u32,
    pub(crate) fua: bool,
}

impl ChunkedWrite {
    pub(crate) fn new(segments: Segments, fua: bool) -> Self {
        ChunkedWrite {
            segments,
            seg: 0,
            off: 0,
            pending: 0,
            fua,
        }
    }

    pub(crate) fn all_issued(&self) -> bool {
        self.seg >= self.segments.len()
    }

    pub(crate) fn done(&self) -> bool {
        self.all_issued() && self.pending == 0
    }

    /// Issues as many chunks as buffers and queue room allow. `block` is the device block
    /// size; chunks never exceed a pool buffer.
    pub(crate) fn issue<Q: QueuePair>(
        &mut self,
        data: &[u8],
        block: u32,
        qp: &mut Q,
        pool: &DmaPool,
        io: &mut IoTable,
        owner: Owner,
    ) -> Result<(), DriverError> {
        while let Some((lba, range)) = self.segments.get(self.seg) {
            if qp.in_flight() >= qp.depth() {
                break;
            }
            let Some(mut buf) = pool.alloc() else { break };
            let len = (range.len() - self.off).min(buf.capacity());
            buf.set_len(len);
            let from = range.start + self.off;
            buf.as_mut_slice().copy_from_slice(&data[from..from + len]);
            let cmd = Command::Write {
                lba: lba + (self.off / block as usize) as u64,
                buf,
                fua: self.fua,
            };
            io.submit(qp, owner, cmd)?;
            self.pending += 1;
            self.off += len;
            if self.off == range.len() {
                self.seg += 1;
                self.off = 0;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use keel_drivers::null::NullDevice;
    use keel_drivers::{BlockDevice, QpairOptions};

    use super::*;

    #[test]
    fn oldest_in_flight_follows_out_of_order_finishes() {
        let dev = NullDevice::new(512, 1 << 20).expect("null device");
        let mut qp = dev.open_qpair(&QpairOptions::depth(64)).expect("qpair");
        let mut io = IoTable::default();
        assert_eq!(io.oldest_inflight(), u64::MAX);
        assert!(io.is_idle());
        let mut tags = Vec::new();
        for _ in 0..4 {
            io.submit(&mut qp, Owner::Job(JobKind::Ckpt), Command::Flush)
                .expect("submit");
        }
        qp.kick().expect("kick");
        qp.poll(16, &mut |c| tags.push(c.tag));
        assert_eq!(tags.len(), 4);
        // Issues 0..4 are in flight; finish 2, then 0, then 3, then 1.
        let issue_of = |io: &IoTable, t: u64| io.recs[t as usize].issue;
        let by_issue: Vec<u64> = (0..4)
            .map(|i| *tags.iter().find(|&&t| issue_of(&io, t) == i).expect("tag"))
            .collect();
        assert_eq!(io.oldest_inflight(), 0);
        io.finish(by_issue[2]);
        assert_eq!(io.oldest_inflight(), 0);
        io.finish(by_issue[0]);
        assert_eq!(io.oldest_inflight(), 1);
        io.finish(by_issue[3]);
        assert_eq!(io.oldest_inflight(), 1);
        io.submit(&mut qp, Owner::Job(JobKind::Ckpt), Command::Flush)
            .expect("submit");
        assert_eq!(io.mark(), 5);
        io.finish(by_issue[1]);
        assert_eq!(io.oldest_inflight(), 4, "issue 4 is still in flight");
        let mut last = Vec::new();
        qp.kick().expect("kick");
        qp.poll(16, &mut |c| last.push(c.tag));
        io.finish(last[0]);
        assert_eq!(io.oldest_inflight(), u64::MAX);
        assert!(io.is_idle());
        // After idling, the window starts again at the next issue number.
        io.submit(&mut qp, Owner::Job(JobKind::Ckpt), Command::Flush)
            .expect("submit");
        assert_eq!(io.oldest_inflight(), 5);
    }
}
