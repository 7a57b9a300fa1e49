//! One reactor: a shard, its message ring, and the loop that polls them.
//!
//! ```text
//!  turn:  ring ─► qpairs ─► txns ─► journal ─► checkpoint ─► (kick) ─► completions ─► timers
//!          │        │         │        │           │                      │
//!   messages   reap both   plan, data  group      slot A/B      callbacks / completion
//!   into the   queue pairs writes      commit                   rings; drain barriers
//!   shard
//!         ─► scrub: a batch of pages checked against their sums, at its rate (scrub.rs)
//! ```
//!
//! The shard's own steps are [`Shard::poll`]'s, one poller each, in the same order, so a
//! reactor turn is a shard poll with the ring before it and the completions after it.
//! Intake is bounded twice: the ring's depth, and the shard's `max_txns` (while the shard
//! is full the ring poller leaves messages in the ring, which fills, and submitters see
//! `Busy`). Nothing here allocates per transaction beyond what the shard does: the map of
//! pending notifications is sized to `max_txns` at start.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use keel_drivers::QueuePair;

use super::poller::{Poll, Poller, PollerId, POLLERS};
use super::ring::{Answer, Armed, Msg, Query, ReplyTo};
use super::scrub::BackgroundScrub;
use super::stats::{LoopStats, ReactorStats};
use crate::error::{Result, StoreError};
use crate::fsck::{fsck_shard, FsckReport};
use crate::shard::{Shard, TxnId};
use crate::store::ObjStat;
use crate::types::ObjKey;

/// Most pending notifications a reactor preallocates room for.
pub const PENDING_PREALLOC_MAX: usize = 1 << 16;

/// Messages one ring poll takes at most (then the shard gets its turn).
pub const RING_BATCH: usize = 64;

/// What a reactor's loop does when a turn finds nothing to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idle {
    /// Spin (a pinned reactor on a dedicated core: lowest latency).
    Spin,
    /// Spin `spin_turns` idle turns, then sleep, doubling from 1 µs up to `sleep_us_max`
    /// (shared development machines, tests). Any busy turn starts over.
    Backoff {
        /// Idle turns spun before the first sleep.
        spin_turns: u32,
        /// Longest sleep, in microseconds.
        sleep_us_max: u32,
    },
}

impl Idle {
    /// A back-off for shared machines: 64 idle turns, then sleeps up to 200 µs.
    pub const SHARED: Idle = Idle::Backoff {
        spin_turns: 64,
        sleep_us_max: 200,
    };

    /// Waits after the `idle_turns`-th idle turn in a row. True if it slept.
    fn wait(self, idle_turns: u32) -> bool {
        match self {
            Idle::Spin => {
                std::hint::spin_loop();
                false
            }
            Idle::Backoff {
                spin_turns,
                sleep_us_max,
            } => {
                if idle_turns <= spin_turns {
                    std::hint::spin_loop();
                    return false;
                }
                let k = (idle_turns - spin_turns).min(20);
                let us = (1u64 << k).min(u64::from(sleep_us_max.max(1)));
                std::thread::sleep(Duration::from_micros(us));
                true
            }
        }
    }
}

thread_local! {
    static ON_REACTOR: Cell<bool> = const { Cell::new(false) };
}

/// True on a reactor thread, or inside a stepped reactor's turn: a blocking engine call
/// here would wait for itself.
pub(crate) fn on_reactor() -> bool {
    ON_REACTOR.with(|c| c.get())
}

/// Marks the current thread as running a reactor until dropped.
pub(crate) struct OnReactorGuard(bool);

impl OnReactorGuard {
    pub(crate) fn enter() -> OnReactorGuard {
        OnReactorGuard(ON_REACTOR.with(|c| c.replace(true)))
    }
}

impl Drop for OnReactorGuard {
    fn drop(&mut self) {
        let was = self.0;
        ON_REACTOR.with(|c| c.set(was));
    }
}

/// What a reactor shares with the threads that talk to it.
pub(crate) struct Shared {
    /// Its message ring.
    pub(crate) inbox: ArrayQueue<Msg>,
    /// False once the reactor is gone (finished, or its thread died).
    pub(crate) alive: AtomicBool,
    /// The OS thread id of its thread (0: stepped, or not started).
    pub(crate) tid: std::sync::atomic::AtomicI64,
}

/// The calling thread's OS id (no allocation, unlike `std::thread::current`, which a C
/// thread would leak under valgrind).
pub(crate) fn os_tid() -> i64 {
    // SAFETY: gettid takes no arguments, cannot fail and touches no memory.
    i64::from(unsafe { libc::gettid() })
}

impl Shared {
    pub(crate) fn new(ring_depth: usize) -> Arc<Shared> {
        Arc::new(Shared {
            inbox: ArrayQueue::new(ring_depth),
            alive: AtomicBool::new(true),
            tid: std::sync::atomic::AtomicI64::new(0),
        })
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }
}

/// One reactor: owns one shard (its queue pairs, journal, allocator, table).
pub struct Reactor<Q: QueuePair> {
    index: usize,
    core: Option<usize>,
    shard: Shard<Q>,
    shared: Arc<Shared>,
    /// Notifications of transactions in the shard, by the shard's id.
    pending: HashMap<TxnId, Armed>,
    /// Drain queries waiting for the shard to be idle.
    barriers: Vec<ReplyTo>,
    stats: LoopStats,
    /// A Stop message was taken.
    stop: bool,
    checkpoint_every: Option<Duration>,
    last_checkpoint: Option<Instant>,
    /// Threaded mode: when the loop started (stepped mode keeps no time).
    started: Option<Instant>,
    /// The background scrub: its rate, cursor and counters.
    scrub: BackgroundScrub,
}

impl<Q: QueuePair> Reactor<Q> {
    pub(crate) fn new(
        index: usize,
        core: Option<usize>,
        shard: Shard<Q>,
        shared: Arc<Shared>,
        checkpoint_every: Option<Duration>,
        scrub_pages_per_sec: u64,
    ) -> Self {
        // Sized for the shard's limit (a store configured past PENDING_PREALLOC_MAX grows
        // the map instead).
        let cap = shard.max_txns().min(PENDING_PREALLOC_MAX);
        Reactor {
            index,
            core,
            shard,
            shared,
            pending: HashMap::with_capacity(cap),
            barriers: Vec::with_capacity(8),
            stats: LoopStats::default(),
            stop: false,
            checkpoint_every,
            last_checkpoint: None,
            started: None,
            scrub: BackgroundScrub::new(scrub_pages_per_sec),
        }
    }

    /// Its index (its shard's).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Its shard, with every acknowledged transaction applied (shard/commit.rs).
    pub fn shard(&mut self) -> &Shard<Q> {
        self.shard.settle();
        &self.shard
    }

    /// Its loop counters.
    pub fn loop_stats(&self) -> &LoopStats {
        &self.stats
    }

    /// True when its ring is empty and its shard has nothing queued or in flight.
    pub fn is_idle(&self) -> bool {
        self.shared.inbox.is_empty()
            && self.pending.is_empty()
            && self.shard.is_idle()
            && !self.shard.ckpt_wanted
    }

    /// A snapshot of its counters.
    pub fn snapshot(&self) -> ReactorStats {
        let (data_io, journal_io) = self.shard.io_stats();
        let mut looped = self.stats;
        if let Some(t) = self.started {
            looped.run_ns = t.elapsed().as_nanos() as u64;
        }
        ReactorStats {
            reactor: self.index,
            core: self.core,
            looped,
            shard: self.shard.stats(),
            data_io,
            journal_io,
            ring_depth: self.shared.inbox.capacity(),
            scrub: self.scrub.stats().clone(),
        }
    }

    /// Runs one step of the background scrub now, on up to `max_pages` pages: no rate, no
    /// clock. For stepped tests, which get no background scrub otherwise (it runs
    /// on the wall clock); what it finds goes into the same counters
    /// ([`ReactorStats::scrub`]). Returns the pages visited.
    pub fn scrub_background_step(&mut self, max_pages: u64) -> u64 {
        self.scrub.step(&mut self.shard, max_pages)
    }

    /// One turn: every poller once, in [`PollerId::ALL`] order.
    pub fn step(&mut self) -> Poll {
        let _on = OnReactorGuard::enter();
        let t0 = self.started.map(|_| Instant::now());
        let mut busy = [false; POLLERS];
        busy[0] = self.poll_ring();
        busy[1] = self.shard.poll_qpairs();
        busy[2] = self.shard.poll_txns();
        busy[3] = self.shard.poll_journal();
        self.shard.kick();
        busy[4] = self.shard.apply_earlier();
        busy[5] = self.shard.poll_checkpoint();
        self.shard.poll_end();
        busy[6] = self.poll_completions();
        busy[7] = self.poll_timers();
        busy[8] = self.poll_scrub();
        let s = &mut self.stats;
        s.iterations += 1;
        let any = busy.iter().any(|b| *b);
        if any {
            s.busy_iterations += 1;
            for (i, b) in busy.iter().enumerate() {
                s.poller_busy[i] += u64::from(*b);
            }
            if let Some(t0) = t0 {
                s.busy_ns += t0.elapsed().as_nanos() as u64;
            }
        }
        Poll::from_busy(any)
    }

    fn poll_ring(&mut self) -> bool {
        let len = self.shared.inbox.len() as u64;
        let s = &mut self.stats;
        s.ring_polls += 1;
        s.ring_len_sum += len;
        s.ring_len_max = s.ring_len_max.max(len);
        if len == 0 {
            return false;
        }
        let mut n = 0;
        while n < RING_BATCH {
            // A stopped shard takes nothing more in flight: every message is answered at
            // once (Failed), and the Stop behind them must be seen.
            if self.shard.in_flight() >= self.shard.max_txns() && self.shard.failure().is_none() {
                self.stats.ring_stalls += 1;
                break;
            }
            let Some(msg) = self.shared.inbox.pop() else {
                break;
            };
            n += 1;
            self.handle(msg);
        }
        self.stats.msgs += n as u64;
        n > 0
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Txn { txn, notify } => {
                self.stats.txns += 1;
                match self.shard.queue(txn) {
                    Ok(id) => {
                        self.pending.insert(id, notify);
                    }
                    Err(e) => {
                        self.stats.completions += 1;
                        notify.complete(Err(e));
                    }
                }
            }
            Msg::Query { query, reply } => {
                self.stats.queries += 1;
                match query {
                    Query::Drain => self.barriers.push(reply),
                    q => {
                        let a = self.answer(q);
                        reply.send(a);
                    }
                }
            }
            Msg::Checkpoint => self.shard.request_checkpoint(),
            Msg::Stop => self.stop = true,
        }
    }

    fn answer(&mut self, q: Query) -> Result<Answer> {
        let sh = &mut self.shard;
        // Answers reflect every transaction acknowledged so far (shard/commit.rs).
        sh.settle();
        let missing = |coll, name: &[u8], key: &[u8]| StoreError::NoSuchAttr {
            key: ObjKey::new(coll, name.to_vec()),
            attr: String::from_utf8_lossy(key).into_owned(),
        };
        Ok(match q {
            // A read runs to completion here: the shard polls itself until its data is in.
            Query::Read {
                coll,
                name,
                offset,
                len,
            } => Answer::Bytes(sh.read(coll, &name, offset, len)?),
            Query::Stat { coll, name } => Answer::Stat(ObjStat::of(sh.object(coll, &name)?)),
            Query::GetAttr { coll, name, key } => Answer::Bytes(
                sh.object(coll, &name)?
                    .attrs
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| missing(coll, &name, &key))?,
            ),
            Query::OmapGet { coll, name, key } => Answer::Bytes(
                sh.object(coll, &name)?
                    .omap
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| missing(coll, &name, &key))?,
            ),
            Query::AttrsAndOmap { coll, name } => {
                let o = sh.object(coll, &name)?;
                Answer::Maps(Box::new((o.attrs.clone(), o.omap.clone())))
            }
            Query::ListObjects { coll } => Answer::Names(
                sh.table()
                    .objects(coll)
                    .map(|it| it.map(|(n, _)| n.to_vec()).collect())
                    .ok_or(StoreError::NoSuchCollection(coll))?,
            ),
            Query::ListCollections => Answer::Colls(sh.table().colls().collect()),
            Query::Stats => Answer::Stats(Box::new(self.snapshot())),
            Query::Fsck => {
                let mut r = FsckReport::default();
                fsck_shard(sh, &mut r);
                Answer::Fsck(r)
            }
            Query::Phase => Answer::Phase(sh.phase()),
            Query::Scrub => Answer::Scrub(Box::new(sh.scrub()?)),
            Query::Drain => unreachable!("drain is a barrier"),
        })
    }

    fn poll_completions(&mut self) -> bool {
        let (pending, stats) = (&mut self.pending, &mut self.stats);
        let n = self.shard.take_completions(|id, r| {
            stats.completions += 1;
            match pending.remove(&id) {
                Some(notify) => notify.complete(r),
                None => log::warn!("reactor: completion of unknown transaction {id}"),
            }
        });
        let mut busy = n > 0;
        if !self.barriers.is_empty() {
            if let Some(why) = self.shard.failure() {
                let why = why.to_string();
                for b in self.barriers.drain(..) {
                    b.send(Err(StoreError::Failed(why.clone())));
                }
                busy = true;
            } else if self.shard.is_idle() && !self.shard.ckpt_wanted {
                for b in self.barriers.drain(..) {
                    b.send(Ok(Answer::Done));
                }
                busy = true;
            }
        }
        busy
    }

    fn poll_timers(&mut self) -> bool {
        let (Some(every), Some(started)) = (self.checkpoint_every, self.started) else {
            return false;
        };
        let last = *self.last_checkpoint.get_or_insert(started);
        if last.elapsed() < every {
            return false;
        }
        self.last_checkpoint = Some(Instant::now());
        self.shard.request_checkpoint();
        true
    }

    /// The background scrub: in threaded mode, with a rate, on a healthy shard that is not
    /// stopping, a batch of pages once the rate allows one (see [`super::scrub`]).
    fn poll_scrub(&mut self) -> bool {
        if !self.scrub.is_on()
            || self.started.is_none()
            || self.stop
            || self.shard.failure().is_some()
        {
            return false;
        }
        match self.scrub.due(Instant::now()) {
            0 => false,
            pages => self.scrub.step(&mut self.shard, pages) > 0,
        }
    }

    /// Stop: finishes every message in the ring and every transaction in the shard
    /// (results delivered), writes a checkpoint, and waits for it. After a device fault,
    /// what is left fails with the fault and the fault is returned.
    pub(crate) fn finish(&mut self) -> Result<()> {
        let idle = |r: &Self| {
            r.shared.inbox.is_empty()
                && r.pending.is_empty()
                && r.shard.is_idle()
                && !r.shard.ckpt_wanted
        };
        for checkpoint in [false, true] {
            if checkpoint {
                self.shard.request_checkpoint();
            }
            loop {
                let busy = self.step().is_busy();
                if let Some(why) = self.shard.failure() {
                    let why = why.to_string();
                    return Err(self.fail_rest(why));
                }
                if idle(self) {
                    break;
                }
                if !busy {
                    std::hint::spin_loop();
                }
            }
        }
        Ok(())
    }

    /// After a fault: answers everything left, and says why.
    fn fail_rest(&mut self, why: String) -> StoreError {
        let _on = OnReactorGuard::enter();
        self.poll_completions();
        while let Some(m) = self.shared.inbox.pop() {
            match m {
                Msg::Txn { notify, .. } => notify.complete(Err(StoreError::Failed(why.clone()))),
                Msg::Query { reply, .. } => reply.send(Err(StoreError::Failed(why.clone()))),
                Msg::Checkpoint | Msg::Stop => {}
            }
        }
        for b in self.barriers.drain(..) {
            b.send(Err(StoreError::Failed(why.clone())));
        }
        for (_, n) in self.pending.drain() {
            n.complete(Err(StoreError::Failed(why.clone())));
        }
        StoreError::Failed(why)
    }

    /// The threaded loop: turns until a Stop message, then [`Reactor::finish`].
    pub(crate) fn run(mut self, idle: Idle) -> Result<()> {
        let _on = OnReactorGuard::enter();
        self.shared.tid.store(os_tid(), Ordering::Release);
        self.started = Some(Instant::now());
        let mut idle_turns = 0u32;
        loop {
            let busy = self.step().is_busy();
            if self.stop {
                return self.finish();
            }
            if busy {
                idle_turns = 0;
                continue;
            }
            idle_turns = idle_turns.saturating_add(1);
            if idle.wait(idle_turns) {
                self.stats.idle_sleeps += 1;
            }
        }
    }
}

impl<Q: QueuePair> Poller for Reactor<Q> {
    fn name(&self) -> &'static str {
        "reactor"
    }

    fn poll(&mut self) -> Poll {
        self.step()
    }
}

impl<Q: QueuePair> Drop for Reactor<Q> {
    fn drop(&mut self) {
        // Notifications still pending answer Closed as they drop.
        self.shared.alive.store(false, Ordering::Release);
    }
}

// Pollers are named in PollerId order; the step above indexes them the same way.
const _: () = assert!(PollerId::ALL.len() == POLLERS);
