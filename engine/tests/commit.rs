//! The commit contract (engine/src/shard/commit.rs): a transaction is acknowledged as soon
//! as it is durable and applied to the table during the next turn, yet nothing can observe
//! the gap: every way in to committed state applies first, a transaction touching the same
//! objects plans against the applied state, a checkpoint holds every acknowledged change,
//! and a shard that stops keeps what it acknowledged.

use keel_drivers::sim::{Fault, SimConfig, SimDevice};
use keel_drivers::{NvmeStatus, Op};
use keel_engine::{JournalMode, MkfsOptions, ShardConfig, Store, StoreError, Transaction, TxnId};

const MODES: [JournalMode; 2] = [JournalMode::Full, JournalMode::MetadataOnly];
const PAGE: usize = 4096;

fn fresh(mode: JournalMode, seed: u64) -> Store<SimDevice> {
    let mut c = SimConfig::new(512, 64 << 11);
    c.volatile_write_cache = true;
    c.seed = seed;
    let dev = SimDevice::new(c).unwrap();
    Store::mkfs(&dev, &MkfsOptions::new(mode)).unwrap();
    let mut s = Store::open(
        dev,
        ShardConfig {
            io_bufs: 64,
            journal_bufs: 16,
            ..ShardConfig::default()
        },
    )
    .unwrap();
    let mut t = Transaction::default();
    t.mkcoll(1);
    s.submit_sync(t).unwrap();
    s
}

/// Queues `t` and turns the store until it is acknowledged, then returns at once (no
/// further turn): the transaction is acknowledged and, as a rule, not yet applied.
fn ack(s: &mut Store<SimDevice>, t: Transaction) -> TxnId {
    let id = s.queue(t).unwrap();
    loop {
        s.poll();
        let mut got = None;
        s.take_completions(|done, r| {
            assert_eq!(done, id);
            got = Some(r);
        });
        if let Some(r) = got {
            r.unwrap();
            return id;
        }
    }
}

fn write(name: &[u8], offset: u64, data: Vec<u8>) -> Transaction {
    let mut t = Transaction::default();
    t.write(1, name.to_vec(), offset, data);
    t
}

#[test]
fn an_acknowledged_change_is_applied_later_but_every_reader_sees_it() {
    for mode in MODES {
        let mut s = fresh(mode, 1);
        // Each reader, right after an acknowledgement that left the change unapplied.
        ack(&mut s, write(b"a", 0, vec![1; 5000]));
        assert_eq!(
            s.unapplied(),
            1,
            "{mode}: the apply waits for the next turn"
        );
        assert_eq!(s.stat(1, b"a").unwrap().size, 5000, "{mode}: stat");
        assert_eq!(s.unapplied(), 0);

        ack(&mut s, write(b"b", 0, vec![2; 100]));
        assert_eq!(s.unapplied(), 1);
        assert_eq!(
            s.read(1, b"b", 0, 200).unwrap(),
            vec![2; 100],
            "{mode}: read"
        );

        ack(&mut s, write(b"c", 0, vec![3; 10]));
        assert_eq!(s.unapplied(), 1);
        assert_eq!(
            s.list_objects(1).unwrap(),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()],
            "{mode}: listing"
        );

        let mut t = Transaction::default();
        t.setattr(1, b"c".to_vec(), b"k".to_vec(), b"v".to_vec());
        ack(&mut s, t);
        assert_eq!(s.unapplied(), 1);
        assert_eq!(s.getattr(1, b"c", b"k").unwrap(), b"v", "{mode}: getattr");

        let mut t = Transaction::default();
        t.mkcoll(2);
        ack(&mut s, t);
        assert_eq!(s.unapplied(), 1);
        assert_eq!(s.list_collections(), vec![1, 2], "{mode}: collections");

        ack(&mut s, write(b"d", 0, vec![4; PAGE]));
        assert_eq!(s.unapplied(), 1);
        let fsck = s.fsck();
        assert!(fsck.is_clean(), "{mode}: {:?}", fsck.errors);
        assert_eq!(fsck.objects, 4, "{mode}: fsck sees d");

        ack(&mut s, write(b"e", 0, vec![5; PAGE]));
        assert_eq!(s.unapplied(), 1);
        let scrub = s.scrub().unwrap();
        assert_eq!(scrub.corrupt_pages(), 0);
        assert!(scrub.pages >= 5, "{mode}: scrub sees e: {scrub:?}");

        // Polling alone applies it too, after the next turn's submissions.
        ack(&mut s, write(b"f", 0, vec![6; 10]));
        assert_eq!(s.unapplied(), 1);
        s.poll();
        assert_eq!(s.unapplied(), 0, "{mode}: the next turn applies it");
    }
}

#[test]
fn a_transaction_on_the_same_object_plans_against_the_acknowledged_change() {
    for mode in MODES {
        let mut s = fresh(mode, 2);
        ack(&mut s, write(b"x", 0, vec![0xaa; PAGE]));
        assert_eq!(s.unapplied(), 1);
        // Rewrites a few bytes inside the page just written: planned against a table
        // without it, the rest of the page would read as zeroes.
        s.submit_sync(write(b"x", 100, vec![0xbb; 10])).unwrap();
        let mut want = vec![0xaa; PAGE];
        want[100..110].fill(0xbb);
        assert_eq!(s.read(1, b"x", 0, PAGE).unwrap(), want, "{mode}");
        // A clone of an acknowledged, unapplied object copies it.
        ack(&mut s, write(b"x", PAGE as u64, vec![0xcc; 10]));
        assert_eq!(s.unapplied(), 1);
        let mut t = Transaction::default();
        t.clone_object(1, b"x".to_vec(), b"y".to_vec());
        s.submit_sync(t).unwrap();
        want.extend_from_slice(&[0xcc; 10]);
        assert_eq!(s.read(1, b"y", 0, 3 * PAGE).unwrap(), want, "{mode}");
    }
}

#[test]
fn a_checkpoint_holds_every_acknowledged_change() {
    for mode in MODES {
        for same_turn in [false, true] {
            let mut s = fresh(mode, 3);
            if same_turn {
                // The checkpoint is wanted while the write is in flight: its snapshot is
                // taken in the very turn that acknowledges the write.
                s.queue(write(b"a", 0, vec![7; 3 * PAGE])).unwrap();
                s.request_checkpoint();
            } else {
                ack(&mut s, write(b"a", 0, vec![7; 3 * PAGE]));
                assert_eq!(s.unapplied(), 1);
                s.request_checkpoint();
            }
            s.drain().unwrap();
            s.take_completions(|_, r| r.unwrap());
            let dev = s.device().clone();
            // No close: a power cut right after the checkpoint.
            drop(s);
            let mut s = Store::open(dev, ShardConfig::default()).unwrap();
            assert_eq!(
                s.replay_reports().iter().map(|r| r.entries).sum::<u64>(),
                0,
                "{mode}: the checkpoint covered everything"
            );
            assert_eq!(
                s.read(1, b"a", 0, 4 * PAGE).unwrap(),
                vec![7; 3 * PAGE],
                "{mode}, same turn {same_turn}"
            );
        }
    }
}

#[test]
fn a_shard_that_stops_keeps_what_it_acknowledged() {
    for mode in MODES {
        let mut s = fresh(mode, 4);
        ack(&mut s, write(b"a", 0, vec![8; 2 * PAGE]));
        assert_eq!(s.unapplied(), 1);
        s.device().inject(Fault::FailNth {
            op: Op::Write,
            nth: 1,
            status: NvmeStatus::WRITE_FAULT,
        });
        let r = s.submit_sync(write(b"b", 0, vec![9; PAGE]));
        assert!(matches!(r, Err(StoreError::Failed(_))), "{mode}: {r:?}");
        assert_eq!(s.unapplied(), 0, "{mode}: stopping applied it");
        assert_eq!(s.stat(1, b"a").unwrap().size, 2 * PAGE as u64, "{mode}");
        assert_eq!(s.read(1, b"a", 0, 2 * PAGE).unwrap(), vec![8; 2 * PAGE]);
    }
}
