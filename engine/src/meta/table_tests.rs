//! Tests of the metadata table (table.rs): deltas on missing things, frees, the running
//! size total, refused deltas, and queries.

use super::*;

fn create(coll: CollId, name: &str) -> Delta {
    Delta::Create {
        coll,
        name: name.into(),
    }
}

fn map(coll: CollId, name: &str, lpage: u64, phys: u64, pages: u32) -> Delta {
    Delta::Map {
        coll,
        name: name.into(),
        lpage,
        phys,
        pages,
    }
}

fn exact(t: &MetaTable) {
    assert_eq!(
        t.approx_bytes(),
        MetaTable::from_parts(t.colls.clone(), t.sums.clone()).approx_bytes()
    );
}

#[test]
fn map_on_a_missing_object_is_corrupt() {
    let mut t = MetaTable::new();
    let mut freed = Vec::new();
    let err = t.apply(&map(1, "a", 0, 10, 1), &mut freed).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    t.apply(&Delta::MkColl { coll: 1 }, &mut freed).unwrap();
    let err = t.apply(&map(1, "a", 0, 10, 1), &mut freed).unwrap_err();
    let StoreError::Corrupt(msg) = err else {
        panic!("not Corrupt: {err}")
    };
    assert!(msg.contains("Map") && msg.contains("1/a"), "{msg}");
    assert_eq!(t, {
        let mut u = MetaTable::new();
        u.apply(&Delta::MkColl { coll: 1 }, &mut freed).unwrap();
        u
    });
}

#[test]
fn create_in_a_missing_collection_is_corrupt() {
    let mut t = MetaTable::new();
    assert!(matches!(
        t.apply(&create(3, "x"), &mut Vec::new()),
        Err(StoreError::Corrupt(_))
    ));
    assert_eq!(t, MetaTable::new());
}

#[test]
fn removals_of_missing_things_are_no_ops() {
    let mut t = MetaTable::new();
    let mut freed = Vec::new();
    for d in [
        Delta::RmColl { coll: 1 },
        Delta::Remove {
            coll: 1,
            name: b"a".to_vec(),
        },
        Delta::RmAttr {
            coll: 1,
            name: b"a".to_vec(),
            key: b"k".to_vec(),
        },
        Delta::OmapRm {
            coll: 1,
            name: b"a".to_vec(),
            key: b"k".to_vec(),
        },
    ] {
        t.apply(&d, &mut freed).unwrap();
    }
    assert_eq!(t, MetaTable::new());
    assert!(freed.is_empty());
}

/// One delta of each variant on `1/o`, with whether it is refused when `1/o` is missing.
fn on_missing_object() -> Vec<(Delta, bool)> {
    let (n, k) = (|| b"o".to_vec(), || b"k".to_vec());
    vec![
        (create(1, "o"), false),
        (Delta::Remove { coll: 1, name: n() }, false),
        (
            Delta::SetSize {
                coll: 1,
                name: n(),
                size: 1,
            },
            true,
        ),
        (map(1, "o", 0, 10, 1), true),
        (
            Delta::Unmap {
                coll: 1,
                name: n(),
                lpage: 0,
                pages: 1,
            },
            true,
        ),
        (
            Delta::SetAttr {
                coll: 1,
                name: n(),
                key: k(),
                value: k(),
            },
            true,
        ),
        (
            Delta::RmAttr {
                coll: 1,
                name: n(),
                key: k(),
            },
            false,
        ),
        (
            Delta::OmapSet {
                coll: 1,
                name: n(),
                key: k(),
                value: k(),
            },
            true,
        ),
        (
            Delta::OmapRm {
                coll: 1,
                name: n(),
                key: k(),
            },
            false,
        ),
    ]
}

#[test]
fn deltas_on_a_missing_object_follow_the_table() {
    let mut with_coll = MetaTable::new();
    with_coll
        .apply(&Delta::MkColl { coll: 1 }, &mut Vec::new())
        .unwrap();
    for (d, refused) in on_missing_object() {
        let mut t = with_coll.clone();
        let r = t.apply(&d, &mut Vec::new());
        assert_eq!(r.is_err(), refused, "{d:?}: {r:?}");
        if refused {
            assert!(matches!(r, Err(StoreError::Corrupt(_))));
            assert_eq!(t, with_coll);
        }
        // Without the collection, only Create changes its answer (refused).
        let mut t = MetaTable::new();
        let r = t.apply(&d, &mut Vec::new());
        let refused = refused || matches!(d, Delta::Create { .. });
        assert_eq!(r.is_err(), refused, "{d:?} without collection: {r:?}");
        assert_eq!(t, MetaTable::new());
    }
}

#[test]
fn mkcoll_and_create_keep_what_exists() {
    let mut t = MetaTable::new();
    let mut freed = Vec::new();
    for d in [
        Delta::MkColl { coll: 1 },
        create(1, "o"),
        map(1, "o", 0, 10, 2),
        Delta::SetAttr {
            coll: 1,
            name: b"o".to_vec(),
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        },
    ] {
        t.apply(&d, &mut freed).unwrap();
    }
    let before = t.clone();
    t.apply(&Delta::MkColl { coll: 1 }, &mut freed).unwrap();
    t.apply(&create(1, "o"), &mut freed).unwrap();
    assert_eq!(t, before);
    assert!(freed.is_empty());
    // SetSize changes the size only.
    t.apply(
        &Delta::SetSize {
            coll: 1,
            name: b"o".to_vec(),
            size: 0,
        },
        &mut freed,
    )
    .unwrap();
    let o = t.object(1, b"o").unwrap();
    assert_eq!((o.size, o.mapped_pages(), o.attrs.len()), (0, 2, 1));
    assert!(freed.is_empty());
}

#[test]
fn rmcoll_frees_every_extent_of_every_object() {
    let mut t = MetaTable::new();
    let mut freed = Vec::new();
    for d in [
        Delta::MkColl { coll: 7 },
        create(7, "a"),
        create(7, "b"),
        map(7, "a", 0, 100, 2),
        map(7, "a", 5, 200, 1),
        map(7, "b", 0, 300, 3),
    ] {
        t.apply(&d, &mut freed).unwrap();
    }
    assert!(freed.is_empty());
    assert_eq!(t.object_count(), 2);
    assert_eq!(t.all_extents().count(), 3);
    exact(&t);
    t.apply(&Delta::RmColl { coll: 7 }, &mut freed).unwrap();
    assert_eq!(
        freed,
        vec![
            Extent {
                phys: 100,
                pages: 2
            },
            Extent {
                phys: 200,
                pages: 1
            },
            Extent {
                phys: 300,
                pages: 3
            }
        ]
    );
    assert_eq!(t, MetaTable::new());
    assert_eq!(t.approx_bytes(), TABLE_HEADER_BYTES);
}

#[test]
fn running_total_follows_every_kind_of_change() {
    let mut t = MetaTable::new();
    let mut freed = Vec::new();
    let o = || b"o".to_vec();
    let set_attr = |key: &str, value: &str| Delta::SetAttr {
        coll: 1,
        name: o(),
        key: key.into(),
        value: value.into(),
    };
    let steps = [
        Delta::MkColl { coll: 1 },
        create(1, "o"),
        set_attr("a", "value"),
        set_attr("a", "a longer value"), // replaces
        set_attr("a", ""),
        Delta::OmapSet {
            coll: 1,
            name: o(),
            key: b"k".to_vec(),
            value: Vec::new(),
        },
        map(1, "o", 0, 10, 4),
        map(1, "o", 1, 50, 1), // splits into three
        Delta::Unmap {
            coll: 1,
            name: b"o".to_vec(),
            lpage: 0,
            pages: 2,
        },
        Delta::RmAttr {
            coll: 1,
            name: o(),
            key: b"a".to_vec(),
        },
        Delta::OmapRm {
            coll: 1,
            name: o(),
            key: b"k".to_vec(),
        },
        Delta::SetSize {
            coll: 1,
            name: b"o".to_vec(),
            size: 12345,
        },
        Delta::Remove {
            coll: 1,
            name: b"o".to_vec(),
        },
    ];
    for d in &steps {
        t.apply(d, &mut freed).unwrap();
        exact(&t);
    }
}

#[test]
fn invalid_deltas_are_refused_and_change_nothing() {
    let mut t = MetaTable::new();
    let mut freed = Vec::new();
    t.apply(&Delta::MkColl { coll: 1 }, &mut freed).unwrap();
    t.apply(&create(1, "o"), &mut freed).unwrap();
    let before = t.clone();
    let bad = [
        map(1, "o", 0, 10, 0),
        map(1, "o", MAX_OBJECT_PAGES, 10, 1),
        map(1, "o", u64::MAX, 10, 1),
        map(1, "o", 0, u64::MAX, 1),
        Delta::Create {
            coll: 1,
            name: vec![b'n'; MAX_NAME_BYTES + 1],
        },
        Delta::SetAttr {
            coll: 1,
            name: b"o".to_vec(),
            key: vec![0; MAX_KEY_BYTES + 1],
            value: Vec::new(),
        },
        Delta::OmapSet {
            coll: 1,
            name: b"o".to_vec(),
            key: Vec::new(),
            value: vec![0; MAX_VALUE_BYTES + 1],
        },
    ];
    for d in &bad {
        assert!(
            matches!(t.apply(d, &mut freed), Err(StoreError::Corrupt(_))),
            "{d:?} accepted"
        );
    }
    assert_eq!(t, before);
    assert!(freed.is_empty());
    // The last page an object may map is fine.
    t.apply(&map(1, "o", MAX_OBJECT_PAGES - 1, 10, 1), &mut freed)
        .unwrap();
}

#[test]
fn queries() {
    let mut t = MetaTable::new();
    let mut freed = Vec::new();
    for d in [
        Delta::MkColl { coll: 2 },
        Delta::MkColl { coll: 1 },
        create(1, "b"),
        create(1, "a"),
        map(1, "b", 3, 30, 2),
    ] {
        t.apply(&d, &mut freed).unwrap();
    }
    assert!(t.has_coll(2) && !t.has_coll(3));
    assert_eq!(t.colls().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(t.coll_count(), 2);
    let names: Vec<_> = t.objects(1).unwrap().map(|(n, _)| n.to_vec()).collect();
    assert_eq!(names, vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(t.objects(2).unwrap().count(), 0);
    assert!(t.objects(3).is_none());
    assert_eq!(t.object(1, b"b").unwrap().phys_of(4), Some(31));
    assert!(t.object(1, b"c").is_none());
    assert_eq!(
        t.all_extents().collect::<Vec<_>>(),
        vec![(1, &b"b"[..], 3, Extent { phys: 30, pages: 2 })]
    );
}
