//! An I/O queue pair on the controller: Keel commands in, NVMe commands out, completions
//! matched by command id and joined back into one [`Completion`] per Keel command.
//!
//! ```text
//!  submit(tag, cmd): failed? full? validate, write-zeroes supported?, buffer translated?,
//!                    injected fault? ─► slot (owns the command and its buffer) ─► pending
//!  push_pending:     per slot, one NVMe command per MDTS piece (65536 blocks for write
//!                    zeroes) while command ids are free: cid ─► SQE + PRPs ─► SQ
//!  kick / poll:      push_pending, one SQ doorbell for the burst; reap CQEs (one CQ
//!                    doorbell), cid ─► slot; the last piece done ─► ready ─► on_done
//! ```
//!
//! A command that outlives `io_timeout` fails the queue pair: every command in it completes
//! with [`NvmeError::Timeout`]; the buffers of commands the device may still write stay
//! here (never handed back while DMA could land in them) until the queue is deleted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::cmd::{SubmissionEntry, NLB_MAX};
use super::ctrlr::{Controller, NSID};
use super::error::NvmeError;
use super::mem::{Chunk, Mapper};
use super::ns::command_max_bytes;
use super::prp::{self, PAGE_BYTES};
use super::queue::{Cids, Queue};
use crate::command::{Command, Completion, Op};
use crate::dma::DmaBuf;
use crate::error::{CmdSlot, DriverError, Rejected};
use crate::geometry::Geometry;
use crate::qpair::{validate, IoStats, QpairOptions, QueuePair};

/// Most NVMe commands in flight on one queue (and so SQ/CQ entries - 1).
const CIDS_MAX: u32 = 1023;

/// A Keel command in flight.
struct Slot {
    tag: u64,
    cmd: Command,
    op: Op,
    lba: u64,
    /// Bytes (read, write), blocks (write zeroes) or 1 (flush) to issue in all.
    total: u64,
    /// How much of `total` has been issued.
    issued: u64,
    /// NVMe commands issued and not completed.
    outstanding: u32,
    /// The first failure; once set nothing more is issued.
    error: Option<DriverError>,
}

/// An NVMe command in flight: which slot it serves.
struct Sub {
    slot: u32,
    opcode: u8,
    lba: u64,
    at: Instant,
}

/// How a buffer's bytes get device addresses.
#[derive(Clone, Copy)]
enum Xlate {
    /// Physical addresses of the region (pagemap).
    Pagemap,
    /// The region is mapped at this IOVA.
    Iova(u64),
}

/// A queue pair of an [`NvmeDevice`](super::NvmeDevice).
pub struct NvmeQpair {
    ctrlr: Arc<Controller>,
    queue: Queue,
    qid: u16,
    geometry: Geometry,
    depth: u32,
    /// Bytes one NVMe Read/Write carries (MDTS).
    cmd_max_bytes: u64,
    cids: Cids<Sub>,
    slots: Vec<Option<Slot>>,
    free_slots: Vec<u32>,
    /// Slots with pieces still to issue, oldest first.
    pending: VecDeque<u32>,
    /// Finished commands not yet handed to `poll`'s callback.
    ready: VecDeque<Completion>,
    /// PRP list memory, `list_stride` bytes per cid (an Option only so Drop can leak it).
    lists: Option<Chunk>,
    list_stride: usize,
    /// SQ and CQ memory (must outlive the queue on the device).
    rings: Option<Chunk>,
    /// IOVAs of regions seen (VFIO), to avoid the device-wide lock per command.
    iovas: Vec<(u32, u64)>,
    /// When the oldest NVMe command in flight times out (None: nothing in flight).
    deadline: Option<Instant>,
    failed: Option<String>,
    /// Commands the device might still write into (after a timeout), held until the queue
    /// is deleted.
    quarantine: Vec<Command>,
    /// Completions taken in one reap (preallocated: no allocation per poll).
    reaped: Vec<(Sub, u16, crate::status::NvmeStatus)>,
    stats: IoStats,
}

impl NvmeQpair {
    pub(super) fn open(ctrlr: Arc<Controller>, opts: &QpairOptions) -> Result<Self, DriverError> {
        let cfg = &ctrlr.config;
        if opts.depth == 0 {
            return Err(DriverError::Config("queue depth must be at least 1".into()));
        }
        let depth = opts.depth.min(cfg.io_queue_depth).min(CIDS_MAX);
        if depth < opts.depth {
            log::info!(
                "nvme {}: queue depth {} capped at {depth}",
                ctrlr.pci,
                opts.depth
            );
        }
        for r in &opts.regions {
            ctrlr
                .mapper
                .register(r)
                .map_err(|e| e.open(format!("nvme {}: DMA region {}", ctrlr.pci, r.id())))?;
        }
        let block_size = ctrlr.ns.block_size().expect("checked at bring-up");
        let geometry = super::ns::geometry(
            &ctrlr.ident,
            &ctrlr.ns,
            ctrlr.vwc_enabled,
            cfg.max_transfer_bytes,
        );
        let cmd_max_bytes = u64::from(command_max_bytes(&ctrlr.ident, block_size));
        let split = u64::from(geometry.max_transfer_bytes)
            .div_ceil(cmd_max_bytes)
            .max(1);
        let cids = (u64::from(depth) * split)
            .min(u64::from(CIDS_MAX))
            .min(u64::from(ctrlr.mqes - 1)) as u16;
        let entries = cids + 1;
        // Worst case list: MDTS pages + 1 (unaligned start), plus chain pointers.
        let pages = cmd_max_bytes / PAGE_BYTES + 1;
        let list_slots = pages + pages / (prp::ENTRIES_PER_PAGE as u64 - 1) + 2;
        let list_stride = (list_slots as usize * 8).next_multiple_of(64);
        let sq_bytes = (usize::from(entries) * 64).next_multiple_of(4096);
        let cq_bytes = (usize::from(entries) * 16).next_multiple_of(4096);
        let what = || format!("nvme {} I/O queue pair", ctrlr.pci);
        let rings = ctrlr
            .chunks
            .alloc(sq_bytes + cq_bytes)
            .map_err(|e| e.open(what()))?;
        let lists = ctrlr
            .chunks
            .alloc(usize::from(cids) * list_stride)
            .map_err(|e| e.open(what()))?;
        let qid = ctrlr.alloc_qid().map_err(|e| e.open(what()))?;
        let (sq_dev, cq_dev) = (rings.dev(), rings.dev() + sq_bytes as u64);
        if let Err(e) = ctrlr.admin_exec(SubmissionEntry::create_io_cq(qid, entries, cq_dev)) {
            ctrlr.free_qid(qid);
            return Err(e.open(format!("{}: create I/O CQ {qid}", what())));
        }
        if let Err(e) = ctrlr.admin_exec(SubmissionEntry::create_io_sq(qid, entries, sq_dev, qid)) {
            let _ = ctrlr.admin_exec(SubmissionEntry::delete_io_cq(qid));
            ctrlr.free_qid(qid);
            return Err(e.open(format!("{}: create I/O SQ {qid}", what())));
        }
        // The rings chunk holds `entries` SQ entries, then at sq_bytes `entries`
        // zeroed CQ entries; it stays in this queue pair until Drop has deleted the queues
        // (or is leaked when that fails). The doorbells are this qid's, used by no one else.
        // SAFETY: the rings and doorbells outlive the queue and are its alone.
        let queue = unsafe {
            Queue::new(
                qid,
                entries,
                rings.ptr().cast(),
                rings.ptr().add(sq_bytes).cast(),
                ctrlr.regs.doorbell(qid, false, ctrlr.stride),
                ctrlr.regs.doorbell(qid, true, ctrlr.stride),
            )
        };
        log::debug!(
            "nvme {}: qid {qid}: depth {depth}, {entries} entries, {cids} cids",
            ctrlr.pci
        );
        Ok(NvmeQpair {
            queue,
            qid,
            geometry,
            depth,
            cmd_max_bytes,
            cids: Cids::new(cids),
            slots: (0..depth).map(|_| None).collect(),
            free_slots: (0..depth).rev().collect(),
            pending: VecDeque::with_capacity(depth as usize),
            ready: VecDeque::with_capacity(depth as usize),
            lists: Some(lists),
            list_stride,
            reaped: Vec::with_capacity(usize::from(cids)),
            rings: Some(rings),
            iovas: Vec::new(),
            deadline: None,
            failed: None,
            quarantine: Vec::with_capacity(depth as usize),
            stats: IoStats::default(),
            ctrlr,
        })
    }

    /// The NVMe queue id.
    pub fn qid(&self) -> u16 {
        self.qid
    }

    /// SQ doorbell writes so far (one per burst of submissions).
    pub fn sq_doorbell_writes(&self) -> u64 {
        self.queue.sq_doorbell_writes()
    }

    /// Why the queue pair stopped, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    fn xlate(mapper: &Mapper, iovas: &mut Vec<(u32, u64)>, buf: &DmaBuf) -> Option<Xlate> {
        let region = buf.region();
        match mapper {
            Mapper::Pagemap => region.has_device_addrs().then_some(Xlate::Pagemap),
            Mapper::Vfio(_) => {
                let id = region.id();
                if let Some(&(_, iova)) = iovas.iter().find(|(r, _)| *r == id) {
                    return Some(Xlate::Iova(iova));
                }
                // Not registered at open: map it now, once (QpairOptions: "buffers from
                // other memory still work, by the slower path").
                let iova = match mapper.translate(region, 0) {
                    Some(iova) => iova,
                    None => {
                        mapper.register(region).ok()?;
                        mapper.translate(region, 0)?
                    }
                };
                iovas.push((id, iova));
                Some(Xlate::Iova(iova))
            }
        }
    }

    /// Issues NVMe commands for pending slots while command ids are free.
    fn push_pending(&mut self) {
        while let Some(&s) = self.pending.front() {
            if self.cids.available() == 0 {
                return;
            }
            self.issue_one(s);
            let slot = self.slots[s as usize].as_ref().expect("pending slot");
            if slot.issued >= slot.total || slot.error.is_some() {
                self.pending.pop_front();
                if slot.outstanding == 0 {
                    self.finish(s);
                }
            }
        }
    }

    /// Issues the next piece of slot `s`.
    fn issue_one(&mut self, s: u32) {
        let bs = u64::from(self.geometry.block_size);
        let xlate = match &self.slots[s as usize].as_ref().expect("slot").cmd {
            Command::Read { buf, .. } | Command::Write { buf, .. } => {
                Self::xlate(&self.ctrlr.mapper, &mut self.iovas, buf)
            }
            _ => None,
        };
        let cmd_max = self.cmd_max_bytes;
        let slot = self.slots[s as usize].as_mut().expect("slot");
        let (mut sqe, piece, lba, data) = match &slot.cmd {
            Command::Read { buf, .. } | Command::Write { buf, .. } => {
                let off = slot.issued;
                let len = cmd_max.min(slot.total - off);
                let lba = slot.lba + off / bs;
                let fua = matches!(slot.cmd, Command::Write { fua: true, .. });
                let write = slot.op == Op::Write;
                let sqe = SubmissionEntry::read_write(write, NSID, lba, (len / bs) as u32, fua);
                (sqe, len, lba, Some((buf, off, len)))
            }
            Command::WriteZeroes { .. } => {
                let blocks = u64::from(NLB_MAX).min(slot.total - slot.issued);
                let lba = slot.lba + slot.issued;
                (
                    SubmissionEntry::write_zeroes(NSID, lba, blocks as u32),
                    blocks,
                    lba,
                    None,
                )
            }
            Command::Flush => (SubmissionEntry::flush(NSID), 1, 0, None),
        };
        let now = Instant::now();
        let cid = self
            .cids
            .alloc(Sub {
                slot: s,
                opcode: sqe.opcode(),
                lba,
                at: now,
            })
            .expect("caller checked a cid is free");
        if let Some((buf, off, len)) = data {
            let region = buf.region();
            let base = buf.region_offset() as u64 + off;
            let dev = |o: u64| match xlate? {
                Xlate::Pagemap => region.device_addr((base + o) as usize),
                Xlate::Iova(iova) => Some(iova + base + o),
            };
            let lists = self.lists.as_ref().expect("lists live until drop");
            let list_off = usize::from(cid) * self.list_stride;
            // The list area of this cid lies inside the lists chunk
            // (cids * list_stride bytes, 64-byte aligned slots); no command in flight uses
            // it (the cid was free) and the device reads it only after the doorbell.
            // SAFETY: the list area is this command's alone.
            let list = unsafe {
                std::slice::from_raw_parts_mut(
                    lists.ptr().as_ptr().add(list_off).cast::<u64>(),
                    self.list_stride / 8,
                )
            };
            match prp::build(len, dev, list, lists.dev() + list_off as u64) {
                Ok(p) => sqe.set_prp(p.prp1, p.prp2),
                Err(e) => {
                    // Checked at submit, so a bug in translation: never send it.
                    log::error!("nvme qid {}: PRP for {}: {e}", self.qid, slot.op);
                    self.cids.release(cid);
                    slot.error = Some(
                        NvmeError::Untranslated {
                            op: slot.op,
                            addr: buf.as_ptr() as u64,
                        }
                        .io(slot.op, slot.lba),
                    );
                    return;
                }
            }
        }
        sqe.set_cid(cid);
        self.queue.push(sqe);
        slot.issued += piece;
        slot.outstanding += 1;
        if self.deadline.is_none() {
            self.deadline = Some(now + self.ctrlr.config.io_timeout);
        }
    }

    /// Moves a slot whose every piece is done to `ready`.
    fn finish(&mut self, s: u32) {
        let slot = self.slots[s as usize].take().expect("finished slot");
        self.free_slots.push(s);
        let bytes = match &slot.cmd {
            Command::WriteZeroes { blocks, .. } => {
                u64::from(*blocks) * u64::from(self.geometry.block_size)
            }
            c => c.data_len() as u64,
        };
        let result = match slot.error {
            Some(e) => Err(e),
            None => Ok(()),
        };
        self.stats.count(slot.op, bytes, result.is_ok());
        self.ready.push_back(Completion {
            tag: slot.tag,
            op: slot.op,
            result,
            buf: slot.cmd.into_buf(),
        });
    }

    fn reap(&mut self) {
        let qid = self.qid;
        let mut unknown = None;
        let mut done = std::mem::take(&mut self.reaped);
        // `done` is bounded by the cids in flight; reap at most that many.
        let max = u32::from(self.cids.in_use());
        let cids = &mut self.cids;
        self.queue.reap(max, |c| match cids.release(c.cid) {
            Some(sub) => done.push((sub, c.cid, c.status())),
            None => unknown = Some(c.cid),
        });
        for (sub, cid, status) in done.drain(..) {
            if self.failed.is_some() {
                continue; // the slot was completed with the failure already
            }
            let slot = self.slots[sub.slot as usize].as_mut().expect("slot of cid");
            slot.outstanding -= 1;
            if !status.is_success() && slot.error.is_none() {
                log::warn!(
                    "nvme {}: {} (opcode {:#04x}, qid {qid}, cid {cid}) at lba {}: {status}",
                    self.ctrlr.pci,
                    slot.op,
                    sub.opcode,
                    sub.lba
                );
                slot.error = Some(DriverError::Device {
                    op: slot.op,
                    lba: sub.lba,
                    status,
                    cmd: Some(CmdSlot {
                        opcode: sub.opcode,
                        qid,
                        cid,
                    }),
                });
            }
            let whole = slot.issued >= slot.total || slot.error.is_some();
            if slot.outstanding == 0 && whole && !self.pending.contains(&sub.slot) {
                self.finish(sub.slot);
            }
        }
        self.reaped = done;
        if let Some(cid) = unknown {
            self.fail(NvmeError::UnknownCid { qid, cid }.to_string());
        }
    }

    fn check_timeouts(&mut self) {
        let Some(deadline) = self.deadline else {
            return;
        };
        let now = Instant::now();
        if now < deadline {
            return;
        }
        let timeout = self.ctrlr.config.io_timeout;
        let oldest = self.cids.iter().min_by_key(|(_, s)| s.at);
        match oldest {
            None => self.deadline = None,
            Some((cid, sub)) if now.duration_since(sub.at) >= timeout => {
                let op = self.slots[sub.slot as usize]
                    .as_ref()
                    .map_or(Op::Flush, |s| s.op);
                let err = NvmeError::Timeout {
                    op,
                    opcode: sub.opcode,
                    qid: self.qid,
                    cid,
                    ms: timeout.as_millis() as u64,
                };
                log::error!("nvme {}: {err}", self.ctrlr.pci);
                self.fail(err.to_string());
            }
            Some((_, sub)) => self.deadline = Some(sub.at + timeout),
        }
    }

    /// Fails the queue pair: every command in it completes with an error now; the buffers
    /// the device may still use stay in quarantine.
    fn fail(&mut self, reason: String) {
        if self.failed.is_some() {
            return;
        }
        self.failed = Some(reason.clone());
        self.pending.clear();
        for s in 0..self.slots.len() {
            let Some(slot) = self.slots[s].take() else {
                continue;
            };
            self.free_slots.push(s as u32);
            let error = NvmeError::QpairFailed {
                qid: self.qid,
                reason: reason.clone(),
            }
            .io(slot.op, slot.lba);
            let buf = if slot.outstanding > 0 {
                self.quarantine.push(slot.cmd);
                None
            } else {
                slot.cmd.into_buf()
            };
            self.stats.count(slot.op, 0, false);
            self.ready.push_back(Completion {
                tag: slot.tag,
                op: slot.op,
                result: Err(error),
                buf,
            });
        }
    }
}

impl std::fmt::Debug for NvmeQpair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmeQpair")
            .field("qid", &self.qid)
            .field("depth", &self.depth)
            .field("in_flight", &self.in_flight())
            .field("failed", &self.failed)
            .finish()
    }
}

impl QueuePair for NvmeQpair {
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    fn depth(&self) -> u32 {
        self.depth
    }

    fn in_flight(&self) -> u32 {
        self.depth - self.free_slots.len() as u32
    }

    fn submit(&mut self, tag: u64, cmd: Command) -> Result<(), Rejected> {
        let op = cmd.op();
        let reject = |error, cmd| Err(Rejected { error, cmd });
        if let Some(reason) = &self.failed {
            let error = NvmeError::QpairFailed {
                qid: self.qid,
                reason: reason.clone(),
            }
            .io(op, cmd.lba());
            return reject(error, cmd);
        }
        let Some(&s) = self.free_slots.last() else {
            let depth = self.depth;
            return reject(DriverError::QueueFull { op, depth }, cmd);
        };
        if let Err(error) = validate(&self.geometry, &cmd) {
            return reject(error, cmd);
        }
        if op == Op::WriteZeroes && !self.geometry.write_zeroes {
            let error = DriverError::Unsupported { op, driver: "nvme" };
            return reject(error, cmd);
        }
        if let Command::Read { buf, .. } | Command::Write { buf, .. } = &cmd {
            if Self::xlate(&self.ctrlr.mapper, &mut self.iovas, buf).is_none() {
                let addr = buf.as_ptr() as u64;
                return reject(NvmeError::Untranslated { op, addr }.io(op, cmd.lba()), cmd);
            }
        }
        let total = match &cmd {
            Command::Read { buf, .. } | Command::Write { buf, .. } => buf.len() as u64,
            Command::WriteZeroes { blocks, .. } => u64::from(*blocks),
            Command::Flush => 1,
        };
        let lba = cmd.lba();
        self.free_slots.pop();
        let injected = self.ctrlr.check_fault(op);
        self.slots[s as usize] = Some(Slot {
            tag,
            cmd,
            op,
            lba,
            total,
            issued: 0,
            outstanding: 0,
            error: injected.map(|status| DriverError::Device {
                op,
                lba,
                status,
                cmd: None,
            }),
        });
        if injected.is_some() {
            self.finish(s);
        } else {
            self.pending.push_back(s);
            self.push_pending();
        }
        Ok(())
    }

    fn kick(&mut self) -> Result<(), DriverError> {
        if self.failed.is_none() {
            self.push_pending();
            self.queue.ring_sq_doorbell();
        }
        Ok(())
    }

    fn poll(&mut self, max: u32, on_done: &mut dyn FnMut(Completion)) -> u32 {
        let _ = self.kick();
        if self.cids.in_use() > 0 {
            self.reap();
            if self.failed.is_none() {
                // Freed cids let waiting pieces go, in the same poll.
                self.push_pending();
                self.queue.ring_sq_doorbell();
                self.check_timeouts();
            }
        }
        let mut n = 0;
        while n < max {
            let Some(c) = self.ready.pop_front() else {
                break;
            };
            on_done(c);
            n += 1;
        }
        n
    }

    fn stats(&self) -> IoStats {
        self.stats
    }
}

impl Drop for NvmeQpair {
    fn drop(&mut self) {
        // Let the device finish what it has (bounded by the I/O timeout).
        let start = Instant::now();
        while self.cids.in_use() > 0 && start.elapsed() < self.ctrlr.config.io_timeout {
            let mut done = Vec::new();
            let max = u32::from(self.cids.in_use());
            let cids = &mut self.cids;
            self.queue.reap(max, |c| {
                done.push(cids.release(c.cid).is_some());
            });
            if done.is_empty() {
                std::hint::spin_loop();
            }
        }
        let qid = self.qid;
        let deleted = self
            .ctrlr
            .admin_exec(SubmissionEntry::delete_io_sq(qid))
            .and_then(|_| self.ctrlr.admin_exec(SubmissionEntry::delete_io_cq(qid)));
        match deleted {
            Ok(_) => self.ctrlr.free_qid(qid),
            Err(e) => {
                // The device may still own the rings and the quarantined buffers: keep
                // them (and the qid) for the life of the process.
                log::error!(
                    "nvme {}: delete of queue {qid}: {e}; leaking its memory",
                    self.ctrlr.pci
                );
                if let Some(r) = self.rings.take() {
                    r.leak();
                }
                if let Some(l) = self.lists.take() {
                    l.leak();
                }
                for c in self.quarantine.drain(..) {
                    std::mem::forget(c);
                }
                for s in self.slots.iter_mut() {
                    if let Some(slot) = s.take() {
                        std::mem::forget(slot.cmd);
                    }
                }
            }
        }
    }
}
