//! Background scrub: each reactor checks its shard's pages against their sums, a batch at
//! a time, at a rate set by [`ReactorConfig::scrub_pages_per_sec`](super::ReactorConfig).
//!
//! ```text
//!  turn ─► scrub poller (threaded mode, rate > 0, shard healthy, not stopping)
//!            bucket.refill(wall clock) ── < one batch of tokens ──► Idle
//!              │ ≥ min(rate, 64) pages
//!              ▼
//!            Shard::scrub_step(cursor, ≤ 64 pages; it reads a bad page again before
//!                              reporting it)
//!              ─► ScrubStats: pages, clean, skipped, torn, corrupt, passes, errors,
//!                 the most recent bad ranges (at most SCRUB_RECENT_MAX)
//! ```
//!
//! - **Rate.** A token bucket on the wall clock: `rate` pages per second flow in, at most
//!   two batches are held (what a long pause leaves is one extra step, not a burst), a
//!   step spends one token per page it visited (at least one, so an empty table is not
//!   scanned in a busy loop). It starts empty, so over any run the pages checked stay
//!   within `rate × elapsed`. A step waits for a whole batch
//!   (`min(rate, 64)` pages), so the table walk that finds the cursor is paid per batch,
//!   not per page.
//! - **Confirmation.** A step reads its pages while the shard keeps polling, so a
//!   transaction can rewrite and commit a page between the scrub's read and its check;
//!   [`Shard::scrub_step`] itself reads such a page again and reports it only if it still
//!   fails against its current sum (engine/src/shard/scrub.rs).
//! - **Determinism.** Stepped mode keeps no time: the poller does nothing there whatever
//!   the rate. A stepped test asks for a step with [`Reactor::scrub_background_step`]
//!   (`Engine::with_reactors`), which takes no clock.
//! - **Errors.** A step that fails (a device read error) is counted in
//!   [`ScrubStats::errors`] and logged (the 1st, 2nd, 4th, 8th... time), and its batch of
//!   tokens is spent; the reactor goes on and the step is tried again at the next batch.
//!
//! [`Reactor::scrub_background_step`]: super::Reactor::scrub_background_step

use std::time::Instant;

use keel_drivers::QueuePair;

use crate::error::StoreError;
use crate::shard::{BadRange, ScrubCursor, ScrubReport, Shard};

/// Most pages one background step checks.
pub const SCRUB_BATCH_PAGES: u64 = 64;

/// Most bad ranges a reactor's [`ScrubStats::recent`] keeps (the oldest go first).
pub const SCRUB_RECENT_MAX: usize = 64;

/// Highest `scrub_pages_per_sec` (64 GiB/s of 4 KiB pages: far past any device).
pub const MAX_SCRUB_PAGES_PER_SEC: u64 = 1 << 24;

const NS_PER_SEC: u64 = 1_000_000_000;

/// What is wrong with a bad range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BadKind {
    /// A torn overwrite inside an open intent (left by a power cut; the caller's:
    /// acknowledge or rewrite it). Reads of it fail with [`StoreError::TornOverwrite`].
    Torn,
    /// Corruption: bytes that fail their checksum outside any intent. Reads of it fail
    /// with [`StoreError::DataCorrupt`].
    Corrupt,
}

/// A bad range the background scrub found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Torn or corrupt.
    pub kind: BadKind,
    /// The object and its byte range (whole pages).
    pub range: BadRange,
}

/// What a reactor's background scrub has done since the reactor started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubStats {
    /// The configured rate, in pages per second (0: off).
    pub pages_per_sec: u64,
    /// Pages read and checked.
    pub pages: u64,
    /// Pages that matched their sums.
    pub clean: u64,
    /// Pages passed over because a write to them was in flight, or their object went
    /// away before the check was confirmed.
    pub skipped: u64,
    /// Pages found torn (inside open intents).
    pub torn_pages: u64,
    /// Pages found corrupt.
    pub corrupt_pages: u64,
    /// Complete passes over the shard.
    pub passes: u64,
    /// Steps that failed (device errors); the scrub went on.
    pub errors: u64,
    /// The most recent bad ranges, oldest first, at most [`SCRUB_RECENT_MAX`] per reactor.
    /// Adjacent bad pages of one object and kind are one range, also across steps. A
    /// range found again on a later pass is listed again.
    pub recent: Vec<Finding>,
}

impl ScrubStats {
    fn new(pages_per_sec: u64) -> Self {
        ScrubStats {
            pages_per_sec,
            recent: Vec::with_capacity(SCRUB_RECENT_MAX),
            ..ScrubStats::default()
        }
    }

    /// Adds `other`'s counters, and appends its bad ranges (a total over reactors keeps
    /// every reactor's list; `pages_per_sec` adds up to the engine's rate).
    pub fn add(&mut self, other: &ScrubStats) {
        self.pages_per_sec += other.pages_per_sec;
        self.pages += other.pages;
        self.clean += other.clean;
        self.skipped += other.skipped;
        self.torn_pages += other.torn_pages;
        self.corrupt_pages += other.corrupt_pages;
        self.passes += other.passes;
        self.errors += other.errors;
        self.recent.extend(other.recent.iter().cloned());
    }

    /// Adds what one step found.
    pub(crate) fn record(&mut self, report: ScrubReport) {
        self.pages += report.pages;
        self.clean += report.clean;
        self.skipped += report.skipped;
        self.torn_pages += report.torn_pages();
        self.corrupt_pages += report.corrupt_pages();
        self.passes += report.passes;
        let found = (report.torn.into_iter().map(|r| (BadKind::Torn, r)))
            .chain(report.corrupt.into_iter().map(|r| (BadKind::Corrupt, r)));
        for (kind, range) in found {
            self.note(kind, range);
        }
    }

    /// Appends a bad range, merged into the last one when it continues it.
    fn note(&mut self, kind: BadKind, range: BadRange) {
        if let Some(last) = self.recent.last_mut() {
            if last.kind == kind
                && last.range.key == range.key
                && last.range.offset + last.range.len == range.offset
            {
                last.range.len += range.len;
                return;
            }
        }
        if self.recent.len() == SCRUB_RECENT_MAX {
            self.recent.remove(0);
        }
        self.recent.push(Finding { kind, range });
    }
}

/// Tokens for the background scrub: `rate` pages per second, at most two batches held.
/// Time comes in as elapsed nanoseconds, so it is tested without a clock.
#[derive(Debug)]
struct TokenBucket {
    /// Pages per second.
    rate: u64,
    /// Tokens, in page-nanoseconds (pages × 10⁹): exact for any rate.
    tokens: u64,
    /// When it was last refilled (None: never).
    last: Option<Instant>,
}

impl TokenBucket {
    fn new(rate: u64) -> Self {
        TokenBucket {
            rate,
            tokens: 0,
            last: None,
        }
    }

    /// Pages a step waits for: a full batch, or a second's worth at low rates.
    fn batch(&self) -> u64 {
        self.rate.clamp(1, SCRUB_BATCH_PAGES)
    }

    fn refill(&mut self, elapsed_ns: u64) {
        self.tokens = self
            .tokens
            .saturating_add(elapsed_ns.saturating_mul(self.rate))
            .min(2 * SCRUB_BATCH_PAGES * NS_PER_SEC);
    }

    fn refill_at(&mut self, now: Instant) {
        let last = *self.last.get_or_insert(now);
        let ns = u64::try_from(now.saturating_duration_since(last).as_nanos()).unwrap_or(u64::MAX);
        self.refill(ns);
        self.last = Some(now);
    }

    /// Pages a step may check now: 0 until a batch is there.
    fn ready(&self) -> u64 {
        let whole = self.tokens / NS_PER_SEC;
        if whole < self.batch() {
            return 0;
        }
        whole.min(SCRUB_BATCH_PAGES)
    }

    fn take(&mut self, pages: u64) {
        self.tokens = self.tokens.saturating_sub(pages.saturating_mul(NS_PER_SEC));
    }
}

/// A reactor's background scrub: its rate, where it is, and what it found.
#[derive(Debug)]
pub(crate) struct BackgroundScrub {
    bucket: TokenBucket,
    cursor: ScrubCursor,
    stats: ScrubStats,
}

impl BackgroundScrub {
    pub(crate) fn new(pages_per_sec: u64) -> Self {
        BackgroundScrub {
            bucket: TokenBucket::new(pages_per_sec),
            cursor: ScrubCursor::default(),
            stats: ScrubStats::new(pages_per_sec),
        }
    }

    /// True when a rate is set.
    pub(crate) fn is_on(&self) -> bool {
        self.bucket.rate > 0
    }

    pub(crate) fn stats(&self) -> &ScrubStats {
        &self.stats
    }

    /// Pages to check at `now` (0: not yet).
    pub(crate) fn due(&mut self, now: Instant) -> u64 {
        self.bucket.refill_at(now);
        self.bucket.ready()
    }

    /// One step of up to `max_pages` pages on `shard`, counted; spends the
    /// tokens of what it visited. Returns the pages visited (0 on an empty table, or when
    /// the step failed).
    pub(crate) fn step<Q: QueuePair>(&mut self, shard: &mut Shard<Q>, max_pages: u64) -> u64 {
        let mut report = ScrubReport::default();
        let visited = match shard.scrub_step(&mut self.cursor, max_pages, &mut report) {
            Ok(v) => v,
            Err(e) => {
                self.bucket.take(max_pages);
                self.error(shard.index(), "step", &e);
                return 0;
            }
        };
        self.bucket.take(visited.max(1));
        self.stats.record(report);
        visited
    }

    fn error(&mut self, shard: u32, what: &str, e: &StoreError) {
        self.stats.errors += 1;
        let n = self.stats.errors;
        if n.is_power_of_two() {
            log::warn!("shard {shard}: background scrub {what} failed ({n} errors so far): {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ObjKey, PAGE};

    fn range(name: &str, page: u64, pages: u64) -> BadRange {
        BadRange {
            key: ObjKey::new(1, name.as_bytes().to_vec()),
            offset: page * PAGE,
            len: pages * PAGE,
        }
    }

    #[test]
    fn the_bucket_never_gives_more_than_the_rate() {
        for rate in [1, 10, 63, 64, 1000, 250_000] {
            let mut b = TokenBucket::new(rate);
            let mut checked = 0u64;
            // 10 s in uneven slices.
            let mut t = 0u64;
            let mut slice = 1u64;
            while t < 10 * NS_PER_SEC {
                b.refill(slice);
                t += slice;
                let n = b.ready();
                assert!(n <= SCRUB_BATCH_PAGES);
                checked += n;
                b.take(n);
                slice = (slice * 7 + 13_337) % 3_000_000 + 1;
            }
            let allowed = rate * t / NS_PER_SEC;
            assert!(checked <= allowed, "rate {rate}: {checked} > {allowed}");
            // Nor far below it, while no slice brings more than a batch (nothing is lost
            // to the cap): less than a batch short.
            if rate * 3_000_000 / NS_PER_SEC < SCRUB_BATCH_PAGES {
                assert!(
                    allowed - checked < b.batch(),
                    "rate {rate}: {checked} of {allowed}"
                );
            }
        }
    }

    #[test]
    fn the_bucket_waits_for_a_batch_and_holds_two_at_most() {
        let mut b = TokenBucket::new(1000);
        b.refill(63 * NS_PER_SEC / 1000);
        assert_eq!(b.ready(), 0, "63 pages are not a batch");
        b.refill(NS_PER_SEC / 1000);
        assert_eq!(b.ready(), 64);
        b.refill(3600 * NS_PER_SEC); // an hour idle
        assert_eq!(b.ready(), SCRUB_BATCH_PAGES, "one batch per step");
        b.take(64);
        assert_eq!(b.ready(), SCRUB_BATCH_PAGES, "and one more held");
        b.take(64);
        assert_eq!(b.ready(), 0);
        // A slow rate waits for its whole second's worth.
        let mut slow = TokenBucket::new(5);
        slow.refill(NS_PER_SEC / 2);
        assert_eq!(slow.ready(), 0);
        slow.refill(NS_PER_SEC / 2);
        assert_eq!(slow.ready(), 5);
        // No overflow at the highest rate and a long pause.
        let mut fast = TokenBucket::new(MAX_SCRUB_PAGES_PER_SEC);
        fast.refill(u64::MAX);
        assert_eq!(fast.ready(), SCRUB_BATCH_PAGES);
    }

    #[test]
    fn recent_ranges_merge_across_steps_and_keep_the_newest() {
        let mut s = ScrubStats::new(100);
        let mut r = ScrubReport {
            pages: 3,
            corrupt: vec![range("a", 0, 2)],
            ..ScrubReport::default()
        };
        s.record(r.clone());
        r.corrupt = vec![range("a", 2, 1)];
        r.pages = 1;
        s.record(r);
        assert_eq!(s.recent.len(), 1);
        assert_eq!(s.recent[0].range, range("a", 0, 3));
        assert_eq!((s.pages, s.corrupt_pages), (4, 3));
        // A torn page right after is another finding.
        s.record(ScrubReport {
            torn: vec![range("a", 3, 1)],
            ..ScrubReport::default()
        });
        assert_eq!(s.recent.len(), 2);
        assert_eq!((s.recent[1].kind, s.torn_pages), (BadKind::Torn, 1));
        for i in 0..100 {
            s.record(ScrubReport {
                corrupt: vec![range(&format!("o{i}"), 0, 1)],
                ..ScrubReport::default()
            });
        }
        assert_eq!(s.recent.len(), SCRUB_RECENT_MAX);
        assert_eq!(s.recent.last().unwrap().range, range("o99", 0, 1));
        assert_eq!(s.recent[0].range, range("o36", 0, 1));
    }
}
