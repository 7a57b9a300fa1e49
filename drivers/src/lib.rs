//! # keel-drivers: block devices behind one queue-pair trait
//!
//! Keel's engine never talks to a device directly: it owns [`QueuePair`]s, opened on a
//! [`BlockDevice`], and drives them by polling. Every driver implements the same contract:
//!
//! ```text
//!   DmaPool::alloc() ──► DmaBuf ──► Command::{Read,Write{fua},Flush,WriteZeroes}
//!        ▲                                   │ submit(tag, cmd)   (validated, queued)
//!        │                                   ▼
//!   drop(buf)  ◄── Completion{tag, result, buf} ◄── poll(max, on_done)  (kick + reap)
//! ```
//!
//! - [`validate`] refuses a bad request (out of range, unaligned, too large) before anything
//!   reaches the device; the command and its buffer come back whole in [`Rejected`].
//! - Completions come back in any order; the caller matches them by tag.
//! - A queue pair is `Send` but not `Sync`: one reactor owns it.
//! - Device faults are [`DriverError`]s, with an NVMe-shaped [`NvmeStatus`] whatever the
//!   driver.
//!
//! Drivers:
//! - [`sim`]: memory-backed, with latency, a volatile write cache that a power cut discards
//!   (keeping, losing or tearing each unflushed write, by a seeded choice), an atomic write
//!   unit, injected errors, and silent corruption (misdirected writes, bits flipped at
//!   rest). The engine's crash tests run on it.
//! - [`null`]: completes at once, moves no data: the cost of the software alone.
//! - [`psync`]: pread/pwrite on O_DIRECT: the plain kernel path.
//! - [`uring`]: io_uring on O_DIRECT with registered buffers and files: the best kernel path.
//! - [`nvme`]: userspace NVMe over PCI (sysfs + pagemap, or VFIO): no kernel on the I/O path.
//! - [`any`]: one device type over sim, psync and uring, for a driver chosen at run time.
//!
//! DMA memory ([`dma`]) comes from 2 MiB hugepages when reserved, else aligned heap memory.

pub mod any;
mod blockdev;
pub mod command;
pub mod dma;
pub mod error;
pub mod geometry;
pub mod null;
pub mod nvme;
pub mod psync;
pub mod qpair;
pub mod sim;
pub mod status;
pub mod uring;

pub use command::{Command, Completion, Op};
pub use dma::{DmaBuf, DmaPool, DmaRegion, DmaSource, PoolConfig};
pub use error::{CmdSlot, DriverError, Rejected};
pub use geometry::Geometry;
pub use qpair::{validate, BlockDevice, IoStats, QpairOptions, QueuePair};
pub use status::NvmeStatus;
