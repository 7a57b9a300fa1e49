//! Live handles: which pointers the library handed out and still owns, and who is using
//! each one now.
//!
//! A C caller can pass anything as a handle: NULL, a pointer it already closed, a store
//! where a transaction is expected, or the same store from two threads at once. Dereferencing
//! any of those would be undefined behaviour, so no call touches a handle until the
//! registry says it is live, of the right kind, and not in use:
//!
//! ```text
//!   register(Box<T>) ──► LIVE[addr] = { kind, busy: false }   ──► *mut T to the caller
//!   Lease::acquire(p)   NULL ─► -EINVAL   not in LIVE / other kind ─► -EBADF
//!                       busy ─► -EBUSY    poisoned ─► -EIO        magic wrong ─► -EBADF
//!                       else busy = true ─► &mut T for the call ─► drop: busy = false
//!   retire(lease)       remove from LIVE, magic = DEAD ─► Box<T> back to be dropped
//! ```
//!
//! What it cannot catch: a pointer to freed memory that a later handle of the same kind
//! now occupies (the address is live again, and it is that handle). Everything else a C
//! caller can get wrong with a handle is a negative errno.
//!
//! A panic while a handle is leased poisons it: its state may be half-changed, so every
//! later call on it returns `-EIO`, and only closing (freeing) it is still possible.
//!
//! Callbacks of a store run with no lease held (so they may call back into the library),
//! but under a [`Delivering`] mark that keeps the store from being retired under them.
//!
//! The registry is one mutex over a map, taken twice per call (to lease and to release):
//! tens of nanoseconds uncontended, next to microseconds of I/O.

use std::collections::BTreeMap;
use std::ffi::c_int;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard, PoisonError};

use libc::{EBADF, EBUSY, EINVAL, EIO};

/// What a handle is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A `struct keel_store`.
    Store,
    /// A `struct keel_txn`.
    Txn,
    /// A `struct keel_volume`.
    Volume,
}

/// A type handed to C as an opaque handle.
pub trait Handle {
    /// Its kind, recorded in the registry.
    const KIND: Kind;
    /// The value of its magic field while it is live.
    const MAGIC: u64;
    /// Its magic field.
    fn magic(&self) -> u64;
    /// Overwrites the magic field (with [`DEAD`] when retired).
    fn set_magic(&mut self, magic: u64);
}

/// The magic of a handle that was closed or freed.
///
/// cbindgen:ignore
pub const DEAD: u64 = 0xdead_dead_dead_dead;

#[derive(Debug)]
struct Slot {
    kind: Kind,
    /// A call holds a [`Lease`] on it.
    busy: bool,
    /// Callbacks of this store are running (nested: a count).
    delivering: u32,
    /// A panic happened while it was leased.
    poisoned: bool,
}

/// Live handles by address.
static LIVE: Mutex<BTreeMap<usize, Slot>> = Mutex::new(BTreeMap::new());

fn live() -> MutexGuard<'static, BTreeMap<usize, Slot>> {
    // Nothing panics while the lock is held (map operations only), and each update leaves
    // the map consistent, so a poisoned lock is still usable.
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hands `b` to C: records it as live and returns its address.
pub fn register<T: Handle>(b: Box<T>) -> *mut T {
    let p = Box::into_raw(b);
    live().insert(
        p as usize,
        Slot {
            kind: T::KIND,
            busy: false,
            delivering: 0,
            poisoned: false,
        },
    );
    p
}

/// True while `p` is a live handle of kind `T` (for tests and assertions).
pub fn is_live<T: Handle>(p: *const T) -> bool {
    live().get(&(p as usize)).is_some_and(|s| s.kind == T::KIND)
}

/// Exclusive use of one live handle for the length of a call.
#[derive(Debug)]
pub struct Lease<T: Handle> {
    ptr: NonNull<T>,
}

/// How a lease treats a poisoned handle.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Poisoned {
    Refuse,
    Allow,
}

impl<T: Handle> Lease<T> {
    /// Leases `p` for one call. Errors: `-EINVAL` (NULL), `-EBADF` (not a live handle of
    /// this kind), `-EBUSY` (another call holds it), `-EIO` (poisoned by a panic).
    pub fn acquire(p: *mut T) -> Result<Self, c_int> {
        Self::acquire_in(&mut live(), p, Poisoned::Refuse)
    }

    /// Like [`acquire`](Self::acquire), for a call that retires the handle: also refuses
    /// while its callbacks run (`-EBUSY`), and leases a poisoned handle (the bool is true)
    /// so that it can still be freed.
    pub fn acquire_to_retire(p: *mut T) -> Result<(Self, bool), c_int> {
        let mut map = live();
        let lease = Self::acquire_in(&mut map, p, Poisoned::Allow)?;
        let slot = map.get_mut(&lease.addr()).expect("just leased");
        if slot.delivering > 0 {
            slot.busy = false;
            std::mem::forget(lease);
            return Err(-EBUSY);
        }
        let poisoned = slot.poisoned;
        Ok((lease, poisoned))
    }

    fn acquire_in(
        map: &mut BTreeMap<usize, Slot>,
        p: *mut T,
        poisoned: Poisoned,
    ) -> Result<Self, c_int> {
        let ptr = NonNull::new(p).ok_or(-EINVAL)?;
        let slot = map
            .get_mut(&(p as usize))
            .filter(|s| s.kind == T::KIND)
            .ok_or(-EBADF)?;
        if slot.busy {
            return Err(-EBUSY);
        }
        if slot.poisoned && poisoned == Poisoned::Refuse {
            return Err(-EIO);
        }
        // `p` is in LIVE with kind T, so it came from `register::<T>` (Box::into_raw
        // of a T) and has not been retired: it points to a live, aligned T that this library
        // owns. No lease is out on it (not busy), so nothing else references it now.
        // SAFETY: `ptr` points to a live T that nothing else references.
        let magic = unsafe { ptr.as_ref() }.magic();
        if magic != T::MAGIC {
            return Err(-EBADF);
        }
        slot.busy = true;
        Ok(Lease { ptr })
    }

    fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// The handle.
    pub fn get(&mut self) -> &mut T {
        // The lease marks the slot busy, so this is the only reference to the live
        // T behind `ptr` until the lease drops; `&mut self` ties the borrow to the lease.
        // SAFETY: this is the only reference to the T.
        unsafe { self.ptr.as_mut() }
    }

    /// Removes the handle from the registry and returns it, with its magic set to [`DEAD`],
    /// for the caller to drop: from now on every call with this pointer is `-EBADF`.
    pub fn retire(self) -> Box<T> {
        let ptr = self.ptr;
        live().remove(&self.addr());
        std::mem::forget(self);
        // `ptr` came from Box::into_raw in `register`, and the lease made it the only
        // reference; now that it is out of the registry no call can reach it again, so the
        // Box takes back sole ownership.
        // SAFETY: the Box takes back sole ownership.
        let mut b = unsafe { Box::from_raw(ptr.as_ptr()) };
        b.set_magic(DEAD);
        b
    }
}

impl<T: Handle> Drop for Lease<T> {
    fn drop(&mut self) {
        if let Some(slot) = live().get_mut(&self.addr()) {
            slot.busy = false;
            if std::thread::panicking() {
                slot.poisoned = true;
            }
        }
    }
}

/// Leases two handles in one step (a store and a transaction), or neither.
pub fn acquire_pair<A: Handle, B: Handle>(
    a: *mut A,
    b: *mut B,
) -> Result<(Lease<A>, Lease<B>), c_int> {
    let mut map = live();
    let la = Lease::acquire_in(&mut map, a, Poisoned::Refuse)?;
    match Lease::acquire_in(&mut map, b, Poisoned::Refuse) {
        Ok(lb) => Ok((la, lb)),
        Err(e) => {
            // Undo the first lease here: its Drop would take the lock we hold.
            if let Some(slot) = map.get_mut(&la.addr()) {
                slot.busy = false;
            }
            std::mem::forget(la);
            Err(e)
        }
    }
}

/// While it lives, callbacks of one store are running: the store cannot be retired.
#[derive(Debug)]
pub struct Delivering {
    addr: usize,
}

impl Delivering {
    /// Marks the handle of `lease` as delivering callbacks (made while the lease is held,
    /// so the handle is live).
    pub fn start<T: Handle>(lease: &Lease<T>) -> Self {
        let addr = lease.addr();
        if let Some(slot) = live().get_mut(&addr) {
            slot.delivering += 1;
        }
        Delivering { addr }
    }
}

impl Drop for Delivering {
    fn drop(&mut self) {
        if let Some(slot) = live().get_mut(&self.addr) {
            slot.delivering -= 1;
        }
    }
}
