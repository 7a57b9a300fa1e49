//! What the kernel says about a block device's queue (`/sys/dev/block/<maj>:<min>/queue`),
//! for the kernel-path drivers (psync, uring). A partition reads its disk's queue.

/// Reads `queue/<attr>` of block device `rdev`, trimmed; `None` if sysfs has no such file.
fn queue_attr(rdev: u64, attr: &str) -> Option<String> {
    let dev = format!(
        "/sys/dev/block/{}:{}",
        libc::major(rdev as libc::dev_t),
        libc::minor(rdev as libc::dev_t)
    );
    ["queue", "../queue"].iter().find_map(|q| {
        std::fs::read_to_string(format!("{dev}/{q}/{attr}"))
            .ok()
            .map(|t| t.trim().to_string())
    })
}

/// Whether the device has a volatile write cache (`queue/write_cache` is "write back").
/// Unknown counts as volatile: the engine then flushes, which is always safe.
pub(crate) fn volatile_write_cache(rdev: u64) -> bool {
    match queue_attr(rdev, "write_cache") {
        Some(v) => v == "write back",
        None => {
            log::warn!("block device {rdev:#x}: no queue/write_cache in sysfs; assuming a volatile write cache");
            true
        }
    }
}

/// Whether the device implements FUA (`queue/fua` is 1); otherwise the kernel emulates a
/// FUA write with a flush after it. Unknown counts as emulated.
pub(crate) fn native_fua(rdev: u64) -> bool {
    queue_attr(rdev, "fua").is_some_and(|v| v == "1")
}
