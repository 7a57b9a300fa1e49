//! Namespace 1 as Keel's [`Geometry`], and the per-command transfer limit.

use super::cmd::NLB_MAX;
use super::identify::{IdentifyController, IdentifyNamespace};
use super::prp::PAGE_BYTES;
use crate::geometry::Geometry;

/// Largest transfer of one NVMe command when the controller states no MDTS.
pub const NO_MDTS_CAP_BYTES: u64 = 2 << 20;

/// Bytes one NVMe Read or Write may carry: MDTS (in 4 KiB pages), at most 65536 blocks,
/// capped when MDTS is 0 ("no limit").
pub fn command_max_bytes(ctrlr: &IdentifyController, block_size: u32) -> u32 {
    let mdts = ctrlr
        .max_transfer_bytes(PAGE_BYTES)
        .unwrap_or(NO_MDTS_CAP_BYTES)
        .min(NO_MDTS_CAP_BYTES);
    let nlb = u64::from(NLB_MAX) * u64::from(block_size);
    mdts.min(nlb) as u32
}

/// The geometry Keel sees. `max_transfer_bytes` is one NVMe command's worth (MDTS), or
/// `transfer_bytes` when that is larger: larger transfers are split into commands of at
/// most MDTS and joined into one completion.
pub fn geometry(
    ctrlr: &IdentifyController,
    ns: &IdentifyNamespace,
    vwc_enabled: bool,
    transfer_bytes: Option<u32>,
) -> Geometry {
    let block_size = ns.block_size().expect("checked at bring-up");
    let per_cmd = command_max_bytes(ctrlr, block_size);
    let max = transfer_bytes.map_or(per_cmd, |t| t.max(per_cmd));
    Geometry {
        block_size,
        block_count: ns.nsze,
        max_transfer_bytes: max / block_size * block_size,
        atomic_write_blocks: ns.atomic_write_blocks(ctrlr),
        fua_native: true,
        volatile_write_cache: vwc_enabled,
        write_zeroes: ctrlr.write_zeroes(),
        // PRP1 must be dword aligned (§4.3); every later page is found by translation.
        dma_align: 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvme::identify::tests::{controller_page, namespace_page};
    use crate::nvme::identify::NSFEAT_NSABP;

    #[test]
    fn qemu_defaults() {
        let c = IdentifyController::parse(&controller_page(7, 1 << 3, 1, 0));
        let ns = IdentifyNamespace::parse(&namespace_page(1 << 21, 0, 0, 0));
        let g = geometry(&c, &ns, true, None);
        assert_eq!(g.block_size, 512);
        assert_eq!(g.block_count, 1 << 21);
        assert_eq!(g.max_transfer_bytes, 512 << 10);
        assert_eq!(g.atomic_write_blocks, 1);
        assert!(g.volatile_write_cache);
        assert!(g.write_zeroes);
        let g = geometry(&c, &ns, false, Some(2 << 20));
        assert_eq!(g.max_transfer_bytes, 2 << 20);
        assert!(!g.volatile_write_cache);
    }

    #[test]
    fn atomic_unit_and_limits() {
        let c = IdentifyController::parse(&controller_page(0, 0, 0, 3));
        let ns = IdentifyNamespace::parse(&namespace_page(1 << 18, 1, NSFEAT_NSABP, 7));
        let g = geometry(&c, &ns, false, None);
        assert_eq!(g.block_size, 4096);
        assert_eq!(g.atomic_write_blocks, 8, "NAWUPF 7 when NSFEAT says so");
        assert_eq!(g.max_transfer_bytes, NO_MDTS_CAP_BYTES as u32);
        assert!(!g.write_zeroes);
        let ns = IdentifyNamespace::parse(&namespace_page(1 << 18, 0, 0, 7));
        assert_eq!(
            geometry(&c, &ns, false, None).atomic_write_blocks,
            4,
            "AWUPF 3"
        );
        // 512 B blocks and a huge MDTS: NLB (65536 blocks = 32 MiB) is not the limit,
        // the cap is.
        let c = IdentifyController::parse(&controller_page(12, 0, 0, 0));
        assert_eq!(command_max_bytes(&c, 512), NO_MDTS_CAP_BYTES as u32);
    }
}
