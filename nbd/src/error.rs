//! The NBD server's error type.

use keel_engine::volume::VolumeError;
use keel_engine::StoreError;

/// Why the server, or one connection, stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NbdError {
    /// Socket I/O failed (a client going away mid-message ends here).
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The client broke the protocol; the connection is closed.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The volume layer failed.
    #[error("volume: {0}")]
    Volume(#[from] VolumeError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A configuration value is wrong.
    #[error("configuration: {0}")]
    Config(String),
}

impl NbdError {
    /// An I/O error of `op`.
    pub fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> NbdError {
        move |source| NbdError::Io { op, source }
    }
}

/// Result with [`NbdError`].
pub type Result<T, E = NbdError> = std::result::Result<T, E>;
