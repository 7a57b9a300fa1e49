//! The store end to end on the simulated device: every operation round-trips, bad input is
//! refused with a typed error and changes nothing, state survives close/open and power cuts
//! within each mode's guarantee, the journal wraps through checkpoints, and a device fault
//! stops the store with a clear reason.

use keel_drivers::sim::{Fault, SimClock, SimConfig, SimDevice};
use keel_drivers::{NvmeStatus, Op};
use keel_engine::{JournalMode, MkfsOptions, ShardConfig, Store, StoreError, Transaction};

const MODES: [JournalMode; 2] = [JournalMode::Full, JournalMode::MetadataOnly];

fn sim(blocks: u64, cache: bool, seed: u64) -> SimConfig {
    let mut c = SimConfig::new(512, blocks);
    c.volatile_write_cache = cache;
    c.seed = seed;
    c
}

fn small() -> ShardConfig {
    ShardConfig {
        io_bufs: 64,
        journal_bufs: 16,
        ..ShardConfig::default()
    }
}

fn fresh(mode: JournalMode, cfg: SimConfig) -> Store<SimDevice> {
    let dev = SimDevice::new(cfg).unwrap();
    let mut opts = MkfsOptions::new(mode);
    opts.uuid = Some([9; 16]);
    Store::mkfs(&dev, &opts).unwrap();
    Store::open(dev, small()).unwrap()
}

/// A fresh store with collection 1 made.
fn fresh_with_coll(mode: JournalMode, cfg: SimConfig) -> Store<SimDevice> {
    let mut s = fresh(mode, cfg);
    let mut t = txn();
    t.mkcoll(1);
    s.submit_sync(t).unwrap();
    s
}

fn txn() -> Transaction {
    Transaction::default()
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i * 7 % 251) as u8))
        .collect()
}

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
fn state_survives_close_and_open() {
    for mode in MODES {
        let mut s = fresh(mode, sim(64 << 11, true, 3));
        for i in 0..50u8 {
            let mut t = txn();
            if i == 0 {
                t.mkcoll(4);
            }
            t.write(4, vec![b'o', i % 5], u64::from(i) * 1000, pattern(i, 3000));
            t.setattr(4, vec![b'o', i % 5], b"last".to_vec(), vec![i]);
            s.submit_sync(t).unwrap();
        }
        let want: Vec<Vec<u8>> = (0..5u8)
            .map(|o| s.read(4, &[b'o', o], 0, 1 << 20).unwrap())
            .collect();
        let dev = s.device().clone();
        s.close().unwrap();
        let mut s = Store::open(dev, small()).unwrap();
        for o in 0..5u8 {
            assert_eq!(
                s.read(4, &[b'o', o], 0, 1 << 20).unwrap(),
                want[o as usize],
                "{mode}"
            );
            assert_eq!(s.getattr(4, &[b'o', o], b"last").unwrap(), vec![45 + o]);
        }
        assert!(s.fsck().is_clean());
    }
}

#[test]
fn acknowledged_transactions_survive_a_power_cut() {
    for mode in MODES {
        for seed in 0..6 {
            let mut s = fresh_with_coll(mode, sim(64 << 11, true, seed));
            // Many in flight at once; all acknowledged before the cut.
            let ids: Vec<_> = (0..40u8)
                .map(|i| {
                    let mut t = txn();
                    t.write(1, vec![i], 0, pattern(i, 5000 + usize::from(i)));
                    s.queue(t).unwrap()
                })
                .collect();
            for id in ids {
                s.wait(id).unwrap();
            }
            let (image, _) = s.device().power_cut();
            let dev = SimDevice::from_image(sim(0, true, seed + 100), image).unwrap();
            let mut s = Store::open(dev, small()).unwrap();
            assert!(
                s.replay_reports()[0].batches > 0,
                "{mode}: nothing was replayed"
            );
            for i in 0..40u8 {
                let got = s.read(1, &[i], 0, 1 << 20).unwrap();
                assert_eq!(
                    got,
                    pattern(i, 5000 + usize::from(i)),
                    "{mode} seed {seed} object {i}"
                );
            }
            let r = s.fsck();
            assert!(r.is_clean(), "{:?}", r.errors);
        }
    }
}

#[test]
fn journal_wraps_through_checkpoints_and_recovers() {
    for mode in MODES {
        let dev = SimDevice::new(sim(32 << 11, true, 7)).unwrap(); // 32 MiB
        let mut opts = MkfsOptions::new(mode);
        opts.journal_bytes = 128 << 10; // small ring: many laps
        Store::mkfs(&dev, &opts).unwrap();
        let mut s = Store::open(dev, small()).unwrap();
        let mut t = txn();
        t.mkcoll(2);
        s.submit_sync(t).unwrap();
        for i in 0..600u32 {
            let mut t = txn();
            t.write(
                2,
                (i % 13).to_le_bytes().to_vec(),
                u64::from(i % 7) * 4096,
                pattern(i as u8, 4096),
            );
            s.submit_sync(t).unwrap();
        }
        let st = s.stats();
        assert!(
            st.shards.checkpoints >= 2,
            "{mode}: {} checkpoints",
            st.shards.checkpoints
        );
        let want: Vec<_> = (0..13u32)
            .map(|o| s.read(2, &o.to_le_bytes(), 0, 1 << 20).unwrap())
            .collect();
        let (image, _) = s.device().power_cut();
        let mut s = Store::open(
            SimDevice::from_image(sim(0, true, 8), image).unwrap(),
            small(),
        )
        .unwrap();
        for o in 0..13u32 {
            assert_eq!(
                s.read(2, &o.to_le_bytes(), 0, 1 << 20).unwrap(),
                want[o as usize],
                "{mode}"
            );
        }
        assert!(s.fsck().is_clean());
    }
}

#[test]
fn metadata_only_writes_data_once_and_journals_little() {
    let mut s = fresh(JournalMode::MetadataOnly, sim(64 << 11, true, 4));
    let mut t = txn();
    t.mkcoll(1);
    for o in 0..64u8 {
        t.touch(1, vec![o]);
    }
    s.submit_sync(t).unwrap();
    let before = s.stats();
    let ids: Vec<_> = (0..512u32)
        .map(|i| {
            let mut t = txn();
            t.write(
                1,
                vec![(i % 64) as u8],
                u64::from(i / 64) * 4096,
                vec![i as u8; 4096],
            );
            s.queue(t).unwrap()
        })
        .collect();
    for id in ids {
        s.wait(id).unwrap();
    }
    let after = s.stats();
    let client = after.shards.client_bytes - before.shards.client_bytes;
    let device = after.device().bytes(Op::Write) - before.device().bytes(Op::Write);
    assert_eq!(client, 512 * 4096);
    assert!(
        device < client * 11 / 10,
        "device wrote {device} for {client} client bytes"
    );
    assert!(
        after.shards.batches - before.shards.batches < 512,
        "entries were batched"
    );
}

#[test]
fn full_mode_writes_data_twice() {
    let mut s = fresh_with_coll(JournalMode::Full, sim(64 << 11, true, 5));
    let before = s.stats();
    for i in 0..64u32 {
        let mut t = txn();
        t.write(1, vec![i as u8], 0, vec![i as u8; 4096]);
        s.submit_sync(t).unwrap();
    }
    s.drain().unwrap();
    let after = s.stats();
    let device = after.device().bytes(Op::Write) - before.device().bytes(Op::Write);
    assert!(
        device >= 2 * 64 * 4096,
        "full journal writes journal + home: {device}"
    );
}

#[test]
fn a_device_fault_stops_the_store_with_its_reason() {
    let mut s = fresh(JournalMode::MetadataOnly, sim(64 << 11, true, 6));
    let mut t = txn();
    t.mkcoll(1).write(1, b"a".to_vec(), 0, vec![1; 4096]);
    s.submit_sync(t).unwrap();
    s.device().inject(Fault::FailNth {
        op: Op::Write,
        nth: 1,
        status: NvmeStatus::WRITE_FAULT,
    });
    let mut t = txn();
    t.write(1, b"b".to_vec(), 0, vec![2; 4096]);
    let r = s.submit_sync(t);
    assert!(
        matches!(r, Err(StoreError::Failed(ref why)) if why.contains("Write Fault")),
        "{r:?}"
    );
    let mut t = txn();
    t.write(1, b"c".to_vec(), 0, vec![3; 10]);
    assert!(matches!(s.queue(t), Err(StoreError::Failed(_))));
    // Committed data is still readable.
    assert_eq!(s.read(1, b"a", 0, 4096).unwrap(), vec![1; 4096]);
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
fn a_transaction_can_ask_for_the_full_journal() {
    let mut s = fresh_with_coll(JournalMode::MetadataOnly, sim(64 << 11, true, 11));
    let before = s.stats();
    let mut t = txn();
    t.write(1, b"x".to_vec(), 0, vec![7; 64 << 10])
        .set_full_journal(true);
    s.submit_sync(t).unwrap();
    s.drain().unwrap();
    let after = s.stats();
    assert_eq!(
        after.shards.full_journal_txns - before.shards.full_journal_txns,
        1
    );
    let written = after.device().bytes(Op::Write) - before.device().bytes(Op::Write);
    assert!(written >= 2 * (64 << 10), "journal and home: {written}");
    assert_eq!(s.read(1, b"x", 0, 1 << 20).unwrap(), vec![7; 64 << 10]);
}

#[test]
fn acknowledged_full_journal_data_is_readable_before_it_reaches_home() {
    let mut c = sim(64 << 11, true, 12);
    c.latency_ns = 2_000_000; // 2 ms: the home writes are still in flight after the ack
    let mut s = fresh(JournalMode::Full, c);
    let mut t = txn();
    t.mkcoll(1).write(1, b"x".to_vec(), 0, vec![1; 8192]);
    s.submit_sync(t).unwrap();
    s.drain().unwrap();
    let mut t = txn();
    t.write(1, b"x".to_vec(), 100, vec![2; 5000]);
    s.submit_sync(t).unwrap();
    assert!(
        s.phase().home_writes,
        "the test needs home writes in flight"
    );
    let mut want = vec![1u8; 8192];
    want[100..5100].fill(2);
    assert_eq!(
        s.read(1, b"x", 0, 8192).unwrap(),
        want,
        "reads see what was acknowledged"
    );
    s.drain().unwrap();
    assert_eq!(s.read(1, b"x", 0, 8192).unwrap(), want);
}

#[test]
fn a_batch_wait_gathers_more_entries_per_batch() {
    // A discrete-event device clock: every poll with a command in flight moves device time
    // to the next completion. Arrivals and completions then interleave the same way however
    // the test thread is scheduled (with wall-clock pacing, a starved test thread saw each
    // write finish before the next arrived, and no batch could gather anything), and the
    // patient run's wait (10 s of wall time) never runs out.
    let run = |wait_us: u32| {
        let mut c = sim(64 << 11, true, 13);
        c.clock = SimClock::discrete();
        c.latency_ns = 20_000;
        c.jitter_ns = 20_000;
        let dev = SimDevice::new(c).unwrap();
        Store::mkfs(&dev, &MkfsOptions::new(JournalMode::MetadataOnly)).unwrap();
        let cfg = ShardConfig {
            max_batch_wait_us: wait_us,
            ..small()
        };
        let mut s = Store::open(dev, cfg).unwrap();
        let mut t = txn();
        t.mkcoll(1);
        s.submit_sync(t).unwrap();
        let before = s.stats().shards;
        // Arrivals in groups of 8, a poll after each group.
        let mut ids = Vec::new();
        for i in 0..64u8 {
            let mut t = txn();
            t.write(1, vec![i], 0, vec![i; 4096]);
            ids.push(s.queue(t).unwrap());
            if i % 8 == 7 {
                s.poll();
            }
        }
        for id in ids {
            s.wait(id).unwrap();
        }
        let after = s.stats().shards;
        after.batches - before.batches
    };
    let (eager, patient) = (run(0), run(10_000_000));
    assert!(
        patient < eager,
        "waiting up to 10 s: {patient} batches, at once: {eager}"
    );
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

/// A slow device (0.2–0.6 ms per command, 2 ms more per flush): with no batch wait,
/// batches are sealed while earlier ones are still in flight. The latencies are long
/// against a poll (even unoptimized), so the overlap does not depend on machine speed.
fn slow_flush(seed: u64) -> SimConfig {
    let mut c = sim(64 << 11, true, seed);
    c.latency_ns = 200_000;
    c.jitter_ns = 400_000;
    c.flush_latency_ns = 2_000_000;
    c
}

fn overlapping() -> ShardConfig {
    ShardConfig {
        max_batch_wait_us: 0,
        max_batches_in_flight: 4,
        ..small()
    }
}

#[test]
fn batches_overlap_on_a_slow_device_and_every_transaction_commits() {
    for mode in MODES {
        let dev = SimDevice::new(slow_flush(31)).unwrap();
        Store::mkfs(&dev, &MkfsOptions::new(mode)).unwrap();
        let mut s = Store::open(dev, overlapping()).unwrap();
        let mut t = txn();
        t.mkcoll(1);
        s.submit_sync(t).unwrap();
        let mut ids = Vec::new();
        for i in 0..48u8 {
            let mut t = txn();
            t.write(1, vec![i], 0, pattern(i, 4096 + usize::from(i)));
            ids.push(s.queue(t).unwrap());
            for _ in 0..5 {
                s.poll();
            }
        }
        for id in ids {
            s.wait(id).unwrap();
        }
        let st = s.stats().shards;
        assert!(
            st.overlapped_batches > 0,
            "{mode}: no batch was sealed while another was in flight ({} batches)",
            st.batches
        );
        for i in 0..48u8 {
            assert_eq!(
                s.read(1, &[i], 0, 1 << 20).unwrap(),
                pattern(i, 4096 + usize::from(i)),
                "{mode} object {i}"
            );
        }
        assert!(s.fsck().is_clean());
    }
}

#[test]
fn a_power_cut_among_overlapping_batches_keeps_every_acknowledged_transaction() {
    let mut cuts_with_batches_in_flight = 0;
    for mode in MODES {
        for seed in 0..40u64 {
            let dev = SimDevice::new(slow_flush(seed)).unwrap();
            Store::mkfs(&dev, &MkfsOptions::new(mode)).unwrap();
            let mut s = Store::open(dev, overlapping()).unwrap();
            let mut t = txn();
            t.mkcoll(1);
            s.submit_sync(t).unwrap();
            // Queue a transaction every few polls, and cut right after the n-th poll that
            // acknowledged something (n seeded): the moment an early acknowledgement would
            // be exposed.
            let mut ids = Vec::new();
            let mut acked = Vec::new();
            let mut ack_events = 0;
            let cut_after = 1 + seed % 20;
            let mut polls = 0u64;
            while ack_events < cut_after && (ids.len() < 32 || acked.len() < ids.len()) {
                if polls % 7 == 0 && ids.len() < 32 {
                    let i = ids.len() as u8;
                    let mut t = txn();
                    t.write(1, vec![i], 0, pattern(i ^ seed as u8, 4096));
                    ids.push((i, s.queue(t).unwrap()));
                }
                polls += 1;
                s.poll();
                let before = acked.len();
                s.take_completions(|id, r| {
                    r.unwrap();
                    acked.push(id);
                });
                ack_events += u64::from(acked.len() > before);
            }
            if s.phase().batch && s.stats().shards.overlapped_batches > 0 {
                cuts_with_batches_in_flight += 1;
            }
            let (image, _) = s.device().power_cut();
            let mut s = Store::open(
                SimDevice::from_image(sim(0, true, seed + 50), image).unwrap(),
                overlapping(),
            )
            .unwrap();
            for (i, id) in ids {
                let got = s.read(1, &[i], 0, 1 << 20);
                let want = pattern(i ^ seed as u8, 4096);
                if acked.contains(&id) {
                    assert_eq!(got.unwrap(), want, "{mode} seed {seed}: acked object {i}");
                } else if let Ok(got) = got {
                    // Not acknowledged: absent, or (its record made it) present whole.
                    assert_eq!(
                        got, want,
                        "{mode} seed {seed}: unacked object {i} is partial"
                    );
                }
            }
            let r = s.fsck();
            assert!(r.is_clean(), "{mode} seed {seed}: {:?}", r.errors);
        }
    }
    assert!(
        cuts_with_batches_in_flight > 0,
        "no cut landed while batches were in flight: the test explored nothing"
    );
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
