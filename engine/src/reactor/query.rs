//! Queries: reads, stats of objects, listings, counters, fsck, scrub and phase, each a
//! message to the reactor that owns the shard and a one-entry reply ring to wait on.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use keel_drivers::BlockDevice;

use super::reactor::on_reactor;
use super::ring::{Answer, Maps, Msg, Query, ReplyTo};
use super::{unexpected, Backoff, Engine, EngineStats};
use crate::error::{Result, StoreError};
use crate::fsck::FsckReport;
use crate::shard::{Phase, ScrubReport};
use crate::store::ObjStat;
use crate::types::CollId;

impl<D: BlockDevice> Engine<D> {
    /// Asks reactor `i` and waits for the answer. Allocates the one-entry reply ring (a
    /// query moves a result out of the reactor anyway).
    pub(super) fn ask(&self, i: usize, query: Query) -> Result<Answer> {
        let slot = self.post(i, query)?;
        self.answer_of(i, &slot)
    }

    /// Asks every reactor at once (each works on its own shard meanwhile), then waits for
    /// every answer, in shard order.
    pub(super) fn ask_all(&self, query: impl Fn() -> Query) -> Result<Vec<Answer>> {
        let slots = (0..self.shared.len())
            .map(|i| self.post(i, query()))
            .collect::<Result<Vec<_>>>()?;
        (slots.iter().enumerate())
            .map(|(i, slot)| self.answer_of(i, slot))
            .collect()
    }

    /// Sends `query` to reactor `i`; its answer will be in the returned slot.
    pub(super) fn post(&self, i: usize, query: Query) -> Result<Arc<ArrayQueue<Result<Answer>>>> {
        let slot = Arc::new(ArrayQueue::new(1));
        self.push_wait(
            i,
            Msg::Query {
                query,
                reply: ReplyTo::new(&slot),
            },
        )?;
        Ok(slot)
    }

    /// Waits for reactor `i` to answer into `slot`.
    pub(super) fn answer_of(&self, i: usize, slot: &ArrayQueue<Result<Answer>>) -> Result<Answer> {
        let sh = &self.shared[i];
        let mut b = Backoff(0);
        loop {
            if let Some(r) = slot.pop() {
                return r;
            }
            if !sh.is_alive() {
                return slot.pop().unwrap_or(Err(StoreError::Closed));
            }
            self.turn(&mut b);
        }
    }

    pub(super) fn ask_coll(&self, coll: CollId, q: Query) -> Result<Answer> {
        self.ask(self.shard_of(coll), q)
    }

    /// Asks `q` of `coll`'s reactor, whose answer is bytes.
    fn ask_bytes(&self, coll: CollId, q: Query) -> Result<Vec<u8>> {
        match self.ask_coll(coll, q)? {
            Answer::Bytes(b) => Ok(b),
            a => unexpected(a),
        }
    }

    /// Reads committed bytes of an object (clamped at its size; holes read as zeroes), on
    /// its reactor.
    pub fn read(&self, coll: CollId, name: &[u8], offset: u64, len: usize) -> Result<Vec<u8>> {
        let q = Query::Read {
            coll,
            name: name.to_vec(),
            offset,
            len,
        };
        self.ask_bytes(coll, q)
    }

    /// An object's size and counts.
    pub fn stat(&self, coll: CollId, name: &[u8]) -> Result<ObjStat> {
        let q = Query::Stat {
            coll,
            name: name.to_vec(),
        };
        match self.ask_coll(coll, q)? {
            Answer::Stat(s) => Ok(s),
            a => unexpected(a),
        }
    }

    /// An attribute's value.
    pub fn getattr(&self, coll: CollId, name: &[u8], key: &[u8]) -> Result<Vec<u8>> {
        let q = Query::GetAttr {
            coll,
            name: name.to_vec(),
            key: key.to_vec(),
        };
        self.ask_bytes(coll, q)
    }

    /// An omap value.
    pub fn omap_get(&self, coll: CollId, name: &[u8], key: &[u8]) -> Result<Vec<u8>> {
        let q = Query::OmapGet {
            coll,
            name: name.to_vec(),
            key: key.to_vec(),
        };
        self.ask_bytes(coll, q)
    }

    /// An object's attributes and omap, whole.
    pub fn attrs_and_omap(&self, coll: CollId, name: &[u8]) -> Result<Maps> {
        let q = Query::AttrsAndOmap {
            coll,
            name: name.to_vec(),
        };
        match self.ask_coll(coll, q)? {
            Answer::Maps(m) => Ok(*m),
            a => unexpected(a),
        }
    }

    /// Names of the objects of a collection, in name order.
    pub fn list_objects(&self, coll: CollId) -> Result<Vec<Vec<u8>>> {
        match self.ask_coll(coll, Query::ListObjects { coll })? {
            Answer::Names(n) => Ok(n),
            a => unexpected(a),
        }
    }

    /// Every collection, in id order (asks every reactor).
    pub fn list_collections(&self) -> Result<Vec<CollId>> {
        let mut all = Vec::new();
        for i in 0..self.shared.len() {
            match self.ask(i, Query::ListCollections)? {
                Answer::Colls(c) => all.extend(c),
                a => return unexpected(a),
            }
        }
        all.sort_unstable();
        Ok(all)
    }

    /// Every reactor's counters.
    pub fn stats(&self) -> Result<EngineStats> {
        let mut out = EngineStats::default();
        for i in 0..self.shared.len() {
            match self.ask(i, Query::Stats)? {
                Answer::Stats(s) => out.reactors.push(*s),
                a => return unexpected(a),
            }
        }
        Ok(out)
    }

    /// Checks every shard's metadata and allocator, each on its reactor.
    pub fn fsck(&self) -> Result<FsckReport> {
        let mut out = FsckReport::default();
        for i in 0..self.shared.len() {
            match self.ask(i, Query::Fsck)? {
                Answer::Fsck(r) => {
                    out.collections += r.collections;
                    out.objects += r.objects;
                    out.used_pages += r.used_pages;
                    out.errors.extend(r.errors);
                }
                a => return unexpected(a),
            }
        }
        Ok(out)
    }

    /// Reads every mapped page of every shard and checks it against its sum: one full
    /// pass per reactor, all reactors at once, each answering when its pass is done (a
    /// reactor takes no new messages during its pass; transactions already in its shard go
    /// on). A bad page is read again before it is reported (`Shard::scrub_step`). The
    /// background scrub's cursor and counters are left alone.
    ///
    /// Errors: `OnReactor` on a reactor thread (a callback), `Closed`, a device error of a
    /// reactor (the others' passes are lost with it).
    pub fn scrub(&self) -> Result<ScrubReport> {
        if on_reactor() {
            return Err(StoreError::OnReactor("Engine::scrub"));
        }
        let mut out = ScrubReport::default();
        for a in self.ask_all(|| Query::Scrub)? {
            match a {
                Answer::Scrub(r) => out.merge(*r),
                a => return unexpected(a),
            }
        }
        Ok(out)
    }

    /// What is in flight, all shards together.
    pub fn phase(&self) -> Result<Phase> {
        let mut out = Phase::default();
        for i in 0..self.shared.len() {
            let p = match self.with_reactors(|rs| rs[i].shard().phase()) {
                Some(p) => p,
                None => match self.ask(i, Query::Phase)? {
                    Answer::Phase(p) => p,
                    a => return unexpected(a),
                },
            };
            out.data_writes |= p.data_writes;
            out.batch |= p.batch;
            out.checkpoint |= p.checkpoint;
            out.home_writes |= p.home_writes;
        }
        Ok(out)
    }
}
