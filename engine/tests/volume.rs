//! Volumes (engine::volume): striping across object boundaries, sparse reads, trim and
//! write-zeroes, resize, remove, list, persistence across a close, a Full-mode volume, bad
//! ranges and names, a power cut during a write load (every acknowledged write reads back
//! after recovery), and a device fault during one (every write answered exactly once).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use keel_drivers::sim::{SimClock, SimConfig, SimDevice};
use keel_engine::volume::{VolumeError, VolumeOptions, Volumes};
use keel_engine::{
    Cores, Engine, Idle, JournalMode, MkfsOptions, ReactorConfig, ShardConfig, Store,
};

fn sim(seed: u64) -> SimConfig {
    let mut c = SimConfig::new(512, 128 << 11); // 64 MiB
    c.volatile_write_cache = true;
    c.latency_ns = 2_000;
    c.seed = seed;
    c.clock = SimClock::real();
    c
}

fn rcfg() -> ReactorConfig {
    ReactorConfig {
        cores: Cores::Unpinned,
        idle: Idle::SHARED,
        ..ReactorConfig::default()
    }
}

fn open(dev: &SimDevice) -> (Arc<Engine<SimDevice>>, Volumes<SimDevice>) {
    let e = Arc::new(Engine::open(dev.clone(), ShardConfig::default(), rcfg()).unwrap());
    let v = Volumes::new(Arc::clone(&e)).unwrap();
    (e, v)
}

fn fresh(shards: u32, mode: JournalMode) -> SimDevice {
    let dev = SimDevice::new(sim(1)).unwrap();
    let mut o = MkfsOptions::new(mode);
    o.shards = shards;
    o.journal_bytes = 4 << 20;
    o.checkpoint_bytes = 2 << 20;
    Store::mkfs(&dev, &o).unwrap();
    dev
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut r = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| r.u8(..)).collect()
}

const OBJ: u64 = 16 << 10;

fn small(size: u64) -> VolumeOptions {
    VolumeOptions {
        size_bytes: size,
        object_bytes: OBJ,
        mode: JournalMode::MetadataOnly,
    }
}

#[test]
fn writes_stripe_across_object_boundaries_and_read_back() {
    let dev = fresh(2, JournalMode::MetadataOnly);
    let (_e, vols) = open(&dev);
    vols.create("disk", &small(1 << 20)).unwrap();
    let v = vols.open("disk").unwrap();
    // Unaligned, across three objects.
    let data = pattern(1, 40_000);
    v.write(OBJ - 1234, &data).unwrap();
    assert_eq!(v.read(OBJ - 1234, data.len()).unwrap(), data);
    // The bytes around it are still zero.
    assert_eq!(v.read(0, 100).unwrap(), vec![0; 100]);
    let whole = v.read(0, 1 << 20).unwrap();
    assert_eq!(&whole[(OBJ - 1234) as usize..][..data.len()], &data[..]);
    assert!(whole[(OBJ - 1234) as usize + data.len()..]
        .iter()
        .all(|b| *b == 0));
    // A large write (several transactions).
    let big = pattern(2, 1 << 20);
    v.write(0, &big).unwrap();
    assert_eq!(v.read(0, 1 << 20).unwrap(), big);
}

#[test]
fn unwritten_ranges_read_as_zeroes() {
    let dev = fresh(1, JournalMode::MetadataOnly);
    let (_e, vols) = open(&dev);
    vols.create("sparse", &small(4 << 20)).unwrap();
    let v = vols.open("sparse").unwrap();
    assert_eq!(v.read(0, 1 << 20).unwrap(), vec![0; 1 << 20]);
    v.write(3 * OBJ + 100, b"hello").unwrap();
    let r = v.read(3 * OBJ, OBJ as usize).unwrap();
    assert_eq!(&r[100..105], b"hello");
    assert!(r[..100].iter().chain(&r[105..]).all(|b| *b == 0));
    // Only the written object exists, and it holds one page.
    let names = _e.list_objects(v.info().coll).unwrap();
    assert_eq!(names.len(), 2, "{names:?}"); // header + one data object
    let st = _e.stat(v.info().coll, b"data.0000000000000003").unwrap();
    assert_eq!(st.allocated_bytes, 4096);
}

#[test]
fn trim_and_write_zeroes_zero_and_free() {
    let dev = fresh(1, JournalMode::MetadataOnly);
    let (e, vols) = open(&dev);
    vols.create("z", &small(1 << 20)).unwrap();
    let v = vols.open("z").unwrap();
    let data = pattern(3, 256 << 10);
    v.write(0, &data).unwrap();
    // Unaligned zeroing across objects.
    v.write_zeroes(OBJ - 10, OBJ + 20).unwrap();
    let mut want = data.clone();
    want[(OBJ - 10) as usize..(2 * OBJ + 10) as usize].fill(0);
    assert_eq!(v.read(0, data.len()).unwrap(), want);
    // Whole-object trim frees the pages.
    v.trim(4 * OBJ, 2 * OBJ).unwrap();
    want[(4 * OBJ) as usize..(6 * OBJ) as usize].fill(0);
    assert_eq!(v.read(0, data.len()).unwrap(), want);
    let st = e.stat(v.info().coll, b"data.0000000000000004").unwrap();
    assert_eq!(st.allocated_bytes, 0);
    // Zeroes past what was ever written: still zero, still in range.
    v.write_zeroes(900 << 10, 100 << 10).unwrap();
    assert_eq!(v.read(900 << 10, 100 << 10).unwrap(), vec![0; 100 << 10]);
    v.flush().unwrap();
}

#[test]
fn requests_past_the_end_are_refused_and_change_nothing() {
    let dev = fresh(1, JournalMode::MetadataOnly);
    let (_e, vols) = open(&dev);
    vols.create("r", &small(64 << 10)).unwrap();
    let v = vols.open("r").unwrap();
    let past = |r: Result<_, VolumeError>| matches!(r, Err(VolumeError::OutOfRange { .. }));
    assert!(past(v.read(60 << 10, 8 << 10).map(|_| ())));
    assert!(past(v.write(64 << 10, b"x")));
    assert!(past(v.write_zeroes(u64::MAX, 2)));
    assert!(past(v.trim(0, (64 << 10) + 1)));
    assert_eq!(v.read(0, 64 << 10).unwrap(), vec![0; 64 << 10]);
    v.write((64 << 10) - 1, b"y").unwrap();
}

#[test]
fn create_list_resize_remove_and_persist() {
    let dev = fresh(4, JournalMode::MetadataOnly);
    {
        let (e, vols) = open(&dev);
        assert!(vols.list().unwrap().is_empty());
        vols.create("b", &small(1 << 20)).unwrap();
        vols.create("a", &VolumeOptions::new(8 << 20)).unwrap();
        assert!(matches!(
            vols.create("a", &VolumeOptions::new(8 << 20)),
            Err(VolumeError::Exists(_))
        ));
        assert!(matches!(
            vols.create("", &VolumeOptions::new(8 << 20)),
            Err(VolumeError::BadName { .. })
        ));
        assert!(matches!(
            vols.create("odd", &VolumeOptions::new(1000)),
            Err(VolumeError::Geometry(_))
        ));
        let mut bad = small(1 << 20);
        bad.object_bytes = 3000;
        assert!(matches!(
            vols.create("odd", &bad),
            Err(VolumeError::Geometry(_))
        ));
        assert_eq!(vols.list().unwrap(), ["a", "b"]);
        assert_eq!(vols.info("a").unwrap().object_bytes, 4 << 20);
        vols.open("b")
            .unwrap()
            .write(0, &pattern(5, 1 << 20))
            .unwrap();
        // Shrink to 2.5 objects: the rest is discarded; grow back: zeroes.
        let cut = 2 * OBJ + OBJ / 2;
        vols.resize("b", cut).unwrap();
        vols.resize("b", 1 << 20).unwrap();
        let v = vols.open("b").unwrap();
        let mut want = pattern(5, 1 << 20);
        want[cut as usize..].fill(0);
        assert_eq!(v.read(0, 1 << 20).unwrap(), want);
        assert_eq!(e.list_objects(v.info().coll).unwrap().len(), 1 + 3);
        vols.remove("a").unwrap();
        assert!(matches!(vols.open("a"), Err(VolumeError::NoSuchVolume(_))));
        drop((v, vols));
        Arc::try_unwrap(e).unwrap().close().unwrap();
    }
    // After a clean close, everything is there.
    let (_e, vols) = open(&dev);
    assert_eq!(vols.list().unwrap(), ["b"]);
    let v = vols.open("b").unwrap();
    assert_eq!(v.size_bytes(), 1 << 20);
    let mut want = pattern(5, 1 << 20);
    want[(2 * OBJ + OBJ / 2) as usize..].fill(0);
    assert_eq!(v.read(0, 1 << 20).unwrap(), want);
    // Remove the last one: its collection goes too.
    let coll = v.info().coll;
    vols.remove("b").unwrap();
    assert!(vols.list().unwrap().is_empty());
    assert!(!_e.list_collections().unwrap().contains(&coll));
}

#[test]
fn a_full_mode_volume_goes_through_the_full_journal() {
    let dev = fresh(1, JournalMode::MetadataOnly);
    let (e, vols) = open(&dev);
    let mut o = small(1 << 20);
    o.mode = JournalMode::Full;
    vols.create("full", &o).unwrap();
    vols.create("meta", &small(1 << 20)).unwrap();
    let before = e.stats().unwrap().total().shards.full_journal_txns;
    let v = vols.open("full").unwrap();
    assert_eq!(v.info().mode, JournalMode::Full);
    v.write(0, &pattern(6, 8192)).unwrap();
    v.write(0, &pattern(7, 8192)).unwrap();
    let mid = e.stats().unwrap().total().shards.full_journal_txns;
    assert_eq!(mid - before, 2);
    let m = vols.open("meta").unwrap();
    m.write(0, &pattern(8, 8192)).unwrap();
    assert_eq!(e.stats().unwrap().total().shards.full_journal_txns, mid);
    assert_eq!(v.read(0, 8192).unwrap(), pattern(7, 8192));
}

#[test]
fn acknowledged_writes_survive_a_power_cut_during_a_write_load() {
    let dev = fresh(2, JournalMode::MetadataOnly);
    let (e, vols) = open(&dev);
    const BLOCK: u64 = 4096;
    const BLOCKS: u64 = 1024; // a 4 MiB volume
    vols.create("crash", &small(BLOCKS * BLOCK)).unwrap();
    let v = Arc::new(vols.open("crash").unwrap());
    let acked: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default(); // (block, seed)
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..4u64 {
        let (v, acked, stop) = (Arc::clone(&v), Arc::clone(&acked), Arc::clone(&stop));
        threads.push(std::thread::spawn(move || {
            // Each thread owns the blocks b with b % 4 == t and writes each at most once,
            // with up to 8 writes in flight.
            let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, u64, bool)>(64);
            let mut inflight = 0;
            for b in (t..BLOCKS).step_by(4) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let seed = b * 1000 + t;
                let tx = tx.clone();
                v.write_async(
                    b * BLOCK,
                    pattern(seed, BLOCK as usize),
                    Box::new(move |r| {
                        let _ = tx.try_send((b, seed, r.is_ok()));
                    }),
                );
                inflight += 1;
                while inflight >= 8 {
                    let (b, s, ok) = rx.recv().unwrap();
                    inflight -= 1;
                    if ok {
                        acked.lock().unwrap().push((b, s));
                    }
                }
            }
            drop(tx);
            while let Ok((b, s, ok)) = rx.recv() {
                if ok {
                    acked.lock().unwrap().push((b, s));
                }
            }
        }));
    }
    // Cut the power once a few hundred writes are acknowledged, with more in flight.
    while acked.lock().unwrap().len() < 300 {
        std::thread::yield_now();
    }
    let acked_at_cut: Vec<_> = acked.lock().unwrap().clone();
    let (image, _) = dev.power_cut();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    drop((v, vols));
    drop(e);
    let dev2 = SimDevice::from_image(sim(2), image).unwrap();
    let (e2, vols2) = open(&dev2);
    let v = vols2.open("crash").unwrap();
    for (b, seed) in &acked_at_cut {
        assert_eq!(
            v.read(b * BLOCK, BLOCK as usize).unwrap(),
            pattern(*seed, BLOCK as usize),
            "acknowledged block {b} lost"
        );
    }
    assert!(e2.fsck().unwrap().is_clean());
}

#[test]
fn a_device_fault_under_a_write_load_answers_every_write_once_and_loses_no_acknowledged_one() {
    use keel_drivers::sim::Fault;
    use keel_drivers::{NvmeStatus, Op};
    let dev = fresh(2, JournalMode::MetadataOnly);
    let (e, vols) = open(&dev);
    const BLOCK: u64 = 4096;
    const BLOCKS: u64 = 512;
    vols.create("faulty", &small(BLOCKS * BLOCK)).unwrap();
    let v = Arc::new(vols.open("faulty").unwrap());
    // The 300th write from now fails, on whichever shard issues it; that shard stops.
    dev.inject(Fault::FailNth {
        op: Op::Write,
        nth: 300,
        status: NvmeStatus::WRITE_FAULT,
    });
    // Every block written once, 16 in flight; each answer counted.
    let answers: Arc<Mutex<Vec<(u64, bool)>>> = Arc::default();
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(BLOCKS as usize);
    let mut inflight = 0;
    for b in 0..BLOCKS {
        let (answers, tx) = (Arc::clone(&answers), tx.clone());
        v.write_async(
            b * BLOCK,
            pattern(b + 77, BLOCK as usize),
            Box::new(move |r| {
                answers.lock().unwrap().push((b, r.is_ok()));
                let _ = tx.send(());
            }),
        );
        inflight += 1;
        while inflight >= 16 {
            rx.recv_timeout(std::time::Duration::from_secs(60))
                .expect("a write was never answered");
            inflight -= 1;
        }
    }
    while inflight > 0 {
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("a write was never answered");
        inflight -= 1;
    }
    let answers = answers.lock().unwrap().clone();
    let mut blocks: Vec<u64> = answers.iter().map(|(b, _)| *b).collect();
    blocks.sort_unstable();
    blocks.dedup();
    assert_eq!(blocks.len(), answers.len(), "a write was answered twice");
    assert_eq!(answers.len() as u64, BLOCKS, "every write answered");
    assert!(
        answers.iter().any(|(_, ok)| !ok),
        "the fault failed no write"
    );
    assert!(answers.iter().any(|(_, ok)| *ok));
    // The acknowledged writes survive a power cut.
    let (image, _) = dev.power_cut();
    drop((v, vols));
    drop(e);
    let dev2 = SimDevice::from_image(sim(3), image).unwrap();
    let (e2, vols2) = open(&dev2);
    let v = vols2.open("faulty").unwrap();
    for (b, ok) in &answers {
        if *ok {
            assert_eq!(
                v.read(b * BLOCK, BLOCK as usize).unwrap(),
                pattern(b + 77, BLOCK as usize),
                "acknowledged block {b} lost"
            );
        }
    }
    assert!(e2.fsck().unwrap().is_clean());
}
