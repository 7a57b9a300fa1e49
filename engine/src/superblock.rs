//! The superblock: where each shard's regions are, and which store this is
//! (docs/format.md §2). Written twice at mkfs (pages 0 and 1), read at every open.

use crate::error::{Result, StoreError};
use crate::types::{JournalMode, PAGE};

/// `"KEELSB\0\x01"`.
pub const SB_MAGIC: [u8; 8] = *b"KEELSB\x00\x01";
/// The only format this code reads and writes.
pub const FORMAT_VERSION: u32 = 2;
/// Most shards a store may have.
pub const MAX_SHARDS: usize = 62;
const DESC_OFF: usize = 64;
const DESC_LEN: usize = 64;
const CRC_OFF: usize = PAGE as usize - 4;

const _: () = assert!(DESC_OFF + MAX_SHARDS * DESC_LEN <= CRC_OFF);

/// Where one shard's regions lie, in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardLayout {
    /// First page of the journal ring.
    pub journal_start: u64,
    /// Pages in the journal ring.
    pub journal_pages: u64,
    /// First page of checkpoint slot A.
    pub ckpt_a_start: u64,
    /// First page of checkpoint slot B.
    pub ckpt_b_start: u64,
    /// Pages per checkpoint slot.
    pub ckpt_pages: u64,
    /// First page of the data area.
    pub data_start: u64,
    /// Pages in the data area.
    pub data_pages: u64,
}

/// The decoded superblock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Pages on the device at mkfs.
    pub device_pages: u64,
    /// Identity of the store.
    pub uuid: [u8; 16],
    /// Journal mode chosen at mkfs.
    pub mode: JournalMode,
    /// Logical block size of the device at mkfs.
    pub device_block_size: u32,
    /// One layout per shard.
    pub shards: Vec<ShardLayout>,
}

impl Superblock {
    /// Encodes into one page.
    pub fn encode(&self) -> [u8; PAGE as usize] {
        assert!(!self.shards.is_empty() && self.shards.len() <= MAX_SHARDS);
        let mut p = [0u8; PAGE as usize];
        p[0..8].copy_from_slice(&SB_MAGIC);
        p[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        p[12..16].copy_from_slice(&(PAGE as u32).to_le_bytes());
        p[16..24].copy_from_slice(&self.device_pages.to_le_bytes());
        p[24..40].copy_from_slice(&self.uuid);
        p[40] = self.mode as u8;
        p[44..48].copy_from_slice(&(self.shards.len() as u32).to_le_bytes());
        p[48..56].copy_from_slice(&u64::from(self.device_block_size).to_le_bytes());
        for (i, s) in self.shards.iter().enumerate() {
            let d = &mut p[DESC_OFF + i * DESC_LEN..DESC_OFF + (i + 1) * DESC_LEN];
            for (j, v) in [
                s.journal_start,
                s.journal_pages,
                s.ckpt_a_start,
                s.ckpt_b_start,
                s.ckpt_pages,
                s.data_start,
                s.data_pages,
            ]
            .into_iter()
            .enumerate()
            {
                d[j * 8..j * 8 + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
        let crc = crate::crc::crc32c(&p[..CRC_OFF]);
        p[CRC_OFF..].copy_from_slice(&crc.to_le_bytes());
        p
    }

    /// Decodes and checks one page.
    pub fn decode(p: &[u8]) -> Result<Self> {
        let bad = |m: String| Err(StoreError::NotFormatted(m));
        if p.len() < PAGE as usize {
            return bad("superblock shorter than a page".into());
        }
        if p[0..8] != SB_MAGIC {
            return bad("no Keel superblock magic".into());
        }
        let le32 = |o: usize| u32::from_le_bytes(p[o..o + 4].try_into().expect("4 bytes"));
        let le64 = |o: usize| u64::from_le_bytes(p[o..o + 8].try_into().expect("8 bytes"));
        if le32(CRC_OFF) != crate::crc::crc32c(&p[..CRC_OFF]) {
            return bad("superblock checksum mismatch".into());
        }
        if le32(8) != FORMAT_VERSION {
            return bad(format!(
                "format version {} (this Keel reads {FORMAT_VERSION})",
                le32(8)
            ));
        }
        if u64::from(le32(12)) != PAGE {
            return bad(format!("page size {}", le32(12)));
        }
        let Some(mode) = JournalMode::from_u8(p[40]) else {
            return bad(format!("journal mode byte {}", p[40]));
        };
        let n = le32(44) as usize;
        if n == 0 || n > MAX_SHARDS {
            return bad(format!("{n} shards"));
        }
        let device_pages = le64(16);
        let mut shards = Vec::with_capacity(n);
        for i in 0..n {
            let o = DESC_OFF + i * DESC_LEN;
            let s = ShardLayout {
                journal_start: le64(o),
                journal_pages: le64(o + 8),
                ckpt_a_start: le64(o + 16),
                ckpt_b_start: le64(o + 24),
                ckpt_pages: le64(o + 32),
                data_start: le64(o + 40),
                data_pages: le64(o + 48),
            };
            let regions = [
                (s.journal_start, s.journal_pages),
                (s.ckpt_a_start, s.ckpt_pages),
                (s.ckpt_b_start, s.ckpt_pages),
                (s.data_start, s.data_pages),
            ];
            for (start, len) in regions {
                if start < 2 || len == 0 || start.checked_add(len).is_none_or(|e| e > device_pages)
                {
                    return Err(StoreError::Corrupt(format!(
                        "shard {i}: region at page {start} of {len} pages is outside the device"
                    )));
                }
            }
            shards.push(s);
        }
        let block = le64(48);
        if !(512..=PAGE).contains(&block) || !block.is_power_of_two() {
            return Err(StoreError::Corrupt(format!("device block size {block}")));
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&p[24..40]);
        Ok(Superblock {
            device_pages,
            uuid,
            mode,
            device_block_size: block as u32,
            shards,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Superblock {
        Superblock {
            device_pages: 10_000,
            uuid: [7; 16],
            mode: JournalMode::MetadataOnly,
            device_block_size: 512,
            shards: vec![ShardLayout {
                journal_start: 2,
                journal_pages: 100,
                ckpt_a_start: 102,
                ckpt_b_start: 202,
                ckpt_pages: 100,
                data_start: 302,
                data_pages: 9698,
            }],
        }
    }

    #[test]
    fn round_trips() {
        let sb = sample();
        assert_eq!(Superblock::decode(&sb.encode()).unwrap(), sb);
    }

    #[test]
    fn every_bit_flip_is_caught() {
        let page = sample().encode();
        for byte in (0..PAGE as usize).step_by(7) {
            let mut p = page;
            p[byte] ^= 0x10;
            assert!(
                Superblock::decode(&p).is_err(),
                "flip at byte {byte} not caught"
            );
        }
    }

    #[test]
    fn region_outside_device_is_corrupt() {
        let mut sb = sample();
        sb.shards[0].data_pages += 1;
        assert!(matches!(
            Superblock::decode(&sb.encode()),
            Err(StoreError::Corrupt(_))
        ));
    }
}
