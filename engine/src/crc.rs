//! CRC-32C (Castagnoli), the checksum of every on-media structure (superblock, batch
//! headers and payloads, journal entries, checkpoints) and of every data page.
//!
//! One function, so that the implementation is chosen in one place. `crc-fast` folds the
//! input with carry-less multiplication (PCLMULQDQ or VPCLMULQDQ on x86-64, PMULL on
//! aarch64), chosen at run time, with a table fallback elsewhere. On this project's x86-64
//! machines it sums a 4 KiB page in about 47 ns, against 167 ns for the SSE4.2 `crc32`
//! instruction path of the `crc32c` crate; a 4 KiB write is summed on its way to the
//! device, so this is on the write path's latency. The values are the same: the format
//! does not change.

/// The CRC-32C of `bytes` (initial value and final xor `0xFFFF_FFFF`, reflected).
pub fn crc32c(bytes: &[u8]) -> u32 {
    let sum = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes);
    u32::try_from(sum).expect("a CRC-32 fits 32 bits")
}

#[cfg(test)]
mod tests {
    use super::crc32c;

    #[test]
    fn matches_the_standard_check_value_and_an_independent_implementation() {
        // The catalogue's check value for CRC-32/ISCSI.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // Every length up to two pages and beyond, at every alignment the SIMD paths
        // split on: each against the `crc32c` crate.
        let mut rng = fastrand::Rng::with_seed(7);
        let buf: Vec<u8> = (0..9000).map(|_| rng.u8(..)).collect();
        for len in (0..600).chain([4095, 4096, 4097, 8192, 8980]) {
            for start in [0, 1, 3, 7, 13] {
                let s = &buf[start..start + len];
                assert_eq!(
                    crc32c(s),
                    crc32c::crc32c(s),
                    "length {len} at offset {start}"
                );
            }
        }
    }
}
