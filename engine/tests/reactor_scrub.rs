//! Scrub on the reactors (engine::reactor::scrub): the background scrub finds a flipped
//! bit at rest, names the object and range, and keeps to its rate; it is off by default
//! and never runs by itself in stepped mode; `Engine::scrub` finds the same flip, and is
//! refused on a reactor thread; overwrites racing the scrub are not reported as
//! corruption.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_drivers::sim::{SimClock, SimConfig, SimDevice};
use keel_drivers::BlockDevice;
use keel_engine::reactor::{BadKind, ReactorStats, MAX_SCRUB_PAGES_PER_SEC, SCRUB_BATCH_PAGES};
use keel_engine::{
    shard_for, BadRange, CompletionRing, Cores, Engine, Idle, JournalMode, MkfsOptions, Notify,
    ObjKey, ReactorConfig, ShardConfig, Store, StoreError, Transaction, PAGE,
};

const BLOCK: u32 = 512;

fn device() -> SimDevice {
    let mut c = SimConfig::new(BLOCK, 64 << 11); // 32 MiB
    c.latency_ns = 5_000;
    c.jitter_ns = 2_000;
    c.seed = 11;
    c.clock = SimClock::real();
    SimDevice::new(c).unwrap()
}

fn small() -> ShardConfig {
    ShardConfig {
        io_bufs: 64,
        journal_bufs: 16,
        max_txns: 64,
        ..ShardConfig::default()
    }
}

fn mkfs(dev: &SimDevice, shards: u32) {
    let mut o = MkfsOptions::new(JournalMode::MetadataOnly);
    o.shards = shards;
    o.uuid = Some([7; 16]);
    o.journal_bytes = 512 << 10;
    o.checkpoint_bytes = 1 << 20;
    Store::mkfs(dev, &o).unwrap();
}

fn threaded(scrub_pages_per_sec: u64) -> ReactorConfig {
    ReactorConfig {
        cores: Cores::Unpinned,
        idle: Idle::SHARED,
        scrub_pages_per_sec,
        ..ReactorConfig::default()
    }
}

/// One collection on each of `shards` shards, in shard order.
fn one_coll_per_shard(shards: usize) -> Vec<u64> {
    (0..shards)
        .map(|s| (1u64..).find(|c| shard_for(*c, shards) == s).unwrap())
        .collect()
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed as u8).wrapping_mul(37).wrapping_add((i % 253) as u8))
        .collect()
}

/// Objects "a" (5 pages) and "b" (3 pages and a bit) in every collection. Returns the
/// mapped pages in all.
fn fill(e: &Engine<SimDevice>, colls: &[u64]) -> u64 {
    for &c in colls {
        let mut t = Transaction::new();
        t.mkcoll(c)
            .write(c, b"a".to_vec(), 0, pattern(c, 5 * PAGE as usize))
            .write(c, b"b".to_vec(), 0, pattern(c + 1, 3 * PAGE as usize + 100));
        e.submit_sync(t).unwrap();
    }
    colls.len() as u64 * 9
}

/// Device page of logical page `lpage` of an object (stepped engine: the table itself).
fn phys_of(e: &Engine<SimDevice>, coll: u64, name: &[u8], lpage: u64) -> u64 {
    let s = e.shard_of(coll);
    e.with_reactors(|rs| {
        let obj = rs[s].shard().table().object(coll, name).expect("object");
        let (first, ext) = obj
            .extents()
            .range(..=lpage)
            .next_back()
            .map(|(l, x)| (*l, *x))
            .expect("mapped");
        assert!(
            lpage < first + u64::from(ext.pages),
            "page {lpage} is a hole"
        );
        ext.phys + (lpage - first)
    })
    .expect("stepped")
}

/// Flips one bit of byte `byte` of device page `phys`, at rest.
fn flip(dev: &SimDevice, phys: u64, byte: u64) {
    let bs = u64::from(dev.geometry().block_size);
    let at = phys * PAGE + byte;
    dev.flip_bits(at / bs, (at % bs) as usize, 0x10).unwrap();
}

/// A store of `shards` shards filled by `fill`, with one bit flipped in page 1 of object
/// "b" of the last shard's collection. Returns the device, the collections, that key and
/// the mapped pages.
fn flipped_store(shards: usize) -> (SimDevice, Vec<u64>, ObjKey, u64) {
    let dev = device();
    mkfs(&dev, shards as u32);
    let colls = one_coll_per_shard(shards);
    let e = Engine::open(dev.clone(), small(), ReactorConfig::stepped()).unwrap();
    let pages = fill(&e, &colls);
    let target = *colls.last().unwrap();
    let phys = phys_of(&e, target, b"b", 1);
    e.close().unwrap();
    flip(&dev, phys, 1000);
    (dev, colls, ObjKey::new(target, b"b".to_vec()), pages)
}

fn page_1_of(key: &ObjKey) -> BadRange {
    BadRange {
        key: key.clone(),
        offset: PAGE,
        len: PAGE,
    }
}

/// Polls the engine's stats every 10 ms until `done` holds for every reactor (at most
/// 10 s).
fn wait_for(e: &Engine<SimDevice>, done: impl Fn(&ReactorStats) -> bool) -> Vec<ReactorStats> {
    let t0 = Instant::now();
    loop {
        let st = e.stats().unwrap().reactors;
        if st.iter().all(&done) {
            return st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no complete scrub pass in 10 s: {:?}",
            st.iter().map(|r| &r.scrub).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn background_scrub_finds_a_flipped_bit_and_keeps_to_its_rate() {
    let (dev, colls, key, pages) = flipped_store(2);
    let target = shard_for(key.coll, 2);
    let rate = 2000;
    let t0 = Instant::now();
    let e = Engine::open(dev, small(), threaded(rate)).unwrap();
    // Two passes each, and long enough for the rate to matter (~600 pages a reactor).
    wait_for(&e, |r| r.scrub.passes >= 2);
    std::thread::sleep(Duration::from_millis(300).saturating_sub(t0.elapsed()));
    let st = e.stats().unwrap().reactors;
    let elapsed = t0.elapsed().as_secs_f64();
    for r in &st {
        let s = &r.scrub;
        assert_eq!(s.pages_per_sec, rate);
        assert_eq!(
            (s.errors, s.torn_pages),
            (0, 0),
            "reactor {}: {s:?}",
            r.reactor
        );
        // Loose: the bucket starts empty, so rate × elapsed; a batch for slack.
        let bound = rate as f64 * elapsed + SCRUB_BATCH_PAGES as f64;
        assert!(
            (s.pages + s.skipped) as f64 <= bound,
            "reactor {}: {} pages in {elapsed:.3} s at {rate}/s",
            r.reactor,
            s.pages + s.skipped
        );
        assert!(s.passes >= 2 && s.pages >= s.passes * (pages / 2), "{s:?}");
        if r.reactor == target {
            // Every pass finds the one bad page, and names it.
            assert!(s.corrupt_pages >= 2, "{s:?}");
            assert_eq!(s.clean + s.corrupt_pages, s.pages, "{s:?}");
            assert!(!s.recent.is_empty());
            for f in &s.recent {
                assert_eq!((f.kind, &f.range), (BadKind::Corrupt, &page_1_of(&key)));
            }
        } else {
            assert_eq!((s.corrupt_pages, s.recent.len()), (0, 0), "{s:?}");
            assert_eq!(s.clean, s.pages);
        }
    }
    let total = e.stats().unwrap().scrub_total();
    assert_eq!(total.pages_per_sec, 2 * rate);
    assert!(total.corrupt_pages >= 2 && total.recent.iter().all(|f| f.range == page_1_of(&key)));

    // A full pass on demand finds the same page, and only it.
    let r = e.scrub().unwrap();
    assert_eq!(r.corrupt, vec![page_1_of(&key)]);
    assert!(r.torn.is_empty());
    assert_eq!(
        (r.pages, r.clean, r.skipped, r.passes),
        (pages, pages - 1, 0, 2)
    );
    // And a read says the same.
    match e.read(key.coll, b"b", 0, 1 << 20) {
        Err(StoreError::DataCorrupt {
            key: k,
            offset,
            len,
        }) => assert_eq!((k, offset, len), (key.clone(), PAGE, PAGE)),
        other => panic!("read of a flipped page: {other:?}"),
    }
    assert_eq!(
        e.read(colls[0], b"b", 0, 1 << 20).unwrap(),
        pattern(colls[0] + 1, 3 * PAGE as usize + 100)
    );
    e.close().unwrap();
}

#[test]
fn scrub_is_off_by_default_and_stepped_reactors_scrub_only_when_asked() {
    let (dev, _colls, key, pages) = flipped_store(1);
    // Threaded, no rate: nothing is read.
    let e = Engine::open(dev.clone(), small(), threaded(0)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let s = e.stats().unwrap().reactors[0].scrub.clone();
    assert_eq!(s, Default::default(), "scrub ran with a rate of 0");
    assert_eq!(
        e.stats().unwrap().reactors[0]
            .looped
            .busy_of(keel_engine::reactor::PollerId::Scrub),
        0
    );
    e.close().unwrap();

    // Stepped with a rate: turns and time go by, and nothing is scrubbed...
    let rcfg = ReactorConfig {
        scrub_pages_per_sec: MAX_SCRUB_PAGES_PER_SEC,
        ..ReactorConfig::stepped()
    };
    let e = Engine::open(dev, small(), rcfg).unwrap();
    for _ in 0..50 {
        e.step();
        std::thread::sleep(Duration::from_millis(1));
    }
    let s = e.stats().unwrap().reactors[0].scrub.clone();
    assert_eq!(
        (s.pages, s.passes, s.pages_per_sec),
        (0, 0, MAX_SCRUB_PAGES_PER_SEC)
    );
    // ...until the test asks: a step of 4 pages, then the rest of the pass.
    let n = e
        .with_reactors(|rs| rs[0].scrub_background_step(4))
        .unwrap();
    assert_eq!(n, 4);
    let n = e
        .with_reactors(|rs| rs[0].scrub_background_step(64))
        .unwrap();
    assert_eq!(n, pages - 4);
    let s = e.stats().unwrap().reactors[0].scrub.clone();
    assert_eq!((s.pages, s.passes, s.corrupt_pages), (pages, 1, 1), "{s:?}");
    assert_eq!(s.recent.len(), 1);
    assert_eq!(s.recent[0].range, page_1_of(&key));
    // Engine::scrub works stepped too (the blocking call turns the reactors).
    assert_eq!(e.scrub().unwrap().corrupt, vec![page_1_of(&key)]);
    e.close().unwrap();
}

#[test]
fn engine_scrub_is_refused_on_a_reactor_thread() {
    let dev = device();
    mkfs(&dev, 1);
    let e = Arc::new(Engine::open(dev, small(), threaded(0)).unwrap());
    let seen: Arc<Mutex<Option<String>>> = Arc::default();
    let (e2, s2) = (Arc::clone(&e), Arc::clone(&seen));
    let mut t = Transaction::new();
    t.mkcoll(3);
    e.submit(
        t,
        Notify::callback(move |r| {
            r.unwrap();
            *s2.lock().unwrap() = Some(format!("{:?}", e2.scrub()));
        }),
    )
    .unwrap();
    e.drain().unwrap();
    let got = seen.lock().unwrap().clone().expect("callback ran");
    assert!(got.contains("OnReactor(\"Engine::scrub\")"), "{got}");
    // From any other thread it runs.
    assert_eq!(e.scrub().unwrap().passes, 1);
    Arc::try_unwrap(e).unwrap().close().unwrap();
}

#[test]
fn a_scrub_rate_past_the_limit_is_refused() {
    let dev = device();
    mkfs(&dev, 1);
    let r = Engine::open(dev, small(), threaded(MAX_SCRUB_PAGES_PER_SEC + 1));
    assert!(matches!(r, Err(StoreError::Config(_))), "{r:?}");
}

/// Overwrites in place, 8 in flight, racing a scrub as fast as it goes, on a device where
/// the scrub's long reads take longer than an overwrite's whole commit: a page rewritten
/// and committed between the scrub's read and its check reads as a mismatch there. Without
/// the confirming read, about one scrubbed page in twenty is reported corrupt here.
#[test]
fn overwrites_racing_the_background_scrub_are_not_corruption() {
    let mut c = SimConfig::new(BLOCK, 64 << 11);
    c.latency_ns = 5_000;
    c.jitter_ns = 2_000;
    c.transfer_ns_per_kib = 2_000; // a 32-page read: 256 µs; a 1-page write: 13 µs
    c.clock = SimClock::real();
    let dev = SimDevice::new(c).unwrap();
    mkfs(&dev, 1);
    let e = Engine::open(dev, small(), threaded(MAX_SCRUB_PAGES_PER_SEC)).unwrap();
    let coll = one_coll_per_shard(1)[0];
    let mut t = Transaction::new();
    t.mkcoll(coll)
        .write(coll, b"a".to_vec(), 0, pattern(1, 32 * PAGE as usize));
    e.submit_sync(t).unwrap();
    let ring = CompletionRing::new(8);
    let t0 = Instant::now();
    let mut round = 0u64;
    while t0.elapsed() < Duration::from_millis(500) {
        while ring.outstanding() < ring.capacity() {
            round += 1;
            let mut t = Transaction::new();
            // Unaligned: read-modify-write of one page, in place.
            let at = (round % 31) * PAGE + 100;
            t.write(coll, b"a".to_vec(), at, pattern(round, 1000));
            e.submit(t, Notify::ring(&ring, round).unwrap()).unwrap();
        }
        e.wait_completion(&ring).unwrap().unwrap().1.unwrap();
    }
    while let Some((_, r)) = e.wait_completion(&ring).unwrap() {
        r.unwrap();
    }
    let s = wait_for(&e, |r| r.scrub.passes >= 3)[0].scrub.clone();
    assert_eq!(
        (s.corrupt_pages, s.torn_pages, s.errors),
        (0, 0, 0),
        "{s:?}"
    );
    assert!(s.recent.is_empty(), "{s:?}");
    assert!(s.pages > 0 && s.clean == s.pages, "{s:?}");
    let r = e.scrub().unwrap();
    assert!(r.corrupt.is_empty() && r.torn.is_empty(), "{r:?}");
    e.close().unwrap();
}
