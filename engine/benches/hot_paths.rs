//! Criterion benches of the engine's hot paths: the journal record codec, the transaction
//! codec, the allocator, transaction planning, and group commit through a whole store on a
//! zero-latency sim device (so the figure is the engine's software cost per transaction).
//!
//! `cargo bench -p keel-engine` (add `-- --quick` for a fast pass).

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use keel_drivers::sim::{SimConfig, SimDevice};
use keel_engine::alloc::allocator::Allocator;
use keel_engine::codec::Reader;
use keel_engine::journal::{BatchHeader, Entry, HEADER_BYTES};
use keel_engine::meta::{Delta, MetaTable};
use keel_engine::{hot_paths, JournalMode, MkfsOptions, ShardConfig, Store, Transaction};

fn name(i: u64) -> Vec<u8> {
    format!("rbd_data.1234.{i:016x}").into_bytes()
}

/// A MetadataOnly entry as a 4 KiB write into a fresh page makes it (parallel commit): map,
/// size, the page's sum.
fn entry(i: u64) -> Entry {
    Entry {
        txn_seq: i,
        deltas: vec![
            Delta::Map {
                coll: 1,
                name: name(i),
                lpage: i % 1024,
                phys: 10_000 + i,
                pages: 1,
            },
            Delta::SetSize {
                coll: 1,
                name: name(i),
                size: 4 << 20,
            },
            Delta::Csum {
                phys: 10_000 + i,
                sums: vec![0x1234_5678 ^ i as u32],
            },
        ],
        runs: Vec::new(),
        overwrites: Vec::new(),
        verify: true,
    }
}

fn journal(c: &mut Criterion) {
    let mut g = c.benchmark_group("journal");
    let entries: Vec<Entry> = (0..32).map(entry).collect();
    let mut buf = Vec::with_capacity(64 << 10);
    g.throughput(Throughput::Elements(32));
    g.bench_function("encode_32_entries", |b| {
        b.iter(|| {
            buf.clear();
            for e in &entries {
                e.encode(&mut buf);
            }
            buf.len()
        })
    });
    buf.clear();
    for e in &entries {
        e.encode(&mut buf);
    }
    g.bench_function("decode_32_entries", |b| {
        b.iter(|| {
            let mut r = Reader::new(&buf);
            (0..32)
                .map(|_| Entry::decode(&mut r).expect("entry").deltas.len())
                .sum::<usize>()
        })
    });
    g.throughput(Throughput::Bytes(4096));
    let mut block = vec![0u8; 4096];
    g.bench_function("seal_batch_header_4k", |b| {
        b.iter(|| {
            let payload = 4096 - HEADER_BYTES;
            let h = BatchHeader {
                seq: 7,
                pos: 99,
                uuid: [3; 16],
                payload_bytes: payload as u32,
                blocks: 1,
                entries: 32,
                prev_crc: 0xdead_beef,
                payload_crc: keel_engine::crc::crc32c(&block[HEADER_BYTES..]),
                confirmed: 6,
            };
            h.encode(&mut block)
        })
    });
    g.finish();
}

fn txn_codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("txn_codec");
    let mut t = Transaction::new();
    t.write(1, name(1), 8192, vec![0xab; 4096]);
    t.setattr(1, name(1), b"_".to_vec(), vec![1; 64]);
    t.omap_set(1, name(1), vec![(b"k".to_vec(), vec![2; 32])]);
    let bytes = t.encode();
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("encode_write_4k", |b| b.iter(|| t.encode().len()));
    g.bench_function("decode_write_4k", |b| {
        b.iter(|| Transaction::decode(&bytes).expect("decode").ops().len())
    });
    g.finish();
}

fn allocator(c: &mut Criterion) {
    let mut g = c.benchmark_group("allocator");
    for pages in [1u64, 256] {
        let mut a = Allocator::new(1000, 1 << 20);
        // Fragment it a little: every eighth page taken.
        let mut held = Vec::new();
        for _ in 0..4096 {
            held.extend(a.alloc(7, 256).expect("alloc"));
            let one = a.alloc(1, 256).expect("alloc");
            for e in one {
                a.release_now(e);
            }
        }
        g.bench_with_input(BenchmarkId::new("alloc_free", pages), &pages, |b, &p| {
            b.iter(|| {
                let got = a.alloc(p, 256).expect("alloc");
                for e in got {
                    a.release_now(e);
                }
            })
        });
    }
    g.finish();
}

fn planning(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan");
    let mut table = MetaTable::new();
    let mut freed = Vec::new();
    table
        .apply(&Delta::MkColl { coll: 1 }, &mut freed)
        .expect("mkcoll");
    for i in 0..1024 {
        table
            .apply(
                &Delta::Create {
                    coll: 1,
                    name: name(i),
                },
                &mut freed,
            )
            .expect("create");
    }
    let mut alloc = Allocator::new(1000, 1 << 20);
    let mut i = 0u64;
    g.bench_function("write_4k_fresh_page", |b| {
        b.iter_batched(
            || {
                i += 1;
                let mut t = Transaction::new();
                t.write(1, name(i % 1024), (i % 1000) * 4096, vec![0x5a; 4096]);
                t
            },
            |t| hot_paths::plan(&table, &mut alloc, &t).expect("plan"),
            BatchSize::SmallInput,
        )
    });
    // A 4 KiB write into a hole of an object mapped as 1024 separate extents: the plan's
    // cost should not grow with the object's extent map (it is not copied).
    let big = b"fragmented".to_vec();
    let apply = |table: &mut MetaTable, d: Delta| {
        table.apply(&d, &mut Vec::new()).expect("apply");
    };
    apply(
        &mut table,
        Delta::Create {
            coll: 1,
            name: big.clone(),
        },
    );
    for k in 0..1024u64 {
        apply(
            &mut table,
            Delta::Map {
                coll: 1,
                name: big.clone(),
                lpage: 2 * k,
                phys: 1000 + 3 * k,
                pages: 1,
            },
        );
    }
    apply(
        &mut table,
        Delta::SetSize {
            coll: 1,
            name: big.clone(),
            size: 2048 * 4096,
        },
    );
    let mut alloc = Allocator::new(10_000, 1 << 20);
    let mut k = 0u64;
    g.bench_function("write_4k_hole_of_1024_extent_object", |b| {
        b.iter_batched(
            || {
                k += 1;
                let mut t = Transaction::new();
                t.write(
                    1,
                    big.clone(),
                    (2 * (k % 1024) + 1) * 4096,
                    vec![0x5a; 4096],
                );
                t
            },
            |t| hot_paths::plan(&table, &mut alloc, &t).expect("plan"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn group_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("group_commit");
    for mode in [JournalMode::MetadataOnly, JournalMode::Full] {
        let dev = SimDevice::new(SimConfig::new(4096, 64 << 8)).expect("sim device");
        Store::mkfs(&dev, &MkfsOptions::new(mode)).expect("mkfs");
        let mut store = Store::open(dev, ShardConfig::default()).expect("open");
        let mut t = Transaction::new();
        t.mkcoll(1);
        for i in 0..64 {
            t.touch(1, name(i));
        }
        store.submit_sync(t).expect("setup");
        let mut i = 0u64;
        g.throughput(Throughput::Elements(32));
        g.bench_function(BenchmarkId::new("qd32_write_4k", mode.as_str()), |b| {
            b.iter(|| {
                let mut ids = Vec::with_capacity(32);
                for _ in 0..32 {
                    i += 1;
                    let mut t = Transaction::new();
                    t.write(1, name(i % 64), (i % 256) * 4096, vec![0x33; 4096]);
                    ids.push(store.queue(t).expect("queue"));
                }
                let mut done = 0;
                while done < ids.len() {
                    store.poll();
                    done += store.take_completions(|_, r| r.expect("txn"));
                }
            })
        });
        store.close().expect("close");
    }
    g.finish();
}

criterion_group!(
    benches,
    journal,
    txn_codec,
    allocator,
    planning,
    group_commit
);
criterion_main!(benches);
