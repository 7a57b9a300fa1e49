//! What SQE a command turns into, one step at a time, and what its CQE must say.
//!
//! Every SQE carries `user_data = (expected result << 32) | slot`. A read or write expects
//! its byte count back; fsync and fallocate expect 0 (and a zero write always expects more,
//! so `expect == 0` on a write-zeroes CQE means it was the fallocate).

use io_uring::{opcode, squeue, types};

use crate::command::Command;
use crate::dma::DmaBuf;
use crate::geometry::Geometry;

/// The device's file, registered as the ring's only fixed file.
const FILE: types::Fixed = types::Fixed(0);
/// `fallocate` mode for write-zeroes. KEEP_SIZE: the range is inside the device anyway, and
/// block devices accept ZERO_RANGE only alone or with it.
const ZERO_RANGE_MODE: i32 = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;

/// What of a command is still to be pushed to the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Its one SQE (for write-zeroes: a fallocate, unless the queue pair writes zeroes).
    Sqe,
    /// Zero-filling writes, from this block to the end of the range.
    ZeroWrites { lba: u64 },
    /// Nothing: wait for the SQEs in flight.
    Nothing,
}

/// One SQE of a command.
pub(super) struct Step {
    /// The entry, without its user_data.
    pub entry: squeue::Entry,
    /// The result its CQE must carry to be a success.
    pub expect: u32,
    /// What is left of the command once it is pushed.
    pub after: Next,
}

/// Packs a slot index and the expected result.
pub(super) fn user_data(slot: u32, expect: u32) -> u64 {
    (u64::from(expect) << 32) | u64::from(slot)
}

/// Unpacks (slot index, expected result).
pub(super) fn split_user_data(user_data: u64) -> (u32, u32) {
    (user_data as u32, (user_data >> 32) as u32)
}

/// The fixed-buffer index of the region `buf` lives in, if registered.
fn fixed_index(region_ids: &[u32], buf: &DmaBuf) -> Option<u16> {
    let id = buf.region().id();
    // The queue pair registers at most 1 << 14 regions, so the position fits a u16.
    region_ids.iter().position(|&r| r == id).map(|i| i as u16)
}

/// The SQE for the `next` step of a validated command; `None` when there is none.
/// `zeroes` is a buffer of at least max transfer bytes of zeroes.
pub(super) fn next(
    cmd: &mut Command,
    next: Next,
    geo: &Geometry,
    region_ids: &[u32],
    zeroes: *const u8,
) -> Option<Step> {
    let bs = u64::from(geo.block_size);
    // Lengths fit a u32: validate caps reads and writes at the max transfer, a u32.
    let step = match (cmd, next) {
        (Command::Read { lba, buf }, Next::Sqe) => {
            let len = buf.len() as u32;
            let off = *lba * bs;
            let entry = match fixed_index(region_ids, buf) {
                Some(i) => opcode::ReadFixed::new(FILE, buf.as_mut_ptr(), len, i)
                    .offset(off)
                    .build(),
                None => opcode::Read::new(FILE, buf.as_mut_ptr(), len)
                    .offset(off)
                    .build(),
            };
            Step {
                entry,
                expect: len,
                after: Next::Nothing,
            }
        }
        (Command::Write { lba, buf, fua }, Next::Sqe) => {
            let len = buf.len() as u32;
            let off = *lba * bs;
            // FUA: the write is durable when it completes, as with O_DSYNC.
            let flags = if *fua { libc::RWF_DSYNC } else { 0 };
            let entry = match fixed_index(region_ids, buf) {
                Some(i) => opcode::WriteFixed::new(FILE, buf.as_ptr(), len, i)
                    .offset(off)
                    .rw_flags(flags)
                    .build(),
                None => opcode::Write::new(FILE, buf.as_ptr(), len)
                    .offset(off)
                    .rw_flags(flags)
                    .build(),
            };
            Step {
                entry,
                expect: len,
                after: Next::Nothing,
            }
        }
        (Command::Flush, Next::Sqe) => Step {
            entry: opcode::Fsync::new(FILE)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
            expect: 0,
            after: Next::Nothing,
        },
        (Command::WriteZeroes { lba, blocks }, Next::Sqe) => Step {
            entry: opcode::Fallocate::new(FILE, u64::from(*blocks) * bs)
                .offset(*lba * bs)
                .mode(ZERO_RANGE_MODE)
                .build(),
            expect: 0,
            after: Next::Nothing,
        },
        (Command::WriteZeroes { lba, blocks }, Next::ZeroWrites { lba: from }) => {
            let end = *lba + u64::from(*blocks);
            let chunk = (end - from).min(u64::from(geo.max_transfer_blocks()));
            // chunk * block size <= max transfer, a u32.
            let len = (chunk * bs) as u32;
            Step {
                entry: opcode::Write::new(FILE, zeroes, len)
                    .offset(from * bs)
                    .build(),
                expect: len,
                after: if from + chunk == end {
                    Next::Nothing
                } else {
                    Next::ZeroWrites { lba: from + chunk }
                },
            }
        }
        // Nothing left, or a step that only write-zeroes takes.
        (_, Next::Nothing) | (_, Next::ZeroWrites { .. }) => return None,
    };
    Some(step)
}
