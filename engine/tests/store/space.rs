//! Space: freed pages come back whole and at once; metadata that would outgrow a checkpoint
//! slot is refused, not fatal.

use crate::common::*;

#[test]
fn space_of_removed_fragmented_objects_comes_back_whole() {
    // Two objects appended a page at a time, alternately, until the store is full: each
    // is thousands of one-page extents, far more than a turn releases (frees are spread
    // over turns). After removing both, the space must all be usable again at once: the
    // writes right after the remove are planned before most frees were released.
    for mode in MODES {
        let mut s = fresh_with_coll(mode, sim(32 << 11, true, 9)); // 32 MiB
        let page = 4096;
        let mut pages = [0u64; 2];
        'fill: loop {
            for (o, n) in pages.iter_mut().enumerate() {
                let mut t = txn();
                t.write(
                    1,
                    vec![b'a' + o as u8],
                    *n * page,
                    pattern(*n as u8, page as usize),
                );
                match s.submit_sync(t) {
                    Ok(()) => *n += 1,
                    Err(StoreError::NoSpace(_)) => break 'fill,
                    Err(e) => panic!("{mode}: {e}"),
                }
            }
        }
        let total = pages[0] + pages[1];
        assert!(total > 1000, "{mode}: only {total} pages fit");
        let mut t = txn();
        t.remove(1, b"a".to_vec());
        t.remove(1, b"b".to_vec());
        s.submit_sync(t).unwrap();
        let chunk = 64 * page;
        let big = (total - 8) / 64 * chunk;
        for off in (0..big).step_by(chunk as usize) {
            let mut t = txn();
            t.write(1, b"big".to_vec(), off, pattern(off as u8, chunk as usize));
            s.submit_sync(t).unwrap_or_else(|e| {
                panic!("{mode}: at {off} of {big} bytes into {total} freed pages: {e}")
            });
        }
        for off in (0..big).step_by(chunk as usize) {
            let got = s.read(1, b"big", off, chunk as usize).unwrap();
            assert!(
                got == pattern(off as u8, chunk as usize),
                "{mode}: at {off}"
            );
        }
        let report = s.fsck();
        assert!(report.is_clean(), "{mode}: {:?}", report.errors);
    }
}

#[test]
fn space_freed_by_an_acknowledged_remove_is_reusable_at_once() {
    for mode in MODES {
        let mut s = fresh_with_coll(mode, sim(16 << 11, true, 7)); // 16 MiB
        let chunk = 256 << 10;
        let name = |i: usize| format!("o{i}").into_bytes();
        let mut n = 0;
        loop {
            let mut t = txn();
            t.write(1, name(n), 0, pattern(n as u8, chunk));
            match s.submit_sync(t) {
                Ok(()) => n += 1,
                Err(StoreError::NoSpace(_)) => break,
                Err(e) => panic!("{mode}: {e}"),
            }
        }
        assert!(n >= 8, "{mode}: only {n} objects fit");
        let mut t = txn();
        for i in 0..n {
            t.remove(1, name(i));
        }
        s.submit_sync(t).unwrap();
        // The next transaction is planned before the turn that would release the pages
        // those removes freed: it must still find them.
        for i in 0..n {
            let mut t = txn();
            t.write(1, name(i), 0, pattern(i as u8 + 1, chunk));
            s.submit_sync(t)
                .unwrap_or_else(|e| panic!("{mode}: rewrite {i} of {n}: {e}"));
        }
        assert_eq!(
            s.read(1, &name(n - 1), 0, chunk).unwrap(),
            pattern(n as u8, chunk)
        );
        let report = s.fsck();
        assert!(report.is_clean(), "{mode}: {:?}", report.errors);
    }
}

#[test]
fn metadata_past_the_checkpoint_slot_is_refused_not_fatal() {
    let dev = SimDevice::new(sim(16 << 11, true, 14)).unwrap();
    let mut opts = MkfsOptions::new(JournalMode::MetadataOnly);
    opts.checkpoint_bytes = 64 << 10; // 60 KiB of metadata at most
    Store::mkfs(&dev, &opts).unwrap();
    let mut s = Store::open(dev, small()).unwrap();
    let mut t = txn();
    t.mkcoll(1).touch(1, b"o".to_vec());
    s.submit_sync(t).unwrap();
    let mut refused = None;
    for i in 0..200u32 {
        let mut t = txn();
        t.omap_set(
            1,
            b"o".to_vec(),
            vec![(i.to_le_bytes().to_vec(), vec![1; 1000])],
        );
        if let Err(e) = s.submit_sync(t) {
            refused = Some((i, e));
            break;
        }
    }
    let (i, e) = refused.expect("metadata growth is bounded");
    assert!(matches!(e, StoreError::NoSpace(_)), "{e}");
    assert!(i > 10, "refused too early, at {i}");
    // The store still works, checkpoints, and keeps everything it acknowledged.
    s.request_checkpoint();
    s.drain().unwrap();
    let mut t = txn();
    t.write(1, b"o".to_vec(), 0, vec![3; 10]);
    s.submit_sync(t).unwrap();
    let dev = s.device().clone();
    s.close().unwrap();
    let mut s = Store::open(dev, small()).unwrap();
    assert_eq!(s.stat(1, b"o").unwrap().omap_keys, u64::from(i));
}

/// The same bound with many transactions in flight at once: each is checked against the
/// applied metadata *and* what the transactions planned before it will add, so together
/// they cannot outgrow the slot (which would fail the next checkpoint, and the shard).
#[test]
fn metadata_queued_at_once_past_the_checkpoint_slot_is_refused_not_fatal() {
    for mode in MODES {
        let dev = SimDevice::new(sim(16 << 11, true, 15)).unwrap();
        let mut opts = MkfsOptions::new(mode);
        opts.checkpoint_bytes = 64 << 10; // 60 KiB of metadata at most
        Store::mkfs(&dev, &opts).unwrap();
        let mut s = Store::open(dev, small()).unwrap();
        let mut t = txn();
        t.mkcoll(1);
        s.submit_sync(t).unwrap();
        // 120 transactions of about 1 KiB of metadata each, on distinct objects (no lock
        // orders them), queued before any is planned: about twice what the slot holds.
        let name = |i: u32| format!("o{i}").into_bytes();
        let ids: Vec<_> = (0..120u32)
            .map(|i| {
                let mut t = txn();
                t.touch(1, name(i))
                    .omap_set(1, name(i), vec![(b"k".to_vec(), vec![1; 1000])]);
                s.queue(t).unwrap()
            })
            .collect();
        let mut results = std::collections::HashMap::new();
        while results.len() < ids.len() {
            s.poll();
            s.take_completions(|id, r| {
                results.insert(id, r);
            });
        }
        let accepted: Vec<u32> = (0..120u32)
            .filter(|&i| match &results[&ids[i as usize]] {
                Ok(()) => true,
                Err(StoreError::NoSpace(_)) => false,
                Err(e) => panic!("{mode:?}: transaction {i}: {e}"),
            })
            .collect();
        assert!(
            accepted.len() > 20 && accepted.len() < 120,
            "{mode:?}: {} of 120 accepted",
            accepted.len()
        );
        // The store still works and checkpoints, and keeps everything it acknowledged.
        s.request_checkpoint();
        s.drain().unwrap();
        let mut t = txn();
        t.write(1, name(accepted[0]), 0, vec![3; 10]);
        s.submit_sync(t).unwrap();
        let dev = s.device().clone();
        s.close().unwrap();
        let mut s = Store::open(dev, small()).unwrap();
        assert_eq!(s.list_objects(1).unwrap().len(), accepted.len(), "{mode:?}");
        for &i in &accepted {
            assert_eq!(s.stat(1, &name(i)).unwrap().omap_keys, 1, "{mode:?}");
        }
    }
}
