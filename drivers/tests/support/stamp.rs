//! Stamped blocks, shared by the drivers' test binaries (each includes this file with
//! `#[path]`): every 4 KiB block a test writes holds (write id, block number) over and
//! over, so any block read back names the write it came from and the place it was meant
//! for.

// Each test binary uses what it needs of this file.
#![allow(dead_code)]

/// The block size of a stamp.
pub const STAMP_BLOCK: usize = 4096;

/// Fills `bytes` with the stamps of a write of `write_id` at block `lba`: what that write
/// puts on the media.
pub fn stamp_bytes(bytes: &mut [u8], write_id: u32, lba: u64) {
    for (i, block) in bytes.chunks_mut(STAMP_BLOCK).enumerate() {
        let tag = [
            write_id.to_le_bytes(),
            ((lba + i as u64) as u32).to_le_bytes(),
        ]
        .concat();
        for chunk in block.chunks_mut(8) {
            chunk.copy_from_slice(&tag);
        }
    }
}

/// `len` bytes stamped as a write of `write_id` at block `lba`.
pub fn stamped_bytes(len: usize, write_id: u32, lba: u64) -> Vec<u8> {
    let mut v = vec![0; len];
    stamp_bytes(&mut v, write_id, lba);
    v
}
