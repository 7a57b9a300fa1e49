//! Opens the device named on the command line and hands it to a job.
//!
//! Each driver has its own device type, and a benchmark is generic over [`BlockDevice`] so
//! that the hot loop is monomorphised per driver. [`open`] picks the driver at run time and
//! calls the job's generic [`DeviceJob::run`] with the concrete device.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use keel_drivers::null::NullDevice;
use keel_drivers::nvme::{NvmeConfig, NvmeDevice};
use keel_drivers::psync::{PsyncConfig, PsyncDevice};
use keel_drivers::sim::{SimConfig, SimDevice, SimImage};
use keel_drivers::uring::{UringConfig, UringDevice};
use keel_drivers::{BlockDevice, DriverError};

use crate::cli::{DeviceArgs, DeviceDefaults, Driver};
use crate::error::BenchError;

/// Something to do with an open device, whatever its driver.
pub trait DeviceJob {
    /// What the job produces.
    type Output;

    /// Runs the job on the device.
    /// Every driver's device and queue pairs are `'static` (owned), so a job may move
    /// queue pairs into threads (the reactors of `engine --reactors`).
    fn run<D: BlockDevice + 'static>(self, device: D) -> Result<Self::Output, BenchError>;
}

/// Opens the device `args` describe, with the subcommand's `defaults` for what they leave
/// out, and runs `job` on it. `transfer_bytes` is the largest transfer the job will issue:
/// drivers that let us choose a max transfer get at least that.
pub fn open<J: DeviceJob>(
    args: &DeviceArgs,
    defaults: &DeviceDefaults,
    seed: u64,
    transfer_bytes: u32,
    job: J,
) -> Result<J::Output, BenchError> {
    let driver = args.driver.as_str();
    let open_err = |source: DriverError| BenchError::Open { driver, source };
    let size = args.size(defaults);
    // A null or sim device has no size of its own: every subcommand that opens one has a
    // default size.
    let capacity = || size.expect("null and sim devices have a default --size");
    let block_size = args.block_size.unwrap_or(defaults.block_size);
    match args.driver {
        Driver::Null => job.run(
            NullDevice::new(block_size, capacity() / u64::from(block_size)).map_err(open_err)?,
        ),
        Driver::Sim => {
            let mut cfg = SimConfig::new(block_size, capacity() / u64::from(block_size));
            cfg.latency_ns = args.sim_latency_us.saturating_mul(1000);
            cfg.volatile_write_cache = args.sim_write_cache(defaults);
            cfg.parallelism = args.sim_parallelism;
            cfg.atomic_write_blocks = args.sim_atomic_write_blocks;
            cfg.seed = seed;
            cfg.max_transfer_bytes = cfg.max_transfer_bytes.max(transfer_bytes);
            let dev = if args.sim_prefault {
                let bytes = capacity() / u64::from(block_size) * u64::from(block_size);
                let image = SimImage {
                    block_size,
                    data: prefaulted_zeros(bytes),
                };
                SimDevice::from_image(cfg, image)
            } else {
                SimDevice::new(cfg)
            };
            job.run(dev.map_err(open_err)?)
        }
        Driver::Psync => {
            let path = path(args);
            let mut cfg = PsyncConfig::new(path);
            cfg.create_bytes = size.and_then(|size| create_bytes(path, size));
            cfg.block_size = args.block_size;
            cfg.max_transfer_bytes = cfg.max_transfer_bytes.max(transfer_bytes);
            job.run(PsyncDevice::open(&cfg).map_err(open_err)?)
        }
        Driver::Uring => {
            let path = path(args);
            let mut cfg = UringConfig::new(path);
            cfg.create_bytes = size.and_then(|size| create_bytes(path, size));
            cfg.block_size = args.block_size;
            cfg.max_transfer_bytes = cfg.max_transfer_bytes.max(transfer_bytes);
            cfg.sqpoll = args.sqpoll;
            job.run(UringDevice::open(&cfg).map_err(open_err)?)
        }
        Driver::Nvme => {
            // clap requires --pci with --driver nvme.
            let pci = args.pci.as_deref().expect("--pci is required for nvme");
            let mut cfg = NvmeConfig::new(pci);
            // Larger than MDTS is split into several NVMe commands by the driver.
            cfg.max_transfer_bytes = Some(transfer_bytes);
            job.run(NvmeDevice::open(&cfg).map_err(open_err)?)
        }
    }
}

/// `bytes` zeros, every page of them already mapped: a store through each page (the
/// allocator hands out zeroed memory that the kernel maps only when first written).
fn prefaulted_zeros(bytes: u64) -> Vec<u8> {
    /// The smallest page size of the hosts Keel runs on.
    const HOST_PAGE: usize = 4096;
    let mut data = vec![0u8; bytes as usize];
    for i in (0..data.len()).step_by(HOST_PAGE) {
        // black_box: the compiler may not drop a store of the zero the memory already holds.
        data[i] = std::hint::black_box(0);
    }
    data
}

fn path(args: &DeviceArgs) -> &Path {
    // clap requires --path for the drivers that call this.
    args.path
        .as_deref()
        .expect("--path is required for psync and uring")
}

/// A file is created, or extended, to `size`; a block device is used as it is.
fn create_bytes(path: &Path, size: u64) -> Option<u64> {
    let block_device = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
    (!block_device).then_some(size)
}
