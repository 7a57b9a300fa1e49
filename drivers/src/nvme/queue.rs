//! A submission/completion queue pair in DMA memory (NVMe Base Specification 1.4, §4.1
//! "Submission Queue & Completion Queue Definition"), and the table of command identifiers.
//!
//! ```text
//!   push(sqe) ─► SQ[tail] (volatile), tail += 1, unrung += 1     (no MMIO)
//!   ring_sq_doorbell() ─► fence, SQ tail doorbell = tail, once per burst
//!   reap(max) ─► while CQ[head].phase == expected: fence, copy entry out, head += 1
//!                (phase flips at each wrap), then CQ head doorbell = head, once
//! ```
//!
//! The queue knows nothing about BAR0: its two doorbells are [`Doorbell`]s, which a unit
//! test points at plain memory, playing the controller by reading the SQ and writing
//! completion entries with the right phase. Invariant kept by the caller: at most
//! `entries - 1` commands are outstanding, so the SQ can never overflow (a command occupies
//! at most one SQ slot until its completion is reaped, §4.1.2).

use std::ptr::{addr_of, NonNull};
use std::sync::atomic::{fence, Ordering};

use super::cmd::{CompletionEntry, SubmissionEntry};
use super::regs::Doorbell;

/// One submission queue and the completion queue it posts to.
pub struct Queue {
    qid: u16,
    entries: u16,
    sq: NonNull<SubmissionEntry>,
    cq: NonNull<CompletionEntry>,
    sq_tail: u16,
    /// SQ head as last reported by a completion entry.
    sq_head: u16,
    cq_head: u16,
    /// Phase Tag expected of a new completion entry (starts at 1, flips at each wrap).
    phase: bool,
    sq_doorbell: Doorbell,
    cq_doorbell: Doorbell,
    /// Entries pushed since the SQ doorbell last rang.
    unrung: u32,
    sq_doorbell_writes: u64,
    cq_doorbell_writes: u64,
}

// SAFETY: the queue's memory is owned by whoever owns the Queue (Queue::new's contract);
// the Queue moves between threads as a whole and is never shared.
unsafe impl Send for Queue {}

impl Queue {
    /// A queue over `entries` submission and completion entries.
    ///
    /// # Safety
    /// `sq` and `cq` must point to `entries` entries each of memory that the controller
    /// (or a test playing it) and this queue alone use, valid until the queue is dropped
    /// and, on a real controller, until the queue has been deleted or the controller
    /// disabled. The completion entries must be zeroed (phase 0).
    pub unsafe fn new(
        qid: u16,
        entries: u16,
        sq: NonNull<SubmissionEntry>,
        cq: NonNull<CompletionEntry>,
        sq_doorbell: Doorbell,
        cq_doorbell: Doorbell,
    ) -> Self {
        assert!(entries >= 2, "a queue needs at least 2 entries");
        Queue {
            qid,
            entries,
            sq,
            cq,
            sq_tail: 0,
            sq_head: 0,
            cq_head: 0,
            phase: true,
            sq_doorbell,
            cq_doorbell,
            unrung: 0,
            sq_doorbell_writes: 0,
            cq_doorbell_writes: 0,
        }
    }

    /// The queue identifier.
    pub fn qid(&self) -> u16 {
        self.qid
    }

    /// Entries of each ring.
    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// Most commands outstanding at once.
    pub fn capacity(&self) -> u16 {
        self.entries - 1
    }

    fn next(&self, i: u16) -> u16 {
        if i + 1 == self.entries {
            0
        } else {
            i + 1
        }
    }

    /// Writes `sqe` at the tail. Nothing reaches the device until
    /// [`ring_sq_doorbell`](Queue::ring_sq_doorbell). Panics when the SQ is full (the
    /// caller keeps at most `capacity` commands outstanding).
    pub fn push(&mut self, sqe: SubmissionEntry) {
        let next = self.next(self.sq_tail);
        assert!(
            next != self.sq_head,
            "SQ {} overflow: more than {} commands outstanding",
            self.qid,
            self.capacity()
        );
        // `sq_tail` < entries: inside the SQ memory (new's contract); the slot is not
        // read by the controller until the doorbell says so. Volatile: the device reads it.
        // SAFETY: the SQ slot is in bounds and not yet the device's.
        unsafe {
            self.sq
                .as_ptr()
                .add(usize::from(self.sq_tail))
                .write_volatile(sqe)
        };
        self.sq_tail = next;
        self.unrung += 1;
    }

    /// Entries pushed and not yet announced to the device.
    pub fn unrung(&self) -> u32 {
        self.unrung
    }

    /// The one place a submission doorbell is rung: orders the SQ entry writes before the
    /// doorbell write, writes the new tail, counts it. Does nothing when nothing was pushed.
    pub fn ring_sq_doorbell(&mut self) {
        if self.unrung == 0 {
            return;
        }
        // Every SQE written above must be visible to the device before it sees the tail.
        fence(Ordering::SeqCst);
        self.sq_doorbell.write(u32::from(self.sq_tail));
        self.unrung = 0;
        self.sq_doorbell_writes += 1;
    }

    /// Hands up to `max` new completion entries to `f`, in the order the device posted
    /// them, then writes the CQ head doorbell once if any were taken. Returns how many.
    pub fn reap(&mut self, max: u32, mut f: impl FnMut(CompletionEntry)) -> u32 {
        let mut n = 0;
        while n < max {
            // `cq_head` < entries: inside the CQ memory (new's contract). Only the
            // status field is read first: the device writes the entry whole, phase last in
            // effect, and the fence below orders the rest of the read after it.
            // SAFETY: the CQ slot is in bounds.
            let slot = unsafe { self.cq.as_ptr().add(usize::from(self.cq_head)) };
            // SAFETY: as above; addr_of! makes no reference to device-written memory.
            let status = unsafe { addr_of!((*slot).status).read_volatile() };
            if (status & 1 != 0) != self.phase {
                break;
            }
            fence(Ordering::Acquire);
            // SAFETY: as above.
            let entry = unsafe { slot.read_volatile() };
            self.cq_head = self.next(self.cq_head);
            if self.cq_head == 0 {
                self.phase = !self.phase;
            }
            self.sq_head = entry.sq_head % self.entries;
            f(entry);
            n += 1;
        }
        if n > 0 {
            self.cq_doorbell.write(u32::from(self.cq_head));
            self.cq_doorbell_writes += 1;
        }
        n
    }

    /// SQ doorbell writes so far.
    pub fn sq_doorbell_writes(&self) -> u64 {
        self.sq_doorbell_writes
    }

    /// CQ doorbell writes so far.
    pub fn cq_doorbell_writes(&self) -> u64 {
        self.cq_doorbell_writes
    }
}

/// Command identifiers of one queue: a free list over `capacity` slots, each holding the
/// state of the command that owns it until its completion comes back (in any order).
pub struct Cids<T> {
    slots: Vec<Option<T>>,
    free: Vec<u16>,
}

impl<T> Cids<T> {
    /// `capacity` identifiers, 0..capacity, handed out lowest first.
    pub fn new(capacity: u16) -> Self {
        Cids {
            slots: (0..capacity).map(|_| None).collect(),
            free: (0..capacity).rev().collect(),
        }
    }

    /// Takes a free identifier for `state`; `None` when all are in use.
    pub fn alloc(&mut self, state: T) -> Option<u16> {
        let cid = self.free.pop()?;
        self.slots[usize::from(cid)] = Some(state);
        Some(cid)
    }

    /// Frees `cid`, returning its state; `None` if it was not in use (a completion for a
    /// command we did not send: a device fault the caller reports).
    pub fn release(&mut self, cid: u16) -> Option<T> {
        let state = self.slots.get_mut(usize::from(cid))?.take()?;
        self.free.push(cid);
        Some(state)
    }

    /// Identifiers in use.
    pub fn in_use(&self) -> u16 {
        (self.slots.len() - self.free.len()) as u16
    }

    /// Identifiers free.
    pub fn available(&self) -> u16 {
        self.free.len() as u16
    }

    /// The commands in use, with their identifiers.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i as u16, s)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::nvme::cmd::NvmOpcode;

    /// Plays a controller over plain memory: reads SQ entries, posts completions.
    pub(crate) struct FakeController {
        pub sq: Vec<SubmissionEntry>,
        pub cq: Vec<CompletionEntry>,
        pub sq_db: Box<u32>,
        pub cq_db: Box<u32>,
        pub sq_head: u16,
        pub cq_tail: u16,
        pub phase: bool,
    }

    impl FakeController {
        pub(crate) fn new(entries: u16) -> Box<Self> {
            Box::new(FakeController {
                sq: vec![SubmissionEntry::default(); usize::from(entries)],
                cq: vec![CompletionEntry::default(); usize::from(entries)],
                sq_db: Box::new(0),
                cq_db: Box::new(0),
                sq_head: 0,
                cq_tail: 0,
                phase: true,
            })
        }

        pub(crate) fn queue(&mut self) -> Queue {
            let entries = self.sq.len() as u16;
            // The doorbells are plain u32s in boxes that outlive the queue (the test
            // keeps the controller alive); nothing else writes them.
            // SAFETY: the doorbells are valid and unshared.
            let (sq_db, cq_db) = unsafe {
                (
                    Doorbell::new(NonNull::from(&mut *self.sq_db)),
                    Doorbell::new(NonNull::from(&mut *self.cq_db)),
                )
            };
            // SAFETY: sq and cq hold `entries` entries each, zeroed, and outlive the queue.
            unsafe {
                Queue::new(
                    1,
                    entries,
                    NonNull::new(self.sq.as_mut_ptr()).unwrap(),
                    NonNull::new(self.cq.as_mut_ptr()).unwrap(),
                    sq_db,
                    cq_db,
                )
            }
        }

        /// Takes every SQ entry up to the doorbell's tail.
        pub(crate) fn fetch(&mut self) -> Vec<SubmissionEntry> {
            let tail = *self.sq_db as u16;
            let mut out = Vec::new();
            while self.sq_head != tail {
                out.push(self.sq[usize::from(self.sq_head)]);
                self.sq_head = (self.sq_head + 1) % self.sq.len() as u16;
            }
            out
        }

        /// Posts a completion for `cid` with status field `status`.
        pub(crate) fn complete(&mut self, cid: u16, status: u16) {
            let slot = usize::from(self.cq_tail);
            self.cq[slot] = CompletionEntry {
                sq_head: self.sq_head,
                sq_id: 1,
                cid,
                status: (status << 1) | u16::from(self.phase),
                ..Default::default()
            };
            self.cq_tail = (self.cq_tail + 1) % self.cq.len() as u16;
            if self.cq_tail == 0 {
                self.phase = !self.phase;
            }
        }
    }

    fn sqe(cid: u16) -> SubmissionEntry {
        let mut e = SubmissionEntry::read_write(false, 1, u64::from(cid), 1, false);
        e.set_cid(cid);
        e
    }

    #[test]
    fn doorbell_rings_once_per_burst() {
        let mut ctl = FakeController::new(8);
        let mut q = ctl.queue();
        for cid in 0..5 {
            q.push(sqe(cid));
        }
        assert_eq!(q.unrung(), 5);
        assert_eq!(
            *ctl.sq_db, 0,
            "nothing reaches the device before the doorbell"
        );
        q.ring_sq_doorbell();
        q.ring_sq_doorbell(); // nothing new: no write
        assert_eq!(q.sq_doorbell_writes(), 1);
        assert_eq!(*ctl.sq_db, 5);
        let got = ctl.fetch();
        assert_eq!(
            got.iter().map(|e| e.cid()).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        assert_eq!(got[0].opcode(), NvmOpcode::Read as u8);
    }

    #[test]
    fn completions_out_of_order_matched_by_cid_across_wraps() {
        let mut ctl = FakeController::new(4);
        let mut q = ctl.queue();
        let mut cids: Cids<u64> = Cids::new(q.capacity());
        let mut done = Vec::new();
        // Ten rounds of three commands through a 4-entry ring: the SQ and the CQ wrap and
        // the phase flips several times; each round completes in reverse order.
        for round in 0..10u64 {
            let mut sent = Vec::new();
            for i in 0..3 {
                let cid = cids.alloc(round * 10 + i).unwrap();
                q.push(sqe(cid));
                sent.push(cid);
            }
            assert!(cids.alloc(99).is_none(), "capacity is entries - 1");
            q.ring_sq_doorbell();
            let fetched = ctl.fetch();
            assert_eq!(fetched.len(), 3);
            assert_eq!(q.reap(8, |_| panic!("no completion posted yet")), 0);
            for e in fetched.iter().rev() {
                ctl.complete(e.cid(), 0);
            }
            let n = q.reap(8, |c| {
                assert!(c.status().is_success());
                done.push(cids.release(c.cid).unwrap());
            });
            assert_eq!(n, 3);
            assert_eq!(
                *ctl.cq_db,
                u32::from(ctl.cq_tail),
                "CQ head doorbell follows"
            );
            assert_eq!(cids.in_use(), 0);
        }
        assert_eq!(done.len(), 30);
        assert_eq!(&done[..3], &[2, 1, 0]);
        assert_eq!(q.sq_doorbell_writes(), 10);
        assert_eq!(q.cq_doorbell_writes(), 10);
    }

    #[test]
    fn reap_respects_max_and_resumes() {
        let mut ctl = FakeController::new(8);
        let mut q = ctl.queue();
        for cid in 0..6 {
            q.push(sqe(cid));
        }
        q.ring_sq_doorbell();
        ctl.fetch();
        for cid in [3, 0, 5, 1, 4, 2] {
            ctl.complete(cid, 0);
        }
        let mut got = Vec::new();
        assert_eq!(q.reap(4, |c| got.push(c.cid)), 4);
        assert_eq!(q.reap(4, |c| got.push(c.cid)), 2);
        assert_eq!(got, [3, 0, 5, 1, 4, 2]);
        assert_eq!(q.cq_doorbell_writes(), 2);
    }

    #[test]
    fn error_status_comes_through() {
        let mut ctl = FakeController::new(4);
        let mut q = ctl.queue();
        q.push(sqe(0));
        q.ring_sq_doorbell();
        ctl.fetch();
        ctl.complete(0, (2 << 8) | 0x80);
        let mut st = None;
        q.reap(1, |c| st = Some(c.status()));
        assert_eq!(st, Some(crate::NvmeStatus::WRITE_FAULT));
    }

    #[test]
    #[should_panic(expected = "overflow")]
    fn a_full_queue_is_a_programmer_error() {
        let mut ctl = FakeController::new(4);
        let mut q = ctl.queue();
        for cid in 0..4 {
            q.push(sqe(cid));
        }
    }

    #[test]
    fn cids_report_unknown_and_reuse() {
        let mut cids: Cids<&str> = Cids::new(2);
        assert_eq!(cids.alloc("a"), Some(0));
        assert_eq!(cids.alloc("b"), Some(1));
        assert_eq!(cids.alloc("c"), None);
        assert_eq!(cids.release(1), Some("b"));
        assert_eq!(cids.release(1), None, "a second completion for one cid");
        assert_eq!(cids.release(7), None, "a cid never handed out");
        assert_eq!(cids.alloc("d"), Some(1));
        assert_eq!(
            cids.iter().map(|(c, s)| (c, *s)).collect::<Vec<_>>(),
            [(0, "a"), (1, "d")]
        );
        assert_eq!((cids.in_use(), cids.available()), (2, 0));
    }
}
