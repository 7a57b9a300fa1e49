//! Per-page checksums, scrub, overwrite intents, parallel commit and atomic overwrites on
//! the simulated device (docs/integrity.md): injected bit flips and misdirected writes are
//! found by reads and by scrub; a torn overwrite after a power cut is reported as torn, not
//! as corruption, and the caller can acknowledge it; overwrites within the device's atomic
//! write unit never tear; a write into fresh pages costs one device round trip.

use keel_drivers::sim::{Fault, SimClock, SimConfig, SimDevice};
use keel_engine::{JournalMode, MkfsOptions, ShardConfig, Store, StoreError, Transaction, PAGE};

const BLOCK: u64 = 512;
const BPP: u64 = PAGE / BLOCK;

fn sim(cache: bool, seed: u64) -> SimConfig {
    let mut c = SimConfig::new(BLOCK as u32, 32 << 11); // 32 MiB
    c.volatile_write_cache = cache;
    c.seed = seed;
    c
}

fn cfg() -> ShardConfig {
    ShardConfig {
        io_bufs: 64,
        journal_bufs: 16,
        max_batch_wait_us: 0,
        ..ShardConfig::default()
    }
}

fn fresh(dev: &SimDevice, shard: ShardConfig) -> Store<SimDevice> {
    let mut opts = MkfsOptions::new(JournalMode::MetadataOnly);
    opts.uuid = Some([5; 16]);
    Store::mkfs(dev, &opts).unwrap();
    Store::open(dev.clone(), shard).unwrap()
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i * 13 % 251) as u8))
        .collect()
}

fn write(s: &mut Store<SimDevice>, name: &str, offset: u64, data: Vec<u8>) {
    let mut t = Transaction::new();
    t.write(1, name.as_bytes().to_vec(), offset, data);
    s.submit_sync(t).unwrap();
}

fn lba_of(s: &mut Store<SimDevice>, name: &str, offset: u64) -> u64 {
    s.device_page(1, name.as_bytes(), offset)
        .unwrap()
        .expect("mapped")
        * BPP
}

/// A store with collection 1 and objects `a` (3 pages) and `b` (2 pages).
fn two_objects(dev: &SimDevice) -> Store<SimDevice> {
    let mut s = fresh(dev, cfg());
    let mut t = Transaction::new();
    t.mkcoll(1);
    s.submit_sync(t).unwrap();
    write(&mut s, "a", 0, pattern(1, 3 * PAGE as usize));
    write(&mut s, "b", 0, pattern(2, 2 * PAGE as usize));
    s
}

#[test]
fn a_bit_flip_is_found_by_reads_and_scrub_and_names_object_and_range() {
    let dev = SimDevice::new(sim(false, 1)).unwrap();
    let mut s = two_objects(&dev);
    assert_eq!(s.scrub().unwrap().corrupt, vec![]);
    dev.flip_bits(lba_of(&mut s, "a", PAGE) + 3, 100, 0x10)
        .unwrap();
    // A read of the page fails, naming the page's range; one that misses it works.
    match s.read(1, b"a", 0, 3 * PAGE as usize) {
        Err(e @ StoreError::DataCorrupt { .. }) => {
            assert_eq!(e.errno(), -74);
            let StoreError::DataCorrupt { key, offset, len } = e else {
                unreachable!()
            };
            assert_eq!((key.name.as_slice(), offset, len), (&b"a"[..], PAGE, PAGE));
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(
        s.read(1, b"a", 0, PAGE as usize).unwrap(),
        pattern(1, PAGE as usize)
    );
    assert_eq!(
        s.read(1, b"a", 2 * PAGE, PAGE as usize).unwrap(),
        pattern(1, 3 * PAGE as usize)[2 * PAGE as usize..]
    );
    let r = s.scrub().unwrap();
    assert_eq!(r.pages, 5);
    assert_eq!((r.clean, r.torn_pages(), r.corrupt_pages()), (4, 0, 1));
    assert_eq!(r.corrupt[0].key.name, b"a");
    assert_eq!((r.corrupt[0].offset, r.corrupt[0].len), (PAGE, PAGE));
    // Still found after a restart (the sums are in the checkpoint).
    s.close().unwrap();
    let mut s = Store::open(dev.clone(), cfg()).unwrap();
    assert_eq!(s.scrub().unwrap().corrupt_pages(), 1);
    // A partial overwrite of the corrupt page must not launder it under a new sum.
    let mut t = Transaction::new();
    t.write(1, b"a".to_vec(), PAGE + 10, vec![7; 10]);
    assert!(matches!(
        s.submit_sync(t),
        Err(StoreError::DataCorrupt { .. })
    ));
    // A whole-page rewrite replaces it.
    write(&mut s, "a", PAGE, pattern(9, PAGE as usize));
    assert_eq!(s.scrub().unwrap().corrupt_pages(), 0);
    assert!(s.fsck().errors.is_empty());
}

#[test]
fn a_misdirected_write_is_found_where_it_landed_and_where_it_was_meant_to_go() {
    let dev = SimDevice::new(sim(false, 2)).unwrap();
    let mut s = two_objects(&dev);
    let (a0, b0) = (lba_of(&mut s, "a", 0), lba_of(&mut s, "b", 0));
    // The overwrite of a's first page writes its record first, then its data: the second
    // write from now is the data, sent to b's first page instead.
    dev.inject(Fault::Misdirect {
        nth: 2,
        offset_blocks: b0 as i64 - a0 as i64,
    });
    write(&mut s, "a", 0, pattern(3, PAGE as usize));
    let r = s.scrub().unwrap();
    let mut bad: Vec<(&[u8], u64)> = r
        .corrupt
        .iter()
        .map(|b| (b.key.name.as_slice(), b.offset))
        .collect();
    bad.sort();
    assert_eq!(bad, vec![(&b"a"[..], 0), (&b"b"[..], 0)], "{r:?}");
    assert!(matches!(
        s.read(1, b"a", 0, 10),
        Err(StoreError::DataCorrupt { .. })
    ));
    assert!(matches!(
        s.read(1, b"b", 0, 10),
        Err(StoreError::DataCorrupt { .. })
    ));
    assert_eq!(
        s.read(1, b"b", PAGE, 10).unwrap(),
        pattern(2, 2 * PAGE as usize)[PAGE as usize..][..10]
    );
}

/// Writes `pages` whole pages of object `o` again and again (in place, several in flight)
/// on a device with a volatile cache, and cuts the power in the middle. Returns the
/// restarted store and the contents each page may hold.
fn cut_during_overwrites(
    seed: u64,
    atomic_blocks: u32,
    pages_per_write: u64,
    shard: ShardConfig,
) -> (Store<SimDevice>, Vec<Vec<Vec<u8>>>) {
    let pages = 8u64;
    let mut c = sim(true, seed);
    c.clock = SimClock::discrete();
    c.latency_ns = 10_000;
    c.jitter_ns = 10_000;
    c.parallelism = 4;
    c.atomic_write_blocks = atomic_blocks;
    c.honour_atomic = true;
    let dev = SimDevice::new(c.clone()).unwrap();
    let mut s = fresh(&dev, shard.clone());
    let mut t = Transaction::new();
    t.mkcoll(1);
    s.submit_sync(t).unwrap();
    write(&mut s, "o", 0, pattern(0, (pages * PAGE) as usize));
    s.drain().unwrap();
    // Each page may hold its base or any version written to it.
    let mut versions: Vec<Vec<Vec<u8>>> = (0..pages)
        .map(|p| {
            vec![
                pattern(0, (pages * PAGE) as usize)[(p * PAGE) as usize..][..PAGE as usize]
                    .to_vec(),
            ]
        })
        .collect();
    let mut rng = fastrand::Rng::with_seed(seed);
    let cut_after = rng.usize(5..60);
    for i in 0..cut_after {
        let first = rng.u64(0..pages - pages_per_write + 1);
        let data = pattern(10 + i as u8, (pages_per_write * PAGE) as usize);
        for k in 0..pages_per_write {
            versions[(first + k) as usize]
                .push(data[(k * PAGE) as usize..][..PAGE as usize].to_vec());
        }
        let mut t = Transaction::new();
        t.write(1, b"o".to_vec(), first * PAGE, data);
        // Different objects would not serialize; one object keeps one in flight, so queue
        // and poll a little between.
        s.queue(t).unwrap();
        for _ in 0..rng.usize(0..6) {
            s.poll();
        }
    }
    let (image, _) = dev.power_cut();
    drop(s);
    let dev2 = SimDevice::from_image(c, image).unwrap();
    (Store::open(dev2, shard).unwrap(), versions)
}

#[test]
fn overwrites_within_the_atomic_unit_never_tear_and_others_do_but_are_told_from_corruption() {
    let mut torn_without_unit = 0;
    for seed in 0..40 {
        // One page is 8 blocks: atomic when the device says 8, not when it says 1.
        for (unit, pages_per_write) in [(8u32, 1u64), (1, 1), (8, 3)] {
            let (mut s, versions) = cut_during_overwrites(seed, unit, pages_per_write, cfg());
            let r = s.scrub().unwrap();
            assert_eq!(r.corrupt_pages(), 0, "seed {seed} unit {unit}: {r:?}");
            if unit == 8 && pages_per_write == 1 {
                assert_eq!(
                    r.torn_pages(),
                    0,
                    "seed {seed}: an atomic overwrite tore: {r:?}"
                );
            }
            if unit == 1 {
                torn_without_unit += r.torn_pages();
            }
            // Torn pages are the caller's: acknowledge them, then each page holds, block by
            // block, one of the versions written to it (whole versions where atomic).
            for b in &r.torn {
                let mut t = Transaction::new();
                t.acknowledge(1, b.key.name.clone(), b.offset, b.len);
                s.submit_sync(t).unwrap();
            }
            assert_eq!(s.scrub().unwrap().torn_pages(), 0);
            let data = s.read(1, b"o", 0, 8 * PAGE as usize).unwrap();
            for (p, page) in data.chunks(PAGE as usize).enumerate() {
                let whole = versions[p].iter().any(|v| v == page);
                let blockwise = page.chunks(BLOCK as usize).enumerate().all(|(i, blk)| {
                    versions[p]
                        .iter()
                        .any(|v| &v[i * BLOCK as usize..][..BLOCK as usize] == blk)
                });
                assert!(
                    blockwise,
                    "seed {seed} unit {unit}: page {p} holds foreign bytes"
                );
                if unit == 8 && pages_per_write == 1 {
                    assert!(whole, "seed {seed}: page {p} mixes versions");
                }
            }
            assert!(s.fsck().errors.is_empty());
        }
    }
    // The control: without an atomic unit the same cuts do tear pages (else the test above
    // could not tell).
    assert!(
        torn_without_unit > 0,
        "no page ever tore without an atomic unit"
    );
}

#[test]
fn without_intents_a_torn_overwrite_reads_as_corruption() {
    let shard = ShardConfig {
        overwrite_intents: false,
        ..cfg()
    };
    let mut corrupt = 0;
    for seed in 0..40 {
        let (mut s, _) = cut_during_overwrites(seed, 1, 2, shard.clone());
        let r = s.scrub().unwrap();
        assert_eq!(r.torn_pages(), 0, "no intents, no torn classification");
        corrupt += r.corrupt_pages();
    }
    assert!(
        corrupt > 0,
        "the cuts never left a torn page: the test proves nothing"
    );
}

#[test]
fn acknowledge_and_rewrite_settle_a_torn_overwrite() {
    for seed in 0..60 {
        let (mut s, _) = cut_during_overwrites(seed, 1, 2, cfg());
        let r = s.scrub().unwrap();
        let Some(b) = r.torn.first().cloned() else {
            continue;
        };
        // A read of the range says torn, with its errno; a rewrite of one page settles that
        // page, an acknowledge the rest.
        let e = s.read(1, b"o", b.offset, PAGE as usize).unwrap_err();
        assert!(matches!(e, StoreError::TornOverwrite { .. }), "{e}");
        assert_eq!(e.errno(), -84);
        write(&mut s, "o", b.offset, pattern(99, PAGE as usize));
        assert_eq!(
            s.read(1, b"o", b.offset, PAGE as usize).unwrap(),
            pattern(99, PAGE as usize)
        );
        let mut t = Transaction::new();
        t.acknowledge(1, b"o".to_vec(), 0, 8 * PAGE);
        s.submit_sync(t).unwrap();
        let after = s.scrub().unwrap();
        assert_eq!((after.torn_pages(), after.corrupt_pages()), (0, 0));
        // Settled for good: the checkpoint no longer holds the intents.
        s.close().unwrap();
        return;
    }
    panic!("no seed left a torn overwrite");
}

#[test]
fn acknowledge_refuses_a_missing_object_and_leaves_corruption_alone() {
    let dev = SimDevice::new(sim(false, 3)).unwrap();
    let mut s = two_objects(&dev);
    let mut t = Transaction::new();
    t.acknowledge(1, b"nope".to_vec(), 0, PAGE);
    assert!(matches!(s.submit_sync(t), Err(StoreError::NoSuchObject(_))));
    dev.flip_bits(lba_of(&mut s, "b", 0), 0, 1).unwrap();
    let mut t = Transaction::new();
    t.acknowledge(1, b"b".to_vec(), 0, 2 * PAGE);
    s.submit_sync(t).unwrap();
    assert_eq!(
        s.scrub().unwrap().corrupt_pages(),
        1,
        "corruption is not the caller's"
    );
}

/// Device time one QD1 4 KiB append takes on a discrete clock, in device latencies.
fn append_round_trips(parallel: bool) -> f64 {
    let mut c = sim(true, 4);
    c.clock = SimClock::discrete();
    c.latency_ns = 10_000;
    c.flush_latency_ns = 0;
    let dev = SimDevice::new(c).unwrap();
    let mut s = fresh(
        &dev,
        ShardConfig {
            parallel_commit: parallel,
            ..cfg()
        },
    );
    let mut t = Transaction::new();
    t.mkcoll(1);
    s.submit_sync(t).unwrap();
    let n = 50;
    let start = dev.clock().now_ns();
    for i in 0..n {
        write(&mut s, "log", i * PAGE, pattern(i as u8, PAGE as usize));
    }
    let per = (dev.clock().now_ns() - start) as f64 / n as f64;
    let st = s.stats().shards;
    assert_eq!(st.parallel_txns > 0, parallel, "{st:?}");
    per / 10_000.0
}

#[test]
fn parallel_commit_takes_one_device_round_trip_per_append() {
    let parallel = append_round_trips(true);
    let serial = append_round_trips(false);
    eprintln!("append: parallel {parallel:.2}, serial {serial:.2} device latencies");
    assert!(
        parallel < 1.2,
        "parallel append took {parallel} device latencies"
    );
    assert!(
        serial >= 2.0,
        "serial append took {serial} device latencies"
    );
}
