//! The reference model: what each transaction means, written plainly and independently of
//! the planner (bytes in a `Vec`, no pages, no extents). The crash oracle compares the
//! recovered store with states of this model.

use std::collections::BTreeMap;

use crate::txn::{Transaction, TxnOp};
use crate::types::CollId;

/// One object as the model sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelObject {
    /// Bytes; the length is the size.
    pub data: Vec<u8>,
    /// Attributes.
    pub attrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Omap.
    pub omap: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Collections of objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    /// Collection → name → object.
    pub colls: BTreeMap<CollId, BTreeMap<Vec<u8>, ModelObject>>,
}

impl Model {
    /// The object, if it exists.
    pub fn object(&self, coll: CollId, name: &[u8]) -> Option<&ModelObject> {
        self.colls.get(&coll)?.get(name)
    }

    /// Applies a transaction whole, or not at all; returns whether it applied.
    pub fn apply(&mut self, txn: &Transaction) -> bool {
        let mut next = self.clone();
        for op in txn.ops() {
            if next.op(op).is_none() {
                return false;
            }
        }
        *self = next;
        true
    }

    fn obj_mut(&mut self, coll: CollId, name: &[u8], create: bool) -> Option<&mut ModelObject> {
        let c = self.colls.get_mut(&coll)?;
        if create && !c.contains_key(name) {
            c.insert(name.to_vec(), ModelObject::default());
        }
        c.get_mut(name)
    }

    fn op(&mut self, op: &TxnOp) -> Option<()> {
        match op {
            TxnOp::Acknowledge { coll, name, .. } => {
                self.colls.get(coll)?.get(name.as_slice())?;
            }
            TxnOp::MkColl { coll } => {
                if self.colls.contains_key(coll) {
                    return None;
                }
                self.colls.insert(*coll, BTreeMap::new());
            }
            TxnOp::RmColl { coll } => {
                if !self.colls.get(coll)?.is_empty() {
                    return None;
                }
                self.colls.remove(coll);
            }
            TxnOp::Touch { coll, name } => {
                self.obj_mut(*coll, name, true)?;
            }
            TxnOp::Write {
                coll,
                name,
                offset,
                data,
            } => {
                let o = self.obj_mut(*coll, name, true)?;
                put(&mut o.data, *offset as usize, data);
            }
            TxnOp::Zero {
                coll,
                name,
                offset,
                len,
            } => {
                let o = self.obj_mut(*coll, name, true)?;
                put(&mut o.data, *offset as usize, &vec![0; *len as usize]);
            }
            TxnOp::Truncate { coll, name, size } => {
                let o = self.obj_mut(*coll, name, false)?;
                o.data.resize(*size as usize, 0);
            }
            TxnOp::Remove { coll, name } => {
                self.colls.get_mut(coll)?.remove(name.as_slice())?;
            }
            TxnOp::SetAttr {
                coll,
                name,
                key,
                value,
            } => {
                self.obj_mut(*coll, name, false)?
                    .attrs
                    .insert(key.clone(), value.clone());
            }
            TxnOp::RmAttr { coll, name, key } => {
                self.obj_mut(*coll, name, false)?.attrs.remove(key)?;
            }
            TxnOp::OmapSet { coll, name, pairs } => {
                let o = self.obj_mut(*coll, name, false)?;
                for (k, v) in pairs {
                    o.omap.insert(k.clone(), v.clone());
                }
            }
            TxnOp::OmapRm { coll, name, keys } => {
                let o = self.obj_mut(*coll, name, false)?;
                for k in keys {
                    o.omap.remove(k);
                }
            }
            TxnOp::Clone { coll, src, dst } => {
                let s = self.object(*coll, src)?.clone();
                self.colls.get_mut(coll)?.insert(dst.clone(), s);
            }
            TxnOp::CloneRange {
                coll,
                src,
                dst,
                src_offset,
                len,
                dst_offset,
            } => {
                let s = &self.object(*coll, src)?.data;
                let mut bytes = vec![0u8; *len as usize];
                let from = (*src_offset as usize).min(s.len());
                let to = (*src_offset as usize + *len as usize).min(s.len());
                bytes[..to - from].copy_from_slice(&s[from..to]);
                let o = self.obj_mut(*coll, dst, true)?;
                put(&mut o.data, *dst_offset as usize, &bytes);
            }
        }
        Some(())
    }
}

/// Writes `bytes` at `at`, growing with zeroes; an empty write changes nothing.
fn put(data: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    if data.len() < at + bytes.len() {
        data.resize(at + bytes.len(), 0);
    }
    data[at..at + bytes.len()].copy_from_slice(bytes);
}
