//! The NVMe driver's own error enum. It travels inside the layer's [`DriverError`] (as the
//! `source` of `Open` or `Io`), so callers that care downcast with [`NvmeError::of`]; the
//! message always names what failed: opcode, queue id, command id, status.

use std::io;

use crate::command::Op;
use crate::error::DriverError;
use crate::status::NvmeStatus;

/// What went wrong in the NVMe driver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NvmeError {
    /// No NVMe controller at the address, or none free for "auto".
    #[error("no NVMe controller {0} (PCI class 010802) in /sys/bus/pci/devices")]
    NotFound(String),
    /// The controller is bound to a kernel driver; unbind it (or bind it to vfio-pci).
    #[error("NVMe controller {pci} is bound to kernel driver {driver}: unbind it or bind it to vfio-pci")]
    KernelDriver {
        /// PCI address.
        pci: String,
        /// The driver's name.
        driver: String,
    },
    /// The controller sits behind an IOMMU that translates its DMA: physical addresses from
    /// pagemap would fault (or worse), so only the VFIO path can drive it.
    #[error("NVMe controller {pci} is behind an IOMMU (group {group}, domain type {domain}): bind it to vfio-pci (vendor-scripts/setup.sh config)")]
    BehindIommu {
        /// PCI address.
        pci: String,
        /// IOMMU group number.
        group: String,
        /// The group's default domain type ("DMA", "DMA-FQ", ...).
        domain: String,
    },
    /// A sysfs or /dev file could not be used.
    #[error("{what}")]
    Sys {
        /// The operation and path.
        what: String,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// The controller is not one this driver can run.
    #[error("unsupported controller: {0}")]
    Unsupported(String),
    /// CSTS.RDY did not reach the wanted value within CAP.TO.
    #[error("controller did not become {} within {ms} ms (CSTS {csts:#x})", if *ready { "ready" } else { "disabled" })]
    ReadyTimeout {
        /// Waiting for RDY = 1 (true) or 0.
        ready: bool,
        /// The wait in ms.
        ms: u64,
        /// Last CSTS read.
        csts: u32,
    },
    /// CSTS.CFS: the controller reported a fatal error.
    #[error("controller fatal status (CSTS.CFS) during {during}")]
    Fatal {
        /// What the driver was doing.
        during: String,
    },
    /// An admin command did not complete in time.
    #[error("admin command opcode {opcode:#04x} timed out after {ms} ms")]
    AdminTimeout {
        /// Opcode.
        opcode: u8,
        /// The timeout.
        ms: u64,
    },
    /// An admin command completed with an error status.
    #[error("admin command opcode {opcode:#04x} (qid 0, cid {cid}) failed: {status}")]
    Admin {
        /// Opcode.
        opcode: u8,
        /// Command identifier.
        cid: u16,
        /// Status.
        status: NvmeStatus,
    },
    /// Every I/O queue the controller granted is in use.
    #[error("all {max} I/O queue pairs the controller granted are in use")]
    QueueLimit {
        /// I/O queue pairs granted by Set Features Number of Queues.
        max: u16,
    },
    /// An I/O command outlived the configured timeout: the queue pair is failed.
    #[error("{op} (opcode {opcode:#04x}, qid {qid}, cid {cid}) timed out after {ms} ms")]
    Timeout {
        /// The Keel operation.
        op: Op,
        /// NVMe opcode.
        opcode: u8,
        /// Queue id.
        qid: u16,
        /// Command id.
        cid: u16,
        /// The timeout.
        ms: u64,
    },
    /// A completion named a command identifier with no command in flight.
    #[error("completion for unknown cid {cid} on qid {qid}")]
    UnknownCid {
        /// Queue id.
        qid: u16,
        /// Command id.
        cid: u16,
    },
    /// The buffer has no device address (heap memory, or a region not mapped for DMA).
    #[error("{op}: buffer at {addr:#x} has no device address: use a DmaPool on hugepages (pagemap mode) or a region passed in QpairOptions::regions (VFIO mode)")]
    Untranslated {
        /// The operation.
        op: Op,
        /// Virtual address of the buffer.
        addr: u64,
    },
    /// The queue pair failed earlier and takes no more commands.
    #[error("queue pair qid {qid} failed earlier: {reason}")]
    QpairFailed {
        /// Queue id.
        qid: u16,
        /// The first failure.
        reason: String,
    },
}

impl NvmeError {
    /// The NVMe error inside a driver error, if it carries one.
    pub fn of(e: &DriverError) -> Option<&NvmeError> {
        match e {
            DriverError::Io { source, .. } | DriverError::Open { source, .. } => {
                source.get_ref()?.downcast_ref::<NvmeError>()
            }
            _ => None,
        }
    }

    /// The errno that names this failure best (positive), for the C ABI.
    pub fn errno(&self) -> i32 {
        match self {
            NvmeError::NotFound(_) => libc::ENOENT,
            NvmeError::KernelDriver { .. } | NvmeError::QueueLimit { .. } => libc::EBUSY,
            NvmeError::BehindIommu { .. } => libc::EPERM,
            NvmeError::Sys { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            NvmeError::Unsupported(_) => libc::EOPNOTSUPP,
            NvmeError::Timeout { .. }
            | NvmeError::AdminTimeout { .. }
            | NvmeError::ReadyTimeout { .. } => libc::ETIMEDOUT,
            NvmeError::Untranslated { .. } => libc::EFAULT,
            _ => libc::EIO,
        }
    }

    fn kind(&self) -> io::ErrorKind {
        match self {
            NvmeError::NotFound(_) => io::ErrorKind::NotFound,
            NvmeError::Sys { source, .. } => source.kind(),
            NvmeError::Timeout { .. }
            | NvmeError::AdminTimeout { .. }
            | NvmeError::ReadyTimeout { .. } => io::ErrorKind::TimedOut,
            NvmeError::Untranslated { .. } => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::Other,
        }
    }

    /// As a driver error about opening `what`.
    pub fn open(self, what: impl Into<String>) -> DriverError {
        DriverError::Open {
            what: what.into(),
            source: io::Error::new(self.kind(), self),
        }
    }

    /// As a driver error about a command.
    pub fn io(self, op: Op, lba: u64) -> DriverError {
        DriverError::Io {
            op,
            lba,
            source: io::Error::new(self.kind(), self),
        }
    }

    /// A sysfs or device-file error.
    pub fn sys(what: impl Into<String>, source: io::Error) -> Self {
        NvmeError::Sys {
            what: what.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn travels_inside_driver_error() {
        let e = NvmeError::Timeout {
            op: Op::Write,
            opcode: 1,
            qid: 3,
            cid: 17,
            ms: 500,
        }
        .io(Op::Write, 8);
        let inner = NvmeError::of(&e).expect("typed");
        assert!(matches!(
            inner,
            NvmeError::Timeout {
                qid: 3,
                cid: 17,
                ..
            }
        ));
        let text = format!("{}: {}", e, inner);
        assert!(text.contains("qid 3") && text.contains("cid 17"), "{text}");
        assert_eq!(e.errno(), -libc::ETIMEDOUT);
        let open = NvmeError::QueueLimit { max: 2 }.open("nvme queue pair");
        assert_eq!(open.errno(), -libc::EBUSY);
        assert!(matches!(
            NvmeError::of(&open),
            Some(NvmeError::QueueLimit { max: 2 })
        ));
        assert!(NvmeError::of(&DriverError::Config("x".into())).is_none());
    }
}
