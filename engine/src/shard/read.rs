//! Client reads: committed bytes of an object, from the device or, for acknowledged
//! full-journal pages still on their way home, from memory.

use keel_drivers::{Command, QueuePair};

use super::io::Owner;
use super::{ReadRun, ReadSlot, Shard, PG};
use crate::error::{Result, StoreError};
use crate::meta::{MetaTable, Object};
use crate::types::{CollId, ObjKey, PAGE};

impl<Q: QueuePair> Shard<Q> {
    // ---- reads --------------------------------------------------------------------------

    /// Committed metadata of an object. The shard must be settled (commit.rs): after
    /// [`poll`](Self::poll) it is.
    pub fn object(&self, coll: CollId, name: &[u8]) -> Result<&Object> {
        debug_assert!(
            self.is_settled(),
            "object(): acknowledged changes unapplied"
        );
        if !self.table.has_coll(coll) {
            return Err(StoreError::NoSuchCollection(coll));
        }
        self.table
            .object(coll, name)
            .ok_or_else(|| StoreError::NoSuchObject(ObjKey::new(coll, name.to_vec())))
    }

    /// The committed metadata table. The shard must be settled (commit.rs): after
    /// [`poll`](Self::poll) it is.
    pub fn table(&self) -> &MetaTable {
        debug_assert!(self.is_settled(), "table(): acknowledged changes unapplied");
        &self.table
    }

    /// Reads committed bytes `[offset, offset + len)` of an object (clamped at its size),
    /// polling the shard until the data is in. Holes read as zeroes. Every page read from the
    /// device is checked against its sum: a mismatch fails the read with
    /// [`StoreError::DataCorrupt`] or [`StoreError::TornOverwrite`] naming the range.
    pub fn read(&mut self, coll: CollId, name: &[u8], offset: u64, len: usize) -> Result<Vec<u8>> {
        self.settle();
        loop {
            match self.read_once(coll, name, offset, len)? {
                Some(out) => return Ok(out),
                // A read raced an in-place overwrite: wait for it, then read again.
                None => {
                    while !self.overwriting.is_empty() && self.failed.is_none() {
                        if !self.poll() {
                            std::hint::spin_loop();
                        }
                    }
                }
            }
        }
    }

    /// One attempt of [`read`](Self::read): `None` when it must be retried.
    fn read_once(
        &mut self,
        coll: CollId,
        name: &[u8],
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>> {
        let obj = self.object(coll, name)?;
        let size = obj.size;
        let key = ObjKey::new(coll, name.to_vec());
        if offset > size {
            return Err(StoreError::ReadPastEnd { key, offset, size });
        }
        let end = offset.saturating_add(len as u64).min(size);
        // Runs of pages with consecutive device pages: (first lpage, first phys, pages).
        let per_buf = (self.cfg.io_buf_bytes / PG).max(1) as u64;
        let mut runs: Vec<(u64, u64, u64)> = Vec::new();
        if end > offset {
            for s in obj.segments(offset / PAGE, (end - 1) / PAGE + 1 - offset / PAGE) {
                let Some(phys) = s.phys else { continue };
                for i in 0..s.pages {
                    match runs.last_mut() {
                        Some((lp, p, n))
                            if *lp + *n == s.lpage + i && *p + *n == phys + i && *n < per_buf =>
                        {
                            *n += 1
                        }
                        _ => runs.push((s.lpage + i, phys + i, 1)),
                    }
                }
            }
        }
        let rslot = self.reads.insert(ReadSlot {
            key,
            out: vec![0u8; (end - offset) as usize],
            runs: Vec::with_capacity(runs.len()),
            pending: 0,
            error: None,
            retry: false,
            verify: true,
        });
        for (lpage, phys, pages) in runs {
            // The part of the run inside [offset, end).
            let run_start = lpage * PAGE;
            let lo = offset.max(run_start);
            let hi = end.min(run_start + pages * PAGE);
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
                    match self.overlay.get(&(phys + i)) {
                        Some(&(tslot, off)) => {
                            let src =
                                &self.txns[tslot].data[off + in_page..off + in_page + dst.len()];
                            let src = src.to_vec();
                            self.reads[rslot].out[dst].copy_from_slice(&src);
                        }
                        None => self.add_read_run(
                            rslot,
                            ReadRun {
                                lpage: lpage + i,
                                phys: phys + i,
                                pages: 1,
                                at: dst.start,
                                skip: in_page,
                                len: dst.len(),
                            },
                        )?,
                    }
                }
                continue;
            }
            let run = ReadRun {
                lpage,
                phys,
                pages,
                at: (lo - offset) as usize,
                skip: (lo - run_start) as usize,
                len: (hi - lo) as usize,
            };
            self.add_read_run(rslot, run)?;
        }
        self.drain_read(rslot)
    }

    /// Issues one run of read slot `rslot`; on failure waits for the runs already issued
    /// (their buffers) and frees the slot.
    pub(super) fn add_read_run(&mut self, rslot: usize, run: ReadRun) -> Result<()> {
        let (phys, pages) = (run.phys, run.pages);
        let idx = self.reads[rslot].runs.len();
        self.reads[rslot].runs.push(run);
        if let Err(e) = self.issue_read(rslot, phys, pages, Owner::Read(rslot, idx)) {
            let _ = self.drain_read(rslot);
            return Err(e);
        }
        Ok(())
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

    pub(super) fn drain_read(&mut self, rslot: usize) -> Result<Option<Vec<u8>>> {
        while self.reads[rslot].pending > 0 {
            if !self.poll() {
                std::hint::spin_loop();
            }
        }
        let r = self.reads.remove(rslot);
        match (r.error, r.retry) {
            (Some(e), _) => Err(e),
            (None, true) => Ok(None),
            (None, false) => Ok(Some(r.out)),
        }
    }
}
