//! A shard: one reactor's share of the store, run to completion by polling.
//!
//! It owns a data queue pair and a journal queue pair, a journal ring, two checkpoint slots,
//! an allocator region and an object table. A transaction moves through:
//!
//! ```text
//!  queued ──locks──► planning ──(needs old pages)──► prefetch reads ──► planning
//!                       │
//!        metadata-only  ├──► data writes (data queue pair) ──► ready
//!        full journal   └──────────────────────────────────────► ready
//!  ready ──group commit──► [Flush if cache and new data] ──► batch write (FUA) ──► durable
//!  durable ──► ack ──► (next turn) apply deltas to the table ──► (full journal: home
//!              writes) ──► unlock                                       (commit.rs)
//! ```
//!
//! Every step is driven by [`Shard::poll`], which never blocks. A device error stops the
//! shard: in-flight transactions fail, and every later write is refused with the reason.

mod batch;
mod checkpoint;
mod commit;
mod io;
mod locks;
mod path;
pub(crate) mod plan;
mod read;
pub(crate) mod recovery;
mod scrub;
mod spares;
mod start;
mod verify;

use std::collections::{HashMap, VecDeque};

use keel_drivers::{Completion, DmaPool, DriverError, Geometry, QueuePair};
use slab::Slab;

use crate::alloc::Allocator;
use crate::error::{Result, StoreError};
use crate::meta::MetaTable;
use crate::superblock::ShardLayout;
use crate::txn::Transaction;
use crate::types::{JournalMode, PAGE};

pub(crate) use batch::SealedBatch;
pub(crate) use checkpoint::CkptState;
use io::{ChunkedWrite, IoTable, Owner};
use locks::{LockSet, Locks};
use path::CommitPath;
use plan::Planned;
pub use scrub::{BadRange, ScrubCursor, ScrubReport};
use spares::Spares;
pub use verify::PageCheck;

const PG: usize = PAGE as usize;

/// Freed extents a turn makes allocatable at most (a few µs of free-map work): a remove
/// of an object of many scattered extents is spread over turns instead of stalling one.
/// Planning that runs out of space releases every passed free at once.
const FREES_PER_TURN: usize = 16;
/// Gated frees past which a turn frees even when it acknowledges transactions.
const FREES_BACKLOG: usize = 4 * FREES_PER_TURN;

/// Tuning of one shard, fixed at open.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    /// Depth of the data queue pair.
    pub data_depth: u32,
    /// Depth of the journal queue pair.
    pub journal_depth: u32,
    /// Size of each data DMA buffer (a data command moves at most this).
    pub io_buf_bytes: usize,
    /// Number of data DMA buffers.
    pub io_bufs: u32,
    /// Size of each journal DMA buffer.
    pub journal_buf_bytes: usize,
    /// Number of journal DMA buffers.
    pub journal_bufs: u32,
    /// A batch closes when its entries reach this many bytes.
    pub max_batch_bytes: u32,
    /// Journal batches sealed and not yet committed, at most. A later batch is sealed
    /// while earlier ones are in flight only once its entries have waited
    /// `max_batch_wait_us` (a slow device); commits stay in sequence order.
    pub max_batches_in_flight: u32,
    /// How long ready journal entries may wait for a batch. With no batch in flight they
    /// wait only while other transactions' data writes are in flight (a lone transaction
    /// never waits, so QD1 latency is unchanged); with batches in flight they wait for
    /// those to commit, and past this long a further batch is sealed (up to
    /// `max_batches_in_flight`). Default 50 µs: at QD32 on a 10 µs device it doubles the
    /// entries per batch (15 to 31) and halves journal writes and flushes per transaction
    /// at no cost in IOPS; on a device with millisecond flushes batches overlap. Measured
    /// on the wall clock, so runs that must replay exactly (the crash explorer) set 0,
    /// which seals at once and keeps batches overlapping.
    pub max_batch_wait_us: u32,
    /// Transactions queued or in flight at most; past it `queue` answers Busy.
    pub max_txns: u32,
    /// Checkpoint when the journal is this full (fraction of the ring).
    pub checkpoint_fill: f64,
    /// Write data with FUA instead of flushing before each batch that depends on data.
    pub data_fua: bool,
    /// Record an overwrite intent before a metadata-only transaction rewrites mapped pages in
    /// place (one more ordered journal write for such a transaction), so that after a power
    /// cut a torn overwrite is told from corruption (docs/integrity.md). Default on. Off,
    /// every metadata-only transaction is serial: parallel commit needs intents.
    pub overwrite_intents: bool,
    /// Write the record of a metadata-only transaction that writes only fresh pages at the
    /// same time as its data, with the data's sums: one device round trip instead of two.
    /// Overwrites never commit this way, not even within the device's atomic write unit (a
    /// lost record with landed data would leave new bytes under old sums). Needs
    /// `overwrite_intents` (docs/integrity.md §2). Default on.
    pub parallel_commit: bool,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            data_depth: 256,
            journal_depth: 64,
            io_buf_bytes: 128 << 10,
            io_bufs: 512,
            journal_buf_bytes: 256 << 10,
            journal_bufs: 64,
            max_batch_bytes: 1 << 20,
            max_batches_in_flight: 4,
            max_batch_wait_us: 50,
            max_txns: 4096,
            checkpoint_fill: 0.5,
            data_fua: false,
            overwrite_intents: true,
            parallel_commit: true,
        }
    }
}

/// Counters of one shard.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ShardStats {
    /// Transactions acknowledged.
    pub txns_committed: u64,
    /// Transactions that failed.
    pub txns_failed: u64,
    /// Bytes of client data in committed write / clone_range operations.
    pub client_bytes: u64,
    /// Committed transactions that went through the full journal.
    pub full_journal_txns: u64,
    /// Journal batches written.
    pub batches: u64,
    /// Entries in those batches.
    pub batch_entries: u64,
    /// Batches sealed while an earlier batch was still in flight.
    pub overlapped_batches: u64,
    /// Bytes of those batches (header and padding included).
    pub batch_bytes: u64,
    /// Flushes the shard issued.
    pub flushes: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Pages written into fresh extents.
    pub fresh_pages: u64,
    /// Pages rewritten in place.
    pub overwrite_pages: u64,
    /// Transactions committed by parallel commit (record and data at once).
    pub parallel_txns: u64,
    /// Transactions that rewrote pages in place with their record written first, as the
    /// overwrite's intent (IntentFirst).
    pub intents: u64,
}

impl ShardStats {
    /// Applies `f` to every counter of `self` with the same counter of `x`.
    fn zip(&mut self, x: &ShardStats, f: impl Fn(&mut u64, u64)) {
        let ShardStats {
            txns_committed,
            txns_failed,
            client_bytes,
            full_journal_txns,
            batches,
            batch_entries,
            overlapped_batches,
            batch_bytes,
            flushes,
            checkpoints,
            fresh_pages,
            overwrite_pages,
            parallel_txns,
            intents,
        } = self;
        f(txns_committed, x.txns_committed);
        f(txns_failed, x.txns_failed);
        f(client_bytes, x.client_bytes);
        f(full_journal_txns, x.full_journal_txns);
        f(batches, x.batches);
        f(batch_entries, x.batch_entries);
        f(overlapped_batches, x.overlapped_batches);
        f(batch_bytes, x.batch_bytes);
        f(flushes, x.flushes);
        f(checkpoints, x.checkpoints);
        f(fresh_pages, x.fresh_pages);
        f(overwrite_pages, x.overwrite_pages);
        f(parallel_txns, x.parallel_txns);
        f(intents, x.intents);
    }

    /// Adds `x`'s counters to these (stats of several shards).
    pub fn add(&mut self, x: &ShardStats) {
        self.zip(x, |a, b| *a += b);
    }

    /// These counters less `before`'s (what happened between two snapshots).
    pub fn since(&self, before: &ShardStats) -> ShardStats {
        let mut d = *self;
        d.zip(before, |a, b| *a -= b);
        d
    }
}

/// What a shard has in flight (crash tests use it to choose where to cut the power).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Phase {
    /// Data writes of some transaction are in flight, before its entry.
    pub data_writes: bool,
    /// A journal batch (or the flush before it) is in flight.
    pub batch: bool,
    /// A checkpoint is in flight.
    pub checkpoint: bool,
    /// Home writes of full-journal transactions are in flight.
    pub home_writes: bool,
}

/// A transaction's handle, unique in a store's life.
pub type TxnId = u64;

#[derive(Debug, PartialEq, Eq)]
enum TxnState {
    Queued,
    Prefetching,
    Writing,
    Ready,
    InBatch,
    /// Acknowledged (its record and data are durable), its changes not yet applied to
    /// the table (commit.rs).
    Committed,
    HomeWriting,
}

struct TxnSlot {
    id: TxnId,
    txn: Transaction,
    locks: LockSet,
    full: bool,
    state: TxnState,
    /// Committed page contents read for planning, by device page.
    pages: HashMap<u64, Box<[u8]>>,
    /// A prefetched page failed its checksum.
    prefetch_error: Option<StoreError>,
    pending: u32,
    planned: Option<Planned>,
    /// Concatenated run data and where each run goes (for chunked writes).
    data: Vec<u8>,
    write: Option<ChunkedWrite>,
    entry: Vec<u8>,
    data_bytes: u64,
    /// How its record reaches the journal (metadata-only transactions with data).
    path: CommitPath,
    /// Parallel and IntentFirst paths: every data write has completed (durably).
    data_done: bool,
    /// Metadata bytes it will add to the table, counted in `Shard::meta_reserved` from
    /// planning until it is applied.
    meta_reserved: u64,
}

/// One device read of a client read: pages `[phys, phys + pages)` holding logical pages
/// from `lpage`, of which bytes `[skip, skip + len)` go to the output at `at`.
struct ReadRun {
    lpage: u64,
    phys: u64,
    pages: u64,
    at: usize,
    skip: usize,
    len: usize,
}

struct ReadSlot {
    key: crate::types::ObjKey,
    out: Vec<u8>,
    runs: Vec<ReadRun>,
    pending: u32,
    error: Option<StoreError>,
    /// A page being overwritten in place read as neither its old nor its new bytes: read
    /// again once the overwrite is done.
    retry: bool,
    /// Check pages against their sums (client reads); scrub reads raw pages.
    verify: bool,
}

/// One shard.
pub struct Shard<Q: QueuePair> {
    pub(crate) id: u32,
    pub(crate) layout: ShardLayout,
    pub(crate) uuid: [u8; 16],
    pub(crate) mode: JournalMode,
    pub(crate) geo: Geometry,
    pub(crate) cfg: ShardConfig,
    pub(crate) data_qp: Q,
    pub(crate) journal_qp: Q,
    pub(crate) data_pool: DmaPool,
    pub(crate) journal_pool: DmaPool,
    pub(crate) table: MetaTable,
    pub(crate) alloc: Allocator,
    pub(crate) io: IoTable,
    locks: Locks,
    txns: Slab<TxnSlot>,
    queued: VecDeque<usize>,
    /// Transactions with writes left to issue.
    writers: VecDeque<usize>,
    /// Transactions ready for the journal, in the order they became ready.
    pub(crate) ready: VecDeque<usize>,
    /// When the oldest entry in `ready` became ready (for max_batch_wait_us).
    pub(crate) ready_since: Option<std::time::Instant>,
    /// Sealed batches not yet committed, oldest first (consecutive sequence numbers).
    pub(crate) batches: VecDeque<SealedBatch>,
    pub(crate) journal: JournalPos,
    pub(crate) ckpt: CkptState,
    /// Generation of the newest durable checkpoint.
    pub(crate) ckpt_gen: u64,
    /// The slot the next checkpoint goes to (0 = A, 1 = B).
    pub(crate) ckpt_slot: u8,
    /// A checkpoint is wanted (journal full, or asked for).
    pub(crate) ckpt_wanted: bool,
    /// Checkpoint even if the journal is empty.
    pub(crate) ckpt_forced: bool,
    /// A data write completed since the last flush was submitted.
    pub(crate) data_since_flush: bool,
    /// Home pages of full-journal transactions whose home writes are in flight:
    /// device page → (txn slot, byte offset in its data).
    overlay: HashMap<u64, (usize, usize)>,
    /// Committed pages a metadata-only transaction is rewriting in place right now, with
    /// the sum of their new bytes (reads accept either).
    pub(crate) overwriting: HashMap<u64, u32>,
    reads: Slab<ReadSlot>,
    completions: VecDeque<(TxnId, Result<()>)>,
    /// Acknowledged transactions whose changes are not yet applied, oldest first, with
    /// their batch's sequence number (commit.rs).
    applying: VecDeque<(usize, u64)>,
    /// How many of `applying` were acknowledged before this turn began.
    acked_earlier: usize,
    /// Metadata bytes that planned transactions not yet applied will add to the table
    /// (each transaction's `meta_reserved`): the checkpoint-slot bound counts them.
    meta_reserved: u64,
    /// `journal.durable_seq` when this turn began. A turn's end makes reusable only the
    /// pages freed by batches durable before it: the pages freed by the commits of this
    /// turn wait for the next turn's end, so a turn that acknowledges transactions does not
    /// also spend on the free map before the client sees them (at queue depth 1 the next
    /// turn's end comes while its writes are in flight). Planning that runs out of space
    /// releases them at once.
    frees_upto_seq: u64,
    next_txn: TxnId,
    pub(crate) stats: ShardStats,
    pub(crate) failed: Option<String>,
    scratch: Vec<Completion>,
    /// Entry, data and batch buffers of finished transactions, for the next ones.
    spares: Spares,
}

/// The journal's ring positions, in device blocks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JournalPos {
    /// Next batch's sequence number.
    pub(crate) next_seq: u64,
    /// Next batch's logical position.
    pub(crate) next_pos: u64,
    /// Header crc of the last durable batch.
    pub(crate) prev_crc: u32,
    /// Oldest position still needed (the last checkpoint's start).
    pub(crate) head_pos: u64,
    /// Sequence number of the last durable batch.
    pub(crate) durable_seq: u64,
}

impl<Q: QueuePair> Shard<Q> {
    pub(crate) fn block_size(&self) -> u32 {
        self.geo.block_size
    }

    pub(crate) fn blocks_per_page(&self) -> u64 {
        PAGE / u64::from(self.geo.block_size)
    }

    /// Device block of device page `page`.
    pub(crate) fn lba(&self, page: u64) -> u64 {
        page * self.blocks_per_page()
    }

    pub(crate) fn ring_blocks(&self) -> u64 {
        self.layout.journal_pages * self.blocks_per_page()
    }

    fn max_extent_pages(&self) -> u32 {
        (self.cfg.io_buf_bytes / PG).max(1) as u32
    }

    // ---- intake -------------------------------------------------------------------------

    /// Queues a transaction. Static errors (limits, malformed) come back at once and change
    /// nothing; errors that depend on the store's state come back in its completion.
    pub fn queue(&mut self, txn: Transaction) -> Result<TxnId> {
        if let Some(why) = &self.failed {
            return Err(StoreError::Failed(why.clone()));
        }
        txn.validate()?;
        if self.txns.len() >= self.cfg.max_txns as usize {
            return Err(StoreError::Busy(self.txns.len()));
        }
        let full = self.mode == JournalMode::Full || txn.needs_full_journal();
        let id = self.next_txn;
        self.next_txn += 1;
        let slot = self.txns.insert(TxnSlot {
            id,
            locks: LockSet::of(&txn),
            data_bytes: txn.data_bytes(),
            txn,
            full,
            state: TxnState::Queued,
            pages: HashMap::new(),
            prefetch_error: None,
            pending: 0,
            planned: None,
            data: Vec::new(),
            write: None,
            entry: self.spares.take(),
            path: CommitPath::Serial,
            data_done: false,
            meta_reserved: 0,
        });
        self.queued.push_back(slot);
        Ok(id)
    }

    /// Hands finished transactions to `f`, in completion order.
    pub fn take_completions(&mut self, mut f: impl FnMut(TxnId, Result<()>)) -> usize {
        let n = self.completions.len();
        if n == 0 {
            return 0; // an empty drain still costs a guard; most polls find nothing
        }
        for (id, r) in self.completions.drain(..) {
            f(id, r);
        }
        n
    }

    /// Transactions queued or in flight.
    pub fn in_flight(&self) -> usize {
        self.txns.len()
    }

    /// True when nothing is queued, in flight or being checkpointed.
    pub fn is_idle(&self) -> bool {
        debug_assert!(
            !self.txns.is_empty() || self.locks.is_empty(),
            "locks leaked"
        );
        self.txns.is_empty()
            && self.applying.is_empty()
            && self.io.is_idle()
            && self.batches.is_empty()
            && matches!(self.ckpt, CkptState::Idle)
    }

    /// What is in flight now.
    pub fn phase(&self) -> Phase {
        Phase {
            data_writes: self.txns.iter().any(|(_, t)| t.state == TxnState::Writing),
            batch: !self.batches.is_empty(),
            checkpoint: !matches!(self.ckpt, CkptState::Idle),
            // An acknowledged full-journal transaction writes home once applied.
            home_writes: self.txns.iter().any(|(_, t)| {
                t.state == TxnState::HomeWriting || (t.state == TxnState::Committed && t.full)
            }),
        }
    }

    // ---- the poll loop ------------------------------------------------------------------

    /// One turn: reap completions, advance every transaction, group-commit, checkpoint,
    /// then apply what was acknowledged. Returns true if anything happened (Busy), false
    /// when idle. Every acknowledged transaction is applied when it returns.
    pub fn poll(&mut self) -> bool {
        let busy = self.turn();
        self.settle();
        busy
    }

    /// One turn of the store: like [`poll`](Self::poll), but the transactions this turn
    /// acknowledges are applied by the next turn, after its submissions (commit.rs); the
    /// store settles before anything reads committed state.
    pub(crate) fn turn(&mut self) -> bool {
        let mut busy = false;
        busy |= self.poll_qpairs();
        busy |= self.poll_txns();
        busy |= self.poll_journal();
        self.kick();
        busy |= self.apply_earlier();
        busy |= self.poll_checkpoint();
        self.poll_end();
        busy
    }

    // The steps of `turn`, one per reactor poller (crate::reactor); run in this order,
    // they are `turn`.

    /// Reaps the completions of both queue pairs.
    pub(crate) fn poll_qpairs(&mut self) -> bool {
        self.begin_turn();
        self.frees_upto_seq = self.journal.durable_seq;
        self.reap()
    }

    /// Starts queued transactions and issues data and home writes. The records of parallel
    /// commits just planned are sealed first, so each goes to the device ahead of its data.
    pub(crate) fn poll_txns(&mut self) -> bool {
        let started = self.start_queued();
        // A parallel commit is acknowledged when the later of its record and its data is
        // durable; a record is quick to submit, a data write may not be (the sim device
        // copies the data at submission), so the record does not wait behind it.
        let sealed = started && self.batch_step();
        started | sealed | self.issue_writes()
    }

    /// The journal batcher (group commit).
    pub(crate) fn poll_journal(&mut self) -> bool {
        self.batch_step()
    }

    /// Checkpoints.
    pub(crate) fn poll_checkpoint(&mut self) -> bool {
        self.ckpt_step()
    }

    /// Pushes what the turn queued so far to the device.
    pub(crate) fn kick(&mut self) {
        if let Err(e) = self.data_qp.kick().and_then(|_| self.journal_qp.kick()) {
            self.fail(format!("submitting to the device: {e}"));
        }
    }

    /// Ends a turn: gated frees, and pushes what the turn queued to the device. A turn
    /// that acknowledges transactions frees nothing unless frees are backing up: its
    /// acknowledgements reach the client only when it ends, and a later turn (at queue
    /// depth 1, one whose writes are in flight) has the time.
    pub(crate) fn poll_end(&mut self) {
        let backlog = self.alloc.deferred_extents() > FREES_BACKLOG;
        if self.completions.is_empty() || backlog {
            self.alloc.advance_some(
                self.frees_upto_seq,
                self.io.oldest_inflight(),
                FREES_PER_TURN,
            );
        }
        self.kick();
    }

    /// Why the shard stopped, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The shard's index in the store.
    pub fn index(&self) -> u32 {
        self.id
    }

    /// Counters.
    pub fn stats(&self) -> ShardStats {
        self.stats
    }

    /// Counters of the data and journal queue pairs.
    pub fn io_stats(&self) -> (keel_drivers::IoStats, keel_drivers::IoStats) {
        (self.data_qp.stats(), self.journal_qp.stats())
    }

    /// The most transactions queued or in flight (`ShardConfig::max_txns`).
    pub fn max_txns(&self) -> usize {
        self.cfg.max_txns as usize
    }

    fn reap(&mut self) -> bool {
        let mut done = std::mem::take(&mut self.scratch);
        self.data_qp.poll(256, &mut |c| done.push(c));
        self.journal_qp.poll(256, &mut |c| done.push(c));
        let any = !done.is_empty();
        for c in done.drain(..) {
            let owner = self.io.finish(c.tag);
            if self.failed.is_some() && !matches!(owner, Owner::Read(..)) {
                // Stopped: what was in flight only comes back. Its transactions have had
                // their Failed answer, so nothing more is committed, acknowledged, applied
                // or written; reads of committed state still complete.
                continue;
            }
            if let Err(e) = c.result {
                self.on_io_error(owner, e, c.buf);
                continue;
            }
            self.on_io_done(owner, c.buf);
        }
        self.scratch = done;
        any
    }

    fn on_io_done(&mut self, owner: Owner, buf: Option<keel_drivers::DmaBuf>) {
        match owner {
            Owner::Prefetch(slot, phys, pages) => {
                let buf = buf.expect("read returns its buffer");
                if let Some(e) = self.check_prefetch(phys, buf.as_slice()) {
                    self.prefetch_failed(slot, e);
                    return;
                }
                let t = &mut self.txns[slot];
                for i in 0..pages as usize {
                    let page: Box<[u8]> = buf.as_slice()[i * PG..(i + 1) * PG].into();
                    t.pages.insert(phys + i as u64, page);
                }
                t.pending -= 1;
                if t.pending == 0 {
                    match t.prefetch_error.take() {
                        Some(e) => self.fail_planning(slot, e),
                        None => self.plan_txn(slot),
                    }
                }
            }
            Owner::Data(slot) => {
                let t = &mut self.txns[slot];
                let w = t.write.as_mut().expect("writing");
                w.pending -= 1;
                let done = w.done();
                if t.path.verify() {
                    // Durable at completion (FUA or no cache): its batch may commit.
                    if done {
                        t.write = None;
                        t.data_done = true;
                        self.commit_batches();
                    }
                    return;
                }
                self.data_since_flush = true;
                if done {
                    t.write = None;
                    t.state = TxnState::Ready;
                    self.ready.push_back(slot);
                }
            }
            Owner::Home(slot) => {
                let t = &mut self.txns[slot];
                let w = t.write.as_mut().expect("home writing");
                w.pending -= 1;
                if w.done() {
                    self.finish_home(slot);
                }
            }
            Owner::Read(slot, run) => {
                let buf = buf.expect("read returns its buffer");
                self.on_read_done(slot, run, buf.as_slice());
            }
            Owner::Job(kind) => self.on_job_done(kind),
        }
    }

    fn on_io_error(&mut self, owner: Owner, e: DriverError, _buf: Option<keel_drivers::DmaBuf>) {
        match owner {
            Owner::Read(slot, ..) => {
                let r = &mut self.reads[slot];
                r.pending -= 1;
                r.error.get_or_insert(StoreError::Device {
                    op: keel_drivers::Op::Read,
                    source: e,
                });
            }
            // An unreadable committed page fails only the transaction that needed it, as a
            // page failing its checksum does (on_io_done): it changed nothing yet.
            Owner::Prefetch(slot, ..) => self.prefetch_failed(
                slot,
                StoreError::Device {
                    op: keel_drivers::Op::Read,
                    source: e,
                },
            ),
            _ => self.fail(format!("{owner:?}: {e}")),
        }
    }

    /// One prefetch read of transaction `slot` failed with `e` (the first error is kept);
    /// once its last read is back the transaction fails, having changed nothing.
    fn prefetch_failed(&mut self, slot: usize, e: StoreError) {
        let t = &mut self.txns[slot];
        t.pending -= 1;
        t.prefetch_error.get_or_insert(e);
        if t.pending == 0 {
            let e = t.prefetch_error.take().expect("just set");
            self.fail_planning(slot, e);
        }
    }

    /// Stops the shard after a device fault: every transaction not yet acknowledged fails,
    /// and no more writes are accepted. Committed state in memory stays readable. What is
    /// still in flight only comes back (`reap`): a failed transaction is never acknowledged
    /// later, though its record may have reached the media (its outcome is unknown, as
    /// after a power cut).
    pub(crate) fn fail(&mut self, why: String) {
        if self.failed.is_some() {
            return;
        }
        log::error!("shard {}: stopping: {why}", self.id);
        self.failed = Some(why.clone());
        // Acknowledged transactions stay: committed state remains readable.
        self.settle();
        let slots: Vec<usize> = self.txns.iter().map(|(k, _)| k).collect();
        for slot in slots {
            let t = &self.txns[slot];
            if !matches!(t.state, TxnState::HomeWriting | TxnState::Committed) {
                self.completions
                    .push_back((t.id, Err(StoreError::Failed(why.clone()))));
                self.stats.txns_failed += 1;
                // Nothing of it runs again (reap only takes its I/O back, from buffers of
                // its own): it no longer counts in flight.
                self.txns.remove(slot);
            }
        }
        // Acknowledged data on its way home stays in the overlay, for reads. No lock is
        // taken again: a stopped shard plans nothing.
        self.locks = locks::Locks::default();
        self.batches.clear();
        self.queued.clear();
        self.ready.clear();
        self.writers.clear();
        self.overwriting.clear();
    }
}
