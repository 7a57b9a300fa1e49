//! Static checks of a transaction: everything that can be judged without the store's state.
//!
//! [`Transaction::validate`] checks, in order, and stops at the first failure:
//!
//! | check | limit ([`types`](crate::types)) | error |
//! |---|---|---|
//! | at least one op, at most `MAX_TXN_OPS` | 4096 ops | `InvalidTxn` |
//! | object names (and clone source/destination) non-empty | | `InvalidTxn` |
//! | object names at most `MAX_NAME_BYTES` | 255 B | `TooLong { what: "object name" }` |
//! | attribute and omap keys at most `MAX_KEY_BYTES` | 1 KiB | `TooLong` |
//! | attribute and omap values at most `MAX_VALUE_BYTES` | 64 KiB | `TooLong` |
//! | `offset + len` of write, zero, and both ranges of clone_range, and a truncate's size, at most `MAX_OBJECT_BYTES` (an overflowing sum fails too) | 1 TiB | `OutOfRange` |
//! | clone source and destination differ | | `InvalidTxn` |
//! | write data plus clone_range lengths at most `MAX_TXN_DATA_BYTES` | 16 MiB | `InvalidTxn` |
//!
//! Ops are checked in order, each fully before the next. `InvalidTxn` messages start with
//! `op <index> (<kind>)`; `TooLong` and `OutOfRange` carry a static `what` and so cannot
//! name the index (the shard's planner annotates what it can).
//!
//! Allowed on purpose: a zero-length write (it still creates the object), zero-length zero
//! and clone_range, empty attribute and omap keys, empty omap key lists, and a clone_range
//! whose source and destination are the same object (it reads before it writes).

use crate::error::{Result, StoreError};
use crate::types::{
    MAX_KEY_BYTES, MAX_NAME_BYTES, MAX_OBJECT_BYTES, MAX_TXN_DATA_BYTES, MAX_TXN_OPS,
    MAX_VALUE_BYTES,
};

use super::{Transaction, TxnOp};

impl Transaction {
    /// Checks the transaction against the limits that need no store state, in the order the
    /// [module documentation](crate::txn::validate) lists them, and returns the first
    /// failure.
    pub fn validate(&self) -> Result<()> {
        if self.ops().is_empty() {
            return Err(StoreError::InvalidTxn("empty transaction".into()));
        }
        if self.len() > MAX_TXN_OPS {
            return Err(StoreError::InvalidTxn(format!(
                "{} operations, more than the limit of {MAX_TXN_OPS} (MAX_TXN_OPS)",
                self.len()
            )));
        }
        let mut data = 0u64;
        for (i, op) in self.ops().iter().enumerate() {
            check_op(i, op)?;
            // Each op's own data is at most MAX_OBJECT_BYTES here, so this cannot overflow;
            // saturate anyway rather than reason about it.
            data = data.saturating_add(op.data_bytes());
            if data > MAX_TXN_DATA_BYTES {
                return Err(StoreError::InvalidTxn(format!(
                    "op {i} ({}) brings the transaction's data to {data} bytes, more than \
                     the limit of {MAX_TXN_DATA_BYTES} (MAX_TXN_DATA_BYTES)",
                    op.kind()
                )));
            }
        }
        Ok(())
    }
}

/// Checks one op; `i` is its index, for messages.
fn check_op(i: usize, op: &TxnOp) -> Result<()> {
    let invalid = |why: &str| StoreError::InvalidTxn(format!("op {i} ({}): {why}", op.kind()));
    for name in op.names() {
        if name.is_empty() {
            return Err(invalid("empty object name"));
        }
        check_len("object name", name, MAX_NAME_BYTES)?;
    }
    match op {
        TxnOp::MkColl { .. }
        | TxnOp::RmColl { .. }
        | TxnOp::Touch { .. }
        | TxnOp::Remove { .. } => {}
        TxnOp::Write { offset, data, .. } => check_range("write", *offset, data.len() as u64)?,
        TxnOp::Zero { offset, len, .. } => check_range("zero", *offset, *len)?,
        TxnOp::Acknowledge { offset, len, .. } => check_range("acknowledge", *offset, *len)?,
        TxnOp::Truncate { size, .. } => check_range("truncate", *size, 0)?,
        TxnOp::SetAttr { key, value, .. } => {
            check_len("attribute key", key, MAX_KEY_BYTES)?;
            check_len("attribute value", value, MAX_VALUE_BYTES)?;
        }
        TxnOp::RmAttr { key, .. } => check_len("attribute key", key, MAX_KEY_BYTES)?,
        TxnOp::OmapSet { pairs, .. } => {
            for (key, value) in pairs {
                check_len("omap key", key, MAX_KEY_BYTES)?;
                check_len("omap value", value, MAX_VALUE_BYTES)?;
            }
        }
        TxnOp::OmapRm { keys, .. } => {
            for key in keys {
                check_len("omap key", key, MAX_KEY_BYTES)?;
            }
        }
        TxnOp::Clone { src, dst, .. } => {
            if src == dst {
                return Err(invalid("source and destination are the same object"));
            }
        }
        TxnOp::CloneRange {
            src_offset,
            len,
            dst_offset,
            ..
        } => {
            check_range("clone_range source", *src_offset, *len)?;
            check_range("clone_range destination", *dst_offset, *len)?;
        }
    }
    Ok(())
}

/// `b` is at most `max` bytes.
fn check_len(what: &'static str, b: &[u8], max: usize) -> Result<()> {
    if b.len() > max {
        return Err(StoreError::TooLong {
            what,
            len: b.len(),
            max,
        });
    }
    Ok(())
}

/// `offset + len` is at most `MAX_OBJECT_BYTES`, without overflowing.
fn check_range(what: &'static str, offset: u64, len: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= MAX_OBJECT_BYTES => Ok(()),
        _ => Err(StoreError::OutOfRange {
            what,
            offset,
            len,
            max: MAX_OBJECT_BYTES,
        }),
    }
}
