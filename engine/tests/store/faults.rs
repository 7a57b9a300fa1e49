//! A device command that fails anywhere in a workload: the store stops, says why on every
//! later call, and loses no acknowledged transaction, even when a power cut follows.
//!
//! The sweep fails the n-th write, read or flush (for every n the workload reaches) of a
//! workload with many transactions in flight: fresh objects, in-place overwrites of objects
//! written before, and attributes, in both modes, with native and emulated FUA (the second
//! takes the plain-write-then-flush paths). After the fault the device loses its power
//! (unflushed writes kept, lost or torn by a seeded choice), the store is opened again, and
//! every acknowledged transaction must read back exactly; an unacknowledged new object is
//! either absent or whole. A second pass runs on a small journal that checkpoints every
//! few batches, so that the faults also hit checkpoint writes and their flushes. And a
//! fault while opening (replay, the checkpoint after it) is a device error, never taken
//! for a damaged store, and the next open recovers every acknowledged transaction.

use crate::common::*;

/// Objects written and acknowledged before the fault is armed; the sweep overwrites each
/// once (transactions 2, 5, 8, ..., 23).
const OLD_OBJECTS: u8 = 8;
/// Transactions queued at once after the fault is armed.
const NEW_TXNS: u8 = 24;

fn old_data(i: u8) -> Vec<u8> {
    pattern(i, 8192)
}

/// What transaction `i` of the sweep does, and what it leaves when acknowledged.
enum Planned {
    /// A new object `[b'n', i]` of `data`, with attribute "k" = [i].
    Create { name: Vec<u8>, data: Vec<u8> },
    /// Object `[b'o', j]` (8 KiB) overwritten in place at `offset` with `data`: its first
    /// page whole, or 500 bytes inside its second (the store reads that page first).
    Overwrite {
        name: Vec<u8>,
        offset: usize,
        data: Vec<u8>,
    },
}

fn planned(i: u8) -> Planned {
    let name = vec![b'o', (i / 3) % OLD_OBJECTS];
    if i % 6 == 5 {
        Planned::Overwrite {
            name,
            offset: 4096 + 100,
            data: pattern(i.wrapping_mul(31), 500),
        }
    } else if i % 3 == 2 {
        Planned::Overwrite {
            name,
            offset: 0,
            data: pattern(i.wrapping_mul(31), 4096),
        }
    } else {
        Planned::Create {
            name: vec![b'n', i],
            data: pattern(i.wrapping_add(100), 1000 + 700 * usize::from(i)),
        }
    }
}

/// One configuration of the sweep.
#[derive(Clone, Copy)]
struct Case {
    mode: JournalMode,
    fua_native: bool,
    /// A 128 KiB journal that checkpoints at 5% full: checkpoints within the workload.
    checkpoints: bool,
}

impl Case {
    fn shard_config(self) -> ShardConfig {
        ShardConfig {
            checkpoint_fill: if self.checkpoints { 0.05 } else { 0.75 },
            ..small()
        }
    }

    fn device(self, blocks: u64, seed: u64) -> SimConfig {
        let mut cfg = sim(blocks, true, seed);
        cfg.fua_native = self.fua_native;
        cfg
    }
}

/// Runs the sweep's workload with the `nth` command of `op` failing; returns whether the
/// fault fired.
fn sweep_one(case: Case, op: Op, nth: u64) -> bool {
    let Case {
        mode, fua_native, ..
    } = case;
    let seed = nth * 2 + u64::from(fua_native);
    let dev = SimDevice::new(case.device(64 << 11, seed)).unwrap();
    let mut opts = MkfsOptions::new(mode);
    if case.checkpoints {
        opts.journal_bytes = 128 << 10;
    }
    Store::mkfs(&dev, &opts).unwrap();
    let mut s = Store::open(dev, case.shard_config()).unwrap();
    let mut t = txn();
    t.mkcoll(1);
    s.submit_sync(t).unwrap();
    // Written (and overwritten below) before the fault: the overwrites rewrite
    // acknowledged pages in place.
    for j in 0..OLD_OBJECTS {
        let mut t = txn();
        t.write(1, vec![b'o', j], 0, old_data(j));
        s.submit_sync(t).unwrap();
    }
    let plans: Vec<Planned> = (0..NEW_TXNS).map(planned).collect();
    // What the failed command completes with, and how the store's reason names it.
    let (status, named) = if op == Op::Read {
        (NvmeStatus::UNRECOVERED_READ_ERROR, "Unrecovered Read Error")
    } else {
        (NvmeStatus::WRITE_FAULT, "Write Fault")
    };
    s.device().inject(Fault::FailNth { op, nth, status });
    let mut ids = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let mut t = txn();
        match p {
            Planned::Create { name, data } => {
                t.write(1, name.clone(), 0, data.clone());
                t.setattr(1, name.clone(), b"k".to_vec(), vec![i as u8]);
            }
            Planned::Overwrite { name, offset, data } => {
                t.write(1, name.clone(), *offset as u64, data.clone());
            }
        }
        match s.queue(t) {
            Ok(id) => ids.push((id, i)),
            // Only once the store has failed.
            Err(StoreError::Failed(_)) => break,
            Err(e) => panic!("{mode} op {op} nth {nth}: queue: {e}"),
        }
    }
    let ctx = format!(
        "{mode} fua_native {fua_native} checkpoints {} op {op} nth {nth}",
        case.checkpoints
    );
    // Each transaction is answered exactly once, Ok or Failed, also by the polls that go
    // on after the store stopped.
    let mut results: Vec<Option<Result<(), StoreError>>> = (0..plans.len()).map(|_| None).collect();
    for _ in 0..1_000_000 {
        s.poll();
        s.take_completions(|id, r| {
            let i = ids.iter().find(|(d, _)| *d == id).expect("queued id").1;
            if let Some(first) = &results[i] {
                panic!("{ctx}: transaction {i} answered twice: {first:?}, then {r:?}");
            }
            results[i] = Some(r);
        });
        let p = s.phase();
        let busy = p.data_writes || p.batch || p.checkpoint || p.home_writes;
        let answered = ids.iter().all(|(_, i)| results[*i].is_some());
        // Go on past the answers until what follows them (home writes, flushes) is done,
        // or the store stopped (then a few more turns: nothing may be answered again).
        if answered && (!busy || s.failure().is_some()) {
            for _ in 0..100 {
                s.poll();
                s.take_completions(|id, r| panic!("{ctx}: {id} answered again: {r:?}"));
            }
            break;
        }
    }
    // A failed read fails the one transaction that needed the page (it changed nothing);
    // a failed write or flush stops the store.
    let mut refused = vec![false; plans.len()];
    for (_, i) in &ids {
        match &results[*i] {
            Some(Ok(())) => {}
            Some(Err(StoreError::Failed(why))) if op != Op::Read => {
                assert!(why.contains(named), "{ctx}: {why}")
            }
            Some(Err(StoreError::Device {
                op: Op::Read,
                source,
            })) if op == Op::Read => {
                assert!(source.to_string().contains(named), "{ctx}: {source}");
                refused[*i] = true;
            }
            Some(Err(e)) => panic!("{ctx}: unexpected {e}"),
            None => panic!(
                "{ctx}: transaction {i} never answered (failure {:?}, {:?})",
                s.failure(),
                s.phase()
            ),
        }
    }
    // The fault may have hit a write after every transaction was acknowledged (a home
    // write, a checkpoint): the store stops all the same.
    let failed = s.failure().is_some();
    if failed {
        assert!(
            s.failure().unwrap().contains(named),
            "{mode} op {op} nth {nth}: {:?}",
            s.failure()
        );
        // The store said why, and keeps saying it.
        let mut t = txn();
        t.write(1, b"late".to_vec(), 0, vec![1; 10]);
        assert!(
            matches!(s.queue(t), Err(StoreError::Failed(ref why)) if why.contains(named)),
            "{mode} op {op} nth {nth}: a failed store took a transaction"
        );
    } else {
        assert!(
            results
                .iter()
                .zip(&refused)
                .all(|(r, refused)| *refused || matches!(r, Some(Ok(())))),
            "{mode} op {op} nth {nth}: a transaction failed, the store did not"
        );
    }
    assert!(
        op != Op::Read || !failed,
        "{ctx}: a failed read stopped the store"
    );

    let (image, _) = s.device().power_cut();
    drop(s);
    let dev = SimDevice::from_image(case.device(0, seed + 1000), image).unwrap();
    let mut s = Store::open(dev, case.shard_config())
        .unwrap_or_else(|e| panic!("{mode} op {op} nth {nth}: reopen: {e}"));
    // The overwrite each old object got, acknowledged or not.
    for j in 0..OLD_OBJECTS {
        let name = vec![b'o', j];
        let (i, offset, data) = plans
            .iter()
            .enumerate()
            .find_map(|(i, p)| match p {
                Planned::Overwrite {
                    name: n,
                    offset,
                    data,
                } if *n == name => Some((i, *offset, data)),
                _ => None,
            })
            .expect("every old object is overwritten once");
        let mut want = old_data(j);
        want[offset..offset + data.len()].copy_from_slice(data);
        match (&results[i], s.read(1, &name, 0, 1 << 20)) {
            (Some(Ok(())), got) => assert_eq!(got.unwrap(), want, "{ctx}: acked overwrite {i}"),
            // Refused before anything was written.
            (_, got) if refused[i] => assert_eq!(got.unwrap(), old_data(j), "{ctx}: refused {i}"),
            // Not acknowledged: old or new bytes, or a torn page inside an open intent
            // (MetadataOnly leaves a torn overwrite to the caller), never anything else.
            (_, Ok(got)) => assert!(got == want || got == old_data(j), "{ctx}: object o{j}"),
            (_, Err(StoreError::TornOverwrite { .. })) if mode == JournalMode::MetadataOnly => {}
            (_, Err(e)) => panic!("{ctx}: object o{j}: {e}"),
        }
    }
    for (i, p) in plans.iter().enumerate() {
        let Planned::Create { name, data } = p else {
            continue;
        };
        match (&results[i], s.read(1, name, 0, 1 << 20)) {
            (Some(Ok(())), got) => {
                assert_eq!(got.unwrap(), *data, "{ctx}: acked create {i}");
                assert_eq!(s.getattr(1, name, b"k").unwrap(), vec![i as u8], "{ctx}");
            }
            (_, Err(StoreError::NoSuchObject(_))) => {}
            // An unacknowledged create that recovery kept is whole, attribute and all.
            (_, got) => {
                assert_eq!(got.unwrap(), *data, "{ctx}: unacked create {i}");
                assert_eq!(s.getattr(1, name, b"k").unwrap(), vec![i as u8], "{ctx}");
            }
        }
    }
    let r = s.fsck();
    assert!(r.is_clean(), "{ctx}: {:?}", r.errors);
    failed || refused.contains(&true)
}

/// Sweeps writes 1..=`writes` and flushes 1..=`flushes` of every mode and FUA kind.
fn sweep(checkpoints: bool, writes: u64, flushes: u64) {
    for mode in MODES {
        for fua_native in [true, false] {
            let case = Case {
                mode,
                fua_native,
                checkpoints,
            };
            let fired = |op, most: u64| -> u64 {
                (1..=most)
                    .map(|nth| u64::from(sweep_one(case, op, nth)))
                    .sum()
            };
            // The workload reaches at least 20 of the failure points: it tests the
            // failure path at many places.
            let w = fired(Op::Write, writes);
            assert!(
                w >= 20,
                "{mode} fua_native {fua_native}: only {w} of {writes} write faults fired"
            );
            // The partial overwrites read the page they rewrite part of first.
            let r = fired(Op::Read, 8);
            assert!(r > 0, "{mode} fua_native {fua_native}: no read fault fired");
            let f = fired(Op::Flush, flushes);
            // Records and data go with FUA where it is native, and Full flushes only at
            // checkpoints: without them only MetadataOnly on emulated FUA flushes (after
            // the data of its parallel and intent-first entries).
            if checkpoints || (mode == JournalMode::MetadataOnly && !fua_native) {
                assert!(
                    f > 0,
                    "{mode} fua_native {fua_native} checkpoints {checkpoints}: no flush fault fired"
                );
            }
        }
    }
}

#[test]
fn a_failed_write_or_flush_anywhere_loses_no_acknowledged_transaction() {
    sweep(false, 40, 8);
}

#[test]
fn a_failed_checkpoint_write_or_flush_loses_no_acknowledged_transaction() {
    sweep(true, 60, 12);
}

#[test]
fn a_fault_while_opening_is_an_error_and_the_next_open_recovers_everything() {
    for mode in MODES {
        // A store with work to replay: acknowledged transactions, then a power cut.
        let mut s = fresh_with_coll(mode, sim(64 << 11, true, 31));
        for i in 0..30u8 {
            let mut t = txn();
            t.write(1, vec![i], 0, pattern(i, 3000 + 100 * usize::from(i)));
            s.submit_sync(t).unwrap();
        }
        let (cut, _) = s.device().power_cut();
        drop(s);
        let mut failed_opens = 0;
        for (op, most) in [(Op::Read, 40u64), (Op::Write, 40), (Op::Flush, 8)] {
            for nth in 1..=most {
                let ctx = format!("{mode} open, {op} {nth} fails");
                let dev = SimDevice::from_image(sim(0, true, nth), cut.clone()).unwrap();
                dev.inject(Fault::FailNth {
                    op,
                    nth,
                    status: NvmeStatus::DATA_TRANSFER_ERROR,
                });
                // Either it opened (the fault came later, or never), or it says what failed.
                let image = match Store::open(dev.clone(), small()) {
                    Ok(s) => match s.close() {
                        Ok(()) => continue,
                        // The fault hit the checkpoint that close writes.
                        Err(StoreError::Failed(_)) => dev.power_cut().0,
                        Err(e) => panic!("{ctx}: close: {e}"),
                    },
                    Err(e) => {
                        // A device error, never taken for a damaged or foreign store.
                        assert!(
                            matches!(e, StoreError::Device { .. } | StoreError::Failed(_)),
                            "{ctx}: {e:?}"
                        );
                        failed_opens += 1;
                        // What the failed open left on the media, as a power cut finds it.
                        dev.power_cut().0
                    }
                };
                // The next open, on what the failed one left, recovers every acknowledged
                // transaction (replay is idempotent, also when cut short).
                let dev = SimDevice::from_image(sim(0, true, nth + 500), image).unwrap();
                let mut s = Store::open(dev, small())
                    .unwrap_or_else(|e| panic!("{ctx}: the next open: {e}"));
                for i in 0..30u8 {
                    assert_eq!(
                        s.read(1, &[i], 0, 1 << 20).unwrap(),
                        pattern(i, 3000 + 100 * usize::from(i)),
                        "{ctx}: object {i}"
                    );
                }
                let r = s.fsck();
                assert!(r.is_clean(), "{ctx}: {:?}", r.errors);
            }
        }
        assert!(
            failed_opens >= 20,
            "{mode}: only {failed_opens} opens met their fault"
        );
    }
}
