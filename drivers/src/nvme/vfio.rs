//! The VFIO path (Linux Documentation/driver-api/vfio.rst, include/uapi/linux/vfio.h) for a
//! controller bound to vfio-pci behind an IOMMU: a container with the type1 IOMMU, the
//! device's group, the device fd, BAR0 mapped through its region offset, bus mastering
//! through the config region, and DMA maps at IOVAs the driver picks (a bump allocator).
//! Every mapping is undone when the `Vfio` goes away.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use super::error::NvmeError;
use super::pci::{self, BarMap};
use crate::dma::DmaRegion;

// ioctl numbers: _IO(VFIO_TYPE = ';', VFIO_BASE + n); VFIO ioctls carry no size in the
// number (the structs carry `argsz`).
const VFIO_TYPE: u64 = b';' as u64;
const fn vfio_io(n: u64) -> u64 {
    (VFIO_TYPE << 8) | (100 + n)
}
const VFIO_GET_API_VERSION: u64 = vfio_io(0);
const VFIO_CHECK_EXTENSION: u64 = vfio_io(1);
const VFIO_SET_IOMMU: u64 = vfio_io(2);
const VFIO_GROUP_GET_STATUS: u64 = vfio_io(3);
const VFIO_GROUP_SET_CONTAINER: u64 = vfio_io(4);
const VFIO_GROUP_GET_DEVICE_FD: u64 = vfio_io(6);
const VFIO_DEVICE_GET_REGION_INFO: u64 = vfio_io(8);
const VFIO_IOMMU_MAP_DMA: u64 = vfio_io(13);
const VFIO_IOMMU_UNMAP_DMA: u64 = vfio_io(14);

const _: () = {
    assert!(VFIO_GET_API_VERSION == 0x3b64);
    assert!(VFIO_GROUP_GET_DEVICE_FD == 0x3b6a);
    assert!(VFIO_IOMMU_MAP_DMA == 0x3b71);
};

const VFIO_API_VERSION: i32 = 0;
const VFIO_TYPE1_IOMMU: u64 = 1;
const VFIO_GROUP_FLAGS_VIABLE: u32 = 1 << 0;
const VFIO_PCI_BAR0_REGION_INDEX: u32 = 0;
const VFIO_PCI_CONFIG_REGION_INDEX: u32 = 7;
const VFIO_REGION_INFO_FLAG_MMAP: u32 = 1 << 2;
const VFIO_DMA_MAP_FLAG_READ: u32 = 1 << 0;
const VFIO_DMA_MAP_FLAG_WRITE: u32 = 1 << 1;

/// struct vfio_group_status.
#[repr(C)]
#[derive(Default)]
struct GroupStatus {
    argsz: u32,
    flags: u32,
}

/// struct vfio_region_info.
#[repr(C)]
#[derive(Default)]
struct RegionInfo {
    argsz: u32,
    flags: u32,
    index: u32,
    cap_offset: u32,
    size: u64,
    offset: u64,
}

/// struct vfio_iommu_type1_dma_map.
#[repr(C)]
struct DmaMap {
    argsz: u32,
    flags: u32,
    vaddr: u64,
    iova: u64,
    size: u64,
}

/// struct vfio_iommu_type1_dma_unmap.
#[repr(C)]
struct DmaUnmap {
    argsz: u32,
    flags: u32,
    iova: u64,
    size: u64,
}

const _: () = {
    assert!(size_of::<GroupStatus>() == 8);
    assert!(size_of::<RegionInfo>() == 32);
    assert!(size_of::<DmaMap>() == 32);
    assert!(size_of::<DmaUnmap>() == 24);
};

/// First IOVA handed out (low memory left alone; any value the IOMMU accepts works).
const IOVA_BASE: u64 = 1 << 32;

fn ioctl(fd: &File, req: u64, arg: libc::c_ulong, what: &str) -> Result<i32, NvmeError> {
    // `req` is a VFIO ioctl and `arg` is either an integer argument or a pointer to
    // a live repr(C) struct of the layout the kernel expects for `req` (checked above).
    // SAFETY: the argument is what the kernel expects for `req`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg) };
    if r < 0 {
        return Err(NvmeError::sys(what, std::io::Error::last_os_error()));
    }
    Ok(r)
}

struct Mapping {
    region: DmaRegion,
    iova: u64,
    len: u64,
}

/// An open VFIO device with its container and group.
pub(crate) struct Vfio {
    container: File,
    _group: File,
    /// Kept open: closing the device fd resets the function.
    _device: File,
    maps: Mutex<(u64, Vec<Mapping>)>,
}

impl Vfio {
    /// Opens the device at PCI address `addr` (bound to vfio-pci), enables bus mastering,
    /// and maps BAR0.
    pub(crate) fn open(addr: &str) -> Result<(Self, BarMap), NvmeError> {
        let open = |path: &str| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| NvmeError::sys(format!("open {path}"), e))
        };
        let container = open("/dev/vfio/vfio")?;
        let version = ioctl(&container, VFIO_GET_API_VERSION, 0, "VFIO_GET_API_VERSION")?;
        if version != VFIO_API_VERSION {
            return Err(NvmeError::Unsupported(format!(
                "VFIO API version {version}, expected {VFIO_API_VERSION}"
            )));
        }
        if ioctl(
            &container,
            VFIO_CHECK_EXTENSION,
            VFIO_TYPE1_IOMMU as _,
            "VFIO_CHECK_EXTENSION",
        )? == 0
        {
            return Err(NvmeError::Unsupported(
                "VFIO has no type1 IOMMU (is the IOMMU on?)".into(),
            ));
        }
        let link = std::fs::read_link(pci::device_dir(addr).join("iommu_group"))
            .map_err(|e| NvmeError::sys(format!("read iommu_group of {addr}"), e))?;
        let group_no = link
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let group = open(&format!("/dev/vfio/{group_no}"))?;
        let mut status = GroupStatus {
            argsz: size_of::<GroupStatus>() as u32,
            flags: 0,
        };
        ioctl(
            &group,
            VFIO_GROUP_GET_STATUS,
            &mut status as *mut _ as _,
            "VFIO_GROUP_GET_STATUS",
        )?;
        if status.flags & VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(NvmeError::Unsupported(format!(
                "IOMMU group {group_no} is not viable: bind every device in it to vfio-pci"
            )));
        }
        let cfd: i32 = container.as_raw_fd();
        ioctl(
            &group,
            VFIO_GROUP_SET_CONTAINER,
            &cfd as *const i32 as _,
            "VFIO_GROUP_SET_CONTAINER",
        )?;
        ioctl(
            &container,
            VFIO_SET_IOMMU,
            VFIO_TYPE1_IOMMU as _,
            "VFIO_SET_IOMMU",
        )?;
        let name = CString::new(addr).map_err(|_| NvmeError::NotFound(addr.into()))?;
        let dfd = ioctl(
            &group,
            VFIO_GROUP_GET_DEVICE_FD,
            name.as_ptr() as _,
            "VFIO_GROUP_GET_DEVICE_FD",
        )?;
        // SAFETY: the ioctl returned a new fd that nothing else owns.
        let device = unsafe { File::from_raw_fd(dfd) };
        let region = |index: u32| -> Result<RegionInfo, NvmeError> {
            let mut info = RegionInfo {
                argsz: size_of::<RegionInfo>() as u32,
                index,
                ..Default::default()
            };
            ioctl(
                &device,
                VFIO_DEVICE_GET_REGION_INFO,
                &mut info as *mut _ as _,
                "VFIO_DEVICE_GET_REGION_INFO",
            )?;
            Ok(info)
        };
        let config = region(VFIO_PCI_CONFIG_REGION_INDEX)?;
        let bar0 = region(VFIO_PCI_BAR0_REGION_INDEX)?;
        if bar0.flags & VFIO_REGION_INFO_FLAG_MMAP == 0 {
            return Err(NvmeError::Unsupported("VFIO BAR0 cannot be mmapped".into()));
        }
        pci::enable_bus_master(
            |b, off| device.read_exact_at(b, config.offset + off),
            |b, off| device.write_all_at(b, config.offset + off),
        )
        .map_err(|e| NvmeError::sys(format!("set bus master on {addr} through VFIO"), e))?;
        let bar = BarMap::map(&device, bar0.offset, bar0.size as usize, "VFIO BAR0")?;
        log::info!(
            "nvme {addr}: VFIO group {group_no}, BAR0 {} KiB",
            bar0.size >> 10
        );
        Ok((
            Vfio {
                container,
                _group: group,
                _device: device,
                maps: Mutex::new((IOVA_BASE, Vec::new())),
            },
            bar,
        ))
    }

    /// Maps `region` for DMA (read and write) at a fresh IOVA, once; returns its IOVA.
    pub(crate) fn map_region(&self, region: &DmaRegion) -> Result<u64, NvmeError> {
        let mut maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = maps.1.iter().find(|m| m.region.id() == region.id()) {
            return Ok(m.iova);
        }
        let len = region.len() as u64;
        // Align IOVAs to 2 MiB so hugepage regions map with large IOMMU pages.
        let iova = maps.0.next_multiple_of(2 << 20);
        let map = DmaMap {
            argsz: size_of::<DmaMap>() as u32,
            flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
            vaddr: region.as_ptr() as u64,
            iova,
            size: len,
        };
        ioctl(
            &self.container,
            VFIO_IOMMU_MAP_DMA,
            &map as *const _ as _,
            "VFIO_IOMMU_MAP_DMA",
        )?;
        maps.0 = iova + len;
        maps.1.push(Mapping {
            region: region.clone(),
            iova,
            len,
        });
        log::debug!(
            "vfio: region {} ({len} bytes) at iova {iova:#x}",
            region.id()
        );
        Ok(iova)
    }

    /// The IOVA of a mapped region.
    pub(crate) fn iova_of(&self, region_id: u32) -> Option<u64> {
        let maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        maps.1
            .iter()
            .find(|m| m.region.id() == region_id)
            .map(|m| m.iova)
    }
}

impl Drop for Vfio {
    fn drop(&mut self) {
        let maps = self.maps.get_mut().unwrap_or_else(|p| p.into_inner());
        for m in maps.1.drain(..) {
            let unmap = DmaUnmap {
                argsz: size_of::<DmaUnmap>() as u32,
                flags: 0,
                iova: m.iova,
                size: m.len,
            };
            if let Err(e) = ioctl(
                &self.container,
                VFIO_IOMMU_UNMAP_DMA,
                &unmap as *const _ as _,
                "VFIO_IOMMU_UNMAP_DMA",
            ) {
                log::warn!("vfio: unmap of iova {:#x}: {e}", m.iova);
            }
            // The region (and its memory) goes only after the IOMMU forgot it.
            drop(m.region);
        }
    }
}
