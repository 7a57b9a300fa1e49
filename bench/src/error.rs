//! The benchmark layer's one error type: what failed, with the driver's or the store's
//! error as source.

use std::fmt::Write as _;

use keel_drivers::{DriverError, Op};
use keel_engine::StoreError;

/// Why a benchmark could not run or stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The device could not be opened.
    #[error("open the {driver} device")]
    Open {
        /// Driver name.
        driver: &'static str,
        /// The driver's error.
        #[source]
        source: DriverError,
    },
    /// The arguments do not fit the device that was opened.
    #[error("{0}")]
    Geometry(String),
    /// The DMA buffers could not be allocated.
    #[error("allocate {count} DMA buffers of {bytes} bytes")]
    Dma {
        /// Buffers asked for.
        count: u32,
        /// Bytes per buffer.
        bytes: u32,
        /// The driver's error.
        #[source]
        source: DriverError,
    },
    /// The queue pair could not be opened.
    #[error("open a queue pair of depth {depth}")]
    Qpair {
        /// Queue depth.
        depth: u32,
        /// The driver's error.
        #[source]
        source: DriverError,
    },
    /// The queue pair refused a command.
    #[error("submit {op} at lba {lba}")]
    Submit {
        /// The operation.
        op: Op,
        /// First block.
        lba: u64,
        /// Why it was refused.
        #[source]
        source: DriverError,
    },
    /// A command completed with an error.
    #[error("{op} at lba {lba} failed")]
    Command {
        /// The operation.
        op: Op,
        /// First block.
        lba: u64,
        /// The device's or kernel's error.
        #[source]
        source: DriverError,
    },
    /// Commands or transactions were in flight and none completed for too long.
    #[error("no completion for {seconds} s with {in_flight} in flight")]
    Stalled {
        /// Seconds without a completion.
        seconds: u64,
        /// Commands or transactions in flight.
        in_flight: u32,
    },
    /// A store operation other than a transaction failed.
    #[error("{what}")]
    Store {
        /// What was asked of the store ("mkfs", "open the store", ...).
        what: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// A transaction was refused or failed.
    #[error("transaction \"{action}\" failed")]
    Txn {
        /// What the transaction did.
        action: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// fsck found problems in the store.
    #[error("fsck found {} problem(s): {}", .0.len(), .0.join("; "))]
    Fsck(Vec<String>),
    /// The crash explorer found recovered states the journal mode does not allow.
    #[error("{0} violation(s) of the journal mode's guarantees")]
    Violations(u64),
    /// A write log could not be read or replayed.
    #[error(transparent)]
    LogWrites(#[from] crate::logwrites::LogError),
    /// A crash test with a write log could not run, or found a problem.
    #[error("{0}")]
    CrashLog(String),
    /// The report could not be encoded.
    #[error("encode the report as JSON")]
    Json(#[from] serde_json::Error),
    /// A result file could not be written or read.
    #[error("{what} {}", path.display())]
    File {
        /// What was done to the file ("write", "create the folder", ...).
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A plot could not be drawn.
    #[error("draw {path}: {message}")]
    Plot {
        /// The SVG file.
        path: String,
        /// What plotters said.
        message: String,
    },
    /// An outside tool (fio) could not run or its output could not be read.
    #[error("{tool}: {message}")]
    Tool {
        /// The tool.
        tool: &'static str,
        /// What went wrong.
        message: String,
    },
}

/// The error and each of its sources, joined by `": "`.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_every_cause() {
        let err = BenchError::Command {
            op: Op::Write,
            lba: 8,
            source: DriverError::Io {
                op: Op::Write,
                lba: 8,
                source: std::io::Error::from_raw_os_error(libc::EIO),
            },
        };
        let text = chain(&err);
        assert!(
            text.starts_with("write at lba 8 failed: write at lba 8: "),
            "{text}"
        );
        assert!(text.contains("Input/output error"), "{text}");
    }
}
