//! The null device: validates and completes every command at once, moving no data.
//!
//! It measures what the software around a device costs (submission, polling, the caller's
//! bookkeeping): with a null device, IOPS are bounded by the CPU alone.

use std::collections::VecDeque;

use crate::command::{Command, Completion};
use crate::error::{DriverError, Rejected};
use crate::geometry::Geometry;
use crate::qpair::{validate, BlockDevice, IoStats, QpairOptions, QueuePair};

/// A device of the given geometry that stores nothing.
#[derive(Clone, Debug)]
pub struct NullDevice {
    geometry: Geometry,
}

impl NullDevice {
    /// A null device of `block_count` blocks of `block_size` bytes.
    pub fn new(block_size: u32, block_count: u64) -> Result<Self, DriverError> {
        if !block_size.is_power_of_two() || block_size < 512 || block_count == 0 {
            return Err(DriverError::Config(format!(
                "null device: block size {block_size} must be a power of two >= 512 and the device non-empty"
            )));
        }
        Ok(Self {
            geometry: Geometry {
                block_size,
                block_count,
                max_transfer_bytes: 1 << 20,
                atomic_write_blocks: 1,
                fua_native: true,
                volatile_write_cache: false,
                write_zeroes: true,
                dma_align: 4096.min(block_size),
            },
        })
    }
}

impl BlockDevice for NullDevice {
    type Qpair = NullQpair;

    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn open_qpair(&self, opts: &QpairOptions) -> Result<NullQpair, DriverError> {
        if opts.depth == 0 {
            return Err(DriverError::Config("queue depth must be at least 1".into()));
        }
        Ok(NullQpair {
            geometry: self.geometry,
            depth: opts.depth,
            done: VecDeque::with_capacity(opts.depth as usize),
            stats: IoStats::default(),
        })
    }
}

/// A queue pair of the null device.
pub struct NullQpair {
    geometry: Geometry,
    depth: u32,
    done: VecDeque<Completion>,
    stats: IoStats,
}

impl QueuePair for NullQpair {
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    fn depth(&self) -> u32 {
        self.depth
    }

    fn in_flight(&self) -> u32 {
        self.done.len() as u32
    }

    fn submit(&mut self, tag: u64, cmd: Command) -> Result<(), Rejected> {
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
        let bytes = match &cmd {
            Command::WriteZeroes { blocks, .. } => {
                u64::from(*blocks) * u64::from(self.geometry.block_size)
            }
            other => other.data_len() as u64,
        };
        self.stats.count(op, bytes, true);
        self.done.push_back(Completion {
            tag,
            op,
            result: Ok(()),
            buf: cmd.into_buf(),
        });
        Ok(())
    }

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
