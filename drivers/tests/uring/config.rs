//! The geometry a file reports, and the configurations the driver refuses.

use crate::common::*;

#[test]
fn geometry_of_a_file() {
    // 8 MiB and a bit: the partial block at the end is not part of the device.
    let (file, dev) = device(8 * MIB as u64 + 100);
    let g = dev.geometry();
    assert_eq!(g.block_size, 4096);
    assert_eq!(g.block_count, (8 * MIB / BS) as u64);
    assert_eq!(g.max_transfer_bytes, MIB as u32);
    assert_eq!(g.atomic_write_blocks, 1);
    assert!(
        g.volatile_write_cache,
        "a file may sit on a volatile disk cache"
    );
    assert!(g.write_zeroes);
    assert_eq!(g.dma_align, 4096);
    assert_eq!(dev.path(), file.path());
    assert_eq!(
        file.as_file().metadata().unwrap().len(),
        8 * MIB as u64 + 100
    );

    // Reopened without create_bytes, capacity comes from the file's length; a smaller
    // block size and max transfer are taken as given.
    let mut cfg = UringConfig::new(file.path());
    cfg.block_size = Some(512);
    cfg.max_transfer_bytes = 128 << 10;
    let g = UringDevice::open(&cfg).unwrap().geometry();
    assert_eq!(g.block_size, 512);
    assert_eq!(g.block_count, (8 * MIB as u64 + 100) / 512);
    assert_eq!(g.max_transfer_bytes, 128 << 10);
    assert_eq!(g.dma_align, 4096);

    // create_bytes extends a file, never shrinks it.
    let mut cfg = UringConfig::new(file.path());
    cfg.create_bytes = Some(4096);
    let g = UringDevice::open(&cfg).unwrap().geometry();
    assert_eq!(g.block_count, (8 * MIB / BS) as u64);
}

#[test]
fn bad_configurations_are_refused() {
    let file = temp_file();
    let path = file.path();

    // Smaller than one block.
    std::fs::write(path, [0u8; 4095]).unwrap();
    let err = UringDevice::open(&UringConfig::new(path)).unwrap_err();
    assert!(
        matches!(&err, DriverError::Config(m) if m.contains(&*path.to_string_lossy())),
        "{err:?}"
    );

    std::fs::write(path, vec![0u8; 64 * BS]).unwrap();
    for bad in [256, 1000, 3000] {
        let mut cfg = UringConfig::new(path);
        cfg.block_size = Some(bad);
        let err = UringDevice::open(&cfg).unwrap_err();
        assert!(matches!(err, DriverError::Config(_)), "{bad}: {err:?}");
    }
    for bad in [0, 2048, 4096 + 512] {
        let mut cfg = UringConfig::new(path);
        cfg.max_transfer_bytes = bad;
        let err = UringDevice::open(&cfg).unwrap_err();
        assert!(matches!(err, DriverError::Config(_)), "{bad}: {err:?}");
    }

    // A missing file without create_bytes: an Open error naming the path.
    let missing = path.with_extension("missing");
    let err = UringDevice::open(&UringConfig::new(&missing)).unwrap_err();
    match &err {
        DriverError::Open { what, source } => {
            assert!(what.contains(&*missing.to_string_lossy()), "{what}");
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        }
        other => panic!("{other:?}"),
    }

    let dev = UringDevice::open(&UringConfig::new(path)).unwrap();
    let err = dev.open_qpair(&QpairOptions::depth(0)).err().unwrap();
    assert!(matches!(err, DriverError::Config(_)), "{err:?}");
}
