//! # keel-engine: the object store
//!
//! (The crate essay grows with the engine; see docs/format.md for the on-media format.)

pub mod alloc;
pub mod codec;
pub mod error;
pub mod meta;
pub mod txn;
pub mod types;

pub use error::{Result, StoreError};
pub use types::{CollId, Extent, JournalMode, ObjKey, PAGE};
