//! Device addresses for DMA memory, and the driver's own DMA memory (queue rings, PRP
//! lists, Identify pages).
//!
//! A [`Mapper`] turns a byte of a [`DmaRegion`] into the address the controller uses:
//! - **pagemap** (sysfs mode, no IOMMU): the physical address the kernel reported for the
//!   region's hugepages (pinned, contiguous within each 2 MiB page);
//! - **VFIO**: the IOVA at which the driver mapped the region through the IOMMU.
//!
//! A region with neither gives `None`, and the driver refuses the buffer: the controller
//! is never handed an address that does not belong to the buffer.
//!
//! [`ChunkPool`] carves 2 MiB hugepage slabs into page-aligned chunks, so that each queue
//! pair's rings and PRP lists do not cost a hugepage of their own (a controller grants up
//! to 64 queue pairs, and a test guest reserves 64 hugepages in all).

use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use super::error::NvmeError;
use super::vfio::Vfio;
use crate::dma::{DmaRegion, DmaSource, HUGE_PAGE_BYTES};

/// How device addresses are found.
#[derive(Clone)]
pub(crate) enum Mapper {
    /// Physical addresses from /proc/self/pagemap.
    Pagemap,
    /// IOVAs mapped through VFIO.
    Vfio(Arc<Vfio>),
}

impl Mapper {
    /// Makes `region` addressable by the device (VFIO: maps it; pagemap: checks it has
    /// physical addresses). Idempotent.
    pub(crate) fn register(&self, region: &DmaRegion) -> Result<(), NvmeError> {
        match self {
            Mapper::Pagemap => {
                if region.has_device_addrs() {
                    Ok(())
                } else {
                    Err(NvmeError::Unsupported(format!(
                        "DMA region {} has no physical addresses (heap memory, or not root)",
                        region.id()
                    )))
                }
            }
            Mapper::Vfio(v) => v.map_region(region).map(|_| ()),
        }
    }

    /// The device address of byte `offset` of `region`, if the device can reach it.
    pub(crate) fn translate(&self, region: &DmaRegion, offset: usize) -> Option<u64> {
        match self {
            Mapper::Pagemap => region.device_addr(offset),
            Mapper::Vfio(v) => v.iova_of(region.id()).map(|iova| iova + offset as u64),
        }
    }
}

/// Alignment and granularity of chunks.
const CHUNK_ALIGN: usize = 4096;

struct Slab {
    region: DmaRegion,
    /// Free (offset, len) ranges, sorted by offset, coalesced.
    free: Vec<(usize, usize)>,
}

/// Hugepage slabs carved into chunks.
pub(crate) struct ChunkPool {
    mapper: Mapper,
    slabs: Mutex<Vec<Slab>>,
}

impl ChunkPool {
    pub(crate) fn new(mapper: Mapper) -> Arc<Self> {
        Arc::new(ChunkPool {
            mapper,
            slabs: Mutex::new(Vec::new()),
        })
    }

    /// A zeroed chunk of at least `len` bytes, 4 KiB aligned, inside one hugepage.
    pub(crate) fn alloc(self: &Arc<Self>, len: usize) -> Result<Chunk, NvmeError> {
        let len = len.div_ceil(CHUNK_ALIGN).max(1) * CHUNK_ALIGN;
        if len > HUGE_PAGE_BYTES {
            return Err(NvmeError::Unsupported(format!(
                "driver memory of {len} bytes does not fit a 2 MiB hugepage (lower the queue depth)"
            )));
        }
        let mut slabs = self.slabs.lock().unwrap_or_else(|p| p.into_inner());
        let found = slabs.iter().enumerate().find_map(|(i, s)| {
            s.free
                .iter()
                .position(|&(_, l)| l >= len)
                .map(|pos| (i, pos))
        });
        let (slab, pos) = match found {
            Some(f) => f,
            None => {
                let region = DmaRegion::new(HUGE_PAGE_BYTES, HUGE_PAGE_BYTES, DmaSource::Hugepages)
                    .map_err(|e| {
                        NvmeError::Unsupported(format!("no hugepage for queue memory: {e}"))
                    })?;
                self.mapper.register(&region)?;
                slabs.push(Slab {
                    region,
                    free: vec![(0, HUGE_PAGE_BYTES)],
                });
                (slabs.len() - 1, 0)
            }
        };
        let s = &mut slabs[slab];
        let (offset, avail) = s.free[pos];
        if avail == len {
            s.free.remove(pos);
        } else {
            s.free[pos] = (offset + len, avail - len);
        }
        let dev = self
            .mapper
            .translate(&s.region, offset)
            .ok_or_else(|| NvmeError::Unsupported("queue memory has no device address".into()))?;
        // SAFETY: offset + len <= HUGE_PAGE_BYTES = the region's length.
        let ptr = unsafe { NonNull::new_unchecked(s.region.as_ptr().add(offset)) };
        // SAFETY: the range is ours alone now (taken off the free list) and inside the region.
        unsafe { ptr.as_ptr().write_bytes(0, len) };
        Ok(Chunk {
            pool: self.clone(),
            slab,
            offset,
            len,
            ptr,
            dev,
        })
    }

    fn free(&self, slab: usize, offset: usize, len: usize) {
        let mut slabs = self.slabs.lock().unwrap_or_else(|p| p.into_inner());
        let free = &mut slabs[slab].free;
        let pos = free.partition_point(|&(o, _)| o < offset);
        free.insert(pos, (offset, len));
        // Coalesce with the neighbours.
        if pos + 1 < free.len() && free[pos].0 + free[pos].1 == free[pos + 1].0 {
            free[pos].1 += free[pos + 1].1;
            free.remove(pos + 1);
        }
        if pos > 0 && free[pos - 1].0 + free[pos - 1].1 == free[pos].0 {
            free[pos - 1].1 += free[pos].1;
            free.remove(pos);
        }
    }
}

/// A piece of device-visible memory owned by the driver; back to its pool on drop. The
/// owner makes sure the controller no longer uses it before dropping it.
pub(crate) struct Chunk {
    pool: Arc<ChunkPool>,
    slab: usize,
    offset: usize,
    len: usize,
    ptr: NonNull<u8>,
    dev: u64,
}

// SAFETY: a Chunk is exclusive ownership of a range of a slab that stays mapped while the
// pool (held by the Chunk) lives; it moves between threads as a whole.
unsafe impl Send for Chunk {}
// SAFETY: shared access only reads the immutable fields; the bytes are accessed through
// raw pointers by the owner under its own synchronisation (the admin queue's mutex).
unsafe impl Sync for Chunk {}

impl Chunk {
    /// First byte.
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Device address of the first byte (contiguous over the chunk).
    pub(crate) fn dev(&self) -> u64 {
        self.dev
    }

    /// Keeps the memory out of the pool for good: for a chunk the controller might still
    /// write (a queue that could not be deleted).
    pub(crate) fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        self.pool.free(self.slab, self.offset, self.len);
    }
}
