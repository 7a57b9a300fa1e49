//! Tests of the crash log (crashlog.rs).

use super::*;
use crate::logwrites::tests::build;

#[test]
fn ack_records_round_trip() {
    let acked = vec![None, Some(true), Some(false), None, Some(true)];
    let r = AckRecord {
        seq: 9,
        generated: 4,
        acked,
    };
    let b = r.encode();
    assert_eq!(b.len(), RECORD_BYTES);
    assert_eq!(AckRecord::decode(&b), Some(r));
    assert_eq!(AckRecord::decode(&[0; RECORD_BYTES]), None);
    let full = AckRecord {
        seq: 0,
        generated: MAX_TXNS,
        acked: vec![Some(true); MAX_TXNS as usize],
    };
    assert_eq!(AckRecord::decode(&full.encode()), Some(full));
}

#[test]
fn regenerated_transactions_are_the_same() {
    let (m1, a) = transactions(3, 50);
    let (m2, b) = transactions(3, 50);
    assert_eq!(m1, m2);
    assert_eq!(a, b);
    assert_ne!(a, transactions(4, 50).1);
}

/// The whole loop without QEMU: a store on a sim device whose every write and flush is
/// logged by hand, as blklogwrites would, then checked.
#[test]
fn a_logged_run_on_the_sim_device_checks_clean() {
    for mode in [Mode::Full, Mode::MetadataOnly] {
        let dir = tempfile::tempdir().unwrap();
        let (log, base) = logged_run(mode, 60);
        std::fs::write(dir.path().join("log"), log).unwrap();
        std::fs::write(dir.path().join("base"), base).unwrap();
        let args = CheckArgs {
            log: dir.path().join("log"),
            base: dir.path().join("base"),
            workload: WorkloadArgs {
                mode,
                seed: 5,
                txns: 60,
            },
            points: 6,
            json: false,
        };
        let s = check(&args).unwrap();
        assert!(s.checked >= 2, "{}", s.table());
        assert_eq!(s.failed, 0, "{}", s.table());
        // The oracle is not vacuous: the same log checked against another seed's
        // transactions fails.
        let wrong = CheckArgs {
            workload: WorkloadArgs {
                mode,
                seed: 6,
                txns: 60,
            },
            ..args
        };
        let s = check(&wrong).unwrap();
        assert!(s.failed > 0, "{}", s.table());
    }
}

/// Runs the workload on a sim device through a recording wrapper and returns the log
/// and the (zero) base image. Every completed write is logged when it completes, every
/// flush and FUA write is followed by a flush entry, as QEMU does.
fn logged_run(mode: Mode, txns: u64) -> (Vec<u8>, Vec<u8>) {
    use std::sync::{Arc, Mutex};
    type Ops = Arc<Mutex<Vec<Option<(u64, Vec<u8>)>>>>;
    struct Logged {
        dev: SimDevice,
        ops: Ops,
    }
    struct LoggedQp {
        qp: <SimDevice as BlockDevice>::Qpair,
        ops: Ops,
        pending: BTreeMap<u64, (u64, Vec<u8>, bool)>,
        next: u64,
        tags: BTreeMap<u64, u64>,
    }
    impl BlockDevice for Logged {
        type Qpair = LoggedQp;
        fn geometry(&self) -> Geometry {
            self.dev.geometry()
        }
        fn open_qpair(&self, o: &QpairOptions) -> Result<LoggedQp, keel_drivers::DriverError> {
            Ok(LoggedQp {
                qp: self.dev.open_qpair(o)?,
                ops: self.ops.clone(),
                pending: BTreeMap::new(),
                next: 0,
                tags: BTreeMap::new(),
            })
        }
    }
    impl QueuePair for LoggedQp {
        fn geometry(&self) -> &Geometry {
            self.qp.geometry()
        }
        fn depth(&self) -> u32 {
            self.qp.depth()
        }
        fn in_flight(&self) -> u32 {
            self.qp.in_flight()
        }
        fn submit(&mut self, tag: u64, cmd: Command) -> Result<(), keel_drivers::Rejected> {
            let id = self.next;
            self.next += 1;
            if let Command::Write { lba, buf, fua } = &cmd {
                self.pending
                    .insert(id, (*lba, buf.as_slice().to_vec(), *fua));
            }
            self.tags.insert(id, tag);
            self.qp.submit(id, cmd)
        }
        fn kick(&mut self) -> Result<(), keel_drivers::DriverError> {
            self.qp.kick()
        }
        fn poll(&mut self, max: u32, on_done: &mut dyn FnMut(keel_drivers::Completion)) -> u32 {
            let (ops, pending, tags) = (&self.ops, &mut self.pending, &mut self.tags);
            self.qp.poll(max, &mut |mut c| {
                let id = c.tag;
                c.tag = tags.remove(&id).expect("known");
                if c.result.is_ok() {
                    let mut ops = ops.lock().unwrap();
                    match pending.remove(&id) {
                        Some((lba, data, fua)) => {
                            // 512-byte blocks and 512-byte log sectors.
                            ops.push(Some((lba, data)));
                            if fua {
                                ops.push(None);
                            }
                        }
                        None if c.op == keel_drivers::Op::Flush => ops.push(None),
                        None => {}
                    }
                } else {
                    pending.remove(&id);
                }
                on_done(c)
            })
        }
        fn stats(&self) -> keel_drivers::IoStats {
            self.qp.stats()
        }
    }

    let blocks = 32 << 11; // 32 MiB of 512-byte blocks
    let mut cfg = SimConfig::new(512, blocks);
    cfg.clock = SimClock::discrete();
    cfg.volatile_write_cache = true;
    let ops: Ops = Arc::default();
    let dev = Logged {
        dev: SimDevice::new(cfg).unwrap(),
        ops: ops.clone(),
    };
    let args = RunArgs {
        device: DeviceArgs {
            driver: crate::cli::Driver::Sim,
            path: None,
            size: None,
            block_size: None,
            sim_latency_us: 0,
            sim_write_cache: None,
            sim_parallelism: 0,
            sim_atomic_write_blocks: 1,
            sim_prefault: false,
            sqpoll: false,
            pci: None,
        },
        workload: WorkloadArgs {
            mode,
            seed: 5,
            txns,
        },
        json: false,
    };
    let s = RunJob { args: &args }.run(dev).unwrap();
    assert_eq!(s.acked_ok + s.acked_failed, txns);
    let ops = ops.lock().unwrap().clone();
    let n = ops.len() as u64;
    (build(512, &ops, n), vec![0u8; (blocks * 512) as usize])
}
