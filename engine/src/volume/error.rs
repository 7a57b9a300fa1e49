//! The volume layer's error type.

use crate::error::StoreError;

/// Why a volume operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VolumeError {
    /// No volume has this name.
    #[error("volume {0:?} does not exist")]
    NoSuchVolume(String),
    /// A volume of this name exists.
    #[error("volume {0:?} already exists")]
    Exists(String),
    /// A volume name is empty, too long or holds a NUL byte.
    #[error("invalid volume name {name:?}: {why}")]
    BadName {
        /// The name (lossy UTF-8).
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A size or object size is out of range.
    #[error("invalid volume geometry: {0}")]
    Geometry(String),
    /// A request runs past the end of the volume (or overflows).
    #[error(
        "{op} at {offset} of {len} bytes runs past the end of the volume ({size_bytes} bytes)"
    )]
    OutOfRange {
        /// The operation ("read", "write", ...).
        op: &'static str,
        /// Offset in bytes.
        offset: u64,
        /// Length in bytes.
        len: u64,
        /// The volume's size.
        size_bytes: u64,
    },
    /// The volume's metadata objects are missing or malformed.
    #[error("volume {name:?}: corrupt metadata: {why}")]
    Corrupt {
        /// The volume.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// The store failed the operation.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl VolumeError {
    /// The closest negative errno (Linux numbering).
    pub fn errno(&self) -> i32 {
        use crate::error::libc_errno as e;
        match self {
            Self::NoSuchVolume(_) => -e::ENOENT,
            Self::Exists(_) => -e::EEXIST,
            Self::BadName { .. } | Self::Geometry(_) => -e::EINVAL,
            Self::OutOfRange { .. } => -e::EINVAL,
            Self::Corrupt { .. } => -e::EUCLEAN,
            Self::Store(s) => s.errno(),
        }
    }
}
