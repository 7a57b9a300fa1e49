//! The journal: group-commit batches in a ring (docs/format.md §3).

mod entry;
mod header;

pub use entry::{encode_parts, DataRun, Entry};
pub use header::{BatchHeader, HeaderReject, HEADER_BYTES, JOURNAL_MAGIC};
