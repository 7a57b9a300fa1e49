//! `struct keel_store`: an open store, the transactions it was given, and their callbacks.
//!
//! ```text
//!  keel_submit ──► Store::queue ──► pending[id] = callback
//!  keel_poll ──► Store::poll, take_completions ──► pending.remove(id) ──► callbacks
//!                                                  (run after the lease is released)
//!  keel_submit_sync ──► Store::queue ──► pending[id] = Sync ──► poll until sync_done[id]
//!  keel_store_close ──► drain ──► retire the handle ──► close ──► the last callbacks
//! ```
//!
//! The read side (`keel_read`, `keel_stat`, `keel_getattr`, `keel_omap_get`,
//! `keel_store_stats`) is in `store/query.rs`; it asks through the methods here.
//!
//! Callbacks run with no lease held, so a callback may submit, poll or read on its own
//! store; a [`Delivering`] mark keeps the store from being closed under the caller that is
//! running them.
//!
//! With a core list the store runs reactor threads ([`crate::reactor::Engine`]):
//!
//! ```text
//!  keel_submit ──► Engine::try_submit ──► reactor ring ──► shard ──► cb(arg, status)
//!                                                                   (on the reactor)
//!  keel_submit_sync ──► the same, with a callback that fills a slot; waits, no lease held
//!  keel_read / stat / getattr / omap_get / stats ──► a query answered by the reactor
//!  keel_poll ──► nothing to do (0)
//!  keel_store_close ──► retire the handle ──► Engine::close: every callback runs, join
//! ```

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;

use keel_drivers::any::AnyDevice;
use libc::{EAGAIN, EBUSY, EDEADLK, EINVAL, ESHUTDOWN};

use super::errors::{errno, ffi_int};
use super::handles::{acquire_pair, register, Delivering, Handle, Kind, Lease};
use super::opts::{keel_opts, Backend, Opts};
use super::txn::keel_txn;
use crate::error::Result;
use crate::reactor::reactor::on_reactor;
use crate::reactor::{Notify, ScrubStats};
use crate::shard::TxnId;
use crate::store::{Store, StoreStats};
use query::Map;

/// Called once per submitted transaction with its result: `status` is 0 when it committed
/// (durable), or a negative errno when it failed and changed nothing (`-ENOENT`,
/// `-EEXIST`, `-ENOTEMPTY`, `-ENOSPC`, `-ESHUTDOWN`, `-EBADMSG` when a partial write had
/// to read a corrupt page, `-EIO` when it could not read it...); or `-EROFS` when the
/// store stopped after a device error with the transaction in flight: its outcome is then
/// unknown, and after the store is opened again it is there wholly or not at all.
///
/// Without reactors (no core list) it runs on the thread that called `keel_poll`,
/// `keel_submit_sync` or `keel_store_close`, and may call the library (submit, poll, read,
/// even on the same store) but not `keel_store_close` on its own store.
///
/// With reactors (a core list) it runs on the reactor thread of the transaction's shard,
/// while that reactor waits for it: keep it short and never block in it. It may call
/// `keel_submit` (or get `-EBUSY` if another thread is inside a call on the store); calls
/// that wait for a reactor (`keel_submit_sync`, `keel_read`, `keel_stat`, `keel_getattr`,
/// `keel_omap_get`, `keel_store_stats`, `keel_scrub`) fail with `-EDEADLK` there, and
/// `keel_store_close` with `-EBUSY` or `-EBADF`. Whatever the mode it must not unwind (C++
/// exceptions, longjmp) out of the call.
pub type keel_done_cb = Option<unsafe extern "C" fn(cb_arg: *mut c_void, status: c_int)>;

/// Who waits for a transaction.
#[derive(Debug)]
enum Waiter {
    /// `keel_submit`: a callback and its argument.
    Callback(keel_done_cb, *mut c_void),
    /// `keel_submit_sync`, polling for the result.
    Sync,
}

/// An open store (opaque). Open with `keel_store_open`, close with `keel_store_close`.
pub struct keel_store {
    magic: u64,
    backend: Backend,
    /// Reactors: transactions submitted whose callback has not run yet.
    inflight: Arc<AtomicUsize>,
    /// Submitted transactions whose result has not been handed out.
    pending: HashMap<TxnId, Waiter>,
    /// Results of `keel_submit_sync` transactions, reaped by whichever poll saw them.
    sync_done: HashMap<TxnId, c_int>,
    /// Most entries in `pending` (reactors: most in `inflight`).
    max_inflight: usize,
}

/// A C callback and its argument, moved to the reactor thread that runs it.
struct CCallback {
    cb: keel_done_cb,
    arg: *mut c_void,
    inflight: Arc<AtomicUsize>,
}

// SAFETY: the caller of keel_submit promises (keel_done_cb's threading rule) that `cb` may
// be called with `arg` from the store's reactor threads; nothing else reaches `arg`.
unsafe impl Send for CCallback {}

impl CCallback {
    fn run(self, status: c_int) {
        self.inflight.fetch_sub(1, Ordering::AcqRel);
        if let Some(cb) = self.cb {
            // The caller of keel_submit gave this function and argument for exactly
            // this call, callable from a reactor thread.
            // SAFETY: the callback is called as its owner asked.
            unsafe { cb(self.arg, status) };
        }
    }
}

/// Where `keel_submit_sync` on reactors waits for its result.
struct SyncSlot {
    done: AtomicBool,
    status: AtomicI32,
}

impl std::fmt::Debug for keel_store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let driver = match &self.backend {
            Backend::Polled(s) => s.device().driver(),
            Backend::Reactors(e) => e.device().driver(),
        };
        f.debug_struct("keel_store")
            .field("device", &driver)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Handle for keel_store {
    const KIND: Kind = Kind::Store;
    const MAGIC: u64 = u64::from_be_bytes(*b"keel-sto");

    fn magic(&self) -> u64 {
        self.magic
    }

    fn set_magic(&mut self, magic: u64) {
        self.magic = magic;
    }
}

/// A finished transaction's callback, ready to run once the lease is released.
type Ready = (keel_done_cb, *mut c_void, c_int);

fn status(r: Result<()>) -> c_int {
    r.map_or_else(errno, |()| 0)
}

impl keel_store {
    /// What the store runs on (the volume calls need its reactors).
    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// What the store runs on, to drive it (`keel_scrub`).
    pub(crate) fn backend_mut(&mut self) -> &mut Backend {
        &mut self.backend
    }

    /// Queues the content of `txn`. On error the content stays in `txn` (except `-EROFS`:
    /// the store refused it for good, and it is dropped).
    fn queue(&mut self, txn: &mut keel_txn, waiter: Waiter) -> std::result::Result<TxnId, c_int> {
        txn.get().validate().map_err(errno)?;
        let Backend::Polled(store) = &mut self.backend else {
            unreachable!("queue is the polled mode's")
        };
        if self.pending.len() >= self.max_inflight {
            return Err(-EAGAIN);
        }
        let id = store.queue(txn.take()).map_err(errno)?;
        self.pending.insert(id, waiter);
        Ok(id)
    }

    /// Reactors: submits the content of `txn` with `notify` (made by `make` from the
    /// in-flight counter) without waiting. On error the content stays in `txn`.
    fn submit_reactors(
        &mut self,
        txn: &mut keel_txn,
        make: impl FnOnce(Arc<AtomicUsize>) -> Notify,
    ) -> std::result::Result<(), c_int> {
        txn.get().validate().map_err(errno)?;
        let Backend::Reactors(engine) = &self.backend else {
            unreachable!("reactors")
        };
        if self.inflight.load(Ordering::Acquire) >= self.max_inflight {
            return Err(-EAGAIN);
        }
        self.inflight.fetch_add(1, Ordering::AcqRel);
        let notify = make(Arc::clone(&self.inflight));
        match engine.try_submit(txn.take(), notify) {
            Ok(()) => Ok(()),
            Err(e) => {
                // Refused: the notification was not armed and runs nothing.
                self.inflight.fetch_sub(1, Ordering::AcqRel);
                txn.put(e.txn);
                Err(errno(e.error))
            }
        }
    }

    pub(super) fn read(
        &mut self,
        coll: u64,
        name: &[u8],
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>> {
        match &mut self.backend {
            Backend::Polled(s) => s.read(coll, name, offset, len),
            Backend::Reactors(e) => e.read(coll, name, offset, len),
        }
    }

    pub(super) fn stat(&mut self, coll: u64, name: &[u8]) -> Result<crate::store::ObjStat> {
        match &mut self.backend {
            Backend::Polled(s) => s.stat(coll, name),
            Backend::Reactors(e) => e.stat(coll, name),
        }
    }

    pub(super) fn lookup(
        &mut self,
        map: Map,
        coll: u64,
        name: &[u8],
        key: &[u8],
    ) -> Result<Vec<u8>> {
        match (&mut self.backend, map) {
            (Backend::Polled(s), Map::Attrs) => s.getattr(coll, name, key),
            (Backend::Polled(s), Map::Omap) => s.omap_get(coll, name, key),
            (Backend::Reactors(e), Map::Attrs) => e.getattr(coll, name, key),
            (Backend::Reactors(e), Map::Omap) => e.omap_get(coll, name, key),
        }
    }

    /// The store's counters, and the background scrub's (none without reactors).
    pub(super) fn counters(&self) -> Result<(StoreStats, ScrubStats)> {
        match &self.backend {
            Backend::Polled(s) => Ok((s.stats(), ScrubStats::default())),
            Backend::Reactors(e) => {
                let st = e.stats()?;
                Ok((st.total(), st.scrub_total()))
            }
        }
    }

    /// One turn of the store, then hands out what finished: callbacks into `ready`, sync
    /// results into `sync_done`.
    fn turn(&mut self, ready: &mut Vec<Ready>) -> bool {
        let Backend::Polled(store) = &mut self.backend else {
            return false; // the reactors run themselves
        };
        let busy = store.poll();
        let (pending, sync_done) = (&mut self.pending, &mut self.sync_done);
        store.take_completions(|id, r| match pending.remove(&id) {
            Some(Waiter::Callback(cb, arg)) => ready.push((cb, arg, status(r))),
            Some(Waiter::Sync) => {
                sync_done.insert(id, status(r));
            }
            None => log::warn!("keel: completion of unknown transaction {id}"),
        });
        busy
    }
}

/// Runs callbacks; no lease may be held.
fn deliver(ready: Vec<Ready>) {
    for (cb, arg, status) in ready {
        if let Some(cb) = cb {
            // The caller of keel_submit gave this function and argument for exactly
            // this call; no lease is held, so the callback may re-enter the library.
            // SAFETY: the callback is called as its owner asked.
            unsafe { cb(arg, status) };
        }
    }
}

/// Opens (with `create`: formats, then opens) the store that `opts` names, and writes its
/// handle to `*out`. Opening an existing store recovers it: replays its journal from the
/// newest checkpoint.
///
/// Returns: 0; `-EINVAL` (NULL `opts` or `out`; `opts_size` below `KEEL_OPTS_SIZE_V1` or
/// above `KEEL_STRUCT_MAX_BYTES`, or nonzero bytes past this library's struct; unknown
/// `dev_kind` or `mode`; NULL or empty `path` for psync/uring/nvme, nonzero `size_bytes`
/// for nvme; for the simulated device:
/// `create` not set, `size_bytes` 0 or above `KEEL_SIM_MAX_BYTES`; a bad core list;
/// `journal_bytes` above `KEEL_JOURNAL_MAX_BYTES`; a device too small to format);
/// from the system while opening the device: `-ENOENT` (no such file, or no NVMe
/// controller at that address), `-EACCES`, `-EBUSY` (an NVMe controller bound to a kernel
/// driver), ...; `-EUCLEAN` (not a Keel store, or corrupt); `-EIO` (device or internal
/// error). On error `*out` is not written, and a file that `create` made or grew is
/// removed or shrunk back.
///
/// Threading: any thread. Without a core list the store has no thread of its own: it runs
/// in the threads that call into it, one call at a time (see `keel_poll`). With one, it
/// starts a reactor thread per core, pinned, before this returns.
///
/// # Safety
///
/// `opts` must be NULL or point to `opts->opts_size` readable bytes, with `path` a
/// NUL-terminated string (or NULL) and `cores` pointing to `ncores` entries; `out` must be
/// NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn keel_store_open(
    opts: *const keel_opts,
    out: *mut *mut keel_store,
) -> c_int {
    ffi_int(|| {
        if out.is_null() {
            return Err(-EINVAL);
        }
        // SAFETY: the caller's contract for opts.
        let o = unsafe { Opts::from_c(opts) }?;
        let backend = o.open()?;
        let handle = register(Box::new(keel_store {
            magic: keel_store::MAGIC,
            backend,
            inflight: Arc::new(AtomicUsize::new(0)),
            pending: HashMap::new(),
            sync_done: HashMap::new(),
            max_inflight: o.max_inflight_txns as usize,
        }));
        // SAFETY: out is non-NULL and valid for a pointer write (the caller's contract).
        unsafe { out.write(handle) };
        Ok(0)
    })
}

/// Finishes every transaction in flight (their callbacks run before it returns: on this
/// thread, or with reactors on the reactor threads, which it then joins), writes a
/// checkpoint, closes the device and frees the handle. The handle is
/// freed whatever the result, unless the call was refused (`-EINVAL`, `-EBADF`, `-EBUSY`).
/// Callbacks that run during the close see the handle already closed (`-EBADF`).
///
/// Returns: 0; `-EINVAL` (NULL `store`), `-EBADF` (not a live store: closed already,
/// freed, or never opened; detected as long as no new store reuses the address), `-EBUSY`
/// (another call is using it, called from one of its own callbacks, a volume opened on it
/// is still open, or a `keel_scrub` on it is still running), `-EROFS` (the store
/// had stopped after a device error: transactions still in flight failed), `-EIO` (device
/// error while closing, or the store was poisoned by an internal error; it is freed).
///
/// Threading: any thread, not concurrently with other calls on this store.
#[no_mangle]
pub extern "C" fn keel_store_close(store: *mut keel_store) -> c_int {
    ffi_int(|| {
        let (mut lease, poisoned) = Lease::acquire_to_retire(store)?;
        if poisoned {
            drop(lease.retire());
            return Err(-libc::EIO);
        }
        if let Backend::Reactors(e) = &lease.get().backend {
            if std::sync::Arc::strong_count(e) > 1 {
                // Something else holds the engine: a volume opened on it, or a keel_scrub
                // running on another thread.
                return Err(-EBUSY);
            }
            // Retired first: callbacks that run during the close see the handle gone.
            let handle = lease.retire();
            let keel_store { backend, .. } = *handle;
            let Backend::Reactors(engine) = backend else {
                unreachable!("reactors")
            };
            let engine = std::sync::Arc::into_inner(engine).expect("no volume holds it");
            return Ok(engine.close().map_or_else(errno, |()| 0));
        }
        let st = lease.get();
        let Backend::Polled(store) = &mut st.backend else {
            unreachable!("polled")
        };
        let drained = store.drain();
        let mut ready = Vec::new();
        // A failed shard stops draining before handing out its completions: one more
        // turn collects them.
        st.turn(&mut ready);
        let handle = lease.retire();
        let keel_store {
            backend, pending, ..
        } = *handle;
        let Backend::Polled(store) = backend else {
            unreachable!("polled")
        };
        let rc = match drained.and_then(|()| store.close()) {
            Ok(()) => 0,
            Err(e) => errno(e),
        };
        let late = if rc < 0 { rc } else { -ESHUTDOWN };
        for (_, w) in pending {
            if let Waiter::Callback(cb, arg) = w {
                ready.push((cb, arg, late));
            }
        }
        deliver(ready);
        Ok(rc)
    })
}

/// Submits the transaction: takes its content (leaving `txn` empty, to reuse or free) and
/// queues it. Without reactors nothing reaches the device until the store is polled, and
/// `cb(cb_arg, status)` runs once, from a later `keel_poll` (or `keel_submit_sync`, or
/// `keel_store_close`) on the thread that calls it; with reactors the transaction goes to
/// its shard's reactor ring and `cb` runs on that reactor thread. Either way it runs when
/// the transaction is durable (status 0) or has failed. `cb` may be NULL.
///
/// Returns: 0 (queued; the callback will run); `-EINVAL` (NULL `store` or `txn`, empty
/// transaction), `-EBADF` (`store` or `txn` not live), `-EBUSY` (either in use by another
/// call), `-EAGAIN` (`max_inflight_txns` transactions are waiting for their callbacks:
/// poll, then submit again; with reactors also when the shard's reactor ring is full),
/// `-EXDEV` (the transaction names collections of two shards), `-EROFS` (the store
/// stopped after a device error; the content is dropped), `-EIO`. On every error but
/// `-EROFS` the transaction is unchanged, and the callback will not run.
///
/// Threading: the store's thread rule (one call at a time); may be called from a callback.
///
/// # Safety
///
/// `cb`, if not NULL, must be safe to call with `cb_arg` until it has run, from the
/// store's reactor threads when it has reactors.
#[no_mangle]
pub unsafe extern "C" fn keel_submit(
    store: *mut keel_store,
    txn: *mut keel_txn,
    cb: keel_done_cb,
    cb_arg: *mut c_void,
) -> c_int {
    ffi_int(|| {
        let (mut s, mut t) = acquire_pair(store, txn)?;
        let st = s.get();
        if matches!(st.backend, Backend::Reactors(_)) {
            st.submit_reactors(t.get(), |inflight| {
                let c = CCallback {
                    cb,
                    arg: cb_arg,
                    inflight,
                };
                Notify::callback(move |r| c.run(status(r)))
            })?;
            return Ok(0);
        }
        st.queue(t.get(), Waiter::Callback(cb, cb_arg))?;
        Ok(0)
    })
}

/// Submits the transaction (taking its content, as `keel_submit`) and polls the store
/// until it is durable or has failed. Callbacks of other transactions that finish
/// meanwhile run on this thread.
///
/// Returns: 0 (committed, durable); the transaction's failure (`-ENOENT`, `-EEXIST`,
/// `-ENOTEMPTY`, `-ENOSPC`, `-EROFS`, ...: it changed nothing); or, before queueing (the
/// transaction unchanged), `-EINVAL`, `-EBADF`, `-EBUSY`, `-EAGAIN` as `keel_submit`;
/// `-ESHUTDOWN` (another thread closed the store while this call waited); `-EIO`.
///
/// Threading: the store's thread rule; may be called from a callback (it then runs the
/// callbacks that finish while it waits, nested) — but not from a callback on a reactor
/// thread (`-EDEADLK`). With reactors it waits without holding the store, so other
/// threads may use it meanwhile.
#[no_mangle]
pub extern "C" fn keel_submit_sync(store: *mut keel_store, txn: *mut keel_txn) -> c_int {
    ffi_int(|| {
        let slot = {
            let (mut s, mut t) = acquire_pair(store, txn)?;
            let st = s.get();
            if matches!(st.backend, Backend::Polled(_)) {
                let id = st.queue(t.get(), Waiter::Sync)?;
                drop((s, t));
                return wait_for(store, id);
            }
            if on_reactor() {
                return Err(-EDEADLK);
            }
            let slot = Arc::new(SyncSlot {
                done: AtomicBool::new(false),
                status: AtomicI32::new(0),
            });
            let filled = Arc::clone(&slot);
            st.submit_reactors(t.get(), |inflight| {
                Notify::callback(move |r| {
                    inflight.fetch_sub(1, Ordering::AcqRel);
                    filled.status.store(status(r), Ordering::Relaxed);
                    filled.done.store(true, Ordering::Release);
                })
            })?;
            slot
        };
        // A submitted transaction always completes (with -ESHUTDOWN if the store closes).
        let mut spins = 0u32;
        while !slot.done.load(Ordering::Acquire) {
            spins = spins.saturating_add(1);
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(20));
            }
        }
        Ok(slot.status.load(Ordering::Relaxed))
    })
}

/// Polls `store` until transaction `id` (queued by `keel_submit_sync`) is done, running
/// other callbacks on the way.
fn wait_for(store: *mut keel_store, id: TxnId) -> std::result::Result<c_int, c_int> {
    loop {
        let mut ready = Vec::new();
        let (done, busy, _delivering) = match Lease::acquire(store) {
            Ok(mut lease) => {
                let st = lease.get();
                let busy = st.turn(&mut ready);
                let done = st.sync_done.remove(&id);
                (done, busy, Delivering::start(&lease))
            }
            // Another thread is using the store: it may be reaping this transaction.
            Err(e) if e == -EBUSY => {
                std::thread::yield_now();
                continue;
            }
            Err(e) if e == -libc::EBADF => return Err(-ESHUTDOWN),
            Err(e) => return Err(e),
        };
        deliver(ready);
        if let Some(rc) = done {
            return Ok(rc);
        }
        if !busy {
            std::hint::spin_loop();
        }
    }
}

/// One turn of the store: reaps device completions, moves every transaction forward
/// (planning, data writes, group commit, checkpoints), and runs the callbacks of the
/// transactions that finished, on this thread, before it returns. Never blocks. Call it
/// in a loop (or from an event loop) while transactions are in flight.
///
/// With reactors (a core list) the reactor threads do all of this themselves: it returns 0
/// and does nothing.
///
/// Returns: the number of transactions whose callbacks ran (0 or more); `-EINVAL` (NULL
/// `store`), `-EBADF` (not a live store), `-EBUSY` (another call is using it), `-EIO`.
///
/// Threading: without reactors the store runs one shard, in the thread that polls it:
/// call it from one thread at a time (a concurrent call gets `-EBUSY`); may be called from
/// a callback.
#[no_mangle]
pub extern "C" fn keel_poll(store: *mut keel_store) -> c_int {
    ffi_int(|| {
        let mut ready = Vec::new();
        let _delivering = {
            let mut lease = Lease::acquire(store)?;
            lease.get().turn(&mut ready);
            Delivering::start(&lease)
        };
        let n = c_int::try_from(ready.len()).unwrap_or(c_int::MAX);
        deliver(ready);
        Ok(n)
    })
}

// A store handle may move between threads (one call at a time), so the store must be Send.
const _: () = {
    const fn send<T: Send>() {}
    send::<Store<AnyDevice>>();
    send::<crate::reactor::Engine<AnyDevice>>();
};

pub mod query;
