//! A queue pair on the simulated device.

use super::fault::Hit;
use super::{SimClock, SimDevice};
use crate::command::{Command, Completion, Op};
use crate::dma::DmaBuf;
use crate::error::{DriverError, Rejected};
use crate::geometry::Geometry;
use crate::qpair::{validate, IoStats, QueuePair};

struct InFlight {
    tag: u64,
    op: Op,
    bytes: u64,
    buf: Option<DmaBuf>,
    failed: Option<DriverError>,
    completes_at_ns: u64,
}

/// A queue pair of a [`SimDevice`]. Commands take effect on the media at submission and
/// complete when the device's time for them has come.
pub struct SimQpair {
    dev: SimDevice,
    geometry: Geometry,
    depth: u32,
    slots: Vec<Option<InFlight>>,
    free: Vec<u32>,
    /// Occupied slots, in submission order: a poll looks at these only, so its cost follows
    /// the commands in flight, not the queue's depth.
    busy: Vec<u32>,
    /// The earliest completion time among `busy` (`u64::MAX` when none): a poll before it
    /// has nothing to hand back and returns without looking further.
    next_due_ns: u64,
    stats: IoStats,
}

impl SimQpair {
    pub(crate) fn new(dev: SimDevice, depth: u32) -> Self {
        SimQpair {
            geometry: dev.geometry,
            dev,
            depth,
            slots: (0..depth).map(|_| None).collect(),
            free: (0..depth).rev().collect(),
            busy: Vec::with_capacity(depth as usize),
            next_due_ns: u64::MAX,
            stats: IoStats::default(),
        }
    }

    /// The device this queue pair belongs to.
    pub fn device(&self) -> &SimDevice {
        &self.dev
    }

    /// Device time of the earliest pending completion (for a test driving a virtual clock).
    pub fn next_completion_ns(&self) -> Option<u64> {
        (!self.busy.is_empty()).then_some(self.next_due_ns)
    }
}

/// The first block a write of `blocks` at `lba` lands on when shifted by `shift` blocks
/// (0 for a write that goes where it was sent); `None` when the shifted range does not lie
/// wholly on a device of `block_count` blocks.
fn landing(lba: u64, blocks: u64, shift: i64, block_count: u64) -> Option<u64> {
    let at = lba.checked_add_signed(shift)?;
    (at.checked_add(blocks)? <= block_count).then_some(at)
}

impl QueuePair for SimQpair {
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    fn depth(&self) -> u32 {
        self.depth
    }

    fn in_flight(&self) -> u32 {
        self.busy.len() as u32
    }

    fn submit(&mut self, tag: u64, mut cmd: Command) -> Result<(), Rejected> {
        let op = cmd.op();
        let Some(&slot) = self.free.last() else {
            let error = DriverError::QueueFull {
                op,
                depth: self.depth,
            };
            return Err(Rejected { error, cmd });
        };
        if let Err(error) = validate(&self.geometry, &cmd) {
            return Err(Rejected { error, cmd });
        }
        let bs = u64::from(self.geometry.block_size);
        let lba = cmd.lba();
        let (blocks, bytes) = match &cmd {
            Command::Read { buf, .. } | Command::Write { buf, .. } => {
                (buf.len() as u64 / bs, buf.len() as u64)
            }
            Command::WriteZeroes { blocks, .. } => (u64::from(*blocks), u64::from(*blocks) * bs),
            Command::Flush => (0, 0),
        };
        let now = self.dev.clock().now_ns();
        let mut st = self.dev.lock();
        if st.media.is_none() {
            return Err(Rejected {
                error: DriverError::PoweredOff { op },
                cmd,
            });
        }
        let moved = if matches!(op, Op::Read | Op::Write) {
            bytes
        } else {
            0
        };
        let extra = if op == Op::Flush {
            st.cfg.flush_latency_ns
        } else {
            0
        };
        let completes_at_ns = st.schedule(now, moved, extra);
        st.stats.count(op, bytes, true);
        let hit = st.faults.check(op, lba, blocks);
        let failed = match hit {
            Some(Hit::Fail(status)) => {
                st.stats.errors += 1;
                Some(DriverError::Device {
                    op,
                    lba,
                    status,
                    cmd: None,
                })
            }
            _ => None,
        };
        let shift = match hit {
            Some(Hit::Misdirect(offset_blocks)) => offset_blocks,
            _ => 0,
        };
        let write_through = !st.cfg.volatile_write_cache;
        let block_count = st.cfg.block_count;
        let media = st.media.as_mut().expect("checked above");
        if failed.is_none() {
            match &mut cmd {
                Command::Read { buf, .. } => media.read(lba, buf.as_mut_slice(), now),
                Command::Write { buf, fua, .. } => {
                    // A misdirected write shifted off the device is lost: nothing changes.
                    if let Some(at) = landing(lba, blocks, shift, block_count) {
                        media.write(
                            at,
                            blocks,
                            Some(buf.as_slice()),
                            completes_at_ns,
                            *fua || write_through,
                        )
                    }
                }
                Command::WriteZeroes { .. } => {
                    media.write(lba, blocks, None, completes_at_ns, write_through)
                }
                Command::Flush => media.flush(now, completes_at_ns),
            }
        }
        drop(st);
        self.free.pop();
        self.busy.push(slot);
        self.next_due_ns = self.next_due_ns.min(completes_at_ns);
        self.slots[slot as usize] = Some(InFlight {
            tag,
            op,
            bytes,
            buf: cmd.into_buf(),
            failed,
            completes_at_ns,
        });
        Ok(())
    }

    fn kick(&mut self) -> Result<(), DriverError> {
        Ok(())
    }

    fn poll(&mut self, max: u32, on_done: &mut dyn FnMut(Completion)) -> u32 {
        if self.busy.is_empty() || max == 0 {
            return 0;
        }
        let powered = self.dev.is_powered();
        let clock = self.dev.clock();
        if matches!(clock, SimClock::Discrete(_)) {
            if let Some(next) = self.next_completion_ns() {
                clock.jump_to(next);
            }
        }
        let now = clock.now_ns();
        if powered && now < self.next_due_ns {
            return 0;
        }
        let mut n = 0;
        let mut next_due_ns = u64::MAX;
        let mut flushed = false;
        // Due commands complete in submission order; the rest keep theirs (compacted in place).
        let mut kept = 0;
        for k in 0..self.busy.len() {
            let i = self.busy[k] as usize;
            let due = n < max
                && self.slots[i]
                    .as_ref()
                    .is_some_and(|f| !powered || f.completes_at_ns <= now);
            if !due {
                if let Some(f) = &self.slots[i] {
                    next_due_ns = next_due_ns.min(f.completes_at_ns);
                }
                self.busy[kept] = i as u32;
                kept += 1;
                continue;
            }
            let f = self.slots[i].take().expect("due slot is occupied");
            self.free.push(i as u32);
            let result = match (powered, f.failed) {
                (false, _) => Err(DriverError::PoweredOff { op: f.op }),
                (true, Some(e)) => Err(e),
                (true, None) => Ok(()),
            };
            flushed |= f.op == Op::Flush;
            self.stats.count(f.op, f.bytes, result.is_ok());
            on_done(Completion {
                tag: f.tag,
                op: f.op,
                result,
                buf: f.buf,
            });
            n += 1;
        }
        self.busy.truncate(kept);
        self.next_due_ns = next_due_ns;
        if n > 0 && powered {
            let mut st = self.dev.lock();
            if let Some(media) = st.media.as_mut() {
                if flushed {
                    media.settle(now);
                } else {
                    media.trim(now);
                }
            }
        }
        n
    }

    fn stats(&self) -> IoStats {
        self.stats
    }
}
