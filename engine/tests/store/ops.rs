//! What operations do and what they refuse: every operation round-trips, bad input changes
//! nothing, open and mkfs refuse what they cannot use, commands fit the device.

use crate::common::*;

#[test]
fn every_operation_round_trips() {
    for mode in MODES {
        let mut s = fresh(mode, sim(64 << 11, true, 1)); // 64 MiB
        let mut t = txn();
        t.mkcoll(1).write(1, b"a".to_vec(), 0, pattern(1, 10_000));
        s.submit_sync(t).unwrap();
        assert_eq!(
            s.read(1, b"a", 0, 20_000).unwrap(),
            pattern(1, 10_000),
            "{mode}"
        );
        // Unaligned overwrite inside, and an append past a hole.
        let mut t = txn();
        t.write(1, b"a".to_vec(), 4000, vec![0xee; 300]);
        t.write(1, b"a".to_vec(), 30_000, vec![0xdd; 5]);
        s.submit_sync(t).unwrap();
        let mut want = pattern(1, 10_000);
        want[4000..4300].fill(0xee);
        want.resize(30_000, 0);
        want.extend_from_slice(&[0xdd; 5]);
        assert_eq!(s.read(1, b"a", 0, 40_000).unwrap(), want, "{mode}");
        assert_eq!(s.stat(1, b"a").unwrap().size, 30_005);
        // Attributes, omap.
        let mut t = txn();
        t.setattr(1, b"a".to_vec(), b"k".to_vec(), b"v".to_vec());
        t.omap_set(
            1,
            b"a".to_vec(),
            vec![
                (b"x".to_vec(), b"1".to_vec()),
                (b"y".to_vec(), b"2".to_vec()),
            ],
        );
        s.submit_sync(t).unwrap();
        assert_eq!(s.getattr(1, b"a", b"k").unwrap(), b"v");
        assert_eq!(s.omap_get(1, b"a", b"y").unwrap(), b"2");
        // Clone, clone_range, zero, truncate, rmattr, omap_rm.
        let mut t = txn();
        t.clone_object(1, b"a".to_vec(), b"b".to_vec());
        t.clone_range(1, b"a".to_vec(), b"c".to_vec(), 100, 5000, 7);
        s.submit_sync(t).unwrap();
        assert_eq!(s.read(1, b"b", 0, 40_000).unwrap(), want);
        assert_eq!(s.getattr(1, b"b", b"k").unwrap(), b"v");
        let mut c = vec![0u8; 7];
        c.extend_from_slice(&want[100..5100]);
        assert_eq!(s.read(1, b"c", 0, 10_000).unwrap(), c);
        let mut t = txn();
        t.zero(1, b"a".to_vec(), 1000, 9000);
        t.truncate(1, b"a".to_vec(), 20_000);
        t.rmattr(1, b"a".to_vec(), b"k".to_vec());
        t.omap_rm(1, b"a".to_vec(), vec![b"x".to_vec()]);
        s.submit_sync(t).unwrap();
        want[1000..10_000].fill(0);
        want.truncate(20_000);
        assert_eq!(s.read(1, b"a", 0, 40_000).unwrap(), want);
        assert!(matches!(
            s.getattr(1, b"a", b"k"),
            Err(StoreError::NoSuchAttr { .. })
        ));
        assert!(s.omap_get(1, b"a", b"x").is_err());
        // Truncate up reads zeroes; remove; rmcoll.
        let mut t = txn();
        t.truncate(1, b"a".to_vec(), 25_000);
        s.submit_sync(t).unwrap();
        want.resize(25_000, 0);
        assert_eq!(s.read(1, b"a", 0, 40_000).unwrap(), want);
        let mut t = txn();
        t.remove(1, b"a".to_vec())
            .remove(1, b"b".to_vec())
            .remove(1, b"c".to_vec());
        t.rmcoll(1);
        s.submit_sync(t).unwrap();
        assert!(s.list_collections().is_empty());
        let r = s.fsck();
        assert!(r.is_clean(), "{:?}", r.errors);
        s.close().unwrap();
    }
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    // 12 MiB: 4 MiB of journal, 2 MiB of checkpoint slots, about 6 MiB of data.
    let mut s = fresh(JournalMode::MetadataOnly, sim(12 << 11, true, 2));
    let mut t = txn();
    t.mkcoll(1).write(1, b"a".to_vec(), 0, vec![1; 100]);
    s.submit_sync(t).unwrap();
    let before = s.read(1, b"a", 0, 100).unwrap();

    // Unknown collection: the whole transaction, earlier ops included, changes nothing.
    let mut t = txn();
    t.write(1, b"a".to_vec(), 0, vec![2; 100])
        .write(7, b"z".to_vec(), 0, vec![3; 10]);
    assert!(matches!(
        s.submit_sync(t),
        Err(StoreError::NoSuchCollection(7))
    ));
    assert_eq!(s.read(1, b"a", 0, 100).unwrap(), before);
    // Name too long, offset overflow, empty transaction: refused at queue time.
    let mut t = txn();
    t.write(1, vec![b'n'; 256], 0, vec![1]);
    assert!(matches!(s.queue(t), Err(StoreError::TooLong { .. })));
    let mut t = txn();
    t.write(1, b"a".to_vec(), u64::MAX - 1, vec![1; 10]);
    assert!(matches!(s.queue(t), Err(StoreError::OutOfRange { .. })));
    assert!(s.queue(txn()).is_err());
    // Missing object, existing collection, read past end.
    let mut t = txn();
    t.truncate(1, b"nope".to_vec(), 5);
    assert!(matches!(s.submit_sync(t), Err(StoreError::NoSuchObject(_))));
    let mut t = txn();
    t.mkcoll(1);
    assert!(matches!(
        s.submit_sync(t),
        Err(StoreError::CollectionExists(1))
    ));
    let mut t = txn();
    t.rmcoll(1);
    assert!(matches!(
        s.submit_sync(t),
        Err(StoreError::CollectionNotEmpty(1))
    ));
    assert!(matches!(
        s.read(1, b"a", 101, 1),
        Err(StoreError::ReadPastEnd { .. })
    ));
    // Device full: a write larger than the free space fails whole, and space is not leaked.
    let free_before = s.fsck();
    let mut t = txn();
    for i in 0..8 {
        t.write(1, format!("big{i}").into_bytes(), 0, vec![5; 2 << 20]);
    }
    let r = s.submit_sync(t);
    assert!(matches!(r, Err(StoreError::NoSpace(_))), "{r:?}");
    assert_eq!(s.list_objects(1).unwrap(), vec![b"a".to_vec()]);
    let after = s.fsck();
    assert!(after.is_clean(), "{:?}", after.errors);
    assert_eq!(after.used_pages, free_before.used_pages);
    assert_eq!(s.read(1, b"a", 0, 100).unwrap(), before);
}

#[test]
fn open_refuses_an_unformatted_device() {
    let dev = SimDevice::new(sim(8 << 11, false, 0)).unwrap();
    assert!(matches!(
        Store::open(dev, small()),
        Err(StoreError::NotFormatted(_))
    ));
}

#[test]
fn mkfs_refuses_absurd_sizes_without_overflowing() {
    let dev = SimDevice::new(sim(8 << 11, false, 0)).unwrap();
    let mut opts = MkfsOptions::new(JournalMode::MetadataOnly);
    opts.journal_bytes = u64::MAX - 5;
    assert!(matches!(
        Store::mkfs(&dev, &opts),
        Err(StoreError::Config(_))
    ));
    let mut opts = MkfsOptions::new(JournalMode::Full);
    opts.checkpoint_bytes = u64::MAX / 2;
    assert!(matches!(
        Store::mkfs(&dev, &opts),
        Err(StoreError::Config(_))
    ));
}

#[test]
fn a_device_with_a_small_max_transfer_gets_commands_it_can_take() {
    // NVMe MDTS can be as small as one page: every chunk the engine issues (data, journal
    // batches, checkpoints, reads) must fit, whatever the configured buffer sizes.
    for mode in MODES {
        let mut c = sim(64 << 11, true, 41);
        c.max_transfer_bytes = 8192;
        let dev = SimDevice::new(c.clone()).unwrap();
        Store::mkfs(&dev, &MkfsOptions::new(mode)).unwrap();
        let mut s = Store::open(dev, small()).unwrap();
        let mut t = txn();
        t.mkcoll(1);
        t.write(1, b"big".to_vec(), 4096, pattern(3, 256 << 10));
        for i in 0..40u8 {
            t.omap_set(1, b"big".to_vec(), vec![(vec![i; 100], vec![i; 2000])]);
        }
        s.submit_sync(t).unwrap();
        s.request_checkpoint();
        s.drain().unwrap();
        let mut want = vec![0u8; 4096];
        want.extend(pattern(3, 256 << 10));
        assert_eq!(s.read(1, b"big", 0, 2 << 20).unwrap(), want, "{mode}");
        let (image, _) = s.device().power_cut();
        c.block_count = 0;
        let mut s = Store::open(SimDevice::from_image(c, image).unwrap(), small()).unwrap();
        assert_eq!(s.read(1, b"big", 0, 2 << 20).unwrap(), want, "{mode}");
        assert!(s.fsck().is_clean());
    }
}
