//! The simulated device: memory-backed, with the faults real devices have.
//!
//! It is where the engine's crash tests run, so it is adversarial within what the NVMe
//! specification allows, and deterministic: the same seed and the same commands give the
//! same completions, the same timings on a virtual clock, and the same image after a cut.
//!
//! - **Latency**: each command completes `latency_ns` (+ seeded jitter, + transfer time)
//!   after it starts; the device serves at most `parallelism` commands at once. A completion
//!   becomes visible to `poll` only when its time has come, on the real clock or on a
//!   [`SimClock::virtual_clock`] that the test advances.
//! - **Volatile write cache**: a completed write is durable only after a later Flush
//!   completes, or at completion with FUA. [`SimDevice::power_cut`] returns the durable
//!   image, in which every write not yet durable was, by a seeded choice, kept whole, lost,
//!   or torn at logical-block granularity — each block holds the data of some write to it
//!   or its durable value, never other bytes. Writes in flight at the cut are treated the
//!   same way, with or without a cache.
//! - **Atomic write unit**: with `honour_atomic`, a write that fits in
//!   `atomic_write_blocks` without crossing a multiple of it is never torn (NVMe AWUPF).
//!   A single-block write is never torn.
//! - **Faults**: a command of a kind fails on a countdown, or a block range fails
//!   ([`Fault`]); a failed command changes nothing.
//! - **Silent corruption**, which completes without error, for checksums and scrub to
//!   catch: a write misdirected to another block range on a countdown, or dropped when that
//!   range leaves the device ([`Fault::Misdirect`]); and bits flipped at rest in a stored
//!   block, in what reads see and in what survives a power cut ([`SimDevice::flip_bits`]).
//! - **Counters** of commands and bytes per kind, device-wide.

mod clock;
mod fault;
mod media;
mod qpair;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use clock::SimClock;
pub use fault::Fault;
pub use media::CutChoice;
pub use qpair::SimQpair;

use crate::command::Op;
use crate::error::DriverError;
use crate::geometry::Geometry;
use crate::qpair::{BlockDevice, IoStats, QpairOptions};
use fault::Faults;
use media::Media;

/// How the simulated device behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Logical block size.
    pub block_size: u32,
    /// Blocks on the device.
    pub block_count: u64,
    /// Largest transfer of one command.
    pub max_transfer_bytes: u32,
    /// Base service time of every command.
    pub latency_ns: u64,
    /// Extra service time of a flush.
    pub flush_latency_ns: u64,
    /// Up to this much seeded random time added to each command.
    pub jitter_ns: u64,
    /// Service time per KiB moved (bandwidth); 0 for none.
    pub transfer_ns_per_kib: u64,
    /// Commands the device works on at once; 0 for unlimited.
    pub parallelism: u32,
    /// A volatile write cache is on.
    pub volatile_write_cache: bool,
    /// Bytes of unflushed writes the cache holds before it writes back the oldest.
    pub cache_bytes: u64,
    /// Reported atomic write unit for power failure, in blocks (>= 1).
    pub atomic_write_blocks: u32,
    /// Honour the reported atomic write unit at a power cut.
    pub honour_atomic: bool,
    /// Report FUA as native (`Geometry::fua_native`). FUA works the same either way; false
    /// makes the engine choose plain writes and a flush, as on a kernel device without FUA.
    pub fua_native: bool,
    /// Seed of every random choice.
    pub seed: u64,
    /// The clock.
    pub clock: SimClock,
}

impl SimConfig {
    /// A device of `block_count` blocks of `block_size`, no latency, no cache, real clock.
    pub fn new(block_size: u32, block_count: u64) -> Self {
        SimConfig {
            block_size,
            block_count,
            max_transfer_bytes: 1 << 20,
            latency_ns: 0,
            flush_latency_ns: 0,
            jitter_ns: 0,
            transfer_ns_per_kib: 0,
            parallelism: 0,
            volatile_write_cache: false,
            cache_bytes: 256 << 20,
            atomic_write_blocks: 1,
            honour_atomic: true,
            fua_native: true,
            seed: 0,
            clock: SimClock::real(),
        }
    }

    fn check(&self) -> Result<(), DriverError> {
        let bad = |m: String| Err(DriverError::Config(format!("sim device: {m}")));
        if !self.block_size.is_power_of_two() || self.block_size < 512 {
            return bad(format!(
                "block size {} must be a power of two >= 512",
                self.block_size
            ));
        }
        if self.block_count == 0 {
            return bad("device has no blocks".into());
        }
        if self.max_transfer_bytes < self.block_size
            || self.max_transfer_bytes % self.block_size != 0
        {
            return bad(format!(
                "max transfer {} must be a multiple of the block size",
                self.max_transfer_bytes
            ));
        }
        if self.atomic_write_blocks == 0 {
            return bad("atomic write unit must be at least one block".into());
        }
        let bytes = self.block_count.checked_mul(u64::from(self.block_size));
        if bytes.is_none_or(|b| b > isize::MAX as u64) {
            return bad(format!("{} blocks do not fit in memory", self.block_count));
        }
        Ok(())
    }

    fn geometry(&self) -> Geometry {
        Geometry {
            block_size: self.block_size,
            block_count: self.block_count,
            max_transfer_bytes: self.max_transfer_bytes,
            atomic_write_blocks: self.atomic_write_blocks,
            fua_native: self.fua_native,
            volatile_write_cache: self.volatile_write_cache,
            write_zeroes: true,
            dma_align: 512,
        }
    }
}

/// The durable contents of a device after a power cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimImage {
    /// Block size of the device it came from.
    pub block_size: u32,
    /// The bytes, `block_count * block_size` of them.
    pub data: Vec<u8>,
}

/// What a power cut did to the writes that were not yet durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Unflushed writes that reached the media whole (durable ones not counted).
    pub kept: u64,
    /// Unflushed writes that did not reach the media at all.
    pub lost: u64,
    /// Unflushed writes of which only some blocks reached the media.
    pub torn: u64,
}

pub(crate) struct SimState {
    pub(crate) cfg: SimConfig,
    /// `None` once the power is cut.
    pub(crate) media: Option<Media>,
    pub(crate) faults: Faults,
    pub(crate) jitter: fastrand::Rng,
    /// When each of the device's `parallelism` channels is next free.
    pub(crate) channels: Vec<u64>,
    pub(crate) stats: IoStats,
    pub(crate) cuts: u64,
}

impl SimState {
    /// Device time at which a command started now and moving `bytes` completes.
    pub(crate) fn schedule(&mut self, now_ns: u64, bytes: u64, extra_ns: u64) -> u64 {
        let cfg = &self.cfg;
        let mut service =
            cfg.latency_ns + extra_ns + bytes.div_ceil(1024) * cfg.transfer_ns_per_kib;
        if cfg.jitter_ns > 0 {
            service += self.jitter.u64(0..=cfg.jitter_ns);
        }
        match self.channels.iter_mut().min() {
            Some(free_at) => {
                let done = (*free_at).max(now_ns) + service;
                *free_at = done;
                done
            }
            None => now_ns + service,
        }
    }
}

/// A simulated device. Cloning shares the device (all clones see the same media).
#[derive(Clone)]
pub struct SimDevice {
    state: Arc<Mutex<SimState>>,
    /// False once the power is cut (mirrors `SimState::media`, readable without the lock,
    /// so a poll that finds nothing due takes no lock).
    powered: Arc<AtomicBool>,
    pub(crate) geometry: Geometry,
    clock: SimClock,
}

impl std::fmt::Debug for SimDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDevice")
            .field("geometry", &self.geometry)
            .finish()
    }
}

impl SimDevice {
    /// A zero-filled device.
    pub fn new(cfg: SimConfig) -> Result<Self, DriverError> {
        cfg.check()?;
        let bytes = (cfg.block_count * u64::from(cfg.block_size)) as usize;
        Ok(Self::with_data(cfg, vec![0u8; bytes]))
    }

    /// A device holding `image` (as a power cut left it): a restart. Block size and count
    /// come from the image.
    pub fn from_image(mut cfg: SimConfig, image: SimImage) -> Result<Self, DriverError> {
        cfg.block_size = image.block_size;
        cfg.block_count = image.data.len() as u64 / u64::from(image.block_size.max(1));
        cfg.check()?;
        if image.data.len() as u64 != cfg.block_count * u64::from(cfg.block_size) {
            return Err(DriverError::Config(
                "sim image is not a whole number of blocks".into(),
            ));
        }
        Ok(Self::with_data(cfg, image.data))
    }

    fn with_data(cfg: SimConfig, data: Vec<u8>) -> Self {
        let geometry = cfg.geometry();
        let clock = cfg.clock.clone();
        let media = Media::new(data, cfg.block_size as usize, cfg.cache_bytes);
        let state = SimState {
            jitter: fastrand::Rng::with_seed(cfg.seed ^ 0x6a09_e667_f3bc_c908),
            channels: vec![0; cfg.parallelism as usize],
            media: Some(media),
            faults: Faults::default(),
            stats: IoStats::default(),
            cuts: 0,
            cfg,
        };
        SimDevice {
            state: Arc::new(Mutex::new(state)),
            powered: Arc::new(AtomicBool::new(true)),
            geometry,
            clock,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock leaves the media consistent (every update is a
        // whole copy), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The clock the device runs on.
    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// Arms a fault.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.arm(fault);
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Flips bits of one stored byte, as media decay does: byte `byte` of block `lba` is
    /// XORed with `mask` (a zero mask changes nothing). The device reports nothing: no
    /// command fails, and only a checksum can tell.
    ///
    /// The flip is at rest, in the media, not in a write:
    /// - Every read from now on sees it, including a read of a block with a write still in
    ///   flight (which returns the data before that write).
    /// - It is in the durable image: it is applied to the block's current contents and to
    ///   every older version of the block that a power cut could still leave (the data each
    ///   not-yet-durable write to the block replaced). So whatever a later
    ///   [`power_cut`](SimDevice::power_cut) keeps of the block — the newest write, an
    ///   older unflushed one, or the durable value — holds that byte XORed with `mask`.
    /// - A write to the block after the flip replaces the byte; if a power cut then loses
    ///   that write, the flipped byte is back.
    ///
    /// Errors, which change nothing: [`DriverError::Config`] when `lba` is not a block of
    /// the device or `byte` is not inside a block; [`DriverError::PoweredOff`] (as
    /// [`Op::Write`]) once the power is cut.
    pub fn flip_bits(&self, lba: u64, byte: usize, mask: u8) -> Result<(), DriverError> {
        let g = self.geometry;
        if lba >= g.block_count {
            return Err(DriverError::Config(format!(
                "sim device: flip_bits at lba {lba}, past the end of the device ({} blocks)",
                g.block_count
            )));
        }
        if byte >= g.block_size as usize {
            return Err(DriverError::Config(format!(
                "sim device: flip_bits at byte {byte}, outside a {}-byte block",
                g.block_size
            )));
        }
        match self.lock().media.as_mut() {
            Some(media) => {
                media.flip(lba, byte, mask);
                Ok(())
            }
            None => Err(DriverError::PoweredOff { op: Op::Write }),
        }
    }

    /// Commands and bytes the device received, all queue pairs together.
    pub fn stats(&self) -> IoStats {
        self.lock().stats
    }

    /// Writes not yet durable.
    pub fn volatile_writes(&self) -> usize {
        let now = self.clock.now_ns();
        let mut st = self.lock();
        match st.media.as_mut() {
            Some(m) => {
                m.settle(now);
                m.volatile_writes()
            }
            None => 0,
        }
    }

    /// True until [`power_cut`](SimDevice::power_cut).
    pub fn is_powered(&self) -> bool {
        self.powered.load(Ordering::Acquire)
    }

    /// Cuts the power now: returns the image the media holds, with each write that was not
    /// durable kept, lost or torn by a seeded choice. From now on every command fails with
    /// [`DriverError::PoweredOff`], and in-flight commands complete with it.
    ///
    /// Panics if the power is already off (a programmer error).
    pub fn power_cut(&self) -> (SimImage, CutReport) {
        let now = self.clock.now_ns();
        let mut st = self.lock();
        let media = st.media.take().expect("power_cut on a device already off");
        self.powered.store(false, Ordering::Release);
        st.cuts += 1;
        let seed = st
            .cfg
            .seed
            .wrapping_add(st.cuts.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut choices = fastrand::Rng::with_seed(seed);
        let mut blocks = fastrand::Rng::with_seed(seed ^ 0xbb67_ae85_84ca_a73b);
        let unit = u64::from(st.cfg.atomic_write_blocks);
        let honour = st.cfg.honour_atomic;
        let mut counts = [0u64; 3];
        let data = media.cut(
            now,
            |p| {
                let last = p.lba + p.blocks - 1;
                let atomic = p.blocks == 1 || (honour && p.lba / unit == last / unit);
                match (choices.u8(0..3), atomic) {
                    (0, _) => CutChoice::Kept,
                    (1, _) | (2, true) => CutChoice::Lost,
                    _ => CutChoice::Torn,
                }
            },
            || blocks.bool(),
            &mut counts,
        );
        (
            SimImage {
                block_size: st.cfg.block_size,
                data,
            },
            CutReport {
                kept: counts[CutChoice::Kept as usize],
                lost: counts[CutChoice::Lost as usize],
                torn: counts[CutChoice::Torn as usize],
            },
        )
    }
}

impl BlockDevice for SimDevice {
    type Qpair = SimQpair;

    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn open_qpair(&self, opts: &QpairOptions) -> Result<SimQpair, DriverError> {
        if opts.depth == 0 {
            return Err(DriverError::Config("queue depth must be at least 1".into()));
        }
        Ok(SimQpair::new(self.clone(), opts.depth))
    }
}
