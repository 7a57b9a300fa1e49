//! Which transactions may run at once.
//!
//! A transaction holds its objects exclusively and its collections shared (mkcoll/rmcoll
//! hold theirs exclusively) from the moment it starts planning until its changes are
//! committed and its data is at its home location. Conflicting transactions therefore plan
//! against each other's committed results, and their journal entries follow their
//! submission order. Waiting transactions start in submission order: a transaction never
//! overtakes an earlier one it conflicts with.
//!
//! An object is locked by a 64-bit fingerprint of its collection and name, so taking a
//! lock copies no name. Two objects whose fingerprints collide merely wait for each other:
//! a conflict is never missed.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};

use smallvec::SmallVec;

use crate::txn::{Transaction, TxnOp};
use crate::types::CollId;

/// The lock of one object: a fingerprint of (collection, name).
pub(crate) type ObjLock = u64;

/// The lock of object `name` in `coll`. The same object always gives the same lock.
pub(crate) fn obj_lock(coll: CollId, name: &[u8]) -> ObjLock {
    // DefaultHasher::new() is SipHash with fixed keys: the same value on every call.
    let mut h = DefaultHasher::new();
    coll.hash(&mut h);
    name.hash(&mut h);
    h.finish()
}

/// The locks one transaction needs. Most transactions name one or two objects in one
/// collection: those sets live inline, and queueing a transaction allocates nothing here.
#[derive(Clone, Debug, Default)]
pub(crate) struct LockSet {
    /// Sorted, without repeats.
    pub(crate) objects: SmallVec<[ObjLock; 2]>,
    /// Collections, and whether exclusively.
    pub(crate) colls: SmallVec<[(CollId, bool); 2]>,
}

impl LockSet {
    pub(crate) fn of(txn: &Transaction) -> LockSet {
        let n = txn.ops().len();
        let mut objects: SmallVec<[ObjLock; 2]> = SmallVec::with_capacity(n);
        let mut colls: SmallVec<[(CollId, bool); 2]> = SmallVec::with_capacity(n);
        for op in txn.ops() {
            match op {
                TxnOp::MkColl { coll } | TxnOp::RmColl { coll } => colls.push((*coll, true)),
                other => {
                    let coll = other.coll();
                    colls.push((coll, false));
                    objects.extend(other.names().map(|name| obj_lock(coll, name)));
                }
            }
        }
        objects.sort_unstable();
        objects.dedup();
        // Exclusive first within a collection, then keep the first of each.
        colls.sort_unstable_by_key(|&(c, excl)| (c, !excl));
        colls.dedup_by_key(|(c, _)| *c);
        LockSet { objects, colls }
    }

    fn conflicts(&self, other: &LockSet) -> bool {
        self.objects
            .iter()
            .any(|o| other.objects.binary_search(o).is_ok())
            || self
                .colls
                .iter()
                .any(|(c, x)| other.colls.iter().any(|(oc, ox)| oc == c && (*x || *ox)))
    }
}

/// Hashes a key that is one integer with a multiply (Fibonacci hashing), not SipHash's
/// rounds. The keys of [`Locks`] are object fingerprints (SipHash already) and collection
/// ids; they come from the embedding process's own transactions, not from a party that
/// could aim collisions at the tables (which would only slow them).
#[derive(Default)]
pub(crate) struct IntHasher(u64);

impl Hasher for IntHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type IntBuild = BuildHasherDefault<IntHasher>;

/// Locks held by running transactions.
#[derive(Default)]
pub(crate) struct Locks {
    objects: HashSet<ObjLock, IntBuild>,
    /// Per collection: shared holders, and whether held exclusively.
    colls: HashMap<CollId, (u32, bool), IntBuild>,
}

impl Locks {
    /// True if `set` conflicts with nothing held.
    pub(crate) fn available(&self, set: &LockSet) -> bool {
        set.objects.iter().all(|o| !self.objects.contains(o))
            && set.colls.iter().all(|(c, excl)| match self.colls.get(c) {
                None => true,
                Some(&(shared, held_excl)) => !held_excl && (!excl || shared == 0),
            })
    }

    /// Like `available`, and also no conflict with any transaction waiting ahead.
    pub(crate) fn may_start(&self, set: &LockSet, ahead: &[&LockSet]) -> bool {
        self.available(set) && ahead.iter().all(|a| !a.conflicts(set))
    }

    pub(crate) fn acquire(&mut self, set: &LockSet) {
        debug_assert!(self.available(set));
        for &o in &set.objects {
            self.objects.insert(o);
        }
        for (c, excl) in &set.colls {
            let e = self.colls.entry(*c).or_insert((0, false));
            if *excl {
                e.1 = true;
            } else {
                e.0 += 1;
            }
        }
    }

    pub(crate) fn release(&mut self, set: &LockSet) {
        for o in &set.objects {
            let was = self.objects.remove(o);
            debug_assert!(was, "releasing an object lock not held");
        }
        for (c, excl) in &set.colls {
            let e = self
                .colls
                .get_mut(c)
                .expect("releasing a collection lock not held");
            if *excl {
                e.1 = false;
            } else {
                e.0 -= 1;
            }
            if *e == (0, false) {
                self.colls.remove(c);
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.colls.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_set_dedups_objects_and_keeps_exclusive_collections() {
        let mut t = Transaction::new();
        t.write(2, "b", 0, vec![1u8; 8])
            .write(2, "a", 0, vec![1u8; 8])
            .setattr(2, "b", "k", "v")
            .mkcoll(3)
            .touch(3, "x")
            .touch(1, "y");
        let set = LockSet::of(&t);
        let mut want: Vec<ObjLock> = [(1, "y"), (2, "a"), (2, "b"), (3, "x")]
            .iter()
            .map(|&(c, n)| obj_lock(c, n.as_bytes()))
            .collect();
        want.sort_unstable();
        assert_eq!(set.objects.as_slice(), want, "each object once, sorted");
        assert_eq!(set.colls.as_slice(), [(1, false), (2, false), (3, true)]);

        // An exclusive holder excludes a shared one, and the other way round.
        let mut locks = Locks::default();
        locks.acquire(&set);
        let mut other = Transaction::new();
        other.touch(3, "z");
        assert!(!locks.available(&LockSet::of(&other)));
        let mut shared = Transaction::new();
        shared.touch(2, "c");
        assert!(locks.available(&LockSet::of(&shared)));
        locks.release(&set);
        assert!(locks.is_empty());
    }

    #[test]
    fn the_same_object_always_conflicts_and_others_do_not() {
        let one = |c: CollId, n: &str| {
            let mut t = Transaction::new();
            t.touch(c, n);
            LockSet::of(&t)
        };
        let mut locks = Locks::default();
        locks.acquire(&one(1, "obj"));
        assert!(
            !locks.available(&one(1, "obj")),
            "same name, same collection"
        );
        assert!(locks.available(&one(1, "obj2")));
        assert!(
            locks.available(&one(2, "obj")),
            "same name, other collection"
        );
        assert!(locks.available(&one(1, "ob")), "a prefix is another object");
        assert_eq!(obj_lock(7, b"x"), obj_lock(7, b"x"));
        // A clone locks both its source and its destination.
        let mut clone = Transaction::new();
        clone.clone_object(1, "obj", "copy");
        assert!(!locks.available(&LockSet::of(&clone)));
        locks.release(&one(1, "obj"));
        assert!(locks.available(&LockSet::of(&clone)));
    }
}
