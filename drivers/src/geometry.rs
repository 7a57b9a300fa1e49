//! What a device reports about itself.

/// Geometry and capabilities of a block device (for NVMe, of one namespace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Logical block size in bytes (512 or 4096 in practice). Every transfer is a whole
    /// number of blocks.
    pub block_size: u32,
    /// Logical blocks on the device.
    pub block_count: u64,
    /// The largest transfer one command may carry, in bytes (NVMe: MDTS).
    pub max_transfer_bytes: u32,
    /// Blocks that a single write of at most this size, not crossing a multiple of it, is
    /// written atomically across a power failure (NVMe: NAWUPF/AWUPF + 1). 1 means a single
    /// block, which every NVMe device guarantees.
    pub atomic_write_blocks: u32,
    /// A volatile write cache is enabled: a completed write is not durable until a Flush,
    /// unless written with FUA.
    pub volatile_write_cache: bool,
    /// A write with FUA costs about what a plain write does: the device implements FUA
    /// (NVMe always; a kernel block device whose `queue/fua` says 1). Where FUA is
    /// emulated (a kernel device without it, a regular file: a flush after each write), a
    /// caller making many writes durable does better with plain writes and one Flush.
    pub fua_native: bool,
    /// The device implements Write Zeroes natively.
    pub write_zeroes: bool,
    /// Required alignment of data buffers in memory, in bytes.
    pub dma_align: u32,
}

impl Geometry {
    /// Device capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.block_count * u64::from(self.block_size)
    }

    /// Blocks per maximal transfer.
    pub fn max_transfer_blocks(&self) -> u32 {
        self.max_transfer_bytes / self.block_size
    }
}
