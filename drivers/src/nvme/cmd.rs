//! Submission and completion queue entries (NVMe Base Specification 1.4, §4.2 "Submission
//! Queue Entry – Command Format", §4.6 "Completion Queue Entry"), the opcodes Keel uses, and
//! builders for each command.

use std::mem::{offset_of, size_of};

use crate::status::NvmeStatus;

/// Admin command opcodes (§5, Figure 139).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AdminOpcode {
    /// Delete I/O Submission Queue (§5.6).
    DeleteIoSq = 0x00,
    /// Create I/O Submission Queue (§5.4).
    CreateIoSq = 0x01,
    /// Delete I/O Completion Queue (§5.5).
    DeleteIoCq = 0x04,
    /// Create I/O Completion Queue (§5.3).
    CreateIoCq = 0x05,
    /// Identify (§5.15).
    Identify = 0x06,
    /// Set Features (§5.21).
    SetFeatures = 0x09,
    /// Get Features (§5.14).
    GetFeatures = 0x0a,
}

/// NVM command set I/O opcodes (§6, Figure 346).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum NvmOpcode {
    /// Flush (§6.8).
    Flush = 0x00,
    /// Write (§6.15).
    Write = 0x01,
    /// Read (§6.9).
    Read = 0x02,
    /// Write Zeroes (§6.16).
    WriteZeroes = 0x08,
}

/// Feature identifiers (§5.21.1).
pub mod feature {
    /// Volatile Write Cache (§5.21.1.6).
    pub const VOLATILE_WRITE_CACHE: u8 = 0x06;
    /// Number of Queues (§5.21.1.7).
    pub const NUMBER_OF_QUEUES: u8 = 0x07;
}

/// Identify CNS values (§5.15.1).
pub mod cns {
    /// Identify Namespace data structure for NSID.
    pub const NAMESPACE: u8 = 0x00;
    /// Identify Controller data structure.
    pub const CONTROLLER: u8 = 0x01;
}

/// A 64-byte submission queue entry (§4.2, Figure 105).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubmissionEntry {
    /// CDW0: opcode (7:0), fused (9:8), PSDT (15:14, 0 = PRPs), command identifier (31:16).
    pub cdw0: u32,
    /// Namespace Identifier.
    pub nsid: u32,
    /// CDW2–3 (command specific, unused here).
    pub cdw2: u32,
    /// CDW3.
    pub cdw3: u32,
    /// Metadata Pointer.
    pub mptr: u64,
    /// Data Pointer, PRP Entry 1.
    pub prp1: u64,
    /// Data Pointer, PRP Entry 2 (a page, or a PRP list pointer).
    pub prp2: u64,
    /// CDW10–15: command specific.
    pub cdw10: u32,
    /// CDW11.
    pub cdw11: u32,
    /// CDW12.
    pub cdw12: u32,
    /// CDW13.
    pub cdw13: u32,
    /// CDW14.
    pub cdw14: u32,
    /// CDW15.
    pub cdw15: u32,
}

const _: () = {
    assert!(size_of::<SubmissionEntry>() == 64);
    assert!(offset_of!(SubmissionEntry, nsid) == 4);
    assert!(offset_of!(SubmissionEntry, mptr) == 16);
    assert!(offset_of!(SubmissionEntry, prp1) == 24);
    assert!(offset_of!(SubmissionEntry, prp2) == 32);
    assert!(offset_of!(SubmissionEntry, cdw10) == 40);
    assert!(offset_of!(SubmissionEntry, cdw15) == 60);
};

/// A 16-byte completion queue entry (§4.6, Figure 124).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompletionEntry {
    /// DW0: command specific result.
    pub dw0: u32,
    /// DW1: reserved.
    pub dw1: u32,
    /// SQ Head Pointer: how far the controller has consumed the SQ.
    pub sq_head: u16,
    /// SQ Identifier.
    pub sq_id: u16,
    /// Command Identifier.
    pub cid: u16,
    /// Phase Tag (bit 0) and Status Field (15:1).
    pub status: u16,
}

const _: () = {
    assert!(size_of::<CompletionEntry>() == 16);
    assert!(offset_of!(CompletionEntry, sq_head) == 8);
    assert!(offset_of!(CompletionEntry, cid) == 12);
    assert!(offset_of!(CompletionEntry, status) == 14);
};

impl CompletionEntry {
    /// The Phase Tag.
    pub fn phase(&self) -> bool {
        self.status & 1 != 0
    }

    /// The decoded status (§4.6.1).
    pub fn status(&self) -> NvmeStatus {
        NvmeStatus::from_field(self.status >> 1)
    }
}

/// Force Unit Access, CDW12 bit 30 of Read/Write (§6.15).
const FUA: u32 = 1 << 30;

impl SubmissionEntry {
    fn new(opcode: u8, nsid: u32) -> Self {
        SubmissionEntry {
            cdw0: u32::from(opcode),
            nsid,
            ..Default::default()
        }
    }

    /// The opcode.
    pub fn opcode(&self) -> u8 {
        self.cdw0 as u8
    }

    /// The command identifier.
    pub fn cid(&self) -> u16 {
        (self.cdw0 >> 16) as u16
    }

    /// Sets the command identifier.
    pub fn set_cid(&mut self, cid: u16) {
        self.cdw0 = (self.cdw0 & 0xffff) | (u32::from(cid) << 16);
    }

    /// Sets the data pointer (PRPs; PSDT stays 0).
    pub fn set_prp(&mut self, prp1: u64, prp2: u64) {
        self.prp1 = prp1;
        self.prp2 = prp2;
    }

    /// Identify (§5.15) of `cns` for `nsid`, into a 4 KiB buffer at `prp1`.
    pub fn identify(cns: u8, nsid: u32, prp1: u64) -> Self {
        let mut e = Self::new(AdminOpcode::Identify as u8, nsid);
        e.prp1 = prp1;
        e.cdw10 = u32::from(cns);
        e
    }

    /// Set Features Number of Queues (§5.21.1.7): asks for `sq` and `cq` I/O queues (counts).
    pub fn set_number_of_queues(sq: u16, cq: u16) -> Self {
        assert!(sq >= 1 && cq >= 1);
        let mut e = Self::new(AdminOpcode::SetFeatures as u8, 0);
        e.cdw10 = u32::from(feature::NUMBER_OF_QUEUES);
        e.cdw11 = (u32::from(cq - 1) << 16) | u32::from(sq - 1);
        e
    }

    /// Get Features (§5.14), current value of `fid`.
    pub fn get_features(fid: u8) -> Self {
        let mut e = Self::new(AdminOpcode::GetFeatures as u8, 0);
        e.cdw10 = u32::from(fid);
        e
    }

    /// Create I/O Completion Queue (§5.3): physically contiguous (PC), interrupts off.
    pub fn create_io_cq(qid: u16, entries: u16, base: u64) -> Self {
        assert!(qid >= 1 && entries >= 2);
        let mut e = Self::new(AdminOpcode::CreateIoCq as u8, 0);
        e.prp1 = base;
        e.cdw10 = (u32::from(entries - 1) << 16) | u32::from(qid);
        e.cdw11 = 1; // PC = 1, IEN = 0, IV = 0
        e
    }

    /// Create I/O Submission Queue (§5.4) bound to CQ `cqid`, physically contiguous.
    pub fn create_io_sq(qid: u16, entries: u16, base: u64, cqid: u16) -> Self {
        assert!(qid >= 1 && entries >= 2);
        let mut e = Self::new(AdminOpcode::CreateIoSq as u8, 0);
        e.prp1 = base;
        e.cdw10 = (u32::from(entries - 1) << 16) | u32::from(qid);
        e.cdw11 = (u32::from(cqid) << 16) | 1; // QPRIO 0, PC = 1
        e
    }

    /// Delete I/O Submission Queue (§5.6).
    pub fn delete_io_sq(qid: u16) -> Self {
        let mut e = Self::new(AdminOpcode::DeleteIoSq as u8, 0);
        e.cdw10 = u32::from(qid);
        e
    }

    /// Delete I/O Completion Queue (§5.5).
    pub fn delete_io_cq(qid: u16) -> Self {
        let mut e = Self::new(AdminOpcode::DeleteIoCq as u8, 0);
        e.cdw10 = u32::from(qid);
        e
    }

    /// Read (§6.9) or Write (§6.15) of `blocks` blocks at `slba`; PRPs set separately.
    pub fn read_write(write: bool, nsid: u32, slba: u64, blocks: u32, fua: bool) -> Self {
        assert!((1..=65536).contains(&blocks), "NLB of {blocks} blocks");
        let op = if write {
            NvmOpcode::Write
        } else {
            NvmOpcode::Read
        };
        let mut e = Self::new(op as u8, nsid);
        e.cdw10 = slba as u32;
        e.cdw11 = (slba >> 32) as u32;
        e.cdw12 = (blocks - 1) | if fua { FUA } else { 0 };
        e
    }

    /// Flush (§6.8).
    pub fn flush(nsid: u32) -> Self {
        Self::new(NvmOpcode::Flush as u8, nsid)
    }

    /// Write Zeroes (§6.16) of `blocks` blocks at `slba`.
    pub fn write_zeroes(nsid: u32, slba: u64, blocks: u32) -> Self {
        assert!((1..=65536).contains(&blocks), "NLB of {blocks} blocks");
        let mut e = Self::new(NvmOpcode::WriteZeroes as u8, nsid);
        e.cdw10 = slba as u32;
        e.cdw11 = (slba >> 32) as u32;
        e.cdw12 = blocks - 1;
        e
    }
}

/// Most blocks one Read, Write or Write Zeroes carries (NLB is a 16-bit 0-based count).
pub const NLB_MAX: u32 = 65536;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_write_encode() {
        let mut e = SubmissionEntry::read_write(true, 1, 0x1_0000_0002, 8, true);
        e.set_cid(0xbeef);
        e.set_prp(0x1000, 0x2000);
        assert_eq!(e.opcode(), 0x01);
        assert_eq!(e.cid(), 0xbeef);
        assert_eq!(e.cdw0, 0xbeef_0001);
        assert_eq!(e.nsid, 1);
        assert_eq!(e.cdw10, 2);
        assert_eq!(e.cdw11, 1);
        assert_eq!(e.cdw12, 7 | (1 << 30));
        let r = SubmissionEntry::read_write(false, 1, 5, 1, false);
        assert_eq!((r.opcode(), r.cdw12), (0x02, 0));
        let z = SubmissionEntry::write_zeroes(1, 9, 65536);
        assert_eq!((z.opcode(), z.cdw10, z.cdw12), (0x08, 9, 0xffff));
        assert_eq!(SubmissionEntry::flush(1).opcode(), 0);
    }

    #[test]
    fn admin_encode() {
        let cq = SubmissionEntry::create_io_cq(3, 256, 0xabc000);
        assert_eq!(
            (cq.opcode(), cq.cdw10, cq.cdw11),
            (0x05, (255 << 16) | 3, 1)
        );
        let sq = SubmissionEntry::create_io_sq(3, 256, 0xdef000, 3);
        assert_eq!(sq.cdw11, (3 << 16) | 1);
        assert_eq!(sq.prp1, 0xdef000);
        let nq = SubmissionEntry::set_number_of_queues(4, 4);
        assert_eq!((nq.cdw10, nq.cdw11), (7, (3 << 16) | 3));
        let id = SubmissionEntry::identify(cns::CONTROLLER, 0, 0x5000);
        assert_eq!((id.opcode(), id.cdw10, id.prp1), (0x06, 1, 0x5000));
        assert_eq!(SubmissionEntry::get_features(6).cdw10, 6);
        assert_eq!(SubmissionEntry::delete_io_sq(2).cdw10, 2);
        assert_eq!(SubmissionEntry::delete_io_cq(2).opcode(), 0x04);
    }

    #[test]
    fn completion_decodes_phase_and_status() {
        // Phase 1, SCT 2 (media), SC 0x81, DNR.
        let field: u16 = (1 << 14) | (2 << 8) | 0x81;
        let c = CompletionEntry {
            cid: 5,
            status: (field << 1) | 1,
            ..Default::default()
        };
        assert!(c.phase());
        let s = c.status();
        assert_eq!((s.sct, s.sc, s.dnr), (2, 0x81, true));
        assert_eq!(
            s,
            NvmeStatus {
                dnr: true,
                ..NvmeStatus::UNRECOVERED_READ_ERROR
            }
        );
        let ok = CompletionEntry::default();
        assert!(!ok.phase() && ok.status().is_success());
    }
}
