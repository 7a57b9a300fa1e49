//! Submission and completion on the null driver: the per-command cost of the queue-pair
//! contract itself (validate, queue, kick, reap, buffer back), with no device behind it.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keel_drivers::null::NullDevice;
use keel_drivers::{BlockDevice, Command, DmaPool, PoolConfig, QpairOptions, QueuePair};

fn burst(c: &mut Criterion) {
    let dev = NullDevice::new(4096, 1 << 20).expect("null device");
    let mut g = c.benchmark_group("null_qpair");
    for depth in [1u32, 32] {
        let pool = DmaPool::new(PoolConfig::new(4096, depth)).expect("pool");
        let mut qp = dev
            .open_qpair(&QpairOptions::depth(depth))
            .expect("queue pair");
        let mut bufs: Vec<_> = (0..depth).map(|_| pool.alloc().expect("buffer")).collect();
        let mut lba = 0u64;
        g.throughput(Throughput::Elements(u64::from(depth)));
        g.bench_with_input(
            BenchmarkId::new("write_4k_submit_poll", depth),
            &depth,
            |b, _| {
                b.iter(|| {
                    for (tag, buf) in bufs.drain(..).enumerate() {
                        lba = (lba + 7) % (1 << 20);
                        qp.submit(
                            tag as u64,
                            Command::Write {
                                lba,
                                buf,
                                fua: false,
                            },
                        )
                        .expect("submit");
                    }
                    while bufs.len() < depth as usize {
                        qp.poll(depth, &mut |done| {
                            done.result.expect("null write");
                            bufs.push(done.buf.expect("buffer back"));
                        });
                    }
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, burst);
criterion_main!(benches);
