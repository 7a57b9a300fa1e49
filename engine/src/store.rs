//! The store: mkfs, open (with recovery), transactions, reads, close.
//!
//! A store is a superblock and one or more shards. A collection lives on one shard, chosen
//! by a stable hash of its id, and a transaction is confined to the collections of one shard
//! (as Ceph confines one to a placement group); every object op of a transaction must name
//! collections of the same shard.

use std::collections::{BTreeMap, VecDeque};

use keel_drivers::{BlockDevice, IoStats, QpairOptions, QueuePair};

use crate::error::{Result, StoreError};
use crate::fsck::{fsck_shard, FsckReport};
use crate::shard::recovery::{fit_to_device, format_shard, pools, ReplayReport, SyncIo};
use crate::shard::{Phase, ScrubReport, Shard, ShardConfig, ShardStats, TxnId};
use crate::superblock::{ShardLayout, Superblock, MAX_SHARDS};
use crate::txn::{Transaction, TxnOp};
use crate::types::{CollId, JournalMode, ObjKey, PAGE};

/// How to format a device.
#[derive(Clone, Debug)]
pub struct MkfsOptions {
    /// Journal mode of the store.
    pub mode: JournalMode,
    /// Shards (one per reactor).
    pub shards: u32,
    /// Journal ring bytes per shard (0: a sixteenth of the device, 4 MiB..256 MiB).
    pub journal_bytes: u64,
    /// Bytes per checkpoint slot per shard (0: a thirty-second of the device, 1..256 MiB).
    pub checkpoint_bytes: u64,
    /// Store identity (None: random).
    pub uuid: Option<[u8; 16]>,
}

impl MkfsOptions {
    /// One shard in `mode`, sizes by default.
    pub fn new(mode: JournalMode) -> Self {
        MkfsOptions {
            mode,
            shards: 1,
            journal_bytes: 0,
            checkpoint_bytes: 0,
            uuid: None,
        }
    }
}

/// An object's committed state, summarized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjStat {
    /// Size in bytes.
    pub size: u64,
    /// Bytes of data pages allocated to it.
    pub allocated_bytes: u64,
    /// Attributes.
    pub attrs: u64,
    /// Omap keys.
    pub omap_keys: u64,
}

impl ObjStat {
    /// The summary of `o`.
    pub(crate) fn of(o: &crate::meta::Object) -> ObjStat {
        ObjStat {
            size: o.size,
            allocated_bytes: o
                .extents()
                .values()
                .map(|e| u64::from(e.pages))
                .sum::<u64>()
                * PAGE,
            attrs: o.attrs.len() as u64,
            omap_keys: o.omap.len() as u64,
        }
    }
}

/// Counters of the whole store.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreStats {
    /// Shards' counters summed.
    pub shards: ShardStats,
    /// Device commands of the data queue pairs.
    pub data_io: IoStats,
    /// Device commands of the journal queue pairs.
    pub journal_io: IoStats,
}

impl StoreStats {
    /// Device commands of all queue pairs.
    pub fn device(&self) -> IoStats {
        self.data_io.merged(&self.journal_io)
    }
}

/// An open store on device `D`.
pub struct Store<D: BlockDevice> {
    dev: D,
    sb: Superblock,
    shards: Vec<Shard<D::Qpair>>,
    done: VecDeque<(TxnId, Result<()>)>,
    replay: Vec<ReplayReport>,
}

/// The shard of collection `coll` in a store of `shards` shards: a splitmix64 finalizer of
/// the id, modulo the count. Stable across versions and platforms (it is part of the
/// format: docs/format.md, docs/reactors.md).
pub fn shard_for(coll: CollId, shards: usize) -> usize {
    let mut z = coll.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) % shards as u64) as usize
}

/// The one shard a transaction runs on, among `shards`: every collection it names (object
/// ops, mkcoll, rmcoll; clone's source and target share one collection) must map to it.
/// An empty transaction goes to shard 0. A transaction naming two shards is refused with
/// [`StoreError::CrossShard`], before anything is queued.
pub fn route(txn: &Transaction, shards: usize) -> Result<usize> {
    let mut first: Option<(CollId, usize)> = None;
    for op in txn.ops() {
        let coll = match op {
            TxnOp::MkColl { coll } | TxnOp::RmColl { coll } => *coll,
            other => other.coll(),
        };
        let s = shard_for(coll, shards);
        match first {
            None => first = Some((coll, s)),
            Some((c, fs)) if fs != s => {
                return Err(StoreError::CrossShard {
                    first: c,
                    first_shard: fs,
                    other: coll,
                    other_shard: s,
                })
            }
            Some(_) => {}
        }
    }
    Ok(first.map_or(0, |(_, s)| s))
}

/// An opened store taken apart, one shard per reactor ([`Store::into_parts`]).
pub struct StoreParts<D: BlockDevice> {
    /// The device.
    pub dev: D,
    /// The superblock.
    pub sb: Superblock,
    /// The shards, in index order, recovered.
    pub shards: Vec<Shard<D::Qpair>>,
    /// What recovery found, per shard.
    pub replay: Vec<ReplayReport>,
}

/// Runs `f` with synchronous I/O on a small queue pair of its own (mkfs, reading the
/// superblock): nothing else is in flight then.
fn with_sync_io<D: BlockDevice, T>(
    dev: &D,
    f: impl FnOnce(&mut SyncIo<'_, D::Qpair>) -> Result<T>,
) -> Result<T> {
    let cfg = ShardConfig {
        io_bufs: 4,
        journal_bufs: 1,
        ..ShardConfig::default()
    };
    let (pool, _) = pools(&fit_to_device(cfg, &dev.geometry()))?;
    let mut qp = dev
        .open_qpair(&QpairOptions::depth(4))
        .map_err(|e| StoreError::Config(format!("open queue pair: {e}")))?;
    f(&mut SyncIo {
        qp: &mut qp,
        pool: &pool,
        block: dev.geometry().block_size,
    })
}

impl<D: BlockDevice> Store<D> {
    /// Formats `dev`: superblock copies, then an empty checkpoint per shard.
    pub fn mkfs(dev: &D, opts: &MkfsOptions) -> Result<Superblock> {
        let geo = dev.geometry();
        if geo.block_size < 512
            || u64::from(geo.block_size) > PAGE
            || !geo.block_size.is_power_of_two()
        {
            return Err(StoreError::Config(format!(
                "device block size {} must be a power of two from 512 to {PAGE}",
                geo.block_size
            )));
        }
        let n = opts.shards as usize;
        if n == 0 || n > MAX_SHARDS {
            return Err(StoreError::Config(format!("{n} shards (1..={MAX_SHARDS})")));
        }
        let device_pages = geo.capacity_bytes() / PAGE;
        let cap = geo.capacity_bytes();
        let pick = |asked: u64, div: u64, lo: u64, hi: u64| {
            if asked > 0 {
                asked
            } else {
                (cap / div).clamp(lo, hi)
            }
            .div_ceil(PAGE)
        };
        let journal_pages = pick(opts.journal_bytes, 16, 4 << 20, 256 << 20);
        let ckpt_pages = pick(opts.checkpoint_bytes, 32, 1 << 20, 256 << 20).max(2);
        // Saturating: absurd sizes must end in the error below, not in an overflow.
        let meta = ckpt_pages
            .saturating_mul(2)
            .saturating_add(journal_pages)
            .saturating_mul(n as u64);
        let Some(data_total) = device_pages.checked_sub(meta.saturating_add(2)) else {
            return Err(StoreError::Config(format!(
                "device of {cap} bytes is too small for {n} shard(s) with a {}-byte journal and {}-byte checkpoint slots",
                journal_pages.saturating_mul(PAGE),
                ckpt_pages.saturating_mul(PAGE)
            )));
        };
        let data_pages = data_total / n as u64;
        if data_pages < 16 {
            return Err(StoreError::Config(format!(
                "device leaves {data_pages} data pages per shard"
            )));
        }
        let mut at = 2;
        let mut shards = Vec::with_capacity(n);
        for _ in 0..n {
            let l = ShardLayout {
                journal_start: at,
                journal_pages,
                ckpt_a_start: at + journal_pages,
                ckpt_b_start: at + journal_pages + ckpt_pages,
                ckpt_pages,
                data_start: at + journal_pages + 2 * ckpt_pages,
                data_pages,
            };
            at = l.data_start + data_pages;
            shards.push(l);
        }
        let uuid = opts.uuid.unwrap_or_else(|| {
            let mut u = [0u8; 16];
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
                ^ u64::from(std::process::id()).rotate_left(32);
            let mut rng = fastrand::Rng::with_seed(seed);
            rng.fill(&mut u);
            u
        });
        let sb = Superblock {
            device_pages,
            uuid,
            mode: opts.mode,
            device_block_size: geo.block_size,
            shards,
        };
        with_sync_io(dev, |sync| {
            let bpp = PAGE / u64::from(geo.block_size);
            for l in &sb.shards {
                format_shard(sync, l, &uuid)?;
            }
            let page = sb.encode();
            sync.write(0, &page, true)?;
            sync.write(bpp, &page, true)
        })?;
        Ok(sb)
    }

    /// Opens a formatted device, recovering every shard.
    pub fn open(dev: D, cfg: ShardConfig) -> Result<Self> {
        let geo = dev.geometry();
        let sb = with_sync_io(&dev, |sync| {
            let bpp = PAGE / u64::from(geo.block_size);
            let a = sync.read(0, PAGE as usize).map(|p| Superblock::decode(&p));
            let b = sync
                .read(bpp, PAGE as usize)
                .map(|p| Superblock::decode(&p));
            match (a?, b?) {
                (Ok(a), Ok(b)) if a != b => Err(StoreError::Corrupt(
                    "the two superblock copies differ".into(),
                )),
                (Ok(a), _) => Ok(a),
                (Err(_), Ok(b)) => Ok(b),
                (Err(e), Err(_)) => Err(e),
            }
        })?;
        if sb.device_block_size != geo.block_size || sb.device_pages > geo.capacity_bytes() / PAGE {
            return Err(StoreError::Corrupt(format!(
                "formatted for {} pages of {}-byte blocks; the device has {} bytes in {}-byte blocks",
                sb.device_pages,
                sb.device_block_size,
                geo.capacity_bytes(),
                geo.block_size
            )));
        }
        let mut shards = Vec::with_capacity(sb.shards.len());
        let mut replay = Vec::new();
        for (i, layout) in sb.shards.iter().enumerate() {
            let open = |depth| {
                dev.open_qpair(&QpairOptions::depth(depth))
                    .map_err(|e| StoreError::Config(format!("open queue pair: {e}")))
            };
            let data_qp = open(cfg.data_depth)?;
            let journal_qp = open(cfg.journal_depth)?;
            let (shard, report) = Shard::open(
                i as u32,
                *layout,
                sb.uuid,
                sb.mode,
                geo,
                cfg.clone(),
                data_qp,
                journal_qp,
            )?;
            log::info!("shard {i}: {report:?}");
            shards.push(shard);
            replay.push(report);
        }
        Ok(Store {
            dev,
            sb,
            shards,
            done: VecDeque::new(),
            replay,
        })
    }

    /// Takes the store apart into its device, superblock and shards, for the reactors
    /// ([`crate::reactor`]) to own one shard each. Completions not yet taken are dropped:
    /// take them first (a store fresh from `open` has none).
    pub fn into_parts(self) -> StoreParts<D> {
        StoreParts {
            dev: self.dev,
            sb: self.sb,
            shards: self.shards,
            replay: self.replay,
        }
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// The superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// What recovery found at open, per shard.
    pub fn replay_reports(&self) -> &[ReplayReport] {
        &self.replay
    }

    /// The journal mode.
    pub fn mode(&self) -> JournalMode {
        self.sb.mode
    }

    /// The shard that holds collection `coll`.
    pub fn shard_of(&self, coll: CollId) -> usize {
        shard_for(coll, self.shards.len())
    }

    /// The shard of `coll`, with every acknowledged transaction applied (shard/commit.rs).
    fn settled(&mut self, coll: CollId) -> &mut Shard<D::Qpair> {
        let s = self.shard_of(coll);
        let sh = &mut self.shards[s];
        sh.settle();
        sh
    }

    /// Applies every acknowledged transaction of every shard.
    fn settle_all(&mut self) {
        for sh in &mut self.shards {
            sh.settle();
        }
    }

    /// Queues a transaction; its result comes back through [`Store::take_completions`] or
    /// [`Store::wait`]. Errors here changed nothing.
    pub fn queue(&mut self, txn: Transaction) -> Result<TxnId> {
        let s = route(&txn, self.shards.len())?;
        let local = self.shards[s].queue(txn)?;
        Ok(local << 8 | s as u64)
    }

    /// One turn over every shard. True if any did work.
    pub fn poll(&mut self) -> bool {
        let mut busy = false;
        for (i, sh) in self.shards.iter_mut().enumerate() {
            busy |= sh.turn();
            sh.take_completions(|id, r| self.done.push_back((id << 8 | i as u64, r)));
        }
        busy
    }

    /// Hands finished transactions to `f`.
    pub fn take_completions(&mut self, mut f: impl FnMut(TxnId, Result<()>)) -> usize {
        let n = self.done.len();
        if n == 0 {
            return 0; // an empty drain still costs a guard; most polls find nothing
        }
        for (id, r) in self.done.drain(..) {
            f(id, r);
        }
        n
    }

    /// Polls until transaction `id` finishes; other completions stay queued.
    pub fn wait(&mut self, id: TxnId) -> Result<()> {
        loop {
            if let Some(i) = self.done.iter().position(|(d, _)| *d == id) {
                return self.done.remove(i).expect("found").1;
            }
            if !self.poll() {
                std::hint::spin_loop();
            }
        }
    }

    /// Queues a transaction and waits for it.
    pub fn submit_sync(&mut self, txn: Transaction) -> Result<()> {
        let id = self.queue(txn)?;
        self.wait(id)
    }

    /// Reads committed bytes of an object (clamped at its size; holes read as zeroes).
    pub fn read(&mut self, coll: CollId, name: &[u8], offset: u64, len: usize) -> Result<Vec<u8>> {
        let s = self.shard_of(coll);
        self.shards[s].read(coll, name, offset, len)
    }

    /// Reads every mapped page of every shard and checks it against its sum
    /// (docs/integrity.md): torn overwrites and corruption, by object and range.
    pub fn scrub(&mut self) -> Result<ScrubReport> {
        let mut report = ScrubReport::default();
        for s in &mut self.shards {
            report.merge(s.scrub()?);
        }
        Ok(report)
    }

    /// The device page (of [`PAGE`] bytes) that holds byte `offset` of
    /// an object, or `None` for a hole: where scrub and fault-injection tests look.
    pub fn device_page(&mut self, coll: CollId, name: &[u8], offset: u64) -> Result<Option<u64>> {
        let o = self.settled(coll).object(coll, name)?;
        Ok(o.phys_of(offset / crate::types::PAGE))
    }

    /// The bytes of an object's logical page `lpage` as they are on the device, unchecked
    /// (`None`: a hole). For the crash explorer's observer, which must see what an
    /// interrupted overwrite left where a store without overwrite intents reports
    /// corruption.
    pub(crate) fn read_page_unchecked(
        &mut self,
        coll: CollId,
        name: &[u8],
        lpage: u64,
    ) -> Result<Option<Vec<u8>>> {
        let Some(phys) = self.settled(coll).object(coll, name)?.phys_of(lpage) else {
            return Ok(None);
        };
        let key = crate::types::ObjKey::new(coll, name.to_vec());
        let s = self.shard_of(coll);
        self.shards[s].read_raw(&[(key, lpage, phys)]).map(Some)
    }

    /// An object's size and counts.
    pub fn stat(&mut self, coll: CollId, name: &[u8]) -> Result<ObjStat> {
        let o = self.settled(coll).object(coll, name)?;
        Ok(ObjStat::of(o))
    }

    /// An attribute's value.
    pub fn getattr(&mut self, coll: CollId, name: &[u8], key: &[u8]) -> Result<Vec<u8>> {
        let o = self.settled(coll).object(coll, name)?;
        o.attrs
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NoSuchAttr {
                key: ObjKey::new(coll, name.to_vec()),
                attr: String::from_utf8_lossy(key).into_owned(),
            })
    }

    /// An omap value.
    pub fn omap_get(&mut self, coll: CollId, name: &[u8], key: &[u8]) -> Result<Vec<u8>> {
        let o = self.settled(coll).object(coll, name)?;
        o.omap
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NoSuchAttr {
                key: ObjKey::new(coll, name.to_vec()),
                attr: String::from_utf8_lossy(key).into_owned(),
            })
    }

    /// Every collection, in id order.
    pub fn list_collections(&mut self) -> Vec<CollId> {
        self.settle_all();
        let mut v: Vec<CollId> = self.shards.iter().flat_map(|s| s.table().colls()).collect();
        v.sort_unstable();
        v
    }

    /// Names of the objects of a collection, in name order.
    pub fn list_objects(&mut self, coll: CollId) -> Result<Vec<Vec<u8>>> {
        let t = self.settled(coll).table();
        t.objects(coll)
            .map(|it| it.map(|(n, _)| n.to_vec()).collect())
            .ok_or(StoreError::NoSuchCollection(coll))
    }

    /// An object's attributes and omap, whole.
    #[allow(clippy::type_complexity)]
    pub fn attrs_and_omap(
        &mut self,
        coll: CollId,
        name: &[u8],
    ) -> Result<(BTreeMap<Vec<u8>, Vec<u8>>, BTreeMap<Vec<u8>, Vec<u8>>)> {
        let o = self.settled(coll).object(coll, name)?;
        Ok((o.attrs.clone(), o.omap.clone()))
    }

    /// Why the store stopped accepting writes (the first shard that stopped), if it did.
    pub fn failure(&self) -> Option<&str> {
        self.shards.iter().find_map(|s| s.failure())
    }

    /// What is in flight, all shards together.
    pub fn phase(&self) -> Phase {
        self.shards.iter().fold(Phase::default(), |a, s| {
            let p = s.phase();
            Phase {
                data_writes: a.data_writes || p.data_writes,
                batch: a.batch || p.batch,
                checkpoint: a.checkpoint || p.checkpoint,
                home_writes: a.home_writes || p.home_writes,
            }
        })
    }

    /// Transactions acknowledged but not yet applied to the in-memory table (they are
    /// applied during the next turn, after its submissions; every read, listing, stat,
    /// scrub and fsck applies them first: shard/commit.rs).
    pub fn unapplied(&self) -> usize {
        self.shards.iter().map(|s| s.unapplied()).sum()
    }

    /// True when no shard has anything queued or in flight.
    pub fn is_idle(&self) -> bool {
        self.shards.iter().all(|s| s.is_idle())
    }

    /// Asks every shard for a checkpoint at its next batch boundary.
    pub fn request_checkpoint(&mut self) {
        for s in &mut self.shards {
            s.request_checkpoint();
        }
    }

    /// Counters.
    pub fn stats(&self) -> StoreStats {
        let mut s = StoreStats::default();
        for sh in &self.shards {
            s.shards.add(&sh.stats);
            s.data_io = s.data_io.merged(&sh.data_qp.stats());
            s.journal_io = s.journal_io.merged(&sh.journal_qp.stats());
        }
        s
    }

    /// Checks every shard's metadata and allocator (see [`crate::fsck`]).
    pub fn fsck(&mut self) -> FsckReport {
        self.settle_all();
        let mut r = FsckReport::default();
        for sh in &self.shards {
            fsck_shard(sh, &mut r);
        }
        r
    }

    /// Polls until nothing is in flight.
    pub fn drain(&mut self) -> Result<()> {
        for sh in &mut self.shards {
            sh.drain()?;
            let i = sh.id as u64;
            sh.take_completions(|id, r| self.done.push_back((id << 8 | i, r)));
        }
        Ok(())
    }

    /// Finishes everything in flight, writes a checkpoint per shard, and closes.
    pub fn close(mut self) -> Result<()> {
        self.drain()?;
        for sh in &mut self.shards {
            sh.request_checkpoint();
            sh.drain()?;
        }
        Ok(())
    }
}
