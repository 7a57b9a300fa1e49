//! `keel-bench crashlog`: crash tests with a real controller and a write log.
//!
//! `crashlog run` (in a guest, on QEMU's NVMe controller with `blklogwrites` under it)
//! formats a store on all of the device but its last [`RESERVE_BYTES`], then runs the
//! crash explorer's seeded workload ([`keel_engine::crash::workload`]) with its model, and
//! after every completion writes an *ack record* into the reserved tail: which
//! transactions the store has acknowledged so far. The record is written after the ack, so
//! in the write log it comes after every write that made those transactions durable: the
//! log itself says, at every point, what had been acknowledged.
//!
//! `crashlog check` (on the host) parses the log ([`crate::logwrites`]), regenerates the
//! same transactions from the seed, and at a sample of flush marks rebuilds two images a
//! power cut could have left (up to the flush and no further; and with the writes
//! completed after it too), opens each with the engine on the simulated device (recovery),
//! runs fsck, and checks with the explorer's oracle that every transaction acknowledged
//! before that point is present with its exact data, and that the rest is a prefix per
//! object (DESIGN §4, for the store's journal mode).
//!
//! Record layout (little-endian, [`RECORD_BYTES`]): magic `KEELACK1`, seq u64, generated
//! u64 (transactions handed to the store so far), total u64, then two bitmaps of `total`
//! bits: acknowledged, and acknowledged with success.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use keel_drivers::sim::{SimClock, SimConfig, SimDevice, SimImage};
use keel_drivers::{BlockDevice, Command, DmaPool, Geometry, PoolConfig, QpairOptions, QueuePair};
use keel_engine::crash::model::Model;
use keel_engine::crash::oracle::{Actual, Oracle, Submitted};
use keel_engine::crash::workload::{Workload, COLLS, SPARE_COLL};
use keel_engine::superblock::Superblock;
use keel_engine::{JournalMode, MkfsOptions, ObjKey, ShardConfig, Store, Transaction, PAGE};
use serde::Serialize;

use crate::cli::{DeviceArgs, DeviceDefaults, Mode};
use crate::device::{self, DeviceJob};
use crate::error::BenchError;
use crate::logwrites::WriteLog;

/// Bytes at the end of the device kept out of the store, for the ack records.
pub const RESERVE_BYTES: u64 = 1 << 20;
/// Bytes of one ack record.
pub const RECORD_BYTES: usize = 4096;
const MAGIC: &[u8; 8] = b"KEELACK1";
const HEADER: usize = 32;
/// Most transactions a run may have: both bitmaps fit in one record.
pub const MAX_TXNS: u64 = ((RECORD_BYTES - HEADER) * 8 / 2) as u64;
/// Transactions in flight at most (as the crash explorer).
const MAX_INFLIGHT: usize = 16;
/// A checkpoint is asked for every this many transactions, so the log has some.
const CHECKPOINT_EVERY: u64 = 97;

/// `keel-bench crashlog`.
#[derive(Debug, Args)]
pub struct CrashlogArgs {
    /// run (in the guest) or check (on the host).
    #[command(subcommand)]
    pub command: CrashlogCommand,
}

/// The two halves.
#[derive(Debug, Subcommand)]
pub enum CrashlogCommand {
    /// Format the device, run the seeded workload, write ack records to the device's tail.
    Run(RunArgs),
    /// Rebuild crash images from a write log and check recovery, fsck and the guarantees.
    Check(CheckArgs),
}

/// What both halves must agree on.
#[derive(Debug, Args)]
pub struct WorkloadArgs {
    /// The store's journal mode.
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// Seed of the workload.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Transactions in the run.
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u64).range(1..=MAX_TXNS))]
    pub txns: u64,
}

/// `crashlog run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The device (its last 1 MiB holds the ack records; the store gets the rest).
    #[command(flatten)]
    pub device: DeviceArgs,
    /// The workload.
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Print one JSON object instead of a line.
    #[arg(long)]
    pub json: bool,
}

/// `crashlog check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The write log (dm-log-writes format, e.g. from QEMU's blklogwrites).
    #[arg(long)]
    pub log: PathBuf,
    /// The device's image as it was before the run.
    #[arg(long)]
    pub base: PathBuf,
    /// The workload the guest ran.
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Flush marks to check (spread over the log, the last one always), each twice.
    #[arg(long, default_value_t = 16)]
    pub points: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

const RUN_DEVICE: DeviceDefaults = DeviceDefaults {
    size: None,
    block_size: 512,
    sim_write_cache: true,
};

/// The crash explorer's shard configuration: small pools, a small journal that wraps.
fn shard_cfg() -> ShardConfig {
    ShardConfig {
        io_bufs: 96,
        io_buf_bytes: 64 << 10,
        journal_bufs: 16,
        journal_buf_bytes: 64 << 10,
        data_depth: 64,
        journal_depth: 16,
        ..ShardConfig::default()
    }
}

fn mkfs_options(mode: JournalMode) -> MkfsOptions {
    let mut mk = MkfsOptions::new(mode);
    mk.journal_bytes = 256 << 10;
    mk.checkpoint_bytes = 2 << 20;
    mk.uuid = Some([7; 16]);
    mk
}

fn setup_txn() -> Transaction {
    let mut t = Transaction::default();
    for c in COLLS {
        t.mkcoll(c);
    }
    t
}

/// The workload's transactions, as the guest generated them: each is generated against the
/// model with every earlier one applied (or refused) in order. Also returns, per
/// transaction, whether the model says it succeeds.
pub fn transactions(seed: u64, txns: u64) -> (Model, Vec<(Transaction, bool)>) {
    let mut model = Model::default();
    model.apply(&setup_txn());
    let start = model.clone();
    let mut w = Workload::new(seed ^ 1);
    let all = (0..txns)
        .map(|_| {
            let (t, _) = w.next(&model);
            let ok = model.apply(&t);
            (t, ok)
        })
        .collect();
    (start, all)
}

/// One ack record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckRecord {
    /// Sequence number, from 0.
    pub seq: u64,
    /// Transactions handed to the store when it was written.
    pub generated: u64,
    /// Per transaction: acknowledged, with success or not.
    pub acked: Vec<Option<bool>>,
}

impl AckRecord {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; RECORD_BYTES];
        b[0..8].copy_from_slice(MAGIC);
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.generated.to_le_bytes());
        b[24..32].copy_from_slice(&(self.acked.len() as u64).to_le_bytes());
        let bitmap = self.acked.len().div_ceil(8);
        for (i, a) in self.acked.iter().enumerate() {
            if let Some(ok) = a {
                b[HEADER + i / 8] |= 1 << (i % 8);
                if *ok {
                    b[HEADER + bitmap + i / 8] |= 1 << (i % 8);
                }
            }
        }
        b
    }

    /// Decodes a record; None for anything else.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < RECORD_BYTES || &b[0..8] != MAGIC {
            return None;
        }
        let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let total = word(24);
        if total > MAX_TXNS {
            return None;
        }
        let bitmap = (total as usize).div_ceil(8);
        let bit = |base: usize, i: usize| b[base + i / 8] & (1 << (i % 8)) != 0;
        let acked = (0..total as usize)
            .map(|i| bit(HEADER, i).then(|| bit(HEADER + bitmap, i)))
            .collect();
        Some(AckRecord {
            seq: word(8),
            generated: word(16),
            acked,
        })
    }
}

/// The blocks a store may use: all but the reserved tail (mkfs formats what the geometry
/// says; open accepts a device larger than the store).
struct Capped<'a, D> {
    inner: &'a D,
    blocks: u64,
}

impl<D: BlockDevice> BlockDevice for Capped<'_, D> {
    type Qpair = D::Qpair;

    fn geometry(&self) -> Geometry {
        let mut g = self.inner.geometry();
        g.block_count = self.blocks;
        g
    }

    fn open_qpair(&self, opts: &QpairOptions) -> Result<D::Qpair, keel_drivers::DriverError> {
        self.inner.open_qpair(opts)
    }
}

/// What `crashlog run` did. Serialised as is for `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    /// "crashlog-run".
    pub bench: &'static str,
    /// Journal mode.
    pub mode: &'static str,
    /// Seed.
    pub seed: u64,
    /// Transactions.
    pub txns: u64,
    /// Acknowledged with success.
    pub acked_ok: u64,
    /// Acknowledged with an error (predicted by the model).
    pub acked_failed: u64,
    /// Ack records written.
    pub records: u64,
    /// Device block size.
    pub block_size: u32,
    /// Device blocks (the store has all but the reserved tail).
    pub device_blocks: u64,
    /// Wall time of the workload.
    pub seconds: f64,
}

/// Runs the workload on the device `args` names.
pub fn run(args: &RunArgs) -> Result<RunSummary, BenchError> {
    device::open(
        &args.device,
        &RUN_DEVICE,
        args.workload.seed,
        64 << 10,
        RunJob { args },
    )
}

struct RunJob<'a> {
    args: &'a RunArgs,
}

fn store_err(what: &'static str) -> impl FnOnce(keel_engine::StoreError) -> BenchError {
    move |source| BenchError::Store { what, source }
}

/// Writes ack records to the reserved tail on a queue pair of their own.
struct Recorder<Q> {
    qp: Q,
    pool: DmaPool,
    first_lba: u64,
    slots: u64,
    blocks_per_record: u64,
    seq: u64,
}

impl<Q: QueuePair> Recorder<Q> {
    /// Reaps finished record writes; an error fails the run.
    fn reap(&mut self) -> Result<(), BenchError> {
        let mut err = None;
        self.qp.poll(16, &mut |c| {
            if let Err(source) = c.result {
                err.get_or_insert(BenchError::Command {
                    op: c.op,
                    lba: c.tag,
                    source,
                });
            }
        });
        err.map_or(Ok(()), Err)
    }

    /// Writes a record if a buffer is free; false if not (the next one will cover it).
    fn write(&mut self, generated: u64, acked: &[Option<bool>]) -> Result<bool, BenchError> {
        self.reap()?;
        let Some(mut buf) = self.pool.alloc() else {
            return Ok(false);
        };
        let rec = AckRecord {
            seq: self.seq,
            generated,
            acked: acked.to_vec(),
        };
        buf.as_mut_slice()[..RECORD_BYTES].copy_from_slice(&rec.encode());
        buf.set_len(RECORD_BYTES);
        let lba = self.first_lba + (self.seq % self.slots) * self.blocks_per_record;
        self.qp
            .submit(
                lba,
                Command::Write {
                    lba,
                    buf,
                    fua: false,
                },
            )
            .map_err(|r| BenchError::Submit {
                op: keel_drivers::Op::Write,
                lba,
                source: r.error,
            })?;
        self.qp.kick().map_err(|source| BenchError::Command {
            op: keel_drivers::Op::Write,
            lba,
            source,
        })?;
        self.seq += 1;
        Ok(true)
    }

    /// Waits for every record write.
    fn drain(&mut self) -> Result<(), BenchError> {
        let start = Instant::now();
        while self.qp.in_flight() > 0 {
            self.reap()?;
            if start.elapsed() > Duration::from_secs(30) {
                return Err(BenchError::Stalled {
                    seconds: 30,
                    in_flight: self.qp.in_flight(),
                });
            }
        }
        Ok(())
    }
}

impl DeviceJob for RunJob<'_> {
    type Output = RunSummary;

    fn run<D: BlockDevice>(self, device: D) -> Result<RunSummary, BenchError> {
        let w = &self.args.workload;
        let mode = JournalMode::from(w.mode);
        let geo = device.geometry();
        let bs = u64::from(geo.block_size);
        let reserve_blocks = RESERVE_BYTES / bs;
        if geo.block_count <= reserve_blocks * 8 {
            return Err(BenchError::Geometry(format!(
                "the device has {} bytes; crashlog needs well over {RESERVE_BYTES}",
                geo.capacity_bytes()
            )));
        }
        let store_blocks = geo.block_count - reserve_blocks;
        Store::mkfs(
            &Capped {
                inner: &device,
                blocks: store_blocks,
            },
            &mkfs_options(mode),
        )
        .map_err(store_err("mkfs"))?;
        let mut store = Store::open(device, shard_cfg()).map_err(store_err("open the store"))?;
        let pool =
            DmaPool::new(PoolConfig::new(RECORD_BYTES, 4)).map_err(|source| BenchError::Dma {
                count: 4,
                bytes: RECORD_BYTES as u32,
                source,
            })?;
        let qp = store
            .device()
            .open_qpair(&QpairOptions {
                depth: 4,
                regions: vec![pool.region().clone()],
            })
            .map_err(|source| BenchError::Qpair { depth: 4, source })?;
        let blocks_per_record = (RECORD_BYTES as u64).div_ceil(bs);
        let mut rec = Recorder {
            qp,
            pool,
            first_lba: store_blocks,
            slots: reserve_blocks / blocks_per_record,
            blocks_per_record,
            seq: 0,
        };
        store
            .submit_sync(setup_txn())
            .map_err(|source| BenchError::Txn {
                action: "create the collections".into(),
                source,
            })?;

        let (_, all) = transactions(w.seed, w.txns);
        let mut acked: Vec<Option<bool>> = vec![None; all.len()];
        let mut inflight: BTreeMap<u64, usize> = BTreeMap::new();
        let mut generated = 0usize;
        // Record 0: the store is formatted and set up, nothing acknowledged yet.
        let mut pending = !rec.write(0, &acked)?;
        let start = Instant::now();
        let mut last_progress = Instant::now();
        loop {
            while generated < all.len() && inflight.len() < MAX_INFLIGHT {
                let (txn, ok) = &all[generated];
                match store.queue(txn.clone()) {
                    Ok(id) => {
                        inflight.insert(id, generated);
                    }
                    // Statically invalid, refused at once as the model predicts: it counts
                    // as acknowledged with an error.
                    Err(_) if !ok => {
                        acked[generated] = Some(false);
                        pending = true;
                    }
                    Err(source) => {
                        return Err(BenchError::Txn {
                            action: format!("queue transaction #{generated}"),
                            source,
                        })
                    }
                }
                generated += 1;
                if generated as u64 % CHECKPOINT_EVERY == 0 {
                    store.request_checkpoint();
                }
            }
            store.poll();
            let mut mismatch = None;
            let done = store.take_completions(|id, r| {
                let i = inflight.remove(&id).expect("a transaction this run queued");
                acked[i] = Some(r.is_ok());
                if r.is_ok() != all[i].1 && mismatch.is_none() {
                    mismatch = Some((i, r));
                }
            });
            if let Some((i, r)) = mismatch {
                return Err(BenchError::CrashLog(format!(
                    "transaction #{i}: the store says {r:?}, the model predicted {}",
                    if all[i].1 { "success" } else { "failure" }
                )));
            }
            if done > 0 {
                pending = true;
                last_progress = Instant::now();
            }
            if pending {
                pending = !rec.write(generated as u64, &acked)?;
            } else {
                rec.reap()?;
            }
            if generated == all.len() && inflight.is_empty() && store.is_idle() && !pending {
                break;
            }
            if last_progress.elapsed() > Duration::from_secs(60) {
                return Err(BenchError::Stalled {
                    seconds: 60,
                    in_flight: inflight.len() as u32,
                });
            }
        }
        rec.drain()?;
        // The last record after every earlier one is on the device.
        rec.write(generated as u64, &acked)?;
        rec.drain()?;
        let seconds = start.elapsed().as_secs_f64();
        let records = rec.seq;
        drop(rec);
        store.close().map_err(store_err("close the store"))?;
        Ok(RunSummary {
            bench: "crashlog-run",
            mode: mode.as_str(),
            seed: w.seed,
            txns: w.txns,
            acked_ok: acked.iter().filter(|a| **a == Some(true)).count() as u64,
            acked_failed: acked.iter().filter(|a| **a == Some(false)).count() as u64,
            records,
            block_size: geo.block_size,
            device_blocks: geo.block_count,
            seconds,
        })
    }
}

/// One checked crash image.
#[derive(Clone, Debug, Serialize)]
pub struct PointReport {
    /// Flush mark (1-based).
    pub flush: usize,
    /// Writes after the flush dropped (true) or kept up to the next flush.
    pub drop_unflushed: bool,
    /// Log entries replayed.
    pub entries: usize,
    /// Transactions acknowledged by then.
    pub acked: usize,
    /// Transactions replay found in the journal (batches, entries).
    pub replayed: (u64, u64),
    /// What was wrong; empty when the point passed.
    pub problems: Vec<String>,
}

/// What `crashlog check` found. Serialised as is for `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct CheckSummary {
    /// "crashlog-check".
    pub bench: &'static str,
    /// Journal mode.
    pub mode: &'static str,
    /// Log entries, flushes in it, ack records found.
    pub entries: usize,
    /// Flushes in the log.
    pub flushes: usize,
    /// Ack records in the log.
    pub records: usize,
    /// Points checked.
    pub checked: usize,
    /// Points before the store was formatted (no ack record yet), not checkable.
    pub before_mkfs: usize,
    /// Points with a problem.
    pub failed: usize,
    /// One line for people.
    pub summary: String,
    /// Every point.
    pub points: Vec<PointReport>,
}

/// Checks the images a crash could have left, as the log says.
pub fn check(args: &CheckArgs) -> Result<CheckSummary, BenchError> {
    let w = &args.workload;
    let mode = JournalMode::from(w.mode);
    let log = WriteLog::open(&args.log)?;
    let base = std::fs::read(&args.base).map_err(|e| {
        BenchError::CrashLog(format!("read the base image {}: {e}", args.base.display()))
    })?;
    let reserve_start = (base.len() as u64).saturating_sub(RESERVE_BYTES);
    let mut records: Vec<(usize, AckRecord)> = Vec::new();
    for (i, e) in log.entries.iter().enumerate() {
        let r = log.device_bytes(e);
        if !e.is_write() || r.start < reserve_start {
            continue;
        }
        for chunk in log.data(e).chunks(RECORD_BYTES) {
            if let Some(rec) = AckRecord::decode(chunk) {
                if rec.acked.len() as u64 != w.txns {
                    return Err(BenchError::CrashLog(format!(
                        "ack record {} is for {} transactions, not --txns {}",
                        rec.seq,
                        rec.acked.len(),
                        w.txns
                    )));
                }
                records.push((i, rec));
            }
        }
    }
    if records.is_empty() {
        return Err(BenchError::CrashLog(
            "no ack record in the log: did crashlog run reach the device?".into(),
        ));
    }
    let (start_model, all) = transactions(w.seed, w.txns);
    let flushes = log.flushes().len();
    let mut marks: BTreeSet<usize> = BTreeSet::new();
    if flushes > 0 {
        let n = args.points.max(1).min(flushes);
        for k in 1..=n {
            marks.insert((k * flushes).div_ceil(n));
        }
    }
    let mut points = Vec::new();
    let mut before_mkfs = 0;
    for &flush in &marks {
        for drop_unflushed in [true, false] {
            let end = log.cut(flush, drop_unflushed)?;
            let seen: Vec<&AckRecord> = records
                .iter()
                .filter(|(i, _)| *i < end)
                .map(|(_, r)| r)
                .collect();
            if seen.is_empty() {
                before_mkfs += 1;
                continue;
            }
            // Acknowledged by then: the union of the records so far (they may land out of
            // order). Handed to the store by then: at most what the next record says.
            let mut acked = vec![None; all.len()];
            for r in &seen {
                for (a, b) in acked.iter_mut().zip(&r.acked) {
                    if b.is_some() {
                        *a = *b;
                    }
                }
            }
            let bound = records
                .iter()
                .find(|(i, _)| *i >= end)
                .map_or(all.len(), |(_, r)| (r.generated as usize).min(all.len()));
            let mut image = base.clone();
            log.apply(&mut image, 0..end)?;
            let mut p = PointReport {
                flush,
                drop_unflushed,
                entries: end,
                acked: acked.iter().filter(|a| a.is_some()).count(),
                replayed: (0, 0),
                problems: Vec::new(),
            };
            verify(image, mode, &start_model, &all[..bound], &acked, &mut p);
            points.push(p);
        }
    }
    let failed = points.iter().filter(|p| !p.problems.is_empty()).count();
    let summary = format!(
        "{} crash images from {} flushes checked ({} failed), {} ack records, {} transactions",
        points.len(),
        flushes,
        failed,
        records.len(),
        w.txns
    );
    Ok(CheckSummary {
        bench: "crashlog-check",
        mode: mode.as_str(),
        entries: log.entries.len(),
        flushes,
        records: records.len(),
        checked: points.len(),
        before_mkfs,
        failed,
        summary,
        points,
    })
}

/// Recovers the store in `image` and checks it against the acknowledged transactions.
fn verify(
    image: Vec<u8>,
    mode: JournalMode,
    start: &Model,
    txns: &[(Transaction, bool)],
    acked: &[Option<bool>],
    p: &mut PointReport,
) {
    let sb = match Superblock::decode(&image[..PAGE as usize]) {
        Ok(sb) => sb,
        Err(e) => return p.problems.push(format!("superblock: {e}")),
    };
    if sb.mode != mode {
        return p.problems.push(format!(
            "the store is {}, not --mode {}",
            sb.mode.as_str(),
            mode.as_str()
        ));
    }
    let block = sb.device_block_size;
    let mut cfg = SimConfig::new(block, image.len() as u64 / u64::from(block));
    cfg.volatile_write_cache = false;
    cfg.clock = SimClock::discrete();
    let dev = match SimDevice::from_image(
        cfg,
        SimImage {
            block_size: block,
            data: image,
        },
    ) {
        Ok(d) => d,
        Err(e) => return p.problems.push(format!("sim device: {e}")),
    };
    let mut store = match Store::open(dev, shard_cfg()) {
        Ok(s) => s,
        Err(e) => return p.problems.push(format!("recovery failed: {e}")),
    };
    p.replayed = store
        .replay_reports()
        .iter()
        .fold((0, 0), |(b, e), r| (b + r.batches, e + r.entries));
    for e in store.fsck().errors {
        p.problems.push(format!("fsck: {e}"));
    }
    let mut base = start.clone();
    let subs: Vec<Submitted> = txns
        .iter()
        .zip(acked)
        .map(|((t, _), a)| Submitted {
            txn: t.clone(),
            acked: *a,
        })
        .collect();
    for s in &subs {
        if s.acked.is_some() {
            base.apply(&s.txn);
        }
    }
    let history = BTreeMap::new();
    let oracle = Oracle {
        base: &base,
        history: &history,
        submitted: &subs,
        mode,
        block: block as usize,
    };
    let keys: Vec<ObjKey> = COLLS
        .iter()
        .flat_map(|&c| (0..8).map(move |i| ObjKey::new(c, format!("obj{i}").into_bytes())))
        .collect();
    let colls = [COLLS[0], COLLS[1], SPARE_COLL];
    let colls_now = store.list_collections();
    let mut read_err = None;
    let verdict = {
        let st = &mut store;
        let mut actual = |k: &ObjKey| Actual::observe(st, k, false, &mut read_err);
        oracle.check(&keys, &colls, &mut actual, |c| colls_now.contains(&c))
    };
    p.problems.extend(read_err);
    p.problems.extend(verdict.violations);
}

impl CheckSummary {
    /// The report for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "crashlog check ({}): {}", self.mode, self.summary);
        let _ = writeln!(
            out,
            "{:>6} {:>8} {:>8} {:>6} {:>9}  verdict",
            "flush", "unflush", "entries", "acked", "replayed"
        );
        for p in &self.points {
            let _ = writeln!(
                out,
                "{:>6} {:>8} {:>8} {:>6} {:>9}  {}",
                p.flush,
                if p.drop_unflushed { "dropped" } else { "kept" },
                p.entries,
                p.acked,
                p.replayed.1,
                if p.problems.is_empty() {
                    "ok".to_owned()
                } else {
                    p.problems.join("; ")
                }
            );
        }
        out
    }

    /// Ok when every point passed.
    pub fn verdict(&self) -> Result<(), BenchError> {
        if self.failed == 0 && self.checked > 0 {
            return Ok(());
        }
        for p in self.points.iter().filter(|p| !p.problems.is_empty()) {
            eprintln!(
                "flush {} ({} unflushed): {}",
                p.flush,
                if p.drop_unflushed { "dropped" } else { "kept" },
                p.problems.join("; ")
            );
        }
        Err(BenchError::CrashLog(format!(
            "{} of {} crash images failed",
            self.failed, self.checked
        )))
    }
}

#[cfg(test)]
#[path = "crashlog_tests.rs"]
mod tests;
