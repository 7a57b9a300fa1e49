//! The crash explorer over both journal modes: seeded workloads, power cuts at every kind
//! of point (recovery included), and the oracle of DESIGN §4 on every object afterwards.
//! `KEEL_CRASH_CYCLES` sets the cycles per mode (default 1000); `KEEL_CRASH_SEED` the seed.
//! The multi-shard runs (reactors, stepped on one thread) take `KEEL_CRASH_SHARD_CYCLES`
//! (default 200).

use keel_engine::crash::{run, CrashConfig};
use keel_engine::JournalMode;

fn explore(mode: JournalMode) {
    explore_shards(mode, 1, "KEEL_CRASH_CYCLES", 1000);
}

fn explore_shards(mode: JournalMode, shards: u32, cycles_var: &str, default_cycles: u64) {
    let cycles = std::env::var(cycles_var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cycles);
    let seed = std::env::var("KEEL_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x6b65_656c);
    let mut cfg = CrashConfig::new(mode, seed, cycles);
    cfg.shards = shards;
    let rep = run(&cfg, |_| {});
    eprintln!("{mode}, {shards} shard(s): {rep:#?}");
    assert_eq!(rep.cycles, cycles);
    assert_eq!(rep.violations, 0, "{mode}: {}", rep.failures.join("\n"));
    assert_eq!(rep.acked_lost, 0);
    // The explorer must really have cut at each kind of point and seen each outcome.
    let data_point = match mode {
        JournalMode::MetadataOnly => "data_before_record",
        JournalMode::Full => "home_writes",
    };
    for point in [
        "random",
        data_point,
        "in_batch",
        "in_checkpoint",
        "during_replay",
    ] {
        assert!(
            rep.crash_points.get(point).copied().unwrap_or(0) > 0 || cycles < 100,
            "{mode}: no cut at {point}: {:?}",
            rep.crash_points
        );
    }
    let acked: u64 = rep.classes.values().map(|c| c.acked).sum();
    let absent: u64 = rep.classes.values().map(|c| c.unacked_absent).sum();
    assert!(acked > 0);
    assert!(
        absent > 0 || cycles < 100,
        "no unacknowledged transaction was ever lost: the cuts are too gentle"
    );
    // Integrity after every recovery: no false corruption; and the cuts must really have
    // left torn overwrites and unconfirmed records to settle.
    let i = &rep.integrity;
    assert_eq!(i.corrupt, 0, "{mode}: corruption reported: {i:?}");
    assert!(
        i.pages > 0 && i.clean > 0,
        "{mode}: scrub checked nothing: {i:?}"
    );
    if mode == JournalMode::MetadataOnly && cycles >= 100 {
        assert!(i.torn > 0, "no torn overwrite was ever left: {i:?}");
        assert!(
            i.unconfirmed_dropped > 0,
            "no unconfirmed record was dropped: {i:?}"
        );
        assert!(i.atomic_cycles > 0, "{i:?}");
        // Without intents, interrupted overwrites read as corruption, each checked by the
        // oracle: the cuts must have left some.
        assert!(i.intents_off_cycles > 0, "{i:?}");
        assert!(
            i.corrupt_intents_off > 0,
            "no interrupted overwrite was left in an intents-off cycle: {i:?}"
        );
    }
}

#[test]
fn crash_explorer_metadata_only() {
    explore(JournalMode::MetadataOnly);
}

#[test]
fn crash_explorer_full() {
    explore(JournalMode::Full);
}

#[test]
fn crash_explorer_three_shards_metadata_only() {
    explore_shards(JournalMode::MetadataOnly, 3, "KEEL_CRASH_SHARD_CYCLES", 200);
}

#[test]
fn crash_explorer_two_shards_full() {
    explore_shards(JournalMode::Full, 2, "KEEL_CRASH_SHARD_CYCLES", 200);
}

#[test]
fn multi_shard_cycles_replay_exactly() {
    let mut cfg = CrashConfig::new(JournalMode::MetadataOnly, 99, 30);
    cfg.shards = 3;
    let a = run(&cfg, |_| {});
    let b = run(&cfg, |_| {});
    assert_eq!(a.violations, 0, "{}", a.failures.join("\n"));
    assert_eq!(
        format!("{:?} {:?}", a.crash_points, a.classes),
        format!("{:?} {:?}", b.crash_points, b.classes)
    );
}
