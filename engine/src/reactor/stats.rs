//! Per-reactor statistics: what the loop did, and what its shard and queue pairs counted.
//!
//! The loop counters are plain integers owned by the reactor (no atomics on the I/O path);
//! a snapshot travels to whoever asks, as a `Stats` query through the reactor's ring. The
//! snapshot carries the background scrub's counters and its most recent bad ranges
//! ([`ScrubStats`]), so it is `Clone`, not `Copy`.

use keel_drivers::{IoStats, Op};

use super::poller::{PollerId, POLLERS};
use super::scrub::ScrubStats;
use crate::shard::ShardStats;

/// What a reactor's loop did since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// Turns of the loop (one poll of every poller).
    pub iterations: u64,
    /// Turns in which some poller was busy.
    pub busy_iterations: u64,
    /// Per poller (in [`PollerId::ALL`] order): turns in which it was busy.
    pub poller_busy: [u64; POLLERS],
    /// Nanoseconds since the reactor started (threaded mode; 0 in stepped mode).
    pub run_ns: u64,
    /// Nanoseconds spent in busy turns (threaded mode; 0 in stepped mode).
    pub busy_ns: u64,
    /// Messages taken from the ring.
    pub msgs: u64,
    /// Transactions taken from the ring.
    pub txns: u64,
    /// Transactions whose result was delivered (callback run or ring filled).
    pub completions: u64,
    /// Queries answered.
    pub queries: u64,
    /// Ring occupancy seen at each ring poll, summed (divide by `ring_polls`).
    pub ring_len_sum: u64,
    /// Ring polls (turns in which the ring was looked at).
    pub ring_polls: u64,
    /// Highest ring occupancy seen.
    pub ring_len_max: u64,
    /// Turns in which the ring had messages but the shard was full (back-pressure).
    pub ring_stalls: u64,
    /// Idle sleeps of the back-off strategy.
    pub idle_sleeps: u64,
}

impl LoopStats {
    /// Share of turns that were busy, 0..=1.
    pub fn busy_share(&self) -> f64 {
        if self.iterations == 0 {
            return 0.0;
        }
        self.busy_iterations as f64 / self.iterations as f64
    }

    /// Share of run time spent in busy turns, 0..=1 (threaded mode).
    pub fn busy_time_share(&self) -> f64 {
        if self.run_ns == 0 {
            return 0.0;
        }
        self.busy_ns as f64 / self.run_ns as f64
    }

    /// Mean ring occupancy at a ring poll.
    pub fn ring_len_mean(&self) -> f64 {
        if self.ring_polls == 0 {
            return 0.0;
        }
        self.ring_len_sum as f64 / self.ring_polls as f64
    }

    /// Busy turns of one poller.
    pub fn busy_of(&self, p: PollerId) -> u64 {
        let i = PollerId::ALL.iter().position(|x| *x == p).expect("poller");
        self.poller_busy[i]
    }

    /// `self - before`, counter by counter (maxima stay as they are).
    pub fn since(&self, before: &LoopStats) -> LoopStats {
        let mut poller_busy = [0; POLLERS];
        for (i, b) in poller_busy.iter_mut().enumerate() {
            *b = self.poller_busy[i] - before.poller_busy[i];
        }
        LoopStats {
            iterations: self.iterations - before.iterations,
            busy_iterations: self.busy_iterations - before.busy_iterations,
            poller_busy,
            run_ns: self.run_ns - before.run_ns,
            busy_ns: self.busy_ns - before.busy_ns,
            msgs: self.msgs - before.msgs,
            txns: self.txns - before.txns,
            completions: self.completions - before.completions,
            queries: self.queries - before.queries,
            ring_len_sum: self.ring_len_sum - before.ring_len_sum,
            ring_polls: self.ring_polls - before.ring_polls,
            ring_len_max: self.ring_len_max,
            ring_stalls: self.ring_stalls - before.ring_stalls,
            idle_sleeps: self.idle_sleeps - before.idle_sleeps,
        }
    }
}

/// A snapshot of one reactor.
#[derive(Clone, Debug, Default)]
pub struct ReactorStats {
    /// The reactor's index (= its shard's).
    pub reactor: usize,
    /// The core it is pinned to, if any.
    pub core: Option<usize>,
    /// Its loop.
    pub looped: LoopStats,
    /// Its shard.
    pub shard: ShardStats,
    /// Its data queue pair.
    pub data_io: IoStats,
    /// Its journal queue pair.
    pub journal_io: IoStats,
    /// Capacity of its message ring.
    pub ring_depth: usize,
    /// Its background scrub (all zero when `scrub_pages_per_sec` is 0).
    pub scrub: ScrubStats,
}

impl ReactorStats {
    /// Transactions committed per second of `elapsed_s`.
    pub fn iops(&self, elapsed_s: f64) -> f64 {
        if elapsed_s <= 0.0 {
            return 0.0;
        }
        self.shard.txns_committed as f64 / elapsed_s
    }

    /// Mean journal batch, in entries.
    pub fn batch_entries_mean(&self) -> f64 {
        if self.shard.batches == 0 {
            return 0.0;
        }
        self.shard.batch_entries as f64 / self.shard.batches as f64
    }

    /// Mean journal batch, in bytes.
    pub fn batch_bytes_mean(&self) -> f64 {
        if self.shard.batches == 0 {
            return 0.0;
        }
        self.shard.batch_bytes as f64 / self.shard.batches as f64
    }

    /// Device write commands of both queue pairs.
    pub fn device_writes(&self) -> u64 {
        self.data_io.cmds(Op::Write) + self.journal_io.cmds(Op::Write)
    }
}
