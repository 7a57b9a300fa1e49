//! The crash explorer: seeded workloads on the simulated device, a power cut at chosen
//! kinds of points, recovery (sometimes itself cut short), then the [`oracle`] checks every
//! object against DESIGN §4 and fsck checks the allocator.
//!
//! Each cycle is independent: a fresh device and store, a warm-up of acknowledged
//! transactions (small journal, so it wraps and checkpoints), then a crash phase with many
//! transactions in flight and the cut. A cycle is seeded from `(seed, cycle)`, so a
//! violation reproduces alone with `keel-bench crash --seed S --first-cycle N --cycles 1`.
//!
//! Time is discrete-event ([`SimClock::discrete`]): the run is deterministic, and a cycle
//! takes milliseconds.

pub mod model;
pub mod oracle;
pub mod workload;

use std::collections::BTreeMap;

use keel_drivers::sim::{Fault, SimClock, SimConfig, SimDevice};
use keel_drivers::{BlockDevice, NvmeStatus, Op};

use std::sync::Arc;

use crate::error::StoreError;
use crate::reactor::{CompletionRing, Engine, Notify, ReactorConfig};
use crate::shard::{Phase, ShardConfig};
use crate::store::{shard_for, MkfsOptions, Store};
use crate::txn::Transaction;
use crate::types::{CollId, JournalMode, ObjKey};
use model::{Model, ModelObject};
use oracle::{Actual, Oracle, Submitted};
use workload::{TxnClass, Workload, COLLS, SPARE_COLL};

/// How to explore.
#[derive(Clone, Debug)]
pub struct CrashConfig {
    /// Journal mode under test.
    pub mode: JournalMode,
    /// Base seed.
    pub seed: u64,
    /// Cycles to run.
    pub cycles: u64,
    /// First cycle number (to reproduce one cycle).
    pub first_cycle: u64,
    /// Transactions in flight at most.
    pub max_inflight: usize,
    /// Device latency (with up to as much jitter).
    pub latency_ns: u64,
    /// Volatile write cache on the device.
    pub volatile_cache: bool,
    /// Shards. With more than one, the store runs as reactors in stepped mode
    /// ([`crate::reactor::Engine`], every reactor turned on this thread, so cycles replay
    /// exactly), and the workload spreads over two collections per shard.
    pub shards: u32,
}

impl CrashConfig {
    /// Defaults for `mode` and `seed`.
    pub fn new(mode: JournalMode, seed: u64, cycles: u64) -> Self {
        CrashConfig {
            mode,
            seed,
            cycles,
            first_cycle: 0,
            max_inflight: 16,
            latency_ns: 10_000,
            volatile_cache: true,
            shards: 1,
        }
    }
}

/// Where the power was cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CrashPoint {
    /// After a random number of steps.
    Random,
    /// While data writes were in flight, before their entries.
    DataBeforeRecord,
    /// While full-journal data was on its way to its home location, after the ack.
    HomeWrites,
    /// While a journal batch (or its flush) was in flight.
    InBatch,
    /// While a checkpoint was in flight.
    InCheckpoint,
    /// After the workload finished (nothing in flight).
    Idle,
    /// During recovery after a first cut.
    DuringReplay,
}

impl CrashPoint {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CrashPoint::Random => "random",
            CrashPoint::DataBeforeRecord => "data_before_record",
            CrashPoint::HomeWrites => "home_writes",
            CrashPoint::InBatch => "in_batch",
            CrashPoint::InCheckpoint => "in_checkpoint",
            CrashPoint::Idle => "idle",
            CrashPoint::DuringReplay => "during_replay",
        }
    }
}

/// Counts per op class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassCounts {
    /// Acknowledged (checked durable).
    pub acked: u64,
    /// Not acknowledged and found present after recovery.
    pub unacked_present: u64,
    /// Not acknowledged and found absent.
    pub unacked_absent: u64,
    /// Not acknowledged, and present and absent states look the same.
    pub unacked_ambiguous: u64,
}

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct CrashReport {
    /// Base seed.
    pub seed: u64,
    /// Cycles run.
    pub cycles: u64,
    /// Power cuts, by point.
    pub crash_points: BTreeMap<&'static str, u64>,
    /// Violations found.
    pub violations: u64,
    /// Objects whose acknowledged state was lost (also counted in violations).
    pub acked_lost: u64,
    /// Per op class.
    pub classes: BTreeMap<&'static str, ClassCounts>,
    /// The first violations, each with how to reproduce it.
    pub failures: Vec<String>,
    /// What the scrub after each recovery found (docs/integrity.md).
    pub integrity: IntegrityCounts,
}

/// Per-page classification by the scrub that follows each recovery, and what recovery did
/// with unconfirmed parallel-commit records and open intents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntegrityCounts {
    /// Pages checked.
    pub pages: u64,
    /// Pages that matched their sums.
    pub clean: u64,
    /// Pages of torn overwrites (inside intents the cut left open): caller-owned, then
    /// acknowledged by the observer and checked by the oracle.
    pub torn: u64,
    /// Pages that failed their sums outside any intent, in cycles with overwrite intents:
    /// each one is a violation (a false corruption report, since the explorer injects no
    /// corruption).
    pub corrupt: u64,
    /// Cycles whose store kept no overwrite intents.
    pub intents_off_cycles: u64,
    /// Pages that failed their sums in those cycles: an overwrite the cut interrupted reads
    /// as corruption there. The oracle checks each one: a later, unacknowledged candidate
    /// rewrites it, and every block holds old or new bytes.
    pub corrupt_intents_off: u64,
    /// Cycles whose device reported and honoured an atomic write unit of one page.
    pub atomic_cycles: u64,
    /// Torn pages found in those cycles (only multi-page overwrites may tear there).
    pub torn_in_atomic_cycles: u64,
    /// Unconfirmed records (parallel commit, intent first) recovery checked against their
    /// data.
    pub unconfirmed_checked: u64,
    /// Of those, records dropped (their data never landed; never acknowledged).
    pub unconfirmed_dropped: u64,
    /// Open intents recovery found clean and closed.
    pub intents_closed: u64,
}

const SIM_BLOCKS: u64 = 32 << 11; // 32 MiB of 512-byte blocks

/// One cycle in three runs on a device whose atomic write unit is one page (8 blocks of
/// 512 bytes): single-page overwrites (still intent first) must then never tear.
fn atomic_cycle(seed: u64) -> bool {
    seed % 3 == 0
}

fn sim_cfg(cfg: &CrashConfig, seed: u64, clock: SimClock, atomic: bool) -> SimConfig {
    let mut c = SimConfig::new(512, SIM_BLOCKS);
    if atomic {
        c.atomic_write_blocks = 8;
        c.honour_atomic = true;
    }
    // One cycle in four writes the data of parallel and intent-first records without FUA,
    // with a flush before the batch commits.
    c.fua_native = seed % 4 != 1;
    c.volatile_write_cache = cfg.volatile_cache;
    c.latency_ns = cfg.latency_ns;
    c.jitter_ns = cfg.latency_ns;
    c.flush_latency_ns = cfg.latency_ns;
    c.parallelism = 8;
    c.seed = seed;
    c.clock = clock;
    c
}

/// One cycle in five runs a store without overwrite intents: an interrupted overwrite then
/// reads as corruption, which the oracle checks instead of failing on it.
fn intents_off_cycle(seed: u64) -> bool {
    seed % 5 == 3
}

fn shard_cfg(intents: bool) -> ShardConfig {
    ShardConfig {
        overwrite_intents: intents,
        io_bufs: 96,
        io_buf_bytes: 64 << 10,
        journal_bufs: 16,
        journal_buf_bytes: 64 << 10,
        data_depth: 64,
        journal_depth: 16,
        // The batch wait runs on the wall clock; the explorer must replay exactly.
        max_batch_wait_us: 0,
        ..ShardConfig::default()
    }
}

/// Runs the explorer.
pub fn run(cfg: &CrashConfig, mut progress: impl FnMut(u64)) -> CrashReport {
    let mut rep = CrashReport {
        seed: cfg.seed,
        ..Default::default()
    };
    for c in TxnClass::ALL {
        rep.classes.insert(c.as_str(), ClassCounts::default());
    }
    for cycle in cfg.first_cycle..cfg.first_cycle + cfg.cycles {
        run_cycle(cfg, cycle, &mut rep);
        rep.cycles += 1;
        progress(rep.cycles);
    }
    rep
}

fn cycle_seed(seed: u64, cycle: u64) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ cycle.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
}

/// What the explorer drives: the single-threaded store, or reactors stepped on this
/// thread.
enum Target {
    Store(Store<SimDevice>),
    Reactors {
        engine: Engine<SimDevice>,
        ring: Arc<CompletionRing>,
        next_tag: u64,
    },
}

impl Target {
    fn queue(&mut self, txn: Transaction) -> Result<u64, StoreError> {
        match self {
            Target::Store(s) => s.queue(txn),
            Target::Reactors {
                engine,
                ring,
                next_tag,
            } => {
                let tag = *next_tag;
                engine.try_submit(txn, Notify::ring(ring, tag)?)?;
                *next_tag += 1;
                Ok(tag)
            }
        }
    }

    fn poll(&mut self) -> bool {
        match self {
            Target::Store(s) => s.poll(),
            Target::Reactors { engine, .. } => engine.step().is_busy(),
        }
    }

    fn take_completions(&mut self, mut f: impl FnMut(u64, Result<(), StoreError>)) {
        match self {
            Target::Store(s) => {
                s.take_completions(f);
            }
            Target::Reactors { ring, .. } => {
                while let Some((tag, r)) = ring.pop() {
                    f(tag, r);
                }
            }
        }
    }

    fn submit_sync(&mut self, txn: Transaction) -> Result<(), StoreError> {
        match self {
            Target::Store(s) => s.submit_sync(txn),
            Target::Reactors { engine, .. } => engine.submit_sync(txn),
        }
    }

    fn phase(&self) -> Phase {
        match self {
            Target::Store(s) => s.phase(),
            Target::Reactors { engine, .. } => engine.phase().unwrap_or_default(),
        }
    }

    fn is_idle(&self) -> bool {
        match self {
            Target::Store(s) => s.is_idle(),
            Target::Reactors { engine, .. } => engine
                .with_reactors(|rs| rs.iter().all(|r| r.is_idle()))
                .unwrap_or(false),
        }
    }

    fn request_checkpoint(&mut self) {
        match self {
            Target::Store(s) => s.request_checkpoint(),
            Target::Reactors { engine, .. } => {
                let _ = engine.request_checkpoint();
            }
        }
    }
}

/// Two collections on every one of `shards` shards (none of them [`SPARE_COLL`]).
fn colls_for(shards: u32) -> Vec<CollId> {
    if shards <= 1 {
        return COLLS.to_vec();
    }
    let n = shards as usize;
    let mut per = vec![0; n];
    let mut out = Vec::new();
    let mut c: CollId = 1;
    while per.iter().any(|k| *k < 2) {
        let s = shard_for(c, n);
        if c != SPARE_COLL && per[s] < 2 {
            per[s] += 1;
            out.push(c);
        }
        c += 1;
    }
    out
}

struct Run {
    store: Target,
    expected: Model,
    submitted: Vec<(Submitted, TxnClass, bool)>,
    inflight: BTreeMap<u64, usize>,
}

impl Run {
    /// Queues one generated transaction, predicting its result with the model.
    fn submit(&mut self, w: &mut Workload) -> Result<(), String> {
        let (txn, class) = w.next(&self.expected);
        let ok = self.expected.apply(&txn);
        let id = match self.store.queue(txn.clone()) {
            Ok(id) => id,
            Err(e) if !ok => {
                // A statically invalid transaction: refused at once, as the model predicts.
                let _ = e;
                return Ok(());
            }
            Err(e) => return Err(format!("store refused a valid transaction: {e}")),
        };
        self.inflight.insert(id, self.submitted.len());
        self.submitted
            .push((Submitted { txn, acked: None }, class, ok));
        Ok(())
    }

    /// One poll; records acknowledgements and checks each result against the model.
    fn step(&mut self) -> Result<bool, String> {
        let busy = self.store.poll();
        let mut err = None;
        let (inflight, submitted) = (&mut self.inflight, &mut self.submitted);
        self.store.take_completions(|id, r| {
            let i = inflight.remove(&id).expect("known transaction");
            let (s, _, predicted) = &mut submitted[i];
            s.acked = Some(r.is_ok());
            if r.is_ok() != *predicted && err.is_none() {
                err = Some(format!(
                    "transaction #{i} ({:?}): store says {:?}, model predicted {}",
                    s.txn.ops().first().map(|o| o.kind()),
                    r.err(),
                    if *predicted { "success" } else { "failure" }
                ));
            }
        });
        match err {
            Some(e) => Err(e),
            None => Ok(busy),
        }
    }
}

fn run_cycle(cfg: &CrashConfig, cycle: u64, rep: &mut CrashReport) {
    let seed = cycle_seed(cfg.seed, cycle);
    let shards = if cfg.shards > 1 {
        format!(" --shards {}", cfg.shards)
    } else {
        String::new()
    };
    let repro = format!(
        "keel-bench crash --mode {} --seed {} --first-cycle {cycle} --cycles 1{shards}",
        cfg.mode, cfg.seed
    );
    let fail = |rep: &mut CrashReport, what: String| {
        rep.violations += 1;
        if rep.failures.len() < 10 {
            rep.failures
                .push(format!("cycle {cycle}: {what}\n  reproduce: {repro}"));
        }
    };
    let mut rng = fastrand::Rng::with_seed(seed);
    let clock = SimClock::discrete();
    let atomic = atomic_cycle(seed);
    rep.integrity.atomic_cycles += u64::from(atomic);
    let intents_off = intents_off_cycle(seed);
    rep.integrity.intents_off_cycles += u64::from(intents_off);
    let dev = SimDevice::new(sim_cfg(cfg, seed, clock.clone(), atomic)).expect("sim config");
    let mut mk = MkfsOptions::new(cfg.mode);
    mk.journal_bytes = 256 << 10;
    mk.checkpoint_bytes = 2 << 20;
    mk.uuid = Some([7; 16]);
    mk.shards = cfg.shards.max(1);
    Store::mkfs(&dev, &mk).expect("mkfs");
    let opened = Store::open(dev.clone(), shard_cfg(!intents_off)).expect("open");
    let store = if cfg.shards > 1 {
        Target::Reactors {
            engine: Engine::from_store(opened, ReactorConfig::stepped()).expect("reactors"),
            ring: CompletionRing::new(cfg.max_inflight + 1),
            next_tag: 1,
        }
    } else {
        Target::Store(opened)
    };
    let mut run = Run {
        store,
        expected: Model::default(),
        submitted: Vec::new(),
        inflight: BTreeMap::new(),
    };
    let colls = colls_for(cfg.shards);
    let mut w = Workload::with_colls(seed ^ 1, colls.clone());
    // One collection per setup transaction: a transaction stays within one shard.
    for &c in &colls {
        let mut setup = Transaction::default();
        setup.mkcoll(c);
        run.expected.apply(&setup);
        run.store.submit_sync(setup).expect("setup");
    }

    // Warm-up: acknowledged history, with the journal wrapping.
    let warm = rng.usize(20..200);
    let mut done = 0;
    while done < warm || !run.inflight.is_empty() {
        while done < warm && run.inflight.len() < cfg.max_inflight {
            if let Err(e) = run.submit(&mut w) {
                return fail(rep, e);
            }
            done += 1;
        }
        if let Err(e) = run.step() {
            return fail(rep, e);
        }
    }
    let base_model = run.expected.clone();
    let warm_subs = std::mem::take(&mut run.submitted);
    // History of acked states per object, for acked_lost reports.
    let mut history: BTreeMap<ObjKey, Vec<Option<ModelObject>>> = BTreeMap::new();
    let _ = warm_subs;

    // Crash phase.
    let target = match rng.u8(0..5) {
        0 => CrashPoint::Random,
        1 if cfg.mode == JournalMode::Full => CrashPoint::HomeWrites,
        1 => CrashPoint::DataBeforeRecord,
        2 => CrashPoint::InBatch,
        3 => CrashPoint::InCheckpoint,
        _ => CrashPoint::Random,
    };
    if target == CrashPoint::InCheckpoint {
        run.store.request_checkpoint();
    }
    let total = rng.usize(10..150);
    let random_cut = rng.usize(1..total * 2);
    let mut steps = 0;
    let mut queued = 0;
    let mut hit = CrashPoint::Idle;
    loop {
        while queued < total && run.inflight.len() < cfg.max_inflight {
            if let Err(e) = run.submit(&mut w) {
                return fail(rep, e);
            }
            queued += 1;
        }
        if let Err(e) = run.step() {
            return fail(rep, e);
        }
        steps += 1;
        let ph = run.store.phase();
        let now = match target {
            CrashPoint::Random => steps >= random_cut,
            CrashPoint::DataBeforeRecord => ph.data_writes && rng.u8(0..4) == 0,
            CrashPoint::HomeWrites => ph.home_writes && rng.u8(0..4) == 0,
            CrashPoint::InBatch => ph.batch && rng.u8(0..4) == 0,
            CrashPoint::InCheckpoint => ph.checkpoint && rng.u8(0..3) == 0,
            _ => false,
        };
        if now {
            hit = target;
            break;
        }
        if queued == total && run.inflight.is_empty() && run.store.is_idle() {
            break;
        }
        if target == CrashPoint::InCheckpoint && !ph.checkpoint && steps % 64 == 0 {
            run.store.request_checkpoint();
        }
    }
    *rep.crash_points.entry(hit.as_str()).or_default() += 1;
    let (image, _) = dev.power_cut();

    // Recovery, sometimes cut short by a second power cut.
    let clock2 = SimClock::discrete();
    let mut dev2 = SimDevice::from_image(sim_cfg(cfg, seed ^ 2, clock2.clone(), atomic), image)
        .expect("image");
    if rng.u8(0..4) == 0 {
        dev2.inject(Fault::FailNth {
            op: Op::Write,
            nth: rng.u64(1..6),
            status: NvmeStatus::INTERNAL_ERROR,
        });
        match Store::open(dev2.clone(), shard_cfg(!intents_off)) {
            Ok(s) => {
                drop(s);
                dev2.clear_faults();
            }
            Err(StoreError::Failed(_) | StoreError::Device { .. }) => {
                *rep.crash_points
                    .entry(CrashPoint::DuringReplay.as_str())
                    .or_default() += 1;
            }
            Err(e) => return fail(rep, format!("recovery failed: {e}")),
        }
        let (image2, _) = dev2.power_cut();
        dev2 = SimDevice::from_image(sim_cfg(cfg, seed ^ 3, SimClock::discrete(), atomic), image2)
            .expect("image");
    }
    let mut store = match Store::open(dev2, shard_cfg(!intents_off)) {
        Ok(s) => s,
        Err(e) => return fail(rep, format!("recovery failed: {e}")),
    };

    // What recovery did, then every page checked: torn overwrites are expected after a cut
    // (inside intents), corruption never is.
    for r in store.replay_reports() {
        rep.integrity.unconfirmed_checked += r.unconfirmed_checked;
        rep.integrity.unconfirmed_dropped += r.unconfirmed_dropped;
        rep.integrity.intents_closed += r.intents_closed;
    }
    match store.scrub() {
        Ok(s) => {
            let i = &mut rep.integrity;
            i.pages += s.pages;
            i.clean += s.clean;
            i.torn += s.torn_pages();
            if atomic {
                i.torn_in_atomic_cycles += s.torn_pages();
            }
            if intents_off {
                // Interrupted overwrites read as corruption: the oracle checks them below.
                i.corrupt_intents_off += s.corrupt_pages();
            } else {
                i.corrupt += s.corrupt_pages();
                for r in &s.corrupt {
                    fail(
                        rep,
                        format!(
                            "scrub: {} bytes {}..{} fail their sums outside any intent",
                            r.key,
                            r.offset,
                            r.offset + r.len
                        ),
                    );
                }
            }
        }
        Err(e) => return fail(rep, format!("scrub after recovery: {e}")),
    }

    // The oracle.
    let mut base = base_model;
    let subs: Vec<Submitted> = run
        .submitted
        .iter()
        .map(|(s, _, _)| Submitted {
            txn: s.txn.clone(),
            acked: s.acked,
        })
        .collect();
    for (s, class, _) in &run.submitted {
        if s.acked.is_some() {
            base.apply(&s.txn);
            rep.classes.get_mut(class.as_str()).expect("class").acked += 1;
            for key in s.txn.ops().iter().flat_map(|o| o.objects()) {
                let st = base.object(key.coll, &key.name).cloned();
                history.entry(key).or_default().push(st);
            }
        }
    }
    let mut keys = Vec::new();
    for &c in &colls {
        for i in 0..8 {
            keys.push(ObjKey::new(c, format!("obj{i}").into_bytes()));
        }
    }
    let oracle = Oracle {
        base: &base,
        history: &history,
        submitted: &subs,
        mode: cfg.mode,
        block: store.device().geometry().block_size as usize,
    };
    let mut colls = colls;
    colls.push(SPARE_COLL);
    let mut read_err = None;
    let verdict = {
        let st = &mut store;
        let colls_now = st.list_collections();
        let mut actual = |k: &ObjKey| Actual::observe(st, k, intents_off, &mut read_err);
        oracle.check(&keys, &colls, &mut actual, |c| colls_now.contains(&c))
    };
    if let Some(e) = read_err {
        fail(rep, e);
    }
    rep.acked_lost += verdict.acked_lost;
    for v in verdict.violations {
        fail(rep, v);
    }
    for (idx, presence) in &verdict.presence {
        let class = run.submitted[*idx].1;
        let c = rep.classes.get_mut(class.as_str()).expect("class");
        match presence {
            Some(true) => c.unacked_present += 1,
            Some(false) => c.unacked_absent += 1,
            None => c.unacked_ambiguous += 1,
        }
    }
    let f = store.fsck();
    for e in f.errors {
        fail(rep, format!("fsck: {e}"));
    }
}
