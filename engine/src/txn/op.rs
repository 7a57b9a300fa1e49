//! The operations a transaction is made of.
//!
//! A [`TxnOp`] is *logical*: it says what the client wants ("write these bytes at this
//! offset"), not how the store does it. The shard's planner turns a transaction's ops into
//! data writes and physical metadata deltas ([`Delta`](crate::meta::Delta)) against committed
//! state; this module knows nothing about that state.
//!
//! Every op names one collection, and every op but `MkColl`/`RmColl` names the objects it
//! touches inside it (both source and destination for the clones), which is what the shard
//! locks. [`OpKind`] is the op's name without its data, and [`OpClass`] is the row of the
//! guarantee table (DESIGN.md §4, docs/format.md §6) the op belongs to.

use std::fmt;

use crate::types::{CollId, ObjKey};

/// One operation of a transaction; every field is owned.
///
/// Offsets, lengths and sizes are in bytes. Names, keys and values are byte strings; their
/// limits are in [`types`](crate::types) and are checked by
/// [`Transaction::validate`](super::Transaction::validate), not here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOp {
    /// Create a collection (an error if it exists).
    MkColl {
        /// Collection.
        coll: CollId,
    },
    /// Remove an empty collection.
    RmColl {
        /// Collection.
        coll: CollId,
    },
    /// Create the object, empty, if it is missing; a no-op if it exists.
    Touch {
        /// Collection.
        coll: CollId,
        /// Object name.
        name: Vec<u8>,
    },
    /// Write `data` at `offset`, creating the object if it is missing and growing it if the
    /// write ends past its size. A zero-length write only creates the object.
    Write {
        /// Collection.
        coll: CollId,
        /// Object name.
        name: Vec<u8>,
        /// Byte offset.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Make `[offset, offset + len)` read as zeroes, creating the object if it is missing and
    /// growing it if the range ends past its size.
    Zero {
        /// Collection.
        coll: CollId,
        /// Object name.
        name: Vec<u8>,
        /// Byte offset.
        offset: u64,
        /// Bytes.
        len: u64,
    },
    /// Set the size of an existing object, cutting it or extending it with zeroes.
    Truncate {
        /// Collection.
        coll: CollId,
        /// Object name.
        name: Vec<u8>,
        /// New size in bytes.
        size: u64,
    },
    /// Remove an existing object with its data, attributes and omap.
    Remove {
        /// Collection.
        coll: CollId,
        /// Object name.
        name: Vec<u8>,
    },
    /// Set an attribute of an existing object, replacing any value it had.
    SetAttr {
        /// Collection.
        coll: CollId,
        /// Object name.
        name: Vec<u8>,
        /// Attribute key.
        key: Vec<u8>,
        /// Attribute value.
        value: Vec<u8>,
    },
    /// Remove an attribute; the object and the attribute must exist.
    RmAttr {
        /// Collection.
        coll: CollId,
        /// Object name.
        name: Vec<u8>,
        /// Attribute key.
        key: Vec<u8>,
    },
    /// Set omap keys of an existing object, in order (a key given twice ends with its last
    /// value).
    OmapSet {
        /// Collection.
        coll: CollId,
        /// Object name.
        name: Vec<u8>,
        /// `(key, value)` pairs.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// Remove omap keys of an existing object; a missing key is not an error.
    OmapRm {
        /// Collection.
        coll: CollId,
        /// Object name.
        name: Vec<u8>,
        /// Keys.
        keys: Vec<Vec<u8>>,
    },
    /// Make `dst` a full copy of the existing `src` (data, size, attributes, omap), replacing
    /// `dst` if it exists. `src` and `dst` differ.
    Clone {
        /// Collection of both objects.
        coll: CollId,
        /// Source object name.
        src: Vec<u8>,
        /// Destination object name.
        dst: Vec<u8>,
    },
    /// Copy `len` bytes of the existing `src` from `src_offset` into `dst` at `dst_offset`,
    /// creating `dst` if it is missing; bytes past the end of `src` read as zeroes. The
    /// source is read before the destination is written, so `src == dst` behaves like
    /// `memmove`.
    CloneRange {
        /// Collection of both objects.
        coll: CollId,
        /// Source object name.
        src: Vec<u8>,
        /// Destination object name.
        dst: Vec<u8>,
        /// Byte offset in the source.
        src_offset: u64,
        /// Bytes.
        len: u64,
        /// Byte offset in the destination.
        dst_offset: u64,
    },
    /// Take the pages of a torn overwrite in `[offset, offset + len)` as they are now: the
    /// pages of the range inside open overwrite intents (left by a power cut,
    /// docs/integrity.md) get checksums of their current bytes and their intents close.
    /// Other pages of the range are left alone (corruption stays reported). The object must
    /// exist.
    Acknowledge {
        /// Collection.
        coll: CollId,
        /// Object name.
        name: Vec<u8>,
        /// Byte offset.
        offset: u64,
        /// Bytes.
        len: u64,
    },
}

impl TxnOp {
    /// The op's kind.
    pub fn kind(&self) -> OpKind {
        match self {
            Self::MkColl { .. } => OpKind::MkColl,
            Self::RmColl { .. } => OpKind::RmColl,
            Self::Touch { .. } => OpKind::Touch,
            Self::Write { .. } => OpKind::Write,
            Self::Zero { .. } => OpKind::Zero,
            Self::Truncate { .. } => OpKind::Truncate,
            Self::Remove { .. } => OpKind::Remove,
            Self::SetAttr { .. } => OpKind::SetAttr,
            Self::RmAttr { .. } => OpKind::RmAttr,
            Self::OmapSet { .. } => OpKind::OmapSet,
            Self::OmapRm { .. } => OpKind::OmapRm,
            Self::Clone { .. } => OpKind::Clone,
            Self::CloneRange { .. } => OpKind::CloneRange,
            Self::Acknowledge { .. } => OpKind::Acknowledge,
        }
    }

    /// The op's class in the guarantee table.
    pub fn class(&self) -> OpClass {
        self.kind().class()
    }

    /// The collection the op names.
    pub fn coll(&self) -> CollId {
        match self {
            Self::MkColl { coll }
            | Self::RmColl { coll }
            | Self::Touch { coll, .. }
            | Self::Write { coll, .. }
            | Self::Zero { coll, .. }
            | Self::Truncate { coll, .. }
            | Self::Remove { coll, .. }
            | Self::SetAttr { coll, .. }
            | Self::RmAttr { coll, .. }
            | Self::OmapSet { coll, .. }
            | Self::OmapRm { coll, .. }
            | Self::Clone { coll, .. }
            | Self::CloneRange { coll, .. }
            | Self::Acknowledge { coll, .. } => *coll,
        }
    }

    /// The object names the op touches, borrowed: none for `MkColl`/`RmColl`, source then
    /// destination for the clones, the one object otherwise.
    pub fn names(&self) -> impl Iterator<Item = &[u8]> {
        let (a, b): (Option<&Vec<u8>>, Option<&Vec<u8>>) = match self {
            Self::MkColl { .. } | Self::RmColl { .. } => (None, None),
            Self::Touch { name, .. }
            | Self::Write { name, .. }
            | Self::Zero { name, .. }
            | Self::Truncate { name, .. }
            | Self::Remove { name, .. }
            | Self::SetAttr { name, .. }
            | Self::RmAttr { name, .. }
            | Self::OmapSet { name, .. }
            | Self::OmapRm { name, .. }
            | Self::Acknowledge { name, .. } => (Some(name), None),
            Self::Clone { src, dst, .. } | Self::CloneRange { src, dst, .. } => {
                (Some(src), Some(dst))
            }
        };
        a.into_iter().chain(b).map(Vec::as_slice)
    }

    /// The objects the op touches, as keys (see [`names`](Self::names)).
    pub fn objects(&self) -> Vec<ObjKey> {
        let coll = self.coll();
        self.names().map(|n| ObjKey::new(coll, n)).collect()
    }

    /// Object data bytes the op carries or copies: the data of a write, the length of a
    /// clone_range, 0 for everything else (a whole-object clone included).
    pub fn data_bytes(&self) -> u64 {
        match self {
            Self::Write { data, .. } => data.len() as u64,
            Self::CloneRange { len, .. } => *len,
            _ => 0,
        }
    }
}

/// What an op is, without its data. Same names as [`TxnOp`]'s variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// [`TxnOp::MkColl`].
    MkColl,
    /// [`TxnOp::RmColl`].
    RmColl,
    /// [`TxnOp::Touch`].
    Touch,
    /// [`TxnOp::Write`].
    Write,
    /// [`TxnOp::Zero`].
    Zero,
    /// [`TxnOp::Truncate`].
    Truncate,
    /// [`TxnOp::Remove`].
    Remove,
    /// [`TxnOp::SetAttr`].
    SetAttr,
    /// [`TxnOp::RmAttr`].
    RmAttr,
    /// [`TxnOp::OmapSet`].
    OmapSet,
    /// [`TxnOp::OmapRm`].
    OmapRm,
    /// [`TxnOp::Clone`].
    Clone,
    /// [`TxnOp::CloneRange`].
    CloneRange,
    /// [`TxnOp::Acknowledge`].
    Acknowledge,
}

impl OpKind {
    /// Every kind, in declaration order.
    pub const ALL: [OpKind; 14] = [
        Self::MkColl,
        Self::RmColl,
        Self::Touch,
        Self::Write,
        Self::Zero,
        Self::Truncate,
        Self::Remove,
        Self::SetAttr,
        Self::RmAttr,
        Self::OmapSet,
        Self::OmapRm,
        Self::Clone,
        Self::CloneRange,
        Self::Acknowledge,
    ];

    /// Lower-case name, as in logs and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MkColl => "mkcoll",
            Self::RmColl => "rmcoll",
            Self::Touch => "touch",
            Self::Write => "write",
            Self::Zero => "zero",
            Self::Truncate => "truncate",
            Self::Remove => "remove",
            Self::SetAttr => "setattr",
            Self::RmAttr => "rmattr",
            Self::OmapSet => "omap_set",
            Self::OmapRm => "omap_rm",
            Self::Clone => "clone",
            Self::CloneRange => "clone_range",
            Self::Acknowledge => "acknowledge",
        }
    }

    /// The kind's class in the guarantee table. A write's finer class (to fresh pages or
    /// over mapped ones) depends on the object's state and is decided by the planner.
    pub fn class(self) -> OpClass {
        match self {
            Self::MkColl
            | Self::RmColl
            | Self::Touch
            | Self::Remove
            | Self::SetAttr
            | Self::RmAttr
            | Self::OmapSet
            | Self::OmapRm
            | Self::Acknowledge => OpClass::Metadata,
            Self::Write => OpClass::Write,
            Self::Zero | Self::Truncate => OpClass::Truncate,
            Self::Clone | Self::CloneRange => OpClass::Clone,
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rows of the guarantee table (DESIGN.md §4, docs/format.md §6): what a power cut may
/// leave of an op, per journal mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpClass {
    /// Collections, create, remove, attributes, omap: atomic in both modes.
    Metadata,
    /// Writes: atomic to fresh pages in both modes; an overwrite of mapped pages may be torn
    /// in MetadataOnly mode. Which one a write is, the planner decides.
    Write,
    /// Truncate and zero: metadata atomic; freed pages not reused before the entry is
    /// durable.
    Truncate,
    /// Clone and clone_range: atomic in both modes because the whole transaction goes
    /// through the full journal.
    Clone,
}

impl OpClass {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Metadata => "metadata",
            Self::Write => "write",
            Self::Truncate => "truncate",
            Self::Clone => "clone",
        }
    }
}

impl fmt::Display for OpClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_listed_once_with_distinct_names() {
        for (i, a) in OpKind::ALL.iter().enumerate() {
            for b in &OpKind::ALL[i + 1..] {
                assert_ne!(a, b);
                assert_ne!(a.as_str(), b.as_str());
            }
        }
    }

    #[test]
    fn objects_name_source_then_destination() {
        let op = TxnOp::CloneRange {
            coll: 3,
            src: b"s".to_vec(),
            dst: b"d".to_vec(),
            src_offset: 0,
            len: 10,
            dst_offset: 0,
        };
        assert_eq!(op.objects(), vec![ObjKey::new(3, "s"), ObjKey::new(3, "d")]);
        assert_eq!(op.class(), OpClass::Clone);
        assert_eq!(op.data_bytes(), 10);
        assert!(TxnOp::MkColl { coll: 3 }.objects().is_empty());
        let op = TxnOp::Zero {
            coll: 4,
            name: b"z".to_vec(),
            offset: 0,
            len: 9,
        };
        assert_eq!(op.objects(), vec![ObjKey::new(4, "z")]);
        assert_eq!(op.class(), OpClass::Truncate);
        assert_eq!(op.data_bytes(), 0);
    }
}
