//! Transactions: what a client asks the store to do, all or nothing.
//!
//! A [`Transaction`] is an ordered list of [`TxnOp`]s plus one flag, built with chained
//! calls:
//!
//! ```
//! use keel_engine::txn::Transaction;
//!
//! let mut t = Transaction::new();
//! t.mkcoll(1)
//!     .write(1, "obj", 0, vec![7; 4096])
//!     .setattr(1, "obj", "version", "1");
//! assert!(t.validate().is_ok());
//! assert_eq!(Transaction::decode(&t.encode()).unwrap(), t);
//! ```
//!
//! The pieces, one file each:
//!
//! - [`op`]: the operations ([`TxnOp`]), their kinds ([`OpKind`]) and their rows of the
//!   guarantee table ([`OpClass`]).
//! - [`validate`]: the static checks ([`Transaction::validate`]): limits on names, keys,
//!   values, ranges and sizes, which need no store state. The shard runs them before it
//!   plans a transaction against committed state; the planner finds the rest (a missing
//!   object, an existing collection).
//! - [`codec`]: a stable, versioned byte encoding ([`Transaction::encode`],
//!   [`Transaction::decode`]) for transactions that cross a boundary (the C ABI, a message
//!   queue, a file of recorded workloads). The journal does not store transactions: it
//!   stores the physical deltas the planner derives from them.
//!
//! Building never fails: a builder records what it is given, and [`Transaction::validate`]
//! says what is wrong, naming the op by index and kind.

pub mod codec;
pub mod op;
pub mod validate;

pub use op::{OpClass, OpKind, TxnOp};

use crate::types::CollId;

/// An ordered list of operations applied atomically, and whether to force it through the
/// full journal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transaction {
    ops: Vec<TxnOp>,
    full_journal: bool,
}

impl Transaction {
    /// An empty transaction (not valid until it holds an op).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an op.
    pub fn push(&mut self, op: TxnOp) -> &mut Self {
        self.ops.push(op);
        self
    }

    /// Creates collection `coll`.
    pub fn mkcoll(&mut self, coll: CollId) -> &mut Self {
        self.push(TxnOp::MkColl { coll })
    }

    /// Removes the empty collection `coll`.
    pub fn rmcoll(&mut self, coll: CollId) -> &mut Self {
        self.push(TxnOp::RmColl { coll })
    }

    /// Creates the object if it is missing.
    pub fn touch(&mut self, coll: CollId, name: impl Into<Vec<u8>>) -> &mut Self {
        self.push(TxnOp::Touch {
            coll,
            name: name.into(),
        })
    }

    /// Writes `data` at `offset`, creating the object if it is missing.
    pub fn write(
        &mut self,
        coll: CollId,
        name: impl Into<Vec<u8>>,
        offset: u64,
        data: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.push(TxnOp::Write {
            coll,
            name: name.into(),
            offset,
            data: data.into(),
        })
    }

    /// Zeroes `len` bytes at `offset`, creating the object if it is missing.
    pub fn zero(
        &mut self,
        coll: CollId,
        name: impl Into<Vec<u8>>,
        offset: u64,
        len: u64,
    ) -> &mut Self {
        self.push(TxnOp::Zero {
            coll,
            name: name.into(),
            offset,
            len,
        })
    }

    /// Takes the torn-overwrite pages of `[offset, offset + len)` as they are
    /// ([`TxnOp::Acknowledge`]).
    pub fn acknowledge(
        &mut self,
        coll: CollId,
        name: impl Into<Vec<u8>>,
        offset: u64,
        len: u64,
    ) -> &mut Self {
        self.push(TxnOp::Acknowledge {
            coll,
            name: name.into(),
            offset,
            len,
        })
    }

    /// Sets the object's size to `size` bytes.
    pub fn truncate(&mut self, coll: CollId, name: impl Into<Vec<u8>>, size: u64) -> &mut Self {
        self.push(TxnOp::Truncate {
            coll,
            name: name.into(),
            size,
        })
    }

    /// Removes the object.
    pub fn remove(&mut self, coll: CollId, name: impl Into<Vec<u8>>) -> &mut Self {
        self.push(TxnOp::Remove {
            coll,
            name: name.into(),
        })
    }

    /// Sets attribute `key` to `value`.
    pub fn setattr(
        &mut self,
        coll: CollId,
        name: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.push(TxnOp::SetAttr {
            coll,
            name: name.into(),
            key: key.into(),
            value: value.into(),
        })
    }

    /// Removes attribute `key`.
    pub fn rmattr(
        &mut self,
        coll: CollId,
        name: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.push(TxnOp::RmAttr {
            coll,
            name: name.into(),
            key: key.into(),
        })
    }

    /// Sets omap keys.
    pub fn omap_set(
        &mut self,
        coll: CollId,
        name: impl Into<Vec<u8>>,
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> &mut Self {
        self.push(TxnOp::OmapSet {
            coll,
            name: name.into(),
            pairs,
        })
    }

    /// Removes omap keys.
    pub fn omap_rm(
        &mut self,
        coll: CollId,
        name: impl Into<Vec<u8>>,
        keys: Vec<Vec<u8>>,
    ) -> &mut Self {
        self.push(TxnOp::OmapRm {
            coll,
            name: name.into(),
            keys,
        })
    }

    /// Makes `dst` a full copy of `src`.
    pub fn clone_object(
        &mut self,
        coll: CollId,
        src: impl Into<Vec<u8>>,
        dst: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.push(TxnOp::Clone {
            coll,
            src: src.into(),
            dst: dst.into(),
        })
    }

    /// Copies `len` bytes of `src` at `src_offset` into `dst` at `dst_offset`.
    pub fn clone_range(
        &mut self,
        coll: CollId,
        src: impl Into<Vec<u8>>,
        dst: impl Into<Vec<u8>>,
        src_offset: u64,
        len: u64,
        dst_offset: u64,
    ) -> &mut Self {
        self.push(TxnOp::CloneRange {
            coll,
            src: src.into(),
            dst: dst.into(),
            src_offset,
            len,
            dst_offset,
        })
    }

    /// Forces (or stops forcing) the whole transaction through the full journal, whatever
    /// the store's journal mode: its writes become atomic even where they overwrite.
    pub fn set_full_journal(&mut self, on: bool) -> &mut Self {
        self.full_journal = on;
        self
    }

    /// The ops, in order.
    pub fn ops(&self) -> &[TxnOp] {
        &self.ops
    }

    /// The ops, by value.
    pub fn into_ops(self) -> Vec<TxnOp> {
        self.ops
    }

    /// Whether the client asked for the full journal ([`set_full_journal`](Self::set_full_journal)).
    pub fn full_journal(&self) -> bool {
        self.full_journal
    }

    /// Whether the transaction must go through the full journal even in MetadataOnly mode:
    /// the client asked for it, or an op is a clone or clone_range (DESIGN.md §4).
    pub fn needs_full_journal(&self) -> bool {
        self.full_journal || self.ops.iter().any(|op| op.class() == OpClass::Clone)
    }

    /// Object data bytes the transaction carries or copies: write data plus clone_range
    /// lengths (a whole-object clone counts 0). Saturates at `u64::MAX`.
    pub fn data_bytes(&self) -> u64 {
        self.ops
            .iter()
            .fold(0u64, |sum, op| sum.saturating_add(op.data_bytes()))
    }

    /// True when there is no op.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of ops.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_appends_in_order() {
        let mut t = Transaction::new();
        t.mkcoll(1)
            .touch(1, "a")
            .write(1, "a", 10, vec![1, 2, 3])
            .clone_object(1, "a", "b");
        let kinds: Vec<_> = t.ops().iter().map(TxnOp::kind).collect();
        assert_eq!(
            kinds,
            [OpKind::MkColl, OpKind::Touch, OpKind::Write, OpKind::Clone]
        );
        assert_eq!(t.len(), 4);
        assert!(!t.is_empty());
        assert!(!t.full_journal());
    }

    #[test]
    fn data_bytes_counts_writes_and_clone_ranges_only() {
        let mut t = Transaction::new();
        t.write(1, "a", 0, vec![0; 100])
            .zero(1, "a", 0, 1 << 30)
            .clone_object(1, "a", "b")
            .clone_range(1, "a", "c", 0, 50, 0);
        assert_eq!(t.data_bytes(), 150);
        t.clone_range(1, "a", "c", 0, u64::MAX, 0);
        assert_eq!(t.data_bytes(), u64::MAX);
    }

    #[test]
    fn clones_and_the_override_need_the_full_journal() {
        let mut t = Transaction::new();
        t.write(1, "a", 0, vec![1]);
        assert!(!t.needs_full_journal());
        t.set_full_journal(true);
        assert!(t.needs_full_journal());
        t.set_full_journal(false);
        assert!(!t.needs_full_journal());
        t.clone_range(1, "a", "b", 0, 1, 0);
        assert!(t.needs_full_journal());
        let mut t = Transaction::new();
        t.clone_object(1, "a", "b");
        assert!(t.needs_full_journal());
    }
}
