//! Property tests of the committed metadata: extent maps against a page-by-page model,
//! idempotence of every delta, and the checkpoint and delta encodings.

use keel_engine::codec::Reader;
use keel_engine::meta::{decode_table, encode_table, Delta, MetaTable, Object};
use keel_engine::{CollId, Extent, StoreError};
use proptest::collection::vec;
use proptest::prelude::*;

// ---- Object against a page model -------------------------------------------------------

/// Logical pages the model covers; every op stays inside.
const MODEL_PAGES: u64 = 128;

#[derive(Clone, Debug)]
enum ObjOp {
    /// Map `pages` at `lpage`; `phys` None takes fresh device pages (with a gap after the
    /// previous allocation when `gap`), Some reuses arbitrary ones.
    Map {
        lpage: u64,
        pages: u32,
        phys: Option<u64>,
        gap: bool,
    },
    /// Map right after the previous map, from the next fresh device page (merges).
    Append { pages: u32 },
    /// Unmap; `pages` may be u64::MAX (a truncate).
    Unmap { lpage: u64, pages: u64 },
}

fn obj_op(reuse: bool) -> impl Strategy<Value = ObjOp> {
    let phys = if reuse {
        prop_oneof![Just(None), (0u64..200).prop_map(Some)].boxed()
    } else {
        Just(None).boxed()
    };
    prop_oneof![
        4 => (0u64..64, 1u32..16, phys, any::<bool>())
            .prop_map(|(lpage, pages, phys, gap)| ObjOp::Map { lpage, pages, phys, gap }),
        2 => (1u32..8).prop_map(|pages| ObjOp::Append { pages }),
        3 => (0u64..80, prop_oneof![0u64..40, Just(u64::MAX)])
            .prop_map(|(lpage, pages)| ObjOp::Unmap { lpage, pages }),
    ]
}

fn pages_of(extents: &[Extent]) -> Vec<u64> {
    extents.iter().flat_map(|e| e.phys..e.end()).collect()
}

/// Runs `ops` on an Object and on a page model, checking after each op that the map, the
/// segments and the freed pages agree. Returns (pages ever mapped, pages freed, object).
fn run_model(ops: &[ObjOp]) -> (u64, u64, Object) {
    let mut obj = Object::default();
    let mut model: Vec<Option<u64>> = vec![None; MODEL_PAGES as usize];
    let mut next_phys = 1_000u64;
    let mut last_end = 0u64;
    let (mut ever, mut freed_total) = (0u64, 0u64);
    for op in ops {
        let mut freed = Vec::new();
        let mut want_freed = Vec::new();
        match *op {
            ObjOp::Map { .. } | ObjOp::Append { .. } => {
                let (lpage, pages, phys) = match *op {
                    ObjOp::Map {
                        lpage,
                        pages,
                        phys,
                        gap,
                    } => {
                        let p = phys.unwrap_or_else(|| {
                            next_phys += u64::from(gap);
                            let p = next_phys;
                            next_phys += u64::from(pages);
                            p
                        });
                        (lpage, pages, p)
                    }
                    ObjOp::Append { pages } => {
                        let p = next_phys;
                        next_phys += u64::from(pages);
                        (last_end.min(MODEL_PAGES - 16), pages, p)
                    }
                    ObjOp::Unmap { .. } => unreachable!(),
                };
                let new = phys..phys + u64::from(pages);
                for i in 0..u64::from(pages) {
                    let slot = &mut model[(lpage + i) as usize];
                    if let Some(old) = slot.take() {
                        if !new.contains(&old) {
                            want_freed.push(old);
                        }
                    }
                    *slot = Some(phys + i);
                }
                obj.map(lpage, Extent { phys, pages }, &mut freed);
                ever += u64::from(pages);
                last_end = lpage + u64::from(pages);
            }
            ObjOp::Unmap { lpage, pages } => {
                let end = lpage.saturating_add(pages).min(MODEL_PAGES);
                for l in lpage..end {
                    want_freed.extend(model[l as usize].take());
                }
                obj.unmap(lpage, pages, &mut freed);
            }
        }
        assert_eq!(pages_of(&freed), want_freed, "freed pages after {op:?}");
        assert!(freed.iter().all(|e| e.pages >= 1));
        freed_total += freed.iter().map(|e| u64::from(e.pages)).sum::<u64>();
        check_object(&obj, &model, op);
    }
    (ever, freed_total, obj)
}

fn check_object(obj: &Object, model: &[Option<u64>], op: &ObjOp) {
    // Invariants: no empty extent, no overlap, no mergeable neighbours.
    let mut prev: Option<(u64, Extent)> = None;
    for (lpage, e) in obj.extents_iter() {
        assert!(e.pages >= 1, "empty extent after {op:?}");
        if let Some((pl, pe)) = prev {
            let pend = pl + u64::from(pe.pages);
            assert!(pend <= lpage, "overlap after {op:?}: {:?}", obj.extents());
            assert!(
                !(pend == lpage && pe.end() == e.phys),
                "unmerged neighbours after {op:?}: {:?}",
                obj.extents()
            );
        }
        prev = Some((lpage, e));
    }
    // The cached end: the page after the last mapped page of the model.
    let model_end = model
        .iter()
        .rposition(Option::is_some)
        .map_or(0, |i| i as u64 + 1);
    assert_eq!(obj.mapped_end(), model_end, "mapped_end after {op:?}");
    // The map, page by page, through segments and phys_of.
    let mut pages = Vec::new();
    let mut at = 0;
    for s in obj.segments(0, MODEL_PAGES) {
        assert_eq!(s.lpage, at, "segments leave a gap after {op:?}");
        assert!(s.pages >= 1);
        for i in 0..s.pages {
            pages.push(s.phys.map(|p| p + i));
        }
        at += s.pages;
    }
    assert_eq!(pages, model, "map after {op:?}");
    for (l, want) in model.iter().enumerate() {
        assert_eq!(obj.phys_of(l as u64), *want);
    }
    let mapped = model.iter().filter(|p| p.is_some()).count() as u64;
    assert_eq!(obj.mapped_pages(), mapped);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn object_matches_page_model(ops in vec(obj_op(false), 0..60)) {
        let (ever, freed, obj) = run_model(&ops);
        prop_assert_eq!(freed + obj.mapped_pages(), ever);
    }

    #[test]
    fn object_matches_page_model_with_reused_device_pages(ops in vec(obj_op(true), 0..60)) {
        run_model(&ops);
    }
}

// ---- Random deltas and tables ----------------------------------------------------------

fn small_bytes(alphabet: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    proptest::sample::select(alphabet).prop_map(|s| s.as_bytes().to_vec())
}

/// Deltas over a small universe, so that they often hit existing things.
fn small_delta() -> impl Strategy<Value = Delta> {
    delta_from(
        0u64..3,
        small_bytes(&["a", "b", "c"]).boxed(),
        small_bytes(&["k1", "k2", "k3"]).boxed(),
        vec(any::<u8>(), 0..24).boxed(),
    )
}

/// Deltas with wider names, keys and values (for the encodings).
fn wide_delta() -> impl Strategy<Value = Delta> {
    delta_from(
        prop_oneof![0u64..4, any::<u64>()],
        vec(any::<u8>(), 0..12).boxed(),
        vec(any::<u8>(), 0..12).boxed(),
        vec(any::<u8>(), 0..200).boxed(),
    )
}

fn delta_from(
    coll: impl Strategy<Value = CollId> + Clone + 'static,
    name: BoxedStrategy<Vec<u8>>,
    key: BoxedStrategy<Vec<u8>>,
    value: BoxedStrategy<Vec<u8>>,
) -> impl Strategy<Value = Delta> {
    let c = coll.clone();
    let cn = (coll, name);
    prop_oneof![
        c.clone().prop_map(|coll| Delta::MkColl { coll }),
        c.prop_map(|coll| Delta::RmColl { coll }),
        cn.clone()
            .prop_map(|(coll, name)| Delta::Create { coll, name }),
        cn.clone()
            .prop_map(|(coll, name)| Delta::Remove { coll, name }),
        (cn.clone(), 0u64..1 << 20).prop_map(|((coll, name), size)| Delta::SetSize {
            coll,
            name,
            size
        }),
        (cn.clone(), 0u64..40, 0u64..2_000, 1u32..10).prop_map(
            |((coll, name), lpage, phys, pages)| Delta::Map {
                coll,
                name,
                lpage,
                phys,
                pages
            }
        ),
        (cn.clone(), 0u64..40, prop_oneof![0u64..20, Just(u64::MAX)]).prop_map(
            |((coll, name), lpage, pages)| Delta::Unmap {
                coll,
                name,
                lpage,
                pages
            }
        ),
        (cn.clone(), key.clone(), value.clone()).prop_map(|((coll, name), key, value)| {
            Delta::SetAttr {
                coll,
                name,
                key,
                value,
            }
        }),
        (cn.clone(), key.clone()).prop_map(|((coll, name), key)| Delta::RmAttr { coll, name, key }),
        (cn.clone(), key.clone(), value).prop_map(|((coll, name), key, value)| {
            Delta::OmapSet {
                coll,
                name,
                key,
                value,
            }
        }),
        (cn, key).prop_map(|((coll, name), key)| Delta::OmapRm { coll, name, key }),
        (0u64..2_000, vec(any::<u32>(), 1..10)).prop_map(|(phys, sums)| Delta::Csum { phys, sums }),
        (0u64..2_000, 1u32..10).prop_map(|(phys, pages)| Delta::OpenIntent { phys, pages }),
        (0u64..2_000, 1u32..10).prop_map(|(phys, pages)| Delta::CloseIntent { phys, pages }),
    ]
}

/// A table built by applying `deltas` (refused ones skipped) after creating a few things.
fn table_from(deltas: &[Delta]) -> MetaTable {
    let mut t = MetaTable::new();
    let mut freed = Vec::new();
    let seed = [
        Delta::MkColl { coll: 0 },
        Delta::MkColl { coll: 1 },
        Delta::Create {
            coll: 0,
            name: b"a".to_vec(),
        },
        Delta::Create {
            coll: 0,
            name: b"b".to_vec(),
        },
        Delta::Create {
            coll: 1,
            name: b"a".to_vec(),
        },
    ];
    for d in seed.iter().chain(deltas) {
        let _ = t.apply(d, &mut freed);
    }
    t
}

/// Applying `d` twice equals applying it once, the second time frees nothing, and a refused
/// delta changes nothing.
fn check_idempotent(t: &MetaTable, d: &Delta) -> Result<(), TestCaseError> {
    let mut once = t.clone();
    let mut freed = Vec::new();
    match once.apply(d, &mut freed) {
        Ok(()) => {
            let mut twice = once.clone();
            let mut freed2 = Vec::new();
            prop_assert!(
                twice.apply(d, &mut freed2).is_ok(),
                "{:?} refused the second time",
                d
            );
            prop_assert_eq!(&twice, &once, "{:?} is not idempotent", d);
            prop_assert!(
                freed2.is_empty(),
                "{:?} freed {:?} the second time",
                d,
                freed2
            );
        }
        Err(e) => {
            prop_assert!(matches!(e, StoreError::Corrupt(_)), "{:?}: {}", d, e);
            prop_assert_eq!(&once, t, "refused {:?} changed the table", d);
            prop_assert!(freed.is_empty());
        }
    }
    prop_assert_eq!(once.approx_bytes(), encode_table(&once).len() as u64);
    Ok(())
}

/// One delta of each variant, in declaration order.
fn one_of_each() -> impl Strategy<Value = Vec<Delta>> {
    let kinds: Vec<BoxedStrategy<Delta>> = (0..14)
        .map(|k| {
            small_delta()
                .prop_filter("variant", move |d| variant(d) == k)
                .boxed()
        })
        .collect();
    kinds
}

fn variant(d: &Delta) -> usize {
    match d {
        Delta::MkColl { .. } => 0,
        Delta::RmColl { .. } => 1,
        Delta::Create { .. } => 2,
        Delta::Remove { .. } => 3,
        Delta::SetSize { .. } => 4,
        Delta::Map { .. } => 5,
        Delta::Unmap { .. } => 6,
        Delta::SetAttr { .. } => 7,
        Delta::RmAttr { .. } => 8,
        Delta::OmapSet { .. } => 9,
        Delta::OmapRm { .. } => 10,
        Delta::Csum { .. } => 11,
        Delta::OpenIntent { .. } => 12,
        Delta::CloseIntent { .. } => 13,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every variant, on a random table.
    #[test]
    fn every_delta_is_idempotent(
        setup in vec(small_delta(), 0..60),
        deltas in one_of_each(),
    ) {
        let t = table_from(&setup);
        for (k, d) in deltas.iter().enumerate() {
            prop_assert_eq!(variant(d), k);
            check_idempotent(&t, d)?;
        }
    }

    #[test]
    fn checkpoint_round_trips(setup in vec(wide_delta(), 0..80), small in vec(small_delta(), 0..80)) {
        let mut all = small;
        all.extend(setup);
        let t = table_from(&all);
        let bytes = encode_table(&t);
        prop_assert_eq!(t.approx_bytes(), bytes.len() as u64);
        let est = t.approx_bytes() as f64;
        let real = bytes.len() as f64;
        prop_assert!(est <= 2.0 * real && real <= 2.0 * est);
        let back = decode_table(&bytes).unwrap();
        prop_assert_eq!(&back, &t);
        prop_assert_eq!(back.approx_bytes(), t.approx_bytes());
        // Every truncation is refused.
        for cut in 0..bytes.len() {
            prop_assert!(decode_table(&bytes[..cut]).is_err(), "accepted a cut at {}", cut);
        }
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(decode_table(&longer).is_err());
    }

    /// Replay: the checkpointed table plus the journal's deltas is the live table.
    #[test]
    fn replay_from_a_checkpoint_equals_live_state(
        before in vec(small_delta(), 0..60),
        after in vec(small_delta(), 0..60),
    ) {
        let mut live = table_from(&before);
        let mut replayed = decode_table(&encode_table(&live)).unwrap();
        let (mut f1, mut f2) = (Vec::new(), Vec::new());
        for d in &after {
            let r1 = live.apply(d, &mut f1).is_ok();
            let r2 = replayed.apply(d, &mut f2).is_ok();
            prop_assert_eq!(r1, r2);
        }
        prop_assert_eq!(&replayed, &live);
        prop_assert_eq!(f1, f2);
    }

    /// Any bytes: no panic, and an accepted payload is the canonical encoding of its table.
    #[test]
    fn checkpoint_decode_survives_any_bytes(
        body in vec(any::<u8>(), 0..512),
        versioned in any::<bool>(),
    ) {
        let mut bytes = if versioned { vec![1, 0, 0, 0] } else { Vec::new() };
        bytes.extend(body);
        if let Ok(t) = decode_table(&bytes) {
            prop_assert_eq!(encode_table(&t), bytes);
        }
    }

    /// Corrupted valid payloads: no panic, and acceptance only of canonical encodings.
    #[test]
    fn checkpoint_decode_survives_corruption(
        setup in vec(small_delta(), 0..60),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode_table(&table_from(&setup));
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        match decode_table(&bytes) {
            Ok(t) => prop_assert_eq!(encode_table(&t), bytes),
            Err(e) => prop_assert!(matches!(e, StoreError::Corrupt(_))),
        }
    }

    #[test]
    fn delta_encoding_round_trips(ds in vec(wide_delta(), 0..20)) {
        let mut bytes = Vec::new();
        for d in &ds {
            d.encode(&mut bytes);
        }
        let mut r = Reader::new(&bytes);
        for d in &ds {
            prop_assert_eq!(&Delta::decode(&mut r).unwrap(), d);
        }
        prop_assert!(r.is_empty());
    }

    #[test]
    fn delta_decode_survives_any_bytes(bytes in vec(any::<u8>(), 0..256)) {
        let mut r = Reader::new(&bytes);
        while !r.is_empty() {
            let before = r.remaining();
            if Delta::decode(&mut r).is_err() {
                break;
            }
            prop_assert!(r.remaining() < before);
        }
    }
}

// ---- Examples ---------------------------------------------------------------------------

#[test]
fn map_on_a_missing_object_is_corrupt() {
    let mut t = table_from(&[]);
    let before = t.clone();
    let map = |coll, name: &[u8]| Delta::Map {
        coll,
        name: name.to_vec(),
        lpage: 0,
        phys: 5,
        pages: 1,
    };
    for d in [map(0, b"zz"), map(9, b"a")] {
        let err = t.apply(&d, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        assert!(err.to_string().contains("Map"), "{err}");
    }
    assert_eq!(t, before);
}

#[test]
fn a_volume_write_and_truncate() {
    let deltas = [
        Delta::MkColl { coll: 4 },
        Delta::Create {
            coll: 4,
            name: b"vol".to_vec(),
        },
        Delta::Map {
            coll: 4,
            name: b"vol".to_vec(),
            lpage: 0,
            phys: 100,
            pages: 8,
        },
        Delta::SetSize {
            coll: 4,
            name: b"vol".to_vec(),
            size: 8 * 4096,
        },
        Delta::Map {
            coll: 4,
            name: b"vol".to_vec(),
            lpage: 2,
            phys: 300,
            pages: 2,
        },
        Delta::Unmap {
            coll: 4,
            name: b"vol".to_vec(),
            lpage: 6,
            pages: u64::MAX,
        },
    ];
    let mut once = MetaTable::new();
    let mut freed = Vec::new();
    for d in &deltas {
        once.apply(d, &mut freed).unwrap();
    }
    assert_eq!(
        freed,
        vec![
            Extent {
                phys: 102,
                pages: 2
            },
            Extent {
                phys: 106,
                pages: 2
            }
        ]
    );
    let obj = once.object(4, b"vol").unwrap();
    assert_eq!(
        obj.extents_iter().collect::<Vec<_>>(),
        vec![
            (
                0,
                Extent {
                    phys: 100,
                    pages: 2
                }
            ),
            (
                2,
                Extent {
                    phys: 300,
                    pages: 2
                }
            ),
            (
                4,
                Extent {
                    phys: 104,
                    pages: 2
                }
            ),
        ]
    );
    assert_eq!(once.approx_bytes(), encode_table(&once).len() as u64);
}
