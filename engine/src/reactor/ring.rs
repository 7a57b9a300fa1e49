//! The rings between threads and reactors, and what travels on them.
//!
//! ```text
//!  any thread ──Msg──► inbox: ArrayQueue<Msg> (one per reactor, `ring_depth`) ──► reactor
//!  reactor ──(tag, result)──► CompletionRing (one per submitter, its own depth) ──► submitter
//!  reactor ──Callback(result)  (runs on the reactor thread)
//!  reactor ──Answer──► reply slot: ArrayQueue<Result<Answer>> of one ──► the asking thread
//! ```
//!
//! Every ring is a bounded lock-free `crossbeam_queue::ArrayQueue`, allocated once. A full
//! inbox is back-pressure: `try_submit` answers [`StoreError::Busy`] and gives the
//! transaction back, `submit` waits for room. A completion ring never overflows: a slot is
//! reserved in it when the transaction is submitted ([`Notify::ring`]), so a submitter
//! with as many transactions outstanding as its ring holds gets `Busy` until it pops.
//!
//! Nothing queued is lost: a transaction or query accepted into an inbox is answered, and
//! if the reactor is gone before it could be (stopped, or its thread died), dropping the
//! message answers [`StoreError::Closed`] (see `Armed` and `ReplyTo`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use super::stats::ReactorStats;
use crate::error::{Result, StoreError};
use crate::fsck::FsckReport;
use crate::shard::{Phase, ScrubReport};
use crate::store::ObjStat;
use crate::txn::Transaction;
use crate::types::CollId;

/// Results of finished transactions for one submitter: `(tag, result)`, in completion
/// order. Share it (`Arc`) with the engine through [`Notify::ring`]; pop it from any one
/// thread at a time (or several: it is lock-free).
pub struct CompletionRing {
    q: ArrayQueue<(u64, Result<()>)>,
    /// Slots promised to submitted transactions and not yet popped.
    reserved: AtomicUsize,
}

impl std::fmt::Debug for CompletionRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompletionRing")
            .field("capacity", &self.q.capacity())
            .field("ready", &self.q.len())
            .field("outstanding", &self.outstanding())
            .finish()
    }
}

impl CompletionRing {
    /// A ring for up to `capacity` transactions outstanding (submitted and not popped).
    /// Panics if `capacity` is 0.
    pub fn new(capacity: usize) -> Arc<CompletionRing> {
        Arc::new(CompletionRing {
            q: ArrayQueue::new(capacity),
            reserved: AtomicUsize::new(0),
        })
    }

    /// The next finished transaction: its tag and result.
    pub fn pop(&self) -> Option<(u64, Result<()>)> {
        let r = self.q.pop();
        if r.is_some() {
            self.reserved.fetch_sub(1, Ordering::AcqRel);
        }
        r
    }

    /// Transactions submitted with this ring and not yet popped.
    pub fn outstanding(&self) -> usize {
        self.reserved.load(Ordering::Acquire)
    }

    /// Results waiting to be popped.
    pub fn ready(&self) -> usize {
        self.q.len()
    }

    /// Most transactions outstanding at once.
    pub fn capacity(&self) -> usize {
        self.q.capacity()
    }

    fn reserve(&self) -> bool {
        self.reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.q.capacity()).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        self.reserved.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A callback run with a transaction's result, on the reactor thread.
pub type Callback = Box<dyn FnOnce(Result<()>) + Send>;

enum NotifyKind {
    Ring(Arc<CompletionRing>, u64),
    Callback(Callback),
}

/// Who hears of a transaction's result.
///
/// - [`Notify::ring`]: `(tag, result)` goes to a [`CompletionRing`] the submitter polls;
///   no allocation per transaction (an `Arc` count).
/// - [`Notify::callback`]: a boxed closure runs on the reactor thread (one allocation per
///   transaction). It must be short and must not block: it holds up the reactor. It may
///   `try_submit`; blocking engine calls from it fail with [`StoreError::OnReactor`].
/// - [`Notify::none`]: nobody hears.
///
/// A `Notify` that was never submitted (it came back in a [`SubmitError`]) and is dropped
/// delivers nothing and frees its ring slot.
pub struct Notify(Option<NotifyKind>);

impl std::fmt::Debug for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Notify::None"),
            Some(NotifyKind::Ring(_, tag)) => write!(f, "Notify::Ring(tag {tag})"),
            Some(NotifyKind::Callback(_)) => f.write_str("Notify::Callback"),
        }
    }
}

impl Notify {
    /// The result goes to `ring` with `tag`. Reserves a slot in the ring: `Busy` when as
    /// many transactions as it holds are outstanding (pop some first).
    pub fn ring(ring: &Arc<CompletionRing>, tag: u64) -> Result<Notify> {
        if !ring.reserve() {
            return Err(StoreError::Busy(ring.capacity()));
        }
        Ok(Notify(Some(NotifyKind::Ring(Arc::clone(ring), tag))))
    }

    /// `f(result)` runs on the reactor thread.
    pub fn callback(f: impl FnOnce(Result<()>) + Send + 'static) -> Notify {
        Notify(Some(NotifyKind::Callback(Box::new(f))))
    }

    /// Nobody hears of the result.
    pub fn none() -> Notify {
        Notify(None)
    }

    /// Delivers `r`.
    pub(crate) fn complete(mut self, r: Result<()>) {
        match self.0.take() {
            None => {}
            Some(NotifyKind::Callback(f)) => f(r),
            // A slot was reserved at submit: the push cannot fail.
            Some(NotifyKind::Ring(ring, tag)) if ring.q.push((tag, r)).is_err() => {
                debug_assert!(false, "completion ring overflow");
                log::error!("completion ring overflow: result of tag {tag} dropped");
            }
            Some(NotifyKind::Ring(..)) => {}
        }
    }
}

impl Drop for Notify {
    fn drop(&mut self) {
        if let Some(NotifyKind::Ring(ring, _)) = self.0.take() {
            ring.release();
        }
    }
}

/// A `Notify` whose transaction was accepted: dropped unanswered, it delivers
/// [`StoreError::Closed`].
pub(crate) struct Armed(Option<Notify>);

impl Armed {
    pub(crate) fn new(n: Notify) -> Armed {
        Armed(Some(n))
    }

    pub(crate) fn complete(mut self, r: Result<()>) {
        if let Some(n) = self.0.take() {
            n.complete(r);
        }
    }

    /// Back to a plain `Notify` (the message never reached a reactor).
    pub(crate) fn disarm(mut self) -> Notify {
        self.0.take().expect("armed")
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if let Some(n) = self.0.take() {
            n.complete(Err(StoreError::Closed));
        }
    }
}

/// A submission that was not accepted: the error, and the transaction and notification
/// given back whole (submit them again after the error is dealt with).
pub struct SubmitError {
    /// Why (`Busy`: the reactor's ring or the completion ring is full; `Closed`;
    /// `CrossShard`; `OnReactor`; a validation error).
    pub error: StoreError,
    /// The transaction.
    pub txn: Transaction,
    /// The notification (its ring slot, if any, is still reserved).
    pub notify: Notify,
}

impl std::fmt::Debug for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmitError")
            .field("error", &self.error)
            .field("ops", &self.txn.ops().len())
            .finish()
    }
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for SubmitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<SubmitError> for StoreError {
    fn from(e: SubmitError) -> StoreError {
        e.error
    }
}

/// A question for the reactor that owns a shard (it owns the queue pairs and the table).
#[derive(Debug)]
pub(crate) enum Query {
    Read {
        coll: CollId,
        name: Vec<u8>,
        offset: u64,
        len: usize,
    },
    Stat {
        coll: CollId,
        name: Vec<u8>,
    },
    GetAttr {
        coll: CollId,
        name: Vec<u8>,
        key: Vec<u8>,
    },
    OmapGet {
        coll: CollId,
        name: Vec<u8>,
        key: Vec<u8>,
    },
    AttrsAndOmap {
        coll: CollId,
        name: Vec<u8>,
    },
    ListObjects {
        coll: CollId,
    },
    ListCollections,
    Stats,
    Fsck,
    Phase,
    /// A full scrub pass over the shard, confirmed (`Engine::scrub`).
    Scrub,
    /// Answered once the shard has nothing queued or in flight.
    Drain,
}

/// An object's attributes and omap.
pub type Maps = (BTreeMap<Vec<u8>, Vec<u8>>, BTreeMap<Vec<u8>, Vec<u8>>);

/// The reactor's answer.
#[derive(Debug)]
pub(crate) enum Answer {
    Bytes(Vec<u8>),
    Stat(ObjStat),
    Maps(Box<Maps>),
    Names(Vec<Vec<u8>>),
    Colls(Vec<CollId>),
    Stats(Box<ReactorStats>),
    Fsck(FsckReport),
    Phase(Phase),
    Scrub(Box<ScrubReport>),
    Done,
}

/// Where an answer goes: a one-entry ring the asker waits on. Dropped unanswered, it
/// answers [`StoreError::Closed`].
pub(crate) struct ReplyTo(Option<Arc<ArrayQueue<Result<Answer>>>>);

impl ReplyTo {
    pub(crate) fn new(slot: &Arc<ArrayQueue<Result<Answer>>>) -> ReplyTo {
        ReplyTo(Some(Arc::clone(slot)))
    }

    pub(crate) fn send(mut self, r: Result<Answer>) {
        if let Some(slot) = self.0.take() {
            // One message per slot: there is room.
            let _ = slot.push(r);
        }
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            let _ = slot.push(Err(StoreError::Closed));
        }
    }
}

/// A message to a reactor.
pub(crate) enum Msg {
    /// Queue a transaction on the shard.
    Txn { txn: Transaction, notify: Armed },
    /// Answer a question.
    Query { query: Query, reply: ReplyTo },
    /// Checkpoint at the next batch boundary.
    Checkpoint,
    /// Finish what was queued, checkpoint, and exit the loop.
    Stop,
}
