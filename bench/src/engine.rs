//! `keel-bench engine`: transactions through a whole store, one thread, `qd` in flight.
//!
//! ```text
//!   mkfs (--mode) ─► open ─► mkcoll ─► lay the objects out ─► [warm-up] ─► drain ─► counters
//!     ─► measured phase ─► drain ─► counters ─► fsck (must be clean) ─► close
//! ```
//!
//! A phase keeps `qd` transactions in flight: it queues until `qd` are, polls the store,
//! takes its completions, and queues again. What each transaction does comes from
//! [`workload`]; a failed one stops the run with its error. Like `raw`, a phase counts the
//! transactions queued in it and ends when all of them have completed, so `--ops N`
//! measures exactly N.
//!
//! A transaction's latency runs from just before `Store::queue` to the poll that handed
//! back its completion (one clock read per poll that returned any). The device figures are
//! deltas of the store's counters, each read after a drain: what a measured transaction
//! set going after its acknowledgement (a full-journal transaction's home writes, a
//! checkpoint) counts in the phase that caused it.

pub mod workload;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use std::sync::Arc;

use hdrhistogram::Histogram;
use keel_drivers::{BlockDevice, IoStats};
use keel_engine::reactor::EngineStats;
use keel_engine::{
    shard_for, CollId, CompletionRing, Cores, Engine, Idle, JournalMode, MkfsOptions, Notify,
    ReactorConfig, ShardConfig, ShardStats, Store, StoreError, Transaction, TxnId, PAGE,
};

use crate::cli::{EngineArgs, EngineWorkload, ReactorIdle, Stop, ENGINE_DEVICE};
use crate::cpu::CpuTime;
use crate::device::{self, DeviceJob};
use crate::error::BenchError;
use crate::raw::{stats_delta, POLLS_PER_STALL_CHECK, STALL_LIMIT};
use crate::report::{latency_histogram, EngineReport, ReactorLine};
use workload::{Action, Generator, Shape, COLL, PREFILL_CHUNK_BYTES};

/// Runs `keel-bench engine` as the arguments say.
pub fn run(args: &EngineArgs) -> Result<EngineReport, BenchError> {
    let mut cfg = shard_config(args.qd, args.bs);
    if let Some(us) = args.max_batch_wait_us {
        cfg.max_batch_wait_us = us;
    }
    cfg.parallel_commit = args.parallel_commit.is_on();
    cfg.overwrite_intents = args.intents.is_on();
    let transfer = cfg.io_buf_bytes.max(cfg.journal_buf_bytes) as u32;
    device::open(
        &args.device,
        &ENGINE_DEVICE,
        args.seed,
        transfer,
        EngineJob { args, cfg },
    )
}

/// Data DMA buffers at most, whatever `qd` and `bs` ask for (128 KiB each: 256 MiB).
const MAX_IO_BUFS: u32 = 2048;

/// The default shard configuration, with room for `qd` transactions of `bs` bytes each:
/// data queue depth, data buffers and the transaction limit grow with `qd`.
pub fn shard_config(qd: u32, bs: u32) -> ShardConfig {
    let d = ShardConfig::default();
    let bufs_per_txn = (bs as usize).div_ceil(d.io_buf_bytes) as u32;
    ShardConfig {
        data_depth: d.data_depth.max(qd),
        io_bufs: d.io_bufs.max(qd * bufs_per_txn).min(MAX_IO_BUFS),
        max_txns: d.max_txns.max(2 * qd),
        ..d
    }
}

struct EngineJob<'a> {
    args: &'a EngineArgs,
    cfg: ShardConfig,
}

impl DeviceJob for EngineJob<'_> {
    type Output = EngineReport;

    fn run<D: BlockDevice + 'static>(self, device: D) -> Result<EngineReport, BenchError> {
        let args = self.args;
        let block_size = device.geometry().block_size;
        if args.bs % block_size != 0 {
            return Err(BenchError::Geometry(format!(
                "--bs {} is not a multiple of the device's {block_size}-byte block",
                args.bs
            )));
        }
        let mode = JournalMode::from(args.mode);
        if let Some(n) = args.reactors {
            return run_reactors(args, self.cfg, device, n, block_size);
        }
        let sb =
            Store::mkfs(&device, &MkfsOptions::new(mode)).map_err(|source| BenchError::Store {
                what: "mkfs",
                source,
            })?;
        let data_bytes = sb.shards.iter().map(|l| l.data_pages).sum::<u64>() * PAGE;
        let shape = shape(args, data_bytes)?;
        let mut store =
            Store::open(device, self.cfg.clone()).map_err(|source| BenchError::Store {
                what: "open the store",
                source,
            })?;
        let mut setup = Transaction::new();
        setup.mkcoll(COLL);
        store
            .submit_sync(setup)
            .map_err(|source| BenchError::Store {
                what: "create the collection",
                source,
            })?;
        let spec = EngineSpec {
            mode,
            shape,
            qd: args.qd,
            warmup: Duration::from_secs_f64(args.measure.warmup_seconds),
            stop: args.measure.stop(),
            seed: args.seed,
        };
        let run = measure(&mut store, &spec)?;
        let fsck = store.fsck();
        if !fsck.is_clean() {
            return Err(BenchError::Fsck(fsck.errors));
        }
        store.close().map_err(|source| BenchError::Store {
            what: "close the store",
            source,
        })?;
        Ok(EngineReport::new(
            args.device.driver.as_str(),
            &spec,
            &self.cfg,
            block_size,
            &run,
        ))
    }
}

/// `keel-bench engine --reactors N`: N shards, N reactor threads, one collection per
/// shard; this thread keeps `qd` x N transactions in flight through the reactors' rings.
fn run_reactors<D: BlockDevice>(
    args: &EngineArgs,
    cfg: ShardConfig,
    device: D,
    n: u32,
    block_size: u32,
) -> Result<EngineReport, BenchError>
where
    D::Qpair: 'static,
{
    let store_err = |what| move |source| BenchError::Store { what, source };
    let mode = JournalMode::from(args.mode);
    let mut mk = MkfsOptions::new(mode);
    mk.shards = n;
    let sb = Store::mkfs(&device, &mk).map_err(store_err("mkfs"))?;
    let data_bytes = sb.shards.iter().map(|l| l.data_pages).sum::<u64>() * PAGE;
    let shape = shape(args, data_bytes)?;
    let rcfg = ReactorConfig {
        cores: Cores::Auto,
        ring_depth: (args.qd as usize * 2).max(64),
        idle: match args.reactor_idle {
            ReactorIdle::Spin => Idle::Spin,
            ReactorIdle::Backoff => Idle::Backoff {
                spin_turns: 256,
                sleep_us_max: 50,
            },
        },
        ..ReactorConfig::default()
    };
    let engine = Engine::open(device, cfg.clone(), rcfg).map_err(store_err("open the reactors"))?;
    let colls = one_coll_per_shard(n as usize);
    for &c in &colls {
        let mut setup = Transaction::new();
        setup.mkcoll(c);
        engine
            .submit_sync(setup)
            .map_err(store_err("create the collections"))?;
    }
    let spec = EngineSpec {
        mode,
        shape,
        qd: args.qd,
        warmup: Duration::from_secs_f64(args.measure.warmup_seconds),
        stop: args.measure.stop(),
        seed: args.seed,
    };
    let run = measure_reactors(&engine, &spec, &colls)?;
    let fsck = engine.fsck().map_err(store_err("fsck"))?;
    if !fsck.is_clean() {
        return Err(BenchError::Fsck(fsck.errors));
    }
    engine.close().map_err(store_err("close the store"))?;
    Ok(EngineReport::new(
        args.device.driver.as_str(),
        &spec,
        &cfg,
        block_size,
        &run,
    ))
}

/// The lowest collection ids, one on each of `n` shards.
pub fn one_coll_per_shard(n: usize) -> Vec<CollId> {
    let mut by_shard: Vec<Option<CollId>> = vec![None; n];
    let mut c = COLL;
    while by_shard.iter().any(Option::is_none) {
        by_shard[shard_for(c, n)].get_or_insert(c);
        c += 1;
    }
    by_shard.into_iter().map(|c| c.expect("filled")).collect()
}

/// Lays the objects out, warms up and measures through the reactors of `engine`, whose
/// collections `colls` (one per shard) exist. `spec.qd` is per reactor.
pub fn measure_reactors<D: BlockDevice>(
    engine: &Engine<D>,
    spec: &EngineSpec,
    colls: &[CollId],
) -> Result<EngineRun, BenchError> {
    let store_err = |what| move |source| BenchError::Store { what, source };
    let mut pump = ReactorPump::new(engine, spec, colls);
    let mut prefill = spec.shape.prefill().into_iter();
    pump.phase(&mut || prefill.next(), Stop::Ops(u64::MAX), false)?;
    let mut gen = Generator::new(spec.shape, spec.seed);
    let mut next = || Some(gen.next_action());
    if !spec.warmup.is_zero() {
        pump.phase(&mut next, Stop::Seconds(spec.warmup.as_secs_f64()), false)?;
    }
    engine.drain().map_err(store_err("drain the store"))?;
    let before = engine.stats().map_err(store_err("read the counters"))?;
    let cpu_before = CpuTime::now();
    let (ops, elapsed) = pump.phase(&mut next, spec.stop, true)?;
    engine.drain().map_err(store_err("drain the store"))?;
    let cpu = CpuTime::now() - cpu_before;
    let after = engine.stats().map_err(store_err("read the counters"))?;
    let (b, a) = (before.total(), after.total());
    Ok(EngineRun {
        ops,
        elapsed,
        latency_ns: pump.latency_ns,
        shards: shard_stats_delta(&a.shards, &b.shards),
        device: stats_delta(&a.device(), &b.device()),
        journal: stats_delta(&a.journal_io, &b.journal_io),
        cpu,
        reactors: reactor_lines(&before, &after, elapsed),
    })
}

/// Per reactor, what the measured phase did.
fn reactor_lines(before: &EngineStats, after: &EngineStats, elapsed: Duration) -> Vec<ReactorLine> {
    let secs = elapsed.as_secs_f64();
    before
        .reactors
        .iter()
        .zip(&after.reactors)
        .map(|(b, a)| {
            let l = a.looped.since(&b.looped);
            let s = shard_stats_delta(&a.shard, &b.shard);
            ReactorLine {
                reactor: a.reactor,
                core: a.core,
                iterations: l.iterations,
                busy_share: l.busy_share(),
                busy_time_share: l.busy_time_share(),
                iops: if secs > 0.0 {
                    s.txns_committed as f64 / secs
                } else {
                    0.0
                },
                txns_committed: s.txns_committed,
                batches: s.batches,
                avg_batch_entries: if s.batches > 0 {
                    s.batch_entries as f64 / s.batches as f64
                } else {
                    0.0
                },
                ring_len_mean: l.ring_len_mean(),
                ring_len_max: a.looped.ring_len_max,
                idle_sleeps: l.idle_sleeps,
            }
        })
        .collect()
}

/// Empty polls of the completion ring the client spins (and yields) through before it
/// sleeps.
const CLIENT_SPIN_POLLS: u32 = 64;
/// The client's sleep when nothing completes.
const CLIENT_SLEEP: Duration = Duration::from_micros(20);

/// Keeps `qd` x reactors transactions in flight through an engine's rings, from this
/// thread; results come back on one completion ring, by tag (a slot of `slots`).
struct ReactorPump<'e, D: BlockDevice> {
    engine: &'e Engine<D>,
    ring: Arc<CompletionRing>,
    /// Each tag in flight: when it was submitted, and what it does.
    slots: Vec<Option<(Instant, Action)>>,
    free: Vec<u64>,
    colls: &'e [CollId],
    objects: u64,
    data: Vec<u8>,
    latency_ns: Histogram<u64>,
}

impl<'e, D: BlockDevice> ReactorPump<'e, D> {
    fn new(engine: &'e Engine<D>, spec: &EngineSpec, colls: &'e [CollId]) -> Self {
        let total = spec.qd as usize * colls.len();
        let mut data = vec![0u8; spec.shape.bs.max(PREFILL_CHUNK_BYTES) as usize];
        fastrand::Rng::with_seed(spec.seed ^ 0x5bd1_e995).fill(&mut data);
        ReactorPump {
            engine,
            ring: CompletionRing::new(total),
            slots: vec![None; total],
            free: (0..total as u64).rev().collect(),
            colls,
            objects: spec.shape.objects,
            data,
            latency_ns: latency_histogram(),
        }
    }

    /// As [`Pump::phase`].
    fn phase(
        &mut self,
        next: &mut dyn FnMut() -> Option<Action>,
        stop: Stop,
        record: bool,
    ) -> Result<(u64, Duration), BenchError> {
        let mut clock = PhaseClock::new(stop);
        let (start, budget) = (clock.start, clock.budget);
        let mut queued = 0u64;
        let mut exhausted = false;
        let mut now = start;
        loop {
            let open = !exhausted && clock.open(queued, now);
            if open {
                while queued < budget {
                    let Some(tag) = self.free.pop() else { break };
                    let Some(action) = next() else {
                        self.free.push(tag);
                        exhausted = true;
                        break;
                    };
                    self.submit(tag, action)?;
                    queued += 1;
                }
            }
            if self.free.len() == self.slots.len() {
                break;
            }
            let mut failure = None;
            let mut any = false;
            while let Some((tag, r)) = self.ring.pop() {
                if !any {
                    now = Instant::now();
                    any = true;
                }
                let (at, action) = self.slots[tag as usize].take().expect("tag in flight");
                self.free.push(tag);
                if record {
                    let ns = now.duration_since(at).as_nanos();
                    self.latency_ns
                        .saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
                }
                if let Err(source) = r {
                    failure.get_or_insert(BenchError::Txn {
                        action: action.to_string(),
                        source,
                    });
                }
            }
            if let Some(f) = failure {
                return Err(f);
            }
            if any {
                clock.progress(now);
                continue;
            }
            let empty_polls = clock.empty_poll((self.slots.len() - self.free.len()) as u32)?;
            // This thread shares the machine with the reactors: let them run. Past a few
            // empty polls, nothing will complete for a while (a device latency): sleep.
            if empty_polls > CLIENT_SPIN_POLLS {
                std::thread::sleep(CLIENT_SLEEP);
            } else if empty_polls % 8 == 0 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
            if clock.deadline.is_some() {
                now = Instant::now();
            }
        }
        Ok((queued, now.duration_since(start)))
    }

    fn submit(&mut self, tag: u64, action: Action) -> Result<(), BenchError> {
        let txn = action.txn_in(&self.data, self.colls, self.objects);
        let notify = Notify::ring(&self.ring, tag).expect("the ring holds every tag");
        self.slots[tag as usize] = Some((Instant::now(), action));
        self.engine
            .submit(txn, notify)
            .map_err(|e| BenchError::Txn {
                action: action.to_string(),
                source: e.error,
            })
    }
}

/// The workload's sizes: --object-size, or the default for the store's data area; and
/// the objects must fit in that area.
fn shape(args: &EngineArgs, data_bytes: u64) -> Result<Shape, BenchError> {
    let (workload, objects, bs) = (args.workload, u64::from(args.objects), u64::from(args.bs));
    let object_size = match args.object_size {
        Some(size) => size,
        None => Shape::default_object_size(workload, objects, bs, data_bytes).ok_or_else(|| {
            BenchError::Geometry(format!(
                "--objects {objects} of at least --bs {bs} bytes do not fit in half of the \
                 store's {data_bytes}-byte data area: lower --objects or raise --size"
            ))
        })?,
    };
    let shape = Shape {
        workload,
        bs,
        objects,
        object_size,
    };
    let footprint = shape.footprint_bytes();
    if footprint > data_bytes / 10 * 9 {
        return Err(BenchError::Geometry(format!(
            "--objects {objects} of --object-size {object_size} ({footprint} bytes with \
             --workload {}) do not fit in 90% of the store's {data_bytes}-byte data area: \
             lower them or raise --size",
            workload.as_str()
        )));
    }
    Ok(shape)
}

/// What to run.
#[derive(Clone, Debug)]
pub struct EngineSpec {
    /// The store's journal mode.
    pub mode: JournalMode,
    /// The workload and its sizes.
    pub shape: Shape,
    /// Transactions in flight.
    pub qd: u32,
    /// Unmeasured run first; zero for none.
    pub warmup: Duration,
    /// When the measurement stops.
    pub stop: Stop,
    /// Seed of the workload.
    pub seed: u64,
}

impl EngineSpec {
    /// The workload.
    pub fn workload(&self) -> EngineWorkload {
        self.shape.workload
    }
}

/// What a measurement saw.
#[derive(Debug)]
pub struct EngineRun {
    /// Transactions completed (all queued in the measured phase).
    pub ops: u64,
    /// From the first queue to the last completion.
    pub elapsed: Duration,
    /// Latency of each transaction, queue to completion, in nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// What the shards counted during the measurement.
    pub shards: ShardStats,
    /// What the queue pairs counted, all of them.
    pub device: IoStats,
    /// What the journal queue pairs counted.
    pub journal: IoStats,
    /// CPU time of the process during the measurement, final drain included.
    pub cpu: CpuTime,
    /// Per reactor (`--reactors`; empty otherwise).
    pub reactors: Vec<ReactorLine>,
}

/// Lays the objects out, warms up, and measures, on a store holding collection [`COLL`].
pub fn measure<D: BlockDevice>(
    store: &mut Store<D>,
    spec: &EngineSpec,
) -> Result<EngineRun, BenchError> {
    let mut pump = Pump::new(store, spec);
    let mut prefill = spec.shape.prefill().into_iter();
    pump.phase(&mut || prefill.next(), Stop::Ops(u64::MAX), false)?;
    let mut gen = Generator::new(spec.shape, spec.seed);
    let mut next = || Some(gen.next_action());
    if !spec.warmup.is_zero() {
        pump.phase(&mut next, Stop::Seconds(spec.warmup.as_secs_f64()), false)?;
    }
    pump.drain()?;
    let before = pump.store.stats();
    let cpu_before = CpuTime::now();
    let (ops, elapsed) = pump.phase(&mut next, spec.stop, true)?;
    pump.drain()?;
    let cpu = CpuTime::now() - cpu_before;
    let after = pump.store.stats();
    Ok(EngineRun {
        ops,
        elapsed,
        latency_ns: pump.latency_ns,
        shards: shard_stats_delta(&after.shards, &before.shards),
        device: stats_delta(&after.device(), &before.device()),
        journal: stats_delta(&after.journal_io, &before.journal_io),
        cpu,
        reactors: Vec::new(),
    })
}

/// Keeps transactions in flight in a store.
struct Pump<'s, D: BlockDevice> {
    store: &'s mut Store<D>,
    qd: usize,
    /// Each transaction in flight: when it was queued, and what it does.
    in_flight: HashMap<TxnId, (Instant, Action)>,
    /// Completions of the last poll, handled after it returns.
    done: Vec<(TxnId, keel_engine::Result<()>)>,
    /// Seeded bytes every write takes its data from.
    data: Vec<u8>,
    latency_ns: Histogram<u64>,
}

impl<'s, D: BlockDevice> Pump<'s, D> {
    fn new(store: &'s mut Store<D>, spec: &EngineSpec) -> Self {
        let qd = spec.qd as usize;
        let mut data = vec![0u8; spec.shape.bs.max(PREFILL_CHUNK_BYTES) as usize];
        fastrand::Rng::with_seed(spec.seed ^ 0x5bd1_e995).fill(&mut data);
        Pump {
            store,
            qd,
            in_flight: HashMap::with_capacity(qd),
            done: Vec::with_capacity(qd),
            data,
            latency_ns: latency_histogram(),
        }
    }

    /// Queues what `next` gives until `stop` (or until it gives nothing), then waits for
    /// the rest. Returns the transactions queued (and so completed) and the time from the
    /// first queue to the last completion.
    fn phase(
        &mut self,
        next: &mut dyn FnMut() -> Option<Action>,
        stop: Stop,
        record: bool,
    ) -> Result<(u64, Duration), BenchError> {
        let mut clock = PhaseClock::new(stop);
        let (start, budget) = (clock.start, clock.budget);
        let mut queued = 0u64;
        let mut exhausted = false;
        let mut now = start;
        loop {
            let open = !exhausted && clock.open(queued, now);
            if open {
                while self.in_flight.len() < self.qd && queued < budget {
                    let Some(action) = next() else {
                        exhausted = true;
                        break;
                    };
                    self.queue(action)?;
                    queued += 1;
                }
            }
            if self.in_flight.is_empty() {
                break;
            }
            self.store.poll();
            let done = &mut self.done;
            if self.store.take_completions(|id, r| done.push((id, r))) == 0 {
                clock.empty_poll(self.in_flight.len() as u32)?;
                continue;
            }
            now = Instant::now();
            clock.progress(now);
            self.complete(now, record)?;
        }
        Ok((queued, now.duration_since(start)))
    }

    fn queue(&mut self, action: Action) -> Result<(), BenchError> {
        let txn = action.txn(&self.data);
        let at = Instant::now();
        let id = self.store.queue(txn).map_err(|source| BenchError::Txn {
            action: action.to_string(),
            source,
        })?;
        self.in_flight.insert(id, (at, action));
        Ok(())
    }

    /// Handles the completions of the last poll: records latencies. The first failed
    /// transaction is an error.
    fn complete(&mut self, now: Instant, record: bool) -> Result<(), BenchError> {
        let mut failure = None;
        for (id, result) in self.done.drain(..) {
            let (at, action) = self
                .in_flight
                .remove(&id)
                .unwrap_or_else(|| panic!("completion of unknown transaction {id}"));
            if record {
                let ns = now.duration_since(at).as_nanos();
                self.latency_ns
                    .saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
            }
            if let Err(source) = result {
                failure.get_or_insert(BenchError::Txn {
                    action: action.to_string(),
                    source,
                });
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Waits until nothing is in flight in the store: no home writes, no checkpoint.
    fn drain(&mut self) -> Result<(), BenchError> {
        self.store
            .drain()
            .map_err(|source: StoreError| BenchError::Store {
                what: "drain the store",
                source,
            })
    }
}

/// The bounds of one measured phase, shared by both pumps: when it stops taking new
/// transactions (a deadline or an operation budget), and when it counts as stalled.
struct PhaseClock {
    start: Instant,
    deadline: Option<Instant>,
    budget: u64,
    last_progress: Instant,
    empty_polls: u32,
}

impl PhaseClock {
    fn new(stop: Stop) -> Self {
        let start = Instant::now();
        let (deadline, budget) = match stop {
            Stop::Seconds(s) => (Some(start + Duration::from_secs_f64(s)), u64::MAX),
            Stop::Ops(n) => (None, n),
        };
        PhaseClock {
            start,
            deadline,
            budget,
            last_progress: start,
            empty_polls: 0,
        }
    }

    /// Whether to queue more, `queued` queued so far, at `now`.
    fn open(&self, queued: u64, now: Instant) -> bool {
        queued < self.budget && self.deadline.is_none_or(|d| now < d)
    }

    /// Something completed at `now`.
    fn progress(&mut self, now: Instant) {
        self.last_progress = now;
        self.empty_polls = 0;
    }

    /// A poll that completed nothing, with `in_flight` waiting; an error once nothing has
    /// completed for STALL_LIMIT. Returns the empty polls in a row.
    fn empty_poll(&mut self, in_flight: u32) -> Result<u32, BenchError> {
        self.empty_polls += 1;
        if self.empty_polls % POLLS_PER_STALL_CHECK == 0
            && self.last_progress.elapsed() > STALL_LIMIT
        {
            return Err(BenchError::Stalled {
                seconds: STALL_LIMIT.as_secs(),
                in_flight,
            });
        }
        Ok(self.empty_polls)
    }
}

/// `after - before`, counter by counter.
fn shard_stats_delta(after: &ShardStats, before: &ShardStats) -> ShardStats {
    after.since(before)
}

#[cfg(test)]
mod tests;
