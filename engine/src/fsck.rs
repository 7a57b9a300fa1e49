//! fsck: the committed metadata and the allocator agree, and every object is well formed.
//!
//! Checks, per shard: every mapped extent lies inside the shard's data area; no device page
//! is mapped twice (by two objects, or twice by one); no page is mapped past an object's
//! size; the allocator's free and deferred pages plus the mapped pages cover the data area
//! exactly, with no overlap (no leak, no double use).

use keel_drivers::QueuePair;

use crate::shard::Shard;
use crate::types::PAGE;

/// What fsck found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Collections seen.
    pub collections: u64,
    /// Objects seen.
    pub objects: u64,
    /// Pages mapped by objects.
    pub used_pages: u64,
    /// Problems, one line each; empty when clean.
    pub errors: Vec<String>,
}

impl FsckReport {
    /// True when no problem was found.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

pub(crate) fn fsck_shard<Q: QueuePair>(sh: &Shard<Q>, r: &mut FsckReport) {
    let t = sh.table();
    let l = &sh.layout;
    let area = l.data_start..l.data_start + l.data_pages;
    let mut used = Vec::new();
    for c in t.colls() {
        r.collections += 1;
        for (name, o) in t.objects(c).into_iter().flatten() {
            r.objects += 1;
            let shown = String::from_utf8_lossy(name);
            let pages_in_size = o.size.div_ceil(PAGE);
            for (lp, e) in o.extents() {
                if e.pages == 0 {
                    r.errors
                        .push(format!("{c}/{shown}: empty extent at page {lp}"));
                }
                if !area.contains(&e.phys) || e.end() > area.end {
                    r.errors.push(format!(
                        "{c}/{shown}: extent {e:?} outside the data area {area:?}"
                    ));
                }
                if lp + u64::from(e.pages) > pages_in_size {
                    r.errors.push(format!(
                        "{c}/{shown}: page {} mapped past the size of {} bytes",
                        lp + u64::from(e.pages) - 1,
                        o.size
                    ));
                }
                used.push(*e);
                r.used_pages += u64::from(e.pages);
            }
        }
    }
    used.sort_unstable();
    for w in used.windows(2) {
        if w[0].end() > w[1].phys {
            r.errors.push(format!(
                "shard {}: extents {:?} and {:?} overlap",
                sh.id, w[0], w[1]
            ));
        }
    }
    if let Err(e) = sh.alloc.check(used.iter().copied()) {
        r.errors.push(format!("shard {}: allocator: {e}", sh.id));
    }
}
