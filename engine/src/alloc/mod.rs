//! The data-area allocator of one shard.
//!
//! Each shard owns a data area `[data_start, data_start + data_pages)` of device pages
//! ([`PAGE`](crate::PAGE) bytes each, absolute page numbers; docs/format.md). The allocator
//! says which of those pages are free and hands them out as [`Extent`](crate::Extent)s. It
//! is not persisted: recovery rebuilds it from the extents that the committed metadata
//! references ([`Allocator::rebuild`]), and fsck checks it against them
//! ([`Allocator::check`]).
//!
//! Every page of the area is in exactly one of three states:
//!
//! ```text
//!             alloc / alloc_into
//!   free ─────────────────────────────▶ used
//!    ▲ ▲                                │ │
//!    │ └────────── release_now ─────────┘ │ defer_free(gate): committed metadata
//!    │                                    ▼ no longer references it
//!    └───── advance: gate passed ───── deferred
//! ```
//!
//! - [`free_map`] — [`FreeMap`], the set of free pages as coalesced runs;
//! - [`allocator`] — [`Allocator`], placement (next fit, so appends stay sequential on the
//!   device) and the deferred frees that enforce ordering rule 4 of docs/format.md §5:
//!   freed pages are reused only after the freeing batch is durable and every data I/O
//!   issued before it has completed ([`FreeGate`]). A shard's turn releases at most a
//!   few passed frees ([`Allocator::advance_some`]), so that removing an object of many
//!   scattered extents does not stall one turn; planning that runs out of space releases
//!   all of them first ([`Allocator::advance`]).
//!
//! The allocator belongs to one shard and is driven from its reactor: no locks, and no
//! allocation on the I/O path beyond the free map's B-tree nodes.

pub mod allocator;
pub mod free_map;

pub use allocator::{AllocError, Allocator, Claim, Extents, FreeGate, NEXT_FIT_SCAN_RUNS_MAX};
pub use free_map::FreeMap;
