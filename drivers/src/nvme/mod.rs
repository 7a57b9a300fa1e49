//! # The userspace NVMe driver: a PCI NVMe controller driven from this process
//!
//! No kernel driver, no interrupt, no system call on the I/O path: the driver maps the
//! controller's registers (BAR0) into the process, puts its queues and PRP lists in
//! hugepage memory the controller can reach, writes commands into the submission queue,
//! rings the doorbell, and polls the completion queue.
//!
//! ## How a controller is reached
//!
//! [`NvmeDevice::open`] finds the controller ([`NvmeConfig::pci`]: an address like
//! `0000:00:04.0`, or `"auto"` for the first NVMe-class function free for us) and picks
//! the access mode from the driver bound to it:
//!
//! | bound driver | mode | BAR0 | device addresses |
//! |---|---|---|---|
//! | none | sysfs (root) | `resource0`, mmap | physical, from `/proc/self/pagemap` (hugepages: pinned) |
//! | `vfio-pci` | VFIO (IOMMU) | device fd region, mmap | IOVAs mapped with `VFIO_IOMMU_MAP_DMA` |
//! | anything else | refused: [`NvmeError::KernelDriver`] names the driver | | |
//!
//! ## Data flow
//!
//! ```text
//!  NvmeDevice::open ─► pci / vfio ─► ctrlr: reset, admin queue, Identify, queues granted
//!  open_qpair ─► Create I/O CQ + SQ (polled, IEN = 0) ─► NvmeQpair
//!  submit(tag, cmd) ─► validate ─► slot ─► per MDTS piece: cid, SQE, PRP list ─► SQ
//!  poll ─► one SQ doorbell ─► reap CQEs by phase ─► cid ─► slot ─► Completion{buf}
//! ```
//!
//! Files, one NVMe concept each: [`regs`] (register block, doorbells), [`cmd`] (SQE/CQE,
//! opcodes, builders), [`identify`] (Identify data), [`queue`] (rings, phase, cids),
//! [`prp`] (PRP entries and lists, MDTS split), [`pci`] (sysfs), [`vfio`] (VFIO),
//! `ctrlr` (bring-up, admin, shutdown), [`ns`] (geometry), `qpair` (the queue pair),
//! `mem` (device addresses, queue memory), [`error`] ([`NvmeError`]).
//!
//! ## What is unsafe, and why it is sound
//!
//! - **MMIO** ([`regs`]): BAR0 is a raw mapping; every access is one volatile read or
//!   write through a pointer computed with `addr_of!`, never a reference. The mapping
//!   outlives the register block and every doorbell (field order in the controller).
//! - **Queue memory** ([`queue`]): SQ and CQ entries are written/read volatile through raw
//!   pointers into hugepage chunks that the driver owns; a fence orders SQE writes before
//!   the doorbell and the phase-bit read before the rest of a CQE. The memory is freed only
//!   after the queue is deleted on the device, or leaked when deletion fails.
//! - **DMA into buffers**: a [`DmaBuf`](crate::DmaBuf) moves into the queue pair at submit
//!   and comes back only with its completion, so no Rust code touches it while the device
//!   may. A buffer whose memory has no device address is refused, never sent. After an I/O
//!   timeout the buffers of commands still on the device are kept until the queue is
//!   deleted, not handed back.
//! - **ioctl / mmap** ([`vfio`], [`pci`]): repr(C) structs with size asserts, fds owned by
//!   `File`s, mappings unmapped on drop.
//!
//! ## Errors
//!
//! Command failures are [`DriverError::Device`](crate::DriverError) with the NVMe status
//! (SCT/SC/DNR), logged with opcode, queue id and command id. Driver faults (timeouts,
//! an unknown command id, untranslated buffers, the queue limit, a kernel driver in the
//! way) are [`NvmeError`]s inside `DriverError::Io`/`Open`; get them back with
//! [`NvmeError::of`]. Faults can be injected with [`NvmeDevice::inject`].

pub mod bind;
pub mod cmd;
mod ctrlr;
pub mod error;
pub mod identify;
mod mem;
pub mod ns;
pub mod pci;
pub mod prp;
mod qpair;
pub mod queue;
pub mod regs;
pub mod vfio;

use std::sync::Arc;
use std::time::Duration;

pub use ctrlr::NvmeFault;
pub use error::NvmeError;
pub use qpair::NvmeQpair;

use crate::error::DriverError;
use crate::geometry::Geometry;
use crate::qpair::{BlockDevice, QpairOptions};
use ctrlr::{Access, Controller};

/// How to open a controller.
#[derive(Clone, Debug)]
pub struct NvmeConfig {
    /// PCI address ("0000:00:04.0") or "auto".
    pub pci: String,
    /// Most commands in flight per queue pair; a larger `QpairOptions::depth` is capped.
    pub io_queue_depth: u32,
    /// I/O queue pairs asked of the controller (Set Features Number of Queues).
    pub max_io_queues: u16,
    /// Most time an admin command may take.
    pub admin_timeout: Duration,
    /// Most time an I/O command may take before its queue pair is failed.
    pub io_timeout: Duration,
    /// Largest transfer of one Keel command, when larger than MDTS: such commands are
    /// split into several NVMe commands. `None` (or smaller): one NVMe command's worth.
    pub max_transfer_bytes: Option<u32>,
}

impl NvmeConfig {
    /// Defaults for the controller at `pci`.
    pub fn new(pci: impl Into<String>) -> Self {
        NvmeConfig {
            pci: pci.into(),
            io_queue_depth: 256,
            max_io_queues: 64,
            admin_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(30),
            max_transfer_bytes: None,
        }
    }
}

/// How the driver reaches the controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessMode {
    /// sysfs resource0 + pagemap physical addresses.
    Sysfs,
    /// vfio-pci + IOMMU.
    Vfio,
}

/// An NVMe controller's namespace 1, as a Keel block device. Cloning shares the controller;
/// it shuts down cleanly when the last clone and queue pair are gone.
#[derive(Clone)]
pub struct NvmeDevice {
    ctrlr: Arc<Controller>,
    geometry: Geometry,
    mode: AccessMode,
}

impl std::fmt::Debug for NvmeDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmeDevice")
            .field("pci", &self.ctrlr.pci)
            .field("mode", &self.mode)
            .field("geometry", &self.geometry)
            .finish()
    }
}

impl NvmeDevice {
    /// Finds, resets and brings up the controller.
    pub fn open(cfg: &NvmeConfig) -> Result<Self, DriverError> {
        if cfg.io_queue_depth == 0 || cfg.max_io_queues == 0 {
            return Err(DriverError::Config(
                "nvme: io_queue_depth and max_io_queues must be at least 1".into(),
            ));
        }
        if let Some(t) = cfg.max_transfer_bytes {
            if t < 4096 {
                return Err(DriverError::Config(format!(
                    "nvme: max transfer {t} is below 4 KiB"
                )));
            }
        }
        let what = |pci: &str| format!("nvme controller {pci}");
        let addr = pci::find(&cfg.pci).map_err(|e| e.open(what(&cfg.pci)))?;
        let (bar, access, mode) = match pci::bound_driver(&addr).as_deref() {
            None => {
                let bar = pci::open_sysfs(&addr).map_err(|e| e.open(what(&addr)))?;
                (bar, Access::Sysfs, AccessMode::Sysfs)
            }
            Some("vfio-pci") => {
                let (v, bar) = vfio::Vfio::open(&addr).map_err(|e| e.open(what(&addr)))?;
                (bar, Access::Vfio(Arc::new(v)), AccessMode::Vfio)
            }
            Some(driver) => {
                return Err(NvmeError::KernelDriver {
                    pci: addr.clone(),
                    driver: driver.to_string(),
                }
                .open(what(&addr)))
            }
        };
        let ctrlr = Controller::start(addr.clone(), bar, access, cfg.clone())
            .map_err(|e| e.open(what(&addr)))?;
        let geometry = ns::geometry(
            &ctrlr.ident,
            &ctrlr.ns,
            ctrlr.vwc_enabled,
            cfg.max_transfer_bytes,
        );
        Ok(NvmeDevice {
            ctrlr: Arc::new(ctrlr),
            geometry,
            mode,
        })
    }

    /// The controller's PCI address.
    pub fn pci(&self) -> &str {
        &self.ctrlr.pci
    }

    /// How the controller is reached.
    pub fn mode(&self) -> AccessMode {
        self.mode
    }

    /// The Identify Controller fields the driver read.
    pub fn identify(&self) -> &identify::IdentifyController {
        &self.ctrlr.ident
    }

    /// The Identify Namespace fields of namespace 1.
    pub fn namespace(&self) -> &identify::IdentifyNamespace {
        &self.ctrlr.ns
    }

    /// I/O queue pairs the controller granted: the most `open_qpair` calls that can be
    /// open at once.
    pub fn max_qpairs(&self) -> u16 {
        self.ctrlr.io_queues_max
    }

    /// Bytes one NVMe Read/Write carries (MDTS).
    pub fn command_max_bytes(&self) -> u32 {
        ns::command_max_bytes(&self.ctrlr.ident, self.geometry.block_size)
    }

    /// Arms a fault: the `nth` command of `op` submitted from now on (any queue pair)
    /// completes with `status` and never reaches the device.
    pub fn inject(&self, fault: NvmeFault) {
        self.ctrlr.inject(fault);
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.ctrlr.clear_faults();
    }
}

impl BlockDevice for NvmeDevice {
    type Qpair = NvmeQpair;

    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn open_qpair(&self, opts: &QpairOptions) -> Result<NvmeQpair, DriverError> {
        NvmeQpair::open(self.ctrlr.clone(), opts)
    }
}

const _: () = {
    const fn send<T: Send>() {}
    const fn send_sync<T: Send + Sync>() {}
    send::<NvmeQpair>();
    send_sync::<NvmeDevice>();
};
