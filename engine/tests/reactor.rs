//! The store run by reactors (engine::reactor): reads and queries through the owning
//! reactor, transactions confined to one shard (a cross-shard one refused, changing
//! nothing), back-pressure, deterministic stepped mode, shutdown with work in flight, drop
//! without close, pinning, recovery of every shard after a power cut, and a device fault
//! under load (every transaction answered once, close reports it, nothing acknowledged lost).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use keel_drivers::sim::{SimClock, SimConfig, SimDevice};
use keel_engine::{
    shard_for, CompletionRing, Cores, Engine, Idle, JournalMode, MkfsOptions, Notify,
    ReactorConfig, ShardConfig, Store, StoreError, Transaction,
};

fn sim(seed: u64, clock: SimClock) -> SimConfig {
    let mut c = SimConfig::new(512, 64 << 11); // 32 MiB
    c.volatile_write_cache = true;
    c.latency_ns = 5_000;
    c.jitter_ns = 5_000;
    c.seed = seed;
    c.clock = clock;
    c
}

fn small() -> ShardConfig {
    ShardConfig {
        io_bufs: 64,
        journal_bufs: 16,
        max_txns: 64,
        ..ShardConfig::default()
    }
}

fn mkfs(dev: &SimDevice, shards: u32, mode: JournalMode) {
    let mut o = MkfsOptions::new(mode);
    o.shards = shards;
    o.uuid = Some([4; 16]);
    o.journal_bytes = 512 << 10;
    o.checkpoint_bytes = 1 << 20;
    Store::mkfs(dev, &o).unwrap();
}

fn threaded() -> ReactorConfig {
    ReactorConfig {
        cores: Cores::Unpinned,
        idle: Idle::SHARED,
        ..ReactorConfig::default()
    }
}

fn engine(shards: u32, rcfg: ReactorConfig) -> Engine<SimDevice> {
    let dev = SimDevice::new(sim(1, SimClock::real())).unwrap();
    mkfs(&dev, shards, JournalMode::MetadataOnly);
    Engine::open(dev, small(), rcfg).unwrap()
}

/// `n` collections, at least one on every shard of `shards`, each on a known shard.
fn colls_covering(shards: usize, per_shard: usize) -> Vec<u64> {
    let mut count = vec![0; shards];
    let mut out = Vec::new();
    for c in 1u64.. {
        let s = shard_for(c, shards);
        if count[s] < per_shard {
            count[s] += 1;
            out.push(c);
        }
        if count.iter().all(|n| *n == per_shard) {
            break;
        }
    }
    out
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed as u8).wrapping_mul(31).wrapping_add((i % 251) as u8))
        .collect()
}

fn mk(colls: &[u64], e: &Engine<SimDevice>) {
    for &c in colls {
        let mut t = Transaction::new();
        t.mkcoll(c);
        e.submit_sync(t).unwrap();
    }
}

#[test]
fn reads_and_queries_go_through_the_owning_reactor() {
    let e = engine(3, threaded());
    let colls = colls_covering(3, 2);
    mk(&colls, &e);
    for &c in &colls {
        let mut t = Transaction::new();
        t.write(c, b"a".to_vec(), 0, pattern(c, 9000))
            .setattr(c, b"a".to_vec(), b"k".to_vec(), b"v".to_vec())
            .omap_set(
                c,
                b"a".to_vec(),
                vec![(b"o".to_vec(), c.to_le_bytes().to_vec())],
            )
            .clone_object(c, b"a".to_vec(), b"b".to_vec());
        e.submit_sync(t).unwrap();
    }
    for &c in &colls {
        assert_eq!(e.read(c, b"a", 0, 1 << 20).unwrap(), pattern(c, 9000));
        assert_eq!(
            e.read(c, b"b", 100, 50).unwrap(),
            pattern(c, 9000)[100..150]
        );
        assert_eq!(e.stat(c, b"b").unwrap().size, 9000);
        assert_eq!(e.getattr(c, b"b", b"k").unwrap(), b"v");
        assert_eq!(e.omap_get(c, b"a", b"o").unwrap(), c.to_le_bytes());
        assert_eq!(
            e.list_objects(c).unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        let (attrs, omap) = e.attrs_and_omap(c, b"a").unwrap();
        assert_eq!((attrs.len(), omap.len()), (1, 1));
    }
    let mut sorted = colls.clone();
    sorted.sort_unstable();
    assert_eq!(e.list_collections().unwrap(), sorted);
    assert!(matches!(
        e.read(colls[0], b"nope", 0, 1),
        Err(StoreError::NoSuchObject(_))
    ));
    assert!(matches!(
        e.getattr(colls[0], b"a", b"nope"),
        Err(StoreError::NoSuchAttr { .. })
    ));
    let st = e.stats().unwrap();
    assert_eq!(st.reactors.len(), 3);
    for r in &st.reactors {
        // Two mkcolls and two transactions per shard; reads answered there too.
        assert_eq!(r.shard.txns_committed, 4, "{r:?}");
        assert!(r.looped.queries >= 8, "{r:?}");
        assert!(r.looped.iterations > 0 && r.looped.busy_iterations > 0);
        assert!(r.shard.batches > 0);
    }
    assert!(e.fsck().unwrap().is_clean());
    e.close().unwrap();
}

#[test]
fn a_cross_shard_transaction_is_refused_and_changes_nothing() {
    let colls = colls_covering(2, 1);
    let (a, b) = (colls[0], colls[1]);
    assert_ne!(shard_for(a, 2), shard_for(b, 2));
    for stepped in [true, false] {
        let e = engine(
            2,
            if stepped {
                ReactorConfig::stepped()
            } else {
                threaded()
            },
        );
        mk(&[a, b], &e);
        let mut t = Transaction::new();
        t.write(a, b"x".to_vec(), 0, vec![1; 100])
            .write(b, b"y".to_vec(), 0, vec![2; 100]);
        let ring = CompletionRing::new(4);
        let err = e
            .try_submit(t, Notify::ring(&ring, 7).unwrap())
            .unwrap_err();
        match &err.error {
            StoreError::CrossShard { first, other, .. } => assert_eq!((*first, *other), (a, b)),
            other => panic!("expected CrossShard, got {other:?}"),
        }
        assert_eq!(err.error.errno(), -18, "EXDEV");
        assert_eq!(err.txn.ops().len(), 2, "the transaction comes back whole");
        drop(err);
        assert_eq!(ring.outstanding(), 0, "a refused notify frees its slot");
        assert!(ring.pop().is_none());
        // Nothing changed, and the same ops split per shard commit.
        assert!(e.list_objects(a).unwrap().is_empty());
        assert!(e.list_objects(b).unwrap().is_empty());
        let mut t = Transaction::new();
        t.mkcoll(a + 1_000_000).mkcoll(b);
        if shard_for(a + 1_000_000, 2) != shard_for(b, 2) {
            assert!(matches!(
                e.submit_sync(t),
                Err(StoreError::CrossShard { .. })
            ));
        }
        e.close().unwrap();
    }
    // The single-threaded store refuses the same way.
    let dev = SimDevice::new(sim(1, SimClock::real())).unwrap();
    mkfs(&dev, 2, JournalMode::Full);
    let mut s = Store::open(dev, small()).unwrap();
    let mut t = Transaction::new();
    t.mkcoll(a).mkcoll(b);
    assert!(matches!(s.queue(t), Err(StoreError::CrossShard { .. })));
    assert!(s.list_collections().is_empty());
}

/// Everything a run shows: completion order, counters, contents.
type Observed = (Vec<(u64, bool)>, Vec<u64>, BTreeMap<(u64, u8), Vec<u8>>);

/// A seeded workload over 3 shards, stepped; returns everything observable.
fn stepped_run(seed: u64) -> Observed {
    let dev = SimDevice::new(sim(seed, SimClock::discrete())).unwrap();
    mkfs(&dev, 3, JournalMode::MetadataOnly);
    // The group-commit wait runs on the wall clock: replaying exactly needs it off.
    let cfg = ShardConfig {
        max_batch_wait_us: 0,
        ..small()
    };
    let e = Engine::open(dev, cfg, ReactorConfig::stepped()).unwrap();
    let colls = colls_covering(3, 2);
    mk(&colls, &e);
    let mut rng = fastrand::Rng::with_seed(seed);
    let ring = CompletionRing::new(32);
    let mut order = Vec::new();
    let mut tag = 0;
    while tag < 400 || ring.outstanding() > 0 {
        while tag < 400 && ring.outstanding() < ring.capacity() {
            let c = colls[rng.usize(0..colls.len())];
            let mut t = Transaction::new();
            let len = rng.usize(1..9000);
            t.write(c, vec![rng.u8(0..4)], rng.u64(0..20_000), pattern(tag, len));
            if rng.u8(0..8) == 0 {
                t.setattr(c, vec![9], b"k".to_vec(), vec![]);
                t.remove(c, vec![9]); // fails when 9 does not exist yet... then exists
            }
            e.try_submit(t, Notify::ring(&ring, tag).unwrap()).unwrap();
            tag += 1;
        }
        e.step();
        while let Some((t, r)) = ring.pop() {
            order.push((t, r.is_ok()));
        }
    }
    let stats = e.stats().unwrap();
    let counters: Vec<u64> = stats
        .reactors
        .iter()
        .flat_map(|r| {
            [
                r.looped.iterations,
                r.looped.busy_iterations,
                r.shard.txns_committed,
                r.shard.batches,
                r.shard.batch_entries,
            ]
        })
        .collect();
    let mut objs = BTreeMap::new();
    for &c in &colls {
        for n in 0..4u8 {
            if let Ok(d) = e.read(c, &[n], 0, 1 << 20) {
                objs.insert((c, n), d);
            }
        }
    }
    e.close().unwrap();
    (order, counters, objs)
}

#[test]
fn stepped_mode_replays_exactly() {
    let a = stepped_run(11);
    let b = stepped_run(11);
    assert_eq!(a.0.len(), 400);
    assert!(a.0.iter().filter(|(_, ok)| *ok).count() > 300);
    // Completions from three shards interleave, not in submission order.
    assert!(a.0.windows(2).any(|w| w[0].0 > w[1].0));
    assert_eq!(a.0, b.0, "completion order differs");
    assert_eq!(a.1, b.1, "counters differ");
    assert_eq!(a.2, b.2, "contents differ");
    let c = stepped_run(12);
    assert_ne!(a.0, c.0, "another seed, another run");
}

#[test]
fn a_full_ring_pushes_back_and_loses_nothing() {
    let mut rcfg = ReactorConfig::stepped();
    rcfg.ring_depth = 4;
    let e = engine(1, rcfg);
    mk(&[1], &e);
    let ring = CompletionRing::new(16);
    let mut accepted = 0;
    let mut refused = None;
    for i in 0..5u64 {
        let mut t = Transaction::new();
        t.write(1, vec![i as u8], 0, vec![i as u8; 4096]);
        match e.try_submit(t, Notify::ring(&ring, i).unwrap()) {
            Ok(()) => accepted += 1,
            Err(err) => refused = Some((i, err)),
        }
    }
    assert_eq!(accepted, 4);
    let (i, err) = refused.expect("the fifth is refused");
    assert!(matches!(err.error, StoreError::Busy(4)), "{:?}", err.error);
    assert_eq!(err.error.errno(), -11);
    // The reactor takes the ring's messages; the refused one goes in on retry, whole.
    e.step();
    e.try_submit(err.txn, err.notify).unwrap();
    let mut got = Vec::new();
    while let Some((tag, r)) = e.wait_completion(&ring).unwrap() {
        r.unwrap();
        got.push(tag);
    }
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    assert_eq!(e.read(1, &[i as u8], 0, 4096).unwrap(), vec![i as u8; 4096]);
    // A completion ring is bounded too: as many outstanding as it holds.
    let small = CompletionRing::new(2);
    let _a = Notify::ring(&small, 0).unwrap();
    let _b = Notify::ring(&small, 1).unwrap();
    assert!(matches!(Notify::ring(&small, 2), Err(StoreError::Busy(2))));
    drop(_a);
    assert!(Notify::ring(&small, 2).is_ok());
    // Blocking submit waits for room instead (stepped: it turns the reactors).
    for i in 0..20u64 {
        let mut t = Transaction::new();
        t.touch(1, format!("t{i}").into_bytes());
        e.submit(t, Notify::none()).unwrap();
    }
    e.drain().unwrap();
    assert_eq!(e.list_objects(1).unwrap().len(), 25);
    let st = e.stats().unwrap().reactors[0].looped;
    assert!(st.ring_len_max >= 4, "{st:?}");
    e.close().unwrap();
}

/// Threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.starts_with(prefix))
        .count()
}

#[test]
fn close_with_work_in_flight_answers_everything() {
    let dev = SimDevice::new(sim(3, SimClock::real())).unwrap();
    mkfs(&dev, 2, JournalMode::MetadataOnly);
    let e = Engine::open(dev.clone(), small(), threaded()).unwrap();
    let colls = colls_covering(2, 1);
    mk(&colls, &e);
    type Results = Vec<(u64, Result<(), String>)>;
    let results: Arc<Mutex<Results>> = Arc::default();
    let n = 300u64;
    for i in 0..n {
        let c = colls[i as usize % 2];
        let mut t = Transaction::new();
        t.write(c, format!("o{i}").into_bytes(), 0, pattern(i, 4096));
        let r = Arc::clone(&results);
        e.submit(
            t,
            Notify::callback(move |res| {
                r.lock().unwrap().push((i, res.map_err(|e| e.to_string())));
            }),
        )
        .unwrap();
    }
    e.close().unwrap();
    let results = results.lock().unwrap();
    assert_eq!(results.len() as u64, n, "every transaction answered once");
    let mut seen: Vec<u64> = results.iter().map(|(i, _)| *i).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len() as u64, n);
    // A clean close completes what was queued: all of it committed, and it is on disk.
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    let mut s = Store::open(dev, small()).unwrap();
    for i in 0..n {
        let c = colls[i as usize % 2];
        assert_eq!(
            s.read(c, format!("o{i}").as_bytes(), 0, 4096).unwrap(),
            pattern(i, 4096)
        );
    }
    // close checkpointed every shard: nothing to replay.
    assert!(s.replay_reports().iter().all(|r| r.batches == 0));
}

#[test]
fn dropping_an_engine_with_work_in_flight_is_safe_and_joins_its_threads() {
    let counted = Arc::new(AtomicU64::new(0));
    {
        let e = engine(
            2,
            ReactorConfig {
                thread_name: "keel-droptest".into(),
                ..threaded()
            },
        );
        if std::path::Path::new("/proc/self/task").exists() {
            assert_eq!(threads_named("keel-droptest"), 2);
        }
        let colls = colls_covering(2, 1);
        mk(&colls, &e);
        for i in 0..100u64 {
            let mut t = Transaction::new();
            t.write(colls[i as usize % 2], vec![1], i * 4096, vec![7; 4096]);
            let c = Arc::clone(&counted);
            e.submit(
                t,
                Notify::callback(move |_| {
                    c.fetch_add(1, Ordering::Relaxed);
                }),
            )
            .unwrap();
        }
    } // dropped, not closed
    assert_eq!(counted.load(Ordering::Relaxed), 100);
    assert_eq!(
        threads_named("keel-droptest"),
        0,
        "reactor threads left behind"
    );
}

#[test]
fn callbacks_run_on_the_reactor_where_blocking_calls_are_refused() {
    let e = Arc::new(engine(1, threaded()));
    mk(&[5], &e);
    let seen: Arc<Mutex<Option<(String, String, bool)>>> = Arc::default();
    let (e2, s2) = (Arc::clone(&e), Arc::clone(&seen));
    let mut t = Transaction::new();
    t.touch(5, b"x".to_vec());
    let ring = CompletionRing::new(1);
    let ring2 = Arc::clone(&ring);
    e.submit_sync({
        let mut t0 = Transaction::new();
        t0.touch(5, b"w".to_vec());
        t0
    })
    .unwrap();
    e.submit(
        t,
        Notify::callback(move |r| {
            r.unwrap();
            let name = std::thread::current().name().unwrap_or("").to_string();
            let mut t = Transaction::new();
            t.touch(5, b"y".to_vec());
            let blocked = format!("{:?}", e2.submit_sync(t.clone()));
            // A non-blocking submit from a callback works.
            let ok = e2.try_submit(t, Notify::ring(&ring2, 1).unwrap()).is_ok();
            *s2.lock().unwrap() = Some((name, blocked, ok));
        }),
    )
    .unwrap();
    e.drain().unwrap(); // the callback has run
    let (name, blocked, ok) = seen.lock().unwrap().clone().unwrap();
    assert_eq!(e.wait_completion(&ring).unwrap().unwrap().0, 1);
    assert_eq!(name, "keel-reactor-0");
    assert!(blocked.contains("OnReactor"), "{blocked}");
    assert!(ok);
    assert_eq!(e.stat(5, b"y").unwrap().size, 0);
    Arc::try_unwrap(e).unwrap().close().unwrap();
}

#[test]
fn a_reactor_runs_pinned_to_its_core() {
    let avail = ReactorConfig::available_cores();
    let Some(&last) = avail.last() else { return };
    let cores = vec![last, avail[0]];
    let e = engine(
        2,
        ReactorConfig {
            cores: Cores::List(cores.clone()),
            idle: Idle::SHARED,
            ..ReactorConfig::default()
        },
    );
    assert_eq!(e.cores(), &[Some(last), Some(avail[0])]);
    let colls = colls_covering(2, 1);
    mk(&colls, &e);
    for (i, &c) in colls.iter().enumerate() {
        let shard = e.shard_of(c);
        let aff: Arc<Mutex<Vec<usize>>> = Arc::default();
        let a2 = Arc::clone(&aff);
        let mut t = Transaction::new();
        t.touch(c, b"p".to_vec());
        let ring = CompletionRing::new(1);
        let r2 = Arc::clone(&ring);
        e.submit(
            t,
            Notify::callback(move |_| {
                // SAFETY-free check of the calling thread's mask.
                *a2.lock().unwrap() = core_affinity_now();
                let _ = r2; // keep the ring alive until here
            }),
        )
        .unwrap();
        e.drain().unwrap();
        assert_eq!(*aff.lock().unwrap(), vec![cores[shard]], "reactor {i}");
        drop(ring);
    }
    // A core list of the wrong length is a configuration error.
    let dev = SimDevice::new(sim(1, SimClock::real())).unwrap();
    mkfs(&dev, 2, JournalMode::MetadataOnly);
    let r = Engine::open(
        dev,
        small(),
        ReactorConfig {
            cores: Cores::List(vec![0]),
            ..ReactorConfig::default()
        },
    );
    assert!(matches!(r, Err(StoreError::Config(_))));
    e.close().unwrap();
}

/// The CPUs the calling thread may run on (sched_getaffinity through /proc).
fn core_affinity_now() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string();
    let mut out = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => out.push(part.parse().unwrap()),
        }
    }
    out
}

#[test]
fn every_shard_recovers_after_a_power_cut() {
    let dev = SimDevice::new(sim(5, SimClock::real())).unwrap();
    mkfs(&dev, 4, JournalMode::MetadataOnly);
    let e = Engine::open(dev.clone(), small(), threaded()).unwrap();
    let colls = colls_covering(4, 1);
    mk(&colls, &e);
    let ring = CompletionRing::new(64);
    for i in 0..200u64 {
        let c = colls[i as usize % 4];
        let mut t = Transaction::new();
        t.write(c, format!("o{i}").into_bytes(), 0, pattern(i, 3000));
        e.submit(t, Notify::ring(&ring, i).unwrap())
            .unwrap_or_else(|err| {
                // The ring is full: take a result and retry.
                e.wait_completion(&ring).unwrap().unwrap().1.unwrap();
                e.submit(err.txn, err.notify).unwrap();
            });
        while ring.outstanding() >= ring.capacity() - 1 {
            e.wait_completion(&ring).unwrap().unwrap().1.unwrap();
        }
    }
    while let Some((_, r)) = e.wait_completion(&ring).unwrap() {
        r.unwrap();
    }
    // Every transaction acknowledged; now the power goes, with the reactors running.
    let (image, _) = dev.power_cut();
    drop(e); // its shards fail on the dead device; the drop is still clean
    let dev2 = SimDevice::from_image(sim(6, SimClock::real()), image).unwrap();
    let mut s = Store::open(dev2, small()).unwrap();
    assert_eq!(s.replay_reports().len(), 4);
    for (i, r) in s.replay_reports().iter().enumerate() {
        assert!(r.batches > 0, "shard {i} replayed nothing: {r:?}");
    }
    for i in 0..200u64 {
        let c = colls[i as usize % 4];
        assert_eq!(
            s.read(c, format!("o{i}").as_bytes(), 0, 1 << 20).unwrap(),
            pattern(i, 3000)
        );
    }
    assert!(s.fsck().is_clean());
}

#[test]
fn a_device_fault_under_reactors_answers_every_transaction_once_and_loses_no_acknowledged_one() {
    use keel_drivers::sim::Fault;
    use keel_drivers::{NvmeStatus, Op};
    for (seed, nth) in [(7u64, 1u64), (8, 40), (9, 120)] {
        // A slow device: each shard has its most transactions in flight (max_txns) long
        // before the first write completes, so the fault finds the shard full.
        let mut cfg = sim(seed, SimClock::real());
        cfg.latency_ns = 1_000_000;
        let dev = SimDevice::new(cfg).unwrap();
        mkfs(&dev, 2, JournalMode::MetadataOnly);
        let e = Engine::open(dev.clone(), small(), threaded()).unwrap();
        let colls = colls_covering(2, 1);
        mk(&colls, &e);
        type Results = Vec<(u64, Result<(), String>)>;
        let results: Arc<Mutex<Results>> = Arc::default();
        // The nth write from now fails, on whichever shard issues it.
        dev.inject(Fault::FailNth {
            op: Op::Write,
            nth,
            status: NvmeStatus::WRITE_FAULT,
        });
        let n = 200u64;
        let mut refused = 0;
        for i in 0..n {
            let c = colls[i as usize % 2];
            let mut t = Transaction::new();
            t.write(c, format!("o{i}").into_bytes(), 0, pattern(i, 4096));
            let r = Arc::clone(&results);
            let notify = Notify::callback(move |res| {
                r.lock().unwrap().push((i, res.map_err(|e| e.to_string())));
            });
            match e.submit(t, notify) {
                Ok(()) => {}
                // The shard has stopped: refused at once, and no callback will run.
                Err(err) if matches!(err.error, StoreError::Failed(_)) => refused += 1,
                Err(err) => panic!("nth {nth}: submit: {}", err.error),
            }
        }
        // Bounded: a stopped shard that no longer drains its ring never sees the Stop.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(e.close()));
        let closed = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("nth {nth}: close hangs after a fault"));
        assert!(
            matches!(closed, Err(StoreError::Failed(ref why)) if why.contains("Write Fault")),
            "nth {nth}: close after a fault: {closed:?}"
        );
        let results = results.lock().unwrap();
        let mut seen: Vec<u64> = results.iter().map(|(i, _)| *i).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(
            seen.len(),
            results.len(),
            "nth {nth}: a transaction answered twice"
        );
        assert_eq!(
            results.len() as u64 + refused,
            n,
            "nth {nth}: every transaction answered"
        );
        assert!(
            results.iter().any(|(_, r)| r.is_err()),
            "nth {nth}: the fault failed nothing"
        );
        // The acknowledged ones survive a power cut.
        let (image, _) = dev.power_cut();
        let dev2 = SimDevice::from_image(sim(seed + 100, SimClock::real()), image).unwrap();
        let mut s = Store::open(dev2, small()).unwrap();
        for (i, r) in results.iter() {
            if r.is_ok() {
                let c = colls[*i as usize % 2];
                assert_eq!(
                    s.read(c, format!("o{i}").as_bytes(), 0, 1 << 20).unwrap(),
                    pattern(*i, 4096),
                    "nth {nth}: acknowledged o{i}"
                );
            }
        }
        assert!(s.fsck().is_clean(), "nth {nth}");
    }
}
