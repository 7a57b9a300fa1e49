//! The controller register block in BAR0 (NVMe Base Specification 1.4, §3.1 "Register
//! Definition"), and the doorbells behind it (§3.1.24–25).
//!
//! [`Registers`] is the one way to touch BAR0: every access is a volatile read or write of
//! one register through a raw pointer computed with `addr_of!`, never a Rust reference into
//! device memory (the device changes it behind the compiler's back). 64-bit registers are
//! accessed as two 32-bit halves, low first, which every controller must accept (§3.1).

use std::ptr::{addr_of, addr_of_mut, NonNull};

use bitflags::bitflags;

/// Offset of the first doorbell in BAR0 (§3.1.24: SQ 0 tail doorbell at 1000h).
pub const DOORBELL_BASE: usize = 0x1000;

/// The register layout at the start of BAR0 (§3.1, Figure 78). Never instantiated: it only
/// names offsets for volatile accesses through a pointer.
#[repr(C)]
pub struct RegisterBlock {
    /// 00h Controller Capabilities.
    pub cap: u64,
    /// 08h Version.
    pub vs: u32,
    /// 0Ch Interrupt Mask Set.
    pub intms: u32,
    /// 10h Interrupt Mask Clear.
    pub intmc: u32,
    /// 14h Controller Configuration.
    pub cc: u32,
    _rsvd18: u32,
    /// 1Ch Controller Status.
    pub csts: u32,
    /// 20h NVM Subsystem Reset.
    pub nssr: u32,
    /// 24h Admin Queue Attributes.
    pub aqa: u32,
    /// 28h Admin Submission Queue Base Address.
    pub asq: u64,
    /// 30h Admin Completion Queue Base Address.
    pub acq: u64,
}

const _: () = {
    use std::mem::offset_of;
    assert!(offset_of!(RegisterBlock, cap) == 0x00);
    assert!(offset_of!(RegisterBlock, vs) == 0x08);
    assert!(offset_of!(RegisterBlock, intms) == 0x0c);
    assert!(offset_of!(RegisterBlock, intmc) == 0x10);
    assert!(offset_of!(RegisterBlock, cc) == 0x14);
    assert!(offset_of!(RegisterBlock, csts) == 0x1c);
    assert!(offset_of!(RegisterBlock, nssr) == 0x20);
    assert!(offset_of!(RegisterBlock, aqa) == 0x24);
    assert!(offset_of!(RegisterBlock, asq) == 0x28);
    assert!(offset_of!(RegisterBlock, acq) == 0x30);
    assert!(std::mem::size_of::<RegisterBlock>() == 0x38);
};

/// Controller Capabilities (CAP, §3.1.1), decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap(pub u64);

impl Cap {
    /// Maximum Queue Entries Supported, as a count (MQES is 0-based).
    pub fn max_queue_entries(self) -> u32 {
        (self.0 & 0xffff) as u32 + 1
    }

    /// Contiguous Queues Required.
    pub fn contiguous_queues_required(self) -> bool {
        self.0 & (1 << 16) != 0
    }

    /// Timeout (TO) in milliseconds: worst time for CSTS.RDY to change (500 ms units).
    pub fn timeout_ms(self) -> u64 {
        ((self.0 >> 24) & 0xff) * 500
    }

    /// Doorbell Stride: doorbells are `4 << DSTRD` bytes apart.
    pub fn doorbell_stride_bytes(self) -> usize {
        4 << ((self.0 >> 32) & 0xf)
    }

    /// Command Sets Supported bit 0: the NVM command set.
    pub fn supports_nvm_command_set(self) -> bool {
        (self.0 >> 37) & 1 != 0
    }

    /// Memory Page Size Minimum in bytes (2 ^ (12 + MPSMIN)).
    pub fn page_size_min(self) -> u64 {
        1 << (12 + ((self.0 >> 48) & 0xf))
    }

    /// Memory Page Size Maximum in bytes.
    pub fn page_size_max(self) -> u64 {
        1 << (12 + ((self.0 >> 52) & 0xf))
    }
}

bitflags! {
    /// Controller Configuration single-bit fields (CC, §3.1.5).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct CcFlags: u32 {
        /// Enable.
        const EN = 1 << 0;
    }
}

/// Controller Configuration (CC, §3.1.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cc(pub u32);

/// CC.SHN: normal shutdown notification.
pub const CC_SHN_NORMAL: u32 = 0b01;
/// CC.CSS: NVM command set.
pub const CC_CSS_NVM: u32 = 0b000;

impl Cc {
    /// The configuration Keel runs with: NVM command set, 4 KiB pages (MPS 0), round robin
    /// arbitration, 64-byte SQ entries (IOSQES 6), 16-byte CQ entries (IOCQES 4), disabled.
    pub fn keel() -> Self {
        Cc((CC_CSS_NVM << 4) | (6 << 16) | (4 << 20))
    }

    /// The flag bits.
    pub fn flags(self) -> CcFlags {
        CcFlags::from_bits_truncate(self.0)
    }

    /// With EN set or cleared.
    pub fn with_enable(self, on: bool) -> Self {
        let mut f = self.0 & !CcFlags::EN.bits();
        if on {
            f |= CcFlags::EN.bits();
        }
        Cc(f)
    }

    /// With a shutdown notification (SHN, bits 15:14).
    pub fn with_shutdown(self, shn: u32) -> Self {
        Cc((self.0 & !(0b11 << 14)) | ((shn & 0b11) << 14))
    }
}

bitflags! {
    /// Controller Status (CSTS, §3.1.6) single-bit fields.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Csts: u32 {
        /// Ready.
        const RDY = 1 << 0;
        /// Controller Fatal Status.
        const CFS = 1 << 1;
        /// NVM Subsystem Reset Occurred.
        const NSSRO = 1 << 4;
        /// Processing Paused.
        const PP = 1 << 5;
        // SHST (bits 3:2) is a two-bit field: see `shutdown_status`.
        const _ = !0;
    }
}

/// CSTS.SHST: shutdown processing complete.
pub const SHST_COMPLETE: u32 = 0b10;

impl Csts {
    /// Shutdown Status (SHST, bits 3:2).
    pub fn shutdown_status(self) -> u32 {
        (self.bits() >> 2) & 0b11
    }

    /// All ones: the device has gone away (a read of a removed PCI device).
    pub fn is_gone(self) -> bool {
        self.bits() == u32::MAX
    }
}

/// Admin Queue Attributes (AQA, §3.1.8) for `sq` and `cq` entries (counts, not 0-based).
pub fn aqa(sq_entries: u32, cq_entries: u32) -> u32 {
    assert!((2..=4096).contains(&sq_entries) && (2..=4096).contains(&cq_entries));
    ((cq_entries - 1) << 16) | (sq_entries - 1)
}

/// Byte offset of a doorbell in BAR0 (§3.1.24–25): SQ `qid` tail doorbell at
/// 1000h + (2 * qid) * stride, CQ `qid` head doorbell at 1000h + (2 * qid + 1) * stride.
pub fn doorbell_offset(qid: u16, completion: bool, stride_bytes: usize) -> usize {
    DOORBELL_BASE + (2 * usize::from(qid) + usize::from(completion)) * stride_bytes
}

/// The mapped BAR0: the typed, volatile-only view of the controller's registers.
pub struct Registers {
    base: NonNull<RegisterBlock>,
    len: usize,
}

// SAFETY: Registers is a pointer to device memory that stays mapped for the life of the
// value (the owner of the mapping outlives it); every access is a single volatile read or
// write, which the controller serialises, so sharing it between threads is sound.
unsafe impl Send for Registers {}
// SAFETY: as above: no access goes through a Rust reference, so there is no aliasing.
unsafe impl Sync for Registers {}

impl Registers {
    /// Wraps a mapped BAR0.
    ///
    /// # Safety
    /// `base` must point to a mapping of `len` bytes of the controller's BAR0 (or of plain
    /// memory standing in for it in a test), at least 4 KiB plus the doorbells used, that
    /// stays mapped for the life of the returned value.
    pub unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
        assert!(len >= DOORBELL_BASE + 8, "BAR0 of {len} bytes is too small");
        Registers {
            base: base.cast(),
            len,
        }
    }

    fn read32(&self, reg: *const u32) -> u32 {
        // `reg` is a field of the register block, inside the mapping (new's
        // contract); volatile: the device changes it.
        // SAFETY: the register read is in bounds.
        unsafe { reg.read_volatile() }
    }

    fn write32(&self, reg: *mut u32, v: u32) {
        // SAFETY: as in read32.
        unsafe { reg.write_volatile(v) }
    }

    fn read64(&self, reg: *const u64) -> u64 {
        let lo = reg.cast::<u32>();
        // SAFETY: the high half is the next u32 of the same 8-byte register.
        let hi = unsafe { lo.add(1) };
        u64::from(self.read32(lo)) | (u64::from(self.read32(hi)) << 32)
    }

    fn write64(&self, reg: *mut u64, v: u64) {
        let lo = reg.cast::<u32>();
        // SAFETY: the high half is the next u32 of the same 8-byte register.
        let hi = unsafe { lo.add(1) };
        self.write32(lo, v as u32);
        self.write32(hi, (v >> 32) as u32);
    }

    fn block(&self) -> *mut RegisterBlock {
        self.base.as_ptr()
    }

    /// CAP.
    pub fn cap(&self) -> Cap {
        // SAFETY: addr_of! computes the field's address without making a reference.
        Cap(self.read64(unsafe { addr_of!((*self.block()).cap) }))
    }

    /// VS: (major, minor, tertiary).
    pub fn version(&self) -> (u16, u8, u8) {
        // SAFETY: as in cap.
        let v = self.read32(unsafe { addr_of!((*self.block()).vs) });
        ((v >> 16) as u16, (v >> 8) as u8, v as u8)
    }

    /// INTMS: masks the interrupt vectors set in `mask` (the driver polls; it masks all).
    pub fn set_intms(&self, mask: u32) {
        // SAFETY: as in cap.
        self.write32(unsafe { addr_of_mut!((*self.block()).intms) }, mask);
    }

    /// INTMC: unmasks the interrupt vectors set in `mask`.
    pub fn set_intmc(&self, mask: u32) {
        // SAFETY: as in cap.
        self.write32(unsafe { addr_of_mut!((*self.block()).intmc) }, mask);
    }

    /// CC.
    pub fn cc(&self) -> Cc {
        // SAFETY: as in cap.
        Cc(self.read32(unsafe { addr_of!((*self.block()).cc) }))
    }

    /// Writes CC.
    pub fn set_cc(&self, cc: Cc) {
        // SAFETY: as in cap.
        self.write32(unsafe { addr_of_mut!((*self.block()).cc) }, cc.0);
    }

    /// CSTS.
    pub fn csts(&self) -> Csts {
        // SAFETY: as in cap.
        Csts::from_bits_retain(self.read32(unsafe { addr_of!((*self.block()).csts) }))
    }

    /// NSSR: writing "NVMe" (4E564D65h) resets the subsystem. Not used by the driver.
    pub fn set_nssr(&self, v: u32) {
        // SAFETY: as in cap.
        self.write32(unsafe { addr_of_mut!((*self.block()).nssr) }, v);
    }

    /// Writes AQA, ASQ and ACQ (only while CC.EN = 0).
    pub fn set_admin_queues(&self, aqa: u32, asq: u64, acq: u64) {
        // SAFETY: as in cap.
        unsafe {
            self.write32(addr_of_mut!((*self.block()).aqa), aqa);
            self.write64(addr_of_mut!((*self.block()).asq), asq);
            self.write64(addr_of_mut!((*self.block()).acq), acq);
        }
    }

    /// Reads back ASQ (for tests of the layout).
    pub fn asq(&self) -> u64 {
        // SAFETY: as in cap.
        self.read64(unsafe { addr_of!((*self.block()).asq) })
    }

    /// The doorbell of queue `qid` (its SQ tail when `completion` is false, its CQ head
    /// otherwise), with the stride from CAP.DSTRD. Panics if it lies past the mapping.
    pub fn doorbell(&self, qid: u16, completion: bool, stride_bytes: usize) -> Doorbell {
        let off = doorbell_offset(qid, completion, stride_bytes);
        assert!(
            off + 4 <= self.len,
            "doorbell {off:#x} past BAR0 ({:#x})",
            self.len
        );
        // `off + 4 <= len`: inside the mapping, which outlives the Doorbell (the
        // controller keeps the mapping alive as long as any queue exists).
        // SAFETY: the doorbell pointer is in bounds and outlives its use.
        let ptr = unsafe { self.base.cast::<u8>().add(off).cast::<u32>() };
        // SAFETY: as above; doorbells are 4-byte aligned (1000h + multiple of 4).
        unsafe { Doorbell::new(ptr) }
    }
}

/// One write-only doorbell register.
#[derive(Debug)]
pub struct Doorbell {
    reg: NonNull<u32>,
}

// SAFETY: a Doorbell belongs to exactly one queue, which is owned by one thread at a time;
// the register it points to stays mapped (Doorbell::new's contract).
unsafe impl Send for Doorbell {}

impl Doorbell {
    /// A doorbell at `reg`.
    ///
    /// # Safety
    /// `reg` must be a 4-byte-aligned doorbell register in a mapped BAR0 (or a plain `u32`
    /// in a test) that stays valid for the life of the Doorbell, written by nobody else.
    pub unsafe fn new(reg: NonNull<u32>) -> Self {
        Doorbell { reg }
    }

    /// Writes `value` (a queue tail or head index). Callers order their memory writes
    /// before this with a fence.
    pub fn write(&mut self, value: u32) {
        // SAFETY: the register is valid and ours alone (new's contract).
        unsafe { self.reg.as_ptr().write_volatile(value) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doorbells_follow_the_stride() {
        assert_eq!(doorbell_offset(0, false, 4), 0x1000);
        assert_eq!(doorbell_offset(0, true, 4), 0x1004);
        assert_eq!(doorbell_offset(1, false, 4), 0x1008);
        assert_eq!(doorbell_offset(3, true, 4), 0x101c);
        assert_eq!(doorbell_offset(1, true, 16), 0x1030);
    }

    #[test]
    fn cap_fields_decode() {
        // QEMU 7.2: MQES 2047, CQR, TO 15 (7.5 s), DSTRD 0, CSS NVM, MPSMIN 0, MPSMAX 4.
        let cap = Cap(0x7ff | (1 << 16) | (15 << 24) | (1 << 37) | (4 << 52));
        assert_eq!(cap.max_queue_entries(), 2048);
        assert!(cap.contiguous_queues_required());
        assert_eq!(cap.timeout_ms(), 7500);
        assert_eq!(cap.doorbell_stride_bytes(), 4);
        assert!(cap.supports_nvm_command_set());
        assert_eq!(cap.page_size_min(), 4096);
        assert_eq!(cap.page_size_max(), 65536);
    }

    #[test]
    fn cc_and_csts_fields() {
        let cc = Cc::keel().with_enable(true);
        assert_eq!(cc.0, 0x0046_0001);
        assert!(cc.flags().contains(CcFlags::EN));
        assert_eq!(cc.with_shutdown(CC_SHN_NORMAL).0 >> 14 & 3, 1);
        assert!(!cc.with_enable(false).flags().contains(CcFlags::EN));
        let csts = Csts::from_bits_retain(0b1001);
        assert!(csts.contains(Csts::RDY));
        assert_eq!(csts.shutdown_status(), SHST_COMPLETE);
        assert!(Csts::from_bits_retain(u32::MAX).is_gone());
        assert_eq!(aqa(32, 64), (63 << 16) | 31);
    }

    #[test]
    fn registers_are_volatile_fields_of_plain_memory() {
        let mut mem = vec![0u64; 0x2000 / 8];
        let base = NonNull::new(mem.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: mem is 8 KiB of plain memory that outlives regs.
        let regs = unsafe { Registers::new(base, 0x2000) };
        regs.set_cc(Cc(0x1234_5678));
        regs.set_admin_queues(aqa(2, 2), 0x1122_3344_5566_7788, 0x99);
        let mut db = regs.doorbell(1, true, 4);
        db.write(7);
        let bytes: Vec<u8> = mem.iter().flat_map(|w| w.to_le_bytes()).collect();
        let word = |off: usize| u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap());
        assert_eq!(word(0x14), 0x1234_5678);
        assert_eq!(word(0x24), 0x0001_0001);
        assert_eq!(word(0x28), 0x5566_7788);
        assert_eq!(word(0x2c), 0x1122_3344);
        assert_eq!(word(0x30), 0x99);
        assert_eq!(word(0x100c), 7);
    }
}
