//! The engine's one error type. Each variant says what was asked and why it failed; input
//! errors change nothing in the store.

use keel_drivers::{DriverError, Op};

use crate::types::{CollId, ObjKey};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The collection does not exist.
    #[error("collection {0} does not exist")]
    NoSuchCollection(CollId),
    /// The collection already exists.
    #[error("collection {0} already exists")]
    CollectionExists(CollId),
    /// The collection still holds objects.
    #[error("collection {0} is not empty")]
    CollectionNotEmpty(CollId),
    /// The object does not exist.
    #[error("object {0} does not exist")]
    NoSuchObject(ObjKey),
    /// The attribute or omap key does not exist.
    #[error("object {key}: no attribute {attr:?}")]
    NoSuchAttr {
        /// The object.
        key: ObjKey,
        /// The attribute name (lossy UTF-8).
        attr: String,
    },
    /// A name or key is longer than allowed.
    #[error("{what} of {len} bytes is longer than the limit of {max}")]
    TooLong {
        /// What is too long ("object name", "attribute key", ...).
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An offset, length or size runs past the object size limit (or overflows).
    #[error("{what}: offset {offset} + length {len} is past the object size limit of {max} bytes")]
    OutOfRange {
        /// The operation.
        what: &'static str,
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A read starts past the end of the object.
    #[error("read of {key} at {offset}: past the end of the object ({size} bytes)")]
    ReadPastEnd {
        /// The object.
        key: ObjKey,
        /// Requested offset.
        offset: u64,
        /// Object size.
        size: u64,
    },
    /// The transaction is malformed or too large.
    #[error("invalid transaction: {0}")]
    InvalidTxn(String),
    /// The data area, the journal or the metadata slot is full.
    #[error("no space: {0}")]
    NoSpace(String),
    /// A transaction encoding could not be decoded.
    #[error("cannot decode transaction: {0}")]
    Decode(String),
    /// A device command failed.
    #[error("device {op} failed")]
    Device {
        /// The device operation.
        op: Op,
        /// What the driver said.
        #[source]
        source: DriverError,
    },
    /// The device holds no Keel store, or one this version cannot read.
    #[error("not a Keel store: {0}")]
    NotFormatted(String),
    /// On-media metadata failed a check that recovery cannot repair.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The store stopped accepting writes after a fatal error, named here.
    #[error("store has failed and accepts no more writes: {0}")]
    Failed(String),
    /// Too many transactions are queued; try again after polling.
    #[error("too many transactions in flight ({0})")]
    Busy(usize),
    /// The store is closed.
    #[error("store is closed")]
    Closed,
    /// A transaction names collections of two shards; it was refused and changed nothing.
    #[error("transaction spans shards: collection {first} is on shard {first_shard}, collection {other} on shard {other_shard}")]
    CrossShard {
        /// The first collection the transaction names.
        first: CollId,
        /// Its shard.
        first_shard: usize,
        /// A collection of another shard.
        other: CollId,
        /// That one's shard.
        other_shard: usize,
    },
    /// Data read back does not match its checksum, outside any open overwrite intent: the
    /// device returned other bytes than were written (bit rot, a misdirected or lost
    /// write). Nothing of the range is returned.
    #[error("{key}: bytes {offset}..{end} fail their checksum (corruption)", end = offset + len)]
    DataCorrupt {
        /// The object.
        key: ObjKey,
        /// First byte of the bad range (page aligned).
        offset: u64,
        /// Bytes in the range (whole pages).
        len: u64,
    },
    /// Data does not match its checksum inside an overwrite that a power cut interrupted
    /// (an open intent): old and new bytes may be mixed. The range is the caller's:
    /// acknowledge it (`TxnOp::Acknowledge`) to take the bytes as they are, or rewrite it.
    #[error("{key}: bytes {offset}..{end} hold a torn overwrite (acknowledge or rewrite them)", end = offset + len)]
    TornOverwrite {
        /// The object.
        key: ObjKey,
        /// First byte of the torn range (page aligned).
        offset: u64,
        /// Bytes in the range (whole pages).
        len: u64,
    },
    /// A blocking call was made on a reactor thread (from a completion callback): it would
    /// wait for the very thread it runs on.
    #[error("{0} would block a reactor thread on itself")]
    OnReactor(&'static str),
}

impl StoreError {
    /// The closest negative errno, for the C ABI.
    pub fn errno(&self) -> i32 {
        -(match self {
            Self::NoSuchCollection(_) | Self::NoSuchObject(_) | Self::NoSuchAttr { .. } => {
                libc_errno::ENOENT
            }
            Self::CollectionExists(_) => libc_errno::EEXIST,
            Self::CollectionNotEmpty(_) => libc_errno::ENOTEMPTY,
            Self::TooLong { .. } => libc_errno::ENAMETOOLONG,
            Self::OutOfRange { .. } => libc_errno::EFBIG,
            Self::ReadPastEnd { .. } => libc_errno::ERANGE,
            Self::InvalidTxn(_) | Self::Decode(_) | Self::Config(_) => libc_errno::EINVAL,
            Self::NoSpace(_) => libc_errno::ENOSPC,
            Self::Device { source, .. } => -source.errno(),
            Self::NotFormatted(_) | Self::Corrupt(_) => libc_errno::EUCLEAN,
            Self::Failed(_) => libc_errno::EROFS,
            Self::Busy(_) => libc_errno::EAGAIN,
            Self::Closed => libc_errno::ESHUTDOWN,
            Self::CrossShard { .. } => libc_errno::EXDEV,
            Self::OnReactor(_) => libc_errno::EDEADLK,
            Self::DataCorrupt { .. } => libc_errno::EBADMSG,
            Self::TornOverwrite { .. } => libc_errno::EILSEQ,
        })
    }
}

/// The errno values the engine uses (Linux numbering), without a libc dependency.
pub mod libc_errno {
    #![allow(missing_docs)]
    pub const ENOENT: i32 = 2;
    pub const EAGAIN: i32 = 11;
    pub const EEXIST: i32 = 17;
    pub const EXDEV: i32 = 18;
    pub const EINVAL: i32 = 22;
    pub const EFBIG: i32 = 27;
    pub const ENOSPC: i32 = 28;
    pub const EROFS: i32 = 30;
    pub const ERANGE: i32 = 34;
    pub const EDEADLK: i32 = 35;
    pub const ENAMETOOLONG: i32 = 36;
    pub const ENOTEMPTY: i32 = 39;
    pub const EBADMSG: i32 = 74;
    pub const EILSEQ: i32 = 84;
    pub const ESHUTDOWN: i32 = 108;
    pub const EUCLEAN: i32 = 117;
}

/// Result with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
