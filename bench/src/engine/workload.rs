//! What each transaction of `keel-bench engine` does: a seeded generator of [`Action`]s,
//! and the transaction that carries each out.
//!
//! The objects live in collection [`COLL`], three kinds of them, named by kind and number:
//!
//! ```text
//!   obj<i>  i < objects  laid out before the measurement: sparse at object_size (randwrite)
//!                        or written full (overwrite, mixed); then written at random
//!                        bs-aligned offsets below object_size; mixed sets attributes on them
//!   log<i>  i < objects  appended to at the end tracked here; an append that would pass
//!                        object_size truncates the object to 0 and writes at 0 instead
//!   new<n>  n = 0, 1, …  created with one write; from n = objects on, the same transaction
//!                        removes new<n - objects>, so at most `objects` of them exist
//! ```
//!
//! So the data a workload can hold is bounded ([`Shape::footprint_bytes`]) and a run of any
//! length fits a store sized for it.

use std::fmt;

use keel_engine::{CollId, Transaction, PAGE};

use crate::cli::EngineWorkload;

/// The collection every object of the benchmark lives in.
pub const COLL: CollId = 1;

/// Largest write of the layout before the measurement (objects are written in chunks).
pub const PREFILL_CHUNK_BYTES: u64 = 1 << 20;

/// Largest default --object-size.
pub const MAX_DEFAULT_OBJECT_BYTES: u64 = 4 << 20;

/// The kind of an object, which is the prefix of its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Written at random offsets: `obj<i>`.
    Obj,
    /// Appended to: `log<i>`.
    Log,
    /// Created and later removed: `new<n>`.
    New,
}

/// One object of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjRef {
    /// Its kind.
    pub kind: Kind,
    /// Its number within the kind.
    pub index: u64,
}

impl ObjRef {
    fn new(kind: Kind, index: u64) -> Self {
        ObjRef { kind, index }
    }

    /// The object's name in [`COLL`].
    pub fn name(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl fmt::Display for ObjRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self.kind {
            Kind::Obj => "obj",
            Kind::Log => "log",
            Kind::New => "new",
        };
        write!(f, "{prefix}{}", self.index)
    }
}

/// What one transaction does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Creates the object with no data and a size of `size` bytes (touch, truncate).
    Shape {
        /// The object.
        obj: ObjRef,
        /// Its size.
        size: u64,
    },
    /// Writes `len` bytes at `offset`; with `truncate_first`, empties the object first.
    Write {
        /// The object.
        obj: ObjRef,
        /// Byte offset.
        offset: u64,
        /// Bytes written.
        len: u64,
        /// Truncate the object to 0 before the write (an append that wraps).
        truncate_first: bool,
    },
    /// Creates `obj` with one write of `len` bytes at 0, and removes `remove`.
    Create {
        /// The new object.
        obj: ObjRef,
        /// Bytes written.
        len: u64,
        /// An older object removed in the same transaction.
        remove: Option<ObjRef>,
    },
    /// Sets the object's attribute `bench` to `value` (8 bytes, little-endian).
    SetAttr {
        /// The object.
        obj: ObjRef,
        /// The value.
        value: u64,
    },
}

/// The collection of `obj` when the objects are spread over `colls` (one per reactor):
/// `obj<i>` and `log<i>` go to `colls[i % n]`, `new<k>` to `colls[(k % objects) % n]`, so a
/// created object and the one its transaction removes (`objects` older) share one
/// collection, and so one shard.
pub fn coll_of(obj: ObjRef, colls: &[CollId], objects: u64) -> CollId {
    colls[((obj.index % objects.max(1)) % colls.len() as u64) as usize]
}

impl Action {
    /// The transaction, in [`COLL`]. `data` holds the bytes to write: at least the
    /// action's length.
    pub fn txn(&self, data: &[u8]) -> Transaction {
        self.txn_in(data, &[COLL], 1)
    }

    /// The transaction, with its object in `colls` as [`coll_of`] places it.
    pub fn txn_in(&self, data: &[u8], colls: &[CollId], objects: u64) -> Transaction {
        let bytes = |len: u64| data[..len as usize].to_vec();
        let mut t = Transaction::new();
        let obj = match *self {
            Action::Shape { obj, .. }
            | Action::Write { obj, .. }
            | Action::Create { obj, .. }
            | Action::SetAttr { obj, .. } => obj,
        };
        let coll = coll_of(obj, colls, objects);
        match *self {
            Action::Shape { obj, size } => {
                t.touch(coll, obj.name()).truncate(coll, obj.name(), size);
            }
            Action::Write {
                obj,
                offset,
                len,
                truncate_first,
            } => {
                if truncate_first {
                    t.truncate(coll, obj.name(), 0);
                }
                t.write(coll, obj.name(), offset, bytes(len));
            }
            Action::Create { obj, len, remove } => {
                t.write(coll, obj.name(), 0, bytes(len));
                if let Some(old) = remove {
                    t.remove(coll, old.name());
                }
            }
            Action::SetAttr { obj, value } => {
                t.setattr(coll, obj.name(), "bench", value.to_le_bytes().to_vec());
            }
        }
        t
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Action::Shape { obj, size } => write!(f, "create {obj} of {size} bytes"),
            Action::Write {
                obj,
                offset,
                len,
                truncate_first,
            } => {
                let truncate = if truncate_first {
                    "truncate, then "
                } else {
                    ""
                };
                write!(f, "{truncate}write {len} bytes at {offset} of {obj}")
            }
            Action::Create { obj, len, remove } => {
                write!(f, "create {obj} with {len} bytes")?;
                match remove {
                    Some(old) => write!(f, ", remove {old}"),
                    None => Ok(()),
                }
            }
            Action::SetAttr { obj, value } => write!(f, "setattr bench={value} on {obj}"),
        }
    }
}

/// The workload and the sizes it runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// What each transaction does.
    pub workload: EngineWorkload,
    /// Bytes per write.
    pub bs: u64,
    /// Objects of each kind (of `new` ones: at most this many at a time).
    pub objects: u64,
    /// Size of each `obj` and most of each `log` (a multiple of `bs`).
    pub object_size: u64,
}

/// Bytes of whole pages that `bytes` of data take.
fn pages_bytes(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE) * PAGE
}

impl Shape {
    /// The kinds of object of `object_size` bytes the workload uses (obj, log).
    fn sized_kinds(workload: EngineWorkload) -> u64 {
        match workload {
            EngineWorkload::Randwrite | EngineWorkload::Overwrite | EngineWorkload::Append => 1,
            EngineWorkload::Create => 0,
            EngineWorkload::Mixed => 2,
        }
    }

    /// Bytes of `new` objects at most.
    fn created_bytes(workload: EngineWorkload, objects: u64, bs: u64) -> u64 {
        match workload {
            EngineWorkload::Create | EngineWorkload::Mixed => objects * pages_bytes(bs),
            _ => 0,
        }
    }

    /// The most object data the workload holds at once, in whole pages.
    pub fn footprint_bytes(&self) -> u64 {
        let sized = Self::sized_kinds(self.workload) * self.objects;
        sized.saturating_mul(pages_bytes(self.object_size))
            + Self::created_bytes(self.workload, self.objects, self.bs)
    }

    /// The default --object-size: [`MAX_DEFAULT_OBJECT_BYTES`], or the largest power of two
    /// that lets the workload fill at most half of `data_bytes`, down to a multiple of `bs`.
    /// None when not even one `bs` per object fits.
    pub fn default_object_size(
        workload: EngineWorkload,
        objects: u64,
        bs: u64,
        data_bytes: u64,
    ) -> Option<u64> {
        let budget = (data_bytes / 2).checked_sub(Self::created_bytes(workload, objects, bs))?;
        let per_object = match Self::sized_kinds(workload) {
            0 => MAX_DEFAULT_OBJECT_BYTES,
            kinds => budget / (kinds * objects),
        };
        if per_object == 0 {
            return None;
        }
        let pow2 = 1u64 << per_object.ilog2();
        let size = pow2.min(MAX_DEFAULT_OBJECT_BYTES) / bs * bs;
        (size > 0).then_some(size)
    }

    /// The untimed actions that lay the objects out before the measurement, in order.
    pub fn prefill(&self) -> Vec<Action> {
        let objs = (0..self.objects).map(|i| ObjRef::new(Kind::Obj, i));
        match self.workload {
            EngineWorkload::Randwrite => objs
                .map(|obj| Action::Shape {
                    obj,
                    size: self.object_size,
                })
                .collect(),
            EngineWorkload::Overwrite | EngineWorkload::Mixed => {
                let chunk = PREFILL_CHUNK_BYTES.min(self.object_size);
                objs.flat_map(|obj| {
                    (0..self.object_size)
                        .step_by(chunk as usize)
                        .map(move |offset| Action::Write {
                            obj,
                            offset,
                            len: chunk.min(self.object_size - offset),
                            truncate_first: false,
                        })
                })
                .collect()
            }
            EngineWorkload::Append | EngineWorkload::Create => Vec::new(),
        }
    }
}

/// The seeded source of the measured actions.
pub struct Generator {
    shape: Shape,
    rng: fastrand::Rng,
    /// Where the next append to each `log` object goes.
    log_ends: Vec<u64>,
    /// `new` objects created so far.
    created: u64,
    /// Attribute values set so far.
    attrs_set: u64,
}

impl Generator {
    /// A generator for `shape`, seeded. `shape.object_size` must be a multiple of `shape.bs`.
    pub fn new(shape: Shape, seed: u64) -> Self {
        assert!(
            shape.bs > 0 && shape.object_size >= shape.bs && shape.object_size % shape.bs == 0,
            "object size {} is not a multiple of bs {}",
            shape.object_size,
            shape.bs
        );
        assert!(shape.objects > 0, "no objects");
        let logs = match shape.workload {
            EngineWorkload::Append | EngineWorkload::Mixed => shape.objects as usize,
            _ => 0,
        };
        Generator {
            shape,
            rng: fastrand::Rng::with_seed(seed),
            log_ends: vec![0; logs],
            created: 0,
            attrs_set: 0,
        }
    }

    /// The next action.
    pub fn next_action(&mut self) -> Action {
        match self.shape.workload {
            EngineWorkload::Randwrite | EngineWorkload::Overwrite => self.overwrite(),
            EngineWorkload::Append => self.append(),
            EngineWorkload::Create => self.create(),
            EngineWorkload::Mixed => match self.rng.u8(0..10) {
                0..=4 => self.overwrite(),
                5..=7 => self.append(),
                8 => self.create(),
                _ => self.setattr(),
            },
        }
    }

    fn random_obj(&mut self, kind: Kind) -> ObjRef {
        ObjRef::new(kind, self.rng.u64(0..self.shape.objects))
    }

    fn overwrite(&mut self) -> Action {
        let obj = self.random_obj(Kind::Obj);
        let slots = self.shape.object_size / self.shape.bs;
        Action::Write {
            obj,
            offset: self.rng.u64(0..slots) * self.shape.bs,
            len: self.shape.bs,
            truncate_first: false,
        }
    }

    fn append(&mut self) -> Action {
        let obj = self.random_obj(Kind::Log);
        let bs = self.shape.bs;
        let end = &mut self.log_ends[obj.index as usize];
        let truncate_first = *end + bs > self.shape.object_size;
        if truncate_first {
            *end = 0;
        }
        let offset = *end;
        *end += bs;
        Action::Write {
            obj,
            offset,
            len: bs,
            truncate_first,
        }
    }

    fn create(&mut self) -> Action {
        let n = self.created;
        self.created += 1;
        Action::Create {
            obj: ObjRef::new(Kind::New, n),
            len: self.shape.bs,
            remove: n
                .checked_sub(self.shape.objects)
                .map(|old| ObjRef::new(Kind::New, old)),
        }
    }

    fn setattr(&mut self) -> Action {
        self.attrs_set += 1;
        Action::SetAttr {
            obj: self.random_obj(Kind::Obj),
            value: self.attrs_set,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use keel_engine::TxnOp;

    use super::*;

    fn shape(workload: EngineWorkload) -> Shape {
        Shape {
            workload,
            bs: 8192,
            objects: 4,
            object_size: 64 << 10,
        }
    }

    #[test]
    fn random_writes_are_aligned_inside_the_objects_and_seeded() {
        for workload in [EngineWorkload::Randwrite, EngineWorkload::Overwrite] {
            let s = shape(workload);
            let mut a = Generator::new(s, 9);
            let mut b = Generator::new(s, 9);
            let mut seen = HashSet::new();
            for _ in 0..5000 {
                let action = a.next_action();
                assert_eq!(action, b.next_action());
                let Action::Write {
                    obj,
                    offset,
                    len,
                    truncate_first,
                } = action
                else {
                    panic!("{action:?}");
                };
                assert_eq!(obj.kind, Kind::Obj);
                assert!(obj.index < 4);
                assert_eq!(len, 8192);
                assert!(!truncate_first);
                assert_eq!(offset % 8192, 0, "bs-aligned");
                assert!(offset + len <= 64 << 10, "inside the object");
                seen.insert((obj.index, offset));
            }
            assert_eq!(seen.len(), 4 * 8, "every slot of every object is hit");
        }
        let other: Vec<Action> = {
            let mut g = Generator::new(shape(EngineWorkload::Randwrite), 10);
            (0..20).map(|_| g.next_action()).collect()
        };
        let mut g = Generator::new(shape(EngineWorkload::Randwrite), 9);
        let first: Vec<Action> = (0..20).map(|_| g.next_action()).collect();
        assert_ne!(first, other, "the seed matters");
    }

    #[test]
    fn appends_follow_the_end_and_wrap_at_the_object_size() {
        let mut g = Generator::new(shape(EngineWorkload::Append), 1);
        let mut ends: HashMap<u64, u64> = HashMap::new();
        let mut wraps = 0;
        for _ in 0..1000 {
            let Action::Write {
                obj,
                offset,
                len,
                truncate_first,
            } = g.next_action()
            else {
                panic!("append writes");
            };
            assert_eq!(obj.kind, Kind::Log);
            let end = ends.entry(obj.index).or_default();
            if truncate_first {
                assert_eq!(*end, 64 << 10, "wraps only when full");
                assert_eq!(offset, 0);
                wraps += 1;
            } else {
                assert_eq!(offset, *end, "at the end");
            }
            *end = offset + len;
            assert!(*end <= 64 << 10);
        }
        // 1000 appends of 8 KiB into 4 objects of 64 KiB: about 1000 / 8 wraps.
        assert!((100..=125).contains(&wraps), "{wraps}");
    }

    #[test]
    fn creates_count_up_and_remove_the_one_objects_older() {
        let mut g = Generator::new(shape(EngineWorkload::Create), 1);
        for n in 0..10u64 {
            let action = g.next_action();
            let remove = n.checked_sub(4).map(|i| ObjRef::new(Kind::New, i));
            assert_eq!(
                action,
                Action::Create {
                    obj: ObjRef::new(Kind::New, n),
                    len: 8192,
                    remove,
                }
            );
        }
        let t = Action::Create {
            obj: ObjRef::new(Kind::New, 7),
            len: 8192,
            remove: Some(ObjRef::new(Kind::New, 3)),
        }
        .txn(&[5; 8192]);
        assert!(
            matches!(&t.ops()[0], TxnOp::Write { name, offset: 0, data, .. }
            if name == b"new7" && data.len() == 8192)
        );
        assert!(matches!(&t.ops()[1], TxnOp::Remove { name, .. } if name == b"new3"));
    }

    #[test]
    fn mixed_has_the_asked_proportions() {
        let mut g = Generator::new(shape(EngineWorkload::Mixed), 3);
        let mut counts = [0u32; 4];
        for _ in 0..10_000 {
            let i = match g.next_action() {
                Action::Write {
                    obj: ObjRef {
                        kind: Kind::Obj, ..
                    },
                    ..
                } => 0,
                Action::Write {
                    obj: ObjRef {
                        kind: Kind::Log, ..
                    },
                    ..
                } => 1,
                Action::Create { .. } => 2,
                Action::SetAttr { .. } => 3,
                other => panic!("{other:?}"),
            };
            counts[i] += 1;
        }
        for (got, want) in counts.iter().zip([5000, 3000, 1000, 1000]) {
            assert!(got.abs_diff(want) < 200, "{counts:?}");
        }
    }

    #[test]
    fn prefill_lays_out_the_objects() {
        let sparse = shape(EngineWorkload::Randwrite).prefill();
        assert_eq!(sparse.len(), 4);
        assert_eq!(
            sparse[3],
            Action::Shape {
                obj: ObjRef::new(Kind::Obj, 3),
                size: 64 << 10
            }
        );
        // 3 MiB objects in 1 MiB chunks, covering each object once.
        let mut s = shape(EngineWorkload::Overwrite);
        s.object_size = 3 << 20;
        let full = s.prefill();
        assert_eq!(full.len(), 4 * 3);
        let mut covered: HashMap<u64, u64> = HashMap::new();
        for a in &full {
            let Action::Write {
                obj, offset, len, ..
            } = *a
            else {
                panic!("{a:?}");
            };
            assert_eq!(offset, covered.get(&obj.index).copied().unwrap_or(0));
            covered.insert(obj.index, offset + len);
        }
        assert!(covered.values().all(|&end| end == 3 << 20));
        assert!(shape(EngineWorkload::Append).prefill().is_empty());
        assert!(shape(EngineWorkload::Create).prefill().is_empty());
    }

    #[test]
    fn the_default_object_size_fits_half_the_data_area() {
        use EngineWorkload::*;
        let d = Shape::default_object_size;
        // 224 MiB of data, 1024 objects: 112 KiB each at most, so 64 KiB.
        assert_eq!(d(Randwrite, 1024, 4096, 224 << 20), Some(64 << 10));
        // Two kinds of sized objects, and 4 MiB of created ones.
        assert_eq!(d(Mixed, 1024, 4096, 224 << 20), Some(32 << 10));
        assert_eq!(
            d(Randwrite, 1, 4096, 1 << 40),
            Some(MAX_DEFAULT_OBJECT_BYTES)
        );
        assert_eq!(
            d(Create, 1024, 4096, 224 << 20),
            Some(MAX_DEFAULT_OBJECT_BYTES)
        );
        // Down to a multiple of bs that is not a power of two.
        assert_eq!(d(Overwrite, 1, 12 << 10, 64 << 10), Some(24 << 10));
        assert_eq!(d(Randwrite, 1024, 4096, 4 << 20), None);
        assert_eq!(d(Create, 1024, 4096, 4 << 20), None);
        for w in [Randwrite, Overwrite, Append, Create, Mixed] {
            let object_size = d(w, 1000, 4096, 1 << 30).unwrap();
            let s = Shape {
                workload: w,
                bs: 4096,
                objects: 1000,
                object_size,
            };
            assert!(s.footprint_bytes() <= 1 << 29, "{w:?}");
        }
    }

    #[test]
    fn actions_become_their_transactions() {
        let data = [7u8; 8192];
        let obj = ObjRef::new(Kind::Log, 2);
        let t = Action::Write {
            obj,
            offset: 4096,
            len: 4096,
            truncate_first: true,
        }
        .txn(&data);
        assert!(
            matches!(&t.ops()[0], TxnOp::Truncate { coll: COLL, name, size: 0 } if name == b"log2")
        );
        assert!(
            matches!(&t.ops()[1], TxnOp::Write { offset: 4096, data, .. } if data.len() == 4096)
        );
        let t = Action::Shape {
            obj: ObjRef::new(Kind::Obj, 0),
            size: 1 << 20,
        }
        .txn(&data);
        assert_eq!(t.len(), 2);
        assert!(t.validate().is_ok());
        let s = Action::SetAttr {
            obj: ObjRef::new(Kind::Obj, 1),
            value: 9,
        };
        assert_eq!(s.to_string(), "setattr bench=9 on obj1");
        assert!(s.txn(&data).validate().is_ok());
        assert_eq!(
            Action::Write {
                obj,
                offset: 0,
                len: 512,
                truncate_first: true
            }
            .to_string(),
            "truncate, then write 512 bytes at 0 of log2"
        );
    }
}
