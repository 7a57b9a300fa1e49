//! Names, units and limits shared by every layer of the engine.

use std::fmt;

/// The engine's page: unit of object data, checkpoints and the superblock.
pub const PAGE: u64 = 4096;

/// Longest object name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// Longest attribute or omap key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest attribute or omap value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 << 10;
/// Largest object, in bytes (offset + length of any write or truncate stays within it).
pub const MAX_OBJECT_BYTES: u64 = 1 << 40;
/// Most data one transaction may carry (writes and clones together), in bytes.
pub const MAX_TXN_DATA_BYTES: u64 = 16 << 20;
/// Most operations in one transaction.
pub const MAX_TXN_OPS: usize = 4096;

/// A collection id.
pub type CollId = u64;

/// How a store journals transactions. Chosen at mkfs; a transaction may ask for `Full`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum JournalMode {
    /// Write-ahead: data and metadata go to the journal, then data to its home location.
    Full = 0,
    /// Data straight to its location, then only metadata to the journal.
    MetadataOnly = 1,
}

impl JournalMode {
    /// Decodes the on-media byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Full),
            1 => Some(Self::MetadataOnly),
            _ => None,
        }
    }

    /// Lower-case name, as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::MetadataOnly => "metadata-only",
        }
    }
}

impl fmt::Display for JournalMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object's full name: collection and byte-string name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjKey {
    /// Collection.
    pub coll: CollId,
    /// Name (at most [`MAX_NAME_BYTES`]).
    pub name: Vec<u8>,
}

impl ObjKey {
    /// A key.
    pub fn new(coll: CollId, name: impl Into<Vec<u8>>) -> Self {
        Self {
            coll,
            name: name.into(),
        }
    }
}

impl fmt::Debug for ObjKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.coll, String::from_utf8_lossy(&self.name))
    }
}

impl fmt::Display for ObjKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A run of physical pages on the device (absolute page numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Extent {
    /// First device page.
    pub phys: u64,
    /// Pages in the run (at least 1).
    pub pages: u32,
}

impl Extent {
    /// One past the last page.
    pub fn end(&self) -> u64 {
        self.phys + u64::from(self.pages)
    }
}
