//! What survives: state across close and open, acknowledged transactions across power cuts
//! (overlapping batches too), and a device fault that stops the store with its reason.

use crate::common::*;

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
