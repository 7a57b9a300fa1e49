//! A fixed set of equal DMA buffers carved from one region at start.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use super::arena::{DmaRegion, DmaSource};
use super::buf::DmaBuf;
use crate::error::DriverError;

/// Size and number of buffers in a pool.
#[derive(Clone, Copy, Debug)]
pub struct PoolConfig {
    /// Capacity of each buffer in bytes (rounded up to `align`).
    pub buf_bytes: usize,
    /// Number of buffers.
    pub count: u32,
    /// Alignment of each buffer (at least 4096).
    pub align: usize,
    /// Where the memory comes from.
    pub source: DmaSource,
}

impl PoolConfig {
    /// `count` buffers of `buf_bytes`, 4 KiB aligned, from hugepages when available.
    pub fn new(buf_bytes: usize, count: u32) -> Self {
        Self {
            buf_bytes,
            count,
            align: 4096,
            source: DmaSource::Auto,
        }
    }
}

pub(crate) struct PoolInner {
    pub(crate) region: DmaRegion,
    pub(crate) stride: usize,
    pub(crate) buf_bytes: usize,
    pub(crate) free: FreeSlots,
}

/// The free buffers of a pool, last freed first out: the buffer a command just gave back
/// is the one the next takes, still in the CPU's cache (a queue would hand out the
/// buffer that has been idle longest, whose lines are long gone). A mutex is uncontended
/// in the common case (one reactor per pool); a buffer may be dropped on any thread.
pub(crate) struct FreeSlots {
    slots: Mutex<Vec<u32>>,
    count: usize,
}

impl FreeSlots {
    fn new(count: u32) -> Self {
        FreeSlots {
            slots: Mutex::new((0..count).rev().collect()),
            count: count as usize,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u32>> {
        // The list is valid whatever a panicking holder did: each push or pop is whole.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn pop(&self) -> Option<u32> {
        self.lock().pop()
    }

    pub(crate) fn push(&self, slot: u32) {
        let mut s = self.lock();
        debug_assert!(s.len() < self.count, "more buffers freed than the pool has");
        s.push(slot);
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// A pool of DMA buffers. Cloning shares the pool; it may be used from any thread.
#[derive(Clone)]
pub struct DmaPool(pub(crate) Arc<PoolInner>);

impl fmt::Debug for DmaPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaPool")
            .field("buf_bytes", &self.0.buf_bytes)
            .field("capacity", &self.0.free.count)
            .field("available", &self.available())
            .field("region", &self.0.region)
            .finish()
    }
}

impl DmaPool {
    /// Maps the memory for every buffer now; nothing is allocated later.
    pub fn new(cfg: PoolConfig) -> Result<Self, DriverError> {
        if cfg.count == 0 || cfg.buf_bytes == 0 {
            return Err(DriverError::Config(format!(
                "DMA pool needs at least one non-empty buffer (asked {} x {} bytes)",
                cfg.count, cfg.buf_bytes
            )));
        }
        if !cfg.align.is_power_of_two() {
            return Err(DriverError::Config(format!(
                "DMA buffer alignment {} is not a power of two",
                cfg.align
            )));
        }
        let align = cfg.align.max(4096);
        let stride = cfg.buf_bytes.div_ceil(align) * align;
        let total = stride
            .checked_mul(cfg.count as usize)
            .ok_or_else(|| DriverError::Config("DMA pool size overflows".into()))?;
        let region = DmaRegion::new(total, align, cfg.source)?;
        let free = FreeSlots::new(cfg.count);
        Ok(DmaPool(Arc::new(PoolInner {
            region,
            stride,
            buf_bytes: cfg.buf_bytes,
            free,
        })))
    }

    /// Takes a free buffer, with its length set to its capacity; `None` when all are out.
    pub fn alloc(&self) -> Option<DmaBuf> {
        let slot = self.0.free.pop()?;
        Some(DmaBuf::from_slot(self.0.clone(), slot))
    }

    /// Capacity of each buffer in bytes.
    pub fn buf_bytes(&self) -> usize {
        self.0.buf_bytes
    }

    /// Buffers in the pool.
    pub fn capacity(&self) -> usize {
        self.0.free.count
    }

    /// Buffers not handed out.
    pub fn available(&self) -> usize {
        self.0.free.len()
    }

    /// The region the buffers live in (to register with a queue pair).
    pub fn region(&self) -> &DmaRegion {
        &self.0.region
    }
}
