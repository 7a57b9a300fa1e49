//! What the store tests share: sim devices, small shard configurations, fresh stores.

pub use keel_drivers::sim::{Fault, SimClock, SimConfig, SimDevice};
pub use keel_drivers::{NvmeStatus, Op};
pub use keel_engine::{JournalMode, MkfsOptions, ShardConfig, Store, StoreError, Transaction};

pub const MODES: [JournalMode; 2] = [JournalMode::Full, JournalMode::MetadataOnly];

pub fn sim(blocks: u64, cache: bool, seed: u64) -> SimConfig {
    let mut c = SimConfig::new(512, blocks);
    c.volatile_write_cache = cache;
    c.seed = seed;
    c
}

pub fn small() -> ShardConfig {
    ShardConfig {
        io_bufs: 64,
        journal_bufs: 16,
        ..ShardConfig::default()
    }
}

pub fn fresh(mode: JournalMode, cfg: SimConfig) -> Store<SimDevice> {
    let dev = SimDevice::new(cfg).unwrap();
    let mut opts = MkfsOptions::new(mode);
    opts.uuid = Some([9; 16]);
    Store::mkfs(&dev, &opts).unwrap();
    Store::open(dev, small()).unwrap()
}

/// A fresh store with collection 1 made.
pub fn fresh_with_coll(mode: JournalMode, cfg: SimConfig) -> Store<SimDevice> {
    let mut s = fresh(mode, cfg);
    let mut t = txn();
    t.mkcoll(1);
    s.submit_sync(t).unwrap();
    s
}

pub fn txn() -> Transaction {
    Transaction::default()
}

pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i * 7 % 251) as u8))
        .collect()
}

/// A slow device (0.2–0.6 ms per command, 2 ms more per flush): with no batch wait,
/// batches are sealed while earlier ones are still in flight. The latencies are long
/// against a poll (even unoptimized), so the overlap does not depend on machine speed.
pub fn slow_flush(seed: u64) -> SimConfig {
    let mut c = sim(64 << 11, true, seed);
    c.latency_ns = 200_000;
    c.jitter_ns = 400_000;
    c.flush_latency_ns = 2_000_000;
    c
}

pub fn overlapping() -> ShardConfig {
    ShardConfig {
        max_batch_wait_us: 0,
        max_batches_in_flight: 4,
        ..small()
    }
}
