//! Per-page checksums and open overwrite intents: the integrity half of the metadata.
//!
//! Every mapped device page has a crc32c of its [`PAGE`](crate::types::PAGE) bytes, set by
//! the `Csum` delta of the transaction that wrote it (docs/integrity.md). On media the sums
//! live in the checkpoint next to the extents that map the pages; in memory they are one
//! dense array indexed by device page (4 bytes per page of the data area, grown on demand),
//! so a read or a scrub finds a page's sum in O(1) whatever object it belongs to.
//!
//! An *open intent* marks a mapped page that a metadata-only overwrite may be rewriting in
//! place: it is opened by a journal record durable before the data write starts and closed
//! by the transaction's commit record. After a crash, an intent still open marks the only
//! pages whose data may legitimately disagree with their sum (a torn overwrite,
//! caller-owned); a mismatch anywhere else is corruption.
//!
//! A page that leaves the extent map (freed) loses its sum and its intent, so the state is
//! canonical: two tables with the same extents and the same writes compare equal.

use std::collections::BTreeSet;

/// crc32c of one page.
pub fn page_sum(page: &[u8]) -> u32 {
    crate::crc::crc32c(page)
}

/// Checksums by device page, and the open intents.
#[derive(Clone, Debug, Default)]
pub struct PageSums {
    sums: Vec<u32>,
    intents: BTreeSet<u64>,
}

impl PageSums {
    /// The sum recorded for device page `phys` (0 if none: callers look up mapped pages only).
    pub fn get(&self, phys: u64) -> u32 {
        usize::try_from(phys)
            .ok()
            .and_then(|i| self.sums.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Records `sums` for device pages from `phys`.
    pub fn set(&mut self, phys: u64, sums: &[u32]) {
        let start = phys as usize;
        let end = start + sums.len();
        if self.sums.len() < end {
            self.sums.resize(end, 0);
        }
        self.sums[start..end].copy_from_slice(sums);
    }

    /// Forgets the sum of device page `phys` (its intent, if any, stays).
    pub fn clear(&mut self, phys: u64) {
        if let Some(s) = usize::try_from(phys)
            .ok()
            .and_then(|i| self.sums.get_mut(i))
        {
            *s = 0;
        }
    }

    /// Forgets the sums and intents of `pages` device pages from `phys` (they were freed).
    pub fn forget(&mut self, phys: u64, pages: u64) {
        let start = (phys as usize).min(self.sums.len());
        let end = (phys.saturating_add(pages) as usize).min(self.sums.len());
        self.sums[start..end].fill(0);
        if !self.intents.is_empty() {
            let gone: Vec<u64> = self
                .intents
                .range(phys..phys.saturating_add(pages))
                .copied()
                .collect();
            for p in gone {
                self.intents.remove(&p);
            }
        }
    }

    /// Opens intents on `pages` device pages from `phys`.
    pub fn open_intent(&mut self, phys: u64, pages: u64) {
        self.intents.extend(phys..phys.saturating_add(pages));
    }

    /// Closes intents on `pages` device pages from `phys` (pages without one are skipped).
    pub fn close_intent(&mut self, phys: u64, pages: u64) {
        if self.intents.is_empty() {
            return;
        }
        for p in phys..phys.saturating_add(pages) {
            self.intents.remove(&p);
        }
    }

    /// Whether device page `phys` is inside an open intent.
    pub fn in_intent(&self, phys: u64) -> bool {
        self.intents.contains(&phys)
    }

    /// Open intents, by device page, in order.
    pub fn intents(&self) -> impl Iterator<Item = u64> + '_ {
        self.intents.iter().copied()
    }

    /// Number of pages inside open intents.
    pub fn intent_pages(&self) -> usize {
        self.intents.len()
    }

    /// The recorded sums without the zero tail (the canonical form compared by `==`).
    fn trimmed(&self) -> &[u32] {
        let n = self.sums.iter().rposition(|&s| s != 0).map_or(0, |i| i + 1);
        &self.sums[..n]
    }
}

impl PartialEq for PageSums {
    fn eq(&self, other: &Self) -> bool {
        self.trimmed() == other.trimmed() && self.intents == other.intents
    }
}

impl Eq for PageSums {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_forget_and_canonical_equality() {
        let mut a = PageSums::default();
        a.set(10, &[1, 2, 3]);
        assert_eq!((a.get(9), a.get(10), a.get(12), a.get(13)), (0, 1, 3, 0));
        assert_eq!(a.get(u64::MAX), 0);
        let mut b = PageSums::default();
        b.set(10, &[1, 2]);
        assert_ne!(a, b);
        b.set(12, &[3]);
        assert_eq!(a, b);
        // A freed tail leaves an equal table.
        a.set(100, &[7]);
        a.forget(100, 1);
        assert_eq!(a, b);
        a.forget(11, 1);
        assert_eq!(a.get(11), 0);
        assert_ne!(a, b);
    }

    #[test]
    fn intents_open_close_and_are_forgotten_with_their_pages() {
        let mut s = PageSums::default();
        s.open_intent(5, 3);
        assert!(s.in_intent(5) && s.in_intent(7) && !s.in_intent(8));
        s.close_intent(6, 1);
        assert_eq!(s.intents().collect::<Vec<_>>(), vec![5, 7]);
        s.forget(7, 10);
        assert_eq!(s.intents().collect::<Vec<_>>(), vec![5]);
        let t = PageSums::default();
        assert_ne!(s, t);
        s.close_intent(0, 100);
        assert_eq!(s, t);
    }
}
