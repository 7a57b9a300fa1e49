//! The data-area allocator: placement, coalescing, all-or-nothing failure, deferred frees
//! and their two gate conditions, rebuild and check, and a model-based property test.

use keel_engine::alloc::{AllocError, Allocator, Claim, Extents, FreeGate, NEXT_FIT_SCAN_RUNS_MAX};
use keel_engine::{Extent, StoreError};
use proptest::prelude::*;

fn ext(phys: u64, pages: u32) -> Extent {
    Extent { phys, pages }
}

fn runs(a: &Allocator) -> Vec<(u64, u64)> {
    a.free_map().iter().collect()
}

fn assert_sums(a: &Allocator) {
    assert_eq!(
        a.free_pages() + a.deferred_pages() + a.used_pages(),
        a.data_pages()
    );
}

#[test]
fn alloc_and_release_coalesce_exactly() {
    let mut a = Allocator::new(100, 64);
    assert_eq!(runs(&a), [(100, 64)]);
    assert_eq!(a.alloc(8, 16).unwrap(), [ext(100, 8)]);
    assert_eq!(a.alloc(8, 16).unwrap(), [ext(108, 8)]);
    assert_eq!(a.alloc(4, 16).unwrap(), [ext(116, 4)]);
    assert_eq!(runs(&a), [(120, 44)]);
    assert_eq!((a.free_pages(), a.used_pages()), (44, 20));

    a.release_now(ext(108, 8));
    assert_eq!(runs(&a), [(108, 8), (120, 44)]);
    // Fills the gap: merges with both neighbours.
    a.release_now(ext(116, 4));
    assert_eq!(runs(&a), [(108, 56)]);
    a.release_now(ext(100, 8));
    assert_eq!(runs(&a), [(100, 64)]);
    assert_eq!((a.free_pages(), a.used_pages()), (64, 0));
    assert_sums(&a);
}

#[test]
fn a_run_longer_than_the_extent_limit_comes_back_as_consecutive_extents() {
    let mut a = Allocator::new(0, 100);
    assert_eq!(
        a.alloc(10, 3).unwrap(),
        [ext(0, 3), ext(3, 3), ext(6, 3), ext(9, 1)]
    );
    assert_eq!(a.alloc(0, 3).unwrap(), []);
    assert_eq!(a.free_pages(), 90);
}

#[test]
fn next_fit_places_consecutive_allocations_sequentially() {
    let mut a = Allocator::new(1000, 100);
    let mut expect = 1000;
    for _ in 0..10 {
        let got = a.alloc(7, 64).unwrap();
        assert_eq!(got, [ext(expect, 7)]);
        expect += 7;
    }
    // A hole behind the cursor is not taken (next fit, not first fit)...
    a.release_now(ext(1000, 7));
    assert_eq!(a.alloc(5, 64).unwrap(), [ext(1070, 5)]);
    // ...until the cursor wraps past the end of the area.
    assert_eq!(a.alloc(25, 64).unwrap(), [ext(1075, 25)]);
    assert_eq!(a.alloc(5, 64).unwrap(), [ext(1000, 5)]);
    assert_eq!(a.alloc(2, 64).unwrap(), [ext(1005, 2)]);
    assert_eq!(a.free_pages(), 0);
}

#[test]
fn next_fit_skips_runs_too_short_and_wraps() {
    let mut a = Allocator::new(0, 30);
    a.alloc(30, 64).unwrap();
    a.release_now(ext(0, 10));
    a.release_now(ext(12, 3));
    a.release_now(ext(20, 10));
    // Cursor is at the end (wrapped to 0): the first run long enough from there.
    assert_eq!(a.alloc(4, 64).unwrap(), [ext(0, 4)]);
    // Cursor at 4: the tail of the run it sits in.
    assert_eq!(a.alloc(6, 64).unwrap(), [ext(4, 6)]);
    // Cursor at 10: 12..15 is too short, 20..30 fits.
    assert_eq!(a.alloc(5, 64).unwrap(), [ext(20, 5)]);
}

#[test]
fn best_fit_when_the_scan_finds_nothing() {
    // Free: one page at every even page of 0..2n, then 20 pages, then 60 pages.
    let n = NEXT_FIT_SCAN_RUNS_MAX as u64 + 10;
    let mut used: Vec<Extent> = (0..n).map(|i| ext(2 * i + 1, 1)).collect();
    let big = 2 * n;
    used.push(ext(big + 20, 1));
    let mut a = Allocator::rebuild(0, big + 81, used).unwrap();
    assert_eq!(a.free_map().runs() as u64, n + 2);
    // Next fit from page 0 sees only one-page runs within its bound; best fit picks the
    // 20-page run over the 60-page one.
    assert_eq!(a.alloc(15, 64).unwrap(), [ext(big, 15)]);
    assert_eq!(a.alloc(30, 64).unwrap(), [ext(big + 21, 30)]);
}

#[test]
fn fragmented_space_falls_back_to_several_extents_within_the_limit() {
    let mut a = Allocator::new(0, 100);
    a.alloc(100, 100).unwrap();
    // Holes: 0..10, 20..30, 40..50, 60..70, 80..90 (50 pages, longest run 10).
    let holes: Vec<(u64, u64)> = (0..5).map(|i| (20 * i, 20 * i + 10)).collect();
    for &(s, e) in &holes {
        a.release_now(ext(s, (e - s) as u32));
    }
    let got = a.alloc(35, 4).unwrap();
    assert!(got.len() >= 9, "35 pages at most 4 per extent: {got:?}");
    assert!(got.iter().all(|e| (1..=4).contains(&e.pages)), "{got:?}");
    assert_eq!(got.iter().map(|e| u64::from(e.pages)).sum::<u64>(), 35);
    assert!(
        got.windows(2).all(|w| w[0].end() <= w[1].phys),
        "sorted, disjoint: {got:?}"
    );
    for e in &got {
        assert!(
            holes.iter().any(|&(s, end)| e.phys >= s && e.end() <= end),
            "{e:?} is not inside a free hole"
        );
    }
    // Longest runs first, whole: three whole holes and half of a fourth, one hole untouched.
    let untouched = holes
        .iter()
        .filter(|&&(s, end)| !got.iter().any(|e| e.phys < end && e.end() > s))
        .count();
    assert_eq!(untouched, 1);
    assert_eq!(a.free_pages(), 15);
    assert_sums(&a);
}

#[test]
fn no_space_takes_nothing() {
    let mut a = Allocator::new(0, 20);
    a.alloc(15, 64).unwrap();
    a.release_now(ext(3, 2));
    a.defer_free(
        ext(10, 5),
        FreeGate {
            batch_seq: 1,
            io_mark: 1,
        },
    );
    let before = runs(&a);
    assert_eq!(a.free_pages(), 7);

    let mut out = Extents::from_slice(&[ext(999, 1)]);
    let err = a.alloc_into(8, 4, &mut out).unwrap_err();
    assert!(matches!(err, StoreError::NoSpace(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("8 pages wanted"), "{msg}");
    assert!(msg.contains("7 free"), "{msg}");
    assert!(msg.contains("5 awaiting reuse"), "{msg}");
    assert_eq!(out.as_slice(), [ext(999, 1)]);
    assert_eq!(runs(&a), before);
    assert_eq!(
        (a.free_pages(), a.deferred_pages(), a.used_pages()),
        (7, 5, 8)
    );
    // Exactly what is free still succeeds.
    assert_eq!(a.alloc(7, 64).unwrap().len(), 2);
    assert_eq!(a.free_pages(), 0);
}

#[test]
fn deferred_pages_wait_for_both_gate_conditions() {
    let mut a = Allocator::new(0, 10);
    let e = a.alloc(10, 64).unwrap()[0];
    let gate = FreeGate {
        batch_seq: 5,
        io_mark: 100,
    };
    a.defer_free(e, gate);
    assert_eq!(
        (a.free_pages(), a.deferred_pages(), a.used_pages()),
        (0, 10, 0)
    );

    // I/O drained, batch not durable: held.
    assert_eq!(a.advance(4, u64::MAX), 0);
    assert_eq!(a.free_pages(), 0);
    assert!(a.alloc(1, 64).is_err());
    // Batch durable, an I/O issued at the mark still in flight: held.
    assert_eq!(a.advance(5, 100), 0);
    assert_eq!(a.advance(9, 50), 0);
    assert_eq!(a.free_pages(), 0);
    assert!(a.alloc(1, 64).is_err());
    // Both: released.
    assert_eq!(a.advance(9, 101), 10);
    assert_eq!((a.free_pages(), a.deferred_pages()), (10, 0));
    assert_eq!(a.alloc(10, 64).unwrap(), [e]);
}

#[test]
fn deferred_frees_release_in_order_as_gates_pass() {
    let mut a = Allocator::new(0, 30);
    a.alloc(30, 64).unwrap();
    let g = |batch_seq, io_mark| FreeGate { batch_seq, io_mark };
    a.defer_free(ext(0, 10), g(1, 10));
    a.defer_free(ext(10, 10), g(2, 20));
    a.defer_free(ext(20, 10), g(2, 30));
    assert_eq!(a.deferred().len(), 3);
    assert_eq!(a.advance(1, 25), 10);
    assert_eq!(runs(&a), [(0, 10)]);
    assert_eq!(a.advance(2, 25), 10);
    assert_eq!(runs(&a), [(0, 20)]);
    assert_eq!(a.deferred().collect::<Vec<_>>(), [(ext(20, 10), g(2, 30))]);
    // The queue drained: oldest in flight is "none".
    assert_eq!(a.advance(2, u64::MAX), 10);
    assert_eq!(runs(&a), [(0, 30)]);
    assert_sums(&a);
}

#[test]
fn a_bounded_advance_releases_at_most_its_budget_in_order() {
    let mut a = Allocator::new(0, 40);
    a.alloc(40, 64).unwrap();
    let g = |batch_seq| FreeGate {
        batch_seq,
        io_mark: 0,
    };
    // Scattered one-page frees, as a removed fragmented object leaves them.
    for p in (0..40).step_by(2) {
        a.defer_free(ext(p, 1), g(1));
    }
    a.defer_free(ext(1, 1), g(2));
    assert_eq!(a.advance_some(1, u64::MAX, 0), 0);
    assert_eq!(a.advance_some(1, u64::MAX, 8), 8);
    assert_eq!(runs(&a).len(), 8);
    assert_eq!(runs(&a)[7], (14, 1));
    // The budget stops before the gate does; the gate still stops a larger budget.
    assert_eq!(a.advance_some(1, u64::MAX, 100), 12);
    assert_eq!((a.free_pages(), a.deferred_pages()), (20, 1));
    assert_eq!(a.deferred().collect::<Vec<_>>(), [(ext(1, 1), g(2))]);
    assert_eq!(a.advance_some(2, u64::MAX, 1), 1);
    assert_eq!(runs(&a)[0], (0, 3));
    assert_sums(&a);
}

#[test]
fn release_now_is_reusable_at_once() {
    let mut a = Allocator::new(0, 8);
    let e = a.alloc(8, 64).unwrap()[0];
    a.release_now(e);
    assert_eq!(a.alloc(8, 64).unwrap(), [e]);
}

#[test]
#[should_panic(expected = "double free")]
fn releasing_free_pages_panics() {
    let mut a = Allocator::new(0, 8);
    a.alloc(4, 64).unwrap();
    a.release_now(ext(2, 4));
}

#[test]
#[should_panic(expected = "double free")]
fn deferring_free_pages_panics() {
    let mut a = Allocator::new(0, 8);
    a.alloc(4, 64).unwrap();
    a.defer_free(ext(3, 2), FreeGate::default());
}

#[test]
#[should_panic(expected = "outside the data area")]
fn releasing_outside_the_area_panics() {
    let mut a = Allocator::new(10, 8);
    a.release_now(ext(4, 8));
}

#[test]
fn rebuild_frees_the_gaps_between_used_extents() {
    let a = Allocator::rebuild(100, 100, [ext(150, 5), ext(110, 10), ext(195, 5)]).unwrap();
    assert_eq!(runs(&a), [(100, 10), (120, 30), (155, 40)]);
    assert_eq!(
        (a.free_pages(), a.deferred_pages(), a.used_pages()),
        (80, 0, 20)
    );
    a.check([ext(110, 10), ext(150, 5), ext(195, 5)]).unwrap();

    let all = Allocator::rebuild(0, 10, [ext(0, 10)]).unwrap();
    assert_eq!(all.free_pages(), 0);
    let none = Allocator::rebuild(0, 10, []).unwrap();
    assert_eq!(runs(&none), [(0, 10)]);
}

#[test]
fn rebuild_rejects_extents_outside_the_area() {
    for bad in [ext(95, 10), ext(195, 6), ext(200, 1), ext(u64::MAX - 1, 4)] {
        let err = Allocator::rebuild(100, 100, [ext(120, 1), bad]).unwrap_err();
        assert_eq!(
            err,
            AllocError::OutOfArea {
                ext: bad,
                role: Claim::Used,
                area_start: 100,
                area_end: 200
            }
        );
        assert!(
            err.to_string().contains("outside the data area 100..200"),
            "{err}"
        );
    }
    let err = Allocator::rebuild(100, 100, [ext(120, 0)]).unwrap_err();
    assert_eq!(
        err,
        AllocError::Empty {
            ext: ext(120, 0),
            role: Claim::Used
        }
    );
}

#[test]
fn rebuild_rejects_overlapping_extents_and_names_both() {
    let err = Allocator::rebuild(0, 100, [ext(50, 5), ext(10, 10), ext(15, 10)]).unwrap_err();
    assert_eq!(
        err,
        AllocError::Overlap {
            a: ext(10, 10),
            a_role: Claim::Used,
            b: ext(15, 10),
            b_role: Claim::Used
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("used pages 10..20 overlap used pages 15..25"),
        "{msg}"
    );

    // One long extent covering a later one that is not its neighbour in input order.
    let err = Allocator::rebuild(0, 100, [ext(60, 2), ext(0, 80), ext(90, 1)]).unwrap_err();
    assert!(matches!(err, AllocError::Overlap { a, b, .. } if a == ext(0, 80) && b == ext(60, 2)));
    // The same extent twice.
    let err = Allocator::rebuild(0, 100, [ext(5, 5), ext(5, 5)]).unwrap_err();
    assert!(matches!(err, AllocError::Overlap { .. }), "{err}");
}

#[test]
fn check_accepts_a_consistent_area_with_deferred_pages() {
    let mut a = Allocator::new(0, 50);
    let e1 = a.alloc(10, 64).unwrap()[0];
    let e2 = a.alloc(10, 64).unwrap()[0];
    let e3 = a.alloc(10, 64).unwrap()[0];
    a.defer_free(e2, FreeGate::default());
    a.check([e1, e3]).unwrap();
    assert_sums(&a);
}

#[test]
fn check_reports_a_leak() {
    let mut a = Allocator::new(0, 50);
    let e1 = a.alloc(10, 64).unwrap()[0];
    let _e2 = a.alloc(10, 64).unwrap()[0];
    let e3 = a.alloc(10, 64).unwrap()[0];
    // e2 is allocated but no metadata references it.
    let err = a.check([e1, e3]).unwrap_err();
    assert_eq!(
        err,
        AllocError::Leak {
            start: 10,
            pages: 10
        }
    );
    assert!(err.to_string().contains("pages 10..20"), "{err}");
    // The allocator sees pages, not extents: one extent over all three is consistent.
    a.check([ext(0, 30)]).unwrap();
    // A leak at the end of the area.
    let b = Allocator::rebuild(0, 50, [ext(40, 10)]).unwrap();
    let err = b.check([]).unwrap_err();
    assert_eq!(
        err,
        AllocError::Leak {
            start: 40,
            pages: 10
        }
    );
}

#[test]
fn check_reports_an_overlap_with_free_and_deferred_pages() {
    let mut a = Allocator::new(0, 50);
    let e1 = a.alloc(10, 64).unwrap()[0];
    let e2 = a.alloc(10, 64).unwrap()[0];
    // Metadata claims pages the allocator thinks are free.
    let err = a.check([e1, e2, ext(25, 5)]).unwrap_err();
    assert_eq!(
        err,
        AllocError::Overlap {
            a: ext(20, 30),
            a_role: Claim::Free,
            b: ext(25, 5),
            b_role: Claim::Used
        }
    );
    assert!(
        err.to_string()
            .contains("free pages 20..50 overlap used pages 25..30"),
        "{err}"
    );
    // Metadata still references a deferred extent.
    a.defer_free(e2, FreeGate::default());
    let err = a.check([e1, e2]).unwrap_err();
    assert!(
        matches!(err, AllocError::Overlap { a_role, b_role, .. }
            if (a_role, b_role) == (Claim::Deferred, Claim::Used)
                || (a_role, b_role) == (Claim::Used, Claim::Deferred)),
        "{err}"
    );
    // Two used extents.
    let err = a.check([e1, ext(5, 10)]).unwrap_err();
    assert!(matches!(err, AllocError::Overlap { .. }), "{err}");
    // Out of the area.
    let err = a.check([e1, ext(45, 10)]).unwrap_err();
    assert!(matches!(err, AllocError::OutOfArea { .. }), "{err}");
}

// ---- model-based property test ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Page {
    Free,
    Used,
    Deferred,
}

#[derive(Clone, Debug)]
enum Op {
    /// Allocate `pages` in extents of at most `max` pages.
    Alloc { pages: u64, max: u32 },
    /// Give back the first `take` pages (mod its length, at least 1) of a live extent.
    Release { pick: usize, take: u32 },
    /// Defer the first `take` pages of a live extent, behind a gate advanced by the steps.
    Defer {
        pick: usize,
        take: u32,
        seq_step: u64,
        io_step: u64,
    },
    /// Report progress: durable seq advanced by `seq_step`; the oldest in-flight I/O near the
    /// latest mark (offset by `io_off - 4`), or none.
    Advance { seq_step: u64, io_off: Option<u64> },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..60, 1u32..16).prop_map(|(pages, max)| Op::Alloc { pages, max }),
        2 => (any::<usize>(), any::<u32>()).prop_map(|(pick, take)| Op::Release { pick, take }),
        2 => (any::<usize>(), any::<u32>(), 0u64..3, 0u64..4).prop_map(
            |(pick, take, seq_step, io_step)| Op::Defer { pick, take, seq_step, io_step }
        ),
        2 => (0u64..3, proptest::option::of(0u64..8))
            .prop_map(|(seq_step, io_off)| Op::Advance { seq_step, io_off }),
    ]
}

struct Model {
    start: u64,
    pages: Vec<Page>,
    /// Allocated extents that nothing has freed yet (the "used" set for check()).
    live: Vec<Extent>,
    deferred: Vec<(Extent, FreeGate)>,
    gate: FreeGate,
    durable_seq: u64,
}

impl Model {
    fn count(&self, p: Page) -> u64 {
        self.pages.iter().filter(|&&q| q == p).count() as u64
    }

    fn set(&mut self, e: Extent, from: Page, to: Page) {
        for page in e.phys..e.end() {
            let slot = &mut self.pages[(page - self.start) as usize];
            assert_eq!(*slot, from, "page {page} of {e:?}");
            *slot = to;
        }
    }

    /// Cuts the first `take` pages off a live extent and returns them.
    fn cut(&mut self, pick: usize, take: u32) -> Option<Extent> {
        if self.live.is_empty() {
            return None;
        }
        let i = pick % self.live.len();
        let e = self.live[i];
        let k = 1 + take % e.pages;
        if k == e.pages {
            self.live.swap_remove(i);
        } else {
            self.live[i] = ext(e.phys + u64::from(k), e.pages - k);
        }
        Some(ext(e.phys, k))
    }
}

fn run_ops(data_start: u64, data_pages: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut a = Allocator::new(data_start, data_pages);
    let mut m = Model {
        start: data_start,
        pages: vec![Page::Free; data_pages as usize],
        live: Vec::new(),
        deferred: Vec::new(),
        gate: FreeGate::default(),
        durable_seq: 0,
    };
    for op in ops {
        match *op {
            Op::Alloc { pages, max } => {
                let free = m.count(Page::Free);
                let before: Vec<(u64, u64)> = runs(&a);
                match a.alloc(pages, max) {
                    Ok(got) => {
                        prop_assert!(pages <= free, "{pages} allocated from {free} free");
                        let total: u64 = got.iter().map(|e| u64::from(e.pages)).sum();
                        prop_assert_eq!(total, pages);
                        prop_assert!(got.windows(2).all(|w| w[0].end() <= w[1].phys));
                        for e in &got {
                            prop_assert!(e.pages >= 1 && e.pages <= max, "{:?} max {}", e, max);
                            prop_assert!(
                                e.phys >= data_start && e.end() <= data_start + data_pages
                            );
                            for page in e.phys..e.end() {
                                let st = m.pages[(page - data_start) as usize];
                                prop_assert_eq!(
                                    st,
                                    Page::Free,
                                    "page {} handed out while {:?}",
                                    page,
                                    st
                                );
                            }
                            m.set(*e, Page::Free, Page::Used);
                            m.live.push(*e);
                        }
                    }
                    Err(StoreError::NoSpace(_)) => {
                        prop_assert!(pages > free, "NoSpace for {pages} with {free} free");
                        prop_assert_eq!(runs(&a), before);
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("unexpected {e}"))),
                }
            }
            Op::Release { pick, take } => {
                if let Some(e) = m.cut(pick, take) {
                    a.release_now(e);
                    m.set(e, Page::Used, Page::Free);
                }
            }
            Op::Defer {
                pick,
                take,
                seq_step,
                io_step,
            } => {
                if let Some(e) = m.cut(pick, take) {
                    m.gate.batch_seq += seq_step;
                    m.gate.io_mark += io_step;
                    a.defer_free(e, m.gate);
                    m.set(e, Page::Used, Page::Deferred);
                    m.deferred.push((e, m.gate));
                }
            }
            Op::Advance { seq_step, io_off } => {
                m.durable_seq += seq_step;
                let oldest = match io_off {
                    Some(off) => (m.gate.io_mark + off).saturating_sub(4),
                    None => u64::MAX,
                };
                let released = a.advance(m.durable_seq, oldest);
                // The model releases every passed gate, wherever it sits in the list.
                let mut model_released = 0;
                let mut keep = Vec::new();
                for (e, g) in std::mem::take(&mut m.deferred) {
                    if m.durable_seq >= g.batch_seq && oldest > g.io_mark {
                        m.set(e, Page::Deferred, Page::Free);
                        model_released += u64::from(e.pages);
                    } else {
                        keep.push((e, g));
                    }
                }
                m.deferred = keep;
                prop_assert_eq!(released, model_released);
            }
        }
        prop_assert_eq!(a.free_pages(), m.count(Page::Free));
        prop_assert_eq!(a.deferred_pages(), m.count(Page::Deferred));
        prop_assert_eq!(a.used_pages(), m.count(Page::Used));
        prop_assert_eq!(
            a.free_pages() + a.deferred_pages() + a.used_pages(),
            data_pages
        );
        // The free map holds exactly the model's free pages, as maximal runs.
        let mut free_now = vec![false; data_pages as usize];
        let mut prev_end = None;
        for (s, l) in a.free_map().iter() {
            prop_assert!(
                prev_end.is_none_or(|pe| pe < s),
                "runs not coalesced at {}",
                s
            );
            prev_end = Some(s + l);
            for page in s..s + l {
                free_now[(page - data_start) as usize] = true;
            }
        }
        for (i, &f) in free_now.iter().enumerate() {
            prop_assert_eq!(
                f,
                m.pages[i] == Page::Free,
                "page {}",
                data_start + i as u64
            );
        }
        if let Err(e) = a.check(m.live.iter().copied()) {
            return Err(TestCaseError::fail(format!("check: {e}")));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn allocator_matches_a_page_model(
        data_start in 0u64..1000,
        data_pages in 1u64..200,
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        run_ops(data_start, data_pages, &ops)?;
    }
}
