//! Virtual to physical translation through `/proc/self/pagemap`
//! (kernel Documentation/admin-guide/mm/pagemap.rst): one little-endian u64 per 4 KiB
//! virtual page; bit 63 "present", bits 0–54 the page frame number. The kernel reports a
//! zero frame number to processes without CAP_SYS_ADMIN.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

const SMALL_PAGE: u64 = 4096;
const PRESENT: u64 = 1 << 63;
const PFN_MASK: u64 = (1 << 55) - 1;

/// Reads the physical address backing `vaddr`. `Ok(None)` when the page is not present or
/// the kernel hides frame numbers from this process.
pub fn phys_addr(pagemap: &File, vaddr: u64) -> io::Result<Option<u64>> {
    let mut entry = [0u8; 8];
    pagemap.read_exact_at(&mut entry, (vaddr / SMALL_PAGE) * 8)?;
    let entry = u64::from_le_bytes(entry);
    let pfn = entry & PFN_MASK;
    if entry & PRESENT == 0 || pfn == 0 {
        return Ok(None);
    }
    Ok(Some(pfn * SMALL_PAGE + vaddr % SMALL_PAGE))
}

/// Opens this process's pagemap.
pub fn open() -> io::Result<File> {
    File::open("/proc/self/pagemap")
}
