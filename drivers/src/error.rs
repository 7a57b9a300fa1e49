//! The driver layer's one error type.

use std::fmt;
use std::io;

use crate::command::Op;
use crate::status::NvmeStatus;

/// Why a driver refused or failed a command, or could not open a device.
///
/// Request errors (`OutOfRange`, `BadLength`, `Misaligned`, `TooLarge`, `QueueFull`,
/// `Unsupported`) are detected before anything reaches the device: the device is untouched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The block range runs past the end of the device.
    #[error("{op} of {blocks} blocks at lba {lba} runs past the end of the device ({block_count} blocks)")]
    OutOfRange {
        /// The operation.
        op: Op,
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u64,
        /// Blocks on the device.
        block_count: u64,
    },
    /// The transfer length is zero or not a whole number of blocks.
    #[error(
        "{op} of {len} bytes: length must be a non-zero multiple of the {block_size}-byte block"
    )]
    BadLength {
        /// The operation.
        op: Op,
        /// Requested bytes.
        len: u64,
        /// Device block size.
        block_size: u32,
    },
    /// The buffer does not meet the device's DMA alignment.
    #[error("{op}: buffer at {addr:#x} is not aligned to {align} bytes")]
    Misaligned {
        /// The operation.
        op: Op,
        /// Buffer address.
        addr: u64,
        /// Required alignment.
        align: u32,
    },
    /// The transfer is larger than one command may move.
    #[error("{op} of {len} bytes exceeds the device's max transfer of {max} bytes")]
    TooLarge {
        /// The operation.
        op: Op,
        /// Requested bytes.
        len: u64,
        /// Max transfer in bytes.
        max: u32,
    },
    /// Every slot of the queue pair holds a command in flight.
    #[error("{op}: queue pair is full ({depth} commands in flight)")]
    QueueFull {
        /// The operation.
        op: Op,
        /// Queue depth.
        depth: u32,
    },
    /// The device cannot do this operation.
    #[error("{op} is not supported by the {driver} driver")]
    Unsupported {
        /// The operation.
        op: Op,
        /// Driver name.
        driver: &'static str,
    },
    /// The device completed the command with an error status.
    #[error("{op} at lba {lba}: device status {status}{}", cmd.map(|c| c.to_string()).unwrap_or_default())]
    Device {
        /// The operation.
        op: Op,
        /// First block (0 for flush).
        lba: u64,
        /// The status the device returned.
        status: NvmeStatus,
        /// Which NVMe command it was (None where there is no NVMe queue: sim, injected).
        cmd: Option<CmdSlot>,
    },
    /// The kernel returned an error for the command.
    #[error("{op} at lba {lba}")]
    Io {
        /// The operation.
        op: Op,
        /// First block (0 for flush).
        lba: u64,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// The device lost power (a simulated power cut) and takes no more commands.
    #[error("{op}: device is powered off")]
    PoweredOff {
        /// The operation.
        op: Op,
    },
    /// Opening or setting up the device failed.
    #[error("open {what}")]
    Open {
        /// What was being opened, with its path.
        what: String,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// A configuration value is out of its range.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl DriverError {
    /// The operation that failed, when the error is about a command.
    pub fn op(&self) -> Option<Op> {
        match self {
            Self::OutOfRange { op, .. }
            | Self::BadLength { op, .. }
            | Self::Misaligned { op, .. }
            | Self::TooLarge { op, .. }
            | Self::QueueFull { op, .. }
            | Self::Unsupported { op, .. }
            | Self::Device { op, .. }
            | Self::Io { op, .. }
            | Self::PoweredOff { op } => Some(*op),
            Self::Open { .. } | Self::Config(_) => None,
        }
    }

    /// The closest negative errno, for the C ABI.
    pub fn errno(&self) -> i32 {
        -(match self {
            Self::OutOfRange { .. } => libc::ERANGE,
            Self::BadLength { .. } | Self::Misaligned { .. } | Self::Config(_) => libc::EINVAL,
            Self::TooLarge { .. } => libc::E2BIG,
            Self::QueueFull { .. } => libc::EAGAIN,
            Self::Unsupported { .. } => libc::EOPNOTSUPP,
            Self::Device { .. } => libc::EIO,
            Self::Io { source, .. } | Self::Open { source, .. } => {
                match crate::nvme::NvmeError::of(self) {
                    Some(nvme) => nvme.errno(),
                    None => source.raw_os_error().unwrap_or(libc::EIO),
                }
            }
            Self::PoweredOff { .. } => libc::ENODEV,
        })
    }
}

/// Where an NVMe command ran: its opcode, submission queue and command id (STYLE §6: an
/// NVMe failure names all three).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmdSlot {
    /// The NVMe opcode.
    pub opcode: u8,
    /// Submission queue id.
    pub qid: u16,
    /// Command id.
    pub cid: u16,
}

impl fmt::Display for CmdSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            " (opcode {:#04x}, queue {}, command {})",
            self.opcode, self.qid, self.cid
        )
    }
}

/// A command the queue pair refused at submission, handed back whole with its buffer.
pub struct Rejected {
    /// Why it was refused.
    pub error: DriverError,
    /// The command, buffer included.
    pub cmd: crate::command::Command,
}

impl fmt::Debug for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("error", &self.error)
            .field("op", &self.cmd.op())
            .finish()
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command rejected: {}", self.error)
    }
}

impl std::error::Error for Rejected {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_error_names_the_nvme_command_when_there_is_one() {
        let mut e = DriverError::Device {
            op: Op::Write,
            lba: 8,
            status: NvmeStatus::WRITE_FAULT,
            cmd: Some(CmdSlot {
                opcode: 0x01,
                qid: 3,
                cid: 17,
            }),
        };
        let text = e.to_string();
        assert!(text.starts_with("write at lba 8: device status "), "{text}");
        assert!(
            text.ends_with("(opcode 0x01, queue 3, command 17)"),
            "{text}"
        );
        assert_eq!(e.errno(), -libc::EIO);
        if let DriverError::Device { cmd, .. } = &mut e {
            *cmd = None;
        }
        assert!(!e.to_string().contains("queue"), "{e}");
    }
}
