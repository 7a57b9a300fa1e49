//! Time for the simulated device: the wall clock, or a virtual clock a test advances.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A clock in nanoseconds. Cloning shares it.
#[derive(Clone, Debug)]
pub enum SimClock {
    /// Nanoseconds since the clock was made.
    Real(Instant),
    /// Nanoseconds set by the test: nothing completes until it advances.
    Virtual(Arc<AtomicU64>),
    /// Discrete-event time: like `Virtual`, but a poll that finds nothing due while commands
    /// are in flight moves the clock to the earliest completion. Deterministic, and no wait
    /// loop can hang on it.
    Discrete(Arc<AtomicU64>),
}

impl SimClock {
    /// The wall clock.
    pub fn real() -> Self {
        SimClock::Real(Instant::now())
    }

    /// A virtual clock at 0.
    pub fn virtual_clock() -> Self {
        SimClock::Virtual(Arc::new(AtomicU64::new(0)))
    }

    /// A discrete-event clock at 0.
    pub fn discrete() -> Self {
        SimClock::Discrete(Arc::new(AtomicU64::new(0)))
    }

    /// Now, in nanoseconds.
    pub fn now_ns(&self) -> u64 {
        match self {
            SimClock::Real(start) => start.elapsed().as_nanos() as u64,
            SimClock::Virtual(t) | SimClock::Discrete(t) => t.load(Ordering::Acquire),
        }
    }

    /// On a discrete clock, moves time forward to `ns` (never back).
    pub(crate) fn jump_to(&self, ns: u64) {
        if let SimClock::Discrete(t) = self {
            t.fetch_max(ns, Ordering::AcqRel);
        }
    }

    /// Moves a virtual clock forward. Panics on the real clock (a programmer error).
    pub fn advance(&self, ns: u64) {
        match self {
            SimClock::Real(_) => panic!("SimClock::advance on the real clock"),
            SimClock::Virtual(t) | SimClock::Discrete(t) => {
                t.fetch_add(ns, Ordering::AcqRel);
            }
        }
    }

    /// True for a virtual or discrete clock.
    pub fn is_virtual(&self) -> bool {
        !matches!(self, SimClock::Real(_))
    }
}
