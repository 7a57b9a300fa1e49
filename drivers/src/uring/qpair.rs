//! One io_uring instance per queue pair: the slab of commands in flight, building their
//! SQEs, batching submissions and turning CQEs back into completions.
//!
//! A command is usually one SQE ([`sqe`](super::sqe) builds them); a write-zeroes done by
//! writing zeroes (where `fallocate(ZERO_RANGE)` is refused) is one write per max transfer,
//! and its slot counts them so that exactly one completion comes back, carrying the first
//! error.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use io_uring::{types, IoUring};

use crate::command::{Command, Completion, Op};
use crate::dma::{DmaBuf, DmaPool, DmaRegion, DmaSource, PoolConfig};
use crate::error::{DriverError, Rejected};
use crate::geometry::Geometry;
use crate::qpair::{validate, IoStats, QpairOptions, QueuePair};

use super::sqe::{self, Next};

/// Most entries of one ring (the kernel's IORING_MAX_ENTRIES).
const DEPTH_MAX: u32 = 32_768;
/// Most fixed buffers of one ring (the kernel's IORING_MAX_REG_BUFFERS).
const FIXED_BUFS_MAX: usize = 1 << 14;
/// Largest fixed buffer the kernel registers (io_uring/rsrc.c refuses more than 1 GiB).
const FIXED_BUF_BYTES_MAX: usize = 1 << 30;
/// Most writes one zero-writing write-zeroes keeps in flight, so that a large one does not
/// hold up the commands behind it.
const ZERO_WRITES_IN_FLIGHT_MAX: u32 = 4;
/// A drop waits for the kernel in steps of this long...
const DROP_WAIT_STEP: Duration = Duration::from_millis(100);
/// ...and gives up after this many steps (or transient failures) without a completion.
const DROP_WAIT_STEPS_MAX: u32 = 600;

/// Empty polls in a row, with commands in flight, after which a poll gives up the CPU.
///
/// The kernel finishes some commands on threads of its own (the completion of an
/// `RWF_DSYNC` write on a file, the file system's journal, io-wq workers). When one of
/// them is queued on the CPU this thread polls on, it runs only once this thread leaves
/// the CPU, which a thread that polls in user space does at the scheduler's next tick:
/// 4 ms at 250 Hz. Measured on a 2-core machine, a QD1 FUA write on a file took 4 ms in
/// most runs without this (257 to 3,940 IOPS), 100 to 130 µs with it (7,300 to 9,400).
const EMPTY_POLLS_PER_YIELD: u32 = 16;

/// `io_uring_enter` failed for lack of a resource or a signal: retry on the next kick.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

/// A command in flight. Its buffer stays here until the kernel has posted the last CQE.
struct Slot {
    tag: u64,
    cmd: Command,
    next: Next,
    /// SQEs pushed whose CQE has not been reaped.
    live: u32,
    /// In `pending` (to be pushed when the ring has room).
    queued: bool,
    /// The first error; once set, nothing more is pushed.
    error: Option<DriverError>,
}

/// What pushing a command's work ended on.
enum Pushed {
    /// All of its SQEs are pushed.
    All,
    /// It has its most zero writes in flight; it is pushed more as they complete.
    SlotCap,
    /// No room in the submission queue, or as many SQEs in flight as completions fit.
    RingFull,
}

/// A queue pair of a [`UringDevice`](super::UringDevice): one io_uring instance.
pub struct UringQpair {
    // Drop order: the ring goes before the memory registered with it.
    ring: IoUring,
    geometry: Geometry,
    depth: u32,
    /// Commands in flight, indexed by the low half of user_data.
    slots: Vec<Option<Slot>>,
    /// Free slot indexes.
    free: Vec<u32>,
    /// Commands with work not yet pushed, oldest first (each at most once).
    pending: VecDeque<u32>,
    /// SQEs pushed whose CQE has not been reaped, all commands together.
    live_sqes: u32,
    /// Most SQEs in flight: the completion queue's size, so it never overflows.
    live_sqes_max: u32,
    /// SQEs pushed and not yet taken by `io_uring_enter`.
    unkicked: u32,
    /// The first of them, to name in a submission error.
    unkicked_first: (Op, u64),
    /// The last kick failed (and was logged).
    submit_failing: bool,
    /// Set for good when `fallocate(ZERO_RANGE)` is refused: write-zeroes writes zeroes.
    zero_by_writes: bool,
    /// Zeroes, max transfer bytes of them, never written after open. The kernel only reads
    /// from it, so this one buffer serves every zero write in flight.
    zeroes: DmaBuf,
    /// Ids of the regions registered as fixed buffers; the position is the buffer index.
    region_ids: Vec<u32>,
    /// The registered regions, kept mapped while the ring may use them.
    regions: Vec<DmaRegion>,
    /// Polls in a row that reaped nothing while commands were in flight.
    empty_polls: u32,
    /// Keeps the fd open while the ring has it registered.
    _file: Arc<File>,
    stats: IoStats,
}

impl UringQpair {
    /// Sets up the ring, registers the file and the regions, and preallocates everything
    /// the I/O path needs.
    pub(super) fn open(
        file: &Arc<File>,
        path: &Path,
        geometry: Geometry,
        sqpoll_idle_ms: Option<u32>,
        opts: &QpairOptions,
    ) -> Result<Self, DriverError> {
        let depth = opts.depth;
        if depth == 0 || depth > DEPTH_MAX {
            return Err(DriverError::Config(format!(
                "io_uring queue depth {depth} must be 1..={DEPTH_MAX}"
            )));
        }
        if opts.regions.len() > FIXED_BUFS_MAX {
            return Err(DriverError::Config(format!(
                "{} DMA regions: io_uring registers at most {FIXED_BUFS_MAX} fixed buffers",
                opts.regions.len()
            )));
        }
        if let Some(r) = opts.regions.iter().find(|r| r.len() > FIXED_BUF_BYTES_MAX) {
            return Err(DriverError::Config(format!(
                "DMA region {} of {} MiB: io_uring registers fixed buffers of at most 1 GiB",
                r.id(),
                r.len() >> 20
            )));
        }

        let entries = depth.next_power_of_two();
        let mut builder = IoUring::builder();
        if let Some(idle_ms) = sqpoll_idle_ms {
            builder.setup_sqpoll(idle_ms);
        }
        // Completions that need task work (a write with RWF_DSYNC, an fsync: finished by a
        // kernel worker) are otherwise handed over by interrupting this thread. With
        // cooperative task runs and the task-run flag the kernel flags them in the ring
        // instead, and `kick` enters the kernel just then (fewer interrupts: QD32 random
        // writes on a file went from 83-117k to 132-137k IOPS). Kernels before 5.19
        // refuse the flags: go without.
        let plain = builder.clone();
        builder.setup_coop_taskrun().setup_taskrun_flag();
        let built = match builder.build(entries) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => plain.build(entries),
            other => other,
        };
        let ring = built.map_err(|source| DriverError::Open {
            what: format!(
                "io_uring of {entries} entries{} for {}",
                if sqpoll_idle_ms.is_some() {
                    " with SQPOLL"
                } else {
                    ""
                },
                path.display()
            ),
            source,
        })?;
        ring.submitter()
            .register_files(&[file.as_raw_fd()])
            .map_err(|source| DriverError::Open {
                what: format!("register {} as an io_uring fixed file", path.display()),
                source,
            })?;
        let regions = opts.regions.clone();
        if !regions.is_empty() {
            let iovecs: Vec<libc::iovec> = regions
                .iter()
                .map(|r| libc::iovec {
                    iov_base: r.as_ptr().cast(),
                    iov_len: r.len(),
                })
                .collect();
            // Each iovec spans exactly one mapped DmaRegion, and the queue pair holds
            // a handle on every region (`regions`, dropped after `ring`, and leaked if a
            // drop cannot wait for the kernel), so the memory stays mapped while registered.
            // SAFETY: the memory stays mapped while registered.
            unsafe { ring.submitter().register_buffers(&iovecs) }.map_err(|source| {
                DriverError::Open {
                    what: format!(
                        "register {} DMA regions as io_uring fixed buffers for {}",
                        regions.len(),
                        path.display()
                    ),
                    source,
                }
            })?;
        }

        let zero_pool = DmaPool::new(PoolConfig {
            buf_bytes: geometry.max_transfer_bytes as usize,
            count: 1,
            align: geometry.dma_align as usize,
            source: DmaSource::Heap,
        })?;
        let mut zeroes = zero_pool
            .alloc()
            .ok_or_else(|| DriverError::Config("zero buffer pool came up empty".into()))?;
        zeroes.as_mut_slice().fill(0);

        let live_sqes_max = ring.params().cq_entries();
        log::debug!(
            "uring qpair on {}: depth {depth}, {entries} SQ / {live_sqes_max} CQ entries, {} fixed buffers",
            path.display(),
            regions.len()
        );
        Ok(Self {
            ring,
            geometry,
            depth,
            slots: (0..depth).map(|_| None).collect(),
            free: (0..depth).rev().collect(),
            pending: VecDeque::with_capacity(depth as usize),
            live_sqes: 0,
            live_sqes_max,
            unkicked: 0,
            unkicked_first: (Op::Flush, 0),
            submit_failing: false,
            empty_polls: 0,
            zero_by_writes: false,
            zeroes,
            region_ids: regions.iter().map(DmaRegion::id).collect(),
            regions,
            _file: Arc::clone(file),
            stats: IoStats::default(),
        })
    }

    /// True once `fallocate(ZERO_RANGE)` was refused here and write-zeroes writes zeroes.
    pub fn zeroes_by_writes(&self) -> bool {
        self.zero_by_writes
    }

    /// Pushes what it can of slot `idx`'s work to the submission queue.
    fn push_work(&mut self, idx: u32) -> Pushed {
        let Some(slot) = self.slots[idx as usize].as_mut() else {
            return Pushed::All;
        };
        if slot.next == Next::Sqe && self.zero_by_writes {
            if let Command::WriteZeroes { lba, .. } = slot.cmd {
                slot.next = Next::ZeroWrites { lba };
            }
        }
        loop {
            match slot.next {
                Next::Nothing => return Pushed::All,
                Next::ZeroWrites { .. } if slot.live >= ZERO_WRITES_IN_FLIGHT_MAX => {
                    return Pushed::SlotCap
                }
                _ => {}
            }
            if self.live_sqes >= self.live_sqes_max {
                return Pushed::RingFull;
            }
            let zeroes = self.zeroes.as_ptr();
            let geo = &self.geometry;
            let Some(step) = sqe::next(&mut slot.cmd, slot.next, geo, &self.region_ids, zeroes)
            else {
                return Pushed::All;
            };
            let entry = step.entry.user_data(sqe::user_data(idx, step.expect));
            // Every address in the entry stays valid until its CQE is reaped: the
            // data buffer is owned by this slot, which is freed only after its last CQE; the
            // zero buffer and the registered regions are owned by the queue pair; and the
            // queue pair's drop waits for every CQE (or leaks that memory if it cannot).
            // SAFETY: the entry's memory outlives its CQE.
            if unsafe { self.ring.submission().push(&entry) }.is_err() {
                return Pushed::RingFull;
            }
            if self.unkicked == 0 {
                self.unkicked_first = (slot.cmd.op(), slot.cmd.lba());
            }
            self.unkicked += 1;
            self.live_sqes += 1;
            slot.live += 1;
            slot.next = step.after;
        }
    }

    /// Pushes the work of waiting commands, oldest first, while the ring has room.
    fn push_pending(&mut self) {
        while let Some(&idx) = self.pending.front() {
            match self.push_work(idx) {
                Pushed::RingFull => return,
                Pushed::All | Pushed::SlotCap => {
                    self.pending.pop_front();
                    if let Some(slot) = self.slots[idx as usize].as_mut() {
                        slot.queued = false;
                    }
                }
            }
        }
    }

    /// Puts a slot with work left at the back of `pending`, unless it is there.
    fn enqueue(&mut self, idx: u32) {
        if let Some(slot) = self.slots[idx as usize].as_mut() {
            if !slot.queued {
                slot.queued = true;
                // Never grows: each slot is in the queue at most once.
                self.pending.push_back(idx);
            }
        }
    }

    /// Accounts one CQE; returns the command's completion when it was its last.
    fn reap(&mut self, user_data: u64, res: i32) -> Option<Completion> {
        let (idx, expect) = sqe::split_user_data(user_data);
        self.live_sqes -= 1;
        let Some(slot) = self.slots.get_mut(idx as usize).and_then(Option::as_mut) else {
            debug_assert!(false, "CQE for free slot {idx}");
            log::error!("io_uring CQE for free slot {idx} (user_data {user_data:#x}); ignored");
            return None;
        };
        slot.live -= 1;
        let op = slot.cmd.op();
        let lba = slot.cmd.lba();
        let failure = if res < 0 {
            let errno = -res;
            let fallocate = op == Op::WriteZeroes && expect == 0;
            if fallocate && matches!(errno, libc::EOPNOTSUPP | libc::EINVAL) && slot.error.is_none()
            {
                if !self.zero_by_writes {
                    log::info!(
                        "fallocate(ZERO_RANGE) refused ({}): this queue pair writes zeroes from now on",
                        io::Error::from_raw_os_error(errno)
                    );
                    self.zero_by_writes = true;
                }
                slot.next = Next::ZeroWrites { lba };
                None
            } else {
                Some(errno)
            }
        } else if res as u32 != expect {
            // A short read or write. With O_DIRECT inside the device's range this means the
            // file shrank under us or the device moved only part of the data; report it as
            // an I/O error (EIO) rather than retry the rest.
            Some(libc::EIO)
        } else {
            None
        };
        if let Some(errno) = failure {
            slot.next = Next::Nothing;
            if slot.error.is_none() {
                slot.error = Some(DriverError::Io {
                    op,
                    lba,
                    source: io::Error::from_raw_os_error(errno),
                });
            }
        }
        if slot.next != Next::Nothing {
            self.enqueue(idx);
            return None;
        }
        if slot.live > 0 {
            return None;
        }
        if slot.queued {
            // Finished while waiting to push more (an error stopped it): leave the queue.
            self.pending.retain(|&i| i != idx);
        }
        let slot = self.slots[idx as usize].take()?;
        self.free.push(idx);
        let bytes = match &slot.cmd {
            Command::WriteZeroes { blocks, .. } => {
                u64::from(*blocks) * u64::from(self.geometry.block_size)
            }
            other => other.data_len() as u64,
        };
        let result = match slot.error {
            Some(e) => Err(e),
            None => Ok(()),
        };
        self.stats.count(op, bytes, result.is_ok());
        Some(Completion {
            tag: slot.tag,
            op,
            result,
            buf: slot.cmd.into_buf(),
        })
    }

    /// Keeps every piece of memory the kernel might still touch alive for good: called when
    /// a drop cannot wait for the kernel to finish.
    fn leak_kernel_memory(&mut self) {
        std::mem::forget(std::mem::take(&mut self.slots));
        std::mem::forget(std::mem::take(&mut self.regions));
        std::mem::forget(self.zeroes.region().clone());
    }
}

impl QueuePair for UringQpair {
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    fn depth(&self) -> u32 {
        self.depth
    }

    fn in_flight(&self) -> u32 {
        self.depth - self.free.len() as u32
    }

    fn submit(&mut self, tag: u64, cmd: Command) -> Result<(), Rejected> {
        if let Err(error) = validate(&self.geometry, &cmd) {
            return Err(Rejected { error, cmd });
        }
        let Some(idx) = self.free.pop() else {
            let error = DriverError::QueueFull {
                op: cmd.op(),
                depth: self.depth,
            };
            return Err(Rejected { error, cmd });
        };
        self.slots[idx as usize] = Some(Slot {
            tag,
            cmd,
            next: Next::Sqe,
            live: 0,
            queued: false,
            error: None,
        });
        // Behind commands already waiting for room, to keep their order.
        if !self.pending.is_empty() {
            self.enqueue(idx);
            return Ok(());
        }
        match self.push_work(idx) {
            Pushed::RingFull => self.enqueue(idx),
            // More is pushed as its writes complete.
            Pushed::All | Pushed::SlotCap => {}
        }
        Ok(())
    }

    fn kick(&mut self) -> Result<(), DriverError> {
        self.push_pending();
        if self.unkicked == 0 {
            // Completions wait for task work that only a system call runs (see `open`).
            if self.ring.submission().taskrun() {
                self.ring.submitter().submit().ok();
            }
            return Ok(());
        }
        // With SQPOLL this makes a system call only to wake the kernel thread.
        match self.ring.submitter().submit() {
            Ok(_) => {
                // Under SQPOLL the kernel thread takes entries on its own time; what it has
                // not taken yet is still to kick.
                self.unkicked = self.ring.submission().len() as u32;
                Ok(())
            }
            // Nothing lost: the entries stay in the queue for the next kick.
            Err(e) if is_transient(&e) => Ok(()),
            Err(source) => {
                let (op, lba) = self.unkicked_first;
                Err(DriverError::Io { op, lba, source })
            }
        }
    }

    fn poll(&mut self, max: u32, on_done: &mut dyn FnMut(Completion)) -> u32 {
        // poll has no error to return: a failed submission stays queued for the next kick,
        // and is logged once until one succeeds.
        match self.kick() {
            Ok(()) => self.submit_failing = false,
            Err(e) if !self.submit_failing => {
                self.submit_failing = true;
                let why = std::error::Error::source(&e).map(ToString::to_string);
                log::error!("io_uring submit, {e}: {}", why.unwrap_or_default());
            }
            Err(_) => {}
        }
        let mut n = 0;
        while n < max {
            let Some(cqe) = self.ring.completion().next() else {
                break;
            };
            if let Some(c) = self.reap(cqe.user_data(), cqe.result()) {
                on_done(c);
                n += 1;
            }
        }
        if n > 0 || self.live_sqes == 0 {
            self.empty_polls = 0;
        } else {
            self.empty_polls = self.empty_polls.wrapping_add(1);
            if self.empty_polls % EMPTY_POLLS_PER_YIELD == 0 {
                // Kernel work finishing these commands may be waiting for this CPU.
                std::thread::yield_now();
            }
        }
        // Work that waited for room (zero writes, mostly) goes out on the next kick.
        if !self.pending.is_empty() {
            self.push_pending();
        }
        n
    }

    fn stats(&self) -> IoStats {
        self.stats
    }
}

impl Drop for UringQpair {
    /// Waits for the kernel to finish every SQE it holds, since it may still be moving data
    /// into or out of buffers this queue pair owns. If the ring fails, or a minute passes
    /// without a completion, leaks that memory rather than free it under the kernel.
    fn drop(&mut self) {
        let step = types::Timespec::from(DROP_WAIT_STEP);
        let args = types::SubmitArgs::new().timespec(&step);
        let timed = self.ring.params().is_feature_ext_arg();
        let mut idle_steps = 0;
        while self.live_sqes > 0 {
            let waited = if timed {
                self.ring.submitter().submit_with_args(1, &args)
            } else {
                self.ring.submit_and_wait(1)
            };
            match waited {
                Ok(_) => idle_steps = 0,
                Err(e)
                    if (is_transient(&e) || e.raw_os_error() == Some(libc::ETIME))
                        && idle_steps < DROP_WAIT_STEPS_MAX =>
                {
                    idle_steps += 1
                }
                Err(e) => {
                    log::error!(
                        "io_uring: cannot wait for {} commands in flight ({e}); leaking their buffers",
                        self.live_sqes
                    );
                    self.leak_kernel_memory();
                    return;
                }
            }
            while let Some(_cqe) = self.ring.completion().next() {
                self.live_sqes -= 1;
            }
        }
    }
}
