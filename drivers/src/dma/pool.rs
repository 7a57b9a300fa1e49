//! A fixed set of equal DMA buffers carved from one region at start.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

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
/// buffer that has been idle longest, whose lines are long gone).
///
/// A lock-free stack of slot numbers: `head` packs a version (high 32 bits) with the top
/// slot (low 32 bits, [`NONE`] when empty), and `next[slot]` links each free slot to the one
/// below it. Every change of `head` bumps the version, so a compare-and-swap that read an
/// old top fails even if that slot has since been taken and given back (no ABA). A buffer
/// may be dropped on any thread; nothing allocates or blocks.
pub(crate) struct FreeSlots {
    head: AtomicU64,
    next: Box<[AtomicU32]>,
    available: AtomicUsize,
}

/// No slot: the end of the stack.
const NONE: u32 = u32::MAX;

fn pack(version: u32, slot: u32) -> u64 {
    u64::from(version) << 32 | u64::from(slot)
}

fn unpack(head: u64) -> (u32, u32) {
    ((head >> 32) as u32, head as u32)
}

impl FreeSlots {
    /// Slots `0..count`, all free, 0 on top.
    fn new(count: u32) -> Self {
        assert!(count < NONE, "a pool of {count} buffers");
        let next = (0..count)
            .map(|s| AtomicU32::new(if s + 1 < count { s + 1 } else { NONE }))
            .collect();
        FreeSlots {
            head: AtomicU64::new(pack(0, if count > 0 { 0 } else { NONE })),
            next,
            available: AtomicUsize::new(count as usize),
        }
    }

    pub(crate) fn pop(&self) -> Option<u32> {
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let (version, top) = unpack(head);
            if top == NONE {
                return None;
            }
            // May be stale if another thread takes `top` meanwhile: then the version has
            // moved and the exchange fails.
            let below = self.next[top as usize].load(Ordering::Relaxed);
            let new = pack(version.wrapping_add(1), below);
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => {
                    self.available.fetch_sub(1, Ordering::Relaxed);
                    return Some(top);
                }
                Err(now) => head = now,
            }
        }
    }

    pub(crate) fn push(&self, slot: u32) {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let (version, top) = unpack(head);
            debug_assert_ne!(top, slot, "a buffer freed twice");
            self.next[slot as usize].store(top, Ordering::Relaxed);
            let new = pack(version.wrapping_add(1), slot);
            // Release: what was written to the buffer is seen by the thread that pops it.
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.available.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(now) => head = now,
            }
        }
    }

    fn len(&self) -> usize {
        self.available.load(Ordering::Relaxed)
    }

    fn count(&self) -> usize {
        self.next.len()
    }
}

/// A pool of DMA buffers. Cloning shares the pool; it may be used from any thread.
#[derive(Clone)]
pub struct DmaPool(pub(crate) Arc<PoolInner>);

impl fmt::Debug for DmaPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaPool")
            .field("buf_bytes", &self.0.buf_bytes)
            .field("capacity", &self.0.free.count())
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
        self.0.free.count()
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
