//! Entry points into internals for the criterion benches (`engine/benches/`), which can
//! only call public items. Not a stable API: hidden from the documentation.

use std::collections::HashMap;

use crate::alloc::allocator::Allocator;
use crate::error::{Result, StoreError};
use crate::meta::MetaTable;
use crate::shard::plan::{PlanOutcome, Planner};
use crate::txn::Transaction;

/// Plans `txn` against `table` the way a shard does before any I/O, then gives back what
/// the plan allocated. Returns (metadata deltas, data runs) of the plan.
pub fn plan(table: &MetaTable, alloc: &mut Allocator, txn: &Transaction) -> Result<(usize, usize)> {
    let pages = HashMap::new();
    match Planner::new(table, alloc, &pages, 256).plan(txn)? {
        PlanOutcome::Done(p) => {
            for e in p.allocated {
                alloc.release_now(e);
            }
            Ok((p.deltas.len(), p.runs.len()))
        }
        PlanOutcome::NeedPages(v) => Err(StoreError::InvalidTxn(format!(
            "the plan needs {} committed page(s) read first",
            v.len()
        ))),
    }
}
