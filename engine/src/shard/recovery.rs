//! Opening a shard: newest valid checkpoint, then replay (docs/format.md §3, §5 rule 6).
//!
//! Replay applies each batch's deltas in order. Data pages journaled by full-journal
//! transactions are written home at the end, except pages some later entry took over (a
//! `Map` to that page, a metadata-only overwrite of it, or a later run): so an old journaled
//! page never lands on top of newer data. Replay writes nothing else before the closing
//! checkpoint, so a crash during replay leaves the same checkpoint and journal to start
//! from again.

use std::collections::{HashMap, VecDeque};

use keel_drivers::{Command, DmaPool, Geometry, PoolConfig, QueuePair};
use slab::Slab;

use super::checkpoint::CkptHeader;
use super::io::IoTable;
use super::locks::Locks;
use super::spares::Spares;
use super::{CkptState, JournalPos, Shard, ShardConfig, ShardStats};
use crate::alloc::Allocator;
use crate::codec::Reader;
use crate::error::{Result, StoreError};
use crate::journal::{BatchHeader, Entry, HEADER_BYTES};
use crate::meta::{decode_table, page_sum, Delta, MetaTable};
use crate::superblock::ShardLayout;
use crate::types::{JournalMode, PAGE};

/// What replay found, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Checkpoint generation started from.
    pub checkpoint_generation: u64,
    /// Batches replayed.
    pub batches: u64,
    /// Transaction entries replayed.
    pub entries: u64,
    /// Journaled data pages written home.
    pub pages_rewritten: u64,
    /// Entries written before or with their data (parallel commit, intent first) and not
    /// yet confirmed, whose data was checked.
    pub unconfirmed_checked: u64,
    /// Of those, entries dropped because their data was not all on the device (never
    /// acknowledged).
    pub unconfirmed_dropped: u64,
    /// Open intents whose pages were found matching their sums, and closed.
    pub intents_closed: u64,
    /// Pages left inside open intents that fail their sums: torn overwrites, reported by
    /// reads and scrub until acknowledged or rewritten.
    pub torn_pages: u64,
}

/// Synchronous block I/O on a queue pair, for open and mkfs only.
pub(crate) struct SyncIo<'a, Q: QueuePair> {
    pub(crate) qp: &'a mut Q,
    pub(crate) pool: &'a DmaPool,
    pub(crate) block: u32,
}

impl<Q: QueuePair> SyncIo<'_, Q> {
    fn wait(&mut self, cmd: Command) -> Result<Option<keel_drivers::DmaBuf>> {
        let op = cmd.op();
        self.qp.submit(0, cmd).map_err(|r| StoreError::Device {
            op,
            source: r.error,
        })?;
        let mut out = None;
        while out.is_none() {
            self.qp.poll(1, &mut |c| out = Some(c));
        }
        let c = out.expect("completion");
        c.result
            .map_err(|source| StoreError::Device { op, source })?;
        Ok(c.buf)
    }

    /// Reads `bytes` from device block `lba`.
    pub(crate) fn read(&mut self, lba: u64, bytes: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(bytes);
        while out.len() < bytes {
            let mut buf = self.pool.alloc().expect("sync I/O holds no buffer");
            let n = (bytes - out.len()).min(buf.capacity());
            buf.set_len(n);
            let at = lba + (out.len() / self.block as usize) as u64;
            let buf = self
                .wait(Command::Read { lba: at, buf })?
                .expect("read buffer");
            out.extend_from_slice(buf.as_slice());
        }
        Ok(out)
    }

    /// Writes `data` at device block `lba` (FUA if asked).
    pub(crate) fn write(&mut self, lba: u64, data: &[u8], fua: bool) -> Result<()> {
        let mut done = 0;
        while done < data.len() {
            let mut buf = self.pool.alloc().expect("sync I/O holds no buffer");
            let n = (data.len() - done).min(buf.capacity());
            buf.set_len(n);
            buf.as_mut_slice().copy_from_slice(&data[done..done + n]);
            let at = lba + (done / self.block as usize) as u64;
            self.wait(Command::Write { lba: at, buf, fua })?;
            done += n;
        }
        Ok(())
    }

    /// Flushes the volatile cache.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.wait(Command::Flush).map(|_| ())
    }
}

/// `cfg` with its DMA buffers no larger than one command may carry on `geo` (NVMe MDTS),
/// in whole pages: every chunk the shard issues is at most one buffer.
pub(crate) fn fit_to_device(mut cfg: ShardConfig, geo: &Geometry) -> ShardConfig {
    let max = (geo.max_transfer_bytes as usize / PAGE as usize * PAGE as usize).max(PAGE as usize);
    cfg.io_buf_bytes = cfg.io_buf_bytes.min(max);
    cfg.journal_buf_bytes = cfg.journal_buf_bytes.min(max);
    cfg
}

/// The shard's data and journal DMA pools. `cfg` must already fit the device
/// ([`fit_to_device`]).
pub(crate) fn pools(cfg: &ShardConfig) -> Result<(DmaPool, DmaPool)> {
    let dev = |e| StoreError::Config(format!("DMA memory: {e}"));
    let data = DmaPool::new(PoolConfig::new(cfg.io_buf_bytes, cfg.io_bufs)).map_err(dev)?;
    let journal =
        DmaPool::new(PoolConfig::new(cfg.journal_buf_bytes, cfg.journal_bufs)).map_err(dev)?;
    Ok((data, journal))
}

/// Writes an empty checkpoint (generation 1) to slot A and invalidates slot B: a new shard.
pub(crate) fn format_shard<Q: QueuePair>(
    sync: &mut SyncIo<'_, Q>,
    layout: &ShardLayout,
    uuid: &[u8; 16],
) -> Result<()> {
    let bpp = PAGE / u64::from(sync.block);
    let payload = crate::meta::encode_table(&MetaTable::default());
    let hdr = CkptHeader {
        generation: 1,
        uuid: *uuid,
        next_seq: 1,
        next_pos: 0,
        prev_crc: 0,
        payload_bytes: payload.len() as u64,
        payload_crc: crate::crc::crc32c(&payload),
    };
    sync.write(layout.ckpt_a_start * bpp, &hdr.image(&payload), true)?;
    sync.write(layout.ckpt_b_start * bpp, &[0u8; PAGE as usize], true)?;
    Ok(())
}

/// Whether the data of an unconfirmed `verify` entry (parallel commit or intent first) is
/// on the device: every page its `Csum` deltas name must hold the bytes they describe.
/// When one does not, the transaction was never acknowledged and the entry is dropped; each
/// page it rewrote in place is then settled alone (shard/path.rs): old bytes stay, new
/// bytes get their new sum, and bytes that are neither (a torn write) get an open intent,
/// so they are reported as a torn overwrite rather than as corruption. A page that an
/// earlier full-journal entry will write home at the end of replay is left to that write:
/// it puts the page back to the bytes its current sum describes.
fn verified_data_landed<Q: QueuePair>(
    sync: &mut SyncIo<'_, Q>,
    table: &mut MetaTable,
    home: &HashMap<u64, (u64, Vec<u8>)>,
    e: &Entry,
    bpp: u64,
) -> Result<bool> {
    let mut pages: Vec<(u64, u32, Vec<u8>)> = Vec::new();
    for d in &e.deltas {
        if let Delta::Csum { phys, sums } = d {
            let bytes = sync.read(phys * bpp, sums.len() * PAGE as usize)?;
            for (i, (&sum, page)) in sums.iter().zip(bytes.chunks(PAGE as usize)).enumerate() {
                pages.push((phys + i as u64, sum, page.to_vec()));
            }
        }
    }
    if pages.iter().all(|(_, sum, page)| page_sum(page) == *sum) {
        return Ok(true);
    }
    let rewritten = |p: u64| {
        e.overwrites
            .iter()
            .any(|&(s, n)| (s..s + u64::from(n)).contains(&p))
    };
    let mut freed = Vec::new();
    for (p, new, page) in &pages {
        if !rewritten(*p) || home.contains_key(p) {
            continue; // a fresh page is unmapped again with the entry
        }
        let now = page_sum(page);
        let settle = if now == table.sums().get(*p) {
            continue;
        } else if now == *new {
            Delta::Csum {
                phys: *p,
                sums: vec![*new],
            }
        } else {
            Delta::OpenIntent { phys: *p, pages: 1 }
        };
        table.apply(&settle, &mut freed)?;
    }
    Ok(false)
}

/// Checks every page inside an open intent: one that matches its sum is closed. Returns
/// (closed, still open).
fn settle_intents<Q: QueuePair>(
    sync: &mut SyncIo<'_, Q>,
    table: &mut MetaTable,
    bpp: u64,
) -> Result<(u64, u64)> {
    let open: Vec<u64> = table.sums().intents().collect();
    let mut closed = 0;
    let mut freed = Vec::new();
    for p in &open {
        let page = sync.read(p * bpp, PAGE as usize)?;
        if page_sum(&page) == table.sums().get(*p) {
            table.apply(&Delta::CloseIntent { phys: *p, pages: 1 }, &mut freed)?;
            closed += 1;
        }
    }
    Ok((closed, open.len() as u64 - closed))
}

impl<Q: QueuePair> Shard<Q> {
    /// Opens shard `id`: loads the newest valid checkpoint and replays the journal after it.
    /// The shard then writes a checkpoint of the replayed state before taking transactions.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        id: u32,
        layout: ShardLayout,
        uuid: [u8; 16],
        mode: JournalMode,
        geo: Geometry,
        cfg: ShardConfig,
        mut data_qp: Q,
        journal_qp: Q,
    ) -> Result<(Self, ReplayReport)> {
        let cfg = fit_to_device(cfg, &geo);
        let (data_pool, journal_pool) = pools(&cfg)?;
        let block = geo.block_size;
        let bpp = PAGE / u64::from(block);
        let mut sync = SyncIo {
            qp: &mut data_qp,
            pool: &data_pool,
            block,
        };
        // Newest valid checkpoint.
        let mut best: Option<(CkptHeader, Vec<u8>, u8)> = None;
        for (slot, start) in [(0u8, layout.ckpt_a_start), (1, layout.ckpt_b_start)] {
            let head = sync.read(start * bpp, PAGE as usize)?;
            let Some(h) = CkptHeader::decode(&head, &uuid) else {
                continue;
            };
            if h.payload_bytes > (layout.ckpt_pages - 1) * PAGE {
                continue;
            }
            let payload_blocks = h.payload_bytes.div_ceil(u64::from(block));
            let payload = sync.read(
                (start + 1) * bpp,
                (payload_blocks * u64::from(block)) as usize,
            )?;
            let payload = &payload[..h.payload_bytes as usize];
            if crate::crc::crc32c(payload) != h.payload_crc {
                log::warn!("shard {id}: checkpoint slot {slot} torn (payload checksum)");
                continue;
            }
            if best
                .as_ref()
                .is_none_or(|(b, _, _)| h.generation > b.generation)
            {
                best = Some((h, payload.to_vec(), slot));
            }
        }
        let Some((ckpt, payload, slot)) = best else {
            return Err(StoreError::Corrupt(format!(
                "shard {id}: neither checkpoint slot holds a valid checkpoint"
            )));
        };
        let mut table = decode_table(&payload)?;
        let mut report = ReplayReport {
            checkpoint_generation: ckpt.generation,
            ..Default::default()
        };

        // Replay.
        let ring = layout.journal_pages * bpp;
        let ring_start = layout.journal_start * bpp;
        let (mut seq, mut pos, mut prev) = (ckpt.next_seq, ckpt.next_pos, ckpt.prev_crc);
        // Every valid batch first: the last one says which are confirmed.
        let mut batches: Vec<(u64, Vec<Entry>)> = Vec::new();
        let mut confirmed = 0u64;
        loop {
            let first = sync.read(ring_start + pos % ring, block as usize)?;
            let (h, crc) =
                match BatchHeader::decode_expected(&first, &uuid, seq, pos, prev, block, ring) {
                    Ok(x) => x,
                    Err(why) => {
                        log::info!("shard {id}: journal ends at seq {seq} ({why:?})");
                        break;
                    }
                };
            let mut bytes = Vec::with_capacity(h.blocks as usize * block as usize);
            let mut at = pos;
            while at < pos + u64::from(h.blocks) {
                let phys = at % ring;
                let n = (pos + u64::from(h.blocks) - at).min(ring - phys);
                bytes.extend_from_slice(
                    &sync.read(ring_start + phys, (n * u64::from(block)) as usize)?,
                );
                at += n;
            }
            let payload = &bytes[HEADER_BYTES..HEADER_BYTES + h.payload_bytes as usize];
            if crate::crc::crc32c(payload) != h.payload_crc {
                log::info!("shard {id}: journal ends at seq {seq} (torn batch)");
                break;
            }
            let mut r = Reader::new(payload);
            let mut entries = Vec::with_capacity(h.entries as usize);
            for _ in 0..h.entries {
                entries.push(Entry::decode(&mut r).map_err(|e| {
                    StoreError::Corrupt(format!("batch {seq}: entry does not decode: {e}"))
                })?);
            }
            confirmed = confirmed.max(h.confirmed);
            batches.push((seq, entries));
            report.batches += 1;
            seq += 1;
            pos += u64::from(h.blocks);
            prev = crc;
        }
        // Device page → (entry number, data) of journaled pages not yet superseded.
        let mut home: HashMap<u64, (u64, Vec<u8>)> = HashMap::new();
        let mut freed = Vec::new();
        for (bseq, entries) in batches {
            for e in entries {
                report.entries += 1;
                if e.verify && bseq > confirmed {
                    report.unconfirmed_checked += 1;
                    if !verified_data_landed(&mut sync, &mut table, &home, &e, bpp)? {
                        report.unconfirmed_dropped += 1;
                        log::info!(
                            "shard {id}: batch {bseq}, txn {}: data never landed; dropped",
                            e.txn_seq
                        );
                        continue;
                    }
                }
                let seq = bseq;
                for d in &e.deltas {
                    table.apply(d, &mut freed).map_err(|err| {
                        StoreError::Corrupt(format!("batch {seq}, txn {}: {err}", e.txn_seq))
                    })?;
                    if let Delta::Map { phys, pages, .. } = d {
                        for p in *phys..*phys + u64::from(*pages) {
                            home.remove(&p);
                        }
                    }
                }
                for (phys, pages) in &e.overwrites {
                    for p in *phys..*phys + u64::from(*pages) {
                        home.remove(&p);
                    }
                }
                for run in &e.runs {
                    for (i, page) in run.bytes.chunks(PAGE as usize).enumerate() {
                        home.insert(run.phys + i as u64, (report.entries, page.to_vec()));
                    }
                }
                freed.clear();
            }
        }
        // Journaled data home, then durable.
        let mut pages: Vec<_> = home.into_iter().collect();
        pages.sort_unstable_by_key(|(p, _)| *p);
        for (phys, (_, data)) in &pages {
            sync.write(phys * bpp, data, false)?;
        }
        report.pages_rewritten = pages.len() as u64;
        if !pages.is_empty() && geo.volatile_write_cache {
            sync.flush()?;
        }
        // Intents left open by the cut: pages that still match their sums are clean.
        let (closed, torn) = settle_intents(&mut sync, &mut table, bpp)?;
        report.intents_closed = closed;
        report.torn_pages = torn;
        let used = table.all_extents().map(|(_, _, _, e)| e);
        let alloc = Allocator::rebuild(layout.data_start, layout.data_pages, used)
            .map_err(|e| StoreError::Corrupt(format!("shard {id}: allocator: {e}")))?;

        let mut shard = Shard {
            id,
            layout,
            uuid,
            mode,
            geo,
            cfg,
            data_qp,
            journal_qp,
            data_pool,
            journal_pool,
            table,
            alloc,
            io: IoTable::default(),
            locks: Locks::default(),
            txns: Slab::new(),
            queued: VecDeque::new(),
            writers: VecDeque::new(),
            ready: VecDeque::new(),
            ready_since: None,
            batches: VecDeque::new(),
            journal: JournalPos {
                next_seq: seq,
                next_pos: pos,
                prev_crc: prev,
                head_pos: ckpt.next_pos,
                durable_seq: seq - 1,
            },
            ckpt: CkptState::Idle,
            ckpt_gen: ckpt.generation,
            ckpt_slot: 1 - slot,
            ckpt_wanted: false,
            ckpt_forced: false,
            data_since_flush: false,
            overlay: HashMap::new(),
            overwriting: HashMap::new(),
            reads: Slab::new(),
            completions: VecDeque::new(),
            applying: VecDeque::new(),
            acked_earlier: 0,
            meta_reserved: 0,
            frees_upto_seq: seq - 1,
            next_txn: 1,
            stats: ShardStats::default(),
            failed: None,
            scratch: Vec::new(),
            spares: Spares::default(),
        };
        if report.batches > 0 || closed > 0 {
            shard.request_checkpoint();
            shard.drain()?;
        }
        Ok((shard, report))
    }

    /// Polls until every transaction, write and checkpoint in flight has finished.
    pub fn drain(&mut self) -> Result<()> {
        while !self.is_idle() || self.ckpt_wanted {
            if let Some(why) = &self.failed {
                return Err(StoreError::Failed(why.clone()));
            }
            if !self.poll() {
                std::hint::spin_loop();
            }
        }
        match &self.failed {
            Some(why) => Err(StoreError::Failed(why.clone())),
            None => Ok(()),
        }
    }
}
