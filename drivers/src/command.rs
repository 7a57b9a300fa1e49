//! Commands submitted to a queue pair and the completions that come back.

use std::fmt;

use crate::dma::DmaBuf;
use crate::error::DriverError;

/// The four operations every driver implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Op {
    /// Read blocks into a buffer.
    Read = 0,
    /// Write blocks from a buffer (optionally Force Unit Access).
    Write = 1,
    /// Make every completed write durable.
    Flush = 2,
    /// Zero a block range without a data buffer.
    WriteZeroes = 3,
}

impl Op {
    /// All operations, in index order.
    pub const ALL: [Op; 4] = [Op::Read, Op::Write, Op::Flush, Op::WriteZeroes];

    /// Index for per-op tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Flush => "flush",
            Op::WriteZeroes => "write-zeroes",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One command. Data buffers move into the queue pair and come back with the completion.
#[derive(Debug)]
pub enum Command {
    /// Read `buf.len()` bytes starting at block `lba` into `buf`.
    Read {
        /// First block.
        lba: u64,
        /// Destination; its length is the transfer size.
        buf: DmaBuf,
    },
    /// Write `buf.len()` bytes from `buf` starting at block `lba`.
    Write {
        /// First block.
        lba: u64,
        /// Source; its length is the transfer size.
        buf: DmaBuf,
        /// Force Unit Access: durable when it completes, even with a volatile cache.
        fua: bool,
    },
    /// Make durable every write completed before this command was submitted.
    Flush,
    /// Zero `blocks` blocks starting at `lba`.
    WriteZeroes {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
    },
}

impl Command {
    /// The operation.
    pub fn op(&self) -> Op {
        match self {
            Command::Read { .. } => Op::Read,
            Command::Write { .. } => Op::Write,
            Command::Flush => Op::Flush,
            Command::WriteZeroes { .. } => Op::WriteZeroes,
        }
    }

    /// First block (0 for flush).
    pub fn lba(&self) -> u64 {
        match self {
            Command::Read { lba, .. }
            | Command::Write { lba, .. }
            | Command::WriteZeroes { lba, .. } => *lba,
            Command::Flush => 0,
        }
    }

    /// Bytes moved through a data buffer (0 for flush and write-zeroes).
    pub fn data_len(&self) -> usize {
        match self {
            Command::Read { buf, .. } | Command::Write { buf, .. } => buf.len(),
            Command::Flush | Command::WriteZeroes { .. } => 0,
        }
    }

    /// Takes the data buffer out, if the command has one.
    pub fn into_buf(self) -> Option<DmaBuf> {
        match self {
            Command::Read { buf, .. } | Command::Write { buf, .. } => Some(buf),
            Command::Flush | Command::WriteZeroes { .. } => None,
        }
    }
}

/// A finished command: its caller tag, outcome, and its buffer back (on error too).
#[derive(Debug)]
pub struct Completion {
    /// The tag given at submission.
    pub tag: u64,
    /// The operation.
    pub op: Op,
    /// Success, or the device's or kernel's error.
    pub result: Result<(), DriverError>,
    /// The data buffer, for read and write.
    pub buf: Option<DmaBuf>,
}
