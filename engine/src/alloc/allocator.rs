//! The allocation policy of one shard's data area, and its deferred frees.
//!
//! # Placement
//!
//! [`Allocator::alloc_into`] hands out `pages` pages as extents of at most `max_extent_pages`
//! each, in this order of preference:
//!
//! 1. **Next fit.** One contiguous run, searched in address order from a *cursor* that sits
//!    just past the previous allocation (wrapping at the end of the area). Consecutive
//!    allocations therefore land one after the other on the device, which keeps appends
//!    sequential. The cursor may sit inside a free run; the tail of that run is tried first.
//!    At most [`NEXT_FIT_SCAN_RUNS_MAX`] runs are looked at, so a fragmented area does not
//!    make allocation linear in the number of runs.
//! 2. **Best fit.** If no run within the scan is long enough but one exists elsewhere, the
//!    shortest run that is long enough (O(log runs) through the length index).
//! 3. **Several runs.** If no single run is long enough, the longest runs first (the fewest
//!    extents, so the fewest journal bytes), the last one cut to size. The extents are
//!    returned in address order. The cursor does not move.
//!
//! A run longer than `max_extent_pages` is returned as consecutive extents. Allocation is
//! all-or-nothing: if fewer than `pages` pages are free now, it fails with
//! [`StoreError::NoSpace`] and takes nothing. Pages awaiting reuse (below) are not free.
//!
//! # Deferred frees (docs/format.md §5 rule 4; DESIGN.md §5 rule 3)
//!
//! Pages freed by a committed transaction (truncate, remove, an extent replaced by new
//! data) must not be handed out again until
//!
//! - the journal batch that frees them is durable — otherwise a crash could bring back the
//!   old metadata, still pointing at pages that new data has overwritten; and
//! - every data I/O issued before that batch was sealed has completed — otherwise a stale
//!   write still in the device queue could land on top of the pages' next owner.
//!
//! The caller states both conditions as a [`FreeGate`] when it frees
//! ([`Allocator::defer_free`]) and reports progress with [`Allocator::advance`]. Extents that
//! were allocated but never made visible (a transaction that failed before its journal
//! entry) need neither and go back at once with [`Allocator::release_now`].
//!
//! Deferred extents wait in a FIFO. This relies on gates arriving in order: each
//! `defer_free` passes a gate whose `batch_seq` and `io_mark` are each at least those of the
//! previous call (batches commit in `seq` order; issue numbers only grow). Then a gate that
//! has not passed holds back only gates that cannot have passed either, and `advance` pops
//! from the front until it meets one. Debug builds assert the order.
//!
//! # Memory
//!
//! On the I/O path (`alloc_into`, `release_now`, `defer_free`, `advance`) the allocator
//! allocates only B-tree nodes of the [`FreeMap`] and, until it reaches its high-water mark,
//! the deferred FIFO ([`Allocator::reserve_deferred`] sizes it up front). [`Allocator::alloc`]
//! returns a fresh `Vec` and is for tests and tools. `rebuild` and `check` (recovery and
//! fsck) allocate freely.

use std::collections::VecDeque;
use std::fmt;

use super::free_map::FreeMap;
use crate::error::StoreError;
use crate::types::Extent;

/// The extents of one allocation, nearly always one: held inline, so allocating pages
/// does not allocate memory on a write's path.
pub type Extents = smallvec::SmallVec<[Extent; 2]>;

/// How many free runs next fit examines before it settles for the best fit.
pub const NEXT_FIT_SCAN_RUNS_MAX: usize = 64;

/// When a deferred extent may be reused: both conditions must hold (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FreeGate {
    /// The journal batch whose record frees the extent; it must be durable.
    pub batch_seq: u64,
    /// An issue number at least that of every data I/O issued before the batch was sealed;
    /// every I/O numbered `<= io_mark` must have completed.
    pub io_mark: u64,
}

impl FreeGate {
    /// Whether the gate has passed, given the highest durable batch `seq` and the issue
    /// number of the oldest data I/O still in flight (`u64::MAX` when none is).
    pub fn passed(&self, durable_seq: u64, oldest_inflight_io: u64) -> bool {
        durable_seq >= self.batch_seq && oldest_inflight_io > self.io_mark
    }
}

/// Which set a run of pages belongs to, as [`AllocError`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Claim {
    /// Referenced by metadata (an object's extent).
    Used,
    /// Free now.
    Free,
    /// Freed, waiting for its [`FreeGate`].
    Deferred,
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Used => "used",
            Self::Free => "free",
            Self::Deferred => "deferred",
        })
    }
}

/// A data area whose used, free and deferred pages do not add up (recovery and fsck).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// An extent lies (partly) outside the data area.
    #[error(
        "{role} extent at pages {}..{} lies outside the data area {area_start}..{area_end}",
        .ext.phys, end_of(.ext)
    )]
    OutOfArea {
        /// The extent.
        ext: Extent,
        /// Where it came from.
        role: Claim,
        /// First page of the area.
        area_start: u64,
        /// One past the last page of the area.
        area_end: u64,
    },
    /// An extent has no pages.
    #[error("{role} extent at page {} has no pages", .ext.phys)]
    Empty {
        /// The extent.
        ext: Extent,
        /// Where it came from.
        role: Claim,
    },
    /// Two runs claim the same page. A free run longer than `u32::MAX` pages is shown from
    /// the start of the overlap.
    #[error(
        "{a_role} pages {}..{} overlap {b_role} pages {}..{}",
        .a.phys, end_of(.a), .b.phys, end_of(.b)
    )]
    Overlap {
        /// The lower-addressed run.
        a: Extent,
        /// What `a` is.
        a_role: Claim,
        /// The run that starts inside `a`.
        b: Extent,
        /// What `b` is.
        b_role: Claim,
    },
    /// Pages that are neither used, free nor deferred: lost to the allocator.
    #[error(
        "pages {start}..{} are neither used, free nor awaiting reuse (leaked)",
        .start.saturating_add(*.pages)
    )]
    Leak {
        /// First leaked page.
        start: u64,
        /// Number of leaked pages.
        pages: u64,
    },
}

/// One past the last page of `e`, without overflowing on corrupt input.
fn end_of(e: &Extent) -> u64 {
    e.phys.saturating_add(u64::from(e.pages))
}

/// The allocator of one shard's data area `[data_start, data_start + data_pages)`.
#[derive(Clone, Debug)]
pub struct Allocator {
    data_start: u64,
    data_pages: u64,
    /// Pages allocatable now.
    free: FreeMap,
    /// Freed extents waiting for their gate, gates in nondecreasing order.
    deferred: VecDeque<(Extent, FreeGate)>,
    /// Sum of the pages in `deferred`.
    deferred_pages: u64,
    /// Where next fit starts looking; always inside the area (or `data_start` if empty).
    cursor: u64,
    /// The gate of the latest `defer_free`, to assert the FIFO order.
    last_gate: FreeGate,
    /// The latest `durable_seq` passed to `advance`, to assert it never goes back.
    last_durable_seq: u64,
}

impl Allocator {
    /// An allocator over `[data_start, data_start + data_pages)` with every page free.
    ///
    /// # Panics
    /// If the area runs past `u64::MAX`.
    pub fn new(data_start: u64, data_pages: u64) -> Self {
        let mut a = Self::empty(data_start, data_pages);
        if data_pages > 0 {
            a.free.insert(data_start, data_pages);
        }
        a
    }

    /// An allocator whose free pages are the area minus `used` (the extents that committed
    /// metadata references), nothing deferred. Recovery and fsck build it this way.
    ///
    /// Fails if an extent is empty or outside the area, or if two extents overlap; the error
    /// names them.
    ///
    /// # Panics
    /// If the area runs past `u64::MAX`.
    pub fn rebuild(
        data_start: u64,
        data_pages: u64,
        used: impl IntoIterator<Item = Extent>,
    ) -> Result<Self, AllocError> {
        let mut a = Self::empty(data_start, data_pages);
        let mut used: Vec<Extent> = used.into_iter().collect();
        for e in &used {
            a.validate(e, Claim::Used)?;
        }
        used.sort_unstable();
        // Sorted by start, any overlap shows up between neighbours: if e[i] overlaps e[j]
        // (i < j), e[i] also reaches past e[i + 1].phys <= e[j].phys.
        if let Some(w) = used.windows(2).find(|w| w[0].end() > w[1].phys) {
            return Err(AllocError::Overlap {
                a: w[0],
                a_role: Claim::Used,
                b: w[1],
                b_role: Claim::Used,
            });
        }
        let mut at = data_start;
        for e in &used {
            if e.phys > at {
                a.free.insert(at, e.phys - at);
            }
            at = e.end();
        }
        let area_end = a.data_end();
        if at < area_end {
            a.free.insert(at, area_end - at);
        }
        Ok(a)
    }

    fn empty(data_start: u64, data_pages: u64) -> Self {
        assert!(
            data_start.checked_add(data_pages).is_some(),
            "data area at page {data_start} of {data_pages} pages overflows"
        );
        Self {
            data_start,
            data_pages,
            free: FreeMap::new(),
            deferred: VecDeque::new(),
            deferred_pages: 0,
            cursor: data_start,
            last_gate: FreeGate::default(),
            last_durable_seq: 0,
        }
    }

    /// Reserves room for `additional` more deferred extents, so that `defer_free` does not
    /// allocate until that many are waiting.
    pub fn reserve_deferred(&mut self, additional: usize) {
        self.deferred.reserve(additional);
    }

    /// Allocates `pages` pages as extents of at most `max_extent_pages` pages each; see
    /// [`alloc_into`](Self::alloc_into). Allocates the returned `Vec`.
    pub fn alloc(&mut self, pages: u64, max_extent_pages: u32) -> Result<Vec<Extent>, StoreError> {
        let mut out = Extents::new();
        self.alloc_into(pages, max_extent_pages, &mut out)?;
        Ok(out.into_vec())
    }

    /// Allocates `pages` pages as extents of at most `max_extent_pages` pages each and appends
    /// them to `out`, in address order; their pages add up to exactly `pages`. Prefers one
    /// contiguous run after the previous allocation (module docs).
    ///
    /// Fails with [`StoreError::NoSpace`], naming the pages wanted and free, when fewer than
    /// `pages` pages are free now; then nothing is taken and `out` is unchanged. Zero pages
    /// succeed with nothing appended.
    ///
    /// Allocates nothing beyond free-map nodes, and `out`'s growth if it lacks capacity.
    ///
    /// # Panics
    /// If `max_extent_pages` is 0.
    pub fn alloc_into(
        &mut self,
        pages: u64,
        max_extent_pages: u32,
        out: &mut Extents,
    ) -> Result<(), StoreError> {
        assert!(max_extent_pages > 0, "alloc: max_extent_pages is 0");
        if pages == 0 {
            return Ok(());
        }
        let free = self.free.free_pages();
        if pages > free {
            return Err(StoreError::NoSpace(format!(
                "data area: {pages} pages wanted, {free} free ({} awaiting reuse, {} pages in all)",
                self.deferred_pages, self.data_pages
            )));
        }
        if let Some(start) = self.find_run(pages) {
            self.take(start, pages, max_extent_pages, out);
            let end = start + pages;
            self.cursor = if end >= self.data_end() {
                self.data_start
            } else {
                end
            };
            return Ok(());
        }
        // No run is long enough: the longest runs first, whole but for the last. Each one
        // taken is shorter than what is still wanted, so only the last is cut.
        let first = out.len();
        let mut left = pages;
        while left > 0 {
            let (start, len) = self
                .free
                .largest()
                .expect("free pages were counted: a run is left");
            let n = len.min(left);
            self.take(start, n, max_extent_pages, out);
            left -= n;
        }
        out[first..].sort_unstable_by_key(|e| e.phys);
        Ok(())
    }

    /// The first page of a free run of at least `pages` pages: next fit from the cursor
    /// within the scan bound, else best fit; `None` if no run is that long.
    fn find_run(&self, pages: u64) -> Option<u64> {
        let (_, longest) = self.free.largest()?;
        if longest < pages {
            return None;
        }
        if let Some((s, l)) = self.free.containing(self.cursor) {
            if s + l - self.cursor >= pages {
                return Some(self.cursor);
            }
        }
        let wrapped = self
            .free
            .iter_from(self.cursor)
            .chain(self.free.iter_before(self.cursor));
        if let Some((s, _)) = wrapped
            .take(NEXT_FIT_SCAN_RUNS_MAX)
            .find(|&(_, l)| l >= pages)
        {
            return Some(s);
        }
        self.free.best_fit(pages).map(|(s, _)| s)
    }

    /// Marks `[start, start + len)` used and appends it to `out` as extents of at most `max`.
    fn take(&mut self, start: u64, len: u64, max: u32, out: &mut Extents) {
        self.free.remove(start, len);
        let end = start + len;
        let mut at = start;
        while at < end {
            let n = (end - at).min(u64::from(max));
            out.push(Extent {
                phys: at,
                pages: u32::try_from(n).expect("at most max_extent_pages"),
            });
            at += n;
        }
    }

    /// Gives back an extent that was allocated but never made visible (no journal record
    /// references it); it is allocatable at once.
    ///
    /// # Panics
    /// If the extent is empty, outside the area, or (partly) free already.
    pub fn release_now(&mut self, ext: Extent) {
        self.assert_in_area(&ext, "release_now");
        self.free.insert(ext.phys, u64::from(ext.pages));
    }

    /// Frees an extent that committed metadata referenced, to be reused once `gate` passes
    /// (see [`advance`](Self::advance)).
    ///
    /// `gate` must be at least, field by field, the gate of the previous call (module docs);
    /// debug builds assert it.
    ///
    /// # Panics
    /// If the extent is empty, outside the area, or (partly) free already. An extent deferred
    /// twice panics when the second copy is released.
    pub fn defer_free(&mut self, ext: Extent, gate: FreeGate) {
        self.assert_in_area(&ext, "defer_free");
        assert!(
            !self.free.overlaps(ext.phys, u64::from(ext.pages)),
            "defer_free: double free: pages {}..{} are (partly) free",
            ext.phys,
            ext.end()
        );
        debug_assert!(
            gate.batch_seq >= self.last_gate.batch_seq && gate.io_mark >= self.last_gate.io_mark,
            "defer_free: gate {gate:?} is behind the previous gate {:?}",
            self.last_gate
        );
        self.last_gate = gate;
        self.deferred.push_back((ext, gate));
        self.deferred_pages += u64::from(ext.pages);
    }

    /// Reports progress: `durable_seq` is the highest journal batch known durable (it never
    /// goes back; debug builds assert it), `oldest_inflight_io` the issue number of the
    /// oldest data I/O still in flight, or `u64::MAX` when none is (it may go back up and
    /// down: a passed gate stays passed). Makes allocatable every deferred extent whose gate
    /// has passed; returns how many pages that was.
    pub fn advance(&mut self, durable_seq: u64, oldest_inflight_io: u64) -> u64 {
        self.advance_some(durable_seq, oldest_inflight_io, usize::MAX)
    }

    /// Freed extents waiting for their gates.
    pub fn deferred_extents(&self) -> usize {
        self.deferred.len()
    }

    /// As [`advance`](Self::advance), but makes at most `max_extents` extents allocatable;
    /// the rest of those whose gate has passed wait for the next call. Freeing an extent
    /// costs a few B-tree operations; a removed object of a million scattered pages would
    /// otherwise stall its reactor's turn for hundreds of milliseconds.
    pub fn advance_some(
        &mut self,
        durable_seq: u64,
        oldest_inflight_io: u64,
        max_extents: usize,
    ) -> u64 {
        debug_assert!(
            durable_seq >= self.last_durable_seq,
            "advance: durable_seq went back from {} to {durable_seq}",
            self.last_durable_seq
        );
        self.last_durable_seq = durable_seq;
        let mut released = 0;
        let mut extents = 0;
        while let Some(&(ext, gate)) = self.deferred.front() {
            if extents == max_extents || !gate.passed(durable_seq, oldest_inflight_io) {
                break;
            }
            extents += 1;
            self.deferred.pop_front();
            self.free.insert(ext.phys, u64::from(ext.pages));
            released += u64::from(ext.pages);
        }
        self.deferred_pages -= released;
        released
    }

    /// Checks that free ∪ deferred ∪ `used` is exactly the data area, pairwise disjoint
    /// (fsck: `used` is every extent committed metadata references). Reports the first
    /// problem in address order: an empty or out-of-area extent, an overlap, or a leak.
    pub fn check(&self, used: impl IntoIterator<Item = Extent>) -> Result<(), AllocError> {
        // (first page, one past the last, what)
        let mut claims: Vec<(u64, u64, Claim)> = Vec::new();
        for e in used {
            self.validate(&e, Claim::Used)?;
            claims.push((e.phys, e.end(), Claim::Used));
        }
        for (e, _) in &self.deferred {
            self.validate(e, Claim::Deferred)?;
            claims.push((e.phys, e.end(), Claim::Deferred));
        }
        claims.extend(self.free.iter().map(|(s, l)| (s, s + l, Claim::Free)));
        claims.sort_unstable_by_key(|&(s, e, _)| (s, e));

        let mut covered = self.data_start;
        let mut prev: Option<(u64, u64, Claim)> = None;
        for c in claims {
            let (start, end, role) = c;
            if start > covered {
                return Err(AllocError::Leak {
                    start: covered,
                    pages: start - covered,
                });
            }
            if let Some((ps, pe, prole)) = prev.filter(|_| start < covered) {
                return Err(AllocError::Overlap {
                    a: shown(ps, pe, start),
                    a_role: prole,
                    b: shown(start, end, start),
                    b_role: role,
                });
            }
            covered = end;
            prev = Some(c);
        }
        let area_end = self.data_end();
        if covered < area_end {
            return Err(AllocError::Leak {
                start: covered,
                pages: area_end - covered,
            });
        }
        Ok(())
    }

    fn validate(&self, e: &Extent, role: Claim) -> Result<(), AllocError> {
        if e.pages == 0 {
            return Err(AllocError::Empty { ext: *e, role });
        }
        let inside = e.phys >= self.data_start
            && e.phys
                .checked_add(u64::from(e.pages))
                .is_some_and(|end| end <= self.data_end());
        if !inside {
            return Err(AllocError::OutOfArea {
                ext: *e,
                role,
                area_start: self.data_start,
                area_end: self.data_end(),
            });
        }
        Ok(())
    }

    fn assert_in_area(&self, e: &Extent, op: &str) {
        if let Err(err) = self.validate(e, Claim::Used) {
            panic!("{op}: {err}");
        }
    }

    /// Pages allocatable now.
    pub fn free_pages(&self) -> u64 {
        self.free.free_pages()
    }

    /// Pages freed but waiting for their gate.
    pub fn deferred_pages(&self) -> u64 {
        self.deferred_pages
    }

    /// Pages neither free nor deferred: allocated (visible or not yet).
    pub fn used_pages(&self) -> u64 {
        self.data_pages - self.free.free_pages() - self.deferred_pages
    }

    /// Pages in the data area.
    pub fn data_pages(&self) -> u64 {
        self.data_pages
    }

    /// First page of the data area.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// One past the last page of the data area.
    pub fn data_end(&self) -> u64 {
        self.data_start + self.data_pages
    }

    /// The free runs.
    pub fn free_map(&self) -> &FreeMap {
        &self.free
    }

    /// The deferred extents and their gates, oldest first.
    pub fn deferred(&self) -> impl ExactSizeIterator<Item = (Extent, FreeGate)> + '_ {
        self.deferred.iter().copied()
    }
}

/// A run `[start, end)` as an [`Extent`] for an error message: whole if it fits in one,
/// else (a long free run) from `near` on, clipped to `u32::MAX` pages.
fn shown(start: u64, end: u64, near: u64) -> Extent {
    let from = if end - start <= u64::from(u32::MAX) {
        start
    } else {
        near.clamp(start, end - 1)
    };
    Extent {
        phys: from,
        pages: u32::try_from(end - from).unwrap_or(u32::MAX),
    }
}
