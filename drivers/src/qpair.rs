//! The one trait every driver implements.

use crate::command::{Command, Completion, Op};
use crate::dma::DmaRegion;
use crate::error::{DriverError, Rejected};
use crate::geometry::Geometry;

/// Per-operation counts of commands and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Commands completed, per [`Op::index`].
    pub cmds: [u64; 4],
    /// Bytes moved (read, write) or covered (write-zeroes), per [`Op::index`].
    pub bytes: [u64; 4],
    /// Commands that completed with an error, all ops together.
    pub errors: u64,
}

impl IoStats {
    /// Counts one completed command.
    pub fn count(&mut self, op: Op, bytes: u64, ok: bool) {
        self.cmds[op.index()] += 1;
        self.bytes[op.index()] += bytes;
        if !ok {
            self.errors += 1;
        }
    }

    /// Commands of one operation.
    pub fn cmds(&self, op: Op) -> u64 {
        self.cmds[op.index()]
    }

    /// Bytes of one operation.
    pub fn bytes(&self, op: Op) -> u64 {
        self.bytes[op.index()]
    }

    /// Sum with another set of counters.
    pub fn merged(mut self, other: &IoStats) -> IoStats {
        for i in 0..4 {
            self.cmds[i] += other.cmds[i];
            self.bytes[i] += other.bytes[i];
        }
        self.errors += other.errors;
        self
    }
}

/// How to open a queue pair.
#[derive(Clone, Debug)]
pub struct QpairOptions {
    /// Most commands in flight at once.
    pub depth: u32,
    /// Memory regions whose buffers will be submitted on this queue pair. Drivers that can
    /// pre-register memory (io_uring fixed buffers, VFIO DMA maps) do so at open; buffers
    /// from other memory still work, by the slower path.
    pub regions: Vec<DmaRegion>,
}

impl QpairOptions {
    /// A queue pair of `depth` with no pre-registered memory.
    pub fn depth(depth: u32) -> Self {
        Self {
            depth,
            regions: Vec::new(),
        }
    }
}

/// A block device that hands out queue pairs.
pub trait BlockDevice: Send + Sync {
    /// The queue pair type.
    type Qpair: QueuePair;

    /// The device's geometry.
    fn geometry(&self) -> Geometry;

    /// Opens a queue pair. Queue pairs of one device may be used from different threads,
    /// each by one thread at a time.
    fn open_qpair(&self, opts: &QpairOptions) -> Result<Self::Qpair, DriverError>;
}

/// A submission/completion queue pair, owned by one thread (it is `Send`, never `Sync`).
///
/// The life of a command: [`submit`](QueuePair::submit) validates it and queues it (a
/// refused command comes back whole in [`Rejected`]); submissions are pushed to the device
/// in batches, at the latest on the next [`poll`](QueuePair::poll) or
/// [`kick`](QueuePair::kick); `poll` hands finished commands to a callback, buffers
/// included. Completions may come back in any order: match them by tag.
pub trait QueuePair: Send {
    /// The device's geometry.
    fn geometry(&self) -> &Geometry;

    /// Most commands in flight at once.
    fn depth(&self) -> u32;

    /// Commands submitted and not yet handed back by `poll`.
    fn in_flight(&self) -> u32;

    /// Queues a command. `tag` comes back in its completion.
    fn submit(&mut self, tag: u64, cmd: Command) -> Result<(), Rejected>;

    /// Pushes queued submissions to the device now (one doorbell or system call for the
    /// batch). `poll` does this too.
    fn kick(&mut self) -> Result<(), DriverError>;

    /// Pushes queued submissions, then hands up to `max` finished commands to `on_done`.
    /// Returns how many it handed back. Never blocks.
    fn poll(&mut self, max: u32, on_done: &mut dyn FnMut(Completion)) -> u32;

    /// Counters of completed commands.
    fn stats(&self) -> IoStats;
}

/// Checks a command against the geometry, the way a controller would before touching media.
/// Every driver calls this first, so all of them refuse the same requests the same way.
pub fn validate(geo: &Geometry, cmd: &Command) -> Result<(), DriverError> {
    let op = cmd.op();
    let (lba, blocks) = match cmd {
        Command::Flush => return Ok(()),
        Command::WriteZeroes { lba, blocks } => {
            if *blocks == 0 {
                return Err(DriverError::BadLength {
                    op,
                    len: 0,
                    block_size: geo.block_size,
                });
            }
            (*lba, u64::from(*blocks))
        }
        Command::Read { lba, buf } | Command::Write { lba, buf, .. } => {
            let len = buf.len() as u64;
            if len == 0 || len % u64::from(geo.block_size) != 0 {
                return Err(DriverError::BadLength {
                    op,
                    len,
                    block_size: geo.block_size,
                });
            }
            if len > u64::from(geo.max_transfer_bytes) {
                return Err(DriverError::TooLarge {
                    op,
                    len,
                    max: geo.max_transfer_bytes,
                });
            }
            let addr = buf.as_ptr() as u64;
            if addr % u64::from(geo.dma_align) != 0 {
                return Err(DriverError::Misaligned {
                    op,
                    addr,
                    align: geo.dma_align,
                });
            }
            (*lba, len / u64::from(geo.block_size))
        }
    };
    match lba.checked_add(blocks) {
        Some(end) if end <= geo.block_count => Ok(()),
        _ => Err(DriverError::OutOfRange {
            op,
            lba,
            blocks,
            block_count: geo.block_count,
        }),
    }
}
