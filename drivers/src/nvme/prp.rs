//! Physical Region Page entries and lists (NVMe Base Specification 1.4, §4.3 "Physical
//! Region Page Entry and List"), and the split of a large transfer into commands of at most
//! MDTS bytes.
//!
//! With a memory page size of 4 KiB (CC.MPS = 0), a transfer of `len` bytes starting at
//! device address `a` touches the pages of `a .. a + len`:
//!
//! ```text
//!   one page          PRP1 = a                      PRP2 = 0
//!   two pages         PRP1 = a                      PRP2 = second page
//!   more              PRP1 = a                      PRP2 = list ─► [p2, p3, ..., pN]
//!   list > 1 page     ... the last entry of each list page points to the next list page
//! ```
//!
//! PRP1 may have an offset within its page (dword aligned); every later entry is
//! page-aligned. Pure functions here: the caller supplies the device address of any byte of
//! the buffer (`None` when that page has none: a typed error, the device is never handed an
//! untranslated address) and the list memory.

/// The memory page size Keel configures (CC.MPS = 0).
pub const PAGE_BYTES: u64 = 4096;
/// PRP entries in one list page.
pub const ENTRIES_PER_PAGE: usize = (PAGE_BYTES / 8) as usize;

/// Why a PRP could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrpError {
    /// No device address for the page holding byte `offset` of the buffer.
    #[error("buffer byte {offset} has no device address (not DMA-mapped memory)")]
    Untranslated {
        /// Byte offset in the buffer.
        offset: u64,
    },
    /// The start address is not dword aligned (§4.3: bits 1:0 of PRP1 are zero).
    #[error("buffer device address {addr:#x} is not dword aligned")]
    Misaligned {
        /// The address.
        addr: u64,
    },
    /// A page after the first translated to an address inside a page rather than its start
    /// (the translation is not page-granular: a bug in the mapping).
    #[error("buffer byte {offset} translated to {addr:#x}, not a page start")]
    NotPageAligned {
        /// Byte offset in the buffer.
        offset: u64,
        /// The address.
        addr: u64,
    },
}

/// The two data pointer fields of a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prp {
    /// PRP Entry 1.
    pub prp1: u64,
    /// PRP Entry 2 (0, a page, or a list pointer).
    pub prp2: u64,
    /// Entries written to the list (0 when no list).
    pub list_entries: u32,
}

/// Pages a transfer of `len` bytes starting at page offset `offset` touches.
pub fn pages_touched(offset: u64, len: u64) -> u64 {
    assert!(len > 0);
    (offset % PAGE_BYTES + len).div_ceil(PAGE_BYTES)
}

/// List slots (8 bytes each) a list for `pages` touched pages needs, chain pointers
/// included, when the list starts at byte `list_offset` of a page. Used to size the list
/// memory of each command at open.
pub fn list_slots(pages: u64, list_offset: u64) -> usize {
    if pages <= 2 {
        return 0;
    }
    let mut entries = pages - 1; // PRP1 holds the first page
    let mut slots = 0u64;
    let mut room = (PAGE_BYTES - list_offset % PAGE_BYTES) / 8;
    while entries > room {
        // Fill the page but its last slot, which chains to the next page.
        slots += room;
        entries -= room - 1;
        room = ENTRIES_PER_PAGE as u64;
    }
    (slots + entries) as usize
}

/// Builds the PRPs for `len` bytes of a buffer whose byte `o` has device address
/// `dev(o)`. `list` is the list memory (as u64 slots) and `list_dev` its device address,
/// contiguous; it must hold [`list_slots`] slots (asserted: sized at open).
pub fn build(
    len: u64,
    mut dev: impl FnMut(u64) -> Option<u64>,
    list: &mut [u64],
    list_dev: u64,
) -> Result<Prp, PrpError> {
    assert!(len > 0, "PRP for an empty transfer");
    assert!(list_dev % 8 == 0, "PRP list must be qword aligned");
    let prp1 = dev(0).ok_or(PrpError::Untranslated { offset: 0 })?;
    if prp1 % 4 != 0 {
        return Err(PrpError::Misaligned { addr: prp1 });
    }
    let first_bytes = PAGE_BYTES - prp1 % PAGE_BYTES;
    let page = |dev: &mut dyn FnMut(u64) -> Option<u64>, offset: u64| {
        let addr = dev(offset).ok_or(PrpError::Untranslated { offset })?;
        if addr % PAGE_BYTES != 0 {
            return Err(PrpError::NotPageAligned { offset, addr });
        }
        Ok(addr)
    };
    if len <= first_bytes {
        return Ok(Prp {
            prp1,
            prp2: 0,
            list_entries: 0,
        });
    }
    let pages = pages_touched(prp1, len);
    if pages == 2 {
        return Ok(Prp {
            prp1,
            prp2: page(&mut dev, first_bytes)?,
            list_entries: 0,
        });
    }
    let need = list_slots(pages, list_dev);
    assert!(
        need <= list.len(),
        "PRP list of {need} slots does not fit the {} reserved",
        list.len()
    );
    let mut slot = 0usize;
    for k in 1..pages {
        let slot_dev = list_dev + 8 * slot as u64;
        let last_in_page = (slot_dev + 8) % PAGE_BYTES == 0;
        if last_in_page && k + 1 < pages {
            // Not the final entry and no room for two: chain to the next list page.
            list[slot] = slot_dev + 8;
            slot += 1;
        }
        list[slot] = page(&mut dev, first_bytes + (k - 1) * PAGE_BYTES)?;
        slot += 1;
    }
    Ok(Prp {
        prp1,
        prp2: list_dev,
        list_entries: slot as u32,
    })
}

/// Splits a transfer of `len` bytes into pieces of at most `max` bytes: (offset, length).
pub fn split(len: u64, max: u64) -> impl Iterator<Item = (u64, u64)> {
    assert!(max > 0);
    (0..len.div_ceil(max)).map(move |i| {
        let off = i * max;
        (off, max.min(len - off))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer scattered over pages: page i of the buffer at `base_pages[i]`.
    fn scattered(base_pages: Vec<u64>, offset: u64) -> impl FnMut(u64) -> Option<u64> {
        move |o: u64| {
            let at = offset + o;
            base_pages
                .get((at / PAGE_BYTES) as usize)
                .map(|p| p + at % PAGE_BYTES)
        }
    }

    const LIST_DEV: u64 = 0x7700_0000;

    #[test]
    fn one_page() {
        let mut list = [0u64; 4];
        let p = build(4096, scattered(vec![0x10_0000], 0), &mut list, LIST_DEV).unwrap();
        assert_eq!((p.prp1, p.prp2, p.list_entries), (0x10_0000, 0, 0));
        // 512 bytes inside a page at an offset: still one entry.
        let p = build(512, scattered(vec![0x10_0000], 1024), &mut list, LIST_DEV).unwrap();
        assert_eq!((p.prp1, p.prp2), (0x10_0400, 0));
    }

    #[test]
    fn two_pages() {
        let mut list = [0u64; 4];
        let p = build(
            8192,
            scattered(vec![0xa000, 0x3000], 0),
            &mut list,
            LIST_DEV,
        )
        .unwrap();
        assert_eq!((p.prp1, p.prp2, p.list_entries), (0xa000, 0x3000, 0));
        // Unaligned: 4 KiB starting 512 bytes into a page touches two pages.
        let p = build(
            4096,
            scattered(vec![0xa000, 0x3000], 512),
            &mut list,
            LIST_DEV,
        )
        .unwrap();
        assert_eq!((p.prp1, p.prp2), (0xa200, 0x3000));
    }

    #[test]
    fn list() {
        let pages: Vec<u64> = (0..8).map(|i| 0x100_0000 + i * 0x5000).collect();
        let mut list = [0u64; 16];
        let p = build(5 * 4096, scattered(pages.clone(), 0), &mut list, LIST_DEV).unwrap();
        assert_eq!(p.prp1, pages[0]);
        assert_eq!(p.prp2, LIST_DEV);
        assert_eq!(p.list_entries, 4);
        assert_eq!(&list[..4], &pages[1..5]);
        // Unaligned start: 5 pages of data touch 6 pages.
        let p = build(5 * 4096, scattered(pages.clone(), 100), &mut list, LIST_DEV).unwrap();
        assert_eq!(p.prp1, pages[0] + 100);
        assert_eq!(p.list_entries, 5);
        assert_eq!(&list[..5], &pages[1..6]);
    }

    #[test]
    fn list_crossing_list_pages() {
        // 1100 data pages: PRP1 + 1099 list entries; the list starts 16 bytes before a page
        // end, so it chains after 1 entry, then after 511 more twice, then ends.
        let n = 1100u64;
        let pages: Vec<u64> = (0..n).map(|i| 0x4000_0000 + i * PAGE_BYTES * 3).collect();
        let list_dev = LIST_DEV + PAGE_BYTES - 16;
        let slots = list_slots(n, list_dev);
        assert_eq!(slots, 1099 + 3);
        let mut list = vec![0u64; slots];
        let p = build(
            n * PAGE_BYTES,
            scattered(pages.clone(), 0),
            &mut list,
            list_dev,
        )
        .unwrap();
        assert_eq!((p.prp2, p.list_entries as usize), (list_dev, slots));
        // Walk it the way a controller does.
        let mut got = Vec::new();
        let mut i = 0usize;
        while got.len() < (n - 1) as usize {
            let at = list_dev + 8 * i as u64;
            let remaining = (n - 1) as usize - got.len();
            if (at + 8) % PAGE_BYTES == 0 && remaining > 1 {
                assert_eq!(list[i], at + 8, "chain pointer at slot {i}");
            } else {
                got.push(list[i]);
            }
            i += 1;
        }
        assert_eq!(got, &pages[1..]);
    }

    #[test]
    fn list_slots_exact_fit_needs_no_chain() {
        // 513 pages from a page-aligned list: 512 entries fill one list page exactly.
        assert_eq!(list_slots(513, 0), 512);
        assert_eq!(list_slots(514, 0), 514);
        assert_eq!(list_slots(2, 0), 0);
        assert_eq!(list_slots(3, 0), 2);
    }

    #[test]
    fn untranslated_and_misaligned_are_errors() {
        let mut list = [0u64; 8];
        let err = build(
            3 * 4096,
            scattered(vec![0x1000, 0x2000], 0),
            &mut list,
            LIST_DEV,
        );
        assert_eq!(err, Err(PrpError::Untranslated { offset: 8192 }));
        assert_eq!(
            build(4096, |_| None, &mut list, LIST_DEV),
            Err(PrpError::Untranslated { offset: 0 })
        );
        assert_eq!(
            build(512, |_| Some(0x1002), &mut list, LIST_DEV),
            Err(PrpError::Misaligned { addr: 0x1002 })
        );
        let skewed = |o: u64| Some(if o == 0 { 0x1000 } else { 0x5008 + o });
        assert_eq!(
            build(8192, skewed, &mut list, LIST_DEV),
            Err(PrpError::NotPageAligned {
                offset: 4096,
                addr: 0x6008
            })
        );
    }

    #[test]
    fn mdts_split() {
        let max = 512 << 10;
        let pieces: Vec<_> = split(2 << 20, max).collect();
        assert_eq!(pieces.len(), 4);
        assert_eq!(pieces[3], (3 * max, max));
        let pieces: Vec<_> = split(max + 4096, max).collect();
        assert_eq!(pieces, [(0, max), (max, 4096)]);
        assert_eq!(split(4096, max).collect::<Vec<_>>(), [(0, 4096)]);
        assert_eq!(pages_touched(0, max), 128);
        assert_eq!(pages_touched(512, max), 129);
    }
}
