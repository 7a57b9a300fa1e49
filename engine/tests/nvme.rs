//! The store on a real NVMe controller through the userspace driver (QEMU's emulated NVMe
//! in a test guest: see TEST-VM.md). Needs root, 2 MiB hugepages and a controller free for
//! userspace, named by `KEEL_NVME_PCI` (a PCI address or "auto"); without it the test
//! prints `skipped: KEEL_NVME_PCI not set` and passes. It formats the namespace.

use keel_drivers::any::AnyDevice;
use keel_drivers::nvme::{NvmeConfig, NvmeDevice};
use keel_drivers::BlockDevice;
use keel_engine::{JournalMode, MkfsOptions, ShardConfig, Store, Transaction};

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i * 7 % 251) as u8))
        .collect()
}

fn small() -> ShardConfig {
    ShardConfig {
        io_bufs: 64,
        journal_bufs: 16,
        ..ShardConfig::default()
    }
}

fn device(cfg: &NvmeConfig) -> (AnyDevice, u16) {
    let dev = NvmeDevice::open(cfg).expect("open the NVMe controller");
    let qpairs = dev.max_qpairs();
    (AnyDevice::Nvme(dev), qpairs)
}

#[test]
fn the_store_runs_on_nvme_and_recovers() {
    let Ok(pci) = std::env::var("KEEL_NVME_PCI") else {
        println!("skipped: KEEL_NVME_PCI not set");
        return;
    };
    let mut cfg = NvmeConfig::new(pci);
    // The journal writes batches of up to ShardConfig::max_batch_bytes in one command; the
    // driver splits what is larger than the controller's MDTS.
    cfg.max_transfer_bytes = Some(1 << 20);
    for mode in [JournalMode::Full, JournalMode::MetadataOnly] {
        let (dev, qpairs) = device(&cfg);
        assert_eq!(dev.driver(), "nvme");
        println!("{mode}: {:?}", dev.geometry());
        let mut opts = MkfsOptions::new(mode);
        // Two queue pairs per shard (data and journal): as many shards as the controller
        // has queue pairs for, up to 2.
        opts.shards = u32::from(qpairs / 2).clamp(1, 2);
        Store::mkfs(&dev, &opts).expect("mkfs");
        let mut s = Store::open(dev, small()).expect("open");

        // Many transactions in flight at once: writes, appends, attributes, omap, clones.
        let mut ids = Vec::new();
        for coll in [1, 2] {
            let mut t = Transaction::default();
            t.mkcoll(coll);
            s.submit_sync(t).unwrap();
        }
        for i in 0..64u8 {
            let coll = 1 + u64::from(i % 2);
            let name = vec![b'o', i % 8];
            let mut t = Transaction::default();
            t.write(coll, name.clone(), u64::from(i) * 5000, pattern(i, 5000));
            t.setattr(coll, name.clone(), b"last".to_vec(), vec![i]);
            t.omap_set(coll, name, vec![(vec![b'k', i], vec![i; 3])]);
            ids.push(s.queue(t).expect("queue"));
        }
        for id in ids {
            s.wait(id).expect("transaction");
        }
        let mut t = Transaction::default();
        t.clone_object(1, b"o\x00".to_vec(), b"copy".to_vec());
        s.submit_sync(t).unwrap();
        let mut t = Transaction::default();
        t.clone_range(2, b"o\x01".to_vec(), b"part".to_vec(), 5000, 10_000, 100);
        s.submit_sync(t).unwrap();

        let objects: Vec<(u64, Vec<u8>)> = (0..8u8)
            .map(|o| (1 + u64::from(o % 2), vec![b'o', o]))
            .chain([(1, b"copy".to_vec()), (2, b"part".to_vec())])
            .collect();
        let want: Vec<Vec<u8>> = objects
            .iter()
            .map(|(c, n)| s.read(*c, n, 0, 1 << 20).unwrap())
            .collect();
        // Spot checks against what was written.
        assert_eq!(&want[0][0..5000], &pattern(0, 5000)[..], "{mode}");
        assert_eq!(want[8], want[0], "{mode}: clone");
        assert_eq!(
            &want[9][100..10_100],
            &want[1][5000..15_000],
            "{mode}: clone_range"
        );
        assert_eq!(s.omap_get(1, b"o\x02", b"k\x0a").unwrap(), vec![10; 3]);
        assert!(s.fsck().is_clean(), "{mode}: fsck before close");
        s.close().expect("close");

        // Reopen the controller (clean shutdown happened on close) and recover.
        let mut s = Store::open(device(&cfg).0, small()).expect("reopen");
        for ((c, n), w) in objects.iter().zip(&want) {
            assert_eq!(&s.read(*c, n, 0, 1 << 20).unwrap(), w, "{mode}: {n:?}");
        }
        assert_eq!(s.getattr(2, b"o\x07", b"last").unwrap(), vec![63]);
        assert_eq!(s.omap_get(2, b"o\x03", b"k\x3b").unwrap(), vec![59; 3]);
        let report = s.fsck();
        assert!(report.is_clean(), "{mode}: fsck after reopen: {report:?}");
        // One more transaction after recovery, then close again.
        let mut t = Transaction::default();
        t.write(1, b"after".to_vec(), 0, pattern(200, 4096));
        s.submit_sync(t).unwrap();
        assert_eq!(s.read(1, b"after", 0, 4096).unwrap(), pattern(200, 4096));
        s.close().expect("close after recovery");
        println!("{mode}: ok");
    }
}
