//! The driver on a block device: a loop device over a file (needs root; skips otherwise).

use crate::common::*;

/// A loop device over a temp file, detached on drop.
struct LoopDev {
    path: PathBuf,
    _backing: NamedTempFile,
}

impl LoopDev {
    /// `None` (with a message) where loop devices cannot be set up: not root, no losetup.
    fn new(bytes: u64, sector_size: u32) -> Option<Self> {
        let backing = temp_file();
        backing.as_file().set_len(bytes).unwrap();
        let out = Shell::new("losetup")
            .args(["--find", "--show", "--sector-size"])
            .arg(sector_size.to_string())
            .arg(backing.path())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let path = String::from_utf8(o.stdout).unwrap().trim().into();
                Some(Self {
                    path,
                    _backing: backing,
                })
            }
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                eprintln!("skipping: losetup failed (needs root): {}", err.trim());
                None
            }
            Err(e) => {
                eprintln!("skipping: no losetup: {e}");
                None
            }
        }
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Shell::new("losetup").arg("-d").arg(&self.path).status();
    }
}

#[test]
fn block_device_geometry_and_round_trip_on_a_loop_device() {
    for sector in [512u32, 4096] {
        let Some(lo) = LoopDev::new(8 * MIB as u64, sector) else {
            return;
        };
        let dev = UringDevice::open(&UringConfig::new(&lo.path)).unwrap();
        let g = dev.geometry();
        assert_eq!(g.block_size, sector, "BLKSSZGET on {}", lo.path.display());
        assert_eq!(g.block_count, 8 * MIB as u64 / u64::from(sector));
        assert_eq!(g.dma_align, 4096);
        let name = lo.path.file_name().unwrap().to_str().unwrap();
        let cache =
            std::fs::read_to_string(format!("/sys/class/block/{name}/queue/write_cache")).unwrap();
        assert_eq!(g.volatile_write_cache, cache.trim() == "write back");

        // A block size above the sector size is fine; below it, or create_bytes, is not.
        let mut cfg = UringConfig::new(&lo.path);
        cfg.block_size = Some(4096);
        let dev4k = UringDevice::open(&cfg).unwrap();
        assert_eq!(dev4k.geometry().block_count, 2048);
        cfg.block_size = Some(sector / 2);
        let err = UringDevice::open(&cfg).unwrap_err();
        assert!(matches!(err, DriverError::Config(_)), "{err:?}");
        let mut cfg = UringConfig::new(&lo.path);
        cfg.create_bytes = Some(MIB as u64);
        let err = UringDevice::open(&cfg).unwrap_err();
        assert!(matches!(err, DriverError::Config(_)), "{err:?}");

        // Data and write-zeroes on the 4 KiB view of the device.
        let mut qp = qpair(&dev4k, 8);
        let p = pool(64 * BS, 2);
        write(&mut qp, &p, 6, 100, 64, true);
        assert_eq!(read(&mut qp, &p, 100, 64), stamped(6, 100, 64));
        check_write_zeroes(&mut qp, 64, 3, 40);
        run(&mut qp, Command::Flush).result.unwrap();
        assert_eq!(qp.stats().errors, 0);
    }
}
