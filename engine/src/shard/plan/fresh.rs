//! The short way to plan the commonest transaction: one write whose every page is fresh
//! (an append, a create, a write past the end into pages the object never mapped).
//!
//! Such a write needs none of the planner's shadow state: no committed page to read, none
//! rewritten in place, no end-of-file page to copy or zero. It is one allocation, a `Map`
//! per run, the new size and the sums, which this module builds directly. The answer is
//! exactly the general planner's, delta for delta and byte for byte (the tests below hold
//! the two side by side); anything else, or anything unusual, goes to the general planner.
//!
//! ```text
//!  eligible: one Write, data not empty, its collection exists, and the object either does
//!            not exist (a Create first) or has a size that is a whole number of pages and
//!            no extent reaching the first page written
//! ```

use super::{Planned, PG};
use crate::alloc::{Allocator, Extents};
use crate::error::StoreError;
use crate::meta::{Delta, MetaTable};
use crate::txn::{Transaction, TxnOp};
use crate::types::PAGE;

/// Plans `txn` when it is one write of fresh pages; `None` when it is not (the general
/// planner then plans it). On error nothing stays allocated. A plan takes `buf`'s memory
/// for its data (leaving `buf` empty).
pub(crate) fn plan_fresh_write(
    table: &MetaTable,
    alloc: &mut Allocator,
    txn: &Transaction,
    max_extent_pages: u32,
    buf: &mut Vec<u8>,
) -> Option<Result<Planned, StoreError>> {
    let [TxnOp::Write {
        coll,
        name,
        offset,
        data,
    }] = txn.ops()
    else {
        return None;
    };
    let (coll, offset) = (*coll, *offset);
    let end = offset.checked_add(data.len() as u64)?;
    if data.is_empty() || !table.has_coll(coll) {
        return None;
    }
    let first = offset / PAGE;
    let obj = table.object(coll, name);
    let size = match obj {
        None => 0,
        Some(o) => {
            if o.size % PAGE != 0 || o.mapped_end() > first {
                return None;
            }
            o.size
        }
    };
    let pages = (end - 1) / PAGE - first + 1;
    let mut exts = Extents::new();
    if let Err(e) = alloc.alloc_into(pages, max_extent_pages, &mut exts) {
        return Some(Err(e));
    }
    let mut out = Planned {
        deltas: Vec::with_capacity(4),
        fresh_pages: pages,
        ..Planned::default()
    };
    if obj.is_none() {
        out.deltas.push(Delta::Create {
            coll,
            name: name.clone(),
        });
    }
    // A `Map` per extent, in logical order: each is contiguous on both sides and at most
    // `max_extent_pages` long, and the allocator hands them out by increasing device page.
    let mut lpage = first;
    for e in &exts {
        out.deltas.push(Delta::Map {
            coll,
            name: name.clone(),
            lpage,
            phys: e.phys,
            pages: e.pages,
        });
        lpage += u64::from(e.pages);
    }
    if end > size {
        out.deltas.push(Delta::SetSize {
            coll,
            name: name.clone(),
            size: end,
        });
    }
    // Runs and data go in device order, which is logical order.
    debug_assert!(
        exts.windows(2).all(|w| w[0].end() <= w[1].phys),
        "extents in device order"
    );
    out.data = std::mem::take(buf);
    // The pages: zeros before and after the data, each byte written once.
    let lo = (offset % PAGE) as usize;
    out.data.clear();
    out.data.resize(lo, 0);
    out.data.extend_from_slice(data);
    out.data.resize(pages as usize * PG, 0);
    for e in &exts {
        out.push_run(e.phys, e.pages as usize);
    }
    out.push_sums();
    out.allocated = exts;
    Some(Ok(out))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::shard::plan::{PlanOutcome, Planner};
    use crate::types::{CollId, Extent};

    const COLL: CollId = 7;
    const NAME: &[u8] = b"obj";
    const DATA_START: u64 = 100;

    /// What a plan says, comparable.
    #[derive(Debug, PartialEq)]
    struct Flat {
        deltas: Vec<Delta>,
        runs: Vec<(u64, usize)>,
        data: Vec<u8>,
        allocated: Vec<Extent>,
        overwrites: Vec<(u64, u32)>,
        fresh_pages: u64,
        overwrite_pages: u64,
    }

    fn flat(p: Planned) -> Flat {
        Flat {
            deltas: p.deltas,
            runs: p.runs.iter().map(|r| (r.phys, r.pages)).collect(),
            data: p.data,
            allocated: p.allocated.into_vec(),
            overwrites: p.overwrites,
            fresh_pages: p.fresh_pages,
            overwrite_pages: p.overwrite_pages,
        }
    }

    /// A table with the collection and, when `extents` is `Some`, the object: its size and
    /// the extents `(lpage, phys, pages)`. An allocator over 64 pages with `used` taken
    /// (fragmenting it) and its next-fit cursor at `cursor`.
    fn state(
        size: u64,
        extents: Option<&[(u64, u64, u32)]>,
        used: &[(u64, u64)],
        cursor_pages: u64,
    ) -> (MetaTable, Allocator) {
        let mut t = MetaTable::new();
        let mut freed = Vec::new();
        let mut apply = |d: Delta| t.apply(&d, &mut freed).expect("valid delta");
        apply(Delta::MkColl { coll: COLL });
        if let Some(extents) = extents {
            let name = NAME.to_vec();
            apply(Delta::Create {
                coll: COLL,
                name: name.clone(),
            });
            for &(lpage, phys, pages) in extents {
                apply(Delta::Map {
                    coll: COLL,
                    name: name.clone(),
                    lpage,
                    phys,
                    pages,
                });
            }
            apply(Delta::SetSize {
                coll: COLL,
                name,
                size,
            });
        }
        let used = used.iter().map(|&(start, pages)| Extent {
            phys: DATA_START + start,
            pages: pages as u32,
        });
        let mut a = Allocator::rebuild(DATA_START, 64, used).expect("disjoint extents");
        // Move the cursor: allocate there, give it back.
        let mut e = Extents::new();
        if cursor_pages > 0 && a.alloc_into(cursor_pages, 64, &mut e).is_ok() {
            for x in e {
                a.release_now(x);
            }
        }
        (t, a)
    }

    fn write(offset: u64, len: usize, seed: u8) -> Transaction {
        let data: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect();
        let mut txn = Transaction::new();
        txn.write(COLL, NAME, offset, data);
        txn
    }

    fn general(t: &MetaTable, a: &mut Allocator, txn: &Transaction, max: u32) -> Flat {
        let pages = HashMap::new();
        match Planner::new(t, a, &pages, max).plan(txn).expect("plans") {
            PlanOutcome::Done(p) => flat(p),
            PlanOutcome::NeedPages(p) => panic!("a fresh write needed pages {p:?}"),
        }
    }

    #[test]
    fn an_append_to_a_page_aligned_object_takes_the_short_way() {
        let (t, mut a) = state(2 * PAGE, Some(&[(0, DATA_START, 2)]), &[(0, 2)], 0);
        let txn = write(2 * PAGE, 2 * PG, 1);
        let mut b = a.clone();
        let fast = flat(
            plan_fresh_write(&t, &mut a, &txn, 8, &mut Vec::new())
                .expect("eligible")
                .unwrap(),
        );
        assert_eq!(fast, general(&t, &mut b, &txn, 8));
        assert_eq!(fast.fresh_pages, 2);
        assert!(matches!(
            fast.deltas[0],
            Delta::Map {
                lpage: 2,
                pages: 2,
                ..
            }
        ));
    }

    #[test]
    fn writes_touching_committed_pages_take_the_general_planner() {
        // Overwrite of a mapped page; append after a partial last page; a mapped page past
        // the size (a SetSize does not unmap); two operations.
        let (t, mut a) = state(2 * PAGE, Some(&[(0, DATA_START, 2)]), &[(0, 2)], 0);
        assert!(plan_fresh_write(&t, &mut a, &write(PAGE, 10, 0), 8, &mut Vec::new()).is_none());
        let (t, mut a) = state(PAGE + 1, Some(&[(0, DATA_START, 2)]), &[(0, 2)], 0);
        assert!(
            plan_fresh_write(&t, &mut a, &write(2 * PAGE, 10, 0), 8, &mut Vec::new()).is_none()
        );
        let (t, mut a) = state(PAGE, Some(&[(0, DATA_START, 3)]), &[(0, 3)], 0);
        assert!(
            plan_fresh_write(&t, &mut a, &write(2 * PAGE, 10, 0), 8, &mut Vec::new()).is_none()
        );
        let (t, mut a) = state(0, None, &[], 0);
        let mut two = write(0, 10, 0);
        two.write(COLL, NAME, PAGE, [1; 10]);
        assert!(plan_fresh_write(&t, &mut a, &two, 8, &mut Vec::new()).is_none());
        assert_eq!(a.free_pages(), 64, "nothing allocated when not eligible");
    }

    #[test]
    fn no_space_allocates_nothing() {
        let (t, mut a) = state(0, None, &[(0, 63)], 0);
        let r = plan_fresh_write(&t, &mut a, &write(0, 2 * PG, 0), 8, &mut Vec::new())
            .expect("eligible");
        assert!(matches!(r, Err(StoreError::NoSpace(_))), "{:?}", r.err());
        assert_eq!(a.free_pages(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Wherever the short way applies, it plans what the general planner plans and
        /// leaves the allocator as it does.
        #[test]
        fn the_short_way_plans_what_the_general_planner_plans(
            exists in any::<bool>(),
            size_pages in 0u64..6,
            mapped in 0u64..4,
            gap in 0u64..3,
            lo in prop_oneof![Just(0u64), 0u64..PAGE],
            len in 1usize..5 * PG,
            to_size in any::<bool>(),
            used in prop::collection::vec((0u64..60, 1u64..4), 0..24),
            cursor in 0u64..64,
            max in 1u32..5,
            seed in any::<u8>(),
        ) {
            let mapped = mapped.min(size_pages);
            let extents = [(0, DATA_START + 60, mapped as u32)];
            let extents: Option<&[(u64, u64, u32)]> = match (exists, mapped) {
                (false, _) => None,
                (true, 0) => Some(&[]),
                (true, _) => Some(&extents),
            };
            // Used ranges that do not overlap each other or the object's pages.
            let mut taken = [false; 64];
            taken[60..64].iter_mut().for_each(|x| *x = true);
            let mut used: Vec<(u64, u64)> = used
                .into_iter()
                .filter(|&(s, n)| {
                    let free = (s..s + n).all(|p| !taken[p as usize]);
                    if free {
                        (s..s + n).for_each(|p| taken[p as usize] = true);
                    }
                    free
                })
                .collect();
            if exists && mapped > 0 {
                used.push((60, mapped));
            }
            let (t, mut a) = state(size_pages * PAGE, extents, &used, cursor);
            let offset = (mapped + gap) * PAGE + lo;
            let size = size_pages * PAGE;
            // Some writes end right at the size (no SetSize), inside a sparse tail.
            let len = if to_size && offset < size { (size - offset) as usize } else { len };
            let txn = write(offset, len, seed);
            let mut b = a.clone();
            let fast = plan_fresh_write(&t, &mut a, &txn, max, &mut vec![9; 100]);
            // Every write here lies past the object's mapped pages, on a page-aligned size.
            match fast {
                None => prop_assert!(false, "a write past every mapped page is eligible"),
                Some(Err(StoreError::NoSpace(_))) => {
                    let pages = HashMap::new();
                    let r = Planner::new(&t, &mut b, &pages, max).plan(&txn);
                    prop_assert!(matches!(r, Err(StoreError::NoSpace(_))));
                }
                Some(Err(e)) => prop_assert!(false, "unexpected error {e}"),
                Some(Ok(p)) => prop_assert_eq!(flat(p), general(&t, &mut b, &txn, max)),
            }
            prop_assert_eq!(format!("{a:?}"), format!("{b:?}"), "allocator states differ");
        }
    }
}
