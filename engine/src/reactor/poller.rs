//! Pollers: what a reactor's loop is made of. Each one does a bounded amount of work and
//! says whether it did any ([`Poll::Busy`]) or found nothing to do ([`Poll::Idle`]).
//!
//! A reactor runs its pollers in a fixed order, once per turn ([`PollerId::ALL`]); a
//! reactor is itself a [`Poller`], so a test (or the stepped engine) drives several of them
//! on one thread, turn by turn, deterministically (STYLE §8).

/// What a poll did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// It did some work: poll again soon.
    Busy,
    /// It found nothing to do.
    Idle,
}

impl Poll {
    /// Busy when `busy`.
    pub fn from_busy(busy: bool) -> Poll {
        if busy {
            Poll::Busy
        } else {
            Poll::Idle
        }
    }

    /// True for [`Poll::Busy`].
    pub fn is_busy(self) -> bool {
        self == Poll::Busy
    }
}

impl std::ops::BitOr for Poll {
    type Output = Poll;

    fn bitor(self, rhs: Poll) -> Poll {
        Poll::from_busy(self.is_busy() || rhs.is_busy())
    }
}

impl std::ops::BitOrAssign for Poll {
    fn bitor_assign(&mut self, rhs: Poll) {
        *self = *self | rhs;
    }
}

/// Something a loop polls.
pub trait Poller {
    /// A short name, for statistics and logs.
    fn name(&self) -> &'static str;
    /// Does a bounded amount of work; never blocks.
    fn poll(&mut self) -> Poll;
}

/// The pollers of a reactor, in the order one turn runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollerId {
    /// The message ring: transactions, queries, checkpoint requests, stop.
    Ring,
    /// Completions of the data and journal queue pairs.
    Qpairs,
    /// Transactions: start the queued ones (locks, planning), seal the records of parallel
    /// commits (ahead of their data), issue data writes.
    Txns,
    /// The journal batcher (group commit; its batch deadline is `max_batch_wait_us`).
    Journal,
    /// Pushes the turn's submissions to the device, then applies the transactions
    /// acknowledged by earlier turns (shard/commit.rs) while that I/O is in flight; the
    /// transactions that waited for their locks start.
    Apply,
    /// Checkpoints (when the journal fills, or asked for).
    Checkpoint,
    /// Finished transactions: run their callbacks or fill their completion rings; answer
    /// drain barriers.
    Completions,
    /// Timers: the periodic checkpoint.
    Timers,
    /// The background scrub (threaded mode, when `scrub_pages_per_sec` is set): a batch of
    /// pages checked against their sums, at that rate.
    Scrub,
}

/// How many pollers a reactor has.
pub const POLLERS: usize = 9;

impl PollerId {
    /// Every poller, in turn order.
    pub const ALL: [PollerId; POLLERS] = [
        PollerId::Ring,
        PollerId::Qpairs,
        PollerId::Txns,
        PollerId::Journal,
        PollerId::Apply,
        PollerId::Checkpoint,
        PollerId::Completions,
        PollerId::Timers,
        PollerId::Scrub,
    ];

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PollerId::Ring => "ring",
            PollerId::Qpairs => "qpairs",
            PollerId::Txns => "txns",
            PollerId::Journal => "journal",
            PollerId::Apply => "apply",
            PollerId::Checkpoint => "checkpoint",
            PollerId::Completions => "completions",
            PollerId::Timers => "timers",
            PollerId::Scrub => "scrub",
        }
    }
}

/// One turn of every poller in `pollers`, in order. Busy if any was.
pub fn step_all<P: Poller>(pollers: &mut [P]) -> Poll {
    let mut p = Poll::Idle;
    for x in pollers {
        p |= x.poll();
    }
    p
}
