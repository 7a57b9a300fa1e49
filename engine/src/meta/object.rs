//! One object's committed metadata: its size, its extent map, its attributes and its omap.
//!
//! The extent map sends logical pages of the object ([`PAGE`](crate::types::PAGE) bytes
//! each) to device pages. It is a `BTreeMap` keyed by the first logical page of each
//! [`Extent`], with two invariants that every method here keeps:
//!
//! - extents never overlap in logical space, and
//! - every extent has at least one page.
//!
//! A logical page that no extent covers is a *hole* and reads as zeroes.
//!
//! [`Object::map`] and [`Object::unmap`] are the only mutators of the extent map. Both first
//! remove the logical range they name, cutting any extent that straddles an edge of the
//! range in two (the parts outside the range stay mapped); the physical pages that leave the
//! map are appended to a caller's `freed` list, in logical order, for the allocator to take
//! back once the change is durable. `map` then inserts the new extent and merges it with a
//! neighbour that is contiguous both logically and physically (so that an object written
//! front to back from contiguous allocations stays one extent, and its checkpoint record
//! stays small).
//!
//! A physical page is never both freed and mapped by the same call: `map` leaves out of
//! `freed` any removed page that the new extent maps again. That is what makes a repeated
//! `Map` delta a true no-op (it frees nothing the second time), which replay relies on.

use std::collections::BTreeMap;

use crate::types::Extent;

/// Encoded bytes of one extent in a checkpoint record, less its sums: `u64 lpage, u64 phys,
/// u32 pages`.
pub(crate) const EXTENT_RECORD_BYTES: u64 = 8 + 8 + 4;
/// Encoded bytes of one mapped page's crc32c in a checkpoint record.
pub(crate) const PAGE_SUM_BYTES: u64 = 4;
/// Encoded bytes of an object record without its name, extents, attributes and omap:
/// `u64 size, u32 extent count, u32 attr count, u32 omap count`.
pub(crate) const OBJECT_FIXED_BYTES: u64 = 8 + 4 + 4 + 4;

/// Encoded bytes of a `u32 len`-prefixed byte string.
pub(crate) fn bytes_record(len: usize) -> u64 {
    4 + len as u64
}

/// Encoded bytes of one attribute or omap pair.
pub(crate) fn pair_record(key: &[u8], value: &[u8]) -> u64 {
    bytes_record(key.len()) + bytes_record(value.len())
}

/// An object's committed metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Object {
    /// Size in bytes. Pages past it may still be mapped (a `SetSize` does not unmap).
    pub size: u64,
    /// Extent map: first logical page → extent. Changed only by [`Object::map`] and
    /// [`Object::unmap`], which keep the module's invariants and `mapped_end`.
    extents: BTreeMap<u64, Extent>,
    /// The logical page after the last extent (0 when nothing is mapped): an append asks
    /// for it on every write, and reading it here spares a walk down the extent tree.
    mapped_end: u64,
    /// Attributes.
    pub attrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Object map (small key/value store).
    pub omap: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A run of logical pages that is either a hole or mapped to consecutive device pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First logical page.
    pub lpage: u64,
    /// Pages in the run (at least 1).
    pub pages: u64,
    /// First device page, or `None` for a hole.
    pub phys: Option<u64>,
}

impl Object {
    /// An object with these parts (the checkpoint decoder's constructor). `extents` must
    /// keep the module's invariants.
    pub(crate) fn from_parts(
        size: u64,
        extents: BTreeMap<u64, Extent>,
        attrs: BTreeMap<Vec<u8>, Vec<u8>>,
        omap: BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Self {
        let mut obj = Object {
            size,
            extents,
            mapped_end: 0,
            attrs,
            omap,
        };
        obj.mapped_end = obj.last_extent_end();
        obj
    }

    /// The extent map: first logical page → extent, in logical order.
    pub fn extents(&self) -> &BTreeMap<u64, Extent> {
        &self.extents
    }

    /// The logical page after the last mapped extent; 0 when nothing is mapped. O(1).
    pub fn mapped_end(&self) -> u64 {
        self.mapped_end
    }

    fn last_extent_end(&self) -> u64 {
        self.extents
            .last_key_value()
            .map_or(0, |(&lpage, e)| lpage + u64::from(e.pages))
    }

    /// Maps logical pages `[lpage, lpage + ext.pages)` to `ext`, replacing whatever was
    /// mapped there. Removed physical pages go to `freed` (in logical order), except those
    /// that `ext` itself covers.
    ///
    /// # Panics
    ///
    /// If `ext.pages` is 0, or `lpage + ext.pages` or `ext.phys + ext.pages` overflows u64
    /// (callers validate deltas first; see `MetaTable::apply`).
    ///
    /// Returns how many logical pages were mapped in the range before (the map's page count
    /// grows by `ext.pages` less that).
    pub fn map(&mut self, lpage: u64, ext: Extent, freed: &mut Vec<Extent>) -> u64 {
        assert!(ext.pages >= 1, "map of an empty extent at lpage {lpage}");
        let pages = u64::from(ext.pages);
        let end = lpage
            .checked_add(pages)
            .expect("logical range of a map overflows u64");
        let phys_end = ext
            .phys
            .checked_add(pages)
            .expect("physical range of a map overflows u64");
        let mut removed = 0;
        self.remove_range(lpage, end, |piece| {
            removed += u64::from(piece.pages);
            // Keep out of `freed` whatever the new extent maps again.
            if piece.phys < ext.phys {
                let hi = piece.end().min(ext.phys);
                freed.push(extent(piece.phys, hi - piece.phys));
            }
            if piece.end() > phys_end {
                let lo = piece.phys.max(phys_end);
                freed.push(extent(lo, piece.end() - lo));
            }
        });
        self.insert_merged(lpage, ext);
        // Whatever was removed lay inside [lpage, end), which is mapped now.
        self.mapped_end = self.mapped_end.max(end);
        removed
    }

    /// Unmaps logical pages `[lpage, lpage + pages)` (the end saturates at `u64::MAX`),
    /// pushing the removed physical pages to `freed` in logical order. Returns the number of
    /// pages unmapped.
    pub fn unmap(&mut self, lpage: u64, pages: u64, freed: &mut Vec<Extent>) -> u64 {
        let mut removed = 0;
        self.remove_range(lpage, lpage.saturating_add(pages), |piece| {
            removed += u64::from(piece.pages);
            freed.push(piece)
        });
        if removed > 0 {
            self.mapped_end = self.last_extent_end();
        }
        removed
    }

    /// The logical range `[lpage, lpage + pages)` (end saturating at `u64::MAX`) cut into
    /// holes and mapped runs, in order, covering exactly the range. A mapped run never spans
    /// two extents (two adjacent mapped runs may be physically contiguous).
    pub fn segments(&self, lpage: u64, pages: u64) -> Segments<'_> {
        Segments {
            extents: &self.extents,
            next: lpage,
            end: lpage.saturating_add(pages),
        }
    }

    /// The device page that logical page `lpage` maps to, if any.
    pub fn phys_of(&self, lpage: u64) -> Option<u64> {
        let (&start, ext) = self.extents.range(..=lpage).next_back()?;
        (lpage - start < u64::from(ext.pages)).then(|| ext.phys + (lpage - start))
    }

    /// Logical pages mapped (O(extents)).
    pub fn mapped_pages(&self) -> u64 {
        self.extents.values().map(|e| u64::from(e.pages)).sum()
    }

    /// The extents, as (first logical page, extent), in logical order.
    pub fn extents_iter(&self) -> impl Iterator<Item = (u64, Extent)> + '_ {
        self.extents.iter().map(|(&lpage, &ext)| (lpage, ext))
    }

    /// Size of this object's checkpoint record, less its name (the table, which knows the
    /// name, adds `4 + name length`). Currently exact; treat it as an estimate.
    /// O(extents + attributes + omap keys).
    pub fn approx_bytes(&self) -> u64 {
        OBJECT_FIXED_BYTES
            + self.extents.len() as u64 * EXTENT_RECORD_BYTES
            + self.mapped_pages() * PAGE_SUM_BYTES
            + self
                .attrs
                .iter()
                .chain(&self.omap)
                .map(|(k, v)| pair_record(k, v))
                .sum::<u64>()
    }

    /// Removes logical pages `[start, end)` from the map, handing each removed physical piece
    /// to `sink` in logical order. Extents straddling `start` or `end` keep their outside
    /// parts.
    fn remove_range(&mut self, start: u64, end: u64, mut sink: impl FnMut(Extent)) {
        if start >= end {
            return;
        }
        // An extent that begins before `start` and reaches into the range.
        if let Some((&s, &e)) = self.extents.range(..start).next_back() {
            let e_end = s + u64::from(e.pages);
            if e_end > start {
                // Keep [s, start); remove [start, min(e_end, end)); keep [end, e_end).
                self.extents.insert(s, extent(e.phys, start - s));
                let cut_end = e_end.min(end);
                sink(extent(e.phys + (start - s), cut_end - start));
                if e_end > end {
                    self.extents
                        .insert(end, extent(e.phys + (end - s), e_end - end));
                }
            }
        }
        // Extents that begin inside the range.
        while let Some((&s, &e)) = self.extents.range(start..end).next() {
            self.extents.remove(&s);
            let e_end = s + u64::from(e.pages);
            let cut_end = e_end.min(end);
            sink(extent(e.phys, cut_end - s));
            if e_end > end {
                self.extents
                    .insert(end, extent(e.phys + (end - s), e_end - end));
            }
        }
    }

    /// Inserts `ext` at `lpage` (the range must be free), merging it with a neighbour that is
    /// contiguous logically and physically where the sum fits an extent.
    fn insert_merged(&mut self, lpage: u64, ext: Extent) {
        let (mut start, mut ext) = (lpage, ext);
        if let Some((&s, &left)) = self.extents.range(..lpage).next_back() {
            if s + u64::from(left.pages) == lpage && left.end() == ext.phys {
                if let Some(pages) = left.pages.checked_add(ext.pages) {
                    self.extents.remove(&s);
                    start = s;
                    ext = Extent {
                        phys: left.phys,
                        pages,
                    };
                }
            }
        }
        let end = start + u64::from(ext.pages);
        if let Some(&right) = self.extents.get(&end) {
            if right.phys == ext.end() {
                if let Some(pages) = ext.pages.checked_add(right.pages) {
                    self.extents.remove(&end);
                    ext.pages = pages;
                }
            }
        }
        self.extents.insert(start, ext);
    }
}

/// An extent of `pages` pages (which the caller knows fits a u32: it is a piece of one).
fn extent(phys: u64, pages: u64) -> Extent {
    debug_assert!(pages >= 1);
    Extent {
        phys,
        pages: u32::try_from(pages).expect("a piece of an extent fits in u32 pages"),
    }
}

/// Iterator of [`Segment`]s; see [`Object::segments`].
#[derive(Clone, Debug)]
pub struct Segments<'a> {
    extents: &'a BTreeMap<u64, Extent>,
    next: u64,
    end: u64,
}

impl Iterator for Segments<'_> {
    type Item = Segment;

    fn next(&mut self) -> Option<Segment> {
        if self.next >= self.end {
            return None;
        }
        let at = self.next;
        let covering = self
            .extents
            .range(..=at)
            .next_back()
            .filter(|(&s, e)| at - s < u64::from(e.pages));
        let seg = match covering {
            Some((&s, e)) => {
                let stop = (s + u64::from(e.pages)).min(self.end);
                Segment {
                    lpage: at,
                    pages: stop - at,
                    phys: Some(e.phys + (at - s)),
                }
            }
            None => {
                let stop = self
                    .extents
                    .range(at..)
                    .next()
                    .map_or(self.end, |(&s, _)| s.min(self.end));
                Segment {
                    lpage: at,
                    pages: stop - at,
                    phys: None,
                }
            }
        };
        self.next = at + seg.pages;
        Some(seg)
    }
}

impl std::iter::FusedIterator for Segments<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(phys: u64, pages: u32) -> Extent {
        Extent { phys, pages }
    }

    /// An object mapping [10, 20) → 100.. and [30, 40) → 200.. (physically apart, so no
    /// merging).
    fn two_extents() -> Object {
        let mut o = Object::default();
        let mut freed = Vec::new();
        o.map(10, ext(100, 10), &mut freed);
        o.map(30, ext(200, 10), &mut freed);
        assert!(freed.is_empty());
        o
    }

    fn map_of(o: &Object) -> Vec<(u64, u64, u32)> {
        o.extents_iter()
            .map(|(l, e)| (l, e.phys, e.pages))
            .collect()
    }

    #[test]
    fn unmap_straddling_left_edge() {
        let mut o = two_extents();
        let mut freed = Vec::new();
        o.unmap(5, 10, &mut freed); // [5, 15)
        assert_eq!(freed, vec![ext(100, 5)]);
        assert_eq!(map_of(&o), vec![(15, 105, 5), (30, 200, 10)]);
    }

    #[test]
    fn unmap_straddling_right_edge() {
        let mut o = two_extents();
        let mut freed = Vec::new();
        o.unmap(35, 10, &mut freed); // [35, 45)
        assert_eq!(freed, vec![ext(205, 5)]);
        assert_eq!(map_of(&o), vec![(10, 100, 10), (30, 200, 5)]);
    }

    #[test]
    fn unmap_straddling_both_edges() {
        let mut o = two_extents();
        let mut freed = Vec::new();
        o.unmap(15, 20, &mut freed); // [15, 35)
        assert_eq!(freed, vec![ext(105, 5), ext(200, 5)]);
        assert_eq!(map_of(&o), vec![(10, 100, 5), (35, 205, 5)]);
    }

    #[test]
    fn unmap_exact_extent() {
        let mut o = two_extents();
        let mut freed = Vec::new();
        o.unmap(30, 10, &mut freed);
        assert_eq!(freed, vec![ext(200, 10)]);
        assert_eq!(map_of(&o), vec![(10, 100, 10)]);
    }

    #[test]
    fn unmap_inside_one_extent() {
        let mut o = two_extents();
        let mut freed = Vec::new();
        o.unmap(12, 3, &mut freed); // [12, 15)
        assert_eq!(freed, vec![ext(102, 3)]);
        assert_eq!(map_of(&o), vec![(10, 100, 2), (15, 105, 5), (30, 200, 10)]);
    }

    #[test]
    fn unmap_to_the_end_saturates() {
        let mut o = two_extents();
        let mut freed = Vec::new();
        o.unmap(18, u64::MAX, &mut freed);
        assert_eq!(freed, vec![ext(108, 2), ext(200, 10)]);
        assert_eq!(map_of(&o), vec![(10, 100, 8)]);
        // Nothing mapped and an empty range: no change.
        o.unmap(0, 0, &mut freed);
        o.unmap(50, 5, &mut freed);
        assert_eq!(freed.len(), 2);
    }

    #[test]
    fn map_replacing_both_edges_and_a_whole_extent() {
        let mut o = two_extents();
        o.map(50, ext(300, 5), &mut Vec::new());
        let mut freed = Vec::new();
        o.map(15, ext(400, 40), &mut freed); // [15, 55)
        assert_eq!(freed, vec![ext(105, 5), ext(200, 10), ext(300, 5)]);
        assert_eq!(map_of(&o), vec![(10, 100, 5), (15, 400, 40)]);
    }

    #[test]
    fn map_inside_one_extent() {
        let mut o = two_extents();
        let mut freed = Vec::new();
        o.map(12, ext(500, 3), &mut freed);
        assert_eq!(freed, vec![ext(102, 3)]);
        assert_eq!(
            map_of(&o),
            vec![(10, 100, 2), (12, 500, 3), (15, 105, 5), (30, 200, 10)]
        );
    }

    #[test]
    fn map_merges_contiguous_neighbours_only() {
        let mut o = Object::default();
        let mut freed = Vec::new();
        o.map(0, ext(100, 4), &mut freed);
        o.map(4, ext(104, 4), &mut freed); // contiguous both ways: merged
        assert_eq!(map_of(&o), vec![(0, 100, 8)]);
        o.map(8, ext(300, 2), &mut freed); // logically contiguous only: apart
        o.map(18, ext(310, 2), &mut freed);
        o.map(30, ext(320, 2), &mut freed);
        o.map(33, ext(322, 1), &mut freed); // physically contiguous only: apart
        o.map(10, ext(302, 2), &mut freed); // merges left
        assert_eq!(
            map_of(&o),
            vec![
                (0, 100, 8),
                (8, 300, 4),
                (18, 310, 2),
                (30, 320, 2),
                (33, 322, 1)
            ]
        );
        o.map(12, ext(304, 6), &mut freed); // fills the gap: merges both ways
        assert_eq!(
            map_of(&o),
            vec![(0, 100, 8), (8, 300, 12), (30, 320, 2), (33, 322, 1)]
        );
        assert!(freed.is_empty());
        // ... and a right merge.
        let mut o = Object::default();
        o.map(4, ext(104, 4), &mut freed);
        o.map(0, ext(100, 4), &mut freed);
        assert_eq!(map_of(&o), vec![(0, 100, 8)]);
    }

    #[test]
    fn merge_respects_the_extent_size_limit() {
        let mut o = Object::default();
        let mut freed = Vec::new();
        o.map(0, ext(0, u32::MAX), &mut freed);
        o.map(u64::from(u32::MAX), ext(u64::from(u32::MAX), 1), &mut freed);
        assert_eq!(o.extents.len(), 2);
        assert_eq!(o.mapped_pages(), u64::from(u32::MAX) + 1);
    }

    #[test]
    fn remapping_the_same_pages_frees_nothing() {
        let mut o = two_extents();
        let before = o.clone();
        let mut freed = Vec::new();
        o.map(10, ext(100, 10), &mut freed);
        o.map(12, ext(102, 3), &mut freed);
        assert!(freed.is_empty());
        assert_eq!(o, before);
        // Sliding a mapping along its device pages frees only the page that leaves it.
        o.map(10, ext(101, 10), &mut freed);
        assert_eq!(freed, vec![ext(100, 1)]);
        assert_eq!(o.phys_of(10), Some(101));
        assert_eq!(o.phys_of(19), Some(110));
    }

    #[test]
    fn segments_cover_holes_and_extents() {
        let o = two_extents();
        let segs: Vec<_> = o.segments(0, 50).collect();
        let seg = |lpage, pages, phys| Segment { lpage, pages, phys };
        assert_eq!(
            segs,
            vec![
                seg(0, 10, None),
                seg(10, 10, Some(100)),
                seg(20, 10, None),
                seg(30, 10, Some(200)),
                seg(40, 10, None),
            ]
        );
        // Starting and ending inside extents.
        let segs: Vec<_> = o.segments(12, 20).collect();
        assert_eq!(
            segs,
            vec![
                seg(12, 8, Some(102)),
                seg(20, 10, None),
                seg(30, 2, Some(200))
            ]
        );
        assert_eq!(o.segments(5, 0).count(), 0);
        assert_eq!(
            o.segments(u64::MAX - 1, 10).collect::<Vec<_>>(),
            vec![seg(u64::MAX - 1, 1, None)]
        );
        assert_eq!(
            Object::default().segments(0, 3).collect::<Vec<_>>(),
            vec![seg(0, 3, None)]
        );
    }

    #[test]
    #[should_panic(expected = "empty extent")]
    fn map_of_zero_pages_is_a_programmer_error() {
        Object::default().map(0, ext(1, 0), &mut Vec::new());
    }

    #[test]
    fn approx_bytes_counts_every_part() {
        let mut o = two_extents();
        assert_eq!(
            o.approx_bytes(),
            OBJECT_FIXED_BYTES + 2 * EXTENT_RECORD_BYTES + 20 * PAGE_SUM_BYTES
        );
        o.attrs.insert(b"k".to_vec(), b"vv".to_vec());
        o.omap.insert(b"key".to_vec(), Vec::new());
        assert_eq!(
            o.approx_bytes(),
            OBJECT_FIXED_BYTES
                + 2 * EXTENT_RECORD_BYTES
                + 20 * PAGE_SUM_BYTES
                + (4 + 1 + 4 + 2)
                + (4 + 3 + 4)
        );
    }
}
