//! Tests of the engine benchmark (engine.rs): measured operations, reactors, write amplification, limits.

use keel_drivers::sim::{SimConfig, SimDevice};
use keel_drivers::Op;

use super::*;

fn store(mode: JournalMode, qd: u32) -> Store<SimDevice> {
    let mut cfg = SimConfig::new(512, (64 << 20) / 512);
    cfg.volatile_write_cache = true;
    let dev = SimDevice::new(cfg).unwrap();
    Store::mkfs(&dev, &MkfsOptions::new(mode)).unwrap();
    let mut store = Store::open(dev, shard_config(qd, 4096)).unwrap();
    let mut t = Transaction::new();
    t.mkcoll(COLL);
    store.submit_sync(t).unwrap();
    store
}

fn spec(mode: JournalMode, workload: EngineWorkload, qd: u32, stop: Stop) -> EngineSpec {
    EngineSpec {
        mode,
        shape: Shape {
            workload,
            bs: 4096,
            objects: 16,
            object_size: 64 << 10,
        },
        qd,
        warmup: Duration::ZERO,
        stop,
        seed: 5,
    }
}

#[test]
fn an_ops_budget_is_measured_exactly_and_counted() {
    for workload in [
        EngineWorkload::Randwrite,
        EngineWorkload::Overwrite,
        EngineWorkload::Append,
        EngineWorkload::Create,
        EngineWorkload::Mixed,
    ] {
        let mode = JournalMode::MetadataOnly;
        let mut store = store(mode, 8);
        let s = spec(mode, workload, 8, Stop::Ops(500));
        let run = measure(&mut store, &s).unwrap();
        assert_eq!(run.ops, 500, "{workload:?}");
        assert_eq!(run.latency_ns.len(), 500);
        assert_eq!(run.shards.txns_committed, 500);
        assert_eq!(run.shards.txns_failed, 0);
        let writes = if workload == EngineWorkload::Mixed {
            // setattr carries no data.
            assert!(run.shards.client_bytes < 500 * 4096);
            run.shards.client_bytes / 4096
        } else {
            assert_eq!(run.shards.client_bytes, 500 * 4096, "{workload:?}");
            500
        };
        // Each write's data once, in place or fresh, plus the journal.
        assert!(run.device.bytes(Op::Write) > writes * 4096, "{workload:?}");
        assert!(run.journal.cmds(Op::Write) > 0);
        assert!(store.fsck().is_clean(), "{:?}", store.fsck());
    }
}

#[test]
fn reactors_share_the_load_and_count_it_exactly() {
    let mut cfg = SimConfig::new(512, (64 << 20) / 512);
    cfg.volatile_write_cache = true;
    let dev = SimDevice::new(cfg).unwrap();
    let mut mk = MkfsOptions::new(JournalMode::MetadataOnly);
    mk.shards = 2;
    Store::mkfs(&dev, &mk).unwrap();
    let rcfg = ReactorConfig {
        cores: Cores::Unpinned,
        idle: Idle::SHARED,
        ..ReactorConfig::default()
    };
    let engine = Engine::open(dev, shard_config(8, 4096), rcfg).unwrap();
    let colls = one_coll_per_shard(2);
    assert_ne!(shard_for(colls[0], 2), shard_for(colls[1], 2));
    for &c in &colls {
        let mut t = Transaction::new();
        t.mkcoll(c);
        engine.submit_sync(t).unwrap();
    }
    let s = spec(
        JournalMode::MetadataOnly,
        EngineWorkload::Mixed,
        8,
        Stop::Ops(600),
    );
    let run = measure_reactors(&engine, &s, &colls).unwrap();
    assert_eq!(run.ops, 600);
    assert_eq!(run.latency_ns.len(), 600);
    assert_eq!(run.shards.txns_committed, 600);
    assert_eq!(run.reactors.len(), 2);
    let per: Vec<u64> = run.reactors.iter().map(|r| r.txns_committed).collect();
    assert_eq!(per.iter().sum::<u64>(), 600);
    assert!(per.iter().all(|n| *n > 150), "{per:?}");
    assert!(engine.fsck().unwrap().is_clean());
    engine.close().unwrap();
}

#[test]
fn overwrites_stay_in_place_and_full_mode_writes_twice() {
    let mut meta = store(JournalMode::MetadataOnly, 4);
    let s = spec(
        JournalMode::MetadataOnly,
        EngineWorkload::Overwrite,
        4,
        Stop::Ops(300),
    );
    let run = measure(&mut meta, &s).unwrap();
    assert_eq!(run.shards.overwrite_pages, 300);
    assert_eq!(run.shards.fresh_pages, 0);

    let mut full = store(JournalMode::Full, 4);
    let s = spec(
        JournalMode::Full,
        EngineWorkload::Overwrite,
        4,
        Stop::Ops(300),
    );
    let run = measure(&mut full, &s).unwrap();
    assert_eq!(run.shards.full_journal_txns, 300);
    let client = run.shards.client_bytes as f64;
    assert!(
        run.device.bytes(Op::Write) as f64 >= 2.0 * client,
        "{run:?}"
    );
}

#[test]
fn a_duration_is_respected() {
    let mode = JournalMode::MetadataOnly;
    let mut store = store(mode, 4);
    let mut s = spec(mode, EngineWorkload::Randwrite, 4, Stop::Seconds(0.2));
    s.warmup = Duration::from_millis(50);
    let run = measure(&mut store, &s).unwrap();
    let secs = run.elapsed.as_secs_f64();
    assert!((0.2..0.5).contains(&secs), "{secs}");
    assert!(run.ops > 10);
    assert_eq!(run.shards.txns_committed, run.ops);
}

#[test]
fn objects_that_do_not_fit_are_refused() {
    let cli = |extra: &[&str]| {
        use clap::Parser;
        let mut all = vec!["keel-bench", "engine", "--driver", "sim", "--mode", "full"];
        all.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(all).unwrap().command {
            crate::cli::Command::Engine(e) => e,
            _ => unreachable!(),
        }
    };
    let args = cli(&["--objects", "64", "--object-size", "4m"]);
    let err = shape(&args, 128 << 20).unwrap_err().to_string();
    assert!(err.contains("do not fit in 90%"), "{err}");
    let args = cli(&["--objects", "100000"]);
    let err = shape(&args, 128 << 20).unwrap_err().to_string();
    assert!(err.contains("lower --objects"), "{err}");
    let args = cli(&[]);
    let s = shape(&args, 224 << 20).unwrap();
    assert_eq!(s.object_size, 64 << 10);
}
