//! Committed metadata: collections, objects, extent maps, attributes, omap.
//!
//! - [`Delta`] (`delta.rs`): one physical, idempotent metadata change, as a journal entry
//!   carries it; its byte encoding is in `delta_codec.rs`.
//! - [`Object`] (`object.rs`): one object's size, extent map, attributes and omap.
//! - `Objects` (`objects.rs`): a collection's objects, found by name in O(1) and walked in
//!   name order.
//! - [`PageSums`] (`sums.rs`): the crc32c of every mapped page and the open overwrite
//!   intents.
//! - [`MetaTable`] (`table.rs`): a shard's committed metadata, changed only by
//!   [`MetaTable::apply`].
//! - [`encode_table`] / [`decode_table`] (`checkpoint.rs`): the whole table as a checkpoint
//!   payload.

mod checkpoint;
mod delta;
mod delta_codec;
mod object;
mod objects;
mod sums;
mod table;

pub use checkpoint::{decode_table, encode_table, CHECKPOINT_VERSION};
pub use delta::Delta;
pub use delta_codec::MAX_CSUM_PAGES;
pub use object::{Object, Segment, Segments};
pub use sums::{page_sum, PageSums};
pub use table::{MetaTable, MAX_DEVICE_PAGES, MAX_OBJECT_PAGES};
