//! Reactors: the store run by N pinned, polled, run-to-completion threads, one shard each.
//!
//! ```text
//!  any thread: Engine::try_submit(txn, Notify) ──route (collection hash)──┐
//!                                                                       ▼
//!   ┌──────────── reactor i (thread keel-reactor-i, pinned to its core) ───────────┐
//!   │ inbox: ArrayQueue<Msg> (ring_depth) ─► ring poller ─► Shard::queue           │
//!   │ pollers: ring, qpairs, txns, journal, checkpoint, completions, timers, scrub │
//!   │ data queue pair + journal queue pair + journal ring + allocator + table      │
//!   │ completions ─► Notify: callback (on this thread) | CompletionRing (tag, r)   │
//!   └──────────────────────────────────────────────────────────────────────────────┘
//!  reads / stat / getattr / omap / list / stats / fsck / scrub / drain: a Query message
//!  with a one-entry reply ring; the asker waits on it
//! ```
//!
//! - **Shared nothing.** A reactor owns its shard; other threads reach it only through its
//!   ring. No lock is taken on the I/O path (the rings are lock-free; the simulated
//!   device has a lock of its own, a property of the simulator).
//! - **Routing.** A collection lives on one shard ([`crate::store::shard_for`]); a
//!   transaction must stay within the collections of one shard, or it is refused with
//!   [`StoreError::CrossShard`] before anything is queued (docs/reactors.md).
//! - **Back-pressure.** [`Engine::try_submit`] answers `Busy` when the reactor's ring (or
//!   the submitter's completion ring) is full and gives the transaction back;
//!   [`Engine::submit`] waits for room instead. Nothing grows without bound.
//! - **Stepped mode** ([`ReactorConfig::stepped`]): no thread is started; the caller's
//!   thread turns every reactor with [`Engine::step`] (and every blocking call steps them
//!   while it waits). The same code runs as in threaded mode, so multi-shard tests and the
//!   crash explorer replay exactly.
//! - **Shutdown** ([`Engine::close`], or drop): intake stops (later calls get `Closed`),
//!   each reactor finishes what its ring and shard hold (every result delivered),
//!   writes a checkpoint, and its thread is joined. A message that no reactor can answer
//!   any more (its thread died) answers `Closed` as it is dropped.
//! - **Scrub** ([`scrub`]): with [`ReactorConfig::scrub_pages_per_sec`] set, each reactor
//!   checks its shard's pages against their sums in the background, a batch at a time at
//!   that rate, and counts what it finds in [`ReactorStats::scrub`]; [`Engine::scrub`] runs
//!   a full pass on every reactor at once and waits for it.
//! - Blocking calls made on a reactor thread (from a callback) would wait for themselves:
//!   they fail with [`StoreError::OnReactor`]; `try_submit` works there.

pub mod poller;
mod query;
#[allow(clippy::module_inception)]
pub mod reactor;
pub mod ring;
pub mod scrub;
pub mod stats;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use keel_drivers::BlockDevice;

pub use poller::{Poll, Poller, PollerId, POLLERS};
pub use reactor::{Idle, Reactor, RING_BATCH};
pub use ring::{Callback, CompletionRing, Maps, Notify, SubmitError};
pub use scrub::{BadKind, Finding, ScrubStats, MAX_SCRUB_PAGES_PER_SEC, SCRUB_BATCH_PAGES};
pub use stats::{LoopStats, ReactorStats};

use crate::error::{Result, StoreError};
use crate::shard::recovery::ReplayReport;
use crate::shard::ShardConfig;
use crate::store::{route, shard_for, Store, StoreStats};
use crate::superblock::Superblock;
use crate::txn::Transaction;
use crate::types::{CollId, JournalMode};
use reactor::{on_reactor, Shared};
use ring::{Answer, Armed, Msg, Query};

/// Largest message ring a reactor may have.
pub const MAX_RING_DEPTH: usize = 1 << 20;

/// Which cores run the reactors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cores {
    /// One reactor per shard, reactor `i` pinned to the `i`-th core this process may run
    /// on (round robin when there are more shards than cores).
    Auto,
    /// One reactor per shard, not pinned.
    Unpinned,
    /// Reactor `i` pinned to core `list[i]`; the list has one entry per shard.
    List(Vec<usize>),
}

/// How the reactors run.
#[derive(Clone, Debug)]
pub struct ReactorConfig {
    /// Cores.
    pub cores: Cores,
    /// Messages each reactor's ring holds.
    pub ring_depth: usize,
    /// What an idle turn does.
    pub idle: Idle,
    /// Checkpoint every this many milliseconds besides when the journal fills (0: never;
    /// wall time, so leave it 0 where runs must replay exactly).
    pub checkpoint_interval_ms: u64,
    /// Deterministic test mode: no threads; the caller turns the reactors.
    pub stepped: bool,
    /// Reactor threads are named `{thread_name}-{index}` (Linux shows 15 bytes of it).
    pub thread_name: String,
    /// Background scrub: pages per second each reactor reads and checks against their
    /// sums, in batches of up to [`SCRUB_BATCH_PAGES`] (0: off, the default; at most
    /// [`MAX_SCRUB_PAGES_PER_SEC`]). Wall time, so threaded mode only: stepped reactors
    /// never scrub by themselves (a stepped test calls
    /// [`Reactor::scrub_background_step`]). Findings: [`ReactorStats::scrub`].
    pub scrub_pages_per_sec: u64,
}

impl Default for ReactorConfig {
    fn default() -> Self {
        ReactorConfig {
            cores: Cores::Auto,
            ring_depth: 1024,
            idle: Idle::Spin,
            checkpoint_interval_ms: 0,
            stepped: false,
            thread_name: "keel-reactor".into(),
            scrub_pages_per_sec: 0,
        }
    }
}

impl ReactorConfig {
    /// The deterministic test mode: stepped, unpinned.
    pub fn stepped() -> Self {
        ReactorConfig {
            cores: Cores::Unpinned,
            stepped: true,
            ..ReactorConfig::default()
        }
    }

    /// Cores this process may run on (what [`Cores::Auto`] uses); at least one entry.
    pub fn available_cores() -> Vec<usize> {
        match core_affinity::get_core_ids() {
            Some(ids) if !ids.is_empty() => ids.into_iter().map(|c| c.id).collect(),
            _ => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
        }
    }
}

/// Every reactor's snapshot, in shard order.
#[derive(Clone, Debug, Default)]
pub struct EngineStats {
    /// Per reactor.
    pub reactors: Vec<ReactorStats>,
}

impl EngineStats {
    /// The background scrub's counters summed over reactors, with every reactor's recent
    /// bad ranges (in reactor order).
    pub fn scrub_total(&self) -> ScrubStats {
        let mut s = ScrubStats::default();
        for r in &self.reactors {
            s.add(&r.scrub);
        }
        s
    }

    /// The store's counters summed over reactors, as [`Store::stats`] gives them.
    pub fn total(&self) -> StoreStats {
        let mut s = StoreStats::default();
        for r in &self.reactors {
            s.shards.add(&r.shard);
            s.data_io = s.data_io.merged(&r.data_io);
            s.journal_io = s.journal_io.merged(&r.journal_io);
        }
        s
    }
}

/// Admission: submitters in flight, and a closed bit. `close` sets the bit, then waits for
/// the submitters already past the check, so no message lands in a ring after its Stop.
struct Gate(AtomicU64);

const GATE_CLOSED: u64 = 1 << 63;

impl Gate {
    fn enter(&self) -> bool {
        if self.0.fetch_add(1, Ordering::AcqRel) & GATE_CLOSED != 0 {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn leave(&self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }

    fn close(&self) {
        self.0.fetch_or(GATE_CLOSED, Ordering::AcqRel);
        while self.0.load(Ordering::Acquire) & !GATE_CLOSED != 0 {
            std::thread::yield_now();
        }
    }
}

/// Stepped reactors, or the threads running them.
enum Runner<Q: keel_drivers::QueuePair> {
    Threads(Vec<Option<JoinHandle<Result<()>>>>),
    Stepped(Mutex<Vec<Reactor<Q>>>),
}

/// A store run by reactors, one per shard. `Sync`: share it (`&Engine` or `Arc<Engine>`)
/// with every thread that submits.
pub struct Engine<D: BlockDevice> {
    dev: D,
    sb: Superblock,
    replay: Vec<ReplayReport>,
    shared: Vec<Arc<Shared>>,
    cores: Vec<Option<usize>>,
    gate: Gate,
    runner: Runner<D::Qpair>,
    closed: bool,
}

impl<D: BlockDevice> std::fmt::Debug for Engine<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("shards", &self.shared.len())
            .field("cores", &self.cores)
            .field("stepped", &matches!(self.runner, Runner::Stepped(_)))
            .finish()
    }
}

/// Waits a little, politely: spins, then yields the core (a waiting client must not take
/// the reactors' cores).
struct Backoff(u32);

impl Backoff {
    fn snooze(&mut self) {
        self.0 = self.0.saturating_add(1);
        if self.0 < 32 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

impl<D: BlockDevice> Engine<D>
where
    D::Qpair: 'static,
{
    /// Opens the store on `dev` (recovering every shard, as [`Store::open`]) and starts a
    /// reactor per shard.
    pub fn open(dev: D, cfg: ShardConfig, rcfg: ReactorConfig) -> Result<Self> {
        Self::from_store(Store::open(dev, cfg)?, rcfg)
    }

    /// Starts a reactor per shard of an opened store. Pinned threads are pinned before
    /// this returns; a core that cannot be used is a `Config` error (nothing keeps
    /// running).
    pub fn from_store(store: Store<D>, rcfg: ReactorConfig) -> Result<Self> {
        if rcfg.ring_depth == 0 || rcfg.ring_depth > MAX_RING_DEPTH {
            return Err(StoreError::Config(format!(
                "reactor ring depth {} (1..={MAX_RING_DEPTH})",
                rcfg.ring_depth
            )));
        }
        if rcfg.scrub_pages_per_sec > MAX_SCRUB_PAGES_PER_SEC {
            return Err(StoreError::Config(format!(
                "scrub rate of {} pages per second (0..={MAX_SCRUB_PAGES_PER_SEC})",
                rcfg.scrub_pages_per_sec
            )));
        }
        let parts = store.into_parts();
        let n = parts.shards.len();
        let cores: Vec<Option<usize>> = match &rcfg.cores {
            Cores::Auto => {
                let avail = ReactorConfig::available_cores();
                (0..n).map(|i| Some(avail[i % avail.len()])).collect()
            }
            Cores::Unpinned => vec![None; n],
            Cores::List(l) => {
                if l.len() != n {
                    return Err(StoreError::Config(format!(
                        "{} reactor cores for a store of {n} shards (one per shard)",
                        l.len()
                    )));
                }
                l.iter().map(|c| Some(*c)).collect()
            }
        };
        let every = (rcfg.checkpoint_interval_ms > 0)
            .then(|| Duration::from_millis(rcfg.checkpoint_interval_ms));
        let shared: Vec<Arc<Shared>> = (0..n).map(|_| Shared::new(rcfg.ring_depth)).collect();
        let reactors: Vec<Reactor<D::Qpair>> = parts
            .shards
            .into_iter()
            .enumerate()
            .map(|(i, sh)| {
                let shared = Arc::clone(&shared[i]);
                Reactor::new(i, cores[i], sh, shared, every, rcfg.scrub_pages_per_sec)
            })
            .collect();
        let (runner, to_spawn) = if rcfg.stepped {
            (Runner::Stepped(Mutex::new(reactors)), Vec::new())
        } else {
            (Runner::Threads(Vec::with_capacity(n)), reactors)
        };
        let mut engine = Engine {
            dev: parts.dev,
            sb: parts.sb,
            replay: parts.replay,
            shared,
            cores,
            gate: Gate(AtomicU64::new(0)),
            runner,
            closed: false,
        };
        if !rcfg.stepped {
            for r in to_spawn {
                if let Err(e) = engine.spawn(r, rcfg.idle, &rcfg.thread_name) {
                    let _ = engine.shutdown();
                    return Err(e);
                }
            }
        }
        Ok(engine)
    }

    fn spawn(&mut self, r: Reactor<D::Qpair>, idle: Idle, name: &str) -> Result<()> {
        let Runner::Threads(threads) = &mut self.runner else {
            unreachable!("threaded mode")
        };
        let i = r.index();
        let core = self.cores[i];
        // The start-up answer (a one-entry ring: no thread-local state on this thread,
        // which may be a C thread that never exits through Rust).
        let started = Arc::new(ArrayQueue::<Result<()>>::new(1));
        let tx = Arc::clone(&started);
        let h = std::thread::Builder::new()
            .name(format!("{name}-{i}"))
            .spawn(move || {
                if let Some(c) = core {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: c }) {
                        let _ = tx.push(Err(StoreError::Config(format!(
                            "reactor {i}: cannot pin to core {c}"
                        ))));
                        return Ok(());
                    }
                }
                let _ = tx.push(Ok(()));
                r.run(idle)
            })
            .map_err(|e| StoreError::Config(format!("reactor {i}: cannot start thread: {e}")))?;
        threads.push(Some(h));
        let mut b = Backoff(0);
        loop {
            if let Some(r) = started.pop() {
                return r;
            }
            // The thread let go of its end without answering: it died.
            if Arc::strong_count(&started) == 1 {
                return started.pop().unwrap_or_else(|| {
                    Err(StoreError::Failed(format!("reactor {i} died starting")))
                });
            }
            b.snooze();
        }
    }
}

impl<D: BlockDevice> Engine<D> {
    /// Shards (= reactors).
    pub fn shards(&self) -> usize {
        self.shared.len()
    }

    /// The shard (and reactor) of collection `coll`.
    pub fn shard_of(&self, coll: CollId) -> usize {
        shard_for(coll, self.shared.len())
    }

    /// The core each reactor is pinned to (None: not pinned).
    pub fn cores(&self) -> &[Option<usize>] {
        &self.cores
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// The superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// The journal mode.
    pub fn mode(&self) -> JournalMode {
        self.sb.mode
    }

    /// What recovery found at open, per shard.
    pub fn replay_reports(&self) -> &[ReplayReport] {
        &self.replay
    }

    /// True in stepped mode.
    pub fn is_stepped(&self) -> bool {
        matches!(self.runner, Runner::Stepped(_))
    }

    fn stepped_lock(&self) -> Option<MutexGuard<'_, Vec<Reactor<D::Qpair>>>> {
        match &self.runner {
            Runner::Stepped(m) => Some(m.lock().unwrap_or_else(|p| p.into_inner())),
            Runner::Threads(_) => None,
        }
    }

    /// Stepped mode: one turn of every reactor, in shard order. Busy if any was. Threaded
    /// mode: nothing (Idle).
    pub fn step(&self) -> Poll {
        match self.stepped_lock() {
            Some(mut rs) => poller::step_all(&mut rs),
            None => Poll::Idle,
        }
    }

    /// Stepped mode: `f` on the reactors themselves (their shards, their counters), on
    /// this thread. None in threaded mode.
    pub fn with_reactors<T>(&self, f: impl FnOnce(&mut [Reactor<D::Qpair>]) -> T) -> Option<T> {
        self.stepped_lock().map(|mut rs| f(&mut rs))
    }

    /// While waiting: stepped mode turns the reactors, threaded mode backs off.
    fn turn(&self, b: &mut Backoff) {
        if !self.step().is_busy() {
            b.snooze();
        }
    }

    // ---- transactions -------------------------------------------------------------------

    /// Submits a transaction to the reactor of its shard without waiting. Its result goes
    /// to `notify`. Errors give the transaction and the notification back, and change
    /// nothing: `Busy` (the reactor's ring is full: poll your completions and retry),
    /// `CrossShard`, a validation error, `Closed`.
    pub fn try_submit(&self, txn: Transaction, notify: Notify) -> Result<(), SubmitError> {
        self.push_txn(txn, notify, false)
    }

    /// As [`Engine::try_submit`], but waits for room in the reactor's ring (stepped mode:
    /// turning the reactors). Fails with `OnReactor` on a reactor thread.
    pub fn submit(&self, txn: Transaction, notify: Notify) -> Result<(), SubmitError> {
        self.push_txn(txn, notify, true)
    }

    fn push_txn(&self, txn: Transaction, notify: Notify, wait: bool) -> Result<(), SubmitError> {
        let refuse = |error, txn, notify| Err(SubmitError { error, txn, notify });
        if let Err(e) = txn.validate() {
            return refuse(e, txn, notify);
        }
        let s = match route(&txn, self.shared.len()) {
            Ok(s) => s,
            Err(e) => return refuse(e, txn, notify),
        };
        if wait && on_reactor() {
            return refuse(StoreError::OnReactor("Engine::submit"), txn, notify);
        }
        if !self.gate.enter() {
            return refuse(StoreError::Closed, txn, notify);
        }
        let sh = &self.shared[s];
        let mut msg = Msg::Txn {
            txn,
            notify: Armed::new(notify),
        };
        let mut b = Backoff(0);
        let r = loop {
            if !sh.is_alive() {
                break Err((StoreError::Closed, msg));
            }
            match sh.inbox.push(msg) {
                Ok(()) => break Ok(()),
                Err(m) if !wait => break Err((StoreError::Busy(sh.inbox.capacity()), m)),
                Err(m) => {
                    msg = m;
                    self.turn(&mut b);
                }
            }
        };
        self.gate.leave();
        match r {
            Ok(()) => Ok(()),
            Err((error, Msg::Txn { txn, notify })) => refuse(error, txn, notify.disarm()),
            Err(_) => unreachable!("a transaction message"),
        }
    }

    /// The next result in `ring`, waiting for it (stepped mode: turning the reactors).
    /// None when nothing submitted with `ring` is outstanding.
    pub fn wait_completion(&self, ring: &CompletionRing) -> Result<Option<(u64, Result<()>)>> {
        let mut b = Backoff(0);
        loop {
            if let Some(x) = ring.pop() {
                return Ok(Some(x));
            }
            if ring.outstanding() == 0 {
                return Ok(None);
            }
            if on_reactor() {
                return Err(StoreError::OnReactor("Engine::wait_completion"));
            }
            self.turn(&mut b);
        }
    }

    /// Submits a transaction and waits for its result.
    pub fn submit_sync(&self, txn: Transaction) -> Result<()> {
        if on_reactor() {
            return Err(StoreError::OnReactor("Engine::submit_sync"));
        }
        let ring = CompletionRing::new(1);
        let n = Notify::ring(&ring, 0)?;
        self.submit(txn, n).map_err(|e| e.error)?;
        match self.wait_completion(&ring)? {
            Some((_, r)) => r,
            None => Err(StoreError::Closed),
        }
    }

    /// Asks every reactor for a checkpoint at its next batch boundary.
    pub fn request_checkpoint(&self) -> Result<()> {
        for i in 0..self.shared.len() {
            self.push_wait(i, Msg::Checkpoint)?;
        }
        Ok(())
    }

    /// Pushes `msg` to reactor `i`, waiting for room.
    fn push_wait(&self, i: usize, mut msg: Msg) -> Result<()> {
        if on_reactor() {
            return Err(StoreError::OnReactor("a blocking engine call"));
        }
        if !self.gate.enter() {
            return Err(StoreError::Closed);
        }
        let sh = &self.shared[i];
        let mut b = Backoff(0);
        let r = loop {
            if !sh.is_alive() {
                break Err(StoreError::Closed); // dropping msg answers it
            }
            match sh.inbox.push(msg) {
                Ok(()) => break Ok(()),
                Err(m) => {
                    msg = m;
                    self.turn(&mut b);
                }
            }
        };
        self.gate.leave();
        r
    }

    /// Waits until every transaction submitted before this call has finished (results
    /// delivered) and nothing is in flight in any shard.
    pub fn drain(&self) -> Result<()> {
        for i in 0..self.shared.len() {
            match self.ask(i, Query::Drain)? {
                Answer::Done => {}
                a => return unexpected(a),
            }
        }
        Ok(())
    }

    // ---- shutdown -----------------------------------------------------------------------

    /// Stops intake (later calls get `Closed`), lets every reactor finish what it holds
    /// (every result delivered), checkpoints every shard, and joins the threads. The first
    /// error of any reactor is returned (after a device fault: `Failed`).
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.gate.close();
        let mut first: Option<StoreError> = None;
        match &mut self.runner {
            Runner::Stepped(m) => {
                let rs = m.get_mut().unwrap_or_else(|p| p.into_inner());
                for r in rs.iter_mut() {
                    if let Err(e) = r.finish() {
                        first.get_or_insert(e);
                    }
                }
                rs.clear();
            }
            Runner::Threads(threads) => {
                for sh in &self.shared {
                    let mut msg = Msg::Stop;
                    while sh.is_alive() {
                        match sh.inbox.push(msg) {
                            Ok(()) => break,
                            Err(m) => {
                                msg = m;
                                std::thread::yield_now();
                            }
                        }
                    }
                }
                let me = reactor::os_tid();
                for (i, h) in threads.iter_mut().enumerate() {
                    let Some(h) = h.take() else { continue };
                    if self.shared[i].tid.load(Ordering::Acquire) == me {
                        // Dropped on its own reactor (by a callback): it stops by itself.
                        log::warn!("engine dropped on reactor {i}: not joined");
                        continue;
                    }
                    match h.join() {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            first.get_or_insert(e);
                        }
                        Err(_) => {
                            first
                                .get_or_insert(StoreError::Failed(format!("reactor {i} panicked")));
                        }
                    }
                }
            }
        }
        // Whatever is left in a ring (its reactor died) answers Closed as it drops.
        for sh in &self.shared {
            while sh.inbox.pop().is_some() {}
        }
        first.map_or(Ok(()), Err)
    }
}

impl<D: BlockDevice> Drop for Engine<D> {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::warn!("engine dropped: {e}");
        }
    }
}

fn unexpected<T>(a: Answer) -> Result<T> {
    Err(StoreError::Corrupt(format!(
        "reactor answered the wrong query: {a:?}"
    )))
}

// An engine is shared by the threads that submit to it, and a reactor moves into its
// thread.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    send_sync::<Engine<keel_drivers::sim::SimDevice>>();
    send::<Reactor<keel_drivers::sim::SimQpair>>();
};
