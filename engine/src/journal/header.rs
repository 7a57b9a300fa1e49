//! The journal batch header and the checks replay makes (docs/format.md §3).

/// `"KEELJR\0\x02"` (format 2: confirmed sequence, per-page sums).
pub const JOURNAL_MAGIC: [u8; 8] = *b"KEELJR\x00\x02";
/// Bytes of the header at the start of a batch.
pub const HEADER_BYTES: usize = 72;

/// One batch's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Batch sequence number.
    pub seq: u64,
    /// Logical block position of the header.
    pub pos: u64,
    /// Store identity.
    pub uuid: [u8; 16],
    /// Payload bytes after the header.
    pub payload_bytes: u32,
    /// Blocks the batch occupies, header included.
    pub blocks: u32,
    /// Transaction entries in the payload.
    pub entries: u32,
    /// Header crc of the previous batch.
    pub prev_crc: u32,
    /// crc32c of the payload.
    pub payload_crc: u32,
    /// Every batch up to this sequence number was committed (durable, with the data of its
    /// parallel-commit entries) when this one was sealed: replay trusts their entries
    /// without reading their data (docs/integrity.md).
    pub confirmed: u64,
}

/// Why a header does not continue the journal (replay stops there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderReject {
    /// No magic: never written, or overwritten by data.
    Magic,
    /// Header checksum mismatch: torn or corrupt.
    HeaderCrc,
    /// Another store's record.
    Uuid,
    /// Not the sequence number expected next (a stale record from an earlier lap).
    Seq,
    /// Not the position expected.
    Pos,
    /// Does not chain to the previous batch.
    Chain,
    /// Lengths inconsistent with each other or with the ring.
    Length,
}

impl BatchHeader {
    /// Encodes into the first [`HEADER_BYTES`] of `out`; returns the header crc.
    pub fn encode(&self, out: &mut [u8]) -> u32 {
        let h = &mut out[..HEADER_BYTES];
        h[0..8].copy_from_slice(&JOURNAL_MAGIC);
        h[8..16].copy_from_slice(&self.seq.to_le_bytes());
        h[16..24].copy_from_slice(&self.pos.to_le_bytes());
        h[24..40].copy_from_slice(&self.uuid);
        h[40..44].copy_from_slice(&self.payload_bytes.to_le_bytes());
        h[44..48].copy_from_slice(&self.blocks.to_le_bytes());
        h[48..52].copy_from_slice(&self.entries.to_le_bytes());
        h[52..56].copy_from_slice(&self.prev_crc.to_le_bytes());
        h[56..60].copy_from_slice(&self.payload_crc.to_le_bytes());
        h[60..68].copy_from_slice(&self.confirmed.to_le_bytes());
        let crc = crate::crc::crc32c(&h[..68]);
        h[68..72].copy_from_slice(&crc.to_le_bytes());
        crc
    }

    /// Decodes a header and checks it continues the journal at (`seq`, `pos`) after a batch
    /// whose header crc was `prev_crc`. Returns the header and its own crc.
    pub fn decode_expected(
        b: &[u8],
        uuid: &[u8; 16],
        seq: u64,
        pos: u64,
        prev_crc: u32,
        block_size: u32,
        ring_blocks: u64,
    ) -> Result<(BatchHeader, u32), HeaderReject> {
        if b.len() < HEADER_BYTES || b[0..8] != JOURNAL_MAGIC {
            return Err(HeaderReject::Magic);
        }
        let le32 = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let le64 = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let crc = le32(68);
        if crc != crate::crc::crc32c(&b[..68]) {
            return Err(HeaderReject::HeaderCrc);
        }
        let h = BatchHeader {
            seq: le64(8),
            pos: le64(16),
            uuid: b[24..40].try_into().expect("16 bytes"),
            payload_bytes: le32(40),
            blocks: le32(44),
            entries: le32(48),
            prev_crc: le32(52),
            payload_crc: le32(56),
            confirmed: le64(60),
        };
        if &h.uuid != uuid {
            return Err(HeaderReject::Uuid);
        }
        if h.seq != seq {
            return Err(HeaderReject::Seq);
        }
        if h.pos != pos {
            return Err(HeaderReject::Pos);
        }
        if h.prev_crc != prev_crc {
            return Err(HeaderReject::Chain);
        }
        if h.confirmed >= h.seq {
            return Err(HeaderReject::Length);
        }
        let need =
            (HEADER_BYTES as u64 + u64::from(h.payload_bytes)).div_ceil(u64::from(block_size));
        if u64::from(h.blocks) != need || need > ring_blocks {
            return Err(HeaderReject::Length);
        }
        Ok((h, crc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr() -> BatchHeader {
        BatchHeader {
            seq: 9,
            pos: 1000,
            uuid: [3; 16],
            payload_bytes: 500,
            blocks: 2,
            entries: 4,
            prev_crc: 0xabcd,
            payload_crc: 0x1234,
            confirmed: 8,
        }
    }

    fn check(b: &[u8]) -> Result<(BatchHeader, u32), HeaderReject> {
        BatchHeader::decode_expected(b, &[3; 16], 9, 1000, 0xabcd, 512, 64)
    }

    #[test]
    fn accepts_exactly_the_expected_successor() {
        let mut b = [0u8; 512];
        let crc = hdr().encode(&mut b);
        assert_eq!(check(&b), Ok((hdr(), crc)));
        assert_eq!(
            BatchHeader::decode_expected(&b, &[3; 16], 10, 1000, 0xabcd, 512, 64),
            Err(HeaderReject::Seq)
        );
        assert_eq!(
            BatchHeader::decode_expected(&b, &[3; 16], 9, 1001, 0xabcd, 512, 64),
            Err(HeaderReject::Pos)
        );
        assert_eq!(
            BatchHeader::decode_expected(&b, &[3; 16], 9, 1000, 1, 512, 64),
            Err(HeaderReject::Chain)
        );
        assert_eq!(
            BatchHeader::decode_expected(&b, &[4; 16], 9, 1000, 0xabcd, 512, 64),
            Err(HeaderReject::Uuid)
        );
        let mut torn = b;
        torn[20] ^= 1;
        assert_eq!(check(&torn), Err(HeaderReject::HeaderCrc));
        assert_eq!(check(&[0u8; 512]), Err(HeaderReject::Magic));
        let mut long = hdr();
        long.blocks = 3;
        long.encode(&mut b);
        assert_eq!(check(&b), Err(HeaderReject::Length));
    }
}
