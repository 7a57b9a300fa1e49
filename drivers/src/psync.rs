//! The plain kernel path: `pread`/`pwrite` on a file or block device opened `O_DIRECT`.
//!
//! This is the driver that works everywhere Linux does: no hugepages, no io_uring, no
//! VFIO. It is the baseline the faster paths are measured against, and the one to reach for
//! when a test or a tool needs real persistence on an ordinary file.
//!
//! ```text
//!   PsyncDevice::open(cfg) ── O_DIRECT|O_RDWR ──► Arc<File> ◄── shared by every queue pair
//!        │ geometry: file length, or BLKGETSIZE64 / BLKSSZGET / sysfs write_cache
//!        ▼
//!   PsyncQpair::submit(tag, cmd)
//!        ├─ validate (same refusals as every driver), QueueFull at `depth` unpolled
//!        ├─ run the command now, on the calling thread:
//!        │    Read  → pread loop          Write → pwrite loop (+ fdatasync when FUA)
//!        │    Flush → fdatasync           WriteZeroes → fallocate(ZERO_RANGE) on a file,
//!        │                                  BLKZEROOUT on a block device, else pwrite zeros
//!        └─ push the Completion (buffer included) on a preallocated queue
//!   PsyncQpair::poll(max, on_done) ── hands the queued completions out, oldest first
//! ```
//!
//! Every command blocks its thread for the whole system call, so a queue pair never has
//! more than one command at the device: depth only bounds how many completions may wait
//! for `poll`. Parallelism comes from several queue pairs on several threads.
//!
//! `O_DIRECT` bypasses the page cache, so a completed write has reached the device (or the
//! file system's extent map) but may still sit in a volatile device cache: a file always
//! reports a volatile write cache (its metadata needs `fdatasync` too); a block device
//! reports what `/sys/dev/block/<maj>:<min>/queue/write_cache` says. FUA is emulated with a
//! `fdatasync` after the write.
//!
//! Nothing is allocated per command: the completion queue is sized to the depth at open,
//! and the zero-filled buffer that write-zeroes falls back on (when the file system or
//! device cannot zero a range itself) is one DMA buffer of the max transfer, also made at
//! open.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::command::{Command, Completion};
use crate::dma::{DmaBuf, DmaPool, DmaSource, PoolConfig};
use crate::error::{DriverError, Rejected};
use crate::geometry::Geometry;
use crate::qpair::{validate, BlockDevice, IoStats, QpairOptions, QueuePair};

/// Block size of a regular file unless configured.
const FILE_BLOCK_BYTES: u32 = 4096;
/// Max transfer unless configured.
const DEFAULT_MAX_TRANSFER_BYTES: u32 = 1 << 20;
/// Largest block size accepted (Linux handles logical blocks up to 64 KiB).
const MAX_BLOCK_BYTES: u32 = 64 << 10;

/// `BLKGETSIZE64`: device size in bytes, written to a `u64` (linux/fs.h).
const BLKGETSIZE64: libc::Ioctl = libc::_IOR::<libc::size_t>(0x12, 114);
/// `BLKZEROOUT`: zero the byte range `{start, len}` read from a `[u64; 2]` (linux/fs.h).
const BLKZEROOUT: libc::Ioctl = libc::_IO(0x12, 127);

/// How to open a [`PsyncDevice`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PsyncConfig {
    /// A regular file or a block device.
    pub path: PathBuf,
    /// Create the regular file if missing, and extend it to at least this many bytes (it is
    /// never shrunk). Not allowed for a block device.
    pub create_bytes: Option<u64>,
    /// Logical block size. Default: the device's logical sector size (`BLKSSZGET`) for a
    /// block device, 4096 for a file.
    pub block_size: Option<u32>,
    /// The largest transfer of one command; a multiple of the block size. Default 1 MiB.
    pub max_transfer_bytes: u32,
}

impl PsyncConfig {
    /// Opens an existing file or block device at `path` with the default sizes.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        PsyncConfig {
            path: path.into(),
            create_bytes: None,
            block_size: None,
            max_transfer_bytes: DEFAULT_MAX_TRANSFER_BYTES,
        }
    }
}

/// What the descriptor refers to: it decides how capacity is found and how ranges are zeroed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backing {
    File,
    BlockDevice,
}

/// A file or block device opened `O_DIRECT`. Its queue pairs share the one descriptor.
#[derive(Debug)]
pub struct PsyncDevice {
    file: Arc<File>,
    path: PathBuf,
    backing: Backing,
    geometry: Geometry,
}

impl PsyncDevice {
    /// Opens (and with `create_bytes`, creates or extends) the file or block device.
    ///
    /// Errors: [`DriverError::Open`] naming the path when the system refuses it;
    /// [`DriverError::Config`] for a bad block size or max transfer, a device smaller than
    /// one block, or a path that is neither a regular file nor a block device.
    pub fn open(cfg: &PsyncConfig) -> Result<Self, DriverError> {
        let path = &cfg.path;
        let shown = path.display();
        if let Some(bs) = cfg.block_size {
            check_block_size(path, bs)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(cfg.create_bytes.is_some())
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .map_err(|source| {
                let hint = if source.raw_os_error() == Some(libc::EINVAL) {
                    " (does the file system support O_DIRECT?)"
                } else {
                    ""
                };
                DriverError::Open {
                    what: format!("{shown}: O_DIRECT read-write{hint}"),
                    source,
                }
            })?;
        let meta = file.metadata().map_err(open_err(path, "fstat"))?;
        let file_type = meta.file_type();
        let (backing, block_size, capacity, volatile_write_cache) = if file_type.is_block_device() {
            if cfg.create_bytes.is_some() {
                return Err(DriverError::Config(format!(
                    "{shown}: create_bytes applies to regular files, not block devices"
                )));
            }
            let sector = ioctl_int(&file, libc::BLKSSZGET).map_err(open_err(path, "BLKSSZGET"))?;
            let sector = u32::try_from(sector).unwrap_or(0);
            let block_size = cfg.block_size.unwrap_or(sector);
            check_block_size(path, block_size)?;
            if sector == 0 || block_size % sector != 0 {
                return Err(DriverError::Config(format!(
                    "{shown}: block size {block_size} is not a multiple of the device's \
                     {sector}-byte logical sector"
                )));
            }
            check_max_transfer(path, cfg.max_transfer_bytes, block_size)?;
            let capacity =
                ioctl_u64(&file, BLKGETSIZE64).map_err(open_err(path, "BLKGETSIZE64"))?;
            let vwc = crate::blockdev::volatile_write_cache(meta.rdev());
            (Backing::BlockDevice, block_size, capacity, vwc)
        } else if file_type.is_file() {
            let block_size = cfg.block_size.unwrap_or(FILE_BLOCK_BYTES);
            check_block_size(path, block_size)?;
            check_max_transfer(path, cfg.max_transfer_bytes, block_size)?;
            let mut len = meta.len();
            if let Some(want) = cfg.create_bytes {
                if len < want {
                    file.set_len(want)
                        .map_err(open_err(path, &format!("extend to {want} bytes")))?;
                    len = want;
                }
            }
            (Backing::File, block_size, len, true)
        } else {
            return Err(DriverError::Config(format!(
                "{shown}: neither a regular file nor a block device"
            )));
        };
        let block_count = capacity / u64::from(block_size);
        if block_count == 0 {
            return Err(DriverError::Config(format!(
                "{shown}: {capacity} bytes is smaller than one {block_size}-byte block"
            )));
        }
        let geometry = Geometry {
            block_size,
            block_count,
            max_transfer_bytes: cfg.max_transfer_bytes,
            atomic_write_blocks: 1,
            // FUA is a write then fdatasync here, whatever the device does.
            fua_native: false,
            volatile_write_cache,
            write_zeroes: true,
            dma_align: block_size.max(4096),
        };
        probe(&file, path, &geometry)?;
        log::info!(
            "psync: {shown}: {block_count} blocks of {block_size} bytes ({:?}, volatile write cache {volatile_write_cache})",
            backing
        );
        Ok(PsyncDevice {
            file: Arc::new(file),
            path: path.clone(),
            backing,
            geometry,
        })
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True for a block device, false for a regular file.
    pub fn is_block_device(&self) -> bool {
        self.backing == Backing::BlockDevice
    }
}

impl BlockDevice for PsyncDevice {
    type Qpair = PsyncQpair;

    fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Opens a queue pair. `opts.regions` are not needed: the kernel path takes any buffer.
    fn open_qpair(&self, opts: &QpairOptions) -> Result<PsyncQpair, DriverError> {
        if opts.depth == 0 {
            return Err(DriverError::Config("queue depth must be at least 1".into()));
        }
        let pool = DmaPool::new(PoolConfig {
            buf_bytes: self.geometry.max_transfer_bytes as usize,
            count: 1,
            align: self.geometry.dma_align as usize,
            source: DmaSource::Heap,
        })?;
        let mut zeros = pool
            .alloc()
            .expect("a fresh pool of one buffer has one free");
        zeros.as_mut_slice().fill(0);
        Ok(PsyncQpair {
            file: Arc::clone(&self.file),
            backing: self.backing,
            geometry: self.geometry,
            depth: opts.depth,
            done: VecDeque::with_capacity(opts.depth as usize),
            stats: IoStats::default(),
            zero_by_write: false,
            zeros,
        })
    }
}

/// A queue pair of a [`PsyncDevice`]: each command runs to the end inside `submit`.
#[derive(Debug)]
pub struct PsyncQpair {
    file: Arc<File>,
    backing: Backing,
    geometry: Geometry,
    depth: u32,
    /// Finished commands not yet handed to `poll`; never grows past `depth`.
    done: VecDeque<Completion>,
    stats: IoStats,
    /// The kernel refused to zero a range itself: write `zeros` instead from now on.
    zero_by_write: bool,
    /// Zero-filled, `max_transfer_bytes` long: the source of fallback write-zeroes.
    zeros: DmaBuf,
}

impl PsyncQpair {
    /// True once write-zeroes has fallen back to writing zero-filled buffers, because the
    /// file system or device answered `EOPNOTSUPP` or `EINVAL` to zeroing a range itself.
    pub fn zeroes_by_write(&self) -> bool {
        self.zero_by_write
    }

    /// Runs one validated command to the end.
    fn execute(&mut self, cmd: &mut Command) -> io::Result<()> {
        let bs = u64::from(self.geometry.block_size);
        // Cannot overflow: validate checked lba + blocks <= block_count, and the capacity
        // block_count * block_size came from a u64 byte count.
        let offset = cmd.lba() * bs;
        match cmd {
            Command::Read { buf, .. } => read_exact_at(&self.file, buf.as_mut_slice(), offset),
            Command::Write { buf, fua, .. } => {
                write_all_at(&self.file, buf.as_slice(), offset)?;
                if *fua {
                    self.file.sync_data()?;
                }
                Ok(())
            }
            Command::Flush => self.file.sync_data(),
            Command::WriteZeroes { blocks, .. } => {
                self.write_zeroes(offset, u64::from(*blocks) * bs)
            }
        }
    }

    /// Zeroes `len` bytes at `offset`: natively while the kernel can, else by writing.
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if !self.zero_by_write {
            match zero_range(&self.file, self.backing, offset, len) {
                Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => {
                    log::info!(
                        "psync: zeroing a range natively failed ({e}); writing zero buffers instead"
                    );
                    self.zero_by_write = true;
                }
                other => return other,
            }
        }
        let chunk = self.zeros.len() as u64;
        let mut done = 0;
        while done < len {
            let n = chunk.min(len - done) as usize;
            write_all_at(&self.file, &self.zeros.as_slice()[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }
}

impl QueuePair for PsyncQpair {
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    fn depth(&self) -> u32 {
        self.depth
    }

    fn in_flight(&self) -> u32 {
        self.done.len() as u32
    }

    fn submit(&mut self, tag: u64, mut cmd: Command) -> Result<(), Rejected> {
        let op = cmd.op();
        if self.done.len() as u32 >= self.depth {
            let error = DriverError::QueueFull {
                op,
                depth: self.depth,
            };
            return Err(Rejected { error, cmd });
        }
        if let Err(error) = validate(&self.geometry, &cmd) {
            return Err(Rejected { error, cmd });
        }
        let lba = cmd.lba();
        let bytes = match &cmd {
            Command::WriteZeroes { blocks, .. } => {
                u64::from(*blocks) * u64::from(self.geometry.block_size)
            }
            other => other.data_len() as u64,
        };
        let result = self
            .execute(&mut cmd)
            .map_err(|source| DriverError::Io { op, lba, source });
        self.stats.count(op, bytes, result.is_ok());
        self.done.push_back(Completion {
            tag,
            op,
            result,
            buf: cmd.into_buf(),
        });
        Ok(())
    }

    /// Nothing to push: every command ran inside `submit`.
    fn kick(&mut self) -> Result<(), DriverError> {
        Ok(())
    }

    fn poll(&mut self, max: u32, on_done: &mut dyn FnMut(Completion)) -> u32 {
        let mut n = 0;
        while n < max {
            let Some(c) = self.done.pop_front() else {
                break;
            };
            on_done(c);
            n += 1;
        }
        n
    }

    fn stats(&self) -> IoStats {
        self.stats
    }
}

/// Fills `buf` from `offset`, retrying short reads and `EINTR`. End of file before the
/// buffer is full (the file shrank under us) is `EIO`.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => {
                log::warn!(
                    "psync: read at byte {} hit end of file {} bytes early",
                    offset + done as u64,
                    buf.len() - done
                );
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `buf` at `offset`, retrying short writes and `EINTR`. A write that makes
/// no progress is `EIO`.
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.write_at(&buf[done..], offset + done as u64) {
            Ok(0) => {
                log::warn!(
                    "psync: write at byte {} made no progress",
                    offset + done as u64
                );
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Asks the kernel to zero a byte range: `fallocate(FALLOC_FL_ZERO_RANGE)` on a file,
/// `BLKZEROOUT` on a block device. Retries `EINTR` (both are idempotent).
fn zero_range(file: &File, backing: Backing, offset: u64, len: u64) -> io::Result<()> {
    let fd = file.as_raw_fd();
    loop {
        let rc = match backing {
            Backing::File => {
                // SAFETY: fallocate takes no pointers; fd stays open while `file` is borrowed.
                unsafe {
                    libc::fallocate(
                        fd,
                        libc::FALLOC_FL_ZERO_RANGE,
                        offset as libc::off_t,
                        len as libc::off_t,
                    )
                }
            }
            Backing::BlockDevice => {
                let range: [u64; 2] = [offset, len];
                // BLKZEROOUT reads two u64s (start, length) through the pointer,
                // which points at `range`, alive and unaliased for the whole call.
                // SAFETY: the kernel reads only `range`.
                unsafe { libc::ioctl(fd, BLKZEROOUT, range.as_ptr()) }
            }
        };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Wraps a system error while opening `path` as [`DriverError::Open`], naming the step.
fn open_err<'a>(path: &'a Path, step: &'a str) -> impl FnOnce(io::Error) -> DriverError + 'a {
    move |source| DriverError::Open {
        what: format!("{}: {step}", path.display()),
        source,
    }
}

/// A block-device ioctl that writes one `c_int`.
fn ioctl_int(file: &File, request: libc::Ioctl) -> io::Result<libc::c_int> {
    let mut out: libc::c_int = 0;
    // SAFETY: the request writes one c_int through the pointer, which points at `out`.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), request, &mut out as *mut libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(out)
}

/// A block-device ioctl that writes one `u64`.
fn ioctl_u64(file: &File, request: libc::Ioctl) -> io::Result<u64> {
    let mut out: u64 = 0;
    // SAFETY: the request writes one u64 through the pointer, which points at `out`.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), request, &mut out as *mut u64) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(out)
}

/// A power of two from 512 bytes to 64 KiB.
fn check_block_size(path: &Path, bs: u32) -> Result<(), DriverError> {
    if !bs.is_power_of_two() || !(512..=MAX_BLOCK_BYTES).contains(&bs) {
        return Err(DriverError::Config(format!(
            "{}: block size {bs} must be a power of two from 512 to {MAX_BLOCK_BYTES}",
            path.display()
        )));
    }
    Ok(())
}

/// A non-zero multiple of the block size.
fn check_max_transfer(path: &Path, max: u32, bs: u32) -> Result<(), DriverError> {
    if max < bs || max % bs != 0 {
        return Err(DriverError::Config(format!(
            "{}: max transfer {max} must be a non-zero multiple of the {bs}-byte block",
            path.display()
        )));
    }
    Ok(())
}

/// Reads block 0 once, so that a block size too small for the file system's direct-I/O
/// alignment is a configuration error at open rather than `EINVAL` on every command.
fn probe(file: &File, path: &Path, geo: &Geometry) -> Result<(), DriverError> {
    let pool = DmaPool::new(PoolConfig {
        buf_bytes: geo.block_size as usize,
        count: 1,
        align: geo.dma_align as usize,
        source: DmaSource::Heap,
    })?;
    let mut buf = pool
        .alloc()
        .expect("a fresh pool of one buffer has one free");
    match read_exact_at(file, buf.as_mut_slice(), 0) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Err(DriverError::Config(format!(
            "{}: an O_DIRECT read of one {}-byte block fails with EINVAL: the block size is \
             below the file system's direct-I/O alignment",
            path.display(),
            geo.block_size
        ))),
        Err(source) => Err(DriverError::Open {
            what: format!("{}: read block 0", path.display()),
            source,
        }),
    }
}

// A queue pair moves to the thread that owns it; the device is shared by all of them.
const _: () = {
    const fn send<T: Send>() {}
    const fn send_sync<T: Send + Sync>() {}
    send::<PsyncQpair>();
    send_sync::<PsyncDevice>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Op;

    fn run(qp: &mut PsyncQpair, cmd: Command) -> Completion {
        qp.submit(1, cmd).expect("submit");
        let mut out = None;
        assert_eq!(qp.poll(1, &mut |c| out = Some(c)), 1);
        out.expect("one completion")
    }

    /// The fallback writes zero buffers in max-transfer chunks, touching nothing outside.
    #[test]
    fn write_zeroes_fallback_chunks_by_max_transfer() {
        let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        let path = dir.path().join("dev");
        let mut cfg = PsyncConfig::new(&path);
        cfg.create_bytes = Some(64 * 4096);
        cfg.max_transfer_bytes = 3 * 4096;
        let dev = PsyncDevice::open(&cfg).unwrap();
        let mut qp = dev.open_qpair(&QpairOptions::depth(4)).unwrap();
        assert_eq!(qp.zeros.len(), 3 * 4096);
        std::fs::write(&path, vec![0x5a; 64 * 4096]).unwrap();

        qp.zero_by_write = true;
        let c = run(&mut qp, Command::WriteZeroes { lba: 5, blocks: 11 });
        c.result.unwrap();
        assert!(qp.zeroes_by_write());

        let data = std::fs::read(&path).unwrap();
        for (i, block) in data.chunks(4096).enumerate() {
            let want = if (5..16).contains(&i) { 0 } else { 0x5a };
            assert!(block.iter().all(|&b| b == want), "block {i}");
        }
        assert_eq!(qp.stats().bytes(Op::WriteZeroes), 11 * 4096);
    }
}
