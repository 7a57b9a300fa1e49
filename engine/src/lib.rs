//! # keel-engine: the object store
//!
//! Keel stores objects (data, attributes, an omap) in collections on a block device driven
//! through `keel-drivers`. The store is generic over the device, so every line of it runs in
//! tests on the simulated device with power cuts, and in production on NVMe.
//!
//! ```text
//!  Transaction ──Store::queue──► shard of its collections (stable hash)
//!     │ validate (static limits)                      txn/
//!     ▼
//!  Shard (one per reactor, polled)                    shard/
//!     locks ─► plan on a shadow of the locked objects: deltas + dirty pages    plan.rs
//!       MetadataOnly: pages written in place / to fresh extents (data queue pair)
//!       Full (or clone, or asked): pages go into the journal entry
//!     ─► group commit: one batch in flight; Flush first if an entry depends on
//!        unflushed data; batch written FUA (journal queue pair)                batch.rs
//!     ─► durable: apply deltas to the MetaTable, defer frees, ack              meta/, alloc/
//!        (Full: then write pages home; reads see them meanwhile)
//!     ─► checkpoint into the older slot; the journal head moves                checkpoint.rs
//!  Store::open: superblock ─► newest valid checkpoint ─► replay the chain      recovery.rs
//! ```
//!
//! - [`docs/format.md`](../docs/format.md) in the repository
//!   gives the on-media format with byte diagrams and the ordering rules the code enforces.
//! - [`reactor`] runs a store as per-core reactors ([`Engine`]): one pinned, polled thread
//!   per shard, fed through bounded lock-free rings, with a stepped mode for deterministic
//!   tests ([`docs/reactors.md`](../docs/reactors.md)). [`Store`] is the same store driven
//!   by the caller's thread.
//! - [`crash`] is the crash explorer: a reference model, a seeded workload and an oracle of
//!   what each journal mode guarantees after a power cut.
//! - [`volume`] is a virtual disk striped over objects (create, open, resize, remove,
//!   read, write, trim, write-zeroes), on an [`Engine`]; `keel-nbd` exports it over NBD
//!   ([`docs/volumes.md`](../docs/volumes.md)).
//! - [`ffi`] is the C ABI (`libkeel`, header `engine/include/keel.h`) over a store on a
//!   device chosen at run time.
//! - Errors are [`StoreError`]s; input errors change nothing, and after a device fault a
//!   shard refuses writes and says why.

pub mod alloc;
pub mod codec;
pub mod crash;
pub mod crc;
pub mod error;
pub mod ffi;
pub mod fsck;
#[doc(hidden)]
pub mod hot_paths;
pub mod journal;
pub mod meta;
pub mod reactor;
pub mod shard;
pub mod store;
pub mod superblock;
pub mod txn;
pub mod types;
pub mod volume;

pub use error::{Result, StoreError};
pub use fsck::FsckReport;
pub use reactor::{
    BadKind, CompletionRing, Cores, Engine, EngineStats, Finding, Idle, Notify, Poll,
    ReactorConfig, ReactorStats, ScrubStats, SubmitError,
};
pub use shard::{
    BadRange, PageCheck, Phase, ScrubCursor, ScrubReport, ShardConfig, ShardStats, TxnId,
};
pub use store::{route, shard_for, MkfsOptions, ObjStat, Store, StoreParts, StoreStats};
pub use txn::{Transaction, TxnOp};
pub use types::{CollId, Extent, JournalMode, ObjKey, PAGE};
