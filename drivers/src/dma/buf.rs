//! One owned DMA buffer.

use std::fmt;
use std::sync::Arc;

use super::arena::DmaRegion;
use super::pool::PoolInner;

/// A buffer from a [`DmaPool`](super::DmaPool): owned by one holder at a time (the caller,
/// or the device while a command is in flight), returned to its pool on drop.
///
/// It has a capacity (fixed by the pool) and a length (the transfer size of the command it
/// goes into), settable with [`set_len`](DmaBuf::set_len).
pub struct DmaBuf {
    pool: Arc<PoolInner>,
    slot: u32,
    len: usize,
}

impl DmaBuf {
    pub(crate) fn from_slot(pool: Arc<PoolInner>, slot: u32) -> Self {
        let len = pool.buf_bytes;
        DmaBuf { pool, slot, len }
    }

    fn offset(&self) -> usize {
        self.slot as usize * self.pool.stride
    }

    /// First byte.
    pub fn as_ptr(&self) -> *const u8 {
        // SAFETY: offset() is inside the region: slot < count and count * stride <= len.
        unsafe { self.pool.region.as_ptr().add(self.offset()) }
    }

    /// First byte, writable.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: as in as_ptr.
        unsafe { self.pool.region.as_ptr().add(self.offset()) }
    }

    /// The bytes up to the length.
    pub fn as_slice(&self) -> &[u8] {
        // The slot [offset, offset + capacity) is owned by this DmaBuf alone (a slot
        // is in the free list or in exactly one DmaBuf), len <= capacity, and no command is
        // in flight on it while the caller holds it.
        // SAFETY: the slice covers bytes this buffer alone owns.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// The bytes up to the length, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice; &mut self guarantees the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr(), self.len) }
    }

    /// Transfer length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the length is zero.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.pool.buf_bytes
    }

    /// Sets the transfer length. Panics past the capacity (a programmer error).
    pub fn set_len(&mut self, len: usize) {
        assert!(
            len <= self.capacity(),
            "DmaBuf::set_len({len}) past capacity {}",
            self.capacity()
        );
        self.len = len;
    }

    /// The region this buffer lives in.
    pub fn region(&self) -> &DmaRegion {
        &self.pool.region
    }

    /// Offset of the first byte within its region.
    pub fn region_offset(&self) -> usize {
        self.offset()
    }

    /// The device (bus) address of byte `offset` of the buffer, when the region has them.
    /// Hugepage regions are contiguous within each 2 MiB page only: ask per device page.
    pub fn device_addr(&self, offset: usize) -> Option<u64> {
        assert!(offset < self.capacity(), "offset {offset} past capacity");
        self.pool.region.device_addr(self.offset() + offset)
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        // This slot is not in the free list (it was popped to make this DmaBuf).
        self.pool.free.push(self.slot);
    }
}

impl fmt::Debug for DmaBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaBuf")
            .field("region", &self.pool.region.id())
            .field("slot", &self.slot)
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish()
    }
}
