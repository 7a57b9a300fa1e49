//! `struct keel_opts`: which device to open and how, versioned by its own size; and opening
//! the device it names.
//!
//! The struct only grows, at its end. `opts_size` says how much of it the caller's header
//! knew: fields past it take their defaults (an older program), and bytes past this
//! library's struct must be zero (a newer program asking for something this library cannot
//! do fails instead of being ignored). Version 1 is everything up to `ncores`
//! (`KEEL_OPTS_SIZE_V1`); every later field is optional with 0 as its default.
//!
//! ```text
//!  keel_opts ──parse──► Opts { dev, mode, create, size, cores, ... }   (-EINVAL)
//!            ──open───► AnyDevice ──[create: Store::mkfs]──► Store::open ──► Store<AnyDevice>
//! ```

use std::ffi::{c_char, c_int, CStr, OsStr};
use std::mem::{offset_of, size_of};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use keel_drivers::any::AnyDevice;
use keel_drivers::nvme::{NvmeConfig, NvmeDevice};
use keel_drivers::psync::{PsyncConfig, PsyncDevice};
use keel_drivers::sim::{SimConfig, SimDevice};
use keel_drivers::uring::{UringConfig, UringDevice};
use libc::EINVAL;

use super::errors::errno;
use crate::reactor::{Cores, Engine, Idle, ReactorConfig, MAX_SCRUB_PAGES_PER_SEC};
use crate::shard::ShardConfig;
use crate::store::{MkfsOptions, Store};

/// What an open store runs on.
// One per store handle, which is boxed: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Backend {
    /// One shard, polled by the application (`keel_poll`).
    Polled(Store<AnyDevice>),
    /// One reactor thread per core of the list, each with its shard. Shared with the
    /// volumes opened on the store (`keel_volume_open`).
    Reactors(std::sync::Arc<Engine<AnyDevice>>),
}
use crate::superblock::MAX_SHARDS;
use crate::types::JournalMode;

/// Device kind: the simulated device, in memory (`size_bytes` of it; `create` must be set;
/// everything is gone at close). For tests and trials.
pub const KEEL_DEV_SIM: u32 = 0;
/// Device kind: a file or block device at `path`, through pread/pwrite on `O_DIRECT`.
pub const KEEL_DEV_PSYNC: u32 = 1;
/// Device kind: a file or block device at `path`, through io_uring on `O_DIRECT`.
pub const KEEL_DEV_URING: u32 = 2;
/// Device kind: an NVMe controller driven from userspace (no kernel driver bound, or
/// bound to vfio-pci; root and hugepages needed, see docs/test-vm.md and
/// vendor-scripts/setup.sh), named by its PCI address in `path` (`"0000:00:04.0"`), or
/// `"auto"` for the first unbound NVMe controller. Namespace 1.
pub const KEEL_DEV_NVME: u32 = 3;

/// Journal mode: data and metadata go through the journal, then data to its place; every
/// write is atomic.
pub const KEEL_MODE_FULL: u32 = 0;
/// Journal mode: data goes straight to its place, only metadata to the journal; an
/// overwrite torn by a power cut may mix old and new data (clones and transactions marked
/// with `keel_txn_set_full_journal` still go through the full journal).
pub const KEEL_MODE_METADATA_ONLY: u32 = 1;

/// Largest simulated device, in bytes (16 GiB).
pub const KEEL_SIM_MAX_BYTES: u64 = 17_179_869_184;
/// Largest journal that `journal_bytes` may ask for, in bytes (64 GiB).
pub const KEEL_JOURNAL_MAX_BYTES: u64 = 68_719_476_736;
/// Largest `opts_size` or `out_size` accepted, in bytes: a larger one is taken for garbage
/// (`-EINVAL`), not for a newer header.
pub const KEEL_STRUCT_MAX_BYTES: usize = 4096;

/// A `keel_opts` switch (`overwrite_intents`, `parallel_commit`): the library's default
/// (the value 0, so that a zeroed struct, and a caller built against an older header, get
/// it).
pub const KEEL_OPT_DEFAULT: u32 = 0;
/// A `keel_opts` switch: on.
pub const KEEL_OPT_ON: u32 = 1;
/// A `keel_opts` switch: off.
pub const KEEL_OPT_OFF: u32 = 2;

/// Highest `keel_opts.scrub_pages_per_sec` (64 GiB/s of 4 KiB pages).
pub const KEEL_SCRUB_MAX_PAGES_PER_SEC: u64 = 16_777_216;
const _: () = assert!(KEEL_SCRUB_MAX_PAGES_PER_SEC == MAX_SCRUB_PAGES_PER_SEC);

/// Longest `reactor_sleep_us_max` (one second).
const MAX_REACTOR_SLEEP_US: u32 = 1_000_000;

/// Block size of the simulated device.
const SIM_BLOCK_BYTES: u32 = 4096;
/// Transactions in flight per store when `max_inflight_txns` is 0.
const DEFAULT_MAX_INFLIGHT_TXNS: u32 = 4096;

/// What to open and how. Fill it with `keel_opts_init`, then set the fields.
///
/// Version 1 ends after `ncores`; a caller built against that header passes
/// `KEEL_OPTS_SIZE_V1` as `opts_size`, and the later fields take their defaults.
#[repr(C)]
#[derive(Debug)]
pub struct keel_opts {
    /// Bytes of this struct the caller knows: `sizeof(struct keel_opts)` of its header
    /// (set by `keel_opts_init`). At least `KEEL_OPTS_SIZE_V1`; bytes past this library's
    /// struct must be zero.
    pub opts_size: usize,
    /// One of `KEEL_DEV_*` (default `KEEL_DEV_SIM`).
    pub dev_kind: u32,
    /// One of `KEEL_MODE_*` (default `KEEL_MODE_FULL`). Used by `create`; when opening an
    /// existing store it must still be a valid mode, and the store keeps the mode it was
    /// created with.
    pub mode: u32,
    /// Path of the file or block device (psync, uring), or the PCI address of the NVMe
    /// controller (`KEEL_DEV_NVME`: `"0000:00:04.0"` or `"auto"`); NUL-terminated, not
    /// necessarily UTF-8. Ignored for the simulated device. Read during `keel_store_open`
    /// only.
    pub path: *const c_char,
    /// Simulated device: its size (required, at most `KEEL_SIM_MAX_BYTES`). File with
    /// `create`: create it if missing and extend it to this size (never shrunk); 0 uses the
    /// file as it is. A block device is used as it is (this must be 0: `-EINVAL`). Ignored
    /// when opening without `create`.
    pub size_bytes: u64,
    /// Format the device (mkfs, destroying what it holds) before opening it; false opens an
    /// existing store, recovering it.
    pub create: bool,
    /// The cores that run the store's reactors (NULL with `ncores` 0: none). Each must be
    /// a configured CPU, without duplicates, at most 62 of them. With a list, the store
    /// runs one reactor thread per entry, pinned to that core, each owning one shard
    /// (`create` formats `ncores` shards; opening an existing store needs as many cores
    /// as it has shards, else `-EINVAL`); callbacks then run on the reactor threads and
    /// `keel_poll` has nothing to do. Without a list, the store has one shard and no
    /// thread: it runs in the threads that call `keel_poll`.
    pub cores: *const u32,
    /// Entries in `cores`.
    pub ncores: usize,
    /// With `create`: bytes of the journal ring (0: a sixteenth of the device, 4 to 256 MiB;
    /// at most `KEEL_JOURNAL_MAX_BYTES`). Optional (not in version 1).
    pub journal_bytes: u64,
    /// Most transactions submitted and not yet completed (callback not yet run); past it
    /// `keel_submit` returns `-EAGAIN` (0: 4096). Optional (not in version 1).
    pub max_inflight_txns: u32,
    /// Reactor threads (a core list given): 0 spins when idle (dedicated cores); N > 0
    /// spins a little, then sleeps up to N microseconds (shared machines, tests under
    /// valgrind); at most 1000000. Optional (not in version 1).
    pub reactor_sleep_us_max: u32,
    /// Overwrite intents: before a `KEEL_MODE_METADATA_ONLY` transaction rewrites data in
    /// place it records that it is about to (one more ordered journal write for such a
    /// transaction), so that after a power cut a torn overwrite reads as `-EILSEQ` (the
    /// caller's to acknowledge or rewrite) rather than as corruption (`-EBADMSG`).
    /// `KEEL_OPT_DEFAULT` (on), `KEEL_OPT_ON` or `KEEL_OPT_OFF`; any other value is
    /// `-EINVAL`. Optional (not in version 1).
    pub overwrite_intents: u32,
    /// Parallel commit: a `KEEL_MODE_METADATA_ONLY` transaction writing only fresh pages
    /// writes its journal record at the same time as its data, with the data's checksums:
    /// one device round trip instead of two (overwrites never do). Only with overwrite
    /// intents on: without them every transaction is serial. `KEEL_OPT_DEFAULT` (on), `KEEL_OPT_ON` or `KEEL_OPT_OFF`; any other value is
    /// `-EINVAL`. Optional (not in version 1).
    pub parallel_commit: u32,
    /// Background scrub (a core list given): pages per second each reactor reads and
    /// checks against their checksums, in the background, a batch of up to 64 at a time
    /// (0: off, the default; at most `KEEL_SCRUB_MAX_PAGES_PER_SEC`; nonzero without a
    /// core list is `-EINVAL`: nothing would run it). What it finds is counted in
    /// `keel_store_stats` (`scrub_*`); `keel_scrub` runs a full pass on demand and names
    /// the bad ranges. Optional (not in version 1).
    pub scrub_pages_per_sec: u64,
}

/// `keel_opts` as bytes from C: the same layout, with every field valid for any bits
/// (`create` is a byte, so a corrupt `bool` cannot make an invalid Rust `bool`).
#[repr(C)]
#[derive(Clone, Copy)]
struct RawOpts {
    opts_size: usize,
    dev_kind: u32,
    mode: u32,
    path: *const c_char,
    size_bytes: u64,
    create: u8,
    cores: *const u32,
    ncores: usize,
    journal_bytes: u64,
    max_inflight_txns: u32,
    reactor_sleep_us_max: u32,
    overwrite_intents: u32,
    parallel_commit: u32,
    scrub_pages_per_sec: u64,
}

/// Bytes of version 1 of `struct keel_opts` (`KEEL_OPTS_SIZE_V1` in the header).
///
/// cbindgen:ignore
pub const OPTS_SIZE_V1: usize = offset_of!(keel_opts, ncores) + size_of::<usize>();

const _: () = {
    macro_rules! same {
        ($($f:ident),*) => {
            $(assert!(offset_of!(RawOpts, $f) == offset_of!(keel_opts, $f));)*
        };
    }
    same!(
        opts_size,
        dev_kind,
        mode,
        path,
        size_bytes,
        create,
        cores,
        ncores,
        journal_bytes,
        max_inflight_txns,
        reactor_sleep_us_max,
        overwrite_intents,
        parallel_commit,
        scrub_pages_per_sec
    );
    assert!(size_of::<RawOpts>() == size_of::<keel_opts>());
    assert!(size_of::<bool>() == 1);
    assert!(size_of::<keel_opts>() <= KEEL_STRUCT_MAX_BYTES);
};

/// Fills `opts` with the defaults (all zero: the simulated device, `KEEL_MODE_FULL`, no
/// path, no size, open rather than create, no cores, default journal and queue, the
/// default switches, no background scrub) and sets `opts_size`. Pass
/// `sizeof(struct keel_opts)` as `opts_size`: the first `opts_size` bytes at `opts` are
/// written.
///
/// Does nothing when `opts` is NULL or `opts_size` is below `KEEL_OPTS_SIZE_V1` or above
/// `KEEL_STRUCT_MAX_BYTES`.
///
/// Threading: any thread; `opts` belongs to the caller.
///
/// # Safety
///
/// `opts` must be NULL or point to `opts_size` writable bytes, aligned for
/// `struct keel_opts`.
#[no_mangle]
pub unsafe extern "C" fn keel_opts_init(opts: *mut keel_opts, opts_size: usize) {
    if opts.is_null() || !(OPTS_SIZE_V1..=KEEL_STRUCT_MAX_BYTES).contains(&opts_size) {
        return;
    }
    // `opts` is non-NULL, aligned, and points to opts_size writable bytes (the
    // caller's contract); opts_size >= OPTS_SIZE_V1 covers the opts_size field.
    // SAFETY: the writes stay inside the caller's opts.
    unsafe {
        opts.cast::<u8>().write_bytes(0, opts_size);
        std::ptr::addr_of_mut!((*opts).opts_size).write(opts_size);
    }
}

/// A device kind with what it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dev {
    /// The simulated device.
    Sim,
    /// psync on a path.
    Psync(PathBuf),
    /// io_uring on a path.
    Uring(PathBuf),
    /// A userspace NVMe controller, by PCI address or "auto".
    Nvme(String),
}

/// Options, checked.
#[derive(Clone, Debug)]
pub struct Opts {
    /// The device.
    pub dev: Dev,
    /// Journal mode for mkfs.
    pub mode: JournalMode,
    /// Format first.
    pub create: bool,
    /// Size of the sim device, or of the file to create (0: as it is).
    pub size_bytes: u64,
    /// Reactor cores (empty: no reactor threads, the application polls).
    pub cores: Vec<u32>,
    /// Longest idle sleep of a reactor, in microseconds (0: spin).
    pub reactor_sleep_us_max: u32,
    /// Journal bytes for mkfs (0: default).
    pub journal_bytes: u64,
    /// Transactions in flight at most.
    pub max_inflight_txns: u32,
    /// Record overwrite intents (`ShardConfig::overwrite_intents`).
    pub overwrite_intents: bool,
    /// Commit in parallel with the data (`ShardConfig::parallel_commit`).
    pub parallel_commit: bool,
    /// Background scrub rate of each reactor (0: off).
    pub scrub_pages_per_sec: u64,
}

impl Opts {
    /// Reads and checks `*p`. Errors: `-EINVAL` for any bad field (see `struct keel_opts`).
    ///
    /// # Safety
    ///
    /// `p` must be NULL or point to `opts_size` readable bytes (its first field), aligned
    /// for `struct keel_opts`; `path` and `cores`, where used, must point to a
    /// NUL-terminated string and to `ncores` entries.
    pub unsafe fn from_c(p: *const keel_opts) -> Result<Opts, c_int> {
        if p.is_null() {
            return Err(-EINVAL);
        }
        // Non-NULL and aligned (the caller's contract); every version has opts_size
        // first.
        // SAFETY: opts_size is readable.
        let size = unsafe { std::ptr::addr_of!((*p).opts_size).read() };
        if !(OPTS_SIZE_V1..=KEEL_STRUCT_MAX_BYTES).contains(&size) {
            return Err(-EINVAL);
        }
        // The caller's contract: opts_size readable bytes at p, and size is that
        // field's value, at most KEEL_STRUCT_MAX_BYTES.
        // SAFETY: `size` bytes are readable at p.
        let all = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), size) };
        let known = size.min(size_of::<keel_opts>());
        if all[known..].iter().any(|&b| b != 0) {
            return Err(-EINVAL); // a newer header asks for something this library lacks
        }
        let mut raw = RawOpts {
            opts_size: 0,
            dev_kind: 0,
            mode: 0,
            path: std::ptr::null(),
            size_bytes: 0,
            create: 0,
            cores: std::ptr::null(),
            ncores: 0,
            journal_bytes: 0,
            max_inflight_txns: 0,
            reactor_sleep_us_max: 0,
            overwrite_intents: KEEL_OPT_DEFAULT,
            parallel_commit: KEEL_OPT_DEFAULT,
            scrub_pages_per_sec: 0,
        };
        // `known` bytes are readable at p (known <= size) and writable in `raw`
        // (known <= size_of::<RawOpts>()); RawOpts is plain data valid for any bytes, and
        // the two do not overlap.
        // SAFETY: the copy is in bounds and does not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                p.cast::<u8>(),
                std::ptr::addr_of_mut!(raw).cast::<u8>(),
                known,
            );
        }
        // SAFETY: forwarded: path and cores are the caller's.
        unsafe { Self::check(&raw) }
    }

    /// # Safety
    ///
    /// As [`Opts::from_c`], for `raw.path` and `raw.cores`.
    unsafe fn check(raw: &RawOpts) -> Result<Opts, c_int> {
        let mode = match raw.mode {
            KEEL_MODE_FULL => JournalMode::Full,
            KEEL_MODE_METADATA_ONLY => JournalMode::MetadataOnly,
            _ => return Err(-EINVAL),
        };
        let create = raw.create != 0;
        // SAFETY: forwarded from this function's contract.
        let cores = unsafe { check_cores(raw.cores, raw.ncores) }?;
        if raw.journal_bytes > KEEL_JOURNAL_MAX_BYTES
            || raw.reactor_sleep_us_max > MAX_REACTOR_SLEEP_US
            || raw.scrub_pages_per_sec > KEEL_SCRUB_MAX_PAGES_PER_SEC
            || (raw.scrub_pages_per_sec > 0 && cores.is_empty())
        {
            return Err(-EINVAL);
        }
        let defaults = ShardConfig::default();
        let overwrite_intents = switch(raw.overwrite_intents, defaults.overwrite_intents)?;
        let parallel_commit = switch(raw.parallel_commit, defaults.parallel_commit)?;
        let path = || -> Result<PathBuf, c_int> {
            if raw.path.is_null() {
                return Err(-EINVAL);
            }
            // SAFETY: non-NULL, and a NUL-terminated string by the caller's contract.
            let s = unsafe { CStr::from_ptr(raw.path) };
            if s.is_empty() {
                return Err(-EINVAL);
            }
            Ok(PathBuf::from(OsStr::from_bytes(s.to_bytes())))
        };
        let dev = match raw.dev_kind {
            KEEL_DEV_SIM => {
                if !create || raw.size_bytes == 0 || raw.size_bytes > KEEL_SIM_MAX_BYTES {
                    return Err(-EINVAL);
                }
                Dev::Sim
            }
            KEEL_DEV_PSYNC => Dev::Psync(path()?),
            KEEL_DEV_URING => Dev::Uring(path()?),
            KEEL_DEV_NVME => {
                let pci = path()?;
                let pci = pci.to_str().ok_or(-EINVAL)?;
                if raw.size_bytes != 0 {
                    return Err(-EINVAL);
                }
                Dev::Nvme(pci.to_owned())
            }
            _ => return Err(-EINVAL),
        };
        Ok(Opts {
            dev,
            mode,
            create,
            size_bytes: raw.size_bytes,
            cores,
            reactor_sleep_us_max: raw.reactor_sleep_us_max,
            journal_bytes: raw.journal_bytes,
            max_inflight_txns: match raw.max_inflight_txns {
                0 => DEFAULT_MAX_INFLIGHT_TXNS,
                n => n,
            },
            overwrite_intents,
            parallel_commit,
            scrub_pages_per_sec: raw.scrub_pages_per_sec,
        })
    }

    /// Opens the device, formats it with `create`, and opens the store on it: polled by
    /// the application without a core list, run by reactors with one. When `create` made
    /// or grew a file and a later step fails, the file is put back.
    pub fn open(&self) -> Result<Backend, c_int> {
        let create_bytes = (self.create && self.size_bytes > 0).then_some(self.size_bytes);
        let undo = match &self.dev {
            Dev::Psync(p) | Dev::Uring(p) if create_bytes.is_some() => Some(FileUndo::note(p)),
            _ => None,
        };
        let r = self.open_device(create_bytes).and_then(|dev| {
            if self.create {
                let mut mk = MkfsOptions::new(self.mode);
                mk.journal_bytes = self.journal_bytes;
                mk.shards = self.cores.len().max(1) as u32;
                Store::mkfs(&dev, &mk).map_err(errno)?;
            }
            // The FFI bounds transactions in flight itself (so that -EAGAIN keeps the
            // transaction); acknowledged transactions still writing home are bounded by the
            // journal, whose checkpoint waits for them.
            // With reactors, the shard's own limit is the same bound: a full shard leaves
            // messages in its reactor's ring, and a full ring is -EAGAIN.
            let cfg = ShardConfig {
                max_txns: if self.cores.is_empty() {
                    u32::MAX
                } else {
                    self.max_inflight_txns
                },
                overwrite_intents: self.overwrite_intents,
                parallel_commit: self.parallel_commit,
                ..ShardConfig::default()
            };
            let store = Store::open(dev, cfg).map_err(errno)?;
            if self.cores.is_empty() {
                if store.superblock().shards.len() != 1 {
                    // A store of several shards needs its reactors: name the cores.
                    return Err(-EINVAL);
                }
                return Ok(Backend::Polled(store));
            }
            let rcfg = ReactorConfig {
                cores: Cores::List(self.cores.iter().map(|c| *c as usize).collect()),
                idle: match self.reactor_sleep_us_max {
                    0 => Idle::Spin,
                    n => Idle::Backoff {
                        spin_turns: 64,
                        sleep_us_max: n,
                    },
                },
                scrub_pages_per_sec: self.scrub_pages_per_sec,
                ..ReactorConfig::default()
            };
            Engine::from_store(store, rcfg)
                .map(|e| Backend::Reactors(std::sync::Arc::new(e)))
                .map_err(errno)
        });
        if r.is_err() {
            if let Some(u) = undo {
                u.restore();
            }
        }
        r
    }

    fn open_device(&self, create_bytes: Option<u64>) -> Result<AnyDevice, c_int> {
        let driver = |e: keel_drivers::DriverError| e.errno();
        Ok(match &self.dev {
            Dev::Sim => {
                let cfg = SimConfig::new(
                    SIM_BLOCK_BYTES,
                    self.size_bytes / u64::from(SIM_BLOCK_BYTES),
                );
                AnyDevice::Sim(SimDevice::new(cfg).map_err(driver)?)
            }
            Dev::Psync(path) => {
                let mut cfg = PsyncConfig::new(path);
                cfg.create_bytes = create_bytes;
                AnyDevice::Psync(PsyncDevice::open(&cfg).map_err(driver)?)
            }
            Dev::Uring(path) => {
                let mut cfg = UringConfig::new(path);
                cfg.create_bytes = create_bytes;
                AnyDevice::Uring(UringDevice::open(&cfg).map_err(driver)?)
            }
            Dev::Nvme(pci) => {
                AnyDevice::Nvme(NvmeDevice::open(&NvmeConfig::new(pci.as_str())).map_err(driver)?)
            }
        })
    }
}

/// A `keel_opts` switch: `KEEL_OPT_DEFAULT` is `default`; anything but the three values is
/// `-EINVAL`.
fn switch(v: u32, default: bool) -> Result<bool, c_int> {
    match v {
        KEEL_OPT_DEFAULT => Ok(default),
        KEEL_OPT_ON => Ok(true),
        KEEL_OPT_OFF => Ok(false),
        _ => Err(-EINVAL),
    }
}

/// The reactor core list: NULL only when empty, at most `MAX_SHARDS` entries, each a
/// configured CPU, no duplicates.
///
/// # Safety
///
/// Unless `cores` is NULL or `n` is 0, `cores` must point to `n` readable `u32`s.
unsafe fn check_cores(cores: *const u32, n: usize) -> Result<Vec<u32>, c_int> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if cores.is_null() || n > MAX_SHARDS {
        return Err(-EINVAL);
    }
    // SAFETY: non-NULL, n entries readable by the caller's contract, n <= MAX_SHARDS.
    let list = unsafe { std::slice::from_raw_parts(cores, n) }.to_vec();
    let cpus = cpu_count();
    let mut seen = list.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != list.len() || list.iter().any(|&c| u64::from(c) >= cpus) {
        return Err(-EINVAL);
    }
    Ok(list)
}

/// CPUs configured on this machine (core ids run from 0 to this, exclusive).
fn cpu_count() -> u64 {
    // SAFETY: sysconf takes no pointers and has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    match u64::try_from(n) {
        Ok(n) if n > 0 => n,
        _ => std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
    }
}

/// How a file was before `create` made or grew it, to put it back when opening fails.
struct FileUndo {
    path: PathBuf,
    /// Its length, or None when it did not exist.
    len: Option<u64>,
    /// It is a regular file (or was missing): something to restore.
    restorable: bool,
}

impl FileUndo {
    fn note(path: &std::path::Path) -> Self {
        let meta = std::fs::metadata(path);
        FileUndo {
            path: path.to_path_buf(),
            len: meta.as_ref().ok().map(|m| m.len()),
            restorable: match &meta {
                Ok(m) => m.is_file(),
                Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            },
        }
    }

    fn restore(self) {
        if !self.restorable {
            return;
        }
        let r = match self.len {
            None => std::fs::remove_file(&self.path),
            Some(len) => std::fs::OpenOptions::new()
                .write(true)
                .open(&self.path)
                .and_then(|f| f.set_len(len)),
        };
        if let Err(e) = r {
            log::warn!(
                "keel_store_open: could not put {} back after a failed create: {e}",
                self.path.display()
            );
        }
    }
}
