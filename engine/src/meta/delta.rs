//! Metadata deltas: the physical, idempotent changes a journal entry carries.
//!
//! A transaction is planned into deltas against committed state; the journal records them;
//! commit and replay apply them to the [`MetaTable`](super::MetaTable). Applying a delta twice
//! in a row has the same effect as once, and no delta depends on state it does not name, so
//! replay from a checkpoint is deterministic.

use crate::types::CollId;

/// One metadata change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delta {
    /// Create the collection (no-op if it exists).
    MkColl {
        /// Collection.
        coll: CollId,
    },
    /// Remove the collection and every object in it (no-op if missing).
    RmColl {
        /// Collection.
        coll: CollId,
    },
    /// Create the object, empty (no-op if it exists).
    Create {
        /// Collection.
        coll: CollId,
        /// Object name.
        name: Vec<u8>,
    },
    /// Remove the object, freeing its pages (no-op if missing).
    Remove {
        /// Collection.
        coll: CollId,
        /// Object name.
        name: Vec<u8>,
    },
    /// Set the object's size in bytes (pages past it are not unmapped by this delta).
    SetSize {
        /// Collection.
        coll: CollId,
        /// Object name.
        name: Vec<u8>,
        /// New size.
        size: u64,
    },
    /// Map `pages` logical pages from `lpage` to device pages from `phys`, replacing (and
    /// freeing) whatever was mapped there.
    Map {
        /// Collection.
        coll: CollId,
        /// Object name.
        name: Vec<u8>,
        /// First logical page.
        lpage: u64,
        /// First device page.
        phys: u64,
        /// Pages.
        pages: u32,
    },
    /// Unmap (and free) logical pages `[lpage, lpage + pages)`; holes read as zeroes.
    Unmap {
        /// Collection.
        coll: CollId,
        /// Object name.
        name: Vec<u8>,
        /// First logical page.
        lpage: u64,
        /// Pages (u64: a truncate may unmap to the end).
        pages: u64,
    },
    /// Set an attribute.
    SetAttr {
        /// Collection.
        coll: CollId,
        /// Object name.
        name: Vec<u8>,
        /// Attribute key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove an attribute (no-op if missing).
    RmAttr {
        /// Collection.
        coll: CollId,
        /// Object name.
        name: Vec<u8>,
        /// Attribute key.
        key: Vec<u8>,
    },
    /// Set an omap key.
    OmapSet {
        /// Collection.
        coll: CollId,
        /// Object name.
        name: Vec<u8>,
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove an omap key (no-op if missing).
    OmapRm {
        /// Collection.
        coll: CollId,
        /// Object name.
        name: Vec<u8>,
        /// Key.
        key: Vec<u8>,
    },
    /// Record the crc32c of device pages from `phys`, one per page (the transaction that
    /// wrote those pages carries it; docs/integrity.md).
    Csum {
        /// First device page.
        phys: u64,
        /// One sum per page (at least one).
        sums: Vec<u32>,
    },
    /// Open overwrite intents on device pages `[phys, phys + pages)`: a metadata-only
    /// overwrite may be rewriting them in place.
    OpenIntent {
        /// First device page.
        phys: u64,
        /// Pages (at least one).
        pages: u32,
    },
    /// Close the intents on device pages `[phys, phys + pages)` (no-op where none is open).
    CloseIntent {
        /// First device page.
        phys: u64,
        /// Pages (at least one).
        pages: u32,
    },
}
