//! NVMe completion status (NVMe Base Specification 2.0, §4.6.1.2 "Status Field Definition").
//!
//! Every driver reports device faults in this one shape, so the engine handles a failing
//! userspace NVMe controller, an `EIO` from the kernel path and a fault injected into the
//! simulated device the same way.

use std::fmt;

/// Status Code Type (SCT), bits 27:25 of completion dword 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StatusCodeType {
    /// Generic Command Status (§4.6.1.2.1).
    Generic = 0,
    /// Command Specific Status (§4.6.1.2.2).
    CommandSpecific = 1,
    /// Media and Data Integrity Errors (§4.6.1.2.3).
    MediaError = 2,
    /// Path Related Status (§4.6.1.2.4).
    Path = 3,
    /// Vendor specific (SCT 7).
    Vendor = 7,
    /// Reserved values (4..=6).
    Reserved = 4,
}

impl StatusCodeType {
    /// Decodes the 3-bit SCT field.
    pub fn from_bits(bits: u8) -> Self {
        match bits & 0x7 {
            0 => Self::Generic,
            1 => Self::CommandSpecific,
            2 => Self::MediaError,
            3 => Self::Path,
            7 => Self::Vendor,
            _ => Self::Reserved,
        }
    }
}

/// A device status: status code type, status code and the Do Not Retry bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NvmeStatus {
    /// Status Code Type.
    pub sct: u8,
    /// Status Code.
    pub sc: u8,
    /// Do Not Retry: the same command would fail again.
    pub dnr: bool,
}

impl NvmeStatus {
    /// Generic 0x02: Invalid Field in Command.
    pub const INVALID_FIELD: Self = Self::generic(0x02);
    /// Generic 0x04: Data Transfer Error.
    pub const DATA_TRANSFER_ERROR: Self = Self::generic(0x04);
    /// Generic 0x06: Internal Error.
    pub const INTERNAL_ERROR: Self = Self::generic(0x06);
    /// Generic 0x80: LBA Out of Range.
    pub const LBA_OUT_OF_RANGE: Self = Self::generic(0x80);
    /// Generic 0x81: Capacity Exceeded.
    pub const CAPACITY_EXCEEDED: Self = Self::generic(0x81);
    /// Media 0x80: Write Fault.
    pub const WRITE_FAULT: Self = Self::media(0x80);
    /// Media 0x81: Unrecovered Read Error.
    pub const UNRECOVERED_READ_ERROR: Self = Self::media(0x81);

    /// A generic command status.
    pub const fn generic(sc: u8) -> Self {
        Self {
            sct: 0,
            sc,
            dnr: false,
        }
    }

    /// A media and data integrity status.
    pub const fn media(sc: u8) -> Self {
        Self {
            sct: 2,
            sc,
            dnr: false,
        }
    }

    /// Decodes the 15-bit status field (completion dword 3, bits 31:17, shifted down so that
    /// bit 0 is SC bit 0): SC in bits 7:0, SCT in 10:8, CRD 12:11, More 13, DNR 14.
    pub fn from_field(field: u16) -> Self {
        Self {
            sc: (field & 0xff) as u8,
            sct: ((field >> 8) & 0x7) as u8,
            dnr: field & (1 << 14) != 0,
        }
    }

    /// The status code type.
    pub fn code_type(&self) -> StatusCodeType {
        StatusCodeType::from_bits(self.sct)
    }

    /// True for "Successful Completion".
    pub fn is_success(&self) -> bool {
        self.sct == 0 && self.sc == 0
    }

    /// A human name for the well-known codes.
    pub fn name(&self) -> &'static str {
        match (self.code_type(), self.sc) {
            (StatusCodeType::Generic, 0x00) => "Successful Completion",
            (StatusCodeType::Generic, 0x01) => "Invalid Command Opcode",
            (StatusCodeType::Generic, 0x02) => "Invalid Field in Command",
            (StatusCodeType::Generic, 0x03) => "Command ID Conflict",
            (StatusCodeType::Generic, 0x04) => "Data Transfer Error",
            (StatusCodeType::Generic, 0x05) => "Commands Aborted due to Power Loss Notification",
            (StatusCodeType::Generic, 0x06) => "Internal Error",
            (StatusCodeType::Generic, 0x07) => "Command Abort Requested",
            (StatusCodeType::Generic, 0x08) => "Command Aborted due to SQ Deletion",
            (StatusCodeType::Generic, 0x0b) => "Invalid Namespace or Format",
            (StatusCodeType::Generic, 0x80) => "LBA Out of Range",
            (StatusCodeType::Generic, 0x81) => "Capacity Exceeded",
            (StatusCodeType::Generic, 0x82) => "Namespace Not Ready",
            (StatusCodeType::CommandSpecific, 0x00) => "Completion Queue Invalid",
            (StatusCodeType::CommandSpecific, 0x01) => "Invalid Queue Identifier",
            (StatusCodeType::CommandSpecific, 0x02) => "Invalid Queue Size",
            (StatusCodeType::MediaError, 0x80) => "Write Fault",
            (StatusCodeType::MediaError, 0x81) => "Unrecovered Read Error",
            (StatusCodeType::MediaError, 0x82) => "End-to-end Guard Check Error",
            (StatusCodeType::MediaError, 0x85) => "Compare Failure",
            (StatusCodeType::MediaError, 0x86) => "Access Denied",
            (StatusCodeType::MediaError, 0x87) => "Deallocated or Unwritten Logical Block",
            _ => "unknown status",
        }
    }
}

impl fmt::Display for NvmeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (SCT {:#x} SC {:#04x}{})",
            self.name(),
            self.sct,
            self.sc,
            if self.dnr { ", do not retry" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_status_field() {
        // SCT 1, SC 1, DNR set: what QEMU answers for a queue id past max_ioqpairs.
        let s = NvmeStatus::from_field((1 << 14) | (1 << 8) | 0x01);
        assert_eq!(s.code_type(), StatusCodeType::CommandSpecific);
        assert_eq!(s.sc, 1);
        assert!(s.dnr);
        assert_eq!(s.name(), "Invalid Queue Identifier");
        assert!(!s.is_success());
        assert!(NvmeStatus::from_field(0).is_success());
    }

    #[test]
    fn display_names_code() {
        let text = NvmeStatus::WRITE_FAULT.to_string();
        assert!(text.contains("Write Fault"), "{text}");
        assert!(text.contains("SCT 0x2"), "{text}");
    }
}
