//! Volumes: virtual disks striped over objects, with block-device semantics.
//!
//! A volume is a named image of a fixed size (a multiple of 512 bytes) cut into objects of
//! `object_bytes` (default 4 MiB, a power of two from 4 KiB to 1 GiB, fixed at creation),
//! each a Keel object in the volume's own collection ([`layout`]). Objects appear on their
//! first write, so a volume is sparse: what was never written reads as zeroes.
//!
//! ```text
//!  registry collection REGISTRY_COLL        volume collection (one per volume)
//!   "volumes": omap name -> coll (u64 LE)    "header": attrs name, size_bytes,
//!              attr next_coll (u64 LE)                  object_bytes, mode
//!                                            "data.<index as 16 hex digits>": the bytes
//!
//!  Volume::write(offset, bytes) ──layout::pieces──► one Transaction per 8 MiB
//!     (a write op per object it touches; all in the volume's collection, so one shard)
//!     ──Engine::submit──► reactor of the shard ──ack (durable)──► done(result)
//!  Volume::read ──Engine::read per object──► zero-filled where nothing was written
//! ```
//!
//! - **Modes.** [`JournalMode::MetadataOnly`] (the default) writes volume data in place
//!   with one device write; an overwrite interrupted by a power cut may be torn (the guest
//!   filesystem's own journal copes, as it does on a disk). [`JournalMode::Full`] sets
//!   [`Transaction::set_full_journal`] on every data transaction: each write is atomic,
//!   at two device writes. A store formatted Full journals every volume fully.
//! - **Durability.** A write, zeroing or trim is acknowledged only when its transaction
//!   is durable, so [`Volume::flush`] has nothing left to do and FUA costs nothing extra.
//! - **Trim and write-zeroes** both zero the range: whole pages are unmapped (freed), the
//!   ends of a partial page are written with zeroes.
//! - **Metadata changes** (create, resize, remove) are serialised by [`Volumes`]. Create
//!   makes the collection and header, then the registry entry; remove drops the registry
//!   entry first. A power cut in between leaves an unlisted collection (space leaked,
//!   never a half-visible volume). Open handles keep the size they were opened with:
//!   reopen after a resize.

pub mod error;
pub mod layout;

use std::sync::{Arc, Condvar, Mutex};

use keel_drivers::BlockDevice;

use crate::error::StoreError;
use crate::reactor::{Engine, Notify};
use crate::txn::Transaction;
use crate::types::{CollId, JournalMode};
pub use error::VolumeError;
pub use layout::{DEFAULT_OBJECT_BYTES, MAX_OBJECT_BYTES, MIN_OBJECT_BYTES, SECTOR_BYTES};

/// The registry's collection.
pub const REGISTRY_COLL: CollId = 0x4b45_454c_564f_4c53; // "KEELVOLS"
/// The registry object (omap: volume name -> collection id).
pub const REGISTRY_OBJECT: &[u8] = b"volumes";
/// First collection id given to a volume.
pub const FIRST_VOLUME_COLL: CollId = 0x4b56_0000_0000_0000;
/// A volume's header object.
pub const HEADER_OBJECT: &[u8] = b"header";
/// Longest volume name, in bytes (the NBD export name).
pub const MAX_VOLUME_NAME_BYTES: usize = 255;
/// Most data bytes one volume write transaction carries (a larger write is several
/// transactions, each atomic on its own, as a disk promises nothing across sectors).
pub const WRITE_TXN_BYTES: u64 = 8 << 20;
/// Most ops in one zeroing transaction.
pub const ZERO_TXN_OPS: usize = 256;
/// Most ops in one removal transaction.
const REMOVE_TXN_OPS: usize = 256;

const ATTR_NEXT_COLL: &[u8] = b"next_coll";
const ATTR_NAME: &[u8] = b"name";
const ATTR_SIZE: &[u8] = b"size_bytes";
const ATTR_OBJECT: &[u8] = b"object_bytes";
const ATTR_MODE: &[u8] = b"mode";

/// Result with [`VolumeError`].
pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

/// What a completion callback is handed.
pub type Done = Box<dyn FnOnce(Result<()>) + Send>;

/// How to create a volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeOptions {
    /// Size in bytes (a multiple of [`SECTOR_BYTES`]).
    pub size_bytes: u64,
    /// Object size in bytes (a power of two, [`MIN_OBJECT_BYTES`]..=[`MAX_OBJECT_BYTES`]).
    pub object_bytes: u64,
    /// Journal mode of the volume's data writes.
    pub mode: JournalMode,
}

impl VolumeOptions {
    /// A volume of `size_bytes`, 4 MiB objects, MetadataOnly.
    pub fn new(size_bytes: u64) -> Self {
        VolumeOptions {
            size_bytes,
            object_bytes: DEFAULT_OBJECT_BYTES,
            mode: JournalMode::MetadataOnly,
        }
    }
}

/// A volume's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Name.
    pub name: String,
    /// Its collection.
    pub coll: CollId,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Object size in bytes.
    pub object_bytes: u64,
    /// Journal mode of its data writes.
    pub mode: JournalMode,
}

fn check_name(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_VOLUME_NAME_BYTES {
        "longer than 255 bytes"
    } else if name.bytes().any(|b| b == 0) {
        "holds a NUL byte"
    } else {
        return Ok(());
    };
    Err(VolumeError::BadName {
        name: name.into(),
        why,
    })
}

fn check_size(size_bytes: u64) -> Result<()> {
    if size_bytes % SECTOR_BYTES != 0 || size_bytes > crate::types::MAX_OBJECT_BYTES << 10 {
        return Err(VolumeError::Geometry(format!(
            "size of {size_bytes} bytes must be a multiple of {SECTOR_BYTES} and at most 1 PiB"
        )));
    }
    Ok(())
}

fn check_object_bytes(object_bytes: u64) -> Result<()> {
    if !object_bytes.is_power_of_two()
        || !(MIN_OBJECT_BYTES..=MAX_OBJECT_BYTES).contains(&object_bytes)
    {
        return Err(VolumeError::Geometry(format!(
            "object size of {object_bytes} bytes must be a power of two from {MIN_OBJECT_BYTES} to {MAX_OBJECT_BYTES}"
        )));
    }
    Ok(())
}

fn u64_attr(v: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(v.try_into().ok()?))
}

/// The volumes of one store: create, open, resize, remove, list.
pub struct Volumes<D: BlockDevice> {
    engine: Arc<Engine<D>>,
    admin: Mutex<()>,
}

impl<D: BlockDevice> Volumes<D>
where
    D::Qpair: 'static,
{
    /// The volumes of the store `engine` runs; creates the registry on first use.
    pub fn new(engine: Arc<Engine<D>>) -> Result<Self> {
        match engine.getattr(REGISTRY_COLL, REGISTRY_OBJECT, ATTR_NEXT_COLL) {
            Ok(_) => {}
            Err(StoreError::NoSuchCollection(_)) | Err(StoreError::NoSuchObject(_)) => {
                let mut t = Transaction::new();
                t.mkcoll(REGISTRY_COLL)
                    .touch(REGISTRY_COLL, REGISTRY_OBJECT)
                    .setattr(
                        REGISTRY_COLL,
                        REGISTRY_OBJECT,
                        ATTR_NEXT_COLL,
                        FIRST_VOLUME_COLL.to_le_bytes().to_vec(),
                    );
                engine.submit_sync(t)?;
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Volumes {
            engine,
            admin: Mutex::new(()),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine<D>> {
        &self.engine
    }

    /// The engine back (to close it once every volume handle is gone).
    pub fn into_engine(self) -> Arc<Engine<D>> {
        self.engine
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.admin.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn coll_of(&self, name: &str) -> Result<CollId> {
        check_name(name)?;
        match self
            .engine
            .omap_get(REGISTRY_COLL, REGISTRY_OBJECT, name.as_bytes())
        {
            Ok(v) => u64_attr(&v).ok_or_else(|| VolumeError::Corrupt {
                name: name.into(),
                why: format!("registry entry of {} bytes", v.len()),
            }),
            Err(StoreError::NoSuchAttr { .. }) => Err(VolumeError::NoSuchVolume(name.into())),
            Err(e) => Err(e.into()),
        }
    }

    /// Names of every volume, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let (_, omap) = self.engine.attrs_and_omap(REGISTRY_COLL, REGISTRY_OBJECT)?;
        Ok(omap
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect())
    }

    /// A volume's metadata.
    pub fn info(&self, name: &str) -> Result<VolumeInfo> {
        let coll = self.coll_of(name)?;
        let corrupt = |why: String| VolumeError::Corrupt {
            name: name.into(),
            why,
        };
        let (attrs, _) = self
            .engine
            .attrs_and_omap(coll, HEADER_OBJECT)
            .map_err(|e| corrupt(format!("header object: {e}")))?;
        let num = |k: &[u8]| {
            attrs
                .get(k)
                .and_then(|v| u64_attr(v))
                .ok_or_else(|| corrupt(format!("header attr {:?}", String::from_utf8_lossy(k))))
        };
        let size_bytes = num(ATTR_SIZE)?;
        let object_bytes = num(ATTR_OBJECT)?;
        check_object_bytes(object_bytes).map_err(|e| corrupt(e.to_string()))?;
        let mode = attrs
            .get(ATTR_MODE)
            .and_then(|v| (v.len() == 1).then(|| JournalMode::from_u8(v[0])).flatten())
            .ok_or_else(|| corrupt("header attr \"mode\"".into()))?;
        Ok(VolumeInfo {
            name: name.into(),
            coll,
            size_bytes,
            object_bytes,
            mode,
        })
    }

    /// Creates a volume; every byte of it reads as zero.
    pub fn create(&self, name: &str, opts: &VolumeOptions) -> Result<VolumeInfo> {
        check_name(name)?;
        check_size(opts.size_bytes)?;
        check_object_bytes(opts.object_bytes)?;
        let _g = self.lock();
        match self.coll_of(name) {
            Ok(_) => return Err(VolumeError::Exists(name.into())),
            Err(VolumeError::NoSuchVolume(_)) => {}
            Err(e) => return Err(e),
        }
        let next = self
            .engine
            .getattr(REGISTRY_COLL, REGISTRY_OBJECT, ATTR_NEXT_COLL)?;
        let coll = u64_attr(&next).ok_or_else(|| VolumeError::Corrupt {
            name: name.into(),
            why: "registry next_coll".into(),
        })?;
        // 1. Reserve the id. 2. The collection and header. 3. The registry entry, which
        // makes the volume visible. A power cut between steps leaks an unlisted id.
        let mut t = Transaction::new();
        t.setattr(
            REGISTRY_COLL,
            REGISTRY_OBJECT,
            ATTR_NEXT_COLL,
            (coll + 1).to_le_bytes().to_vec(),
        );
        self.engine.submit_sync(t)?;
        let mut t = Transaction::new();
        t.mkcoll(coll)
            .touch(coll, HEADER_OBJECT)
            .setattr(coll, HEADER_OBJECT, ATTR_NAME, name.as_bytes())
            .setattr(
                coll,
                HEADER_OBJECT,
                ATTR_SIZE,
                opts.size_bytes.to_le_bytes().to_vec(),
            )
            .setattr(
                coll,
                HEADER_OBJECT,
                ATTR_OBJECT,
                opts.object_bytes.to_le_bytes().to_vec(),
            )
            .setattr(coll, HEADER_OBJECT, ATTR_MODE, vec![opts.mode as u8]);
        self.engine.submit_sync(t)?;
        let mut t = Transaction::new();
        t.omap_set(
            REGISTRY_COLL,
            REGISTRY_OBJECT,
            vec![(name.as_bytes().to_vec(), coll.to_le_bytes().to_vec())],
        );
        self.engine.submit_sync(t)?;
        Ok(VolumeInfo {
            name: name.into(),
            coll,
            size_bytes: opts.size_bytes,
            object_bytes: opts.object_bytes,
            mode: opts.mode,
        })
    }

    /// Opens a volume for I/O.
    pub fn open(&self, name: &str) -> Result<Volume<D>> {
        Ok(Volume {
            engine: Arc::clone(&self.engine),
            info: self.info(name)?,
        })
    }

    /// Removes objects of `coll` that `keep` refuses, in transactions of bounded size.
    fn remove_objects(&self, coll: CollId, keep: impl Fn(&[u8]) -> bool) -> Result<()> {
        let names = self.engine.list_objects(coll)?;
        let gone: Vec<_> = names.into_iter().filter(|n| !keep(n)).collect();
        for chunk in gone.chunks(REMOVE_TXN_OPS) {
            let mut t = Transaction::new();
            for n in chunk {
                t.remove(coll, n.clone());
            }
            self.engine.submit_sync(t)?;
        }
        Ok(())
    }

    /// Changes a volume's size. Growing adds zeroes; shrinking discards the data past the
    /// new end (first), then records the size. Open handles keep their old size.
    pub fn resize(&self, name: &str, size_bytes: u64) -> Result<VolumeInfo> {
        check_size(size_bytes)?;
        let _g = self.lock();
        let mut info = self.info(name)?;
        if size_bytes < info.size_bytes {
            let ob = info.object_bytes;
            let keep_objects = layout::object_count(size_bytes, ob);
            self.remove_objects(info.coll, |n| {
                layout::object_index(n).is_none_or(|i| i < keep_objects)
            })?;
            if size_bytes % ob != 0 {
                let last = size_bytes / ob;
                let obj = layout::object_name(last);
                match self.engine.stat(info.coll, &obj) {
                    Ok(st) if st.size > size_bytes % ob => {
                        let mut t = Transaction::new();
                        t.truncate(info.coll, obj, size_bytes % ob);
                        self.engine.submit_sync(t)?;
                    }
                    Ok(_) | Err(StoreError::NoSuchObject(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let mut t = Transaction::new();
        t.setattr(
            info.coll,
            HEADER_OBJECT,
            ATTR_SIZE,
            size_bytes.to_le_bytes().to_vec(),
        );
        self.engine.submit_sync(t)?;
        info.size_bytes = size_bytes;
        Ok(info)
    }

    /// Removes a volume and its data. The registry entry goes first, so a power cut
    /// midway leaves an unlisted collection, never a half-removed volume.
    pub fn remove(&self, name: &str) -> Result<()> {
        let _g = self.lock();
        let coll = self.coll_of(name)?;
        let mut t = Transaction::new();
        t.omap_rm(
            REGISTRY_COLL,
            REGISTRY_OBJECT,
            vec![name.as_bytes().to_vec()],
        );
        self.engine.submit_sync(t)?;
        self.remove_objects(coll, |_| false)?;
        let mut t = Transaction::new();
        t.rmcoll(coll);
        self.engine.submit_sync(t)?;
        Ok(())
    }
}

/// Joins the results of several transactions into one callback.
struct Join {
    state: Mutex<(usize, Option<VolumeError>, Option<Done>)>,
}

impl Join {
    fn new(parts: usize, done: Done) -> Arc<Join> {
        Arc::new(Join {
            state: Mutex::new((parts, None, Some(done))),
        })
    }

    fn finish_one(&self, r: Result<()>) {
        let (err, done) = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = r {
                s.1.get_or_insert(e);
            }
            s.0 -= 1;
            if s.0 > 0 {
                return;
            }
            (s.1.take(), s.2.take())
        };
        if let Some(done) = done {
            done(err.map_or(Ok(()), Err));
        }
    }
}

/// An open volume: block-device I/O. `Sync`: share it between threads.
pub struct Volume<D: BlockDevice> {
    engine: Arc<Engine<D>>,
    info: VolumeInfo,
}

impl<D: BlockDevice> Volume<D>
where
    D::Qpair: 'static,
{
    /// Its metadata (as when opened).
    pub fn info(&self) -> &VolumeInfo {
        &self.info
    }

    /// Size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.info.size_bytes
    }

    fn check(&self, op: &'static str, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.info.size_bytes => Ok(()),
            _ => Err(VolumeError::OutOfRange {
                op,
                offset,
                len,
                size_bytes: self.info.size_bytes,
            }),
        }
    }

    /// Reads `len` bytes at `offset`; what was never written reads as zeroes.
    pub fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.check("read", offset, len as u64)?;
        let mut out = vec![0u8; len];
        for p in layout::pieces(offset, len as u64, self.info.object_bytes) {
            let name = layout::object_name(p.index);
            match self
                .engine
                .read(self.info.coll, &name, p.object_offset, p.len as usize)
            {
                Ok(b) => {
                    let at = p.range_offset as usize;
                    out[at..at + b.len()].copy_from_slice(&b);
                }
                Err(StoreError::NoSuchObject(_)) | Err(StoreError::ReadPastEnd { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    fn submit_all(&self, txns: Vec<Transaction>, done: Done) {
        if txns.is_empty() {
            return done(Ok(()));
        }
        let join = Join::new(txns.len(), done);
        for mut t in txns {
            if self.info.mode == JournalMode::Full {
                t.set_full_journal(true);
            }
            let j = Arc::clone(&join);
            let notify = Notify::callback(move |r| j.finish_one(r.map_err(VolumeError::from)));
            if let Err(e) = self.engine.submit(t, notify) {
                join.finish_one(Err(e.error.into()));
            }
        }
    }

    /// Writes `data` at `offset`; `done` runs once it is durable (on a reactor thread:
    /// it must not block). Errors of the range come back through `done` too.
    pub fn write_async(&self, offset: u64, data: Vec<u8>, done: Done) {
        if let Err(e) = self.check("write", offset, data.len() as u64) {
            return done(Err(e));
        }
        let coll = self.info.coll;
        let mut txns = Vec::new();
        let mut t = Transaction::new();
        let mut t_bytes = 0u64;
        let whole = layout::pieces(offset, data.len() as u64, self.info.object_bytes).count() == 1;
        let mut data = Some(data);
        for p in layout::pieces(
            offset,
            data.as_ref().map_or(0, |d| d.len() as u64),
            self.info.object_bytes,
        ) {
            if t_bytes + p.len > WRITE_TXN_BYTES && !t.is_empty() {
                txns.push(std::mem::take(&mut t));
                t_bytes = 0;
            }
            let bytes = if whole {
                data.take().unwrap_or_default()
            } else {
                let d = data.as_ref().expect("data kept while split");
                let at = p.range_offset as usize;
                d[at..at + p.len as usize].to_vec()
            };
            t.write(coll, layout::object_name(p.index), p.object_offset, bytes);
            t_bytes += p.len;
        }
        if !t.is_empty() {
            txns.push(t);
        }
        self.submit_all(txns, done);
    }

    /// Makes `[offset, offset + len)` read as zeroes, freeing whole pages; `done` runs once
    /// it is durable.
    pub fn write_zeroes_async(&self, offset: u64, len: u64, done: Done) {
        if let Err(e) = self.check("write zeroes", offset, len) {
            return done(Err(e));
        }
        let coll = self.info.coll;
        let mut txns = Vec::new();
        let mut t = Transaction::new();
        for p in layout::pieces(offset, len, self.info.object_bytes) {
            if t.len() >= ZERO_TXN_OPS {
                txns.push(std::mem::take(&mut t));
            }
            t.zero(coll, layout::object_name(p.index), p.object_offset, p.len);
        }
        if !t.is_empty() {
            txns.push(t);
        }
        self.submit_all(txns, done);
    }

    /// Discards a range: it reads as zeroes afterwards (Keel zeroes it, freeing whole
    /// pages), so trim is write-zeroes.
    pub fn trim_async(&self, offset: u64, len: u64, done: Done) {
        if let Err(e) = self.check("trim", offset, len) {
            return done(Err(e));
        }
        self.write_zeroes_async(offset, len, done);
    }

    /// Makes every acknowledged write durable: each already is (an ack follows the
    /// journal commit), so this returns at once.
    pub fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Runs `f` and waits for the result it hands its `Done` (a mutex and a condition
    /// variable: no thread-local state, so C callers' threads leak nothing).
    fn wait(f: impl FnOnce(Done)) -> Result<()> {
        let slot: Arc<(Mutex<Option<Result<()>>>, Condvar)> = Arc::default();
        let s = Arc::clone(&slot);
        f(Box::new(move |r| {
            *s.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            s.1.notify_one();
        }));
        let mut g = slot.0.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = g.take() {
                return r;
            }
            g = slot.1.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Writes and waits until durable.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        Self::wait(|d| self.write_async(offset, data.to_vec(), d))
    }

    /// Zeroes and waits until durable.
    pub fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        Self::wait(|d| self.write_zeroes_async(offset, len, d))
    }

    /// Trims and waits until durable.
    pub fn trim(&self, offset: u64, len: u64) -> Result<()> {
        Self::wait(|d| self.trim_async(offset, len, d))
    }
}
