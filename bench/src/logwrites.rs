//! The dm-log-writes log format, as QEMU's `blklogwrites` block driver (and Linux's
//! dm-log-writes target) writes it, and the replay of a log onto a base image.
//!
//! A log records every write and flush that reached the device, in completion order:
//!
//! ```text
//!  sector 0            super:  magic u64 | version u64 | nr_entries u64 | sectorsize u32
//!  sector 1            entry:  sector u64 | nr_sectors u64 | flags u64 | data_len u64
//!  sector 2..2+n       the entry's data (n = nr_sectors for a write, none for a flush or a
//!                      discard, data_len bytes rounded up to sectors for a mark)
//!  next sector         entry ...
//! ```
//!
//! All little-endian, every part padded to `sectorsize` (the log's sector size, which is
//! also the unit of `sector` and `nr_sectors`). Flags: FLUSH 1, FUA 2, DISCARD 4, MARK 8,
//! METADATA 16. QEMU writes a flush as an entry with FLUSH and no data, and a FUA write as a
//! plain write followed by a flush entry (the block layer emulates FUA with a flush), and it
//! updates `nr_entries` in the super only on a flush and every 4096 entries: entries past
//! it, up to the first all-zero header of a fresh log file, are read too.
//!
//! Replaying entries `0..end` onto a copy of the image the device started from gives the
//! image a crash at that point could have left, as far as the log knows: up to flush `n`
//! and no further ([`WriteLog::cut`] with `drop_unflushed`), or with the writes completed
//! after it but not yet flushed as well.

use std::ops::Range;
use std::path::{Path, PathBuf};

/// `log_write_super.magic` (the bytes "rhswfsj" read little-endian).
pub const MAGIC: u64 = 0x006a_7366_7773_6872;
/// `log_write_super.version`.
pub const VERSION: u64 = 1;
/// A flush (no data).
pub const FLAG_FLUSH: u64 = 1 << 0;
/// A write with Force Unit Access.
pub const FLAG_FUA: u64 = 1 << 1;
/// A discard (no data).
pub const FLAG_DISCARD: u64 = 1 << 2;
/// A mark: `data_len` bytes of a label follow.
pub const FLAG_MARK: u64 = 1 << 3;
/// A metadata write (dm-log-writes only; written like any other write).
pub const FLAG_METADATA: u64 = 1 << 4;

const SUPER_BYTES: usize = 28;
const ENTRY_BYTES: usize = 32;

/// Why a log could not be read or replayed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file could not be read.
    #[error("read the write log {path}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The log is not one.
    #[error("not a dm-log-writes log: {0}")]
    Format(String),
    /// An entry lies past the end of the log.
    #[error("entry {index} at byte {offset} is cut off by the end of the log")]
    Truncated {
        /// The entry.
        index: u64,
        /// Byte offset of its header.
        offset: u64,
    },
    /// A write lies past the end of the image.
    #[error("entry {index} writes bytes {start}..{end}, past the image's {image} bytes")]
    PastImage {
        /// The entry.
        index: u64,
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// Image size.
        image: u64,
    },
    /// A flush mark that the log does not have.
    #[error("flush {asked} asked for, the log has {have}")]
    NoSuchFlush {
        /// Asked for (1-based).
        asked: usize,
        /// Flushes in the log.
        have: usize,
    },
}

/// One entry of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Position in the log, from 0.
    pub index: u64,
    /// First sector written (log sectors).
    pub sector: u64,
    /// Sectors written.
    pub nr_sectors: u64,
    /// FLAG_* bits.
    pub flags: u64,
    /// Bytes of a mark's label.
    pub data_len: u64,
    /// Byte offset of the entry's data in the log.
    pub data_offset: u64,
    /// Bytes of data in the log.
    pub data_bytes: u64,
}

impl LogEntry {
    /// A flush.
    pub fn is_flush(&self) -> bool {
        self.flags & FLAG_FLUSH != 0
    }

    /// An entry that carries data to the device (not a plain flush, a discard or a mark).
    pub fn is_write(&self) -> bool {
        self.flags & (FLAG_DISCARD | FLAG_MARK) == 0 && self.nr_sectors > 0
    }

    /// Short name of what the entry is.
    pub fn kind(&self) -> &'static str {
        if self.flags & FLAG_MARK != 0 {
            "mark"
        } else if self.flags & FLAG_DISCARD != 0 {
            "discard"
        } else if self.is_flush() && self.nr_sectors == 0 {
            "flush"
        } else if self.flags & FLAG_FUA != 0 {
            "write-fua"
        } else if self.flags & FLAG_METADATA != 0 {
            "write-meta"
        } else {
            "write"
        }
    }
}

/// A parsed log, with its bytes.
pub struct WriteLog {
    /// Log sector size in bytes.
    pub sector_size: u32,
    /// `nr_entries` of the super (may lag behind the entries).
    pub super_entries: u64,
    /// Every entry, in order.
    pub entries: Vec<LogEntry>,
    bytes: Vec<u8>,
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl WriteLog {
    /// Reads and parses the log at `path`.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let bytes = std::fs::read(path).map_err(|source| LogError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(bytes)
    }

    /// Parses a log.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, LogError> {
        if bytes.len() < SUPER_BYTES {
            return Err(LogError::Format(format!(
                "{} bytes, shorter than the super",
                bytes.len()
            )));
        }
        let magic = le64(&bytes, 0);
        if magic != MAGIC {
            return Err(LogError::Format(format!(
                "magic {magic:#x}, expected {MAGIC:#x}"
            )));
        }
        let version = le64(&bytes, 8);
        if version != VERSION {
            return Err(LogError::Format(format!(
                "version {version}, expected {VERSION}"
            )));
        }
        let super_entries = le64(&bytes, 16);
        let sector_size = u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes"));
        if !(512..=65536).contains(&sector_size) || !sector_size.is_power_of_two() {
            return Err(LogError::Format(format!("sector size {sector_size}")));
        }
        let ss = u64::from(sector_size);
        let len = bytes.len() as u64;
        let mut entries = Vec::new();
        let mut at = ss;
        loop {
            let index = entries.len() as u64;
            let past_super = index >= super_entries;
            if at + ENTRY_BYTES as u64 > len {
                if past_super {
                    break;
                }
                return Err(LogError::Truncated { index, offset: at });
            }
            let h = &bytes[at as usize..at as usize + ENTRY_BYTES];
            if past_super && h.iter().all(|&b| b == 0) {
                break;
            }
            let (sector, nr_sectors, flags, data_len) =
                (le64(h, 0), le64(h, 8), le64(h, 16), le64(h, 24));
            let data_bytes = if flags & FLAG_MARK != 0 {
                data_len.div_ceil(ss) * ss
            } else if flags & FLAG_DISCARD != 0 {
                0
            } else {
                // A write; a flush has no sectors (dm-log-writes logs a flush that carries
                // data as one entry with both).
                nr_sectors.saturating_mul(ss)
            };
            let data_offset = at + ss;
            if data_offset.saturating_add(data_bytes) > len {
                if past_super {
                    break;
                }
                return Err(LogError::Truncated { index, offset: at });
            }
            entries.push(LogEntry {
                index,
                sector,
                nr_sectors,
                flags,
                data_len,
                data_offset,
                data_bytes,
            });
            at = data_offset + data_bytes;
        }
        Ok(WriteLog {
            sector_size,
            super_entries,
            entries,
            bytes,
        })
    }

    /// The data an entry carries.
    pub fn data(&self, e: &LogEntry) -> &[u8] {
        &self.bytes[e.data_offset as usize..(e.data_offset + e.data_bytes) as usize]
    }

    /// Byte range of the device a write covers.
    pub fn device_bytes(&self, e: &LogEntry) -> Range<u64> {
        let ss = u64::from(self.sector_size);
        e.sector * ss..(e.sector + e.nr_sectors) * ss
    }

    /// Positions (in `entries`) of the flushes, in order.
    pub fn flushes(&self) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| self.entries[i].is_flush())
            .collect()
    }

    /// End (exclusive) of the entries to replay for flush mark `n` (1-based; 0 is the
    /// start of the log): up to and including flush `n` when `drop_unflushed`, else up to
    /// the next flush, so the writes completed after flush `n` are in as well.
    pub fn cut(&self, n: usize, drop_unflushed: bool) -> Result<usize, LogError> {
        let f = self.flushes();
        if n > f.len() {
            return Err(LogError::NoSuchFlush {
                asked: n,
                have: f.len(),
            });
        }
        Ok(if drop_unflushed {
            if n == 0 {
                0
            } else {
                f[n - 1] + 1
            }
        } else {
            f.get(n).copied().unwrap_or(self.entries.len())
        })
    }

    /// Applies the writes of `entries[range]` to `image`, in order. Discards leave the
    /// image as it was (a device may or may not zero them); flushes and marks write
    /// nothing.
    pub fn apply(&self, image: &mut [u8], range: Range<usize>) -> Result<(), LogError> {
        for e in &self.entries[range] {
            if !e.is_write() {
                continue;
            }
            let r = self.device_bytes(e);
            if r.end > image.len() as u64 {
                return Err(LogError::PastImage {
                    index: e.index,
                    start: r.start,
                    end: r.end,
                    image: image.len() as u64,
                });
            }
            image[r.start as usize..r.end as usize].copy_from_slice(self.data(e));
        }
        Ok(())
    }
}

/// `keel-bench logwrites`.
#[derive(Debug, clap::Args)]
pub struct LogwritesArgs {
    /// What to do with the log.
    #[command(subcommand)]
    pub command: LogwritesCommand,
}

/// The log tools.
#[derive(Debug, clap::Subcommand)]
pub enum LogwritesCommand {
    /// Print the super and one line per entry.
    Dump {
        /// The log.
        #[arg(long)]
        log: PathBuf,
    },
    /// Rebuild the image a crash at a flush mark could have left.
    Replay {
        /// The log.
        #[arg(long)]
        log: PathBuf,
        /// The device's image before the logged run (not modified).
        #[arg(long)]
        base: PathBuf,
        /// Where to write the rebuilt image.
        #[arg(long)]
        out: PathBuf,
        /// Flush mark (1-based; 0: the start of the log).
        #[arg(long)]
        upto_flush: usize,
        /// Drop the writes completed after the flush (else: kept up to the next flush).
        #[arg(long)]
        drop_unflushed: bool,
    },
}

/// Runs `keel-bench logwrites`; returns what to print.
pub fn run(args: &LogwritesArgs) -> Result<String, crate::error::BenchError> {
    use std::fmt::Write as _;
    match &args.command {
        LogwritesCommand::Dump { log } => {
            let log = WriteLog::open(log)?;
            let mut out = String::new();
            let _ = writeln!(
                out,
                "sector size {}, super nr_entries {}, entries {}, flushes {}",
                log.sector_size,
                log.super_entries,
                log.entries.len(),
                log.flushes().len()
            );
            for e in &log.entries {
                let _ = writeln!(
                    out,
                    "{:>8} {:<9} sector {:>10} sectors {:>6} flags {:#x}",
                    e.index,
                    e.kind(),
                    e.sector,
                    e.nr_sectors,
                    e.flags
                );
            }
            Ok(out)
        }
        LogwritesCommand::Replay {
            log,
            base,
            out,
            upto_flush,
            drop_unflushed,
        } => {
            let log = WriteLog::open(log)?;
            let mut image = std::fs::read(base).map_err(|source| LogError::Read {
                path: base.display().to_string(),
                source,
            })?;
            let end = log.cut(*upto_flush, *drop_unflushed)?;
            log.apply(&mut image, 0..end)?;
            std::fs::write(out, &image).map_err(|e| {
                crate::error::BenchError::CrashLog(format!("write {}: {e}", out.display()))
            })?;
            Ok(format!(
                "{}: {} of {} entries replayed (flush {upto_flush}, unflushed writes {})\n",
                out.display(),
                end,
                log.entries.len(),
                if *drop_unflushed { "dropped" } else { "kept" }
            ))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a log the way QEMU writes one: `ops` are (sector, data) writes, or flushes
    /// for `None`. `super_entries` may lag, as QEMU's does.
    pub(crate) fn build(ss: usize, ops: &[Option<(u64, Vec<u8>)>], super_entries: u64) -> Vec<u8> {
        let mut log = vec![0u8; ss];
        log[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        log[8..16].copy_from_slice(&VERSION.to_le_bytes());
        log[16..24].copy_from_slice(&super_entries.to_le_bytes());
        log[24..28].copy_from_slice(&(ss as u32).to_le_bytes());
        for op in ops {
            let mut h = vec![0u8; ss];
            match op {
                None => h[16..24].copy_from_slice(&FLAG_FLUSH.to_le_bytes()),
                Some((sector, data)) => {
                    h[0..8].copy_from_slice(&sector.to_le_bytes());
                    h[8..16].copy_from_slice(&((data.len() / ss) as u64).to_le_bytes());
                }
            }
            log.extend_from_slice(&h);
            if let Some((_, data)) = op {
                log.extend_from_slice(data);
            }
        }
        log
    }

    fn ops() -> Vec<Option<(u64, Vec<u8>)>> {
        vec![
            Some((0, vec![1; 1024])),
            None,
            Some((4, vec![2; 512])),
            Some((1, vec![3; 512])),
            None,
            Some((6, vec![4; 1024])),
        ]
    }

    #[test]
    fn parses_entries_with_their_data() {
        let log = WriteLog::parse(build(512, &ops(), 6)).unwrap();
        assert_eq!(log.sector_size, 512);
        assert_eq!(log.entries.len(), 6);
        let kinds: Vec<_> = log.entries.iter().map(|e| e.kind()).collect();
        assert_eq!(
            kinds,
            ["write", "flush", "write", "write", "flush", "write"]
        );
        assert_eq!(log.entries[0].data_offset, 1024);
        assert_eq!(log.data(&log.entries[0]), &[1u8; 1024][..]);
        assert_eq!(log.entries[1].data_bytes, 0);
        assert_eq!(log.device_bytes(&log.entries[5]), 3072..4096);
        assert_eq!(log.data(&log.entries[5]), &[4u8; 1024][..]);
        assert_eq!(log.flushes(), vec![1, 4]);
    }

    #[test]
    fn reads_entries_past_a_lagging_super_up_to_zeroes() {
        // QEMU updates nr_entries on flushes: the last write is past it. A fresh log file
        // is zero after the last entry.
        let mut bytes = build(512, &ops(), 5);
        bytes.extend_from_slice(&[0u8; 2048]);
        let log = WriteLog::parse(bytes).unwrap();
        assert_eq!((log.super_entries, log.entries.len()), (5, 6));
    }

    #[test]
    fn refuses_what_is_not_a_log() {
        let mut bytes = build(512, &ops(), 6);
        bytes[0] ^= 1;
        assert!(matches!(
            WriteLog::parse(bytes),
            Err(LogError::Format(m)) if m.contains("magic")
        ));
        let bytes = build(512, &ops(), 6);
        let short = bytes[..bytes.len() - 512].to_vec();
        assert!(matches!(
            WriteLog::parse(short),
            Err(LogError::Truncated { index: 5, .. })
        ));
        assert!(WriteLog::parse(vec![0; 10]).is_err());
        let mut odd = build(512, &[], 0);
        odd[24..28].copy_from_slice(&1000u32.to_le_bytes());
        assert!(WriteLog::parse(odd).is_err());
    }

    #[test]
    fn cuts_at_flush_marks() {
        let log = WriteLog::parse(build(512, &ops(), 6)).unwrap();
        assert_eq!(log.cut(0, true).unwrap(), 0);
        assert_eq!(log.cut(0, false).unwrap(), 1);
        assert_eq!(log.cut(1, true).unwrap(), 2);
        assert_eq!(log.cut(1, false).unwrap(), 4);
        assert_eq!(log.cut(2, true).unwrap(), 5);
        assert_eq!(log.cut(2, false).unwrap(), 6);
        assert!(matches!(
            log.cut(3, true),
            Err(LogError::NoSuchFlush { asked: 3, have: 2 })
        ));
    }

    #[test]
    fn replays_in_order_onto_the_base() {
        let log = WriteLog::parse(build(512, &ops(), 6)).unwrap();
        let mut img = vec![9u8; 4096];
        log.apply(&mut img, 0..log.cut(1, true).unwrap()).unwrap();
        assert_eq!(&img[..1024], &[1u8; 1024][..]);
        assert_eq!(&img[1024..], &[9u8; 3072][..]);
        let mut img = vec![9u8; 4096];
        log.apply(&mut img, 0..log.entries.len()).unwrap();
        // Entry 3 overwrote the second sector of entry 0.
        assert_eq!(&img[..512], &[1u8; 512][..]);
        assert_eq!(&img[512..1024], &[3u8; 512][..]);
        assert_eq!(&img[2048..2560], &[2u8; 512][..]);
        assert_eq!(&img[3072..], &[4u8; 1024][..]);
        let mut small = vec![0u8; 2048];
        assert!(matches!(
            log.apply(&mut small, 0..6),
            Err(LogError::PastImage { index: 2, .. })
        ));
    }

    #[test]
    fn discards_and_marks_carry_no_writes() {
        let mut bytes = build(512, &[], 2);
        let mut h = vec![0u8; 512];
        h[0..8].copy_from_slice(&3u64.to_le_bytes());
        h[8..16].copy_from_slice(&2u64.to_le_bytes());
        h[16..24].copy_from_slice(&FLAG_DISCARD.to_le_bytes());
        bytes.extend_from_slice(&h);
        let mut m = vec![0u8; 512];
        m[16..24].copy_from_slice(&FLAG_MARK.to_le_bytes());
        m[24..32].copy_from_slice(&5u64.to_le_bytes());
        bytes.extend_from_slice(&m);
        let mut label = b"mkfs!".to_vec();
        label.resize(512, 0);
        bytes.extend_from_slice(&label);
        let log = WriteLog::parse(bytes).unwrap();
        assert_eq!(log.entries.len(), 2);
        assert_eq!(log.entries[0].kind(), "discard");
        assert_eq!(log.entries[1].kind(), "mark");
        assert_eq!(&log.data(&log.entries[1])[..5], b"mkfs!");
        let mut img = vec![7u8; 4096];
        log.apply(&mut img, 0..2).unwrap();
        assert_eq!(img, vec![7u8; 4096]);
    }
}
