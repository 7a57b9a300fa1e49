//! Seeded random transactions of every op class, shaped by the model so most of them are
//! valid (and some deliberately are not).

use super::model::Model;
use crate::txn::Transaction;
use crate::types::CollId;

/// The class of a transaction, by the row of DESIGN §4 that governs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxnClass {
    /// mkcoll, rmcoll, touch, remove, setattr, rmattr, omap.
    Metadata,
    /// Writes creating or extending objects (fresh pages).
    Append,
    /// Writes inside existing data (in place).
    Overwrite,
    /// zero, truncate.
    Truncate,
    /// clone, clone_range (full journal in every mode).
    Clone,
}

impl TxnClass {
    /// All classes.
    pub const ALL: [TxnClass; 5] = [
        TxnClass::Metadata,
        TxnClass::Append,
        TxnClass::Overwrite,
        TxnClass::Truncate,
        TxnClass::Clone,
    ];

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            TxnClass::Metadata => "metadata",
            TxnClass::Append => "append",
            TxnClass::Overwrite => "overwrite",
            TxnClass::Truncate => "truncate",
            TxnClass::Clone => "clone",
        }
    }
}

/// Collections the workload uses (created in the warm-up); one more comes and goes.
pub const COLLS: [CollId; 2] = [1, 2];
/// The collection that mkcoll/rmcoll toggle.
pub const SPARE_COLL: CollId = 3;
const NAMES: usize = 8;
const MAX_SIZE: usize = 32 << 10;

/// Generates transactions.
pub struct Workload {
    rng: fastrand::Rng,
    fill: u8,
    colls: Vec<CollId>,
}

fn name(i: usize) -> Vec<u8> {
    format!("obj{i}").into_bytes()
}

impl Workload {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self::with_colls(seed, COLLS.to_vec())
    }

    /// A generator over collections `colls` (each transaction stays in one of them, so in
    /// one shard), and [`SPARE_COLL`].
    pub fn with_colls(seed: u64, colls: Vec<CollId>) -> Self {
        assert!(!colls.is_empty() && !colls.contains(&SPARE_COLL));
        Workload {
            rng: fastrand::Rng::with_seed(seed),
            fill: 1,
            colls,
        }
    }

    /// The collections it writes to (besides [`SPARE_COLL`]).
    pub fn colls(&self) -> &[CollId] {
        &self.colls
    }

    fn data(&mut self, len: usize) -> Vec<u8> {
        // Recognisable bytes: each write has its own fill, varied per byte.
        self.fill = self.fill.wrapping_add(1).max(1);
        let f = self.fill;
        (0..len).map(|i| f ^ (i as u8).rotate_left(3)).collect()
    }

    fn len(&mut self) -> usize {
        match self.rng.u8(0..4) {
            0 => self.rng.usize(1..600),
            1 => 4096,
            2 => self.rng.usize(1..3) * 4096,
            _ => self.rng.usize(1..20_000),
        }
    }

    /// One transaction against the model's expected state, and its class.
    pub fn next(&mut self, m: &Model) -> (Transaction, TxnClass) {
        let coll = self.colls[self.rng.usize(0..self.colls.len())];
        let n = name(self.rng.usize(0..NAMES));
        let size = m.object(coll, &n).map(|o| o.data.len());
        let mut t = Transaction::default();
        let roll = self.rng.u8(0..100);
        let class = match roll {
            0..=29 => {
                // Append / create / write past the end.
                let at = size.unwrap_or(0)
                    + if self.rng.bool() {
                        0
                    } else {
                        self.rng.usize(0..9000)
                    };
                let at = at.min(MAX_SIZE);
                let len = self.len();
                let d = self.data(len);
                t.write(coll, n.clone(), at as u64, d);
                TxnClass::Append
            }
            30..=54 => match size {
                Some(s) if s > 0 => {
                    let at = self.rng.usize(0..s);
                    let len = self.len().min(s - at).max(1);
                    let d = self.data(len);
                    t.write(coll, n.clone(), at as u64, d);
                    if self.rng.u8(0..4) == 0 {
                        // A second object in the same transaction.
                        let n2 = name(self.rng.usize(0..NAMES));
                        let d = self.data(100);
                        t.write(coll, n2, 0, d);
                    }
                    TxnClass::Overwrite
                }
                _ => {
                    t.touch(coll, n.clone());
                    TxnClass::Metadata
                }
            },
            55..=64 => {
                let s = size.unwrap_or(0);
                if self.rng.bool() {
                    t.truncate(coll, n.clone(), self.rng.usize(0..=s + 8192) as u64);
                } else {
                    let at = self.rng.usize(0..=s + 100);
                    t.zero(coll, n.clone(), at as u64, self.len() as u64);
                }
                TxnClass::Truncate
            }
            65..=79 => {
                match self.rng.u8(0..5) {
                    0 => {
                        let len = self.rng.usize(0..64);
                        t.setattr(coll, n.clone(), b"a".to_vec(), self.data(len))
                    }
                    1 => t.rmattr(coll, n.clone(), b"a".to_vec()),
                    2 => {
                        let k = vec![b'k', self.rng.u8(0..6)];
                        let len = self.rng.usize(0..40);
                        let v = self.data(len);
                        t.omap_set(coll, n.clone(), vec![(k, v)])
                    }
                    3 => t.omap_rm(coll, n.clone(), vec![vec![b'k', self.rng.u8(0..6)]]),
                    _ => t.touch(coll, n.clone()),
                };
                TxnClass::Metadata
            }
            80..=84 => {
                t.remove(coll, n.clone());
                TxnClass::Metadata
            }
            85..=89 => {
                if m.colls.contains_key(&SPARE_COLL) {
                    t.rmcoll(SPARE_COLL);
                } else {
                    t.mkcoll(SPARE_COLL);
                }
                TxnClass::Metadata
            }
            _ => {
                let dst = name(self.rng.usize(0..NAMES));
                if dst == n {
                    t.touch(coll, n.clone());
                    return (t, TxnClass::Metadata);
                }
                if self.rng.bool() {
                    t.clone_object(coll, n.clone(), dst);
                } else {
                    let s = size.unwrap_or(0);
                    let from = self.rng.usize(0..=s);
                    let len = self.len().min(MAX_SIZE);
                    let to = self.rng.usize(0..MAX_SIZE / 2);
                    t.clone_range(coll, n.clone(), dst, from as u64, len as u64, to as u64);
                }
                TxnClass::Clone
            }
        };
        (t, class)
    }
}
