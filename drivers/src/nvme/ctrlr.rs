//! Controller bring-up, the admin queue, I/O queue creation and deletion, and shutdown
//! (NVMe Base Specification 1.4, §7.6.1 "Initialization", §7.6.2 "Shutdown").
//!
//! Bring-up, in order: reset (CC.EN = 0, wait CSTS.RDY = 0: SeaBIOS leaves QEMU's
//! controller enabled), mask interrupts, admin queues (AQA/ASQ/ACQ), CC (NVM command set,
//! 4 KiB pages, 64/16-byte entries), enable and wait CSTS.RDY = 1, Identify Controller,
//! Identify Namespace 1, Set Features Number of Queues, Get Features Volatile Write Cache.
//! Every wait is bounded by CAP.TO (or the admin timeout) and checks CSTS.CFS.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::cmd::{cns, feature, CompletionEntry, SubmissionEntry};
use super::error::NvmeError;
use super::identify::{IdentifyController, IdentifyNamespace, IDENTIFY_BYTES};
use super::mem::{Chunk, ChunkPool, Mapper};
use super::pci::BarMap;
use super::queue::Queue;
use super::regs::{aqa, Cc, Csts, Registers, CC_SHN_NORMAL, SHST_COMPLETE};
use super::vfio::Vfio;
use super::NvmeConfig;
use crate::command::Op;
use crate::status::NvmeStatus;

/// Entries of the admin queues.
const ADMIN_ENTRIES: u16 = 32;
/// The namespace Keel uses.
pub(crate) const NSID: u32 = 1;

/// How the driver reaches the controller.
pub(crate) enum Access {
    /// sysfs `resource0` + physical addresses from pagemap.
    Sysfs,
    /// vfio-pci + IOVAs.
    Vfio(Arc<Vfio>),
}

/// The admin queue: one command at a time, under the controller's mutex.
pub(crate) struct Admin {
    queue: Queue,
    /// A 4 KiB page for Identify data.
    page: Chunk,
    _rings: Chunk,
    next_cid: u16,
}

/// An armed fault: the `nth` command of `op` from now fails with `status` without reaching
/// the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NvmeFault {
    /// Which operation.
    pub op: Op,
    /// 1-based count of future commands of that operation.
    pub nth: u64,
    /// The status it completes with.
    pub status: NvmeStatus,
}

/// One controller, shared by its device handle and every queue pair.
pub(crate) struct Controller {
    pub(crate) pci: String,
    // Field order is drop order: registers and doorbells go before the BAR mapping.
    pub(crate) regs: Registers,
    pub(crate) stride: usize,
    pub(crate) mqes: u32,
    pub(crate) timeout_ms: u64,
    pub(crate) config: NvmeConfig,
    pub(crate) ident: IdentifyController,
    pub(crate) ns: IdentifyNamespace,
    pub(crate) vwc_enabled: bool,
    /// I/O queue pairs granted by Set Features Number of Queues.
    pub(crate) io_queues_max: u16,
    /// In use flags of qids 1..=io_queues_max (index qid - 1).
    qids: Mutex<Vec<bool>>,
    pub(crate) admin: Mutex<Admin>,
    pub(crate) chunks: Arc<ChunkPool>,
    pub(crate) mapper: Mapper,
    faults_armed: AtomicBool,
    faults: Mutex<Vec<(NvmeFault, u64)>>,
    _bar: BarMap,
    _access: Access,
}

fn wait_ready(regs: &Registers, want: bool, ms: u64) -> Result<(), NvmeError> {
    let start = Instant::now();
    loop {
        let csts = regs.csts();
        if csts.is_gone() {
            return Err(NvmeError::Unsupported(
                "controller reads all ones: gone".into(),
            ));
        }
        if want && csts.contains(Csts::CFS) {
            return Err(NvmeError::Fatal {
                during: "enable".into(),
            });
        }
        if csts.contains(Csts::RDY) == want {
            return Ok(());
        }
        if start.elapsed() > Duration::from_millis(ms) {
            return Err(NvmeError::ReadyTimeout {
                ready: want,
                ms,
                csts: csts.bits(),
            });
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

impl Admin {
    /// Runs one admin command to completion, polling, within `timeout`.
    fn exec(
        &mut self,
        regs: &Registers,
        mut sqe: SubmissionEntry,
        timeout: Duration,
    ) -> Result<CompletionEntry, NvmeError> {
        let cid = self.next_cid;
        self.next_cid = (self.next_cid + 1) % self.queue.capacity();
        sqe.set_cid(cid);
        let opcode = sqe.opcode();
        self.queue.push(sqe);
        self.queue.ring_sq_doorbell();
        let start = Instant::now();
        loop {
            let mut got = None;
            self.queue.reap(1, |c| got = Some(c));
            if let Some(c) = got {
                if c.cid != cid {
                    return Err(NvmeError::UnknownCid { qid: 0, cid: c.cid });
                }
                let status = c.status();
                if !status.is_success() {
                    return Err(NvmeError::Admin {
                        opcode,
                        cid,
                        status,
                    });
                }
                return Ok(c);
            }
            if regs.csts().contains(Csts::CFS) {
                return Err(NvmeError::Fatal {
                    during: format!("admin command {opcode:#04x}"),
                });
            }
            if start.elapsed() > timeout {
                return Err(NvmeError::AdminTimeout {
                    opcode,
                    ms: timeout.as_millis() as u64,
                });
            }
            std::hint::spin_loop();
        }
    }

    fn identify(
        &mut self,
        regs: &Registers,
        cns: u8,
        nsid: u32,
        timeout: Duration,
    ) -> Result<Vec<u8>, NvmeError> {
        let sqe = SubmissionEntry::identify(cns, nsid, self.page.dev());
        self.exec(regs, sqe, timeout)?;
        let mut out = vec![0u8; IDENTIFY_BYTES];
        // The page chunk is IDENTIFY_BYTES long, ours, and the controller finished
        // writing it (its completion came back).
        // SAFETY: the identify data is ours to read.
        unsafe {
            std::ptr::copy_nonoverlapping(self.page.ptr().as_ptr(), out.as_mut_ptr(), out.len())
        };
        Ok(out)
    }
}

impl Controller {
    /// Brings the controller up.
    pub(crate) fn start(
        pci: String,
        bar: BarMap,
        access: Access,
        config: NvmeConfig,
    ) -> Result<Self, NvmeError> {
        // `bar` is BAR0 mapped for its whole length, and is kept (in the returned
        // Controller) for as long as the registers.
        // SAFETY: the registers stay mapped as long as they are used.
        let regs = unsafe { Registers::new(bar.ptr(), bar.bytes()) };
        let cap = regs.cap();
        let csts = regs.csts();
        if csts.is_gone() {
            return Err(NvmeError::Unsupported(format!(
                "{pci}: BAR0 reads all ones"
            )));
        }
        if !cap.supports_nvm_command_set() || cap.page_size_min() > 4096 {
            return Err(NvmeError::Unsupported(format!(
                "{pci}: CAP {:#x}: needs the NVM command set and 4 KiB pages",
                cap.0
            )));
        }
        let (major, minor, _) = regs.version();
        let timeout_ms = cap.timeout_ms().max(500);
        // Reset: the firmware may have left it enabled.
        let cc = regs.cc();
        if cc.0 & 1 != 0 || csts.contains(Csts::RDY) {
            log::info!("nvme {pci}: controller enabled (CC {:#x}), resetting", cc.0);
            regs.set_cc(cc.with_enable(false));
        }
        wait_ready(&regs, false, timeout_ms)?;
        regs.set_intms(u32::MAX);

        let mapper = match &access {
            Access::Sysfs => Mapper::Pagemap,
            Access::Vfio(v) => Mapper::Vfio(v.clone()),
        };
        let chunks = ChunkPool::new(mapper.clone());
        let entries = usize::from(ADMIN_ENTRIES);
        // ASQ and ACQ must each be 4 KiB aligned (§3.1.9-10: bits 11:0 reserved).
        let rings = chunks.alloc(2 * 4096)?;
        let page = chunks.alloc(IDENTIFY_BYTES)?;
        let (asq, acq) = (rings.dev(), rings.dev() + 4096);
        let stride = cap.doorbell_stride_bytes();
        // The rings chunk holds 32 SQ entries (2 KiB) then, at +4 KiB, 32 CQ
        // entries, zeroed; it lives in Admin next to the queue, and the controller is
        // disabled (at the latest by the shutdown in Drop) before it is freed.
        // SAFETY: the admin rings outlive the queue.
        let queue = unsafe {
            Queue::new(
                0,
                ADMIN_ENTRIES,
                rings.ptr().cast(),
                rings.ptr().add(4096).cast(),
                regs.doorbell(0, false, stride),
                regs.doorbell(0, true, stride),
            )
        };
        regs.set_admin_queues(aqa(entries as u32, entries as u32), asq, acq);
        regs.set_cc(Cc::keel().with_enable(true));
        wait_ready(&regs, true, timeout_ms)?;
        let mut admin = Admin {
            queue,
            page,
            _rings: rings,
            next_cid: 0,
        };
        let t = config.admin_timeout;
        let ident = IdentifyController::parse(&admin.identify(&regs, cns::CONTROLLER, 0, t)?);
        if ident.nn < NSID {
            return Err(NvmeError::Unsupported(format!("{pci}: no namespace 1")));
        }
        let ns = IdentifyNamespace::parse(&admin.identify(&regs, cns::NAMESPACE, NSID, t)?);
        if ns.nsze == 0 || ns.block_size().is_none() || ns.lbaf.ms != 0 {
            return Err(NvmeError::Unsupported(format!(
                "{pci}: namespace 1 has {} blocks, LBA format {:?} (needs 512 B..64 KiB blocks, no metadata)",
                ns.nsze, ns.lbaf
            )));
        }
        let want = config.max_io_queues.clamp(1, 65535);
        let c = admin.exec(&regs, SubmissionEntry::set_number_of_queues(want, want), t)?;
        let nsqa = (c.dw0 & 0xffff) as u16;
        let ncqa = (c.dw0 >> 16) as u16;
        let io_queues_max = nsqa.min(ncqa).saturating_add(1).min(want);
        let vwc_enabled = if ident.vwc_present() {
            let c = admin.exec(
                &regs,
                SubmissionEntry::get_features(feature::VOLATILE_WRITE_CACHE),
                t,
            )?;
            c.dw0 & 1 != 0
        } else {
            false
        };
        log::info!(
            "nvme {pci}: NVMe {major}.{minor} {} ({}), MQES {}, MDTS {}, {} I/O queue pairs, \
             ns 1: {} x {} B, VWC {}, ONCS {:#x}",
            ident.model,
            ident.serial,
            cap.max_queue_entries(),
            ident.mdts,
            io_queues_max,
            ns.nsze,
            ns.block_size().unwrap_or(0),
            if vwc_enabled { "on" } else { "off" },
            ident.oncs
        );
        Ok(Controller {
            pci,
            regs,
            stride,
            mqes: cap.max_queue_entries(),
            timeout_ms,
            config,
            ident,
            ns,
            vwc_enabled,
            io_queues_max,
            qids: Mutex::new(vec![false; usize::from(io_queues_max)]),
            admin: Mutex::new(admin),
            chunks,
            mapper,
            faults_armed: AtomicBool::new(false),
            faults: Mutex::new(Vec::new()),
            _bar: bar,
            _access: access,
        })
    }

    pub(crate) fn admin(&self) -> MutexGuard<'_, Admin> {
        self.admin.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs an admin command.
    pub(crate) fn admin_exec(&self, sqe: SubmissionEntry) -> Result<CompletionEntry, NvmeError> {
        self.admin()
            .exec(&self.regs, sqe, self.config.admin_timeout)
    }

    /// Takes a free I/O queue id.
    pub(crate) fn alloc_qid(&self) -> Result<u16, NvmeError> {
        let mut qids = self.qids.lock().unwrap_or_else(|p| p.into_inner());
        let i = qids
            .iter()
            .position(|used| !used)
            .ok_or(NvmeError::QueueLimit {
                max: self.io_queues_max,
            })?;
        qids[i] = true;
        Ok(i as u16 + 1)
    }

    /// Gives back an I/O queue id.
    pub(crate) fn free_qid(&self, qid: u16) {
        let mut qids = self.qids.lock().unwrap_or_else(|p| p.into_inner());
        qids[usize::from(qid) - 1] = false;
    }

    /// Arms a fault.
    pub(crate) fn inject(&self, fault: NvmeFault) {
        assert!(fault.nth >= 1, "faults count from 1");
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((fault, 0));
        self.faults_armed.store(true, Ordering::Release);
    }

    /// Disarms every fault.
    pub(crate) fn clear_faults(&self) {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.faults_armed.store(false, Ordering::Release);
    }

    /// Called once per submitted command: the status it must fail with, if a fault fires.
    pub(crate) fn check_fault(&self, op: Op) -> Option<NvmeStatus> {
        if !self.faults_armed.load(Ordering::Acquire) {
            return None;
        }
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let mut hit = None;
        faults.retain_mut(|(f, seen)| {
            if f.op != op {
                return true;
            }
            *seen += 1;
            if *seen == f.nth && hit.is_none() {
                hit = Some(f.status);
                false
            } else {
                true
            }
        });
        if faults.is_empty() {
            self.faults_armed.store(false, Ordering::Release);
        }
        hit
    }

    /// Normal shutdown (§7.6.2): CC.SHN = 01b, wait CSTS.SHST = 10b, then disable.
    fn shutdown(&self) {
        let cc = self.regs.cc();
        self.regs.set_cc(cc.with_shutdown(CC_SHN_NORMAL));
        let start = Instant::now();
        loop {
            let csts = self.regs.csts();
            if csts.shutdown_status() == SHST_COMPLETE {
                break;
            }
            if csts.contains(Csts::CFS) || csts.is_gone() {
                log::warn!("nvme {}: fatal status during shutdown", self.pci);
                break;
            }
            if start.elapsed() > Duration::from_millis(self.timeout_ms) {
                log::warn!(
                    "nvme {}: shutdown did not complete in {} ms",
                    self.pci,
                    self.timeout_ms
                );
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        // Disable too, so no queue memory is touched once this process frees it.
        self.regs.set_cc(self.regs.cc().with_enable(false));
        if let Err(e) = wait_ready(&self.regs, false, self.timeout_ms) {
            log::warn!("nvme {}: disable after shutdown: {e}", self.pci);
        }
        log::info!("nvme {}: shut down", self.pci);
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.shutdown();
    }
}
