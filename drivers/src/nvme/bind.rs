//! Moving a controller between the kernel's nvme driver and this driver, through sysfs
//! (Documentation/ABI/testing/sysfs-bus-pci: `driver/unbind`, `driver_override`,
//! `drivers_probe`), the way `vendor-scripts/setup.sh` does it from the shell:
//!
//! - [`to_userspace`]: off the kernel's driver, onto vfio-pci when the host has an IOMMU
//!   (VFIO needs one on Debian's kernel), else left unbound with `driver_override` set to
//!   `none` so that a rescan does not give it back to the kernel;
//! - [`to_kernel`]: `driver_override` cleared and the function probed again, so the nvme
//!   driver takes it; returns its first namespace's block device once the node exists.
//!
//! Both wait (bounded) for the change to take effect and fail with a clear reason
//! otherwise. A namespace that is mounted, swapped on or held is never taken from the
//! kernel. Root only.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::NvmeError;
use super::pci::{bound_driver, device_dir, find};

const DRIVERS_PROBE: &str = "/sys/bus/pci/drivers_probe";
const IOMMU_GROUPS: &str = "/sys/kernel/iommu_groups";
/// How long a bind may take to show (the nvme driver resets the controller first).
const SETTLE: Duration = Duration::from_secs(20);

/// Who should hold the controller for this driver: vfio-pci with an IOMMU, else nobody.
pub fn userspace_driver() -> Option<&'static str> {
    has_iommu(Path::new(IOMMU_GROUPS)).then_some("vfio-pci")
}

fn has_iommu(groups: &Path) -> bool {
    fs::read_dir(groups).is_ok_and(|mut d| d.next().is_some())
}

/// The kernel block devices (namespaces, `nvme0n1`) of the controller at `addr`, sorted.
pub fn namespaces(addr: &str) -> Vec<String> {
    namespaces_under(&device_dir(addr))
}

fn namespaces_under(dev: &Path) -> Vec<String> {
    let is_ns = |n: &str| {
        n.strip_prefix("nvme")
            .and_then(|r| r.split_once('n'))
            .is_some_and(|(c, ns)| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_digit())
                    && !ns.is_empty()
                    && ns.bytes().all(|b| b.is_ascii_digit())
            })
    };
    let mut out: Vec<String> = fs::read_dir(dev.join("nvme"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|ctrl| fs::read_dir(ctrl.path()).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_ns(n))
        .collect();
    out.sort();
    out
}

/// Why a namespace of the controller may not be taken from the kernel, if one is in use:
/// mounted, an active swap, or held (LVM, MD, dm).
fn in_use(addr: &str) -> Option<String> {
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    let swaps = fs::read_to_string("/proc/swaps").unwrap_or_default();
    for ns in namespaces(addr) {
        let dev = format!("/dev/{ns}");
        let used = |table: &str| {
            table.lines().any(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|d| d == dev || d.starts_with(&format!("{dev}p")))
            })
        };
        if used(&mounts) {
            return Some(format!("{dev} (or a partition) is mounted"));
        }
        if used(&swaps) {
            return Some(format!("{dev} (or a partition) is an active swap"));
        }
        let holders = Path::new("/sys/block").join(&ns).join("holders");
        if fs::read_dir(&holders).is_ok_and(|mut d| d.next().is_some()) {
            return Some(format!("{dev} is held (LVM, MD or dm)"));
        }
    }
    None
}

fn write(path: &Path, text: &str) -> Result<(), NvmeError> {
    fs::write(path, text)
        .map_err(|e| NvmeError::sys(format!("write {text:?} to {}", path.display()), e))
}

fn unbind(addr: &str) -> Result<(), NvmeError> {
    if bound_driver(addr).is_some() {
        write(&device_dir(addr).join("driver/unbind"), addr)?;
    }
    Ok(())
}

/// Waits until `done` holds, or fails with `what` after [`SETTLE`].
fn wait(what: impl Fn() -> String, done: impl Fn() -> bool) -> Result<(), NvmeError> {
    let t0 = Instant::now();
    while !done() {
        if t0.elapsed() > SETTLE {
            return Err(NvmeError::Unsupported(what()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Takes the controller at `addr` from the kernel for this driver (see the module doc).
/// Returns the driver that holds it now ("vfio-pci", or "none").
pub fn to_userspace(addr: &str) -> Result<&'static str, NvmeError> {
    let addr = find(addr)?;
    let target = userspace_driver();
    if bound_driver(&addr).as_deref() == target {
        return Ok(target.unwrap_or("none"));
    }
    if let Some(why) = in_use(&addr) {
        return Err(NvmeError::Unsupported(format!(
            "{addr} stays with the kernel: {why}"
        )));
    }
    if target.is_some() && !Path::new("/sys/bus/pci/drivers/vfio-pci").exists() {
        return Err(NvmeError::Unsupported(
            "the host has an IOMMU but vfio-pci is not loaded (modprobe vfio-pci)".into(),
        ));
    }
    unbind(&addr)?;
    write(
        &device_dir(&addr).join("driver_override"),
        target.unwrap_or("none"),
    )?;
    if let Some(drv) = target {
        write(Path::new(DRIVERS_PROBE), &addr)?;
        wait(
            || {
                format!(
                    "{addr} did not bind to {drv} (now {:?})",
                    bound_driver(&addr)
                )
            },
            || bound_driver(&addr).as_deref() == Some(drv),
        )?;
    }
    Ok(target.unwrap_or("none"))
}

/// Gives the controller at `addr` to the kernel's nvme driver (which must be loaded) and
/// returns the block device of its first namespace.
pub fn to_kernel(addr: &str) -> Result<PathBuf, NvmeError> {
    let addr = find(addr)?;
    if bound_driver(&addr).as_deref() != Some("nvme") {
        if !Path::new("/sys/bus/pci/drivers/nvme").exists() {
            return Err(NvmeError::Unsupported(
                "the kernel's nvme driver is not loaded (modprobe nvme)".into(),
            ));
        }
        unbind(&addr)?;
        write(&device_dir(&addr).join("driver_override"), "\n")?;
        write(Path::new(DRIVERS_PROBE), &addr)?;
        wait(
            || {
                format!(
                    "the nvme driver did not take {addr} (now {:?})",
                    bound_driver(&addr)
                )
            },
            || bound_driver(&addr).as_deref() == Some("nvme"),
        )?;
    }
    let node = || namespaces(&addr).first().map(|n| Path::new("/dev").join(n));
    wait(
        || format!("{addr} is on the nvme driver but no namespace block device appeared"),
        || node().is_some_and(|p| p.exists()),
    )?;
    Ok(node().expect("waited for it"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_the_nvme_block_devices_under_the_controller() {
        let dir = tempfile::tempdir().unwrap();
        let ctrl = dir.path().join("nvme/nvme1");
        for n in [
            "nvme1n2",
            "nvme1n1",
            "nvme1c1n1",
            "ng1n1",
            "device",
            "nvme1",
        ] {
            fs::create_dir_all(ctrl.join(n)).unwrap();
        }
        assert_eq!(namespaces_under(dir.path()), ["nvme1n1", "nvme1n2"]);
        assert!(namespaces_under(&dir.path().join("absent")).is_empty());
    }

    #[test]
    fn an_iommu_is_a_non_empty_groups_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_iommu(&dir.path().join("absent")));
        assert!(!has_iommu(dir.path()));
        fs::create_dir(dir.path().join("0")).unwrap();
        assert!(has_iommu(dir.path()));
    }

    #[test]
    fn an_address_that_is_not_a_controller_is_refused() {
        assert!(to_kernel("0000:ff:1f.7").is_err());
        assert!(to_userspace("0000:ff:1f.7").is_err());
    }
}
