//! The journal: it wraps through checkpoints, writes data once (MetadataOnly) or twice
//! (Full), batches and overlaps (never beyond what the ring holds), and serves
//! acknowledged data before it reaches home.

use crate::common::*;

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
fn a_burst_larger_than_a_small_journal_commits() {
    // 24 entries of 8-12 KiB at once are more than a 64 KiB ring holds: the batches must be
    // cut to what the ring can take (once, every batch was sized by max_batch_bytes alone,
    // 1 MiB, and the shard waited for ring room that no checkpoint could make).
    for mode in MODES {
        let dev = SimDevice::new(sim(32 << 11, true, 8)).unwrap();
        let mut opts = MkfsOptions::new(mode);
        opts.journal_bytes = 64 << 10; // the smallest ring mkfs takes
        Store::mkfs(&dev, &opts).unwrap();
        let mut s = Store::open(dev, small()).unwrap();
        let mut t = txn();
        t.mkcoll(1);
        s.submit_sync(t).unwrap();
        let len = |i: u8| 8192 + 150 * usize::from(i);
        let mut ids = Vec::new();
        for i in 0..24u8 {
            let mut t = txn();
            // Full-journal entries carry their data: up to a quarter of the ring each.
            t.write(1, vec![i], 0, pattern(i, len(i)));
            ids.push(s.queue(t).unwrap());
        }
        let mut answered = 0;
        for _ in 0..1_000_000 {
            s.poll();
            s.take_completions(|_, r| {
                r.unwrap();
                answered += 1;
            });
            if answered == ids.len() {
                break;
            }
        }
        assert_eq!(
            answered,
            ids.len(),
            "{mode}: the store stopped making progress"
        );
        for i in 0..24u8 {
            assert_eq!(
                s.read(1, &[i], 0, 1 << 20).unwrap(),
                pattern(i, len(i)),
                "{mode}"
            );
        }
        assert!(s.fsck().is_clean(), "{mode}");
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
