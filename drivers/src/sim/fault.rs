//! Faults injected into the simulated device.

use crate::command::Op;
use crate::status::NvmeStatus;

/// A fault to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The `nth` command of `op` submitted from now on (1 = the next one) completes with
    /// `status` and has no effect on the media.
    FailNth {
        /// Which operation.
        op: Op,
        /// 1-based count of future commands of that operation.
        nth: u64,
        /// The status it completes with.
        status: NvmeStatus,
    },
    /// Every command of `op` touching a block in `[lba, lba + blocks)` fails with `status`
    /// until cleared (a bad media region).
    FailRange {
        /// Which operation.
        op: Op,
        /// First block.
        lba: u64,
        /// Blocks.
        blocks: u64,
        /// The status.
        status: NvmeStatus,
    },
    /// The `nth` Write command submitted from now on (1 = the next one; only [`Op::Write`]
    /// counts, not Write Zeroes) lands at `lba + offset_blocks` instead of its own `lba`,
    /// and completes successfully: a silent fault. The blocks it was meant for keep what
    /// they held; the blocks it lands on take its data, with the usual durability (a power
    /// cut may keep, lose or tear it there). If the shifted range does not lie wholly on the
    /// device, the write is dropped instead (a lost write): it completes successfully and
    /// changes nothing. Fires once, then disarms. If another fault fails the same command,
    /// the failure wins and this fault is spent all the same.
    Misdirect {
        /// 1-based count of future Write commands.
        nth: u64,
        /// Blocks between where the write was meant to go and where it lands.
        offset_blocks: i64,
    },
}

/// What the armed faults do to one command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hit {
    /// It completes with this status and changes nothing.
    Fail(NvmeStatus),
    /// It is a write that lands this many blocks away from its lba, and completes OK.
    Misdirect(i64),
}

/// Armed faults and their countdowns.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    armed: Vec<(Fault, u64)>,
}

impl Faults {
    pub(crate) fn arm(&mut self, fault: Fault) {
        self.armed.push((fault, 0));
    }

    pub(crate) fn clear(&mut self) {
        self.armed.clear();
    }

    /// Called once per submitted command; returns what the faults do to it, if anything.
    /// A failure takes precedence over a misdirection.
    pub(crate) fn check(&mut self, op: Op, lba: u64, blocks: u64) -> Option<Hit> {
        let mut fail = None;
        let mut shift = None;
        self.armed.retain_mut(|(fault, seen)| match *fault {
            Fault::FailNth {
                op: f_op,
                nth,
                status,
            } if f_op == op => {
                let fired = count_down(seen, nth);
                if fired {
                    fail.get_or_insert(status);
                }
                !fired
            }
            Fault::FailRange {
                op: f_op,
                lba: f_lba,
                blocks: f_blocks,
                status,
            } if f_op == op => {
                if lba < f_lba + f_blocks && f_lba < lba + blocks.max(1) {
                    fail.get_or_insert(status);
                }
                true
            }
            Fault::Misdirect { nth, offset_blocks } if op == Op::Write => {
                let fired = count_down(seen, nth);
                if fired {
                    shift.get_or_insert(offset_blocks);
                }
                !fired
            }
            _ => true,
        });
        fail.map(Hit::Fail).or(shift.map(Hit::Misdirect))
    }
}

/// Counts one more matching command; true when it is the `nth`.
fn count_down(seen: &mut u64, nth: u64) -> bool {
    *seen += 1;
    *seen == nth
}
