//! DMA memory: buffers a device may read and write directly.
//!
//! An `arena` is one contiguous mapping, from 2 MiB hugepages when the host has reserved
//! them (pinned, physically contiguous per page, with device addresses from
//! `/proc/self/pagemap`) or else from aligned heap memory (fine for the kernel paths and the
//! simulated device, not for a userspace PCI driver). A `pool` carves an arena into
//! equal buffers at start, so the I/O path never allocates; a [`DmaBuf`] is one of them,
//! owned: it moves into `submit`, comes back in the completion, and returns to its pool
//! when dropped.

mod arena;
mod buf;
mod pagemap;
mod pool;

pub use arena::{hugepages_free, DmaRegion, DmaSource, HUGE_PAGE_BYTES};
pub use buf::DmaBuf;
pub use pool::{DmaPool, PoolConfig};
