//! The controller as a PCI function, through sysfs (Linux Documentation/PCI/sysfs-pci.rst):
//! find it, see which driver holds it, enable it, turn on bus mastering, map BAR0.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use super::error::NvmeError;

const DEVICES: &str = "/sys/bus/pci/devices";
/// PCI class of an NVM Express controller: mass storage, NVM, NVMe programming interface.
pub const NVME_CLASS: u32 = 0x010802;
/// PCI command register offset in config space and its bits (PCI Local Bus 3.0, §6.2.2).
const PCI_COMMAND: u64 = 0x04;
const CMD_MEMORY_SPACE: u16 = 1 << 1;
const CMD_BUS_MASTER: u16 = 1 << 2;
const CMD_INTX_DISABLE: u16 = 1 << 10;

/// The sysfs directory of a PCI function.
pub fn device_dir(addr: &str) -> PathBuf {
    Path::new(DEVICES).join(addr)
}

fn class_of(dir: &Path) -> Option<u32> {
    let text = fs::read_to_string(dir.join("class")).ok()?;
    u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
}

/// The driver bound to the function, if any.
pub fn bound_driver(addr: &str) -> Option<String> {
    let link = fs::read_link(device_dir(addr).join("driver")).ok()?;
    link.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// The address of the controller `spec` names: a PCI address, or "auto" for the first NVMe
/// controller with no driver or with vfio-pci.
pub fn find(spec: &str) -> Result<String, NvmeError> {
    if spec != "auto" {
        let dir = device_dir(spec);
        return match class_of(&dir) {
            Some(NVME_CLASS) => Ok(spec.to_string()),
            Some(c) => Err(NvmeError::Unsupported(format!(
                "{spec} has PCI class {c:06x}, not an NVMe controller (010802)"
            ))),
            None => Err(NvmeError::NotFound(spec.to_string())),
        };
    }
    let mut addrs: Vec<String> = fs::read_dir(DEVICES)
        .map_err(|e| NvmeError::sys(format!("list {DEVICES}"), e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|a| class_of(&device_dir(a)) == Some(NVME_CLASS))
        .collect();
    addrs.sort();
    addrs
        .into_iter()
        .find(|a| matches!(bound_driver(a).as_deref(), None | Some("vfio-pci")))
        .ok_or_else(|| NvmeError::NotFound("auto (none unbound or on vfio-pci)".into()))
}

/// Sets Memory Space, Bus Master and INTx Disable in the command register, through a
/// config-space accessor (sysfs `config` file or the VFIO config region).
pub fn enable_bus_master(
    read: impl Fn(&mut [u8], u64) -> std::io::Result<()>,
    write: impl Fn(&[u8], u64) -> std::io::Result<()>,
) -> std::io::Result<u16> {
    let mut cmd = [0u8; 2];
    read(&mut cmd, PCI_COMMAND)?;
    let old = u16::from_le_bytes(cmd);
    let new = old | CMD_MEMORY_SPACE | CMD_BUS_MASTER | CMD_INTX_DISABLE;
    if new != old {
        write(&new.to_le_bytes(), PCI_COMMAND)?;
    }
    Ok(new)
}

/// A BAR mapped into this process; unmapped on drop.
pub struct BarMap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by this value and accessed only through volatile register
// accesses (regs.rs); it can be unmapped from any thread.
unsafe impl Send for BarMap {}
// SAFETY: as above.
unsafe impl Sync for BarMap {}

impl BarMap {
    /// Maps `len` bytes of `file` at `offset`, shared (writes reach the device).
    pub fn map(file: &File, offset: u64, len: usize, what: &str) -> Result<Self, NvmeError> {
        // SAFETY: a fresh shared mapping of a device file; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(NvmeError::sys(
                format!("mmap {what}"),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(BarMap {
            ptr: NonNull::new(ptr.cast()).expect("mmap never returns null on success"),
            len,
        })
    }

    /// First byte.
    pub fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Length in bytes.
    pub fn bytes(&self) -> usize {
        self.len
    }
}

impl Drop for BarMap {
    fn drop(&mut self) {
        // `ptr`/`len` are exactly the mapping made in map(); nothing uses it any more
        // (the register block and doorbells are dropped before this).
        // SAFETY: the mapping is unmapped once, and nothing uses it.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Whether the device's DMA goes through a translating IOMMU domain: it has an IOMMU group
/// whose default domain is not "identity" (passthrough). Returns (group, domain type).
pub fn translating_iommu(dir: &Path) -> Option<(String, String)> {
    translating_iommu_in(dir, Path::new("/sys/kernel/iommu_groups"))
}

fn translating_iommu_in(dir: &Path, groups: &Path) -> Option<(String, String)> {
    let group = fs::read_link(dir.join("iommu_group")).ok()?;
    let name = group.file_name()?.to_string_lossy().into_owned();
    // Kernels without the `type` file predate default-domain types: assume translation.
    let domain = fs::read_to_string(groups.join(&name).join("type"))
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    (domain != "identity").then_some((name, domain))
}

/// The sysfs path: a function with no driver, enabled and mastered by hand, BAR0 mapped
/// through `resource0`. Needs root, and no translating IOMMU in front of the device
/// (pagemap gives physical addresses, which such an IOMMU would not map).
pub fn open_sysfs(addr: &str) -> Result<BarMap, NvmeError> {
    let dir = device_dir(addr);
    if let Some((group, domain)) = translating_iommu(&dir) {
        return Err(NvmeError::BehindIommu {
            pci: addr.to_owned(),
            group,
            domain,
        });
    }
    let sys = |what: &str, e| NvmeError::sys(format!("{what} {}", dir.display()), e);
    fs::write(dir.join("enable"), "1").map_err(|e| sys("write 1 to enable of", e))?;
    let config = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("config"))
        .map_err(|e| sys("open config of", e))?;
    enable_bus_master(
        |b, off| config.read_exact_at(b, off),
        |b, off| config.write_all_at(b, off),
    )
    .map_err(|e| sys("set bus master in config of", e))?;
    let path = dir.join("resource0");
    let bar = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| sys("open resource0 of", e))?;
    let len = bar
        .metadata()
        .map_err(|e| sys("stat resource0 of", e))?
        .len() as usize;
    BarMap::map(&bar, 0, len, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_translating_iommu_group_is_detected_and_passthrough_is_not() {
        let tmp = std::env::temp_dir().join(format!("keel-iommu-{}", std::process::id()));
        let dev = tmp.join("dev");
        let groups = tmp.join("groups");
        fs::create_dir_all(&dev).unwrap();
        fs::create_dir_all(groups.join("7")).unwrap();
        assert_eq!(
            translating_iommu_in(&dev, &groups),
            None,
            "no group: no IOMMU"
        );
        std::os::unix::fs::symlink(groups.join("7"), dev.join("iommu_group")).unwrap();
        assert_eq!(
            translating_iommu_in(&dev, &groups),
            Some(("7".into(), "unknown".into())),
            "no type file: assume translation"
        );
        fs::write(groups.join("7/type"), "DMA-FQ\n").unwrap();
        assert_eq!(
            translating_iommu_in(&dev, &groups),
            Some(("7".into(), "DMA-FQ".into()))
        );
        fs::write(groups.join("7/type"), "identity\n").unwrap();
        assert_eq!(translating_iommu_in(&dev, &groups), None, "passthrough");
        fs::remove_dir_all(&tmp).unwrap();
    }
    use std::cell::RefCell;

    #[test]
    fn bus_master_sets_bits_once() {
        let cfg = RefCell::new(vec![0u8; 64]);
        cfg.borrow_mut()[4] = 0x02; // memory space on, as firmware leaves it
        let read = |b: &mut [u8], off: u64| {
            b.copy_from_slice(&cfg.borrow()[off as usize..off as usize + b.len()]);
            Ok(())
        };
        let write = |b: &[u8], off: u64| {
            cfg.borrow_mut()[off as usize..off as usize + b.len()].copy_from_slice(b);
            Ok(())
        };
        let v = enable_bus_master(read, write).unwrap();
        assert_eq!(v, 0x0406);
        assert_eq!(&cfg.borrow()[4..6], &[0x06, 0x04]);
    }
}
