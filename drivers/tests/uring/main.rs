//! The io_uring driver on a real O_DIRECT file: data round-trips through registered and
//! plain buffers, FUA, flush and write-zeroes (native and by writing zeroes) do what they
//! say, bad requests come back whole and touch nothing, the queue holds exactly its depth,
//! many commands in flight complete once each under their own tag, SQPOLL works, and the
//! geometry matches the file.
//!
//! Files live in `std::env::temp_dir()` (O_DIRECT needs a file system that supports it:
//! ext4 and xfs do; tmpfs does since Linux 6.6, used on purpose for the write-zeroes
//! fallback, since tmpfs refuses `fallocate(ZERO_RANGE)`).
//!
//! `data` holds what reads, writes, FUA, flush and write-zeroes do; `queue` what the queue
//! pair does with bad requests, its depth, batches, tags, SQPOLL and a drop mid-flight;
//! `config` the geometry and the configurations refused; `loop_device` the same on a
//! block device; `common` the files, pools and stamped buffers they share.

mod common;
mod config;
mod data;
mod loop_device;
mod queue;
#[path = "../support/stamp.rs"]
mod stamp;
