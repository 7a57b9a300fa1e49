//! # The C ABI: `libkeel`
//!
//! A C (or C++, or any FFI) program drives a Keel store through the functions here, built
//! into `libkeel.so` / `libkeel.a` and declared in `engine/include/keel.h`, which cbindgen
//! generates from this module (`vendor-scripts/gen-header.sh`; the C tests fail when the
//! checked-in header is stale). `docs/c-api.md` shows how to build, install and link it.
//!
//! The shape is SPDK's (STYLE.md §10): one prefix `keel_`, opaque handles, `0` or a
//! negative errno from every call, options structs that carry their own size, and the
//! threading rules written on every function.
//!
//! ```text
//!  keel_opts_init ─► struct keel_opts ─► keel_store_open ─► AnyDevice (sim|psync|uring)
//!                                            │ mkfs when `create`, then Store::open
//!                                            ▼
//!  keel_txn_new ─► keel_txn_write ... ─► keel_submit(store, txn, cb, arg)   (content taken)
//!                                            │ Store::queue
//!  keel_poll(store) ──► Store::poll, take_completions ──► cb(arg, status) on this thread
//!  keel_submit_sync = keel_submit + poll until that one is done
//!  keel_read / keel_stat / keel_getattr / keel_omap_get: committed state, at once
//!  keel_scrub: every mapped page checked against its checksum; bad ranges named
//!  keel_store_close: drain (callbacks run), checkpoint, free the handle
//! ```
//!
//! The pieces, one file each:
//!
//! - [`handles`]: the registry of live handles. Every handle the library returns is
//!   recorded (address and kind) in a global map until it is closed or freed; every call
//!   looks its handle up there first, so a closed, freed, foreign or wrong-kind pointer is
//!   `-EBADF` instead of a use-after-free, and two threads using one handle at once get
//!   `-EBUSY` for the second call instead of a data race. A handle also carries a magic
//!   number, checked after the lookup and overwritten on close. A panic inside the library
//!   never crosses the boundary: it becomes `-EIO` and marks the handle poisoned.
//! - [`args`]: turning C pointers and lengths into Rust slices, with the limits checked.
//! - [`opts`]: `struct keel_opts`, its size-versioning, and opening the device.
//! - [`txn`]: `struct keel_txn` and its builders, which check each op as it is added.
//! - [`store`]: `struct keel_store`: open, submit, poll, reads, statistics, close.
//! - [`scrub`]: `keel_scrub`, a full scrub pass, and the bad ranges it names (torn
//!   overwrites to acknowledge with `keel_txn_acknowledge`, corruption).
//! - [`volume`]: `struct keel_volume`: volumes (virtual disks over objects) on a store
//!   with reactors: create, resize, remove, open, read, write, write-zeroes, trim, flush.
//! - [`errors`]: `keel_strerror` and the errno values the library returns.
//!
//! Decisions a C caller relies on (the header says each one where it applies):
//!
//! - **Ownership of a transaction**: `keel_submit` takes the transaction's content and
//!   leaves the handle empty for reuse; the caller still frees the handle with
//!   `keel_txn_free`. When `keel_submit` fails, the content stays in the handle (so
//!   `-EAGAIN` can be retried after `keel_poll`) — except `-EROFS`, when the store has
//!   stopped for good and the content is dropped.
//! - **Threading**: a store runs one shard, driven by whichever thread calls into it; no
//!   thread is started. A handle may move between threads but is used by one at a time.
//!   Callbacks run on the thread that calls `keel_poll`, `keel_submit_sync` or
//!   `keel_store_close`, with no lock held: they may call back into the library (submit,
//!   poll, read...), except `keel_store_close` on their own store (`-EBUSY`).
//! - **Versioning**: `keel_opts.opts_size` and `keel_store_stats`' `out_size` let a
//!   program built against an older or newer header work with this library: fields past
//!   the caller's size take their defaults; bytes past this library's struct must be zero.

#![allow(non_camel_case_types)] // C names: `struct keel_opts` is `keel_opts` on both sides.

pub mod args;
pub mod errors;
pub mod handles;
pub mod opts;
pub mod scrub;
pub mod store;
pub mod txn;
pub mod volume;

pub use errors::keel_strerror;
pub use opts::{
    keel_opts, keel_opts_init, KEEL_DEV_NVME, KEEL_DEV_PSYNC, KEEL_DEV_SIM, KEEL_DEV_URING,
    KEEL_MODE_FULL, KEEL_MODE_METADATA_ONLY, KEEL_OPT_DEFAULT, KEEL_OPT_OFF, KEEL_OPT_ON,
    KEEL_SCRUB_MAX_PAGES_PER_SEC, KEEL_SIM_MAX_BYTES, KEEL_STRUCT_MAX_BYTES,
};
pub use scrub::{
    keel_bad_range, keel_scrub, keel_scrub_report, KEEL_BAD_CORRUPT, KEEL_BAD_RANGE_NAME_BYTES,
    KEEL_BAD_TORN,
};
pub use store::query::{
    keel_getattr, keel_omap_get, keel_read, keel_stat, keel_stats, keel_store_stats,
};
pub use store::{
    keel_done_cb, keel_poll, keel_store, keel_store_close, keel_store_open, keel_submit,
    keel_submit_sync,
};
pub use txn::{
    keel_txn, keel_txn_acknowledge, keel_txn_clone, keel_txn_clone_range, keel_txn_create,
    keel_txn_free, keel_txn_len, keel_txn_mkcoll, keel_txn_new, keel_txn_omap_rm,
    keel_txn_omap_set, keel_txn_remove, keel_txn_rmattr, keel_txn_rmcoll,
    keel_txn_set_full_journal, keel_txn_setattr, keel_txn_truncate, keel_txn_write, keel_txn_zero,
};
pub use volume::{
    keel_volume, keel_volume_close, keel_volume_create, keel_volume_flush, keel_volume_open,
    keel_volume_read, keel_volume_remove, keel_volume_resize, keel_volume_trim, keel_volume_write,
    keel_volume_write_zeroes, KEEL_VOLUME_DEFAULT_OBJECT_BYTES,
};

use crate::types;

/// Longest object name, in bytes (longer: `-ENAMETOOLONG`).
pub const KEEL_MAX_NAME_BYTES: usize = 255;
/// Longest attribute or omap key, in bytes (longer: `-ENAMETOOLONG`).
pub const KEEL_MAX_KEY_BYTES: usize = 1024;
/// Largest attribute or omap value, in bytes (larger: `-E2BIG`).
pub const KEEL_MAX_VALUE_BYTES: usize = 65536;
/// Largest object, in bytes: `offset + length` of any write, zero, clone range or truncate
/// stays within it (past it: `-EFBIG`).
pub const KEEL_MAX_OBJECT_BYTES: u64 = 1_099_511_627_776;
/// Most data one transaction may carry (writes and clone ranges together), in bytes (more:
/// `-E2BIG`).
pub const KEEL_MAX_TXN_DATA_BYTES: u64 = 16_777_216;
/// Most operations in one transaction (more: `-E2BIG`).
pub const KEEL_MAX_TXN_OPS: usize = 4096;

// The header's limits are the engine's.
const _: () = {
    assert!(KEEL_MAX_NAME_BYTES == types::MAX_NAME_BYTES);
    assert!(KEEL_MAX_KEY_BYTES == types::MAX_KEY_BYTES);
    assert!(KEEL_MAX_VALUE_BYTES == types::MAX_VALUE_BYTES);
    assert!(KEEL_MAX_OBJECT_BYTES == types::MAX_OBJECT_BYTES);
    assert!(KEEL_MAX_TXN_DATA_BYTES == types::MAX_TXN_DATA_BYTES);
    assert!(KEEL_MAX_TXN_OPS == types::MAX_TXN_OPS);
};
