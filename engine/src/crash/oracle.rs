//! The oracle: is the recovered store a state that DESIGN §4 allows?
//!
//! Transactions on one object commit in submission order, and a durable transaction implies
//! every earlier one on the same objects is durable. So for each object the recovered state
//! must be its state after every acknowledged transaction, followed by some *prefix* of the
//! unacknowledged ones that touch it (candidates `C_0..C_n`, computed with the model applying
//! them in submission order). An object matches `C_k` when its existence, size, attributes
//! and omap equal `C_k`'s, and its data equals `C_k`'s block by block — except, in
//! MetadataOnly, blocks that later unacknowledged transactions overwrote in place, which may
//! hold any later candidate's block (torn overwrites: old or new, nothing else).
//!
//! A transaction over several objects must be present in all or none: where the matching
//! prefixes say "present" for one of its objects and "absent" for another, that is a
//! violation.
//!
//! Without overwrite intents (one cycle in five), an overwrite the cut interrupted reads
//! as corruption rather than as a torn overwrite (docs/integrity.md §4). The observer then
//! reads such a page as it is on the device, and the oracle accepts it only where a later
//! candidate rewrites that page, block by block old or new; a corrupt page that no later
//! candidate touches is a false corruption report, a violation.

use std::collections::BTreeMap;

use keel_drivers::BlockDevice;

use super::model::{Model, ModelObject};
use crate::error::StoreError;
use crate::store::Store;
use crate::txn::{Transaction, TxnOp};
use crate::types::{CollId, JournalMode, ObjKey, PAGE};

/// What the store holds for one object after recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actual {
    /// The object, or None if it does not exist.
    pub obj: Option<ModelObject>,
    /// Logical pages the store reported corrupt, read unchecked instead (only without
    /// overwrite intents).
    pub corrupt: Vec<u64>,
}

impl Actual {
    /// What a recovered store holds for `k`: data, attributes and omap, or nothing. A read
    /// that fails records its error in `read_err` (the first one) and reads as empty.
    ///
    /// A torn overwrite (pages inside an intent left open by the cut) is the caller's: the
    /// observer acknowledges the object's torn pages, as a client would, and reads again;
    /// the oracle then checks those bytes with the torn-overwrite allowance. Corruption is
    /// never acknowledged: it is an error — unless the store keeps no overwrite intents
    /// (`intents_off`), where an interrupted overwrite reads as corruption: each corrupt
    /// page is then read unchecked and named in [`Actual::corrupt`] for the oracle.
    pub fn observe<D: BlockDevice>(
        store: &mut Store<D>,
        k: &ObjKey,
        intents_off: bool,
        read_err: &mut Option<String>,
    ) -> Actual {
        let Ok(stat) = store.stat(k.coll, &k.name) else {
            return Actual {
                obj: None,
                corrupt: Vec::new(),
            };
        };
        let read = |store: &mut Store<D>| store.read(k.coll, &k.name, 0, stat.size as usize);
        let mut result = read(store);
        if let Err(StoreError::TornOverwrite { .. }) = result {
            let mut ack = Transaction::new();
            ack.acknowledge(k.coll, k.name.clone(), 0, stat.size);
            result = store.submit_sync(ack).and_then(|()| read(store));
        }
        let mut corrupt = Vec::new();
        if intents_off && matches!(result, Err(StoreError::DataCorrupt { .. })) {
            result = read_by_page(store, k, stat.size, &mut corrupt);
        }
        let data = result.unwrap_or_else(|e| {
            read_err.get_or_insert(format!("{k}: read after recovery: {e}"));
            Vec::new()
        });
        let (attrs, omap) = store.attrs_and_omap(k.coll, &k.name).unwrap_or_default();
        Actual {
            obj: Some(ModelObject { data, attrs, omap }),
            corrupt,
        }
    }
}

/// Reads an object page by page; a page the store reports corrupt is read unchecked and
/// its logical page pushed to `corrupt`.
fn read_by_page<D: BlockDevice>(
    store: &mut Store<D>,
    k: &ObjKey,
    size: u64,
    corrupt: &mut Vec<u64>,
) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(size as usize);
    for lp in 0..size.div_ceil(PAGE) {
        let len = (size - lp * PAGE).min(PAGE) as usize;
        match store.read(k.coll, &k.name, lp * PAGE, len) {
            Ok(b) => out.extend_from_slice(&b),
            Err(StoreError::DataCorrupt { .. }) => {
                let raw = store
                    .read_page_unchecked(k.coll, &k.name, lp)?
                    .unwrap_or_else(|| vec![0; PAGE as usize]);
                out.extend_from_slice(&raw[..len]);
                corrupt.push(lp);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// One transaction of the crash phase, in submission order.
pub struct Submitted {
    /// The transaction.
    pub txn: Transaction,
    /// Whether the store acknowledged it (with its result).
    pub acked: Option<bool>,
}

/// The verdict on one object.
#[derive(Debug)]
pub struct ObjectVerdict {
    /// Candidate indices the actual state matches (empty: a violation).
    pub matches: Vec<usize>,
    /// For each candidate index >= 1, the submission index of the transaction it adds.
    pub chain: Vec<usize>,
    /// The actual state equals a state before its last acknowledged transaction.
    pub acked_lost: bool,
}

fn touches(t: &Transaction) -> Vec<ObjKey> {
    let mut v: Vec<ObjKey> = t.ops().iter().flat_map(|op| op.objects()).collect();
    v.sort();
    v.dedup();
    v
}

fn colls_touched(t: &Transaction) -> Vec<CollId> {
    t.ops()
        .iter()
        .filter_map(|op| match op {
            TxnOp::MkColl { coll } | TxnOp::RmColl { coll } => Some(*coll),
            _ => None,
        })
        .collect()
}

/// Bytes `[at, at + len)` of a candidate's data, zeroes past its end.
fn slice_of(c: &ModelObject, at: usize, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    let end = (at + len).min(c.data.len());
    if at < end {
        b[..end - at].copy_from_slice(&c.data[at..end]);
    }
    b
}

/// Per-block comparison with the MetadataOnly torn-overwrite allowance. A page in
/// `corrupt` must also be one that a later candidate rewrites.
fn data_ok(
    actual: &[u8],
    cands: &[Option<&ModelObject>],
    k: usize,
    block: usize,
    torn_ok: bool,
    corrupt: &[u64],
) -> bool {
    let want = &cands[k].expect("matched metadata exists").data;
    if actual.len() != want.len() {
        return false;
    }
    let pg = PAGE as usize;
    let rewritten_later = |lp: u64| {
        let at = lp as usize * pg;
        let here = slice_of(cands[k].expect("exists"), at, pg);
        cands[k + 1..]
            .iter()
            .flatten()
            .any(|c| slice_of(c, at, pg) != here)
    };
    if !corrupt.iter().all(|&lp| torn_ok && rewritten_later(lp)) {
        return false;
    }
    actual.chunks(block).enumerate().all(|(i, a)| {
        let at = i * block;
        let same = |c: &ModelObject| slice_of(c, at, a.len()) == a;
        same(cands[k].expect("exists"))
            || (torn_ok && cands[k + 1..].iter().flatten().any(|c| same(c)))
    })
}

fn meta_eq(a: &Option<ModelObject>, c: Option<&ModelObject>) -> bool {
    match (a, c) {
        (None, None) => true,
        (Some(a), Some(c)) => {
            a.data.len() == c.data.len() && a.attrs == c.attrs && a.omap == c.omap
        }
        _ => false,
    }
}

/// Checks every object and collection.
pub struct Oracle<'a> {
    /// Committed model before the crash phase began, plus every acked transaction.
    pub base: &'a Model,
    /// States after each acked transaction, per object (for acked_lost reports).
    pub history: &'a BTreeMap<ObjKey, Vec<Option<ModelObject>>>,
    /// The crash phase's transactions.
    pub submitted: &'a [Submitted],
    /// Journal mode of the store.
    pub mode: JournalMode,
    /// Device block size (tearing granularity).
    pub block: usize,
}

/// Result of checking one recovery.
#[derive(Debug, Default)]
pub struct OracleReport {
    /// Violations, described.
    pub violations: Vec<String>,
    /// Objects whose acknowledged state was lost.
    pub acked_lost: u64,
    /// Per submitted index of an unacknowledged transaction: Some(true) present, Some(false)
    /// absent, None ambiguous (its objects' states are the same either way).
    pub presence: BTreeMap<usize, Option<bool>>,
}

impl Oracle<'_> {
    /// Prefix states: G[j] = base + unacked[0..j] applied in submission order.
    fn prefixes(&self) -> (Vec<usize>, Vec<Model>) {
        let unacked: Vec<usize> = (0..self.submitted.len())
            .filter(|&i| self.submitted[i].acked.is_none())
            .collect();
        let mut g = vec![self.base.clone()];
        for &i in &unacked {
            let mut next = g.last().expect("G_0").clone();
            next.apply(&self.submitted[i].txn);
            g.push(next);
        }
        (unacked, g)
    }

    /// Checks objects `keys` and collections `colls`; `actual` reads the store.
    pub fn check(
        &self,
        keys: &[ObjKey],
        colls: &[CollId],
        mut actual: impl FnMut(&ObjKey) -> Actual,
        mut coll_exists: impl FnMut(CollId) -> bool,
    ) -> OracleReport {
        let (unacked, g) = self.prefixes();
        let mut rep = OracleReport::default();
        // Where each unacked txn is present, per object: (present votes, absent votes).
        let mut votes: BTreeMap<usize, (u32, u32)> = BTreeMap::new();
        for key in keys {
            // Chain: positions in `unacked` of transactions touching key (or its collection
            // through mkcoll/rmcoll).
            let chain: Vec<usize> = (0..unacked.len())
                .filter(|&u| {
                    let t = &self.submitted[unacked[u]].txn;
                    touches(t).contains(key) || colls_touched(t).contains(&key.coll)
                })
                .collect();
            let cands: Vec<Option<&ModelObject>> = std::iter::once(&g[0])
                .chain(chain.iter().map(|&u| &g[u + 1]))
                .map(|m| m.object(key.coll, &key.name))
                .collect();
            let a = actual(key);
            let torn_ok = self.mode == JournalMode::MetadataOnly;
            let matches: Vec<usize> = (0..cands.len())
                .filter(|&k| {
                    meta_eq(&a.obj, cands[k])
                        && a.obj.as_ref().is_none_or(|o| {
                            data_ok(&o.data, &cands, k, self.block, torn_ok, &a.corrupt)
                        })
                })
                .collect();
            if matches.is_empty() {
                let lost = self
                    .history
                    .get(key)
                    .is_some_and(|h| h.len() >= 2 && h[..h.len() - 1].contains(&a.obj));
                if lost {
                    rep.acked_lost += 1;
                }
                rep.violations.push(format!(
                    "{key}: recovered state matches none of {} allowed states{}; recovered {}, expected {}",
                    cands.len(),
                    if lost { " (an acknowledged write was lost)" } else { "" },
                    describe(a.obj.as_ref()),
                    describe(cands[0]),
                ));
                continue;
            }
            for (pos, &u) in chain.iter().enumerate() {
                let idx = unacked[u];
                let present = matches.iter().all(|&k| k > pos);
                let absent = matches.iter().all(|&k| k <= pos);
                let v = votes.entry(idx).or_default();
                if present {
                    v.0 += 1;
                }
                if absent {
                    v.1 += 1;
                }
            }
        }
        for &c in colls {
            let chain: Vec<usize> = (0..unacked.len())
                .filter(|&u| colls_touched(&self.submitted[unacked[u]].txn).contains(&c))
                .collect();
            let exists = coll_exists(c);
            let ok = std::iter::once(0)
                .chain(chain.iter().map(|&u| u + 1))
                .any(|j| g[j].colls.contains_key(&c) == exists);
            if !ok {
                rep.violations.push(format!(
                    "collection {c}: existence {exists} matches no allowed state"
                ));
            }
        }
        for &u in &unacked {
            let (p, a) = votes.get(&u).copied().unwrap_or((0, 0));
            if p > 0 && a > 0 {
                rep.violations.push(format!(
                    "transaction #{u} is present on {p} object(s) and absent on {a}: not atomic"
                ));
            }
            rep.presence
                .insert(u, (p > 0).then_some(true).or((a > 0).then_some(false)));
        }
        rep
    }
}

fn describe(o: Option<&ModelObject>) -> String {
    match o {
        None => "absent".into(),
        Some(o) => format!(
            "{} bytes, {} attrs, {} omap keys",
            o.data.len(),
            o.attrs.len(),
            o.omap.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(data: Vec<u8>) -> ModelObject {
        ModelObject {
            data,
            attrs: BTreeMap::new(),
            omap: BTreeMap::new(),
        }
    }

    #[test]
    fn a_corrupt_page_passes_only_where_a_later_candidate_rewrites_it() {
        let pg = PAGE as usize;
        let old = obj(vec![1u8; 2 * pg]);
        // The later, unacknowledged candidate rewrites page 0 only.
        let mut new_data = vec![1u8; 2 * pg];
        new_data[..pg].fill(2);
        let new = obj(new_data);
        let cands = [Some(&old), Some(&new)];
        // Page 0 torn: its first block new, the rest old.
        let mut torn = vec![1u8; 2 * pg];
        torn[..512].fill(2);
        assert!(data_ok(&torn, &cands, 0, 512, true, &[0]));
        // Page 1 reported corrupt although nothing later rewrites it: a false report.
        assert!(!data_ok(&torn, &cands, 0, 512, true, &[1]));
        // A block that is neither old nor new.
        let mut junk = torn.clone();
        junk[1024] = 9;
        assert!(!data_ok(&junk, &cands, 0, 512, true, &[0]));
        // No torn allowance (Full): a corrupt page is never accepted.
        assert!(!data_ok(&old.data, &cands, 0, 512, false, &[0]));
        // Nothing corrupt: the plain comparison.
        assert!(data_ok(&old.data, &cands, 0, 512, true, &[]));
    }
}
