//! One device type over every driver, chosen at run time.
//!
//! The engine is generic over [`BlockDevice`], which is what lets its tests run on the
//! simulated device and production run on a real one with no cost per command. A caller
//! that picks the driver from configuration (the C ABI, a command-line tool) cannot name
//! the type at compile time: it opens an [`AnyDevice`] instead, and every command pays one
//! `match` to reach the driver underneath.
//!
//! ```text
//!   AnyDevice::{Sim, Psync, Uring, Nvme} ──open_qpair──► AnyQpair::{Sim, Psync, Uring, Nvme}
//!                                                     │ submit / kick / poll / stats
//!                                                     └──► the driver's own queue pair
//! ```
//!
//! Nothing is added or changed on the way: geometry, validation, errors and completions
//! are the driver's own.

use crate::command::{Command, Completion};
use crate::error::{DriverError, Rejected};
use crate::geometry::Geometry;
use crate::nvme::{NvmeDevice, NvmeQpair};
use crate::psync::{PsyncDevice, PsyncQpair};
use crate::qpair::{BlockDevice, IoStats, QpairOptions, QueuePair};
use crate::sim::{SimDevice, SimQpair};
use crate::uring::{UringDevice, UringQpair};

/// A device of any driver.
#[derive(Debug)]
pub enum AnyDevice {
    /// The simulated device ([`crate::sim`]).
    Sim(SimDevice),
    /// pread/pwrite on O_DIRECT ([`crate::psync`]).
    Psync(PsyncDevice),
    /// io_uring on O_DIRECT ([`crate::uring`]).
    Uring(UringDevice),
    /// Userspace NVMe ([`crate::nvme`]).
    Nvme(NvmeDevice),
}

impl AnyDevice {
    /// The driver's name: "sim", "psync", "uring" or "nvme".
    pub fn driver(&self) -> &'static str {
        match self {
            Self::Sim(_) => "sim",
            Self::Psync(_) => "psync",
            Self::Uring(_) => "uring",
            Self::Nvme(_) => "nvme",
        }
    }
}

impl From<SimDevice> for AnyDevice {
    fn from(d: SimDevice) -> Self {
        Self::Sim(d)
    }
}

impl From<PsyncDevice> for AnyDevice {
    fn from(d: PsyncDevice) -> Self {
        Self::Psync(d)
    }
}

impl From<UringDevice> for AnyDevice {
    fn from(d: UringDevice) -> Self {
        Self::Uring(d)
    }
}

impl From<NvmeDevice> for AnyDevice {
    fn from(d: NvmeDevice) -> Self {
        Self::Nvme(d)
    }
}

impl BlockDevice for AnyDevice {
    type Qpair = AnyQpair;

    fn geometry(&self) -> Geometry {
        match self {
            Self::Sim(d) => d.geometry(),
            Self::Psync(d) => d.geometry(),
            Self::Uring(d) => d.geometry(),
            Self::Nvme(d) => d.geometry(),
        }
    }

    fn open_qpair(&self, opts: &QpairOptions) -> Result<AnyQpair, DriverError> {
        Ok(match self {
            Self::Sim(d) => AnyQpair::Sim(d.open_qpair(opts)?),
            Self::Psync(d) => AnyQpair::Psync(d.open_qpair(opts)?),
            Self::Uring(d) => AnyQpair::Uring(d.open_qpair(opts)?),
            Self::Nvme(d) => AnyQpair::Nvme(d.open_qpair(opts)?),
        })
    }
}

/// A queue pair of an [`AnyDevice`]: the driver's own, behind one `match`.
// Sized by its largest driver (uring): there are two per shard, made at open and never
// moved on the I/O path, where a Box would add a pointer chase to every command.
#[allow(clippy::large_enum_variant)]
pub enum AnyQpair {
    /// A simulated device's queue pair.
    Sim(SimQpair),
    /// A psync device's queue pair.
    Psync(PsyncQpair),
    /// An io_uring device's queue pair.
    Uring(UringQpair),
    /// A userspace NVMe queue pair.
    Nvme(NvmeQpair),
}

/// Calls the same method on whichever queue pair `$qp` holds.
macro_rules! delegate {
    ($qp:expr, $q:ident => $call:expr) => {
        match $qp {
            AnyQpair::Sim($q) => $call,
            AnyQpair::Psync($q) => $call,
            AnyQpair::Uring($q) => $call,
            AnyQpair::Nvme($q) => $call,
        }
    };
}

impl QueuePair for AnyQpair {
    fn geometry(&self) -> &Geometry {
        delegate!(self, q => q.geometry())
    }

    fn depth(&self) -> u32 {
        delegate!(self, q => q.depth())
    }

    fn in_flight(&self) -> u32 {
        delegate!(self, q => q.in_flight())
    }

    fn submit(&mut self, tag: u64, cmd: Command) -> Result<(), Rejected> {
        delegate!(self, q => q.submit(tag, cmd))
    }

    fn kick(&mut self) -> Result<(), DriverError> {
        delegate!(self, q => q.kick())
    }

    fn poll(&mut self, max: u32, on_done: &mut dyn FnMut(Completion)) -> u32 {
        delegate!(self, q => q.poll(max, on_done))
    }

    fn stats(&self) -> IoStats {
        delegate!(self, q => q.stats())
    }
}

// The same thread rules as every driver: the device is shared, a queue pair moves to the
// thread that owns it.
const _: () = {
    const fn send<T: Send>() {}
    const fn send_sync<T: Send + Sync>() {}
    send::<AnyQpair>();
    send_sync::<AnyDevice>();
};
