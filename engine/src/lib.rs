//! # keel-engine: the object store
//!
//! (The crate essay grows with the engine; see docs/format.md for the on-media format.)

pub mod alloc;
pub mod codec;
pub mod crash;
pub mod error;
pub mod fsck;
pub mod journal;
pub mod meta;
pub mod shard;
pub mod store;
pub mod superblock;
pub mod txn;
pub mod types;

pub use error::{Result, StoreError};
pub use fsck::FsckReport;
pub use shard::{Phase, ShardConfig, ShardStats, TxnId};
pub use store::{MkfsOptions, ObjStat, Store, StoreStats};
pub use txn::{Transaction, TxnOp};
pub use types::{CollId, Extent, JournalMode, ObjKey, PAGE};
