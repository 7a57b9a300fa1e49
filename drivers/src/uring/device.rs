//! Opening the file or block device and finding its geometry.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::qpair::UringQpair;
use crate::error::DriverError;
use crate::geometry::Geometry;
use crate::qpair::{BlockDevice, QpairOptions};

/// Block size of a regular file when the configuration names none.
const FILE_BLOCK_BYTES: u32 = 4096;

/// How to open an io_uring device.
#[derive(Clone, Debug)]
pub struct UringConfig {
    /// A regular file or a block device.
    pub path: PathBuf,
    /// Create the regular file if missing and extend it to this size (never shrinks it).
    pub create_bytes: Option<u64>,
    /// Logical block size; default: the block device's logical sector size
    /// (`BLKSSZGET`), or 4096 for a regular file.
    pub block_size: Option<u32>,
    /// Largest transfer of one command, a multiple of the block size (default 1 MiB).
    pub max_transfer_bytes: u32,
    /// Let a kernel thread poll the submission queue (`IORING_SETUP_SQPOLL`).
    pub sqpoll: bool,
    /// Idle time after which the SQPOLL thread sleeps, in milliseconds.
    pub sqpoll_idle_ms: u32,
}

impl UringConfig {
    /// Opens `path` as it is, with default geometry and no SQPOLL.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            create_bytes: None,
            block_size: None,
            max_transfer_bytes: 1 << 20,
            sqpoll: false,
            sqpoll_idle_ms: 1000,
        }
    }
}

/// A file or block device driven through io_uring. Hands out [`UringQpair`]s, each with its
/// own ring.
#[derive(Debug)]
pub struct UringDevice {
    /// Shared with every queue pair, which registers it with its ring.
    file: Arc<File>,
    path: PathBuf,
    geometry: Geometry,
    sqpoll_idle_ms: Option<u32>,
}

impl UringDevice {
    /// Opens the file or block device with `O_DIRECT | O_RDWR` and finds its geometry.
    pub fn open(cfg: &UringConfig) -> Result<Self, DriverError> {
        let path = cfg.path.as_path();
        let mut opts = OpenOptions::new();
        opts.read(true)
            .write(true)
            .create(cfg.create_bytes.is_some())
            .custom_flags(libc::O_DIRECT);
        let file = opts.open(path).map_err(|source| DriverError::Open {
            what: format!("{} with O_DIRECT | O_RDWR", path.display()),
            source,
        })?;
        let meta = file.metadata().map_err(|source| DriverError::Open {
            what: format!("stat {}", path.display()),
            source,
        })?;

        // RWF_DSYNC on a regular file syncs file system metadata too: never native.
        let fua_native =
            meta.file_type().is_block_device() && crate::blockdev::native_fua(meta.rdev());
        let (capacity_bytes, block_size, volatile_write_cache) = if meta.file_type().is_file() {
            let mut len = meta.len();
            if let Some(want) = cfg.create_bytes {
                if len < want {
                    file.set_len(want).map_err(|source| DriverError::Open {
                        what: format!("extend {} to {want} bytes", path.display()),
                        source,
                    })?;
                    len = want;
                }
            }
            // The page cache is bypassed, but the disk under the file system may still
            // hold writes in a volatile cache: say so, and let the caller flush.
            (len, cfg.block_size.unwrap_or(FILE_BLOCK_BYTES), true)
        } else if meta.file_type().is_block_device() {
            if cfg.create_bytes.is_some() {
                return Err(DriverError::Config(format!(
                    "{}: create_bytes applies to regular files, not block devices",
                    path.display()
                )));
            }
            let bytes = ioctl_u64(&file, BLKGETSIZE64).map_err(|source| DriverError::Open {
                what: format!("BLKGETSIZE64 on {}", path.display()),
                source,
            })?;
            let sector = ioctl_int(&file, libc::BLKSSZGET).map_err(|source| DriverError::Open {
                what: format!("BLKSSZGET on {}", path.display()),
                source,
            })?;
            let block_size = cfg.block_size.unwrap_or(sector);
            if block_size < sector {
                return Err(DriverError::Config(format!(
                    "{}: block size {block_size} is below the device's logical block of {sector} bytes",
                    path.display()
                )));
            }
            (
                bytes,
                block_size,
                crate::blockdev::volatile_write_cache(meta.rdev()),
            )
        } else {
            return Err(DriverError::Config(format!(
                "{}: neither a regular file nor a block device",
                path.display()
            )));
        };

        if !block_size.is_power_of_two() || block_size < 512 {
            return Err(DriverError::Config(format!(
                "{}: block size {block_size} must be a power of two >= 512",
                path.display()
            )));
        }
        let max = cfg.max_transfer_bytes;
        if max < block_size || max % block_size != 0 {
            return Err(DriverError::Config(format!(
                "{}: max transfer of {max} bytes must be a non-zero multiple of the {block_size}-byte block",
                path.display()
            )));
        }
        let block_count = capacity_bytes / u64::from(block_size);
        if block_count == 0 {
            return Err(DriverError::Config(format!(
                "{}: {capacity_bytes} bytes is less than one {block_size}-byte block",
                path.display()
            )));
        }

        let geometry = Geometry {
            block_size,
            block_count,
            max_transfer_bytes: max,
            atomic_write_blocks: 1,
            fua_native,
            volatile_write_cache,
            write_zeroes: true,
            dma_align: block_size.max(4096),
        };
        log::info!(
            "uring {}: {block_count} blocks of {block_size} bytes, volatile write cache {volatile_write_cache}{}",
            path.display(),
            if cfg.sqpoll { ", SQPOLL" } else { "" }
        );
        Ok(Self {
            file: Arc::new(file),
            path: cfg.path.clone(),
            geometry,
            sqpoll_idle_ms: cfg.sqpoll.then_some(cfg.sqpoll_idle_ms),
        })
    }

    /// The path it was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl BlockDevice for UringDevice {
    type Qpair = UringQpair;

    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn open_qpair(&self, opts: &QpairOptions) -> Result<UringQpair, DriverError> {
        UringQpair::open(
            &self.file,
            &self.path,
            self.geometry,
            self.sqpoll_idle_ms,
            opts,
        )
    }
}

/// `BLKGETSIZE64` is `_IOR(0x12, 114, size_t)` (linux/fs.h); libc does not export it.
const BLKGETSIZE64: u64 = {
    // The "read" direction sits at bit 30 on most architectures and at bit 29 (as 2) on
    // those with a 3-bit direction field.
    #[cfg(any(
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "sparc",
        target_arch = "sparc64"
    ))]
    const IOC_READ: u64 = 2 << 29;
    #[cfg(not(any(
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "sparc",
        target_arch = "sparc64"
    )))]
    const IOC_READ: u64 = 2 << 30;
    IOC_READ | ((std::mem::size_of::<libc::size_t>() as u64) << 16) | (0x12 << 8) | 114
};

/// An ioctl that writes a `u64`.
fn ioctl_u64(file: &File, request: u64) -> io::Result<u64> {
    let mut out: u64 = 0;
    // The fd is open for the duration of the call; for BLKGETSIZE64 the kernel
    // writes one u64 (put_u64 in block/ioctl.c, whatever size the request encodes) to the
    // pointer, and `out` is a u64 that lives across the call.
    // SAFETY: the kernel writes only `out`.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), request as libc::Ioctl, &mut out) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(out)
}

/// An ioctl that writes a C `int`, returned as a u32 (negative values are an error).
fn ioctl_int(file: &File, request: libc::Ioctl) -> io::Result<u32> {
    let mut out: libc::c_int = 0;
    // The fd is open for the duration of the call; `request` takes a pointer to an
    // int, and `out` is an int that lives across the call.
    // SAFETY: the kernel writes only `out`.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), request, &mut out) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    u32::try_from(out).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}
