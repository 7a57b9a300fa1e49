//! The simulated media: what reads see now, and what a power cut would leave.
//!
//! `current` is the image every read sees. Each write that is not yet durable is kept in
//! `pending`, in submission order, with the bytes it replaced (`prior`). That is enough to
//! rebuild any state a power cut can leave, without a second full image:
//!
//! ```text
//!  for each block b, walk pending newest-first:
//!    the first entry covering b whose b survived the cut wins:
//!        its data is current[b] if no later entry covers b, else the prior of the next
//!        later entry covering b;
//!    if none survived: b's durable value, the prior of the oldest entry covering b
//!    (or current[b] when no entry covers it).
//! ```
//!
//! An entry becomes durable (kept whole at a cut) when it completes with FUA or without a
//! volatile cache, when a Flush submitted after it completed finishes, or when the cache
//! destages it for room. Durable entries at the front of the log are dropped.
//!
//! A bit flip at rest ([`Media::flip`]) changes the byte in `current` and in the `prior`
//! of every entry covering its block: every version of the block that a read or a cut can
//! pick carries it.

use std::collections::VecDeque;

/// One write (or write-zeroes) not yet known durable.
pub(crate) struct Pending {
    pub(crate) lba: u64,
    pub(crate) blocks: u64,
    /// Contents of the range before this write.
    pub(crate) prior: Vec<u8>,
    /// When the command completes (device time).
    pub(crate) completes_at_ns: u64,
    /// Durable on completion: FUA, or no volatile cache.
    pub(crate) durable_on_completion: bool,
    /// Known durable.
    pub(crate) durable: bool,
}

/// What became of one unflushed write at a power cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutChoice {
    /// Every block reached the media.
    Kept,
    /// No block reached the media.
    Lost,
    /// Some blocks reached the media, others did not.
    Torn,
}

/// A flush in flight: at `completes_at_ns` it makes durable every write completed by
/// `submitted_at_ns`.
#[derive(Clone, Copy)]
pub(crate) struct PendingFlush {
    pub(crate) submitted_at_ns: u64,
    pub(crate) completes_at_ns: u64,
}

pub(crate) struct Media {
    pub(crate) block_size: usize,
    pub(crate) current: Vec<u8>,
    pending: VecDeque<Pending>,
    pending_bytes: u64,
    /// Sequence number of `pending[0]`.
    front_seq: u64,
    /// Writes not yet completed: (sequence number, completion time), in submission order.
    inflight: Vec<(u64, u64)>,
    flushes: Vec<PendingFlush>,
    cache_bytes: u64,
    /// Buffers of dropped entries' priors, for the next writes (a simulated command should
    /// not cost an allocation).
    spare: Vec<Vec<u8>>,
}

/// Most buffers kept in [`Media::spare`].
const SPARE_PRIORS: usize = 256;

impl Media {
    pub(crate) fn new(current: Vec<u8>, block_size: usize, cache_bytes: u64) -> Self {
        Media {
            front_seq: 0,
            inflight: Vec::new(),
            block_size,
            current,
            pending: VecDeque::new(),
            pending_bytes: 0,
            flushes: Vec::new(),
            cache_bytes,
            spare: Vec::new(),
        }
    }

    fn range(&self, lba: u64, blocks: u64) -> std::ops::Range<usize> {
        let start = lba as usize * self.block_size;
        start..start + blocks as usize * self.block_size
    }

    /// Reads at device time `now_ns`. A block with a write still in flight reads as it was
    /// before that write: a device promises nothing about such a read, so the simulator
    /// gives the answer that exposes a reader relying on the new data.
    pub(crate) fn read(&mut self, lba: u64, out: &mut [u8], now_ns: u64) {
        let blocks = (out.len() / self.block_size) as u64;
        let r = self.range(lba, blocks);
        out.copy_from_slice(&self.current[r]);
        self.forget_completed(now_ns);
        let bs = self.block_size;
        for &(seq, _) in self.inflight.iter().rev() {
            let Some(p) = seq
                .checked_sub(self.front_seq)
                .and_then(|i| self.pending.get(i as usize))
            else {
                continue; // destaged: its prior is gone, treat it as done
            };
            let lo = p.lba.max(lba);
            let hi = (p.lba + p.blocks).min(lba + blocks);
            for b in lo..hi {
                let src = (b - p.lba) as usize * bs;
                let dst = (b - lba) as usize * bs;
                out[dst..dst + bs].copy_from_slice(&p.prior[src..src + bs]);
            }
        }
    }

    /// Applies a write now (reads see it at once) and logs it until durable.
    /// `data = None` writes zeroes.
    pub(crate) fn write(
        &mut self,
        lba: u64,
        blocks: u64,
        data: Option<&[u8]>,
        completes_at_ns: u64,
        durable_on_completion: bool,
    ) {
        let r = self.range(lba, blocks);
        let mut prior = self.spare.pop().unwrap_or_default();
        prior.clear();
        prior.extend_from_slice(&self.current[r.clone()]);
        match data {
            Some(d) => self.current[r].copy_from_slice(d),
            None => self.current[r].fill(0),
        }
        self.pending_bytes += prior.len() as u64;
        self.inflight
            .push((self.front_seq + self.pending.len() as u64, completes_at_ns));
        self.pending.push_back(Pending {
            lba,
            blocks,
            prior,
            completes_at_ns,
            durable_on_completion,
            durable: false,
        });
        // A full cache writes back its oldest entries to make room.
        while self.pending_bytes > self.cache_bytes {
            match self.pending.front_mut() {
                Some(p) if !p.durable => p.durable = true,
                _ => {}
            }
            if !self.pop_durable_front() {
                break;
            }
        }
    }

    /// XORs `mask` into byte `byte` of block `lba`, in what reads see now and in every
    /// older version a power cut could leave (the prior of each entry covering the block).
    /// The caller checks that the block and byte exist.
    pub(crate) fn flip(&mut self, lba: u64, byte: usize, mask: u8) {
        let bs = self.block_size;
        self.current[lba as usize * bs + byte] ^= mask;
        for p in self.pending.iter_mut() {
            if (p.lba..p.lba + p.blocks).contains(&lba) {
                p.prior[(lba - p.lba) as usize * bs + byte] ^= mask;
            }
        }
    }

    pub(crate) fn flush(&mut self, submitted_at_ns: u64, completes_at_ns: u64) {
        self.flushes.push(PendingFlush {
            submitted_at_ns,
            completes_at_ns,
        });
    }

    /// Brings durability up to device time `now_ns`: completed FUA / write-through entries
    /// and completed flushes take effect; durable entries at the front are dropped.
    pub(crate) fn settle(&mut self, now_ns: u64) {
        self.forget_completed(now_ns);
        let mut cutoff: Option<u64> = None;
        self.flushes.retain(|f| {
            if f.completes_at_ns <= now_ns {
                cutoff = Some(cutoff.map_or(f.submitted_at_ns, |c| c.max(f.submitted_at_ns)));
                false
            } else {
                true
            }
        });
        for p in self.pending.iter_mut() {
            let done = p.completes_at_ns <= now_ns;
            if (done && p.durable_on_completion) || cutoff.is_some_and(|c| p.completes_at_ns <= c) {
                p.durable = true;
            }
        }
        while self.pop_durable_front() {}
    }

    /// Cheap upkeep after a completion: drop entries at the front that are durable, or
    /// durable on a completion that has happened.
    pub(crate) fn trim(&mut self, now_ns: u64) {
        self.forget_completed(now_ns);
        loop {
            match self.pending.front_mut() {
                Some(p) if p.durable_on_completion && p.completes_at_ns <= now_ns => {
                    p.durable = true
                }
                _ => {}
            }
            if !self.pop_durable_front() {
                break;
            }
        }
    }

    /// Drops the writes completed by `now_ns` from `inflight`; without this a run of writes
    /// with no read between would grow it without end.
    fn forget_completed(&mut self, now_ns: u64) {
        self.inflight.retain(|&(_, at)| at > now_ns);
    }

    fn pop_durable_front(&mut self) -> bool {
        match self.pending.front() {
            Some(p) if p.durable => {
                self.pending_bytes -= p.prior.len() as u64;
                let p = self.pending.pop_front().expect("front exists");
                if self.spare.len() < SPARE_PRIORS {
                    self.spare.push(p.prior);
                }
                self.front_seq += 1;
                true
            }
            _ => false,
        }
    }

    /// Writes not yet durable, and in-flight flushes.
    pub(crate) fn volatile_writes(&self) -> usize {
        self.pending.iter().filter(|p| !p.durable).count()
    }

    /// The image a power cut at `now_ns` leaves. `choose(entry)` picks, per
    /// non-durable write, whether it was kept, lost or torn; `keep_block()` picks the
    /// surviving blocks of a torn write.
    pub(crate) fn cut(
        mut self,
        now_ns: u64,
        mut choose: impl FnMut(&Pending) -> CutChoice,
        mut keep_block: impl FnMut() -> bool,
        counts: &mut [u64; 3],
    ) -> Vec<u8> {
        self.settle(now_ns);
        let bs = self.block_size;
        // Blocks of each entry that survive.
        let survived: Vec<Vec<bool>> = self
            .pending
            .iter()
            .map(|p| {
                let choice = if p.durable {
                    CutChoice::Kept
                } else {
                    let c = choose(p);
                    counts[c as usize] += 1;
                    c
                };
                match choice {
                    CutChoice::Kept => vec![true; p.blocks as usize],
                    CutChoice::Lost => vec![false; p.blocks as usize],
                    CutChoice::Torn => (0..p.blocks).map(|_| keep_block()).collect(),
                }
            })
            .collect();
        // For every block some entry touches: the entries covering it, oldest first.
        let mut covering: std::collections::BTreeMap<u64, Vec<usize>> = Default::default();
        for (j, p) in self.pending.iter().enumerate() {
            for b in p.lba..p.lba + p.blocks {
                covering.entry(b).or_default().push(j);
            }
        }
        let mut image = self.current;
        for (b, entries) in &covering {
            let b = *b;
            // The newest entry whose block b survived; its data is current[b] if it is the
            // newest entry on b, else the prior of the entry after it.
            let winner = entries
                .iter()
                .rposition(|&j| survived[j][(b - self.pending[j].lba) as usize]);
            let source = match winner {
                Some(w) if w + 1 == entries.len() => continue, // current[b] already
                Some(w) => &self.pending[entries[w + 1]],
                None => &self.pending[entries[0]],
            };
            let dst = b as usize * bs..(b as usize + 1) * bs;
            image[dst].copy_from_slice(block_of(source, b, bs));
        }
        image
    }
}

fn block_of(p: &Pending, b: u64, bs: usize) -> &[u8] {
    let off = (b - p.lba) as usize * bs;
    &p.prior[off..off + bs]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_writes_are_forgotten_without_a_read() {
        let mut m = Media::new(vec![0; 8 * 512], 512, u64::MAX);
        for i in 0..1000u64 {
            m.write(i % 8, 1, Some(&[7; 512]), i * 10 + 10, true);
            m.trim(i * 10 + 10);
            assert!(m.inflight.is_empty(), "write {i} is complete");
        }
        m.write(0, 1, Some(&[1; 512]), 20_000, false);
        m.write(1, 1, Some(&[2; 512]), 30_000, false);
        m.settle(25_000);
        assert_eq!(m.inflight.len(), 1, "the second write is still in flight");
    }
}
