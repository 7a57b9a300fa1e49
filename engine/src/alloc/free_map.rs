//! The free-extent set of one data area: which device pages are free right now.
//!
//! Free space is kept as maximal runs — two free runs never touch, because [`FreeMap::insert`]
//! merges a run with its neighbours — in two ordered indexes that always hold the same runs:
//!
//! - `by_start`: first page → length, for neighbour lookups and address-order (next-fit)
//!   scans;
//! - `by_len`: `(length, first page)`, for "is any run long enough?" and best-fit in
//!   O(log runs).
//!
//! Lengths are `u64`: a coalesced run can be longer than an [`Extent`](crate::Extent) (which
//! is at most `u32::MAX` pages); the allocator cuts extents out of runs.
//!
//! Freeing a page that is already free, or marking used a page that is not free, is a
//! programmer error and panics: the caller's bookkeeping is broken and continuing would hand
//! the same page to two owners.
//!
//! Memory: the only allocations are the B-tree nodes of the two indexes, one entry each per
//! run; inserting or removing a run costs O(log runs).

use std::collections::{BTreeMap, BTreeSet};

/// Free pages as coalesced runs `(first page, length)`, with a by-length index.
#[derive(Clone, Debug, Default)]
pub struct FreeMap {
    /// First page → length (pages). Runs are disjoint and never adjacent.
    by_start: BTreeMap<u64, u64>,
    /// `(length, first page)` of every run in `by_start`.
    by_len: BTreeSet<(u64, u64)>,
    /// Sum of all lengths.
    free_pages: u64,
}

impl FreeMap {
    /// An empty map: no page is free.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `[start, start + len)` free, merging it with the free runs it touches.
    ///
    /// # Panics
    /// If `len` is 0, the range overflows, or any page of it is already free (a double free).
    pub fn insert(&mut self, start: u64, len: u64) {
        assert!(len > 0, "free map: inserting an empty run at page {start}");
        let end = start
            .checked_add(len)
            .unwrap_or_else(|| panic!("free map: run at page {start} of {len} pages overflows"));
        let mut new_start = start;
        let mut new_end = end;
        if let Some((&ps, &pl)) = self.by_start.range(..=start).next_back() {
            let pe = ps + pl;
            assert!(
                pe <= start,
                "free map: double free: pages {start}..{end} overlap free pages {ps}..{pe}"
            );
            if pe == start {
                self.take_run(ps, pl);
                new_start = ps;
            }
        }
        if let Some((&ns, &nl)) = self.by_start.range(start..).next() {
            assert!(
                ns >= end,
                "free map: double free: pages {start}..{end} overlap free pages {ns}..{}",
                ns + nl
            );
            if ns == end {
                self.take_run(ns, nl);
                new_end = ns + nl;
            }
        }
        self.put_run(new_start, new_end - new_start);
        self.free_pages += len;
    }

    /// Marks `[start, start + len)` used. The range must lie inside one free run; what is
    /// left of that run on either side stays free.
    ///
    /// # Panics
    /// If `len` is 0 or any page of the range is not free.
    pub fn remove(&mut self, start: u64, len: u64) {
        assert!(len > 0, "free map: removing an empty run at page {start}");
        let end = start
            .checked_add(len)
            .unwrap_or_else(|| panic!("free map: run at page {start} of {len} pages overflows"));
        let (rs, rl) = match self.containing(start) {
            Some(run) => run,
            None => panic!("free map: pages {start}..{end} are not free (page {start} is used)"),
        };
        let re = rs + rl;
        assert!(
            end <= re,
            "free map: pages {start}..{end} are not all free (free run is {rs}..{re})"
        );
        self.take_run(rs, rl);
        if rs < start {
            self.put_run(rs, start - rs);
        }
        if end < re {
            self.put_run(end, re - end);
        }
        self.free_pages -= len;
    }

    /// Total free pages.
    pub fn free_pages(&self) -> u64 {
        self.free_pages
    }

    /// Number of free runs (a measure of fragmentation).
    pub fn runs(&self) -> usize {
        self.by_start.len()
    }

    /// True when no page is free.
    pub fn is_empty(&self) -> bool {
        self.by_start.is_empty()
    }

    /// The free runs `(first page, length)` in address order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (u64, u64)> + '_ {
        self.by_start.iter().map(|(&s, &l)| (s, l))
    }

    /// The free runs that start at or after `page`, in address order.
    pub fn iter_from(&self, page: u64) -> impl DoubleEndedIterator<Item = (u64, u64)> + '_ {
        self.by_start.range(page..).map(|(&s, &l)| (s, l))
    }

    /// The free runs that start before `page`, in address order.
    pub fn iter_before(&self, page: u64) -> impl DoubleEndedIterator<Item = (u64, u64)> + '_ {
        self.by_start.range(..page).map(|(&s, &l)| (s, l))
    }

    /// The free run `(first page, length)` that holds `page`, if `page` is free.
    pub fn containing(&self, page: u64) -> Option<(u64, u64)> {
        let (&s, &l) = self.by_start.range(..=page).next_back()?;
        (page - s < l).then_some((s, l))
    }

    /// The longest free run `(first page, length)`; among equals, the highest-addressed.
    pub fn largest(&self) -> Option<(u64, u64)> {
        self.by_len.last().map(|&(l, s)| (s, l))
    }

    /// The shortest free run of at least `len` pages (best fit), lowest address among equals.
    pub fn best_fit(&self, len: u64) -> Option<(u64, u64)> {
        self.by_len.range((len, 0)..).next().map(|&(l, s)| (s, l))
    }

    /// Whether any page of `[start, start + len)` is free.
    pub fn overlaps(&self, start: u64, len: u64) -> bool {
        let end = start.saturating_add(len);
        if self.containing(start).is_some() {
            return true;
        }
        self.by_start.range(start..end).next().is_some()
    }

    fn put_run(&mut self, start: u64, len: u64) {
        let fresh = self.by_start.insert(start, len).is_none();
        debug_assert!(fresh, "free map: run at {start} already indexed");
        let fresh = self.by_len.insert((len, start));
        debug_assert!(
            fresh,
            "free map: run at {start} already in the length index"
        );
    }

    fn take_run(&mut self, start: u64, len: u64) {
        let had = self.by_start.remove(&start);
        debug_assert_eq!(had, Some(len), "free map: run at {start} not indexed");
        let had = self.by_len.remove(&(len, start));
        debug_assert!(
            had,
            "free map: run at {start} missing from the length index"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(m: &FreeMap) -> Vec<(u64, u64)> {
        m.iter().collect()
    }

    #[test]
    fn insert_coalesces_with_both_neighbours() {
        let mut m = FreeMap::new();
        m.insert(10, 5);
        m.insert(20, 5);
        assert_eq!(runs(&m), [(10, 5), (20, 5)]);
        m.insert(15, 5);
        assert_eq!(runs(&m), [(10, 15)]);
        assert_eq!(m.free_pages(), 15);
        assert_eq!(m.largest(), Some((10, 15)));
        m.insert(25, 1);
        m.insert(9, 1);
        assert_eq!(runs(&m), [(9, 17)]);
        assert_eq!(m.runs(), 1);
    }

    #[test]
    fn remove_splits_a_run() {
        let mut m = FreeMap::new();
        m.insert(0, 100);
        m.remove(40, 10);
        assert_eq!(runs(&m), [(0, 40), (50, 50)]);
        m.remove(0, 40);
        m.remove(90, 10);
        assert_eq!(runs(&m), [(50, 40)]);
        assert_eq!(m.free_pages(), 40);
        assert_eq!(m.best_fit(1), Some((50, 40)));
        assert_eq!(m.best_fit(41), None);
    }

    #[test]
    fn best_fit_picks_the_shortest_long_enough_run() {
        let mut m = FreeMap::new();
        m.insert(0, 8);
        m.insert(100, 3);
        m.insert(200, 5);
        assert_eq!(m.best_fit(4), Some((200, 5)));
        assert_eq!(m.best_fit(3), Some((100, 3)));
        assert_eq!(m.largest(), Some((0, 8)));
    }

    #[test]
    fn containing_and_overlaps() {
        let mut m = FreeMap::new();
        m.insert(10, 10);
        assert_eq!(m.containing(9), None);
        assert_eq!(m.containing(10), Some((10, 10)));
        assert_eq!(m.containing(19), Some((10, 10)));
        assert_eq!(m.containing(20), None);
        assert!(!m.overlaps(0, 10));
        assert!(m.overlaps(5, 6));
        assert!(m.overlaps(19, 5));
        assert!(!m.overlaps(20, 5));
    }

    #[test]
    #[should_panic(expected = "double free")]
    fn double_free_panics() {
        let mut m = FreeMap::new();
        m.insert(10, 10);
        m.insert(15, 1);
    }

    #[test]
    #[should_panic(expected = "double free")]
    fn overlap_with_next_run_panics() {
        let mut m = FreeMap::new();
        m.insert(10, 10);
        m.insert(5, 6);
    }

    #[test]
    #[should_panic(expected = "not all free")]
    fn removing_used_pages_panics() {
        let mut m = FreeMap::new();
        m.insert(10, 10);
        m.remove(15, 10);
    }

    #[test]
    #[should_panic(expected = "are not free")]
    fn removing_from_nothing_panics() {
        let mut m = FreeMap::new();
        m.insert(10, 10);
        m.remove(5, 1);
    }
}
