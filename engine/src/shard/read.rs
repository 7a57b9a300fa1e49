//! Client reads: committed bytes of an object, from the device or, for acknowledged
//! full-journal pages still on their way home, from memory.

use keel_drivers::{Command, QueuePair};

use super::io::Owner;
use super::{ReadSlot, Shard, PG};
use crate::error::{Result, StoreError};
use crate::meta::{MetaTable, Object};
use crate::types::{CollId, ObjKey, PAGE};

impl<Q: QueuePair> Shard<Q> {
    // ---- reads --------------------------------------------------------------------------

    /// Committed metadata of an object.
    pub fn object(&self, coll: CollId, name: &[u8]) -> Result<&Object> {
        if !self.table.has_coll(coll) {
            return Err(StoreError::NoSuchCollection(coll));
        }
        self.table
            .object(coll, name)
            .ok_or_else(|| StoreError::NoSuchObject(ObjKey::new(coll, name.to_vec())))
    }

    /// The committed metadata table.
    pub fn table(&self) -> &MetaTable {
        &self.table
    }

    /// Reads committed bytes `[offset, offset + len)` of an object (clamped at its size),
    /// polling the shard until the data is in. Holes read as zeroes.
    pub fn read(&mut self, coll: CollId, name: &[u8], offset: u64, len: usize) -> Result<Vec<u8>> {
        let obj = self.object(coll, name)?;
        let size = obj.size;
        if offset > size {
            return Err(StoreError::ReadPastEnd {
                key: ObjKey::new(coll, name.to_vec()),
                offset,
                size,
            });
        }
        let end = offset.saturating_add(len as u64).min(size);
        // Runs of pages with consecutive device pages: (first lpage, first phys, pages).
        let per_buf = (self.cfg.io_buf_bytes / PG).max(1) as u64;
        let mut runs: Vec<(u64, u64, u64)> = Vec::new();
        if end > offset {
            for lpage in offset / PAGE..=(end - 1) / PAGE {
                let Some(phys) = obj
                    .extents
                    .range(..=lpage)
                    .next_back()
                    .filter(|(s, e)| lpage < **s + u64::from(e.pages))
                    .map(|(s, e)| e.phys + (lpage - s))
                else {
                    continue;
                };
                match runs.last_mut() {
                    Some((lp, p, n)) if *lp + *n == lpage && *p + *n == phys && *n < per_buf => {
                        *n += 1
                    }
                    _ => runs.push((lpage, phys, 1)),
                }
            }
        }
        let rslot = self.reads.insert(ReadSlot {
            out: vec![0u8; (end - offset) as usize],
            pending: 0,
            error: None,
        });
        for (lpage, phys, pages) in runs {
            // The part of the run inside [offset, end).
            let run_start = lpage * PAGE;
            let lo = offset.max(run_start);
            let hi = end.min(run_start + pages * PAGE);
            let skip = (lo - run_start) as usize;
            let out_at = (lo - offset) as usize;
            let n = (hi - lo) as usize;
            // Pages of a full-journal transaction on their way home are read from memory.
            if (0..pages).any(|i| self.overlay.contains_key(&(phys + i))) {
                for i in 0..pages {
                    let p_lo = (run_start + i * PAGE).max(lo);
                    let p_hi = (run_start + (i + 1) * PAGE).min(hi);
                    if p_lo >= p_hi {
                        continue;
                    }
                    let in_page = (p_lo - (run_start + i * PAGE)) as usize;
                    let dst = (p_lo - offset) as usize..(p_hi - offset) as usize;
                    let bytes = match self.overlay.get(&(phys + i)) {
                        Some(&(tslot, off)) => {
                            self.txns[tslot].data[off + in_page..off + in_page + dst.len()].to_vec()
                        }
                        None => self.read_now(phys + i, in_page, dst.len())?,
                    };
                    self.reads[rslot].out[dst].copy_from_slice(&bytes);
                }
                continue;
            }
            if let Err(e) = self.issue_read(rslot, phys, pages, Owner::Read(rslot, out_at, skip, n))
            {
                // Wait for the reads already issued (their buffers) before failing.
                let _ = self.drain_read(rslot);
                return Err(e);
            }
        }
        self.drain_read(rslot)
    }

    /// Reads `len` bytes at `skip` of one device page, synchronously.
    fn read_now(&mut self, phys: u64, skip: usize, len: usize) -> Result<Vec<u8>> {
        let rslot = self.reads.insert(ReadSlot {
            out: vec![0u8; len],
            pending: 0,
            error: None,
        });
        if let Err(e) = self.issue_read(rslot, phys, 1, Owner::Read(rslot, 0, skip, len)) {
            self.reads.remove(rslot);
            return Err(e);
        }
        self.drain_read(rslot)
    }

    /// Reads `pages` device pages from `phys` for read slot `rslot`, polling until a buffer
    /// and a queue slot are free.
    fn issue_read(&mut self, rslot: usize, phys: u64, pages: u64, owner: Owner) -> Result<()> {
        let mut buf = loop {
            if self.data_qp.in_flight() < self.data_qp.depth() {
                if let Some(b) = self.data_pool.alloc() {
                    break b;
                }
            }
            self.poll();
        };
        buf.set_len(pages as usize * PG);
        let cmd = Command::Read {
            lba: self.lba(phys),
            buf,
        };
        self.io
            .submit(&mut self.data_qp, owner, cmd)
            .map_err(|source| StoreError::Device {
                op: keel_drivers::Op::Read,
                source,
            })?;
        self.reads[rslot].pending += 1;
        Ok(())
    }

    fn drain_read(&mut self, rslot: usize) -> Result<Vec<u8>> {
        while self.reads[rslot].pending > 0 {
            if !self.poll() {
                std::hint::spin_loop();
            }
        }
        let r = self.reads.remove(rslot);
        match r.error {
            Some(e) => Err(e),
            None => Ok(r.out),
        }
    }
}
