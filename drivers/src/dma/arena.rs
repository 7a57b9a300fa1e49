//! One contiguous mapping of DMA-able memory.

use std::alloc::Layout;
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::pagemap;
use crate::error::DriverError;

/// Size of the hugepages Keel uses for DMA memory.
pub const HUGE_PAGE_BYTES: usize = 2 << 20;

static NEXT_REGION_ID: AtomicU32 = AtomicU32::new(1);

/// Where DMA memory comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaSource {
    /// Hugepages when enough are free, else heap memory.
    Auto,
    /// Hugepages or fail.
    Hugepages,
    /// Aligned heap memory.
    Heap,
}

enum Backing {
    Hugepages,
    Heap,
}

/// The mapping itself; freed when the last [`DmaRegion`] handle (and so the last buffer of
/// the pool) goes away.
pub(crate) struct Arena {
    id: u32,
    base: NonNull<u8>,
    layout: Layout,
    backing: Backing,
    /// Physical address of each hugepage, when the kernel told us.
    page_phys: Option<Box<[u64]>>,
}

// SAFETY: the arena is plain memory owned by this value; every access to its bytes goes
// through a DmaBuf, which hands out each slot to one owner at a time.
unsafe impl Send for Arena {}
// SAFETY: as above; the Arena's own fields are immutable after construction.
unsafe impl Sync for Arena {}

impl Drop for Arena {
    fn drop(&mut self) {
        match self.backing {
            // SAFETY: base/layout are exactly what hugepage_rs::alloc returned and was asked for.
            Backing::Hugepages => unsafe { hugepage_rs::dealloc(self.base.as_ptr(), self.layout) },
            // SAFETY: base/layout are exactly what std::alloc::alloc_zeroed returned and was asked for.
            Backing::Heap => unsafe { std::alloc::dealloc(self.base.as_ptr(), self.layout) },
        }
    }
}

/// A shared handle on an arena: what drivers register (io_uring fixed buffers, VFIO maps).
#[derive(Clone)]
pub struct DmaRegion(pub(crate) Arc<Arena>);

impl fmt::Debug for DmaRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaRegion")
            .field("id", &self.0.id)
            .field("bytes", &self.len())
            .field("hugepages", &self.is_hugepages())
            .finish()
    }
}

impl DmaRegion {
    /// Maps `bytes` (rounded up to the source's page) aligned to at least `align`.
    pub(crate) fn new(bytes: usize, align: usize, source: DmaSource) -> Result<Self, DriverError> {
        let align = align.max(4096);
        if !align.is_power_of_two() || align > HUGE_PAGE_BYTES {
            return Err(DriverError::Config(format!(
                "DMA alignment {align} must be a power of two no larger than 2 MiB"
            )));
        }
        let huge_len = bytes.div_ceil(HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES;
        let want_huge = match source {
            DmaSource::Heap => false,
            DmaSource::Hugepages => true,
            DmaSource::Auto => hugepages_free() * HUGE_PAGE_BYTES as u64 >= huge_len as u64,
        };
        let arena = if want_huge {
            match Self::map_hugepages(huge_len) {
                Some(a) => a,
                None if source == DmaSource::Auto => Self::map_heap(bytes, align)?,
                None => {
                    return Err(DriverError::Config(format!(
                        "no {} MiB of free 2 MiB hugepages (reserve them: vendor-scripts/setup.sh config)",
                        huge_len >> 20
                    )))
                }
            }
        } else {
            Self::map_heap(bytes, align)?
        };
        Ok(DmaRegion(Arc::new(arena)))
    }

    fn map_hugepages(len: usize) -> Option<Arena> {
        let layout = Layout::from_size_align(len, HUGE_PAGE_BYTES).ok()?;
        // SAFETY: layout has a non-zero size (len >= one hugepage).
        let base = NonNull::new(unsafe { hugepage_rs::alloc(layout) })?;
        // Fault every page in now (hugetlb pages are then pinned and never move), so the I/O
        // path takes no page fault and pagemap reports each page as present.
        for off in (0..len).step_by(HUGE_PAGE_BYTES) {
            // SAFETY: off < len, inside the mapping just made; volatile so it is not elided.
            unsafe { base.as_ptr().add(off).write_volatile(0) };
        }
        let page_phys = translate(base.as_ptr() as u64, len);
        let id = NEXT_REGION_ID.fetch_add(1, Ordering::Relaxed);
        log::info!(
            "dma region {id}: {} MiB from 2 MiB hugepages, {}",
            len >> 20,
            if page_phys.is_some() {
                "device addresses from /proc/self/pagemap"
            } else {
                "no physical addresses (not root): usable by kernel-path and sim drivers only"
            }
        );
        Some(Arena {
            id,
            base,
            layout,
            backing: Backing::Hugepages,
            page_phys,
        })
    }

    fn map_heap(bytes: usize, align: usize) -> Result<Arena, DriverError> {
        let len = bytes.div_ceil(align).max(1) * align;
        let layout = Layout::from_size_align(len, align)
            .map_err(|e| DriverError::Config(format!("DMA region of {len} bytes: {e}")))?;
        // SAFETY: layout has a non-zero size.
        let base = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).ok_or_else(|| {
            DriverError::Config(format!("out of memory for a {len}-byte DMA region"))
        })?;
        let id = NEXT_REGION_ID.fetch_add(1, Ordering::Relaxed);
        log::info!(
            "dma region {id}: {} KiB from heap memory aligned to {align} (no hugepages: {} free); \
             fine for kernel-path and sim drivers, not for userspace NVMe",
            len >> 10,
            hugepages_free()
        );
        Ok(Arena {
            id,
            base,
            layout,
            backing: Backing::Heap,
            page_phys: None,
        })
    }

    /// Unique id of the region in this process.
    pub fn id(&self) -> u32 {
        self.0.id
    }

    /// First byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.0.base.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.layout.size()
    }

    /// Always false: a region has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// True when backed by hugepages.
    pub fn is_hugepages(&self) -> bool {
        matches!(self.0.backing, Backing::Hugepages)
    }

    /// True when device (physical) addresses are known for the whole region.
    pub fn has_device_addrs(&self) -> bool {
        self.0.page_phys.is_some()
    }

    /// The device address of byte `offset` of the region, if known.
    pub fn device_addr(&self, offset: usize) -> Option<u64> {
        debug_assert!(offset < self.len());
        let pages = self.0.page_phys.as_ref()?;
        let phys = pages.get(offset / HUGE_PAGE_BYTES)?;
        Some(phys + (offset % HUGE_PAGE_BYTES) as u64)
    }
}

/// Physical address of each hugepage of the mapping, checked to be contiguous within the
/// page; `None` if any page cannot be translated.
fn translate(base: u64, len: usize) -> Option<Box<[u64]>> {
    let pagemap = pagemap::open().ok()?;
    let mut out = Vec::with_capacity(len / HUGE_PAGE_BYTES);
    for off in (0..len as u64).step_by(HUGE_PAGE_BYTES) {
        let first = pagemap::phys_addr(&pagemap, base + off).ok()??;
        let last_off = HUGE_PAGE_BYTES as u64 - 4096;
        let last = pagemap::phys_addr(&pagemap, base + off + last_off).ok()??;
        if first % HUGE_PAGE_BYTES as u64 != 0 || last != first + last_off {
            log::warn!("hugepage at {:#x} is not physically contiguous", base + off);
            return None;
        }
        out.push(first);
    }
    Some(out.into_boxed_slice())
}

/// Free 2 MiB hugepages on the host (0 if unknown).
pub fn hugepages_free() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("HugePages_Free:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}
