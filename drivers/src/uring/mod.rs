//! # The io_uring driver: O_DIRECT block I/O through the kernel's fastest path
//!
//! A [`UringDevice`] is a regular file or a block device opened with `O_DIRECT | O_RDWR`
//! (so the page cache is bypassed and a buffer goes straight to the device). Each
//! [`UringQpair`] owns one io_uring instance, with the file registered as fixed file 0
//! and every [`DmaRegion`](crate::DmaRegion) named in
//! [`QpairOptions::regions`](crate::QpairOptions) registered as one fixed buffer, so the
//! kernel neither looks up the file nor pins the pages on each I/O.
//!
//! How a command flows:
//!
//! ```text
//!  submit(tag, cmd) ── validate ──► slab slot (owns the DmaBuf) ──► SQE, user_data = slot
//!                                                                     │ pushed, not yet sent
//!  kick() ────────────────────────────── io_uring_enter: the whole batch in one call ◄┘
//!                                                                     │
//!  poll(max) ── kick, then for each CQE: slot = user_data ──► result < 0 or short? error
//!        └──► last SQE of the command done ──► Completion { tag, result, buf } ──► slot free
//! ```
//!
//! | Command            | SQE                                                          |
//! |--------------------|--------------------------------------------------------------|
//! | Read               | `ReadFixed` on a registered region, else `Read`              |
//! | Write              | `WriteFixed` / `Write`; FUA adds `RWF_DSYNC`                 |
//! | Flush              | `Fsync` with `DATASYNC`                                      |
//! | WriteZeroes        | `Fallocate(ZERO_RANGE)`; where the file or device refuses it, |
//! |                    | writes of a shared zero buffer, one SQE per max transfer     |
//!
//! Polling with the kernel doing the work: the ring is set up with `COOP_TASKRUN` and
//! `TASKRUN_FLAG`, so the kernel does not interrupt the polling thread to hand over a
//! completion that needs task work; it flags it in the ring, and `kick` enters the kernel
//! only then. And since kernel threads finish some commands (an `RWF_DSYNC` write's sync,
//! an fsync, io-wq work) and may be queued on the polling thread's CPU, every 16th empty
//! poll with commands in flight yields the CPU (without it a QD1 FUA write on a file
//! waited for the scheduler's tick, 4 ms).
//!
//! Nothing on the I/O path allocates: the slab of in-flight commands, its free list and the
//! zero buffer are made when the queue pair opens. A command's buffer stays in its slot
//! until the kernel has posted the last completion for it; dropping a queue pair waits for
//! every command the kernel still holds.

mod device;
mod qpair;
mod sqe;

pub use device::{UringConfig, UringDevice};
pub use qpair::UringQpair;
