//! Checkpoints: the shard's whole metadata, written to the older of two slots, after which
//! the journal before it is no longer needed (docs/format.md §4, §5 rule 5).
//!
//! ```text
//!  Idle ──(asked, or journal past checkpoint_fill, and no batch in flight)──► snapshot
//!    ──► Waiting (every I/O issued before the snapshot completes, and every home write of
//!        a transaction in the snapshot: some may not be issued yet, for want of buffers)
//!    ──► [Flushing] (volatile cache) ──► Writing (FUA) ──► journal head moves; Idle
//! ```
//!
//! Batches go on being written while a checkpoint is in flight; they land after the
//! snapshot's journal position and are replayed on top of it.

use keel_drivers::{Command, QueuePair};

use super::io::{ChunkedWrite, JobKind, Owner};
use super::Shard;
use crate::error::{Result, StoreError};
use crate::meta::encode_table;
use crate::types::PAGE;

/// `"KEELCK\0\x01"`.
pub const CKPT_MAGIC: [u8; 8] = *b"KEELCK\x00\x01";
const HDR_CRC_OFF: usize = 68;

/// A checkpoint slot's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CkptHeader {
    /// +1 per checkpoint.
    pub generation: u64,
    /// Store identity.
    pub uuid: [u8; 16],
    /// First journal batch not covered.
    pub next_seq: u64,
    /// Its position.
    pub next_pos: u64,
    /// Header crc of the last covered batch.
    pub prev_crc: u32,
    /// Payload bytes (from the second page on).
    pub payload_bytes: u64,
    /// crc32c of the payload.
    pub payload_crc: u32,
}

impl CkptHeader {
    /// Encodes into the first page of `out`.
    pub fn encode(&self, out: &mut [u8]) {
        let h = &mut out[..PAGE as usize];
        h.fill(0);
        h[0..8].copy_from_slice(&CKPT_MAGIC);
        h[8..16].copy_from_slice(&self.generation.to_le_bytes());
        h[16..32].copy_from_slice(&self.uuid);
        h[32..40].copy_from_slice(&self.next_seq.to_le_bytes());
        h[40..48].copy_from_slice(&self.next_pos.to_le_bytes());
        h[48..52].copy_from_slice(&self.prev_crc.to_le_bytes());
        h[56..64].copy_from_slice(&self.payload_bytes.to_le_bytes());
        h[64..68].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crate::crc::crc32c(&h[..HDR_CRC_OFF]);
        h[HDR_CRC_OFF..HDR_CRC_OFF + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes a header page; `None` if it is not a valid header of this store.
    pub fn decode(p: &[u8], uuid: &[u8; 16]) -> Option<CkptHeader> {
        if p.len() < PAGE as usize || p[0..8] != CKPT_MAGIC {
            return None;
        }
        let le32 = |o: usize| u32::from_le_bytes(p[o..o + 4].try_into().expect("4"));
        let le64 = |o: usize| u64::from_le_bytes(p[o..o + 8].try_into().expect("8"));
        if le32(HDR_CRC_OFF) != crate::crc::crc32c(&p[..HDR_CRC_OFF]) || &p[16..32] != uuid {
            return None;
        }
        Some(CkptHeader {
            generation: le64(8),
            uuid: *uuid,
            next_seq: le64(32),
            next_pos: le64(40),
            prev_crc: le32(48),
            payload_bytes: le64(56),
            payload_crc: le32(64),
        })
    }

    /// Header page + payload, padded to whole pages.
    pub fn image(&self, payload: &[u8]) -> Vec<u8> {
        let pages = 1 + (payload.len() as u64).div_ceil(PAGE);
        let mut data = vec![0u8; (pages * PAGE) as usize];
        self.encode(&mut data);
        data[PAGE as usize..PAGE as usize + payload.len()].copy_from_slice(payload);
        data
    }
}

/// The checkpoint in flight, if any.
pub(crate) enum CkptState {
    Idle,
    Waiting(Pending),
    Flushing(Pending),
    Writing(Pending, ChunkedWrite),
}

pub(crate) struct Pending {
    data: Vec<u8>,
    io_mark: u64,
    /// Full-journal transactions up to this id still writing home at the snapshot: the
    /// checkpoint waits until they are home (their records are about to be dropped).
    home_upto: Option<crate::TxnId>,
    next_pos: u64,
    generation: u64,
    slot: u8,
}

impl<Q: QueuePair> Shard<Q> {
    fn slot_start(&self, slot: u8) -> u64 {
        if slot == 0 {
            self.layout.ckpt_a_start
        } else {
            self.layout.ckpt_b_start
        }
    }

    /// Takes the snapshot now (the caller checked no batch is in flight).
    fn snapshot(&mut self) -> Result<Pending> {
        // The checkpoint lets the journal drop the records it covers: it must hold every
        // acknowledged change.
        self.settle();
        let payload = encode_table(&self.table);
        let generation = self.ckpt_gen + 1;
        let hdr = CkptHeader {
            generation,
            uuid: self.uuid,
            next_seq: self.journal.next_seq,
            next_pos: self.journal.next_pos,
            prev_crc: self.journal.prev_crc,
            payload_bytes: payload.len() as u64,
            payload_crc: crate::crc::crc32c(&payload),
        };
        let data = hdr.image(&payload);
        if data.len() as u64 > self.layout.ckpt_pages * PAGE {
            return Err(StoreError::NoSpace(format!(
                "metadata of {} bytes exceeds the {}-byte checkpoint slot",
                payload.len(),
                (self.layout.ckpt_pages - 1) * PAGE
            )));
        }
        Ok(Pending {
            data,
            io_mark: self.io.mark(),
            home_upto: self.newest_home_writer(),
            next_pos: self.journal.next_pos,
            generation,
            slot: self.ckpt_slot,
        })
    }

    /// Whether a checkpoint is wanted: asked for, or the journal past `checkpoint_fill`
    /// (compared without a division: this runs every turn).
    pub(crate) fn ckpt_due(&self) -> bool {
        let used = (self.journal.next_pos - self.journal.head_pos) as f64;
        self.ckpt_wanted || used > self.cfg.checkpoint_fill * self.ring_blocks() as f64
    }

    pub(crate) fn ckpt_step(&mut self) -> bool {
        if self.failed.is_some() {
            return false;
        }
        // The common case, every turn: idle and nothing due (without moving the state).
        let idle = matches!(self.ckpt, CkptState::Idle);
        if idle && (!self.batches.is_empty() || !self.ckpt_due()) {
            return false;
        }
        match std::mem::replace(&mut self.ckpt, CkptState::Idle) {
            CkptState::Idle => {
                if self.journal.next_pos == self.journal.head_pos && !self.ckpt_forced {
                    self.ckpt_wanted = false;
                    return false;
                }
                match self.snapshot() {
                    Ok(p) => self.ckpt = CkptState::Waiting(p),
                    Err(e) => self.fail(format!("checkpoint: {e}")),
                }
                true
            }
            CkptState::Waiting(p) => {
                let home_pending = p.home_upto.is_some_and(|u| self.home_writing_upto(u));
                if self.io.oldest_inflight() < p.io_mark || home_pending {
                    self.ckpt = CkptState::Waiting(p);
                    return false;
                }
                if self.geo.volatile_write_cache {
                    self.stats.flushes += 1;
                    let r = self.io.submit(
                        &mut self.journal_qp,
                        Owner::Job(JobKind::CkptFlush),
                        Command::Flush,
                    );
                    self.ckpt = CkptState::Flushing(p);
                    if let Err(e) = r {
                        self.fail(format!("flush before checkpoint: {e}"));
                    }
                } else {
                    self.start_ckpt_write(p);
                }
                true
            }
            CkptState::Writing(p, mut w) => {
                let before = w.pending;
                let r = w.issue(
                    &p.data,
                    self.geo.block_size,
                    &mut self.journal_qp,
                    &self.journal_pool,
                    &mut self.io,
                    Owner::Job(JobKind::Ckpt),
                );
                let progressed = w.pending != before;
                self.ckpt = CkptState::Writing(p, w);
                if let Err(e) = r {
                    self.fail(format!("checkpoint write: {e}"));
                }
                progressed
            }
            other @ CkptState::Flushing(_) => {
                self.ckpt = other;
                false
            }
        }
    }

    fn start_ckpt_write(&mut self, p: Pending) {
        let lba = self.lba(self.slot_start(p.slot));
        let w = ChunkedWrite::new(
            smallvec::smallvec![(lba, 0..p.data.len())],
            self.geo.volatile_write_cache,
        );
        self.ckpt = CkptState::Writing(p, w);
        self.ckpt_step();
    }

    pub(crate) fn on_ckpt_job_done(&mut self, kind: JobKind) {
        match (kind, std::mem::replace(&mut self.ckpt, CkptState::Idle)) {
            (JobKind::CkptFlush, CkptState::Flushing(p)) => self.start_ckpt_write(p),
            (JobKind::Ckpt, CkptState::Writing(p, mut w)) => {
                w.pending -= 1;
                if !w.done() {
                    self.ckpt = CkptState::Writing(p, w);
                    return;
                }
                self.journal.head_pos = p.next_pos;
                self.ckpt_gen = p.generation;
                self.ckpt_slot = 1 - p.slot;
                self.ckpt_wanted = false;
                self.ckpt_forced = false;
                self.stats.checkpoints += 1;
            }
            (k, _) => unreachable!("checkpoint job {k:?} completed in the wrong state"),
        }
    }

    /// Asks for a checkpoint even if the journal is empty (close, after recovery).
    pub(crate) fn request_checkpoint(&mut self) {
        self.ckpt_wanted = true;
        self.ckpt_forced = true;
    }
}
