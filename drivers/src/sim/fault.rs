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

    /// Called once per submitted command; returns the status it must fail with, if any.
    pub(crate) fn check(&mut self, op: Op, lba: u64, blocks: u64) -> Option<NvmeStatus> {
        let mut hit = None;
        self.armed.retain_mut(|(fault, seen)| match *fault {
            Fault::FailNth {
                op: f_op,
                nth,
                status,
            } if f_op == op => {
                *seen += 1;
                if *seen == nth {
                    hit.get_or_insert(status);
                    false
                } else {
                    true
                }
            }
            Fault::FailRange {
                op: f_op,
                lba: f_lba,
                blocks: f_blocks,
                status,
            } if f_op == op => {
                if lba < f_lba + f_blocks && f_lba < lba + blocks.max(1) {
                    hit.get_or_insert(status);
                }
                true
            }
            _ => true,
        });
        hit
    }
}
