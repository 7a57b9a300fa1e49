//! The fields Keel needs from the Identify Controller (§5.15.2.2, Figure 247) and Identify
//! Namespace (§6.1.5 / NVM Command Set §4.1.5.1, Figure 245) data structures, parsed from
//! the 4 KiB page the controller writes. Little-endian, fixed offsets.

/// Size of an Identify data structure.
pub const IDENTIFY_BYTES: usize = 4096;

fn u16_at(page: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([page[off], page[off + 1]])
}

fn u32_at(page: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(page[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(page: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(page[off..off + 8].try_into().expect("8 bytes"))
}

fn ascii(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

/// Identify Controller, the parts Keel uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifyController {
    /// PCI Vendor ID (bytes 1:0).
    pub vid: u16,
    /// Serial Number (23:4).
    pub serial: String,
    /// Model Number (63:24).
    pub model: String,
    /// Firmware Revision (71:64).
    pub firmware: String,
    /// Maximum Data Transfer Size (byte 77): 2^MDTS minimum pages; 0 = no limit.
    pub mdts: u8,
    /// Submission Queue Entry Size (byte 512): required (3:0) and maximum (7:4), log2.
    pub sqes: u8,
    /// Completion Queue Entry Size (byte 513).
    pub cqes: u8,
    /// Number of Namespaces (519:516).
    pub nn: u32,
    /// Optional NVM Command Support (521:520).
    pub oncs: u16,
    /// Volatile Write Cache (byte 525): bit 0 present.
    pub vwc: u8,
    /// Atomic Write Unit Normal (527:526), 0-based blocks.
    pub awun: u16,
    /// Atomic Write Unit Power Fail (529:528), 0-based blocks.
    pub awupf: u16,
}

/// ONCS bit 3: Write Zeroes supported.
pub const ONCS_WRITE_ZEROES: u16 = 1 << 3;

impl IdentifyController {
    /// Parses the 4 KiB page.
    pub fn parse(page: &[u8]) -> Self {
        assert!(page.len() >= IDENTIFY_BYTES);
        IdentifyController {
            vid: u16_at(page, 0),
            serial: ascii(&page[4..24]),
            model: ascii(&page[24..64]),
            firmware: ascii(&page[64..72]),
            mdts: page[77],
            sqes: page[512],
            cqes: page[513],
            nn: u32_at(page, 516),
            oncs: u16_at(page, 520),
            vwc: page[525],
            awun: u16_at(page, 526),
            awupf: u16_at(page, 528),
        }
    }

    /// Write Zeroes is supported.
    pub fn write_zeroes(&self) -> bool {
        self.oncs & ONCS_WRITE_ZEROES != 0
    }

    /// A volatile write cache is present.
    pub fn vwc_present(&self) -> bool {
        self.vwc & 1 != 0
    }

    /// Largest transfer in bytes for a memory page size of `page_bytes` (CAP.MPSMIN), or
    /// `None` when the controller states no limit.
    pub fn max_transfer_bytes(&self, page_bytes: u64) -> Option<u64> {
        (self.mdts != 0).then(|| page_bytes << self.mdts.min(20))
    }
}

/// One LBA Format (§6.1.5 Figure 246): metadata size, data size, relative performance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LbaFormat {
    /// Metadata Size in bytes.
    pub ms: u16,
    /// LBA Data Size, log2 of bytes.
    pub lbads: u8,
}

/// Identify Namespace, the parts Keel uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifyNamespace {
    /// Namespace Size in blocks (7:0).
    pub nsze: u64,
    /// Namespace Capacity (15:8).
    pub ncap: u64,
    /// Namespace Features (byte 24): bit 1 NSABP, NAWUN/NAWUPF/NACWU are valid.
    pub nsfeat: u8,
    /// Number of LBA Formats (byte 25), 0-based.
    pub nlbaf: u8,
    /// Formatted LBA Size (byte 26): format index in bits 3:0 (and 6:5 above 16 formats).
    pub flbas: u8,
    /// Namespace Atomic Write Unit Normal (35:34), 0-based.
    pub nawun: u16,
    /// Namespace Atomic Write Unit Power Fail (37:36), 0-based.
    pub nawupf: u16,
    /// The LBA format in use (from the table at byte 128).
    pub lbaf: LbaFormat,
}

/// NSFEAT bit 1: the namespace's own atomic write units are valid.
pub const NSFEAT_NSABP: u8 = 1 << 1;

impl IdentifyNamespace {
    /// Parses the 4 KiB page.
    pub fn parse(page: &[u8]) -> Self {
        assert!(page.len() >= IDENTIFY_BYTES);
        let flbas = page[26];
        let index = usize::from((flbas & 0xf) | ((flbas >> 5) & 0x3) << 4);
        let entry = u32_at(page, 128 + 4 * index);
        IdentifyNamespace {
            nsze: u64_at(page, 0),
            ncap: u64_at(page, 8),
            nsfeat: page[24],
            nlbaf: page[25],
            flbas,
            nawun: u16_at(page, 34),
            nawupf: u16_at(page, 36),
            lbaf: LbaFormat {
                ms: entry as u16,
                lbads: (entry >> 16) as u8,
            },
        }
    }

    /// Block size in bytes, or `None` when the format is unusable (LBADS < 9 or huge).
    pub fn block_size(&self) -> Option<u32> {
        (9..=16)
            .contains(&self.lbaf.lbads)
            .then(|| 1 << self.lbaf.lbads)
    }

    /// Atomic write unit for power failure in blocks (1-based): NAWUPF when NSFEAT says it
    /// is valid, else the controller's AWUPF.
    pub fn atomic_write_blocks(&self, ctrlr: &IdentifyController) -> u32 {
        let zero_based = if self.nsfeat & NSFEAT_NSABP != 0 {
            self.nawupf
        } else {
            ctrlr.awupf
        };
        u32::from(zero_based) + 1
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A controller page shaped like QEMU 7.2's.
    pub(crate) fn controller_page(mdts: u8, oncs: u16, vwc: u8, awupf: u16) -> Vec<u8> {
        let mut p = vec![0u8; IDENTIFY_BYTES];
        p[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        p[4..24].copy_from_slice(b"deadbeef            ");
        p[24..64].copy_from_slice(format!("{:<40}", "QEMU NVMe Ctrl").as_bytes());
        p[64..72].copy_from_slice(b"7.2.0   ");
        p[77] = mdts;
        p[512] = 0x66;
        p[513] = 0x44;
        p[516..520].copy_from_slice(&256u32.to_le_bytes());
        p[520..522].copy_from_slice(&oncs.to_le_bytes());
        p[525] = vwc;
        p[526..528].copy_from_slice(&3u16.to_le_bytes());
        p[528..530].copy_from_slice(&awupf.to_le_bytes());
        p
    }

    /// A namespace page of `blocks` with formats 512 B (index 0) and 4 KiB (index 1).
    pub(crate) fn namespace_page(blocks: u64, format: u8, nsfeat: u8, nawupf: u16) -> Vec<u8> {
        let mut p = vec![0u8; IDENTIFY_BYTES];
        p[0..8].copy_from_slice(&blocks.to_le_bytes());
        p[8..16].copy_from_slice(&blocks.to_le_bytes());
        p[24] = nsfeat;
        p[25] = 1;
        p[26] = format;
        p[36..38].copy_from_slice(&nawupf.to_le_bytes());
        p[128..132].copy_from_slice(&(9u32 << 16).to_le_bytes());
        p[132..136].copy_from_slice(&((12u32 << 16) | 8).to_le_bytes());
        p
    }

    #[test]
    fn controller_fields() {
        let c = IdentifyController::parse(&controller_page(7, 0x5f, 1, 0));
        assert_eq!(c.vid, 0x1b36);
        assert_eq!(c.serial, "deadbeef");
        assert_eq!(c.model, "QEMU NVMe Ctrl");
        assert_eq!(c.firmware, "7.2.0");
        assert_eq!(c.mdts, 7);
        assert_eq!(c.max_transfer_bytes(4096), Some(512 << 10));
        assert_eq!(c.nn, 256);
        assert!(c.write_zeroes());
        assert!(c.vwc_present());
        assert_eq!((c.sqes, c.cqes, c.awun, c.awupf), (0x66, 0x44, 3, 0));
        let none = IdentifyController::parse(&controller_page(0, 0, 0, 0));
        assert_eq!(none.max_transfer_bytes(4096), None);
        assert!(!none.write_zeroes() && !none.vwc_present());
    }

    #[test]
    fn namespace_fields_and_atomic_unit() {
        let c = IdentifyController::parse(&controller_page(7, 0, 0, 7));
        let ns = IdentifyNamespace::parse(&namespace_page(1 << 20, 0, 0, 15));
        assert_eq!(ns.nsze, 1 << 20);
        assert_eq!(ns.block_size(), Some(512));
        // NSFEAT.NSABP clear: the controller's AWUPF (7 -> 8 blocks).
        assert_eq!(ns.atomic_write_blocks(&c), 8);
        let ns = IdentifyNamespace::parse(&namespace_page(1 << 17, 1, NSFEAT_NSABP, 15));
        assert_eq!(ns.block_size(), Some(4096));
        assert_eq!(ns.lbaf.ms, 8);
        assert_eq!(ns.atomic_write_blocks(&c), 16);
    }
}
